"""The synthesized app as a whole: cfn-lint, cdk-nag, no name collisions, the CLI path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.infra.conftest import (
    DEV,
    PROD,
    PROJECT_ROOT,
    Synth,
    Template,
    cdk_json_context,
    resources,
)

# Properties that give a resource a name of its own in the account.
NAME_PROPERTIES = ("AlarmName", "DashboardName", "Name", "FunctionName", "RoleName", "TopicName")


def test_cfn_lint_reports_no_errors(synth: Synth) -> None:
    templates = [str(synth.outdir / f"{name}.template.json") for name in (DEV, PROD)]
    result = subprocess.run(
        [sys.executable, "-m", "cfnlint", "--format", "json", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")

    errors = [f for f in findings if f["Level"] == "Error"]
    assert not errors, json.dumps(errors, indent=2)
    # CDK's own DependsOn next to a GetAtt (W3005) is the only warning we accept.
    assert {f["Rule"]["Id"] for f in findings} <= {"W3005"}


def test_cdk_nag_ran_and_found_nothing_unacknowledged(synth: Synth) -> None:
    # A finding fails app.synth() itself; the report shows the plugin ran clean.
    report = json.loads((synth.outdir / "validation-report.json").read_text())

    assert report["title"] == "Validation Report"
    assert not [
        r for r in report["pluginReports"] if r.get("summary", {}).get("status") != "success"
    ]


def _explicit_names(template: Template) -> set[str]:
    names = set()
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in NAME_PROPERTIES:
            if isinstance(props.get(key), str):
                names.add(f"{resource['Type']}:{props[key]}")
    return names


def test_dev_and_prod_share_no_name(dev: Template, prod: Template) -> None:
    dev_names = _explicit_names(dev)

    assert dev_names, "expected named alarms and dashboards"
    assert not dev_names & _explicit_names(prod)


def test_no_stack_resource_wears_the_signing_key_tag(dev: Template) -> None:
    # The runtime finds its keys by `jwtkeys:keyset`; the topic's key must not look like one.
    for logical_id, resource in dev["Resources"].items():
        tags = resource.get("Properties", {}).get("Tags", [])
        if isinstance(tags, list):
            assert not [t for t in tags if str(t.get("Key", "")).startswith("jwtkeys:")], logical_id
    assert len(resources(dev, "AWS::KMS::Key")) == 1


def test_cdk_cli_synthesizes_offline_into_a_fresh_directory(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(outdir)],
        cwd=PROJECT_ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    manifest = json.loads((outdir / "manifest.json").read_text())
    stacks = {
        name
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    assert stacks == {DEV, PROD}


def test_outputs_have_the_stable_names_the_docs_use(prod: Template) -> None:
    assert set(prod["Outputs"]) >= {
        "JwksUrl",
        "BucketName",
        "DistributionId",
        "DistributionDomainName",
        "SignerFunctionName",
        "SignerFunctionUrl",
        "KeeperFunctionName",
        "KeeperFailureQueueUrl",
        "AlarmTopicArn",
        "ServiceNowSecretArn",
    }
    assert prod["Outputs"]["JwksUrl"]["Value"] == "https://keys.example.com/.well-known/jwks.json"


def test_cdk_cli_refuses_an_unsafe_policy_with_the_lifecycle_message(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # Given a project folder whose cdk.json sets a prepublish window shorter than
    # two JWKS cache lifetimes plus a tick
    context = cdk_json_context()
    context["jwtkeys"]["stacks"]["dev"]["policy"]["prepublish_window"] = 300
    app = f"{PROJECT_ROOT / '.venv' / 'bin' / 'python'} {PROJECT_ROOT / 'app.py'}"
    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": app, "notices": False, "context": context})
    )

    # When the CDK CLI synthesizes it
    result = subprocess.run(
        [str(PROJECT_ROOT / "node_modules" / ".bin" / "cdk"), "synth", "--quiet"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    # Then synth fails, naming the inequality that does not hold
    assert result.returncode != 0
    assert "UnsafePolicy" in result.stderr
    assert "prepublish_window >= 2 x jwks_max_age + tick_interval" in result.stderr
    assert not (tmp_path / "cdk.out" / "manifest.json").exists()


def test_cdk_json_keeps_the_cli_offline() -> None:
    # Synth must need no network: no notices fetch, no telemetry upload.
    cdk_json = json.loads((PROJECT_ROOT / "cdk.json").read_text())

    assert cdk_json["app"] == ".venv/bin/python app.py"
    assert cdk_json["notices"] is False
    assert cdk_json["context"]["cli-telemetry"] is False
