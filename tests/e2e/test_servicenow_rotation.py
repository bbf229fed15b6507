"""End to end: the real keeper and signer, the real ServiceNow wiring, the emulated instance.

The keeper builds its trust target exactly as the Lambda does
(`jwtkeys.servicenow.trust_target` -> `ServiceNowTrustTarget.from_settings`, with
boto3 pointed at the local AWS endpoint by the environment), on the emulator's own
simulated clock. Tokens come from the signing service and are exchanged at the
emulator's `/oauth_token.do` as a ServiceNow client would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from jwtkeys import names, servicenow
from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.service import KeeperService
from jwtkeys.observability import MetricsRecorder
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import IssuedRecord, check_invariants, keyset_keys
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_sync_fixtures import (
    CANARY_EMAIL,
    SERVICE_EMAIL,
    Instance,
    exchange,
    make_stack,
    put_secret,
    secret_value,
    servicenow_env,
)

from ..servicenow_fixtures import (
    ALL_PROFILES,
    CLIENT_ID,
    INTEGRATION_USER,
    certificate_pem,
    signing_key,
)
from ..stack_fixtures import FAST_POLICY

STEP = 1800


@dataclass
class Token:
    token: str
    kid: str
    issued_at: float
    expires_at: float
    used: bool = False


@dataclass
class Deployment:
    stack: LocalStack
    keeper: KeeperService
    instance: Instance
    clock: SimulatedClock
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def tick(self, action: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.keeper.handle(action or {"action": "tick"})

    def sign(self, ttl: int = FAST_POLICY.max_token_ttl) -> Token:
        response = self.stack.sign_service().handle(
            {"subject": SERVICE_EMAIL, "audience": CLIENT_ID, "ttl_seconds": ttl}
        )
        now = self.clock.now()
        return Token(str(response["token"]), str(response["kid"]), now, now + ttl)

    def metric(self, name: str) -> list[float]:
        """Every value the keeper emitted for `name` (EMF writes one value or a list)."""
        values: list[float] = []
        for doc in self.metrics:
            value = doc.get(name)
            if value is not None:
                values.extend(float(v) for v in (value if isinstance(value, list) else [value]))
        return values


@pytest.fixture
def deployment(
    local_aws_env: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> Deployment:
    secret = put_secret(local_aws_env, secret_value())
    stack = make_stack(local_aws_env, servicenow_clock, servicenow_env(instance.emulator, secret))
    metrics: list[dict[str, Any]] = []
    recorder = MetricsRecorder(
        "jwtkeys-keeper", "test", write=lambda line: metrics.append(json.loads(line))
    )
    keeper = stack.keeper_service(trust_factory=servicenow.trust_target, metrics=recorder)
    return Deployment(stack, keeper, instance, servicenow_clock, metrics)


def _ledger(tokens: list[Token], revoked: frozenset[str] = frozenset()) -> list[IssuedRecord]:
    return [IssuedRecord(t.kid, t.issued_at, t.expires_at, t.kid in revoked) for t in tokens]


def test_tokens_of_old_and_new_keys_are_accepted_through_several_rotations(
    deployment: Deployment,
) -> None:
    first = deployment.tick()
    assert first["promoted"] == [first["created"][0]]
    assert first["drift"]["servicenow"] == 0
    check_invariants(deployment.stack, trusted_kids=deployment.instance.trusted_kids)
    tokens: list[Token] = []
    currents: list[str] = []
    overlaps = 0
    steps = (3 * FAST_POLICY.rotation_period + FAST_POLICY.grace) // STEP + 2
    for _ in range(steps):
        # Three tokens per step, each exchanged at a later moment while it is valid.
        tokens.extend(deployment.sign() for _ in range(3))
        deployment.clock.advance(STEP)
        summary = deployment.tick()
        assert "trust_error" not in summary, summary
        check_invariants(
            deployment.stack, _ledger(tokens), trusted_kids=deployment.instance.trusted_kids
        )
        if not currents or currents[-1] != summary["current_kid"]:
            currents.append(str(summary["current_kid"]))
        accepted_kids = set()
        now = deployment.clock.now()
        issued_at_seen: set[float] = set()
        for token in tokens:
            if token.used or now > token.expires_at or token.issued_at in issued_at_seen:
                continue
            issued_at_seen.add(token.issued_at)  # one token of each batch per moment
            token.used = True
            response = exchange(deployment.instance.emulator, token.token)
            assert response.status_code == 200, deployment.instance.emulator.log[-3:]
            accepted_kids.add(token.kid)
        # A fresh token from the key that signs now is accepted too.
        fresh = deployment.sign()
        assert exchange(deployment.instance.emulator, fresh.token).status_code == 200
        accepted_kids.add(fresh.kid)
        overlaps += len(accepted_kids) > 1
    assert len(currents) >= 4, currents
    assert overlaps >= 3  # after each rotation, old-key and new-key tokens side by side
    # No drift, no failures; certificates expire well after the keys that hold them.
    assert set(deployment.metric("ServiceNowDrift")) == {0.0}
    assert set(deployment.metric("ServiceNowSyncFailures")) == {0.0}
    assert set(deployment.metric("CanaryExchangeFailures")) == {0.0}
    assert min(deployment.metric("CertificateExpiresInDays")) > 14  # the alarm threshold
    assert set(deployment.metric("ServiceNowRecords")) <= {4.0, 6.0}


def test_revocation_ends_the_apps_sessions_and_untrusts_the_key(deployment: Deployment) -> None:
    deployment.tick()
    token = deployment.sign()
    spare = deployment.sign()
    granted = exchange(deployment.instance.emulator, token.token)
    assert granted.status_code == 200
    access_token = granted.json()["access_token"]
    emulator = deployment.instance.emulator

    def table_api_status() -> int:
        return requests.get(
            f"{emulator.url}/api/now/table/sys_user",
            params={"sysparm_limit": "1"},
            headers={"Authorization": f"Bearer {access_token}"},
            verify=emulator.ca_bundle,
            timeout=10,
        ).status_code

    assert table_api_status() == 200
    summary = deployment.tick({"action": "revoke", "kid": token.kid})
    assert summary["revoked"] == [token.kid]
    assert any("ended" in warning and "servicenow" in warning for warning in summary["warnings"])
    # The session minted with the compromised key is over, and the key is not trusted.
    assert table_api_status() == 401
    assert exchange(emulator, spare.token).status_code == 401
    assert token.kid not in deployment.instance.trusted_kids()
    # ServiceNow confirmed the standby before it was promoted: nothing to say loudly.
    assert "unconfirmed_promotion" not in summary
    assert not any("UNCONFIRMED" in warning for warning in summary["warnings"])
    assert deployment.metric("UnconfirmedPromotions")[-1] == 0.0
    # The standby key took over at once, and ServiceNow already trusted it.
    replacement = deployment.sign()
    assert replacement.kid == summary["current_kid"] != token.kid
    assert exchange(emulator, replacement.token).status_code == 200
    check_invariants(
        deployment.stack,
        _ledger([token, spare, replacement], revoked=frozenset({token.kid})),
        trusted_kids=deployment.instance.trusted_kids,
    )


def test_a_refused_canary_holds_the_rotation_until_servicenow_accepts_the_key(
    deployment: Deployment,
) -> None:
    first = deployment.tick()
    current, standby = first["current_kid"], first["next_kid"]
    # The canary subject configured is an admin: ServiceNow refuses its tokens.
    emulator = deployment.instance.emulator
    emulator.add_user("shadow", email="shadow@jwtkeys.test", roles=("admin",))
    stack = deployment.stack
    env = dict(stack.config.servicenow_env)
    env["JWTKEYS_SERVICENOW_CANARY_SUBJECT"] = "shadow@jwtkeys.test"
    stack.config.servicenow_env = env
    deployment.clock.advance(FAST_POLICY.rotation_period)
    held_keeper = stack.keeper_service(trust_factory=servicenow.trust_target)
    held = held_keeper.handle({"action": "tick"})
    assert held["promoted"] == []
    assert held["current_kid"] == current
    assert any("not confirmed" in warning for warning in held["warnings"])
    assert any("Grant access to admin" in line for line in emulator.log)
    # Put right: the next tick promotes the standby key.
    env["JWTKEYS_SERVICENOW_CANARY_SUBJECT"] = CANARY_EMAIL
    stack.config.servicenow_env = env
    promoted = stack.keeper_service(trust_factory=servicenow.trust_target).handle(
        {"action": "tick"}
    )
    assert promoted["promoted"] == [standby]
    check_invariants(stack, trusted_kids=deployment.instance.trusted_kids)


def test_a_revocation_promotes_a_standby_servicenow_does_not_confirm_and_says_so(
    deployment: Deployment,
) -> None:
    first = deployment.tick()
    compromised, standby = first["current_kid"], first["next_kid"]
    # The canary subject is now an admin: ServiceNow refuses the standby's canary.
    emulator = deployment.instance.emulator
    emulator.add_user("shadow", email="shadow@jwtkeys.test", roles=("admin",))
    stack = deployment.stack
    env = dict(stack.config.servicenow_env)
    env["JWTKEYS_SERVICENOW_CANARY_SUBJECT"] = "shadow@jwtkeys.test"
    stack.config.servicenow_env = env
    metrics: list[dict[str, Any]] = []
    recorder = MetricsRecorder(
        "jwtkeys-keeper", "test", write=lambda line: metrics.append(json.loads(line))
    )
    keeper = stack.keeper_service(trust_factory=servicenow.trust_target, metrics=recorder)
    summary = keeper.handle({"action": "revoke", "kid": compromised})
    # The compromised key is revoked and disabled whatever ServiceNow says.
    assert summary["revoked"] == [compromised]
    assert compromised not in deployment.instance.trusted_kids()
    arn = next(
        arn for arn, tags in keyset_keys(stack).items() if tags[names.TAG_KID] == compromised
    )
    assert stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "Enabled"
    # The standby signs now, and the report says loudly that it is unconfirmed.
    assert summary["promoted"] == [standby]
    assert summary["current_kid"] == standby
    unconfirmed = summary["unconfirmed_promotion"]
    assert unconfirmed["kid"] == standby
    assert unconfirmed["verifier"] == "servicenow"
    assert "canary token" in unconfirmed["error"]
    record = f"jwt_verifier_map jwtkeys/test/{standby}"
    assert any(line.startswith(record) and CLIENT_ID in line for line in unconfirmed["records"])
    assert any(
        "PROMOTED UNCONFIRMED" in warning and record in warning for warning in summary["warnings"]
    )
    held = Deployment(stack, keeper, deployment.instance, deployment.clock, metrics)
    assert held.metric("UnconfirmedPromotions") == [1.0]
    assert deployment.sign().kid == standby


def test_a_revocation_during_a_servicenow_outage_still_revokes_and_names_the_records(
    deployment: Deployment,
) -> None:
    first = deployment.tick()
    compromised, standby = first["current_kid"], first["next_kid"]
    emulator = deployment.instance.emulator
    emulator.inject_fault("http500", count=1000, path_contains="/api/now/")
    summary = deployment.tick({"action": "revoke", "kid": compromised})
    emulator.clear_faults()
    # Nothing ServiceNow says (or fails to say) keeps the compromised key signing.
    assert summary["revoked"] == [compromised]
    assert summary["promoted"] == [standby]
    arn = next(
        arn
        for arn, tags in keyset_keys(deployment.stack).items()
        if tags[names.TAG_KID] == compromised
    )
    assert deployment.stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] != "Enabled"
    unconfirmed = summary["unconfirmed_promotion"]
    assert unconfirmed["kid"] == standby
    assert "HTTP 500" in unconfirmed["error"]
    assert f"sys_certificate jwtkeys/test/{standby}" in unconfirmed["records"]
    assert deployment.metric("UnconfirmedPromotions")[-1] == 1.0
    # Its sessions could not be ended either: said, not raised (the key is revoked).
    assert "HTTP 500" in summary["sessions_not_ended"]
    assert deployment.sign().kid == standby
    # ServiceNow back: the next tick removes the revoked key's records and trusts the new one.
    recovered = deployment.tick()
    assert "unconfirmed_promotion" not in recovered
    assert deployment.instance.trusted_kids() == {standby, recovered["next_kid"]}


def test_a_foreign_verifier_map_on_the_app_is_reported_at_each_tick_until_removed(
    deployment: Deployment,
) -> None:
    deployment.tick()
    assert deployment.metric("ForeignTrustRecords") == [0.0]
    emulator = deployment.instance.emulator
    now = deployment.clock.now()
    pem = certificate_pem(signing_key("ES256"), not_before=now - 60, not_after=now + 86400)
    certificate = emulator.add_record(
        "sys_certificate", {"name": "admin's", "pem_certificate": pem}
    )
    stray = {
        "name": "admin's",
        "kid": "admin-kid",
        "sys_certificate": certificate,
        "oauth_jwt": deployment.instance.app_sys_id,
    }
    stray_id = emulator.add_record("jwt_verifier_map", stray)
    for _ in range(2):
        deployment.clock.advance(STEP)
        summary = deployment.tick()
        assert [(f["sys_id"], f["kid"]) for f in summary["foreign_trust"]] == [
            (stray_id, "admin-kid")
        ]
        assert any("admin-kid" in w and "not jwtkeys'" in w for w in summary["warnings"])
        assert deployment.metric("ForeignTrustRecords")[-1] == 1.0
        row = next(r for r in emulator.rows("jwt_verifier_map") if r["sys_id"] == stray_id)
        assert {field: row[field] for field in stray} == stray
    # An operator removes it: the next tick reports nothing.
    removed = requests.delete(
        f"{emulator.url}/api/now/table/jwt_verifier_map/{stray_id}",
        auth=INTEGRATION_USER,
        verify=emulator.ca_bundle,
        timeout=10,
    )
    assert removed.status_code == 204
    summary = deployment.tick()
    assert "foreign_trust" not in summary
    assert deployment.metric("ForeignTrustRecords")[-1] == 0.0


def test_a_servicenow_outage_during_a_due_rotation_promotes_nothing(
    deployment: Deployment,
) -> None:
    first = deployment.tick()
    deployment.clock.advance(FAST_POLICY.rotation_period)
    emulator = deployment.instance.emulator
    emulator.inject_fault("http500", count=1000, path_contains="/api/now/")
    held = deployment.tick()
    emulator.clear_faults()
    assert held["promoted"] == []
    assert held["current_kid"] == first["current_kid"]
    assert "HTTP 500" in held["trust_error"]
    assert deployment.metric("ServiceNowSyncFailures")[-1] == 1.0
    recovered = deployment.tick()
    assert recovered["promoted"] == [first["next_kid"]]
    check_invariants(deployment.stack, trusted_kids=deployment.instance.trusted_kids)


@pytest.mark.parametrize("servicenow_profile", ALL_PROFILES)
def test_a_rotation_and_a_revocation_on_every_instance_profile(
    deployment: Deployment, servicenow_profile: str
) -> None:
    first = deployment.tick()
    emulator = deployment.instance.emulator
    if servicenow_profile == "pessimistic":
        # Name fields of 40 characters cannot hold jwtkeys/test/<kid>: refused before
        # anything is written, and no key is promoted into a trust ServiceNow lacks.
        assert "holds 40 characters" in first.get("trust_error", ""), first
        assert first["promoted"] == []
        assert emulator.rows("sys_certificate") == []
        # The container's first action ran the doctor's checks: the dictionary failed.
        assert deployment.metric("ServiceNowPreflightFailures") == [1.0]
        return
    assert "trust_error" not in first, first
    assert deployment.metric("ServiceNowPreflightFailures") == [0.0]
    assert exchange(emulator, deployment.sign().token).status_code == 200
    currents = [first["current_kid"]]
    for _ in range((FAST_POLICY.rotation_period + FAST_POLICY.prepublish_window) // STEP + 2):
        deployment.clock.advance(STEP)
        summary = deployment.tick()
        assert "trust_error" not in summary, summary
        if summary["current_kid"] != currents[-1]:
            currents.append(summary["current_kid"])
            break
    assert len(currents) == 2, currents
    token = deployment.sign()
    assert token.kid == currents[-1]
    assert exchange(emulator, token.token).status_code == 200
    revoked = deployment.tick({"action": "revoke", "kid": token.kid})
    assert revoked["revoked"] == [token.kid]
    assert "sessions_not_ended" not in revoked, revoked
    assert exchange(emulator, deployment.sign().token).status_code == 200
    check_invariants(deployment.stack, trusted_kids=deployment.instance.trusted_kids)
