"""What the live suite's steps share: the plan, the deployer, what the run created."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Resource types the suite lists beside the stack's own (made at run time, not by
# CloudFormation): the keeper's KMS keys and the objects it wrote.
KMS_KEY = "AWS::KMS::Key"
KMS_ALIAS = "AWS::KMS::Alias"
S3_OBJECT = "AWS::S3::Object"
S3_BUCKET = "AWS::S3::Bucket"
LOG_GROUP = "AWS::Logs::LogGroup"
ALARM = "AWS::CloudWatch::Alarm"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type, not a password
STACK = "AWS::CloudFormation::Stack"


@dataclass(frozen=True)
class Plan:
    """The throw-away copy of a stage: its names and what its signer accepts."""

    stage: str
    suffix: str
    stack_name: str
    keyset: str
    issuer: str
    subject: str
    audience: str
    direct_invoke: bool
    max_token_ttl: int


@dataclass(frozen=True)
class Resource:
    """One thing the run created; `retained`: CloudFormation leaves it behind on delete."""

    type: str
    physical_id: str
    retained: bool = False

    def __str__(self) -> str:
        return f"{self.type} {self.physical_id}" + (
            " (retained by the stack)" if self.retained else ""
        )


class Deployer(Protocol):
    """Where the stack lives: CloudFormation through the CDK CLI, or the local endpoint."""

    def plan(self) -> Plan: ...

    def deploy(self) -> Mapping[str, str]:
        """Deploy; the stack's outputs (JwksUrl, SignerFunctionUrl, ...)."""
        ...

    def client(self, service: str) -> Any:
        """A boto3 client of `service` where the stack lives."""
        ...

    def function_url_credentials(self) -> Any:
        """The botocore credentials the Function URL request is signed with."""
        ...

    def stack_resources(self) -> list[Resource]:
        """The stack's own resources (physical ids), retained ones marked."""
        ...

    def destroy(self) -> None:
        """Delete the stack (its retained resources stay, as on CloudFormation)."""
        ...


@dataclass
class LiveContext:
    """The state passed from step to step."""

    deployer: Deployer
    plan: Plan
    outputs: Mapping[str, str] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    created: list[Resource] = field(default_factory=list)
    deployed: bool = False
