"""The server process: both ports, their middleware, readiness and shutdown."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Literal

from jwtkeys_tools.local.aws_server.kms_fixes import apply_kms_fixes
from jwtkeys_tools.local.aws_server.middleware import ControlState, Middleware, WsgiApp
from jwtkeys_tools.local.aws_server.naming import RequestNamer

_WARM_SERVICES: tuple[Literal["kms", "s3"], ...] = ("kms", "s3")


def build_apps() -> tuple[WsgiApp, WsgiApp]:
    """The main (every service) and S3-only WSGI apps, sharing moto state and controls."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    apply_kms_fixes()
    state, namer = ControlState(), RequestNamer()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    # moto builds each service's app on its first request; build the hot ones now so
    # the first Sign or PutObject is not seconds slower than the rest (benchmarks).
    for service in _WARM_SERVICES:
        dispatcher.app_instances[service] = create_backend_app(service)
        namer.warm(service)
    main_app = Middleware(dispatcher, state, namer, "s3")
    s3_app = Middleware(create_backend_app("s3"), state, namer, "s3")
    return main_app, s3_app


def _request_handler() -> type[Any]:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        """moto's handler without a log line per request (it costs time and noise)."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return QuietHandler


def serve(host: str = "127.0.0.1") -> None:
    """Serve both ports until stdin closes or a termination signal arrives."""
    from werkzeug.serving import make_server

    main_app, s3_app = build_apps()
    handler = _request_handler()
    servers = [
        make_server(host, 0, app, threaded=True, request_handler=handler)
        for app in (main_app, s3_app)
    ]
    # A short poll interval keeps shutdown() quick; idle polling costs next to nothing.
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        for s in servers
    ]
    for thread in threads:
        thread.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_parent() -> None:
        # The parent holds our stdin open for as long as it wants us; EOF means stop
        # (also when the parent died without stopping us, so no orphan servers linger).
        try:
            sys.stdin.buffer.read()
        finally:
            stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    ready = {"port": servers[0].server_port, "s3_port": servers[1].server_port}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    # Nobody reads our stdout after the ready line: send anything moto prints to stderr
    # so a full pipe can never block a request.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while not stop.wait(3600):
        pass
    # Each shutdown waits out one poll interval of its serve loop: overlap them.
    stoppers = [threading.Thread(target=server.shutdown) for server in servers]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()
    for server in servers:
        server.server_close()
    # Nothing is left to clean up; skipping interpreter teardown (moto imports hundreds
    # of modules) makes stop() half a second quicker.
    sys.stderr.flush()
    os._exit(0)
