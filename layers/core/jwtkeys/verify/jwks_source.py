"""Load a JWKS document from a file or an http(s) URL; any problem is JwksUnavailable."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from urllib.request import url2pathname

from jwtkeys.errors import JwksUnavailable
from jwtkeys.verify.token import PRIVATE_JWK_MEMBERS, loads_strict_json

DEFAULT_TIMEOUT_SECONDS: Final = 5.0
# A JWKS is a few keys; anything far bigger is not one, and is not worth reading.
MAX_JWKS_BYTES: Final = 1024 * 1024
_CHUNK_BYTES: Final = 64 * 1024


def load_jwks(source: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The JWKS at `source` (a file path, an https URL or a loopback http URL), read within
    `timeout` seconds."""
    try:
        parts = urlsplit(source)
    except ValueError as error:
        raise JwksUnavailable(f"not a JWKS location: {error}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        # The same transport rule as the verifier's: keys fetched in the clear could be swapped.
        check_transport(source)
        fetched = _fetch(source, display_url(source), timeout)
        check_transport(fetched.url)
        raw = fetched.body
    elif scheme == "file":
        raw = _read_file(url2pathname(parts.path))
    elif not scheme or Path(source).exists():
        # An existing path wins over what looks like a scheme ("C:\\jwks.json", "a:b.json").
        raw = _read_file(source)
    else:
        raise JwksUnavailable(f"unsupported JWKS location scheme {scheme!r}; use a file or http(s)")
    return parse_jwks(raw, display_url(source) if scheme in ("http", "https") else source)


@dataclass(frozen=True)
class FetchedJwks:
    """A JWKS fetched over HTTP, with how long its server lets a cache keep it."""

    document: dict[str, Any]
    # Seconds of freshness left (max-age minus Age); 0 for no-store/no-cache; None when the
    # answer says nothing usable about caching.
    max_age: int | None


def fetch_jwks(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> FetchedJwks:
    """The JWKS at `url` and its freshness; https only, plain http only to a loopback host."""
    display = display_url(url)
    check_transport(url)
    fetched = _fetch(url, display, timeout)
    # A redirect may lead elsewhere: the rule holds for where the document really came from.
    check_transport(fetched.url)
    return FetchedJwks(parse_jwks(fetched.body, display), freshness_seconds(fetched.headers))


def check_transport(url: str) -> None:
    """Refuse (JwksUnavailable) any JWKS URL but https, or http to the loopback interface.

    Keys fetched in the clear could be swapped on the way; only a test or a sidecar on the
    same host is exempt.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as error:
        raise JwksUnavailable(f"not a JWKS URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme == "https" and host:
        return
    if scheme == "http" and _is_loopback(host):
        return
    raise JwksUnavailable(
        f"JWKS URL {display_url(url)} must be https (plain http only to a loopback host)"
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def freshness_seconds(headers: Mapping[str, str]) -> int | None:
    """Seconds a private cache may keep a response, from Cache-Control and Age (RFC 9111)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    max_age: int | None = None
    for directive in lowered.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0
        if name == "max-age":
            seconds = _delta_seconds(value)
            if seconds is None:
                # RFC 9111 4.2.1: an invalid max-age makes the response stale.
                return 0
            max_age = seconds if max_age is None else min(max_age, seconds)
    if max_age is None:
        return None
    # A CDN says how long it has held its copy already; that time is spent.
    age = _delta_seconds(lowered.get("age", "0")) or 0
    return max(0, max_age - age)


def _delta_seconds(value: str) -> int | None:
    text = value.strip().strip('"')
    return int(text) if text.isdigit() else None


def parse_jwks(raw: bytes, source: str = "JWKS") -> dict[str, Any]:
    """Parse and check the shape of a JWKS document (JwksUnavailable when it is not one)."""
    try:
        document = loads_strict_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise JwksUnavailable(f"{source} is not UTF-8 JSON: {error}") from None
    if not isinstance(document, dict):
        raise JwksUnavailable(f"{source} is not a JSON object")
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise JwksUnavailable(f"{source} has no 'keys' list")
    kids: set[str] = set()
    for index, jwk in enumerate(keys):
        _check_jwk(jwk, index, source, kids)
    return document


def _check_jwk(jwk: Any, index: int, source: str, kids: set[str]) -> None:
    where = f"{source} key #{index}"
    if not isinstance(jwk, dict):
        raise JwksUnavailable(f"{where} is not an object")
    if not isinstance(jwk.get("kty"), str):
        raise JwksUnavailable(f"{where} has no 'kty' string")
    private = PRIVATE_JWK_MEMBERS.intersection(jwk)
    if private:
        # A published JWKS must never carry private members: refuse it loudly, use nothing.
        raise JwksUnavailable(f"{where} holds private key material ({', '.join(sorted(private))})")
    kid = jwk.get("kid")
    if kid is None:
        return
    if not isinstance(kid, str):
        raise JwksUnavailable(f"{where} has a 'kid' that is not a string")
    if kid in kids:
        raise JwksUnavailable(f"{source} has more than one key with kid {kid!r}")
    kids.add(kid)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_JWKS_BYTES + 1)
    except OSError as error:
        raise JwksUnavailable(f"cannot read JWKS file {path!r}: {error.strerror}") from None
    except ValueError:
        raise JwksUnavailable(f"not a file path: {path!r}") from None
    if len(raw) > MAX_JWKS_BYTES:
        raise JwksUnavailable(f"JWKS file {path!r} is larger than {MAX_JWKS_BYTES} bytes")
    return raw


def display_url(url: str) -> str:
    """`url` fit for a log line: no userinfo, no query."""
    # Messages are logged: drop credentials in the userinfo and the query (a presigned URL).
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


@dataclass(frozen=True)
class _Response:
    url: str
    headers: Mapping[str, str]
    body: bytes


def _fetch(url: str, display: str, timeout: float) -> _Response:
    # Imported here so that verification alone never pays for importing requests.
    import requests
    import urllib3

    # requests' timeout bounds each socket operation; the deadline bounds the whole read,
    # so a server that drips one byte at a time cannot hold us forever.
    deadline = time.monotonic() + timeout
    try:
        with requests.get(
            url, timeout=timeout, stream=True, headers={"Accept": "application/json"}
        ) as response:
            if url.lower().startswith("https:") and not response.url.lower().startswith("https:"):
                raise JwksUnavailable(f"JWKS at {display} redirected away from https")
            if response.status_code != 200:
                raise JwksUnavailable(f"JWKS at {display} answered HTTP {response.status_code}")
            body = bytearray()
            # read1 returns what has arrived instead of waiting for a full chunk, so the
            # deadline is checked after every packet.
            while chunk := response.raw.read1(_CHUNK_BYTES, decode_content=True):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(
                        f"JWKS at {display} is larger than {MAX_JWKS_BYTES} bytes"
                    )
                if time.monotonic() > deadline:
                    raise JwksUnavailable(f"JWKS at {display} took longer than {timeout}s")
            return _Response(response.url, response.headers, bytes(body))
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise JwksUnavailable(f"JWKS at {display} timed out after {timeout}s") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        # The body is read through urllib3 directly, so its errors arrive unwrapped.
        raise JwksUnavailable(f"cannot fetch JWKS at {display}: {type(error).__name__}") from None
