"""`jwtkeys verify` and the JWKS sources behind it: files, http URLs, and every way they fail."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from jwtkeys.errors import JwksUnavailable
from jwtkeys.verify.jwks_source import MAX_JWKS_BYTES, load_jwks, parse_jwks
from jwtkeys_tools.cli import main
from jwtkeys_tools.local.loopback_server import LoopbackServer

ISSUER = "https://issuer.example"
AUDIENCE = "servicenow-client-id"
KID = "kid-cli"
NOW = 1_800_000_000


@cache
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_document() -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(signing_key().public_key(), as_dict=True)
    jwk.update(kid=KID, alg="RS256", use="sig")
    return {"keys": [jwk]}


def claims(**overrides: Any) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service-a",
        "jti": "jti-1",
        "iat": NOW,
        "exp": NOW + 300,
        **overrides,
    }


def make_token(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), signing_key(), algorithm="RS256", headers={"kid": KID})


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document()))
    return path


# --- a local http server ---------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    # Seconds to wait before answering, and between bytes when dripping.
    delay: float = 0.0
    drip: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class JwksServer:
    base_url: str
    routes: dict[str, Route]

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def jwks_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[JwksServer]:
    # A proxy from the environment must not intercept 127.0.0.1.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    routes: dict[str, Route] = {}
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path, Route(status=404, body=b"not found"))
            if stopping.wait(route.delay):
                return
            try:
                self.send_response(route.status)
                self.send_header("Content-Type", "application/json")
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if not route.drip:
                    self.wfile.write(route.body)
                    return
                for byte in route.body:
                    if stopping.wait(route.delay):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:
                # The client gave up (a timeout under test): nothing left to tell it.
                return

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = LoopbackServer("the fake JWKS server")
    server.start(Handler)
    try:
        yield JwksServer(server.url, routes)
    finally:
        stopping.set()
        server.stop()


# --- the command -----------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def standard_args(jwks: str, *extra: str) -> list[str]:
    return ["--jwks", jwks, "--issuer", ISSUER, "--audience", AUDIENCE, *extra]


def test_valid_token_exits_0_with_the_claims_as_json(
    capsys: pytest.CaptureFixture[str], jwks_file: Path
) -> None:
    code, out, err = run_cli(capsys, make_token(), *standard_args(str(jwks_file), "--at", str(NOW)))
    assert (code, err) == (0, "")
    assert json.loads(out) == claims()


def test_refused_token_exits_1_with_one_line_naming_the_reason(
    capsys: pytest.CaptureFixture[str], jwks_file: Path
) -> None:
    token = make_token()
    code, out, err = run_cli(capsys, token, *standard_args(str(jwks_file), "--at", str(NOW + 300)))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "expired" in err.split(":")[2]
    # Tokens are credentials: never echoed.
    assert token not in err


def test_leeway_is_honoured(capsys: pytest.CaptureFixture[str], jwks_file: Path) -> None:
    args = standard_args(str(jwks_file), "--at", str(NOW + 300), "--leeway", "1")
    code, _, err = run_cli(capsys, make_token(), *args)
    assert (code, err) == (0, "")


def test_at_defaults_to_the_real_clock(capsys: pytest.CaptureFixture[str], jwks_file: Path) -> None:
    now = int(time.time())
    code, _, _ = run_cli(capsys, make_token(iat=now, exp=now + 300), *standard_args(str(jwks_file)))
    assert code == 0
    expired = make_token(iat=now - 1000, exp=now - 500)
    code, _, err = run_cli(capsys, expired, *standard_args(str(jwks_file)))
    assert code == 1
    assert "expired" in err


def test_token_dash_reads_stdin(
    capsys: pytest.CaptureFixture[str], jwks_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(make_token() + "\n"))
    code, out, _ = run_cli(capsys, "-", *standard_args(str(jwks_file), "--at", str(NOW)))
    assert code == 0
    assert json.loads(out)["sub"] == "service-a"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["not-a-token"], "malformed"),
        (["a.b.c"], "malformed"),
        (["--issuer", "https://other.example"], "wrong_issuer"),
        (["--audience", "other"], "wrong_audience"),
        (["--jwks", "/nonexistent/jwks.json"], "jwks_unavailable"),
        # Keys fetched in the clear could be swapped on the way: refused before any fetch.
        (["--jwks", "http://jwks.example.invalid/jwks.json"], "jwks_unavailable"),
        (["--jwks", "http://10.0.0.1/jwks.json"], "jwks_unavailable"),
        (["--max-lifetime", "299"], "lifetime_too_long"),
    ],
)
def test_refusals_name_their_reason(
    capsys: pytest.CaptureFixture[str], jwks_file: Path, argv: list[str], reason: str
) -> None:
    # Later options win in argparse, so each case overrides one of the standard ones.
    token = argv.pop(0) if argv and not argv[0].startswith("--") else make_token()
    args = [*standard_args(str(jwks_file), "--at", str(NOW)), *argv]
    code, out, err = run_cli(capsys, token, *args)
    assert (code, out) == (1, "")
    assert err.startswith(f"jwtkeys verify: refused: {reason}: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["TOKEN"],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER],
        ["TOKEN", "--jwks", "x", "--audience", AUDIENCE],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--at", "soon"],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--at", "nan"],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--leeway", "-1"],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--leeway", "1.5"],
        ["TOKEN", "--jwks", "x", "--issuer", "", "--audience", AUDIENCE],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--timeout", "0"],
        ["TOKEN", "--jwks", "x", "--issuer", ISSUER, "--audience", AUDIENCE, "--max-lifetime", "0"],
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify", *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().out == ""


def test_jwks_from_an_http_url(capsys: pytest.CaptureFixture[str], jwks_server: JwksServer) -> None:
    jwks_server.routes["/.well-known/jwks.json"] = Route(body=json.dumps(jwks_document()).encode())
    url = jwks_server.url("/.well-known/jwks.json")
    code, out, err = run_cli(capsys, make_token(), *standard_args(url, "--at", str(NOW)))
    assert (code, err) == (0, "")
    assert json.loads(out) == claims()


def test_unreachable_jwks_url_exits_1(
    capsys: pytest.CaptureFixture[str], jwks_server: JwksServer
) -> None:
    url = jwks_server.url("/missing.json")
    code, _, err = run_cli(capsys, make_token(), *standard_args(url, "--at", str(NOW)))
    assert code == 1
    assert err.startswith("jwtkeys verify: refused: jwks_unavailable: ")
    assert "404" in err


def test_the_console_script(jwks_file: Path) -> None:
    # The installed entry point, in a fresh interpreter, end to end.
    script = Path(sys.executable).with_name("jwtkeys")
    valid = subprocess.run(
        [str(script), "verify", make_token(), *standard_args(str(jwks_file), "--at", str(NOW))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (valid.returncode, valid.stderr) == (0, "")
    assert json.loads(valid.stdout) == claims()
    refused = subprocess.run(
        [str(script), "verify", make_token(aud="x"), *standard_args(str(jwks_file))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "wrong_audience" in refused.stderr
    usage = subprocess.run(
        [str(script), "verify", make_token()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2


# --- jwks_source -----------------------------------------------------------------------


def test_load_jwks_from_a_file_and_a_file_url(jwks_file: Path) -> None:
    assert load_jwks(str(jwks_file)) == jwks_document()
    assert load_jwks(jwks_file.as_uri()) == jwks_document()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"", "not UTF-8 JSON"),
        (b"<html>", "not UTF-8 JSON"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'{"keys": [], "keys": []}', "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "no 'keys' list"),
        (b'{"keys": {}}', "no 'keys' list"),
        (b'{"keys": [1]}', "not an object"),
        (b'{"keys": [{"kid": "a"}]}', "no 'kty'"),
        (b'{"keys": [{"kty": "RSA", "kid": 1}]}', "'kid' that is not a string"),
        (b'{"keys": [{"kty": "RSA", "kid": "a"}, {"kty": "EC", "kid": "a"}]}', "more than one"),
        (b'{"keys": [{"kty": "RSA", "kid": "a", "d": "AQAB"}]}', "private key material"),
    ],
)
def test_parse_jwks_refuses_what_is_not_a_jwks(content: bytes, complaint: str) -> None:
    with pytest.raises(JwksUnavailable, match=complaint):
        parse_jwks(content)


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(JwksUnavailable, match="cannot read"):
        load_jwks(str(tmp_path / "absent.json"))
    with pytest.raises(JwksUnavailable, match="cannot read"):
        load_jwks(str(tmp_path))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_JWKS_BYTES + 1))
    with pytest.raises(JwksUnavailable, match="larger than"):
        load_jwks(str(big))


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("ftp://example.invalid/jwks.json", "unsupported"),
        ("http://[::1", "not a JWKS location"),
        ("jwks\x00.json", "not a file path"),
        ("http://", "must be https"),
        ("http://example.invalid/jwks.json", "must be https"),
        ("https://", "must be https"),
    ],
)
def test_unusable_locations(source: str, complaint: str) -> None:
    with pytest.raises(JwksUnavailable, match=complaint):
        load_jwks(source, timeout=1)


def test_messages_never_carry_url_credentials_or_query(jwks_server: JwksServer) -> None:
    # Given a URL with a password and a presigned-style query that answers 403
    base = jwks_server.base_url.replace("http://", "http://user:hunter2@")
    jwks_server.routes["/jwks.json?X-Amz-Signature=s3cr3t"] = Route(status=403)
    # Then the message names the place without either secret
    with pytest.raises(JwksUnavailable) as unavailable:
        load_jwks(base + "/jwks.json?X-Amz-Signature=s3cr3t")
    assert "HTTP 403" in str(unavailable.value)
    assert "hunter2" not in str(unavailable.value)
    assert "s3cr3t" not in str(unavailable.value)


def test_plain_http_is_refused_before_any_request_unless_loopback(
    jwks_server: JwksServer,
) -> None:
    jwks_server.routes["/jwks.json"] = Route(body=json.dumps(jwks_document()).encode())
    # The same server under a name that does not resolve to loopback would be refused...
    with pytest.raises(JwksUnavailable, match="must be https"):
        load_jwks(jwks_server.url("/jwks.json").replace("127.0.0.1", "jwks.example.invalid"))
    # ...while localhost and the loopback addresses are allowed.
    localhost = jwks_server.url("/jwks.json").replace("127.0.0.1", "localhost")
    assert load_jwks(localhost) == jwks_document()


def test_http_success(jwks_server: JwksServer) -> None:
    jwks_server.routes["/jwks.json"] = Route(body=json.dumps(jwks_document()).encode())
    assert load_jwks(jwks_server.url("/jwks.json")) == jwks_document()


def test_http_redirect_within_http_is_followed(jwks_server: JwksServer) -> None:
    jwks_server.routes["/jwks.json"] = Route(body=json.dumps(jwks_document()).encode())
    jwks_server.routes["/old"] = Route(status=301, headers={"Location": "/jwks.json"})
    assert load_jwks(jwks_server.url("/old")) == jwks_document()


@pytest.mark.parametrize(
    ("route", "complaint"),
    [
        (Route(status=404, body=b"nope"), "HTTP 404"),
        (Route(status=500, body=b"{}"), "HTTP 500"),
        (Route(status=204), "HTTP 204"),
        (Route(body=b"<html>not json</html>"), "not UTF-8 JSON"),
        (Route(body=b'{"jwks": []}'), "no 'keys' list"),
        (Route(body=b"[" + b" " * MAX_JWKS_BYTES + b"]"), "larger than"),
    ],
)
def test_http_failures_are_jwks_unavailable(
    jwks_server: JwksServer, route: Route, complaint: str
) -> None:
    jwks_server.routes["/jwks.json"] = route
    with pytest.raises(JwksUnavailable, match=complaint):
        load_jwks(jwks_server.url("/jwks.json"))


def test_a_slow_server_times_out(jwks_server: JwksServer) -> None:
    jwks_server.routes["/slow"] = Route(body=b'{"keys": []}', delay=5)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable, match="timed out"):
        load_jwks(jwks_server.url("/slow"), timeout=0.3)
    assert time.monotonic() - started < 3


def test_a_dripping_server_is_cut_off_by_the_overall_deadline(jwks_server: JwksServer) -> None:
    # Each byte arrives well within the socket timeout; the whole body never would.
    jwks_server.routes["/drip"] = Route(body=b'{"keys": []}' + b" " * 200, delay=0.05, drip=True)
    started = time.monotonic()
    with pytest.raises(JwksUnavailable, match="took longer"):
        load_jwks(jwks_server.url("/drip"), timeout=0.5)
    assert time.monotonic() - started < 3


def test_connection_refused() -> None:
    # A port that was free a moment ago: nothing listens there now.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_port
    probe.server_close()
    with pytest.raises(JwksUnavailable, match="cannot fetch"):
        load_jwks(f"http://127.0.0.1:{port}/jwks.json", timeout=2)
