"""Faults during a sync: every request of a reconcile + confirm, every fault kind.

For each request index and each kind the emulator's fault switch can inject, the sync
either completes (a retry absorbed the fault) or fails with a named jwtkeys error; the
next clean sync converges; a key is confirmed only when its records and canary pass;
Retry-After is honoured on the injected (simulated) clock, so no test waits for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import JwtKeysError, ServiceNowError
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.servicenow.retry import BACKOFF_MAX, MAX_RETRIES, MAX_RETRY_AFTER
from jwtkeys.servicenow.target import ServiceNowTrustTarget
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_sync_fixtures import (
    Instance,
    make_key,
    make_stack,
    make_trust,
    put_secret,
    secret_value,
    servicenow_env,
    set_up_instance,
    wait_real,
)

from ..servicenow_fixtures import certificate_pem, signing_key

READ_TIMEOUT = 0.4
SLOW_DELAY = 0.8
RETRY_AFTER = 7
KINDS = ("http500", "http429", "drop", "slow", "malformed_json")
# What each kind does to a request, by method: retried (absorbed) or fatal to the sync.
RETRIED = {
    "http500": {"GET", "PATCH", "DELETE"},
    "http429": {"GET", "PATCH", "DELETE", "POST"},
    "drop": {"GET", "PATCH", "DELETE"},
    "slow": {"GET", "PATCH", "DELETE"},
    "malformed_json": set(),
}


@dataclass
class World:
    """One instance, one stack, three keys: k1 leaves, k2 needs a repair, k3 is new."""

    emulator: ServiceNowEmulator
    stack: LocalStack
    clock: SimulatedClock
    keys: tuple[ManagedKey, ManagedKey, ManagedKey]
    foreign: list[dict[str, str]]

    def fresh(self) -> tuple[ServiceNowTrustTarget, Instance]:
        """Reset the instance to: k1 and k2 trusted, k2's map edited by hand."""
        self.emulator.reset()
        instance = set_up_instance(self.emulator)
        now = self.clock.now()
        pem = certificate_pem(signing_key("RS256"), not_before=now - 60, not_after=now + 86400)
        self.emulator.add_record(
            "sys_certificate", {"name": f"jwtkeys/other/{self.keys[0].kid}", "pem_certificate": pem}
        )
        trust = make_trust(self.stack, read_timeout=READ_TIMEOUT)
        k1, k2, _ = self.keys
        trust.reconcile([k1, k2], now)
        verifier = next(
            row for row in self.emulator.rows("jwt_verifier_map") if row["name"].endswith(k2.kid)
        )
        session = requests.Session()
        session.auth = ("jwtkeys.integration", "integration-password")
        response = session.patch(
            f"{self.emulator.url}/api/now/table/jwt_verifier_map/{verifier['sys_id']}",
            json={"kid": "edited"},
            verify=self.emulator.ca_bundle,
            timeout=10,
        )
        assert response.status_code == 200
        self.foreign = [r for r in self.emulator.rows("sys_certificate") if "other" in r["name"]]
        # A new trust object: the process that meets the fault is not the one that synced.
        return make_trust(self.stack, read_timeout=READ_TIMEOUT), instance

    def sync(self, trust: ServiceNowTrustTarget) -> None:
        """What the keeper asks of ServiceNow around a promotion."""
        _, k2, k3 = self.keys
        # The session-visibility probe after a canary is best effort (it never fails a
        # sync, so a fault there is absorbed by design): the matrix covers the sync.
        trust.sessions_visible = True
        trust.reconcile([k2, k3], self.clock.now())
        trust.confirm(k3, self.clock.now())

    def assert_converged(self, instance: Instance) -> None:
        _, k2, k3 = self.keys
        assert instance.trusted_kids() == {k2.kid, k3.kid}
        assert len(instance.owned_rows("sys_certificate")) == 2
        assert len(instance.owned_rows("jwt_verifier_map")) == 2
        for row in instance.owned_rows("jwt_verifier_map"):
            assert row["name"].endswith(row["kid"])
            assert row["oauth_jwt"] == instance.app_sys_id
        assert [r for r in self.emulator.rows("sys_certificate") if "other" in r["name"]] == (
            self.foreign
        )


@pytest.fixture(scope="module")
def world(local_aws_server: LocalAws, servicenow_server: ServiceNowEmulator) -> Iterator[World]:
    clock = servicenow_server.clock
    assert isinstance(clock, SimulatedClock)
    local_aws_server.clear_faults()
    local_aws_server.reset()
    servicenow_server.reset()
    secret = put_secret(local_aws_server, secret_value())
    stack = make_stack(local_aws_server, clock, servicenow_env(servicenow_server, secret))
    keys = (make_key(stack), make_key(stack), make_key(stack, "ES256"))
    yield World(servicenow_server, stack, clock, keys, [])
    servicenow_server.reset()


class FaultAt:
    """Injects one fault into the `index`-th request the trust sends; records methods."""

    def __init__(self, trust: ServiceNowTrustTarget, emulator: ServiceNowEmulator) -> None:
        self.methods: list[str] = []
        self._emulator = emulator
        self._send = trust.client.session.send
        self.index = -1
        self.kind = ""
        trust.client.session.send = self  # type: ignore[method-assign]

    def __call__(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if len(self.methods) == self.index:
            delay = SLOW_DELAY if self.kind == "slow" else RETRY_AFTER
            self._emulator.inject_fault(self.kind, count=1, delay=delay)
        self.methods.append(str(request.method))
        return self._send(request, **kwargs)


def _requests_of_a_clean_sync(world: World) -> list[str]:
    trust, _ = world.fresh()
    probe = FaultAt(trust, world.emulator)
    world.sync(trust)
    return probe.methods


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a matrix of cases; on a loaded machine it can take minutes
@pytest.mark.parametrize("kind", KINDS)
def test_every_request_of_a_sync_survives_each_fault_kind(world: World, kind: str) -> None:
    methods = _requests_of_a_clean_sync(world)
    # The sync touches every verb: list/get, create, repair, delete, token exchange.
    assert {"GET", "POST", "PATCH", "DELETE"} <= set(methods), methods
    for index in range(len(methods)):
        trust, instance = world.fresh()
        probe = FaultAt(trust, world.emulator)
        probe.index, probe.kind = index, kind
        started = world.clock.now()
        try:
            world.sync(trust)
            failed = None
        except JwtKeysError as error:
            failed = error
        waited = world.clock.now() - started
        assert len(probe.methods) > index, (index, kind, methods, probe.methods, failed)
        method = probe.methods[index]
        where = f"request {index} ({method}) with {kind}: {failed}"
        if method in RETRIED[kind]:
            assert failed is None, where
        else:
            assert failed is not None, where
        if kind == "http429":
            # Retry-After honoured on the injected clock, and nothing more than it.
            assert RETRY_AFTER <= waited <= RETRY_AFTER + 1, where
        else:
            assert waited <= MAX_RETRIES * BACKOFF_MAX, where
        world.emulator.clear_faults()
        if kind == "slow":
            # A request we gave up on still lands after the server's pause; the next tick
            # comes minutes later, so let it land before that tick reads.
            wait_real(SLOW_DELAY)
        # The next clean sync converges (a fresh process, as a next tick would be).
        world.sync(make_trust(world.stack))
        world.assert_converged(instance)
        settled = make_trust(world.stack).reconcile(list(world.keys[1:]), world.clock.now())
        assert (settled.created, settled.removed, settled.repaired) == (0, 0, 0), where


def test_retries_are_bounded(world: World) -> None:
    trust, instance = world.fresh()
    # MAX_RETRIES failures in a row are absorbed (the last attempt succeeds) ...
    world.emulator.inject_fault("http500", count=MAX_RETRIES, path_contains="/table/oauth_jwt")
    trust.sync.find_app()
    # ... one more is not, and exactly MAX_RETRIES + 1 attempts were made: the fault
    # switch is empty afterwards, so the next request succeeds.
    world.emulator.inject_fault("http500", count=MAX_RETRIES + 1, path_contains="/table/oauth_jwt")
    with pytest.raises(ServiceNowError, match="HTTP 500"):
        trust.sync.find_app()
    trust.sync.find_app()
    world.sync(trust)
    world.assert_converged(instance)


def test_a_retry_after_beyond_the_bound_fails_the_tick_without_waiting(world: World) -> None:
    trust, _ = world.fresh()
    world.emulator.inject_fault("http429", count=1, delay=MAX_RETRY_AFTER + 30)
    started = world.clock.now()
    with pytest.raises(ServiceNowError, match="Retry-After"):
        world.sync(trust)
    assert world.clock.now() == started


def test_a_rate_limit_rule_is_waited_out_on_the_injected_clock(world: World) -> None:
    trust, instance = world.fresh()
    world.emulator.set_rate_limit(limit=2, window_seconds=20)
    started = world.clock.now()
    world.sync(trust)
    world.emulator.clear_faults()
    assert world.clock.now() > started  # it waited (simulated) for the window to reset
    world.assert_converged(instance)


def test_a_canary_that_fails_does_not_confirm(world: World) -> None:
    trust, instance = world.fresh()
    _, k2, k3 = world.keys
    trust.reconcile([k2, k3], world.clock.now())
    for kind in ("http500", "drop", "malformed_json"):
        world.emulator.inject_fault(kind, count=MAX_RETRIES + 1, path_contains="/oauth_token.do")
        with pytest.raises(JwtKeysError):
            trust.confirm(k3, world.clock.now())
        world.emulator.clear_faults()
    trust.confirm(k3, world.clock.now())
    world.assert_converged(instance)
