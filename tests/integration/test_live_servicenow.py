"""The live ServiceNow suite's code, run against the emulator (make live-servicenow runs it
against a real instance)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.live_servicenow import LiveConfig, run_live
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator.profiles import load_profile
from tests.servicenow_fixtures import CLIENT_ID, CLIENT_SECRET, INTEGRATION_USER
from tests.servicenow_sync_fixtures import CANARY_EMAIL, Instance


def _config(instance: Instance) -> LiveConfig:
    user, password = INTEGRATION_USER
    return LiveConfig(
        instance=instance.emulator.url,
        user=user,
        password=password,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        canary_subject=CANARY_EMAIL,
        ca_bundle=instance.emulator.ca_bundle,
    )


def test_the_whole_cycle_passes_and_leaves_nothing_behind(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock, tmp_path: Path
) -> None:
    result = run_live(_config(instance), local_aws, servicenow_clock)
    assert result.ok, result.lines()
    assert [name for name, _, _ in result.steps] == [
        "doctor",
        "trust a key",
        "canary",
        "renew certificate",
        "rotate",
        "revoke (end sessions)",
        "decommission",
        "cleanup",
    ]
    for table in ("sys_certificate", "jwt_verifier_map"):
        assert not [r for r in instance.emulator.rows(table) if r["name"].startswith("jwtkeys/")]
    # The profile it writes describes the instance it saw, and the emulator loads it.
    path = tmp_path / "seen.json"
    path.write_text(json.dumps(result.profile))
    seen = load_profile(str(path))
    assert "jwt_verifier_map.active" in seen.absent_fields
    assert seen.max_lengths["sys_certificate.name"] == 100
    assert seen.choices["sys_certificate.type"][0][0] == "trust_store"


@pytest.mark.parametrize("servicenow_profile", ["pessimistic"])
def test_an_instance_that_cannot_hold_the_records_fails_at_the_doctor(
    local_aws: LocalAws,
    instance: Instance,
    servicenow_clock: SimulatedClock,
    servicenow_profile: str,
) -> None:
    result = run_live(_config(instance), local_aws, servicenow_clock)
    assert not result.ok
    [(name, passed, detail)] = result.steps
    assert (name, passed) == ("doctor", False)
    assert "holds 40 characters" in detail
    assert result.profile["max_lengths"]["sys_certificate.name"] == 40
    assert instance.emulator.rows("sys_certificate") == []
