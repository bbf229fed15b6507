"""X.509 certificates over KMS public keys, signed by KMS itself.

ServiceNow verifies a JWT against a `sys_certificate` (a whole X.509 certificate; a bare
public key is not accepted), so each published key needs one. The certificate is
self-signed: its subject and issuer are the same, and its signature is made by the very
KMS key it certifies. That signature is produced through cryptography's own seam: a
private-key class whose `sign` is one KMS Sign call with `MessageType=DIGEST`, so
cryptography does the X.509 encoding and no private key exists anywhere but in KMS.
"""

from __future__ import annotations

import base64
import datetime
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Self

from cryptography import utils, x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo, Prehashed
from cryptography.x509.oid import NameOID

from jwtkeys.errors import JwtKeysError
from jwtkeys.keeper import schedule
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.algorithms import KeyFamily, SigningAlgorithm, algorithm_named
from jwtkeys.keys.jwk import PublicKey
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.keys.kms_signer import sign_digest

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

MINUTE = 60
DAY = 86400
_PSS = padding.PSS  # the parameter of RSA `sign` is called `padding` too
PEM_LINE = 64
# ServiceNow judges validity on its own clock: start the certificate a little in the past.
NOT_BEFORE_MARGIN = 3600
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"

_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CertificateError(JwtKeysError):
    """A certificate could not be made or read (KMS refused, key and algorithm disagree)."""

    code = "CertificateError"


# The certificate-expiring alarm (docs/runbook.md) fires below 14 days: renewal starts
# well above that, so a healthy keeper never trips it.
MIN_MARGIN = 30 * DAY
MIN_RENEW_BEFORE = 21 * DAY


@dataclass(frozen=True)
class CertificateLifetime:
    """How long a key's certificate is valid, and when it is renewed.

    A certificate covers its key's planned published life (`keeper.schedule`). The margin
    keeps ServiceNow trusting the key when a rotation stalls; renewal starts when
    `renew_before` is left (at least 21 days, above the 14-day alarm), many ticks before
    the certificate could lapse.
    """

    planned_life: int
    margin: int

    @classmethod
    def for_policy(cls, policy: RotationPolicy) -> CertificateLifetime:
        """The lifetime that covers a key's planned life under `policy`, plus margin."""
        return cls(
            planned_life=schedule.planned_published_life(policy),
            margin=max(policy.rotation_period, MIN_MARGIN),
        )

    @property
    def validity(self) -> int:
        """Seconds from issue to the certificate's notAfter."""
        return self.planned_life + self.margin

    @property
    def renew_before(self) -> int:
        """Renew a certificate when fewer seconds than this are left."""
        return max(self.margin // 2, MIN_RENEW_BEFORE)


class _KmsSigning:
    """The KMS half of both key classes: one Sign call over a digest."""

    def __init__(
        self, kms: KMSClient, key_arn: str, algorithm: SigningAlgorithm, public: PublicKey
    ) -> None:
        self._kms = kms
        self._key_arn = key_arn
        self._algorithm = algorithm
        self._public = public

    def _kms_sign(self, data: bytes, hash_algorithm: Any) -> bytes:
        name = getattr(hash_algorithm, "name", "")
        if isinstance(hash_algorithm, Prehashed | NoDigestInfo):
            raise CertificateError("KMS-backed keys sign messages with the keyset's hash")
        if name != self._algorithm.hash_name:
            # The key policy allows exactly the keyset's algorithm: a different hash
            # would be refused by KMS, so refuse it here with a clearer message.
            raise CertificateError(
                f"{self._algorithm.jws_name} keys sign with {self._algorithm.hash_name},"
                f" not {name or hash_algorithm!r}"
            )
        # KMS returns ECDSA signatures DER-encoded, which is what X.509 wants.
        return sign_digest(self._kms, self._key_arn, self._algorithm, data)

    @staticmethod
    def _no_private_material() -> NoReturn:
        raise CertificateError("a KMS key's private half never leaves KMS")

    # Shared by both key classes (they come first in the MRO, so they satisfy the ABCs).

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._no_private_material()

    def __copy__(self) -> Self:
        # Immutable and holding no secret: a copy may be the object itself.
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self


class KmsRsaPrivateKey(_KmsSigning, rsa.RSAPrivateKey):
    """An RSA private key whose only capability is signing through KMS."""

    def sign(
        self,
        data: bytes,
        padding: padding.AsymmetricPadding,
        algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo,
    ) -> bytes:
        """One KMS Sign call, with the keyset's own padding (PKCS#1 v1.5, or PSS for PS*)."""
        if isinstance(padding, _PSS) != self._algorithm.kms_algorithm.startswith("RSASSA_PSS"):
            raise CertificateError(
                f"{self._algorithm.jws_name} keys cannot sign with {type(padding).__name__}"
            )
        return self._kms_sign(data, algorithm)

    def public_key(self) -> rsa.RSAPublicKey:
        assert isinstance(self._public, rsa.RSAPublicKey)
        return self._public

    @property
    def key_size(self) -> int:
        return self.public_key().key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        self._no_private_material()

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        self._no_private_material()


class KmsEcPrivateKey(_KmsSigning, ec.EllipticCurvePrivateKey):
    """An EC private key whose only capability is signing through KMS."""

    def sign(
        self, data: utils.Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
    ) -> bytes:
        """One KMS Sign call; KMS answers DER, the encoding X.509 wants."""
        return self._kms_sign(bytes(data), getattr(signature_algorithm, "algorithm", None))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        assert isinstance(self._public, ec.EllipticCurvePublicKey)
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return self.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._no_private_material()

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._no_private_material()


def key_algorithm(key: ManagedKey) -> SigningAlgorithm:
    """The JWS algorithm a managed key signs with (its JWK's `alg`)."""
    return algorithm_named(str(key.jwk.get("alg", "")))


def public_key_of(key: ManagedKey) -> PublicKey:
    """The public key of a managed key, from its published JWK (no KMS call)."""
    # Imported here: PyJWT's algorithms module is only needed for this conversion.
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    algorithm = key_algorithm(key)
    loader = RSAAlgorithm if algorithm.family is KeyFamily.RSA else ECAlgorithm
    public = loader.from_jwk(dict(key.jwk))
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CertificateError(f"the JWK of {key.kid} is not a public key")
    return public


def subject_of(keyset: str, kid: str) -> x509.Name:
    """The certificate's subject (and issuer): the keyset and the kid, each in its own RDN.

    A common name holds at most 64 characters, so the kid (43) is the CN and the keyset
    (up to 48) the organizational unit.
    """
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jwtkeys"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, keyset),
            x509.NameAttribute(NameOID.COMMON_NAME, kid),
        ]
    )


def kms_private_key(kms: KMSClient, key: ManagedKey) -> KmsRsaPrivateKey | KmsEcPrivateKey:
    """The KMS-backed private-key object for a managed key."""
    algorithm = key_algorithm(key)
    public = public_key_of(key)
    if algorithm.family is KeyFamily.RSA:
        return KmsRsaPrivateKey(kms, key.arn, algorithm, public)
    return KmsEcPrivateKey(kms, key.arn, algorithm, public)


def issue_certificate(
    kms: KMSClient, keyset: str, key: ManagedKey, now: float, lifetime: CertificateLifetime
) -> str:
    """A PEM certificate for `key`, valid from a little before `now` for the whole lifetime."""
    algorithm = key_algorithm(key)
    private = kms_private_key(kms, key)
    name = subject_of(keyset, key.kid)
    start = datetime.datetime.fromtimestamp(int(now) - NOT_BEFORE_MARGIN, datetime.UTC)
    end = datetime.datetime.fromtimestamp(int(now) + lifetime.validity, datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
        )
    )
    digest = _HASHES[algorithm.hash_name]()
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None
    if algorithm.kms_algorithm.startswith("RSASSA_PSS"):
        # The key policy allows only the keyset's algorithm: PSS keys certify with PSS,
        # with the salt length KMS uses (the digest's length).
        rsa_padding = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    certificate = builder.sign(private, digest, rsa_padding=rsa_padding)
    return wrap_pem(certificate.public_bytes(serialization.Encoding.DER))


def wrap_pem(der: bytes) -> str:
    """PEM with the base64 body wrapped at 64 columns (an unwrapped body is refused)."""
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), PEM_LINE))
    return f"{_BEGIN}\n{body}\n{_END}\n"


@dataclass(frozen=True)
class CertificateFacts:
    """What sync needs to know about a stored certificate."""

    public_key_der: bytes
    not_before: float
    not_after: float


def read_certificate(pem: str) -> CertificateFacts | None:
    """The facts of a PEM certificate, or None when it is not one (edited by hand)."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    return CertificateFacts(
        public_key_der=spki(certificate.public_key()),
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
    )


def spki(public: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key: what two keys are compared by."""
    der: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der
