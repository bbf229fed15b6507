"""A local keyset on a simulated clock, for lifecycle and signing tests."""

from __future__ import annotations

import time

import pytest

from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

# Small but safe timings: a full rotation is a few simulated hours.
FAST_POLICY = RotationPolicy(
    rotation_period=6 * 3600,
    prepublish_window=1800,
    grace=2 * 3600,
    max_token_ttl=3600,
    clock_skew=300,
    jwks_max_age=300,
    signer_cache_ttl=300,
    tick_interval=300,
    deletion_window_days=7,
)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(start=float(int(time.time())))


@pytest.fixture
def stack(local_aws: LocalAws, clock: SimulatedClock) -> LocalStack:
    """An empty local deployment of keyset `test` (bucket created, no keys yet)."""
    deployment = LocalStack(
        local_aws,
        LocalKeysetConfig(
            keyset="test",
            issuer="client-test",
            policy=FAST_POLICY,
            allowed_subjects=("svc-*", "integration"),
            allowed_audiences=("client-test",),
            # Most tests sign with direct invokes; a test of the default turns it off.
            direct_invoke_claims={},
        ),
        clock,
    )
    deployment.create_bucket()
    return deployment
