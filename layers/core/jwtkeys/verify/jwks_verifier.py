"""A verifier for services that receive jwtkeys tokens: the JWKS fetched, cached and refreshed.

Rotations break verifiers in two ways: a cache kept far longer than the publisher allows
(a revoked key stays trusted), or a refetch on every unknown `kid` (one forged header per
request melts the CDN). JwksVerifier keeps the published JWKS for as long as its
Cache-Control allows (never longer than a cap), refetches for an unknown kid at most once
per `min_refetch_interval` with one fetch in flight however many threads ask, and keeps
serving the last good document for a bounded time while the publisher cannot be reached.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from jwtkeys.clock import Clock
from jwtkeys.errors import ConfigurationError, InvalidToken, JwksUnavailable
from jwtkeys.verify.jwks_source import (
    DEFAULT_TIMEOUT_SECONDS,
    check_transport,
    display_url,
    fetch_jwks,
)
from jwtkeys.verify.token import DEFAULT_MAX_LIFETIME, verify_token

# Why a document was fetched: the first time, because it went stale, or for an unknown kid.
FETCH_INITIAL: Final = "initial"
FETCH_EXPIRED: Final = "expired"
FETCH_UNKNOWN_KID: Final = "unknown_kid"


class VerifierMetrics(Protocol):
    """Hooks a service plugs its own metrics into; each is called on the verifying thread."""

    def on_hit(self) -> None:
        """A verification used the cached JWKS without fetching."""

    def on_refetch(self, reason: str) -> None:
        """The JWKS was fetched successfully (`reason`: initial, expired or unknown_kid)."""

    def on_failure(self, reason: str, error: JwksUnavailable) -> None:
        """A fetch failed; the stale document is served while the bound allows."""


class NoMetrics:
    """The default hooks: nothing recorded."""

    def on_hit(self) -> None:
        return None

    def on_refetch(self, reason: str) -> None:
        return None

    def on_failure(self, reason: str, error: JwksUnavailable) -> None:
        return None


class VerifierCounters:
    """Hooks that count: hits, fetches by reason and failures by reason (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = 0
        self.refetches: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def on_hit(self) -> None:
        with self._lock:
            self.hits += 1

    def on_refetch(self, reason: str) -> None:
        with self._lock:
            self.refetches[reason] = self.refetches.get(reason, 0) + 1

    def on_failure(self, reason: str, error: JwksUnavailable) -> None:
        with self._lock:
            self.failures[reason] = self.failures.get(reason, 0) + 1


@dataclass(frozen=True)
class JwksCachePolicy:
    """How long a fetched JWKS is kept and how often it may be fetched again (seconds)."""

    # Never keep a document longer than this, whatever its Cache-Control says.
    max_age_cap: int = 3600
    # Freshness when the answer carries no usable Cache-Control.
    default_max_age: int = 300
    # The least time between two fetches, whatever the reason: an unknown kid refetches at
    # most this often, and a document is never fresher than this (no-cache included).
    min_refetch_interval: int = 30
    # How long past its freshness the last good document is served while fetches fail.
    stale_if_error: int = 3600
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_age_cap", "default_max_age", "min_refetch_interval", "stale_if_error"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"JwksCachePolicy.{name} must be a non-negative integer")
        if self.min_refetch_interval > self.max_age_cap:
            raise ConfigurationError(
                "JwksCachePolicy: min_refetch_interval must not exceed max_age_cap"
            )
        if not self.timeout > 0:
            raise ConfigurationError("JwksCachePolicy.timeout must be positive")

    def freshness(self, max_age: int | None) -> int:
        """How long to keep a document whose server allowed `max_age` (None: said nothing)."""
        wanted = self.default_max_age if max_age is None else max_age
        return max(self.min_refetch_interval, min(wanted, self.max_age_cap))


@dataclass(frozen=True)
class _Cached:
    jwks: Mapping[str, Any]
    fetched_at: float
    fresh_until: float


class JwksVerifier:
    """Verify jwtkeys tokens against the JWKS published at `url` (thread-safe).

    `verify(token)` returns the claims or raises InvalidToken (a named reason) or
    JwksUnavailable (no usable JWKS: never fetched, or stale past `stale_if_error`).
    """

    def __init__(
        self,
        url: str,
        issuer: str,
        audience: str,
        *,
        clock: Clock,
        leeway: int = 0,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        policy: JwksCachePolicy | None = None,
        metrics: VerifierMetrics | None = None,
    ) -> None:
        check_transport(url)
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("issuer must be a non-empty string")
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError("audience must be a non-empty string")
        if isinstance(leeway, bool) or not isinstance(leeway, int) or leeway < 0:
            raise ConfigurationError("leeway must be a non-negative integer")
        self.url = url
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        # The keyset's max_token_ttl: a longer-lived token was not minted by its signer.
        if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, int) or max_lifetime < 1:
            raise ConfigurationError("max_lifetime must be a positive integer number of seconds")
        self.max_lifetime = max_lifetime
        self.policy = policy or JwksCachePolicy()
        self._clock = clock
        self._metrics: VerifierMetrics = metrics or NoMetrics()
        # Readers take the reference without a lock (one attribute read is atomic); only
        # fetching takes the lock, so at most one fetch is in flight.
        self._cached: _Cached | None = None
        self._last_attempt: float | None = None
        self._last_error: JwksUnavailable | None = None
        self._fetch_lock = threading.Lock()

    def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        """The claims of `token` when valid now (for `audience`, default the verifier's)."""
        now = self._clock.now()
        cached = self._document(now)
        try:
            return self._verify_with(token, cached, now, audience)
        except InvalidToken as error:
            if error.reason != "unknown_kid":
                raise
            refreshed = self._refresh(now, cached, FETCH_UNKNOWN_KID)
            if refreshed is cached:
                raise
            return self._verify_with(token, refreshed, now, audience)

    def jwks(self) -> Mapping[str, Any]:
        """The JWKS in use now (fetched when there is none or it went stale)."""
        return self._document(self._clock.now()).jwks

    def _document(self, now: float) -> _Cached:
        """The cached document while fresh; else fetched (or kept, as the rules allow)."""
        cached = self._cached
        if cached is None:
            return self._refresh(now, cached, FETCH_INITIAL)
        if now >= cached.fresh_until:
            return self._refresh(now, cached, FETCH_EXPIRED, wait=False)
        self._metrics.on_hit()
        return cached

    def _verify_with(
        self, token: str, cached: _Cached, now: float, audience: str | None
    ) -> dict[str, Any]:
        return verify_token(
            token,
            cached.jwks,
            issuer=self.issuer,
            audience=self.audience if audience is None else audience,
            now=now,
            leeway=self.leeway,
            max_lifetime=self.max_lifetime,
        )

    def _refresh(
        self, now: float, seen: _Cached | None, reason: str, *, wait: bool = True
    ) -> _Cached:
        """A document newer than `seen` if one can be had now, else the best one allowed.

        With `wait=False`, a caller holding a document still inside the stale bound does
        not queue behind a fetch another thread has in flight: it goes on with that copy.
        """
        if wait or seen is None or now - seen.fresh_until >= self.policy.stale_if_error:
            self._fetch_lock.acquire()
        elif not self._fetch_lock.acquire(blocking=False):
            self._metrics.on_hit()
            return seen
        try:
            return self._refresh_locked(now, seen, reason)
        finally:
            self._fetch_lock.release()

    def _refresh_locked(self, now: float, seen: _Cached | None, reason: str) -> _Cached:
        current = self._cached
        if current is not seen and current is not None:
            # Another thread fetched while this one waited: single flight, no second fetch.
            return current
        if self._last_attempt is not None and now < (
            self._last_attempt + self.policy.min_refetch_interval
        ):
            # Too soon since the last fetch (or failed fetch): keep what there is.
            return self._fallback(now, current, self._last_error)
        self._last_attempt = now
        try:
            fetched = fetch_jwks(self.url, timeout=self.policy.timeout)
        except JwksUnavailable as error:
            self._last_error = error
            self._metrics.on_failure(reason, error)
            return self._fallback(now, current, error)
        self._last_error = None
        fresh = _Cached(fetched.document, now, now + self.policy.freshness(fetched.max_age))
        self._cached = fresh
        self._metrics.on_refetch(reason)
        return fresh

    def _fallback(
        self, now: float, current: _Cached | None, error: JwksUnavailable | None
    ) -> _Cached:
        if current is None:
            raise error or JwksUnavailable(f"no JWKS from {display_url(self.url)} yet")
        if now < current.fresh_until or error is None:
            return current
        stale_for = now - current.fresh_until
        if stale_for < self.policy.stale_if_error:
            return current
        raise JwksUnavailable(
            f"the last JWKS from {display_url(self.url)} is {int(stale_for)} s stale, past the "
            f"stale_if_error bound of {self.policy.stale_if_error} s: {error}"
        )
