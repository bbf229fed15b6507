"""ServiceNow as the keeper's trust target: records in step, a promotion gate, revocation.

- `reconcile` makes the keyset's `sys_certificate` and `jwt_verifier_map` records equal
  to the published keys (see `sync`).
- `confirm` is the promotion gate: the standby key's map and certificate read back
  correctly and, when a canary subject is configured, a canary token signed by that key
  (through KMS, not through the public signer) is exchanged at `/oauth_token.do` for an
  access token, which proves ServiceNow accepts the key end to end.
- JWKS-URL mode (when a JWKS URL is configured): the application verifies against the
  published JWKS instead; `reconcile` keeps its JWKS URL set (and removes any
  certificates and maps of ours), `confirm` reads the URL back and runs the canary.
- `end_sessions` deletes the application's `oauth_credential` rows (revocation), so
  access tokens minted with a compromised key stop working.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from jwtkeys.clock import Clock
from jwtkeys.errors import (
    ConfigurationError,
    JwtKeysError,
    ServiceNowError,
    SessionsNotEnded,
    TrustNotConfirmed,
)
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.keys.kms_signer import KmsJwsSigner, KmsKeyRef
from jwtkeys.names import servicenow_record_name
from jwtkeys.servicenow.certificates import (
    CertificateLifetime,
    issue_certificate,
    key_algorithm,
    public_key_of,
    read_certificate,
    spki,
)
from jwtkeys.servicenow.doctor import Check, Doctor, DoctorReport
from jwtkeys.servicenow.keyset_rule import check_servicenow_keyset
from jwtkeys.servicenow.secrets import ClientCredentials, SecretSource
from jwtkeys.servicenow.sync import (
    APP_FIELDS,
    APP_TABLE,
    CERTIFICATE_FIELDS,
    CERTIFICATE_TABLE,
    CREDENTIAL_TABLE,
    JWKS_URL_FIELD,
    VERIFIER_FIELDS,
    VERIFIER_TABLE,
    TrustSync,
)
from jwtkeys.servicenow.table_client import CONNECT_TIMEOUT, READ_TIMEOUT, TableClient, TokenRefused
from jwtkeys.settings import KeeperSettings, ServiceNowSettings
from jwtkeys.signer.policy import claims_payload, token_claims
from jwtkeys.signer.token_issuer import new_jti
from jwtkeys.trust.target import TrustReport

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

LOGGER = logging.getLogger("jwtkeys.servicenow")
# Long enough for the exchange (and the instance's clock skew covers the rest),
# short enough that a canary token is worthless to anyone who sees it later.
CANARY_TTL = 60
_AWS_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
)


class ServiceNowTrustTarget:
    """The ServiceNow instance of a keyset, kept trusting exactly the published keys."""

    name = "servicenow"

    def __init__(
        self,
        *,
        keyset: str,
        settings: ServiceNowSettings,
        client: TableClient,
        secrets: SecretSource,
        kms: KMSClient,
        lifetime: CertificateLifetime,
        jwks_url: str | None = None,
        jwks_cache_budget: int = 0,
        not_before_margin: int = 0,
    ) -> None:
        self.keyset = keyset
        self.settings = settings
        self.jwks_url = jwks_url
        self._jwks_cache_budget = jwks_cache_budget
        self._not_before_margin = not_before_margin
        self.client = client
        self._secrets = secrets
        self._kms = kms
        self._signer = KmsJwsSigner(kms)
        # Set once a session of the application was seen in oauth_credential.
        self.sessions_visible = False
        self.sync = TrustSync(
            client,
            keyset,
            settings.client_id,
            lambda key, now: issue_certificate(kms, keyset, key, now, lifetime),
            lifetime,
        )

    @classmethod
    def from_settings(cls, settings: KeeperSettings, clock: Clock) -> ServiceNowTrustTarget:
        """Build the trust target with its own boto3 clients (KMS, Secrets Manager)."""
        return cls.create(
            settings,
            clock,
            kms=boto3.client("kms", config=_AWS_CONFIG),
            secretsmanager=boto3.client("secretsmanager", config=_AWS_CONFIG),
        )

    @classmethod
    def create(
        cls,
        settings: KeeperSettings,
        clock: Clock,
        *,
        kms: KMSClient,
        secretsmanager: SecretsManagerClient,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        jwks_url: str | None = None,
    ) -> ServiceNowTrustTarget:
        """Build the trust target from settings and the given AWS clients; no network call.

        `jwks_url` turns on JWKS-URL mode (default: the settings' `jwks_url`, when the
        settings carry one).
        """
        servicenow = settings.servicenow
        if servicenow is None:
            raise ConfigurationError("the keyset has no ServiceNow settings")
        # Optional: older settings objects have no such field; certificate mode then.
        jwks_url = jwks_url or getattr(servicenow, "jwks_url", None) or None
        if jwks_url is not None and settings.rotation.verifier_jwks_cache_lifespan <= 0:
            raise ConfigurationError(
                "JWKS-URL mode needs policy.verifier_jwks_cache_lifespan (the application's"
                " JWKS cache lifespan), so the prepublish window is validated against it"
            )
        check_servicenow_keyset(
            issuer=settings.issuer,
            algorithm=settings.rotation.algorithm,
            client_id=servicenow.client_id,
            key_spec=settings.rotation.key_spec,
        )
        secrets = SecretSource(secretsmanager, servicenow.secret_id, clock)
        client = TableClient(
            servicenow.instance_url,
            secrets,
            clock,
            ca_bundle=servicenow.ca_bundle,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return cls(
            keyset=settings.keyset,
            settings=servicenow,
            client=client,
            secrets=secrets,
            kms=kms,
            lifetime=CertificateLifetime.for_policy(settings.rotation),
            jwks_url=jwks_url,
            jwks_cache_budget=settings.rotation.verifier_jwks_cache_lifespan,
            not_before_margin=settings.rotation.not_before_margin,
        )

    # -- TrustTarget ------------------------------------------------------------------

    def reconcile(self, keys: Sequence[ManagedKey], now: float) -> TrustReport:
        """Make the trusted set exactly `keys`; idempotent; raises ServiceNowError on failure."""
        if self.jwks_url is not None:
            # The JWKS itself is the trusted set: the keeper has just published `keys`.
            return self.sync.reconcile_jwks_url(
                self.jwks_url,
                self._jwks_cache_budget,
                switch_confirmed=lambda: self._canary_passes(keys, now),
            )
        return self.sync.reconcile(keys, now)

    def confirm(self, key: ManagedKey, now: float) -> None:
        """Raise TrustNotConfirmed unless ServiceNow trusts `key` (read back, then canary)."""
        try:
            if self.jwks_url is not None:
                self._read_back_jwks_url(self.jwks_url)
            else:
                self._read_back(key, now)
        except TrustNotConfirmed:
            raise
        except JwtKeysError as error:
            raise TrustNotConfirmed(
                f"could not read back the records of {key.kid}: {error}"
            ) from error
        if self.settings.canary_subject:
            self._canary(key, now, self.settings.canary_subject)

    def end_sessions(self) -> int:
        """Delete every `oauth_credential` row of the application; returns how many.

        SessionsNotEnded when that cannot be done or cannot be known to be done:
        `oauth_credential` is admin-only by default and an instance filters rows a user
        may not read out of a list (an empty answer, not an error), so an empty list
        counts only once this container has seen a session of the application in it.
        """
        try:
            # An instance that cannot be reached is said, not raised: the key is revoked.
            schema = self.sync.schema()
            has_peer = schema.has(CREDENTIAL_TABLE, "peer")
            app_id = self.sync.find_app()["sys_id"] if has_peer else ""
        except ServiceNowError as error:
            raise SessionsNotEnded(f"could not end sessions: {error}") from error
        if not has_peer:
            raise SessionsNotEnded(
                f"could not end sessions: {CREDENTIAL_TABLE}.peer is not in the instance's"
                " dictionary (or the integration user cannot read the dictionary)"
            )
        try:
            rows = self.client.list(
                CREDENTIAL_TABLE,
                f"peer={app_id}",
                self.sync.fields(CREDENTIAL_TABLE, ("sys_id", "peer")),
            )
        except ServiceNowError as error:
            raise SessionsNotEnded(f"could not end sessions: {error}") from error
        # Re-checked: were `peer` dropped from the query, every session would match.
        mine = [row for row in rows if row.get("peer") == app_id and row.get("sys_id")]
        if not mine and not self.sessions_visible:
            raise SessionsNotEnded(
                f"could not end sessions: no {CREDENTIAL_TABLE} row of the application is"
                " visible to the integration user, and none has been seen since this keeper"
                f" started ({CREDENTIAL_TABLE} is admin-only by default: grant read and delete"
                " on it, see `jwtkeys doctor`)"
            )
        ended = 0
        for row in mine:
            try:
                if self.client.delete(CREDENTIAL_TABLE, row["sys_id"]):
                    ended += 1
            except ServiceNowError as error:
                raise SessionsNotEnded(
                    f"could not end sessions: {ended} of {len(mine)} ended, then {error}"
                ) from error
        return ended

    def check_sessions_visible(self) -> bool:
        """Whether a session of the application is visible in `oauth_credential` (after a
        canary exchange there is one): what lets `end_sessions` trust an empty list."""
        if not self.sync.schema().has(CREDENTIAL_TABLE, "peer"):
            return False
        app_id = self.sync.find_app()["sys_id"]
        rows = self.client.list(
            CREDENTIAL_TABLE,
            f"peer={app_id}",
            self.sync.fields(CREDENTIAL_TABLE, ("sys_id", "peer")),
        )
        self.sessions_visible = any(row.get("peer") == app_id for row in rows)
        return self.sessions_visible

    def doctor(self, now: float, current_key: ManagedKey | None = None) -> DoctorReport:
        """The preflight checks (`jwtkeys doctor`); the canary runs with `current_key`."""
        try:
            uses_client_credentials = isinstance(self._secrets.get().credentials, ClientCredentials)
        except JwtKeysError as error:
            return DoctorReport((Check("secret", "FAIL", str(error), "fix the ServiceNow secret"),))
        canary_subject = self.settings.canary_subject
        canary = None
        if canary_subject:

            def canary(key: ManagedKey) -> None:
                self._canary(key, now, canary_subject)

        return Doctor(
            self.sync,
            uses_client_credentials=uses_client_credentials,
            canary=canary,
            current_key=current_key,
            now=now,
        ).run()

    def preflight(self, now: float) -> int:
        """The doctor's checks (no canary: promotion runs its own); logs every line that
        is not PASS; returns how many failed."""
        # No canary runs here, so the doctor's "no canary run" line says nothing about the
        # instance: leave it out rather than warn at every container start.
        report = DoctorReport(
            tuple(check for check in self.doctor(now).checks if check.name != "canary")
        )
        for check in report.checks:
            if check.status != "PASS":
                LOGGER.warning("servicenow preflight: %s", check.line())
        return report.failures

    def trusted_kids(self) -> set[str]:
        """The kids ServiceNow holds an owned verifier map for (for audits and tests)."""
        return self.sync.trusted_kids()

    def records_of(self, key: ManagedKey) -> list[str]:
        """The records through which ServiceNow trusts `key` (no call to the instance)."""
        app = f"{APP_TABLE} application with client_id {self.settings.client_id!r}"
        if self.jwks_url is not None:
            return [f"{app} (verifies against its JWKS URL {self.jwks_url})"]
        name = servicenow_record_name(self.keyset, key.kid)
        return [f"{VERIFIER_TABLE} {name} of the {app}", f"{CERTIFICATE_TABLE} {name}"]

    def _canary_passes(self, keys: Sequence[ManagedKey], now: float) -> bool:
        """A mode switch's proof: a canary of the current key (else the newest) exchanged
        in the new mode. Without a canary subject there is nothing to prove it with."""
        subject = self.settings.canary_subject
        if not subject or not keys:
            return True
        current = [key for key in keys if key.state is KeyState.CURRENT]
        key = current[0] if current else keys[-1]
        try:
            self._canary(key, now, subject)
        except TrustNotConfirmed as refused:
            LOGGER.warning("mode switch not yet proven", extra={"error": str(refused)})
            return False
        return True

    # -- the promotion gate -------------------------------------------------------------

    def _read_back(self, key: ManagedKey, now: float) -> None:
        name = servicenow_record_name(self.keyset, key.kid)
        app = self.sync.find_app()
        verifiers = [
            v
            for v in self.client.list(
                VERIFIER_TABLE, f"name={name}", self.sync.fields(VERIFIER_TABLE, VERIFIER_FIELDS)
            )
            if v.get("name") == name
            and v.get("kid") == key.kid
            and v.get("oauth_jwt") == app["sys_id"]
            # `active` is not documented for maps: checked only when the instance has it.
            and v.get("active", "true") == "true"
        ]
        if len(verifiers) != 1:
            raise TrustNotConfirmed(
                f"{VERIFIER_TABLE} {name} of {APP_TABLE} {app.get('name', '')!r}:"
                f" {len(verifiers)} correct record(s), expected 1"
            )
        certificate = self.client.get(
            CERTIFICATE_TABLE,
            verifiers[0]["sys_certificate"],
            self.sync.fields(CERTIFICATE_TABLE, CERTIFICATE_FIELDS),
        )
        if certificate is None or certificate.get("name") != name:
            raise TrustNotConfirmed(f"the map {name} does not point at its own certificate")
        facts = read_certificate(certificate.get("pem_certificate", ""))
        if facts is None or facts.public_key_der != spki(public_key_of(key)):
            raise TrustNotConfirmed(f"the certificate {name} does not certify kid {key.kid}")
        if (
            certificate.get("active", "true") != "true"
            or not facts.not_before <= now <= facts.not_after
        ):
            raise TrustNotConfirmed(f"the certificate {name} is inactive or not valid now")

    def _read_back_jwks_url(self, jwks_url: str) -> None:
        app = self.sync.find_app((*APP_FIELDS, JWKS_URL_FIELD))
        if app.get(JWKS_URL_FIELD) != jwks_url:
            raise TrustNotConfirmed(f"{APP_TABLE} {app.get('name', '')!r} does not use {jwks_url}")

    def _canary(self, key: ManagedKey, now: float, subject: str) -> None:
        app_secret = self._secrets.get().oauth_client_secret
        if app_secret is None:
            raise TrustNotConfirmed(
                f"the canary needs the application's client secret: add oauth_client_secret"
                f" to the secret {self.settings.secret_id}"
            )
        client_id = self.settings.client_id
        claims = token_claims(
            issuer=client_id,
            subject=subject,
            audience=client_id,
            now=now,
            ttl=CANARY_TTL,
            jti=new_jti(),
            backdate=self._not_before_margin,
        )
        payload = claims_payload(claims)
        # Signed with the standby key's ARN directly: the public signer only ever uses
        # the current key, and this token must prove the key that is not yet current.
        assertion = self._signer.sign(payload, KmsKeyRef(key.arn, key.kid, key_algorithm(key)))
        try:
            self.client.exchange_jwt_bearer(client_id, app_secret, assertion)
        except TokenRefused as refused:
            raise TrustNotConfirmed(
                f"the canary token of {key.kid} was refused by {self.settings.instance_url}"
                " (the reason is in the instance's log)"
            ) from refused
        except ServiceNowError as error:
            raise TrustNotConfirmed(f"the canary exchange of {key.kid} failed: {error}") from error
        if not self.sessions_visible:
            # The exchange left a session of the application: seeing it proves that
            # `end_sessions` can see (and so end) sessions. Never fails the promotion.
            try:
                self.check_sessions_visible()
            except ServiceNowError as error:
                LOGGER.warning("oauth_credential could not be read", extra={"error": str(error)})
