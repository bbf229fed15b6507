"""Key tampering: KMS CloudTrail events by anyone but jwtkeys' own roles go to an inspector.

The rule matches every KMS management event and every foreign `Sign` in the account,
other stages' signing traffic included: far too much to share the keeper's time with
its ticks. A function of its own (functions/inspector) checks whether the key belongs
to the keyset, counts every event (KmsEventsInspected) and the foreign ones
(ForeignKeyActivity, the `key-tampering` alarm). An event it could not be given or
failed to judge lands in its failure queue, and is alarmed. CloudTrail only delivers
these events where a trail logs management events (docs/deploy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jwtkeys.keeper.state_store import REGISTRY_KEY
from jwtkeys.names import KMS_EVENTS_MADE_BY_KEEPER, KMS_EVENTS_NEVER_MADE_BY_KEEPER
from jwtkeys.settings import KeeperSettings

from .constants import (
    FAILURE_QUEUE_RETENTION_DAYS,
    INSPECTOR_MEMORY_MB,
    INSPECTOR_SERVICE_NAME,
    INSPECTOR_TIMEOUT_SECONDS,
    KMS_SIGN_EVENT,
    TAMPERING_RULE_STATE,
)
from .lambda_defaults import FunctionSpec, execution_role, python_function
from .nag import acknowledge, logical_id

INSPECTOR_SPEC = FunctionSpec(
    code_folder="inspector",
    service_name=INSPECTOR_SERVICE_NAME,
    description="jwtkeys: judges KMS CloudTrail events against the keyset's keys",
    memory_mb=INSPECTOR_MEMORY_MB,
    timeout_seconds=INSPECTOR_TIMEOUT_SECONDS,
)

# A forwarded event older than this says nothing a fresh audit would not.
_MAX_EVENT_AGE = Duration.hours(1)
_RETRY_ATTEMPTS = 4


def foreign_caller_branches(event_names: list[str], exempt_role_arns: list[str]) -> list[Any]:
    """Pattern branches matching `event_names` by any principal but the exempt roles.

    Role sessions name their role in userIdentity.sessionContext.sessionIssuer.arn;
    other principals (IAM users, the root user, services) have no such field, so a
    second branch matches them by userIdentity.type instead.
    """
    return [
        {
            "eventName": event_names,
            "userIdentity": {
                "sessionContext": {"sessionIssuer": {"arn": [{"anything-but": exempt_role_arns}]}}
            },
        },
        {
            "eventName": event_names,
            "userIdentity": {"type": [{"anything-but": ["AssumedRole"]}]},
        },
    ]


def tampering_pattern(keeper_role_arn: str, signer_role_arn: str) -> dict[str, Any]:
    """The `detail` of the rule's pattern: key changes by non-keepers, Sign by strangers."""
    return {
        "eventSource": ["kms.amazonaws.com"],
        "$or": [
            # The keeper never makes these: whoever does is foreign, the keeper included.
            {"eventName": list(KMS_EVENTS_NEVER_MADE_BY_KEEPER)},
            *foreign_caller_branches(list(KMS_EVENTS_MADE_BY_KEEPER), [keeper_role_arn]),
            # The keeper signs too: canaries and certificates.
            *foreign_caller_branches([KMS_SIGN_EVENT], [keeper_role_arn, signer_role_arn]),
        ],
    }


class TamperingInspection(Construct):
    """The inspector function, its failure queue, and the rule that feeds it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: KeeperSettings,
        layers: Sequence[lambda_.ILayerVersion],
        bucket: s3.IBucket,
        keeper_role: iam.IRole,
        signer_role: iam.IRole,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = execution_role(self, "Role", f"jwtkeys {settings.keyset}: tampering inspector")
        # The registry names the keyset's keys; nothing else is read. ListBucket lets a
        # missing registry (before the first tick) answer 404 rather than 403.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadRegistry",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(REGISTRY_KEY)],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListBucketForNotFound",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
            )
        )
        self.function = python_function(
            self,
            INSPECTOR_SPEC,
            role=self.role,
            layers=layers,
            # The keeper's own settings, without ServiceNow: the inspector never syncs.
            environment=replace(settings, servicenow=None).to_environ(),
        )
        self.failure_queue = sqs.Queue(
            self,
            "FailedInspections",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(FAILURE_QUEUE_RETENTION_DAYS),
        )
        acknowledge(
            self.failure_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter destination of failed inspections.",
        )
        # An event the function failed to judge (after Lambda's retries) is kept here.
        self.function.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.failure_queue),
            retry_attempts=2,
            max_event_age=_MAX_EVENT_AGE,
        )
        self.rule = TamperingRule(
            self,
            "Rule",
            inspector=self.function,
            keeper_role=keeper_role,
            signer_role=signer_role,
            dead_letter_queue=self.failure_queue,
        ).rule
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{REGISTRY_KEY}]",
            "The registry object only.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords accept only '*'.",
        )


class TamperingRule(Construct):
    """EventBridge rule on CloudTrail's KMS events, including read-only `Sign`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        inspector: lambda_.IFunction,
        keeper_role: iam.IRole,
        signer_role: iam.IRole,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="jwtkeys: KMS key changes and Sign calls by foreign principals",
            event_pattern=events.EventPattern(
                source=["aws.kms"],
                detail_type=["AWS API Call via CloudTrail"],
                detail=tampering_pattern(keeper_role.role_arn, signer_role.role_arn),
            ),
            targets=[
                targets.LambdaFunction(
                    inspector,
                    dead_letter_queue=dead_letter_queue,
                    max_event_age=_MAX_EVENT_AGE,
                    retry_attempts=_RETRY_ATTEMPTS,
                )
            ],
        )
        # Sign is a read-only management event: the plain ENABLED state never sees it,
        # and the L2 Rule cannot express this state.
        cfn_rule = self.rule.node.default_child
        assert isinstance(cfn_rule, events.CfnRule)
        cfn_rule.state = TAMPERING_RULE_STATE
