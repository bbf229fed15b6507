"""TokenClient over a real SignService (LocalInvoker) against the local AWS endpoint:
KMS Sign calls counted at the endpoint, tokens verified against the published JWKS."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jwtkeys.client import IssuedToken, LocalInvoker, TokenClient
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import InvalidRequest, PolicyViolation
from jwtkeys.verify.jwks_source import load_jwks
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.cli import main as cli_main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

AUDIENCE = "client-test"
ISSUER = "client-test"
KMS_SIGN = ("kms", "Sign")


@pytest.fixture
def client(stack: LocalStack, clock: SimulatedClock) -> TokenClient:
    """A TokenClient over the keyset's signing service, keys bootstrapped."""
    stack.config.direct_invoke_claims = {"scope": ["orders.*"], "tenant": True}
    stack.keeper_service().handle({"action": "tick"})
    return TokenClient(LocalInvoker(stack.sign_service()), clock=clock)


def kms_signs(aws: LocalAws) -> int:
    return aws.calls().count(KMS_SIGN)


def verified(stack: LocalStack, issued: IssuedToken, now: float) -> dict[str, Any]:
    return verify_token(
        issued.token, load_jwks(stack.jwks_url), issuer=ISSUER, audience=AUDIENCE, now=now
    )


def test_1000_requests_over_one_token_lifetime_cost_at_most_10_signs(
    stack: LocalStack, client: TokenClient, local_aws: LocalAws, clock: SimulatedClock
) -> None:
    # Given a fresh call count (the bootstrap's canary signatures are not ours)
    local_aws.reset_calls()
    first = client.get_token("svc-orders", AUDIENCE, {"scope": "orders.read"})
    lifetime = first.expires_at - clock.now()

    # When 1000 requests for the same claims are spread over one token lifetime
    tokens = [first]
    for _ in range(999):
        clock.advance(lifetime / 1000)
        tokens.append(client.get_token("svc-orders", AUDIENCE, {"scope": "orders.read"}))

    # Then KMS signed at most 10 times (here: the first token and one refresh,
    # `refresh_margin` before the first expired)
    signs = kms_signs(local_aws)
    assert signs <= 10
    assert signs == len({t.jti for t in tokens}) == 2
    # and the token handed out last is still valid now
    assert verified(stack, tokens[-1], clock.now())["scope"] == "orders.read"


def test_cached_token_verifies_with_its_claims(
    stack: LocalStack, client: TokenClient, clock: SimulatedClock
) -> None:
    issued = client.get_token("svc-orders", AUDIENCE, {"tenant": "t1"}, ttl_seconds=600)
    claims = verified(stack, issued, clock.now())
    assert claims["sub"] == "svc-orders"
    assert claims["tenant"] == "t1"
    assert claims["jti"] == issued.jti
    assert claims["exp"] == issued.expires_at
    assert claims["exp"] - claims["iat"] == 600


def test_refusals_keep_their_names_and_reasons_and_sign_nothing(
    client: TokenClient, local_aws: LocalAws
) -> None:
    local_aws.reset_calls()
    with pytest.raises(PolicyViolation) as policy:
        client.get_token("intruder", AUDIENCE)
    assert policy.value.reason == "subject_not_allowed"
    with pytest.raises(PolicyViolation) as reserved:
        client.get_token("svc-orders", AUDIENCE, {"iss": "someone-else"})
    assert reserved.value.reason == "reserved_claim"
    with pytest.raises(InvalidRequest) as invalid:
        client.get_token("svc-orders", AUDIENCE, {"": "unnamed"})
    assert invalid.value.reason == "bad_claims"
    with pytest.raises(PolicyViolation) as ttl:
        client.get_token("svc-orders", AUDIENCE, ttl_seconds=10**6)
    assert ttl.value.reason == "ttl_out_of_range"
    assert kms_signs(local_aws) == 0


def test_threads_share_one_signature(
    stack: LocalStack, client: TokenClient, local_aws: LocalAws, clock: SimulatedClock
) -> None:
    # Given 8 threads that each ask 50 times for the same token
    local_aws.reset_calls()
    results: list[IssuedToken] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(50):
            try:
                issued = client.get_token("svc-orders", AUDIENCE)
            except BaseException as error:
                errors.append(error)
                return
            with lock:
                results.append(issued)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then all 400 got the same verified token, signed once
    assert errors == []
    assert len(results) == 400
    assert len({r.jti for r in results}) == 1
    assert kms_signs(local_aws) == 1
    verified(stack, results[0], clock.now())


def test_fresh_tokens_are_each_signed(client: TokenClient, local_aws: LocalAws) -> None:
    local_aws.reset_calls()
    fresh = [client.fresh_token("svc-orders", AUDIENCE) for _ in range(3)]
    assert len({t.jti for t in fresh}) == 3
    assert kms_signs(local_aws) == 3


# -- jwtkeys sign --local -------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where local commands look for `local up`'s state (none there) and write their log."""
    monkeypatch.setenv("JWTKEYS_LOCAL_STATE", str(tmp_path / "local.json"))
    return tmp_path


@pytest.fixture
def signer_env(
    stack: LocalStack, local_aws_env: LocalAws, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signing function's environment, and boto3 pointed at the local endpoint."""
    stack.keeper_service().handle({"action": "tick"})
    for name, value in stack.signer_env().items():
        monkeypatch.setenv(name, value)


def test_sign_cli_local_prints_a_token_that_verifies(
    stack: LocalStack, signer_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = cli_main(
        ["sign", "--local", "--subject", "svc-orders", "--audience", AUDIENCE, "--ttl", "90"]
    )
    out = capsys.readouterr()
    assert exit_code == 0, out.err
    assert out.err == ""
    answer = json.loads(out.out)  # stdout holds the JSON alone: no logs, no EMF
    claims = verify_token(
        answer["token"],
        load_jwks(stack.jwks_url),
        issuer=ISSUER,
        audience=AUDIENCE,
        now=time.time(),  # --local signs on the real clock
    )
    assert claims["exp"] - claims["iat"] == 90
    assert claims["jti"] == answer["jti"]


def test_sign_cli_local_sends_the_functions_metrics_to_the_log_unless_asked(
    signer_env: None, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sign", "--local", "--subject", "svc-orders", "--audience", AUDIENCE]
    assert cli_main(args) == 0
    out = capsys.readouterr()
    assert '"_aws"' not in out.out + out.err
    log = (state_dir / "functions.log").read_text()
    assert '"TokensIssued"' in log
    # Asked for: the EMF blob on stderr, stdout still the JSON alone
    assert cli_main([*args, "--show-metrics"]) == 0
    shown = capsys.readouterr()
    assert '"_aws"' in shown.err
    assert set(json.loads(shown.out)) == {"token", "kid", "alg", "jti", "expires_at"}
    assert (state_dir / "functions.log").read_text() == log


def test_sign_cli_local_refusal_is_one_line(
    signer_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = cli_main(["sign", "--local", "--subject", "intruder", "--audience", AUDIENCE])
    out = capsys.readouterr()
    assert exit_code == 1
    assert out.out == ""
    assert out.err == (
        "jwtkeys sign: refused: PolicyViolation: subject_not_allowed: "
        "subject is not in the keyset's allowlist\n"
    )


def test_sign_cli_local_without_signer_settings_is_bad_usage(
    local_aws_env: LocalAws,
    state_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("JWTKEYS_KEYSET", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_main(["sign", "--local", "--subject", "svc-orders", "--audience", AUDIENCE])
    assert exited.value.code == 2
    assert "JWTKEYS_KEYSET" in capsys.readouterr().err
