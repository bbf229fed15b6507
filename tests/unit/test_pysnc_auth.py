"""ServiceNowJwtBearerAuth without a network: instance URLs, configuration, secrets,
which requests get the header, one retry at most, malformed token answers.

HTTP goes through small transport adapters mounted on real requests sessions, so the
requests machinery (hooks, re-sends) runs as it does on the wire. The exchange with a
real instance is tested against the ServiceNow emulator in
tests/integration/test_client_pysnc.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import pysnc
import pytest
import requests
from botocore.exceptions import ClientError
from requests.adapters import BaseAdapter

from jwtkeys.client import IssuedToken
from jwtkeys.client.pysnc_auth import ServiceNowJwtBearerAuth, instance_url
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError, PolicyViolation, ServiceNowError

INSTANCE = "https://snc.example.test:8443"
Handler = Callable[[requests.PreparedRequest], tuple[int, object]]


class Transport(BaseAdapter):
    """Answers requests from a handler; records what was sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        status, body = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = str(request.url)
        response.raw = io.BytesIO()
        response.connection = self  # type: ignore[assignment]
        return response

    def close(self) -> None:
        pass


class FreshTokens:
    def __init__(self) -> None:
        self.issued: list[tuple[str, str]] = []

    def fresh_token(
        self,
        subject: str,
        audience: str,
        claims: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        self.issued.append((subject, audience))
        n = len(self.issued)
        return IssuedToken(f"jwt-{n}", "kid-1", "RS256", f"jti-{n}", 2_000_000_000)


def token_endpoint(expires_in: object = 1799) -> Handler:
    count = 0

    def answer(request: requests.PreparedRequest) -> tuple[int, object]:
        nonlocal count
        count += 1
        return 200, {
            "access_token": f"access-{count}",
            "token_type": "Bearer",
            "expires_in": expires_in,
        }

    return answer


def make_auth(
    tokens: FreshTokens,
    exchange: Transport,
    clock: SimulatedClock | None = None,
    **options: Any,
) -> ServiceNowJwtBearerAuth:
    http = requests.Session()
    http.mount("https://", exchange)
    return ServiceNowJwtBearerAuth(
        INSTANCE,
        tokens,
        "svc-a",
        client_id=options.pop("client_id", "cid"),
        client_secret=options.pop("client_secret", "csecret"),
        clock=clock or SimulatedClock(1_800_000_000),
        http=http,
        **options,
    )


def table_session(auth: ServiceNowJwtBearerAuth, table: Transport) -> requests.Session:
    session = requests.Session()
    session.auth = auth
    session.mount("https://", table)
    return session


# -- instance URLs and configuration -------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("dev12345", "https://dev12345.service-now.com"),
        ("https://dev12345.service-now.com/", "https://dev12345.service-now.com"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
    ],
)
def test_instance_url(given: str, expected: str) -> None:
    assert instance_url(given) == expected


@pytest.mark.parametrize("given", ["", "http://dev1.service-now.com", "dev1.example", "https://"])
def test_instance_url_refuses(given: str) -> None:
    with pytest.raises(ConfigurationError):
        instance_url(given)


def test_token_url_keeps_the_port() -> None:
    auth = make_auth(FreshTokens(), Transport(token_endpoint()))
    assert auth.token_url == f"{INSTANCE}/oauth_token.do"


@pytest.mark.parametrize(
    "options",
    [
        {"client_id": "cid", "client_secret": None},
        {"client_id": None, "client_secret": "s"},
    ],
)
def test_incomplete_credentials_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ServiceNowJwtBearerAuth(INSTANCE, FreshTokens(), "svc-a", **options)


def test_pysnc_takes_the_plugin_as_its_session_auth() -> None:
    auth = make_auth(FreshTokens(), Transport(token_endpoint()))
    client = pysnc.ServiceNowClient(INSTANCE, auth=auth)
    assert client.session.auth is auth
    client.session.close()


# -- exchange and caching --------------------------------------------------------------


def test_exchange_form_and_audience_default() -> None:
    tokens, exchange = FreshTokens(), Transport(token_endpoint())
    auth = make_auth(tokens, exchange)
    assert auth.access_token() == "access-1"
    (request,) = exchange.sent
    assert request.url == f"{INSTANCE}/oauth_token.do"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(str(request.body)) == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "assertion": ["jwt-1"],
        "client_id": ["cid"],
        "client_secret": ["csecret"],
    }
    # aud defaults to the client_id: ServiceNow checks aud == client_id
    assert tokens.issued == [("svc-a", "cid")]


def test_short_access_tokens_are_reused_for_half_their_life() -> None:
    clock = SimulatedClock(1_800_000_000)
    exchange = Transport(token_endpoint(expires_in=60))
    auth = make_auth(FreshTokens(), exchange, clock)
    assert auth.access_token() == "access-1"
    clock.advance(29)
    assert auth.access_token() == "access-1"
    clock.advance(1)
    assert auth.access_token() == "access-2"


def test_invalidate_keeps_a_token_that_already_replaced_the_rejected_one() -> None:
    auth = make_auth(FreshTokens(), Transport(token_endpoint()))
    assert auth.access_token() == "access-1"
    auth.invalidate(rejected="access-0")  # a stale 401 seen by another thread
    assert auth.access_token() == "access-1"
    auth.invalidate(rejected="access-1")
    assert auth.access_token() == "access-2"


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"access_token": "a"}),
        (200, {"access_token": "a", "expires_in": 0}),
        (200, {"access_token": "a", "expires_in": "1799"}),
        (200, {"access_token": "", "expires_in": 1799}),
        (200, b"<html>login</html>"),
        (401, {"error_description": "access_denied", "error": "server_error"}),
        (500, b""),
    ],
)
def test_a_failed_or_malformed_exchange_is_servicenow_error(answer: tuple[int, object]) -> None:
    auth = make_auth(FreshTokens(), Transport(lambda _: answer))
    with pytest.raises(ServiceNowError) as raised:
        auth.access_token()
    assert "csecret" not in str(raised.value)
    assert "jwt-1" not in str(raised.value)


class Redirecting(Transport):
    """Answers every request with a redirect elsewhere, and records what was sent."""

    def __init__(self, status: int) -> None:
        super().__init__(lambda _: (status, b""))

    def send(self, request: requests.PreparedRequest, **options: Any) -> requests.Response:  # type: ignore[override]
        response = super().send(request, **options)
        response.headers["Location"] = "https://evil.example.test/steal"
        return response


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_token_post_never_follows_a_redirect(status: int) -> None:
    # Given a token endpoint that redirects (a 307/308 would re-send the client secret)
    redirecting = Redirecting(status)
    auth = make_auth(FreshTokens(), redirecting)
    # When an access token is asked for, Then the exchange fails naming the redirect
    with pytest.raises(ServiceNowError, match=f"redirect \\(HTTP {status}\\)"):
        auth.access_token()
    # And nothing was sent anywhere but the configured token URL
    assert [request.url for request in redirecting.sent] == [f"{INSTANCE}/oauth_token.do"]


def test_an_unreachable_token_endpoint_is_servicenow_error() -> None:
    def refuse(_: requests.PreparedRequest) -> tuple[int, object]:
        raise requests.ConnectionError("connection refused")

    with pytest.raises(ServiceNowError, match="could not be reached"):
        make_auth(FreshTokens(), Transport(refuse)).access_token()


def test_a_signer_refusal_reaches_the_caller_by_name() -> None:
    class Refusing(FreshTokens):
        def fresh_token(self, *args: Any, **kwargs: Any) -> IssuedToken:
            raise PolicyViolation("subject_not_allowed", "subject is not in the allowlist")

    exchange = Transport(token_endpoint())
    with pytest.raises(PolicyViolation):
        make_auth(Refusing(), exchange).access_token()
    assert exchange.sent == []


# -- which requests get the header; one retry ----------------------------------------


def test_requests_to_other_origins_get_no_token() -> None:
    exchange = Transport(token_endpoint())
    table = Transport(lambda _: (200, {"result": []}))
    session = table_session(make_auth(FreshTokens(), exchange), table)
    session.get("https://snc.example.test/api/now/table/sys_user")  # port 443, not 8443
    session.get("https://elsewhere.example.test:8443/api/now/table/sys_user")
    assert all("Authorization" not in r.headers for r in table.sent)
    assert exchange.sent == []
    session.get(f"{INSTANCE}/api/now/table/sys_user")
    assert table.sent[-1].headers["Authorization"] == "Bearer access-1"


def test_a_401_is_retried_once_with_a_new_exchange() -> None:
    # Given a Table API that accepts only the second access token
    exchange = Transport(token_endpoint())

    def table_api(request: requests.PreparedRequest) -> tuple[int, object]:
        if request.headers["Authorization"] == "Bearer access-2":
            body: Any = request.body
            return 200, {"result": [{"body": body.decode()}]}
        return 401, {"error": {"message": "User Not Authenticated"}, "status": "failure"}

    table = Transport(table_api)
    session = table_session(make_auth(FreshTokens(), exchange), table)

    # When a request with a body is sent
    response = session.post(f"{INSTANCE}/api/now/table/incident", data=b'{"a": 1}')

    # Then it was resent once, body intact, after a second exchange with a fresh JWT
    assert response.status_code == 200
    assert response.json() == {"result": [{"body": '{"a": 1}'}]}
    assert [r.status_code for r in response.history] == [401]
    assert len(table.sent) == 2
    assert [parse_qs(str(r.body))["assertion"] for r in exchange.sent] == [["jwt-1"], ["jwt-2"]]


def test_a_second_401_is_returned_not_retried_again() -> None:
    exchange = Transport(token_endpoint())
    table = Transport(lambda _: (401, {"error": {"message": "User Not Authenticated"}}))
    session = table_session(make_auth(FreshTokens(), exchange), table)
    response = session.get(f"{INSTANCE}/api/now/table/sys_user")
    assert response.status_code == 401
    assert len(table.sent) == 2
    assert len(exchange.sent) == 2


def test_a_streamed_body_is_rewound_for_the_retry() -> None:
    exchange = Transport(token_endpoint())
    seen: list[bytes] = []

    def table_api(request: requests.PreparedRequest) -> tuple[int, object]:
        body: Any = request.body
        seen.append(body.read())
        ok = request.headers["Authorization"] == "Bearer access-2"
        return (200, {"result": {}}) if ok else (401, {"error": {}})

    session = table_session(make_auth(FreshTokens(), exchange), Transport(table_api))
    stream = io.BytesIO(b"attachment bytes")
    assert session.post(f"{INSTANCE}/api/now/attachment/file", data=stream).status_code == 200
    assert seen == [b"attachment bytes", b"attachment bytes"]


# -- client credentials from Secrets Manager -----------------------------------------


class Secrets:
    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.reads += 1
        return {} if self.secret is None else {"SecretString": self.secret}


def secret_auth(
    secret: str | None, client_id: str | None = None, secrets: Secrets | None = None
) -> tuple[Any, Transport, Secrets]:
    exchange, secrets = Transport(token_endpoint()), secrets or Secrets(secret)
    http = requests.Session()
    http.mount("https://", exchange)
    auth = ServiceNowJwtBearerAuth(
        INSTANCE,
        FreshTokens(),
        "svc-a",
        client_id=client_id,
        secret_id="jwtkeys/test/servicenow",
        secrets_client=secrets,  # type: ignore[arg-type]
        clock=SimulatedClock(1_800_000_000),
        http=http,
    )
    return auth, exchange, secrets


@pytest.mark.parametrize(
    ("secret", "client_id", "expected"),
    [
        (
            json.dumps({"client_id": "from-secret", "client_secret": "s1"}),
            None,
            ("from-secret", "s1"),
        ),
        (json.dumps({"client_id": "from-secret", "client_secret": "s1"}), "given", ("given", "s1")),
        ("bare-secret", "given", ("given", "bare-secret")),
    ],
)
def test_secret_shapes(secret: str, client_id: str | None, expected: tuple[str, str]) -> None:
    auth, exchange, secrets = secret_auth(secret, client_id)
    auth.access_token()
    auth.invalidate()
    auth.access_token()
    form = parse_qs(str(exchange.sent[0].body))
    assert (form["client_id"][0], form["client_secret"][0]) == expected
    assert secrets.reads == 1  # read once, not per exchange


@pytest.mark.parametrize(
    ("secret", "client_id"),
    [
        (None, "given"),
        ("bare-secret", None),
        (json.dumps({"client_id": "x"}), None),
        (json.dumps({"client_secret": "s"}), None),
    ],
)
def test_unusable_secrets_are_configuration_errors(
    secret: str | None, client_id: str | None
) -> None:
    auth, exchange, _ = secret_auth(secret, client_id)
    with pytest.raises(ConfigurationError):
        auth.access_token()
    assert exchange.sent == []


def test_a_secret_that_cannot_be_read_is_a_configuration_error() -> None:
    class Missing(Secrets):
        def get_secret_value(self, SecretId: str) -> dict[str, Any]:
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}},
                "GetSecretValue",
            )

    auth, exchange, _ = secret_auth(None, "given", Missing(None))
    with pytest.raises(ConfigurationError, match="ResourceNotFoundException"):
        auth.access_token()
    assert exchange.sent == []


@pytest.mark.timeout(20)
def test_the_session_carrying_the_auth_can_also_do_the_exchange() -> None:
    # One session for both: the exchange request must not wait for a token itself.
    exchanges = token_endpoint()

    def instance(request: requests.PreparedRequest) -> tuple[int, object]:
        if str(request.url).endswith("/oauth_token.do"):
            assert "Authorization" not in request.headers
            return exchanges(request)
        return 200, {"result": [{"auth": request.headers["Authorization"]}]}

    session = requests.Session()
    session.mount("https://", Transport(instance))
    auth = ServiceNowJwtBearerAuth(
        INSTANCE,
        FreshTokens(),
        "svc-a",
        client_id="cid",
        client_secret="csecret",
        clock=SimulatedClock(1_800_000_000),
        http=session,
    )
    session.auth = auth
    answer = session.get(f"{INSTANCE}/api/now/table/sys_user").json()
    assert answer == {"result": [{"auth": "Bearer access-1"}]}
