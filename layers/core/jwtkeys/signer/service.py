"""The signing function's two entry shapes: direct invoke and an IAM-authenticated Function URL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from jwtkeys import metrics_catalog as catalog
from jwtkeys.clock import Clock
from jwtkeys.errors import InvalidRequest, PolicyViolation, RequestRefused, SigningUnavailable
from jwtkeys.keys.algorithms import algorithm_named
from jwtkeys.keys.kms_signer import KmsJwsSigner, KmsThrottled
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import SignerSettings
from jwtkeys.signer.policy import SignRequest
from jwtkeys.signer.token_issuer import IssuedToken, SigningKeyResolver, TokenIssuer

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

_HTTP_STATUS = {InvalidRequest: 400, PolicyViolation: 403}


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
        algorithm = algorithm_named(settings.rotation.algorithm)
        resolver = SigningKeyResolver(
            kms, settings.keyset, algorithm, clock, settings.rotation.signer_cache_ttl
        )
        issuer = TokenIssuer(settings.policy, resolver, KmsJwsSigner(kms), clock)
        return cls(
            settings,
            issuer,
            logger or Logger(service=catalog.SIGNER_SERVICE),
            metrics or MetricsRecorder(catalog.SIGNER_SERVICE, settings.keyset),
        )

    def handle(self, event: object) -> dict[str, Any]:
        """Answer one invocation of either shape; a direct invoke's refusal raises."""
        try:
            if is_function_url_event(event):
                assert isinstance(event, dict)
                return self._function_url(event)
            return self._issue(event, caller=None).to_response()
        finally:
            self._metrics.flush()

    def _function_url(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            caller = _caller_arn(event)
            issued = self._issue(_json_body(event), caller=caller)
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

    def _issue(self, payload: object, caller: str | None) -> IssuedToken:
        log = {"caller": caller or "direct-invoke"}
        try:
            request = SignRequest.from_payload(payload)
            log.update(sub=request.subject, aud=request.audience)
            started = time.perf_counter()
            issued = self._issuer.issue(request, caller)
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


def _caller_arn(event: Mapping[str, Any]) -> str:
    iam = event.get("requestContext", {}).get("authorizer", {}).get("iam", {})
    caller = iam.get("userArn") if isinstance(iam, dict) else None
    if not isinstance(caller, str) or not caller:
        raise PolicyViolation("caller_not_allowed", "the request carries no IAM caller identity")
    return caller


def _json_body(event: Mapping[str, Any]) -> object:
    method = event.get("requestContext", {}).get("http", {}).get("method")
    if method != "POST":
        raise InvalidRequest("malformed_request", "use POST with a JSON body")
    body = event.get("body") or ""
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body, validate=True).decode("utf-8")
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("malformed_request", "the body is not valid JSON") from None


def _http_error(status: int, code: str, message: str, reason: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if reason is not None:
        error["reason"] = reason  # an extension of the contract's {code, message}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": error}),
    }
