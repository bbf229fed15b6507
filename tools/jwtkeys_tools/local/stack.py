"""A local deployment of one keyset, wired like the CDK stack but against LocalAws.

The signing and keeper services are built from the same environment variables the
deployed functions read, so what runs here is what runs on Lambda. Each service calls
AWS with its own role's credentials (registered with the endpoint), so the endpoint
knows which role made each request; the stack's own `kms`/`s3` clients are the
operator's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from aws_lambda_powertools import Logger

from jwtkeys import names
from jwtkeys.clock import Clock
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.service import (
    CREATE_KEY_CONFIG,
    KeeperClients,
    KeeperService,
    TrustFactory,
    no_trust,
)
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import KeeperSettings, ServiceNowSettings, SignerSettings
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy
from jwtkeys.signer.rules import Allowlist, parse_caller_rules, parse_claim_rules
from jwtkeys.signer.service import SignService
from jwtkeys.trust.target import TrustTarget
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
    def secret_arn(self) -> str | None:
        """The ServiceNow secret the keeper reads, if the keyset has ServiceNow."""
        settings = ServiceNowSettings.from_environ(self.servicenow_env)
        return settings.secret_id if settings is not None else None

    @property
    def secret_name(self) -> str | None:
        """The ServiceNow secret's name (the keeper may be given its name or its ARN)."""
        secret_id = self.secret_arn
        if secret_id is None or not secret_id.startswith("arn:"):
            return secret_id
        # arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 random characters>
        return secret_id.split(":secret:", 1)[1].rsplit("-", 1)[0]

    def cdk_stage(self) -> dict[str, Any]:
        """This keyset as a stage of cdk.json's `jwtkeys.stacks` (same account layout)."""
        servicenow: dict[str, Any] | None = None
        settings = ServiceNowSettings.from_environ(self.servicenow_env)
        if settings is not None:
            servicenow = {
                "instance": settings.instance_url,
                # The local secret is created by the operator (jwtkeys local, the tests).
                "secret": self.secret_name,
                "client_id": settings.client_id,
                "canary_subject": settings.canary_subject,
            }
            if settings.jwks_url:
                servicenow["trust"] = "jwks_url"
        return {
            "keyset": self.keyset,
            "issuer": self.issuer,
            "policy": self.policy.to_mapping(),
            "default_ttl": self.default_ttl,
            "allowed_audiences": list(self.allowed_audiences),
            "allowed_subjects": list(self.allowed_subjects),
            "function_url_callers": {},
            "servicenow": servicenow,
            "alarm_emails": [],
            "custom_domain": None,
            "authorizer": None,
        }

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
        # Tells this deployment's roles apart from another one's of the same keyset.
        self.label = hashlib.sha256(repr(config).encode()).hexdigest()[:12]
        self.register_roles()
        for hook in aws.deployment_hooks:
            hook(self)

    def register_roles(self, list_bucket: Mapping[str, Mapping[str, bool]] | None = None) -> None:
        """Give the signer and keeper roles their own credentials at the endpoint.

        `list_bucket`: role ARN -> bucket -> may it s3:ListBucket without a prefix, as an
        IAM simulation decided (S3 then answers a missing object with 404, else 403).
        """
        decisions = list_bucket or {}
        self._credentials = {
            role: self.aws.register_role(role, label=self.label, list_bucket=decisions.get(role))
            for role in (self.config.signer_role_arn, self.config.keeper_role_arn)
        }

    def deployment(self) -> dict[str, Any]:
        """What an IAM simulation needs: the cdk.json stage and the names used locally."""
        config = self.config
        return {
            "label": self.label,
            "stage": config.cdk_stage(),
            "bucket": config.bucket,
            "signer_role_arn": config.signer_role_arn,
            "keeper_role_arn": config.keeper_role_arn,
            "secret_name": config.secret_name,
        }

    def role_environ(self, role_arn: str) -> dict[str, str]:
        """The credential variables Lambda sets for a function running as `role_arn`."""
        credentials = self._credentials[role_arn]
        return {
            "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
        }

    def role_client(self, service: str, role_arn: str, **options: Any) -> Any:
        """A boto3 client that calls as `role_arn` (one of this deployment's roles)."""
        return self.aws.client(service, **{**self._credentials[role_arn], **options})

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
                not_before_margin=config.policy.not_before_margin,
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
        kms = self.role_client("kms", self.config.signer_role_arn, **kms_options)
        return SignService.create(
            self.signer_env(), kms, self.clock, logger=logger, metrics=metrics
        )

    def keeper_service(
        self,
        trust_factory: TrustFactory = no_trust,
        metrics: MetricsRecorder | None = None,
        logger: Logger | None = None,
        public_base_url: str | None = None,
        **client_options: Any,
    ) -> KeeperService:
        """The keeper function's service over the local endpoint.

        `public_base_url`: where it reads the served JWKS back (a LocalCdn in front of
        the bucket, as CloudFront is on AWS); by default the bucket's own public URL.
        """
        settings = KeeperSettings.from_environ(self.keeper_env())
        if public_base_url is not None:
            settings = replace(settings, public_base_url=public_base_url)
        keeper = self.config.keeper_role_arn
        config = client_options.get("config")
        create_config = CREATE_KEY_CONFIG if config is None else config.merge(CREATE_KEY_CONFIG)
        clients = KeeperClients(
            kms=self.role_client("kms", keeper, **client_options),
            s3=self.role_client("s3", keeper, **client_options),
            sts=self.role_client("sts", keeper, **client_options),
            kms_create=self.role_client(
                "kms", keeper, **{**client_options, "config": create_config}
            ),
            tagging=self.role_client("resourcegroupstaggingapi", keeper, **client_options),
        )

        def as_keeper(settings: KeeperSettings, clock: Clock) -> TrustTarget:
            # The trust target builds its own clients from the environment, as on Lambda,
            # where the environment holds the function role's credentials: so here too.
            with _environ_updated(self.role_environ(keeper)):
                return trust_factory(settings, clock)

        return KeeperService.create(
            settings,
            clients,
            self.clock,
            trust_factory=as_keeper,
            metrics=metrics,
            logger=logger,
        )


@contextmanager
def _environ_updated(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
