"""The sync reads the instance's dictionary instead of assuming it, on every profile."""

from __future__ import annotations

import dataclasses

import pytest
import requests

from jwtkeys.errors import ServiceNowError, SessionsNotEnded, TrustNotConfirmed
from jwtkeys.servicenow.schema import SchemaMismatch
from jwtkeys_tools.local.servicenow_emulator.profiles import InstanceProfile, load_profile
from jwtkeys_tools.local.stack import LocalStack
from tests.servicenow_fixtures import ALL_PROFILES
from tests.servicenow_sync_fixtures import CANARY_EMAIL, Instance, make_key, make_trust

# The pessimistic profile with name fields wide enough for keyset `test`: everything
# else about it (no map `active`, other choice spellings, admin-only sessions, skew 0).
WIDE_PESSIMISTIC = dataclasses.replace(
    load_profile("pessimistic"),
    name="pessimistic-wide-names",
    max_lengths={"sys_certificate.name": 100, "jwt_verifier_map.name": 100},
)


def _owned_rows(instance: Instance) -> int:
    return len(instance.owned_rows("sys_certificate")) + len(
        instance.owned_rows("jwt_verifier_map")
    )


@pytest.mark.parametrize("servicenow_profile", ALL_PROFILES)
def test_every_profile_trusts_a_key_or_refuses_before_writing(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: str
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    if servicenow_profile == "pessimistic":
        # Name fields of 40 characters cannot hold jwtkeys/test/<43-character kid>.
        with pytest.raises(SchemaMismatch, match=r"sys_certificate\.name holds 40 characters"):
            trust.reconcile([key], now)
        assert instance.emulator.rows("sys_certificate") == []
        assert instance.emulator.rows("jwt_verifier_map") == []
        return
    report = trust.reconcile([key], now)
    assert (report.created, report.repaired) == (2, 0)
    trust.confirm(key, now)  # read back, and the canary exchanged through the records
    assert trust.reconcile([key], now).drift == 0
    trust.reconcile([], now)
    assert _owned_rows(instance) == 0


@pytest.mark.parametrize("servicenow_profile", [WIDE_PESSIMISTIC])
def test_the_instance_spelling_of_choices_is_written_and_no_map_active_is_needed(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: InstanceProfile
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    [certificate] = instance.owned_rows("sys_certificate")
    assert (certificate["format"], certificate["type"]) == ("PEM", "trust_store_cert")
    [verifier] = instance.owned_rows("jwt_verifier_map")
    assert "active" not in verifier
    trust.confirm(key, now)
    assert trust.reconcile([key], now).drift == 0


@pytest.mark.parametrize("servicenow_profile", [WIDE_PESSIMISTIC])
def test_sessions_hidden_by_acl_are_reported_not_ended(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: InstanceProfile
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    trust.confirm(key, now)  # the canary leaves a session the integration user cannot see
    assert len(instance.emulator.rows("oauth_credential")) == 1
    with pytest.raises(SessionsNotEnded, match="could not end sessions"):
        trust.end_sessions()
    assert len(instance.emulator.rows("oauth_credential")) == 1


def test_an_empty_session_list_counts_once_a_session_was_seen(
    sn_stack: LocalStack, instance: Instance
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    with pytest.raises(SessionsNotEnded):
        trust.end_sessions()  # nothing seen yet: an empty list proves nothing
    trust.confirm(key, now)
    assert trust.end_sessions() == 1
    assert trust.end_sessions() == 0


@pytest.mark.parametrize(
    "servicenow_profile",
    [dataclasses.replace(load_profile(), name="map-active", absent_fields=frozenset())],
)
def test_map_active_is_written_and_required_where_the_dictionary_shows_it(
    sn_stack: LocalStack,
    instance: Instance,
    servicenow_http: requests.Session,
    servicenow_profile: InstanceProfile,
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    [verifier] = instance.owned_rows("jwt_verifier_map")
    assert verifier["active"] == "true"
    # A hand edit through the Table API, as an admin would make it.
    instance.emulator.add_user("an.admin", roles=["admin"], password="pw")
    edited = servicenow_http.patch(
        f"{instance.emulator.url}/api/now/table/jwt_verifier_map/{verifier['sys_id']}",
        json={"active": "false"},
        auth=("an.admin", "pw"),
    )
    assert edited.status_code == 200
    report = trust.reconcile([key], now)
    assert report.repaired == 1
    trust.confirm(key, now)


@pytest.mark.parametrize(
    "servicenow_profile",
    [
        dataclasses.replace(
            load_profile(),
            name="missing-kid",
            absent_fields=frozenset({"jwt_verifier_map.active", "jwt_verifier_map.kid"}),
        )
    ],
)
def test_a_missing_field_is_refused_before_anything_is_written(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: InstanceProfile
) -> None:
    trust = make_trust(sn_stack)
    with pytest.raises(SchemaMismatch, match=r"jwt_verifier_map\.kid does not exist"):
        trust.reconcile([make_key(sn_stack)], sn_stack.clock.now())
    assert instance.emulator.rows("sys_certificate") == []


@pytest.mark.parametrize(
    "servicenow_profile",
    [
        dataclasses.replace(
            load_profile("pessimistic"), name="silent-truncation", report_lengths=False
        )
    ],
)
def test_a_truncated_record_is_deleted_and_the_tick_fails(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: InstanceProfile
) -> None:
    # The dictionary does not say how long `name` is, and the instance truncates it.
    trust = make_trust(sn_stack)
    with pytest.raises(ServiceNowError, match="truncated or altered"):
        trust.reconcile([make_key(sn_stack)], sn_stack.clock.now())
    # No orphan: the record whose name was cut (no longer recognisable as ours) is gone.
    assert instance.emulator.rows("sys_certificate") == []
    assert instance.emulator.rows("jwt_verifier_map") == []


@pytest.mark.parametrize("servicenow_profile", ["zurich-machine-identity"])
def test_a_backdated_canary_passes_an_instance_with_no_skew_and_a_clock_behind(
    sn_stack: LocalStack, instance: Instance, servicenow_profile: str
) -> None:
    trust = make_trust(sn_stack)
    key = make_key(sn_stack)
    now = sn_stack.clock.now()
    trust.reconcile([key], now)
    # The signer's clock is 2 s ahead of the instance's, whose clock skew is 0 s.
    with pytest.raises(TrustNotConfirmed, match="refused"):
        trust._canary(key, now + 2, CANARY_EMAIL)
    assert "not valid before" in instance.emulator.log[-1]
    backdated = make_trust(sn_stack)
    backdated._not_before_margin = 5
    backdated._canary(key, now + 2, CANARY_EMAIL)
