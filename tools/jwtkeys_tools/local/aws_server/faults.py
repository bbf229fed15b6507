"""Fault rules and the errors they answer with, in each service's own wire format."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from jwtkeys_tools.local.aws_endpoint import FAULT_KINDS
from jwtkeys_tools.local.aws_server.naming import RequestName


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


def parse_rule(spec: Any) -> FaultRule:
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


def drop_connection(environ: dict[str, Any], *, drained: bool = False) -> None:
    """Close the socket without a response, so the client sees a dropped connection.

    The body is drained first (unless the app already read it: `drained`) so the close
    is a clean FIN rather than a reset (either way botocore raises a connection error; a
    FIN makes which one deterministic).
    """
    length = 0 if drained else int(environ.get("CONTENT_LENGTH") or 0)
    if length > 0:
        environ["wsgi.input"].read(length)
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # the client may already be gone
            sock.shutdown(socket.SHUT_RDWR)
    # werkzeug treats a ConnectionError from the app as "client went away": no answer,
    # no traceback.
    raise ConnectionAbortedError("fault injected: connection dropped")
