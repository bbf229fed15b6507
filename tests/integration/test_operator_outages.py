"""Operator commands under AWS faults: one line naming the call, exit 1, then convergence.

Each command runs in this process through the CLI's `main()` against `local up`'s state
file and the real local endpoint over HTTP. With botocore set to one attempt
(AWS_MAX_ATTEMPTS=1, as an exhausted retry budget would leave it), one fault of each
kind is injected at each AWS call of the command's clean run; the command must end with
exit 1 and one line naming the failed operation (or succeed, where a read may fail
harmlessly), and a clean run afterwards converges with I1-I5 holding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from jwtkeys import names
from jwtkeys.clock import SystemClock
from jwtkeys.keeper.state_store import LEASE_KEY
from jwtkeys_tools.cli import main
from jwtkeys_tools.cli.target import write_local_state
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.invariants import check_invariants, keyset_keys, served_kids
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

from ..stack_fixtures import FAST_POLICY as RS256_POLICY

# EC keys: KMS (moto) makes them far faster than RSA, and the lifecycle is the same.
POLICY = replace(RS256_POLICY, algorithm="ES256", key_spec="ECC_NIST_P256")
FAULT_KINDS = ("http500", "throttle", "connection", "lost")
ONE_LINE = re.compile(r"^jwtkeys [a-z]+: AwsCallFailed: (\w+) failed \(([^)]+)\); [^\n]+$")


@dataclass
class Deployment:
    aws: LocalAws
    stack: LocalStack
    state: Path

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(argv))
        return code, capsys.readouterr().err

    def kid_in(self, state: str) -> str:
        return next(
            tags[names.TAG_KID]
            for tags in keyset_keys(self.stack).values()
            if tags[names.TAG_STATE] == state
        )


@pytest.fixture
def deployment(
    local_aws: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], Deployment]]:
    """A factory of fresh `local up` keysets (bootstrapped: a current and a next key)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("JWTKEYS_LOCAL_STATE", str(tmp_path / "local.json"))
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)  # restored after the test (the CLI sets them too)

    def fresh() -> Deployment:
        local_aws.clear_faults()
        local_aws.reset()
        stack = LocalStack(
            local_aws,
            LocalKeysetConfig(
                keyset="ops",
                issuer="client-ops",
                policy=POLICY,
                allowed_audiences=("client-ops",),
                direct_invoke_claims={},
            ),
            SystemClock(),
        )
        stack.create_bucket()
        stack.keeper_service().handle({"action": "tick"})
        state = tmp_path / "local.json"
        write_local_state(
            state,
            {
                "aws_env": local_aws.env(),
                "keeper_env": stack.keeper_env(),
                "signer_env": stack.signer_env(),
            },
        )
        local_aws.reset_calls()
        return Deployment(local_aws, stack, state)

    yield fresh
    local_aws.clear_faults()


# Each command: its arguments (given the fresh deployment) and the clean run after a fault.
COMMANDS: dict[str, Callable[[Deployment], list[str]]] = {
    "rotate": lambda d: ["rotate", "--force", "--local"],
    "status": lambda d: ["status", "--local"],
    "jwks": lambda d: ["jwks", "--local"],
    "revoke": lambda d: ["revoke", d.kid_in("next"), "--local"],
    "decommission": lambda d: ["decommission", "--confirm", "ops", "--local"],
}


def _converges(
    d: Deployment, command: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The clean run after a fault: the operator's retry, then the scheduled tick."""
    code, err = d.run(capsys, *argv)
    if command == "revoke" and "unknown_kid" in err:
        # The faulted run had revoked the key (and disposed of it): nothing left to do.
        assert argv[1] not in served_kids(d.stack), err
    else:
        assert code == 0, err
    if command == "decommission":
        assert served_kids(d.stack) == set()
        assert {tags["kms:state"] for tags in keyset_keys(d.stack).values()} == {"PendingDeletion"}
        # The keeper's record is whole: later ticks idle, with no decommission finding.
        idle = d.stack.keeper_service().handle({"action": "tick"})
        assert idle.get("skipped") == "keyset decommissioned", idle
        assert "tampering" not in idle, idle
        return
    summary = d.stack.keeper_service().handle({"action": "tick"})
    # An outage is no attack: whatever the faulted run left, nothing is tampering.
    assert "tampering" not in summary, summary
    check_invariants(d.stack)
    states = sorted(tags[names.TAG_STATE] for tags in keyset_keys(d.stack).values())
    assert states.count("current") == 1, states
    assert states.count("next") == 1, states
    _only_registered_keys_remain(d)


def _only_registered_keys_remain(d: Deployment) -> None:
    """No orphan: every enabled key of the keyset is in the registry."""
    registry = json.loads(
        d.stack.s3.get_object(Bucket=d.stack.config.bucket, Key="state/registry.json")[
            "Body"
        ].read()
    )
    listed = {entry["arn"] for entry in registry["keys"]}
    for arn, tags in keyset_keys(d.stack).items():
        if arn not in listed:
            assert tags["kms:state"] == "PendingDeletion", (arn, tags)


def _wait_out_the_lease(d: Deployment, err: str) -> None:
    """Stand in for the operator waiting until the lease expires, as the line says."""
    try:
        d.stack.s3.head_object(Bucket=d.stack.config.bucket, Key=LEASE_KEY)
    except d.stack.s3.exceptions.ClientError:
        return
    assert "when the lease expires" in err, err
    d.stack.s3.delete_object(Bucket=d.stack.config.bucket, Key=LEASE_KEY)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_fault_at_every_call_gives_one_line_then_converges(
    deployment: Callable[[], Deployment], command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = deployment()
    code, err = clean.run(capsys, *COMMANDS[command](clean))
    assert code == 0, err
    calls = clean.aws.calls()
    assert calls, "the command made no AWS call"
    failed_at = 0
    for index, (service, operation) in enumerate(calls):
        for kind in FAULT_KINDS:
            d = deployment()
            argv = COMMANDS[command](d)
            d.aws.reset_calls()
            d.aws.inject_faults(kind, after=index, count=1)
            code, err = d.run(capsys, *argv)
            d.aws.clear_faults()
            case = f"{command} call {index} ({service} {operation}) {kind}: {err!r}"
            assert "Traceback" not in err, case
            if code != 0:
                failed_at += 1
                assert code == 1, case
                match = ONE_LINE.match(err.strip())
                assert match, case
                assert err.count("\n") == 1, case
                faulted = d.aws.calls()[index][1] if len(d.aws.calls()) > index else operation
                assert match.group(1) == faulted, case
                _wait_out_the_lease(d, err)
            _converges(d, command, argv, capsys)
    # Most faults are fatal; a few reads (the served JWKS check) may fail harmlessly.
    assert failed_at >= len(calls) * len(FAULT_KINDS) // 2, failed_at


@pytest.mark.parametrize(
    "form",
    [
        ["revoke", "-hX3dash", "--local"],
        ["revoke", "--local", "-hX3dash"],
        ["revoke", "--kid", "-hX3dash", "--local"],
        ["revoke", "--kid=-hX3dash", "--local"],
        ["revoke", "--local", "--", "-hX3dash"],
    ],
)
def test_revoke_takes_a_kid_that_begins_with_a_dash_as_given(
    deployment: Callable[[], Deployment], form: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # No key of this keyset has that kid: the keeper's refusal shows it got the kid as given.
    d = deployment()
    before = keyset_keys(d.stack)
    code, err = d.run(capsys, *form)
    assert code == 1, err
    assert "unknown_kid" in err, err
    assert "'-hX3dash'" in err, err
    assert keyset_keys(d.stack) == before


def test_revoke_of_a_real_kid_in_any_position(
    deployment: Callable[[], Deployment], capsys: pytest.CaptureFixture[str]
) -> None:
    d = deployment()
    kid = d.kid_in("next")
    code, err = d.run(capsys, "revoke", "--local", kid)
    assert code == 0, err
    assert kid not in served_kids(d.stack)
    check_invariants(d.stack)
    code, err = d.run(capsys, "revoke", "--local")
    assert code == 2, err
    assert "needs the kid" in err
