"""`TokenClient`: tokens from the signing function, cached until shortly before they expire.

A service that calls another service many times a minute should not cost one KMS `Sign`
per call: a token is reusable until it expires. The client keeps one token per
(subject, audience, claims, ttl) and asks the signing function again only when the
cached one is about to expire. Concurrent callers for the same key share one in-flight
request, so a burst of threads at start-up (or at a refresh) costs one signature, not
one per thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jwtkeys.clock import Clock, SystemClock
from jwtkeys.errors import InvalidRequest
from jwtkeys.signer.token_issuer import IssuedToken

__all__ = ["DEFAULT_REFRESH_MARGIN", "Invoker", "IssuedToken", "TokenClient"]

DEFAULT_REFRESH_MARGIN = 60
"""Seconds before `expires_at` at which a cached token is replaced.

A minute covers the request the token is about to ride on plus ordinary clock skew
between this host and the verifier; verifiers add their own leeway on top.
"""


class Invoker(Protocol):
    """One way of reaching the signing function (Lambda Invoke, Function URL, in-process).

    `invoke` takes the direct-invoke payload (`{"subject", "audience", "claims"?,
    "ttl_seconds"?}`) and returns the issued token, or raises the signer's named error:
    `InvalidRequest`, `PolicyViolation` (both `RequestRefused`) or `SigningUnavailable`.
    """

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken: ...


CacheKey = tuple[str, str, str, int | None]


@dataclass(frozen=True)
class _Cached:
    issued: IssuedToken
    refresh_at: float


class _Flight:
    """One request in progress; the callers that arrive meanwhile wait for its outcome."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._issued: IssuedToken | None = None
        self._error: BaseException | None = None

    def succeed(self, issued: IssuedToken) -> None:
        self._issued = issued
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self) -> IssuedToken:
        self._done.wait()
        if self._error is not None:
            # Every waiter sees the leader's error (like concurrent.futures.Future.result).
            raise self._error
        assert self._issued is not None
        return self._issued


class TokenClient:
    """Tokens for (subject, audience, claims, ttl), cached and shared between threads.

    `refresh_margin` is how long before `expires_at` a cached token stops being handed
    out. For tokens whose whole lifetime is shorter than twice the margin, half the
    lifetime is used instead: otherwise a short-lived token would never be reused and
    every call would cost a signature.
    """

    def __init__(
        self,
        invoker: Invoker,
        clock: Clock | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self._invoker = invoker
        self._clock: Clock = clock or SystemClock()
        self._refresh_margin = float(refresh_margin)
        self._lock = threading.Lock()
        self._cache: dict[CacheKey, _Cached] = {}
        self._flights: dict[CacheKey, _Flight] = {}

    def get_token(
        self,
        subject: str,
        audience: str,
        claims: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        """A token for these arguments: the cached one while it is fresh, else a new one.

        Raises `InvalidRequest` or `PolicyViolation` when the signer refuses (nothing is
        cached then, so the next call asks again) and `SigningUnavailable` when it could
        not sign.
        """
        payload, key = _request(subject, audience, claims, ttl_seconds)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._clock.now() < cached.refresh_at:
                return cached.issued
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            return flight.wait()
        try:
            issued = self._invoker.invoke(payload)
        except BaseException as error:
            with self._lock:
                del self._flights[key]
            flight.fail(error)
            raise
        with self._lock:
            self._forget_expired()
            self._cache[key] = _Cached(issued, self._refresh_at(issued))
            del self._flights[key]
        flight.succeed(issued)
        return issued

    def fresh_token(
        self,
        subject: str,
        audience: str,
        claims: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        """A newly signed token, never cached nor shared.

        For one-time uses such as a ServiceNow JWT bearer exchange, where a token whose
        `jti` was already presented is refused.
        """
        payload, _ = _request(subject, audience, claims, ttl_seconds)
        return self._invoker.invoke(payload)

    def clear(self) -> None:
        """Forget every cached token (requests in flight still complete)."""
        with self._lock:
            self._cache.clear()

    def _refresh_at(self, issued: IssuedToken) -> float:
        lifetime = max(0.0, issued.expires_at - self._clock.now())
        return issued.expires_at - min(self._refresh_margin, lifetime / 2)

    def _forget_expired(self) -> None:
        # Called only when a token is fetched (rare), so a full scan costs nothing that
        # matters and keeps many one-off claim sets from piling up.
        now = self._clock.now()
        for key in [k for k, cached in self._cache.items() if cached.refresh_at <= now]:
            del self._cache[key]


def _request(
    subject: str,
    audience: str,
    claims: Mapping[str, Any] | None,
    ttl_seconds: int | None,
) -> tuple[dict[str, Any], CacheKey]:
    """The direct-invoke payload and the cache key (claims as canonical JSON)."""
    payload: dict[str, Any] = {"subject": subject, "audience": audience}
    canonical_claims = ""
    if claims is not None:
        try:
            # Sorted keys: {"a":1,"b":2} and {"b":2,"a":1} ask for the same token.
            canonical_claims = json.dumps(
                claims, sort_keys=True, separators=(",", ":"), allow_nan=False
            )
        except (TypeError, ValueError) as error:
            raise InvalidRequest(
                "bad_claims", f"claims must be a JSON object of JSON values: {error}"
            ) from None
        payload["claims"] = json.loads(canonical_claims)
    if ttl_seconds is not None:
        payload["ttl_seconds"] = ttl_seconds
    return payload, (subject, audience, canonical_claims, ttl_seconds)
