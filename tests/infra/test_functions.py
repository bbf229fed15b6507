"""Signing function and keeper: Lambda defaults, environment, Function URL, invokers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import load_stacks
from infra.constants import CONTEXT_KEY
from infra.layers import find_interpreter
from jwtkeys import names
from jwtkeys.metrics_catalog import KEEPER_SERVICE, SIGNER_SERVICE
from jwtkeys.settings import KeeperSettings, SignerSettings
from tests.infra.conftest import (
    DIRECT_CALLER,
    URL_CALLER,
    URL_CALLER_RULE,
    Template,
    assertion_context,
    logical_id_starting,
    only,
    resources,
)

RUNTIME_PYTHON = "python3.13"


def _function(template: Template, prefix: str) -> tuple[str, dict[str, Any]]:
    logical_id = logical_id_starting(template, "AWS::Lambda::Function", prefix)
    return logical_id, template["Resources"][logical_id]["Properties"]


@pytest.mark.parametrize("prefix", ["SignerFunction", "KeeperFunction", "KeyTamperingFunction"])
def test_functions_share_the_lambda_defaults(dev: Template, prefix: str) -> None:
    _, function = _function(dev, prefix)

    assert function["Architectures"] == ["arm64"]
    assert function["Runtime"] == RUNTIME_PYTHON
    assert function["Handler"] == "handler.lambda_handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    log_group = function["LoggingConfig"]["LogGroup"]["Ref"]
    assert dev["Resources"][log_group]["Properties"]["RetentionInDays"] == 90
    core = logical_id_starting(dev, "AWS::Lambda::LayerVersion", "LayersCore")
    deps = logical_id_starting(dev, "AWS::Lambda::LayerVersion", "LayersDeps")
    assert function["Layers"] == [{"Ref": core}, {"Ref": deps}]
    assert function["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "jwtkeys"


def test_runtime_is_the_newest_python_whose_bytecode_this_machine_can_build() -> None:
    from aws_cdk import aws_lambda

    offered = sorted(
        (
            int(name.removeprefix("PYTHON_3_"))
            for name in dir(aws_lambda.Runtime)
            if name.startswith("PYTHON_3_") and name.removeprefix("PYTHON_3_").isdigit()
        ),
        reverse=True,
    )
    # The layers ship bytecode only an interpreter of the runtime's version can write.
    buildable = [minor for minor in offered if find_interpreter(f"3.{minor}") is not None]
    assert buildable, "no Python interpreter of a Lambda runtime's version on this machine"
    assert f"python3.{buildable[0]}" == RUNTIME_PYTHON


def test_signer_environment_carries_the_keyset_settings(dev: Template) -> None:
    _, function = _function(dev, "SignerFunction")
    env = function["Environment"]["Variables"]

    assert env["POWERTOOLS_SERVICE_NAME"] == SIGNER_SERVICE
    assert env[names.ENV_KEYSET] == "servicenow-dev"
    assert env[names.ENV_ISSUER] == "jwtkeys-dev-client-id"
    assert json.loads(env[names.ENV_POLICY])["rotation_period"] == 86400
    assert json.loads(env[names.ENV_ALLOWED_AUDIENCES]) == ["jwtkeys-dev-client-id"]
    assert json.loads(env[names.ENV_ALLOWED_SUBJECTS]) == ["svc-*"]
    assert env[names.ENV_DEFAULT_TTL] == "300"
    assert json.loads(env[names.ENV_CALLER_RULES]) == {URL_CALLER: URL_CALLER_RULE}


def test_signer_environment_reads_back_as_the_configured_settings(dev: Template) -> None:
    # Given the dev stage as configured at synth
    config = next(c for c in load_stacks(assertion_context()[CONTEXT_KEY]) if c.stage == "dev")
    _, function = _function(dev, "SignerFunction")
    environ = {
        name: value
        for name, value in function["Environment"]["Variables"].items()
        if name.startswith("JWTKEYS_")
    }
    # Then the function's cold start reads exactly the settings synth built
    assert SignerSettings.from_environ(environ) == config.signer_settings()


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_keeper_environment_passes_the_keepers_cold_start(
    dev: Template, prod: Template, stage: str
) -> None:
    # Given the stage as configured, and its keeper's environment as synthesized, where
    # CloudFormation references (bucket, roles, secret) stand in for run-time values
    config = next(c for c in load_stacks(assertion_context()[CONTEXT_KEY]) if c.stage == stage)
    _, function = _function({"dev": dev, "prod": prod}[stage], "KeeperFunction")
    environ = {
        name: value if isinstance(value, str) else f"resolved-at-deploy:{name}"
        for name, value in function["Environment"]["Variables"].items()
        if name.startswith("JWTKEYS_")
    }
    # Then the keeper's own settings accept it and read the configured keyset back
    settings = KeeperSettings.from_environ(environ)
    assert (settings.keyset, settings.issuer, settings.rotation) == (
        config.keyset,
        config.issuer,
        config.policy,
    )
    assert (settings.servicenow is None) == (config.servicenow is None)
    if config.servicenow is not None and settings.servicenow is not None:
        assert settings.servicenow.client_id == config.servicenow.client_id
        assert settings.servicenow.canary_subject == config.servicenow.canary_subject


def test_keeper_environment_names_bucket_cdn_roles_and_servicenow(prod: Template) -> None:
    _, function = _function(prod, "KeeperFunction")
    env = function["Environment"]["Variables"]

    assert env["POWERTOOLS_SERVICE_NAME"] == KEEPER_SERVICE
    assert env[names.ENV_BUCKET] == {"Ref": logical_id_starting(prod, "AWS::S3::Bucket", "Jwks")}
    distribution = logical_id_starting(prod, "AWS::CloudFront::Distribution", "Jwks")
    assert env[names.ENV_DISTRIBUTION_ID] == {"Ref": distribution}
    assert env[names.ENV_PUBLIC_BASE_URL] == "https://keys.example.com"
    signer_role = logical_id_starting(prod, "AWS::IAM::Role", "SignerRole")
    keeper_role = logical_id_starting(prod, "AWS::IAM::Role", "KeeperRole")
    assert env[names.ENV_SIGNER_ROLE_ARN] == {"Fn::GetAtt": [signer_role, "Arn"]}
    assert env[names.ENV_KEEPER_ROLE_ARN] == {"Fn::GetAtt": [keeper_role, "Arn"]}
    assert env[names.ENV_SERVICENOW_INSTANCE] == "https://your-instance.service-now.com"
    secret = logical_id_starting(prod, "AWS::SecretsManager::Secret", "KeeperServiceNowSecret")
    assert env[names.ENV_SERVICENOW_SECRET] == {"Ref": secret}
    assert env[names.ENV_SERVICENOW_CLIENT_ID] == "jwtkeys-prod-client-id"
    assert env[names.ENV_SERVICENOW_CANARY_SUBJECT] == "jwtkeys.canary@example.com"


def test_keeper_without_servicenow_gets_no_servicenow_settings(dev: Template) -> None:
    _, function = _function(dev, "KeeperFunction")
    env = function["Environment"]["Variables"]

    assert not [name for name in env if name.startswith("JWTKEYS_SERVICENOW")]
    assert env[names.ENV_PUBLIC_BASE_URL] == {
        "Fn::Join": [
            "",
            [
                "https://",
                {
                    "Fn::GetAtt": [
                        logical_id_starting(dev, "AWS::CloudFront::Distribution", "Jwks"),
                        "DomainName",
                    ]
                },
            ],
        ]
    }
    assert not resources(dev, "AWS::SecretsManager::Secret")


def test_no_function_reserves_concurrency_by_default(dev: Template) -> None:
    # A reservation is refused on accounts with a small concurrency quota; the lease
    # already serialises ticks.
    for function in ("KeeperFunction", "SignerFunction"):
        _, properties = _function(dev, function)
        assert "ReservedConcurrentExecutions" not in properties, function


def test_a_stage_may_reserve_the_keepers_concurrency(prod: Template) -> None:
    _, keeper = _function(prod, "KeeperFunction")

    assert keeper["ReservedConcurrentExecutions"] == 1


def test_the_stacks_servicenow_secret_is_named_by_cloudformation(prod: Template) -> None:
    # A fixed name would stay taken for the recovery window after `cdk destroy`.
    _, secret = only(
        prod, "AWS::SecretsManager::Secret", lambda lid, _p: lid.startswith("KeeperServiceNow")
    )

    assert "Name" not in secret


def test_function_url_requires_iam_auth(dev: Template) -> None:
    signer, _ = _function(dev, "SignerFunction")
    _, url = only(dev, "AWS::Lambda::Url", lambda _lid, _props: True)

    assert url["AuthType"] == "AWS_IAM"
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": [signer, "Arn"]}


def _permissions_of(template: Template, principal: str) -> list[dict[str, Any]]:
    return [
        resource["Properties"]
        for resource in resources(template, "AWS::Lambda::Permission").values()
        if resource["Properties"]["Principal"] == principal
    ]


def test_url_callers_may_invoke_only_through_the_url(dev: Template) -> None:
    signer, _ = _function(dev, "SignerFunction")
    permissions = _permissions_of(dev, URL_CALLER)

    by_action = {p["Action"]: p for p in permissions}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "AWS_IAM"
    # Without this condition a URL caller could invoke directly and skip its rules.
    assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    for permission in permissions:
        assert permission["FunctionName"] == {"Fn::GetAtt": [signer, "Arn"]}


def test_trusted_principals_may_invoke_directly(dev: Template) -> None:
    (permission,) = _permissions_of(dev, DIRECT_CALLER)

    assert permission["Action"] == "lambda:InvokeFunction"
    assert "InvokedViaFunctionUrl" not in permission
    assert "FunctionUrlAuthType" not in permission


def test_no_one_else_may_invoke_the_signer(dev: Template, prod: Template) -> None:
    signer, _ = _function(dev, "SignerFunction")
    principals = {
        p["Properties"]["Principal"]
        for p in resources(dev, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [signer, "Arn"]}
    }
    assert principals == {DIRECT_CALLER, URL_CALLER}
    prod_signer, _ = _function(prod, "SignerFunction")
    assert not [
        p
        for p in resources(prod, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [prod_signer, "Arn"]}
    ]


def test_keeper_async_failures_land_in_a_queue(dev: Template) -> None:
    keeper, _ = _function(dev, "KeeperFunction")
    _, config = only(
        dev,
        "AWS::Lambda::EventInvokeConfig",
        lambda _lid, props: props["FunctionName"] == {"Ref": keeper},
    )
    queue = logical_id_starting(dev, "AWS::SQS::Queue", "KeeperFailedTicks")

    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue, "Arn"]}
    queue_props = dev["Resources"][queue]["Properties"]
    assert queue_props["SqsManagedSseEnabled"] is True


def test_schedule_sends_a_tick_to_the_keeper_every_tick_interval(dev: Template) -> None:
    keeper, _ = _function(dev, "KeeperFunction")
    _, schedule = only(dev, "AWS::Scheduler::Schedule", lambda _lid, _props: True)

    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [keeper, "Arn"]}
    assert json.loads(schedule["Target"]["Input"]) == {"action": "tick"}
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
