"""Tampering inspection: which forwarded KMS CloudTrail events are foreign to the keyset."""

from __future__ import annotations

from typing import Any

from jwtkeys.keeper.tampering import inspect_kms_event, is_cloudtrail_kms_event

KEEPER = "arn:aws:iam::123456789012:role/keeper"
SIGNER = "arn:aws:iam::123456789012:role/signer"
OURS = "arn:aws:kms:eu-west-1:123456789012:key/1111"


def _event(principal: str, event_name: str, key: str = OURS) -> dict[str, Any]:
    return {
        "source": "aws.kms",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventName": event_name,
            "userIdentity": {
                "arn": f"{principal}/session",
                "sessionContext": {"sessionIssuer": {"arn": principal}},
            },
            "requestParameters": {"keyId": key},
        },
    }


def test_only_roles_allowed_the_call_are_not_foreign() -> None:
    def foreign(principal: str, name: str, key: str = OURS) -> bool:
        return inspect_kms_event(_event(principal, name, key), [OURS], KEEPER, SIGNER).foreign

    assert not foreign(KEEPER, "DisableKey")
    assert not foreign(SIGNER, "Sign")
    assert foreign(SIGNER, "DisableKey")
    assert foreign(KEEPER, "PutKeyPolicy")  # the keeper never puts a key policy
    assert foreign("arn:aws:iam::123456789012:role/intruder", "Sign")
    # A bare key id names the same key as its ARN.
    assert foreign("arn:aws:iam::123456789012:role/intruder", "DisableKey", "1111")
    # Another key of the account is not the keyset's to judge.
    assert not foreign("arn:aws:iam::123456789012:role/intruder", "DisableKey", "2222")


def test_the_verdict_names_event_principal_and_keys() -> None:
    inspection = inspect_kms_event(_event(SIGNER, "ScheduleKeyDeletion"), [OURS], KEEPER, SIGNER)
    assert inspection.to_summary() == {
        "action": "inspect",
        "event": "ScheduleKeyDeletion",
        "foreign": True,
        "keys": [OURS],
    }
    assert inspection.principal == SIGNER


def test_only_kms_cloudtrail_events_are_inspected() -> None:
    assert is_cloudtrail_kms_event(_event(KEEPER, "Sign"))
    assert not is_cloudtrail_kms_event({**_event(KEEPER, "Sign"), "source": "aws.s3"})
    assert not is_cloudtrail_kms_event({"action": "tick"})
