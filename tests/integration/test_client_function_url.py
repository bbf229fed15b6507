"""FunctionUrlInvoker (and `jwtkeys sign --url`) against a local stand-in for a Function
URL: a small HTTP server that checks the SigV4 signature like IAM auth does, turns the
request into a Function URL event (payload 2.0, the caller's ARN in
`requestContext.authorizer.iam`) and answers through a real `SignService.handle`."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Logger
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jwtkeys.client import FunctionUrlInvoker, TokenClient
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import InvalidRequest, PolicyViolation, SigningUnavailable
from jwtkeys.metrics_catalog import SIGNER_SERVICE
from jwtkeys.observability import MetricsRecorder
from jwtkeys.signer.service import SignService
from jwtkeys.verify.jwks_source import load_jwks
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.cli import main as cli_main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

REGION = "us-east-1"
AUDIENCE = "client-test"
ORDERS_ROLE = "arn:aws:iam::123456789012:role/orders-service"
ORDERS = Credentials("AKIAORDERSSERVICE000", "orders-secret")
STRANGER = Credentials("AKIASTRANGER00000000", "stranger-secret")
# What IAM would resolve each access key to: an assumed-role session of the role, and
# a user with no signing rule.
CALLERS = {
    ORDERS.access_key: (
        ORDERS.secret_key,
        "arn:aws:sts::123456789012:assumed-role/orders-service/session-1",
    ),
    STRANGER.access_key: (STRANGER.secret_key, "arn:aws:iam::123456789012:user/stranger"),
}
_AUTHORIZATION = re.compile(
    r"\AAWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})\Z"
)


@dataclass
class FunctionUrl:
    url: str
    requests: list[dict[str, Any]]


def _signature_ok(method: str, url: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """The caller's ARN when the request carries a valid SigV4 signature for `lambda`."""
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None or match["service"] != "lambda" or match["region"] != REGION:
        return None
    caller = CALLERS.get(match["key"])
    if caller is None:
        return None
    secret, arn = caller
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return None
    request = AWSRequest(
        method=method, url=url, data=body, headers={name: headers[name] for name in signed}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(match["key"], secret), "lambda", REGION)
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    return arn if expected == match["signature"] else None


def _serve(service: SignService, seen: list[dict[str, Any]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            url = f"http://{headers['host']}{self.path}"
            seen.append({"headers": headers, "body": body})
            caller = _signature_ok("POST", url, headers, body)
            if caller is None:
                # What IAM auth answers before the function runs at all.
                self._answer(403, {"Content-Type": "application/json"}, '{"Message":"Forbidden"}')
                return
            event = {
                "version": "2.0",
                "rawPath": self.path,
                "rawQueryString": "",
                "headers": headers,
                "requestContext": {
                    "http": {"method": "POST", "path": self.path, "sourceIp": "127.0.0.1"},
                    "authorizer": {"iam": {"accessKey": "AKIA...", "userArn": caller}},
                },
                "body": body.decode("utf-8"),
                "isBase64Encoded": False,
            }
            answer = service.handle(event)
            self._answer(answer["statusCode"], answer["headers"], answer["body"])

        def _answer(self, status: int, headers: Mapping[str, str], body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def function_url(stack: LocalStack) -> Iterator[FunctionUrl]:
    """The keyset's signing function behind a local Function URL (keys bootstrapped)."""
    stack.config.caller_rules = {
        ORDERS_ROLE: {
            "subjects": ["svc-orders"],
            "audiences": [AUDIENCE],
            "claims": {"order": True},
        },
    }
    stack.keeper_service().handle({"action": "tick"})
    seen: list[dict[str, Any]] = []
    # The function's logs and metrics go to buffers: the CLI tests read stdout.
    quiet = SignService.create(
        stack.signer_env(),
        stack.kms,
        stack.clock,
        # Its own logger name: Powertools keeps the first handler configured per name.
        logger=Logger(service="jwtkeys-function-url-test", stream=io.StringIO()),
        metrics=MetricsRecorder(SIGNER_SERVICE, stack.config.keyset, write=lambda _: None),
    )
    server = _serve(quiet, seen)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield FunctionUrl(f"http://127.0.0.1:{server.server_port}/", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def invoker(url: str, credentials: Credentials = ORDERS) -> FunctionUrlInvoker:
    return FunctionUrlInvoker(url, region=REGION, credentials=credentials)


def test_signed_request_gets_a_token_that_verifies(
    stack: LocalStack, function_url: FunctionUrl, clock: SimulatedClock, local_aws: LocalAws
) -> None:
    # Given a TokenClient over the Function URL
    local_aws.reset_calls()
    client = TokenClient(invoker(function_url.url), clock=clock)

    # When a token is asked for three times
    tokens = [client.get_token("svc-orders", AUDIENCE, {"order": 7}) for _ in range(3)]

    # Then one signed POST was made, one KMS Sign, and the token verifies
    assert len(function_url.requests) == 1
    sent = function_url.requests[0]
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAORDERS")
    assert json.loads(sent["body"]) == {
        "subject": "svc-orders",
        "audience": AUDIENCE,
        "claims": {"order": 7},
    }
    assert local_aws.calls().count(("kms", "Sign")) == 1
    assert len({t.jti for t in tokens}) == 1
    claims = verify_token(
        tokens[0].token,
        load_jwks(stack.jwks_url),
        issuer="client-test",
        audience=AUDIENCE,
        now=clock.now(),
    )
    assert claims["order"] == 7


def test_credentials_from_a_boto3_session(function_url: FunctionUrl) -> None:
    session = boto3.Session(
        aws_access_key_id=ORDERS.access_key,
        aws_secret_access_key=ORDERS.secret_key,
        region_name=REGION,
    )
    issued = FunctionUrlInvoker(function_url.url, session).invoke(
        {"subject": "svc-orders", "audience": AUDIENCE}
    )
    assert issued.alg == "RS256"


def test_the_callers_own_rule_refuses_a_subject_the_keyset_allows(
    function_url: FunctionUrl, local_aws: LocalAws
) -> None:
    # svc-payments matches the keyset's svc-* but not the orders role's rule.
    local_aws.reset_calls()
    with pytest.raises(PolicyViolation, match="this caller may not ask for that subject"):
        invoker(function_url.url).invoke({"subject": "svc-payments", "audience": AUDIENCE})
    assert local_aws.calls().count(("kms", "Sign")) == 0


def test_a_caller_without_a_rule_is_refused(function_url: FunctionUrl) -> None:
    with pytest.raises(PolicyViolation, match="no signing rule"):
        invoker(function_url.url, STRANGER).invoke({"subject": "svc-orders", "audience": AUDIENCE})


def test_a_malformed_request_is_invalid_request(function_url: FunctionUrl) -> None:
    with pytest.raises(InvalidRequest, match="claim names"):
        invoker(function_url.url).invoke(
            {"subject": "svc-orders", "audience": AUDIENCE, "claims": {"": 1}}
        )


def test_a_bad_signature_is_refused_by_iam_as_policy_violation(function_url: FunctionUrl) -> None:
    forged = Credentials(ORDERS.access_key, "not-the-secret")
    with pytest.raises(PolicyViolation) as refused:
        invoker(function_url.url, forged).invoke({"subject": "svc-orders", "audience": AUDIENCE})
    assert refused.value.reason == "invoke_denied"


def test_kms_failure_is_signing_unavailable(function_url: FunctionUrl, local_aws: LocalAws) -> None:
    local_aws.inject_faults("http500", service="kms", operation="Sign")
    with pytest.raises(SigningUnavailable, match="HTTP 503"):
        invoker(function_url.url).invoke({"subject": "svc-orders", "audience": AUDIENCE})


def test_an_unreachable_url_is_signing_unavailable(function_url: FunctionUrl) -> None:
    closed = _serve_nothing()
    with pytest.raises(SigningUnavailable, match="could not be reached"):
        invoker(closed).invoke({"subject": "svc-orders", "audience": AUDIENCE})


def _serve_nothing() -> str:
    # A port that was just free: nothing listens there.
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()
    return f"http://127.0.0.1:{port}/"


# -- jwtkeys sign --url -------------------------------------------------------------


@pytest.fixture
def orders_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ORDERS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ORDERS.secret_key)


def test_sign_cli_prints_the_functions_json(
    function_url: FunctionUrl,
    orders_credentials: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_code = cli_main(
        [
            "sign",
            "--subject",
            "svc-orders",
            "--audience",
            AUDIENCE,
            "--claims",
            '{"order": 8}',
            "--ttl",
            "120",
            "--url",
            function_url.url,
            "--region",
            REGION,
        ]
    )
    out = capsys.readouterr()
    assert exit_code == 0, out.err
    answer = json.loads(out.out)
    assert set(answer) == {"token", "kid", "alg", "jti", "expires_at"}
    assert json.loads(function_url.requests[-1]["body"]) == {
        "subject": "svc-orders",
        "audience": AUDIENCE,
        "claims": {"order": 8},
        "ttl_seconds": 120,
    }


def test_sign_cli_refusal_is_exit_1_with_one_line(
    function_url: FunctionUrl,
    orders_credentials: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exit_code = cli_main(
        [
            *("sign", "--subject", "svc-payments", "--audience", AUDIENCE),
            *("--url", function_url.url, "--region", REGION),
        ]
    )
    out = capsys.readouterr()
    assert exit_code == 1
    assert out.out == ""
    assert out.err.count("\n") == 1
    assert out.err.startswith("jwtkeys sign: refused: PolicyViolation: ")
