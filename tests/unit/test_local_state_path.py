"""`--local` commands read the local stack's state only from where the user put it.

A state file steers boto3 (its endpoint and environment): one planted in a checked-out
repository must never be read just because the operator ran jwtkeys from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.cli.target import (
    LOCAL_STATE_ENV,
    local_state_path,
    read_local_state,
    write_local_state,
)

PLANTED = {
    "aws_env": {"AWS_ENDPOINT_URL": "http://attacker.example.invalid"},
    "keeper_env": {},
    "signer_env": {},
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user whose home and state directory are empty, working in a hostile checkout."""
    home = tmp_path / "home"
    home.mkdir()
    checkout = tmp_path / "checkout"
    (checkout / ".jwtkeys").mkdir(parents=True)
    (checkout / ".jwtkeys" / "local.json").write_text(json.dumps(PLANTED))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv(LOCAL_STATE_ENV, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.chdir(checkout)
    return home


def test_a_state_file_in_the_current_directory_is_never_read(home: Path) -> None:
    # Given .jwtkeys/local.json in the current directory and none in the user's state dir
    # When a --local command looks for the local stack
    with pytest.raises(ConfigurationError, match="no local stack"):
        read_local_state()
    # Then it looked in the user's own state directory, and boto3 was not redirected
    assert local_state_path() == home / ".local" / "state" / "jwtkeys" / "local.json"
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_xdg_state_home_is_honoured_only_when_absolute(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert local_state_path() == tmp_path / "state" / "jwtkeys" / "local.json"
    monkeypatch.setenv("XDG_STATE_HOME", ".jwtkeys/..")
    assert local_state_path() == home / ".local" / "state" / "jwtkeys" / "local.json"


def test_a_relative_jwtkeys_local_state_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCAL_STATE_ENV, ".jwtkeys/local.json")
    with pytest.raises(ConfigurationError, match="absolute path"):
        local_state_path()


def test_the_state_local_up_writes_is_private_and_read_back(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mine" / "local.json"
    monkeypatch.setenv(LOCAL_STATE_ENV, str(path))
    state = {
        "aws_env": {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"},
        "keeper_env": {},
        "signer_env": {},
    }
    write_local_state(path, state)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert read_local_state().aws_env == state["aws_env"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_state_file_others_may_write_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(PLANTED))
    path.chmod(mode)
    monkeypatch.setenv(LOCAL_STATE_ENV, str(path))
    with pytest.raises(ConfigurationError, match="others may write it"):
        read_local_state()
    assert "AWS_ENDPOINT_URL" not in os.environ
