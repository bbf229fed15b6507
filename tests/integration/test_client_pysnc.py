"""ServiceNowJwtBearerAuth driving pysnc 1.2.1 against the ServiceNow emulator, with
tokens from a real SignService over the local AWS endpoint.

The emulator trusts the keyset through its JWKS URL (the published JWKS on the local
S3 endpoint), and the keyset runs on the emulator's own clock, so the tokens' times
and the instance's judgement of them agree.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pysnc
import pytest
import requests

from jwtkeys.client import LocalInvoker, TokenClient
from jwtkeys.client.pysnc_auth import JWT_BEARER_GRANT, ServiceNowJwtBearerAuth
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ServiceNowError
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.stack import LocalStack

pytest_plugins = ["tests.servicenow_fixtures"]

CLIENT_ID = "client-test"  # the keyset's issuer and audience: ServiceNow checks both
CLIENT_SECRET = "client-test-secret"
SUBJECT = "svc-snow"
LIFESPAN = 1800  # the app's access_token_lifespan; the instance reports 1799


@pytest.fixture
def clock(servicenow_clock: SimulatedClock) -> SimulatedClock:
    """The keyset runs on the emulator's clock (overrides the stack's own clock)."""
    return servicenow_clock


@pytest.fixture
def tokens(stack: LocalStack, clock: SimulatedClock) -> TokenClient:
    stack.keeper_service().handle({"action": "tick"})
    return TokenClient(LocalInvoker(stack.sign_service()), clock=clock)


@pytest.fixture
def instance(
    servicenow: ServiceNowEmulator, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> ServiceNowEmulator:
    """An instance whose `oauth_jwt` app trusts the keyset's JWKS, and a subject user."""
    servicenow.add_oauth_jwt_app(
        "jwtkeys client test",
        CLIENT_ID,
        CLIENT_SECRET,
        user_field="user_name",
        jwks_url=stack.jwks_url,
        jwks_cache_lifespan=60,
    )
    servicenow.add_user(SUBJECT)
    # pysnc sends through merge_environment_settings, where REQUESTS_CA_BUNDLE (set in
    # this environment) beats the session's `verify`: point it at the emulator's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", servicenow.ca_bundle)
    return servicenow


class Exchanges:
    """Every request the plug-in's own session sent to the token endpoint."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.sent: list[tuple[str, dict[str, list[str]], int]] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, **_: Any) -> requests.Response:
        body = response.request.body
        text = body.decode() if isinstance(body, bytes) else str(body or "")
        self.sent.append((str(response.request.url), parse_qs(text), response.status_code))
        return response

    @property
    def jtis(self) -> list[str]:
        return [
            jwt.decode(form["assertion"][0], options={"verify_signature": False})["jti"]
            for _, form, _ in self.sent
        ]


@pytest.fixture
def exchanges() -> Iterator[Exchanges]:
    recorder = Exchanges()
    yield recorder
    recorder.session.close()


@pytest.fixture
def auth(
    instance: ServiceNowEmulator, tokens: TokenClient, clock: SimulatedClock, exchanges: Exchanges
) -> ServiceNowJwtBearerAuth:
    return ServiceNowJwtBearerAuth(
        instance.url,
        tokens,
        SUBJECT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        verify=instance.ca_bundle,
        http=exchanges.session,
    )


def snc_client(instance: ServiceNowEmulator, auth: ServiceNowJwtBearerAuth) -> Any:
    return pysnc.ServiceNowClient(instance.url, auth=auth, verify=instance.ca_bundle)


def count_subject_users(client: Any) -> int:
    users = client.GlideRecord("sys_user")
    users.add_query("user_name", SUBJECT)
    users.query()
    return len(users)


def test_pysnc_queries_through_the_documented_exchange(
    instance: ServiceNowEmulator, auth: ServiceNowJwtBearerAuth, exchanges: Exchanges
) -> None:
    # Given a pysnc client using the plug-in, unchanged
    client = snc_client(instance, auth)

    # When a GlideRecord query runs
    assert count_subject_users(client) == 1

    # Then one exchange was made at the instance's own port, with the documented form
    assert len(exchanges.sent) == 1
    url, form, status = exchanges.sent[0]
    assert status == 200
    assert url == f"{instance.url}/oauth_token.do"
    assert urlsplit(url).port == urlsplit(instance.url).port
    assert set(form) == {"grant_type", "assertion", "client_id", "client_secret"}
    assert form["grant_type"] == [JWT_BEARER_GRANT]
    assert form["client_id"] == [CLIENT_ID]
    assert form["client_secret"] == [CLIENT_SECRET]
    claims = jwt.decode(form["assertion"][0], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"]) == (CLIENT_ID, CLIENT_ID, SUBJECT)
    assert len(instance.rows("oauth_credential")) == 1
    client.session.close()


def test_the_access_token_is_reused_until_shortly_before_it_expires(
    instance: ServiceNowEmulator,
    auth: ServiceNowJwtBearerAuth,
    exchanges: Exchanges,
    clock: SimulatedClock,
) -> None:
    client = snc_client(instance, auth)
    for _ in range(5):
        assert count_subject_users(client) == 1
    assert len(exchanges.sent) == 1

    # expires_in is 1799; the default margin is 60 s
    clock.advance(LIFESPAN - 1 - 60 - 1)
    assert count_subject_users(client) == 1
    assert len(exchanges.sent) == 1
    clock.advance(1)
    assert count_subject_users(client) == 1
    assert len(exchanges.sent) == 2
    client.session.close()


def test_every_exchange_uses_a_fresh_token(
    instance: ServiceNowEmulator,
    auth: ServiceNowJwtBearerAuth,
    exchanges: Exchanges,
    clock: SimulatedClock,
) -> None:
    # The emulator refuses a replayed jti, so three accepted exchanges need three tokens.
    client = snc_client(instance, auth)
    for _ in range(3):
        assert count_subject_users(client) == 1
        clock.advance(LIFESPAN)
    assert [status for _, _, status in exchanges.sent] == [200, 200, 200]
    assert len(set(exchanges.jtis)) == 3
    client.session.close()


def test_a_cached_jwt_exchanged_twice_is_refused(
    instance: ServiceNowEmulator, tokens: TokenClient, exchanges: Exchanges
) -> None:
    # Why the plug-in never exchanges a cached token (pysnc's ServiceNowJWTAuth would).
    cached = tokens.get_token(SUBJECT, CLIENT_ID)
    form = {
        "grant_type": JWT_BEARER_GRANT,
        "assertion": cached.token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    url = f"{instance.url}/oauth_token.do"
    first = exchanges.session.post(url, data=form, verify=instance.ca_bundle)
    second = exchanges.session.post(url, data=form, verify=instance.ca_bundle)
    assert (first.status_code, second.status_code) == (200, 401)
    assert "already used" in instance.log[-1]


def test_a_401_from_the_table_api_exchanges_again_once(
    instance: ServiceNowEmulator,
    auth: ServiceNowJwtBearerAuth,
    exchanges: Exchanges,
    servicenow_api: requests.Session,
) -> None:
    # Given a working client
    client = snc_client(instance, auth)
    assert count_subject_users(client) == 1

    # When its session is revoked (the oauth_credential rows deleted)
    for row in instance.rows("oauth_credential"):
        deleted = servicenow_api.delete(
            f"{instance.url}/api/now/table/oauth_credential/{row['sys_id']}"
        )
        assert deleted.status_code == 204

    # Then the next query gets a 401, exchanges a fresh token and succeeds
    assert count_subject_users(client) == 1
    assert [status for _, _, status in exchanges.sent] == [200, 200]
    assert len(set(exchanges.jtis)) == 2
    client.session.close()


def test_threads_share_one_exchange(
    instance: ServiceNowEmulator, auth: ServiceNowJwtBearerAuth, exchanges: Exchanges
) -> None:
    counts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        client = snc_client(instance, auth)
        try:
            barrier.wait()
            for _ in range(3):
                counts.append(count_subject_users(client))
        except BaseException as error:
            errors.append(error)
        finally:
            client.session.close()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert counts == [1] * 24
    assert len(exchanges.sent) == 1


def test_client_credentials_from_secrets_manager(
    instance: ServiceNowEmulator,
    tokens: TokenClient,
    clock: SimulatedClock,
    local_aws: LocalAws,
    exchanges: Exchanges,
) -> None:
    secrets = local_aws.client("secretsmanager")
    secrets.create_secret(
        Name="jwtkeys/test/servicenow-client",
        SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
    )
    auth = ServiceNowJwtBearerAuth(
        instance.url,
        tokens,
        SUBJECT,
        secret_id="jwtkeys/test/servicenow-client",
        secrets_client=secrets,
        clock=clock,
        verify=instance.ca_bundle,
        http=exchanges.session,
    )
    client = snc_client(instance, auth)
    assert count_subject_users(client) == 1
    assert exchanges.sent[0][1]["client_id"] == [CLIENT_ID]
    client.session.close()


def test_a_refused_exchange_raises_servicenow_error_naming_the_token(
    instance: ServiceNowEmulator, tokens: TokenClient, clock: SimulatedClock
) -> None:
    auth = ServiceNowJwtBearerAuth(
        instance.url,
        tokens,
        SUBJECT,
        client_id=CLIENT_ID,
        client_secret="wrong-secret",
        clock=clock,
        verify=instance.ca_bundle,
    )
    client = snc_client(instance, auth)
    with pytest.raises(
        ServiceNowError, match=r"refused the JWT bearer grant \(HTTP 401, jti "
    ) as e:
        count_subject_users(client)
    assert "wrong-secret" not in str(e.value)
    client.session.close()
