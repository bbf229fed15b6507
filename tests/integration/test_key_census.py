"""The key census: a key tagged into the keyset that the registry does not list is reported.

An administrator (the test's own credentials) creates a SIGN_VERIFY key and tags it with
the keyset, as someone else, or an old bug, could. Real keeper ticks over HTTP must report
it at each census as tampering, never adopt, publish or delete it, and take no census
(no Tagging API call) between two.
"""

from __future__ import annotations

import json

import requests

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.state_store import RegistryStore
from jwtkeys.keys.algorithms import algorithm_named
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.observability import MetricsRecorder
from jwtkeys_tools.local.stack import LocalStack

from ..stack_fixtures import FAST_POLICY

CENSUS = ("tagging", "GetResources")


def _registry(stack: LocalStack) -> RegistryStore:
    return RegistryStore(stack.aws.client("s3"), stack.config.bucket)


def _foreign_key(stack: LocalStack, **tags: str) -> str:
    """A signing key made with the administrator's credentials and the default policy."""
    arn: str = stack.kms.create_key(
        KeyUsage="SIGN_VERIFY",
        KeySpec="RSA_2048",
        Tags=[{"TagKey": key, "TagValue": value} for key, value in tags.items()],
    )["KeyMetadata"]["Arn"]
    return arn


def _unregistered(summary: dict[str, object]) -> list[str]:
    findings = summary.get("tampering", [])
    assert isinstance(findings, list)
    return [f["arn"] for f in findings if f["what"] == "unregistered_key"]


def _served_kids(stack: LocalStack) -> set[str]:
    return {key["kid"] for key in requests.get(stack.jwks_url, timeout=5).json()["keys"]}


def test_a_key_tagged_with_the_keyset_by_someone_else_is_reported_at_each_census(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    lines: list[str] = []
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(catalog.KEEPER_SERVICE, "test", write=lines.append)
    )
    stack.aws.reset_calls()
    first = keeper.handle({"action": "tick"})
    # The first action takes a census (a key planted before deployment counts too).
    assert stack.aws.calls().count(CENSUS) == 1
    assert _unregistered(first) == []
    foreign = _foreign_key(stack, **{names.TAG_KEYSET: "test", names.TAG_STATE: "next"})
    # Another keyset's key is none of this keyset's business.
    _foreign_key(stack, **{names.TAG_KEYSET: "other"})

    stack.aws.reset_calls()
    between = keeper.handle({"action": "tick"})
    clock.advance(FAST_POLICY.census_interval - 1)
    keeper.handle({"action": "tick"})

    # Between two censuses: no Tagging API call, nothing reported yet.
    assert CENSUS not in stack.aws.calls()
    assert _unregistered(between) == []

    clock.advance(1)
    lines.clear()
    stack.aws.reset_calls()
    summary = keeper.handle({"action": "tick"})

    assert stack.aws.calls().count(CENSUS) == 1
    assert _unregistered(summary) == [foreign]
    (finding,) = [f for f in summary["tampering"] if f["what"] == "unregistered_key"]
    assert "not in the registry" in finding["detail"]
    assert "Enabled" in finding["detail"]
    counted = [v for line in map(json.loads, lines) for v in line.get("StateTampering", [])]
    assert counted == [1.0]
    # Never adopted, published nor deleted: an operator decides.
    assert foreign not in {entry.arn for entry in _registry(stack).load().keys}
    assert stack.kms.describe_key(KeyId=foreign)["KeyMetadata"]["KeyState"] == "Enabled"
    foreign_kid = public_jwk(
        public_key_from_der(stack.kms.get_public_key(KeyId=foreign)["PublicKey"]),
        algorithm_named("RS256"),
    )["kid"]
    assert foreign_kid not in _served_kids(stack)

    # Reported again at the next census, until it is gone.
    clock.advance(FAST_POLICY.census_interval)
    assert _unregistered(keeper.handle({"action": "tick"})) == [foreign]
    stack.kms.schedule_key_deletion(KeyId=foreign, PendingWindowInDays=7)
    clock.advance(FAST_POLICY.census_interval)
    assert _unregistered(keeper.handle({"action": "tick"})) == []


def test_registered_disposed_and_pending_nonce_keys_are_not_reported(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    # A revoked key is disposed of (listed under `disposed`, pending deletion).
    standby = keeper.handle({"action": "tick"})["next_kid"]
    keeper.handle({"action": "revoke", "kid": standby})
    store = _registry(stack)
    registry = store.load()
    assert registry.disposed
    assert len(registry.keys) == 2
    # An unanswered CreateKey's key: its nonce is still recorded, and nonce adoption (not
    # the census) judges it when the keyset next needs a standby.
    registry.intent_nonce = "e" * 32
    store.save(registry)
    pending = _foreign_key(
        stack, **{names.TAG_KEYSET: "test", names.TAG_STATE: "next", names.TAG_NONCE: "e" * 32}
    )

    clock.advance(FAST_POLICY.census_interval)
    stack.aws.reset_calls()
    summary = keeper.handle({"action": "tick"})

    assert CENSUS in stack.aws.calls()
    assert _unregistered(summary) == []
    # The rotation that day needed a standby: nonce adoption judged the key (not the
    # keeper's policy: refused, reported as such) and never listed it.
    assert [f for f in summary["tampering"] if f["arn"] == pending and "policy" in f["detail"]]
    assert pending not in {entry.arn for entry in store.load().keys}


def test_a_disposed_entry_whose_key_is_back_in_use_is_reported(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    # `disposed` is in the bucket: listing a key there must not hide it from the census
    # once its deletion is cancelled.
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    standby = keeper.handle({"action": "tick"})["next_kid"]
    keeper.handle({"action": "revoke", "kid": standby})
    (disposed,) = _registry(stack).load().disposed
    stack.kms.cancel_key_deletion(KeyId=disposed["arn"])

    clock.advance(FAST_POLICY.census_interval)
    summary = keeper.handle({"action": "tick"})

    assert _unregistered(summary) == [disposed["arn"]]
    (finding,) = [f for f in summary["tampering"] if f["what"] == "unregistered_key"]
    assert "listed as disposed of" in finding["detail"]
