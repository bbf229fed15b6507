"""JwksVerifier against the local stack: real rotations, a revocation and a CDN outage.

The verifier fetches through a local CDN (a caching proxy on the stack's clock) in front of
the bucket's public endpoint, as verifiers on AWS fetch through CloudFront. Fetch counts
are taken at the CDN, where the requests land.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from jwcrypto import jwk as jose_jwk
from jwcrypto import jwt as jose_jwt

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import InvalidToken
from jwtkeys.keeper.service import KeeperService
from jwtkeys.verify.jwks_verifier import JwksCachePolicy, JwksVerifier, VerifierCounters
from jwtkeys_tools.local.cdn import LocalCdn
from jwtkeys_tools.local.stack import LocalStack

from ..stack_fixtures import FAST_POLICY

AUDIENCE = "client-test"


@pytest.fixture
def cdn(stack: LocalStack, clock: SimulatedClock) -> Iterator[LocalCdn]:
    with LocalCdn(stack.public_base_url, clock) as local_cdn:
        yield local_cdn


def _jwks_url(cdn: LocalCdn) -> str:
    return f"{cdn.url}/{names.JWKS_OBJECT_KEY}"


def _verifier(cdn: LocalCdn, clock: SimulatedClock) -> tuple[JwksVerifier, VerifierCounters]:
    counters = VerifierCounters()
    verifier = JwksVerifier(
        _jwks_url(cdn),
        "client-test",
        AUDIENCE,
        clock=clock,
        policy=JwksCachePolicy(min_refetch_interval=30, stale_if_error=3600),
        metrics=counters,
    )
    return verifier, counters


def _sign(stack: LocalStack) -> dict[str, Any]:
    return stack.sign_service().handle(
        {"subject": "svc-orders", "audience": AUDIENCE, "ttl_seconds": 3600}
    )


def _check_independently(stack: LocalStack, token: str) -> None:
    # The tokens the verifier accepts are checked by a second JOSE library too.
    keys = jose_jwk.JWKSet.from_json(requests.get(stack.jwks_url, timeout=5).text)
    jose_jwt.JWT(jwt=token, key=keys, check_claims=False)


def _tick(keeper: KeeperService, action: dict[str, Any] | None = None) -> dict[str, Any]:
    return keeper.handle(action or {"action": "tick"})


def test_a_running_verifier_follows_scheduled_rotations_without_refetching_for_kids(
    stack: LocalStack, clock: SimulatedClock, cdn: LocalCdn
) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    verifier, counters = _verifier(cdn, clock)
    kids_seen: list[str] = []
    # Two rotation periods, a tick every 15 minutes, a token verified after each tick.
    step = 900
    for _ in range(2 * FAST_POLICY.rotation_period // step + 1):
        clock.advance(step)
        _tick(keeper)
        signed = _sign(stack)
        claims = verifier.verify(signed["token"])
        assert claims["jti"] == signed["jti"]
        if not kids_seen or kids_seen[-1] != signed["kid"]:
            kids_seen.append(str(signed["kid"]))
    _check_independently(stack, signed["token"])

    assert len(kids_seen) == 3  # two kid changes, the verifier never restarted
    # The standby key is published a prepublish window ahead: no kid is ever unknown.
    assert counters.refetches.get("unknown_kid", 0) == 0
    assert counters.failures == {}


def test_a_forced_rotation_costs_one_refetch_per_kid_change(
    stack: LocalStack, clock: SimulatedClock, cdn: LocalCdn
) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    verifier, counters = _verifier(cdn, clock)
    verifier.verify(_sign(stack)["token"])
    kid_changes = 0
    for _ in range(2):
        # Two forced rotations in a row: the second promotes a key created after the
        # verifier's copy, which it therefore has never seen.
        clock.advance(60)
        forced = _tick(keeper, {"action": "rotate", "force": True})
        assert forced["promoted"]
        kid_changes += 1
        cdn.invalidate()  # the keeper's CloudFront invalidation, on AWS
        for _ in range(100):
            signed = _sign(stack)
            assert verifier.verify(signed["token"])["sub"] == "svc-orders"
        _check_independently(stack, signed["token"])

    # The first forced rotation promoted the standby the verifier already held; the
    # second one's key was new to it: one refetch, for 100 tokens.
    assert kid_changes == 2
    assert counters.refetches == {"initial": 1, "unknown_kid": 1}
    assert cdn.requests == 2  # where the fetches land: nothing else reached the CDN


def test_a_revoked_key_is_refused_once_the_announced_window_has_passed(
    stack: LocalStack, clock: SimulatedClock, cdn: LocalCdn
) -> None:
    keeper = stack.keeper_service()
    _tick(keeper)
    clock.advance(FAST_POLICY.rotation_period)
    _tick(keeper)
    signed = _sign(stack)
    kid, token = str(signed["kid"]), str(signed["token"])
    # Another verifier fills the CDN just before the revocation.
    early, _ = _verifier(cdn, clock)
    early.verify(token)

    revoked = _tick(keeper, {"action": "revoke", "kid": kid})
    warning = next(w for w in revoked["warnings"] if "2 x jwks_max_age" in w)
    match = re.search(r"\((\d+) s\)", warning)
    assert match is not None, warning
    bound = int(match.group(1))
    revoked_at = clock.now()

    # The worst case: a verifier that first fetches just before the CDN's copy expires
    # gets the pre-revocation document, and keeps it for a full max-age of its own.
    clock.advance(FAST_POLICY.jwks_max_age - 1)
    late, late_counters = _verifier(cdn, clock)
    assert late.verify(token)["sub"] == "svc-orders"
    clock.advance(bound - FAST_POLICY.jwks_max_age - 1)  # bound - 2 s after the revocation
    assert late.verify(token)["sub"] == "svc-orders"  # the window is real, not padding

    clock.advance(revoked_at + bound - clock.now())
    for verifier in (early, late):
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(token)
        assert refused.value.reason == "unknown_kid"
    assert late_counters.refetches == {"initial": 1, "expired": 1}
    # Tokens of the promoted key pass on the same verifiers.
    assert late.verify(_sign(stack)["token"])["sub"] == "svc-orders"


def test_a_cdn_outage_during_a_rotation_is_survived_on_the_stale_document(
    stack: LocalStack, clock: SimulatedClock, cdn: LocalCdn
) -> None:
    keeper = stack.keeper_service()
    first = _tick(keeper)
    # Just before the promotion is due, the verifier holds current + next.
    clock.advance(FAST_POLICY.rotation_period - 600)
    _tick(keeper)
    verifier, counters = _verifier(cdn, clock)
    verifier.verify(_sign(stack)["token"])

    cdn.outage = True
    promoted: list[str] = []
    for _ in range(6):  # 30 min across the promotion, the CDN down throughout
        clock.advance(FAST_POLICY.tick_interval)
        promoted += _tick(keeper)["promoted"]
        signed = _sign(stack)
        assert verifier.verify(signed["token"])["sub"] == "svc-orders"
    assert promoted == [first["next_kid"]]
    assert signed["kid"] == first["next_kid"]
    assert sum(counters.failures.values()) >= 1

    cdn.outage = False
    clock.advance(30)
    fresh = _sign(stack)
    assert verifier.verify(fresh["token"])["sub"] == "svc-orders"
    assert counters.refetches.get("expired", 0) == 1
    assert set(k["kid"] for k in verifier.jwks()["keys"]) >= {fresh["kid"]}
