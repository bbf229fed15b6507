"""Which AWS operation a request is: service, operation and wire protocol.

Cheap for the JSON and query protocols (a header or the `Action` form field); REST
requests (S3 and friends) are matched against botocore's own service models.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

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
_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_CREDENTIAL_QUERY = re.compile(r"X-Amz-Credential=[^&]*?%2F\d{8}%2F[^%&]+%2F([^%&]+)%2F")


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
