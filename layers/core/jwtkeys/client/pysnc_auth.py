"""A `requests` auth class that logs pysnc (or any requests session) in to ServiceNow
with jwtkeys tokens, through the documented OAuth JWT bearer grant.

    from pysnc import ServiceNowClient
    from jwtkeys.client import LambdaInvoker, TokenClient
    from jwtkeys.client.pysnc_auth import ServiceNowJwtBearerAuth

    tokens = TokenClient(LambdaInvoker("jwtkeys-prod-sign", boto3.client("lambda")))
    auth = ServiceNowJwtBearerAuth(
        "https://example.service-now.com", tokens, subject="svc-reporting@example.com",
        client_id="<oauth_jwt client_id>", secret_id="jwtkeys/prod/servicenow-client",
    )
    client = ServiceNowClient("https://example.service-now.com", auth=auth)

Why not pysnc's own `ServiceNowJWTAuth` (pysnc 1.2): it takes one fixed JWT for the
client's whole life, but ServiceNow refuses a `jti` it has already seen, so the
second exchange (when the access token expires) always fails; it sends the JWT in an
`Authentication: Bearer` header instead of the documented `assertion` form field; and
it rebuilds the token URL from scheme and host only, dropping the instance URL's port.
This class asks the signer for a fresh token for every exchange, posts the documented
form, and keeps the port.

pysnc is never imported here: pysnc's `ServiceNowClient` accepts any
`requests.auth.AuthBase` (it puts it on its session as-is), so the plug-in needs only
requests, and jwtkeys does not depend on pysnc (the optional `jwtkeys[servicenow]`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.cookies import extract_cookies_to_jar
from requests.hooks import default_hooks

from jwtkeys.clock import Clock, SystemClock
from jwtkeys.errors import ConfigurationError, ServiceNowError
from jwtkeys.servicenow.oauth import JWT_BEARER_GRANT, jwt_bearer_form, read_token_answer
from jwtkeys.servicenow.secrets import AppCredentials, parse_app_credentials, read_secret_string
from jwtkeys.signer.token_issuer import IssuedToken

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = [
    "DEFAULT_ACCESS_TOKEN_MARGIN",
    "JWT_BEARER_GRANT",
    "FreshTokenSource",
    "ServiceNowJwtBearerAuth",
]

DEFAULT_ACCESS_TOKEN_MARGIN = 60
"""Seconds before an access token's end at which it is exchanged for a new one."""
DEFAULT_TIMEOUT_SECONDS = 30.0
_UNAUTHORIZED = 401
_DEFAULT_PORTS = {"https": 443, "http": 80}


class FreshTokenSource(Protocol):
    """What the plug-in needs from `TokenClient`: a newly signed token on every call."""

    def fresh_token(
        self,
        subject: str,
        audience: str,
        claims: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
    ) -> IssuedToken: ...


@dataclass(frozen=True)
class _AccessToken:
    value: str
    refresh_at: float


class ServiceNowJwtBearerAuth(requests.auth.AuthBase):
    """Bearer auth for one ServiceNow instance, from jwtkeys tokens exchanged at
    `/oauth_token.do` (grant `urn:ietf:params:oauth:grant-type:jwt-bearer`).

    - `instance`: `https://host[:port]` (the port is kept) or a bare instance name
      (`dev12345` -> `https://dev12345.service-now.com`), as pysnc accepts.
    - `tokens`: a `TokenClient` (or anything with its `fresh_token`); every exchange
      uses a newly signed token, never a cached one, because ServiceNow refuses a
      replayed `jti`.
    - `subject`: the token's `sub`, which ServiceNow maps to a non-admin `sys_user`
      through the application's `user_field`.
    - `client_id` / `client_secret` of the `oauth_jwt` application, given here or read
      once from the Secrets Manager secret `secret_id`: a JSON object with
      `client_secret` (and `client_id` when not given here), or the bare secret string.
    - `audience`: the token's `aud`; defaults to the client_id, which is what
      ServiceNow checks (the keyset's issuer must be the client_id too).
    - The access token is reused until `refresh_margin` seconds before its
      `expires_in` ends (on `clock`), and exchanged again at once when the Table API
      answers 401 (a revoked session); the request is then retried once.
    - `verify`: the CA bundle (or bool) for the token endpoint; the Table API requests
      use the session's own `verify` (pysnc's `ServiceNowClient(verify=...)`).

    Thread-safe: one exchange at a time; threads that need a token meanwhile wait for
    it rather than each spending a signature and an exchange. The Authorization header
    is only added to requests for the instance itself, so the access token never
    leaves for another host.
    """

    def __init__(
        self,
        instance: str,
        tokens: FreshTokenSource,
        subject: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        secret_id: str | None = None,
        secrets_client: SecretsManagerClient | None = None,
        audience: str | None = None,
        claims: Mapping[str, Any] | None = None,
        ttl_seconds: int | None = None,
        clock: Clock | None = None,
        refresh_margin: float = DEFAULT_ACCESS_TOKEN_MARGIN,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        http: requests.Session | None = None,
    ) -> None:
        if client_secret is None and secret_id is None:
            raise ConfigurationError("give client_secret or secret_id (a Secrets Manager secret)")
        if client_secret is not None and client_id is None:
            raise ConfigurationError("client_id is required with client_secret")
        if not subject:
            raise ConfigurationError("subject must not be empty")
        self.instance = instance_url(instance)
        self.token_url = f"{self.instance}/oauth_token.do"
        self._origin = _origin(self.instance)
        self._tokens = tokens
        self._subject = subject
        self._client_id = client_id
        self._audience = audience
        self._claims = dict(claims) if claims is not None else None
        self._ttl_seconds = ttl_seconds
        self._secret_id = secret_id
        self._secrets_client = secrets_client
        self._credentials = (
            AppCredentials(client_id, client_secret)
            if client_id is not None and client_secret is not None
            else None
        )
        self._clock: Clock = clock or SystemClock()
        self._refresh_margin = float(refresh_margin)
        self._verify = verify
        self._timeout = timeout
        self._http = http or requests.Session()
        self._lock = threading.Lock()
        self._access: _AccessToken | None = None

    # -- requests' auth protocol ----------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if _origin(request.url or "") != self._origin:
            return request
        if (request.url or "").split("?")[0] == self.token_url:
            # The exchange itself (when `http` is the session this auth is on): it
            # carries its own credentials, and asking for a token here would wait on
            # the exchange in progress forever.
            return request
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        body: Any = request.body
        # A streamed body is read by the first send: remember where to rewind to.
        body_position = body.tell() if hasattr(body, "tell") else None
        request.register_hook(  # type: ignore[no-untyped-call]
            "response", functools.partial(self._retry_on_401, body_position=body_position)
        )
        return request

    # -- access tokens --------------------------------------------------------------

    def access_token(self) -> str:
        """The cached access token while it is fresh, else one from a new exchange."""
        with self._lock:
            access = self._access
            if access is None or self._clock.now() >= access.refresh_at:
                access = self._access = self._exchange()
            return access.value

    def invalidate(self, rejected: str | None = None) -> None:
        """Drop the cached access token (only if it is still `rejected`, when given)."""
        with self._lock:
            if rejected is None or (self._access is not None and self._access.value == rejected):
                self._access = None

    def _exchange(self) -> _AccessToken:
        credentials = self._client_credentials()
        audience = self._audience or credentials.client_id
        # Fresh, never cached: a token exchanged once is spent (its jti is recorded).
        assertion = self._tokens.fresh_token(
            self._subject, audience, self._claims, self._ttl_seconds
        )
        form = jwt_bearer_form(credentials.client_id, credentials.client_secret, assertion.token)
        asked_at = self._clock.now()
        try:
            response = self._http.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                verify=self._verify,
                # A 307/308 would re-send the form, client secret included, wherever the
                # Location says: the token POST goes to the configured instance or nowhere.
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise ServiceNowError(f"{self.token_url} could not be reached: {error}") from error
        if response.is_redirect:
            raise ServiceNowError(
                f"{self.token_url} answered a redirect (HTTP {response.status_code}); the token"
                " request is never redirected: check the instance URL"
            )
        if response.status_code != 200:
            # ServiceNow answers every refusal with the same 401 body; the reason is
            # only in the instance's log. Name the token (jti, kid) so it can be found.
            raise ServiceNowError(
                f"{self.token_url} refused the JWT bearer grant (HTTP {response.status_code},"
                f" jti {assertion.jti}, kid {assertion.kid}); the instance log has the reason"
            )
        granted = read_token_answer(response, self.token_url, "JWT bearer", require_expiry=True)
        lifetime = granted.expires_in
        # Measured from before the request: the token's life started no earlier.
        refresh_at = asked_at + lifetime - min(self._refresh_margin, lifetime / 2)
        return _AccessToken(granted.access_token, refresh_at)

    def _client_credentials(self) -> AppCredentials:
        if self._credentials is None:
            self._credentials = self._credentials_from_secret()
        return self._credentials

    def _credentials_from_secret(self) -> AppCredentials:
        assert self._secret_id is not None
        client = self._secrets_client
        if client is None:
            import boto3

            client = self._secrets_client = boto3.client("secretsmanager")
        try:
            text = read_secret_string(client, self._secret_id)
        except ServiceNowError as error:
            # The caller's own configuration (a secret name, its permissions).
            raise ConfigurationError(str(error)) from None
        return parse_app_credentials(text, self._secret_id, self._client_id)

    # -- one re-exchange on 401 -----------------------------------------------------

    def _retry_on_401(
        self, response: requests.Response, *, body_position: int | None, **send_options: Any
    ) -> requests.Response:
        if response.status_code != _UNAUTHORIZED:
            return response
        sent = response.request.headers.get("Authorization", "")
        self.invalidate(rejected=sent.removeprefix("Bearer "))
        retry = response.request.copy()
        # The copy shares the original's hook list; a fresh one means at most one retry.
        retry.hooks = default_hooks()
        if body_position is not None:
            retry.body.seek(body_position)  # type: ignore[union-attr]
        # Release the first connection before sending again (as requests' digest auth).
        _ = response.content
        response.close()
        jar: Any = retry._cookies  # type: ignore[attr-defined]
        extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call]
        retry.prepare_cookies(jar)
        retry.headers["Authorization"] = f"Bearer {self.access_token()}"
        connection: Any = response.connection
        answer: requests.Response = connection.send(retry, **send_options)
        answer.history.append(response)
        answer.request = retry
        return answer


def instance_url(instance: str) -> str:
    """`https://host[:port]` of an instance, from a URL or a bare instance name."""
    if "://" not in instance:
        if not instance or "." in instance or "/" in instance:
            raise ConfigurationError(f"not an instance URL or name: {instance!r}")
        return f"https://{instance}.service-now.com"
    url = instance.rstrip("/")
    if not url.startswith("https://"):
        raise ConfigurationError(f"ServiceNow instances are HTTPS-only: {instance!r}")
    if not urlsplit(url).hostname:
        raise ConfigurationError(f"not an instance URL: {instance!r}")
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
