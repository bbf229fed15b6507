"""The Lambda defaults every jwtkeys function shares, stated once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from jwtkeys.names import METRIC_NAMESPACE

from .constants import FUNCTIONS_DIR, HANDLER, LAMBDA_ARCHITECTURE, LAMBDA_RUNTIME, LOG_RETENTION
from .nag import acknowledge


@dataclass(frozen=True)
class FunctionSpec:
    """What differs between the functions; everything else is a shared default."""

    code_folder: str
    service_name: str
    description: str
    memory_mb: int
    timeout_seconds: int


def execution_role(scope: Construct, construct_id: str, description: str) -> iam.Role:
    """A role of its own for one function: no managed policies, statements added by name."""
    return iam.Role(
        scope,
        construct_id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )


def python_function(
    scope: Construct,
    spec: FunctionSpec,
    *,
    role: iam.Role,
    layers: Sequence[lambda_.ILayerVersion],
    environment: Mapping[str, str],
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    """An arm64 Python function with JSON logs, active tracing and its own log group.

    Creates `Function` and `LogGroup` under `scope`; the role gets write access to that
    log group only (the managed AWSLambdaBasicExecutionRole would grant every group).
    """
    log_group = logs.LogGroup(
        scope,
        "LogGroup",
        retention=LOG_RETENTION,
        # Logs outlive a `cdk destroy`: they are the record of what the keys did.
        removal_policy=RemovalPolicy.RETAIN,
    )
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        "Function",
        runtime=LAMBDA_RUNTIME,
        architecture=LAMBDA_ARCHITECTURE,
        handler=HANDLER,
        code=lambda_.Code.from_asset(
            str(FUNCTIONS_DIR / spec.code_folder), exclude=["__pycache__", "*.pyc"]
        ),
        layers=list(layers),
        role=role,
        description=spec.description,
        memory_size=spec.memory_mb,
        timeout=Duration.seconds(spec.timeout_seconds),
        tracing=lambda_.Tracing.ACTIVE,
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
        system_log_level_v2=lambda_.SystemLogLevel.WARN,
        log_group=log_group,
        reserved_concurrent_executions=reserved_concurrency,
        environment={
            "POWERTOOLS_SERVICE_NAME": spec.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": METRIC_NAMESPACE,
            **environment,
        },
    )
    acknowledge(
        function,
        "AwsSolutions-L1",
        "Python 3.13, one minor version behind the newest: the layers ship bytecode, which "
        "only the runtime's exact Python can write, and 3.13 is the newest interpreter the "
        "build machines have (supported by Lambda as long as 3.14)",
    )
    return function
