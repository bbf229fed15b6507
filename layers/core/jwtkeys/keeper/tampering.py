"""Tampering inspection: who touched a keyset key, judged from a forwarded CloudTrail event.

The tampering rule forwards KMS CloudTrail events by anyone but jwtkeys' own roles;
this module decides whether an event touched one of the keyset's keys from a principal
that has no business doing that call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jwtkeys.names import KMS_EVENTS_NEVER_MADE_BY_KEEPER, KMS_SIGN_EVENT

CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"


@dataclass(frozen=True)
class Inspection:
    """The verdict on one KMS CloudTrail event."""

    event: str
    principal: str
    keys: list[str]  # the keyset's keys the event touched
    foreign: bool

    def to_summary(self) -> dict[str, Any]:
        return {
            "action": "inspect",
            "event": self.event,
            "foreign": self.foreign,
            "keys": self.keys,
        }


def is_cloudtrail_kms_event(event: object) -> bool:
    """Whether `event` is a KMS API call forwarded from CloudTrail by EventBridge."""
    return (
        isinstance(event, dict)
        and event.get("source") == "aws.kms"
        and event.get("detail-type") == CLOUDTRAIL_DETAIL_TYPE
    )


def inspect_kms_event(
    event: Mapping[str, Any],
    keyset_key_arns: Iterable[str],
    keeper_role_arn: str,
    signer_role_arn: str,
) -> Inspection:
    """Foreign when the event touched a keyset key from a role not allowed that call."""
    detail = event.get("detail") or {}
    event_name = str(detail.get("eventName", ""))
    principal = _principal_role_arn(detail)
    # CloudTrail names a key by ARN or bare id; compare the key ids.
    ours = {arn.rsplit("/", 1)[-1] for arn in keyset_key_arns}
    touched = sorted(arn for arn in _key_arns(event, detail) if arn.rsplit("/", 1)[-1] in ours)
    allowed = set()
    if event_name not in KMS_EVENTS_NEVER_MADE_BY_KEEPER:
        allowed.add(keeper_role_arn)
    if event_name == KMS_SIGN_EVENT:
        allowed.add(signer_role_arn)
    return Inspection(
        event=event_name,
        principal=principal,
        keys=touched,
        foreign=bool(touched) and principal not in allowed,
    )


def _principal_role_arn(detail: Mapping[str, Any]) -> str:
    identity = detail.get("userIdentity") or {}
    issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
    # An assumed-role session is judged by the role that issued it.
    return str(issuer.get("arn") or identity.get("arn") or "")


def _key_arns(event: Mapping[str, Any], detail: Mapping[str, Any]) -> set[str]:
    arns = {
        str(resource.get("ARN"))
        for resource in detail.get("resources") or []
        if resource.get("ARN")
    }
    arns.update(
        str(resource) for resource in event.get("resources") or [] if isinstance(resource, str)
    )
    parameters = detail.get("requestParameters") or {}
    for name in ("keyId", "targetKeyId"):
        key_id = parameters.get(name)
        if isinstance(key_id, str) and key_id:
            arns.add(key_id)
    return arns
