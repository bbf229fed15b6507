"""Ways of reaching the signing function: Lambda Invoke, its Function URL, or in-process.

Each turns the function's answer back into what the signer itself raised or returned:
a refused request becomes the same named error (`InvalidRequest`, `PolicyViolation`),
anything else that leaves the caller without a token becomes `SigningUnavailable`.
The wire shapes carry the error's class and message but not its short `reason`, so a
remote refusal's `reason` is the `reason` field of the error body when the function
sends one, else `REMOTE_REFUSAL`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.errors import (
    InvalidRequest,
    PolicyViolation,
    RequestRefused,
    SigningUnavailable,
    aws_error_code,
)
from jwtkeys.signer.token_issuer import IssuedToken

if TYPE_CHECKING:
    import boto3
    from botocore.credentials import Credentials
    from mypy_boto3_lambda import LambdaClient

    from jwtkeys.signer.service import SignService

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "REMOTE_REFUSAL",
    "FunctionUrlInvoker",
    "LambdaInvoker",
    "LocalInvoker",
    "issued_token_from_response",
]

REMOTE_REFUSAL = "refused_by_signer"
_LEADING_REASON = re.compile(r"\A([a-z][a-z0-9_]*): ")
DEFAULT_TIMEOUT_SECONDS = 10.0
# How much of an unexpected answer goes into an error message: enough to diagnose,
# never a whole body (which could be large or hold a token).
_EXCERPT = 200
_REFUSALS: dict[str, type[RequestRefused]] = {
    InvalidRequest.code: InvalidRequest,
    PolicyViolation.code: PolicyViolation,
}
_FUNCTION_URL_REGION = re.compile(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws\Z")


def issued_token_from_response(response: object) -> IssuedToken:
    """Parse the function's success answer (`{"token","kid","alg","jti","expires_at"}`)."""
    if not isinstance(response, Mapping):
        raise SigningUnavailable("the signing function answered something other than an object")
    try:
        token, kid, alg, jti = (response[name] for name in ("token", "kid", "alg", "jti"))
        expires_at = response["expires_at"]
    except KeyError as missing:
        raise SigningUnavailable(f"the signing function's answer lacks {missing}") from None
    if not all(isinstance(value, str) and value for value in (token, kid, alg, jti)) or (
        not isinstance(expires_at, int) or isinstance(expires_at, bool)
    ):
        raise SigningUnavailable("the signing function's answer has fields of the wrong type")
    return IssuedToken(token=token, kid=kid, alg=alg, jti=jti, expires_at=expires_at)


def _refusal(code: object, message: object, reason: object = None) -> RequestRefused | None:
    error_class = _REFUSALS.get(str(code))
    if error_class is None:
        return None
    text = str(message)
    # The signer's messages lead with the refusal's reason ("subject_not_allowed: ...").
    leading = _LEADING_REASON.match(text)
    if not (isinstance(reason, str) and reason):
        reason = leading.group(1) if leading else REMOTE_REFUSAL
    if leading and leading.group(1) == reason:
        text = text[leading.end() :]
    return error_class(reason, text)


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(text[:_EXCERPT].split())


class LocalInvoker:
    """Calls a `SignService` in this process: for local runs, the demo and tests."""

    def __init__(self, sign_service: SignService) -> None:
        self._service = sign_service

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        """The direct-invoke shape; the service's own named errors propagate unchanged."""
        return issued_token_from_response(self._service.handle(dict(payload)))


class LambdaInvoker:
    """Calls the deployed function with Lambda `Invoke` (RequestResponse).

    A direct invoke is for trusted principals and is bound by the keyset-wide
    allowlists only (it carries no caller identity the function could check).
    """

    def __init__(self, function_name_or_arn: str, lambda_client: LambdaClient) -> None:
        if not function_name_or_arn:
            raise ValueError("a function name or ARN is required")
        self._function = function_name_or_arn
        self._lambda = lambda_client

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        """Invoke and translate: a `FunctionError` of a refusal becomes that named error."""
        try:
            response = self._lambda.invoke(
                FunctionName=self._function,
                InvocationType="RequestResponse",
                Payload=json.dumps(dict(payload)).encode("utf-8"),
            )
            body = response["Payload"].read()
        except ClientError as error:
            code = aws_error_code(error) or "ClientError"
            if code == "AccessDeniedException":
                # Not a signing failure: this principal may not invoke the function at all.
                raise PolicyViolation(
                    "invoke_denied", f"not allowed to invoke {self._function}: {error}"
                ) from error
            raise SigningUnavailable(f"Lambda Invoke of {self._function} failed: {code}") from error
        except BotoCoreError as error:
            raise SigningUnavailable(
                f"Lambda Invoke of {self._function} failed: {error}"
            ) from error
        try:
            answer = json.loads(body) if body else None
        except ValueError:
            raise SigningUnavailable(
                f"the signing function answered non-JSON: {_excerpt(body)!r}"
            ) from None
        if "FunctionError" in response:
            raise _function_error(self._function, answer)
        return issued_token_from_response(answer)


def _function_error(function: str, answer: object) -> Exception:
    """The named error for a `FunctionError` payload (`errorType`, `errorMessage`)."""
    if not isinstance(answer, Mapping):
        return SigningUnavailable(f"{function} failed without an error payload")
    error_type = answer.get("errorType")
    message = answer.get("errorMessage", "")
    refusal = _refusal(error_type, message)
    if refusal is not None:
        return refusal
    return SigningUnavailable(f"{function} failed: {error_type}: {_excerpt(str(message))}")


class FunctionUrlInvoker:
    """POSTs to the function's URL with IAM auth (SigV4, service `lambda`).

    The caller's identity travels in the signature, so the function applies that
    caller's own rules on top of the keyset's allowlists. Credentials are read from the
    boto3 session for every request, so refreshable (assumed-role) credentials renew
    themselves; pass `credentials` to pin one set instead.
    """

    def __init__(
        self,
        url: str,
        session: boto3.Session | None = None,
        region: str | None = None,
        *,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: bool | str = True,
        http: requests.Session | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        if session is None and credentials is None:
            import boto3

            session = boto3.Session()
        self._url = url
        self._session = session
        self._credentials = credentials
        self._region = region or _region_of(url, session)
        self._timeout = timeout
        self._verify = verify
        self._http = http or requests.Session()

    def invoke(self, payload: Mapping[str, Any]) -> IssuedToken:
        """POST the payload as JSON; 200 -> token, 400/403 -> the named refusal."""
        body = json.dumps(dict(payload)).encode("utf-8")
        headers = self._signed_headers(body)
        try:
            response = self._http.post(
                self._url, data=body, headers=headers, timeout=self._timeout, verify=self._verify
            )
        except requests.RequestException as error:
            raise SigningUnavailable(f"the Function URL could not be reached: {error}") from error
        if response.status_code == 200:
            try:
                return issued_token_from_response(response.json())
            except ValueError:
                raise SigningUnavailable(
                    f"the Function URL answered non-JSON: {_excerpt(response.content)!r}"
                ) from None
        raise _http_error(response)

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        credentials = self._credentials
        if credentials is None and self._session is not None:
            credentials = self._session.get_credentials()
        if credentials is None:
            raise SigningUnavailable("no AWS credentials to sign the Function URL request with")
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", self._region).add_auth(request)
        return dict(request.headers.items())


def _region_of(url: str, session: boto3.Session | None) -> str:
    host = urlsplit(url).hostname or ""
    match = _FUNCTION_URL_REGION.search(host)
    if match:
        return match.group(1)
    if session is not None and session.region_name:
        return session.region_name
    raise ValueError(f"cannot tell the region of {url!r}: pass region=")


def _http_error(response: requests.Response) -> Exception:
    """The named error for a non-200 answer of the Function URL."""
    try:
        document = response.json()
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, Mapping) else None
    if isinstance(error, Mapping):
        refusal = _refusal(error.get("code"), error.get("message", ""), error.get("reason"))
        if refusal is not None:
            return refusal
    if response.status_code == 403:
        # IAM refused the signature itself (body {"Message": "Forbidden"}): this caller
        # may not use the URL, which is a refusal too, not an outage.
        return PolicyViolation(
            "invoke_denied", f"the Function URL refused the caller: {_excerpt(response.text)}"
        )
    if response.status_code == 400:
        return InvalidRequest(
            REMOTE_REFUSAL, f"the Function URL refused the request: {_excerpt(response.text)}"
        )
    return SigningUnavailable(
        f"the Function URL answered HTTP {response.status_code}: {_excerpt(response.text)}"
    )
