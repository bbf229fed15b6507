"""The API Gateway authorizer: per stage in cdk.json, and attachable to any stack's API."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template as AssertTemplate

from infra.authorizer import HTTP_IDENTITY_SOURCE, REST_TOKEN_PATTERN, JwtAuthorizer
from infra.config import load_stacks
from infra.constants import CONTEXT_KEY, LAMBDA_RUNTIME
from jwtkeys import names
from jwtkeys.errors import ConfigurationError
from jwtkeys.metrics_catalog import AUTHORIZER_SERVICE
from jwtkeys.verify.authorizer import AuthorizerSettings, parse_routes
from tests.infra.conftest import AUTHORIZER, Template, assertion_context, only, resources


def _authorizer_function(template: Template) -> dict[str, Any]:
    _, properties = only(
        template,
        "AWS::Lambda::Function",
        lambda _lid, props: (
            props.get("Handler") == "handler.lambda_handler"
            and props["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME")
            == AUTHORIZER_SERVICE
        ),
    )
    return dict(properties)


def test_a_stage_with_an_authorizer_gets_the_function_configured(dev: Template) -> None:
    properties = _authorizer_function(dev)
    variables = properties["Environment"]["Variables"]
    assert json.loads(variables[names.ENV_AUTHORIZER_ROUTES]) == {
        pattern: {"audience": rule["audience"], "claims": rule.get("claims", {})}
        for pattern, rule in AUTHORIZER["routes"].items()
    }
    assert variables[names.ENV_AUTHORIZER_CACHE_TTL] == "45"
    # A token living longer than the keyset's max_token_ttl was not minted by its signer.
    assert variables[names.ENV_AUTHORIZER_MAX_LIFETIME] == "3600"
    assert variables[names.ENV_ISSUER] == "jwtkeys-dev-client-id"
    # The JWKS the authorizer reads is the one this stack's CDN serves.
    assert "Fn::Join" in variables[names.ENV_AUTHORIZER_JWKS_URL]
    assert properties["Runtime"] == LAMBDA_RUNTIME.name
    assert properties["Architectures"] == ["arm64"]
    assert "AuthorizerFunctionArn" in dev["Outputs"]


def test_the_dashboard_shows_the_authorizer_where_there_is_one(
    dev: Template, prod: Template
) -> None:
    def body(template: Template) -> str:
        _, dashboard = only(template, "AWS::CloudWatch::Dashboard", lambda _lid, _p: True)
        return json.dumps(dashboard["DashboardBody"])

    assert "API authorizer refusals by reason" in body(dev)
    assert "TokensAccepted" in body(dev)
    assert "AuthorizerRefusalRateAlarm" in body(dev)  # its alarm in the alarm status widget
    assert "API authorizer" not in body(prod)


def test_a_stage_without_one_has_none(prod: Template) -> None:
    assert not [
        r
        for r in resources(prod, "AWS::Lambda::Function").values()
        if r["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME")
        == AUTHORIZER_SERVICE
    ]
    assert "AuthorizerFunctionArn" not in prod["Outputs"]


def test_the_authorizer_role_may_only_write_its_logs_and_traces(dev: Template) -> None:
    role_id, _ = only(
        dev,
        "AWS::IAM::Role",
        lambda lid, _props: lid.startswith("AuthorizerRole"),
    )
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(dev, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    actions = {
        action
        for statements in policies
        for statement in statements
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert not any(action.startswith(("kms:", "s3:", "secretsmanager:")) for action in actions)


def test_the_refusal_rate_alarm_watches_the_catalog_metrics(dev: Template) -> None:
    _, alarm = only(
        dev,
        "AWS::CloudWatch::Alarm",
        lambda _lid, props: str(props.get("AlarmName", "")).endswith("authorizer-refusals"),
    )
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    assert any("100 * FILL(refused, 0)" in q.get("Expression", "") for q in queries.values())
    names_watched = {
        q["MetricStat"]["Metric"]["MetricName"] for q in queries.values() if "MetricStat" in q
    }
    assert names_watched == {"TokensAccepted", "TokensRefused"}
    assert alarm["AlarmActions"]
    assert alarm["OKActions"]
    assert "#authorizer-refusals" in alarm["AlarmDescription"]


def test_any_stack_can_attach_it_to_an_http_and_a_rest_api() -> None:
    app = App()
    stack = Stack(app, "OrdersApi")
    layer = lambda_.LayerVersion(
        stack, "Core", code=lambda_.Code.from_asset(str(Path(__file__).parent))
    )
    jwt_authorizer = JwtAuthorizer(
        stack,
        "Authorizer",
        settings=AuthorizerSettings(
            keyset="orders",
            issuer="https://issuer.example",
            jwks_url="https://keys.example.com/.well-known/jwks.json",
            routes=parse_routes({"GET /orders": {"audience": "orders-api"}}, "routes"),
            cache_ttl=30,
        ),
        layers=[layer],
    )
    backend = lambda_.Function(
        stack,
        "Backend",
        runtime=LAMBDA_RUNTIME,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context): return {}"),
    )
    http_api = apigwv2.HttpApi(stack, "HttpApi")
    http_api.add_routes(
        path="/orders",
        methods=[apigwv2.HttpMethod.GET],
        integration=integrations.HttpLambdaIntegration("Orders", backend),
        authorizer=jwt_authorizer.http_authorizer(),
    )
    rest_api = apigateway.RestApi(stack, "RestApi")
    rest_api.root.add_resource("orders").add_method(
        "GET",
        apigateway.LambdaIntegration(backend),
        authorizer=jwt_authorizer.rest_authorizer(stack, "RestAuthorizer"),
    )
    template = dict(AssertTemplate.from_stack(stack).to_json())

    _, http = only(template, "AWS::ApiGatewayV2::Authorizer", lambda _lid, _props: True)
    assert http["AuthorizerType"] == "REQUEST"
    assert http["AuthorizerPayloadFormatVersion"] == "2.0"
    assert http["EnableSimpleResponses"] is True
    assert http["IdentitySource"] == list(HTTP_IDENTITY_SOURCE)
    assert http["AuthorizerResultTtlInSeconds"] == 30
    _, rest = only(template, "AWS::ApiGateway::Authorizer", lambda _lid, _props: True)
    assert rest["Type"] == "TOKEN"
    assert rest["IdentitySource"] == "method.request.header.Authorization"
    assert rest["IdentityValidationExpression"] == REST_TOKEN_PATTERN
    assert rest["AuthorizerResultTtlInSeconds"] == 30
    # API Gateway may invoke the function, for each API.
    permissions = resources(template, "AWS::Lambda::Permission")
    assert (
        sum(
            1
            for p in permissions.values()
            if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
            and "Authorizer" in json.dumps(p["Properties"]["FunctionName"])
        )
        >= 2
    )


@pytest.mark.parametrize(
    ("authorizer", "message"),
    [
        ({"routes": {}}, "route rules"),
        ({"routes": {"*": {"audience": "a"}}, "cache_ttl": 3600}, "max_token_ttl"),
        ({"routes": {"*": {"audience": "a"}}, "cache_ttl": -1}, "cache_ttl"),
        ({"routes": {"*": {"audience": "a"}}, "ttl": 5}, "routes"),
    ],
)
def test_a_bad_authorizer_setting_fails_synth(authorizer: dict[str, Any], message: str) -> None:
    context = copy.deepcopy(assertion_context())
    context[CONTEXT_KEY]["stacks"]["dev"]["authorizer"] = authorizer
    with pytest.raises(ConfigurationError, match=message):
        load_stacks(context[CONTEXT_KEY])
