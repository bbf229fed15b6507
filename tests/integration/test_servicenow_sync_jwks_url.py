"""JWKS-URL mode: the application verifies against the published JWKS, not certificates."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import check_invariants, served_kids
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_sync_fixtures import (
    SERVICE_EMAIL,
    Instance,
    exchange,
    make_key,
    make_stack,
    make_trust,
    put_secret,
    secret_value,
    servicenow_env,
    trust_factory,
)

from ..servicenow_fixtures import CLIENT_ID, INTEGRATION_ROLES, INTEGRATION_USER
from ..stack_fixtures import FAST_POLICY

CACHE = 600  # seconds: the emulated application's JWKS cache lifespan (its default, 10 minutes)


@pytest.fixture
def jwks_stack(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> LocalStack:
    secret = put_secret(local_aws, secret_value())
    return make_stack(
        local_aws,
        servicenow_clock,
        servicenow_env(instance.emulator, secret),
        verifier_jwks_cache_lifespan=CACHE,
    )


def _app(instance: Instance) -> dict[str, str]:
    return next(
        r for r in instance.emulator.rows("oauth_jwt") if r["sys_id"] == instance.app_sys_id
    )


def _tick(stack: LocalStack) -> dict[str, Any]:
    keeper = stack.keeper_service(trust_factory=trust_factory(stack.aws, jwks_url=stack.jwks_url))
    return keeper.handle({"action": "tick"})


def _exchange_fresh_token(stack: LocalStack, instance: Instance) -> str:
    response = stack.sign_service().handle(
        {"subject": SERVICE_EMAIL, "audience": CLIENT_ID, "ttl_seconds": 600}
    )
    granted = exchange(instance.emulator, str(response["token"]))
    assert granted.status_code == 200, instance.emulator.log[-2:]
    return str(response["kid"])


def test_the_app_trusts_the_jwks_through_rotations(
    jwks_stack: LocalStack, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    # Certificates of an earlier certificate-mode set-up are removed on the switch.
    make_trust(jwks_stack).reconcile([make_key(jwks_stack)], servicenow_clock.now())
    assert instance.owned_rows("jwt_verifier_map")
    first = _tick(jwks_stack)
    assert first["promoted"] == [first["created"][0]]
    assert _app(instance)["jwks_url"] == jwks_stack.jwks_url
    assert instance.owned_rows("jwt_verifier_map") == instance.owned_rows("sys_certificate") == []
    kids = {_exchange_fresh_token(jwks_stack, instance)}
    for _ in range(2 * FAST_POLICY.rotation_period // 1800):
        servicenow_clock.advance(1800)
        summary = _tick(jwks_stack)
        assert "trust_error" not in summary, summary
        kids.add(_exchange_fresh_token(jwks_stack, instance))
        check_invariants(jwks_stack, trusted_kids=lambda: served_kids(jwks_stack))
    assert len(kids) >= 3  # two rotations, each new key accepted by ServiceNow


def test_a_hand_changed_jwks_url_is_set_back_as_drift(
    jwks_stack: LocalStack, instance: Instance
) -> None:
    _tick(jwks_stack)
    session = requests.Session()
    session.auth = INTEGRATION_USER
    response = session.patch(
        f"{instance.emulator.url}/api/now/table/oauth_jwt/{instance.app_sys_id}",
        json={"jwks_url": "https://elsewhere.example/jwks.json"},
        verify=instance.emulator.ca_bundle,
        timeout=10,
    )
    assert response.status_code == 200
    summary = _tick(jwks_stack)
    assert summary["drift"]["servicenow"] == 1
    assert _app(instance)["jwks_url"] == jwks_stack.jwks_url
    assert _tick(jwks_stack)["drift"]["servicenow"] == 0


def test_an_app_caching_the_jwks_longer_than_the_policy_allows_holds_everything(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    instance.emulator.reset()
    instance.emulator.add_user(
        INTEGRATION_USER[0],
        roles=INTEGRATION_ROLES,
        password=INTEGRATION_USER[1],
    )
    # In minutes, as the application's form has it: an hour, beyond the policy's budget.
    instance.emulator.add_oauth_jwt_app("slow cache", CLIENT_ID, "s", jwks_cache_lifespan=60)
    secret = put_secret(local_aws, secret_value())
    stack = make_stack(
        local_aws,
        servicenow_clock,
        servicenow_env(instance.emulator, secret, canary=None),
        verifier_jwks_cache_lifespan=CACHE,
    )
    summary = _tick(stack)
    assert "caches the JWKS for 60 minutes" in summary.get("trust_error", ""), summary
    assert summary["promoted"] == []


def test_jwks_url_mode_needs_the_cache_lifespan_in_the_policy(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    secret = put_secret(local_aws, secret_value())
    stack = make_stack(local_aws, servicenow_clock, servicenow_env(instance.emulator, secret))
    with pytest.raises(ConfigurationError, match="verifier_jwks_cache_lifespan"):
        make_trust(stack, jwks_url=stack.jwks_url)


def test_a_switch_keeps_certificate_records_until_a_canary_passes_through_the_jwks(
    jwks_stack: LocalStack, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    # Certificate mode first: the key is trusted through its certificate and map.
    key = make_key(jwks_stack)
    make_trust(jwks_stack).reconcile([key], servicenow_clock.now())
    # The JWKS-URL switch cannot be proven (the key is not in any published JWKS), so the
    # certificate-mode records stay and keep the instance trusting the key.
    switching = make_trust(jwks_stack, jwks_url=jwks_stack.jwks_url)
    report = switching.reconcile([key], servicenow_clock.now())
    assert any("kept until a canary passes" in note for note in report.notes), report
    assert len(instance.owned_rows("jwt_verifier_map")) == 1
    assert _app(instance)["jwks_url"] == jwks_stack.jwks_url
