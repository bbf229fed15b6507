"""KMS is the only root of trust: forged keeper state in the bucket is found, never served.

Each test plays a principal that can write the bucket's `state/` (what the bucket policy
now denies to anyone but the keeper) against the local stack, then runs real keeper
ticks over HTTP and reads back what verifiers would fetch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import AwsCallFailed
from jwtkeys.keeper.keeper_record import digest
from jwtkeys.keeper.service import KeeperService
from jwtkeys.keeper.state_store import RegistryEntry, RegistryStore
from jwtkeys.keys.algorithms import algorithm_named
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.observability import MetricsRecorder
from jwtkeys_tools.local.cdn import LocalCdn
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT, LocalStack

from ..stack_fixtures import FAST_POLICY

ATTACKER = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/attacker"


def _registry(stack: LocalStack) -> RegistryStore:
    return RegistryStore(stack.aws.client("s3"), stack.config.bucket)


def _served(stack: LocalStack) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = requests.get(stack.jwks_url, timeout=5).json()["keys"]
    return keys


def _attacker_key(stack: LocalStack, **tags: str) -> tuple[str, dict[str, str]]:
    """A key the attacker made and may sign with offline-style (its own policy)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                # Administered by the account like the keeper's keys, so the keeper can
                # read it; the difference is who may sign.
                "Sid": "AccountAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{LOCAL_ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "AttackerSigns",
                "Effect": "Allow",
                "Principal": {"AWS": ATTACKER},
                "Action": "kms:*",
                "Resource": "*",
            },
        ],
    }
    arn = stack.kms.create_key(
        KeyUsage="SIGN_VERIFY",
        KeySpec="RSA_2048",
        Policy=json.dumps(policy),
        Tags=[{"TagKey": key, "TagValue": value} for key, value in tags.items()],
    )["KeyMetadata"]["Arn"]
    der = stack.kms.get_public_key(KeyId=arn)["PublicKey"]
    return arn, public_jwk(public_key_from_der(der), algorithm_named("RS256"))


def test_an_injected_registry_entry_is_never_published(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    # The attacker tags its own key into the keyset (the key-tampering rule would see
    # that) and lists it in the registry with its public key.
    arn, jwk = _attacker_key(
        stack, **{names.TAG_KEYSET: "test", names.TAG_STATE: "previous", names.TAG_KID: "x"}
    )
    store = _registry(stack)
    registry = store.load()
    registry.keys.append(RegistryEntry(arn=arn, kid=jwk["kid"], jwk=jwk))
    store.save(registry)

    summary = keeper.handle({"action": "tick"})

    assert jwk["kid"] not in {key["kid"] for key in _served(stack)}
    assert len(_served(stack)) == 2
    (finding,) = summary["tampering"]
    assert finding["what"] == "registry_entry"
    assert finding["arn"] == arn
    assert "never published" in finding["detail"]
    assert "key policy" in finding["detail"]


def test_a_replaced_public_jwk_is_served_as_kms_holds_it(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    first = keeper.handle({"action": "tick"})
    honest = {key["kid"]: key for key in _served(stack)}
    # The attacker swaps the current key's registered JWK for its own public key: the
    # keeper would publish it, and its tokens would verify as the current key's.
    _, forged = _attacker_key(stack)
    store = _registry(stack)
    registry = store.load()
    (entry,) = [entry for entry in registry.keys if entry.kid == first["current_kid"]]
    entry.jwk = forged
    store.save(registry)
    lines: list[str] = []
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(catalog.KEEPER_SERVICE, "test", write=lines.append)
    )

    summary = keeper.handle({"action": "tick"})

    served = {key["kid"]: key for key in _served(stack)}
    assert served == honest
    assert forged["n"] not in {key["n"] for key in served.values()}
    (finding,) = summary["tampering"]
    assert finding["arn"] == entry.arn
    assert "KMS's is used" in finding["detail"]
    # Counted for the state-tampering alarm, and the registry holds KMS's key again.
    assert [line for line in map(json.loads, lines) if line.get("StateTampering") == [1.0]]
    (repaired,) = [e for e in store.load().keys if e.arn == entry.arn]
    assert repaired.jwk == honest[first["current_kid"]]


def test_a_key_carrying_the_pending_nonce_but_not_the_keepers_policy_is_not_adopted(
    stack: LocalStack,
) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    # A CreateKey's answer "was lost": its nonce is in the registry, and the attacker
    # (who can read state/) makes a key carrying it, under a policy letting it sign.
    store = _registry(stack)
    registry = store.load()
    registry.intent_nonce = "f" * 32
    store.save(registry)
    arn, jwk = _attacker_key(
        stack,
        **{names.TAG_KEYSET: "test", names.TAG_STATE: "next", names.TAG_NONCE: "f" * 32},
    )
    # The standby goes away (revoked), so the next tick must find or make a new one.
    standby = keeper.handle({"action": "tick"})["next_kid"]
    summary = keeper.handle({"action": "revoke", "kid": standby})

    assert jwk["kid"] not in {key["kid"] for key in _served(stack)}
    assert arn not in {entry.arn for entry in store.load().keys}
    assert summary["created"]
    assert [f for f in summary["tampering"] if f["arn"] == arn and "key policy" in f["detail"]]


def test_a_lease_beyond_the_longest_hold_is_tampering_not_a_stall(stack: LocalStack) -> None:
    # Before: a lease expiring in a year made every tick give up quietly ("lease held")
    # for a year, with every alarm quiet.
    stack.aws.client("s3").put_object(
        Bucket=stack.config.bucket,
        Key=f"{names.STATE_PREFIX}lease.json",
        Body=json.dumps({"holder": "x", "expires_at": stack.clock.now() + 365 * 86400}),
    )

    summary = stack.keeper_service().handle({"action": "tick"})

    assert "skipped" not in summary
    assert len(summary["created"]) == 2
    (finding,) = summary["tampering"]
    assert finding["what"] == "lease"


def _jwks_object(stack: LocalStack) -> bytes:
    body: bytes = stack.s3.get_object(Bucket=stack.config.bucket, Key=names.JWKS_OBJECT_KEY)[
        "Body"
    ].read()
    return body


def _put_jwks(stack: LocalStack, body: bytes) -> None:
    # The test's own (administrator) credentials: on AWS the bucket policy denies this
    # write to all but the keeper's role; the test plays it having happened anyway.
    stack.s3.put_object(Bucket=stack.config.bucket, Key=names.JWKS_OBJECT_KEY, Body=body)


def _tampering_counted(lines: list[str]) -> list[float]:
    return [v for line in map(json.loads, lines) for v in line.get("StateTampering", [])]


def test_an_overwritten_jwks_is_reported_then_rewritten(stack: LocalStack) -> None:
    # Before: the next tick rewrote the object silently; nobody was told of the attack.
    stack.keeper_service().handle({"action": "tick"})
    honest = {key["kid"] for key in _served(stack)}
    _, attacker = _attacker_key(stack)
    _put_jwks(stack, json.dumps({"keys": [*_served(stack), attacker]}).encode())
    lines: list[str] = []
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(catalog.KEEPER_SERVICE, "test", write=lines.append)
    )

    summary = keeper.handle({"action": "tick"})

    (finding,) = summary["tampering"]
    assert finding["what"] == "served_jwks"
    assert "not the one the keeper last wrote" in finding["detail"]
    assert finding["repaired"] is True
    assert summary["published"] is True
    assert {key["kid"] for key in _served(stack)} == honest
    assert _tampering_counted(lines) == [1.0]
    # The record follows the rewrite: the next tick finds nothing.
    assert "tampering" not in keeper.handle({"action": "tick"})


def test_a_deleted_jwks_is_tampering_too(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    stack.s3.delete_object(Bucket=stack.config.bucket, Key=names.JWKS_OBJECT_KEY)

    summary = keeper.handle({"action": "tick"})

    (finding,) = summary["tampering"]
    assert finding["what"] == "served_jwks"
    assert "gone" in finding["detail"]
    assert len(_served(stack)) == 2


def test_a_publish_whose_registry_save_was_lost_is_not_tampering(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    first = keeper.handle({"action": "tick"})
    # The revocation's JWKS is written, then every registry write fails: the registry
    # keeps the digest of the JWKS before it.
    stack.aws.inject_faults("http500", service="s3", operation="PutObject", after=2, count=None)
    with pytest.raises(AwsCallFailed, match="PutObject"):
        keeper.handle({"action": "revoke", "kid": first["next_kid"]})
    stack.aws.clear_faults()
    assert first["next_kid"] not in {key["kid"] for key in _served(stack)}
    assert _registry(stack).load().jwks_sha256 != digest(_jwks_object(stack))

    summary = keeper.handle({"action": "tick"})

    assert "tampering" not in summary
    assert first["next_kid"] not in {key["kid"] for key in _served(stack)}


def test_a_forged_decommissioned_flag_is_tampering_not_an_idle_keyset(
    stack: LocalStack, clock: SimulatedClock
) -> None:
    # Before: every tick answered "keyset decommissioned" and did nothing, alarms quiet.
    keeper = stack.keeper_service()
    first = keeper.handle({"action": "tick"})
    store = _registry(stack)
    registry = store.load()
    registry.decommissioned = True
    registry.decommissioned_at = clock.now()  # even with a forged record: KMS disagrees
    store.save(registry)
    lines: list[str] = []
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(catalog.KEEPER_SERVICE, "test", write=lines.append)
    )
    clock.advance(FAST_POLICY.rotation_period)

    summary = keeper.handle({"action": "tick"})

    assert "skipped" not in summary
    (finding,) = summary["tampering"]
    assert finding["what"] == "decommissioned"
    assert "signing alias still names" in finding["detail"]
    assert first["next_kid"] in summary["promoted"]
    assert _tampering_counted(lines) == [1.0]
    assert store.load().decommissioned is False
    assert "tampering" not in keeper.handle({"action": "tick"})


def test_a_real_decommission_idles_without_findings(stack: LocalStack) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    # A key long deleted whose entry stayed (its disposal's registry save was lost):
    # nothing of it is left to dispose of, and it must not make the record look forged.
    store = _registry(stack)
    registry = store.load()
    gone = registry.keys[0].arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    registry.keys.append(RegistryEntry(arn=gone, kid="gone", jwk=dict(registry.keys[0].jwk)))
    store.save(registry)
    keeper.handle({"action": "decommission", "confirm": "test"})
    assert _registry(stack).load().decommissioned_at is not None

    summary = keeper.handle({"action": "tick"})

    assert summary["skipped"] == "keyset decommissioned"
    assert "tampering" not in summary
    assert _served(stack) == []


@pytest.fixture
def behind_cdn(
    stack: LocalStack, clock: SimulatedClock
) -> Iterator[tuple[LocalCdn, KeeperService]]:
    """A keeper reading the served JWKS through a CDN (as on AWS), past the settle window
    of its first publish (the CDN is never invalidated locally: it expires copies)."""
    with LocalCdn(stack.public_base_url, clock) as cdn:
        keeper = stack.keeper_service(public_base_url=cdn.url)
        keeper.handle({"action": "tick"})
        clock.advance(2 * FAST_POLICY.jwks_max_age + FAST_POLICY.tick_interval)
        yield cdn, keeper


def test_a_served_copy_the_keeper_never_wrote_is_tampering_not_drift(
    stack: LocalStack, behind_cdn: tuple[LocalCdn, KeeperService]
) -> None:
    cdn, keeper = behind_cdn
    honest = _jwks_object(stack)
    _, attacker = _attacker_key(stack)
    # The attacker's copy reaches the CDN (a verifier's fetch caches it), then the
    # origin gets the keeper's bytes back: the bucket alone looks untouched.
    stack.s3.put_object(
        Bucket=stack.config.bucket,
        Key=names.JWKS_OBJECT_KEY,
        Body=json.dumps({"keys": [attacker]}).encode(),
        CacheControl=f"public, max-age={FAST_POLICY.jwks_max_age}",
    )
    requests.get(f"{cdn.url}/{names.JWKS_OBJECT_KEY}", timeout=5)
    _put_jwks(stack, honest)

    summary = keeper.handle({"action": "tick"})

    (finding,) = summary["tampering"]
    assert finding["what"] == "served_jwks"
    assert "neither the one the keeper last wrote" in finding["detail"]
    assert finding["repaired"] is False
    assert summary["drift"]["jwks"] is True
    assert summary["published"] is False


def test_a_served_jwks_that_cannot_be_fetched_stays_drift(
    behind_cdn: tuple[LocalCdn, KeeperService],
) -> None:
    cdn, keeper = behind_cdn
    cdn.stop()

    summary = keeper.handle({"action": "tick"})

    assert "tampering" not in summary
    assert summary["drift"]["jwks"] is True
    assert [w for w in summary["warnings"] if "cannot fetch the served JWKS" in w]


def test_an_overwritten_jwks_is_counted_even_when_its_rewrite_fails(stack: LocalStack) -> None:
    stack.keeper_service().handle({"action": "tick"})
    _, attacker = _attacker_key(stack)
    _put_jwks(stack, json.dumps({"keys": [attacker]}).encode())
    lines: list[str] = []
    keeper = stack.keeper_service(
        metrics=MetricsRecorder(catalog.KEEPER_SERVICE, "test", write=lines.append)
    )
    # The lease's write passes; the JWKS rewrite (and all after it) fails.
    stack.aws.inject_faults("http500", service="s3", operation="PutObject", after=1)

    with pytest.raises(AwsCallFailed, match="found tampering: served_jwks"):
        keeper.handle({"action": "tick"})

    stack.aws.clear_faults()
    assert _tampering_counted(lines) == [1.0]


def test_a_registry_without_the_record_adopts_the_keepers_jwks_then_guards_it(
    stack: LocalStack,
) -> None:
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    # A registry as a keeper before the record wrote it, over an unchanged keyset.
    store = _registry(stack)
    registry = store.load()
    registry.jwks_sha256 = None
    store.save(registry)

    assert "tampering" not in keeper.handle({"action": "tick"})
    assert store.load().jwks_sha256 == digest(_jwks_object(stack))
    _, attacker = _attacker_key(stack)
    _put_jwks(stack, json.dumps({"keys": [attacker]}).encode())
    (finding,) = keeper.handle({"action": "tick"})["tampering"]
    assert finding["what"] == "served_jwks"
