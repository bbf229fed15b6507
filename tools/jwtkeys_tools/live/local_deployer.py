"""The dry run's deployer: the stage's copy on the local endpoint instead of CloudFormation.

It builds what the stack would hold with the pieces `jwtkeys local up` uses (LocalStack on
the moto server), fronts the bucket with the local CDN as CloudFront would, serves both
functions through LocalFunctions, and creates the stack's retained resources (the JWKS
bucket, one log group per function) and alarms on the endpoint, so the suite's inventory,
purge and leftover checks meet real resources. What it does not reproduce: CloudFormation
itself, IAM (the endpoint does not enforce it) and ServiceNow (the keeper runs without a
trust target here).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any, cast

import boto3
from aws_lambda_powertools import Logger
from botocore.credentials import Credentials

from infra.config import KeysetConfig
from jwtkeys import metrics_catalog, names
from jwtkeys.clock import SystemClock
from jwtkeys.metrics_catalog import KEEPER_SERVICE, SIGNER_SERVICE
from jwtkeys_tools.cli.local_output import FunctionOutput
from jwtkeys_tools.live.context import ALARM, LOG_GROUP, S3_BUCKET, Plan, Resource
from jwtkeys_tools.live.local_functions import LocalFunctions
from jwtkeys_tools.live.stage import plan_for
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.cdn import LocalCdn
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT, LocalKeysetConfig, LocalStack

# The identity the suite signs its Function URL request with, as IAM would resolve it.
CALLER_ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jwtkeys-live-smoke"
CALLER_SESSION_ARN = f"arn:aws:sts::{LOCAL_ACCOUNT}:assumed-role/jwtkeys-live-smoke/suite"
_CALLER = Credentials("AKIALIVESMOKESUITE00", "live-smoke-secret")


class LocalDeployer:
    """Deploys the suffixed stage on `aws`; `stop()` ends the CDN and function servers."""

    def __init__(self, aws: LocalAws, config: KeysetConfig, suffix: str) -> None:
        self._aws = aws
        self._config = config
        self._suffix = suffix
        self._plan = plan_for(config, suffix)
        self._functions: LocalFunctions | None = None
        self._cdn: LocalCdn | None = None
        self._resources: list[Resource] = []

    def plan(self) -> Plan:
        return self._plan

    def deploy(self) -> Mapping[str, str]:
        plan = self._plan
        clock = SystemClock()
        stack = LocalStack(
            self._aws,
            LocalKeysetConfig(
                keyset=plan.keyset,
                issuer=plan.issuer,
                policy=self._config.policy,
                allowed_subjects=self._config.allowed_subjects,
                allowed_audiences=self._config.allowed_audiences,
                default_ttl=self._config.default_ttl,
                # On AWS the stage's function_url_callers must name the suite's role.
                caller_rules={
                    CALLER_ROLE_ARN: {"subjects": [plan.subject], "audiences": [plan.audience]}
                },
                direct_invoke_claims={} if plan.direct_invoke else None,
            ),
            clock,
        )
        stack.create_bucket()
        self._resources.append(Resource(S3_BUCKET, stack.config.bucket, retained=True))
        signer, keeper = f"jwtkeys-{plan.keyset}-sign", f"jwtkeys-{plan.keyset}-keeper"
        logs = self._aws.client("logs")
        for function in (signer, keeper):
            group = f"/aws/lambda/{function}"
            logs.create_log_group(logGroupName=group)
            self._resources.append(Resource(LOG_GROUP, group, retained=True))
        self._create_alarms()
        # The functions' logs and metrics go to stderr (CloudWatch's place); stdout keeps
        # the suite's PASS/FAIL lines.
        output = FunctionOutput(show=True, terminal=sys.stderr)
        stream = cast("IO[str]", output)
        sign_service = stack.sign_service(
            metrics=output.metrics(SIGNER_SERVICE, plan.keyset),
            logger=Logger(service="jwtkeys-live-signer", stream=stream),
        )
        keeper_service = stack.keeper_service(
            metrics=output.metrics(KEEPER_SERVICE, plan.keyset),
            logger=Logger(service="jwtkeys-live-keeper", stream=stream),
        )
        self._functions = LocalFunctions(
            handlers={signer: sign_service.handle, keeper: keeper_service.handle},
            url_handlers={signer: sign_service.handle},
            caller=_CALLER,
            caller_arn=CALLER_SESSION_ARN,
            region=self._aws.region,
        ).start()
        self._cdn = LocalCdn(stack.public_base_url, clock).start()
        return {
            "JwksUrl": f"{self._cdn.url}/{names.JWKS_OBJECT_KEY}",
            "BucketName": stack.config.bucket,
            "SignerFunctionName": signer,
            "SignerFunctionUrl": self._functions.function_url(signer),
            "KeeperFunctionName": keeper,
        }

    def _create_alarms(self) -> None:
        # The local stand-in for the stack's alarms: same naming rule, real metrics.
        cloudwatch = self._aws.client("cloudwatch")
        for anchor, metric in (
            ("rotation-failing", metrics_catalog.ROTATION_FAILURES),
            ("signing-failing", metrics_catalog.SIGNING_FAILURES),
        ):
            name = f"jwtkeys-{self._plan.keyset}-{anchor}"
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                Namespace=metric.namespace,
                MetricName=metric.name,
                Dimensions=[
                    {"Name": "keyset", "Value": self._plan.keyset},
                    {"Name": "service", "Value": metric.service},
                ],
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="notBreaching",
            )
            self._resources.append(Resource(ALARM, name))

    def client(self, service: str) -> Any:
        if service == "lambda":
            functions = self._functions
            return boto3.client(
                "lambda",
                endpoint_url=functions.endpoint_url if functions else self._aws.endpoint_url,
                region_name=self._aws.region,
                aws_access_key_id=_CALLER.access_key,
                aws_secret_access_key=_CALLER.secret_key,
            )
        return self._aws.client(service)

    def function_url_credentials(self) -> Credentials:
        return _CALLER

    def stack_resources(self) -> list[Resource]:
        return list(self._resources)

    def destroy(self) -> None:
        # What CloudFormation deletes: every resource it does not retain.
        cloudwatch = self._aws.client("cloudwatch")
        alarms = [r.physical_id for r in self._resources if r.type == ALARM and not r.retained]
        if alarms:
            cloudwatch.delete_alarms(AlarmNames=alarms)
        self.stop()

    def stop(self) -> None:
        if self._functions is not None:
            self._functions.stop()
            self._functions = None
        if self._cdn is not None:
            self._cdn.stop()
            self._cdn = None
