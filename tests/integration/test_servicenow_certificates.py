"""Certificates over KMS keys, signed by KMS: RSA (PKCS#1 v1.5 and PSS) and EC keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID

from jwtkeys.clock import SimulatedClock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.servicenow.certificates import (
    PEM_LINE,
    CertificateError,
    CertificateLifetime,
    KmsRsaPrivateKey,
    issue_certificate,
    kms_private_key,
)
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator

from ..stack_fixtures import FAST_POLICY

NOW = 1_800_000_000.0
CASES = {
    "RS256": "RSA_2048",
    "RS512": "RSA_4096",
    "PS256": "RSA_3072",
    "ES256": "ECC_NIST_P256",
    "ES384": "ECC_NIST_P384",
    "ES512": "ECC_NIST_P521",
}


def _kms_key(aws: LocalAws, alg: str) -> ManagedKey:
    kms = aws.client("kms")
    arn = kms.create_key(KeySpec=CASES[alg], KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    jwk = public_jwk(
        public_key_from_der(kms.get_public_key(KeyId=arn)["PublicKey"]), ALGORITHMS[alg]
    )
    return ManagedKey(arn, jwk["kid"], KeyState.NEXT, jwk, "nonce", NOW)


@pytest.mark.parametrize("alg", sorted(CASES))
def test_the_certificate_is_self_signed_by_the_kms_key(
    local_aws: LocalAws, tmp_path: Path, alg: str
) -> None:
    key = _kms_key(local_aws, alg)
    lifetime = CertificateLifetime.for_policy(FAST_POLICY)
    pem = issue_certificate(local_aws.client("kms"), "test", key, NOW, lifetime)
    # PEM wrapped at 64 columns (an unwrapped body is refused by instances).
    lines = pem.strip().splitlines()
    assert lines[0] == "-----BEGIN CERTIFICATE-----"
    assert lines[-1] == "-----END CERTIFICATE-----"
    assert all(len(line) == PEM_LINE for line in lines[1:-2])
    assert 0 < len(lines[-2]) <= PEM_LINE
    certificate = x509.load_pem_x509_certificate(pem.encode())
    # Over the KMS public key, and verified under that same key: self-signed.
    der = local_aws.client("kms").get_public_key(KeyId=key.arn)["PublicKey"]
    assert (
        certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == der
    )
    certificate.verify_directly_issued_by(certificate)
    assert certificate.subject == certificate.issuer
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == key.kid
    unit = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert unit[0].value == "test"
    # Valid from a little before now for the key's planned life plus a margin.
    assert certificate.not_valid_before_utc.timestamp() < NOW
    not_after = certificate.not_valid_after_utc.timestamp()
    assert not_after == NOW + lifetime.validity
    assert lifetime.validity >= lifetime.planned_life + 7 * 86400
    if alg.startswith("PS"):
        assert isinstance(certificate.signature_algorithm_parameters, padding.PSS)
    if alg.startswith("ES"):
        assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    # openssl accepts it as a self-signed certificate.
    path = tmp_path / "certificate.pem"
    path.write_text(pem)
    result = subprocess.run(
        # -attime: the certificate starts at the test's (simulated) now, not real time.
        ["openssl", "verify", "-attime", str(int(NOW)), "-CAfile", str(path), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_an_instance_stores_the_certificate_and_derives_its_expiry(
    local_aws: LocalAws, servicenow: ServiceNowEmulator, servicenow_clock: SimulatedClock, alg: str
) -> None:
    key = _kms_key(local_aws, alg)
    now = servicenow_clock.now()
    pem = issue_certificate(
        local_aws.client("kms"), "test", key, now, CertificateLifetime.for_policy(FAST_POLICY)
    )
    sys_id = servicenow.add_record("sys_certificate", {"name": "c", "pem_certificate": pem})
    row = next(r for r in servicenow.rows("sys_certificate") if r["sys_id"] == sys_id)
    assert row["expires"] > row["valid_from"]
    assert key.kid in row["subject"]


def test_the_kms_key_object_never_yields_private_material(local_aws: LocalAws) -> None:
    for alg in ("RS256", "ES256"):
        private = kms_private_key(local_aws.client("kms"), _kms_key(local_aws, alg))
        with pytest.raises(CertificateError):
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        with pytest.raises(CertificateError):
            private.private_numbers()


def test_lifetime_covers_the_planned_life_and_renews_with_margin_left() -> None:
    default = CertificateLifetime.for_policy(RotationPolicy())
    assert default.planned_life == 2 * RotationPolicy().rotation_period + RotationPolicy().grace
    assert default.margin == RotationPolicy().rotation_period
    # Renewal starts above the 14-day certificate-expiring alarm, many ticks before
    # a certificate could lapse, and never before the key's planned life is over.
    for policy in (RotationPolicy(), FAST_POLICY, RotationPolicy(rotation_period=90 * 86400)):
        lifetime = CertificateLifetime.for_policy(policy)
        assert 14 * 86400 < lifetime.renew_before < lifetime.margin
        assert lifetime.renew_before > 100 * policy.tick_interval


def test_an_rsa_key_refuses_a_padding_its_kms_algorithm_does_not_use(local_aws: LocalAws) -> None:
    pkcs1 = kms_private_key(local_aws.client("kms"), _kms_key(local_aws, "RS256"))
    assert isinstance(pkcs1, KmsRsaPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    with pytest.raises(CertificateError, match="PSS"):
        pkcs1.sign(b"data", pss, hashes.SHA256())
    with pytest.raises(CertificateError, match="sha256"):
        pkcs1.sign(b"data", padding.PKCS1v15(), hashes.SHA384())
