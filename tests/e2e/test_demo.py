"""The demo end to end: every step passes and its artifacts satisfy the contract."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from jwtkeys_tools.cli import main
from jwtkeys_tools.local.demo import DEMO_POLICY
from jwtkeys_tools.local.invariants import check_artifacts
from jwtkeys_tools.local.servicenow_emulator.profiles import DEFAULT_PROFILE, profile_names
from tests.iam_simulation import IamSession


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    environ = dict(os.environ)
    assert main(["demo", "--out", str(out)]) == 0
    # The demo points boto3 at its local endpoint only while it runs.
    assert dict(os.environ) == environ
    return out


def test_every_step_passed(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    assert summary["ok"] is True
    assert all(step["ok"] for step in summary["steps"])
    assert len(summary["steps"]) >= 10


def test_tokens_cover_a_rotation_a_retirement_and_a_revocation(demo_out: Path) -> None:
    tokens = json.loads((demo_out / "tokens.json").read_text())
    fields = {
        "token",
        "kid",
        "alg",
        "issuer",
        "audience",
        "subject",
        "issued_at",
        "expires_at",
        "signed_while",
        "servicenow_exchange",
        "key_revoked",
    }
    assert all(set(token) == fields for token in tokens)
    assert len({token["kid"] for token in tokens}) >= 3
    assert {token["signed_while"] for token in tokens} == {"current", "previous"}
    assert {"ok", "refused"} <= {token["servicenow_exchange"] for token in tokens}
    assert any(token["key_revoked"] for token in tokens)
    assert all(isinstance(token["issued_at"], int) for token in tokens)


def test_artifacts_read_back_satisfy_i1_and_i2(demo_out: Path) -> None:
    history = json.loads((demo_out / "jwks-history.json").read_text())
    tokens = json.loads((demo_out / "tokens.json").read_text())
    assert check_artifacts(history, tokens, DEMO_POLICY.clock_skew) == []
    assert [entry["at"] for entry in history] == sorted(entry["at"] for entry in history)
    final = json.loads((demo_out / "jwks.json").read_text())
    assert final == history[-1]["jwks"]
    for key in final["keys"]:
        assert key["use"] == "sig"
        assert not {"d", "p", "q"} & set(key)


def test_servicenow_records_match_the_published_keys(demo_out: Path) -> None:
    servicenow = json.loads((demo_out / "servicenow.json").read_text())
    final = json.loads((demo_out / "jwks.json").read_text())
    kids = {key["kid"] for key in final["keys"]}
    assert set(servicenow) == {"sys_certificate", "jwt_verifier_map", "oauth_jwt"}
    assert {row["kid"] for row in servicenow["jwt_verifier_map"]} == kids
    assert {row["name"] for row in servicenow["sys_certificate"]} == {
        f"jwtkeys/demo/{kid}" for kid in kids
    }


def test_the_authorizer_step_ran(demo_out: Path) -> None:
    summary = json.loads((demo_out / "summary.json").read_text())
    step = next(s for s in summary["steps"] if s["name"].startswith("API Gateway authorizer"))
    assert step["ok"] is True


def test_the_timeline_shows_every_token_key_with_its_milestones(demo_out: Path) -> None:
    tokens = json.loads((demo_out / "tokens.json").read_text())
    root = ET.parse(demo_out / "timeline.svg").getroot()  # noqa: S314 - our own file
    ids = {g.attrib["id"] for g in root.iter("{http://www.w3.org/2000/svg}g") if "id" in g.attrib}
    for kid in {token["kid"] for token in tokens}:
        bars = [i for i in ids if i.startswith("bar-") and f"-{kid}-" in i]
        assert bars, kid
        assert f"marker-published-{kid}" in ids
        assert any(i.startswith(f"tokens-{kid}-") for i in ids)
    revoked = {token["kid"] for token in tokens if token["key_revoked"]}
    for kid in revoked:
        assert f"marker-revoked-{kid}" in ids
        assert any(i.startswith(f"bar-revoked-{kid}-") for i in ids)
    assert any(i.startswith("marker-retired-") for i in ids)
    assert any(i.startswith("marker-deletion_scheduled-") for i in ids)
    assert any(i.startswith("marker-trusted-") for i in ids)


def test_every_aws_request_of_the_demo_is_allowed_by_the_deployed_policies(
    demo_out: Path, iam_session: IamSession
) -> None:
    deployments = json.loads((demo_out / "deployments.json").read_text())
    requests = [
        json.loads(line) for line in (demo_out / "iam-requests.jsonl").read_text().splitlines()
    ]
    assert {d["label"] for d in deployments} == {r["label"] for r in requests}
    for deployment in deployments:
        iam_session.learn(deployment)
    roles = {r["role_arn"].rsplit("/", 1)[-1] for r in requests}
    assert {"jwtkeys-demo-signer", "jwtkeys-demo-keeper"} <= roles
    actions = {r["action"] for r in requests}
    assert {"kms:CreateKey", "kms:TagResource", "kms:Sign", "s3:PutObject"} <= actions
    assert iam_session.denials(requests) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "profile",
    [name for name in profile_names() if name not in {DEFAULT_PROFILE, "pessimistic"}],
)
def test_the_demo_passes_on_every_release_profile(profile: str, tmp_path: Path) -> None:
    # The default profile is the module's demo above; each other release shape runs it all.
    assert main(["demo", "--out", str(tmp_path), "--servicenow-profile", profile]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is True
    history = json.loads((tmp_path / "jwks-history.json").read_text())
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    assert check_artifacts(history, tokens, DEMO_POLICY.clock_skew) == []


def test_the_demo_on_a_too_narrow_instance_stops_at_bootstrap_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pessimistic profile's name fields hold 40 characters, the ownership name needs 56.
    assert main(["demo", "--out", str(tmp_path), "--servicenow-profile", "pessimistic"]) == 1
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert [step["ok"] for step in steps] == [True, False]
    assert "sys_certificate.name holds 40 characters" in steps[1]["detail"]
    assert "Traceback" not in capsys.readouterr().out
    servicenow_records = json.loads((tmp_path / "servicenow.json").read_text())
    assert servicenow_records["sys_certificate"] == []
    assert servicenow_records["jwt_verifier_map"] == []
