"""The key lifecycle against the local AWS endpoint, on a simulated clock."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import InvalidRequest, LeaseHeld, UnsafePolicy
from jwtkeys.keeper import nonce_adoption
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.service import KeeperService
from jwtkeys.keeper.state_store import Lease
from jwtkeys.timestamps import from_iso, to_iso
from jwtkeys_tools.local.invariants import IssuedRecord, check_invariants, keyset_keys, served_kids
from jwtkeys_tools.local.stack import LocalStack

from ..stack_fixtures import FAST_POLICY


def _tick(keeper: KeeperService, action: dict[str, Any] | None = None) -> dict[str, Any]:
    return keeper.handle(action or {"action": "tick"})


def _sign(stack: LocalStack, ledger: list[IssuedRecord], ttl: int = 3600) -> dict[str, Any]:
    response = stack.sign_service().handle(
        {"subject": "svc-orders", "audience": "client-test", "ttl_seconds": ttl}
    )
    claims = json.loads(
        jose_jwt.JWT(
            jwt=response["token"],
            key=jose_jwk.JWKSet.from_json(requests.get(stack.jwks_url, timeout=5).text),
            check_claims=False,
        ).claims
    )
    assert claims["iss"] == "client-test"
    ledger.append(
        IssuedRecord(kid=str(response["kid"]), issued_at=claims["iat"], expires_at=claims["exp"])
    )
    return response


def _state_of(stack: LocalStack, kid: str) -> str:
    for tags in keyset_keys(stack).values():
        if tags.get(names.TAG_KID) == kid:
            return tags[names.TAG_STATE]
    raise AssertionError(f"no key {kid}")


def test_bootstrap_publishes_then_activates_and_keeps_a_standby(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    summary = _tick(keeper)
    assert len(summary["created"]) == 2
    assert summary["promoted"] == [summary["created"][0]]
    assert summary["current_kid"] == summary["created"][0]
    assert summary["next_kid"] == summary["created"][1]
    assert served_kids(stack) == set(summary["created"])
    check_invariants(stack)
    # The served document is the deterministic one, with the right cache headers.
    response = requests.get(stack.jwks_url, timeout=5)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    # A second tick with nothing due changes nothing.
    again = _tick(keeper)
    assert again["created"] == again["promoted"] == []
    assert again["published"] is False
    assert again["drift"] == {"jwks": False, "servicenow": 0}


def test_several_rotations_keep_every_invariant(stack: LocalStack, clock: SimulatedClock) -> None:
    keeper = stack.keeper_service()
    ledger: list[IssuedRecord] = []
    _tick(keeper)
    seen_current: list[str] = []
    # Three rotation periods and a grace, ticking every half hour, signing along the way.
    step_seconds = 1800
    periods = 3 * FAST_POLICY.rotation_period + FAST_POLICY.grace
    for step in range(periods // step_seconds + 2):
        clock.advance(step_seconds)
        summary = _tick(keeper)
        if step % 2 == 0:
            _sign(stack, ledger)
        current = str(summary["current_kid"])
        if not seen_current or seen_current[-1] != current:
            seen_current.append(current)
        check_invariants(stack, ledger)
    assert len(seen_current) >= 4, seen_current
    # Tags carry every transition's timestamp; deletion was scheduled for retired keys.
    keys = keyset_keys(stack)
    retired = [tags for tags in keys.values() if tags[names.TAG_STATE] == "retired"]
    assert retired
    for tags in retired:
        assert tags["kms:state"] == "PendingDeletion"
        created, published, activated, deactivated, retired_at = (
            from_iso(tags[name])
            for name in (
                names.TAG_CREATED_AT,
                names.TAG_PUBLISHED_AT,
                names.TAG_ACTIVATED_AT,
                names.TAG_DEACTIVATED_AT,
                names.TAG_RETIRED_AT,
            )
        )
        assert created <= published
        # Every key but the bootstrap one waited out the prepublish window.
        assert published <= activated - FAST_POLICY.prepublish_window or published == activated
        assert activated < deactivated <= retired_at - FAST_POLICY.grace


def test_deletion_is_scheduled_with_the_configured_window(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    keeper = stack.keeper_service()
    first = str(_tick(keeper)["current_kid"])
    clock.advance(FAST_POLICY.rotation_period)
    _tick(keeper)
    clock.advance(FAST_POLICY.grace)
    summary = _tick(keeper)
    assert summary["retired"] == [first]
    arn = next(arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_KID] == first)
    metadata = stack.kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"
    # KMS dates the deletion on its own (real) clock: now + the window.
    days = (metadata["DeletionDate"].timestamp() - time.time()) / 86400
    assert FAST_POLICY.deletion_window_days - 1 < days <= FAST_POLICY.deletion_window_days


def test_rotate_waits_for_the_prepublish_window_unless_forced(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    keeper = stack.keeper_service()
    first = _tick(keeper)
    refused = _tick(keeper, {"action": "rotate"})
    assert refused["promoted"] == []
    assert any("prepublish" in warning for warning in refused["warnings"])
    forced = _tick(keeper, {"action": "rotate", "force": True})
    assert forced["promoted"] == [first["next_kid"]]
    assert any("forced" in warning for warning in forced["warnings"])
    check_invariants(stack)
    clock.advance(FAST_POLICY.prepublish_window)
    on_time = _tick(keeper, {"action": "rotate"})
    assert on_time["promoted"] == [forced["next_kid"]]
    check_invariants(stack)


@pytest.mark.parametrize("which", ["next", "current", "previous"])
def test_revoke_removes_disables_and_replaces(
    stack: LocalStack, clock: SimulatedClock, which: str
) -> None:
    keeper = stack.keeper_service()
    ledger: list[IssuedRecord] = []
    _tick(keeper)
    clock.advance(FAST_POLICY.rotation_period)
    summary = _tick(keeper)  # now: previous, current, next
    kid = str({"current": summary["current_kid"], "next": summary["next_kid"]}.get(which) or "")
    if which == "previous":
        kid = next(
            tags[names.TAG_KID]
            for tags in keyset_keys(stack).values()
            if tags[names.TAG_STATE] == "previous"
        )
    _sign(stack, ledger)
    revoked = _tick(keeper, {"action": "revoke", "kid": kid})
    assert revoked["revoked"] == [kid]
    assert kid not in served_kids(stack)
    assert _state_of(stack, kid) == "revoked"
    assert any("2 x jwks_max_age" in warning for warning in revoked["warnings"])
    arn = next(arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_KID] == kid)
    assert stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "Enabled"
    if which == "current":
        assert revoked["promoted"] == [summary["next_kid"]]
        ledger = [
            IssuedRecord(r.kid, r.issued_at, r.expires_at, revoked=r.kid == kid) for r in ledger
        ]
    check_invariants(stack, ledger)
    # Signing goes on with the new current key.
    _sign(stack, ledger)
    check_invariants(stack, ledger)


def test_revoke_of_an_unknown_kid_changes_nothing(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    before = keyset_keys(stack)
    with pytest.raises(InvalidRequest, match="no active key"):
        _tick(keeper, {"action": "revoke", "kid": "nope"})
    assert keyset_keys(stack) == before


def test_decommission_needs_the_keyset_name_and_removes_everything(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    with pytest.raises(InvalidRequest):
        _tick(keeper, {"action": "decommission", "confirm": "prod"})
    assert len(served_kids(stack)) == 2
    summary = _tick(keeper, {"action": "decommission", "confirm": "test"})
    assert len(summary["retired"]) == 2
    assert served_kids(stack) == set()
    for tags in keyset_keys(stack).values():
        assert tags["kms:state"] == "PendingDeletion"
    with pytest.raises(stack.kms.exceptions.NotFoundException):
        stack.kms.describe_key(KeyId=names.current_alias("test"))
    # A later scheduled tick does not bootstrap the keyset again.
    assert _tick(keeper)["skipped"] == "keyset decommissioned"


def test_a_promotion_cut_short_is_finished_by_the_next_tick(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    keeper = stack.keeper_service()
    first = _tick(keeper)
    clock.advance(FAST_POLICY.prepublish_window)
    # The alias moved, then the tick died before any tag changed.
    next_arn = next(
        arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_KID] == first["next_kid"]
    )
    stack.kms.update_alias(AliasName=names.current_alias("test"), TargetKeyId=next_arn)
    summary = _tick(keeper)
    assert first["next_kid"] in summary["promoted"]
    assert _state_of(stack, str(first["next_kid"])) == "current"
    assert _state_of(stack, str(first["current_kid"])) == "previous"
    check_invariants(stack)


def test_a_lost_create_key_response_is_adopted_not_duplicated(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    clock = stack.clock
    assert isinstance(clock, SimulatedClock)
    # The standby key is revoked, then the replacement's CreateKey "loses" its response:
    # record the intent and create the key as the keeper would, but never register it.
    registry = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")["Body"].read()
    )
    registry["intent_nonce"] = "lost-nonce"
    stack.s3.put_object(
        Bucket=stack.config.bucket, Key="state/registry.json", Body=json.dumps(registry)
    )
    next_kid = str(_tick(keeper)["next_kid"])
    _tick(keeper, {"action": "revoke", "kid": next_kid})  # leaves a fresh next: fine
    # Now simulate the lost response for a brand-new nonce.
    registry = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")["Body"].read()
    )
    standby = next(
        arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_STATE] == "next"
    )
    registry["keys"] = [entry for entry in registry["keys"] if entry["arn"] != standby]
    nonce = next(
        tags[names.TAG_NONCE] for arn, tags in keyset_keys(stack).items() if arn == standby
    )
    registry["intent_nonce"] = nonce
    stack.s3.put_object(
        Bucket=stack.config.bucket, Key="state/registry.json", Body=json.dumps(registry)
    )
    before = set(keyset_keys(stack))
    summary = _tick(keeper)
    assert set(keyset_keys(stack)) == before  # adopted, not created again
    assert summary["created"] != []  # registered again as the standby key
    check_invariants(stack)


def test_two_ticks_at_once_create_one_key_set(stack: LocalStack) -> None:
    keepers = [stack.keeper_service(), stack.keeper_service()]
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run(keeper: KeeperService) -> None:
        try:
            results.append(_tick(keeper))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(keeper,)) for keeper in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(len(result["created"]) for result in results) == 2
    assert (
        any(str(result.get("skipped", "")).startswith("lease held") for result in results)
        or len(results) == 2
    )
    check_invariants(stack)
    assert len(keyset_keys(stack)) == 2


def test_a_policy_that_cannot_rotate_safely_is_refused() -> None:
    with pytest.raises(UnsafePolicy, match="grace"):
        RotationPolicy(grace=600)


def test_unknown_events_are_refused_and_change_nothing(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    for event in (
        {},
        {"action": "explode"},
        {"action": "tick", "extra": 1},
        ["tick"],
        {"action": "rotate", "force": "yes"},
    ):
        with pytest.raises(InvalidRequest):
            keeper.handle(event)
    assert keyset_keys(stack) == {}


def test_a_held_lease_skips_a_tick_quietly_but_refuses_an_operator_action(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    other = Lease(stack.s3, stack.config.bucket, clock, 240)
    other.acquire()
    assert str(_tick(keeper)["skipped"]).startswith("lease held")
    with pytest.raises(LeaseHeld):
        _tick(keeper, {"action": "rotate", "force": True})
    # Once the other tick's lease expires, the next tick proceeds.
    clock.advance(241)
    assert "skipped" not in _tick(keeper)


def test_keys_beyond_the_one_adopted_under_a_nonce_are_disposed_of(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    # A CreateKey retried outside the keeper's control made two keys under one nonce,
    # and neither answer arrived: the registry lists neither, its intent nonce is set.
    standby = next(
        arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_STATE] == "next"
    )
    tags = stack.kms.list_resource_tags(KeyId=standby)["Tags"]
    policy = stack.kms.get_key_policy(KeyId=standby, PolicyName="default")["Policy"]
    twin = stack.kms.create_key(
        KeySpec=stack.config.policy.key_spec,
        KeyUsage="SIGN_VERIFY",
        Policy=policy,
        Tags=[
            # Made a second later than the first (the retry came after).
            {"TagKey": names.TAG_CREATED_AT, "TagValue": to_iso(from_iso(tag["TagValue"]) + 1)}
            if tag["TagKey"] == names.TAG_CREATED_AT
            else tag
            for tag in tags
            if tag["TagKey"] != names.TAG_KID
        ],
    )["KeyMetadata"]["Arn"]
    registry = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")["Body"].read()
    )
    registry["keys"] = [entry for entry in registry["keys"] if entry["arn"] != standby]
    registry["intent_nonce"] = next(t["TagValue"] for t in tags if t["TagKey"] == names.TAG_NONCE)
    stack.s3.put_object(
        Bucket=stack.config.bucket, Key="state/registry.json", Body=json.dumps(registry)
    )
    summary = _tick(keeper)
    # The oldest is adopted as the standby key; the twin is disposed of, never published.
    assert len(summary["created"]) == 1
    assert len(summary["disposed"]) == 1
    assert any("intent nonce" in warning for warning in summary["warnings"])
    keys = keyset_keys(stack)
    assert twin in keys
    assert standby in keys
    assert keys[twin]["kms:state"] == "PendingDeletion"
    assert keys[twin][names.TAG_STATE] == "retired"
    assert keys[standby][names.TAG_STATE] == "next"
    assert keys[twin][names.TAG_KID] not in served_kids(stack)
    check_invariants(stack)


@pytest.mark.parametrize(
    ("bound", "value", "examined"),
    [("NONCE_SCAN_MAX_KEYS", 1, 1), ("NONCE_SCAN_SECONDS", 0.0, 0)],
)
def test_the_nonce_search_stops_at_its_bound_and_says_so(
    stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    bound: str,
    value: float,
    examined: int,
) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    # An unanswered CreateKey left its nonce in the registry (the standby is unlisted) ...
    registry = json.loads(
        stack.s3.get_object(Bucket=stack.config.bucket, Key="state/registry.json")["Body"].read()
    )
    standby = next(
        arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_STATE] == "next"
    )
    registry["keys"] = [entry for entry in registry["keys"] if entry["arn"] != standby]
    registry["intent_nonce"] = next(
        tag["TagValue"]
        for tag in stack.kms.list_resource_tags(KeyId=standby)["Tags"]
        if tag["TagKey"] == names.TAG_NONCE
    )
    stack.s3.put_object(
        Bucket=stack.config.bucket, Key="state/registry.json", Body=json.dumps(registry)
    )
    # ... and the account holds more keys than the search may read, or time runs out.
    monkeypatch.setattr(nonce_adoption, bound, value)
    summary = _tick(keeper)
    gave_up = [warning for warning in summary["warnings"] if "gave up" in warning]
    assert len(gave_up) == 1
    assert f"gave up after {examined} keys" in gave_up[0]
    assert registry["intent_nonce"] in gave_up[0]
    assert summary["next_kid"]  # the tick still leaves a standby key
