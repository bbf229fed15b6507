"""The keeper: the scheduled reconciler that rotates, publishes, syncs and audits."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jwtkeys.names import JWKS_OBJECT_KEY, PUBLIC_PREFIX, STATE_PREFIX, alias_prefix
from jwtkeys.settings import KeeperSettings, ServiceNowSettings

from .config import KeysetConfig, ServiceNowConfig
from .constants import (
    FAILURE_QUEUE_RETENTION_DAYS,
    KEEPER_ASYNC_RETRY_ATTEMPTS,
    KEEPER_MEMORY_MB,
    KEEPER_SERVICE_NAME,
    KEEPER_TIMEOUT_SECONDS,
    TICK_EVENT,
)
from .jwks_distribution import JwksDistribution
from .kms_permissions import keeper_kms_statements
from .lambda_defaults import FunctionSpec, execution_role, python_function
from .nag import KMS_KEY_ARN_FINDING, acknowledge, logical_id

KEEPER_SPEC = FunctionSpec(
    code_folder="keeper",
    service_name=KEEPER_SERVICE_NAME,
    description="jwtkeys: rotates keys, publishes the JWKS, syncs ServiceNow, audits",
    memory_mb=KEEPER_MEMORY_MB,
    timeout_seconds=KEEPER_TIMEOUT_SECONDS,
)


class Keeper(Construct):
    """Keeper function (one at a time), its schedule, failure queue and secret."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KeysetConfig,
        layers: Sequence[lambda_.ILayerVersion],
        jwks: JwksDistribution,
        signer_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = execution_role(self, "Role", f"jwtkeys {config.keyset}: keeper")
        for statement in keeper_kms_statements(config.keyset, config.policy):
            self.role.add_to_policy(statement)
        self._grant_bucket_prefixes(jwks)
        jwks.distribution.grant_create_invalidation(self.role)
        self.secret = (
            self._servicenow_secret(config.keyset, config.servicenow) if config.servicenow else None
        )
        self.settings = settings = KeeperSettings(
            keyset=config.keyset,
            issuer=config.issuer,
            rotation=config.policy,
            bucket=jwks.bucket.bucket_name,
            public_base_url=jwks.public_base_url,
            distribution_id=jwks.distribution.distribution_id,
            signer_role_arn=signer_role.role_arn,
            keeper_role_arn=self.role.role_arn,
            servicenow=self._servicenow_settings(config.servicenow, jwks),
        )
        self.function = python_function(
            self,
            KEEPER_SPEC,
            role=self.role,
            layers=layers,
            environment=settings.to_environ(),
            # The lease serialises ticks; a reservation is opt-in (docs/deploy.md).
            reserved_concurrency=config.keeper_reserved_concurrency,
        )
        self.failure_queue = self._failure_queue()
        self.function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=KEEPER_ASYNC_RETRY_ATTEMPTS,
            # A tick older than one interval is superseded by the next one anyway.
            max_event_age=Duration.seconds(max(60, config.policy.tick_interval)),
        )
        self.schedule = self._tick_schedule(config.policy.tick_interval)
        self._acknowledge_findings(config.keyset, jwks)

    def _servicenow_settings(
        self, servicenow: ServiceNowConfig | None, jwks: JwksDistribution
    ) -> ServiceNowSettings | None:
        if servicenow is None or self.secret is None:
            return None
        jwks_url = f"{jwks.public_base_url}/{JWKS_OBJECT_KEY}"
        return ServiceNowSettings(
            instance_url=servicenow.instance,
            # An operator's secret as they named it (a name-based import only knows a
            # partial ARN, which GetSecretValue should not be given).
            secret_id=servicenow.secret or self.secret.secret_arn,
            client_id=servicenow.client_id,
            canary_subject=servicenow.canary_subject,
            ca_bundle=None,
            revoke_sessions=True,
            jwks_url=jwks_url if servicenow.trust == "jwks_url" else None,
        )

    def _grant_bucket_prefixes(self, jwks: JwksDistribution) -> None:
        prefixes = (PUBLIC_PREFIX, STATE_PREFIX)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWriteOwnPrefixes",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[jwks.bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes],
            )
        )
        # S3 answers a read of a missing object with 404 only to a caller that may
        # s3:ListBucket the bucket as evaluated for that read, which has no s3:prefix;
        # a prefix condition makes the first tick's read of state/ AccessDenied. The
        # bucket holds only these two prefixes, so listing all of it reveals nothing more.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListBucketSoMissingObjectsAre404",
                actions=["s3:ListBucket"],
                resources=[jwks.bucket.bucket_arn],
            )
        )

    def _servicenow_secret(
        self, keyset: str, servicenow: ServiceNowConfig
    ) -> secretsmanager.ISecret:
        if servicenow.secret is not None:
            return self._operator_secret(servicenow.secret)
        # No secret_name: CloudFormation names it, so a redeploy after `cdk destroy` does
        # not collide with the deleted one during its recovery window.
        secret = secretsmanager.Secret(
            self,
            "ServiceNowSecret",
            description=f"jwtkeys {keyset}: ServiceNow credentials the keeper uses",
        )
        secret.grant_read(self.role)
        # Readable by the keeper alone: even administrators can only replace the value.
        secret.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheKeeperReads",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["secretsmanager:GetSecretValue"],
                resources=["*"],
                conditions={"StringNotEquals": {"aws:PrincipalArn": self.role.role_arn}},
            )
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "The value is a ServiceNow credential issued by the instance; it is rotated"
            " there by its owner and put here with put-secret-value (docs/runbook.md).",
        )
        return secret

    def _operator_secret(self, name_or_arn: str) -> secretsmanager.ISecret:
        # The operator owns this secret and its resource policy (docs/deploy.md says
        # which statement keeps it readable by the keeper alone); the stack only reads it.
        if name_or_arn.startswith("arn:"):
            secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "ServiceNowSecret", name_or_arn
            )
        else:
            secret = secretsmanager.Secret.from_secret_name_v2(
                self, "ServiceNowSecret", name_or_arn
            )
        secret.grant_read(self.role)
        return secret

    def _failure_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "FailedTicks",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(FAILURE_QUEUE_RETENTION_DAYS),
        )
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter destination of failed keeper invocations.",
        )
        return queue

    def _tick_schedule(self, tick_interval: int) -> scheduler.Schedule:
        # Our own role, next to the schedule, instead of one CDK would create per stack.
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler: invoke the jwtkeys keeper",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.function)}.Arn>:*]",
            "CDK's Lambda grant names the function and its versions; nothing else.",
        )
        return scheduler.Schedule(
            self,
            "Tick",
            description="jwtkeys keeper tick: reconcile keys, JWKS and ServiceNow",
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(tick_interval // 60)),
            target=scheduler_targets.LambdaInvoke(
                self.function,
                input=scheduler.ScheduleTargetInput.from_object(TICK_EVENT),
                # A missed tick is not retried: the next one does the same work.
                retry_attempts=0,
                max_event_age=Duration.seconds(max(60, tick_interval)),
                dead_letter_queue=self.failure_queue,
                role=role,
            ),
        )

    def _acknowledge_findings(self, keyset: str, jwks: JwksDistribution) -> None:
        role = self.role
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "kms:CreateKey (bound by aws:RequestTag, aws:TagKeys and the key spec), the"
            " listing calls and X-Ray accept only '*'.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{KMS_KEY_ARN_FINDING}]",
            "Keys are created at run time; every statement on key/* carries the"
            " aws:ResourceTag/jwtkeys:keyset (or aws:RequestTag) condition of this keyset.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:"
            f"<AWS::AccountId>:{alias_prefix(keyset)}*]",
            "Aliases under the keyset's own prefix only: the keeper creates and moves them.",
        )
        bucket = logical_id(jwks.bucket)
        for prefix in (PUBLIC_PREFIX, STATE_PREFIX):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{prefix}*]",
                f"Objects under {prefix} only: the keeper owns that prefix's documents.",
            )
