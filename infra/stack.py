"""One stack per keyset: it only composes the constructs, each owning one concern."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, CfnOutput, Environment, Stack, Tags
from constructs import Construct

from jwtkeys.names import JWKS_OBJECT_KEY

from .authorizer import JwtAuthorizer
from .config import KeysetConfig, load_stacks, select_stacks
from .constants import CONTEXT_KEY, STACK_TAG, STAGE_CONTEXT_KEY, SUFFIX_CONTEXT_KEY
from .dashboard import Dashboard
from .jwks_distribution import JwksDistribution
from .keeper import Keeper
from .layers import Layers
from .monitoring import Monitoring
from .nag import add_nag_checks
from .signer import Signer
from .tampering import TamperingInspection


class KeysetStack(Stack):
    """Everything one keyset needs on AWS: JWKS home, signer, keeper, monitoring."""

    def __init__(self, scope: Construct, config: KeysetConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            config.stack_name,
            stack_name=config.stack_name,
            description=f"jwtkeys keyset {config.keyset} ({config.stage})",
            env=Environment(account=config.account, region=config.region),
            **kwargs,
        )
        self.config = config
        # Not the runtime's `jwtkeys:keyset` tag: that one marks signing keys, and the
        # alarm topic's KMS key must never look like one of them.
        Tags.of(self).add(STACK_TAG, config.keyset)
        layers = Layers(self, "Layers")
        self.jwks = JwksDistribution(
            self,
            "Jwks",
            jwks_max_age=config.policy.jwks_max_age,
            custom_domain=config.custom_domain,
        )
        self.signer = Signer(self, "Signer", config=config, layers=layers.all)
        self.keeper = Keeper(
            self,
            "Keeper",
            config=config,
            layers=layers.all,
            jwks=self.jwks,
            signer_role=self.signer.role,
        )
        self.inspection = TamperingInspection(
            self,
            "KeyTampering",
            settings=self.keeper.settings,
            layers=layers.all,
            bucket=self.jwks.bucket,
            keeper_role=self.keeper.role,
            signer_role=self.signer.role,
        )
        # The inspector reads the registry under state/ too (and writes nothing).
        self.jwks.reserve_for_keeper(
            self.keeper.role, [*config.operator_role_arns, self.inspection.role.role_arn]
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            signer=self.signer.function,
            keeper=self.keeper.function,
            inspection=self.inspection,
            keeper_failure_queue=self.keeper.failure_queue,
        )
        self.authorizer = self._authorizer(layers)
        Dashboard(
            self,
            "Dashboard",
            keyset=config.keyset,
            tick_interval=config.policy.tick_interval,
            rotation_period=config.policy.rotation_period,
            signer=self.signer.function,
            keeper=self.keeper.function,
            alarms=[
                *self.monitoring.alarms,
                *([self.authorizer.refusal_alarm] if self.authorizer else []),
            ],
            servicenow=config.servicenow is not None,
            authorizer=self.authorizer is not None,
        )
        self._outputs()

    def _authorizer(self, layers: Layers) -> JwtAuthorizer | None:
        config = self.config
        settings = config.authorizer_settings(f"{self.jwks.public_base_url}/{JWKS_OBJECT_KEY}")
        if settings is None:
            return None
        return JwtAuthorizer(
            self,
            "Authorizer",
            settings=settings,
            layers=layers.all,
            alarm_topic=self.monitoring.topic,
            runbook_url=config.runbook_url,
        )

    def _outputs(self) -> None:
        # Stable names: the runbook, the deploy guide and the CLI read these.
        outputs = {
            "JwksUrl": f"{self.jwks.public_base_url}/{JWKS_OBJECT_KEY}",
            "BucketName": self.jwks.bucket.bucket_name,
            "DistributionId": self.jwks.distribution.distribution_id,
            # With a custom domain, its DNS record (CNAME or alias) points here.
            "DistributionDomainName": self.jwks.distribution.distribution_domain_name,
            "SignerFunctionName": self.signer.function.function_name,
            "SignerFunctionUrl": self.signer.url.url,
            "SignerRoleArn": self.signer.role.role_arn,
            "KeeperFunctionName": self.keeper.function.function_name,
            "KeeperRoleArn": self.keeper.role.role_arn,
            "KeeperFailureQueueUrl": self.keeper.failure_queue.queue_url,
            "AlarmTopicArn": self.monitoring.topic.topic_arn,
        }
        if self.signer.invoke_guard is not None:
            # Same-account stages: the SCP / permissions-boundary statement (invoke_guard.py).
            outputs["SignerInvokeGuardStatement"] = self.signer.invoke_guard
        if self.authorizer is not None:
            outputs["AuthorizerFunctionArn"] = self.authorizer.function.function_arn
        if self.keeper.secret:
            outputs["ServiceNowSecretArn"] = self.keeper.secret.secret_arn
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


def build_app(app: App) -> list[KeysetStack]:
    """Add one stack per configured keyset, and cdk-nag, to `app`."""
    configs = select_stacks(
        load_stacks(app.node.try_get_context(CONTEXT_KEY)),
        _optional_context(app, STAGE_CONTEXT_KEY),
        _optional_context(app, SUFFIX_CONTEXT_KEY),
    )
    stacks = [KeysetStack(app, config) for config in configs]
    add_nag_checks(app)
    return stacks


def _optional_context(app: App, key: str) -> str | None:
    value = app.node.try_get_context(key)
    return None if value is None or value == "" else str(value)
