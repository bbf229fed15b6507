"""The signing function: its role, its Function URL, and who may invoke it how."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Aws, CfnRule, CfnRuleAssertion, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from jwtkeys.signer.rules import principal_account

from .config import DEDICATED_SIGNER_ACCOUNT, KeysetConfig
from .constants import SIGNER_MEMORY_MB, SIGNER_SERVICE_NAME, SIGNER_TIMEOUT_SECONDS
from .invoke_guard import DOCS_FILE, invoke_guard_statement
from .kms_permissions import signer_statements
from .lambda_defaults import FunctionSpec, execution_role, python_function
from .nag import KMS_KEY_ARN_FINDING, acknowledge

SIGNER_SPEC = FunctionSpec(
    code_folder="sign",
    service_name=SIGNER_SERVICE_NAME,
    description="jwtkeys: signs JWTs with the keyset's current KMS key",
    memory_mb=SIGNER_MEMORY_MB,
    timeout_seconds=SIGNER_TIMEOUT_SECONDS,
)


class Signer(Construct):
    """Signing function with an AWS_IAM Function URL; callers granted per config."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: KeysetConfig,
        layers: Sequence[lambda_.ILayerVersion],
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = execution_role(self, "Role", f"jwtkeys {config.keyset}: signing function")
        for statement in signer_statements(config.keyset, config.policy):
            self.role.add_to_policy(statement)
        self.function = python_function(
            self,
            SIGNER_SPEC,
            role=self.role,
            layers=layers,
            environment=config.signer_settings().to_environ(),
        )
        self.url = self.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        self._grant_direct_invoke(config.direct_invoke_principals)
        self._grant_function_url(sorted(config.function_url_callers))
        self.invoke_guard: str | None = None
        if config.layout == DEDICATED_SIGNER_ACCOUNT:
            self._keep_callers_out(config)
        else:
            self.invoke_guard = self._invoke_guard(config)
        self._acknowledge_findings()

    def _invoke_guard(self, config: KeysetConfig) -> str:
        # Same account: the per-caller rules hold only under this SCP/boundary statement.
        statement = invoke_guard_statement(
            self.function.function_arn, config.direct_invoke_principals
        )
        Annotations.of(self).add_warning_v2(
            "jwtkeys:signer-same-account",
            f"stage {config.stage!r} keeps the signer in its callers' account: per-caller rules"
            " are only as strong as the SignerInvokeGuardStatement output (also"
            f" {DOCS_FILE}), attached as an SCP or a permissions boundary to every principal"
            " that could invoke the signer. Without it, any principal allowed"
            " lambda:InvokeFunction can forge a Function URL event naming any caller."
            " Production: layout dedicated_signer_account (docs/deploy.md).",
        )
        return Stack.of(self).to_json_string(statement)

    def _keep_callers_out(self, config: KeysetConfig) -> None:
        # Dedicated signer account: a caller inside it could invoke directly with an
        # identity policy alone; refuse to deploy into an account that holds one.
        accounts = sorted({principal_account(arn) or "" for arn in config.function_url_callers})
        if not accounts:
            return
        CfnRule(
            self,
            "CallersOutsideSignerAccount",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_not(Fn.condition_contains(accounts, Aws.ACCOUNT_ID)),
                    assert_description="layout dedicated_signer_account: no Function URL caller"
                    " may be in the account the signer is deployed to",
                )
            ],
        )

    def _grant_direct_invoke(self, principals: Sequence[str]) -> None:
        # A direct invoke carries no caller identity: only the keyset-wide allowlists
        # apply, and such a principal could hand over a forged Function URL event too,
        # so only principals trusted with every caller's rights get it (config refuses it
        # unless the stage turns the direct-invoke path on).
        for index, arn in enumerate(principals):
            self.function.add_permission(
                f"DirectInvoke{index}",
                principal=iam.ArnPrincipal(arn),
                action="lambda:InvokeFunction",
            )

    def _grant_function_url(self, callers: Sequence[str]) -> None:
        # Both permissions are needed to call a Function URL; the InvokeFunction one
        # holds only through the URL, so a caller cannot skip its per-caller rules by
        # invoking the function directly.
        for index, arn in enumerate(callers):
            self.function.add_permission(
                f"UrlInvoke{index}",
                principal=iam.ArnPrincipal(arn),
                action="lambda:InvokeFunctionUrl",
                function_url_auth_type=lambda_.FunctionUrlAuthType.AWS_IAM,
            )
            self.function.add_permission(
                f"UrlInvokeFunction{index}",
                principal=iam.ArnPrincipal(arn),
                action="lambda:InvokeFunction",
                invoked_via_function_url=True,
            )

    def _acknowledge_findings(self) -> None:
        role = self.role
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords accept only '*'.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{KMS_KEY_ARN_FINDING}]",
            "Keys are created at run time by the keeper; every statement on key/* carries"
            " the aws:ResourceTag/jwtkeys:keyset condition binding it to this keyset.",
        )
