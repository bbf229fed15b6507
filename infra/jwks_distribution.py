"""The JWKS's public home: a private bucket behind CloudFront, only `/.well-known/*` served."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from jwtkeys.names import PUBLIC_PREFIX, STATE_PREFIX

from .config import CustomDomain
from .constants import NONCURRENT_VERSION_EXPIRATION_DAYS, PUBLIC_PATH_PATTERN
from .nag import acknowledge

# Object writes of every kind: a new version, a delete marker, a removed version, an ACL
# or tags (tags and ACLs are not trusted, but nobody else has a reason to set them).
_WRITE_ACTIONS = (
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:RestoreObject",
)

# Anything outside /.well-known/ (the state/ prefix above all) ends at the edge.
_NOT_FOUND_FUNCTION = """\
function handler(event) {
  return { statusCode: 404, statusDescription: 'Not Found' };
}
"""


class JwksDistribution(Construct):
    """Private, versioned, encrypted bucket; CloudFront with origin access control."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        jwks_max_age: int,
        custom_domain: CustomDomain | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = self._bucket()
        self.distribution = self._distribution(jwks_max_age, custom_domain)
        self._deny_cloudfront_outside_public_prefix()
        host = custom_domain.domain_name if custom_domain else self.distribution.domain_name
        self.public_base_url = f"https://{host}"

    def _bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_EXPIRATION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # state/ holds the key registry and intents: a stack deletion must not take it.
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "Only the keeper writes this bucket and CloudFront reads it; KMS and Lambda"
            " activity is in CloudTrail, and versioning keeps every JWKS ever published.",
        )
        return bucket

    def _distribution(
        self, jwks_max_age: int, custom_domain: CustomDomain | None
    ) -> cloudfront.Distribution:
        origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
        # The object's own Cache-Control decides, capped at jwks_max_age so the CDN can
        # never hold a JWKS longer than the rotation policy assumes.
        cache_policy = cloudfront.CachePolicy(
            self,
            "JwksCachePolicy",
            comment="JWKS: object Cache-Control, at most jwks_max_age",
            min_ttl=Duration.seconds(0),
            default_ttl=Duration.seconds(jwks_max_age),
            max_ttl=Duration.seconds(jwks_max_age),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        not_found = cloudfront.Function(
            self,
            "NotFoundFunction",
            code=cloudfront.FunctionCode.from_inline(_NOT_FOUND_FUNCTION),
            runtime=cloudfront.FunctionRuntime.JS_2_0,
            comment="Answers 404 for every path outside /.well-known/",
        )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", custom_domain.certificate_arn)
            if custom_domain
            else None
        )
        distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="jwtkeys JWKS",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                function_associations=[
                    cloudfront.FunctionAssociation(
                        function=not_found, event_type=cloudfront.FunctionEventType.VIEWER_REQUEST
                    )
                ],
            ),
            additional_behaviors={
                PUBLIC_PATH_PATTERN: cloudfront.BehaviorOptions(
                    origin=origin,
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
                    allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                    cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                    cache_policy=cache_policy,
                    # Browsers may fetch the JWKS cross-origin; it is public by design.
                    response_headers_policy=(
                        cloudfront.ResponseHeadersPolicy.CORS_ALLOW_ALL_ORIGINS_AND_SECURITY_HEADERS
                    ),
                    compress=True,
                )
            },
            domain_names=[custom_domain.domain_name] if custom_domain else None,
            certificate=certificate,
            minimum_protocol_version=(
                cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if custom_domain else None
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR1",
            "The JWKS is public and must be reachable by verifiers wherever they run.",
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR2",
            "Two small public documents, GET/HEAD only, cached at the edge: no WAF rule"
            " would protect anything the cache does not already absorb.",
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR3",
            "Access logs would need an ACL-enabled bucket; the documents are public and"
            " CloudFront's own metrics show request volume and errors.",
        )
        if custom_domain is None:
            acknowledge(
                distribution,
                "AwsSolutions-CFR4",
                "Without a custom domain CloudFront's default certificate is used, whose"
                " minimum protocol cannot be raised; set custom_domain for TLSv1.2_2021.",
            )
        return distribution

    def _deny_cloudfront_outside_public_prefix(self) -> None:
        # Origin access control grants CloudFront every object; this explicit deny keeps
        # state/ (and anything else) unreadable even through a misrouted behavior.
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ServeOnlyWellKnown",
                effect=iam.Effect.DENY,
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                actions=["s3:GetObject"],
                not_resources=[self.bucket.arn_for_objects(f"{PUBLIC_PREFIX}*")],
            )
        )

    def reserve_for_keeper(self, keeper_role: iam.IRole, operator_roles: Sequence[str]) -> None:
        """Only the keeper writes state/ and the published documents; only the keeper and
        the operators read state/.

        The keeper trusts neither as written (every key is checked against KMS), but an
        identity policy elsewhere in the account granting s3:* must still not reach them:
        these denies win over any allow. aws:PrincipalArn is the role's ARN even for its
        sessions; service principals have none, so they are denied too.
        """
        keeper = keeper_role.role_arn
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheKeeperWritesStateAndJwks",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(_WRITE_ACTIONS),
                resources=[
                    self.bucket.arn_for_objects(f"{prefix}*")
                    for prefix in (STATE_PREFIX, PUBLIC_PREFIX)
                ],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": keeper}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheKeeperAndOperatorsReadState",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.bucket.arn_for_objects(f"{STATE_PREFIX}*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": [keeper, *operator_roles]}},
            )
        )
