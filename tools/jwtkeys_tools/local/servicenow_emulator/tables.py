"""The emulator's records: one schema per table, a thread-safe store, and Table API rendering.

Like an instance, every value is stored as a string; reference fields hold the 32-hex
`sys_id` of the referenced row; `oauth_jwt` extends `oauth_entity`, so its rows are
visible through both tables (each table shows only its own schema's fields). Writes
ignore fields the table lacks; queries drop conditions on them (see `encoded_query`).

The schema is the base below shaped by an instance profile (`profiles.py`): fields a
release lacks are removed, field lengths set (string values longer than their field
are truncated silently, as instances do), choice defaults take the profile's stored
spelling, and admin-only tables lose their other roles. `sys_db_object`,
`sys_dictionary` and `sys_choice` are ordinary read-only rows generated from it.

Field names inferred rather than documented (confirm on a real instance before product
code relies on them): `oauth_jwt.jwks_url` and `oauth_jwt.jwks_cache_lifespan` (minutes),
`oauth_entity.default_grant_type` and `oauth_entity.user` (the client-credentials
"OAuth Application User"), and the `oauth_credential` fields besides `type` and `peer`.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from jwtkeys.clock import Clock
from jwtkeys_tools.local.servicenow_emulator import encoded_query
from jwtkeys_tools.local.servicenow_emulator.certificates import (
    CertificateRejected,
    glide_datetime,
    parse_pem_certificate,
)
from jwtkeys_tools.local.servicenow_emulator.profiles import InstanceProfile, load_profile

Kind = Literal["string", "boolean", "integer", "datetime", "reference"]
Row = dict[str, str]
DisplayMode = Literal["false", "true", "all"]

ADMIN = "admin"
# The custom role an admin creates for the integration user, with ACLs on exactly the
# tables jwtkeys uses (no release documents a `certificate_admin` role).
INTEGRATION_ROLE = "x_jwtkeys_integration"
META_TABLES = ("sys_db_object", "sys_dictionary", "sys_choice")
_DEFAULT_LENGTH = {"string": 255, "boolean": 40, "integer": 40, "datetime": 40, "reference": 32}
_INTERNAL_TYPE = {
    "string": "string",
    "boolean": "boolean",
    "integer": "integer",
    "datetime": "glide_date_time",
    "reference": "reference",
}


@dataclass(frozen=True)
class Field:
    """One column: its type, its default, and (for references) the table it points at."""

    name: str
    kind: Kind = "string"
    default: str = ""
    reference: str | None = None
    max_length: int = 0  # 0: the default length of its kind

    @property
    def length(self) -> int:
        """How many characters the field holds."""
        return self.max_length or _DEFAULT_LENGTH[self.kind]


@dataclass(frozen=True)
class Table:
    """A table's schema and the roles its ACLs ask for (`admin` always passes)."""

    name: str
    fields: Mapping[str, Field]
    display_field: str
    parent: str | None = None
    read_roles: frozenset[str] = frozenset()  # empty: any authenticated user may read
    write_roles: frozenset[str] = frozenset()

    def has_field(self, name: str) -> bool:
        """Whether the table (with its ancestors) has this column."""
        return name in self.fields


class RecordRejected(Exception):
    """A write an instance refuses (a business rule or data policy aborts it)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


_SYSTEM_FIELDS = (
    Field("sys_id"),
    Field("sys_created_on", "datetime"),
    Field("sys_created_by"),
    Field("sys_updated_on", "datetime"),
    Field("sys_updated_by"),
    Field("sys_mod_count", "integer", "0"),
)
_READ_ONLY = frozenset({f.name for f in _SYSTEM_FIELDS} | {"sys_class_name"})


def base_schema() -> dict[str, Table]:
    """Every table the emulator has, before a profile shapes it."""

    def table(
        name: str,
        display: str,
        columns: Iterable[Field],
        *,
        parent: Table | None = None,
        read: Iterable[str] = (),
        write: Iterable[str],
    ) -> Table:
        fields = dict(parent.fields) if parent else {f.name: f for f in _SYSTEM_FIELDS}
        fields.update({f.name: f for f in columns})
        return Table(
            name,
            fields,
            display,
            parent.name if parent else None,
            frozenset(read),
            frozenset(write),
        )

    # Smallest role sets we chose (documented in the package docstring): certificates and
    # sessions need the integration role's ACLs, OAuth records oauth_admin (or the
    # integration role), users user_admin.
    oauth_roles = ("oauth_admin", INTEGRATION_ROLE)
    integration = (INTEGRATION_ROLE,)
    user = table(
        "sys_user",
        "name",
        (
            Field("user_name"),
            Field("first_name"),
            Field("last_name"),
            Field("name"),
            Field("email"),
            Field("active", "boolean", "true"),
            Field("locked_out", "boolean", "false"),
            Field("web_service_access_only", "boolean", "false"),
            Field("roles"),
        ),
        write=("user_admin",),
    )
    certificate = table(
        "sys_certificate",
        "name",
        (
            Field("name", max_length=100),
            Field("short_description", max_length=160),
            Field("format", default="pem"),
            Field("type", default="trust_store"),
            Field("pem_certificate", max_length=65000),
            Field("active", "boolean", "true"),
            Field("expires", "datetime"),
            Field("valid_from", "datetime"),
            Field("subject"),
            Field("issuer"),
            Field("expiration_notification", "boolean", "false"),
            Field("warn_in_days_to_expire", "integer", "30"),
        ),
        read=integration,
        write=integration,
    )
    entity = table(
        "oauth_entity",
        "name",
        (
            Field("sys_class_name", default="oauth_entity"),
            Field("name"),
            Field("client_id"),
            Field("client_secret"),
            Field("active", "boolean", "true"),
            Field("type", default="client"),
            Field("access_token_lifespan", "integer", "1800"),
            Field("refresh_token_lifespan", "integer", "8640000"),
            Field("default_grant_type", default="authorization_code"),
            Field("user", "reference", reference="sys_user"),
            Field("comments"),
        ),
        read=oauth_roles,
        write=oauth_roles,
    )
    jwt_app = table(
        "oauth_jwt",
        "name",
        (
            Field("sys_class_name", default="oauth_jwt"),
            Field("user_field", default="email"),
            Field("clock_skew", "integer", "300"),
            Field("enable_jti_verification", "boolean", "true"),
            Field("jwks_url"),
            Field("jwks_cache_lifespan", "integer", "10"),  # minutes
        ),
        parent=entity,
        read=oauth_roles,
        write=oauth_roles,
    )
    verifier = table(
        "jwt_verifier_map",
        "name",
        (
            Field("name", max_length=100),
            Field("kid"),
            Field("sys_certificate", "reference", reference="sys_certificate"),
            Field("oauth_jwt", "reference", reference="oauth_jwt"),
            Field("shared_key"),
            Field("active", "boolean", "true"),
        ),
        read=oauth_roles,
        write=oauth_roles,
    )
    credential = table(
        "oauth_credential",
        "name",
        (
            Field("name"),
            Field("type", default="access_token"),
            Field("peer", "reference", reference="oauth_entity"),
            Field("user", "reference", reference="sys_user"),
            Field("expires", "datetime"),
            Field("scopes", default="useraccount"),
        ),
        read=integration,
        write=integration,
    )
    meta = [
        table(
            "sys_db_object",
            "name",
            (
                Field("name"),
                Field("label"),
                Field("super_class", "reference", reference="sys_db_object"),
            ),
            write=(),
        ),
        table(
            "sys_dictionary",
            "element",
            (
                Field("name"),
                Field("element"),
                Field("internal_type"),
                Field("max_length", "integer", "0"),
                Field("reference"),
                Field("active", "boolean", "true"),
            ),
            write=(),
        ),
        table(
            "sys_choice",
            "label",
            (
                Field("name"),
                Field("element"),
                Field("value"),
                Field("label"),
                Field("sequence", "integer", "0"),
                Field("inactive", "boolean", "false"),
            ),
            write=(),
        ),
    ]
    tables = (user, certificate, entity, jwt_app, verifier, credential, *meta)
    return {t.name: t for t in tables}


def build_schema(profile: InstanceProfile) -> dict[str, Table]:
    """The base schema shaped by `profile` (fields, lengths, choice defaults, ACLs)."""
    shaped: dict[str, Table] = {}
    for table in base_schema().values():
        fields: dict[str, Field] = {}
        for name, column in table.fields.items():
            # An inherited field is shaped where it is defined (its parent's name).
            owner = _defining_table(table, name)
            if f"{owner}.{name}" in profile.absent_fields:
                continue
            length = profile.max_lengths.get(f"{owner}.{name}", column.max_length)
            default = profile.choice_value(owner, name) or column.default
            if table.name == "oauth_jwt" and name == "clock_skew":
                default = str(profile.clock_skew_default)
            fields[name] = replace(column, max_length=length, default=default)
        admin_only = table.name in profile.admin_only_tables
        shaped[table.name] = replace(
            table,
            fields=fields,
            read_roles=frozenset({ADMIN}) if admin_only else table.read_roles,
            write_roles=frozenset({ADMIN}) if admin_only else table.write_roles,
        )
    return shaped


def _defining_table(table: Table, name: str) -> str:
    parent = base_schema().get(table.parent) if table.parent else None
    return _defining_table(parent, name) if parent and name in parent.fields else table.name


def meta_rows(schema: Mapping[str, Table], profile: InstanceProfile) -> list[Row]:
    """The `sys_db_object`, `sys_dictionary` and `sys_choice` rows that describe `schema`."""
    rows: list[Row] = []
    ids = {name: _stable_id("sys_db_object", name) for name in schema}
    for table in schema.values():
        rows.append(
            {
                "sys_class_name": "sys_db_object",
                "sys_id": ids[table.name],
                "name": table.name,
                "label": table.name,
                "super_class": ids[table.parent] if table.parent else "",
            }
        )
        parent = schema.get(table.parent) if table.parent else None
        for name, column in table.fields.items():
            if parent is not None and name in parent.fields:
                continue  # defined (and described) on the parent
            rows.append(
                {
                    "sys_class_name": "sys_dictionary",
                    "sys_id": _stable_id("sys_dictionary", f"{table.name}.{name}"),
                    "name": table.name,
                    "element": name,
                    "internal_type": _INTERNAL_TYPE[column.kind],
                    "max_length": str(column.length) if profile.report_lengths else "",
                    "reference": column.reference or "",
                    "active": "true",
                }
            )
    for key, choices in profile.choices.items():
        table_name, _, element = key.partition(".")
        for position, (value, label) in enumerate(choices):
            rows.append(
                {
                    "sys_class_name": "sys_choice",
                    "sys_id": _stable_id("sys_choice", f"{key}={value}"),
                    "name": table_name,
                    "element": element,
                    "value": value,
                    "label": label,
                    "sequence": str(position),
                    "inactive": "false",
                }
            )
    return rows


def _stable_id(kind: str, name: str) -> str:
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:32]


def is_sys_id(value: str) -> bool:
    """Whether a string has the shape of a sys_id (32 lower-case hex characters)."""
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def new_sys_id() -> str:
    """A fresh random sys_id."""
    return secrets.token_hex(16)


class RecordStore:
    """All rows of all tables, keyed by sys_id, guarded by one lock (the server is threaded)."""

    def __init__(self, clock: Clock, profile: InstanceProfile | None = None) -> None:
        self._clock = clock
        self.profile = profile or load_profile()
        self.schema: Mapping[str, Table] = build_schema(self.profile)
        self._rows: dict[str, Row] = {}
        self._lock = threading.RLock()
        self._seed_meta()

    # -- schema -----------------------------------------------------------------------

    def reshape(self, profile: InstanceProfile) -> None:
        """Become an instance of another shape: every row is forgotten."""
        with self._lock:
            self.profile = profile
            self.schema = build_schema(profile)
            self._rows.clear()
        self._seed_meta()

    def table(self, name: str) -> Table | None:
        """The schema of a table, or None when the emulator does not have it."""
        return self.schema.get(name)

    def _seed_meta(self) -> None:
        with self._lock:
            for row in meta_rows(self.schema, self.profile):
                full = {
                    name: f.default for name, f in self.schema[row["sys_class_name"]].fields.items()
                }
                full.update(row)
                self._rows[row["sys_id"]] = full

    def _classes(self, table: str) -> set[str]:
        # A table shows its own rows and those of every table extending it.
        names = {table}
        grew = True
        while grew:
            extra = {t.name for t in self.schema.values() if t.parent in names} - names
            names |= extra
            grew = bool(extra)
        return names

    # -- reads ------------------------------------------------------------------------

    def rows(self, table: str) -> list[Row]:
        """Copies of every stored row visible through `table`, in insertion order."""
        classes = self._classes(table)
        with self._lock:
            return [copy.copy(r) for r in self._rows.values() if r["sys_class_name"] in classes]

    def get(self, table: str, sys_id: str) -> Row | None:
        """A copy of one row visible through `table`, or None."""
        with self._lock:
            row = self._rows.get(sys_id)
            if row is None or row["sys_class_name"] not in self._classes(table):
                return None
            return copy.copy(row)

    def reader(self, table: str, row: Row) -> encoded_query.FieldReader:
        """Read fields of `row` as `table` sees them; dot-walks references (`oauth_jwt.name`)."""
        schema = self.schema[table]

        def read(name: str) -> str | None:
            head, _, rest = name.partition(".")
            column = schema.fields.get(head)
            if column is None:
                return None
            value = row.get(head, "")
            if not rest:
                return value
            if column.reference is None:
                return None
            target = self.get(column.reference, value)
            if target is None:
                return "" if self.knows_field(column.reference, rest) else None
            return self.reader(column.reference, target)(rest)

        return read

    def knows_field(self, table: str, name: str) -> bool:
        """Whether `name` (possibly dot-walked) is a field of `table`."""
        head, _, rest = name.partition(".")
        column = self.schema[table].fields.get(head)
        if column is None:
            return False
        if not rest:
            return True
        return column.reference is not None and self.knows_field(column.reference, rest)

    def query(self, table: str, sysparm_query: str) -> list[Row]:
        """Rows matching an encoded query, ordered; conditions on unknown fields are dropped."""
        parsed = encoded_query.parse(sysparm_query).restricted_to(
            lambda name: self.knows_field(table, name)
        )
        matching = [r for r in self.rows(table) if parsed.matches(self.reader(table, r))]
        return parsed.sort(matching, lambda r: self.reader(table, r))

    # -- writes -----------------------------------------------------------------------

    def insert(self, table: str, values: Mapping[str, object], *, by: str) -> Row:
        """Insert a row (defaults filled, system fields stamped) and return a copy."""
        schema = self.schema[table]
        now = glide_datetime(self._clock.now())
        row: Row = {name: f.default for name, f in schema.fields.items()}
        row["sys_class_name"] = table
        row.update(self._writable(schema, values))
        requested_id = _as_string(values.get("sys_id", ""))
        with self._lock:
            sys_id = requested_id if is_sys_id(requested_id) else new_sys_id()
            if sys_id in self._rows:
                raise RecordRejected(f"a record with sys_id {sys_id} already exists")
            row.update(
                sys_id=sys_id,
                sys_created_on=now,
                sys_updated_on=now,
                sys_created_by=by,
                sys_updated_by=by,
                sys_mod_count="0",
            )
            self._apply_rules(table, row, changed=set(row))
            self._rows[sys_id] = row
            return copy.copy(row)

    def update(self, table: str, sys_id: str, values: Mapping[str, object], *, by: str) -> Row:
        """Change some fields of a row; KeyError when `table` has no such row."""
        schema = self.schema[table]
        changes = self._writable(schema, values)
        with self._lock:
            current = self.get(table, sys_id)
            if current is None:
                raise KeyError(sys_id)
            row = {**current, **changes}
            self._apply_rules(table, row, changed=set(changes))
            row.update(
                sys_updated_on=glide_datetime(self._clock.now()),
                sys_updated_by=by,
                sys_mod_count=str(int(current["sys_mod_count"] or "0") + 1),
            )
            self._rows[sys_id] = row
            return copy.copy(row)

    def delete(self, table: str, sys_id: str) -> bool:
        """Delete a row visible through `table`; False when there is none."""
        with self._lock:
            if self.get(table, sys_id) is None:
                return False
            del self._rows[sys_id]
            return True

    def clear(self) -> None:
        """Forget every row."""
        with self._lock:
            self._rows.clear()
        self._seed_meta()

    def snapshot(self) -> list[Row]:
        """Every row, for persisting the emulator's state."""
        with self._lock:
            return [copy.copy(r) for r in self._rows.values()]

    def restore(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Replace every row with `rows` (from `snapshot`)."""
        with self._lock:
            self._rows = {
                r["sys_id"]: dict(r) for r in rows if r.get("sys_class_name") not in META_TABLES
            }
        self._seed_meta()

    def _writable(self, schema: Table, values: Mapping[str, object]) -> Row:
        # Unknown fields are ignored, and system fields are the instance's own.
        if schema.name in META_TABLES:
            raise RecordRejected(f"{schema.name} is described by the instance, not written here")
        row = {
            name: _normalise(schema.fields[name], value)
            for name, value in values.items()
            if name in schema.fields and name not in _READ_ONLY
        }
        if self.profile.truncate_on_write:
            # As instances do: a longer string is cut to the field's length, silently.
            for name, value in row.items():
                column = schema.fields[name]
                if column.kind == "string" and len(value) > column.length:
                    row[name] = value[: column.length]
        return row

    def _apply_rules(self, table: str, row: Row, *, changed: set[str]) -> None:
        # The business rules of the tables jwtkeys writes.
        if table == "sys_certificate" and "pem_certificate" in changed:
            pem = self.profile.choice_value("sys_certificate", "format") or "pem"
            if row["format"] != pem:
                raise RecordRejected(f"unsupported certificate format {row['format']!r}")
            try:
                parsed = parse_pem_certificate(row["pem_certificate"])
            except CertificateRejected as error:
                raise RecordRejected(f"Invalid certificate: {error}") from error
            row.update(
                expires=glide_datetime(parsed.not_after),
                valid_from=glide_datetime(parsed.not_before),
                subject=parsed.subject,
                issuer=parsed.issuer,
            )
        if table == "jwt_verifier_map" and row.get("kid", "").strip() == "":
            # A blank kid is filled by the instance, so tokens must then carry that one.
            row["kid"] = secrets.token_hex(16)


def _as_string(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        # A reference or display/value pair sent back as the Table API returned it.
        return _as_string(value.get("value", ""))
    return str(value)


def _normalise(column: Field, value: object) -> str:
    text = _as_string(value)
    if column.kind == "boolean":
        return "true" if text.strip().lower() in ("true", "1", "yes") else "false"
    return text


# -- rendering (Table API result bodies) --------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """How the Table API writes a record: the `sysparm_*` parameters that shape it."""

    base_url: str
    display_value: DisplayMode = "false"
    exclude_reference_link: bool = False
    fields: tuple[str, ...] = field(default=())


def parse_display_value(raw: str | None) -> DisplayMode:
    """`sysparm_display_value` as the instance reads it (anything unknown means false)."""
    text = (raw or "false").strip().lower()
    if text == "true":
        return "true"
    if text == "all":
        return "all"
    return "false"


def render(store: RecordStore, table: str, row: Row, options: RenderOptions) -> dict[str, object]:
    """One record as the Table API returns it."""
    schema = store.schema[table]
    read = store.reader(table, row)
    names = options.fields or tuple(schema.fields)
    body: dict[str, object] = {}
    for name in names:
        value = read(name)
        if value is None:
            continue  # an unknown field in sysparm_fields is left out, not an error
        column = _column(store, table, name)
        body[name] = _render_value(store, column, value, options)
    return body


def _column(store: RecordStore, table: str, name: str) -> Field:
    head, _, rest = name.partition(".")
    column = store.schema[table].fields[head]
    if rest and column.reference is not None:
        return _column(store, column.reference, rest)
    return column


def _render_value(store: RecordStore, column: Field, value: str, options: RenderOptions) -> object:
    display = _display(store, column, value)
    if column.reference is None or value == "":
        if options.display_value == "true":
            return display
        if options.display_value == "all":
            return {"display_value": display, "value": value}
        return value
    link = f"{options.base_url}/api/now/table/{column.reference}/{value}"
    if options.display_value == "true":
        shown = display
        return shown if options.exclude_reference_link else {"link": link, "display_value": shown}
    if options.display_value == "all":
        both: dict[str, str] = {"display_value": display, "value": value}
        if not options.exclude_reference_link:
            both["link"] = link
        return both
    return value if options.exclude_reference_link else {"link": link, "value": value}


def _display(store: RecordStore, column: Field, value: str) -> str:
    if column.reference is None or value == "":
        return value
    target = store.get(column.reference, value)
    if target is None:
        return ""
    return target.get(store.schema[column.reference].display_field, "")
