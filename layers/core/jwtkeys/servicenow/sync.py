"""Reconcile a keyset's ServiceNow trust records with its published keys.

Per published key jwtkeys owns one `sys_certificate` and one `jwt_verifier_map`, both
named `jwtkeys/<keyset>/<kid>`. That name is the only ownership marker (a custom field
would be dangerous: a query on a field an instance lacks is silently dropped and
matches every row). So every record a query returns is re-checked here, by exact name,
before it is changed or deleted; records that fail the check are never touched.

Each step reads before it writes and does only what differs, so a reconcile cut short
anywhere is finished by the next one:
- missing records are created (certificate first, then the map that points at it);
- owned records edited by hand are put back and counted as drift (`repaired`);
- a certificate that nears expiry is renewed in place: its `pem_certificate` is
  replaced (certificate names are unique on an instance, so never a second one);
- records of keys that left are deleted, map first, then certificate.

The instance's dictionary (`schema.py`) is read before the first write of a container
and again after a failed write: only fields it shows are written, asked for and
compared (`jwt_verifier_map.active` is not documented and may not exist), choices are
written in the instance's spelling, and a field that is missing or too short stops
the sync before anything is written. Every insert and update is read back; a record
the instance stored differently (truncated, altered) is deleted and the tick fails.

Every reconcile also lists the verifier maps of jwtkeys' application that it does not
own (the same request as its own maps, widened by `^OR`): an admin's map there makes
ServiceNow accept tokens of a key jwtkeys never published. They are reported
(`TrustReport.foreign`), never changed or deleted: an operator decides.

Drift is counted when an owned record exists but is wrong, when a map points at no
usable certificate, or when a record this process saw in step has gone. A certificate
without its map is, without that memory, indistinguishable from a create cut short
between the two calls, so it is repaired without being counted (no false alarm after
an outage).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jwtkeys.errors import ServiceNowError
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.names import servicenow_record_name
from jwtkeys.servicenow.certificates import (
    DAY,
    MINUTE,
    CertificateFacts,
    CertificateLifetime,
    public_key_of,
    read_certificate,
    spki,
)
from jwtkeys.servicenow.schema import InstanceSchema, Need, SchemaMismatch, read_schema
from jwtkeys.servicenow.table_client import Record, TableClient
from jwtkeys.trust.target import TrustReport

LOGGER = logging.getLogger("jwtkeys.servicenow")

CERTIFICATE_TABLE = "sys_certificate"
VERIFIER_TABLE = "jwt_verifier_map"
APP_TABLE = "oauth_jwt"
CREDENTIAL_TABLE = "oauth_credential"
CERTIFICATE_FIELDS = ("sys_id", "name", "pem_certificate", "active", "format", "type")
VERIFIER_FIELDS = ("sys_id", "name", "kid", "sys_certificate", "oauth_jwt", "active")
APP_FIELDS = ("sys_id", "name", "client_id", "active")
CREDENTIAL_FIELDS = ("sys_id", "peer", "type")
# JWKS-URL mode (recent releases). Inferred names: ServiceNow does not document them.
JWKS_URL_FIELD = "jwks_url"
JWKS_CACHE_FIELD = "jwks_cache_lifespan"  # minutes
# A kid is an RFC 7638 SHA-256 thumbprint: 43 base64url characters.
KID_LENGTH = 43
KID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
DESCRIPTION_FIELD = "short_description"

# Every field jwtkeys reads or writes, per table (what the dictionary is asked about).
SCHEMA_FIELDS: dict[str, tuple[str, ...]] = {
    CERTIFICATE_TABLE: (
        "name",
        "pem_certificate",
        "format",
        "type",
        "active",
        DESCRIPTION_FIELD,
    ),
    VERIFIER_TABLE: ("name", "kid", "sys_certificate", "oauth_jwt", "active"),
    APP_TABLE: (
        "name",
        "client_id",
        "active",
        JWKS_URL_FIELD,
        JWKS_CACHE_FIELD,
        # Read by `doctor` only.
        "clock_skew",
        "user_field",
        "enable_jti_verification",
        "access_token_lifespan",
    ),
    CREDENTIAL_TABLE: ("peer", "type"),
}
CHOICE_FIELDS = ((CERTIFICATE_TABLE, "format"), (CERTIFICATE_TABLE, "type"))
# Accepted spellings of the choices jwtkeys sets, the first written when the field has
# no choice list (public code that ran on real instances used each of these).
FORMAT_PEM = ("pem", "PEM")
TYPE_TRUST_STORE = ("trust_store", "trust_store_cert", "Trust Store Cert")

CertificateMaker = Callable[[ManagedKey, float], str]


class Ownership:
    """Which records of a keyset jwtkeys owns: exactly those named `jwtkeys/<keyset>/<kid>`."""

    def __init__(self, keyset: str) -> None:
        self.keyset = keyset
        self.prefix = servicenow_record_name(keyset, "")

    def kid_of(self, record: Record) -> str | None:
        """The kid an owned record belongs to, or None when the record is not ours."""
        name = record.get("name", "")
        if not name.startswith(self.prefix):
            return None
        kid = name[len(self.prefix) :]
        return kid if KID_PATTERN.match(kid) else None

    def owns(self, record: Record, kid: str) -> bool:
        """Whether `record` is ours and belongs to `kid` (the check before any change)."""
        return record.get("name", "") == servicenow_record_name(self.keyset, kid)


@dataclass
class OwnedRecords:
    """The owned certificates and verifier maps found, grouped by kid."""

    certificates: dict[str, list[Record]] = field(default_factory=dict)
    verifiers: dict[str, list[Record]] = field(default_factory=dict)
    # Maps of the application that are not ours (listed only when the app was given).
    foreign_verifiers: list[Record] = field(default_factory=list)


@dataclass
class _KeyOutcome:
    created: int = 0
    removed: int = 0
    repaired: int = 0
    expires_at: float = 0.0


@dataclass(frozen=True)
class _KeyRecords:
    """What a reconcile found for one key: its owned records, and whether it was in step."""

    key: ManagedKey
    certificates: list[Record]
    verifiers: list[Record]
    known: bool


def _same(name: str, stored: str, sent: str) -> bool:
    """Whether a stored value is what was sent (a PEM may come back re-wrapped)."""
    if name == "pem_certificate":
        return "".join(stored.split()) == "".join(sent.split())
    return stored == sent


def _verifier_to_keep(
    verifiers: list[Record], usable: dict[str, CertificateFacts]
) -> Record | None:
    """The map to keep: one that already points at a usable certificate, else the first."""
    pointing = [v for v in verifiers if v.get("sys_certificate") in usable]
    candidates = pointing or verifiers
    return candidates[0] if candidates else None


class TrustSync:
    """Keeps one keyset's certificates and verifier maps equal to its published keys."""

    def __init__(
        self,
        client: TableClient,
        keyset: str,
        client_id: str,
        make_certificate: CertificateMaker,
        lifetime: CertificateLifetime,
    ) -> None:
        self.client = client
        self.keyset = keyset
        self.client_id = client_id
        self.ownership = Ownership(keyset)
        self._make_certificate = make_certificate
        self.lifetime = lifetime
        # Kids whose records this process last left complete: a later absence is drift.
        self._in_step: set[str] = set()
        # The instance's dictionary, read once per container and after a failed write.
        self._schema: InstanceSchema | None = None

    # -- the instance's dictionary ------------------------------------------------------

    def schema(self) -> InstanceSchema:
        """The dictionary facts of the tables jwtkeys uses (cached; see `forget_schema`)."""
        if self._schema is None:
            self._schema = read_schema(self.client, SCHEMA_FIELDS, CHOICE_FIELDS)
        return self._schema

    def forget_schema(self) -> None:
        """Read the dictionary again before the next write (a write failed)."""
        self._schema = None

    def fields(self, table: str, wanted: Sequence[str]) -> tuple[str, ...]:
        """The fields of `wanted` the instance has: only those are asked for."""
        return self.schema().present(table, wanted)

    def certificate_mode_needs(self) -> list[Need]:
        """What certificate mode writes: fields, the lengths of names and kids, references."""
        name_length = len(servicenow_record_name(self.keyset, "k" * KID_LENGTH))
        name_why = f"the ownership name jwtkeys/{self.keyset}/<43-character kid>"
        return [
            Need(APP_TABLE, "client_id", len(self.client_id)),
            Need(CERTIFICATE_TABLE, "name", name_length, why=name_why),
            Need(CERTIFICATE_TABLE, "pem_certificate"),
            Need(CERTIFICATE_TABLE, "format"),
            Need(CERTIFICATE_TABLE, "type"),
            Need(VERIFIER_TABLE, "name", name_length, why=name_why),
            Need(VERIFIER_TABLE, "kid", KID_LENGTH, why="an RFC 7638 thumbprint"),
            Need(VERIFIER_TABLE, "sys_certificate", reference=CERTIFICATE_TABLE),
            Need(VERIFIER_TABLE, "oauth_jwt", reference=APP_TABLE),
        ]

    def certificate_settings(self) -> dict[str, str]:
        """An owned certificate's fields besides its PEM, in the instance's spelling."""
        schema = self.schema()
        return schema.writable(
            CERTIFICATE_TABLE,
            {
                "active": "true",
                "format": schema.choice_value(CERTIFICATE_TABLE, "format", FORMAT_PEM),
                "type": schema.choice_value(CERTIFICATE_TABLE, "type", TYPE_TRUST_STORE),
            },
        )

    # -- reads ------------------------------------------------------------------------

    def find_app(self, fields: Sequence[str] = APP_FIELDS) -> Record:
        """The configured `oauth_jwt` application, found by client_id (exactly one)."""
        rows = self.client.list(
            APP_TABLE, f"client_id={self.client_id}", self.fields(APP_TABLE, fields)
        )
        # Re-checked: were `client_id` dropped from the query, every app would match.
        apps = [row for row in rows if row.get("client_id") == self.client_id]
        if not apps:
            raise ServiceNowError(
                f"no {APP_TABLE} application has client_id {self.client_id!r}"
                " (or the integration user cannot read it)"
            )
        if len(apps) > 1:
            raise ServiceNowError(
                f"{len(apps)} {APP_TABLE} applications have client_id {self.client_id!r}"
            )
        return apps[0]

    def owned(self, app_id: str | None = None) -> OwnedRecords:
        """Every owned record of the keyset, re-checked by exact name; with `app_id`, also
        every verifier map of that application jwtkeys does not own (read in the same
        request: `^OR` widens the map query, and each row is re-checked here)."""
        query = f"nameSTARTSWITH{self.ownership.prefix}"
        found = OwnedRecords()
        for table, fields, into in (
            (CERTIFICATE_TABLE, CERTIFICATE_FIELDS, found.certificates),
            (VERIFIER_TABLE, VERIFIER_FIELDS, found.verifiers),
        ):
            listed = query
            if table == VERIFIER_TABLE and app_id:
                listed = f"{query}^ORoauth_jwt={app_id}"
            for record in self.client.list(table, listed, self.fields(table, fields)):
                if not record.get("sys_id"):
                    continue
                kid = self.ownership.kid_of(record)
                if kid is not None:
                    into.setdefault(kid, []).append(record)
                elif table == VERIFIER_TABLE and app_id and record.get("oauth_jwt") == app_id:
                    found.foreign_verifiers.append(record)
        return found

    @staticmethod
    def _foreign_findings(owned: OwnedRecords) -> list[dict[str, str]]:
        """The application's maps jwtkeys does not own, as the report names them."""
        return [
            {
                "table": VERIFIER_TABLE,
                "sys_id": record["sys_id"],
                "name": record.get("name", ""),
                "kid": record.get("kid", ""),
                "sys_certificate": record.get("sys_certificate", ""),
            }
            for record in owned.foreign_verifiers
        ]

    def trusted_kids(self) -> set[str]:
        """The kids that have an owned verifier map (what ServiceNow trusts for us)."""
        return set(self.owned().verifiers)

    # -- reconcile --------------------------------------------------------------------

    def reconcile(self, keys: Sequence[ManagedKey], now: float) -> TrustReport:
        """Make the owned records exactly those of `keys`; idempotent."""
        self.schema().check(self.certificate_mode_needs())
        app = self.find_app()
        owned = self.owned(app["sys_id"])
        # Reported, never changed: not ours, and an operator decides whether it stays.
        report = TrustReport(foreign=self._foreign_findings(owned))
        wanted = {key.kid: key for key in keys}
        expiries: list[float] = []
        for key in keys:
            outcome = self._ensure(key, app, owned, now, report)
            report.created += outcome.created
            report.removed += outcome.removed
            report.repaired += outcome.repaired
            expiries.append(outcome.expires_at)
        # Keys that left: every map first, so no map ever points at a deleted certificate.
        for kid, records in owned.verifiers.items():
            if kid not in wanted:
                report.removed += self._delete_all(VERIFIER_TABLE, kid, records)
        for kid, records in owned.certificates.items():
            if kid not in wanted:
                report.removed += self._delete_all(CERTIFICATE_TABLE, kid, records)
        report.records = 2 * len(wanted)
        if expiries:
            report.certificate_expires_in_days = round((min(expiries) - now) / DAY, 3)
        self._in_step = set(wanted)
        return report

    def reconcile_jwks_url(
        self,
        jwks_url: str,
        cache_budget: int,
        switch_confirmed: Callable[[], bool] | None = None,
    ) -> TrustReport:
        """JWKS-URL mode: the app trusts the published JWKS, so no certificates or maps
        (removed on a switch from certificate mode once `switch_confirmed()` says so).

        `cache_budget` is the policy's `verifier_jwks_cache_lifespan`: an instance that
        caches the JWKS longer could refuse a freshly promoted key, so that is an error.
        """
        schema = self.schema()
        if not schema.has(APP_TABLE, JWKS_URL_FIELD):
            raise SchemaMismatch(
                f"{APP_TABLE} has no {JWKS_URL_FIELD} field on this instance: JWKS-URL mode"
                " needs a release that verifies against a JWKS URL"
            )
        schema.check([Need(APP_TABLE, JWKS_URL_FIELD, len(jwks_url), why="the JWKS URL")])
        app = self.find_app((*APP_FIELDS, JWKS_URL_FIELD, JWKS_CACHE_FIELD))
        lifespan = app.get(JWKS_CACHE_FIELD, "").strip()
        # The application's cache lifespan is in minutes; the policy's budget in seconds.
        if lifespan.isdigit() and int(lifespan) * MINUTE > cache_budget:
            raise ServiceNowError(
                f"the application caches the JWKS for {lifespan} minutes, more than"
                f" policy.verifier_jwks_cache_lifespan ({cache_budget} s): raise the policy's"
                " value (and its prepublish window) or lower the application's"
            )
        report = TrustReport(records=1)
        if app.get(JWKS_URL_FIELD, "") != jwks_url:
            try:
                self.client.update(APP_TABLE, app["sys_id"], {JWKS_URL_FIELD: jwks_url})
            except ServiceNowError:
                self.forget_schema()
                raise
            stored = self.client.get(APP_TABLE, app["sys_id"], ("sys_id", JWKS_URL_FIELD))
            if stored is None or stored.get(JWKS_URL_FIELD) != jwks_url:
                # Not ours to delete (the application): fail loudly instead.
                self.forget_schema()
                raise ServiceNowError(f"{APP_TABLE} did not keep {JWKS_URL_FIELD} as sent")
            if app.get(JWKS_URL_FIELD):
                report.repaired += 1
                report.notes.append(f"{JWKS_URL_FIELD} was changed by hand; set back")
            else:
                report.created += 1
        # Certificates and maps of an earlier certificate-mode set-up are ours to remove,
        # but only once the new mode is proven (a canary through the JWKS URL): until
        # then they keep the instance trusting the keys.
        owned = self.owned(app["sys_id"])
        report.foreign = self._foreign_findings(owned)
        if (owned.verifiers or owned.certificates) and not (
            switch_confirmed is None or switch_confirmed()
        ):
            report.notes.append(
                "certificate-mode records kept until a canary passes through the JWKS URL"
            )
            return report
        for kid, records in owned.verifiers.items():
            report.removed += self._delete_all(VERIFIER_TABLE, kid, records)
        for kid, records in owned.certificates.items():
            report.removed += self._delete_all(CERTIFICATE_TABLE, kid, records)
        return report

    def _ensure(
        self, key: ManagedKey, app: Record, owned: OwnedRecords, now: float, report: TrustReport
    ) -> _KeyOutcome:
        """One key's certificate and map, in named steps (each reads before it writes)."""
        outcome = _KeyOutcome()
        records = _KeyRecords(
            key=key,
            certificates=owned.certificates.get(key.kid, []),
            verifiers=owned.verifiers.get(key.kid, []),
            known=key.kid in self._in_step,
        )
        usable = self._usable_certificates(records, now)
        verifier = _verifier_to_keep(records.verifiers, usable)
        target = verifier.get("sys_certificate", "") if verifier is not None else ""
        chosen, expires_at, certificate_drift = self._ensure_certificate(
            records, usable, target, verifier, now, report, outcome
        )
        outcome.expires_at = expires_at
        self._repair_certificate_settings(records, chosen, report, outcome)
        self._ensure_verifier(
            records, verifier, app, chosen, target, certificate_drift, report, outcome
        )
        self._remove_leftovers(records, verifier, chosen, report, outcome)
        return outcome

    def _usable_certificates(self, records: _KeyRecords, now: float) -> dict[str, CertificateFacts]:
        """Owned certificates of the key that certify its public key and are valid now."""
        public = spki(public_key_of(records.key))
        usable: dict[str, CertificateFacts] = {}
        for record in records.certificates:
            facts = read_certificate(record.get("pem_certificate", ""))
            if facts is not None and facts.public_key_der == public and facts.not_before <= now:
                usable[record["sys_id"]] = facts
        return usable

    def _ensure_certificate(
        self,
        records: _KeyRecords,
        usable: dict[str, CertificateFacts],
        target: str,
        verifier: Record | None,
        now: float,
        report: TrustReport,
        outcome: _KeyOutcome,
    ) -> tuple[str, float, bool]:
        """The certificate the map should point at (created or renewed when needed).

        Returns its sys_id, its expiry, and whether a missing or edited certificate was
        drift.
        """
        kid = records.key.kid
        fresh = {
            sys_id: facts
            for sys_id, facts in usable.items()
            if facts.not_after - now >= self.lifetime.renew_before
        }
        if target in fresh:
            return target, fresh[target].not_after, False
        if fresh:
            # A renewal cut short before the map was repointed left a fresh certificate.
            chosen = max(fresh, key=lambda sys_id: fresh[sys_id].not_after)
            return chosen, fresh[chosen].not_after, False
        # None is fresh: renew or replace in place when the key has a certificate (names
        # are unique on an instance), create one only when it has none.
        owned_ids = [record["sys_id"] for record in records.certificates]
        in_place = target if target in owned_ids else next(iter(usable), None)
        if in_place is None and owned_ids:
            in_place = owned_ids[0]
        certificate_drift = False
        if usable and in_place in usable:
            report.notes.append(f"renewed the certificate of {kid}")
        elif records.certificates:
            # Owned certificates exist but none certifies this key: edited by hand.
            certificate_drift = True
            report.notes.append(f"replaced an edited certificate of {kid}")
        elif verifier is not None or records.known:
            certificate_drift = True
            report.notes.append(f"recreated the deleted certificate of {kid}")
        else:
            outcome.created += 1
        outcome.repaired += int(certificate_drift)
        if in_place is not None:
            record = next(r for r in records.certificates if r["sys_id"] == in_place)
            stored = self._renew_certificate(records.key, record, now)
        else:
            stored = self._create_certificate(records.key, now)
        made = read_certificate(stored.get("pem_certificate", ""))
        return stored["sys_id"], made.not_after if made else now, certificate_drift

    def _repair_certificate_settings(
        self, records: _KeyRecords, chosen: str, report: TrustReport, outcome: _KeyOutcome
    ) -> None:
        """Put back the settings of the kept certificate when they were edited."""
        kid = records.key.kid
        for record in records.certificates:
            if record["sys_id"] != chosen:
                continue
            settings = self.certificate_settings()
            # Only fields the instance returned are compared (it omits those it lacks).
            wrong = {f: v for f, v in settings.items() if f in record and record[f] != v}
            if wrong:
                self._update(CERTIFICATE_TABLE, kid, record, wrong)
                outcome.repaired += 1
                report.notes.append(f"repaired {sorted(wrong)} of the certificate of {kid}")

    def _ensure_verifier(
        self,
        records: _KeyRecords,
        verifier: Record | None,
        app: Record,
        chosen: str,
        target: str,
        certificate_drift: bool,
        report: TrustReport,
        outcome: _KeyOutcome,
    ) -> None:
        """Create the key's map, or set back what differs, pointing at `chosen`."""
        kid = records.key.kid
        settings = {
            "name": servicenow_record_name(self.keyset, kid),
            "kid": kid,
            "sys_certificate": chosen,
            "oauth_jwt": app["sys_id"],
            # Not documented for verifier maps: written only when the dictionary shows it.
            **self.schema().writable(VERIFIER_TABLE, {"active": "true"}),
        }
        if verifier is None:
            self._create(VERIFIER_TABLE, settings)
            if records.known:
                outcome.repaired += 1
                report.notes.append(f"recreated the deleted verifier map of {kid}")
            else:
                outcome.created += 1
            return
        wrong = {f: v for f, v in settings.items() if f in verifier and verifier[f] != v}
        if not wrong:
            return
        self._update(VERIFIER_TABLE, kid, verifier, wrong)
        # Repointing from one of our own certificates (renewal, or a replaced
        # certificate already counted) is ours; any other change is drift.
        owned_ids = {record["sys_id"] for record in records.certificates}
        repointed_from_ours = target in owned_ids or certificate_drift
        if set(wrong) != {"sys_certificate"} or not repointed_from_ours:
            outcome.repaired += 1
            report.notes.append(f"repaired {sorted(wrong)} of the map of {kid}")

    def _remove_leftovers(
        self,
        records: _KeyRecords,
        verifier: Record | None,
        chosen: str,
        report: TrustReport,
        outcome: _KeyOutcome,
    ) -> None:
        """Duplicate maps, then certificates no map points at (a renewal's predecessor)."""
        kid = records.key.kid
        for extra in records.verifiers:
            if extra is not verifier:
                self._delete(VERIFIER_TABLE, kid, extra)
                outcome.removed += 1
                outcome.repaired += 1
                report.notes.append(f"deleted a duplicate verifier map of {kid}")
        for record in records.certificates:
            if record["sys_id"] != chosen:
                self._delete(CERTIFICATE_TABLE, kid, record)
                outcome.removed += 1

    # -- writes (each re-checks ownership) ----------------------------------------------

    def _create_certificate(self, key: ManagedKey, now: float) -> Record:
        pem = self._checked_pem(key, now)
        description = f"jwtkeys: verifies JWTs of keyset {self.keyset} signed by kid {key.kid}"
        facts = self.schema().facts(CERTIFICATE_TABLE, DESCRIPTION_FIELD)
        if facts is not None and facts.max_length:
            description = description[: facts.max_length]  # a courtesy, never compared
        values = {
            "name": servicenow_record_name(self.keyset, key.kid),
            "pem_certificate": pem,
            **self.schema().writable(CERTIFICATE_TABLE, {DESCRIPTION_FIELD: description}),
            **self.certificate_settings(),
        }
        return self._create(CERTIFICATE_TABLE, values)

    def _renew_certificate(self, key: ManagedKey, record: Record, now: float) -> Record:
        """Replace an owned certificate's PEM (and settings) in place."""
        values = {"pem_certificate": self._checked_pem(key, now), **self.certificate_settings()}
        return self._update(CERTIFICATE_TABLE, key.kid, record, values)

    def _checked_pem(self, key: ManagedKey, now: float) -> str:
        pem = self._make_certificate(key, now)
        facts = self.schema().facts(CERTIFICATE_TABLE, "pem_certificate")
        if facts is not None and facts.max_length and len(pem) > facts.max_length:
            raise SchemaMismatch(
                f"{CERTIFICATE_TABLE}.pem_certificate holds {facts.max_length} characters,"
                f" the certificate of {key.kid} has {len(pem)} (nothing was written)"
            )
        return pem

    def _create(self, table: str, values: dict[str, str]) -> Record:
        try:
            record = self.client.create(table, values)
        except ServiceNowError:
            self.forget_schema()
            raise
        if not record.get("sys_id"):
            raise ServiceNowError(f"POST {table}: the created record has no sys_id")
        stored = self._read_back(table, record["sys_id"], values, created=True)
        LOGGER.info(
            "servicenow record created",
            extra={"table": table, "record": values["name"], "sys_id": record["sys_id"]},
        )
        return stored

    def _update(self, table: str, kid: str, record: Record, values: dict[str, str]) -> Record:
        self._check_owned(table, kid, record)
        try:
            self.client.update(table, record["sys_id"], values)
        except ServiceNowError:
            self.forget_schema()
            raise
        stored = self._read_back(table, record["sys_id"], values, created=False)
        LOGGER.info(
            "servicenow record repaired",
            extra={
                "table": table,
                "record": record["name"],
                "sys_id": record["sys_id"],
                "fields": sorted(values),
            },
        )
        return stored

    def _read_back(self, table: str, sys_id: str, sent: dict[str, str], *, created: bool) -> Record:
        """The record as stored; deleted, and the tick failed, when it differs from `sent`.

        An instance truncates a value longer than its field silently, and business rules
        may alter what was sent: a record that is not what jwtkeys wrote must not stay
        (a truncated name would no longer be recognised as ours: an orphan).
        """
        stored = self.client.get(table, sys_id, ("sys_id", *sent))
        if stored is None:
            self.forget_schema()
            raise ServiceNowError(f"{table} record {sys_id} could not be read back after a write")
        differs = sorted(f for f, v in sent.items() if f in stored and not _same(f, stored[f], v))
        if not differs:
            return stored
        self.forget_schema()
        self.client.delete(table, sys_id)
        LOGGER.error(
            "servicenow record stored differently: deleted",
            extra={"table": table, "sys_id": sys_id, "fields": differs},
        )
        detail = ", ".join(
            f"{f} ({len(sent[f])} characters sent, {len(stored[f])} stored)" for f in differs
        )
        raise ServiceNowError(
            f"{table} record {sys_id} was {'inserted' if created else 'updated'} but the"
            f" instance stored {detail} differently (truncated or altered); the record was"
            " deleted. Check the field lengths in the instance's dictionary"
        )

    def _delete(self, table: str, kid: str, record: Record) -> None:
        self._check_owned(table, kid, record)
        try:
            self.client.delete(table, record["sys_id"])
        except ServiceNowError:
            self.forget_schema()
            raise
        LOGGER.info(
            "servicenow record deleted",
            extra={"table": table, "record": record["name"], "sys_id": record["sys_id"]},
        )

    def _delete_all(self, table: str, kid: str, records: list[Record]) -> int:
        for record in records:
            self._delete(table, kid, record)
        return len(records)

    def _check_owned(self, table: str, kid: str, record: Record) -> None:
        # The last guard before a write: never change a record that is not ours.
        if not self.ownership.owns(record, kid) or not record.get("sys_id"):
            raise ServiceNowError(
                f"refusing to change {table} record {record.get('sys_id')!r}: not owned by"
                f" keyset {self.keyset}"
            )
