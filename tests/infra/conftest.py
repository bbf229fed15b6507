"""The infra tests' one synth: both stacks of cdk.json, plus test callers, per test run."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii prints a warning for every Node version it has not been tested with; the
# Makefile silences the same two.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV = "jwtkeys-servicenow-dev"
PROD = "jwtkeys-servicenow-prod"

DIRECT_CALLER = "arn:aws:iam::111122223333:role/batch-jobs"
URL_CALLER = "arn:aws:iam::111122223333:role/payments"
URL_CALLER_RULE = {"subjects": ["svc-payments"], "audiences": ["jwtkeys-dev-client-id"]}
ALARM_EMAIL = "secops@example.com"
OPERATOR_ROLE = "arn:aws:iam::111122223333:role/ops/jwtkeys-operator"
# prod declares steady traffic in the assertion context: no token for this long alarms.
STEADY_TRAFFIC_MINUTES = 30
AUTHORIZER: dict[str, Any] = {
    "routes": {
        "GET /orders": {"audience": "orders-api", "claims": {"scope": "orders:read"}},
        "$default": {"audience": "jwtkeys-dev-client-id"},
    },
    "cache_ttl": 45,
}
CUSTOM_DOMAIN = {
    "domain_name": "keys.example.com",
    "certificate_arn": "arn:aws:acm:us-east-1:111122223333:certificate/0f1e2d3c-test",
}

Template = dict[str, Any]


def cdk_json_context() -> dict[str, Any]:
    """The context of the project's own cdk.json."""
    context: dict[str, Any] = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    return context


def assertion_context() -> dict[str, Any]:
    """cdk.json's context, with callers, e-mail and a custom domain to assert on."""
    context = copy.deepcopy(cdk_json_context())
    stacks = context["jwtkeys"]["stacks"]
    stacks["dev"] |= {
        "direct_invoke": {"claims": {"batch_id": True}},
        "direct_invoke_principals": [DIRECT_CALLER],
        "function_url_callers": {URL_CALLER: URL_CALLER_RULE},
        "alarm_emails": [ALARM_EMAIL],
        "authorizer": AUTHORIZER,
    }
    stacks["prod"] |= {
        "alarm_emails": [ALARM_EMAIL],
        "custom_domain": CUSTOM_DOMAIN,
        "keeper_reserved_concurrency": 1,
        "operator_role_arns": [OPERATOR_ROLE],
        "steady_traffic_minutes": STEADY_TRAFFIC_MINUTES,
    }
    return context


@dataclass(frozen=True)
class Synth:
    """One synthesized cloud assembly."""

    outdir: Path
    templates: dict[str, Template]

    def asset_dir(self, stack: str, logical_id: str) -> Path:
        """The staged folder of the asset behind `logical_id`'s Code or Content."""
        properties = self.templates[stack]["Resources"][logical_id]["Properties"]
        code = properties.get("Content") or properties["Code"]
        return self.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"


def synthesize(context: dict[str, Any], outdir: Path) -> Synth:
    """Build the app the way app.py does, with `context`, into `outdir`."""
    from aws_cdk import App

    from infra.stack import build_app

    app = App(outdir=str(outdir), context=context)
    stacks = build_app(app)
    app.synth()
    templates = {
        stack.stack_name: json.loads((outdir / stack.template_file).read_text()) for stack in stacks
    }
    return Synth(outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Both stacks, synthesized once per test run (cdk-nag runs as part of it)."""
    return synthesize(assertion_context(), tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def dev(synth: Synth) -> Template:
    return synth.templates[DEV]


@pytest.fixture(scope="session")
def prod(synth: Synth) -> Template:
    return synth.templates[PROD]


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of `resource_type`."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: Template, resource_type: str, where: Callable[[str, Any], bool]) -> Any:
    """The single resource of `resource_type` (as (logical id, properties)) matching `where`."""
    found = [
        (logical_id, resource.get("Properties", {}))
        for logical_id, resource in resources(template, resource_type).items()
        if where(logical_id, resource.get("Properties", {}))
    ]
    assert len(found) == 1, f"expected one {resource_type}, found {[f[0] for f in found]}"
    return found[0]


def logical_id_starting(template: Template, resource_type: str, prefix: str) -> str:
    logical_id, _ = only(template, resource_type, lambda lid, _p: lid.startswith(prefix))
    return str(logical_id)


def policy_statements(template: Template, role_prefix: str) -> dict[str, dict[str, Any]]:
    """Sid -> statement of the inline policy attached to the role `role_prefix...`."""
    role = logical_id_starting(template, "AWS::IAM::Role", role_prefix)
    _, policy = only(
        template, "AWS::IAM::Policy", lambda _lid, props: props["Roles"] == [{"Ref": role}]
    )
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return {
        statement.get("Sid", f"#{index}"): statement for index, statement in enumerate(statements)
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture
def cli_env() -> dict[str, str]:
    """An environment for the CDK CLI: the venv first on PATH, no AWS settings at all."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env["PATH"] = f"{PROJECT_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # Offline: no telemetry (cdk.json says so too, this covers a copied cdk.json).
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    return env
