"""The signing function's two entry shapes: direct invoke and an IAM-authenticated Function URL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from jwtkeys import metrics_catalog as catalog
from jwtkeys.clock import Clock
from jwtkeys.errors import InvalidRequest, PolicyViolation, RequestRefused, SigningUnavailable
from jwtkeys.keys.kms_signer import KmsJwsSigner, KmsThrottled
from jwtkeys.observability import MetricsRecorder, lambda_log_level
from jwtkeys.settings import SignerSettings
from jwtkeys.signer.policy import SignRequest, caller_rule, direct_invoke_rule
from jwtkeys.signer.rules import is_principal_arn
from jwtkeys.signer.token_issuer import IssuedToken, SigningKeyResolver, TokenIssuer

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

_HTTP_STATUS = {InvalidRequest: 400, PolicyViolation: 403}


# A real request body is a few hundred bytes (claims are capped at 4 KiB); anything far
# larger is refused before it is decoded or parsed.
MAX_BODY_BYTES = 64 * 1024
# What the logs say for an invocation that is not a Function URL call.
DIRECT_INVOKE = "direct-invoke"


def is_function_url_event(event: object) -> bool:
    """Function URL events (payload format 2.0) carry an HTTP request context."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("requestContext"), dict)
        and "http" in event["requestContext"]
    )


class SignService:
    """Parses an invocation, issues one token (or refuses), logs and records metrics."""

    def __init__(
        self,
        settings: SignerSettings,
        issuer: TokenIssuer,
        logger: Logger,
        metrics: MetricsRecorder,
    ) -> None:
        self.settings = settings
        self._issuer = issuer
        self._logger = logger
        self._metrics = metrics

    @classmethod
    def create(
        cls,
        environ: Mapping[str, str],
        kms: KMSClient,
        clock: Clock,
        logger: Logger | None = None,
        metrics: MetricsRecorder | None = None,
    ) -> SignService:
        """Wire the service from settings; no network call happens here."""
        settings = SignerSettings.from_environ(environ)
        resolver = SigningKeyResolver(
            kms,
            settings.keyset,
            settings.rotation.accepted_pairs,
            clock,
            settings.rotation.signer_cache_ttl,
        )
        issuer = TokenIssuer(settings.policy, resolver, KmsJwsSigner(kms), clock)
        return cls(
            settings,
            issuer,
            logger or Logger(service=catalog.SIGNER_SERVICE),
            metrics
            or MetricsRecorder(
                catalog.SIGNER_SERVICE, settings.keyset, level=lambda_log_level(environ)
            ),
        )

    def handle(self, event: object) -> dict[str, Any]:
        """Answer one invocation of either shape; a direct invoke's refusal raises."""
        try:
            if is_function_url_event(event):
                assert isinstance(event, dict)
                return self._function_url(event)
            return self._issue(lambda: event, caller=None).to_response()
        finally:
            self._metrics.flush()

    def _function_url(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            issued = self._issue(lambda: _json_body(event), caller=_caller_arn(event))
        except RequestRefused as refusal:
            return _http_error(
                _HTTP_STATUS.get(type(refusal), 400), refusal.code, str(refusal), refusal.reason
            )
        except SigningUnavailable as error:
            return _http_error(503, "SigningUnavailable", str(error))
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
            "body": json.dumps(issued.to_response()),
        }

    def _issue(self, read_payload: Callable[[], object], caller: _Caller | None) -> IssuedToken:
        # Only a caller ARN that passed _caller_arn's checks is ever logged as a caller.
        log = {"caller": DIRECT_INVOKE if caller is None else caller.logged}
        try:
            # Who may ask is settled before the payload is even parsed.
            if caller is None:
                direct_invoke_rule(self.settings.policy)
            else:
                caller.refusal_if_any()
                caller_rule(self.settings.policy, caller.arn)
            request = SignRequest.from_payload(read_payload())
            log.update(sub=request.subject, aud=request.audience)
            started = time.perf_counter()
            issued = self._issuer.issue(request, None if caller is None else caller.arn)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
        except RequestRefused as refusal:
            self._metrics.add(catalog.SIGN_REQUESTS_REJECTED, 1)
            self._metrics.add(catalog.SIGN_REQUESTS_REJECTED_BY_REASON, 1, reason=refusal.reason)
            self._logger.warning(
                "sign request refused",
                extra={**log, "outcome": "refused", "reason": refusal.reason},
            )
            raise
        except SigningUnavailable as error:
            self._metrics.add(catalog.SIGNING_FAILURES, 1)
            if isinstance(error, KmsThrottled):
                self._metrics.add(catalog.KMS_THROTTLED, 1)
            self._logger.error(
                "signing failed", extra={**log, "outcome": "failed", "error": str(error)}
            )
            raise
        self._metrics.add(catalog.TOKENS_ISSUED, 1)
        self._metrics.add(catalog.TOKENS_ISSUED_BY_KID, 1, kid=issued.kid)
        self._metrics.add(catalog.SIGN_LATENCY_MS, elapsed_ms)
        # Tokens are credentials: log the jti and kid, never the token or claim values.
        self._logger.info(
            "token issued",
            extra={
                **log,
                "outcome": "issued",
                "kid": issued.kid,
                "jti": issued.jti,
                "expires_at": issued.expires_at,
            },
        )
        return issued


@dataclass(frozen=True)
class _Caller:
    """The IAM identity a Function URL event names, or why it names none usable."""

    arn: str
    refusal: PolicyViolation | None = None

    @property
    def logged(self) -> str:
        # An unusable identity is never written to the logs as if it were a caller.
        return self.arn if self.refusal is None else "unrecognised"

    def refusal_if_any(self) -> None:
        if self.refusal is not None:
            raise self.refusal


def _caller_arn(event: Mapping[str, Any]) -> _Caller:
    iam = _path(event, "requestContext", "authorizer", "iam")
    caller = iam.get("userArn") if isinstance(iam, dict) else None
    if not isinstance(caller, str) or not caller:
        return _Caller(
            "", PolicyViolation("caller_not_allowed", "the request carries no IAM caller identity")
        )
    if not is_principal_arn(caller):
        return _Caller(
            caller, PolicyViolation("caller_not_allowed", "the caller is not an IAM principal ARN")
        )
    return _Caller(caller)


def _path(event: Mapping[str, Any], *keys: str) -> object:
    """The value at `keys` in nested objects, or None where any level is not an object."""
    value: object = event
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _json_body(event: Mapping[str, Any]) -> object:
    if _path(event, "requestContext", "http", "method") != "POST":
        raise InvalidRequest("malformed_request", "use POST with a JSON body")
    body = event.get("body")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise InvalidRequest("malformed_request", "the body is not text")
    if len(body) > MAX_BODY_BYTES * 4 // 3 + 4:
        raise InvalidRequest("request_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        if event.get("isBase64Encoded") is True:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        elif event.get("isBase64Encoded") not in (False, None):
            raise InvalidRequest("malformed_request", "isBase64Encoded must be true or false")
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise InvalidRequest(
                "request_too_large", f"the body is larger than {MAX_BODY_BYTES} bytes"
            )
        return json.loads(body, object_pairs_hook=_object_without_duplicates)
    except (ValueError, UnicodeError, RecursionError):
        # A hostile nesting depth exhausts the JSON parser's recursion: refused like any junk.
        raise InvalidRequest("malformed_request", "the body is not valid JSON") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"subject": "a", "subject": "b"}: a log or proxy could read the other one.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _http_error(status: int, code: str, message: str, reason: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if reason is not None:
        error["reason"] = reason  # an extension of the contract's {code, message}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": error}),
    }
