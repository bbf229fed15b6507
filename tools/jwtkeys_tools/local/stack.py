"""A local deployment of one keyset, wired like the CDK stack but against LocalAws.

The signing and keeper services are built from the same environment variables the
deployed functions read, so what runs here is what runs on Lambda.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from jwtkeys import names
from jwtkeys.clock import Clock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.service import KeeperClients, KeeperService, TrustFactory, no_trust
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import KeeperSettings, ServiceNowSettings, SignerSettings
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy
from jwtkeys.signer.rules import Allowlist, parse_caller_rules, parse_claim_rules
from jwtkeys.signer.service import SignService
from jwtkeys_tools.local.aws_endpoint import LocalAws

LOCAL_ACCOUNT = "123456789012"


@dataclass
class LocalKeysetConfig:
    """What cdk.json would say about one keyset, for a local run."""

    keyset: str = "demo"
    issuer: str = "https://issuer.jwtkeys.local"
    policy: RotationPolicy = field(default_factory=RotationPolicy)
    allowed_subjects: Sequence[str] = ("*",)
    allowed_audiences: Sequence[str] = ("*",)
    default_ttl: int = 300
    # As in cdk.json: {principal ARN: {"subjects", "audiences", "claims"?}}.
    caller_rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # As in cdk.json, off by default: None, or the extra claims a direct invoke may add
    # ({name: True | [allowed values]}); the local tools that invoke directly turn it on.
    direct_invoke_claims: Mapping[str, Sequence[str] | bool] | None = None
    servicenow_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        return f"jwtkeys-{self.keyset}-jwks"

    @property
    def signer_role_arn(self) -> str:
        return f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jwtkeys-{self.keyset}-signer"

    @property
    def keeper_role_arn(self) -> str:
        return f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jwtkeys-{self.keyset}-keeper"


class LocalStack:
    """One keyset deployed on the local AWS endpoint: its bucket, signer and keeper."""

    def __init__(self, aws: LocalAws, config: LocalKeysetConfig, clock: Clock) -> None:
        self.aws = aws
        self.config = config
        self.clock = clock
        self.kms = aws.client("kms")
        self.s3 = aws.client("s3")

    @property
    def public_base_url(self) -> str:
        """Where verifiers fetch the JWKS over plain HTTP (the S3-only endpoint)."""
        return f"{self.aws.s3_public_url}/{self.config.bucket}"

    @property
    def jwks_url(self) -> str:
        return f"{self.public_base_url}/{names.JWKS_OBJECT_KEY}"

    def create_bucket(self) -> None:
        """The bucket the CDK stack would create; `.well-known/` readable by anyone."""
        bucket = self.config.bucket
        existing = {b["Name"] for b in self.s3.list_buckets().get("Buckets", [])}
        if bucket in existing:
            return
        self.s3.create_bucket(Bucket=bucket)
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        # Locally the bucket itself serves the public documents (no CloudFront):
        # only `.well-known/*`, never `state/`.
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicWellKnown",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/{names.PUBLIC_PREFIX}*",
                }
            ],
        }
        self.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    def signer_settings(self) -> SignerSettings:
        """The signing function's settings, as the CDK stack builds them."""
        config = self.config
        return SignerSettings(
            keyset=config.keyset,
            rotation=config.policy,
            policy=SigningPolicy(
                issuer=config.issuer,
                allowed_subjects=Allowlist(tuple(config.allowed_subjects)),
                allowed_audiences=Allowlist(tuple(config.allowed_audiences)),
                default_ttl=config.default_ttl,
                max_token_ttl=config.policy.max_token_ttl,
                caller_rules=parse_caller_rules(config.caller_rules, "caller_rules"),
                direct_invoke=None
                if config.direct_invoke_claims is None
                else DirectInvoke(
                    parse_claim_rules(config.direct_invoke_claims, "direct_invoke_claims")
                ),
            ),
        )

    def keeper_settings(self) -> KeeperSettings:
        """The keeper function's settings, as the CDK stack builds them."""
        config = self.config
        return KeeperSettings(
            keyset=config.keyset,
            issuer=config.issuer,
            rotation=config.policy,
            bucket=config.bucket,
            public_base_url=self.public_base_url,
            distribution_id=None,
            signer_role_arn=config.signer_role_arn,
            keeper_role_arn=config.keeper_role_arn,
            servicenow=ServiceNowSettings.from_environ(config.servicenow_env),
        )

    def signer_env(self) -> dict[str, str]:
        """The signing function's environment, as the CDK stack sets it."""
        return self.signer_settings().to_environ()

    def keeper_env(self) -> dict[str, str]:
        """The keeper function's environment, as the CDK stack sets it."""
        return self.keeper_settings().to_environ()

    def sign_service(
        self,
        metrics: MetricsRecorder | None = None,
        logger: Logger | None = None,
        **kms_options: Any,
    ) -> SignService:
        """The signing function's service over the local endpoint."""
        kms = self.aws.client("kms", **kms_options) if kms_options else self.kms
        return SignService.create(
            self.signer_env(), kms, self.clock, logger=logger, metrics=metrics
        )

    def keeper_service(
        self,
        trust_factory: TrustFactory = no_trust,
        metrics: MetricsRecorder | None = None,
        logger: Logger | None = None,
        **client_options: Any,
    ) -> KeeperService:
        """The keeper function's service over the local endpoint."""
        settings = KeeperSettings.from_environ(self.keeper_env())
        clients = KeeperClients(
            kms=self.aws.client("kms", **client_options),
            s3=self.aws.client("s3", **client_options),
            sts=self.aws.client("sts", **client_options),
        )
        return KeeperService.create(
            settings,
            clients,
            self.clock,
            trust_factory=trust_factory,
            metrics=metrics,
            logger=logger,
        )
