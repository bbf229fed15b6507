"""Fixtures and helpers for tests that talk to the ServiceNow emulator.

The root conftest loads this module as a plugin; test modules import the helpers.

Fixtures:
- `servicenow_server` (session): one running emulator on a `SimulatedClock`.
- `servicenow` (function): that emulator, reset to an empty instance for the test.
- `servicenow_clock` (function): the emulator's `SimulatedClock` (advance it; never back).
- `servicenow_http` (function): a `requests.Session` that trusts the emulator's CA.
- `servicenow_integration_auth` (function): `(user, password)` of an integration user
  holding the custom integration role whose ACLs cover the tables jwtkeys uses.
- `servicenow_profile` (function): the instance profile of `servicenow` (default
  DEFAULT_PROFILE); parametrize it by name (`ALL_PROFILES`) to run a test per profile.
- `servicenow_api` (function): `servicenow_http` authenticated as that user.

`REQUESTS_CA_BUNDLE` (set in this environment) overrides a session's `verify` in
requests, so `servicenow_http` turns `trust_env` off; clients that keep `trust_env`
must pass `verify=` on each request (or set `REQUESTS_CA_BUNDLE` to the emulator's CA).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_emulator.profiles import DEFAULT_PROFILE, profile_names
from jwtkeys_tools.local.servicenow_emulator.tables import INTEGRATION_ROLE

# Every shipped instance profile: parametrize `servicenow_profile` with it.
ALL_PROFILES = tuple(profile_names())

CLOCK_START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC: far from real time on purpose
INTEGRATION_USER = ("jwtkeys.integration", "integration-password")
CLIENT_ID = "jwtkeys-client"
CLIENT_SECRET = "jwtkeys-secret"
INTEGRATION_ROLES = (INTEGRATION_ROLE,)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


def signing_key(alg: str) -> SigningKey:
    """A fresh private key for a JWS algorithm (RS*/PS* -> RSA 2048, ES* -> its curve)."""
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg])
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate_pem(
    key: SigningKey,
    *,
    not_before: float,
    not_after: float,
    common_name: str = "jwtkeys test key",
) -> str:
    """A self-signed X.509 certificate over `key`'s public key, PEM wrapped at 64 columns."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(not_before, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(not_after, datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_assertion(
    key: SigningKey,
    alg: str,
    kid: str,
    *,
    client_id: str,
    sub: str,
    now: float,
    ttl: int = 300,
    **claims: Any,
) -> str:
    """A JWT bearer assertion as jwtkeys signs one (iss = aud = client_id, fresh jti)."""
    payload: dict[str, Any] = {
        "iss": client_id,
        "aud": client_id,
        "sub": sub,
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + ttl,
        "jti": secrets.token_hex(16),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})


@dataclass(frozen=True)
class TrustedKey:
    """An `oauth_jwt` app with one trusted key: what a token exchange needs."""

    app_sys_id: str
    client_id: str
    client_secret: str
    kid: str
    alg: str
    key: SigningKey
    certificate_sys_id: str
    verifier_sys_id: str


def trust_key(
    emulator: ServiceNowEmulator,
    *,
    alg: str = "RS256",
    kid: str | None = None,
    app_sys_id: str | None = None,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    lifetime: float = 30 * 86400,
    key: SigningKey | None = None,
) -> TrustedKey:
    """Seed a certificate and verifier map for a new key (and the app, unless given)."""
    now = emulator.clock.now()
    if app_sys_id is None:
        app_sys_id = emulator.add_oauth_jwt_app("jwtkeys", client_id, client_secret)
    key = key or signing_key(alg)
    kid = kid or secrets.token_hex(8)
    pem = certificate_pem(key, not_before=now - 60, not_after=now + lifetime)
    certificate = emulator.add_record(
        "sys_certificate", {"name": f"jwtkeys/test/{kid}", "pem_certificate": pem}
    )
    verifier = emulator.add_record(
        "jwt_verifier_map",
        {
            "name": f"jwtkeys/test/{kid}",
            "kid": kid,
            "sys_certificate": certificate,
            "oauth_jwt": app_sys_id,
        },
    )
    return TrustedKey(app_sys_id, client_id, client_secret, kid, alg, key, certificate, verifier)


@pytest.fixture(scope="session")
def servicenow_server() -> Iterator[ServiceNowEmulator]:
    """One emulator for the whole session (starting one costs a TLS key and a thread)."""
    with ServiceNowEmulator(SimulatedClock(CLOCK_START)) as emulator:
        yield emulator


@pytest.fixture
def servicenow_profile() -> str:
    """The instance profile a test runs against (parametrize to change it)."""
    return DEFAULT_PROFILE


@pytest.fixture
def servicenow(
    servicenow_server: ServiceNowEmulator, servicenow_profile: str
) -> Iterator[ServiceNowEmulator]:
    """The session's emulator in the test's profile, emptied for this test (and after it)."""
    servicenow_server.use_profile(servicenow_profile)
    yield servicenow_server
    servicenow_server.reset()


@pytest.fixture
def servicenow_clock(servicenow: ServiceNowEmulator) -> SimulatedClock:
    """The emulator's simulated clock."""
    clock = servicenow.clock
    assert isinstance(clock, SimulatedClock)
    return clock


@pytest.fixture
def servicenow_http(servicenow: ServiceNowEmulator) -> Iterator[requests.Session]:
    """A requests session that verifies the emulator's TLS certificate."""
    with requests.Session() as session:
        session.verify = servicenow.ca_bundle
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would override `verify`
        yield session


@pytest.fixture
def servicenow_integration_auth(servicenow: ServiceNowEmulator) -> tuple[str, str]:
    """Basic credentials of an integration user with the roles trust records need."""
    user, password = INTEGRATION_USER
    servicenow.add_user(user, roles=INTEGRATION_ROLES, password=password)
    return user, password


@pytest.fixture
def servicenow_api(
    servicenow_http: requests.Session, servicenow_integration_auth: tuple[str, str]
) -> requests.Session:
    """`servicenow_http` with Basic auth as the integration user."""
    servicenow_http.auth = servicenow_integration_auth
    return servicenow_http
