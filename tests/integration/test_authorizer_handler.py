"""The API Gateway authorizer's handler, loaded as Lambda would, against the local stack.

Tokens come from the local signing function; the authorizer fetches the JWKS the keeper
published. Both event shapes: HTTP API payload 2.0 (simple responses) and REST TOKEN.
"""

from __future__ import annotations

import json
import time
from types import ModuleType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jwtkeys import metrics_catalog as catalog
from jwtkeys.errors import ConfigurationError, InvalidRequest
from jwtkeys.verify.authorizer import AuthorizerSettings, parse_routes
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack

from ..lambda_fixtures import LambdaContext, emf_documents, emitted_metrics, load_handler

ROUTES = {
    "GET /orders": {"audience": "client-test"},
    "POST /orders": {"audience": "client-test", "claims": {"scope": "orders:write"}},
    "GET /billing/*": {"audience": "billing"},
}
API_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod"
MAX_LIFETIME = 1800


@pytest.fixture
def authorizer(
    stack: LocalStack, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """A bootstrapped keyset (signing for two audiences) and a cold-started authorizer."""
    stack.config.allowed_audiences = ("client-test", "billing")
    # The routes' required claim: a direct invoke may set it (no other extra claim).
    stack.config.direct_invoke_claims = {"scope": True}
    stack.keeper_service().handle({"action": "tick"})
    settings = AuthorizerSettings(
        keyset=stack.config.keyset,
        issuer=stack.config.issuer,
        jwks_url=stack.jwks_url,
        routes=parse_routes(ROUTES, "routes"),
        cache_ttl=30,
        leeway=0,
        max_lifetime=MAX_LIFETIME,
    )
    return load_handler("authorizer", {**local_aws.env(), **settings.to_environ()}, monkeypatch)


def _token(stack: LocalStack, audience: str = "client-test", **request: Any) -> str:
    return str(
        stack.sign_service().handle({"subject": "svc-orders", "audience": audience, **request})[
            "token"
        ]
    )


def _http_event(route: str, authorization: str | None) -> dict[str, Any]:
    verb, _, path = route.partition(" ")
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"{API_ARN}/{verb}{path}",
        "identitySource": [authorization] if authorization else [],
        "routeKey": route,
        "rawPath": path,
        "headers": headers,
        "requestContext": {"http": {"method": verb, "path": path}},
    }


def _rest_event(verb: str, path: str, authorization: str) -> dict[str, Any]:
    return {
        "type": "TOKEN",
        "authorizationToken": authorization,
        "methodArn": f"{API_ARN}/{verb}{path}",
    }


def _refusal_reasons(output: str) -> list[str]:
    return [
        document["reason"]
        for document in emf_documents(output)
        if "reason" in document and document.get("service") == catalog.AUTHORIZER_SERVICE
    ]


def test_http_api_accepts_a_token_from_the_signing_function(
    authorizer: ModuleType, stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _token(stack)
    answer = authorizer.lambda_handler(
        _http_event("GET /orders", f"Bearer {token}"), LambdaContext()
    )

    assert answer["isAuthorized"] is True
    claims = jwt.decode(token, options={"verify_signature": False})
    assert answer["context"] == {"sub": "svc-orders", "iss": claims["iss"], "jti": claims["jti"]}
    output = capsys.readouterr().out
    assert (
        catalog.AUTHORIZER_ACCEPTED.name,
        frozenset(catalog.AUTHORIZER_ACCEPTED.dimensions),
    ) in (emitted_metrics(output))
    assert token not in output


@pytest.mark.parametrize(
    ("route", "header", "reason"),
    [
        ("GET /orders", None, "no_bearer_token"),
        ("GET /orders", "Basic dXNlcjpwYXNz", "no_bearer_token"),
        ("DELETE /orders", "TOKEN", "no_route_rule"),
        ("GET /billing/42", "TOKEN", "wrong_audience"),
        ("POST /orders", "TOKEN", "missing_required_claim"),
        ("GET /orders", "FORGED", "bad_signature"),
        ("GET /orders", "OUTSIDER", "unknown_kid"),
        ("GET /orders", "SHORT", "expires_within_cache_ttl"),
        ("GET /orders", "LONG", "lifetime_too_long"),
        ("GET /orders", "Bearer not.a-token.x", "malformed"),
    ],
)
def test_http_api_refusals_name_the_reason_and_never_echo_the_token(
    authorizer: ModuleType,
    stack: LocalStack,
    capsys: pytest.CaptureFixture[str],
    route: str,
    header: str | None,
    reason: str,
) -> None:
    token = _token(stack)
    outsider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    substitutes = {
        "TOKEN": f"Bearer {token}",
        # Same claims, signed by a key the JWKS does not hold: under our kid, and under its own.
        "FORGED": f"Bearer {jwt.encode(claims, outsider, 'RS256', headers={'kid': kid})}",
        "OUTSIDER": f"Bearer {jwt.encode(claims, outsider, 'RS256', headers={'kid': 'outsider'})}",
        "SHORT": f"Bearer {_token(stack, ttl_seconds=20)}",
        # A real token living longer than the authorizer's max_lifetime (set below the
        # signer's cap here, so that the keyset's own signer can mint one).
        "LONG": f"Bearer {_token(stack, ttl_seconds=MAX_LIFETIME + 60)}",
    }
    capsys.readouterr()
    answer = authorizer.lambda_handler(
        _http_event(route, substitutes.get(header or "", header)), LambdaContext()
    )

    assert answer == {"isAuthorized": False}
    output = capsys.readouterr().out
    assert _refusal_reasons(output) == [reason]
    for value in substitutes.values():
        assert value.removeprefix("Bearer ") not in output


def test_a_required_claim_admits_the_token_that_carries_it(
    authorizer: ModuleType, stack: LocalStack
) -> None:
    writer = _token(stack, claims={"scope": "orders:read orders:write"})
    reader = _token(stack, claims={"scope": "orders:read"})
    assert authorizer.lambda_handler(
        _http_event("POST /orders", f"Bearer {writer}"), LambdaContext()
    )["isAuthorized"]
    assert not authorizer.lambda_handler(
        _http_event("POST /orders", f"Bearer {reader}"), LambdaContext()
    )["isAuthorized"]
    billing = _token(stack, audience="billing")
    assert authorizer.lambda_handler(
        _http_event("GET /billing/*", f"Bearer {billing}"), LambdaContext()
    )["isAuthorized"]


def test_rest_token_authorizer_allows_every_route_the_token_may_call(
    authorizer: ModuleType, stack: LocalStack
) -> None:
    token = _token(stack, claims={"scope": "orders:write"})
    answer = authorizer.lambda_handler(
        _rest_event("GET", "/orders", f"Bearer {token}"), LambdaContext()
    )

    assert answer["principalId"] == "svc-orders"
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "execute-api:Invoke"
    # Cached per token for the whole API: both orders routes, not the billing one.
    assert statement["Resource"] == [f"{API_ARN}/GET/orders", f"{API_ARN}/POST/orders"]
    assert answer["context"]["sub"] == "svc-orders"


def test_rest_token_authorizer_denies_the_method_without_the_token(
    authorizer: ModuleType, stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    token = _token(stack, audience="billing")
    capsys.readouterr()
    answer = authorizer.lambda_handler(
        _rest_event("GET", "/orders", f"Bearer {token}"), LambdaContext()
    )

    assert answer == {
        "principalId": "refused",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Deny",
                    "Resource": [f"{API_ARN}/GET/orders"],
                }
            ],
        },
    }
    output = capsys.readouterr().out
    assert token not in json.dumps(answer)
    assert token not in output
    assert _refusal_reasons(output) == ["wrong_audience"]


def test_the_jwks_is_fetched_once_per_container(
    authorizer: ModuleType, stack: LocalStack, local_aws: LocalAws
) -> None:
    tokens = [_token(stack) for _ in range(5)]
    local_aws.reset_calls()
    started = time.monotonic()
    for token in tokens:
        event = _http_event("GET /orders", f"Bearer {token}")
        assert authorizer.lambda_handler(event, LambdaContext())["isAuthorized"]
    assert [c for c in local_aws.calls() if c[0] == "s3"] == [("s3", "GetObject")]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "event",
    [
        {"version": "1.0", "type": "REQUEST"},
        {"type": "TOKEN", "authorizationToken": "Bearer x"},
        {"version": "2.0", "type": "REQUEST", "headers": {}},
        {"action": "tick"},
    ],
)
def test_other_events_are_invalid_requests(authorizer: ModuleType, event: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        authorizer.lambda_handler(event, LambdaContext())


@pytest.mark.parametrize(
    "routes",
    [
        {},
        {"GET /x": {"audience": ""}},
        {"GET /x": {"audience": "a", "claims": {"scope": 1}}},
        {"GET /x": {"audience": "a", "extra": True}},
    ],
)
def test_bad_route_rules_are_refused(routes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        parse_routes(routes, "routes")


def test_settings_round_trip_through_the_environment() -> None:
    settings = AuthorizerSettings(
        keyset="orders",
        issuer="https://issuer.example",
        jwks_url="https://keys.example/.well-known/jwks.json",
        routes=parse_routes(ROUTES, "routes"),
        cache_ttl=45,
        leeway=10,
        max_lifetime=7200,
    )
    assert AuthorizerSettings.from_environ(settings.to_environ()) == settings
    with pytest.raises(ConfigurationError, match="cache_ttl"):
        AuthorizerSettings(**{**settings.__dict__, "cache_ttl": 3601})
