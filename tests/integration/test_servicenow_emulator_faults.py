"""The fault switch and rate-limit rules: what each kind looks like to a client."""

from __future__ import annotations

import time

import pytest
import requests

from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator


@pytest.fixture
def api(servicenow_api: requests.Session) -> requests.Session:
    """A session authenticated as the integration user."""
    return servicenow_api


def users(servicenow: ServiceNowEmulator) -> str:
    return f"{servicenow.url}/api/now/table/sys_user"


def test_http500_then_recovers(servicenow: ServiceNowEmulator, api: requests.Session) -> None:
    servicenow.inject_fault("http500", count=2)
    for _ in range(2):
        failed = api.get(users(servicenow))
        assert failed.status_code == 500
        assert failed.json()["status"] == "failure"
    assert api.get(users(servicenow)).status_code == 200


def test_http429_carries_retry_after(servicenow: ServiceNowEmulator, api: requests.Session) -> None:
    servicenow.inject_fault("http429", delay=2.5)
    limited = api.get(users(servicenow))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["error"]["message"] == "Rate limit exceeded"


def test_drop_closes_the_connection_without_an_answer(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    servicenow.inject_fault("drop")
    with pytest.raises(requests.ConnectionError):
        api.get(users(servicenow))
    assert api.get(users(servicenow)).status_code == 200


def test_slow_trips_a_read_timeout(servicenow: ServiceNowEmulator, api: requests.Session) -> None:
    servicenow.inject_fault("slow", delay=0.5)
    with pytest.raises(requests.ReadTimeout):
        api.get(users(servicenow), timeout=(5, 0.1))
    servicenow.inject_fault("slow", delay=0.2)
    assert api.get(users(servicenow), timeout=(5, 5)).status_code == 200
    # The abandoned request is still asleep on the server and is answered at ~0.5 s; let it
    # finish here, or it lands in a later test (and counts against its rate limit).
    time.sleep(0.6)


def test_malformed_json(servicenow: ServiceNowEmulator, api: requests.Session) -> None:
    servicenow.inject_fault("malformed_json")
    response = api.get(users(servicenow))
    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_faults_match_a_path_and_apply_to_the_token_endpoint(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    servicenow.inject_fault("http500", path_contains="/oauth_token.do")
    assert api.get(users(servicenow)).status_code == 200
    assert api.post(f"{servicenow.url}/oauth_token.do", data={}).status_code == 500
    assert api.post(f"{servicenow.url}/oauth_token.do", data={}).status_code == 401


def test_clear_faults_and_bad_kinds(servicenow: ServiceNowEmulator, api: requests.Session) -> None:
    servicenow.inject_fault("http500", count=5)
    servicenow.clear_faults()
    assert api.get(users(servicenow)).status_code == 200
    with pytest.raises(ValueError, match="unknown fault kind"):
        servicenow.inject_fault("explode")
    with pytest.raises(ValueError, match="count"):
        servicenow.inject_fault("drop", count=0)


def test_rate_limit_rule_answers_429_until_the_window_resets(
    servicenow: ServiceNowEmulator,
    servicenow_clock: SimulatedClock,
    api: requests.Session,
) -> None:
    # Given a rule of 2 requests per hour on the emulator clock
    servicenow.set_rate_limit(limit=2, window_seconds=3600, rule_name="integration hourly")
    assert api.get(users(servicenow)).status_code == 200
    assert api.get(users(servicenow)).status_code == 200
    # When a third request comes in the same window
    limited = api.get(users(servicenow))
    # Then it is refused with the instance's headers and body
    now = servicenow_clock.now()
    reset_at = (int(now) // 3600 + 1) * 3600
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Limit"] == "2"
    assert limited.headers["X-RateLimit-Reset"] == str(reset_at)
    assert int(limited.headers["Retry-After"]) == max(1, reset_at - int(now))
    assert len(limited.headers["X-RateLimit-Rule"]) == 32
    body = limited.json()
    assert body["status"] == "failure"
    assert body["error"]["message"] == "Rate limit exceeded"
    assert "integration hourly" in body["error"]["detail"]
    # And after Retry-After (on the emulator clock) requests pass again
    servicenow_clock.advance(int(limited.headers["Retry-After"]))
    assert api.get(users(servicenow)).status_code == 200
    servicenow.clear_faults()
