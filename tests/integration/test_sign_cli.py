"""`jwtkeys sign`: bad usage exits 2, a refusal exits 1 with one stderr line, a token
exits 0 with the function's JSON. The target here is a small local HTTP server that
answers like the Function URL (the real function is driven in
tests/integration/test_client_function_url.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from jwtkeys_tools.cli import main
from jwtkeys_tools.local.loopback_server import LoopbackServer

TOKEN = {"token": "a.b.c", "kid": "k1", "alg": "RS256", "jti": "j1", "expires_at": 2_000_000_000}
ANSWERS: dict[str, tuple[int, object]] = {
    "/ok": (200, TOKEN),
    "/policy": (
        403,
        {"error": {"code": "PolicyViolation", "message": "subject is not\nin the allowlist"}},
    ),
    "/invalid": (400, {"error": {"code": "InvalidRequest", "message": "claims must be small"}}),
    "/unavailable": (503, {"error": {"code": "SigningUnavailable", "message": "KMS throttled"}}),
    "/iam": (403, {"Message": "Forbidden"}),
}


@pytest.fixture
def function_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL of a stub Function URL; AWS credentials set for the signature."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ")
            status, body = ANSWERS[self.path] if signed else (403, {"Message": "Forbidden"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = LoopbackServer("the fake Lambda API")
    server.start(Handler, 0.05)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "JWTKEYS_SIGN_FUNCTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


def sign(*args: str) -> list[str]:
    return ["sign", "--subject", "svc-a", "--audience", "aud", *args]


@pytest.mark.parametrize(
    "argv",
    [
        ["sign", "--audience", "aud", "--url", "https://x.lambda-url.us-east-1.on.aws/"],
        ["sign", "--subject", "svc-a", "--url", "https://x.lambda-url.us-east-1.on.aws/"],
        ["sign", "--subject", "", "--audience", "aud", "--function", "f"],
        sign("--function", "f", "--url", "https://x.lambda-url.us-east-1.on.aws/"),
        sign("--local", "--function", "f"),
        sign("--function", "f", "--claims", "{not json"),
        sign("--function", "f", "--claims", "[1, 2]"),
        sign("--function", "f", "--ttl", "0"),
        sign("--function", "f", "--ttl", "ten"),
        sign("--url", "ftp://example.test/"),
        sign("--url", "https://example.test/"),  # no region anywhere
        sign("--function", "f"),  # no region anywhere
        sign(),  # no target
    ],
)
def test_bad_usage_exits_2(
    argv: list[str], no_aws_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "usage: jwtkeys sign" in out.err


def test_a_token_prints_the_functions_json(
    function_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(sign("--url", f"{function_url}/ok", "--region", "us-east-1", "--ttl", "60"))
    out = capsys.readouterr()
    assert exit_code == 0
    assert json.loads(out.out) == TOKEN
    assert out.err == ""


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("/policy", "jwtkeys sign: refused: PolicyViolation: refused_by_signer: subject is not in"),
        ("/invalid", "jwtkeys sign: refused: InvalidRequest: refused_by_signer: claims must be"),
        ("/iam", "jwtkeys sign: refused: PolicyViolation: invoke_denied: "),
        ("/unavailable", "jwtkeys sign: refused: SigningUnavailable: the Function URL answered"),
    ],
)
def test_a_refusal_exits_1_with_one_line(
    function_url: str, path: str, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(sign("--url", f"{function_url}{path}", "--region", "us-east-1"))
    out = capsys.readouterr()
    assert exit_code == 1
    assert out.out == ""
    assert out.err.startswith(line)
    assert out.err.count("\n") == 1


def test_the_function_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, no_aws_config: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # With JWTKEYS_SIGN_FUNCTION set, a missing --function is not a usage error; the
    # missing region is (reported by the same exit 2), proving the variable was read.
    monkeypatch.setenv("JWTKEYS_SIGN_FUNCTION", "jwtkeys-prod-sign")
    with pytest.raises(SystemExit) as exited:
        main(sign())
    assert exited.value.code == 2
    assert "region" in capsys.readouterr().err.lower()
