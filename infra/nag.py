"""cdk-nag's AwsSolutions checks, and the one way this project acknowledges a finding."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, CfnElement, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# How cdk-nag spells kms_permissions.key_arns() in its findings.
KMS_KEY_ARN_FINDING = "arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*"


def add_nag_checks(app: App) -> None:
    """Run AwsSolutions at synth; an unacknowledged finding fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding (`AwsSolutions-IAM5[Resource::*]`-style ids) on `construct`."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of `construct`'s resource, as cdk-nag's findings name it."""
    resource = construct.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return str(Stack.of(construct).resolve(resource.logical_id))
