"""The ServiceNow preflight: what an admin runs before the first deploy and after any
instance change (`jwtkeys doctor`), and what the keeper runs at its first tick.

Each check says PASS, WARN or FAIL, what it saw, and for anything but PASS the fix.
The probe records it writes are named `jwtkeys/<keyset>/doctor-<random>` (never a
name the sync owns: a kid is 43 characters) and are always removed.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from jwtkeys.errors import JwtKeysError, ServiceNowError, TrustNotConfirmed
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.names import servicenow_record_name
from jwtkeys.servicenow.certificates import wrap_pem
from jwtkeys.servicenow.oauth import TokenRefused
from jwtkeys.servicenow.schema import SchemaMismatch
from jwtkeys.servicenow.sync import (
    APP_TABLE,
    CERTIFICATE_TABLE,
    CREDENTIAL_TABLE,
    SCHEMA_FIELDS,
    VERIFIER_TABLE,
    TrustSync,
)
from jwtkeys.servicenow.table_client import Record

Status = Literal["PASS", "WARN", "FAIL"]
CLIENT_CREDENTIALS_PROPERTY = "glide.oauth.inbound.client.credential.grant_type.enabled"
APP_DETAIL_FIELDS = (
    "sys_id",
    "name",
    "client_id",
    "clock_skew",
    "user_field",
    "enable_jti_verification",
    "access_token_lifespan",
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        """`STATUS name: detail (fix: ...)`."""
        fix = f" -- fix: {self.fix}" if self.fix and self.status != "PASS" else ""
        return f"{self.status} {self.name}: {self.detail}{fix}"

    def to_json(self) -> dict[str, str]:
        """The check as a JSON object."""
        return asdict(self)


@dataclass(frozen=True)
class DoctorReport:
    """Every check, in order; ok when none failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """No check failed (warnings allowed)."""
        return all(check.status != "FAIL" for check in self.checks)

    @property
    def failures(self) -> int:
        """How many checks failed (the keeper's preflight metric)."""
        return sum(check.status == "FAIL" for check in self.checks)


class Doctor:
    """Runs the checks against one instance through the keyset's TrustSync."""

    def __init__(
        self,
        sync: TrustSync,
        *,
        uses_client_credentials: bool,
        canary: Callable[[ManagedKey], None] | None = None,
        current_key: ManagedKey | None = None,
        now: float = 0.0,
    ) -> None:
        self.sync = sync
        self.client = sync.client
        self._uses_client_credentials = uses_client_credentials
        self._canary = canary
        self._current_key = current_key
        self._now = now

    def run(self) -> DoctorReport:
        """Every check; a check that cannot run because an earlier one failed is skipped."""
        checks: list[Check] = [self._reach()]
        if checks[0].status == "FAIL":
            return DoctorReport(tuple(checks))
        checks.append(self._client_credentials_property())
        checks.extend(self._dictionary())
        app_check, app = self._app()
        checks.append(app_check)
        if app is not None and checks[2].status != "FAIL":
            checks.append(self._probe_certificate_and_map(app))
        # The canary first: its exchange leaves a session, which the next check must see.
        canary = self._canary_check()
        checks.append(self._sessions(app, canary_passed=canary.status == "PASS"))
        checks.append(canary)
        return DoctorReport(tuple(checks))

    # -- checks -------------------------------------------------------------------------

    def _reach(self) -> Check:
        url = self.client.instance_url
        try:
            self.client.list("sys_db_object", "name=sys_certificate", ("sys_id", "name"))
        except TokenRefused as error:
            fix = "check the integration secret"
            if self._uses_client_credentials:
                fix += (
                    f"; the client-credentials grant needs the system property"
                    f" {CLIENT_CREDENTIALS_PROPERTY}=true and an OAuth Application User"
                )
            return Check("reach", "FAIL", f"{url}: the token grant was refused ({error})", fix)
        except ServiceNowError as error:
            return Check(
                "reach",
                "FAIL",
                f"{url}: {error}",
                "check the URL, TLS (the CA bundle) and the integration user's credentials",
            )
        return Check("reach", "PASS", f"{url} answered over TLS as the integration user")

    def _client_credentials_property(self) -> Check:
        name = "client-credentials"
        if not self._uses_client_credentials:
            return Check(name, "PASS", "Basic auth: no OAuth grant needed")
        rows = self._safe_list("sys_properties", f"name={CLIENT_CREDENTIALS_PROPERTY}")
        values = [r.get("value", "") for r in rows if r.get("name") == CLIENT_CREDENTIALS_PROPERTY]
        if values and values[0] == "true":
            return Check(name, "PASS", f"{CLIENT_CREDENTIALS_PROPERTY}=true")
        return Check(
            name,
            "WARN",
            f"{CLIENT_CREDENTIALS_PROPERTY} not seen as true (unreadable or unset); the grant"
            " worked in this run",
            f"set {CLIENT_CREDENTIALS_PROPERTY}=true so it keeps working",
        )

    def _dictionary(self) -> list[Check]:
        self.sync.forget_schema()
        try:
            schema = self.sync.schema()
        except ServiceNowError as error:
            return [Check("dictionary", "FAIL", str(error), "grant read on sys_dictionary")]
        lines: list[Check] = []
        for table, names in SCHEMA_FIELDS.items():
            seen = []
            for name in names:
                facts = schema.facts(table, name)
                seen.append(
                    f"{name}({facts.max_length or '?'})" if facts is not None else f"{name}(absent)"
                )
            lines.append(Check(f"table {table}", "PASS", " ".join(seen)))
        try:
            schema.check(self.sync.certificate_mode_needs())
            self.sync.certificate_settings()
        except SchemaMismatch as error:
            lines.insert(
                0,
                Check(
                    "dictionary",
                    "FAIL",
                    str(error),
                    "widen the fields named (System Definition > Dictionary) or use a"
                    " shorter keyset name",
                ),
            )
            return lines
        lines.insert(0, Check("dictionary", "PASS", "every field jwtkeys writes fits"))
        return lines

    def _app(self) -> tuple[Check, Record | None]:
        try:
            app = self.sync.find_app(APP_DETAIL_FIELDS)
        except ServiceNowError as error:
            return (
                Check(
                    "application",
                    "FAIL",
                    str(error),
                    "create the JWT bearer grant integration (Machine Identity Console) or"
                    " the 'OAuth JWT API endpoint for external clients' (Application"
                    " Registry) with this client id, readable by the integration user",
                ),
                None,
            )
        skew = app.get("clock_skew", "")
        detail = (
            f"{app.get('name', '')!r}: clock skew {skew or '?'} s, user field"
            f" {app.get('user_field', '?')}, JTI verification"
            f" {app.get('enable_jti_verification', '?')}, access token lifespan"
            f" {app.get('access_token_lifespan', '?')} s"
        )
        if skew.strip() == "0":
            return (
                Check(
                    "application",
                    "WARN",
                    detail,
                    "a clock skew of 0 s refuses a token from a signer whose clock is ahead;"
                    " set 60 s or more (tokens are backdated by a small margin too)",
                ),
                app,
            )
        return Check("application", "PASS", detail), app

    def _probe_certificate_and_map(self, app: Record) -> Check:
        name = servicenow_record_name(self.sync.keyset, f"doctor-{secrets.token_hex(4)}")
        created: list[tuple[str, str]] = []
        step = "create sys_certificate"
        try:
            certificate = self.client.create(
                CERTIFICATE_TABLE,
                {
                    "name": name,
                    "pem_certificate": _probe_pem(name, self._now),
                    **self.sync.certificate_settings(),
                },
            )
            created.append((CERTIFICATE_TABLE, certificate["sys_id"]))
            step = "read sys_certificate"
            _require(self.client.get(CERTIFICATE_TABLE, certificate["sys_id"], ("sys_id", "name")))
            step = "update sys_certificate"
            self.client.update(CERTIFICATE_TABLE, certificate["sys_id"], {"name": name})
            step = "create jwt_verifier_map"
            verifier = self.client.create(
                VERIFIER_TABLE,
                {
                    "name": name,
                    "kid": name[-43:],
                    "sys_certificate": certificate["sys_id"],
                    "oauth_jwt": app["sys_id"],
                },
            )
            created.append((VERIFIER_TABLE, verifier["sys_id"]))
            step = "read jwt_verifier_map"
            _require(self.client.get(VERIFIER_TABLE, verifier["sys_id"], ("sys_id", "name")))
            step = "update jwt_verifier_map"
            self.client.update(VERIFIER_TABLE, verifier["sys_id"], {"name": name})
            step = "delete"
        except ServiceNowError as error:
            return Check(
                "read/create/update/delete",
                "FAIL",
                f"{step} failed: {error}",
                "give the integration user admin, or a role with read/create/write/delete"
                f" ACLs on {CERTIFICATE_TABLE} and {VERIFIER_TABLE} (read on {APP_TABLE})",
            )
        finally:
            leftovers = self._remove(created)
        if leftovers:
            return Check(
                "read/create/update/delete",
                "FAIL",
                f"the probe {name} could not be removed: {'; '.join(leftovers)}",
                "delete it by hand and grant delete on the table",
            )
        return Check(
            "read/create/update/delete",
            "PASS",
            f"probe {name} created, read, updated and removed on both tables",
        )

    def _sessions(self, app: Record | None, *, canary_passed: bool = False) -> Check:
        name = "oauth_credential"
        if not self.sync.schema().has(CREDENTIAL_TABLE, "peer"):
            return Check(
                name,
                "FAIL",
                f"{CREDENTIAL_TABLE}.peer is not visible in the dictionary",
                "revocation cannot end sessions: grant read on the table's dictionary",
            )
        if app is None:
            return Check(name, "WARN", "no application: visibility not checked")
        rows = self._safe_list(CREDENTIAL_TABLE, f"peer={app['sys_id']}")
        if any(row.get("peer") == app["sys_id"] for row in rows):
            return Check(name, "PASS", "the application's sessions are visible")
        if canary_passed:
            # The canary's exchange has just made a session: not seeing it is the ACL.
            return Check(
                name,
                "FAIL",
                f"the session the canary just made is not visible in {CREDENTIAL_TABLE}"
                " (hidden by ACL: the table is admin-only by default)",
                f"grant the integration role read and delete on {CREDENTIAL_TABLE}, or"
                " revocation cannot end sessions",
            )
        return Check(
            name,
            "WARN",
            "no session of the application is visible (none yet, or hidden by ACL: the"
            " table is admin-only by default)",
            f"grant the integration role read and delete on {CREDENTIAL_TABLE}; the keeper"
            " proves it after its first canary",
        )

    def _canary_check(self) -> Check:
        if self._canary is None or self._current_key is None:
            return Check(
                "canary",
                "WARN",
                "no canary run (no canary subject, or no current key)",
                "configure canary_subject and the application's client secret",
            )
        try:
            self._canary(self._current_key)
        except (TrustNotConfirmed, JwtKeysError) as error:
            return Check(
                "canary",
                "FAIL",
                str(error),
                "the instance log (System Log) has the reason the exchange was refused",
            )
        return Check("canary", "PASS", f"the current key {self._current_key.kid} was accepted")

    # -- helpers ------------------------------------------------------------------------

    def _safe_list(self, table: str, query: str) -> list[Record]:
        try:
            return self.client.list(table, query)
        except ServiceNowError:
            return []

    def _remove(self, created: list[tuple[str, str]]) -> list[str]:
        problems = []
        for table, sys_id in reversed(created):  # the map before the certificate
            try:
                self.client.delete(table, sys_id)
                if self.client.get(table, sys_id, ("sys_id",)) is not None:
                    problems.append(f"{table} {sys_id} still exists")
            except ServiceNowError as error:
                problems.append(f"{table} {sys_id}: {error}")
        return problems


def _require(record: Record | None) -> None:
    if record is None:
        raise ServiceNowError("the record just written could not be read")


def _probe_pem(name: str, now: float) -> str:
    """A throwaway self-signed certificate (a local EC key that is discarded)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    start = datetime.datetime.fromtimestamp(now, datetime.UTC) - datetime.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return wrap_pem(certificate.public_bytes(Encoding.DER))
