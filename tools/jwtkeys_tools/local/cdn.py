"""A local CDN in front of the published documents: caches by Cache-Control, can go down.

Verifiers on AWS fetch the JWKS through CloudFront, which keeps its own copy for max-age.
Together with a verifier's copy that is the `2 x jwks_max_age` a revocation may take to
reach everyone. This stand-in keeps a copy on the stack's clock for the origin's max-age
and sends no `Age` header (CloudFront does send one: without it a verifier keeps its copy
a full max-age more, the worst case the bound must cover). `invalidate()` is what the
keeper's CloudFront invalidation does; `outage` makes every request fail with 503.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from jwtkeys.clock import Clock
from jwtkeys.verify.jwks_source import freshness_seconds
from jwtkeys_tools.local.local_service import LocalService
from jwtkeys_tools.local.loopback_server import LoopbackServer

_ORIGIN_TIMEOUT_S = 5.0
_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class _Copy:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires_at: float


class LocalCdn(LocalService):
    """A caching HTTP proxy on 127.0.0.1 in front of `origin` (a base URL), on `clock`."""

    def __init__(self, origin: str, clock: Clock) -> None:
        self.origin = origin.rstrip("/")
        self.clock = clock
        self.outage = False
        self.requests = 0
        self.origin_fetches = 0
        self._copies: dict[str, _Copy] = {}
        self._lock = threading.Lock()
        self._http = LoopbackServer("the local CDN")

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> LocalCdn:
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = cdn.serve(self.path)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._http.start(Handler, _POLL_INTERVAL_S)
        return self

    def stop(self) -> None:
        self._http.stop()

    def invalidate(self) -> None:
        """Drop every cached copy (what a CloudFront invalidation of `/*` does)."""
        with self._lock:
            self._copies.clear()

    def serve(self, path: str) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """The answer to GET `path`: the cached copy while fresh, else the origin's."""
        with self._lock:
            self.requests += 1
            if self.outage:
                return 503, (("Content-Type", "text/plain"),), b"CDN unavailable"
            now = self.clock.now()
            copy = self._copies.get(path)
            if copy is not None and now < copy.expires_at:
                return copy.status, copy.headers, copy.body
            # Held while fetching: one origin fetch per miss, like a CDN's request collapsing.
            copy = self._fetch(path, now)
            if copy.status == 200:
                self._copies[path] = copy
            return copy.status, copy.headers, copy.body

    def _fetch(self, path: str, now: float) -> _Copy:
        self.origin_fetches += 1
        # Always the configured local origin, never a client-supplied host.
        request = urllib.request.Request(self.origin + path)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=_ORIGIN_TIMEOUT_S) as response:  # noqa: S310
                status, body, raw_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, body, raw_headers = error.code, error.read(), error.headers
            error.close()
        except OSError:
            return _Copy(502, (("Content-Type", "text/plain"),), b"origin unreachable", now)
        headers = tuple(
            (name, value)
            for name, value in raw_headers.items()
            if name.lower() in ("content-type", "cache-control", "etag", "last-modified")
        )
        max_age = freshness_seconds(dict(headers)) or 0
        return _Copy(status, headers, body, now + max_age)
