"""Operators' commands against `jwtkeys local up`, as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwtkeys_tools.local.servicenow_setup import CLIENT_ID

JWTKEYS = str(Path(sys.executable).with_name("jwtkeys"))
CLIENT = CLIENT_ID  # local up's ServiceNow app: the keyset's issuer and audience


@pytest.fixture(scope="module")
def local_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    workdir = tmp_path_factory.mktemp("local-up")
    state = workdir / "state.json"
    env = {**os.environ, "JWTKEYS_LOCAL_STATE": str(state)}
    process = subprocess.Popen(
        [JWTKEYS, "local", "up", "--keyset", "ops"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"local up did not start: {process.communicate()[0]}")
        time.sleep(0.2)
    yield env
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert not state.exists()
    # What it printed: the commands to try, and where the functions' output went instead.
    assert "jwtkeys sign --local" in output
    assert "jwtkeys verify --jwks" in output
    assert f"The functions' logs and EMF metrics: {workdir / 'functions.log'}" in output
    assert '"_aws"' not in output
    assert '"_aws"' in (workdir / "functions.log").read_text()


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JWTKEYS, *args], env=env, capture_output=True, text=True, timeout=120)


def test_sign_local_finds_the_local_stack_like_status(local_up: dict[str, str]) -> None:
    # Given no signer settings in the environment: only the local state
    assert "JWTKEYS_KEYSET" not in local_up
    signed = _run(local_up, "sign", "--local", "--subject", "svc-orders", "--audience", CLIENT)
    assert signed.returncode == 0, signed.stderr
    assert signed.stderr == ""
    token = json.loads(signed.stdout)["token"]
    # Then the token verifies against the local JWKS, by the CLI's own verify
    jwks_url = json.loads(Path(local_up["JWTKEYS_LOCAL_STATE"]).read_text())["keeper_env"][
        "JWTKEYS_PUBLIC_BASE_URL"
    ]
    verified = _run(
        local_up,
        "verify",
        "--jwks",
        f"{jwks_url}/.well-known/jwks.json",
        "--issuer",
        CLIENT,
        "--audience",
        CLIENT,
        token,
    )
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["sub"] == "svc-orders"


def test_status_lists_the_current_and_standby_keys(local_up: dict[str, str]) -> None:
    table = _run(local_up, "status", "--local")
    assert table.returncode == 0, table.stderr
    assert "current" in table.stdout
    assert "next" in table.stdout
    rows = json.loads(_run(local_up, "status", "--local", "--json").stdout)
    assert sorted(row["state"] for row in rows) == ["current", "next"]
    assert all(row["published"] for row in rows)
    # local up syncs its keyset to the ServiceNow emulator: both keys are trusted there.
    assert all(row["trusted"] is True for row in rows)
    assert "TRUSTED" in table.stdout
    assert [row["signing"] for row in rows if row["state"] == "current"] == [True]


def test_status_timeline_draws_the_local_keys(local_up: dict[str, str], tmp_path: Path) -> None:
    rows = json.loads(_run(local_up, "status", "--local", "--json").stdout)
    svg = tmp_path / "timeline.svg"
    drawn = _run(local_up, "status", "--timeline", "--local", "--since", "1h", "--out", str(svg))
    assert drawn.returncode == 0, drawn.stderr
    for row in rows:
        assert row["kid"][:10] in drawn.stdout
        assert f'id="bar-{row["state"]}-{row["kid"]}-' in svg.read_text()
    assert "legend:" in drawn.stdout
    refused = _run(local_up, "status", "--timeline", "--local", "--since", "a while")
    assert refused.returncode == 2
    assert "duration" in refused.stderr


def test_rotate_waits_without_force_and_revoke_refuses_an_unknown_kid(
    local_up: dict[str, str],
) -> None:
    rotate = _run(local_up, "rotate", "--local")
    assert rotate.returncode == 0, rotate.stderr
    assert json.loads(rotate.stdout)["promoted"] == []
    assert "prepublish" in rotate.stderr
    unknown = _run(local_up, "revoke", "--local", "no-such-kid")
    assert unknown.returncode == 1
    assert "InvalidRequest" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_jwks_prints_the_published_keys_and_revoke_removes_one(local_up: dict[str, str]) -> None:
    jwks = json.loads(_run(local_up, "jwks", "--local").stdout)
    rows = json.loads(_run(local_up, "status", "--local", "--json").stdout)
    assert {key["kid"] for key in jwks["keys"]} == {row["kid"] for row in rows if row["published"]}
    standby = next(row["kid"] for row in rows if row["state"] == "next")
    revoked = _run(local_up, "revoke", "--local", standby)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked"] == [standby]
    after = json.loads(_run(local_up, "jwks", "--local").stdout)
    assert standby not in {key["kid"] for key in after["keys"]}
    assert len(after["keys"]) == 2  # current + a fresh standby


def test_decommission_without_confirmation_refuses(local_up: dict[str, str]) -> None:
    refused = subprocess.run(
        [JWTKEYS, "decommission", "--local"],
        env=local_up,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2
    wrong = _run(local_up, "decommission", "--local", "--confirm", "prod")
    assert wrong.returncode == 1
    assert len(json.loads(_run(local_up, "jwks", "--local").stdout)["keys"]) == 2
