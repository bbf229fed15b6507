"""`POST /oauth_token.do` with the JWT bearer grant: success, every refusal, token lifetime."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.local.servicenow_emulator import GENERIC_FAILURE, JWT_BEARER, ServiceNowEmulator
from tests.servicenow_fixtures import (
    CLIENT_ID,
    CLIENT_SECRET,
    TrustedKey,
    make_assertion,
    signing_key,
    trust_key,
)

SUBJECT = "svc@example.com"


@pytest.fixture
def subject(servicenow: ServiceNowEmulator) -> str:
    """A non-admin user the tokens speak for (matched by email, the default user_field)."""
    return servicenow.add_user("svc", email=SUBJECT)


def exchange(
    http: requests.Session,
    servicenow: ServiceNowEmulator,
    assertion: str,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
) -> requests.Response:
    return http.post(
        f"{servicenow.url}/oauth_token.do",
        data={
            "grant_type": JWT_BEARER,
            "assertion": assertion,
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )


def token_for(trusted: TrustedKey, servicenow: ServiceNowEmulator, **claims: Any) -> str:
    return make_assertion(
        trusted.key,
        trusted.alg,
        trusted.kid,
        client_id=trusted.client_id,
        sub=claims.pop("sub", SUBJECT),
        now=servicenow.clock.now(),
        **claims,
    )


def assert_refused(
    response: requests.Response, servicenow: ServiceNowEmulator, reason: str
) -> None:
    assert response.status_code == 401
    assert response.json() == GENERIC_FAILURE
    assert reason in servicenow.log[-1], servicenow.log


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"])
def test_exchange_succeeds_and_writes_an_oauth_credential(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str, alg: str
) -> None:
    # Given an app that trusts a key, When a token signed by it is exchanged
    trusted = trust_key(servicenow, alg=alg)
    response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow))
    # Then the instance answers with a bearer token and records it
    assert response.status_code == 200, servicenow.log
    body = response.json()
    assert set(body) == {"access_token", "scope", "token_type", "expires_in"}
    assert (body["scope"], body["token_type"], body["expires_in"]) == (
        "useraccount",
        "Bearer",
        1799,
    )
    [credential] = servicenow.rows("oauth_credential")
    assert credential["peer"] == trusted.app_sys_id
    assert credential["user"] == subject
    assert credential["type"] == "access_token"
    assert credential["name"] == "jwtkeys"
    assert body["access_token"] not in json.dumps(credential)


def test_access_token_works_until_its_credential_row_is_deleted(
    servicenow: ServiceNowEmulator,
    servicenow_http: requests.Session,
    servicenow_integration_auth: tuple[str, str],
    subject: str,
) -> None:
    trusted = trust_key(servicenow)
    token = exchange(servicenow_http, servicenow, token_for(trusted, servicenow)).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    users = f"{servicenow.url}/api/now/table/sys_user"
    assert servicenow_http.get(users, headers=bearer).status_code == 200
    # When an administrator revokes the app's sessions
    credentials = servicenow_http.get(
        f"{servicenow.url}/api/now/table/oauth_credential",
        params={"sysparm_query": f"peer={trusted.app_sys_id}"},
        auth=servicenow_integration_auth,
    ).json()["result"]
    for row in credentials:
        servicenow_http.delete(
            f"{servicenow.url}/api/now/table/oauth_credential/{row['sys_id']}",
            auth=servicenow_integration_auth,
        )
    # Then the token is dead
    assert servicenow_http.get(users, headers=bearer).status_code == 401


def test_access_token_expires_on_the_emulator_clock(
    servicenow: ServiceNowEmulator,
    servicenow_clock: SimulatedClock,
    servicenow_http: requests.Session,
    subject: str,
) -> None:
    trusted = trust_key(servicenow)
    token = exchange(servicenow_http, servicenow, token_for(trusted, servicenow)).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    users = f"{servicenow.url}/api/now/table/sys_user"
    servicenow_clock.advance(1790)
    assert servicenow_http.get(users, headers=bearer).status_code == 200
    servicenow_clock.advance(20)
    assert servicenow_http.get(users, headers=bearer).status_code == 401


def test_two_trusted_keys_at_once(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    # An overlapping rotation: old (RSA) and new (EC) keys both verify.
    old = trust_key(servicenow, alg="RS256")
    new = trust_key(servicenow, alg="ES256", app_sys_id=old.app_sys_id)
    for trusted in (old, new):
        response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow))
        assert response.status_code == 200, servicenow.log


def test_clock_skew_is_tolerated(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    now = int(servicenow.clock.now())
    late = token_for(trusted, servicenow, exp=now - 290, nbf=now - 600, iat=now - 600)
    early = token_for(trusted, servicenow, nbf=now + 290, iat=now + 290)
    assert exchange(servicenow_http, servicenow, late).status_code == 200
    assert exchange(servicenow_http, servicenow, early).status_code == 200


def test_jti_replay_allowed_when_verification_is_off(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    app = servicenow.add_oauth_jwt_app(
        "lenient", CLIENT_ID, CLIENT_SECRET, enable_jti_verification=False
    )
    trusted = trust_key(servicenow, app_sys_id=app)
    assertion = token_for(trusted, servicenow, jti=None)
    assert exchange(servicenow_http, servicenow, assertion).status_code == 200
    assert exchange(servicenow_http, servicenow, assertion).status_code == 200


def test_user_field_user_name(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    servicenow.add_user("svc.account")
    app = servicenow.add_oauth_jwt_app("app", CLIENT_ID, CLIENT_SECRET, user_field="user_name")
    trusted = trust_key(servicenow, app_sys_id=app)
    response = exchange(
        servicenow_http, servicenow, token_for(trusted, servicenow, sub="svc.account")
    )
    assert response.status_code == 200


# -- refusals -------------------------------------------------------------------------


def test_refuses_unknown_kid(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow, kid="known")
    assertion = make_assertion(
        trusted.key, "RS256", "other", client_id=CLIENT_ID, sub=SUBJECT, now=servicenow.clock.now()
    )
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "has kid 'other'")


def test_refuses_wrong_key_under_a_known_kid(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    assertion = make_assertion(
        signing_key("RS256"),
        "RS256",
        trusted.kid,
        client_id=CLIENT_ID,
        sub=SUBJECT,
        now=servicenow.clock.now(),
    )
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "Signature")


def test_refuses_algorithm_that_does_not_fit_the_key(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    rsa_trusted = trust_key(servicenow, alg="RS256")
    ec_key = signing_key("ES256")
    assertion = make_assertion(
        ec_key,
        "ES256",
        rsa_trusted.kid,
        client_id=CLIENT_ID,
        sub=SUBJECT,
        now=servicenow.clock.now(),
    )
    response = exchange(servicenow_http, servicenow, assertion)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "someone-else"}, "aud is not the client_id"),
        ({"iss": "https://issuer.example"}, "iss is not the client_id"),
        ({"aud": None}, "aud"),
        ({"exp": None}, "exp"),
        ({"sub": "nobody@example.com"}, "no sys_user has email='nobody@example.com'"),
        ({"jti": None}, "jti is required"),
    ],
)
def test_refuses_bad_claims(
    servicenow: ServiceNowEmulator,
    servicenow_http: requests.Session,
    subject: str,
    claims: dict[str, Any],
    reason: str,
) -> None:
    trusted = trust_key(servicenow)
    response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow, **claims))
    assert_refused(response, servicenow, reason)


def test_refuses_expired_beyond_skew(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    now = int(servicenow.clock.now())
    assertion = token_for(trusted, servicenow, exp=now - 301, nbf=now - 900, iat=now - 900)
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "expired")


def test_refuses_expired_once_the_clock_moves(
    servicenow: ServiceNowEmulator,
    servicenow_clock: SimulatedClock,
    servicenow_http: requests.Session,
    subject: str,
) -> None:
    # The emulator judges exp on its own (simulated) clock, not on real time.
    trusted = trust_key(servicenow)
    assertion = token_for(trusted, servicenow, ttl=60)
    servicenow_clock.advance(60 + 301)
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "expired")


def test_refuses_nbf_in_the_future(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    now = int(servicenow.clock.now())
    assertion = token_for(trusted, servicenow, nbf=now + 301, iat=now, exp=now + 900)
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "not valid before")


def test_refuses_replayed_jti(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    assertion = token_for(trusted, servicenow)
    assert exchange(servicenow_http, servicenow, assertion).status_code == 200
    assert_refused(exchange(servicenow_http, servicenow, assertion), servicenow, "already used")


def test_refuses_admin_subject(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    servicenow.add_user("root", email="root@example.com", roles=["admin"])
    trusted = trust_key(servicenow)
    response = exchange(
        servicenow_http, servicenow, token_for(trusted, servicenow, sub="root@example.com")
    )
    assert_refused(response, servicenow, "Grant access to admin is not allowed")


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        ({"client_id": "stranger"}, "no oauth_jwt application has client_id 'stranger'"),
        ({"client_secret": "guess"}, "client_secret does not match"),
    ],
    ids=["unknown-client", "bad-secret"],
)
def test_refuses_unknown_client_and_bad_secret(
    servicenow: ServiceNowEmulator,
    servicenow_http: requests.Session,
    subject: str,
    credentials: dict[str, str],
    reason: str,
) -> None:
    trusted = trust_key(servicenow)
    response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow), **credentials)
    assert_refused(response, servicenow, reason)


def test_refuses_inactive_app(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str
) -> None:
    trusted = trust_key(servicenow)
    # An administrator deactivates the app through the Table API.
    servicenow.add_user("boss", roles=["admin"], password="pw")
    deactivated = servicenow_http.patch(
        f"{servicenow.url}/api/now/table/oauth_jwt/{trusted.app_sys_id}",
        json={"active": False},
        auth=("boss", "pw"),
    )
    assert deactivated.json()["result"]["active"] == "false"
    response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow))
    assert_refused(response, servicenow, "is inactive")


def test_refuses_expired_certificate(
    servicenow: ServiceNowEmulator,
    servicenow_clock: SimulatedClock,
    servicenow_http: requests.Session,
    subject: str,
) -> None:
    # Given a certificate valid for one day, When the clock passes its notAfter
    trusted = trust_key(servicenow, lifetime=86400)
    servicenow_clock.advance(86400 + 1)
    # Then a fresh, otherwise valid token is refused
    response = exchange(servicenow_http, servicenow, token_for(trusted, servicenow))
    assert_refused(response, servicenow, "is not valid at")


@pytest.mark.parametrize("alg", ["PS256", "HS256", "none"])
def test_refuses_algorithms_outside_rs_and_es(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session, subject: str, alg: str
) -> None:
    trusted = trust_key(servicenow)
    now = int(servicenow.clock.now())
    claims = {"iss": CLIENT_ID, "aud": CLIENT_ID, "sub": SUBJECT, "exp": now + 300, "jti": alg}
    key: Any = {"PS256": trusted.key, "HS256": "x" * 32, "none": None}[alg]
    assertion = jwt.encode(claims, key, algorithm=alg, headers={"kid": trusted.kid})
    response = exchange(servicenow_http, servicenow, assertion)
    assert_refused(response, servicenow, f"algorithm '{alg}' is not accepted")


def test_refuses_garbage_and_wrong_grant(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    servicenow.add_oauth_jwt_app("app", CLIENT_ID, CLIENT_SECRET)
    assert_refused(exchange(servicenow_http, servicenow, "not.a.jwt"), servicenow, "not a JWT")
    wrong = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do", data={"grant_type": "refresh_token"}
    )
    assert_refused(wrong, servicenow, "unsupported grant_type")


# -- JWKS-URL trust -------------------------------------------------------------------


class _JwksServer:
    """A plain-HTTP JWKS endpoint whose document the test can change."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.fetches = 0
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.fetches += 1  # any path serves the document
        return Response(json.dumps(self.document), content_type="application/json")(
            environ, start_response
        )

    def __enter__(self) -> _JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    with _JwksServer() as server:
        yield server


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    document = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document.update(kid=kid, use="sig", alg="RS256")
    return dict(document)


def test_jwks_url_trust_with_cache_lifespan(
    servicenow: ServiceNowEmulator,
    servicenow_clock: SimulatedClock,
    servicenow_http: requests.Session,
    jwks_server: _JwksServer,
    subject: str,
) -> None:
    servicenow.add_oauth_jwt_app(
        "jwks app", CLIENT_ID, CLIENT_SECRET, jwks_url=jwks_server.url, jwks_cache_lifespan=10
    )
    old, new = signing_key("RS256"), signing_key("RS256")
    jwks_server.document = {"keys": [_jwk(old, "old")]}

    def token(key: Any, kid: str) -> str:
        return make_assertion(
            key, "RS256", kid, client_id=CLIENT_ID, sub=SUBJECT, now=servicenow_clock.now()
        )

    assert exchange(servicenow_http, servicenow, token(old, "old")).status_code == 200
    # A key published after the fetch is unknown until the cache lifespan (minutes) passes.
    jwks_server.document = {"keys": [_jwk(old, "old"), _jwk(new, "new")]}
    assert_refused(
        exchange(servicenow_http, servicenow, token(new, "new")), servicenow, "cached JWKS"
    )
    assert jwks_server.fetches == 1
    servicenow_clock.advance(600)
    assert exchange(servicenow_http, servicenow, token(new, "new")).status_code == 200
    assert jwks_server.fetches == 2
