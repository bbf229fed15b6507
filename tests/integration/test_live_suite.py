"""`make live-aws` in its dry run: every step against the local endpoint, checked there.

The suite's own verdicts are not trusted: after each run the test asks the endpoint
itself what is left.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.config import KeysetConfig
from jwtkeys import names
from jwtkeys.signer.policy import DirectInvoke
from jwtkeys_tools.live.aws import main, run_suite
from jwtkeys_tools.live.cdk_deployer import CdkDeployer
from jwtkeys_tools.live.context import S3_BUCKET, STACK
from jwtkeys_tools.live.leftovers import remains
from jwtkeys_tools.live.local_deployer import LocalDeployer
from jwtkeys_tools.live.stage import stage_config
from jwtkeys_tools.local.aws_endpoint import LocalAws

ROOT = Path(__file__).resolve().parents[2]


def _dev(suffix: str, *, direct_invoke: bool = False) -> KeysetConfig:
    config = stage_config(ROOT, "dev", suffix)
    return dataclasses.replace(config, direct_invoke=DirectInvoke() if direct_invoke else None)


def _lines(out: io.StringIO) -> dict[str, str]:
    """{step: PASS|FAIL|SKIP} from the suite's output."""
    verdicts: dict[str, str] = {}
    for line in out.getvalue().splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in {"PASS", "FAIL", "SKIP"}:
            verdicts[rest.split(":", 1)[0]] = verdict
    return verdicts


def _left_on_endpoint(aws: LocalAws, keyset: str) -> list[str]:
    """What of the keyset the endpoint still holds (KMS keys only if not pending deletion)."""
    left: list[str] = []
    s3, logs, cloudwatch, kms = (aws.client(s) for s in ("s3", "logs", "cloudwatch", "kms"))
    left += [b["Name"] for b in s3.list_buckets()["Buckets"] if keyset in b["Name"]]
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/jwtkeys-{keyset}")
    left += [g["logGroupName"] for g in groups["logGroups"]]
    aliases = kms.list_aliases()["Aliases"]
    left += [
        a["AliasName"] for a in aliases if a["AliasName"].startswith(f"alias/jwtkeys/{keyset}/")
    ]
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=f"jwtkeys-{keyset}-")["MetricAlarms"]
    left += [a["AlarmName"] for a in alarms]
    for key in kms.list_keys()["Keys"]:
        tags = kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]
        if {"TagKey": names.TAG_KEYSET, "TagValue": keyset} in tags:
            state = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"]
            if state != "PendingDeletion":
                left.append(f"{key['KeyId']} {state}")
    return left


def _keyset_keys(aws: LocalAws, keyset: str) -> int:
    kms = aws.client("kms")
    return sum(
        {"TagKey": names.TAG_KEYSET, "TagValue": keyset}
        in kms.list_resource_tags(KeyId=key["KeyId"])["Tags"]
        for key in kms.list_keys()["Keys"]
    )


def test_a_dry_run_passes_every_step_and_leaves_nothing(local_aws: LocalAws) -> None:
    config = _dev("ok1", direct_invoke=True)
    deployer = LocalDeployer(local_aws, config, "ok1")
    out = io.StringIO()

    status = run_suite(deployer, out)

    verdicts = _lines(out)
    assert status == 0, out.getvalue()
    assert set(verdicts.values()) == {"PASS"}, out.getvalue()
    assert list(verdicts) == [
        "deploy",
        "bootstrap",
        "sign-direct",
        "sign-function-url",
        "rotate",
        "verify-jwks-via-cdn",
        "alarms",
        "inventory",
        "decommission",
        "destroy",
        "nothing-left",
    ]
    listing = out.getvalue()
    # The inventory names what the keeper made at run time, not only the stack.
    assert listing.count("AWS::KMS::Key ") == 3
    assert f"AWS::KMS::Alias {names.current_alias(config.keyset)}" in listing
    assert f"AWS::S3::Object jwtkeys-{config.keyset}-jwks/{names.JWKS_OBJECT_KEY}" in listing
    assert "pending deletion" in listing
    assert _keyset_keys(local_aws, config.keyset) == 3
    assert _left_on_endpoint(local_aws, config.keyset) == []


class _BrokenDeployer(LocalDeployer):
    """One alarm fires after deploy, and destroy forgets it."""

    def deploy(self) -> Mapping[str, str]:
        outputs = super().deploy()
        self.firing = f"jwtkeys-{self.plan().keyset}-rotation-failing"
        self._aws.client("cloudwatch").set_alarm_state(
            AlarmName=self.firing, StateValue="ALARM", StateReason="test"
        )
        return outputs

    def destroy(self) -> None:
        kept = [r for r in self._resources if r.physical_id == self.firing]
        self._resources = [r for r in self._resources if r.physical_id != self.firing]
        super().destroy()
        self._resources += kept


def test_a_firing_alarm_and_a_leftover_fail_their_steps_and_cleanup_still_runs(
    local_aws: LocalAws,
) -> None:
    deployer = _BrokenDeployer(local_aws, _dev("bad1"), "bad1")
    out = io.StringIO()

    status = run_suite(deployer, out)

    verdicts = _lines(out)
    assert status == 1
    assert verdicts["alarms"] == "FAIL"
    assert f"in ALARM: ['{deployer.firing}']" in out.getvalue()
    assert verdicts["sign-direct"] == "SKIP"  # the dev stage leaves direct invoke off
    assert verdicts["decommission"] == verdicts["destroy"] == "PASS"
    assert verdicts["nothing-left"] == "FAIL"
    assert f"AWS::CloudWatch::Alarm {deployer.firing}: the alarm exists" in out.getvalue()
    # The endpoint agrees: only the forgotten alarm is left.
    assert _left_on_endpoint(local_aws, "servicenow-dev-bad1") == [deployer.firing]


class _HalfDeployer(LocalDeployer):
    """The deploy fails after the bucket and log groups exist."""

    def _create_alarms(self) -> None:
        raise RuntimeError("CREATE_FAILED: alarm quota")


def test_a_failed_deploy_skips_the_checks_and_still_removes_what_it_made(
    local_aws: LocalAws,
) -> None:
    deployer = _HalfDeployer(local_aws, _dev("half1"), "half1")
    out = io.StringIO()

    status = run_suite(deployer, out)

    verdicts = _lines(out)
    assert status == 1
    assert verdicts["deploy"] == "FAIL"
    assert "CREATE_FAILED: alarm quota" in out.getvalue()
    assert verdicts["rotate"] == verdicts["alarms"] == "SKIP"
    assert verdicts["destroy"] == verdicts["nothing-left"] == "PASS"
    assert _left_on_endpoint(local_aws, "servicenow-dev-half1") == []


def test_the_command_refuses_an_unknown_stage_and_a_bad_suffix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["--stage", "nope", "--suffix", "a1", "--dry-run", "--project-root", str(ROOT)]) == 2
    )
    assert "no stage 'nope'" in capsys.readouterr().err
    assert main(["--stage", "dev", "--suffix", "Bad_1", "--project-root", str(ROOT)]) == 2
    assert "jwtkeys:suffix" in capsys.readouterr().err


def test_the_cdk_deployer_drives_the_pinned_cli_and_reads_retention_from_the_template(
    local_aws: LocalAws,
) -> None:
    config = _dev("cdk1")
    commands: list[list[str]] = []

    def fake_cdk(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
        commands.append(list(command))
        assert cwd == ROOT
        assert env["PATH"].startswith(str(ROOT / ".venv" / "bin"))
        if "--outputs-file" in command:
            target = Path(command[command.index("--outputs-file") + 1])
            target.write_text(json.dumps({config.stack_name: {"JwksUrl": "https://x/jwks"}}))
        return 0

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    deployer = CdkDeployer(config, "cdk1", ROOT, session, run=fake_cdk)
    deployer.client = local_aws.client  # type: ignore[method-assign]

    assert deployer.deploy() == {"JwksUrl": "https://x/jwks"}
    deployer.destroy()

    context = ["-c", "jwtkeys:stage=dev", "-c", "jwtkeys:suffix=cdk1"]
    assert commands[0][:5] == [
        "npx",
        "--no-install",
        "cdk",
        "deploy",
        "jwtkeys-servicenow-dev-cdk1",
    ]
    assert commands[0][5:7] == ["--require-approval", "never"]
    assert commands[0][-4:] == context
    assert commands[1] == [
        "npx",
        "--no-install",
        "cdk",
        "destroy",
        config.stack_name,
        "--force",
        *context,
    ]

    # The stack's resources and which of them CloudFormation would keep, from a stack on
    # the endpoint built from a template like the synthesized one.
    template: dict[str, Any] = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
            "Topic": {"Type": "AWS::SNS::Topic"},
        }
    }
    local_aws.client("cloudformation").create_stack(
        StackName=config.stack_name, TemplateBody=json.dumps(template)
    )
    resources = deployer.stack_resources()
    kinds = {(r.type, r.retained) for r in resources}
    assert kinds == {(STACK, False), (S3_BUCKET, True), ("AWS::SNS::Topic", False)}

    # After the delete, the stack reads as gone and the retained bucket as still there.
    local_aws.client("cloudformation").delete_stack(StackName=config.stack_name)
    answers = {r.type: remains(local_aws.client, r) for r in resources}
    assert answers[STACK] == (True, "")
    assert answers[S3_BUCKET] == (False, "the bucket exists")
