"""Unit tests of the ServiceNow client's pure parts: retry policy, secret parsing, ownership."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import requests
import requests.adapters
from urllib3.exceptions import MaxRetryError
from urllib3.response import HTTPResponse

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError, ServiceNowError
from jwtkeys.servicenow.retry import (
    MAX_RETRIES,
    MAX_RETRY_AFTER,
    ClockRetry,
    default_retry,
)
from jwtkeys.servicenow.secrets import (
    BasicCredentials,
    ClientCredentials,
    SecretSource,
    parse_secret,
)
from jwtkeys.servicenow.sync import Ownership
from jwtkeys.servicenow.table_client import TableClient

KID = "yaORahsg7Sj4lEhcsTJ6QGSzswDjKyok7OmuwLUnq-Y"


def _response(status: int, **headers: str) -> HTTPResponse:
    return HTTPResponse(body=b"", headers=headers, status=status)


# -- retry policy -----------------------------------------------------------------------


def test_retry_after_is_waited_on_the_injected_clock() -> None:
    clock = SimulatedClock(1000.0)
    retry = default_retry(clock)
    retry.sleep(_response(429, **{"Retry-After": "12"}))
    assert clock.now() == 1012.0


def test_backoff_grows_with_jitter_and_stays_bounded() -> None:
    clock = SimulatedClock(0.0)
    retry: ClockRetry = default_retry(clock)
    for _ in range(MAX_RETRIES):
        retry = retry.increment("GET", "/x", response=_response(503))
        assert retry.clock is clock  # carried by every new Retry urllib3 makes
    before = clock.now()
    retry.sleep()
    assert 0 < clock.now() - before <= retry.backoff_max
    with pytest.raises(MaxRetryError):
        retry.increment("GET", "/x", response=_response(503))


@pytest.mark.parametrize(
    ("method", "status", "retried"),
    [
        ("GET", 500, True),
        ("GET", 503, True),
        ("GET", 429, True),
        ("PATCH", 502, True),
        ("DELETE", 504, True),
        ("POST", 429, True),
        ("POST", 500, False),  # may have created the record: never resent
        ("POST", 503, False),
        ("GET", 400, False),
        ("GET", 401, False),
        ("GET", 403, False),
        ("GET", 404, False),
        ("PATCH", 409, False),
    ],
)
def test_what_is_retried(method: str, status: int, retried: bool) -> None:
    retry = default_retry(SimulatedClock(0.0))
    assert retry.is_retry(method, status, has_retry_after=status == 429) is retried


def test_a_retry_after_beyond_the_bound_is_not_waited_for() -> None:
    clock = SimulatedClock(0.0)
    retry = default_retry(clock)
    long_wait = _response(429, **{"Retry-After": str(MAX_RETRY_AFTER + 1)})
    with pytest.raises(MaxRetryError):
        retry.increment("GET", "/x", response=long_wait)
    within = _response(429, **{"Retry-After": str(MAX_RETRY_AFTER)})
    retry.increment("GET", "/x", response=within).sleep(within)
    assert clock.now() == MAX_RETRY_AFTER


def test_without_a_clock_it_is_urllib3s_retry() -> None:
    retry = ClockRetry(total=1)
    assert retry.clock is None
    retry.sleep()  # no backoff configured: returns at once


# -- secrets ----------------------------------------------------------------------------


def test_both_secret_shapes_parse_and_hide_their_values() -> None:
    basic = parse_secret(
        json.dumps(
            {"type": "basic", "username": "u", "password": "p4ss", "oauth_client_secret": "s3c"}
        ),
        "id",
    )
    assert basic.credentials == BasicCredentials("u", "p4ss")
    assert basic.oauth_client_secret == "s3c"
    client = parse_secret(
        json.dumps({"type": "oauth_client_credentials", "client_id": "c", "client_secret": "x9"}),
        "id",
    )
    assert client.credentials == ClientCredentials("c", "x9")
    assert client.oauth_client_secret is None
    for secret in (basic, client):
        assert "p4ss" not in repr(secret)
        assert "s3c" not in repr(secret)
        assert "x9" not in repr(secret)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('{"type": "ldap"}', "type must be"),
        ('{"type": "basic", "username": "u"}', "'password'"),
        ('{"type": "oauth_client_credentials", "client_id": "c"}', "'client_secret'"),
        ('{"type": "basic", "username": "u", "password": "p", "oauth_client_secret": 1}', "oauth"),
    ],
)
def test_a_bad_secret_names_the_field_never_the_value(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        parse_secret(text, "arn:secret")
    assert "arn:secret" in str(raised.value)
    assert '"p"' not in str(raised.value)


class _FakeSecretsManager:
    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.reads += 1
        return {"SecretString": self.value}


def test_the_secret_is_cached_on_the_clock_and_reread_when_invalidated() -> None:
    clock = SimulatedClock(0.0)
    fake = _FakeSecretsManager('{"type": "basic", "username": "u", "password": "p"}')
    source = SecretSource(fake, "id", clock, cache_seconds=300)  # type: ignore[arg-type]
    source.get()
    source.get()
    assert fake.reads == 1
    clock.advance(301)
    source.get()
    assert fake.reads == 2
    source.invalidate()
    source.get()
    assert fake.reads == 3


# -- ownership --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kid"),
    [
        (f"jwtkeys/test/{KID}", KID),
        (f"jwtkeys/test/{KID}x", None),
        (f"jwtkeys/test/{KID[:-1]}", None),
        (f"jwtkeys/testing/{KID}", None),
        (f"jwtkeys/other/{KID}", None),
        (f"JWTKEYS/test/{KID}", None),
        (f" jwtkeys/test/{KID}", None),
        (f"jwtkeys/test/{KID}/extra", None),
        ("jwtkeys/test/", None),
        ("", None),
    ],
)
def test_only_records_named_exactly_like_ours_are_owned(name: str, kid: str | None) -> None:
    ownership = Ownership("test")
    assert ownership.kid_of({"name": name}) == kid
    assert ownership.owns({"name": name}, KID) is (kid is not None)


class _RedirectingAdapter(requests.adapters.BaseAdapter):
    """Answers every request with a 307 to another host; records what was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(str(request.url))
        response = requests.Response()
        response.status_code = 307
        response.headers["Location"] = "https://evil.example.test/steal"
        response._content = b""
        response.request = request
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


def test_the_keepers_token_post_never_follows_a_redirect() -> None:
    # Given an instance whose token endpoint redirects elsewhere (307 re-sends the form)
    clock = SimulatedClock(1_800_000_000)
    unused = SecretSource(cast("Any", None), "never-read", clock)
    client = TableClient("https://snc.example.test", unused, clock)
    adapter = _RedirectingAdapter()
    client.session.mount("https://", adapter)
    # When the keeper exchanges its canary JWT, Then it fails naming the status
    with pytest.raises(ServiceNowError, match="HTTP 307"):
        client.exchange_jwt_bearer("cid", "csecret", "jwt")
    # And the client secret went nowhere but the configured instance
    assert adapter.sent == ["https://snc.example.test/oauth_token.do"]
