"""LambdaInvoker: how Lambda Invoke answers become tokens or named errors.

moto's Lambda needs Docker to run a function, so the Invoke answers here come from
botocore's Stubber. Only the translation of Invoke's answer shapes is tested this way;
the error payloads themselves are built the way the Lambda Python runtime builds them
(`errorType` = the exception's class name, `errorMessage` = its str) from what a real
SignService raised against the local AWS endpoint.
"""

from __future__ import annotations

import io
import json
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from jwtkeys.client import LambdaInvoker, TokenClient
from jwtkeys.errors import InvalidRequest, PolicyViolation, SigningUnavailable
from jwtkeys.signer.service import SignService
from jwtkeys_tools.cli import main as cli_main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:jwtkeys-test-sign"
AUDIENCE = "client-test"


@pytest.fixture
def service(stack: LocalStack) -> SignService:
    stack.keeper_service().handle({"action": "tick"})
    return stack.sign_service()


@pytest.fixture
def stubbed(local_aws: LocalAws) -> Iterator[tuple[Any, Stubber]]:
    client = local_aws.client("lambda")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def runtime_answer(service: SignService, payload: dict[str, Any]) -> dict[str, Any]:
    """What Invoke returns for this payload, as the Lambda Python runtime reports it."""
    try:
        body: Any = service.handle(payload)
        error = None
    except Exception as raised:
        body = {
            "errorMessage": str(raised),
            "errorType": type(raised).__name__,
            "requestId": "c0ffee00-0000-4000-8000-000000000000",
            "stackTrace": traceback.format_tb(raised.__traceback__),
        }
        error = "Unhandled"
    return answer(body, error)


def answer(body: object, function_error: str | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(raw), len(raw)),
        "ExecutedVersion": "$LATEST",
    }
    if function_error is not None:
        response["FunctionError"] = function_error
    return response


def expect(stubber: Stubber, response: dict[str, Any], payload: dict[str, Any]) -> None:
    stubber.add_response(
        "invoke",
        response,
        {
            "FunctionName": FUNCTION,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(payload).encode("utf-8"),
        },
    )


def test_a_token_comes_back_and_is_cached(
    service: SignService, stubbed: tuple[Any, Stubber]
) -> None:
    client, stubber = stubbed
    payload = {"subject": "svc-orders", "audience": AUDIENCE}
    expect(stubber, runtime_answer(service, payload), payload)
    tokens = TokenClient(LambdaInvoker(FUNCTION, client))
    first = tokens.get_token("svc-orders", AUDIENCE)
    assert tokens.get_token("svc-orders", AUDIENCE) is first  # no second Invoke stubbed
    assert first.token.count(".") == 2


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (
            {"subject": "intruder", "audience": AUDIENCE},
            PolicyViolation,
            "subject is not in the keyset's allowlist",
        ),
        (
            {"subject": "svc-orders", "audience": AUDIENCE, "claims": {"": 1}},
            InvalidRequest,
            "claim names must be non-empty printable text",
        ),
        (
            {"subject": "svc-orders", "audience": AUDIENCE, "ttl_seconds": "soon"},
            InvalidRequest,
            "ttl_seconds must be an integer",
        ),
    ],
)
def test_a_refusal_becomes_the_same_named_error(
    service: SignService,
    stubbed: tuple[Any, Stubber],
    payload: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    client, stubber = stubbed
    expect(stubber, runtime_answer(service, payload), payload)
    with pytest.raises(error, match=message):
        LambdaInvoker(FUNCTION, client).invoke(payload)


@pytest.mark.parametrize(
    "body",
    [
        {"errorType": "SigningUnavailable", "errorMessage": "KMS throttled the Sign request"},
        {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 3.00 seconds"},
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'jwtkeys'"},
        {"errorMessage": "no errorType at all"},
        ["not", "an", "object"],
        b"",
    ],
)
def test_any_other_function_error_is_signing_unavailable(
    stubbed: tuple[Any, Stubber], body: object
) -> None:
    client, stubber = stubbed
    payload = {"subject": "svc-orders", "audience": AUDIENCE}
    expect(stubber, answer(body, "Unhandled"), payload)
    with pytest.raises(SigningUnavailable):
        LambdaInvoker(FUNCTION, client).invoke(payload)


def test_a_non_json_answer_is_signing_unavailable(stubbed: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed
    payload = {"subject": "svc-orders", "audience": AUDIENCE}
    expect(stubber, answer(b"<html>gateway</html>"), payload)
    with pytest.raises(SigningUnavailable, match="non-JSON"):
        LambdaInvoker(FUNCTION, client).invoke(payload)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("TooManyRequestsException", SigningUnavailable),
        ("ResourceNotFoundException", SigningUnavailable),
        ("ServiceException", SigningUnavailable),
        ("AccessDeniedException", PolicyViolation),
    ],
)
def test_invoke_errors(stubbed: tuple[Any, Stubber], code: str, error: type[Exception]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("invoke", service_error_code=code, http_status_code=400)
    with pytest.raises(error, match=code if error is SigningUnavailable else "not allowed"):
        LambdaInvoker(FUNCTION, client).invoke({"subject": "svc-orders", "audience": AUDIENCE})


def test_a_function_name_is_required(local_aws: LocalAws) -> None:
    with pytest.raises(ValueError, match="function name"):
        LambdaInvoker("", local_aws.client("lambda"))


def test_sign_cli_through_lambda_invoke_reports_a_missing_function(
    local_aws_env: LocalAws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A real Invoke at the local endpoint (no such function there): exit 1, one line.
    monkeypatch.setenv("JWTKEYS_SIGN_FUNCTION", "jwtkeys-missing-sign")
    exit_code = cli_main(["sign", "--subject", "svc-orders", "--audience", AUDIENCE])
    out = capsys.readouterr()
    assert exit_code == 1
    assert out.out == ""
    assert out.err.startswith("jwtkeys sign: refused: SigningUnavailable: ")
    assert "ResourceNotFoundException" in out.err
    assert out.err.count("\n") == 1
    assert ("lambda", "Invoke") in local_aws_env.calls()
