"""The emulator's HTTPS server: routing, the Table API, faults, and the public lifecycle.

It runs in-process on a background thread (werkzeug's threaded server) so it can share
a `SimulatedClock` with the demo and the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from jwtkeys.clock import Clock
from jwtkeys_tools.local.local_service import LocalService
from jwtkeys_tools.local.servicenow_emulator.auth import Credentials, Principal, authenticate
from jwtkeys_tools.local.servicenow_emulator.faults import FaultSwitch, RateLimited, RateLimitRule
from jwtkeys_tools.local.servicenow_emulator.profiles import InstanceProfile, load_profile
from jwtkeys_tools.local.servicenow_emulator.tables import (
    RecordRejected,
    RecordStore,
    RenderOptions,
    Row,
    parse_display_value,
    render,
)
from jwtkeys_tools.local.servicenow_emulator.tls import write_tls_files
from jwtkeys_tools.local.servicenow_emulator.token_endpoint import TokenEndpoint

_JSON = "application/json;charset=UTF-8"
_DEFAULT_LIMIT = 10000  # an instance's default page size for the Table API
_STATE_FILE = "servicenow-emulator-state.json"


def error_body(message: str, detail: str | None) -> dict[str, object]:
    """The Table API's error envelope."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), content_type=_JSON
    )


def _error(status: int, message: str, detail: str | None) -> Response:
    return _json(status, error_body(message, detail))


_NOT_AUTHENTICATED = ("User Not Authenticated", "Required to provide Auth information")
_NO_RECORD = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
_NO_MATCH = (
    "No Record found",
    "Records matching query not found. Check query parameter or offset parameter",
)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log (tests make thousands)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ServiceNowEmulator(LocalService):
    """A ServiceNow instance where jwtkeys touches one, served over HTTPS on 127.0.0.1."""

    def __init__(
        self,
        clock: Clock,
        *,
        port: int = 0,
        state_dir: Path | None = None,
        profile: InstanceProfile | str | None = None,
    ) -> None:
        self.clock = clock
        # The instance shape (a shipped profile name, a profile file, or a loaded one).
        self.profile = profile if isinstance(profile, InstanceProfile) else load_profile(profile)
        self.url = ""
        self.ca_bundle = ""
        self.log: list[str] = []
        # What the JWKS fetch trusts (requests' `verify`): None keeps requests' default.
        self.jwks_ca_bundle: str | None = None
        self._port = port
        self._state_dir = state_dir
        self._store = RecordStore(clock, self.profile)
        self._credentials = Credentials(self._store, clock)
        self._tokens = TokenEndpoint(
            self._store, self._credentials, clock, self.log.append, lambda: self.jwks_ca_bundle
        )
        self._faults = FaultSwitch(clock)
        # Bumped by reset(): a request that a slow fault held across a reset belongs to a
        # test that has ended, and is dropped instead of touching the next one's state.
        self._generation = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._temp_dir: str | None = None
        self._persist_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> ServiceNowEmulator:
        """Generate the TLS files, bind the port and serve on a background thread."""
        if self._server is not None:
            return self
        if self._state_dir is not None:
            directory = self._state_dir
            self._load_state()
        else:
            self._temp_dir = tempfile.mkdtemp(prefix="servicenow-emulator-")
            directory = Path(self._temp_dir)
        tls = write_tls_files(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.certificate, tls.private_key)
        server = make_server(
            "127.0.0.1",
            self._port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=context,
        )
        self._server = server
        self.url = f"https://127.0.0.1:{server.server_port}"
        self.ca_bundle = str(tls.ca_bundle)
        self._thread = threading.Thread(
            target=server.serve_forever, name="servicenow-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and remove temporary files."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def reset(self) -> None:
        """Forget every record, password, token, replayed jti, fault, rule and log line."""
        self._generation += 1
        self._store.clear()
        self._credentials.clear()
        self._tokens.reset()
        self._faults.clear()
        self.log.clear()
        self._persist()

    def use_profile(self, profile: InstanceProfile | str | None) -> None:
        """Reset into another instance shape (a profile name, file, or loaded profile)."""
        loaded = profile if isinstance(profile, InstanceProfile) else load_profile(profile)
        if loaded != self.profile:
            self.profile = loaded
            self._store.reshape(loaded)
        self.reset()

    # -- seeding ----------------------------------------------------------------------

    def add_user(
        self,
        user_name: str,
        *,
        email: str | None = None,
        roles: Sequence[str] = (),
        password: str | None = None,
    ) -> str:
        """Create a `sys_user` (with a Basic-auth password when given); returns its sys_id."""
        if isinstance(roles, str):
            raise TypeError("roles is a sequence of role names, e.g. ['admin'], not a string")
        row = self._store.insert(
            "sys_user",
            {
                "user_name": user_name,
                "name": user_name,
                "email": email or "",
                "roles": ",".join(roles),
            },
            by="system",
        )
        if password is not None:
            self._credentials.set_password(row["sys_id"], password)
        self._persist()
        return row["sys_id"]

    def add_oauth_jwt_app(
        self,
        name: str,
        client_id: str,
        client_secret: str,
        *,
        user_field: str = "email",
        clock_skew: int | None = None,
        enable_jti_verification: bool = True,
        jwks_url: str | None = None,
        jwks_cache_lifespan: int = 10,
    ) -> str:
        """Create an `oauth_jwt` app ("OAuth JWT API endpoint for external clients", or a
        Machine Identity Console JWT bearer grant integration: the same record).

        `clock_skew` defaults to the profile's (300 s legacy, 0 s Machine Identity
        Console); `jwks_cache_lifespan` is in minutes.
        """
        values: dict[str, object] = {
            "name": name,
            "client_id": client_id,
            "client_secret": client_secret,
            "user_field": user_field,
            "enable_jti_verification": enable_jti_verification,
        }
        if clock_skew is not None:
            values["clock_skew"] = clock_skew
        if jwks_url is not None and not self._store.knows_field("oauth_jwt", "jwks_url"):
            raise KeyError(f"profile {self.profile.name!r} has no JWKS URL on applications")
        if jwks_url is not None:
            values["jwks_url"] = jwks_url
        if self._store.knows_field("oauth_jwt", "jwks_cache_lifespan"):
            values["jwks_cache_lifespan"] = jwks_cache_lifespan
        return self.add_record("oauth_jwt", values)

    def add_oauth_client(self, name: str, client_id: str, client_secret: str, *, user: str) -> str:
        """Create an `oauth_entity` for the client-credentials grant, acting as user `user`."""
        return self.add_record(
            "oauth_entity",
            {
                "name": name,
                "client_id": client_id,
                "client_secret": client_secret,
                "default_grant_type": "client_credentials",
                "user": user,
            },
        )

    def add_record(self, table: str, values: Mapping[str, object]) -> str:
        """Insert a row as the system would (business rules apply); returns its sys_id."""
        if table not in self._store.schema:
            raise KeyError(f"the emulator has no table {table!r}")
        sys_id = self._store.insert(table, values, by="system")["sys_id"]
        self._persist()
        return sys_id

    def rows(self, table: str) -> list[dict[str, str]]:
        """Raw stored rows visible through `table` (copies; every value a string)."""
        if table not in self._store.schema:
            raise KeyError(f"the emulator has no table {table!r}")
        return self._store.rows(table)

    # -- faults -----------------------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        path_contains: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next `count` matching requests misbehave (kinds: see `faults.FAULT_KINDS`).

        `delay` is the real-time pause of `slow`, and the `Retry-After` of `http429`
        (rounded up, at least 1 second).
        """
        self._faults.inject(kind, count=count, path_contains=path_contains, delay=delay)

    def set_rate_limit(
        self, *, limit: int, window_seconds: int, rule_name: str = "jwtkeys emulator rule"
    ) -> None:
        """Allow `limit` Table API requests per window (on the emulator clock); then 429."""
        rule = RateLimitRule(rule_name, _rule_sys_id(rule_name), limit, window_seconds)
        self._faults.set_rate_limit(rule)

    def clear_faults(self) -> None:
        """Drop pending faults and the rate-limit rule."""
        self._faults.clear()

    # -- persistence --------------------------------------------------------------------

    def _persist(self) -> None:
        # Only with a state_dir (`jwtkeys local up`): keep records across restarts.
        if self._state_dir is None:
            return
        path = self._state_dir / _STATE_FILE
        with self._persist_lock:
            # Snapshot under the lock, so a slower writer never lands an older state last.
            state = {"rows": self._store.snapshot(), "credentials": self._credentials.snapshot()}
            self._state_dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state))
            os.replace(temporary, path)

    def _load_state(self) -> None:
        assert self._state_dir is not None
        path = self._state_dir / _STATE_FILE
        if not path.exists():
            return
        state = json.loads(path.read_text())
        self._store.restore(state["rows"])
        self._credentials.restore(state["credentials"])

    # -- HTTP -------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        generation = self._generation
        fault = self._faults.take(request.path)
        if fault is not None:
            if fault.kind == "drop":
                _drop_connection(environ)
            elif fault.kind == "slow":
                time.sleep(fault.delay)  # real time: this exercises socket timeouts
                if generation != self._generation:
                    _drop_connection(environ)
            else:
                return self._fault_response(fault.kind, fault.delay)(environ, start_response)
        response = self._dispatch(request)
        if request.method not in ("GET", "HEAD") and response.status_code < 400:
            self._persist()
        return response(environ, start_response)

    def _fault_response(self, kind: str, delay: float) -> Response:
        if kind == "http500":
            return _error(500, "Internal Server Error", "injected fault: http500")
        if kind == "http429":
            retry_after = max(1, math.ceil(delay))
            return _json(
                429,
                error_body("Rate limit exceeded", "injected fault: http429"),
                {
                    "Retry-After": str(retry_after),
                    "X-RateLimit-Reset": str(int(self.clock.now()) + retry_after),
                },
            )
        # malformed_json: a 200 whose body stops half-way, as a cut-off proxy answer would.
        return Response('{"result": [{"sys_id": "', status=200, content_type=_JSON)

    def _dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/oauth_token.do":
            if request.method != "POST":
                return _error(405, "Method not Supported", "use POST")
            status, body = self._tokens.exchange(request.form.to_dict())
            return _json(status, body)
        route = _table_route(path)
        if route is None:
            return _error(400, "Requested URI does not represent any resource", None)
        version, table_name, sys_id = route
        principal = authenticate(request.headers.get("Authorization"), self._credentials)
        if principal is None:
            return _error(401, *_NOT_AUTHENTICATED)
        limited = self._faults.count_request()
        if limited is not None:
            return _rate_limited(limited)
        if table_name not in self._store.schema:
            return _error(400, f"Invalid table {table_name}", None)
        call = _TableCall(self._store, self.url, request, principal, version, table_name)
        return call.dispatch(sys_id)


def _rate_limited(limited: RateLimited) -> Response:
    """A 429 as an instance's rate limit rule answers it."""
    return _json(
        429,
        error_body(
            "Rate limit exceeded",
            f"Rate limit rule {limited.rule.name!r} allows {limited.rule.limit} requests "
            f"per {limited.rule.window_seconds} seconds; try again later",
        ),
        {
            "Retry-After": str(limited.retry_after),
            "X-RateLimit-Limit": str(limited.rule.limit),
            "X-RateLimit-Reset": str(limited.reset_at),
            "X-RateLimit-Rule": limited.rule.sys_id,
        },
    )


class _TableCall:
    """One Table API request, with the parameters and principal it was made with."""

    def __init__(
        self,
        store: RecordStore,
        base_url: str,
        request: Request,
        principal: Principal,
        version: str,
        table: str,
    ) -> None:
        self.store = store
        self.base_url = base_url
        self.request = request
        self.args: MultiDict[str, str] = request.args
        self.principal = principal
        self.version = version
        self.table = table
        self.schema = store.schema[table]
        fields = self.args.get("sysparm_fields", "")
        self.options = RenderOptions(
            base_url=base_url,
            display_value=parse_display_value(self.args.get("sysparm_display_value")),
            exclude_reference_link=self.args.get("sysparm_exclude_reference_link", "").lower()
            == "true",
            fields=tuple(f.strip() for f in fields.split(",") if f.strip()),
        )

    def _render(self, row: Row) -> dict[str, object]:
        return render(self.store, self.table, row, self.options)

    def _prefix(self) -> str:
        middle = f"{self.version}/" if self.version else ""
        return f"{self.base_url}/api/now/{middle}table/{self.table}"

    def dispatch(self, sys_id: str | None) -> Response:
        """The table call the method and path name (a record when sys_id is given)."""
        method = self.request.method
        if sys_id is None:
            if method == "GET":
                return self.list()
            if method == "POST":
                return self.insert()
        elif method == "GET":
            return self.get(sys_id)
        elif method in ("PATCH", "PUT"):
            return self.update(sys_id)
        elif method == "DELETE":
            return self.delete(sys_id)
        return _error(405, "Method not Supported", f"{method} is not supported here")

    def list(self) -> Response:
        # A table-level read ACL filters every row out, as an instance's security
        # constraints do, rather than failing the request.
        rows = self.store.query(self.table, self.args.get("sysparm_query", ""))
        if not self.principal.may_read(self.schema):
            rows = []
        total = len(rows)
        offset = _non_negative(self.args.get("sysparm_offset"), 0)
        limit = _non_negative(self.args.get("sysparm_limit"), _DEFAULT_LIMIT) or _DEFAULT_LIMIT
        page = rows[offset : offset + limit]
        if not page and self.version == "v1":
            return _error(404, *_NO_MATCH)
        headers = {"X-Total-Count": str(total)}
        if self.args.get("sysparm_suppress_pagination_header", "").lower() != "true":
            headers["Link"] = self._links(offset, limit, total)
        return _json(200, {"result": [self._render(r) for r in page]}, headers)

    def _links(self, offset: int, limit: int, total: int) -> str:
        def link(at: int, rel: str) -> str:
            params = [(k, v) for k, v in self.args.items(multi=True) if k not in _PAGING]
            params += [("sysparm_limit", str(limit)), ("sysparm_offset", str(at))]
            return f'<{self._prefix()}?{urlencode(params)}>;rel="{rel}"'

        last = max(0, (total - 1) // limit * limit)
        parts = [link(0, "first")]
        if offset > 0:
            parts.append(link(max(0, offset - limit), "prev"))
        if offset + limit < total:
            parts.append(link(offset + limit, "next"))
        parts.append(link(last, "last"))
        return ",".join(parts)

    def get(self, sys_id: str) -> Response:
        row = self.store.get(self.table, sys_id)
        if row is None or not self.principal.may_read(self.schema):
            return _error(404, *_NO_RECORD)
        return _json(200, {"result": self._render(row)})

    def insert(self) -> Response:
        refused = self._refuse_write("Insert")
        if refused is not None:
            return refused
        return self._write(
            lambda values: self.store.insert(self.table, values, by=self.principal.user_name),
            status=201,
        )

    def update(self, sys_id: str) -> Response:
        refused = self._refuse_write("Update", sys_id)
        if refused is not None:
            return refused
        return self._write(
            lambda values: self.store.update(
                self.table, sys_id, values, by=self.principal.user_name
            ),
            status=200,
        )

    def delete(self, sys_id: str) -> Response:
        refused = self._refuse_write("Delete", sys_id)
        if refused is not None:
            return refused
        if not self.store.delete(self.table, sys_id):
            return _error(404, *_NO_RECORD)
        return Response(status=204)

    def _refuse_write(self, operation: str, sys_id: str | None = None) -> Response | None:
        # A record the caller cannot see is missing to them (404) before it is forbidden.
        if sys_id is not None and (
            self.store.get(self.table, sys_id) is None or not self.principal.may_read(self.schema)
        ):
            return _error(404, *_NO_RECORD)
        if not self.principal.may_write(self.schema):
            detail = f"ACL Exception {operation} Failed due to security constraints"
            return _error(403, "Operation Failed", detail)
        return None

    def _write(self, apply: Callable[[dict[str, object]], Row], *, status: int) -> Response:
        values = self._body()
        if isinstance(values, Response):
            return values
        try:
            row = apply(values)
        except KeyError:
            return _error(404, *_NO_RECORD)  # deleted by a concurrent request
        except RecordRejected as rejected:
            return _error(403, "Operation Failed", rejected.detail)
        headers = {"Location": f"{self._prefix()}/{row['sys_id']}"} if status == 201 else {}
        return _json(status, {"result": self._render(row)}, headers)

    def _body(self) -> dict[str, object] | Response:
        try:
            body = json.loads(self.request.get_data(as_text=True) or "{}")
        except ValueError:
            return _error(400, "Exception while reading request", "The payload is not valid JSON")
        if not isinstance(body, dict):
            return _error(
                400, "Exception while reading request", "The payload must be a JSON object"
            )
        return body


_PAGING = frozenset({"sysparm_limit", "sysparm_offset"})


def _table_route(path: str) -> tuple[str, str, str | None] | None:
    # /api/now/table/{t}[/{id}] and /api/now/{v1|v2}/table/{t}[/{id}]
    parts = path.strip("/").split("/")
    if parts[:2] != ["api", "now"]:
        return None
    rest = parts[2:]
    version = ""
    if rest and rest[0] in ("v1", "v2"):
        version, rest = rest[0], rest[1:]
    if len(rest) not in (2, 3) or rest[0] != "table" or not rest[1]:
        return None
    return version, rest[1], rest[2] if len(rest) == 3 else None


def _non_negative(raw: str | None, default: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return max(0, value)


def _rule_sys_id(rule_name: str) -> str:
    # Stable per name, so a test can predict the X-RateLimit-Rule header.
    return hashlib.md5(rule_name.encode(), usedforsecurity=False).hexdigest()


def _drop_connection(environ: Mapping[str, Any]) -> None:
    # Shut the socket, then raise what werkzeug treats as a client hang-up (it stays quiet).
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
    raise ConnectionAbortedError("injected fault: drop")
