"""The API Gateway Lambda authorizer: a bearer token checked against the published JWKS.

Two event shapes, told apart by their own fields: HTTP APIs (payload 2.0, simple
responses: `{"isAuthorized": bool, "context": {...}}`) and REST APIs (TOKEN authorizer:
an IAM policy). Each route may require its own audience and claim values.

API Gateway caches a decision for the authorizer's TTL, whatever the token's own expiry:
a token with less life left than that TTL is refused, so no cached Allow outlives the
token it was made for. A refusal never carries the token, in the answer or in the logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from aws_lambda_powertools import Logger

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.clock import Clock
from jwtkeys.errors import ConfigurationError, InvalidRequest, InvalidToken, JwksUnavailable
from jwtkeys.observability import MetricsRecorder, lambda_log_level
from jwtkeys.verify.jwks_verifier import JwksCachePolicy, JwksVerifier
from jwtkeys.verify.token import DEFAULT_MAX_LIFETIME

# API Gateway's own ceiling for an authorizer's result cache.
MAX_CACHE_TTL_SECONDS: Final = 3600
DEFAULT_CACHE_TTL_SECONDS: Final = 30
DEFAULT_LEEWAY_SECONDS: Final = 60
# Scope-like claims hold space-separated values (RFC 8693 4.2): a required value is one of them.
_SPACE_SEPARATED_CLAIMS: Final = frozenset({"scope", "scp"})
# Claims passed on to the integration (`$context.authorizer.<name>`); never the token.
_CONTEXT_CLAIMS: Final = ("sub", "iss", "jti")


@dataclass(frozen=True)
class RouteRule:
    """What a route requires of a token: an audience, and optionally claim values."""

    audience: str
    claims: Mapping[str, str] = field(default_factory=dict)

    def admits(self, claims: Mapping[str, Any]) -> bool:
        """Whether verified `claims` meet this rule (audience and every required claim)."""
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            return False
        return all(_claim_holds(claims, name, value) for name, value in self.claims.items())


def _claim_holds(claims: Mapping[str, Any], name: str, required: str) -> bool:
    value = claims.get(name)
    if isinstance(value, list):
        return required in value
    if isinstance(value, str) and name in _SPACE_SEPARATED_CLAIMS:
        return required in value.split(" ")
    return isinstance(value, str) and value == required


@dataclass(frozen=True)
class AuthorizerSettings:
    """Everything the authorizer function needs, parsed and validated."""

    keyset: str
    issuer: str
    jwks_url: str
    # Route patterns (`GET /orders/*`, `$default`, `*`) in the order they are tried.
    routes: tuple[tuple[str, RouteRule], ...]
    cache_ttl: int = DEFAULT_CACHE_TTL_SECONDS
    leeway: int = DEFAULT_LEEWAY_SECONDS
    # The keyset's max_token_ttl: a token that lives longer was not minted by its signer.
    max_lifetime: int = DEFAULT_MAX_LIFETIME

    def __post_init__(self) -> None:
        names.check_keyset_name(self.keyset)
        if not self.issuer:
            raise ConfigurationError("the authorizer needs an issuer")
        if not self.routes:
            raise ConfigurationError("the authorizer needs at least one route rule")
        for setting, value, ceiling in (
            ("cache_ttl", self.cache_ttl, MAX_CACHE_TTL_SECONDS),
            ("leeway", self.leeway, 600),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ceiling:
                raise ConfigurationError(f"authorizer {setting} must be an integer 0-{ceiling}")
        lifetime = self.max_lifetime
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1:
            raise ConfigurationError("authorizer max_lifetime must be a positive integer")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AuthorizerSettings:
        def required(name: str) -> str:
            value = environ.get(name, "")
            if not value:
                raise ConfigurationError(f"environment variable {name} is required")
            return value

        def integer(name: str, default: int) -> int:
            raw = environ.get(name)
            try:
                return default if raw is None else int(raw)
            except ValueError:
                raise ConfigurationError(
                    f"environment variable {name} must be an integer"
                ) from None

        try:
            raw_routes = json.loads(required(names.ENV_AUTHORIZER_ROUTES))
        except json.JSONDecodeError as error:
            raise ConfigurationError(
                f"{names.ENV_AUTHORIZER_ROUTES} is not JSON: {error}"
            ) from None
        return cls(
            keyset=required(names.ENV_KEYSET),
            issuer=required(names.ENV_ISSUER),
            jwks_url=required(names.ENV_AUTHORIZER_JWKS_URL),
            routes=parse_routes(raw_routes, names.ENV_AUTHORIZER_ROUTES),
            cache_ttl=integer(names.ENV_AUTHORIZER_CACHE_TTL, DEFAULT_CACHE_TTL_SECONDS),
            leeway=integer(names.ENV_AUTHORIZER_LEEWAY, DEFAULT_LEEWAY_SECONDS),
            max_lifetime=integer(names.ENV_AUTHORIZER_MAX_LIFETIME, DEFAULT_MAX_LIFETIME),
        )

    def to_environ(self) -> dict[str, str]:
        """The function's environment; `from_environ` reads it back to equal settings."""
        routes = {
            pattern: {"audience": rule.audience, "claims": dict(rule.claims)}
            for pattern, rule in self.routes
        }
        return {
            names.ENV_KEYSET: self.keyset,
            names.ENV_ISSUER: self.issuer,
            names.ENV_AUTHORIZER_JWKS_URL: self.jwks_url,
            names.ENV_AUTHORIZER_ROUTES: json.dumps(routes, separators=(",", ":")),
            names.ENV_AUTHORIZER_CACHE_TTL: str(self.cache_ttl),
            names.ENV_AUTHORIZER_LEEWAY: str(self.leeway),
            names.ENV_AUTHORIZER_MAX_LIFETIME: str(self.max_lifetime),
        }


def parse_routes(value: object, where: str) -> tuple[tuple[str, RouteRule], ...]:
    """Route rules from `{pattern: {"audience": str, "claims"?: {name: str}}}`."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigurationError(f"{where} must be a non-empty object of route rules")
    rules: list[tuple[str, RouteRule]] = []
    for pattern, rule in value.items():
        rule_where = f"{where}[{pattern!r}]"
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigurationError(f"{where}: a route pattern must be a non-empty string")
        if not isinstance(rule, Mapping) or not {"audience"} <= set(rule) <= {"audience", "claims"}:
            raise ConfigurationError(f"{rule_where} must be {{'audience': ..., 'claims'?: {{}}}}")
        audience = rule["audience"]
        claims = rule.get("claims", {})
        if not isinstance(audience, str) or not audience:
            raise ConfigurationError(f"{rule_where}.audience must be a non-empty string")
        if not isinstance(claims, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in claims.items()
        ):
            raise ConfigurationError(f"{rule_where}.claims must map claim names to strings")
        rules.append((pattern, RouteRule(audience=audience, claims=dict(claims))))
    return tuple(rules)


class Refused(Exception):
    """A token refused by the authorizer; `reason` is a short stable name for metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class _Request:
    shape: str  # "http" or "rest"
    token: str | None
    route: str
    method_arn: str | None = None


class Authorizer:
    """Decide one authorizer event; thread-safe, the JWKS cached across invocations."""

    def __init__(
        self,
        settings: AuthorizerSettings,
        verifier: JwksVerifier,
        clock: Clock,
        *,
        metrics: MetricsRecorder,
        logger: Logger,
    ) -> None:
        self.settings = settings
        self._verifier = verifier
        self._clock = clock
        self._metrics = metrics
        self._logger = logger

    @classmethod
    def create(
        cls,
        environ: Mapping[str, str],
        clock: Clock,
        *,
        metrics: MetricsRecorder | None = None,
        logger: Logger | None = None,
        cache_policy: JwksCachePolicy | None = None,
    ) -> Authorizer:
        settings = AuthorizerSettings.from_environ(environ)
        recorder = metrics or MetricsRecorder(
            catalog.AUTHORIZER_SERVICE, settings.keyset, level=lambda_log_level(environ)
        )
        # Any route's audience is passed per call; the verifier's own is the first rule's.
        verifier = JwksVerifier(
            settings.jwks_url,
            settings.issuer,
            settings.routes[0][1].audience,
            clock=clock,
            leeway=settings.leeway,
            max_lifetime=settings.max_lifetime,
            policy=cache_policy,
            metrics=_JwksMetrics(recorder),
        )
        return cls(
            settings,
            verifier,
            clock,
            metrics=recorder,
            logger=logger or Logger(service=catalog.AUTHORIZER_SERVICE),
        )

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The answer API Gateway expects for `event` (InvalidRequest for other events)."""
        request = _parse(event)
        try:
            return self._allow(request, self._decide(request))
        except Refused as refusal:
            self._metrics.add(catalog.AUTHORIZER_REFUSED, 1)
            self._metrics.add(catalog.AUTHORIZER_REFUSED_BY_REASON, 1, reason=refusal.reason)
            self._logger.info(
                "token refused",
                extra={"route": request.route, "reason": refusal.reason, "detail": refusal.detail},
            )
            return _deny(request)
        finally:
            self._metrics.flush()

    def _decide(self, request: _Request) -> dict[str, Any]:
        if not request.token:
            raise Refused("no_bearer_token", "no 'Authorization: Bearer <token>' header")
        rule = self._rule_for(request.route)
        if rule is None:
            raise Refused("no_route_rule", f"no rule for route {request.route!r}")
        try:
            claims = self._verifier.verify(request.token, audience=rule.audience)
        except InvalidToken as error:
            raise Refused(error.reason, str(error)) from None
        except JwksUnavailable as error:
            self._logger.error("JWKS unavailable", extra={"error": str(error)})
            raise Refused("jwks_unavailable", str(error)) from None
        if not rule.admits(claims):
            raise Refused("missing_required_claim", f"route {request.route!r} needs {rule.claims}")
        remaining = claims["exp"] - self._clock.now()
        if remaining <= self.settings.cache_ttl:
            # A cached Allow would outlive the token: refused now, the caller refreshes.
            raise Refused(
                "expires_within_cache_ttl",
                f"{int(remaining)} s left, the decision is cached {self.settings.cache_ttl} s",
            )
        return claims

    def _rule_for(self, route: str) -> RouteRule | None:
        for pattern, rule in self.settings.routes:
            if fnmatchcase(route, pattern):
                return rule
        return None

    def _allow(self, request: _Request, claims: Mapping[str, Any]) -> dict[str, Any]:
        self._metrics.add(catalog.AUTHORIZER_ACCEPTED, 1)
        self._logger.info(
            "token accepted",
            extra={"route": request.route, "sub": claims["sub"], "jti": claims["jti"]},
        )
        context = {name: str(claims[name]) for name in _CONTEXT_CLAIMS}
        if request.shape == "http":
            return {"isAuthorized": True, "context": context}
        assert request.method_arn is not None
        # The decision is cached per token for every method of the API: the policy names
        # each route this token may call, not just the one that asked.
        resources = [
            _route_arn(request.method_arn, pattern)
            for pattern, rule in self.settings.routes
            if rule.admits(claims)
        ]
        return {
            "principalId": str(claims["sub"]),
            "policyDocument": _policy("Allow", resources),
            "context": context,
        }


class _JwksMetrics:
    """The verifier's hooks, recorded as the authorizer's metrics."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self._recorder = recorder

    def on_hit(self) -> None:
        return None

    def on_refetch(self, reason: str) -> None:
        self._recorder.add(catalog.AUTHORIZER_JWKS_REFETCHES, 1)

    def on_failure(self, reason: str, error: JwksUnavailable) -> None:
        self._recorder.add(catalog.AUTHORIZER_JWKS_FAILURES, 1)


def _parse(event: Mapping[str, Any]) -> _Request:
    if not isinstance(event, Mapping):
        raise InvalidRequest("invalid_event", "an authorizer event is a JSON object")
    if event.get("version") == "2.0" and event.get("type") == "REQUEST":
        route = event.get("routeKey")
        if not isinstance(route, str):
            raise InvalidRequest("invalid_event", "an HTTP API event has a routeKey")
        headers = event.get("headers") or {}
        header = next(
            (v for k, v in headers.items() if isinstance(k, str) and k.lower() == "authorization"),
            None,
        )
        return _Request("http", _bearer(header), route)
    if event.get("type") == "TOKEN":
        method_arn = event.get("methodArn")
        if not isinstance(method_arn, str) or method_arn.count("/") < 3:
            raise InvalidRequest("invalid_event", "a TOKEN event has a methodArn")
        _, _, verb, path = method_arn.split("/", 3)
        return _Request(
            "rest", _bearer(event.get("authorizationToken")), f"{verb} /{path}", method_arn
        )
    raise InvalidRequest(
        "invalid_event", "not an HTTP API (payload 2.0) or REST TOKEN authorizer event"
    )


def _bearer(header: object) -> str | None:
    if not isinstance(header, str):
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _route_arn(method_arn: str, pattern: str) -> str:
    """The execute-api ARN of the routes a pattern names, on the calling API and stage."""
    api_and_stage = "/".join(method_arn.split("/", 2)[:2])
    if pattern in ("*", "$default"):
        return f"{api_and_stage}/*/*"
    verb, _, path = pattern.partition(" ")
    verb = "*" if verb in ("ANY", "*") else verb
    return f"{api_and_stage}/{verb}/{path.lstrip('/') or '*'}"


def _policy(effect: str, resources: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resources}],
    }


def _deny(request: _Request) -> dict[str, Any]:
    if request.shape == "http":
        return {"isAuthorized": False}
    assert request.method_arn is not None
    return {"principalId": "refused", "policyDocument": _policy("Deny", [request.method_arn])}
