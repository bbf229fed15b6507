"""Signing JWS with AWS KMS: compact serialization around one KMS Sign call.

A signed token is three base64url parts joined by dots (RFC 7515 section 7.1); that
much needs no JOSE library. PyJWT's import (and through it cryptography's X.509 code)
cost the signer a large share of its cold start, and its encode path a large share of
its per-token overhead, for nothing a token uses. Tokens are still checked by
independent JOSE libraries in the tests.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.errors import SigningUnavailable, aws_error_code
from jwtkeys.keys.algorithms import ALGORITHMS, KeyFamily, SigningAlgorithm

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

# KMS answers these when the key itself cannot sign now; the caller may re-resolve.
KEY_UNUSABLE_CODES = frozenset(
    {"DisabledException", "KMSInvalidStateException", "NotFoundException"}
)
THROTTLING_CODES = frozenset({"ThrottlingException", "LimitExceededException"})


class KeyUnusable(SigningUnavailable):
    """The key KMS was asked to sign with is disabled, pending deletion or gone."""

    code = "KeyUnusable"


class KmsThrottled(SigningUnavailable):
    """KMS throttled the request beyond botocore's retries."""

    code = "KmsThrottled"


@dataclass(frozen=True)
class KmsKeyRef:
    """A resolved signing key: the ARN KMS signs with and the kid that names it."""

    key_arn: str
    kid: str
    algorithm: SigningAlgorithm


def der_to_raw_ecdsa(der_signature: bytes, coordinate_size: int) -> bytes:
    """Convert a DER ECDSA signature (KMS) into JWS's raw R||S, each left-padded.

    DER here is SEQUENCE { INTEGER r, INTEGER s } (RFC 3279); anything else, or an
    integer too large for the curve, is refused rather than silently mangled.
    """
    body = _der_element(der_signature, 0, _DER_SEQUENCE, whole=True)
    r, offset = _der_integer(der_signature, body)
    s, offset = _der_integer(der_signature, offset)
    if offset != len(der_signature):
        raise SigningUnavailable("KMS returned an ECDSA signature with trailing bytes")
    limit = 1 << (8 * coordinate_size)
    if not (0 < r < limit and 0 < s < limit):
        raise SigningUnavailable("KMS returned an ECDSA signature that does not fit the curve")
    return r.to_bytes(coordinate_size, "big") + s.to_bytes(coordinate_size, "big")


_DER_SEQUENCE = 0x30
_DER_INTEGER = 0x02


def _der_element(data: bytes, offset: int, tag: int, *, whole: bool = False) -> int:
    """Check the tag and length at `offset`; return where the element's content starts."""
    if offset + 2 > len(data) or data[offset] != tag:
        raise SigningUnavailable("KMS returned a malformed DER ECDSA signature")
    length, start = data[offset + 1], offset + 2
    if length == 0x81:  # long form: P-521 signatures exceed 127 bytes
        if start >= len(data) or data[start] < 0x80:
            raise SigningUnavailable("KMS returned a malformed DER ECDSA signature")
        length, start = data[start], start + 1
    elif length > 0x80:
        raise SigningUnavailable("KMS returned a malformed DER ECDSA signature")
    end = start + length
    if end > len(data) or (whole and end != len(data)):
        raise SigningUnavailable("KMS returned a malformed DER ECDSA signature")
    return start


def _der_integer(data: bytes, offset: int) -> tuple[int, int]:
    start = _der_element(data, offset, _DER_INTEGER)
    length = data[start - 1]  # the last length byte, short or long form
    value = data[start : start + length]
    if not value or value[0] & 0x80:
        raise SigningUnavailable("KMS returned a malformed DER ECDSA signature")
    return int.from_bytes(value, "big"), start + length


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_digest(kms: KMSClient, key_arn: str, algorithm: SigningAlgorithm, message: bytes) -> bytes:
    """One KMS Sign call over `message`'s digest; KMS's signature (DER for ECDSA).

    Tokens and ServiceNow certificates are both signed through here.
    """
    # DIGEST, not RAW: a JWS signing input or a certificate can exceed KMS's 4096-byte
    # RAW limit.
    try:
        response = kms.sign(
            KeyId=key_arn,
            Message=algorithm.digest(message),
            MessageType="DIGEST",
            SigningAlgorithm=algorithm.kms_algorithm,  # type: ignore[arg-type]
        )
    except ClientError as error:
        raise _signing_error(error, key_arn) from error
    except BotoCoreError as error:
        raise SigningUnavailable(f"KMS unreachable while signing: {error}") from error
    if response.get("KeyId") != key_arn:
        # The kid in a header, the key a certificate names: never another key's signature.
        raise SigningUnavailable(
            f"KMS signed with {response.get('KeyId')!r}, not the resolved {key_arn!r}"
        )
    return response["Signature"]


def _signing_error(error: ClientError, key_arn: str) -> SigningUnavailable:
    code = aws_error_code(error)
    if code in KEY_UNUSABLE_CODES:
        return KeyUnusable(f"KMS key {key_arn} cannot sign ({code})")
    if code in THROTTLING_CODES:
        return KmsThrottled(f"KMS throttled signing with {key_arn} ({code})")
    return SigningUnavailable(f"KMS refused to sign with {key_arn} ({code})")


class KmsJwsSigner:
    """Encodes and signs compact JWS with KMS keys: exactly one KMS call per token."""

    def __init__(self, kms: KMSClient) -> None:
        self._kms = kms

    def sign(self, payload: bytes, key: KmsKeyRef) -> str:
        """A compact JWS over `payload` with header alg, kid and typ JWT (keys sorted)."""
        algorithm = key.algorithm
        if ALGORITHMS.get(algorithm.jws_name) != algorithm:
            raise TypeError(f"{algorithm.jws_name} is not a jwtkeys signing algorithm")
        header = json.dumps(
            {"alg": algorithm.jws_name, "kid": key.kid, "typ": "JWT"},
            separators=(",", ":"),
            sort_keys=True,
        )
        signing_input = f"{_b64url(header.encode())}.{_b64url(payload)}"
        signature = sign_digest(self._kms, key.key_arn, algorithm, signing_input.encode("ascii"))
        if algorithm.family is KeyFamily.EC:
            signature = der_to_raw_ecdsa(signature, algorithm.ec_coordinate_size)
        return f"{signing_input}.{_b64url(signature)}"
