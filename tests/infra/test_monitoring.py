"""Alarms, their topic, the anomaly band, the tampering rule and the dashboard."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra import constants
from infra.monitoring import rotation_overdue_after
from jwtkeys import metrics_catalog as catalog
from tests.infra.conftest import (
    ALARM_EMAIL,
    PROJECT_ROOT,
    STEADY_TRAFFIC_MINUTES,
    Template,
    cdk_json_context,
    logical_id_starting,
    only,
    resources,
)

GTE = "GreaterThanOrEqualToThreshold"
GT = "GreaterThanThreshold"
LT = "LessThanThreshold"

# anchor -> (metrics as (namespace, name, statistic), threshold, comparison)
KEEPER_ALARMS: dict[str, tuple[set[tuple[str, str, str]], float, str]] = {
    "keeper-failing": (
        {("jwtkeys", "RotationFailures", "Sum"), ("AWS/Lambda", "Errors", "Sum")},
        1,
        GTE,
    ),
    "keeper-not-running": ({("jwtkeys", "KeeperTicks", "Sum")}, 1, LT),
    "jwks-drift": ({("jwtkeys", "JwksDrift", "Maximum")}, 1, GTE),
    "key-tampering": ({("jwtkeys", "ForeignKeyActivity", "Sum")}, 1, GTE),
    "state-tampering": ({("jwtkeys", "StateTampering", "Sum")}, 1, GTE),
    "keeper-throttled": (
        {("AWS/Lambda", "Throttles", "Sum")},
        constants.KEEPER_THROTTLES_PER_PERIOD,
        GTE,
    ),
}
SIGNER_ALARMS: dict[str, tuple[set[tuple[str, str, str]], float, str]] = {
    "signing-errors": (
        {("jwtkeys", "TokensIssued", "Sum"), ("jwtkeys", "SigningFailures", "Sum")},
        constants.SIGNING_FAILURE_RATE_PERCENT,
        GT,
    ),
    "kms-throttling": (
        {("jwtkeys", "KmsThrottled", "Sum")},
        constants.KMS_THROTTLES_PER_PERIOD,
        GTE,
    ),
    "sign-refusals-spike": (
        {("jwtkeys", "SignRequestsRejected", "Sum")},
        constants.REFUSED_SIGN_REQUESTS_PER_PERIOD,
        GTE,
    ),
    "signer-throttled": ({("AWS/Lambda", "Throttles", "Sum")}, 1, GTE),
}
SERVICENOW_ALARMS: dict[str, tuple[set[tuple[str, str, str]], float, str]] = {
    "servicenow-sync-failing": ({("jwtkeys", "ServiceNowSyncFailures", "Sum")}, 1, GTE),
    "servicenow-drift": ({("jwtkeys", "ServiceNowDrift", "Maximum")}, 1, GTE),
    "canary-failing": ({("jwtkeys", "CanaryExchangeFailures", "Sum")}, 1, GTE),
    "sessions-not-ended": ({("jwtkeys", "SessionsNotEnded", "Sum")}, 1, GTE),
    "unconfirmed-promotion": ({("jwtkeys", "UnconfirmedPromotions", "Sum")}, 1, GTE),
    "foreign-trust-records": ({("jwtkeys", "ForeignTrustRecords", "Maximum")}, 1, GTE),
    "certificate-expiring": (
        {("jwtkeys", "CertificateExpiresInDays", "Minimum")},
        constants.CERTIFICATE_EXPIRY_ALARM_DAYS,
        LT,
    ),
}
ANOMALY = "signing-volume-anomaly"
# Only dev has an API authorizer in the assertion context.
AUTHORIZER_ALARM = "authorizer-refusals"


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    """Alarm name suffix (the runbook anchor) -> alarm properties."""
    found = {}
    for resource in resources(template, "AWS::CloudWatch::Alarm").values():
        props = resource["Properties"]
        anchor = re.sub(r"^jwtkeys-servicenow-(dev|prod)-", "", props["AlarmName"])
        found[anchor] = props
    return found


def _metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads, as MetricStat, whether inline or in `Metrics`."""
    if "Metrics" not in alarm:
        return [
            {
                "Metric": {
                    "Namespace": alarm["Namespace"],
                    "MetricName": alarm["MetricName"],
                    "Dimensions": alarm["Dimensions"],
                },
                "Stat": alarm["Statistic"],
                "Period": alarm["Period"],
            }
        ]
    return [m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m]


def _summary(alarm: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (s["Metric"]["Namespace"], s["Metric"]["MetricName"], s["Stat"])
        for s in _metric_stats(alarm)
    }


def test_every_alarm_of_the_issue_exists(dev: Template, prod: Template) -> None:
    expected = {
        *KEEPER_ALARMS,
        *SIGNER_ALARMS,
        ANOMALY,
        "rotation-overdue",
        "inspection-failing",
        "failure-queue-not-empty",
    }

    assert set(_alarms(dev)) == expected | {AUTHORIZER_ALARM}
    assert set(_alarms(prod)) == expected | set(SERVICENOW_ALARMS) | {"no-tokens"}


def test_a_keyset_with_steady_traffic_alarms_on_silence(prod: Template) -> None:
    alarm = _alarms(prod)["no-tokens"]

    assert _summary(alarm) == {("jwtkeys", "TokensIssued", "Sum")}
    assert alarm["ComparisonOperator"] == LT
    assert alarm["Threshold"] == 1
    # Every period of the window empty, and no data at all counts as empty.
    periods = STEADY_TRAFFIC_MINUTES * 60 // constants.SIGNER_ALARM_PERIOD_SECONDS
    assert [s["Period"] for s in _metric_stats(alarm)] == [constants.SIGNER_ALARM_PERIOD_SECONDS]
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == periods
    assert alarm["TreatMissingData"] == "breaching"


def _monitoring_warnings(alarm_emails: list[str]) -> list[str]:
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Annotations, Match

    from infra.config import load_stacks
    from infra.monitoring import Monitoring

    context = cdk_json_context()["jwtkeys"]
    context["stacks"]["dev"]["alarm_emails"] = alarm_emails
    config = load_stacks(context)[0]
    stack = Stack(App(), "MonitoringOnly")
    arn = "arn:aws:lambda:eu-west-1:111122223333:function:"
    Monitoring(
        stack,
        "Monitoring",
        config=config,
        signer=lambda_.Function.from_function_arn(stack, "Signer", arn + "signer"),
        keeper=lambda_.Function.from_function_arn(stack, "Keeper", arn + "keeper"),
    )
    found = Annotations.from_stack(stack).find_warning("*", Match.any_value())
    return [str(message.entry.data) for message in found]


def test_synth_warns_when_no_one_hears_the_alarms() -> None:
    (warning,) = [w for w in _monitoring_warnings([]) if "no-alarm-subscriber" in w]

    assert "stage 'dev': no alarm_emails" in warning
    assert "AlarmTopicArn" in warning
    assert not [w for w in _monitoring_warnings([ALARM_EMAIL]) if "no-alarm-subscriber" in w]


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [*KEEPER_ALARMS.items(), *SIGNER_ALARMS.items(), *SERVICENOW_ALARMS.items()],
)
def test_alarm_metric_threshold_and_comparison(
    prod: Template, anchor: str, expected: tuple[set[tuple[str, str, str]], float, str]
) -> None:
    metrics, threshold, comparison = expected
    alarm = _alarms(prod)[anchor]

    assert _summary(alarm) == metrics
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == comparison


def test_rotation_overdue_fires_past_the_period_plus_margin(prod: Template) -> None:
    alarm = _alarms(prod)["rotation-overdue"]

    assert _summary(alarm) == {("jwtkeys", "CurrentKeyAgeSeconds", "Maximum")}
    # 30 days + a tenth of them
    assert alarm["Threshold"] == rotation_overdue_after(2592000) == 2592000 + 259200
    assert alarm["ComparisonOperator"] == GT
    assert rotation_overdue_after(86400) == 86400 + 8640
    # Short periods still get the minimum margin of an hour.
    assert rotation_overdue_after(20000) == 20000 + 3600


def test_keeper_not_running_treats_silence_as_breaching(prod: Template) -> None:
    alarm = _alarms(prod)["keeper-not-running"]

    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["EvaluationPeriods"] == constants.MISSED_TICK_PERIODS
    (stat,) = _metric_stats(alarm)
    assert stat["Period"] == 300


def test_signing_error_alarm_is_a_failure_rate(prod: Template) -> None:
    alarm = _alarms(prod)["signing-errors"]
    (expression,) = [m["Expression"] for m in alarm["Metrics"] if "Expression" in m]

    assert "100 * FILL(failures, 0) / (FILL(issued, 0) + FILL(failures, 0))" in expression


def test_tokens_issued_has_an_anomaly_detection_band(prod: Template) -> None:
    alarm = _alarms(prod)[ANOMALY]
    band = [m for m in alarm["Metrics"] if "Expression" in m]
    (stat,) = _metric_stats(alarm)

    assert alarm["ComparisonOperator"] == "LessThanLowerOrGreaterThanUpperThreshold"
    assert band[0]["Expression"] == (
        f"ANOMALY_DETECTION_BAND(m0, {constants.TOKENS_ISSUED_BAND_STD_DEVS:g})"
    )
    assert alarm["ThresholdMetricId"] == band[0]["Id"]
    assert stat["Metric"]["MetricName"] == "TokensIssued"
    assert stat["Stat"] == "Sum"


def test_every_alarm_notifies_the_topic_and_links_its_runbook_entry(
    dev: Template, prod: Template
) -> None:
    runbook = (PROJECT_ROOT / "docs" / "runbook.md").read_text()
    for template in (dev, prod):
        topic = logical_id_starting(template, "AWS::SNS::Topic", "MonitoringAlarmTopic")
        for anchor, alarm in _alarms(template).items():
            assert alarm["AlarmActions"] == [{"Ref": topic}], anchor
            assert alarm["OKActions"] == [{"Ref": topic}], anchor
            assert alarm["AlarmDescription"].endswith(f"Runbook: docs/runbook.md#{anchor}")
            assert f'<a id="{anchor}"></a>' in runbook, f"runbook has no entry {anchor}"


def test_alarms_watch_exactly_the_catalog_metrics_and_dimension_sets(
    dev: Template, prod: Template
) -> None:
    emitted = {(spec.name, tuple(sorted(spec.dimensions))): spec for spec in catalog.ALL_METRICS}
    for template, keyset in ((dev, "servicenow-dev"), (prod, "servicenow-prod")):
        for anchor, alarm in _alarms(template).items():
            for stat in _metric_stats(alarm):
                metric = stat["Metric"]
                dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                if metric["Namespace"] == "AWS/Lambda":
                    assert set(dimensions) == {"FunctionName"}, anchor
                    continue
                if metric["Namespace"] == "AWS/Events":
                    assert set(dimensions) == {"RuleName"}, anchor
                    continue
                if metric["Namespace"] == "AWS/SQS":
                    assert set(dimensions) == {"QueueName"}, anchor
                    continue
                assert metric["Namespace"] == "jwtkeys", anchor
                key = (metric["MetricName"], tuple(sorted(dimensions)))
                assert key in emitted, f"{anchor}: {key} is not in the metrics catalog"
                assert dimensions == {"keyset": keyset, "service": emitted[key].service}


def test_alarm_topic_is_encrypted_with_a_key_alarms_may_use(prod: Template) -> None:
    topic_id, topic = only(
        prod, "AWS::SNS::Topic", lambda lid, _p: lid.startswith("MonitoringAlarmTopic")
    )
    key = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_props = prod["Resources"][key]["Properties"]
    statements = key_props["KeyPolicy"]["Statement"]
    (publishers,) = [s for s in statements if s.get("Sid") == "AllowAlarmPublishers"]

    assert key_props["EnableKeyRotation"] is True
    assert publishers["Principal"] == {
        "Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }
    assert sorted(publishers["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    _, topic_policy = only(prod, "AWS::SNS::TopicPolicy", lambda _lid, _p: True)
    sids = {s.get("Sid"): s for s in topic_policy["PolicyDocument"]["Statement"]}
    assert sids["AllowAlarmPublishers"]["Action"] == "sns:Publish"
    assert sids["AllowPublishThroughSSLOnly"]["Effect"] == "Deny"
    (subscription,) = resources(prod, "AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {
        "Endpoint": ALARM_EMAIL,
        "Protocol": "email",
        "TopicArn": {"Ref": topic_id},
    }


def test_tampering_rule_forwards_foreign_kms_activity_to_the_inspector(dev: Template) -> None:
    inspector = logical_id_starting(dev, "AWS::Lambda::Function", "KeyTamperingFunction")
    keeper_role = {"Fn::GetAtt": [logical_id_starting(dev, "AWS::IAM::Role", "KeeperRole"), "Arn"]}
    signer_role = {"Fn::GetAtt": [logical_id_starting(dev, "AWS::IAM::Role", "SignerRole"), "Arn"]}
    _, rule = only(dev, "AWS::Events::Rule", lambda lid, _p: lid.startswith("KeyTampering"))
    pattern = rule["EventPattern"]
    changes = list(constants.KMS_CHANGE_EVENTS)

    # Sign is a read-only management event: only this state delivers it.
    assert rule["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    assert pattern["source"] == ["aws.kms"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail"]
    assert pattern["detail"]["eventSource"] == ["kms.amazonaws.com"]
    assert set(changes) == {
        "PutKeyPolicy",
        "CreateGrant",
        "UpdateAlias",
        "DisableKey",
        "EnableKey",
        "ScheduleKeyDeletion",
        "CancelKeyDeletion",
        "TagResource",
        "UntagResource",
    }
    not_assumed_role = {"type": [{"anything-but": ["AssumedRole"]}]}

    def other_role(*exempt: Any) -> dict[str, Any]:
        return {"sessionContext": {"sessionIssuer": {"arn": [{"anything-but": list(exempt)}]}}}

    by_keeper = ["UpdateAlias", "DisableKey", "ScheduleKeyDeletion", "TagResource"]
    never_by_keeper = [
        "PutKeyPolicy",
        "CreateGrant",
        "EnableKey",
        "CancelKeyDeletion",
        "UntagResource",
    ]
    assert pattern["detail"]["$or"] == [
        {"eventName": never_by_keeper},
        {"eventName": by_keeper, "userIdentity": other_role(keeper_role)},
        {"eventName": by_keeper, "userIdentity": not_assumed_role},
        {"eventName": ["Sign"], "userIdentity": other_role(keeper_role, signer_role)},
        {"eventName": ["Sign"], "userIdentity": not_assumed_role},
    ]
    # Never the keeper: other stages' signing traffic must not take the ticks' time.
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [inspector, "Arn"]}
    queue = logical_id_starting(dev, "AWS::SQS::Queue", "KeyTamperingFailedInspections")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}
    permissions = [
        p["Properties"]
        for p in resources(dev, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert [p["FunctionName"] for p in permissions] == [{"Fn::GetAtt": [inspector, "Arn"]}]
    # An event the inspector fails to judge lands in the same queue after Lambda's retries.
    _, invoke_config = only(
        dev,
        "AWS::Lambda::EventInvokeConfig",
        lambda _lid, props: props["FunctionName"] == {"Ref": inspector},
    )
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [queue, "Arn"]
    }


def test_uninspected_events_and_queued_failures_are_alarmed(dev: Template) -> None:
    inspector = logical_id_starting(dev, "AWS::Lambda::Function", "KeyTamperingFunction")
    alarms = _alarms(dev)

    failing = alarms["inspection-failing"]
    assert _summary(failing) == {
        ("AWS/Lambda", "Errors", "Sum"),
        ("AWS/Lambda", "AsyncEventsDropped", "Sum"),
        ("AWS/Events", "FailedInvocations", "Sum"),
    }
    for stat in _metric_stats(failing):
        if stat["Metric"]["Namespace"] == "AWS/Lambda":
            assert stat["Metric"]["Dimensions"] == [
                {"Name": "FunctionName", "Value": {"Ref": inspector}}
            ]
    queued = alarms["failure-queue-not-empty"]
    assert _summary(queued) == {("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")}
    queues = {
        json.dumps(stat["Metric"]["Dimensions"][0]["Value"]) for stat in _metric_stats(queued)
    }
    assert len(queues) == 2
    for alarm in (failing, queued):
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == GTE


def test_dashboard_shows_keys_tokens_refusals_latency_throttles_drift_servicenow(
    prod: Template,
) -> None:
    _, dashboard = only(prod, "AWS::CloudWatch::Dashboard", lambda _lid, _p: True)
    body = json.dumps(dashboard["DashboardBody"])

    assert dashboard["DashboardName"] == "jwtkeys-servicenow-prod"
    for title in (
        "Key age",
        "Key states and transitions",
        "Tokens issued",
        "Tokens per key id",
        "Refusals by reason",
        "Signing latency (ms)",
        "Throttles",
        "Drift",
        "ServiceNow sync",
        "Certificate expiry (days)",
    ):
        assert f'\\"title\\":\\"{title}\\"' in body, title
    assert "SignRequestsRejected" in body
    assert "reason" in body
    # The key-age graph marks the rotation period (prod: 30 days).
    assert "rotation period (days)" in body
    assert '\\"value\\":30' in body
    assert "kid" in body
