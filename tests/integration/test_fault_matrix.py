"""Fault matrix: a rotation tick interrupted at every AWS call converges on the next tick.

For each call index k of a full rotation tick (promotion, a fresh standby key,
publication, retirement and disposal) and each fault kind, every call from the k-th to
the end of that tick fails (an outage: botocore's retries cannot hide it). One clean
tick later, I1-I5 hold and no stray key exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from botocore.config import Config

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import AwsCallFailed
from jwtkeys.keeper.service import KeeperService
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import IssuedRecord, check_invariants, keyset_keys
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

from ..stack_fixtures import FAST_POLICY as RS256_POLICY

# EC keys: KMS (moto) makes them far faster than RSA, and the lifecycle is the same.
FAST_POLICY = replace(RS256_POLICY, algorithm="ES256", key_spec="ECC_NIST_P256")

FAULT_KINDS = ("connection", "throttle", "http500")
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
# Standard retries, but a short connect timeout so a dropped connection fails fast.
RETRYING = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2)


@dataclass
class RotationScenario:
    stack: LocalStack
    clock: SimulatedClock
    tokens: list[IssuedRecord]


def _prepare(aws: LocalAws, start: float) -> RotationScenario:
    """A keyset one rotation in, with tokens signed: the next tick promotes and retires."""
    aws.clear_faults()
    aws.reset()
    clock = SimulatedClock(start)
    stack = LocalStack(
        aws,
        LocalKeysetConfig(
            keyset="matrix",
            issuer="client-matrix",
            policy=FAST_POLICY,
            allowed_audiences=("client-matrix",),
            direct_invoke_claims={},
        ),
        clock,
    )
    stack.create_bucket()
    keeper = stack.keeper_service()
    keeper.handle({"action": "tick"})
    clock.advance(FAST_POLICY.rotation_period)
    keeper.handle({"action": "tick"})
    tokens = []
    signer = stack.sign_service()
    for ttl in (60, FAST_POLICY.max_token_ttl):
        issued = signer.handle({"subject": "svc", "audience": "client-matrix", "ttl_seconds": ttl})
        tokens.append(IssuedRecord(issued["kid"], clock.now(), issued["expires_at"]))
    # Both the next promotion and the previous key's retirement are now due.
    clock.advance(FAST_POLICY.rotation_period)
    return RotationScenario(stack, clock, tokens)


def _keeper(scenario: RotationScenario, config: Config) -> KeeperService:
    return scenario.stack.keeper_service(config=config)


@pytest.fixture(scope="module")
def rotation_calls(local_aws_server: LocalAws) -> int:
    """How many AWS calls the full rotation tick makes when nothing fails."""
    scenario = _prepare(local_aws_server, 1_800_000_000.0)
    keeper = _keeper(scenario, ONE_ATTEMPT)
    local_aws_server.reset_calls()
    summary = keeper.handle({"action": "tick"})
    calls = len(local_aws_server.calls())
    assert summary["promoted"]
    assert summary["retired"]
    assert summary["created"]
    return calls


def _cases(calls: int) -> Iterator[tuple[int, str]]:
    for index in range(calls):
        for kind in FAULT_KINDS:
            yield index, kind


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a matrix of cases; on a loaded machine it can take minutes
def test_every_outage_point_converges_after_one_clean_tick(
    local_aws_server: LocalAws, rotation_calls: int, capsys: pytest.CaptureFixture[str]
) -> None:
    survived, failures = 0, []
    cases = list(_cases(rotation_calls))
    for index, kind in cases:
        scenario = _prepare(local_aws_server, 1_800_000_000.0)
        keeper = _keeper(scenario, ONE_ATTEMPT)
        local_aws_server.inject_faults(kind, after=index)
        # The outage is meant to break the tick; whatever it raised, the next tick must mend.
        with contextlib.suppress(Exception):
            keeper.handle({"action": "tick"})
        local_aws_server.clear_faults()
        # The next scheduled tick comes one interval later (the crashed tick's lease expired).
        scenario.clock.advance(FAST_POLICY.tick_interval)
        try:
            summary = _keeper(scenario, ONE_ATTEMPT).handle({"action": "tick"})
            check_invariants(scenario.stack, scenario.tokens)
            states = sorted(tags["jwtkeys:state"] for tags in keyset_keys(scenario.stack).values())
            assert states.count("current") == 1, states
            assert states.count("next") == 1, states
            assert "skipped" not in summary, summary
            # An outage is no attack: whatever the crashed tick left, nothing is tampering.
            assert "tampering" not in summary, summary
            survived += 1
        except AssertionError as error:
            failures.append(f"k={index} {kind}: {error}")
    with capsys.disabled():
        print(
            f"\nfault matrix: {len(cases)} cases run, {survived} survived ({rotation_calls} calls)"
        )
    assert not failures, "\n".join(failures[:20])
    assert survived == len(cases)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a matrix of cases; on a loaded machine it can take minutes
def test_retries_absorb_a_single_failure(local_aws_server: LocalAws, rotation_calls: int) -> None:
    # Every fourth call index, a single failure: botocore's retry absorbs it.
    for index in range(0, rotation_calls, 4):
        scenario = _prepare(local_aws_server, 1_800_000_000.0)
        keeper = _keeper(scenario, RETRYING)
        local_aws_server.inject_faults("http500", after=index, count=1)
        failed: AwsCallFailed | None = None
        try:
            summary = keeper.handle({"action": "tick"})
            assert summary["promoted"], f"k={index}: {summary}"
        except AwsCallFailed as failure:
            failed = failure
        if failed is not None:
            # CreateKey alone is never retried (a blind retry may make a second key):
            # the next tick adopts the key by its nonce, or creates it.
            assert failed.operation == "CreateKey", f"k={index}: {failed}"
            local_aws_server.clear_faults()
            keeper.handle({"action": "tick"})
        local_aws_server.clear_faults()
        check_invariants(scenario.stack, scenario.tokens)


def test_idle_tick_makes_few_aws_calls_whatever_else_the_account_holds(local_aws: LocalAws) -> None:
    scenario = _prepare(local_aws, 1_800_000_000.0)
    keeper = _keeper(scenario, ONE_ATTEMPT)
    keeper.handle({"action": "tick"})  # the due rotation: 3 keys remain after it
    counts = []
    for unrelated in (0, 50):
        kms = local_aws.client("kms")
        for _ in range(unrelated):
            kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
        scenario.clock.advance(FAST_POLICY.tick_interval)
        local_aws.reset_calls()
        summary = keeper.handle({"action": "tick"})
        assert summary["created"] == summary["promoted"] == summary["retired"] == []
        counts.append(len(local_aws.calls()))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 10, local_aws.calls()
