"""The local AWS endpoint's server process: moto over real HTTP, with fidelity fixes.

Run as `python -m jwtkeys_tools.local.aws_server` (LocalAws does this). It serves two ports
on 127.0.0.1, both sharing moto's in-process backends:

- the main endpoint, every service (moto's host/signature-based dispatcher);
- an S3-only endpoint for plain-HTTP fetches of public documents: moto's dispatcher
  hands any path ending in `/.well-known/jwks.json` to its Cognito routes, so an
  anonymous GET of our JWKS would never reach S3 there.

A WSGI middleware in front of both records each AWS request as (service, operation),
injects faults on demand and answers the control API under `/_jwtkeys/`. When ready,
the process prints one JSON line on stdout: {"port": ..., "s3_port": ...}. It stops
when its stdin closes (its parent is gone or asked it to) or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal
from urllib.parse import parse_qs

from jwtkeys_tools.local.aws_endpoint import CONTROL_PREFIX, FAULT_KINDS
from jwtkeys_tools.local.moto_fixes import apply_kms_fixes

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Signing names (the service in a SigV4 credential scope) that differ from the boto3
# client name callers know the service by.
_CLIENT_NAMES = {
    "monitoring": "cloudwatch",
    "email": "ses",
    "states": "stepfunctions",
    "execute-api": "apigateway",
}
# JSON-protocol target prefixes, for unsigned requests that only carry X-Amz-Target.
_TARGET_SERVICES = {
    "TrentService": "kms",
    "secretsmanager": "secretsmanager",
    "AWSEvents": "events",
    "GraniteServiceVersion20100801": "cloudwatch",
    "Logs_20140328": "logs",
    "AmazonSSM": "ssm",
    "DynamoDB_20120810": "dynamodb",
}
_REST_XML = frozenset({"s3", "cloudfront", "route53"})
_WARM_SERVICES: tuple[Literal["kms", "s3"], ...] = ("kms", "s3")
_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_CREDENTIAL_QUERY = re.compile(r"X-Amz-Credential=[^&]*?%2F\d{8}%2F[^%&]+%2F([^%&]+)%2F")


# --------------------------------------------------------------------------- naming


@dataclass(frozen=True)
class _Route:
    """One REST operation of a botocore service model, compiled for matching."""

    name: str
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # required keys (and literal values)
    headers: tuple[str, ...]  # required headers, lower-case
    specificity: tuple[int, int]


def _compile_route(name: str, operation: dict[str, Any], shapes: dict[str, Any]) -> _Route:
    http = operation["http"]
    path_part, _, query_part = http["requestUri"].partition("?")
    pattern = ""
    for piece in re.split(r"(\{[^}]+\})", path_part):
        if piece.startswith("{"):
            pattern += "(.+)" if piece.endswith("+}") else "([^/]+)"
        else:
            pattern += re.escape(piece)
    pattern = pattern.rstrip("/")
    query: list[tuple[str, str | None]] = []
    for item in filter(None, query_part.split("&")):
        key, eq, value = item.partition("=")
        query.append((key, value if eq else None))
    headers: list[str] = []
    input_shape = shapes.get(operation.get("input", {}).get("shape", ""), {})
    for member_name in input_shape.get("required", []):
        member = input_shape.get("members", {}).get(member_name, {})
        location, wire_name = member.get("location"), member.get("locationName", member_name)
        if location == "querystring":
            query.append((wire_name, None))
        elif location == "header":
            headers.append(wire_name.lower())
    return _Route(
        name=name,
        method=http["method"],
        path=re.compile(f"^{pattern}/?$"),
        query=tuple(query),
        headers=tuple(headers),
        specificity=(len(query) + len(headers), len(path_part)),
    )


class _RestRoutes:
    """Names REST (rest-xml, rest-json) requests from botocore's own service models.

    The models carry each operation's method, URI template and required query/header
    members; among the operations that match a request, the most specific wins
    (CopyObject needs `x-amz-copy-source`, PutObject does not).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[list[_Route], str] | None] = {}

    def _load(self, service: str) -> tuple[list[_Route], str] | None:
        with self._lock:
            if service in self._routes:
                return self._routes[service]
            loaded: tuple[list[_Route], str] | None = None
            try:
                import botocore.loaders

                model = botocore.loaders.create_loader().load_service_model(service, "service-2")
            except Exception:  # no such model: the fallback name is used
                model = None
            if model is not None:
                shapes = model.get("shapes", {})
                routes = [
                    _compile_route(name, op, shapes)
                    for name, op in model.get("operations", {}).items()
                    if "requestUri" in op.get("http", {})
                ]
                routes.sort(key=lambda r: r.specificity, reverse=True)
                loaded = (routes, str(model.get("metadata", {}).get("protocol", "")))
            self._routes[service] = loaded
            return loaded

    def protocol(self, service: str) -> str:
        loaded = self._load(service)
        if loaded is None:
            return "rest-xml" if service in _REST_XML else "rest-json"
        return loaded[1]

    def name(self, service: str, method: str, path: str, environ: dict[str, Any]) -> str | None:
        loaded = self._load(service)
        if loaded is None:
            return None
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        for route in loaded[0]:
            if route.method != method or not route.path.match(path):
                continue
            if not all(
                key in query and (value is None or value in query[key])
                for key, value in route.query
            ):
                continue
            if not all(_header(environ, h) is not None for h in route.headers):
                continue
            return route.name
        return None


def _header(environ: dict[str, Any], name: str) -> str | None:
    key = "HTTP_" + name.upper().replace("-", "_")
    value = environ.get(key)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class RequestName:
    """Which AWS operation a request is, and the wire protocol its errors must use."""

    service: str
    operation: str
    protocol: str  # json | rpc-v2-cbor | query | rest-xml | rest-json


class RequestNamer:
    """Names requests cheaply: JSON/CBOR by header or path, query by `Action`, REST by model."""

    def __init__(self) -> None:
        self._rest = _RestRoutes()

    def warm(self, service: str) -> None:
        """Load `service`'s REST routes now rather than on its first request."""
        self._rest.protocol(service)

    def name(self, environ: dict[str, Any], default_service: str) -> RequestName:
        """Name the request in `environ` (restoring any body it has to read)."""
        signed_service = self._service(environ)
        service = signed_service or default_service
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            if signed_service is None:  # unsigned JSON call: the target names the service
                prefix = target.split(".", 1)[0]
                service = _TARGET_SERVICES.get(prefix, prefix.lower())
            return RequestName(service, target.rsplit(".", 1)[-1], "json")
        path = environ.get("PATH_INFO", "") or "/"
        if environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor":
            return RequestName(service, path.rstrip("/").rsplit("/", 1)[-1], "rpc-v2-cbor")
        action = _query_action(environ)
        if action:
            return RequestName(service, action, "query")
        method = environ.get("REQUEST_METHOD", "GET")
        operation = self._rest.name(service, method, path, environ) or f"{method} {path}"
        return RequestName(service, operation, self._rest.protocol(service))

    @staticmethod
    def _service(environ: dict[str, Any]) -> str | None:
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match is None:  # a presigned URL carries its credential in the query
            match = _CREDENTIAL_QUERY.search(environ.get("QUERY_STRING", ""))
        if match is None:
            return None
        signing_name = match.group(1).lower()
        return _CLIENT_NAMES.get(signing_name, signing_name)


def _query_action(environ: dict[str, Any]) -> str | None:
    """The `Action` of a query-protocol request, from the form body or the query string."""
    query = str(environ.get("QUERY_STRING", ""))
    if "Action=" in query:
        actions = parse_qs(query).get("Action")
        if actions:
            return actions[0]
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length <= 0:
        return None
    body = environ["wsgi.input"].read(length)
    # moto reads the body after us: hand it an unread copy.
    environ["wsgi.input"] = io.BytesIO(body)
    actions = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return actions[0] if actions else None


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRule:
    """Fail matching requests after letting `after` of them through, `count` times."""

    kind: str
    after: int = 0
    count: int | None = None
    service: str | None = None
    operation: str | None = None
    seen: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)

    def decide(self, name: RequestName) -> bool:
        """Count `name` if it matches; True when this request must fail."""
        if self.service is not None and self.service != name.service:
            return False
        if self.operation is not None and self.operation != name.operation:
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.count is not None and self.fired >= self.count:
            return False
        self.fired += 1
        return True


def _cbor_text(value: str) -> bytes:
    data = value.encode("utf-8")
    size = len(data)
    if size < 24:
        return bytes([0x60 | size]) + data
    if size < 256:
        return bytes([0x78, size]) + data
    return bytes([0x79]) + size.to_bytes(2, "big") + data


def _cbor_map(items: dict[str, str]) -> bytes:
    """A CBOR map of short strings: all an rpc-v2-cbor error body needs."""
    out = bytes([0xA0 | len(items)])
    for key, value in items.items():
        out += _cbor_text(key) + _cbor_text(value)
    return out


@dataclass(frozen=True)
class _Error:
    status: str
    code: str
    message: str
    query_code: str  # the code query-compatible services (CloudWatch) report
    fault: str  # Sender | Receiver


_THROTTLE = _Error(
    "400 Bad Request", "ThrottlingException", "Rate exceeded", "Throttling", "Sender"
)
_INTERNAL = _Error(
    "500 Internal Server Error",
    "InternalFailure",
    "Internal failure",
    "InternalFailure",
    "Receiver",
)


def fault_response(
    name: RequestName, kind: str, method: str, *, query_compatible: bool = False
) -> tuple[str, list[Any], bytes]:
    """The error AWS itself would send for `kind` to this service, in its wire format.

    `query_compatible`: the client sent `x-amzn-query-mode` (a former query service such
    as CloudWatch); AWS then also names the error's query-protocol code in a header.
    """
    request_id = str(uuid.uuid4())
    if name.service == "s3":
        if kind == "throttle":
            status, code, message = "503 Slow Down", "SlowDown", "Please reduce your request rate."
        else:
            status, code = "500 Internal Server Error", "InternalError"
            message = "We encountered an internal error. Please try again."
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        # A HEAD answer has no body: clients see only the status, as with real S3.
        return status, headers, b"" if method == "HEAD" else body
    error = _THROTTLE if kind == "throttle" else _INTERNAL
    if name.protocol in ("json", "rpc-v2-cbor"):
        headers = [("x-amzn-RequestId", request_id)]
        if query_compatible:
            headers.append(("x-amzn-query-error", f"{error.query_code};{error.fault}"))
        fields = {"__type": error.code, "message": error.message}
        if name.protocol == "json":
            headers.append(("Content-Type", "application/x-amz-json-1.1"))
            return error.status, headers, json.dumps(fields).encode()
        headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        return error.status, headers, _cbor_map(fields)
    if name.protocol in ("query", "rest-xml"):
        code = error.query_code
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{error.fault}</Type><Code>{code}</Code><Message>{error.message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return error.status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
    # rest-json (Lambda and friends): the code travels in x-amzn-ErrorType.
    if kind == "throttle":
        status, code = "429 Too Many Requests", "TooManyRequestsException"
        payload = {"Type": "User", "message": "Rate exceeded", "Reason": "CallerRateLimitExceeded"}
    else:
        status, code = error.status, error.code
        payload = {"Type": "Service", "message": error.message}
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", request_id),
    ]
    return status, headers, json.dumps(payload).encode()


# --------------------------------------------------------------------------- middleware


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
            _drop_connection(environ)
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
                rule = _parse_rule(_read_json(environ))
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


def _parse_rule(spec: Any) -> FaultRule:
    if not isinstance(spec, dict):
        raise ValueError("a fault rule is a JSON object")
    kind = spec.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault kind must be one of {sorted(FAULT_KINDS)}, not {kind!r}")
    after, count = spec.get("after", 0), spec.get("count")
    if not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be a non-negative integer, not {after!r}")
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError(f"count must be a non-negative integer or null, not {count!r}")
    service, operation = spec.get("service"), spec.get("operation")
    for label, value in (("service", service), ("operation", operation)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{label} must be a string or null, not {value!r}")
    return FaultRule(kind, after, count, service, operation)


def _drop_connection(environ: dict[str, Any]) -> None:
    """Close the socket without a response, so the client sees a dropped connection.

    The body is drained first so the close is a clean FIN rather than a reset (either
    way botocore raises a connection error; a FIN makes which one deterministic).
    """
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > 0:
        environ["wsgi.input"].read(length)
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # the client may already be gone
            sock.shutdown(socket.SHUT_RDWR)
    # werkzeug treats a ConnectionError from the app as "client went away": no answer,
    # no traceback.
    raise ConnectionAbortedError("fault injected: connection dropped")


# --------------------------------------------------------------------------- server


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


if __name__ == "__main__":
    serve()
