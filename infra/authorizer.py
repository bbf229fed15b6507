"""The API Gateway authorizer: a function any stack can put in front of its API.

`JwtAuthorizer` owns the function, its role and its refusal-rate alarm; its
`http_authorizer()` and `rest_authorizer()` give the authorizer objects an HTTP API
route or a REST API method takes as `authorizer=`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from jwtkeys import metrics_catalog as catalog
from jwtkeys.verify.authorizer import AuthorizerSettings

from .constants import (
    AUTHORIZER_MEMORY_MB,
    AUTHORIZER_MIN_REQUESTS_FOR_RATE,
    AUTHORIZER_REFUSAL_RATE_PERCENT,
    AUTHORIZER_SERVICE_NAME,
    AUTHORIZER_TIMEOUT_SECONDS,
    DEFAULT_RUNBOOK_URL,
    SIGNER_ALARM_PERIOD_SECONDS,
)
from .lambda_defaults import FunctionSpec, execution_role, python_function
from .metrics import CatalogMetrics
from .nag import acknowledge

AUTHORIZER_SPEC = FunctionSpec(
    code_folder="authorizer",
    service_name=AUTHORIZER_SERVICE_NAME,
    description="jwtkeys: API Gateway authorizer over the keyset's published JWKS",
    memory_mb=AUTHORIZER_MEMORY_MB,
    timeout_seconds=AUTHORIZER_TIMEOUT_SECONDS,
)
# The token, and for HTTP APIs the route: API Gateway caches a decision per identity
# source, and a decision for one route's audience must never answer for another route.
HTTP_IDENTITY_SOURCE = ("$request.header.Authorization", "$context.routeKey")
REST_IDENTITY_SOURCE = "method.request.header.Authorization"
# API Gateway answers 401 itself, without invoking the function, for anything else.
REST_TOKEN_PATTERN = r"^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"  # noqa: S105 - a pattern
REFUSAL_ALARM_ANCHOR = "authorizer-refusals"


class JwtAuthorizer(Construct):
    """The authorizer function, its role (logs only) and its refusal-rate alarm."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: AuthorizerSettings,
        layers: Sequence[lambda_.ILayerVersion],
        alarm_topic: sns.ITopic | None = None,
        runbook_url: str = DEFAULT_RUNBOOK_URL,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.role = execution_role(
            self, "Role", f"jwtkeys {settings.keyset}: API Gateway authorizer"
        )
        self.function = python_function(
            self,
            AUTHORIZER_SPEC,
            role=self.role,
            layers=layers,
            environment=settings.to_environ(),
        )
        self.refusal_alarm = self._refusal_alarm(runbook_url)
        if alarm_topic is not None:
            action = cloudwatch_actions.SnsAction(alarm_topic)
            self.refusal_alarm.add_alarm_action(action)
            self.refusal_alarm.add_ok_action(action)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords accept only '*'.",
        )

    def http_authorizer(self, name: str = "jwtkeys") -> authorizers.HttpLambdaAuthorizer:
        """For HTTP API routes: payload 2.0, simple responses, cached per token and route."""
        return authorizers.HttpLambdaAuthorizer(
            f"{name}-authorizer",
            self.function,
            authorizer_name=name,
            identity_source=list(HTTP_IDENTITY_SOURCE),
            response_types=[authorizers.HttpLambdaResponseType.SIMPLE],
            results_cache_ttl=Duration.seconds(self.settings.cache_ttl),
        )

    def rest_authorizer(self, scope: Construct, construct_id: str) -> apigateway.TokenAuthorizer:
        """For REST API methods: a TOKEN authorizer on the Authorization header."""
        return apigateway.TokenAuthorizer(
            scope,
            construct_id,
            handler=self.function,
            identity_source=REST_IDENTITY_SOURCE,
            validation_regex=REST_TOKEN_PATTERN,
            results_cache_ttl=Duration.seconds(self.settings.cache_ttl),
        )

    def _refusal_alarm(self, runbook_url: str) -> cloudwatch.Alarm:
        metrics = CatalogMetrics(self.settings.keyset)
        period = SIGNER_ALARM_PERIOD_SECONDS
        rate = cloudwatch.MathExpression(
            # A handful of requests is no rate: below the floor, the alarm stays quiet.
            expression=(
                f"IF(FILL(accepted, 0) + FILL(refused, 0) >= {AUTHORIZER_MIN_REQUESTS_FOR_RATE},"
                " 100 * FILL(refused, 0) / (FILL(accepted, 0) + FILL(refused, 0)), 0)"
            ),
            using_metrics={
                "accepted": metrics.metric(catalog.AUTHORIZER_ACCEPTED, "Sum", period),
                "refused": metrics.metric(catalog.AUTHORIZER_REFUSED, "Sum", period),
            },
            label="Authorizer refusal rate (%)",
            period=Duration.seconds(period),
        )
        return cloudwatch.Alarm(
            self,
            "RefusalRateAlarm",
            alarm_name=f"jwtkeys-{self.settings.keyset}-{REFUSAL_ALARM_ANCHOR}",
            alarm_description=(
                f"More than {AUTHORIZER_REFUSAL_RATE_PERCENT}% of tokens presented to the"
                f" authorizer were refused. Runbook: {runbook_url}#{REFUSAL_ALARM_ANCHOR}"
            ),
            metric=rate,
            threshold=AUTHORIZER_REFUSAL_RATE_PERCENT,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
