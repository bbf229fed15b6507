"""TokenClient: cache per (subject, audience, claims, ttl), refresh before expiry,
single-flight between threads, errors shared but never cached; response parsing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from jwtkeys.client import IssuedToken, TokenClient
from jwtkeys.client.invokers import issued_token_from_response
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import InvalidRequest, PolicyViolation, SigningUnavailable

START = 1_800_000_000.0
TTL = 300


class CountingInvoker:
    """Issues a distinct fake token per call, `ttl` seconds from the clock's now."""

    def __init__(self, clock: SimulatedClock, ttl: int = TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.payloads)

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        with self._lock:
            self.payloads.append(dict(payload))
            n = len(self.payloads)
        return IssuedToken(
            token=f"token-{n}",
            kid="kid-1",
            alg="RS256",
            jti=f"jti-{n}",
            expires_at=int(self.clock.now()) + self.ttl,
        )


class GatedInvoker(CountingInvoker):
    """Blocks every call until `release` is set; then answers (or raises `error`)."""

    def __init__(self, clock: SimulatedClock, error: Exception | None = None) -> None:
        super().__init__(clock)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error = error

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        issued = super().invoke(payload)
        self.entered.set()
        assert self.release.wait(timeout=10)
        if self.error is not None:
            raise self.error
        return issued


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


def in_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Run `target` in `count` threads started together; their results or exceptions."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    return results


def crowd(invoker: GatedInvoker, count: int, target: Callable[[], Any]) -> list[Any]:
    """`in_threads`, with the gated function released once every thread is surely waiting.

    Correct single-flight never depends on the delay: a thread arriving after the
    release finds the token cached.
    """

    def release_later() -> None:
        assert invoker.entered.wait(timeout=10)
        time.sleep(0.2)
        invoker.release.set()

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        return in_threads(count, target)
    finally:
        releaser.join()


# -- cache --------------------------------------------------------------------------


def test_same_request_is_served_from_the_cache(clock: SimulatedClock) -> None:
    # Given a client over a counting invoker
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock)

    # When the same token is asked for many times
    tokens = [client.get_token("svc-a", "aud", {"scope": "read"}, 120) for _ in range(100)]

    # Then the function was asked once, with the direct-invoke payload
    assert invoker.calls == 1
    assert {t.token for t in tokens} == {"token-1"}
    assert invoker.payloads == [
        {"subject": "svc-a", "audience": "aud", "claims": {"scope": "read"}, "ttl_seconds": 120}
    ]


def test_payload_leaves_out_claims_and_ttl_when_not_given(clock: SimulatedClock) -> None:
    invoker = CountingInvoker(clock)
    TokenClient(invoker, clock=clock).get_token("svc-a", "aud")
    assert invoker.payloads == [{"subject": "svc-a", "audience": "aud"}]


def test_claims_in_another_key_order_hit_the_same_entry(clock: SimulatedClock) -> None:
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock)
    first = client.get_token("svc-a", "aud", {"a": 1, "b": {"x": [1, 2], "y": None}})
    second = client.get_token("svc-a", "aud", {"b": {"y": None, "x": [1, 2]}, "a": 1})
    assert first is second
    assert invoker.calls == 1


@pytest.mark.parametrize(
    "other",
    [
        ("svc-b", "aud", None, None),
        ("svc-a", "other-aud", None, None),
        ("svc-a", "aud", {"scope": "read"}, None),
        ("svc-a", "aud", {}, None),
        ("svc-a", "aud", None, 60),
    ],
)
def test_each_distinct_request_has_its_own_entry(
    clock: SimulatedClock, other: tuple[str, str, dict[str, Any] | None, int | None]
) -> None:
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock)
    base = client.get_token("svc-a", "aud")
    assert client.get_token(*other) is not base
    assert invoker.calls == 2
    # and both stay cached
    client.get_token("svc-a", "aud")
    client.get_token(*other)
    assert invoker.calls == 2


def test_token_is_refreshed_refresh_margin_before_it_expires(clock: SimulatedClock) -> None:
    # Given a cached token valid for 300 s and a 60 s refresh margin
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock, refresh_margin=60)
    first = client.get_token("svc-a", "aud")

    # When the clock reaches one second before expires_at - margin
    clock.advance(TTL - 60 - 1)
    # Then the cached token is still served
    assert client.get_token("svc-a", "aud") is first

    # When it reaches expires_at - margin
    clock.advance(1)
    # Then a new token is asked for, and cached in its turn
    second = client.get_token("svc-a", "aud")
    assert second.token == "token-2"
    assert client.get_token("svc-a", "aud") is second
    assert invoker.calls == 2


def test_short_lived_tokens_are_reused_for_half_their_life(clock: SimulatedClock) -> None:
    # A 60 s token with a 60 s margin would otherwise never be reused.
    invoker = CountingInvoker(clock, ttl=60)
    client = TokenClient(invoker, clock=clock, refresh_margin=60)
    first = client.get_token("svc-a", "aud", ttl_seconds=60)
    clock.advance(29)
    assert client.get_token("svc-a", "aud", ttl_seconds=60) is first
    clock.advance(1)
    assert client.get_token("svc-a", "aud", ttl_seconds=60) is not first
    assert invoker.calls == 2


def test_fresh_token_bypasses_and_leaves_the_cache(clock: SimulatedClock) -> None:
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock)
    cached = client.get_token("svc-a", "aud")
    fresh = [client.fresh_token("svc-a", "aud") for _ in range(3)]
    assert len({t.jti for t in [cached, *fresh]}) == 4
    assert client.get_token("svc-a", "aud") is cached
    assert invoker.calls == 4


def test_clear_forgets_cached_tokens(clock: SimulatedClock) -> None:
    invoker = CountingInvoker(clock)
    client = TokenClient(invoker, clock=clock)
    client.get_token("svc-a", "aud")
    client.clear()
    client.get_token("svc-a", "aud")
    assert invoker.calls == 2


@pytest.mark.parametrize("claims", [{"when": object()}, {"x": float("nan")}, {1: "a", "b": 2}])
def test_claims_that_are_not_json_are_refused_before_asking(
    clock: SimulatedClock, claims: dict[Any, Any]
) -> None:
    invoker = CountingInvoker(clock)
    with pytest.raises(InvalidRequest) as refused:
        TokenClient(invoker, clock=clock).get_token("svc-a", "aud", claims)
    assert refused.value.reason == "bad_claims"
    assert invoker.calls == 0


def test_negative_refresh_margin_is_refused(clock: SimulatedClock) -> None:
    with pytest.raises(ValueError, match="refresh_margin"):
        TokenClient(CountingInvoker(clock), clock=clock, refresh_margin=-1)


# -- refusals -----------------------------------------------------------------------


class RefusingInvoker:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        PolicyViolation("subject_not_allowed", "subject is not in the keyset's allowlist"),
        InvalidRequest("bad_ttl", "ttl_seconds must be an integer number of seconds"),
        SigningUnavailable("KMS throttled"),
    ],
)
def test_errors_reach_the_caller_by_name_and_are_not_cached(
    clock: SimulatedClock, error: Exception
) -> None:
    invoker = RefusingInvoker(error)
    client = TokenClient(invoker, clock=clock)
    for _ in range(2):
        with pytest.raises(type(error)) as raised:
            client.get_token("svc-a", "aud")
        assert raised.value is error
    assert invoker.calls == 2


# -- concurrency --------------------------------------------------------------------


def test_concurrent_callers_share_one_request(clock: SimulatedClock) -> None:
    # Given a slow function
    invoker = GatedInvoker(clock)
    client = TokenClient(invoker, clock=clock)

    # When 16 threads ask for the same token while the first request is in flight
    results = crowd(invoker, 16, lambda: client.get_token("svc-a", "aud"))

    # Then one request served them all
    assert invoker.calls == 1
    assert all(isinstance(r, IssuedToken) for r in results)
    assert {r.token for r in results} == {"token-1"}


def test_different_keys_do_not_wait_for_each_other(clock: SimulatedClock) -> None:
    # Given a request for one key stuck in flight
    gated = GatedInvoker(clock)

    class Router:
        def __init__(self) -> None:
            self.fast = CountingInvoker(clock)

        def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
            target = gated if payload["subject"] == "svc-slow" else self.fast
            return target.invoke(payload)

    client = TokenClient(Router(), clock=clock)
    slow = threading.Thread(target=client.get_token, args=("svc-slow", "aud"))
    slow.start()
    assert gated.entered.wait(timeout=10)
    try:
        # When another key is asked for, then it is answered at once
        assert client.get_token("svc-fast", "aud").token == "token-1"
    finally:
        gated.release.set()
        slow.join(timeout=10)


def test_an_error_reaches_every_waiter_and_nothing_is_cached(clock: SimulatedClock) -> None:
    # Given a slow function that refuses
    refusal = PolicyViolation("audience_not_allowed", "audience is not in the keyset's allowlist")
    invoker = GatedInvoker(clock, error=refusal)
    client = TokenClient(invoker, clock=clock)

    # When 8 threads ask for the same token while that request is in flight
    results = crowd(invoker, 8, lambda: client.get_token("svc-a", "aud"))

    # Then every caller got the refusal from the one request
    assert invoker.calls == 1
    assert len(results) == 8
    assert all(r is refusal for r in results)

    # And the next call asks again (a refusal is never cached)
    invoker.error = None
    assert client.get_token("svc-a", "aud").token == "token-2"
    assert invoker.calls == 2


# -- the function's answer ------------------------------------------------------------

GOOD = {"token": "a.b.c", "kid": "k", "alg": "RS256", "jti": "j", "expires_at": 1}


def test_a_well_formed_answer_parses() -> None:
    assert issued_token_from_response(GOOD) == IssuedToken("a.b.c", "k", "RS256", "j", 1)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        "token",
        {k: v for k, v in GOOD.items() if k != "jti"},
        {**GOOD, "expires_at": "1"},
        {**GOOD, "expires_at": True},
        {**GOOD, "token": ""},
        {**GOOD, "kid": 7},
    ],
)
def test_a_malformed_answer_is_signing_unavailable(answer: object) -> None:
    with pytest.raises(SigningUnavailable):
        issued_token_from_response(answer)
