"""The JWKS bucket and CloudFront: private, TLS only, only /.well-known/* served."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import OPERATOR_ROLE, Template, logical_id_starting, only


def _bucket(template: Template) -> tuple[str, dict[str, Any]]:
    logical_id = logical_id_starting(template, "AWS::S3::Bucket", "JwksBucket")
    return logical_id, template["Resources"][logical_id]


def test_bucket_is_private_versioned_encrypted_and_expires_old_versions(dev: Template) -> None:
    _, bucket = _bucket(dev)
    props = bucket["Properties"]

    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    # The bucket holds state/ (registry, intents): a stack deletion must not take it.
    assert bucket["DeletionPolicy"] == "Retain"


def test_bucket_policy_enforces_tls_and_serves_cloudfront_only_well_known(dev: Template) -> None:
    bucket, _ = _bucket(dev)
    distribution = logical_id_starting(dev, "AWS::CloudFront::Distribution", "Jwks")
    _, policy = only(
        dev, "AWS::S3::BucketPolicy", lambda _lid, props: props["Bucket"] == {"Ref": bucket}
    )
    statements = policy["PolicyDocument"]["Statement"]
    arn = {"Fn::GetAtt": [bucket, "Arn"]}

    tls = [
        s for s in statements if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert tls
    assert tls[0]["Effect"] == "Deny"
    assert tls[0]["Action"] == "s3:*"
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == "s3:GetObject"
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Join"][1]
    assert source[-1] == {"Ref": distribution}
    (deny,) = [s for s in statements if s.get("Sid") == "ServeOnlyWellKnown"]
    assert deny == {
        "Sid": "ServeOnlyWellKnown",
        "Effect": "Deny",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "NotResource": {"Fn::Join": ["", [arn, "/.well-known/*"]]},
    }


def test_cloudfront_reads_through_origin_access_control(dev: Template) -> None:
    _, oac = only(dev, "AWS::CloudFront::OriginAccessControl", lambda _lid, _p: True)
    oac_id = logical_id_starting(dev, "AWS::CloudFront::OriginAccessControl", "Jwks")
    _, distribution = only(dev, "AWS::CloudFront::Distribution", lambda _lid, _p: True)
    (origin,) = distribution["DistributionConfig"]["Origins"]

    assert oac["OriginAccessControlConfig"]["OriginAccessControlOriginType"] == "s3"
    assert oac["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_id, "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}


def test_only_well_known_is_served_with_the_objects_cache_headers(dev: Template) -> None:
    _, distribution = only(dev, "AWS::CloudFront::Distribution", lambda _lid, _p: True)
    config = distribution["DistributionConfig"]
    (public,) = config["CacheBehaviors"]
    default = config["DefaultCacheBehavior"]
    not_found = logical_id_starting(dev, "AWS::CloudFront::Function", "JwksNotFound")

    assert public["PathPattern"] == "/.well-known/*"
    assert public["ViewerProtocolPolicy"] == "https-only"
    assert public["AllowedMethods"] == ["GET", "HEAD"]
    cache_policy = dev["Resources"][public["CachePolicyId"]["Ref"]]["Properties"]
    ttl = cache_policy["CachePolicyConfig"]
    # The object's Cache-Control decides, never longer than jwks_max_age.
    assert (ttl["MinTTL"], ttl["DefaultTTL"], ttl["MaxTTL"]) == (0, 300, 300)
    assert default["ViewerProtocolPolicy"] == "https-only"
    assert default["FunctionAssociations"] == [
        {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": [not_found, "FunctionARN"]}}
    ]
    code = dev["Resources"][not_found]["Properties"]["FunctionCode"]
    assert "statusCode: 404" in code


def test_custom_domain_gets_its_certificate_and_modern_tls(prod: Template) -> None:
    _, distribution = only(prod, "AWS::CloudFront::Distribution", lambda _lid, _p: True)
    config = distribution["DistributionConfig"]

    assert config["Aliases"] == ["keys.example.com"]
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert config["ViewerCertificate"]["SslSupportMethod"] == "sni-only"
    assert config["ViewerCertificate"]["AcmCertificateArn"].startswith("arn:aws:acm:us-east-1:")


def _keeper_role(template: Template) -> dict[str, Any]:
    role = logical_id_starting(template, "AWS::IAM::Role", "KeeperRole")
    return {"Fn::GetAtt": [role, "Arn"]}


def _bucket_statements(template: Template) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    bucket, _ = _bucket(template)
    _, policy = only(
        template, "AWS::S3::BucketPolicy", lambda _lid, props: props["Bucket"] == {"Ref": bucket}
    )
    return {"Fn::GetAtt": [bucket, "Arn"]}, policy["PolicyDocument"]["Statement"]


def test_only_the_keeper_writes_state_and_the_published_documents(dev: Template) -> None:
    # A principal with s3:* from its own identity policy could otherwise inject a registry
    # entry, a lease or a JWKS: the bucket policy's explicit deny wins over any allow.
    arn, statements = _bucket_statements(dev)
    (deny,) = [s for s in statements if s.get("Sid") == "OnlyTheKeeperWritesStateAndJwks"]

    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"AWS": "*"}
    assert set(deny["Action"]) >= {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"}
    assert deny["Resource"] == [
        {"Fn::Join": ["", [arn, "/state/*"]]},
        {"Fn::Join": ["", [arn, "/.well-known/*"]]},
    ]
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": _keeper_role(dev)}}


def test_only_the_keeper_and_the_operator_roles_read_state(dev: Template, prod: Template) -> None:
    for template, operators in ((dev, []), (prod, [OPERATOR_ROLE])):
        arn, statements = _bucket_statements(template)
        (deny,) = [s for s in statements if s.get("Sid") == "OnlyTheKeeperAndOperatorsReadState"]

        assert deny["Effect"] == "Deny"
        assert deny["Principal"] == {"AWS": "*"}
        assert set(deny["Action"]) == {"s3:GetObject", "s3:GetObjectVersion"}
        assert deny["Resource"] == {"Fn::Join": ["", [arn, "/state/*"]]}
        readers = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        # The tampering inspector reads the registry to know the keyset's keys.
        inspector = logical_id_starting(template, "AWS::IAM::Role", "KeyTamperingRole")
        assert readers == [_keeper_role(template), *operators, {"Fn::GetAtt": [inspector, "Arn"]}]
