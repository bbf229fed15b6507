"""Public keys as JWKs: RFC 7638 thumbprints as kids, and deterministic JWKS bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from jwtkeys.errors import ConfigurationError
from jwtkeys.keys.algorithms import KeyFamily, SigningAlgorithm

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# RFC 7638 section 3.2: only the required members, in lexicographic order.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
_PUBLIC_MEMBERS = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y")}


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_from_der(der: bytes) -> PublicKey:
    """Load a DER SubjectPublicKeyInfo (what KMS GetPublicKey returns)."""
    key = load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ConfigurationError(f"unsupported public key type {type(key).__name__}")
    return key


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: our kid."""
    members = _THUMBPRINT_MEMBERS[str(jwk["kty"])]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_jwk(public_key: PublicKey, algorithm: SigningAlgorithm) -> dict[str, str]:
    """The public JWK of `public_key` with kid (thumbprint), alg and use; no private members."""
    if algorithm.family is KeyFamily.RSA:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ConfigurationError(f"{algorithm.jws_name} needs an RSA key")
        raw = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ConfigurationError(f"{algorithm.jws_name} needs an EC key")
        raw = ECAlgorithm.to_jwk(public_key, as_dict=True)
    # Keep only the public members we know: anything else (key_ops, ...) is noise here.
    jwk = {name: str(raw[name]) for name in _PUBLIC_MEMBERS[str(raw["kty"])]}
    jwk["kid"] = thumbprint(jwk)
    jwk["alg"] = algorithm.jws_name
    jwk["use"] = "sig"
    return jwk


def render_jwks(jwks_keys: Iterable[Mapping[str, Any]]) -> bytes:
    """Deterministic JWKS bytes: the same keys, in any order, give the same document."""
    keys = sorted((dict(key) for key in jwks_keys), key=lambda key: str(key["kid"]))
    return json.dumps({"keys": keys}, sort_keys=True, separators=(",", ":")).encode("utf-8")
