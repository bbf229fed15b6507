"""Table API paging: ordered by sys_id, and a short page is not taken for the end."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

from jwtkeys.clock import SimulatedClock
from jwtkeys.servicenow import table_client
from jwtkeys.servicenow.secrets import BasicCredentials, ServiceNowSecret
from jwtkeys.servicenow.table_client import TableClient


class FixedSecret:
    """The secret source the client reads (a fixed Basic credential)."""

    def get(self) -> ServiceNowSecret:
        return ServiceNowSecret(BasicCredentials("integration", "pw"))

    def invalidate(self) -> None:
        pass


class AclFilteredPages(BaseAdapter):
    """An instance whose ACLs drop rows after the page limit: pages come back short."""

    def __init__(self, total: int, visible_per_page: int) -> None:
        super().__init__()
        self.total = total
        self.visible = visible_per_page
        self.queries: list[dict[str, list[str]]] = []

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:  # type: ignore[override]
        query = parse_qs(urlsplit(str(request.url)).query)
        self.queries.append(query)
        offset = int(query["sysparm_offset"][0])
        limit = int(query["sysparm_limit"][0])
        rows = [{"sys_id": f"{i:032x}"} for i in range(offset, min(offset + limit, self.total))]
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"result": rows[: self.visible]}).encode()
        response.headers["X-Total-Count"] = str(self.total)
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.raw = io.BytesIO()
        return response

    def close(self) -> None:
        pass


def test_short_pages_are_read_on_until_the_total_count(monkeypatch: Any) -> None:
    monkeypatch.setattr(table_client, "PAGE_SIZE", 3)
    client = TableClient("https://instance.test", FixedSecret(), SimulatedClock(0.0))  # type: ignore[arg-type]
    transport = AclFilteredPages(total=8, visible_per_page=2)
    client.session.mount("https://", transport)
    records = client.list("sys_certificate", "nameSTARTSWITHjwtkeys/")
    # Three pages of 3 (the last partial), each cut to 2 visible rows by the ACL.
    assert len(transport.queries) == 3
    assert len(records) == 6
    assert all(
        q["sysparm_query"] == ["nameSTARTSWITHjwtkeys/^ORDERBYsys_id"] for q in transport.queries
    )
