"""`POST /oauth_token.do`: the JWT bearer grant an `oauth_jwt` app accepts, and two simple grants.

The JWT bearer checks run in an instance's order: app by client_id, its secret, the
verifier map by the JWT's `kid` (or the app's JWKS when it trusts a JWKS URL), the
certificate's key and validity, the algorithm (RS*/ES* only), the signature, `aud` and
`iss` equal to the client_id, `exp`/`nbf`/`iat` within the app's clock skew, the `jti`
not seen before, and `sub` mapped to an active, non-admin `sys_user` through the app's
`user_field`. Every time judgement uses the emulator clock. Any refusal answers the
generic 401; the real reason goes to the emulator's log, as an instance writes it only
to its own log.

`client_credentials` (an `oauth_entity` whose `default_grant_type` is
`client_credentials`, acting as its `user`) and `password` are there for the
integration user. Neither issues refresh tokens.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import requests

from jwtkeys.clock import Clock
from jwtkeys_tools.local.servicenow_emulator.auth import Credentials
from jwtkeys_tools.local.servicenow_emulator.certificates import (
    CertificateRejected,
    glide_datetime,
    parse_pem_certificate,
)
from jwtkeys_tools.local.servicenow_emulator.tables import ADMIN, RecordStore, Row

_LOGGER = logging.getLogger(__name__)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCEPTED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
GENERIC_FAILURE: dict[str, object] = {"error_description": "access_denied", "error": "server_error"}
JWKS_TIMEOUT_SECONDS = 5.0

TokenResponse = tuple[int, dict[str, object]]


class Refused(Exception):
    """A grant the endpoint refuses; the message is the reason that goes to the log."""


class TokenEndpoint:
    """Verifies grants and issues access tokens as `oauth_credential` rows."""

    def __init__(
        self,
        store: RecordStore,
        credentials: Credentials,
        clock: Clock,
        log: Callable[[str], None],
        jwks_ca_bundle: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._store = store
        self._jwks_ca_bundle = jwks_ca_bundle
        self._credentials = credentials
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._seen_jti: dict[tuple[str, str], float] = {}  # (app, jti) -> forget after
        self._jwks_cache: dict[str, tuple[float, str, dict[str, Any]]] = {}

    def reset(self) -> None:
        """Forget replay records and cached JWKS documents."""
        with self._lock:
            self._seen_jti.clear()
            self._jwks_cache.clear()

    def exchange(self, form: Mapping[str, str]) -> TokenResponse:
        """Answer one token request: 200 with a token, or the generic 401 (reason logged)."""
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        try:
            if grant_type == JWT_BEARER:
                app, user = self._jwt_bearer(form)
            elif grant_type == "client_credentials":
                app, user = self._client_credentials(form)
            elif grant_type == "password":
                app, user = self._password(form)
            else:
                raise Refused(f"unsupported grant_type {grant_type!r}")
        except Refused as refusal:
            reason = f"oauth_token.do grant_type={grant_type} client_id={client_id}: {refusal}"
            _LOGGER.info("token request refused: %s", reason)
            self._log(reason)
            return 401, dict(GENERIC_FAILURE)
        return 200, self._issue(app, user)

    # -- grants -----------------------------------------------------------------------

    def _jwt_bearer(self, form: Mapping[str, str]) -> tuple[Row, Row]:
        client_id = form.get("client_id", "")
        app = self._app(client_id, "oauth_jwt")
        self._check_secret(app, form.get("client_secret", ""))
        assertion = form.get("assertion", "")
        if not assertion:
            raise Refused("no assertion in the request")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as error:
            raise Refused(f"assertion is not a JWT: {error}") from error
        alg = str(header.get("alg", ""))
        accepted = self._store.profile.algorithms
        if alg not in ACCEPTED_ALGORITHMS or alg not in accepted:
            raise Refused(f"algorithm {alg!r} is not accepted ({', '.join(accepted)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Refused("the JWT header has no kid")
        now = self._clock.now()
        use_jwks = bool(app.get("jwks_url"))
        key = self._jwks_key(app, kid, now) if use_jwks else self._map_key(app, kid, now)
        claims = self._verified_claims(assertion, key, alg, client_id)
        skew = _int(app["clock_skew"], self._store.profile.clock_skew_default)
        self._check_times(claims, now, skew)
        jti = self._check_jti(app, claims, now, skew)
        user = self._subject(app, claims)
        if jti is not None:
            # Recorded only on success (a token refused for another reason may be retried),
            # and checked again under the lock so two concurrent exchanges cannot both pass.
            with self._lock:
                if (app["sys_id"], jti) in self._seen_jti:
                    raise Refused(f"jti {jti!r} was already used")
                self._seen_jti[(app["sys_id"], jti)] = float(claims["exp"]) + skew
        return app, user

    def _client_credentials(self, form: Mapping[str, str]) -> tuple[Row, Row]:
        app = self._app(form.get("client_id", ""), "oauth_entity")
        self._check_secret(app, form.get("client_secret", ""))
        if app["default_grant_type"] != "client_credentials":
            raise Refused("the application does not allow the client_credentials grant")
        user = self._store.get("sys_user", app["user"])
        if user is None or user["active"] != "true":
            raise Refused("the application's OAuth application user is missing or inactive")
        return app, user

    def _password(self, form: Mapping[str, str]) -> tuple[Row, Row]:
        app = self._app(form.get("client_id", ""), "oauth_entity")
        self._check_secret(app, form.get("client_secret", ""))
        user = self._credentials.check_password(form.get("username", ""), form.get("password", ""))
        if user is None:
            raise Refused("wrong username or password")
        return app, user

    # -- checks -----------------------------------------------------------------------

    def _app(self, client_id: str, table: str) -> Row:
        if not client_id:
            raise Refused("no client_id in the request")
        for app in self._store.rows(table):
            if app["client_id"] == client_id:
                if app["active"] != "true":
                    raise Refused(f"application {app['name']!r} is inactive")
                return app
        raise Refused(f"no {table} application has client_id {client_id!r}")

    @staticmethod
    def _check_secret(app: Row, secret: str) -> None:
        if not hmac.compare_digest(app["client_secret"].encode(), secret.encode()):
            raise Refused("client_secret does not match")

    def _map_key(self, app: Row, kid: str, now: float) -> Any:
        maps = [
            m
            for m in self._store.rows("jwt_verifier_map")
            if m["oauth_jwt"] == app["sys_id"]
            and m["kid"] == kid
            and m.get("active", "true") == "true"
        ]
        if not maps:
            raise Refused(f"no jwt_verifier_map of application {app['name']!r} has kid {kid!r}")
        reasons = []
        for verifier in maps:
            row = self._store.get("sys_certificate", verifier["sys_certificate"])
            if row is None:
                reasons.append(f"verifier map {verifier['name']!r} points at no certificate")
                continue
            if row["active"] != "true":
                reasons.append(f"certificate {row['name']!r} is inactive")
                continue
            # Only a trust-store certificate in PEM verifies, in the instance's own spelling.
            profile = self._store.profile
            trust_store = profile.choice_value("sys_certificate", "type") or "trust_store"
            pem = profile.choice_value("sys_certificate", "format") or "pem"
            if row["type"] != trust_store or row["format"] != pem:
                reasons.append(
                    f"certificate {row['name']!r} is of type {row['type']!r} in format"
                    f" {row['format']!r}, not a {trust_store!r} in {pem!r}"
                )
                continue
            try:
                parsed = parse_pem_certificate(row["pem_certificate"])
            except CertificateRejected as error:
                reasons.append(f"certificate {row['name']!r} is unreadable: {error}")
                continue
            if not parsed.valid_at(now):
                reasons.append(
                    f"certificate {row['name']!r} is not valid at {glide_datetime(now)} "
                    f"(valid {glide_datetime(parsed.not_before)} to "
                    f"{glide_datetime(parsed.not_after)})"
                )
                continue
            return parsed.public_key()
        raise Refused("; ".join(reasons))

    def _jwks_key(self, app: Row, kid: str, now: float) -> Any:
        jwks = self._jwks(app, now)
        for jwk in jwks.get("keys", []):
            if isinstance(jwk, dict) and jwk.get("kid") == kid:
                try:
                    return jwt.PyJWK(jwk).key
                except jwt.PyJWTError as error:
                    raise Refused(f"JWKS key {kid!r} is unusable: {error}") from error
        raise Refused(f"kid {kid!r} is not in the cached JWKS of {app['jwks_url']}")

    def _jwks(self, app: Row, now: float) -> dict[str, Any]:
        # Cached per app for its lifespan on the emulator clock; an unknown kid does not
        # refetch early, which is why the prepublish window must outlast this cache.
        url = app["jwks_url"]
        lifespan = 60 * _int(app.get("jwks_cache_lifespan", ""), 10)  # minutes
        with self._lock:
            cached = self._jwks_cache.get(app["sys_id"])
        if cached is not None and cached[1] == url and now - cached[0] < lifespan:
            return cached[2]
        try:
            ca_bundle = self._jwks_ca_bundle()
            response = requests.get(
                url,
                timeout=JWKS_TIMEOUT_SECONDS,
                verify=ca_bundle if ca_bundle is not None else True,
            )
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise Refused(f"could not fetch the JWKS at {url}: {error}") from error
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise Refused(f"the document at {url} is not a JWKS")
        with self._lock:
            self._jwks_cache[app["sys_id"]] = (now, url, document)
        return document

    @staticmethod
    def _verified_claims(assertion: str, key: Any, alg: str, client_id: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=client_id,
                issuer=client_id,
                # Times are judged on the emulator clock below, not PyJWT's wall clock.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "sub"],
                },
            )
        except jwt.InvalidAudienceError as error:
            raise Refused(f"aud is not the client_id {client_id!r}: {error}") from error
        except jwt.InvalidIssuerError as error:
            raise Refused(f"iss is not the client_id {client_id!r}: {error}") from error
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            raise Refused(f"{type(error).__name__}: {error}") from error
        return claims

    @staticmethod
    def _check_times(claims: Mapping[str, Any], now: float, skew: int) -> None:
        exp = _number(claims, "exp")
        if exp is None:
            raise Refused("exp is missing or not a number")
        if now > exp + skew:
            raise Refused(f"the JWT expired at {glide_datetime(exp)} (skew {skew}s)")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + skew:
            raise Refused(f"the JWT is not valid before {glide_datetime(nbf)} (skew {skew}s)")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + skew:
            raise Refused(f"the JWT was issued in the future ({glide_datetime(iat)})")

    def _check_jti(self, app: Row, claims: Mapping[str, Any], now: float, skew: int) -> str | None:
        if app["enable_jti_verification"] != "true":
            return None
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Refused("jti is required (JTI verification is on)")
        with self._lock:
            self._seen_jti = {k: v for k, v in self._seen_jti.items() if v >= now}
            if (app["sys_id"], jti) in self._seen_jti:
                raise Refused(f"jti {jti!r} was already used")
        return jti

    def _subject(self, app: Row, claims: Mapping[str, Any]) -> Row:
        user_field = app["user_field"] or "email"
        if not self._store.knows_field("sys_user", user_field):
            raise Refused(f"user_field {user_field!r} is not a sys_user field")
        subject = str(claims["sub"])
        for user in self._store.rows("sys_user"):
            if user[user_field].casefold() == subject.casefold() and subject:
                if user["active"] != "true":
                    raise Refused(f"user {user['user_name']!r} is inactive")
                if ADMIN in {r.strip() for r in user["roles"].split(",")}:
                    raise Refused("Grant access to admin is not allowed")
                return user
        raise Refused(f"no sys_user has {user_field}={subject!r}")

    # -- issuing ----------------------------------------------------------------------

    def _issue(self, app: Row, user: Row) -> dict[str, object]:
        lifespan = _int(app["access_token_lifespan"], 1800)
        token = secrets.token_urlsafe(64)
        credential = self._store.insert(
            "oauth_credential",
            {
                "name": app["name"],
                "type": "access_token",
                "peer": app["sys_id"],
                "user": user["sys_id"],
                "expires": glide_datetime(self._clock.now() + lifespan),
                "scopes": "useraccount",
            },
            by=user["user_name"],
        )
        self._credentials.remember_token(token, credential["sys_id"])
        # An instance reports one second less than the lifespan.
        return {
            "access_token": token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": lifespan - 1,
        }


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
