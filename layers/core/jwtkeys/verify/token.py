"""Strict JWT verification against a JWKS: every refusal is an InvalidToken with a named reason.

The order of the checks is deliberate: size and shape first (cheap, before any parsing),
then the header and the key it names, then the signature, and only then the claims, so a
forged payload is never interpreted.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn

from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    SECP384R1,
    SECP521R1,
    EllipticCurve,
    EllipticCurvePublicKey,
    EllipticCurvePublicNumbers,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers
from jwt.algorithms import Algorithm, get_default_algorithms

from jwtkeys.errors import InvalidToken
from jwtkeys.keys.algorithms import ALGORITHMS, KeyFamily

MAX_TOKEN_BYTES: Final = 16 * 1024
MIN_RSA_KEY_BITS: Final = 2048
REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub", "jti")
# The keyset's default max_token_ttl: no token jwtkeys signs lives longer (exp - iat), so a
# longer-lived one was minted elsewhere (a stolen key, a confused issuer) and is refused.
DEFAULT_MAX_LIFETIME: Final = 3600
# RFC 7519 5.1 and RFC 7515 4.1.9: `typ` is compared case-insensitively and the
# "application/" prefix may be left out.
ACCEPTED_TYP: Final = frozenset({"jwt", "application/jwt"})

# Headers that point at key material somewhere else; following any of them lets the token
# choose its own key. `b64` changes what the signing input is (RFC 7797).
FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "x5c", "jwk", "b64"})
# Members that only a private JWK carries: a JWKS that holds them is a leak, not a verifier.
PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_CURVE_BY_COORDINATE_SIZE: Final[dict[int, tuple[str, type[EllipticCurve]]]] = {
    32: ("P-256", SECP256R1),
    48: ("P-384", SECP384R1),
    66: ("P-521", SECP521R1),
}

# A local copy of PyJWT's algorithm objects, restricted to ours: nothing is registered
# globally, and `none`/HS*/EdDSA are simply not reachable from here.
_VERIFIERS: Final[dict[str, Algorithm]] = {
    name: algorithm for name, algorithm in get_default_algorithms().items() if name in ALGORITHMS
}

# Three base64url segments and nothing else: no padding, no whitespace, no fourth segment.
# Checked on the whole token in C before any decoding. The signature may be empty so that
# an unsigned (`alg: none`) token is refused for what it is, by the header check.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BASE64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of an unpadded segment carries spare bits that a lenient decoder
# ignores; unless they are zero, two different tokens would decode to the same signature.
_CANONICAL_LAST_CHAR: Final[dict[int, frozenset[str]]] = {
    2: frozenset(_BASE64URL_ALPHABET[::16]),
    3: frozenset(_BASE64URL_ALPHABET[::4]),
}
_TO_STANDARD_BASE64: Final = str.maketrans("-_", "+/")

_KEY_CACHE_LIMIT: Final = 256
# Parsing a JWK into a key object costs more than verifying a signature with it; keyed by
# the members that define the key, so a kid reused for new material never hits a stale entry.
_key_cache: dict[tuple[str, ...], RSAPublicKey | EllipticCurvePublicKey] = {}
_key_cache_lock = threading.Lock()


def verify_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: int = 0,
    max_lifetime: int = DEFAULT_MAX_LIFETIME,
) -> dict[str, Any]:
    """Return the claims of `token` when it is valid at `now`, else raise InvalidToken.

    `max_lifetime` bounds `exp - iat` (plus `leeway`, which covers an issuer that backdates
    `iat` for its verifiers' clock skew); pass the keyset's max_token_ttl.
    """
    _check_arguments(issuer, audience, now, leeway)
    if isinstance(max_lifetime, bool) or not isinstance(max_lifetime, int) or max_lifetime < 1:
        raise ValueError("max_lifetime must be a positive integer number of seconds")
    if not isinstance(token, str):
        _refuse("malformed", "the token is not a string")
    if len(token) > MAX_TOKEN_BYTES:
        _refuse("too_large", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    # str.isascii() also makes the character count above a byte count.
    if not token.isascii() or _COMPACT_JWS.fullmatch(token) is None:
        _refuse("malformed", "not a compact JWS of three base64url segments")
    header_segment, payload_segment, signature_segment = token.split(".")

    header = _decode_json_object(header_segment, "header")
    alg, kid = _check_header(header)
    jwk = _find_jwk(jwks, kid)
    key = _public_key_for(jwk, alg)

    if not signature_segment:
        _refuse("bad_signature", "the token is unsigned")
    signature = _decode_segment(signature_segment, "signature")
    coordinate_size = ALGORITHMS[alg].ec_coordinate_size
    if coordinate_size and len(signature) != 2 * coordinate_size:
        # A DER signature (what KMS returns) or a truncated one: refuse before verifying.
        _refuse(
            "bad_ecdsa_signature_length",
            f"{alg} needs a raw R||S signature of {2 * coordinate_size} bytes, "
            f"got {len(signature)}",
        )
    signing_input = token[: len(header_segment) + 1 + len(payload_segment)].encode("ascii")
    if not _VERIFIERS[alg].verify(signing_input, key, signature):
        _refuse("bad_signature", f"the signature does not verify with key {_shorten(kid)}")

    claims = _decode_json_object(payload_segment, "payload")
    _check_claims(claims, issuer=issuer, audience=audience, now=now, leeway=leeway)
    _check_lifetime(claims, max_lifetime + leeway)
    return claims


def loads_strict_json(text: str) -> Any:
    """Parse JSON refusing duplicate member names and NaN/Infinity (ValueError)."""
    return json.loads(
        text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
    )


def _check_arguments(issuer: str, audience: str, now: float, leeway: int) -> None:
    # These are the caller's settings, not the token: a mistake here is a bug, not a refusal.
    if not isinstance(issuer, str) or not issuer:
        raise ValueError("issuer must be a non-empty string")
    if not isinstance(audience, str) or not audience:
        raise ValueError("audience must be a non-empty string")
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError("now must be a finite number of seconds")
    if isinstance(leeway, bool) or not isinstance(leeway, int) or leeway < 0:
        raise ValueError("leeway must be a non-negative integer")


def _refuse(reason: str, message: str) -> NoReturn:
    raise InvalidToken(reason, message)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        # RFC 7515 4: a duplicate header member must be rejected; the same goes for claims,
        # where two parsers could otherwise disagree on which value counts.
        raise ValueError("duplicate member name")
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _decode_segment(segment: str, what: str) -> bytes:
    last_char_sets = _CANONICAL_LAST_CHAR.get(len(segment) % 4)
    if len(segment) % 4 == 1 or (last_char_sets is not None and segment[-1] not in last_char_sets):
        _refuse("malformed", f"the {what} is not canonical base64url")
    padded = segment.translate(_TO_STANDARD_BASE64) + "=" * (-len(segment) % 4)
    try:
        return binascii.a2b_base64(padded, strict_mode=True)
    except ValueError:
        # binascii.Error, or a non-ASCII character in a JWK member (tokens are checked earlier).
        _refuse("malformed", f"the {what} is not base64url")


def _decode_json_object(segment: str, what: str) -> dict[str, Any]:
    raw = _decode_segment(segment, what)
    try:
        value = loads_strict_json(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; absurd nesting recurses.
        _refuse("malformed", f"the {what} is not UTF-8 JSON")
    if not isinstance(value, dict):
        _refuse("malformed", f"the {what} is not a JSON object")
    return value


def _check_header(header: Mapping[str, Any]) -> tuple[str, str]:
    forbidden = FORBIDDEN_HEADERS.intersection(header)
    if forbidden:
        _refuse("forbidden_header", f"header {sorted(forbidden)[0]!r} is never honoured")
    if "crit" in header:
        _refuse("unknown_crit", "no critical header extension is understood")
    alg = header.get("alg")
    if alg is None:
        _refuse("malformed", "the header has no alg")
    if not isinstance(alg, str):
        _refuse("malformed", "the header's alg is not a string")
    if alg not in ALGORITHMS:
        _refuse("alg_not_allowed", f"algorithm {_shorten(alg)} is not allowed")
    kid = header.get("kid")
    if kid is None:
        _refuse("missing_kid", "the header has no kid")
    if not isinstance(kid, str):
        _refuse("malformed", "the header's kid is not a string")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        _refuse("malformed", "the header's typ is not a string")
    if typ is not None and typ.lower() not in ACCEPTED_TYP:
        # A token typed for another purpose (at+jwt, a logout token...) is not ours to accept.
        _refuse("wrong_typ", f"the header's typ is {_shorten(typ)}, not JWT")
    return alg, kid


def _find_jwk(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, Sequence) or isinstance(keys, str | bytes):
        _refuse("invalid_jwks", "the JWKS has no list of keys")
    found: Mapping[str, Any] | None = None
    for jwk in keys:
        if not isinstance(jwk, Mapping):
            _refuse("invalid_jwks", "a JWKS entry is not an object")
        if jwk.get("kid") == kid:
            if found is not None:
                # Two keys under one kid: picking either would be a guess.
                _refuse("invalid_jwks", f"the JWKS holds more than one key with kid {kid!r}")
            found = jwk
    if found is None:
        _refuse("unknown_kid", f"no key with kid {_shorten(kid)} in the JWKS")
    return found


def _public_key_for(jwk: Mapping[str, Any], alg: str) -> RSAPublicKey | EllipticCurvePublicKey:
    jwk_alg = jwk.get("alg")
    if jwk_alg is None:
        # Without `alg` the token would pick the algorithm: that is exactly what we refuse.
        _refuse("unusable_key", "the JWK has no alg")
    if jwk_alg != alg:
        _refuse("alg_mismatch", f"the token says {alg} but its key is for {_shorten(jwk_alg)}")
    if PRIVATE_JWK_MEMBERS.intersection(jwk):
        _refuse("unusable_key", "the JWK holds private key material")
    if jwk.get("use", "sig") != "sig":
        _refuse("unusable_key", "the JWK is not for signatures")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        _refuse("unusable_key", "the JWK's key_ops do not allow verify")

    family = ALGORITHMS[alg].family
    if family is KeyFamily.RSA:
        members = ("RSA", alg, *_string_members(jwk, "kty", "n", "e"))
    else:
        members = ("EC", alg, *_string_members(jwk, "kty", "crv", "x", "y"))
    if members[2] != members[0]:
        _refuse("unusable_key", f"{alg} needs a key of type {members[0]}")
    cached = _key_cache.get(members)
    if cached is not None:
        return cached
    key = (
        _load_rsa_key(*members[3:]) if family is KeyFamily.RSA else _load_ec_key(alg, *members[3:])
    )
    # Only a miss takes the lock: lookups stay lock-free, and two threads evicting at once
    # cannot trip over each other.
    with _key_cache_lock:
        if len(_key_cache) >= _KEY_CACHE_LIMIT:
            # Oldest first: a JWKS only ever holds a handful of live keys.
            del _key_cache[next(iter(_key_cache))]
        _key_cache[members] = key
    return key


def _string_members(jwk: Mapping[str, Any], *names: str) -> tuple[str, ...]:
    values: list[str] = []
    for name in names:
        value = jwk.get(name)
        if not isinstance(value, str):
            _refuse("unusable_key", f"the JWK's {name} is missing or not a string")
        values.append(value)
    return tuple(values)


def _decode_key_integer(value: str, name: str) -> bytes:
    try:
        return _decode_segment(value, name)
    except InvalidToken:
        _refuse("unusable_key", f"the JWK's {name} is not base64url")


def _load_rsa_key(n: str, e: str) -> RSAPublicKey:
    modulus = int.from_bytes(_decode_key_integer(n, "n"), "big")
    exponent = int.from_bytes(_decode_key_integer(e, "e"), "big")
    try:
        key = RSAPublicNumbers(exponent, modulus).public_key()
    except ValueError:
        _refuse("unusable_key", "the JWK is not a valid RSA public key")
    if key.key_size < MIN_RSA_KEY_BITS:
        _refuse("unusable_key", f"the RSA key has {key.key_size} bits, fewer than 2048")
    return key


def _load_ec_key(alg: str, crv: str, x: str, y: str) -> EllipticCurvePublicKey:
    coordinate_size = ALGORITHMS[alg].ec_coordinate_size
    curve_name, curve = _CURVE_BY_COORDINATE_SIZE[coordinate_size]
    if crv != curve_name:
        _refuse("unusable_key", f"{alg} needs curve {curve_name}, the JWK is on {_shorten(crv)}")
    x_bytes = _decode_key_integer(x, "x")
    y_bytes = _decode_key_integer(y, "y")
    if len(x_bytes) != coordinate_size or len(y_bytes) != coordinate_size:
        _refuse("unusable_key", f"{curve_name} coordinates must be {coordinate_size} bytes")
    numbers = EllipticCurvePublicNumbers(
        int.from_bytes(x_bytes, "big"), int.from_bytes(y_bytes, "big"), curve()
    )
    try:
        return numbers.public_key()
    except ValueError:
        _refuse("unusable_key", f"the JWK is not a point on {curve_name}")


def _check_claims(
    claims: Mapping[str, Any], *, issuer: str, audience: str, now: float, leeway: int
) -> None:
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            _refuse("missing_claim", f"the token has no {name!r} claim")
    expires_at = _numeric_date(claims, "exp")
    issued_at = _numeric_date(claims, "iat")
    not_before = _numeric_date(claims, "nbf") if "nbf" in claims else None
    for name in ("iss", "sub", "jti"):
        value = claims[name]
        if not isinstance(value, str) or not value:
            _refuse("invalid_claim", f"the {name!r} claim is not a non-empty string")

    if claims["iss"] != issuer:
        _refuse("wrong_issuer", f"issued by {_shorten(claims['iss'])}, not {issuer!r}")
    _check_audience(claims["aud"], audience)

    # exp is exclusive (RFC 7519 4.1.4); nbf and iat are inclusive.
    if expires_at <= now - leeway:
        _refuse("expired", f"the token expired at {_shorten(expires_at)}")
    if not_before is not None and not_before > now + leeway:
        _refuse("not_yet_valid", f"the token is not valid before {_shorten(not_before)}")
    if issued_at > now + leeway:
        _refuse("issued_in_future", f"the token claims to be issued at {_shorten(issued_at)}")


def _check_lifetime(claims: Mapping[str, Any], longest: int) -> None:
    # Types were checked by _check_claims.
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > longest:
        _refuse(
            "lifetime_too_long",
            f"the token lives {_shorten(lifetime)} s from iat to exp, more than {longest} s",
        )


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int in Python but not a NumericDate; 1e400 parses as inf.
    if isinstance(value, bool) or not isinstance(value, int | float):
        _refuse("invalid_claim", f"the {name!r} claim is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        _refuse("invalid_claim", f"the {name!r} claim is not finite")
    return value


def _check_audience(value: Any, audience: str) -> None:
    if isinstance(value, str):
        audiences: list[Any] = [value]
    elif isinstance(value, list):
        audiences = value
    else:
        _refuse("invalid_claim", "the 'aud' claim is neither a string nor a list")
    if not all(isinstance(item, str) for item in audiences):
        _refuse("invalid_claim", "the 'aud' claim holds a value that is not a string")
    if audience not in audiences:
        _refuse("wrong_audience", f"the token is not for audience {audience!r}")


def _shorten(value: object) -> str:
    # Messages end up in logs and on one stderr line: never echo an unbounded value.
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."
