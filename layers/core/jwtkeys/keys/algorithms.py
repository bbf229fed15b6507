"""The JWS algorithms jwtkeys signs with, and how each maps onto AWS KMS."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from jwtkeys.errors import ConfigurationError


class KeyFamily(Enum):
    RSA = "RSA"
    EC = "EC"


@dataclass(frozen=True)
class SigningAlgorithm:
    """One JWS `alg` and its KMS counterpart."""

    jws_name: str
    kms_algorithm: str
    family: KeyFamily
    key_specs: tuple[str, ...]
    hash_name: str
    # Size in bytes of R and of S in a raw JWS ECDSA signature; 0 for RSA.
    ec_coordinate_size: int = 0

    @property
    def default_key_spec(self) -> str:
        return self.key_specs[0]

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    def digest(self, message: bytes) -> bytes:
        """The digest KMS signs with MessageType=DIGEST."""
        hasher: Callable[[bytes], hashlib._Hash] = getattr(hashlib, self.hash_name)
        return hasher(message).digest()


_RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")

ALGORITHMS: dict[str, SigningAlgorithm] = {
    algorithm.jws_name: algorithm
    for algorithm in (
        SigningAlgorithm("RS256", "RSASSA_PKCS1_V1_5_SHA_256", KeyFamily.RSA, _RSA_SPECS, "sha256"),
        SigningAlgorithm("RS384", "RSASSA_PKCS1_V1_5_SHA_384", KeyFamily.RSA, _RSA_SPECS, "sha384"),
        SigningAlgorithm("RS512", "RSASSA_PKCS1_V1_5_SHA_512", KeyFamily.RSA, _RSA_SPECS, "sha512"),
        SigningAlgorithm("PS256", "RSASSA_PSS_SHA_256", KeyFamily.RSA, _RSA_SPECS, "sha256"),
        SigningAlgorithm("PS384", "RSASSA_PSS_SHA_384", KeyFamily.RSA, _RSA_SPECS, "sha384"),
        SigningAlgorithm("PS512", "RSASSA_PSS_SHA_512", KeyFamily.RSA, _RSA_SPECS, "sha512"),
        SigningAlgorithm("ES256", "ECDSA_SHA_256", KeyFamily.EC, ("ECC_NIST_P256",), "sha256", 32),
        SigningAlgorithm("ES384", "ECDSA_SHA_384", KeyFamily.EC, ("ECC_NIST_P384",), "sha384", 48),
        SigningAlgorithm("ES512", "ECDSA_SHA_512", KeyFamily.EC, ("ECC_NIST_P521",), "sha512", 66),
    )
}

DEFAULT_ALGORITHM = "RS256"


def algorithm_named(name: str) -> SigningAlgorithm:
    """The algorithm called `name`, or ConfigurationError naming the ones we support."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        supported = ", ".join(ALGORITHMS)
        raise ConfigurationError(
            f"unsupported signing algorithm {name!r}; supported: {supported}"
        ) from None


def check_key_spec(algorithm: SigningAlgorithm, key_spec: str) -> str:
    """Return `key_spec` when KMS can sign `algorithm` with it, else ConfigurationError."""
    if key_spec not in algorithm.key_specs:
        allowed = ", ".join(algorithm.key_specs)
        raise ConfigurationError(
            f"key spec {key_spec!r} cannot sign {algorithm.jws_name}; use one of: {allowed}"
        )
    return key_spec


@dataclass(frozen=True)
class KeyPair:
    """A JWS algorithm and the KMS key spec a keyset's keys are made with, checked together."""

    algorithm: str
    key_spec: str

    def __post_init__(self) -> None:
        check_key_spec(algorithm_named(self.algorithm), self.key_spec)

    @property
    def signing_algorithm(self) -> SigningAlgorithm:
        return algorithm_named(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}/{self.key_spec}"

    def to_mapping(self) -> dict[str, str]:
        return {"algorithm": self.algorithm, "key_spec": self.key_spec}

    @classmethod
    def from_mapping(cls, value: object, setting: str) -> KeyPair:
        """`{"algorithm", "key_spec"}` as a pair; anything else is refused naming `setting`."""
        if (
            not isinstance(value, dict)
            or set(value) != {"algorithm", "key_spec"}
            or not all(isinstance(item, str) for item in value.values())
        ):
            raise ConfigurationError(
                f'{setting} must be an object {{"algorithm": str, "key_spec": str}}, got {value!r}'
            )
        try:
            return cls(value["algorithm"], value["key_spec"])
        except ConfigurationError as error:
            raise ConfigurationError(f"{setting}: {error}") from None
