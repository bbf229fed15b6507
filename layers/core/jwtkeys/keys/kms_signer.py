"""Signing JWS with AWS KMS: a PyJWT `Algorithm` whose private key never leaves KMS.

The algorithms are registered on a private `PyJWS` instance only. Registering them
globally would make PyJWT's own `jwt.decode` in the same process use our sign-only
objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import jwt
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import Algorithm

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
    """Convert a DER ECDSA signature (KMS) into JWS's raw R||S, each left-padded."""
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(coordinate_size, "big") + s.to_bytes(coordinate_size, "big")


class KmsAlgorithm(Algorithm):
    """A PyJWT algorithm whose `sign` is one KMS Sign call with MessageType=DIGEST."""

    def __init__(self, algorithm: SigningAlgorithm, kms: KMSClient) -> None:
        self.algorithm = algorithm
        self._kms = kms

    def prepare_key(self, key: Any) -> KmsKeyRef:
        if not isinstance(key, KmsKeyRef) or key.algorithm != self.algorithm:
            raise TypeError(f"{self.algorithm.jws_name} signs only with a KmsKeyRef of its alg")
        return key

    def sign(self, msg: bytes, key: KmsKeyRef) -> bytes:
        signature = sign_digest(self._kms, key.key_arn, self.algorithm, msg)
        if self.algorithm.family is KeyFamily.EC:
            return der_to_raw_ecdsa(signature, self.algorithm.ec_coordinate_size)
        return signature

    def verify(self, msg: bytes, key: Any, sig: bytes) -> NoReturn:
        raise NotImplementedError("KMS algorithms only sign; verify with the published JWKS")

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> NoReturn:
        raise NotImplementedError("a KMS key has no exportable JWK; see jwtkeys.keys.jwk")

    @staticmethod
    def from_jwk(jwk: Any) -> NoReturn:
        raise NotImplementedError("a KMS key cannot be loaded from a JWK")


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
        self._jws = jwt.PyJWS(algorithms=[])
        for algorithm in ALGORITHMS.values():
            self._jws.register_algorithm(algorithm.jws_name, KmsAlgorithm(algorithm, kms))

    def sign(self, payload: bytes, key: KmsKeyRef) -> str:
        """A compact JWS over `payload` with header alg, kid and typ JWT."""
        return self._jws.encode(
            payload,
            key,  # type: ignore[arg-type]
            algorithm=key.algorithm.jws_name,
            headers={"kid": key.kid},
        )
