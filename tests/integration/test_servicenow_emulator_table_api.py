"""The emulator's Table API (docs/emulators.md): shapes, codes, error bodies, queries, ACLs."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_emulator.certificates import glide_datetime
from tests.servicenow_fixtures import CLOCK_START, certificate_pem, signing_key

SYS_ID = re.compile(r"^[0-9a-f]{32}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
NOT_AUTHENTICATED = {
    "error": {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    },
    "status": "failure",
}
NO_RECORD = {
    "error": {
        "message": "No Record found",
        "detail": "Record doesn't exist or ACL restricts the record retrieval",
    },
    "status": "failure",
}


def acl_failure(operation: str) -> dict[str, Any]:
    detail = f"ACL Exception {operation} Failed due to security constraints"
    return {"error": {"message": "Operation Failed", "detail": detail}, "status": "failure"}


@pytest.fixture
def api(servicenow_api: requests.Session) -> requests.Session:
    """A session authenticated as the integration user."""
    return servicenow_api


def table(servicenow: ServiceNowEmulator, name: str, version: str = "") -> str:
    prefix = f"/api/now/{version}/table" if version else "/api/now/table"
    return f"{servicenow.url}{prefix}/{name}"


def pem(now: float, *, days: int = 30) -> str:
    return certificate_pem(signing_key("ES256"), not_before=now, not_after=now + days * 86400)


def test_insert_returns_201_location_and_string_values(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    response = api.post(
        table(servicenow, "oauth_jwt"),
        json={"name": "app", "client_id": "cid", "clock_skew": 120, "active": True},
    )
    assert response.status_code == 201
    record = response.json()["result"]
    assert SYS_ID.match(record["sys_id"])
    assert response.headers["Location"] == f"{table(servicenow, 'oauth_jwt')}/{record['sys_id']}"
    assert record["clock_skew"] == "120"
    assert record["active"] == "true"
    assert record["enable_jti_verification"] == "true"
    assert record["user_field"] == "email"
    # the emulator clock, not real time
    assert record["sys_created_on"] == glide_datetime(servicenow.clock.now())
    assert all(isinstance(v, str) for v in record.values())


def test_get_update_delete_round_trip(
    servicenow: ServiceNowEmulator, servicenow_clock: SimulatedClock, api: requests.Session
) -> None:
    sys_id = servicenow.add_user("u1", email="u1@example.com")
    user = api.get(f"{table(servicenow, 'sys_user')}/{sys_id}")
    assert user.status_code == 200
    assert user.json()["result"]["email"] == "u1@example.com"

    created_on = glide_datetime(servicenow_clock.now())
    app = api.post(table(servicenow, "oauth_jwt"), json={"name": "a", "client_id": "c"})
    app_url = f"{table(servicenow, 'oauth_jwt')}/{app.json()['result']['sys_id']}"
    servicenow_clock.advance(3600)
    patched = api.patch(app_url, json={"clock_skew": "60", "u_not_a_field": "ignored"})
    assert patched.status_code == 200
    result = patched.json()["result"]
    assert result["clock_skew"] == "60"
    assert "u_not_a_field" not in result
    assert result["sys_mod_count"] == "1"
    assert result["sys_updated_on"] == glide_datetime(servicenow_clock.now())
    assert result["sys_created_on"] == created_on
    put = api.put(app_url, json={"name": "renamed"})
    assert put.json()["result"]["name"] == "renamed"
    assert put.json()["result"]["clock_skew"] == "60"

    deleted = api.delete(app_url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert api.get(app_url).json() == NO_RECORD
    assert api.get(app_url).status_code == 404
    assert api.delete(app_url).status_code == 404
    assert api.patch(app_url, json={"name": "x"}).json() == NO_RECORD


@pytest.mark.parametrize(
    ("version", "status", "body"),
    [
        ("", 200, {"result": []}),
        ("v2", 200, {"result": []}),
        (
            "v1",
            404,
            {
                "error": {
                    "message": "No Record found",
                    "detail": "Records matching query not found. "
                    "Check query parameter or offset parameter",
                },
                "status": "failure",
            },
        ),
    ],
)
def test_empty_list_per_api_version(
    servicenow: ServiceNowEmulator,
    api: requests.Session,
    version: str,
    status: int,
    body: dict[str, Any],
) -> None:
    response = api.get(table(servicenow, "jwt_verifier_map", version))
    assert response.status_code == status
    assert response.json() == body


def test_versioned_paths_serve_the_same_records(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    servicenow.add_oauth_jwt_app("app", "cid", "secret")
    for version in ("", "v1", "v2"):
        result = api.get(table(servicenow, "oauth_jwt", version)).json()["result"]
        assert [r["client_id"] for r in result] == ["cid"]


def test_query_on_a_missing_field_matches_every_row(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    # Given two apps, When a query names a field the table lacks, Then both come back.
    servicenow.add_oauth_jwt_app("one", "c1", "s")
    servicenow.add_oauth_jwt_app("two", "c2", "s")
    careless = api.get(table(servicenow, "oauth_jwt"), params={"sysparm_query": "u_owner=jwtkeys"})
    assert [r["name"] for r in careless.json()["result"]] == ["one", "two"]
    careful = api.get(table(servicenow, "oauth_jwt"), params={"sysparm_query": "name=two"})
    assert [r["name"] for r in careful.json()["result"]] == ["two"]


def test_encoded_query_operators_and_ordering(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    for name in ("jwtkeys/prod/b", "jwtkeys/prod/a", "jwtkeys/dev/c", "mine"):
        servicenow.add_oauth_jwt_app(name, name, "s")
    url = table(servicenow, "oauth_jwt")

    def names(query: str) -> list[str]:
        return [r["name"] for r in api.get(url, params={"sysparm_query": query}).json()["result"]]

    assert names("nameSTARTSWITHjwtkeys/prod/^ORDERBYname") == ["jwtkeys/prod/a", "jwtkeys/prod/b"]
    assert names("nameLIKEdev^ORname=mine^ORDERBYDESCname") == ["mine", "jwtkeys/dev/c"]
    assert names("nameENDSWITH/a") == ["jwtkeys/prod/a"]
    assert names("name!=mine^ORDERBYname") == ["jwtkeys/dev/c", "jwtkeys/prod/a", "jwtkeys/prod/b"]
    assert names("nameINmine,jwtkeys/dev/c^ORDERBYname") == ["jwtkeys/dev/c", "mine"]


def test_fields_limit_offset_total_count_and_link(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    for index in range(5):
        servicenow.add_oauth_jwt_app(f"app{index}", f"c{index}", "s")
    response = api.get(
        table(servicenow, "oauth_jwt"),
        params={
            "sysparm_query": "ORDERBYname",
            "sysparm_fields": "name,client_id,u_missing",
            "sysparm_limit": "2",
            "sysparm_offset": "2",
        },
    )
    assert response.status_code == 200
    assert response.json()["result"] == [
        {"name": "app2", "client_id": "c2"},
        {"name": "app3", "client_id": "c3"},
    ]
    assert response.headers["X-Total-Count"] == "5"
    links = dict(
        (rel, url) for url, rel in re.findall(r'<([^>]+)>;rel="(\w+)"', response.headers["Link"])
    )
    assert set(links) == {"first", "prev", "next", "last"}
    assert "sysparm_offset=4" in links["next"]
    assert "sysparm_limit=2" in links["next"]
    assert "sysparm_offset=0" in links["first"]
    assert "sysparm_offset=4" in links["last"]
    assert links["next"].startswith(f"{table(servicenow, 'oauth_jwt')}?")
    following = api.get(links["next"]).json()["result"]
    assert [r["name"] for r in following] == ["app4"]


def test_reference_fields_links_and_display_values(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    app = servicenow.add_oauth_jwt_app("The App", "cid", "s")
    now = servicenow.clock.now()
    certificate = servicenow.add_record(
        "sys_certificate", {"name": "cert-1", "pem_certificate": pem(now)}
    )
    verifier = servicenow.add_record(
        "jwt_verifier_map",
        {"name": "map-1", "kid": "k1", "sys_certificate": certificate, "oauth_jwt": app},
    )
    url = f"{table(servicenow, 'jwt_verifier_map')}/{verifier}"

    plain = api.get(url).json()["result"]
    assert plain["oauth_jwt"] == {
        "link": f"{servicenow.url}/api/now/table/oauth_jwt/{app}",
        "value": app,
    }
    assert plain["sys_certificate"]["value"] == certificate
    excluded = api.get(url, params={"sysparm_exclude_reference_link": "true"}).json()["result"]
    assert excluded["oauth_jwt"] == app
    shown = api.get(url, params={"sysparm_display_value": "true"}).json()["result"]
    assert shown["oauth_jwt"] == {
        "link": f"{servicenow.url}/api/now/table/oauth_jwt/{app}",
        "display_value": "The App",
    }
    assert shown["kid"] == "k1"
    both = api.get(
        url,
        params={"sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"},
    ).json()["result"]
    assert both["oauth_jwt"] == {"display_value": "The App", "value": app}
    assert both["name"] == {"display_value": "map-1", "value": "map-1"}
    by_reference = api.get(
        table(servicenow, "jwt_verifier_map"),
        params={"sysparm_query": f"oauth_jwt={app}^kid=k1", "sysparm_fields": "sys_id"},
    ).json()["result"]
    assert by_reference == [{"sys_id": verifier}]
    dot_walked = api.get(
        table(servicenow, "jwt_verifier_map"),
        params={"sysparm_query": "oauth_jwt.name=The App"},
    ).json()["result"]
    assert [r["sys_id"] for r in dot_walked] == [verifier]


def test_oauth_jwt_rows_are_visible_through_oauth_entity(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    app = servicenow.add_oauth_jwt_app("app", "cid", "s")
    entities = api.get(table(servicenow, "oauth_entity")).json()["result"]
    assert [e["sys_id"] for e in entities] == [app]
    assert entities[0]["sys_class_name"] == "oauth_jwt"
    assert "user_field" not in entities[0]  # oauth_entity shows only its own schema
    assert api.get(f"{table(servicenow, 'oauth_entity')}/{app}").status_code == 200
    plain = servicenow.add_record("oauth_entity", {"name": "plain", "client_id": "p"})
    jwt_apps = api.get(table(servicenow, "oauth_jwt")).json()["result"]
    assert [a["sys_id"] for a in jwt_apps] == [app]
    assert api.get(f"{table(servicenow, 'oauth_jwt')}/{plain}").status_code == 404


def test_certificate_insert_derives_expiry_subject_and_defaults(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    now = servicenow.clock.now()
    key = signing_key("RS256")
    text = certificate_pem(
        key, not_before=now, not_after=now + 86400, common_name="jwtkeys/prod/k1"
    )
    response = api.post(
        table(servicenow, "sys_certificate"), json={"name": "c", "pem_certificate": text}
    )
    assert response.status_code == 201
    record = response.json()["result"]
    assert record["expires"] == glide_datetime(now + 86400)
    assert record["valid_from"] == glide_datetime(now)
    assert record["subject"] == "CN=jwtkeys/prod/k1"
    assert record["format"] == "pem"
    assert record["type"] == "trust_store"
    assert record["active"] == "true"
    assert DATETIME.match(record["expires"])


def _single_line(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join([lines[0], "".join(lines[1:-1]), lines[-1]])


def _public_key_only(text: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(text.encode()).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize(
    ("mangle", "detail_contains"),
    [
        (_public_key_only, "bare public key"),
        (_single_line, "not wrapped"),
        (lambda text: "not a certificate at all", "BEGIN CERTIFICATE"),
        (
            lambda text: text.replace(text.strip().splitlines()[3], "A" * 64),
            "not a valid X.509 certificate",
        ),
    ],
)
def test_certificate_insert_refuses_what_is_not_a_wrapped_certificate(
    servicenow: ServiceNowEmulator,
    api: requests.Session,
    mangle: Any,
    detail_contains: str,
) -> None:
    text = mangle(pem(servicenow.clock.now()))
    response = api.post(
        table(servicenow, "sys_certificate"), json={"name": "bad", "pem_certificate": text}
    )
    assert response.status_code == 403
    body = response.json()
    assert body["status"] == "failure"
    assert body["error"]["message"] == "Operation Failed"
    assert detail_contains in body["error"]["detail"]
    assert servicenow.rows("sys_certificate") == []


def test_certificate_update_is_checked_too(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    now = servicenow.clock.now()
    sys_id = servicenow.add_record("sys_certificate", {"name": "c", "pem_certificate": pem(now)})
    url = f"{table(servicenow, 'sys_certificate')}/{sys_id}"
    refused = api.patch(url, json={"pem_certificate": "-----BEGIN PUBLIC KEY-----"})
    assert refused.status_code == 403
    renewed = api.patch(url, json={"pem_certificate": pem(now, days=90)})
    assert renewed.json()["result"]["expires"] == glide_datetime(now + 90 * 86400)


def test_blank_kid_is_auto_filled_with_32_hex(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    response = api.post(table(servicenow, "jwt_verifier_map"), json={"name": "m", "kid": ""})
    assert response.status_code == 201
    assert SYS_ID.match(response.json()["result"]["kid"])
    explicit = api.post(table(servicenow, "jwt_verifier_map"), json={"name": "n", "kid": "mine"})
    assert explicit.json()["result"]["kid"] == "mine"


@pytest.mark.parametrize(
    "auth",
    [None, ("jwtkeys.integration", "wrong"), ("nobody", "x")],
    ids=["none", "wrong-password", "unknown-user"],
)
def test_401_without_valid_basic_auth(
    servicenow: ServiceNowEmulator,
    servicenow_http: requests.Session,
    servicenow_integration_auth: tuple[str, str],
    auth: tuple[str, str] | None,
) -> None:
    response = servicenow_http.get(table(servicenow, "sys_user"), auth=auth)
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


def test_401_with_unknown_bearer_token(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    response = servicenow_http.get(
        table(servicenow, "sys_user"), headers={"Authorization": "Bearer not-a-token"}
    )
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


def test_acl_refuses_writes_without_roles(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    # Given a user with no roles and an existing certificate
    servicenow.add_user("plain", password="pw")
    now = servicenow.clock.now()
    existing = servicenow.add_record("sys_certificate", {"name": "c", "pem_certificate": pem(now)})
    servicenow_http.auth = ("plain", "pw")
    url = table(servicenow, "sys_certificate")
    # Then every write is 403 with the instance's ACL message
    insert = servicenow_http.post(url, json={"name": "x", "pem_certificate": pem(now)})
    assert (insert.status_code, insert.json()) == (403, acl_failure("Insert"))
    # and reads behave as if nothing were there
    assert servicenow_http.get(url).json() == {"result": []}
    assert servicenow_http.get(f"{url}/{existing}").json() == NO_RECORD
    verifier_url = table(servicenow, "jwt_verifier_map")
    assert servicenow_http.post(verifier_url, json={"name": "m"}).status_code == 403


def test_acl_refuses_update_and_delete_to_a_reader(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    # A user_admin writes users, not OAuth records.
    servicenow.add_user("certs", roles=["user_admin"], password="pw")
    app = servicenow.add_oauth_jwt_app("app", "cid", "s")
    servicenow_http.auth = ("certs", "pw")
    url = f"{table(servicenow, 'oauth_jwt')}/{app}"
    assert servicenow_http.get(url).status_code == 404
    servicenow.add_user("reader", roles=["oauth_admin"], password="pw")
    servicenow_http.auth = ("reader", "pw")
    assert servicenow_http.get(url).status_code == 200
    # A reader of sys_user (open) is still no writer of it.
    user = servicenow.add_user("victim")
    user_url = f"{table(servicenow, 'sys_user')}/{user}"
    update = servicenow_http.patch(user_url, json={"roles": "admin"})
    assert (update.status_code, update.json()) == (403, acl_failure("Update"))
    delete = servicenow_http.delete(user_url)
    assert (delete.status_code, delete.json()) == (403, acl_failure("Delete"))


def test_admin_passes_every_acl(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    servicenow.add_user("boss", roles=["admin"], password="pw")
    servicenow_http.auth = ("boss", "pw")
    response = servicenow_http.post(table(servicenow, "sys_user"), json={"user_name": "new"})
    assert response.status_code == 201


def test_unknown_table_bad_path_and_bad_json(
    servicenow: ServiceNowEmulator, api: requests.Session
) -> None:
    unknown = api.get(table(servicenow, "u_nothing"))
    assert unknown.status_code == 400
    assert unknown.json() == {
        "error": {"message": "Invalid table u_nothing", "detail": None},
        "status": "failure",
    }
    assert api.get(f"{servicenow.url}/api/now/nothing").status_code == 400
    bad = api.post(
        table(servicenow, "oauth_jwt"),
        data="{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["status"] == "failure"


def test_client_credentials_token_works_on_the_table_api(
    servicenow: ServiceNowEmulator, servicenow_http: requests.Session
) -> None:
    # Given an integration user reachable only through an OAuth client
    user = servicenow.add_user("integration", roles=["oauth_admin"])
    servicenow.add_oauth_client("integration client", "cc-id", "cc-secret", user=user)
    token = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do",
        data={
            "grant_type": "client_credentials",
            "client_id": "cc-id",
            "client_secret": "cc-secret",
        },
    )
    assert token.status_code == 200
    assert token.json()["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert servicenow_http.get(table(servicenow, "oauth_jwt"), headers=bearer).status_code == 200
    wrong = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do",
        data={"grant_type": "client_credentials", "client_id": "cc-id", "client_secret": "no"},
    )
    assert wrong.status_code == 401


def test_password_grant(servicenow: ServiceNowEmulator, servicenow_http: requests.Session) -> None:
    servicenow.add_user("integration", roles=["oauth_admin"], password="pw")
    servicenow.add_record("oauth_entity", {"name": "c", "client_id": "pc", "client_secret": "ps"})
    form = {"grant_type": "password", "client_id": "pc", "client_secret": "ps"}
    ok = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do",
        data={**form, "username": "integration", "password": "pw"},
    )
    assert ok.status_code == 200
    bad = servicenow_http.post(
        f"{servicenow.url}/oauth_token.do",
        data={**form, "username": "integration", "password": "x"},
    )
    assert bad.status_code == 401


def test_clock_is_shared_not_real(servicenow: ServiceNowEmulator) -> None:
    assert servicenow.clock.now() >= CLOCK_START
