"""Changing policy.algorithm / key_spec on a live keyset: a rollover, or a refusal naming how.

A keyset made with RS256 on RSA_2048 is moved to ES256 on ECC_NIST_P256. Without
policy.rollover_from the keeper changes nothing and says to set it, and the signer says
the same; with it, the key that signs keeps signing RS256, the standby is replaced at
once, the rotation moves signing to ES256, and the old keys leave on the usual schedule.
Every request is also held to the synthesized IAM policies of the configuration in force.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import requests
from cryptography import x509
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws
from jwcrypto import jwt as jose_jwt

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import KeyPairChanged, SigningUnavailable
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.trust_anchor import TrustAnchor
from jwtkeys.keys.algorithms import ALGORITHMS, KeyPair
from jwtkeys.keys.key_store import KeyStore
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import IssuedRecord, check_invariants, keyset_keys, served_kids
from jwtkeys_tools.local.stack import LocalStack
from tests.iam_simulation import IamSession
from tests.servicenow_fixtures import CLIENT_ID
from tests.servicenow_sync_fixtures import (
    SERVICE_EMAIL,
    Instance,
    exchange,
    make_stack,
    put_secret,
    secret_value,
    servicenow_env,
    trust_factory,
)

from ..stack_fixtures import FAST_POLICY

OLD = KeyPair("RS256", "RSA_2048")
NEW = KeyPair("ES256", "ECC_NIST_P256")
CHANGED = replace(FAST_POLICY, algorithm=NEW.algorithm, key_spec=NEW.key_spec)
ROLLOVER = replace(CHANGED, rollover_from=OLD)


def _served(stack: LocalStack) -> dict[str, Any]:
    document: dict[str, Any] = requests.get(stack.jwks_url, timeout=5).json()
    return document


def _sign(stack: LocalStack, ledger: list[IssuedRecord]) -> dict[str, Any]:
    """A token from the signer, verified by jwcrypto against the served JWKS."""
    response = stack.sign_service().handle(
        {"subject": "svc-orders", "audience": "client-test", "ttl_seconds": 3600}
    )
    token = jose_jwt.JWT(
        jwt=response["token"],
        key=jose_jwk.JWKSet.from_json(json.dumps(_served(stack))),
        check_claims=False,
    )
    header = json.loads(token.header)
    assert (header["alg"], header["kid"]) == (response["alg"], response["kid"])
    claims = json.loads(token.claims)
    ledger.append(
        IssuedRecord(kid=response["kid"], issued_at=claims["iat"], expires_at=claims["exp"])
    )
    return response


def _tags_of(stack: LocalStack, kid: str) -> dict[str, str]:
    return next(tags for tags in keyset_keys(stack).values() if tags.get(names.TAG_KID) == kid)


def _live_keyset(stack: LocalStack, iam_session: IamSession) -> dict[str, Any]:
    """An RS256 keyset after its first tick, whose keys predate the algorithm tag."""
    summary = stack.keeper_service().handle({"action": "tick"})
    for arn in keyset_keys(stack):
        stack.kms.untag_resource(KeyId=arn, TagKeys=[names.TAG_ALG])
    # The keeper reads each key's algorithm from its key policy and tags it back.
    stack.keeper_service().handle({"action": "tick"})
    for kid in (summary["current_kid"], summary["next_kid"]):
        assert _tags_of(stack, kid)[names.TAG_ALG] == "RS256"
    assert iam_session.check(stack.aws) == []
    return summary


def _deploy(stack: LocalStack, iam_session: IamSession, policy: RotationPolicy) -> None:
    # Requests made so far are held to the policies they were made under.
    assert iam_session.check(stack.aws) == []
    stack.config.policy = policy


def test_a_change_without_rollover_from_is_refused_by_name_and_changes_nothing(
    stack: LocalStack, iam_session: IamSession
) -> None:
    ledger: list[IssuedRecord] = []
    before = _live_keyset(stack, iam_session)
    _sign(stack, ledger)
    served = _served(stack)
    _deploy(stack, iam_session, CHANGED)

    with pytest.raises(KeyPairChanged) as refused:
        stack.keeper_service().handle({"action": "tick"})
    message = str(refused.value)
    assert before["current_kid"] in message
    assert before["next_kid"] in message
    assert "does not accept (ES256/ECC_NIST_P256)" in message
    assert 'Set policy.rollover_from to {"algorithm": "RS256", "key_spec": "RSA_2048"}' in message
    assert "nothing was changed" in message
    with pytest.raises(KeyPairChanged):
        stack.keeper_service().handle({"action": "rotate", "force": True})

    with pytest.raises(SigningUnavailable) as unavailable:
        stack.sign_service().handle({"subject": "svc-orders", "audience": "client-test"})
    assert "signs RS256, but the keyset signs ES256" in str(unavailable.value)
    assert 'set policy.rollover_from to {"algorithm": "RS256", "key_spec": "RSA_2048"}' in str(
        unavailable.value
    )
    # Nothing moved: the same keys, in the same states, served as before.
    assert _served(stack) == served
    assert _tags_of(stack, before["current_kid"])[names.TAG_STATE] == "current"
    assert _tags_of(stack, before["next_kid"])[names.TAG_STATE] == "next"
    assert len(keyset_keys(stack)) == 2
    check_invariants(stack, ledger)


def test_a_rollover_keeps_the_old_key_signing_until_its_rotation_then_moves_to_the_new_pair(
    stack: LocalStack, clock: SimulatedClock, iam_session: IamSession
) -> None:
    ledger: list[IssuedRecord] = []
    before = _live_keyset(stack, iam_session)
    old_current, old_next = before["current_kid"], before["next_kid"]
    _deploy(stack, iam_session, ROLLOVER)

    # The first tick replaces the standby of the former pair at once.
    summary = stack.keeper_service().handle({"action": "tick"})
    assert summary["retired"] == [old_next]
    assert summary["disposed"] == [old_next]
    (new_next,) = summary["created"]
    assert summary["current_kid"] == old_current
    assert summary["next_kid"] == new_next
    assert not any("rollover complete" in warning for warning in summary["warnings"])
    algs = {key["kid"]: key["alg"] for key in _served(stack)["keys"]}
    assert algs == {old_current: "RS256", new_next: "ES256"}
    assert _tags_of(stack, new_next)[names.TAG_ALG] == "ES256"
    check_invariants(stack, ledger)

    # The old key keeps signing with its own algorithm.
    token = _sign(stack, ledger)
    assert (token["kid"], token["alg"]) == (old_current, "RS256")

    # Its normal rotation moves signing to the new pair.
    promoted_at = None
    retired_at = None
    complete: list[str] = []
    step = 1800
    for _ in range((FAST_POLICY.rotation_period + FAST_POLICY.grace) // step + 4):
        clock.advance(step)
        summary = stack.keeper_service().handle({"action": "tick"})
        if new_next in summary["promoted"]:
            promoted_at = clock.now()
        if old_current in summary["retired"]:
            assert old_current in summary["disposed"]
            retired_at = clock.now()
        complete += [w for w in summary["warnings"] if w.startswith("rollover complete")]
        token = _sign(stack, ledger)
        if promoted_at is None:
            assert (token["kid"], token["alg"]) == (old_current, "RS256")
        else:
            assert (token["kid"], token["alg"]) == (new_next, "ES256")
            header = jose_jws.JWS()
            header.deserialize(token["token"])
            assert header.jose_header["alg"] == "ES256"
        check_invariants(stack, ledger)
    assert promoted_at is not None
    assert retired_at is not None
    # The old key left only after its grace, which outlives every token it signed.
    assert retired_at - promoted_at >= FAST_POLICY.grace
    assert old_current not in served_kids(stack)
    assert {key["alg"] for key in _served(stack)["keys"]} == {"ES256"}
    # Once no key of the former pair is left, the keeper says to remove rollover_from.
    assert complete
    assert "remove policy.rollover_from (RS256/RSA_2048)" in complete[-1]


def test_the_signer_takes_an_untagged_keys_algorithm_from_the_pair_of_its_spec(
    stack: LocalStack, iam_session: IamSession
) -> None:
    """A key made before the alg tag, before the keeper's first tick on this version."""
    before = _live_keyset(stack, iam_session)
    current = next(
        arn
        for arn, tags in keyset_keys(stack).items()
        if tags[names.TAG_KID] == before["current_kid"]
    )
    stack.kms.untag_resource(KeyId=current, TagKeys=[names.TAG_ALG])
    _deploy(stack, iam_session, ROLLOVER)
    # RSA_2048 is the spec of the rollover_from pair: RS256.
    assert _sign(stack, [])["alg"] == "RS256"

    _deploy(stack, iam_session, CHANGED)
    with pytest.raises(SigningUnavailable) as unavailable:
        stack.sign_service().handle({"subject": "svc-orders", "audience": "client-test"})
    message = str(unavailable.value)
    assert "is a RSA_2048 key that cannot sign ES256" in message
    assert "set policy.rollover_from to" in message


def test_the_anchor_flags_a_key_of_a_third_pair(stack: LocalStack) -> None:
    """Made as the keeper would for RS384: neither the configured pair nor the rollover's."""
    config = stack.config
    kms = stack.role_client("kms", config.keeper_role_arn)
    store = KeyStore(
        kms,
        stack.role_client("sts", config.keeper_role_arn),
        kms,
        config.keyset,
        ALGORITHMS[NEW.algorithm],
        NEW.key_spec,
        config.signer_role_arn,
        config.keeper_role_arn,
    )
    anchor = TrustAnchor(store, ROLLOVER.accepted_pairs)

    def made_for(algorithm: str, spec: str) -> str:
        created = stack.kms.create_key(
            KeySpec=spec,
            KeyUsage="SIGN_VERIFY",
            Policy=json.dumps(store.key_policy(ALGORITHMS[algorithm])),
            Tags=[{"TagKey": names.TAG_KEYSET, "TagValue": config.keyset}],
        )
        return str(created["KeyMetadata"]["Arn"])

    third = made_for("RS384", "RSA_2048")
    finding = anchor.check_key(third)
    assert finding is not None
    assert finding.what == "registry_entry"
    assert "a key of RS384/RSA_2048, but the keyset accepts ES256/ECC_NIST_P256 or" in (
        finding.detail
    )
    assert anchor.other_pairs == {third: KeyPair("RS384", "RSA_2048")}
    # The former pair, and the configured one, are accepted with their own algorithm.
    old, new = made_for("RS256", "RSA_2048"), made_for("ES256", "ECC_NIST_P256")
    assert anchor.check_key(old) is None
    assert anchor.algorithm_of(old).jws_name == "RS256"
    assert anchor.check_key(new) is None
    assert anchor.algorithm_of(new).jws_name == "ES256"
    # A PS256 policy on an RSA key is a third pair too, though its spec is the former one.
    assert anchor.check_key(made_for("PS256", "RSA_2048")) is not None


def _certificate_algorithm(instance: Instance, kid: str) -> str:
    """The signature algorithm of the certificate jwtkeys keeps in ServiceNow for `kid`."""
    name = names.servicenow_record_name("test", kid)
    (row,) = [r for r in instance.emulator.rows("sys_certificate") if r["name"] == name]
    certificate = x509.load_pem_x509_certificate(row["pem_certificate"].encode("ascii"))
    oid = certificate.signature_algorithm_oid
    return {
        x509.SignatureAlgorithmOID.RSA_WITH_SHA256: "RS256",
        x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ES256",
    }[oid]


@pytest.mark.parametrize("servicenow_profile", ["zurich-legacy-app"])
def test_servicenow_trusts_each_key_with_its_own_algorithm_through_the_rollover(
    local_aws: LocalAws,
    instance: Instance,
    servicenow_clock: SimulatedClock,
    iam_session: IamSession,
    servicenow_profile: str,
) -> None:
    """Certificates and canaries use each key's algorithm; tokens of both are exchanged."""
    stack = make_stack(
        local_aws,
        servicenow_clock,
        servicenow_env(instance.emulator, put_secret(local_aws, secret_value())),
    )

    def tick() -> dict[str, Any]:
        keeper = stack.keeper_service(trust_factory(local_aws))
        summary: dict[str, Any] = keeper.handle({"action": "tick"})
        return summary

    def exchanged() -> dict[str, Any]:
        response = stack.sign_service().handle(
            {"subject": SERVICE_EMAIL, "audience": CLIENT_ID, "ttl_seconds": 300}
        )
        assert exchange(instance.emulator, response["token"]).status_code == 200
        return response

    first = tick()
    old_current = first["current_kid"]
    assert _certificate_algorithm(instance, old_current) == "RS256"
    _deploy(stack, iam_session, replace(stack.config.policy, **_rollover_changes()))

    summary = tick()
    (new_next,) = summary["created"]
    assert summary["retired"] == [first["next_kid"]]
    assert instance.trusted_kids() == {old_current, new_next}
    assert _certificate_algorithm(instance, old_current) == "RS256"
    assert _certificate_algorithm(instance, new_next) == "ES256"
    assert (exchanged()["alg"], summary["current_kid"]) == ("RS256", old_current)

    # The promotion's canary is signed with the new key's own algorithm, and accepted.
    servicenow_clock.advance(FAST_POLICY.rotation_period)
    promoted = tick()
    assert promoted["promoted"] == [new_next]
    assert not promoted.get("trust_error")
    response = exchanged()
    assert (response["kid"], response["alg"]) == (new_next, "ES256")


def _rollover_changes() -> dict[str, Any]:
    return {"algorithm": NEW.algorithm, "key_spec": NEW.key_spec, "rollover_from": OLD}
