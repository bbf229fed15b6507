"""JWKS publication to S3: headers, idempotence, CDN invalidation, OpenID configuration."""

from __future__ import annotations

import json

from jwtkeys.keeper.jwks_publisher import JwksPublisher, RecordingInvalidator
from jwtkeys_tools.local.aws_endpoint import LocalAws

KEY = {"kid": "k1", "kty": "EC", "crv": "P-256", "x": "x", "y": "y", "alg": "ES256", "use": "sig"}


def _publisher(
    aws: LocalAws, issuer: str, base: str | None
) -> tuple[JwksPublisher, RecordingInvalidator]:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="pub")
    invalidator = RecordingInvalidator()
    return JwksPublisher(s3, "pub", issuer, 600, invalidator, base), invalidator


def test_publishes_with_headers_only_when_the_bytes_change(local_aws: LocalAws) -> None:
    publisher, invalidator = _publisher(local_aws, "client-1", None)
    written = publisher.publish([KEY], publisher.read_origin())
    assert written is not None
    head = local_aws.client("s3").head_object(Bucket="pub", Key=".well-known/jwks.json")
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "public, max-age=600"
    assert invalidator.calls == [["/.well-known/*"]]
    local_aws.reset_calls()
    assert publisher.publish([KEY], publisher.read_origin()) is None
    assert [op for _, op in local_aws.calls()] == ["GetObject"]  # read, compared, not written
    assert invalidator.calls == [["/.well-known/*"]]
    # Not an issuer URL on the JWKS host: no discovery document.
    objects = local_aws.client("s3").list_objects_v2(Bucket="pub")["Contents"]
    assert [o["Key"] for o in objects] == [".well-known/jwks.json"]


def test_an_https_issuer_on_the_jwks_host_gets_an_openid_configuration(local_aws: LocalAws) -> None:
    publisher, _ = _publisher(local_aws, "https://keys.example.com", "https://keys.example.com/")
    publisher.publish([KEY], None)
    body = local_aws.client("s3").get_object(Bucket="pub", Key=".well-known/openid-configuration")[
        "Body"
    ]
    assert json.loads(body.read()) == {
        "issuer": "https://keys.example.com",
        "jwks_uri": "https://keys.example.com/.well-known/jwks.json",
    }


def test_an_issuer_on_another_host_gets_none(local_aws: LocalAws) -> None:
    publisher, _ = _publisher(local_aws, "https://idp.example.com", "https://keys.example.com")
    publisher.publish([KEY], None)
    keys = [o["Key"] for o in local_aws.client("s3").list_objects_v2(Bucket="pub")["Contents"]]
    assert keys == [".well-known/jwks.json"]
