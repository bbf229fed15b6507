"""The local AWS endpoint behaves like AWS where jwtkeys depends on it.

Every test talks to the endpoint over real HTTP through boto3, and its docstring states
the AWS behaviour it pins. Some pin fixes of moto 5.2
(`jwtkeys_tools.local.aws_server.kms_fixes`, the S3-only port), others pin what moto
already does like AWS: a moto upgrade that changes any of it fails here, loudly.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from mypy_boto3_kms import KMSClient
from mypy_boto3_kms.literals import KeySpecType, MessageTypeType, SigningAlgorithmSpecType
from mypy_boto3_s3 import S3Client

from jwtkeys_tools.local.aws_endpoint import LocalAws

# (KMS signing algorithm, a key spec that supports it)
ALGORITHMS: list[tuple[SigningAlgorithmSpecType, KeySpecType]] = [
    ("RSASSA_PKCS1_V1_5_SHA_256", "RSA_2048"),
    ("RSASSA_PKCS1_V1_5_SHA_384", "RSA_2048"),
    ("RSASSA_PKCS1_V1_5_SHA_512", "RSA_2048"),
    ("RSASSA_PSS_SHA_256", "RSA_2048"),
    ("RSASSA_PSS_SHA_384", "RSA_2048"),
    ("RSASSA_PSS_SHA_512", "RSA_2048"),
    ("ECDSA_SHA_256", "ECC_NIST_P256"),
    ("ECDSA_SHA_384", "ECC_NIST_P384"),
    ("ECDSA_SHA_512", "ECC_NIST_P521"),
]
ALGORITHM_IDS = [algorithm for algorithm, _ in ALGORITHMS]
FAMILIES: list[tuple[SigningAlgorithmSpecType, KeySpecType]] = [
    ("RSASSA_PKCS1_V1_5_SHA_256", "RSA_2048"),
    ("RSASSA_PSS_SHA_256", "RSA_2048"),
    ("ECDSA_SHA_384", "ECC_NIST_P384"),
]
FAMILY_IDS = [algorithm for algorithm, _ in FAMILIES]
BUCKET = "jwtkeys-fidelity"
JWKS_KEY = ".well-known/jwks.json"
OIDC_KEY = ".well-known/openid-configuration"


@pytest.fixture
def kms(local_aws: LocalAws) -> KMSClient:
    client: KMSClient = local_aws.client("kms")
    return client


@pytest.fixture
def s3(local_aws: LocalAws) -> S3Client:
    client: S3Client = local_aws.client("s3")
    return client


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    bits = algorithm.rsplit("_", 1)[-1]
    return {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[bits]


def _digest(algorithm: str, message: bytes) -> bytes:
    return hashlib.new(_hash(algorithm).name, message).digest()


def _signing_key(kms: KMSClient, key_spec: KeySpecType) -> str:
    """A new SIGN_VERIFY key of `key_spec`; its ARN."""
    metadata = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec=key_spec)
    return metadata["KeyMetadata"]["Arn"]


def _public_key(kms: KMSClient, key_arn: str) -> Any:
    der = kms.get_public_key(KeyId=key_arn)["PublicKey"]
    return serialization.load_der_public_key(der)


def _verify_locally(
    public_key: Any,
    algorithm: str,
    signature: bytes,
    data: bytes,
    *,
    prehashed: bool,
    pss_salt: int | None = None,
) -> None:
    """Verify with `cryptography` as an independent verifier would; raise InvalidSignature."""
    digest = _hash(algorithm)
    hash_arg: Any = Prehashed(digest) if prehashed else digest
    if algorithm.startswith("ECDSA"):
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hash_arg))
        return
    assert isinstance(public_key, rsa.RSAPublicKey)
    if "PSS" in algorithm:
        salt = digest.digest_size if pss_salt is None else pss_salt
        pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(digest), salt_length=salt)
    else:
        pad = padding.PKCS1v15()
    public_key.verify(signature, data, pad, hash_arg)


def _sign(
    kms: KMSClient,
    key_arn: str,
    algorithm: SigningAlgorithmSpecType,
    message: bytes,
    message_type: MessageTypeType,
) -> bytes:
    response = kms.sign(
        KeyId=key_arn, Message=message, MessageType=message_type, SigningAlgorithm=algorithm
    )
    assert response["KeyId"] == key_arn
    return response["Signature"]


def _error_code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


# ------------------------------------------------------------------ Sign / Verify


@pytest.mark.parametrize(("algorithm", "key_spec"), ALGORITHMS, ids=ALGORITHM_IDS)
def test_digest_message_is_signed_as_prehashed(
    kms: KMSClient, algorithm: SigningAlgorithmSpecType, key_spec: KeySpecType
) -> None:
    """AWS: with MessageType=DIGEST, KMS skips its hashing step and signs the digest as given.

    So the signature verifies against the public key as a signature over the *message*
    whose digest it is (cryptography's `Prehashed`), and KMS Verify agrees, for every
    RSA PKCS#1 v1.5, RSA-PSS and ECDSA algorithm. (moto 5.2 hashes the digest again.)
    """
    key_arn = _signing_key(kms, key_spec)
    digest = _digest(algorithm, b"header.payload")

    signature = _sign(kms, key_arn, algorithm, digest, "DIGEST")

    _verify_locally(_public_key(kms, key_arn), algorithm, signature, digest, prehashed=True)
    verdict = kms.verify(
        KeyId=key_arn,
        Message=digest,
        MessageType="DIGEST",
        Signature=signature,
        SigningAlgorithm=algorithm,
    )
    assert verdict["SignatureValid"] is True
    assert verdict["KeyId"] == key_arn


@pytest.mark.parametrize(("algorithm", "key_spec"), FAMILIES, ids=FAMILY_IDS)
def test_raw_message_is_hashed_then_signed(
    kms: KMSClient, algorithm: SigningAlgorithmSpecType, key_spec: KeySpecType
) -> None:
    """AWS: with MessageType=RAW (the default), KMS hashes the message, then signs.

    A message and its digest are the same message to KMS: a RAW signature verifies
    with MessageType=DIGEST over the message's digest, and locally over the message.
    """
    key_arn = _signing_key(kms, key_spec)
    message = b"header.payload"

    signature = _sign(kms, key_arn, algorithm, message, "RAW")

    _verify_locally(_public_key(kms, key_arn), algorithm, signature, message, prehashed=False)
    verdict = kms.verify(
        KeyId=key_arn,
        Message=_digest(algorithm, message),
        MessageType="DIGEST",
        Signature=signature,
        SigningAlgorithm=algorithm,
    )
    assert verdict["SignatureValid"] is True


@pytest.mark.parametrize("algorithm", ["RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_512"])
def test_pss_salt_length_equals_digest_length(
    kms: KMSClient, algorithm: SigningAlgorithmSpecType
) -> None:
    """AWS: RSASSA_PSS_SHA_* uses MGF1 with the same hash and a salt as long as the digest.

    (moto 5.2 uses the maximum salt length, which JOSE PS256/384/512 verifiers refuse.)
    """
    key_arn = _signing_key(kms, "RSA_2048")
    public_key = _public_key(kms, key_arn)
    digest = _digest(algorithm, b"header.payload")

    signature = _sign(kms, key_arn, algorithm, digest, "DIGEST")

    _verify_locally(public_key, algorithm, signature, digest, prehashed=True)
    # An explicit length (PSS.MAX_LENGTH would mean "auto-detect" when verifying).
    max_salt = public_key.key_size // 8 - len(digest) - 2
    with pytest.raises(InvalidSignature):
        _verify_locally(public_key, algorithm, signature, digest, prehashed=True, pss_salt=max_salt)


@pytest.mark.parametrize(("algorithm", "key_spec"), ALGORITHMS[-3:], ids=ALGORITHM_IDS[-3:])
def test_ecdsa_signature_is_der(
    kms: KMSClient, algorithm: SigningAlgorithmSpecType, key_spec: KeySpecType
) -> None:
    """AWS: ECDSA signatures come back DER-encoded (an ASN.1 SEQUENCE of r and s), not raw R||S."""
    key_arn = _signing_key(kms, key_spec)

    signature = _sign(kms, key_arn, algorithm, _digest(algorithm, b"m"), "DIGEST")

    assert signature[0] == 0x30  # SEQUENCE
    r, s = decode_dss_signature(signature)
    assert r > 0
    assert s > 0


def test_verify_of_a_wrong_signature_raises(kms: KMSClient) -> None:
    """AWS: Verify never answers SignatureValid=false; it raises KMSInvalidSignatureException."""
    algorithm: SigningAlgorithmSpecType = "RSASSA_PKCS1_V1_5_SHA_256"
    key_arn = _signing_key(kms, "RSA_2048")
    digest = _digest(algorithm, b"signed")
    signature = _sign(kms, key_arn, algorithm, digest, "DIGEST")

    with pytest.raises(kms.exceptions.KMSInvalidSignatureException):
        kms.verify(
            KeyId=key_arn,
            Message=_digest(algorithm, b"altered"),
            MessageType="DIGEST",
            Signature=signature,
            SigningAlgorithm=algorithm,
        )


@pytest.mark.parametrize(
    ("algorithm", "key_spec", "length"),
    [
        ("RSASSA_PKCS1_V1_5_SHA_256", "RSA_2048", 31),
        ("RSASSA_PKCS1_V1_5_SHA_256", "RSA_2048", 33),
        ("RSASSA_PSS_SHA_384", "RSA_2048", 32),
        ("ECDSA_SHA_256", "ECC_NIST_P256", 48),
        ("ECDSA_SHA_512", "ECC_NIST_P521", 32),
    ],
)
def test_digest_of_the_wrong_length_is_refused(
    kms: KMSClient, algorithm: SigningAlgorithmSpecType, key_spec: KeySpecType, length: int
) -> None:
    """AWS: a DIGEST must be exactly the algorithm's hash length, else ValidationException.

    (moto 5.2 signs whatever bytes it is given.)
    """
    key_arn = _signing_key(kms, key_spec)

    with pytest.raises(ClientError) as refused:
        _sign(kms, key_arn, algorithm, b"\x01" * length, "DIGEST")

    assert _error_code(refused.value) == "ValidationException"
    assert f"Digest is invalid length for algorithm {algorithm}" in str(refused.value)


def test_raw_message_over_4096_bytes_is_refused(kms: KMSClient) -> None:
    """AWS: a RAW message is at most 4096 bytes (longer input must be sent as a DIGEST)."""
    key_arn = _signing_key(kms, "RSA_2048")

    with pytest.raises(ClientError) as refused:
        _sign(kms, key_arn, "RSASSA_PKCS1_V1_5_SHA_256", b"x" * 4097, "RAW")

    assert _error_code(refused.value) == "ValidationException"


# ------------------------------------------------------------------ key states


def test_sign_with_a_disabled_key_raises_disabled_exception(kms: KMSClient) -> None:
    """AWS: Sign, Verify and GetPublicKey on a Disabled key fail with DisabledException.

    (moto 5.2 signs and serves the public key anyway.) EnableKey makes it sign again.
    """
    algorithm: SigningAlgorithmSpecType = "RSASSA_PKCS1_V1_5_SHA_256"
    key_arn = _signing_key(kms, "RSA_2048")
    digest = _digest(algorithm, b"m")
    signature = _sign(kms, key_arn, algorithm, digest, "DIGEST")
    kms.disable_key(KeyId=key_arn)

    with pytest.raises(kms.exceptions.DisabledException) as refused:
        _sign(kms, key_arn, algorithm, digest, "DIGEST")
    assert str(refused.value).endswith(f"{key_arn} is disabled.")
    with pytest.raises(kms.exceptions.DisabledException):
        kms.get_public_key(KeyId=key_arn)
    with pytest.raises(kms.exceptions.DisabledException):
        kms.verify(
            KeyId=key_arn,
            Message=digest,
            MessageType="DIGEST",
            Signature=signature,
            SigningAlgorithm=algorithm,
        )

    kms.enable_key(KeyId=key_arn)
    assert _sign(kms, key_arn, algorithm, digest, "DIGEST")


def test_sign_with_a_key_pending_deletion_raises_invalid_state(kms: KMSClient) -> None:
    """AWS: Sign and GetPublicKey on a key pending deletion fail with KMSInvalidStateException.

    CancelKeyDeletion leaves the key Disabled (so Sign is then DisabledException).
    """
    algorithm: SigningAlgorithmSpecType = "ECDSA_SHA_256"
    key_arn = _signing_key(kms, "ECC_NIST_P256")
    digest = _digest(algorithm, b"m")
    kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7)

    with pytest.raises(kms.exceptions.KMSInvalidStateException) as refused:
        _sign(kms, key_arn, algorithm, digest, "DIGEST")
    assert str(refused.value).endswith(f"{key_arn} is pending deletion.")
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.get_public_key(KeyId=key_arn)

    kms.cancel_key_deletion(KeyId=key_arn)
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Disabled"
    with pytest.raises(kms.exceptions.DisabledException):
        _sign(kms, key_arn, algorithm, digest, "DIGEST")


def test_key_pending_deletion_refuses_state_changes_and_tags(kms: KMSClient) -> None:
    """AWS: a key pending deletion cannot be enabled, disabled, scheduled again or tagged.

    Each answers KMSInvalidStateException; jwtkeys therefore changes tags before it
    schedules deletion. CancelKeyDeletion on a key not pending deletion is refused too.
    """
    key_arn = _signing_key(kms, "RSA_2048")
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.cancel_key_deletion(KeyId=key_arn)
    kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=30)

    refused_calls: list[Callable[[], object]] = [
        lambda: kms.enable_key(KeyId=key_arn),
        lambda: kms.disable_key(KeyId=key_arn),
        lambda: kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7),
        lambda: kms.tag_resource(KeyId=key_arn, Tags=[{"TagKey": "k", "TagValue": "v"}]),
    ]
    for refused_call in refused_calls:
        with pytest.raises(kms.exceptions.KMSInvalidStateException):
            refused_call()


def test_key_state_operations_accept_a_key_arn(kms: KMSClient) -> None:
    """AWS: DisableKey, EnableKey, ScheduleKeyDeletion and CancelKeyDeletion accept a key ARN.

    (moto 5.2 looks the ARN up as a key id and answers HTTP 500.) ScheduleKeyDeletion
    and CancelKeyDeletion answer with the key ARN; the state follows each call.
    """
    key_arn = _signing_key(kms, "RSA_2048")

    def state() -> str:
        return kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"]

    kms.disable_key(KeyId=key_arn)
    assert state() == "Disabled"
    kms.enable_key(KeyId=key_arn)
    assert state() == "Enabled"
    scheduled = kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=7)
    assert scheduled["KeyId"] == key_arn
    assert scheduled["KeyState"] == "PendingDeletion"
    assert scheduled["PendingWindowInDays"] == 7
    assert state() == "PendingDeletion"
    assert kms.cancel_key_deletion(KeyId=key_arn)["KeyId"] == key_arn
    assert state() == "Disabled"


@pytest.mark.parametrize("days", [1, 6, 31, 365])
def test_pending_window_outside_7_to_30_days_is_refused(kms: KMSClient, days: int) -> None:
    """AWS: PendingWindowInDays must be 7-30, else ValidationException and the key is untouched.

    (moto 5.2 silently ignores an out-of-range window.)
    """
    key_arn = _signing_key(kms, "RSA_2048")

    with pytest.raises(ClientError) as refused:
        kms.schedule_key_deletion(KeyId=key_arn, PendingWindowInDays=days)

    assert _error_code(refused.value) == "ValidationException"
    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Enabled"


def test_get_public_key_names_the_key_arn(kms: KMSClient) -> None:
    """AWS: GetPublicKey answers the key ARN in KeyId, whatever identifier it was given."""
    key_arn = _signing_key(kms, "ECC_NIST_P256")
    key_id = key_arn.rsplit("/", 1)[-1]

    response = kms.get_public_key(KeyId=key_id)

    assert response["KeyId"] == key_arn
    assert response["KeySpec"] == "ECC_NIST_P256"


def test_a_symmetric_key_neither_signs_nor_has_a_public_key(kms: KMSClient) -> None:
    """AWS: Sign with an ENCRYPT_DECRYPT key is InvalidKeyUsageException; GetPublicKey of a
    symmetric key is UnsupportedOperationException. (moto 5.2 signs with a made-up RSA key.)
    """
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]

    with pytest.raises(kms.exceptions.InvalidKeyUsageException):
        _sign(kms, key_arn, "RSASSA_PKCS1_V1_5_SHA_256", _digest("SHA_256", b"m"), "DIGEST")
    with pytest.raises(kms.exceptions.UnsupportedOperationException):
        kms.get_public_key(KeyId=key_arn)


# ------------------------------------------------------------------ S3


def _publish(s3: S3Client, key: str, body: bytes) -> None:
    s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=body,
        ContentType="application/json",
        CacheControl="public, max-age=300",
    )


def _allow_public_read(s3: S3Client) -> None:
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/.well-known/*",
    }
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))


def _anonymous_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of an unsigned plain-HTTP GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our http URL)
            headers = {name.lower(): value for name, value in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            headers = {name.lower(): value for name, value in error.headers.items()}
            return error.code, headers, error.read()


@pytest.mark.parametrize("key", [JWKS_KEY, OIDC_KEY])
def test_public_documents_are_served_anonymously_from_s3(
    local_aws: LocalAws, s3: S3Client, key: str
) -> None:
    """AWS: an anonymous GET of an object a bucket policy makes public returns the object.

    With its stored Content-Type and Cache-Control, over plain HTTP, path-style, from
    the S3-only endpoint (moto's main endpoint routes `.well-known/...` to Cognito).
    """
    body = b'{"keys": []}'
    s3.create_bucket(Bucket=BUCKET)
    _publish(s3, key, body)
    _allow_public_read(s3)

    status, headers, served = _anonymous_get(f"{local_aws.s3_public_url}/{BUCKET}/{key}")

    assert status == 200
    assert served == body
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "public, max-age=300"


def test_anonymous_read_without_a_policy_is_refused(local_aws: LocalAws, s3: S3Client) -> None:
    """AWS: without a bucket policy or ACL granting it, an anonymous GET answers 403."""
    s3.create_bucket(Bucket=BUCKET)
    _publish(s3, JWKS_KEY, b'{"keys": []}')

    status, _, _ = _anonymous_get(f"{local_aws.s3_public_url}/{BUCKET}/{JWKS_KEY}")

    assert status == 403


def test_main_endpoint_still_routes_well_known_paths_to_cognito(
    local_aws: LocalAws, s3: S3Client
) -> None:
    """moto gap (not AWS behaviour): the main endpoint answers `.../.well-known/jwks.json`
    from its Cognito routes, which is why `s3_public_url` exists. If moto ever routes it
    to S3, this fails and the S3-only endpoint can go.
    """
    body = b'{"keys": ["ours"]}'
    s3.create_bucket(Bucket=BUCKET)
    _publish(s3, JWKS_KEY, body)
    _allow_public_read(s3)

    _, _, served = _anonymous_get(f"{local_aws.endpoint_url}/{BUCKET}/{JWKS_KEY}")

    assert served != body


def test_conditional_create_of_an_existing_object_fails(s3: S3Client) -> None:
    """AWS: PutObject with IfNoneMatch="*" on an existing key answers 412 PreconditionFailed."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="state/lease", Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="state/lease", Body=b"second", IfNoneMatch="*")

    assert _error_code(refused.value) == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=BUCKET, Key="state/lease")["Body"].read() == b"first"


def test_conditional_overwrite_needs_the_current_etag(s3: S3Client) -> None:
    """AWS: PutObject with IfMatch=<etag> succeeds only while the object still has that ETag."""
    s3.create_bucket(Bucket=BUCKET)
    first = s3.put_object(Bucket=BUCKET, Key="state/lease", Body=b"first")["ETag"]
    second = s3.put_object(Bucket=BUCKET, Key="state/lease", Body=b"second", IfMatch=first)["ETag"]

    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=BUCKET, Key="state/lease", Body=b"third", IfMatch=first)

    assert _error_code(refused.value) == "PreconditionFailed"
    assert second != first
    assert s3.get_object(Bucket=BUCKET, Key="state/lease")["Body"].read() == b"second"
