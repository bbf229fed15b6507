"""Alarms on what the functions emit, delivered through a KMS-encrypted SNS topic.

Every alarm is built by one factory from an `AlarmSpec`; every jwtkeys metric comes
from the runtime's metrics catalog (through `CatalogMetrics`). The description of each
alarm points at its entry in docs/runbook.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Annotations, Aws, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jwtkeys import metrics_catalog as catalog

from .config import KeysetConfig
from .constants import (
    CERTIFICATE_EXPIRY_ALARM_DAYS,
    KEEPER_THROTTLES_PER_PERIOD,
    KMS_THROTTLES_PER_PERIOD,
    MIN_KEEPER_ALARM_PERIOD_SECONDS,
    MISSED_TICK_PERIODS,
    REFUSED_SIGN_REQUESTS_PER_PERIOD,
    ROTATION_OVERDUE_MARGIN_FRACTION,
    ROTATION_OVERDUE_MIN_MARGIN_SECONDS,
    SIGNER_ALARM_PERIOD_SECONDS,
    SIGNING_FAILURE_RATE_PERCENT,
    TOKENS_ISSUED_BAND_STD_DEVS,
)
from .metrics import CatalogMetrics
from .tampering import TamperingInspection

_GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
_GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
_LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
_NOT_BREACHING = cloudwatch.TreatMissingData.NOT_BREACHING
_BREACHING = cloudwatch.TreatMissingData.BREACHING

# cdk synth prints this warning id for a stage whose alarms reach nobody.
NO_SUBSCRIBER_WARNING = "jwtkeys:no-alarm-subscriber"

# Principals that deliver to the topic: alarms, and EventBridge rules targeting it.
TOPIC_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: what it watches, when it fires, and where its runbook entry is."""

    anchor: str  # alarm name suffix and docs/runbook.md anchor
    summary: str
    metric: cloudwatch.IMetric
    threshold: float
    comparison: cloudwatch.ComparisonOperator = _GTE
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    missing_data: cloudwatch.TreatMissingData = _NOT_BREACHING


def rotation_overdue_after(rotation_period: int) -> int:
    """Current-key age (seconds) beyond which rotation is overdue."""
    margin = max(
        ROTATION_OVERDUE_MIN_MARGIN_SECONDS, int(rotation_period * ROTATION_OVERDUE_MARGIN_FRACTION)
    )
    return rotation_period + margin


class Monitoring(Construct):
    """Alarm topic (KMS-encrypted, e-mail subscriptions) and every alarm of the keyset."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KeysetConfig,
        signer: lambda_.IFunction,
        keeper: lambda_.IFunction,
        inspection: TamperingInspection | None = None,
        keeper_failure_queue: sqs.IQueue | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._metrics = CatalogMetrics(config.keyset)
        self._keeper_period = max(MIN_KEEPER_ALARM_PERIOD_SECONDS, config.policy.tick_interval)
        self.topic = self._topic(config.alarm_emails)
        self._action = cloudwatch_actions.SnsAction(self.topic)
        specs = [*self._keeper_alarms(keeper), *self._signer_alarms(signer)]
        if config.servicenow:
            specs += self._servicenow_alarms()
        if inspection is not None and keeper_failure_queue is not None:
            specs += self._inspection_alarms(inspection, keeper_failure_queue)
        if config.steady_traffic_minutes is not None:
            specs.append(self._no_tokens(config.steady_traffic_minutes))
        self.alarms: list[cloudwatch.AlarmBase] = [self._alarm(spec) for spec in specs]
        self.alarms.append(self._tokens_issued_anomaly())

    # ---- topic

    def _topic(self, emails: Sequence[str]) -> sns.Topic:
        key = kms.Key(
            self,
            "TopicKey",
            description=f"jwtkeys {self._config.keyset}: encrypts the alarm topic",
            enable_key_rotation=True,
        )
        # Without this, CloudWatch and EventBridge cannot encrypt what they publish and
        # no alarm is ever delivered.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishers",
                principals=[iam.ServicePrincipal(service) for service in TOPIC_PUBLISHERS],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"jwtkeys {self._config.keyset} alarms",
            master_key=key,
            enforce_ssl=True,
        )
        # A topic policy replaces SNS's default one: name the publishers explicitly.
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmPublishers",
                principals=[iam.ServicePrincipal(service) for service in TOPIC_PUBLISHERS],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        for email in emails:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        if not emails:
            Annotations.of(self).add_warning_v2(
                NO_SUBSCRIBER_WARNING,
                f"stage {self._config.stage!r}: no alarm_emails, so the alarm topic has no"
                " subscriber and every alarm of this keyset goes unheard unless you subscribe"
                " something to the AlarmTopicArn output",
            )
        return topic

    # ---- the factory

    def _alarm(self, spec: AlarmSpec) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            _construct_id(spec.anchor),
            alarm_name=self._alarm_name(spec.anchor),
            alarm_description=self._description(spec.summary, spec.anchor),
            metric=spec.metric,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.missing_data,
        )
        self._notify(alarm)
        return alarm

    def _notify(self, alarm: cloudwatch.AlarmBase) -> None:
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)

    def _alarm_name(self, anchor: str) -> str:
        return f"jwtkeys-{self._config.keyset}-{anchor}"

    def _description(self, summary: str, anchor: str) -> str:
        return f"{summary} Runbook: {self._config.runbook_url}#{anchor}"

    def _keeper_metric(self, spec: catalog.MetricSpec, statistic: str) -> cloudwatch.Metric:
        return self._metrics.metric(spec, statistic, self._keeper_period)

    def _signer_metric(self, spec: catalog.MetricSpec, statistic: str) -> cloudwatch.Metric:
        return self._metrics.metric(spec, statistic, SIGNER_ALARM_PERIOD_SECONDS)

    # ---- the alarms

    def _keeper_alarms(self, keeper: lambda_.IFunction) -> list[AlarmSpec]:
        period = self._keeper_period
        policy = self._config.policy
        failing = cloudwatch.MathExpression(
            expression="FILL(failures, 0) + FILL(errors, 0)",
            using_metrics={
                "failures": self._keeper_metric(catalog.ROTATION_FAILURES, "Sum"),
                "errors": keeper.metric_errors(statistic="Sum", period=_seconds(period)),
            },
            label="Keeper failures and errors",
            period=_seconds(period),
        )
        return [
            AlarmSpec(
                "keeper-failing",
                "The keeper failed a step of a tick (RotationFailures) or crashed (Errors).",
                failing,
                threshold=1,
            ),
            AlarmSpec(
                "rotation-overdue",
                "The current signing key is older than the rotation period plus margin.",
                self._keeper_metric(catalog.CURRENT_KEY_AGE_SECONDS, "Maximum"),
                threshold=rotation_overdue_after(policy.rotation_period),
                comparison=_GT,
            ),
            AlarmSpec(
                "keeper-not-running",
                "No keeper tick has completed recently: nothing rotates, publishes or audits.",
                self._keeper_metric(catalog.KEEPER_TICKS, "Sum"),
                threshold=1,
                comparison=_LT,
                evaluation_periods=MISSED_TICK_PERIODS,
                datapoints_to_alarm=MISSED_TICK_PERIODS,
                missing_data=_BREACHING,
            ),
            AlarmSpec(
                "jwks-drift",
                "The served JWKS differs from the keys that should be published.",
                self._keeper_metric(catalog.JWKS_DRIFT, "Maximum"),
                threshold=1,
                # One tick of drift may be the CDN catching up after an invalidation.
                evaluation_periods=2,
                datapoints_to_alarm=2,
            ),
            AlarmSpec(
                "key-tampering",
                "A KMS change or a Sign on a key of this keyset by a principal other than"
                " jwtkeys' own roles (CloudTrail).",
                self._keeper_metric(catalog.FOREIGN_KEY_ACTIVITY, "Sum"),
                threshold=1,
            ),
            AlarmSpec(
                "state-tampering",
                "The keeper found its state in the bucket not as it wrote it: a registry entry"
                " KMS does not vouch for, a served JWKS it did not write, a forged lease or"
                " decommission flag; or a KMS key tagged with the keyset that the registry"
                " does not list (key census).",
                self._keeper_metric(catalog.STATE_TAMPERING, "Sum"),
                threshold=1,
            ),
            AlarmSpec(
                "keeper-throttled",
                "Keeper invocations are throttled (account concurrency or its own reservation).",
                keeper.metric_throttles(statistic="Sum", period=_seconds(period)),
                threshold=KEEPER_THROTTLES_PER_PERIOD,
            ),
        ]

    def _signer_alarms(self, signer: lambda_.IFunction) -> list[AlarmSpec]:
        period = SIGNER_ALARM_PERIOD_SECONDS
        failure_rate = cloudwatch.MathExpression(
            expression=(
                "IF(FILL(issued, 0) + FILL(failures, 0) > 0,"
                " 100 * FILL(failures, 0) / (FILL(issued, 0) + FILL(failures, 0)), 0)"
            ),
            using_metrics={
                "issued": self._signer_metric(catalog.TOKENS_ISSUED, "Sum"),
                "failures": self._signer_metric(catalog.SIGNING_FAILURES, "Sum"),
            },
            label="Signing failure rate (%)",
            period=_seconds(period),
        )
        return [
            AlarmSpec(
                "signing-errors",
                f"More than {SIGNING_FAILURE_RATE_PERCENT}% of sign attempts failed.",
                failure_rate,
                threshold=SIGNING_FAILURE_RATE_PERCENT,
                comparison=_GT,
                evaluation_periods=3,
                datapoints_to_alarm=2,
            ),
            AlarmSpec(
                "kms-throttling",
                "KMS is throttling Sign calls.",
                self._signer_metric(catalog.KMS_THROTTLED, "Sum"),
                threshold=KMS_THROTTLES_PER_PERIOD,
            ),
            AlarmSpec(
                "sign-refusals-spike",
                "Many sign requests refused by policy: misuse or a misconfigured caller.",
                self._signer_metric(catalog.SIGN_REQUESTS_REJECTED, "Sum"),
                threshold=REFUSED_SIGN_REQUESTS_PER_PERIOD,
            ),
            AlarmSpec(
                "signer-throttled",
                "Signing function invocations are throttled: callers get no tokens.",
                signer.metric_throttles(statistic="Sum", period=_seconds(period)),
                threshold=1,
            ),
        ]

    def _servicenow_alarms(self) -> list[AlarmSpec]:
        return [
            AlarmSpec(
                "servicenow-sync-failing",
                "The keeper cannot bring ServiceNow's trust records in step.",
                self._keeper_metric(catalog.SERVICENOW_SYNC_FAILURES, "Sum"),
                threshold=1,
                evaluation_periods=3,
                datapoints_to_alarm=2,
            ),
            AlarmSpec(
                "servicenow-drift",
                "ServiceNow's jwtkeys records differ from the published keys.",
                self._keeper_metric(catalog.SERVICENOW_DRIFT, "Maximum"),
                threshold=1,
                evaluation_periods=2,
                datapoints_to_alarm=2,
            ),
            AlarmSpec(
                "canary-failing",
                "ServiceNow refused the canary token exchange.",
                self._keeper_metric(catalog.CANARY_EXCHANGE_FAILURES, "Sum"),
                threshold=1,
            ),
            AlarmSpec(
                "sessions-not-ended",
                "A revocation could not end ServiceNow sessions: end them by hand (runbook).",
                self._keeper_metric(catalog.SESSIONS_NOT_ENDED, "Sum"),
                threshold=1,
            ),
            AlarmSpec(
                "unconfirmed-promotion",
                "A revocation promoted the standby key without ServiceNow's confirmation:"
                " ServiceNow may refuse its tokens (runbook).",
                self._keeper_metric(catalog.UNCONFIRMED_PROMOTIONS, "Sum"),
                threshold=1,
            ),
            AlarmSpec(
                "foreign-trust-records",
                "ServiceNow trusts keys for jwtkeys' application through verifier maps jwtkeys"
                " does not own (runbook).",
                self._keeper_metric(catalog.FOREIGN_TRUST_RECORDS, "Maximum"),
                threshold=1,
            ),
            AlarmSpec(
                "certificate-expiring",
                f"A ServiceNow certificate expires within {CERTIFICATE_EXPIRY_ALARM_DAYS} days.",
                self._keeper_metric(catalog.CERTIFICATE_EXPIRES_IN_DAYS, "Minimum"),
                threshold=CERTIFICATE_EXPIRY_ALARM_DAYS,
                comparison=_LT,
            ),
        ]

    def _inspection_alarms(
        self, inspection: TamperingInspection, keeper_failure_queue: sqs.IQueue
    ) -> list[AlarmSpec]:
        period = _seconds(self._keeper_period)
        function = inspection.function
        not_inspected = cloudwatch.MathExpression(
            expression="FILL(errors, 0) + FILL(dropped, 0) + FILL(undelivered, 0)",
            using_metrics={
                "errors": function.metric_errors(statistic="Sum", period=period),
                # Async events Lambda gave up on (too old, or retries spent).
                "dropped": function.metric("AsyncEventsDropped", statistic="Sum", period=period),
                # Events EventBridge could not hand to the function at all.
                "undelivered": cloudwatch.Metric(
                    namespace="AWS/Events",
                    metric_name="FailedInvocations",
                    dimensions_map={"RuleName": inspection.rule.rule_name},
                    statistic="Sum",
                    period=period,
                ),
            },
            label="CloudTrail events not inspected",
            period=period,
        )
        queues = {"inspections": inspection.failure_queue, "ticks": keeper_failure_queue}
        queued = cloudwatch.MathExpression(
            expression="FILL(inspections, 0) + FILL(ticks, 0)",
            using_metrics={
                name: queue.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=period
                )
                for name, queue in queues.items()
            },
            label="Failed events waiting in the failure queues",
            period=period,
        )
        return [
            AlarmSpec(
                "inspection-failing",
                "KMS CloudTrail events were not inspected: the inspector failed, Lambda"
                " dropped them, or EventBridge could not deliver them.",
                not_inspected,
                threshold=1,
            ),
            AlarmSpec(
                "failure-queue-not-empty",
                "A failed tick or inspection waits in a failure queue.",
                queued,
                threshold=1,
            ),
        ]

    def _no_tokens(self, minutes: int) -> AlarmSpec:
        # The anomaly band learns silence as normal after a while; a keyset that declares
        # steady traffic knows better. No data at all is silence too.
        periods = minutes * 60 // SIGNER_ALARM_PERIOD_SECONDS
        return AlarmSpec(
            "no-tokens",
            f"No token issued for {minutes} minutes on a keyset that declares steady traffic.",
            self._signer_metric(catalog.TOKENS_ISSUED, "Sum"),
            threshold=1,
            comparison=_LT,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            missing_data=_BREACHING,
        )

    def _tokens_issued_anomaly(self) -> cloudwatch.AnomalyDetectionAlarm:
        anchor = "signing-volume-anomaly"
        alarm = cloudwatch.AnomalyDetectionAlarm(
            self,
            _construct_id(anchor),
            alarm_name=self._alarm_name(anchor),
            alarm_description=self._description(
                "Tokens issued are outside their usual band (a sudden surge or silence).",
                anchor,
            ),
            metric=self._signer_metric(catalog.TOKENS_ISSUED, "Sum"),
            std_devs=TOKENS_ISSUED_BAND_STD_DEVS,
            comparison_operator=(
                cloudwatch.ComparisonOperator.LESS_THAN_LOWER_OR_GREATER_THAN_UPPER_THRESHOLD
            ),
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data=_NOT_BREACHING,
        )
        self._notify(alarm)
        return alarm


def _construct_id(anchor: str) -> str:
    return "".join(part.capitalize() for part in anchor.split("-")) + "Alarm"


def _seconds(value: int) -> Duration:
    return Duration.seconds(value)
