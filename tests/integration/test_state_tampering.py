"""KMS is the only root of trust: forged keeper state in the bucket is found, never served.

Each test plays a principal that can write the bucket's `state/` (what the bucket policy
now denies to anyone but the keeper) against the local stack, then runs real keeper
ticks over HTTP and reads back what verifiers would fetch.
"""

from __future__ import annotations

import json

import requests

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.keeper.state_store import RegistryEntry, RegistryStore
from jwtkeys.keys.algorithms import algorithm_named
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.observability import MetricsRecorder
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT, LocalStack

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
