"""Forged requests to the signing function: each is refused by name, with no KMS call at all.

The hidden-attack table of tests/unit/test_verify.py, for the signer: identities it must
not believe, claims no rule names, and event shapes meant to crash it. The function runs
as Lambda loads it, against the local AWS endpoint, which counts every KMS call.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwtkeys.errors import InvalidRequest, PolicyViolation
from jwtkeys.signer.service import SignService
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

from ..lambda_fixtures import LambdaContext, load_handler

ACCOUNT = "123456789012"
PAYMENTS = f"arn:aws:iam::{ACCOUNT}:role/teams/payments-api"
PAYMENTS_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/payments-api/i-0abc"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/admin-tools"
GOOD = {"subject": "svc-payments", "audience": "client-test"}


@pytest.fixture
def signer(stack: LocalStack, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The default stage: direct invoke off, two callers with their own rules."""
    stack.config.direct_invoke_claims = None
    stack.config.caller_rules = {
        PAYMENTS: {
            "subjects": ["svc-payments"],
            "audiences": ["client-test"],
            "claims": {"roles": ["reader"], "tenant": ["t-*"]},
        },
        ADMIN: {"subjects": ["svc-admin"], "audiences": ["client-test"]},
    }
    stack.keeper_service().handle({"action": "tick"})
    environ = {**local_aws.env(), **stack.signer_env()}
    environ |= stack.role_environ(stack.config.signer_role_arn)
    return load_handler("sign", environ, monkeypatch)


def url_event(body: object = GOOD, caller: object = PAYMENTS_SESSION, **top: Any) -> dict[str, Any]:
    """A Function URL event (payload 2.0) as Lambda builds it, or as a forger would."""
    event: dict[str, Any] = {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {
            "http": {"method": "POST", "path": "/"},
            "authorizer": {"iam": {"userArn": caller}},
        },
        "body": body if isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
    }
    event.update(top)
    return event


def with_context(**context: Any) -> dict[str, Any]:
    event = url_event()
    event["requestContext"].update(context)
    return event


def nested(depth: int) -> str:
    return '{"subject": "svc-payments", "audience": "client-test", "claims": {"x": ' + (
        "[" * depth + "]" * depth + "}}"
    )


Forged = tuple[type[Exception], str, Callable[[], object]]

FORGED: dict[str, Forged] = {
    # --- identity: who is asking ------------------------------------------------------
    "direct invoke for another caller's subject": (
        PolicyViolation,
        "direct_invoke_disabled",
        lambda: {"subject": "svc-admin", "audience": "client-test"},
    ),
    "direct invoke of junk (refused for the path, before parsing)": (
        PolicyViolation,
        "direct_invoke_disabled",
        lambda: ["not", "a", "request"],
    ),
    "direct invoke of null": (PolicyViolation, "direct_invoke_disabled", lambda: None),
    "url event without an authorizer": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: with_context(authorizer=None),
    ),
    "url event with the account root": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=f"arn:aws:iam::{ACCOUNT}:root"),
    ),
    "url event with a bare account id": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=ACCOUNT),
    ),
    "url event with a wildcard caller": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller="*"),
    ),
    "url event with a caller and a trailing newline": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=PAYMENTS_SESSION + "\n"),
    ),
    "url event with a caller list": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=[PAYMENTS_SESSION, ADMIN]),
    ),
    "url event with a role named like the caller's plus a suffix": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/payments-api-x/s"),
    ),
    "url event with the caller's role name in another account": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller="arn:aws:sts::999999999999:assumed-role/payments-api/s"),
    ),
    "url event with the role's path in the session ARN": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=f"arn:aws:sts::{ACCOUNT}:assumed-role/teams/payments-api/s"),
    ),
    "url event with a huge caller ARN": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: url_event(caller=PAYMENTS + "/x" * 5000),
    ),
    "caller asks for another caller's subject": (
        PolicyViolation,
        "subject_not_allowed",
        lambda: url_event({"subject": "svc-admin", "audience": "client-test"}),
    ),
    "caller asks for a foreign audience": (
        PolicyViolation,
        "audience_not_allowed",
        lambda: url_event({"subject": "svc-payments", "audience": "other-app"}),
    ),
    # --- claims: what it asks for -----------------------------------------------------
    "roles the rule does not allow": (
        PolicyViolation,
        "claim_value_not_allowed",
        lambda: url_event({**GOOD, "claims": {"roles": ["admin"]}}),
    ),
    "an allowed role smuggled beside a forbidden one": (
        PolicyViolation,
        "claim_value_not_allowed",
        lambda: url_event({**GOOD, "claims": {"roles": ["reader", "admin"]}}),
    ),
    "a tenant outside the pattern": (
        PolicyViolation,
        "claim_value_not_allowed",
        lambda: url_event({**GOOD, "claims": {"tenant": "x-1"}}),
    ),
    "a claim the rule does not name": (
        PolicyViolation,
        "claim_not_allowed",
        lambda: url_event({**GOOD, "claims": {"scope": "payments:admin"}}),
    ),
    **{
        f"identity claim {name}": (
            PolicyViolation,
            "reserved_claim",
            lambda name=name: url_event({**GOOD, "claims": {name: "svc-admin"}}),  # type: ignore[misc]
        )
        for name in ("email", "upn", "user_name", "preferred_username", "azp", "act", "client_id")
    },
    **{
        f"shadow of iss: {name!r}": (
            PolicyViolation,
            "reserved_claim",
            lambda name=name: url_event({**GOOD, "claims": {name: "evil"}}),  # type: ignore[misc]
        )
        for name in ("\u0130ss", "\u0131ss", "\u0130SS", "\uff49ss", "\u0456ss", "\u03b9ss")
    },
    "an invisible character in a claim name": (
        InvalidRequest,
        "bad_claims",
        lambda: url_event({**GOOD, "claims": {"i\u200bss": "evil"}}),
    ),
    "a header name as a claim": (
        PolicyViolation,
        "reserved_claim",
        lambda: url_event({**GOOD, "claims": {"kid": "other"}}),
    ),
    "claims nested past the limit": (
        InvalidRequest,
        "claims_too_deep",
        lambda: url_event({**GOOD, "claims": {"roles": [[[[[[[[["reader"]]]]]]]]]}}),
    ),
    "NaN in the claims": (
        InvalidRequest,
        "bad_claims",
        lambda: url_event(
            '{"subject": "svc-payments", "audience": "client-test", "claims": {"tenant": NaN}}'
        ),
    ),
    # --- shapes: meant to crash it ------------------------------------------------------
    "a body nested 20000 deep": (
        InvalidRequest,
        "malformed_request",
        lambda: url_event(nested(20_000)),
    ),
    "a body that repeats subject": (
        InvalidRequest,
        "malformed_request",
        lambda: url_event(
            '{"subject": "svc-payments", "subject": "svc-admin", "audience": "client-test"}'
        ),
    ),
    "a body that is a number": (InvalidRequest, "malformed_request", lambda: url_event(body=7)),
    "a body that is not text": (
        InvalidRequest,
        "malformed_request",
        lambda: {**url_event(), "body": {"subject": "svc-payments"}},
    ),
    "a body over 64 KiB": (
        InvalidRequest,
        "request_too_large",
        lambda: url_event({**GOOD, "claims": {"tenant": "t-" + "x" * 70_000}}),
    ),
    "a base64 flag that is not a bool": (
        InvalidRequest,
        "malformed_request",
        lambda: url_event(isBase64Encoded="yes"),
    ),
    "a base64 body that is not base64": (
        InvalidRequest,
        "malformed_request",
        lambda: url_event("%%%", isBase64Encoded=True),
    ),
    "a base64 body that is not UTF-8": (
        InvalidRequest,
        "malformed_request",
        lambda: url_event(base64.b64encode(b"\xff\xfe").decode(), isBase64Encoded=True),
    ),
    "a GET": (
        InvalidRequest,
        "malformed_request",
        lambda: with_context(http={"method": "GET", "path": "/"}),
    ),
    "http context that is a string": (
        InvalidRequest,
        "malformed_request",
        lambda: with_context(http="POST"),
    ),
    "authorizer that is a string": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: with_context(authorizer="iam"),
    ),
    "iam that is a list": (
        PolicyViolation,
        "caller_not_allowed",
        lambda: with_context(authorizer={"iam": [PAYMENTS_SESSION]}),
    ),
    "a request that is a list": (InvalidRequest, "malformed_request", lambda: url_event([GOOD])),
    "an unknown request field": (
        InvalidRequest,
        "unknown_field",
        lambda: url_event({**GOOD, "kid": "other"}),
    ),
    "a subject that is a number": (
        InvalidRequest,
        "bad_subject",
        lambda: url_event({**GOOD, "subject": 7}),
    ),
    "a ttl that is a string": (
        InvalidRequest,
        "bad_ttl",
        lambda: url_event({**GOOD, "ttl_seconds": "3600"}),
    ),
}


def refusal_of(signer: ModuleType, event: object) -> tuple[str, str]:
    """(errorType or error code, message) of a refused invocation, as its caller sees it."""
    if isinstance(event, dict) and "requestContext" in event:
        response = signer.lambda_handler(event, LambdaContext())
        refusal = json.loads(response["body"])["error"]
        # A Function URL caller gets 400/403 naming the error and the reason
        expected_status = 403 if refusal["code"] == "PolicyViolation" else 400
        assert response["statusCode"] == expected_status, response
        assert refusal["message"].startswith(f"{refusal['reason']}: ")
        return refusal["code"], refusal["message"]
    # A direct invoke raises: Lambda reports the class name as errorType, and the message
    try:
        signer.lambda_handler(event, LambdaContext())
    except (InvalidRequest, PolicyViolation) as refused:
        return type(refused).__name__, str(refused)
    raise AssertionError("a forged direct invoke was served")


def test_every_forged_request_is_refused_by_name_without_any_kms_call(
    signer: ModuleType, local_aws: LocalAws
) -> None:
    # One function for the whole table: each case is one invocation, and a cold start
    # per case would cost more than every case together.
    wrong: dict[str, object] = {}
    for name, (error, reason, make_event) in FORGED.items():
        # Given a fresh count of the calls at the local AWS endpoint
        event = make_event()
        local_aws.reset_calls()
        # When the forged request reaches the function
        error_type, message = refusal_of(signer, event)
        kms_calls = [call for call in local_aws.calls() if call[0] == "kms"]
        # Then it is refused with that error and reason, and KMS was never asked anything
        if (error_type, message.split(":")[0], kms_calls) != (error.__name__, reason, []):
            wrong[name] = (error_type, message, kms_calls)
    assert wrong == {}
    assert len(FORGED) >= 45


def test_the_real_caller_still_gets_its_token(signer: ModuleType) -> None:
    ok = signer.lambda_handler(
        url_event({**GOOD, "claims": {"roles": ["reader"], "tenant": "t-9"}}), LambdaContext()
    )
    assert ok["statusCode"] == 200, ok["body"]


def test_logs_never_name_an_identity_the_function_did_not_accept(stack: LocalStack) -> None:
    # Given a signer whose logs are captured
    stack.config.direct_invoke_claims = None
    stack.config.caller_rules = {PAYMENTS: {"subjects": ["svc-payments"], "audiences": ["x"]}}
    stream = io.StringIO()
    service = SignService.create(
        stack.signer_env(),
        stack.kms,
        stack.clock,
        logger=Logger(service="jwtkeys-signer-forged-log-test", stream=stream),
    )
    # When a direct invoke and an event with a malformed caller ARN arrive
    with pytest.raises(PolicyViolation):
        service.handle({**GOOD, "caller": ADMIN})
    service.handle(url_event(caller=ADMIN + "\nforged"))
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Then neither names the admin role as the caller
    assert [r["caller"] for r in records] == ["direct-invoke", "unrecognised"]
    assert ADMIN not in stream.getvalue()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
# Function URL events of any shape: every level replaced, in turn, by arbitrary JSON.
shaped_events = st.builds(
    lambda http, authorizer, body, flag: {
        "version": "2.0",
        "requestContext": {"http": http, "authorizer": authorizer},
        "body": body,
        "isBase64Encoded": flag,
    },
    st.one_of(json_values, st.just({"method": "POST"})),
    st.one_of(
        json_values,
        st.builds(lambda iam: {"iam": iam}, json_values),
        st.builds(lambda arn: {"iam": {"userArn": arn}}, json_values),
    ),
    st.one_of(json_values, json_values.map(json.dumps)),
    json_values,
)


def test_events_of_any_shape_are_refused_by_name_never_crash(
    signer: ModuleType, local_aws: LocalAws
) -> None:
    local_aws.reset_calls()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(event=shaped_events | json_values)
    def run(event: object) -> None:
        try:
            response = signer.lambda_handler(event, LambdaContext())
        except (InvalidRequest, PolicyViolation):
            return  # a direct invoke, refused by name
        # A Function URL-shaped event: a 4xx naming the error, never a 5xx or a token
        assert response["statusCode"] in (400, 403), response
        assert json.loads(response["body"])["error"]["code"] in {
            "InvalidRequest",
            "PolicyViolation",
        }

    run()
    assert [call for call in local_aws.calls() if call[0] == "kms"] == []
