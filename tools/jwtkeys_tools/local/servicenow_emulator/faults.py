"""Fault switch and rate-limit rules: how tests make the emulator misbehave on purpose.

A fault answers the next `count` requests whose path contains `path_contains` (any path
when None). Faults are consumed in the order they were injected. `slow` sleeps in real
time before answering normally, because what it exercises is the client's socket
timeout, which runs on real time; everything else here reads the emulator clock.

Rate-limit rules count Table API requests in fixed windows aligned to the epoch (an
instance counts per hour, reset on the hour; the window length is a parameter here).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal, cast, get_args

from jwtkeys.clock import Clock

FaultKind = Literal["http500", "http429", "drop", "slow", "malformed_json"]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))


@dataclass
class Fault:
    """One injected misbehaviour and how many more requests it applies to."""

    kind: FaultKind
    remaining: int
    path_contains: str | None
    delay: float

    def applies_to(self, path: str) -> bool:
        """Whether this fault takes the request for `path`."""
        return self.remaining > 0 and (self.path_contains is None or self.path_contains in path)


@dataclass(frozen=True)
class RateLimitRule:
    """`limit` requests per `window_seconds`; `sys_id` is what `X-RateLimit-Rule` names."""

    name: str
    sys_id: str
    limit: int
    window_seconds: int


@dataclass(frozen=True)
class RateLimited:
    """A request over the limit: what the 429 answer must say."""

    rule: RateLimitRule
    retry_after: int
    reset_at: int


class FaultSwitch:
    """Pending faults and the active rate-limit rule, shared by the server threads."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rule: RateLimitRule | None = None
        self._window_start = 0.0
        self._window_count = 0

    def inject(self, kind: str, *, count: int, path_contains: str | None, delay: float) -> None:
        """Queue a fault; `kind` must be one of `FAULT_KINDS`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        with self._lock:
            self._faults.append(Fault(cast(FaultKind, kind), count, path_contains, delay))

    def set_rate_limit(self, rule: RateLimitRule) -> None:
        """Install (or replace) the rate-limit rule; its first window starts now."""
        if rule.limit < 0 or rule.window_seconds < 1:
            raise ValueError("limit must be >= 0 and window_seconds >= 1")
        with self._lock:
            self._rule = rule
            self._window_start = self._window_of(self._clock.now(), rule)
            self._window_count = 0

    def clear(self) -> None:
        """Drop every pending fault and the rate-limit rule."""
        with self._lock:
            self._faults.clear()
            self._rule = None

    def take(self, path: str) -> Fault | None:
        """The fault that takes this request (consuming one of its count), or None."""
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(path):
                    fault.remaining -= 1
                    taken = Fault(fault.kind, 1, fault.path_contains, fault.delay)
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return taken
        return None

    def count_request(self) -> RateLimited | None:
        """Count one rate-limited request; the 429 details when it is over the limit."""
        now = self._clock.now()
        with self._lock:
            rule = self._rule
            if rule is None:
                return None
            start = self._window_of(now, rule)
            if start != self._window_start:
                self._window_start, self._window_count = start, 0
            self._window_count += 1
            if self._window_count <= rule.limit:
                return None
            reset_at = start + rule.window_seconds
        return RateLimited(rule, max(1, math.ceil(reset_at - now)), int(reset_at))

    @staticmethod
    def _window_of(now: float, rule: RateLimitRule) -> float:
        return float(math.floor(now / rule.window_seconds) * rule.window_seconds)
