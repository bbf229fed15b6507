"""An HTTP server on a free loopback port, served from a daemon thread.

The local CDN and the live suite's stand-in for Lambda's APIs both need one; each
brings its own request handler.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Start with a handler class, read `url`, stop when done (idempotent)."""

    def __init__(self, what: str) -> None:
        self._what = what  # named in the error when `url` is read before start()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self._what} is not running: call start() first")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self, handler: type[BaseHTTPRequestHandler], poll_interval: float = 0.5) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(poll_interval,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
