"""X.509 certificates as `sys_certificate` holds them: PEM checks an instance makes on insert.

What is known from the field: a whole certificate is required (a bare `PUBLIC KEY` is
not accepted) and a PEM whose base64 body sits on one unwrapped line was rejected. We
accept lines up to 76 characters (MIME wrapping), which is what Java's PEM readers take;
jwtkeys itself wraps at 64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
_MAX_LINE = 76


class CertificateRejected(ValueError):
    """The text is not a PEM-encoded X.509 certificate an instance would store."""


@dataclass(frozen=True)
class ParsedCertificate:
    """A certificate and the fields an instance derives from it."""

    certificate: x509.Certificate
    not_before: float
    not_after: float
    subject: str
    issuer: str

    def public_key(self) -> CertificatePublicKeyTypes:
        """The key that verifies signatures made by the certificate's owner."""
        return self.certificate.public_key()

    def valid_at(self, now: float) -> bool:
        """Whether `now` (seconds since the epoch) is within notBefore..notAfter."""
        return self.not_before <= now <= self.not_after


def parse_pem_certificate(text: str) -> ParsedCertificate:
    """Parse `pem_certificate` as an instance would, or raise `CertificateRejected`."""
    pem = text.strip().replace("\r\n", "\n")
    if "PUBLIC KEY-----" in pem:
        raise CertificateRejected(
            "a bare public key is not a certificate: publish an X.509 certificate"
        )
    if not pem.startswith(_BEGIN) or not pem.endswith(_END) or pem.count(_BEGIN) != 1:
        raise CertificateRejected(
            "pem_certificate must hold exactly one '-----BEGIN CERTIFICATE-----' block"
        )
    body = [line.strip() for line in pem[len(_BEGIN) : -len(_END)].strip().split("\n")]
    longest = max((len(line) for line in body), default=0)
    if longest > _MAX_LINE:
        raise CertificateRejected(
            f"the PEM body is not wrapped (a line of {longest} characters): "
            "wrap the base64 at 64 columns"
        )
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as error:
        raise CertificateRejected(f"not a valid X.509 certificate: {error}") from error
    return ParsedCertificate(
        certificate=certificate,
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
    )


def glide_datetime(seconds: float) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC: how an instance writes a date-time field."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
