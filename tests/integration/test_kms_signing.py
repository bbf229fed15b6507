"""KMS-backed JWS for every algorithm, checked by an independent JOSE library (jwcrypto)."""

from __future__ import annotations

import base64
import json

import pytest
from jwcrypto import jwk as jose_jwk
from jwcrypto import jws as jose_jws

from jwtkeys.errors import InvalidToken
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.jwk import public_jwk, public_key_from_der, render_jwks
from jwtkeys.keys.kms_signer import KmsJwsSigner, KmsKeyRef
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.local.aws_endpoint import LocalAws

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _segment_bytes(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


def _jwcrypto_accepts(token: str, key: jose_jwk.JWK, alg: str) -> bool:
    checked = jose_jws.JWS()
    try:
        checked.deserialize(token)
        checked.verify(key, alg=alg)
    except Exception:  # jwcrypto raises several types for a bad token
        return False
    return True


@pytest.fixture(scope="module")
def keys(local_aws_server: LocalAws) -> dict[str, tuple[KmsKeyRef, dict[str, str]]]:
    """One KMS key per algorithm, with its public JWK."""
    kms = local_aws_server.client("kms")
    made = {}
    for name, algorithm in ALGORITHMS.items():
        arn = kms.create_key(KeySpec=algorithm.default_key_spec, KeyUsage="SIGN_VERIFY")[
            "KeyMetadata"
        ]["Arn"]
        jwk = public_jwk(public_key_from_der(kms.get_public_key(KeyId=arn)["PublicKey"]), algorithm)
        made[name] = (KmsKeyRef(key_arn=arn, kid=jwk["kid"], algorithm=algorithm), jwk)
    return made


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_tokens_made_through_kms_verify_independently_and_any_altered_byte_fails(
    local_aws_server: LocalAws, keys: dict[str, tuple[KmsKeyRef, dict[str, str]]], alg: str
) -> None:
    key, jwk = keys[alg]
    signer = KmsJwsSigner(local_aws_server.client("kms"))
    claims = {"iss": "i", "sub": "s", "aud": "a", "iat": 1000, "exp": 2000, "jti": "j" * 22}
    local_aws_server.reset_calls()
    token = signer.sign(json.dumps(claims).encode(), key)
    # Exactly one KMS call per token, and it is Sign.
    assert local_aws_server.calls() == [("kms", "Sign")]
    header = json.loads(_segment_bytes(token)[0])
    assert header == {"alg": alg, "kid": jwk["kid"], "typ": "JWT"}
    if key.algorithm.ec_coordinate_size:
        assert len(_segment_bytes(token)[2]) == 2 * key.algorithm.ec_coordinate_size
    verifier = jose_jwk.JWK(**jwk)
    checked = jose_jws.JWS()
    checked.deserialize(token)
    checked.verify(verifier, alg=alg)
    jwks = json.loads(render_jwks([jwk]))
    assert verify_token(token, jwks, issuer="i", audience="a", now=1500, leeway=0)["sub"] == "s"
    original = _segment_bytes(token)
    for index, character in enumerate(token):
        if character == ".":
            continue
        replacement = B64URL[(B64URL.index(character) + 1) % 64]
        altered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(InvalidToken):
            verify_token(altered, jwks, issuer="i", audience="a", now=1500, leeway=0)
        try:
            decoded_changed = _segment_bytes(altered) != original
        except ValueError:
            decoded_changed = True
        if decoded_changed:
            # jwcrypto tolerates non-canonical base64 (same bytes); any real change fails.
            assert not _jwcrypto_accepts(altered, verifier, alg), (index, altered)


def test_a_large_signing_input_is_signed_as_a_digest(
    local_aws_server: LocalAws, keys: dict[str, tuple[KmsKeyRef, dict[str, str]]]
) -> None:
    # Over KMS's 4096-byte RAW limit: only MessageType=DIGEST can sign it.
    key, jwk = keys["RS256"]
    payload = json.dumps({"blob": "x" * 6000}).encode()
    token = KmsJwsSigner(local_aws_server.client("kms")).sign(payload, key)
    checked = jose_jws.JWS()
    checked.deserialize(token)
    checked.verify(jose_jwk.JWK(**jwk), alg="RS256")
