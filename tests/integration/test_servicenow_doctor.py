"""`jwtkeys doctor` against the emulator: every profile, the probe always removed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from jwtkeys_tools.cli import main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator.profiles import InstanceProfile, load_profile
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_fixtures import ALL_PROFILES, CLIENT_ID
from tests.servicenow_sync_fixtures import (
    SECRET_NAME,
    Instance,
    make_key,
    make_trust,
    put_secret,
    secret_value,
)


def _no_probe_left(instance: Instance) -> bool:
    return not any(
        "doctor-" in row["name"]
        for table in ("sys_certificate", "jwt_verifier_map")
        for row in instance.emulator.rows(table)
    )


@pytest.mark.parametrize("servicenow_profile", ALL_PROFILES)
def test_doctor_checks_every_profile_and_removes_its_probe(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: str
) -> None:
    trust = make_trust(sn_stack)
    now = sn_stack.clock.now()
    key = make_key(sn_stack)
    if servicenow_profile != "pessimistic":
        trust.reconcile([key], now)
    report = trust.doctor(now, key)
    by_name = {check.name: check for check in report.checks}
    assert by_name["reach"].status == "PASS"
    if servicenow_profile == "pessimistic":
        # Name fields of 40 characters: the dictionary check fails and says what to do.
        assert not report.ok
        assert by_name["dictionary"].status == "FAIL"
        assert "holds 40 characters" in by_name["dictionary"].detail
        assert "widen" in by_name["dictionary"].fix
        return
    assert report.ok, [check.line() for check in report.checks]
    assert by_name["read/create/update/delete"].status == "PASS"
    assert by_name["canary"].status == "PASS"
    skew_zero = servicenow_profile == "zurich-machine-identity"
    assert by_name["application"].status == ("WARN" if skew_zero else "PASS")
    assert _no_probe_left(instance)


def test_doctor_fails_without_write_access_and_still_removes_nothing_it_did_not_make(
    sn_stack: LocalStack, instance: Instance
) -> None:
    # An integration user that can read the OAuth tables but not write certificates.
    instance.emulator.add_user("reader", roles=["oauth_admin"], password="pw")
    put_secret(
        sn_stack.aws,
        json.dumps({"type": "basic", "username": "reader", "password": "pw"}),
    )
    report = make_trust(sn_stack).doctor(sn_stack.clock.now())
    crud = next(c for c in report.checks if c.name == "read/create/update/delete")
    assert crud.status == "FAIL"
    assert "create sys_certificate failed" in crud.detail
    assert "ACL" in crud.fix
    assert not report.ok
    assert _no_probe_left(instance)


def test_doctor_command_on_a_bare_instance(
    local_aws_env: LocalAws, instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    put_secret(local_aws_env, secret_value())
    base = [
        "doctor",
        "--instance",
        instance.emulator.url,
        "--secret-id",
        SECRET_NAME,
        "--client-id",
        CLIENT_ID,
        "--keyset",
        "test",
        "--ca-bundle",
        instance.emulator.ca_bundle,
    ]
    assert main([*base, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is True
    statuses = {check["name"]: check["status"] for check in document["checks"]}
    assert statuses["read/create/update/delete"] == "PASS"
    assert statuses["canary"] == "WARN"  # a bare instance has no key to try
    assert main(base) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.split(" ", 1)[0] in {"PASS", "WARN", "FAIL"} for line in lines)
    assert _no_probe_left(instance)


def _default_profile(**changes: object) -> InstanceProfile:
    return dataclasses.replace(load_profile(), **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "servicenow_profile",
    [_default_profile(name="hidden-sessions", admin_only_tables=frozenset({"oauth_credential"}))],
)
def test_doctor_fails_when_the_canarys_session_is_hidden_by_acl(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    now = sn_stack.clock.now()
    key = make_key(sn_stack)
    trust.reconcile([key], now)
    report = trust.doctor(now, key)
    by_name = {check.name: check for check in report.checks}
    assert by_name["canary"].status == "PASS"
    assert by_name["oauth_credential"].status == "FAIL"
    assert "admin-only" in by_name["oauth_credential"].detail
    assert "read and delete" in by_name["oauth_credential"].fix
    assert not report.ok
    assert _no_probe_left(instance)


@pytest.mark.parametrize(
    "servicenow_profile",
    [_default_profile(name="no-kid", absent_fields=frozenset({"jwt_verifier_map.kid"}))],
)
def test_doctor_fails_on_a_missing_field_and_names_it(
    sn_stack: LocalStack, instance: Instance
) -> None:
    report = make_trust(sn_stack).doctor(sn_stack.clock.now())
    dictionary = next(c for c in report.checks if c.name == "dictionary")
    assert dictionary.status == "FAIL"
    assert "jwt_verifier_map.kid does not exist" in dictionary.detail
    assert not report.ok
    # Nothing was written to an instance that cannot hold the records.
    assert _no_probe_left(instance)


def test_doctor_fails_on_a_refused_client_credentials_grant_naming_the_property(
    sn_stack: LocalStack, instance: Instance
) -> None:
    # The OAuth client exists but may not use the grant: the instance answers a bare
    # 401, as it does while the client-credentials property is off.
    instance.emulator.add_record(
        "oauth_entity",
        {
            "name": "jwtkeys integration",
            "client_id": "jwtkeys-integration",
            "client_secret": "integration-client-secret",
            "default_grant_type": "password",
            "user": instance.integration_sys_id,
        },
    )
    put_secret(sn_stack.aws, secret_value("oauth"))
    report = make_trust(sn_stack).doctor(sn_stack.clock.now())
    assert [c.name for c in report.checks] == ["reach"]
    reach = report.checks[0]
    assert reach.status == "FAIL"
    assert "glide.oauth.inbound.client.credential.grant_type.enabled=true" in reach.fix
    assert not report.ok
