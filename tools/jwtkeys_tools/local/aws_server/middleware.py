"""Call counting, fault injection and the control API, in front of one moto WSGI app."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from jwtkeys_tools.local.aws_endpoint import CONTROL_PREFIX
from jwtkeys_tools.local.aws_server.faults import (
    FaultRule,
    drop_connection,
    fault_response,
    parse_rule,
)
from jwtkeys_tools.local.aws_server.identity import (
    IamRequest,
    Principal,
    caller,
    created_key_tagging,
    describe,
    json_body,
    missing_object_denied,
)
from jwtkeys_tools.local.aws_server.naming import RequestName, RequestNamer

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ControlState:
    """What both ports share: the call log, the fault rules, the registered roles and
    the IAM view of their requests (guarded by one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.faults: list[FaultRule] = []
        self.principals: dict[str, Principal] = {}  # access key id -> role
        self.iam_requests: list[dict[str, Any]] = []

    def principal(self, access_key_id: str | None) -> Principal | None:
        with self.lock:
            return self.principals.get(access_key_id or "")

    def record_iam(self, requests: list[IamRequest]) -> None:
        with self.lock:
            self.iam_requests.extend(request.to_json() for request in requests)

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
            access_key_id, region = caller(environ)
            principal = self._state.principal(access_key_id)
            if principal is None:  # the tests' own setup and operator calls
                return self._app(environ, start_response)
            return self._as_role(principal, name, region, environ, start_response)
        if kind == "connection":
            drop_connection(environ)
        if kind == "lost":
            # Applied, answer lost: moto does the work, then the client gets no answer.
            answer = self._app(environ, lambda *args, **kwargs: None)
            try:
                for _ in answer:
                    pass
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()
            drop_connection(environ, drained=True)
        status, headers, body = fault_response(
            name,
            kind,
            environ.get("REQUEST_METHOD", "GET"),
            query_compatible=environ.get("HTTP_X_AMZN_QUERY_MODE") == "true",
        )
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _as_role(
        self,
        principal: Principal,
        name: RequestName,
        region: str,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Serve a function role's request, recording what IAM would evaluate."""
        params: dict[str, Any] | None = None

        def read_params() -> dict[str, Any]:
            nonlocal params
            if params is None:
                params = json_body(environ) if name.protocol == "json" else {}
            return params

        self._state.record_iam(describe(principal, name, environ, region, read_params))
        if missing_object_denied(principal, name, environ):
            return _access_denied(environ, start_response)
        if (name.service, name.operation) != ("kms", "CreateKey"):
            return self._app(environ, start_response)
        body = b"".join(self._app(environ, start_response))
        tagging = created_key_tagging(principal, region, read_params(), body)
        if tagging is not None:
            self._state.record_iam([tagging])
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
            elif command == "principals" and method == "POST":
                access_key_id, principal = _parse_principal(_read_json(environ))
                with state.lock:
                    state.principals[access_key_id] = principal
            elif command == "iam-requests" and method == "GET":
                with state.lock:
                    payload = {"requests": list(state.iam_requests)}
            elif command == "iam-requests" and method == "DELETE":
                with state.lock:
                    state.iam_requests.clear()
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


def _parse_principal(spec: Any) -> tuple[str, Principal]:
    if not isinstance(spec, dict):
        raise ValueError("a principal is a JSON object")
    access_key_id, role_arn = spec.get("access_key_id"), spec.get("role_arn")
    if not isinstance(access_key_id, str) or not access_key_id:
        raise ValueError(f"access_key_id must be a non-empty string, not {access_key_id!r}")
    if not isinstance(role_arn, str) or not role_arn.startswith("arn:") or ":role/" not in role_arn:
        raise ValueError(f"role_arn must be an IAM role ARN, not {role_arn!r}")
    list_bucket = spec.get("list_bucket") or {}
    if not isinstance(list_bucket, dict) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in list_bucket.items()
    ):
        raise ValueError("list_bucket must map bucket names to true or false")
    label = spec.get("label", "")
    if not isinstance(label, str):
        raise ValueError(f"label must be a string, not {label!r}")
    return access_key_id, Principal(role_arn, label, dict(list_bucket))


def _access_denied(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """S3's answer to a missing object for a caller without s3:ListBucket."""
    request_id = str(uuid.uuid4())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()
    if environ.get("REQUEST_METHOD") == "HEAD":
        body = b""
    start_response(
        "403 Forbidden",
        [
            ("Content-Type", "application/xml"),
            ("x-amz-request-id", request_id),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
