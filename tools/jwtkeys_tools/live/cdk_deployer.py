"""The real deployer: `cdk deploy` / `cdk destroy` through the project's pinned CDK CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.config import KeysetConfig
from infra.constants import STAGE_CONTEXT_KEY, SUFFIX_CONTEXT_KEY
from jwtkeys_tools.live.context import STACK, Plan, Resource
from jwtkeys_tools.live.stage import plan_for

# Retained by CloudFormation on delete (the template's DeletionPolicy).
_RETAINING_POLICIES = frozenset({"Retain", "RetainExceptOnCreate", "Snapshot"})
# Bookkeeping with no AWS resource behind it.
_NOT_RESOURCES = frozenset({"AWS::CDK::Metadata"})

Runner = Callable[[Sequence[str], Path, Mapping[str, str]], int]


def run_command(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
    """Run the CDK CLI with its output on our stderr (stdout carries the PASS/FAIL lines)."""
    return subprocess.run(  # a fixed command line, no shell
        list(command), cwd=cwd, env=dict(env), stdout=sys.stderr, check=False
    ).returncode


class CdkDeployer:
    """Deploys the suffixed stage with the credentials of the boto3 session."""

    def __init__(
        self,
        config: KeysetConfig,
        suffix: str,
        project_root: Path,
        session: Any,
        run: Runner = run_command,
    ) -> None:
        self._config = config
        self._suffix = suffix
        self._root = project_root
        self._session = session
        self._run = run
        self._stack_resources: list[Resource] | None = None

    def plan(self) -> Plan:
        return plan_for(self._config, self._suffix)

    def _cdk(self, *arguments: str) -> list[str]:
        return [
            "npx",
            "--no-install",
            "cdk",
            *arguments,
            "-c",
            f"{STAGE_CONTEXT_KEY}={self._config.stage}",
            "-c",
            f"{SUFFIX_CONTEXT_KEY}={self._suffix}",
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # cdk.json runs `.venv/bin/python app.py`; the venv's tools come first on PATH.
        env["PATH"] = os.pathsep.join([str(self._root / ".venv" / "bin"), env.get("PATH", "")])
        return env

    def deploy(self) -> Mapping[str, str]:
        name = self._config.stack_name
        with tempfile.TemporaryDirectory(prefix="jwtkeys-live-") as folder:
            outputs_file = Path(folder) / "outputs.json"
            command = self._cdk(
                "deploy",
                name,
                "--require-approval",
                "never",
                "--outputs-file",
                str(outputs_file),
            )
            status = self._run(command, self._root, self._env())
            if status != 0:
                raise RuntimeError(f"cdk deploy {name} exited with {status}")
            outputs: dict[str, dict[str, str]] = json.loads(outputs_file.read_text())
        return dict(outputs.get(name, {}))

    def client(self, service: str) -> Any:
        # The stage's Region when cdk.json pins one (where cdk deploys it), else the session's.
        return self._session.client(service, region_name=self._config.region)

    def function_url_credentials(self) -> Any:
        return self._session.get_credentials()

    def stack_resources(self) -> list[Resource]:
        # Read once while the stack exists: after destroy it is the list to check against.
        if self._stack_resources is None:
            self._stack_resources = self._read_stack_resources()
        return list(self._stack_resources)

    def _read_stack_resources(self) -> list[Resource]:
        cloudformation = self.client("cloudformation")
        name = self._config.stack_name
        template = cloudformation.get_template(StackName=name, TemplateStage="Processed")
        body = template["TemplateBody"]
        resources_section = (body if isinstance(body, dict) else json.loads(body))["Resources"]
        retained = {
            logical
            for logical, spec in resources_section.items()
            if spec.get("DeletionPolicy") in _RETAINING_POLICIES
        }
        stack_id = cloudformation.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
        found = [Resource(STACK, stack_id)]
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=name):
            for item in page["StackResourceSummaries"]:
                if item["ResourceType"] in _NOT_RESOURCES or not item.get("PhysicalResourceId"):
                    continue
                found.append(
                    Resource(
                        item["ResourceType"],
                        item["PhysicalResourceId"],
                        retained=item["LogicalResourceId"] in retained,
                    )
                )
        return found

    def destroy(self) -> None:
        name = self._config.stack_name
        status = self._run(self._cdk("destroy", name, "--force"), self._root, self._env())
        if status != 0:
            raise RuntimeError(f"cdk destroy {name} exited with {status}")
