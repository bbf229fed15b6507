"""Key tampering: KMS CloudTrail events by anyone but jwtkeys' own roles go to the keeper.

The keeper checks whether the key belongs to its keyset and counts ForeignKeyActivity,
which the `key-tampering` alarm watches. CloudTrail only delivers these events where a
trail logs management events (docs/deploy.md).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from jwtkeys.names import KMS_EVENTS_MADE_BY_KEEPER, KMS_EVENTS_NEVER_MADE_BY_KEEPER

from .constants import KMS_SIGN_EVENT, TAMPERING_RULE_STATE

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


class TamperingRule(Construct):
    """EventBridge rule on CloudTrail's KMS events, including read-only `Sign`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        keeper: lambda_.IFunction,
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
                    keeper,
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
