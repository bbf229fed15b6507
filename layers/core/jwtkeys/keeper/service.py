"""The keeper function's events: lifecycle actions (CloudTrail events go to the inspector)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from jwtkeys import metrics_catalog as catalog
from jwtkeys.aws_failures import AWS_FAILURES, name_failed_calls, translate
from jwtkeys.clock import Clock
from jwtkeys.errors import AwsCallFailed, InvalidRequest, JwtKeysError
from jwtkeys.keeper.census import KeyCensus
from jwtkeys.keeper.jwks_publisher import (
    CdnInvalidator,
    CloudFrontInvalidator,
    JwksPublisher,
    RecordingInvalidator,
)
from jwtkeys.keeper.lifecycle import KeyLifecycle
from jwtkeys.keeper.state_store import Lease, RegistryStore
from jwtkeys.keeper.tick import TickReport
from jwtkeys.keeper.trust_anchor import Tampering
from jwtkeys.keys.key_store import KeyStore
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import KeeperSettings
from jwtkeys.trust.target import NoTrustTarget, Preflight, TrustTarget

if TYPE_CHECKING:
    from mypy_boto3_cloudfront import CloudFrontClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_resourcegroupstaggingapi import ResourceGroupsTaggingAPIClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

# The keeper's Lambda timeout is well under this, and the tick interval well over it:
# a crashed tick's lease has expired by the next scheduled tick.
LEASE_SECONDS = 240


# CreateKey is not idempotent: a blind retry after a lost answer makes a second key.
# Its client never retries; the registry's intent nonce recovers the lost answer instead.
CREATE_KEY_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1})


@dataclass(frozen=True)
class KeeperClients:
    kms: KMSClient
    s3: S3Client
    # GetCallerIdentity: the partition and account the key policy names.
    sts: STSClient
    kms_create: KMSClient  # CreateKey alone, configured with CREATE_KEY_CONFIG
    # GetResources: the key census (keeper/census.py).
    tagging: ResourceGroupsTaggingAPIClient
    cloudfront: CloudFrontClient | None = None

    def __post_init__(self) -> None:
        clients = (self.kms, self.s3, self.sts, self.kms_create, self.tagging, self.cloudfront)
        for client in clients:
            if client is not None:
                name_failed_calls(client)


TrustFactory = Callable[[KeeperSettings, Clock], TrustTarget]


def no_trust(settings: KeeperSettings, clock: Clock) -> TrustTarget:
    return NoTrustTarget()


class KeeperService:
    """Dispatches one keeper event to the lifecycle and records its metrics."""

    def __init__(
        self,
        settings: KeeperSettings,
        keeper: KeyLifecycle,
        registry: RegistryStore,
        metrics: MetricsRecorder,
        logger: logging.Logger | Any,
    ) -> None:
        self.settings = settings
        self.keeper = keeper
        self._registry = registry
        self._metrics = metrics
        self._log = logger
        # The verifier's preflight runs once per container, at its first action.
        self._preflight_pending = True

    @classmethod
    def create(
        cls,
        settings: KeeperSettings,
        clients: KeeperClients,
        clock: Clock,
        *,
        trust_factory: TrustFactory = no_trust,
        invalidator: CdnInvalidator | None = None,
        logger: logging.Logger | Any | None = None,
        metrics: MetricsRecorder | None = None,
    ) -> KeeperService:
        """Wire the keeper from settings; no network call happens here."""
        log = logger or logging.getLogger("jwtkeys.keeper")
        rotation = settings.rotation
        if invalidator is None:
            if settings.distribution_id and clients.cloudfront is not None:
                invalidator = CloudFrontInvalidator(
                    clients.cloudfront, settings.distribution_id, clock
                )
            else:
                invalidator = RecordingInvalidator()
        registry = RegistryStore(clients.s3, settings.bucket)
        key_store = KeyStore(
            clients.kms,
            clients.sts,
            clients.kms_create,
            settings.keyset,
            rotation.signing_algorithm,
            rotation.key_spec,
            settings.signer_role_arn,
            settings.keeper_role_arn,
        )
        keeper = KeyLifecycle(
            keyset=settings.keyset,
            policy=rotation,
            key_store=key_store,
            registry_store=registry,
            lease=Lease(clients.s3, settings.bucket, clock, LEASE_SECONDS),
            publisher=JwksPublisher(
                clients.s3,
                settings.bucket,
                settings.issuer,
                rotation.jwks_max_age,
                invalidator,
                settings.public_base_url,
            ),
            trust=trust_factory(settings, clock),
            census=KeyCensus(clients.tagging, key_store, clock, rotation.census_interval),
            clock=clock,
            logger=log,
            revoke_sessions=settings.servicenow.revoke_sessions if settings.servicenow else True,
        )
        return cls(
            settings,
            keeper,
            registry,
            metrics or MetricsRecorder(catalog.KEEPER_SERVICE, settings.keyset),
            log,
        )

    def handle(self, event: object) -> dict[str, Any]:
        """Run one action; anything else (CloudTrail events go to the inspector) is refused."""
        try:
            return self._act(event)
        except (*AWS_FAILURES, AwsCallFailed) as error:
            failure = translate(error)
            assert failure is not None
            # The same words as the operator's one line, as fields for log queries.
            self._log.error("aws call failed", extra=failure.details())
            if failure is error:
                raise
            raise failure from error
        finally:
            self._metrics.flush()

    def _act(self, event: object) -> dict[str, Any]:
        action = _parse_action(event)
        self._metrics.add(catalog.KEEPER_TICKS, 1)
        self._preflight()
        self.keeper.tampering_found = []  # this action's findings only (a warm container)
        try:
            report = action(self.keeper)
        except Exception:
            self._metrics.add(catalog.ROTATION_FAILURES, 1)
            # Found before the action failed (a forged JWKS whose rewrite failed): the
            # alarm must not wait for an action that succeeds.
            self._record_tampering(self.keeper.tampering_found)
            raise
        self._record(report)
        return report.to_summary()

    def _preflight(self) -> None:
        """`jwtkeys doctor`'s checks at a container's first action: a metric, never a
        failed tick (the action itself reports what breaks it)."""
        if not self._preflight_pending:
            return
        self._preflight_pending = False
        trust = self.keeper.trust
        if not isinstance(trust, Preflight):
            return
        try:
            failures = trust.preflight(self.keeper.clock.now())
        except JwtKeysError as error:
            self._log.warning("verifier preflight could not run", extra={"error": str(error)})
            failures = 1
        self._metrics.add(catalog.SERVICENOW_PREFLIGHT_FAILURES, failures)

    def _record_tampering(self, findings: list[Tampering]) -> None:
        self._metrics.add(catalog.STATE_TAMPERING, len(findings))
        for finding in findings:
            self._log.error("keeper state tampered with", extra=finding.to_summary())

    def _record(self, report: TickReport) -> None:
        add = self._metrics.add
        add(catalog.ROTATION_FAILURES, 0)
        self._record_tampering(report.tampering)
        if report.skipped:
            return
        add(catalog.KEYS_CREATED, len(report.created))
        add(catalog.KEYS_PROMOTED, len(report.promoted))
        add(catalog.KEYS_RETIRED, len(report.retired))
        add(catalog.KEYS_REVOKED, len(report.revoked))
        add(catalog.PUBLISHED_KEYS, report.published_keys)
        add(catalog.JWKS_DRIFT, 1 if report.jwks_drift else 0)
        if report.current_key_age is not None:
            add(catalog.CURRENT_KEY_AGE_SECONDS, report.current_key_age)
        if report.next_key_published_for is not None:
            add(catalog.NEXT_KEY_PUBLISHED_SECONDS, report.next_key_published_for)
        add(catalog.SERVICENOW_SYNC_FAILURES, 1 if report.trust_error else 0)
        add(catalog.CANARY_EXCHANGE_FAILURES, 1 if report.canary_failed else 0)
        add(catalog.SESSIONS_NOT_ENDED, 1 if report.sessions_not_ended else 0)
        add(catalog.UNCONFIRMED_PROMOTIONS, 1 if report.unconfirmed_promotion else 0)
        if report.trust is not None:
            add(catalog.SERVICENOW_DRIFT, report.trust.drift)
            add(catalog.SERVICENOW_RECORDS, report.trust.records)
            add(catalog.FOREIGN_TRUST_RECORDS, len(report.trust.foreign))
            for record in report.trust.foreign:
                # `name` is a LogRecord attribute: the record's name goes in as `record`.
                fields = {("record" if key == "name" else key): v for key, v in record.items()}
                self._log.error("foreign trust record on the verifier", extra=fields)
            if report.trust.certificate_expires_in_days is not None:
                add(catalog.CERTIFICATE_EXPIRES_IN_DAYS, report.trust.certificate_expires_in_days)


def _parse_action(event: object) -> Callable[[KeyLifecycle], TickReport]:
    if not isinstance(event, dict) or not isinstance(event.get("action"), str):
        raise InvalidRequest("malformed_request", 'the keeper expects {"action": ...}')
    action = event["action"]
    allowed_fields = {
        "tick": {"action"},
        "rotate": {"action", "force"},
        "revoke": {"action", "kid"},
        "decommission": {"action", "confirm"},
    }
    if action not in allowed_fields:
        raise InvalidRequest("unknown_action", f"unknown keeper action {action!r}")
    unknown = sorted(set(event) - allowed_fields[action])
    if unknown:
        raise InvalidRequest(
            "unknown_field", f"unknown field(s) for {action}: {', '.join(unknown)}"
        )
    if action == "tick":
        return lambda keeper: keeper.tick()
    if action == "rotate":
        force = event.get("force", False)
        if not isinstance(force, bool):
            raise InvalidRequest("bad_force", "force must be true or false")
        return lambda keeper: keeper.rotate(force=force)
    if action == "revoke":
        kid = event.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidRequest("bad_kid", "revoke needs the kid of the key to revoke")
        return lambda keeper: keeper.revoke(kid)
    confirm = event.get("confirm")
    if not isinstance(confirm, str):
        raise InvalidRequest("confirmation_mismatch", "decommission needs confirm=<keyset name>")
    return lambda keeper: keeper.decommission(confirm)
