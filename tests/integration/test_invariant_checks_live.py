"""check_invariants reads a real local deployment: broken there, it is refused."""

from __future__ import annotations

import json

import pytest

from jwtkeys import names
from jwtkeys_tools.local.invariants import InvariantBroken, IssuedRecord, check_invariants
from jwtkeys_tools.local.stack import LocalStack


def _bootstrap(stack: LocalStack) -> dict[str, str]:
    summary = stack.keeper_service().handle({"action": "tick"})
    check_invariants(stack)
    return {"current": str(summary["current_kid"]), "next": str(summary["next_kid"])}


def _arn_of(stack: LocalStack, kid: str) -> str:
    registry = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")["Body"].read()
    )
    return next(str(entry["arn"]) for entry in registry["keys"] if entry["kid"] == kid)


def test_a_jwks_without_the_signing_key_is_refused(stack: LocalStack) -> None:
    kids = _bootstrap(stack)
    jwks = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key=names.JWKS_OBJECT_KEY)["Body"].read()
    )
    jwks["keys"] = [key for key in jwks["keys"] if key["kid"] != kids["current"]]
    stack.s3.put_object(
        Bucket=stack.config.bucket, Key=names.JWKS_OBJECT_KEY, Body=json.dumps(jwks).encode()
    )
    with pytest.raises(InvariantBroken, match=r"I1: the alias names .* which is not served"):
        check_invariants(stack)


def test_a_key_marked_revoked_but_still_served_and_enabled_is_refused(stack: LocalStack) -> None:
    kids = _bootstrap(stack)
    arn = _arn_of(stack, kids["next"])
    stack.kms.tag_resource(KeyId=arn, Tags=[{"TagKey": names.TAG_STATE, "TagValue": "revoked"}])
    with pytest.raises(InvariantBroken, match=r"I4: .* is revoked but still enabled"):
        check_invariants(stack)
    # Disabled, but the JWKS still serves it
    stack.kms.disable_key(KeyId=arn)
    with pytest.raises(InvariantBroken, match="I1/I2: served"):
        check_invariants(stack)


def test_a_live_token_of_a_key_no_longer_served_is_refused(stack: LocalStack) -> None:
    _bootstrap(stack)
    now = stack.clock.now()
    gone = IssuedRecord(kid="a-key-never-served", issued_at=now - 60, expires_at=now + 600)
    with pytest.raises(InvariantBroken, match="I2: a-key-never-served left the JWKS"):
        check_invariants(stack, [gone])


def test_two_current_keys_are_refused(stack: LocalStack) -> None:
    kids = _bootstrap(stack)
    arn = _arn_of(stack, kids["next"])
    stack.kms.tag_resource(KeyId=arn, Tags=[{"TagKey": names.TAG_STATE, "TagValue": "current"}])
    with pytest.raises(InvariantBroken, match="I3: current keys"):
        check_invariants(stack)
