"""The local AWS endpoint's control API: call counting, fault injection, reset, lifecycle."""

from __future__ import annotations

import hashlib
import sys
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError
from mypy_boto3_kms import KMSClient
from mypy_boto3_s3 import S3Client

from jwtkeys_tools.local.aws_endpoint import LocalAws, LocalAwsError
from tests.local_aws_fixtures import no_retries

BUCKET = "jwtkeys-control"
DIGEST = hashlib.sha256(b"header.payload").digest()


@pytest.fixture
def kms(local_aws: LocalAws) -> KMSClient:
    client: KMSClient = local_aws.client("kms", config=no_retries())
    return client


@pytest.fixture
def s3(local_aws: LocalAws) -> S3Client:
    client: S3Client = local_aws.client("s3", config=no_retries())
    return client


@pytest.fixture
def key_arn(local_aws: LocalAws, kms: KMSClient) -> str:
    """An ECC P-256 signing key (quick to make); the call log starts empty after it."""
    arn = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"]
    local_aws.reset_calls()
    return arn


def _sign(kms: KMSClient, key_arn: str) -> None:
    kms.sign(KeyId=key_arn, Message=DIGEST, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")


def _outcomes(kms: KMSClient, key_arn: str, attempts: int) -> list[str]:
    """'ok' or the error code of each of `attempts` Sign calls."""
    outcomes = []
    for _ in range(attempts):
        try:
            _sign(kms, key_arn)
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(str(error.response["Error"]["Code"]))
    return outcomes


# ------------------------------------------------------------------ counting


def test_each_request_is_counted_once_in_order(
    local_aws: LocalAws, kms: KMSClient, s3: S3Client, key_arn: str
) -> None:
    for _ in range(3):
        _sign(kms, key_arn)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="a", Body=b"1")
    s3.get_object(Bucket=BUCKET, Key="a")
    s3.head_object(Bucket=BUCKET, Key="a")
    s3.list_objects_v2(Bucket=BUCKET)
    s3.delete_object(Bucket=BUCKET, Key="a")

    assert local_aws.calls() == [
        ("kms", "Sign"),
        ("kms", "Sign"),
        ("kms", "Sign"),
        ("s3", "CreateBucket"),
        ("s3", "PutObject"),
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "DeleteObject"),
    ]


def test_operations_of_every_protocol_are_named(local_aws: LocalAws, s3: S3Client) -> None:
    """JSON by X-Amz-Target, query by Action, REST (XML and JSON) by method and path."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy='{"Version": "2012-10-17", "Statement": []}')
    s3.put_object(Bucket=BUCKET, Key="a", Body=b"1")
    s3.copy_object(Bucket=BUCKET, Key="b", CopySource=f"{BUCKET}/a")
    local_aws.client("sts").get_caller_identity()
    local_aws.client("lambda").list_functions()
    local_aws.client("cloudfront").list_distributions()
    local_aws.client("secretsmanager").list_secrets()
    local_aws.client("cloudwatch").put_metric_data(
        Namespace="jwtkeys", MetricData=[{"MetricName": "Probe", "Value": 1.0}]
    )
    # Named from the request alone, whatever moto answers (no such function/distribution).
    with pytest.raises(ClientError):
        local_aws.client("lambda", config=no_retries()).invoke(FunctionName="missing")
    with pytest.raises(ClientError):
        local_aws.client("cloudfront", config=no_retries()).create_invalidation(
            DistributionId="MISSING",
            InvalidationBatch={
                "Paths": {"Quantity": 1, "Items": ["/.well-known/*"]},
                "CallerReference": "probe",
            },
        )

    assert local_aws.calls() == [
        ("s3", "CreateBucket"),
        ("s3", "PutBucketPolicy"),
        ("s3", "PutObject"),
        ("s3", "CopyObject"),
        ("sts", "GetCallerIdentity"),
        ("lambda", "ListFunctions"),
        ("cloudfront", "ListDistributions"),
        ("secretsmanager", "ListSecrets"),
        ("cloudwatch", "PutMetricData"),
        ("lambda", "Invoke"),
        ("cloudfront", "CreateInvalidation"),
    ]


def test_unsigned_json_calls_are_named_by_their_target(local_aws: LocalAws) -> None:
    request = urllib.request.Request(  # noqa: S310 (our http URL)
        local_aws.endpoint_url,
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "TrentService.ListKeys",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
    except urllib.error.HTTPError as refused:  # moto may refuse it: only the name matters
        refused.close()

    assert local_aws.calls() == [("kms", "ListKeys")]


def test_requests_to_the_s3_public_port_count_too(local_aws: LocalAws, s3: S3Client) -> None:
    s3.create_bucket(Bucket=BUCKET)
    local_aws.reset_calls()

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{local_aws.s3_public_url}/{BUCKET}/missing", timeout=10)  # noqa: S310
    refused.value.close()

    assert local_aws.calls() == [("s3", "GetObject")]


def test_control_requests_are_not_counted(
    local_aws: LocalAws, kms: KMSClient, key_arn: str
) -> None:
    _sign(kms, key_arn)
    local_aws.inject_faults("throttle", count=0)
    local_aws.clear_faults()
    local_aws.calls()
    local_aws.reset()

    assert local_aws.calls() == [("kms", "Sign")]


def test_reset_calls_empties_the_log(local_aws: LocalAws, kms: KMSClient, key_arn: str) -> None:
    _sign(kms, key_arn)
    local_aws.reset_calls()
    _sign(kms, key_arn)

    assert local_aws.calls() == [("kms", "Sign")]


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("kind", "kms_code", "kms_status", "s3_code", "s3_status"),
    [
        ("throttle", "ThrottlingException", 400, "SlowDown", 503),
        ("http500", "InternalFailure", 500, "InternalError", 500),
    ],
)
def test_error_faults_answer_in_each_services_own_format(
    local_aws: LocalAws,
    kms: KMSClient,
    s3: S3Client,
    key_arn: str,
    kind: str,
    kms_code: str,
    kms_status: int,
    s3_code: str,
    s3_status: int,
) -> None:
    """KMS answers JSON (`__type`), S3 answers XML (`<Code>`), each with its real status."""
    s3.create_bucket(Bucket=BUCKET)
    local_aws.inject_faults(kind)

    with pytest.raises(ClientError) as kms_refused:
        _sign(kms, key_arn)
    with pytest.raises(ClientError) as s3_refused:
        s3.put_object(Bucket=BUCKET, Key="a", Body=b"1")

    assert kms_refused.value.response["Error"]["Code"] == kms_code
    assert kms_refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == kms_status
    assert s3_refused.value.response["Error"]["Code"] == s3_code
    assert s3_refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == s3_status


def test_connection_fault_drops_the_connection(
    local_aws: LocalAws, kms: KMSClient, s3: S3Client, key_arn: str
) -> None:
    """The socket closes without an answer: botocore raises ConnectionClosedError."""
    s3.create_bucket(Bucket=BUCKET)
    local_aws.inject_faults("connection")

    with pytest.raises(ConnectionClosedError):
        _sign(kms, key_arn)
    with pytest.raises(ConnectionClosedError):
        s3.put_object(Bucket=BUCKET, Key="a", Body=b"1")


def test_after_and_count_bound_the_failures(
    local_aws: LocalAws, kms: KMSClient, key_arn: str
) -> None:
    local_aws.inject_faults("throttle", after=2, count=2)

    outcomes = _outcomes(kms, key_arn, 6)

    assert outcomes == ["ok", "ok", "ThrottlingException", "ThrottlingException", "ok", "ok"]
    assert local_aws.calls() == [("kms", "Sign")] * 6  # failed requests are counted too


def test_count_none_fails_until_cleared(local_aws: LocalAws, kms: KMSClient, key_arn: str) -> None:
    local_aws.inject_faults("http500", after=1)

    failing = _outcomes(kms, key_arn, 4)
    local_aws.clear_faults()
    cleared = _outcomes(kms, key_arn, 2)

    assert failing == ["ok", "InternalFailure", "InternalFailure", "InternalFailure"]
    assert cleared == ["ok", "ok"]


def test_faults_match_service_and_operation(
    local_aws: LocalAws, kms: KMSClient, s3: S3Client, key_arn: str
) -> None:
    local_aws.inject_faults("throttle", service="kms", operation="Sign")

    kms.get_public_key(KeyId=key_arn)  # same service, other operation: untouched
    s3.create_bucket(Bucket=BUCKET)  # other service: untouched
    with pytest.raises(ClientError) as refused:
        _sign(kms, key_arn)

    assert refused.value.response["Error"]["Code"] == "ThrottlingException"


def test_botocore_retries_ride_out_a_short_fault(local_aws: LocalAws, key_arn: str) -> None:
    """A fault shorter than the retry budget is invisible to the caller, but counted."""
    retrying: KMSClient = local_aws.client(
        "kms", config=Config(retries={"mode": "standard", "max_attempts": 1})
    )
    local_aws.inject_faults("throttle", count=1)

    _sign(retrying, key_arn)

    assert local_aws.calls() == [("kms", "Sign"), ("kms", "Sign")]


def test_unknown_fault_kind_is_refused(local_aws: LocalAws) -> None:
    with pytest.raises(ValueError, match="fault kind"):
        local_aws.inject_faults("timeout")


# ------------------------------------------------------------------ reset and lifecycle


def test_reset_wipes_every_service(local_aws: LocalAws, kms: KMSClient, s3: S3Client) -> None:
    kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")
    s3.create_bucket(Bucket=BUCKET)

    local_aws.reset()

    assert kms.list_keys()["Keys"] == []
    assert s3.list_buckets()["Buckets"] == []


def test_env_points_boto3_at_the_endpoint(
    local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_aws.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    boto3.client("s3").create_bucket(Bucket=BUCKET)

    assert env == {
        "AWS_ENDPOINT_URL": local_aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    assert local_aws.calls() == [("s3", "CreateBucket")]


def test_start_and_stop_a_private_endpoint() -> None:
    aws = LocalAws(region="eu-west-1")
    with pytest.raises(LocalAwsError, match="not running"):
        _ = aws.endpoint_url

    with aws:
        url = aws.endpoint_url
        assert aws.env()["AWS_REGION"] == "eu-west-1"
        assert aws.client("s3").list_buckets()["Buckets"] == []
    aws.stop()  # idempotent

    with pytest.raises(LocalAwsError, match="not running"):
        _ = aws.s3_public_url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/_jwtkeys/calls", timeout=5)  # noqa: S310


def test_a_server_that_dies_at_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in interpreter that exits at once with an error, as a broken install would.
    monkeypatch.setattr(sys, "executable", "/bin/false")

    with pytest.raises(LocalAwsError, match="exited with status 1 before it was ready"):
        LocalAws().start()
