"""A small client for ServiceNow's Table API, on requests + urllib3.

Why not pysnc (ServiceNow's own client)? The keeper needs five calls (list, get,
create, update, delete) on a few tables and one form POST to `/oauth_token.do`. pysnc
would add a dependency (and its import time) to the Lambda layer for a GlideRecord
abstraction we would not use; it has no retry policy of its own, queries the
unversioned path (whose empty-list behaviour depends on the instance's default
version), and its JWT auth does not do the documented `assertion` exchange. `requests`
and `urllib3` are already in the layer. pysnc stays a development/client-side extra.

The retry policy is `retry.py`'s; the token endpoint's forms and answers are
`oauth.py`'s. Values are read with `sysparm_exclude_reference_link=true` and no display
values, so every field is a plain string (a reference is the referenced sys_id). Lists
use the `v2` path, which answers an empty list (not 404) when nothing matches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from urllib3.util.retry import Retry

from jwtkeys.clock import Clock
from jwtkeys.errors import ServiceNowError
from jwtkeys.servicenow.oauth import (
    JWT_BEARER_GRANT,
    TOKEN_PATH,
    AccessGrant,
    TokenRefused,
    client_credentials_form,
    jwt_bearer_form,
    read_token_answer,
)
from jwtkeys.servicenow.retry import default_retry
from jwtkeys.servicenow.secrets import BasicCredentials, SecretSource

__all__ = ["JWT_BEARER_GRANT", "TOKEN_PATH", "Record", "TableClient", "TokenRefused"]

LOGGER = logging.getLogger("jwtkeys.servicenow")

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
PAGE_SIZE = 1000
# Renew a client-credentials access token this long before the instance says it ends.
TOKEN_EXPIRY_MARGIN = 60

Record = dict[str, str]


class _BearerAuth(AuthBase):
    """`Authorization: Bearer`; the token stays out of reprs."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


class TableClient:
    """The Table API and token endpoint of one instance, as the integration user."""

    def __init__(
        self,
        instance_url: str,
        secret: SecretSource,
        clock: Clock,
        *,
        ca_bundle: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        retry: Retry | None = None,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self._secret = secret
        self._clock = clock
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE.
        self._verify: str | bool = ca_bundle or True
        self._timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry or default_retry(clock))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._access_token: str | None = None
        self._token_expires_at = 0.0

    # -- Table API --------------------------------------------------------------------

    def list(self, table: str, query: str, fields: Sequence[str] | None = None) -> list[Record]:
        """Every record of `table` matching the encoded `query` (all pages).

        Pages are ordered by sys_id (a stable order across pages) and read until
        `X-Total-Count` says all were seen: ACLs filter rows after the page limit is
        applied, so a short page is no proof of the end. Remember that an instance drops
        conditions on fields it lacks: callers re-check every returned record.
        """
        ordered = f"{query}^ORDERBYsys_id" if query else "ORDERBYsys_id"
        records: list[Record] = []
        offset = 0
        while True:
            params = {
                "sysparm_query": ordered,
                "sysparm_limit": str(PAGE_SIZE),
                "sysparm_offset": str(offset),
                **_read_params(fields),
            }
            body, headers = self._call_with_headers("GET", table, _table_path(table), params=params)
            page = _result_list(body, table)
            records.extend(page)
            offset += PAGE_SIZE
            total = headers.get("X-Total-Count", "").strip()
            if total.isdigit():
                if offset >= int(total):
                    return records
            elif len(page) < PAGE_SIZE:
                return records

    def get(self, table: str, sys_id: str, fields: Sequence[str] | None = None) -> Record | None:
        """One record by sys_id, or None when it does not exist (or is not readable)."""
        body = self._call(
            "GET",
            table,
            _table_path(table, sys_id),
            params=_read_params(fields),
            missing_ok=True,
        )
        return None if body is None else _result_record(body, table)

    def create(self, table: str, values: Mapping[str, str]) -> Record:
        """Insert a record; returns it as stored (with its sys_id)."""
        body = self._call("POST", table, _table_path(table), params=_read_params(None), json=values)
        return _result_record(body, table)

    def update(self, table: str, sys_id: str, values: Mapping[str, str]) -> Record:
        """Set some fields of a record (PATCH: absolute values, so a retry is harmless)."""
        body = self._call(
            "PATCH",
            table,
            _table_path(table, sys_id),
            params=_read_params(None),
            json=values,
        )
        return _result_record(body, table)

    def delete(self, table: str, sys_id: str) -> bool:
        """Delete a record; False when it was already gone (so a retry is harmless)."""
        body = self._call("DELETE", table, _table_path(table, sys_id), missing_ok=True)
        return body is not None

    # -- token endpoint ---------------------------------------------------------------

    def exchange_jwt_bearer(self, client_id: str, client_secret: str, assertion: str) -> str:
        """Exchange a JWT for an access token (the documented form); TokenRefused on 401."""
        form = jwt_bearer_form(client_id, client_secret, assertion)
        return self._token_request(form, "jwt-bearer").access_token

    # -- plumbing ---------------------------------------------------------------------

    def _token_request(self, form: Mapping[str, str], grant: str) -> AccessGrant:
        response = self._send("POST", self.instance_url + TOKEN_PATH, data=form, auth=None)
        return read_token_answer(response, TOKEN_PATH, grant)

    def _auth(self) -> AuthBase:
        credentials = self._secret.get().credentials
        if isinstance(credentials, BasicCredentials):
            return HTTPBasicAuth(credentials.username, credentials.password)
        now = self._clock.now()
        if self._access_token is None or now >= self._token_expires_at:
            granted = self._token_request(
                client_credentials_form(credentials.client_id, credentials.client_secret),
                "client_credentials",
            )
            self._access_token = granted.access_token
            self._token_expires_at = now + max(0.0, granted.expires_in - TOKEN_EXPIRY_MARGIN)
        return _BearerAuth(self._access_token)

    def _call(
        self,
        method: str,
        table: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        body, _ = self._call_with_headers(
            method, table, path, params=params, json=json, missing_ok=missing_ok
        )
        return body

    def _call_with_headers(
        self,
        method: str,
        table: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> tuple[Any, Mapping[str, str]]:
        url = self.instance_url + path
        response = self._send(method, url, params=params, json=json, auth=self._auth())
        if response.status_code == 401:
            # The secret (or a cached access token) may have been rotated: read it again once.
            self._secret.invalidate()
            self._access_token = None
            response = self._send(method, url, params=params, json=json, auth=self._auth())
        if missing_ok and response.status_code == 404:
            return None, response.headers
        if response.status_code >= 400:
            raise ServiceNowError(
                f"{method} {table}: HTTP {response.status_code}"
                f"{_error_detail(response)}{_retry_after_note(response)}"
            )
        if response.status_code == 204:
            return {}, response.headers
        # Any other success must carry JSON: a 200 with a cut-off body is a failure, not
        # a success whose answer we ignore (a DELETE answered so may not have happened).
        return _json(response, f"{method} {table}"), response.headers

    def _send(
        self,
        method: str,
        url: str,
        *,
        auth: AuthBase | None,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> requests.Response:
        try:
            return self.session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            # The exception text names the URL and the cause, never headers or bodies.
            raise ServiceNowError(
                f"{method} {_path_of(url)}: {type(error).__name__} after retries"
            ) from error


def _table_path(table: str, sys_id: str | None = None) -> str:
    # v2: an empty list is 200 with [] (v1 answers 404; the unversioned path follows
    # whatever the instance's default version is).
    path = f"/api/now/v2/table/{table}"
    return f"{path}/{sys_id}" if sys_id else path


def _read_params(fields: Sequence[str] | None) -> dict[str, str]:
    params = {"sysparm_exclude_reference_link": "true", "sysparm_display_value": "false"}
    if fields:
        params["sysparm_fields"] = ",".join(fields)
    return params


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ServiceNowError(
            f"{what}: HTTP {response.status_code} with a body that is not JSON"
        ) from None


def _as_record(value: object, table: str) -> Record:
    if not isinstance(value, dict):
        raise ServiceNowError(f"{table}: a result that is not a record")
    record: Record = {}
    for name, item in value.items():
        if isinstance(item, dict):
            item = item.get("value", "")  # a reference or display/value pair
        record[str(name)] = "" if item is None else str(item)
    return record


def _result_list(body: Any, table: str) -> list[Record]:
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, list):
        raise ServiceNowError(f"GET {table}: the answer has no result list")
    return [_as_record(item, table) for item in result]


def _result_record(body: Any, table: str) -> Record:
    result = body.get("result") if isinstance(body, dict) else None
    return _as_record(result, table)


def _error_detail(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    message, detail = error.get("message"), error.get("detail")
    parts = [str(part)[:200] for part in (message, detail) if part]
    return f" ({': '.join(parts)})" if parts else ""


def _retry_after_note(response: requests.Response) -> str:
    retry_after = response.headers.get("Retry-After")
    return f"; rate limited, Retry-After {retry_after[:20]} s" if retry_after else ""


def _path_of(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
