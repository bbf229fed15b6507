"""ServiceNow's token endpoint, `POST /oauth_token.do`: the grant forms and the answer.

One home for the exchange that the keeper (its canary, and the client-credentials
grant of the integration user) and the callers' pysnc plug-in both make. Every grant
is a form-encoded POST; success is `200 {"access_token", "expires_in", ...}`, and any
refusal is the same `401` whose real reason is only in the instance's log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from jwtkeys.errors import ServiceNowError

TOKEN_PATH = "/oauth_token.do"  # noqa: S105 (a path)
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS_GRANT = "client_credentials"


class TokenRefused(ServiceNowError):
    """The token endpoint refused a grant (401); the real reason is in the instance's log."""

    code = "TokenRefused"


@dataclass(frozen=True)
class AccessGrant:
    """An access token and the seconds it lives (0 when the instance did not say)."""

    access_token: str = field(repr=False)
    expires_in: float


def jwt_bearer_form(client_id: str, client_secret: str, assertion: str) -> dict[str, str]:
    """The documented JWT bearer grant: the JWT in the `assertion` form field."""
    return {
        "grant_type": JWT_BEARER_GRANT,
        "assertion": assertion,
        "client_id": client_id,
        "client_secret": client_secret,
    }


def client_credentials_form(client_id: str, client_secret: str) -> dict[str, str]:
    """The client-credentials grant of an OAuth client acting as the integration user."""
    return {
        "grant_type": CLIENT_CREDENTIALS_GRANT,
        "client_id": client_id,
        "client_secret": client_secret,
    }


def read_token_answer(
    response: requests.Response, where: str, grant: str, *, require_expiry: bool = False
) -> AccessGrant:
    """The access grant of a token endpoint answer; TokenRefused on 401.

    `require_expiry`: a positive `expires_in` must be present (a caller that caches the
    token by it cannot guess a lifetime).
    """
    if response.status_code == 401:
        raise TokenRefused(f"{where} refused the {grant} grant (HTTP 401)")
    if response.status_code != 200:
        retry_after = response.headers.get("Retry-After")
        note = f"; rate limited, Retry-After {retry_after[:20]} s" if retry_after else ""
        raise ServiceNowError(
            f"{where} answered HTTP {response.status_code} to the {grant} grant{note}"
        )
    try:
        body: Any = response.json()
    except ValueError:
        raise ServiceNowError(f"{where}: HTTP 200 with a body that is not JSON") from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ServiceNowError(f"{where} answered 200 without an access_token")
    expires_in = body.get("expires_in")
    seconds = _seconds(expires_in)
    if seconds is None:
        if require_expiry:
            raise ServiceNowError(f"{where} answered an access token without a valid expires_in")
        seconds = 0.0
    return AccessGrant(token, seconds)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)
