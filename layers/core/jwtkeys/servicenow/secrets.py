"""The ServiceNow credentials of a keyset, read from AWS Secrets Manager and cached.

The secret is a JSON object, one of:

    {"type": "basic", "username": "...", "password": "..."}
    {"type": "oauth_client_credentials", "client_id": "...", "client_secret": "..."}

with, when a canary subject is configured, `"oauth_client_secret"`: the client secret
of the `oauth_jwt` application that the canary token is exchanged with (the
application's client_id is a plain setting; its secret is a secret).

Values never appear in a repr, a log line or an error message: errors name the secret
and the field, never its content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.clock import Clock
from jwtkeys.errors import ConfigurationError, ServiceNowError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Long enough that a tick reads the secret once, short enough that a rotated secret is
# picked up within minutes even in a warm container (a 401 also drops the cache).
SECRET_CACHE_SECONDS = 300
BASIC = "basic"
CLIENT_CREDENTIALS = "oauth_client_credentials"


@dataclass(frozen=True)
class BasicCredentials:
    """A ServiceNow user name and password (Basic auth)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth client (client-credentials grant) acting as the integration user."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class ServiceNowSecret:
    """The parsed secret: how to authenticate, and the JWT app's client secret if any."""

    credentials: BasicCredentials | ClientCredentials
    oauth_client_secret: str | None = field(default=None, repr=False)


def parse_secret(text: str, secret_id: str) -> ServiceNowSecret:
    """Parse the secret's JSON; ConfigurationError names the missing field, never a value."""
    try:
        values: Any = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigurationError(f"ServiceNow secret {secret_id} is not a JSON object") from None
    if not isinstance(values, dict):
        raise ConfigurationError(f"ServiceNow secret {secret_id} is not a JSON object")

    def string(name: str) -> str:
        value = values.get(name)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"ServiceNow secret {secret_id} lacks the string field {name!r}"
            )
        return value

    kind = values.get("type")
    credentials: BasicCredentials | ClientCredentials
    if kind == BASIC:
        credentials = BasicCredentials(string("username"), string("password"))
    elif kind == CLIENT_CREDENTIALS:
        credentials = ClientCredentials(string("client_id"), string("client_secret"))
    else:
        raise ConfigurationError(
            f"ServiceNow secret {secret_id}: type must be {BASIC!r} or {CLIENT_CREDENTIALS!r}"
        )
    app_secret = values.get("oauth_client_secret")
    if app_secret is not None and (not isinstance(app_secret, str) or not app_secret):
        raise ConfigurationError(
            f"ServiceNow secret {secret_id}: oauth_client_secret must be a non-empty string"
        )
    return ServiceNowSecret(credentials, app_secret)


@dataclass(frozen=True)
class AppCredentials:
    """The client id and secret of the `oauth_jwt` application a JWT is exchanged with."""

    client_id: str
    client_secret: str = field(repr=False)


def read_secret_string(client: SecretsManagerClient, secret_id: str) -> str:
    """The SecretString of a secret; ServiceNowError names the secret and the AWS error code."""
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except (ClientError, BotoCoreError) as error:
        raise ServiceNowError(
            f"could not read the ServiceNow secret {secret_id}: {_error_code(error)}"
        ) from None
    text = response.get("SecretString")
    if not text:
        raise ConfigurationError(f"ServiceNow secret {secret_id} has no SecretString")
    return text


def parse_app_credentials(text: str, secret_id: str, client_id: str | None) -> AppCredentials:
    """The application's credentials from a secret the callers' plug-in reads.

    The secret is a JSON object with `client_secret` (and `client_id` when the caller
    does not give it), or the bare client secret itself.
    """
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        client_secret: object = text  # the bare client secret
        found_id: object = client_id
    else:
        client_secret = document.get("client_secret")
        found_id = client_id or document.get("client_id")
    if not isinstance(client_secret, str) or not client_secret:
        raise ConfigurationError(f"secret {secret_id} holds no client_secret")
    if not isinstance(found_id, str) or not found_id:
        raise ConfigurationError(f"no client_id: give client_id= or put it in secret {secret_id}")
    return AppCredentials(found_id, client_secret)


class SecretSource:
    """Reads the secret once per `SECRET_CACHE_SECONDS` (on the injected clock)."""

    def __init__(
        self,
        secretsmanager: SecretsManagerClient,
        secret_id: str,
        clock: Clock,
        cache_seconds: float = SECRET_CACHE_SECONDS,
    ) -> None:
        self.secret_id = secret_id
        self._client = secretsmanager
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cached: ServiceNowSecret | None = None
        self._read_at = 0.0

    def get(self) -> ServiceNowSecret:
        """The secret, from the cache when it is fresh."""
        now = self._clock.now()
        if self._cached is not None and now - self._read_at < self._cache_seconds:
            return self._cached
        text = read_secret_string(self._client, self.secret_id)
        self._cached = parse_secret(text, self.secret_id)
        self._read_at = now
        return self._cached

    def invalidate(self) -> None:
        """Forget the cached secret (ServiceNow refused it: it may have been rotated)."""
        self._cached = None


def _error_code(error: Exception) -> str:
    # botocore messages can echo request parameters; the code is enough to act on.
    if isinstance(error, ClientError):
        return aws_error_code(error) or "ClientError"
    return type(error).__name__
