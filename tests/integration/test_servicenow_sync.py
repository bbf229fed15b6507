"""Sync of ServiceNow trust records against the emulator: create, remove, repair, renew."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ServiceNowError, TrustNotConfirmed
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.keys.kms_signer import KmsJwsSigner, KmsKeyRef
from jwtkeys.names import servicenow_record_name
from jwtkeys.servicenow.certificates import key_algorithm, public_key_of, read_certificate, spki
from jwtkeys.servicenow.table_client import Record, TableClient
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_sync_fixtures import (
    CANARY_EMAIL,
    Instance,
    exchange,
    make_key,
    make_stack,
    make_trust,
    put_secret,
    secret_value,
    servicenow_env,
)

from ..servicenow_fixtures import (
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_USER,
    certificate_pem,
    make_assertion,
    signing_key,
)


@pytest.fixture
def api(servicenow_http: requests.Session, instance: Instance) -> requests.Session:
    """The Table API as the integration user: what a person editing records by hand uses."""
    servicenow_http.auth = INTEGRATION_USER
    return servicenow_http


def _table(emulator: ServiceNowEmulator, table: str, sys_id: str = "") -> str:
    return f"{emulator.url}/api/now/table/{table}" + (f"/{sys_id}" if sys_id else "")


def _records_of(instance: Instance, key: ManagedKey) -> tuple[Record, Record]:
    name = servicenow_record_name("test", key.kid)
    certificates = [r for r in instance.emulator.rows("sys_certificate") if r["name"] == name]
    verifiers = [r for r in instance.emulator.rows("jwt_verifier_map") if r["name"] == name]
    assert len(certificates) == 1, certificates
    assert len(verifiers) == 1, verifiers
    return certificates[0], verifiers[0]


def _assert_trusted(instance: Instance, key: ManagedKey) -> None:
    certificate, verifier = _records_of(instance, key)
    assert verifier["kid"] == key.kid
    assert verifier["sys_certificate"] == certificate["sys_id"]
    assert verifier["oauth_jwt"] == instance.app_sys_id
    assert verifier.get("active", "true") == "true"  # only where the instance has it
    assert certificate["active"] == "true"
    facts = read_certificate(certificate["pem_certificate"])
    assert facts is not None
    assert facts.public_key_der == spki(public_key_of(key))


def test_a_new_key_gets_a_certificate_and_a_verifier_map(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    report = trust.reconcile([key], now)
    assert (report.created, report.removed, report.repaired, report.records) == (2, 0, 0, 2)
    _assert_trusted(instance, key)
    lifetime = trust.sync.lifetime
    assert report.certificate_expires_in_days == pytest.approx(lifetime.validity / 86400, abs=0.01)
    # Nothing to do the second time: no write at all.
    before = instance.emulator.rows("sys_certificate") + instance.emulator.rows("jwt_verifier_map")
    again = trust.reconcile([key], now)
    assert (again.created, again.removed, again.repaired) == (0, 0, 0)
    after = instance.emulator.rows("sys_certificate") + instance.emulator.rows("jwt_verifier_map")
    assert after == before
    # ServiceNow now reads the key back, and the canary exchange proves it.
    trust.confirm(key, now)


def test_a_key_that_leaves_loses_its_records_map_first(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    first, second = make_key(sn_stack), make_key(sn_stack, "ES256")
    now = sn_stack.clock.now()
    trust.reconcile([first, second], now)
    assert instance.trusted_kids() == {first.kid, second.kid}
    deleted: list[str] = []
    original_delete = trust.client.delete

    def recording_delete(table: str, sys_id: str) -> bool:
        deleted.append(table)
        return original_delete(table, sys_id)

    trust.client.delete = recording_delete  # type: ignore[method-assign]
    report = trust.reconcile([second], now)
    assert (report.removed, report.records) == (2, 2)
    assert deleted == ["jwt_verifier_map", "sys_certificate"]
    assert instance.trusted_kids() == {second.kid}
    assert trust.trusted_kids() == {second.kid}
    assert trust.reconcile([], now).removed == 2
    assert instance.owned_rows("sys_certificate") == instance.owned_rows("jwt_verifier_map") == []


def _foreign_records(instance: Instance, kid: str) -> None:
    """Records jwtkeys must never touch: similar names, another keyset, unnamed copies."""
    emulator = instance.emulator
    now = emulator.clock.now()
    pem = certificate_pem(signing_key("RS256"), not_before=now - 60, not_after=now + 86400)
    other_app = emulator.add_oauth_jwt_app("someone else", "other-client", "other-secret")
    for name in (
        f"jwtkeys/test/{kid}-copy",
        f"jwtkeys/testing/{kid}",
        f"jwtkeys/other/{kid}",
        f"JWTKEYS/test/{kid}",
        f"jwtkeys/test/{kid[:20]}",
        f"x jwtkeys/test/{kid}",
        "jwtkeys/test/",
        "manual certificate",
    ):
        certificate = emulator.add_record("sys_certificate", {"name": name, "pem_certificate": pem})
        emulator.add_record(
            "jwt_verifier_map",
            {
                "name": name,
                "kid": kid,
                "sys_certificate": certificate,
                "oauth_jwt": instance.app_sys_id if "other" not in name else other_app,
            },
        )


def _unowned(emulator: ServiceNowEmulator) -> list[dict[str, str]]:
    rows = []
    for table in ("sys_certificate", "jwt_verifier_map", "oauth_jwt", "sys_user"):
        for row in emulator.rows(table):
            name = row.get("name", "")
            prefix = "jwtkeys/test/"
            if not (name.startswith(prefix) and len(name) == len(prefix) + 43):
                rows.append(row)
    return rows


def test_records_it_does_not_own_are_never_touched(
    sn_stack: LocalStack, instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust = make_trust(sn_stack)
    first, second = make_key(sn_stack), make_key(sn_stack)
    _foreign_records(instance, first.kid)
    before = _unowned(instance.emulator)
    now = sn_stack.clock.now()
    for keys in ([first], [first, second], [second], []):
        trust.reconcile(keys, now)
    assert _unowned(instance.emulator) == before
    # An instance that drops every query condition (a field it lacks) returns every row:
    # the re-check by exact name still keeps jwtkeys off the records of others.
    original_list = TableClient.list

    def unfiltered(self: TableClient, table: str, query: str, fields: Any = None) -> list[Record]:
        return original_list(self, table, "", fields)

    monkeypatch.setattr(TableClient, "list", unfiltered)
    for keys in ([first], [first, second], [second], []):
        trust.reconcile(keys, now)
    assert _unowned(instance.emulator) == before
    trust.reconcile([second], now)
    assert instance.trusted_kids() == {second.kid}


def test_a_map_an_admin_adds_to_the_app_is_reported_at_each_reconcile_and_never_touched(
    sn_stack: LocalStack, instance: Instance, api: requests.Session
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    assert trust.reconcile([key], now).foreign == []
    emulator = instance.emulator
    # An admin trusts a key of their own on jwtkeys' application, through the Table API.
    stray_key = signing_key("RS256")
    pem = certificate_pem(stray_key, not_before=now - 60, not_after=now + 86400)
    posted = api.post(
        _table(emulator, "sys_certificate"), json={"name": "partner key", "pem_certificate": pem}
    )
    assert posted.status_code == 201, posted.text
    certificate = posted.json()["result"]["sys_id"]
    posted = api.post(
        _table(emulator, "jwt_verifier_map"),
        json={
            "name": "partner key",
            "kid": "partner-kid",
            "sys_certificate": certificate,
            "oauth_jwt": instance.app_sys_id,
        },
    )
    assert posted.status_code == 201, posted.text
    stray = posted.json()["result"]["sys_id"]
    # Why it is a finding: ServiceNow now accepts tokens of a key jwtkeys never published.
    token = make_assertion(
        stray_key, "RS256", "partner-kid", client_id=CLIENT_ID, sub=CANARY_EMAIL, now=now
    )
    assert exchange(emulator, token).status_code == 200
    # A map of another application is not jwtkeys' concern.
    other_app = emulator.add_oauth_jwt_app("someone else", "other-client", "other-secret")
    emulator.add_record(
        "jwt_verifier_map",
        {"name": "elsewhere", "kid": "k", "sys_certificate": certificate, "oauth_jwt": other_app},
    )
    before = _unowned(emulator)
    for _ in range(2):
        report = trust.reconcile([key], now)
        assert report.foreign == [
            {
                "table": "jwt_verifier_map",
                "sys_id": stray,
                "name": "partner key",
                "kid": "partner-kid",
                "sys_certificate": certificate,
            }
        ]
        assert report.drift == 0
    # Reported, never changed or deleted; jwtkeys' own records are as they should be.
    assert _unowned(emulator) == before
    _assert_trusted(instance, key)
    # Once an operator removes it, it is no longer reported.
    _delete(api, instance, "jwt_verifier_map", stray)
    assert trust.reconcile([key], now).foreign == []


Edit = Callable[[requests.Session, Instance, Record, Record], None]


def _patch(
    api: requests.Session, instance: Instance, table: str, sys_id: str, **values: str
) -> None:
    response = api.patch(_table(instance.emulator, table, sys_id), json=values)
    assert response.status_code == 200, response.text


def _delete(api: requests.Session, instance: Instance, table: str, sys_id: str) -> None:
    assert api.delete(_table(instance.emulator, table, sys_id)).status_code == 204


def _other_certificate(instance: Instance) -> str:
    now = instance.emulator.clock.now()
    return certificate_pem(signing_key("RS256"), not_before=now - 60, not_after=now + 86400)


def _delete_both(api: requests.Session, instance: Instance, c: Record, v: Record) -> None:
    _delete(api, instance, "jwt_verifier_map", v["sys_id"])
    _delete(api, instance, "sys_certificate", c["sys_id"])


HAND_EDITS: dict[str, Edit] = {
    "map kid": lambda api, i, c, v: _patch(api, i, "jwt_verifier_map", v["sys_id"], kid="x"),
    "map app": lambda api, i, c, v: _patch(
        api,
        i,
        "jwt_verifier_map",
        v["sys_id"],
        oauth_jwt=i.emulator.add_oauth_jwt_app("decoy", "decoy", "decoy"),
    ),
    "map certificate": lambda api, i, c, v: _patch(
        api,
        i,
        "jwt_verifier_map",
        v["sys_id"],
        sys_certificate=i.emulator.add_record(
            "sys_certificate", {"name": "decoy", "pem_certificate": _other_certificate(i)}
        ),
    ),
    "certificate inactive": lambda api, i, c, v: _patch(
        api, i, "sys_certificate", c["sys_id"], active="false"
    ),
    "certificate replaced": lambda api, i, c, v: _patch(
        api, i, "sys_certificate", c["sys_id"], pem_certificate=_other_certificate(i)
    ),
    "map deleted": lambda api, i, c, v: _delete(api, i, "jwt_verifier_map", v["sys_id"]),
    "certificate deleted": lambda api, i, c, v: _delete(api, i, "sys_certificate", c["sys_id"]),
    "both deleted": lambda api, i, c, v: _delete_both(api, i, c, v),
}


@pytest.mark.parametrize("edit", sorted(HAND_EDITS))
def test_hand_edits_of_owned_records_are_repaired_and_counted_as_drift(
    sn_stack: LocalStack, instance: Instance, api: requests.Session, edit: str
) -> None:
    trust = make_trust(sn_stack)
    key, other = make_key(sn_stack), make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key, other], now)
    certificate, verifier = _records_of(instance, key)
    untouched = _records_of(instance, other)
    HAND_EDITS[edit](api, instance, certificate, verifier)
    with pytest.raises(TrustNotConfirmed):
        trust.confirm(key, now)
    report = trust.reconcile([key, other], now)
    assert report.repaired >= 1, report
    assert report.drift == report.repaired
    _assert_trusted(instance, key)
    assert _records_of(instance, other) == untouched
    trust.confirm(key, now)
    settled = trust.reconcile([key, other], now)
    assert (settled.created, settled.removed, settled.repaired) == (0, 0, 0)


def test_a_certificate_nearing_expiry_is_renewed_in_place(
    sn_stack: LocalStack, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    trust.reconcile([key], servicenow_clock.now())
    old_certificate, verifier = _records_of(instance, key)
    lifetime = trust.sync.lifetime
    # A stalled rotation: the key outlives its planned life and the clock reaches the
    # renewal point; the certificate is still valid until then.
    servicenow_clock.advance(lifetime.validity - lifetime.renew_before - 600)
    quiet = trust.reconcile([key], servicenow_clock.now())
    assert (quiet.created, quiet.removed) == (0, 0)
    servicenow_clock.advance(1200)
    report = trust.reconcile([key], servicenow_clock.now())
    assert (report.created, report.repaired, report.removed) == (0, 0, 0)
    assert any("renewed" in note for note in report.notes)
    # Certificate names are unique on an instance: the same record gets the new PEM.
    new_certificate, new_verifier = _records_of(instance, key)
    assert new_certificate["sys_id"] == old_certificate["sys_id"]
    assert new_certificate["pem_certificate"] != old_certificate["pem_certificate"]
    assert new_verifier == verifier
    assert report.certificate_expires_in_days is not None
    assert report.certificate_expires_in_days > lifetime.validity / 86400 - 0.1
    trust.confirm(key, servicenow_clock.now())


def test_a_renewal_cut_short_is_finished_by_the_next_reconcile(
    sn_stack: LocalStack, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    trust.reconcile([key], servicenow_clock.now())
    lifetime = trust.sync.lifetime
    servicenow_clock.advance(lifetime.validity - lifetime.renew_before + 60)
    original_update = trust.client.update

    def failing_update(table: str, sys_id: str, values: Any) -> Record:
        raise ServiceNowError("PATCH sys_certificate: HTTP 500 (injected)")

    trust.client.update = failing_update  # type: ignore[method-assign]
    with pytest.raises(ServiceNowError):
        trust.reconcile([key], servicenow_clock.now())
    assert len(instance.owned_rows("sys_certificate")) == 1
    trust.client.update = original_update  # type: ignore[method-assign]
    report = trust.reconcile([key], servicenow_clock.now())
    assert (report.created, report.repaired, report.removed) == (0, 0, 0)
    assert any("renewed" in note for note in report.notes)
    _assert_trusted(instance, key)


def test_confirm_refuses_a_key_without_records_or_a_refused_canary(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    with pytest.raises(TrustNotConfirmed, match="0 correct record"):
        trust.confirm(key, now)
    trust.reconcile([key], now)
    trust.confirm(key, now)
    # A canary ServiceNow refuses (an admin subject, an unknown one): no confirmation.
    instance.emulator.add_user("jwtkeys.admin", email="admin@jwtkeys.test", roles=("admin",))
    for subject in ("admin@jwtkeys.test", "nobody@jwtkeys.test"):
        trust.settings = dataclasses.replace(trust.settings, canary_subject=subject)
        with pytest.raises(TrustNotConfirmed, match="refused"):
            trust.confirm(key, now)
    assert any("Grant access to admin is not allowed" in line for line in instance.emulator.log)


def test_confirm_needs_the_app_secret_for_the_canary(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    secret = put_secret(local_aws, secret_value(app_secret=None))
    stack = make_stack(local_aws, servicenow_clock, servicenow_env(instance.emulator, secret))
    trust = make_trust(stack)
    key = make_key(stack)
    trust.reconcile([key], servicenow_clock.now())
    with pytest.raises(TrustNotConfirmed, match="oauth_client_secret"):
        trust.confirm(key, servicenow_clock.now())
    # Without a canary subject, reading the records back is the whole gate.
    quiet = make_stack(
        local_aws, servicenow_clock, servicenow_env(instance.emulator, secret, canary=None)
    )
    make_trust(quiet).confirm(key, servicenow_clock.now())


def test_end_sessions_deletes_only_the_apps_credentials(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    trust.confirm(key, now)
    trust.confirm(key, now)
    emulator = instance.emulator
    other_app = emulator.add_oauth_jwt_app("someone else", "other-client", "other-secret")
    emulator.add_record(
        "oauth_credential",
        {"name": "other", "peer": other_app, "user": instance.canary_sys_id, "expires": ""},
    )
    assert trust.end_sessions() == 2
    remaining = emulator.rows("oauth_credential")
    assert [row["peer"] for row in remaining] == [other_app]
    assert trust.end_sessions() == 0


def test_oauth_client_credentials_authenticate_the_integration_user(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    instance.emulator.add_oauth_client(
        "jwtkeys integration",
        "jwtkeys-integration",
        "integration-client-secret",
        user=instance.integration_sys_id,
    )
    secret = put_secret(local_aws, secret_value("oauth_client_credentials"))
    stack = make_stack(local_aws, servicenow_clock, servicenow_env(instance.emulator, secret))
    trust = make_trust(stack)
    key = make_key(stack)
    assert trust.reconcile([key], servicenow_clock.now()).created == 2
    trust.confirm(key, servicenow_clock.now())
    # The access token is cached: one client-credentials grant for both calls.
    grants = [row for row in instance.emulator.rows("oauth_credential")]
    assert len(grants) == 2  # the integration token and the canary's


def test_missing_app_and_missing_roles_fail_with_a_named_error(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> None:
    secret = put_secret(local_aws, secret_value())
    env = servicenow_env(instance.emulator, secret)
    env["JWTKEYS_SERVICENOW_CLIENT_ID"] = "no-such-client"
    stack = make_stack(local_aws, servicenow_clock, env)
    stack.config.issuer = "no-such-client"  # a ServiceNow keyset's issuer is its client id
    with pytest.raises(ServiceNowError, match="no oauth_jwt application"):
        make_trust(stack).reconcile([make_key(stack)], servicenow_clock.now())
    instance.emulator.add_user("weak", roles=("itil",), password="weak-password")
    weak = put_secret(
        local_aws, '{"type": "basic", "username": "weak", "password": "weak-password"}'
    )
    weak_stack = make_stack(local_aws, servicenow_clock, servicenow_env(instance.emulator, weak))
    # The ACL hides the app from a user without oauth_admin, as an instance does.
    with pytest.raises(ServiceNowError, match="cannot read it"):
        make_trust(weak_stack).reconcile([make_key(weak_stack)], servicenow_clock.now())


def test_a_kms_signed_token_is_accepted_through_the_synced_records(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack, "ES384")
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    claims = {
        "iss": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": CANARY_EMAIL,
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": uuid.uuid4().hex,
    }
    token = KmsJwsSigner(sn_stack.kms).sign(
        json.dumps(claims).encode(), KmsKeyRef(key.arn, key.kid, key_algorithm(key))
    )
    response = exchange(instance.emulator, token)
    assert response.status_code == 200, instance.emulator.log


def test_secrets_and_tokens_never_reach_logs_or_errors(
    sn_stack: LocalStack, instance: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything ours and urllib3's, down to DEBUG. (botocore's own DEBUG log prints
    # response bodies, secrets included: the keeper never runs botocore at DEBUG.)
    caplog.set_level(logging.INFO)
    for name in ("jwtkeys", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    trust.confirm(key, now)
    instance.emulator.inject_fault("http500", count=10, path_contains="/oauth_token.do")
    with pytest.raises(TrustNotConfirmed) as failed:
        trust.confirm(key, now)
    instance.emulator.clear_faults()
    secrets = (INTEGRATION_USER[1], CLIENT_SECRET, "Basic ", "Bearer ", "assertion=")
    seen = caplog.text + str(failed.value) + repr(trust.client.session.auth)
    for secret in secrets:
        assert secret not in seen
