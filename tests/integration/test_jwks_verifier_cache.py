"""JwksVerifier's caching rules, on a simulated clock against a real HTTP server on loopback.

The server counts every request it answers: "at most one fetch" is measured where the
fetches land, not taken from the verifier's own counters.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto.jwk import JWK

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError, InvalidToken, JwksUnavailable
from jwtkeys.verify.jwks_verifier import JwksCachePolicy, JwksVerifier, VerifierCounters
from jwtkeys_tools.local.loopback_server import LoopbackServer

ISSUER = "https://issuer.example"
AUDIENCE = "orders-api"
START = 1_800_000_000.0


@dataclass
class Publisher:
    """What the fake publisher answers: a JWKS body, headers and a status, changeable."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "max-age=300"})
    status: int = 200
    requests: int = 0
    # While set, each request waits here first (to hold fetches in flight).
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        return json.dumps({"keys": self.keys}).encode()


@pytest.fixture
def publisher() -> Iterator[tuple[Publisher, str]]:
    state = Publisher()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
            if state.hold is not None:
                state.hold.wait(timeout=10)
            body = state.body() if state.status == 200 else b"unavailable"
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = LoopbackServer("the fake publisher")
    server.start(Handler, 0.05)
    try:
        yield state, f"{server.url}/.well-known/jwks.json"
    finally:
        server.stop()


class Key:
    """An RSA signing key with its kid, as a publisher would hold it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = JWK.from_pyca(self.private.public_key()).export_public(as_dict=True)
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, now: float, audience: str = AUDIENCE, ttl: int = 600) -> str:
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "sub": "svc",
            "jti": f"jti-{now}-{audience}",
            "iat": int(now),
            "exp": int(now) + ttl,
        }
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key]:
    return Key("kid-one"), Key("kid-two")


def make_verifier(
    url: str, clock: SimulatedClock, **policy: Any
) -> tuple[JwksVerifier, VerifierCounters]:
    counters = VerifierCounters()
    verifier = JwksVerifier(
        url,
        ISSUER,
        AUDIENCE,
        clock=clock,
        policy=JwksCachePolicy(**policy),
        metrics=counters,
    )
    return verifier, counters


def test_a_warm_cache_fetches_once_within_max_age(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock)

    for _ in range(50):
        assert verifier.verify(keys[0].token(clock.now()))["sub"] == "svc"
        clock.advance(5)  # 250 s, under max-age=300

    assert state.requests == 1
    assert counters.refetches == {"initial": 1}
    assert counters.hits == 49


def test_max_age_is_honoured_then_refetched(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock)
    verifier.verify(keys[0].token(clock.now()))

    clock.advance(299)
    verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 1
    clock.advance(1)
    verifier.verify(keys[0].token(clock.now()))

    assert state.requests == 2
    assert counters.refetches == {"initial": 1, "expired": 1}


def test_max_age_is_capped_by_the_setting(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    state.headers = {"Cache-Control": "public, max-age=86400"}
    clock = SimulatedClock(START)
    verifier, _ = make_verifier(url, clock, max_age_cap=600)
    verifier.verify(keys[0].token(clock.now()))

    clock.advance(600)
    verifier.verify(keys[0].token(clock.now()))

    assert state.requests == 2


def test_the_age_a_cdn_reports_is_time_already_spent(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    state.headers = {"Cache-Control": "max-age=300", "Age": "250"}
    clock = SimulatedClock(START)
    verifier, _ = make_verifier(url, clock)
    verifier.verify(keys[0].token(clock.now()))

    clock.advance(50)
    verifier.verify(keys[0].token(clock.now()))

    assert state.requests == 2


def test_without_cache_control_the_default_applies_and_no_cache_means_min_interval(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    state.headers = {}
    clock = SimulatedClock(START)
    verifier, _ = make_verifier(url, clock, default_max_age=120)
    verifier.verify(keys[0].token(clock.now()))
    clock.advance(119)
    verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 1
    clock.advance(1)
    state.headers = {"Cache-Control": "no-cache"}
    verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 2

    # no-cache would mean a fetch per request; the floor is min_refetch_interval (30 s).
    clock.advance(29)
    verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 2
    clock.advance(1)
    verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 3


def test_an_unknown_kid_refetches_once_per_interval(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    old, new = keys
    state.keys = [old.jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock, min_refetch_interval=60)
    verifier.verify(old.token(clock.now()))

    # The publisher rotates; the verifier's document (fresh for 300 s) lacks the new kid.
    state.keys = [old.jwk(), new.jwk()]
    clock.advance(60)
    assert verifier.verify(new.token(clock.now()))["iss"] == ISSUER
    assert state.requests == 2
    for _ in range(20):
        verifier.verify(new.token(clock.now()))
    assert state.requests == 2

    # A forged kid cannot make it fetch again inside the interval...
    forged = Key("kid-nobody")
    for _ in range(20):
        with pytest.raises(InvalidToken) as refused:
            verifier.verify(forged.token(clock.now()))
        assert refused.value.reason == "unknown_kid"
    assert state.requests == 2
    # ...and afterwards once per interval, however many tokens carry it.
    clock.advance(60)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            verifier.verify(forged.token(clock.now()))
    assert state.requests == 3
    assert counters.refetches == {"initial": 1, "unknown_kid": 2}


def test_concurrent_unknown_kids_share_one_fetch(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    old, new = keys
    state.keys = [old.jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock, min_refetch_interval=0)
    verifier.verify(old.token(clock.now()))
    state.keys = [old.jwk(), new.jwk()]
    token = new.token(clock.now())
    state.hold = threading.Event()
    results: list[str] = []
    errors: list[BaseException] = []

    def verify() -> None:
        try:
            results.append(verifier.verify(token)["sub"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=verify) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Let every thread reach the fetch lock while the one fetch is held at the server.
    deadline = time.monotonic() + 5
    while state.requests < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    state.hold.set()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert results == ["svc"] * 8
    assert state.requests == 2
    assert counters.refetches == {"initial": 1, "unknown_kid": 1}


def test_stale_if_error_serves_the_last_document_for_a_bounded_time(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(
        url, clock, stale_if_error=900, min_refetch_interval=30, timeout=2.0
    )
    verifier.verify(keys[0].token(clock.now()))

    state.status = 503
    clock.advance(300)
    for _ in range(10):  # stale, fetch failing: served, retried at most every 30 s
        assert verifier.verify(keys[0].token(clock.now()))["sub"] == "svc"
        clock.advance(10)
    assert state.requests == 1 + 4  # at 300, 330, 360, 390
    assert counters.failures == {"expired": 4}

    clock.advance(900 - 100)  # 900 s past freshness: the bound is reached
    with pytest.raises(JwksUnavailable, match="stale_if_error"):
        verifier.verify(keys[0].token(clock.now()))

    state.status = 200
    clock.advance(30)
    assert verifier.verify(keys[0].token(clock.now()))["sub"] == "svc"


def test_a_first_fetch_that_fails_is_not_retried_on_every_request(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.status = 500
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock, min_refetch_interval=30)

    for _ in range(5):
        with pytest.raises(JwksUnavailable, match="HTTP 500"):
            verifier.verify(keys[0].token(clock.now()))
    assert state.requests == 1
    assert counters.failures == {"initial": 1}

    state.status = 200
    state.keys = [keys[0].jwk()]
    clock.advance(30)
    assert verifier.verify(keys[0].token(clock.now()))["sub"] == "svc"
    assert state.requests == 2


def test_audience_per_call_and_refusals_keep_their_reason(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier, _ = make_verifier(url, clock)

    token = keys[0].token(clock.now(), audience="billing-api")
    assert verifier.verify(token, audience="billing-api")["aud"] == "billing-api"
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    assert refused.value.reason == "wrong_audience"
    clock.advance(601)
    with pytest.raises(InvalidToken) as expired:
        verifier.verify(token, audience="billing-api")
    assert expired.value.reason == "expired"


def test_a_token_living_longer_than_the_keysets_maximum_is_refused(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier = JwksVerifier(url, ISSUER, AUDIENCE, clock=clock, max_lifetime=600)
    assert verifier.verify(keys[0].token(clock.now(), ttl=600))["sub"] == "svc"
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(keys[0].token(clock.now(), ttl=601))
    assert refused.value.reason == "lifetime_too_long"


def test_two_verifiers_share_nothing(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    first_clock, second_clock = SimulatedClock(START), SimulatedClock(START)
    first, _ = make_verifier(url, first_clock)
    second, _ = make_verifier(url, second_clock)
    first.verify(keys[0].token(START))
    second.verify(keys[0].token(START))
    assert state.requests == 2

    first_clock.advance(300)
    first.verify(keys[0].token(first_clock.now()))
    second.verify(keys[0].token(second_clock.now()))
    assert state.requests == 3


@pytest.mark.parametrize(
    "url",
    [
        "http://jwks.example.com/.well-known/jwks.json",
        "ftp://127.0.0.1/jwks.json",
        "https:///jwks.json",
        "/etc/jwks.json",
    ],
)
def test_only_https_or_loopback_http(url: str) -> None:
    with pytest.raises(JwksUnavailable, match="https"):
        JwksVerifier(url, ISSUER, AUDIENCE, clock=SimulatedClock(START))


def test_https_and_loopback_urls_are_accepted() -> None:
    for url in (
        "https://keys.example.com/.well-known/jwks.json",
        "http://localhost:8080/jwks.json",
        "http://[::1]:8080/jwks.json",
        "http://127.0.0.5/jwks.json",
    ):
        assert JwksVerifier(url, ISSUER, AUDIENCE, clock=SimulatedClock(START)).url == url


@pytest.mark.parametrize(
    "policy",
    [
        {"max_age_cap": -1},
        {"min_refetch_interval": 601, "max_age_cap": 600},
        {"stale_if_error": True},
        {"timeout": 0},
    ],
)
def test_a_bad_cache_policy_is_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        JwksCachePolicy(**policy)


def test_a_refresh_in_flight_does_not_hold_up_others_with_a_usable_copy(
    publisher: tuple[Publisher, str], keys: tuple[Key, Key]
) -> None:
    state, url = publisher
    state.keys = [keys[0].jwk()]
    clock = SimulatedClock(START)
    verifier, counters = make_verifier(url, clock)
    verifier.verify(keys[0].token(clock.now()))
    clock.advance(300)  # expired: the next verification refreshes
    state.hold = threading.Event()
    refresher = threading.Thread(target=verifier.verify, args=(keys[0].token(clock.now()),))
    refresher.start()
    deadline = time.monotonic() + 5
    while state.requests < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state.requests == 2  # the refresh is held at the server

    # Meanwhile another thread verifies at once on the copy it has, without a fetch.
    started = time.monotonic()
    assert verifier.verify(keys[0].token(clock.now()))["sub"] == "svc"
    assert time.monotonic() - started < 1
    state.hold.set()
    refresher.join(timeout=10)
    assert state.requests == 2
    assert counters.refetches == {"initial": 1, "expired": 1}
