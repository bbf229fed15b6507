"""The tampering inspector's handler, loaded as Lambda would, against the local endpoint."""

from __future__ import annotations

from types import ModuleType

import pytest

from jwtkeys import metrics_catalog as catalog
from jwtkeys.errors import InvalidRequest
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

from ..lambda_fixtures import LambdaContext, emf_documents, emitted_metrics, load_handler

INTRUDER = "arn:aws:iam::123456789012:role/intruder"
OTHER_SIGNER = "arn:aws:iam::123456789012:role/other-stage-signer"


@pytest.fixture
def inspector(
    stack: LocalStack, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """A bootstrapped keyset (its registry names its keys) and a cold-started inspector."""
    stack.keeper_service().handle({"action": "tick"})
    return load_handler("inspector", {**local_aws.env(), **stack.keeper_env()}, monkeypatch)


def _event(key_arn: str, principal: str, event_name: str = "DisableKey") -> dict[str, object]:
    return {
        "source": "aws.kms",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventName": event_name,
            "userIdentity": {
                "type": "AssumedRole",
                "arn": f"{principal}/session",
                "sessionContext": {"sessionIssuer": {"arn": principal}},
            },
            "requestParameters": {"keyId": key_arn},
            "resources": [{"ARN": key_arn}],
        },
    }


def _current_arn(stack: LocalStack) -> str:
    key = stack.kms.describe_key(KeyId=f"alias/jwtkeys/{stack.config.keyset}/current")
    return str(key["KeyMetadata"]["Arn"])


def _sums(output: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for document in emf_documents(output):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
    return totals


def test_foreign_activity_on_a_keyset_key_is_counted_with_the_catalogs_shape(
    inspector: ModuleType, stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    summary = inspector.lambda_handler(_event(_current_arn(stack), INTRUDER), LambdaContext())

    assert summary == {
        "action": "inspect",
        "event": "DisableKey",
        "foreign": True,
        "keys": [_current_arn(stack)],
    }
    emitted = emitted_metrics(capsys.readouterr().out)
    for spec in (catalog.KMS_EVENTS_INSPECTED, catalog.FOREIGN_KEY_ACTIVITY):
        assert spec.service == catalog.INSPECTOR_SERVICE
        assert (spec.name, frozenset(spec.dimensions)) in emitted


def test_who_may_do_what(inspector: ModuleType, stack: LocalStack) -> None:
    arn = _current_arn(stack)

    def foreign(principal: str, event_name: str) -> bool:
        return bool(
            inspector.lambda_handler(_event(arn, principal, event_name), LambdaContext())["foreign"]
        )

    assert not foreign(stack.config.keeper_role_arn, "DisableKey")
    assert not foreign(stack.config.signer_role_arn, "Sign")
    # The signer may sign, but not disable; the keeper never puts a key policy.
    assert foreign(stack.config.signer_role_arn, "DisableKey")
    assert foreign(stack.config.keeper_role_arn, "PutKeyPolicy")
    # Activity on a key that is not the keyset's is not ours to count.
    other = stack.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    assert not inspector.lambda_handler(_event(other["Arn"], INTRUDER), LambdaContext())["foreign"]


def test_a_burst_of_other_stages_signing_is_counted_not_dropped(
    inspector: ModuleType, stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given another stage in the account signing with its own keys, and one intruder
    other = stack.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    burst = [_event(other["Arn"], OTHER_SIGNER, "Sign") for _ in range(40)]
    burst.append(_event(_current_arn(stack), INTRUDER, "Sign"))
    capsys.readouterr()

    # When the inspector receives all of them
    verdicts = [inspector.lambda_handler(event, LambdaContext())["foreign"] for event in burst]

    # Then every event is counted, and exactly the intruder's is foreign
    assert verdicts.count(True) == 1
    sums = _sums(capsys.readouterr().out)
    assert sums[catalog.KMS_EVENTS_INSPECTED.name] == len(burst)
    assert sums[catalog.FOREIGN_KEY_ACTIVITY.name] == 1
    # And the keeper's ticks never saw any of it: it has no CloudTrail path left.
    with pytest.raises(InvalidRequest):
        stack.keeper_service().handle(burst[-1])


@pytest.mark.parametrize("event", [{"action": "tick"}, {"source": "aws.s3"}, {}])
def test_anything_but_a_kms_cloudtrail_event_is_refused(
    inspector: ModuleType, event: dict[str, object]
) -> None:
    with pytest.raises(InvalidRequest, match="KMS CloudTrail events only"):
        inspector.lambda_handler(event, LambdaContext())
