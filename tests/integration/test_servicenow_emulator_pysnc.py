"""ServiceNow's own client, pysnc 1.2.1, works against the emulator unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pysnc
import pytest
import requests

from jwtkeys_tools.local.servicenow_emulator import JWT_BEARER, ServiceNowEmulator
from tests.servicenow_fixtures import make_assertion, trust_key


@pytest.fixture
def trust_emulator_ca(servicenow: ServiceNowEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # pysnc sends through session.merge_environment_settings, where REQUESTS_CA_BUNDLE
    # (set in this environment) beats the session's `verify`: point it at the emulator.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", servicenow.ca_bundle)


@pytest.fixture
def client(
    servicenow: ServiceNowEmulator,
    servicenow_integration_auth: tuple[str, str],
    trust_emulator_ca: None,
) -> Iterator[Any]:
    snc = pysnc.ServiceNowClient(
        servicenow.url, servicenow_integration_auth, verify=servicenow.ca_bundle
    )
    yield snc
    snc.session.close()


def test_insert_query_update_delete(client: Any, servicenow: ServiceNowEmulator) -> None:
    # Insert
    app = client.GlideRecord("oauth_jwt")
    app.initialize()
    app.name = "jwtkeys app"
    app.client_id = "cid"
    app.clock_skew = "120"
    sys_id = app.insert()
    assert sys_id is not None
    assert [r["name"] for r in servicenow.rows("oauth_jwt")] == ["jwtkeys app"]

    # Query
    found = client.GlideRecord("oauth_jwt")
    found.add_query("client_id", "cid")
    found.query()
    assert len(found) == 1
    assert found.next()
    assert found.get_value("sys_id") == str(sys_id)
    assert found.get_value("clock_skew") == "120"
    assert found.get_value("enable_jti_verification") == "true"

    # Update
    found.clock_skew = "60"
    assert found.update() is not None
    assert servicenow.rows("oauth_jwt")[0]["clock_skew"] == "60"

    # Delete
    assert found.delete()
    assert servicenow.rows("oauth_jwt") == []


def test_empty_query_and_missing_record(client: Any) -> None:
    empty = client.GlideRecord("jwt_verifier_map")
    empty.add_query("name", "jwtkeys/none")
    empty.query()
    assert len(empty) == 0
    assert not empty.next()
    assert not client.GlideRecord("jwt_verifier_map").get("0" * 32)


def test_reference_values_and_display_values(client: Any, servicenow: ServiceNowEmulator) -> None:
    app = servicenow.add_oauth_jwt_app("The App", "cid", "s")
    verifier = client.GlideRecord("jwt_verifier_map")
    verifier.initialize()
    verifier.name = "jwtkeys/prod/k1"
    verifier.kid = "k1"
    verifier.oauth_jwt = app
    verifier.insert()
    reread = client.GlideRecord("jwt_verifier_map")
    assert reread.get("kid", "k1")
    assert reread.get_value("oauth_jwt") == app
    assert reread.get_display_value("oauth_jwt") == "The App"


def test_acl_refusal_reaches_pysnc_as_an_exception(
    servicenow: ServiceNowEmulator, trust_emulator_ca: None
) -> None:
    servicenow.add_user("plain", password="pw")
    snc = pysnc.ServiceNowClient(servicenow.url, ("plain", "pw"), verify=servicenow.ca_bundle)
    try:
        record = snc.GlideRecord("sys_certificate")
        record.initialize()
        record.name = "x"
        with pytest.raises(pysnc.exceptions.RoleException):
            record.insert()
    finally:
        snc.session.close()


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def test_pysnc_with_an_access_token_from_the_jwt_bearer_grant(
    servicenow: ServiceNowEmulator,
    servicenow_http: requests.Session,
    trust_emulator_ca: None,
) -> None:
    servicenow.add_user("svc", email="svc@example.com")
    trusted = trust_key(servicenow)
    assertion = make_assertion(
        trusted.key,
        trusted.alg,
        trusted.kid,
        client_id=trusted.client_id,
        sub="svc@example.com",
        now=servicenow.clock.now(),
    )
    token = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do",
        data={
            "grant_type": JWT_BEARER,
            "assertion": assertion,
            "client_id": trusted.client_id,
            "client_secret": trusted.client_secret,
        },
    ).json()["access_token"]
    snc = pysnc.ServiceNowClient(servicenow.url, _Bearer(token), verify=servicenow.ca_bundle)
    try:
        users = snc.GlideRecord("sys_user")
        users.add_query("user_name", "svc")
        users.query()
        assert len(users) == 1
    finally:
        snc.session.close()


def test_an_or_condition_lists_owned_maps_and_every_map_of_the_app(
    client: Any, servicenow: ServiceNowEmulator
) -> None:
    """The query jwtkeys' reconcile makes (owned names, or any map of its application),
    as pysnc builds it: an admin's map on the app is listed, another app's is not."""
    ours = trust_key(servicenow)
    other_app = servicenow.add_oauth_jwt_app("someone else", "other-cid", "other-secret")
    # An admin adds maps through pysnc as a script would: one on jwtkeys' app, one elsewhere.
    for name, app in (("admin's map", ours.app_sys_id), ("elsewhere", other_app)):
        stray = client.GlideRecord("jwt_verifier_map")
        stray.initialize()
        stray.name = name
        stray.kid = "admin-kid"
        stray.sys_certificate = ours.certificate_sys_id
        stray.oauth_jwt = app
        assert stray.insert() is not None
    found = client.GlideRecord("jwt_verifier_map")
    found.add_query("name", "STARTSWITH", "jwtkeys/test/").add_or_condition(
        "oauth_jwt", ours.app_sys_id
    )
    found.query()
    names = sorted(record.get_value("name") for record in found)
    assert names == sorted([f"jwtkeys/test/{ours.kid}", "admin's map"])
