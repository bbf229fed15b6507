"""Call counting, fault injection and the control API, in front of one moto WSGI app."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from jwtkeys_tools.local.aws_endpoint import CONTROL_PREFIX
from jwtkeys_tools.local.aws_server.faults import (
    FaultRule,
    drop_connection,
    fault_response,
    parse_rule,
)
from jwtkeys_tools.local.aws_server.naming import RequestName, RequestNamer

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ControlState:
    """What both ports share: the call log and the fault rules (guarded by one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.faults: list[FaultRule] = []

    def record(self, name: RequestName) -> str | None:
        """Log the call; the fault kind to apply to it, if any rule fires."""
        with self.lock:
            self.calls.append((name.service, name.operation))
            kind = None
            for rule in self.faults:
                # Every rule counts every request it matches, even one another rule fails.
                if rule.decide(name) and kind is None:
                    kind = rule.kind
            return kind


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


class Middleware:
    """Counting, faults and the control API in front of one moto WSGI app."""

    def __init__(
        self, app: WsgiApp, state: ControlState, namer: RequestNamer, default_service: str
    ) -> None:
        self._app = app
        self._state = state
        self._namer = namer
        self._default_service = default_service

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX) :])
        if path.startswith("/moto-api"):  # moto's own dashboard/reset: not AWS calls
            return self._app(environ, start_response)
        name = self._namer.name(environ, self._default_service)
        kind = self._state.record(name)
        if kind is None:
            return self._app(environ, start_response)
        if kind == "connection":
            drop_connection(environ)
        status, headers, body = fault_response(
            name,
            kind,
            environ.get("REQUEST_METHOD", "GET"),
            query_compatible=environ.get("HTTP_X_AMZN_QUERY_MODE") == "true",
        )
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _control(
        self, environ: dict[str, Any], start_response: StartResponse, command: str
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status = "200 OK"
        payload: dict[str, Any] = {"ok": True}
        state = self._state
        try:
            if command == "calls" and method == "GET":
                with state.lock:
                    payload = {"calls": [list(call) for call in state.calls]}
            elif command == "calls" and method == "DELETE":
                with state.lock:
                    state.calls.clear()
            elif command == "faults" and method == "POST":
                rule = parse_rule(_read_json(environ))
                with state.lock:
                    state.faults.append(rule)
            elif command == "faults" and method == "DELETE":
                with state.lock:
                    state.faults.clear()
            elif command == "reset" and method == "POST":
                _reset_moto()
            else:
                status, payload = "404 Not Found", {"error": f"no control {method} {command}"}
        except ValueError as exc:
            status, payload = "400 Bad Request", {"error": str(exc)}
        body = json.dumps(payload).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]


def _read_json(environ: dict[str, Any]) -> Any:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length > 0 else b"{}"
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"control body is not JSON: {exc}") from exc
