"""The retry policy of ServiceNow calls: urllib3's `Retry`, waiting on the injected clock.

- 429, 500, 502, 503, 504 and connection errors are retried, at most `MAX_RETRIES`
  times, with exponential backoff plus jitter; Retry-After is honoured. Other 4xx
  answers are final.
- GET, PUT, PATCH and DELETE are idempotent here (PATCH sets absolute values; a DELETE
  retried after it took effect answers 404, which the table client treats as done).
  POST creates a record (or consumes a one-time `jti` at the token endpoint), so it is
  retried only when the instance cannot have processed it: a 429, or a connection
  that never opened. A POST that fails otherwise fails the tick; the next tick finds
  what was (or was not) created and converges.
- A Retry-After beyond `MAX_RETRY_AFTER` is not waited for: the tick fails and the
  next one (minutes later) tries again, rather than a Lambda sleeping out its timeout.
- urllib3 sleeps with `time.sleep`; `ClockRetry` overrides `sleep` to wait on the
  injected `Clock`. That keeps "the clock is a parameter" true for retries too: on a
  simulated clock the wait advances simulated time (tests and the demo do not stall,
  and Retry-After is observably honoured), and on the system clock it is a real sleep.
"""

from __future__ import annotations

import re
from typing import Any, Self

from urllib3.connectionpool import ConnectionPool
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from jwtkeys.clock import Clock

MAX_RETRIES = 4
BACKOFF_FACTOR = 0.5
BACKOFF_JITTER = 0.5
BACKOFF_MAX = 8.0
MAX_RETRY_AFTER = 30
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_DIGITS = re.compile(r"\A\s*[0-9]+\s*\Z")


class ClockRetry(Retry):
    """urllib3's Retry, waiting on the injected clock and never retrying an unsafe POST."""

    def __init__(self, *args: Any, clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def new(self, **kw: Any) -> Self:
        """urllib3 builds a fresh Retry per attempt: carry the clock along."""
        retry = super().new(**kw)
        retry.clock = self.clock
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        """urllib3's rule, except that a POST is resent only after a 429."""
        if method.upper() == "POST":
            # A 429 means the instance refused before doing anything: safe to resend.
            return status_code == 429 and super().is_retry("GET", status_code, has_retry_after)
        return super().is_retry(method, status_code, has_retry_after)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: Any = None,
    ) -> Self:
        """urllib3's count, except that a Retry-After beyond the bound ends the retries."""
        if response is not None:
            asked = response.headers.get("Retry-After")
            if asked is not None and _DIGITS.match(asked) and int(asked) > self.retry_after_max:
                # Waiting that long would outlast the tick: give up now (urllib3 then
                # returns this response, and the caller reports the rate limit).
                exhausted = self.new(total=0)
                # Retry's own increment (not ours again): it finds the budget spent.
                return Retry.increment(exhausted, method, url, response, error, _pool, _stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Wait the Retry-After or the backoff on the injected clock (never time.sleep)."""
        if self.clock is None:
            super().sleep(response)
            return
        if self.respect_retry_after_header and response is not None:
            retry_after = self.get_retry_after(response)
            if retry_after:
                self.clock.sleep(retry_after)
                return
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.clock.sleep(backoff)


def default_retry(clock: Clock) -> ClockRetry:
    """The retry policy of the module docstring."""
    return ClockRetry(
        total=MAX_RETRIES,
        connect=MAX_RETRIES,
        read=MAX_RETRIES,
        status=MAX_RETRIES,
        other=0,
        redirect=0,
        allowed_methods=frozenset({"GET", "PUT", "PATCH", "DELETE"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_jitter=BACKOFF_JITTER,
        backoff_max=BACKOFF_MAX,
        retry_after_max=MAX_RETRY_AFTER,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        clock=clock,
    )
