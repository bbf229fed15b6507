"""Starting, stopping and restarting the emulator; TLS trust; state kept in a state_dir."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest
import requests
from cryptography import x509

from jwtkeys.clock import SimulatedClock, SystemClock
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator


def _get(emulator: ServiceNowEmulator, auth: tuple[str, str]) -> requests.Response:
    return requests.get(
        f"{emulator.url}/api/now/table/sys_user", auth=auth, verify=emulator.ca_bundle, timeout=10
    )


def test_serves_https_with_a_certificate_for_127_0_0_1_and_localhost() -> None:
    with ServiceNowEmulator(SystemClock()) as emulator:
        assert emulator.url.startswith("https://127.0.0.1:")
        host, port = "127.0.0.1", int(emulator.url.rsplit(":", 1)[1])
        pem = ssl.get_server_certificate((host, port))
        served = x509.load_pem_x509_certificate(pem.encode())
        names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert names.get_values_for_type(x509.DNSName) == ["localhost"]
        # Clients that do not trust the CA bundle are refused: verification stays on.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(emulator.url, verify=True, timeout=10)
        ca_bundle = Path(emulator.ca_bundle)
        assert ca_bundle.exists()
    assert not ca_bundle.exists()  # the temporary directory goes with the server


def test_http_is_not_served() -> None:
    with ServiceNowEmulator(SystemClock()) as emulator:
        plain = emulator.url.replace("https://", "http://")
        with pytest.raises(requests.ConnectionError):
            requests.get(plain, timeout=10)


def test_start_is_idempotent_and_stop_releases_the_port() -> None:
    emulator = ServiceNowEmulator(SimulatedClock(0)).start()
    url = emulator.url
    assert emulator.start().url == url
    emulator.stop()
    emulator.stop()
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_state_dir_keeps_records_and_passwords_across_restarts(tmp_path: Path) -> None:
    clock = SimulatedClock(1_800_000_000)
    with ServiceNowEmulator(clock, state_dir=tmp_path) as first:
        first.add_user("integration", roles=["admin"], password="pw")
        app = first.add_oauth_jwt_app("app", "cid", "secret")
        assert _get(first, ("integration", "pw")).status_code == 200
    assert (tmp_path / "servicenow-emulator-state.json").exists()
    assert os.stat(tmp_path / "servicenow-emulator-key.pem").st_mode & 0o077 == 0
    with ServiceNowEmulator(clock, state_dir=tmp_path) as second:
        assert _get(second, ("integration", "pw")).status_code == 200
        assert [r["sys_id"] for r in second.rows("oauth_jwt")] == [app]


def test_rows_of_an_unknown_table_is_an_error(servicenow: ServiceNowEmulator) -> None:
    with pytest.raises(KeyError, match="no table"):
        servicenow.rows("incident")


def test_reset_forgets_everything(servicenow: ServiceNowEmulator) -> None:
    servicenow.add_user("someone", password="pw")
    servicenow.inject_fault("http500", count=3)
    servicenow.log.append("old reason")
    servicenow.reset()
    assert servicenow.rows("sys_user") == []
    assert servicenow.log == []
    assert _get(servicenow, ("someone", "pw")).status_code == 401
