"""verify_token: valid tokens of every algorithm pass; every refusal has its named reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto.jwk import JWK
from jwcrypto.jwt import JWT
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms

from jwtkeys.errors import InvalidToken
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.verify.token import DEFAULT_MAX_LIFETIME, MAX_TOKEN_BYTES, verify_token

ISSUER = "https://issuer.example"
AUDIENCE = "servicenow-client-id"
NOW = 1_800_000_000
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGS = ("ES256", "ES384", "ES512")
ALL_ALGS = RSA_ALGS + EC_ALGS
_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- keys, JWKS and tokens -------------------------------------------------------------


def private_key(alg: str, generation: int = 0) -> PrivateKey:
    """One key per algorithm (and generation), generated once per test run."""
    # Positional arguments only: functools.cache keys f("a") and f("a", 0) apart.
    return _generate_key(alg, generation)


@cache
def _generate_key(alg: str, generation: int) -> PrivateKey:
    if alg in RSA_ALGS:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(_CURVES[alg])


def kid_for(alg: str, generation: int = 0) -> str:
    return f"kid-{alg}-{generation}"


def public_jwk(key_alg: str, generation: int = 0, /, **extra: Any) -> dict[str, Any]:
    """The public JWK of `key_alg`'s key; `extra` overrides or adds members (even `alg`)."""
    public = private_key(key_alg, generation).public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    jwk.update(kid=kid_for(key_alg, generation), alg=key_alg, use="sig")
    jwk.update(extra)
    return jwk


def full_jwks() -> dict[str, Any]:
    return {"keys": [public_jwk(alg) for alg in ALL_ALGS]}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "service-a",
        "jti": "0b9f7d2a",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not _DROP}


_DROP = object()


def token(alg: str = "RS256", generation: int = 0, /, **overrides: Any) -> str:
    """A well-formed token signed by PyJWT with the algorithm's key, kid in the header."""
    return jwt.encode(
        claims(**overrides),
        private_key(alg, generation),
        algorithm=alg,
        headers={"kid": kid_for(alg, generation)},
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def signed(header_segment: str, payload_segment: str, alg: str = "RS256") -> str:
    """Sign arbitrary segments with the real key: lets a test reach the checks after it."""
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    signature = get_default_algorithms()[alg].sign(signing_input, private_key(alg))
    return f"{header_segment}.{payload_segment}.{b64(signature)}"


def hand_made(header: Any, payload: Any = None, alg: str = "RS256") -> str:
    """A token with exactly this header and payload (JSON-encoded), validly signed."""
    return signed(b64_json(header), b64_json(claims() if payload is None else payload), alg)


def header_with(alg: Any = "RS256", **extra: Any) -> dict[str, Any]:
    return {"alg": alg, "typ": "JWT", "kid": kid_for(alg), **extra}


def verify(value: str, jwks: Any = None, *, now: float = NOW, leeway: int = 0) -> dict[str, Any]:
    return verify_token(
        value,
        full_jwks() if jwks is None else jwks,
        issuer=ISSUER,
        audience=AUDIENCE,
        now=now,
        leeway=leeway,
    )


def reason_of(value: str, jwks: Any = None, *, now: float = NOW, leeway: int = 0) -> str:
    with pytest.raises(InvalidToken) as refused:
        verify(value, jwks, now=now, leeway=leeway)
    return refused.value.reason


# --- valid tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_a_valid_token_of_every_algorithm_is_accepted(alg: str) -> None:
    # Given a token signed with the algorithm's key, its JWK in the JWKS
    # When it is verified
    result = verify(token(alg))
    # Then its claims come back unchanged
    assert result == claims()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_tokens_from_an_independent_jose_library_are_accepted(alg: str) -> None:
    # jwcrypto signs on its own code path: agreement rules out a PyJWT-only dialect.
    signer = JWT(header={"alg": alg, "kid": kid_for(alg)}, claims=claims())
    signer.make_signed_token(JWK.from_pyca(private_key(alg)))
    assert verify(signer.serialize()) == claims()


@pytest.mark.parametrize("typ", ["JWT", "jwt", "Jwt", "application/jwt", "APPLICATION/JWT"])
def test_typ_jwt_is_accepted_in_any_case_and_with_the_media_type_prefix(typ: str) -> None:
    assert verify(hand_made(header_with(typ=typ))) == claims()


def test_typ_is_optional() -> None:
    assert verify(hand_made({"alg": RS256, "kid": kid_for(RS256)})) == claims()


def test_the_default_maximum_lifetime_is_the_keysets_default_max_token_ttl() -> None:
    assert RotationPolicy().max_token_ttl == DEFAULT_MAX_LIFETIME


@pytest.mark.parametrize("leeway", [0, 300])
def test_lifetime_boundary_with_leeway_and_a_keyset_maximum(leeway: int) -> None:
    # exp - iat may reach max_lifetime + leeway (an issuer may backdate iat by the skew)
    longest = 600 + leeway
    ok = token(iat=NOW - 10, exp=NOW - 10 + longest)
    assert verify_token(
        ok, full_jwks(), issuer=ISSUER, audience=AUDIENCE, now=NOW, leeway=leeway, max_lifetime=600
    )
    too_long = token(iat=NOW - 10, exp=NOW - 10 + longest + 1)
    with pytest.raises(InvalidToken, match="lifetime_too_long"):
        verify_token(
            too_long,
            full_jwks(),
            issuer=ISSUER,
            audience=AUDIENCE,
            now=NOW,
            leeway=leeway,
            max_lifetime=600,
        )


def test_aud_may_be_a_list_that_contains_the_audience() -> None:
    assert verify(token(aud=["other", AUDIENCE]))["aud"] == ["other", AUDIENCE]


def test_nbf_is_optional() -> None:
    assert "nbf" not in verify(token(nbf=_DROP))


def test_a_jwks_with_several_keys_picks_the_key_by_kid() -> None:
    # Given two RS256 keys and an ES256 key in one JWKS
    jwks = {"keys": [public_jwk("RS256"), public_jwk("ES256"), public_jwk("RS256", 1)]}
    # Then each token verifies with the key its kid names
    assert verify(token("RS256", 1), jwks) == claims()
    assert verify(token("RS256", 0), jwks) == claims()
    # And a token whose kid names the other RSA key is a bad signature
    stolen_kid = jwt.encode(
        claims(), private_key("RS256", 1), algorithm="RS256", headers={"kid": kid_for("RS256")}
    )
    assert reason_of(stolen_kid, jwks) == "bad_signature"


def test_a_new_key_under_the_same_kid_is_not_served_from_the_cache() -> None:
    # Given a kid that first named one key, then another (cached keys must follow the JWK)
    old = {"keys": [public_jwk("RS256", 0, kid="shared")]}
    new = {"keys": [public_jwk("RS256", 1, kid="shared")]}
    new_token = jwt.encode(
        claims(), private_key("RS256", 1), algorithm="RS256", headers={"kid": "shared"}
    )
    # Then the token verifies only against the JWKS holding its key
    assert verify(new_token, new) == claims()
    assert reason_of(new_token, old) == "bad_signature"
    assert verify(new_token, new) == claims()


# --- the table of refusals -------------------------------------------------------------


def _der_signed_es256() -> str:
    # What KMS returns for ECDSA: DER, not raw R||S. It must be refused before verifying.
    header_segment = b64_json(header_with("ES256"))
    payload_segment = b64_json(claims())
    key = private_key("ES256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.sign(f"{header_segment}.{payload_segment}".encode(), ec.ECDSA(hashes.SHA256()))
    return f"{header_segment}.{payload_segment}.{b64(der)}"


def _hs256_with_public_key_as_secret() -> str:
    # The classic algorithm confusion: the RSA public key used as an HMAC secret.
    public = private_key("RS256").public_key()
    secret = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header_segment = b64_json({"alg": "HS256", "kid": kid_for("RS256")})
    payload_segment = b64_json(claims())
    mac = hmac.new(secret, f"{header_segment}.{payload_segment}".encode(), hashlib.sha256)
    return f"{header_segment}.{payload_segment}.{b64(mac.digest())}"


def _with_segment(value: str, index: int, segment: str) -> str:
    parts = value.split(".")
    parts[index] = segment
    return ".".join(parts)


def _decoded_signature(value: str) -> bytes:
    return base64.urlsafe_b64decode(value.split(".")[2] + "==")


def _non_canonical_signature() -> str:
    # RS256 signatures are 256 bytes: 342 characters whose last one has 4 spare bits.
    value = token("RS256")
    last = value[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(last) + 1]
    assert alphabet.index(last) % 16 == 0
    return value[:-1] + sibling


def _too_large_but_well_formed() -> str:
    return token(padding="x" * MAX_TOKEN_BYTES)


def _rsa_private_key() -> rsa.RSAPrivateKey:
    key = private_key(RS256)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _token_without(claim: str) -> Callable[[], str]:
    return lambda: token(**{claim: _DROP})


def _jwks_without(member: str) -> dict[str, Any]:
    jwk = public_jwk("RS256")
    del jwk[member]
    return {"keys": [jwk]}


RS256 = "RS256"
Case = tuple[str, Callable[[], str], Callable[[], Any] | None]

REFUSALS: dict[str, Case] = {
    # size and shape, before any parsing
    "over 16 KiB of junk": ("too_large", lambda: "a" * (MAX_TOKEN_BYTES + 1), None),
    "over 16 KiB well formed": ("too_large", _too_large_but_well_formed, None),
    "empty": ("malformed", lambda: "", None),
    "one segment": ("malformed", lambda: "abc", None),
    "two segments": ("malformed", lambda: ".".join(token().split(".")[:2]), None),
    "four segments": ("malformed", lambda: token() + ".e30", None),
    "duplicated token": ("malformed", lambda: token() + "." + token(), None),
    "leading space": ("malformed", lambda: " " + token(), None),
    "trailing newline": ("malformed", lambda: token() + "\n", None),
    "inner whitespace": ("malformed", lambda: token().replace(".", ". ", 1), None),
    "padding characters": (
        "malformed",
        lambda: _with_segment(token(), 0, b64_json({}) + "=="),
        None,
    ),
    "standard base64 alphabet": ("malformed", lambda: _with_segment(token(), 2, "ab+/"), None),
    "non-ascii": ("malformed", lambda: token() + "é", None),
    "impossible base64 length": ("malformed", lambda: _with_segment(token(), 0, "abcde"), None),
    "non-canonical base64": ("malformed", _non_canonical_signature, None),
    "header not json": ("malformed", lambda: signed(b64(b"{alg"), b64_json(claims())), None),
    "header not utf-8": ("malformed", lambda: signed(b64(b"\xff\xfe{}"), b64_json(claims())), None),
    "header utf-16 json": (
        "malformed",
        lambda: signed(b64(json.dumps(header_with()).encode("utf-16")), b64_json(claims())),
        None,
    ),
    "header a list": ("malformed", lambda: hand_made([header_with()]), None),
    "header a string": ("malformed", lambda: hand_made("RS256"), None),
    "header null": ("malformed", lambda: hand_made(None), None),
    "header with a duplicate alg": (
        "malformed",
        lambda: signed(
            b64(b'{"alg":"RS256","kid":"kid-RS256-0","alg":"none"}'), b64_json(claims())
        ),
        None,
    ),
    "header with NaN": (
        "malformed",
        lambda: signed(b64(b'{"alg":"RS256","kid":"kid-RS256-0","x":NaN}'), b64_json(claims())),
        None,
    ),
    "header nested absurdly deep": (
        "malformed",
        lambda: signed(b64(b"[" * 5000 + b"]" * 5000), b64_json(claims())),
        None,
    ),
    "header without alg": ("malformed", lambda: hand_made({"kid": kid_for(RS256)}), None),
    "alg not a string": ("malformed", lambda: hand_made(header_with(alg=["RS256"])), None),
    "kid not a string": ("malformed", lambda: hand_made(header_with(kid=7)), None),
    "typ not a string": ("malformed", lambda: hand_made(header_with(typ=1)), None),
    "typ of an access token": ("wrong_typ", lambda: hand_made(header_with(typ="at+jwt")), None),
    "typ JWE": ("wrong_typ", lambda: hand_made(header_with(typ="JWE")), None),
    "typ application/jose": (
        "wrong_typ",
        lambda: hand_made(header_with(typ="application/jose")),
        None,
    ),
    "typ JWT with a trailing space": (
        "wrong_typ",
        lambda: hand_made(header_with(typ="JWT ")),
        None,
    ),
    "typ empty": ("wrong_typ", lambda: hand_made(header_with(typ="")), None),
    "payload not json": ("malformed", lambda: signed(b64_json(header_with()), b64(b"exp")), None),
    "payload a list": ("malformed", lambda: hand_made(header_with(), [claims()]), None),
    "payload a number": ("malformed", lambda: hand_made(header_with(), 42), None),
    "payload with a duplicate exp": (
        "malformed",
        lambda: signed(
            b64_json(header_with()),
            b64(json.dumps(claims()).encode()[:-1] + b', "exp": 99999999999}'),
        ),
        None,
    ),
    "payload with a huge integer": (
        "malformed",
        lambda: signed(
            b64_json(header_with()),
            b64(json.dumps(claims()).encode()[:-1] + b', "n": ' + b"9" * 5000 + b"}"),
        ),
        None,
    ),
    # header policy
    "alg none": (
        "alg_not_allowed",
        lambda: b64_json({"alg": "none", "kid": kid_for(RS256)}) + "." + b64_json(claims()) + ".",
        None,
    ),
    "alg None (case)": ("alg_not_allowed", lambda: hand_made(header_with(alg="None")), None),
    "alg HS256 with the public key as secret": (
        "alg_not_allowed",
        _hs256_with_public_key_as_secret,
        None,
    ),
    "alg ES256K": ("alg_not_allowed", lambda: hand_made(header_with(alg="ES256K")), None),
    "alg EdDSA": ("alg_not_allowed", lambda: hand_made(header_with(alg="EdDSA")), None),
    "alg with a trailing space": (
        "alg_not_allowed",
        lambda: hand_made(header_with(alg="RS256 ")),
        None,
    ),
    "jku header": (
        "forbidden_header",
        lambda: hand_made(header_with(jku="https://evil/jwks")),
        None,
    ),
    "x5u header": ("forbidden_header", lambda: hand_made(header_with(x5u="https://evil/c")), None),
    "x5c header": ("forbidden_header", lambda: hand_made(header_with(x5c=["MIIB"])), None),
    "jwk header": (
        "forbidden_header",
        lambda: hand_made(header_with(jwk=public_jwk("RS256"))),
        None,
    ),
    "b64 header": ("forbidden_header", lambda: hand_made(header_with(b64=False)), None),
    "crit header": ("unknown_crit", lambda: hand_made(header_with(crit=["exp"], exp=1)), None),
    "empty crit header": ("unknown_crit", lambda: hand_made(header_with(crit=[])), None),
    "no kid": (
        "missing_kid",
        lambda: jwt.encode(claims(), private_key(RS256), algorithm=RS256),
        None,
    ),
    "null kid": ("missing_kid", lambda: hand_made(header_with(kid=None)), None),
    "unknown kid": ("unknown_kid", lambda: hand_made(header_with(kid="kid-nobody")), None),
    "kid of a removed key": (
        "unknown_kid",
        token,
        lambda: {"keys": [public_jwk("ES256")]},
    ),
    "empty jwks": ("unknown_kid", token, lambda: {"keys": []}),
    # the key decides the algorithm
    "header RS256, key PS256": (
        "alg_mismatch",
        lambda: hand_made(header_with(kid=kid_for("PS256"))),
        None,
    ),
    "header PS256, key RS256 (same RSA key)": (
        "alg_mismatch",
        lambda: hand_made(header_with("PS256", kid=kid_for(RS256)), alg="PS256"),
        None,
    ),
    "header ES256, key ES384": (
        "alg_mismatch",
        lambda: hand_made(header_with("ES256", kid=kid_for("ES384")), alg="ES256"),
        None,
    ),
    "key alg HS256": (
        "alg_mismatch",
        token,
        lambda: {"keys": [public_jwk(RS256, alg="HS256")]},
    ),
    "key without alg": ("unusable_key", token, lambda: _jwks_without("alg")),
    "key with private members": (
        "unusable_key",
        token,
        lambda: {
            "keys": [
                {
                    **RSAAlgorithm.to_jwk(_rsa_private_key(), as_dict=True),
                    "kid": kid_for(RS256),
                    "alg": RS256,
                }
            ]
        },
    ),
    "key for encryption": ("unusable_key", token, lambda: {"keys": [public_jwk(RS256, use="enc")]}),
    "key_ops without verify": (
        "unusable_key",
        token,
        lambda: {"keys": [public_jwk(RS256, key_ops=["encrypt"])]},
    ),
    "RS256 on an EC key": (
        "unusable_key",
        token,
        lambda: {"keys": [public_jwk("ES256", kid=kid_for(RS256), alg=RS256)]},
    ),
    "ES384 on a P-256 key": (
        "unusable_key",
        lambda: token("ES384"),
        lambda: {"keys": [public_jwk("ES256", kid=kid_for("ES384"), alg="ES384")]},
    ),
    "RSA key without n": ("unusable_key", token, lambda: _jwks_without("n")),
    "RSA n not a string": ("unusable_key", token, lambda: {"keys": [public_jwk(RS256, n=12345)]}),
    "RSA n not base64url": ("unusable_key", token, lambda: {"keys": [public_jwk(RS256, n="é!")]}),
    "RSA key of 1024 bits": (
        "unusable_key",
        token,
        lambda: {
            "keys": [
                {
                    **RSAAlgorithm.to_jwk(
                        rsa.generate_private_key(65537, 1024).public_key(),  # noqa: S505 - the point
                        as_dict=True,
                    ),
                    "kid": kid_for(RS256),
                    "alg": RS256,
                }
            ]
        },
    ),
    "EC point not on the curve": (
        "unusable_key",
        lambda: token("ES256"),
        lambda: {"keys": [public_jwk("ES256", y=public_jwk("ES256")["x"])]},
    ),
    "EC coordinate of the wrong size": (
        "unusable_key",
        lambda: token("ES256"),
        lambda: {"keys": [public_jwk("ES256", x=b64(b"\x01" * 31))]},
    ),
    "jwks not an object": ("invalid_jwks", token, lambda: [public_jwk(RS256)]),
    "jwks without keys": ("invalid_jwks", token, lambda: {"key": [public_jwk(RS256)]}),
    "jwks keys a string": ("invalid_jwks", token, lambda: {"keys": "RS256"}),
    "jwks entry not an object": ("invalid_jwks", token, lambda: {"keys": [public_jwk(RS256), 3]}),
    "jwks with the kid twice": (
        "invalid_jwks",
        token,
        lambda: {"keys": [public_jwk(RS256), public_jwk(RS256, 1, kid=kid_for(RS256))]},
    ),
    # signatures
    "unsigned RS256": ("bad_signature", lambda: _with_segment(token(), 2, ""), None),
    "signed by another key": (
        "bad_signature",
        lambda: jwt.encode(
            claims(), private_key(RS256, 1), algorithm=RS256, headers={"kid": kid_for(RS256)}
        ),
        None,
    ),
    "payload swapped": (
        "bad_signature",
        lambda: _with_segment(token(), 1, b64_json(claims(sub="admin"))),
        None,
    ),
    "signature of another token": (
        "bad_signature",
        lambda: _with_segment(token(), 2, token(jti="other").split(".")[2]),
        None,
    ),
    "truncated RSA signature": (
        "bad_signature",
        lambda: _with_segment(token(), 2, b64(_decoded_signature(token())[:-1])),
        None,
    ),
    "DER ECDSA signature": ("bad_ecdsa_signature_length", _der_signed_es256, None),
    "truncated ECDSA signature": (
        "bad_ecdsa_signature_length",
        lambda: _with_segment(token("ES256"), 2, b64(b"\x01" * 63)),
        None,
    ),
    "P-521 signature of P-256 size": (
        "bad_ecdsa_signature_length",
        lambda: _with_segment(token("ES512"), 2, token("ES256").split(".")[2]),
        None,
    ),
    # claims
    "expired": ("expired", lambda: token(exp=NOW - 1), None),
    "expires exactly now": ("expired", lambda: token(exp=NOW), None),
    "not yet valid": ("not_yet_valid", lambda: token(nbf=NOW + 1), None),
    "issued in the future": ("issued_in_future", lambda: token(iat=NOW + 1), None),
    **{
        f"no {name}": ("missing_claim", _token_without(name), None)
        for name in ("exp", "iat", "iss", "aud", "sub", "jti")
    },
    "lives longer than the maximum": (
        "lifetime_too_long",
        lambda: token(iat=NOW - 10, exp=NOW - 10 + DEFAULT_MAX_LIFETIME + 1),
        None,
    ),
    "a year-long token issued long ago": (
        "lifetime_too_long",
        lambda: token(iat=NOW - 86400 * 365, nbf=_DROP, exp=NOW + 60),
        None,
    ),
    "wrong issuer": ("wrong_issuer", lambda: token(iss="https://evil.example"), None),
    "issuer differs in case": ("wrong_issuer", lambda: token(iss=ISSUER.upper()), None),
    "wrong audience": ("wrong_audience", lambda: token(aud="someone-else"), None),
    "audience list without ours": ("wrong_audience", lambda: token(aud=["a", "b"]), None),
    "empty audience list": ("wrong_audience", lambda: token(aud=[]), None),
    "exp a string": ("invalid_claim", lambda: token(exp=str(NOW + 300)), None),
    "exp a bool": ("invalid_claim", lambda: token(exp=True), None),
    "exp null": ("invalid_claim", lambda: token(exp=None), None),
    "exp infinite": (
        "invalid_claim",
        lambda: signed(
            b64_json(header_with()),
            b64(json.dumps(claims(exp=0)).encode().replace(b'"exp": 0', b'"exp": 1e400')),
        ),
        None,
    ),
    "iat a list": ("invalid_claim", lambda: token(iat=[NOW]), None),
    "nbf a string": ("invalid_claim", lambda: token(nbf="now"), None),
    "iss a list": ("invalid_claim", lambda: hand_made(header_with(), claims(iss=[ISSUER])), None),
    "aud a number": ("invalid_claim", lambda: token(aud=1), None),
    "aud list with a number": ("invalid_claim", lambda: token(aud=[AUDIENCE, 1]), None),
    "aud an object": ("invalid_claim", lambda: token(aud={AUDIENCE: True}), None),
    "sub empty": ("invalid_claim", lambda: token(sub=""), None),
    "sub a number": ("invalid_claim", lambda: token(sub=42), None),
    "jti a number": ("invalid_claim", lambda: token(jti=7), None),
}


@pytest.mark.parametrize(("reason", "make_token", "make_jwks"), REFUSALS.values(), ids=REFUSALS)
def test_refusal_names_its_reason(
    reason: str, make_token: Callable[[], str], make_jwks: Callable[[], Any] | None
) -> None:
    # Given a token (and JWKS) crafted to break exactly one rule
    jwks = None if make_jwks is None else make_jwks()
    # When it is verified, Then it is refused with that rule's reason
    assert reason_of(make_token(), jwks) == reason


def test_every_reason_in_the_table_has_a_case() -> None:
    reasons = {reason for reason, _, _ in REFUSALS.values()}
    assert reasons >= {
        "too_large", "malformed", "unknown_kid", "missing_kid", "alg_mismatch",
        "alg_not_allowed", "forbidden_header", "unknown_crit", "bad_signature", "expired",
        "not_yet_valid", "issued_in_future", "missing_claim", "wrong_issuer",
        "wrong_audience", "bad_ecdsa_signature_length", "invalid_jwks", "invalid_claim",
        "unusable_key", "wrong_typ", "lifetime_too_long",
    }  # fmt: skip


def test_the_size_limit_is_checked_before_parsing() -> None:
    # A 16 KiB + 1 string of dots would be malformed; its size is what refuses it first.
    assert reason_of("." * (MAX_TOKEN_BYTES + 1)) == "too_large"
    # And a token of exactly 16 KiB is parsed (and here refused for its shape instead)
    assert reason_of("a" * MAX_TOKEN_BYTES) == "malformed"


@pytest.mark.parametrize(
    "bad_arguments",
    [
        {"issuer": ""},
        {"audience": ""},
        {"now": float("nan")},
        {"now": True},
        {"leeway": -1},
        {"max_lifetime": 0},
        {"max_lifetime": True},
        {"max_lifetime": 3600.5},
        {"leeway": 1.5},
    ],
)
def test_caller_mistakes_are_value_errors_not_refusals(bad_arguments: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW, "leeway": 0}
    arguments.update(bad_arguments)
    with pytest.raises(ValueError):
        verify_token(token(), full_jwks(), **arguments)


# --- leeway at the boundaries ----------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 1, 300])
def test_expiry_boundary_with_leeway(leeway: int) -> None:
    # exp is exclusive: valid while now < exp + leeway
    assert verify(token(exp=NOW - leeway + 1), leeway=leeway)
    assert reason_of(token(exp=NOW - leeway), leeway=leeway) == "expired"


@pytest.mark.parametrize("leeway", [0, 1, 300])
@pytest.mark.parametrize(
    ("claim", "reason"), [("nbf", "not_yet_valid"), ("iat", "issued_in_future")]
)
def test_nbf_and_iat_boundary_with_leeway(leeway: int, claim: str, reason: str) -> None:
    # nbf and iat are inclusive: valid up to now + leeway
    assert verify(token(**{claim: NOW + leeway}), leeway=leeway)
    assert reason_of(token(**{claim: NOW + leeway + 1}), leeway=leeway) == reason


def test_fractional_times_are_compared_exactly() -> None:
    assert verify(token(exp=NOW + 0.5), now=NOW + 0.25)
    assert reason_of(token(exp=NOW + 0.5), now=NOW + 0.5) == "expired"


# --- properties ------------------------------------------------------------------------

_TOKENS = {alg: token(alg) for alg in ALL_ALGS}
_JWKS = full_jwks()
# Every byte a string can carry in a token that round-trips through latin-1 text.
_ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=255)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alg=st.sampled_from(ALL_ALGS), data=st.data())
def test_any_single_character_altered_in_any_segment_is_refused(
    alg: str, data: st.DataObject
) -> None:
    original = _TOKENS[alg]
    segment = data.draw(st.sampled_from([0, 1, 2]), label="segment")
    start = sum(len(part) + 1 for part in original.split(".")[:segment])
    end = start + len(original.split(".")[segment])
    position = data.draw(st.integers(start, end - 1), label="position")
    replacement = data.draw(_ANY_CHARACTER.filter(lambda c: c != original[position]))
    altered = original[:position] + replacement + original[position + 1 :]
    with pytest.raises(InvalidToken):
        verify(altered, _JWKS)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_every_other_last_character_of_every_segment_is_refused(alg: str) -> None:
    # The last character is where a lenient base64 decoder hides spare bits: try them all.
    original = _TOKENS[alg]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    ends = [original.index("."), original.rindex("."), len(original)]
    for end in ends:
        for replacement in alphabet.replace(original[end - 1], ""):
            altered = original[: end - 1] + replacement + original[end:]
            with pytest.raises(InvalidToken):
                verify(altered, _JWKS)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


_CLAIM_NAMES = st.sampled_from(["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "x"])
_HEADER_NAMES = st.sampled_from(["alg", "kid", "typ", "crit", "jku", "cty", "x"])


@settings(max_examples=300, deadline=None)
@given(alg=st.sampled_from(ALL_ALGS), signature=st.binary(max_size=600))
def test_arbitrary_signature_bytes_are_refused(alg: str, signature: bytes) -> None:
    head, payload, _ = _TOKENS[alg].split(".")
    with pytest.raises(InvalidToken) as refused:
        verify(f"{head}.{payload}.{b64(signature)}", _JWKS)
    assert refused.value.reason in {"bad_signature", "bad_ecdsa_signature_length"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_random_strings_are_refused_never_crash(value: str) -> None:
    with pytest.raises(InvalidToken):
        verify(value, _JWKS)


@settings(max_examples=300, deadline=None)
@given(
    alg=st.sampled_from(ALL_ALGS),
    header_extra=st.dictionaries(_HEADER_NAMES, _json_values(), max_size=3),
    payload=st.one_of(
        _json_values(),
        st.dictionaries(_CLAIM_NAMES, _json_values(), max_size=8),
        st.builds(
            lambda extra: {**claims(), **extra},
            st.dictionaries(_CLAIM_NAMES, _json_values(), max_size=3),
        ),
    ),
)
def test_validly_signed_random_structures_only_ever_raise_invalid_token(
    alg: str, header_extra: dict[str, Any], payload: Any
) -> None:
    # Signed with the real key, so the fuzz reaches the claim checks, not just the signature.
    value = hand_made({"alg": alg, "kid": kid_for(alg), **header_extra}, payload, alg)
    try:
        result = verify(value, _JWKS)
    except InvalidToken:
        return
    assert isinstance(result, dict)
    assert result["iss"] == ISSUER


@settings(max_examples=200, deadline=None)
@given(
    jwks=_json_values()
    | st.builds(lambda keys: {"keys": keys}, st.lists(_json_values(), max_size=3))
    | st.builds(
        lambda extra: {"keys": [{**public_jwk("RS256"), **extra}]},
        st.dictionaries(
            st.sampled_from(["kty", "alg", "n", "e", "use", "key_ops", "crv", "kid"]),
            _json_values(),
            max_size=3,
        ),
    )
)
def test_random_jwks_only_ever_raise_invalid_token(jwks: Any) -> None:
    try:
        verify(_TOKENS["RS256"], jwks)
    except InvalidToken:
        return
