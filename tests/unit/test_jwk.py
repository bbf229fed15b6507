"""JWK rendering and RFC 7638 thumbprints (pure)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwk as jwcrypto_jwk

from jwtkeys.errors import ConfigurationError
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.jwk import public_jwk, public_key_from_der, render_jwks, thumbprint

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
    "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM"
    "QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_thumbprint_matches_rfc7638_example() -> None:
    # Given the RSA key of RFC 7638 section 3.1, When thumbprinted, Then the RFC's value.
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_public_jwk_has_only_public_members_and_an_independent_thumbprint(alg: str) -> None:
    algorithm = ALGORITHMS[alg]
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm.ec_coordinate_size:
        curve = {32: ec.SECP256R1(), 48: ec.SECP384R1(), 66: ec.SECP521R1()}
        private = ec.generate_private_key(curve[algorithm.ec_coordinate_size])
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    jwk = public_jwk(public_key_from_der(der), algorithm)
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi", "key_ops"} & set(jwk)
    # jwcrypto computes the RFC 7638 thumbprint on its own.
    independent = jwcrypto_jwk.JWK(**jwk)
    assert independent.thumbprint() == jwk["kid"]
    if algorithm.ec_coordinate_size == 66:
        # P-521 coordinates are 66 bytes: 88 base64url characters, never trimmed.
        assert len(jwk["x"]) == 88
        assert len(jwk["y"]) == 88


def test_jwk_refuses_a_key_of_the_wrong_family() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ConfigurationError):
        public_jwk(key, ALGORITHMS["RS256"])


def test_render_jwks_is_deterministic_whatever_the_order() -> None:
    keys = [
        {"kid": "b", "kty": "EC", "crv": "P-256", "x": "x", "y": "y", "alg": "ES256", "use": "sig"},
        {"kid": "a", "kty": "RSA", "n": "n", "e": "AQAB", "alg": "RS256", "use": "sig"},
    ]
    first = render_jwks(keys)
    assert first == render_jwks(list(reversed(keys)))
    assert [key["kid"] for key in json.loads(first)["keys"]] == ["a", "b"]
    assert render_jwks([]) == b'{"keys":[]}'
