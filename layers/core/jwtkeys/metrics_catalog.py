"""Every metric the functions emit, with its unit and exact dimension set.

The alarms (infra/) and the emitting code both read this table, and a test parses the
functions' EMF output against it: an alarm on a dimension set that is never emitted
would never fire.
"""

from __future__ import annotations

from dataclasses import dataclass

from jwtkeys.names import METRIC_NAMESPACE

# Powertools adds `service` (POWERTOOLS_SERVICE_NAME) to every metric; we add `keyset`.
SIGNER_SERVICE = "jwtkeys-signer"
KEEPER_SERVICE = "jwtkeys-keeper"
AUTHORIZER_SERVICE = "jwtkeys-authorizer"
INSPECTOR_SERVICE = "jwtkeys-inspector"
BASE_DIMENSIONS: tuple[str, ...] = ("keyset", "service")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str  # a CloudWatch unit name as EMF writes it
    service: str
    dimensions: tuple[str, ...] = BASE_DIMENSIONS

    @property
    def namespace(self) -> str:
        return METRIC_NAMESPACE


def _signer(name: str, unit: str = "Count", extra: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, unit, SIGNER_SERVICE, tuple(sorted(BASE_DIMENSIONS + extra)))


def _keeper(name: str, unit: str = "Count") -> MetricSpec:
    return MetricSpec(name, unit, KEEPER_SERVICE)


def _inspector(name: str) -> MetricSpec:
    return MetricSpec(name, "Count", INSPECTOR_SERVICE)


def _authorizer(name: str, extra: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, "Count", AUTHORIZER_SERVICE, tuple(sorted(BASE_DIMENSIONS + extra)))


TOKENS_ISSUED = _signer("TokensIssued")
# Also by signing key: the dashboard's tokens per key id and the timeline's tokens strip.
TOKENS_ISSUED_BY_KID = _signer("TokensIssued", extra=("kid",))
# Emitted twice per refusal: once on the base dimensions (what the misuse alarm watches)
# and once with `reason` (what the dashboard breaks down).
SIGN_REQUESTS_REJECTED = _signer("SignRequestsRejected")
SIGN_REQUESTS_REJECTED_BY_REASON = _signer("SignRequestsRejected", extra=("reason",))
SIGNING_FAILURES = _signer("SigningFailures")
KMS_THROTTLED = _signer("KmsThrottled")
SIGN_LATENCY_MS = _signer("SignLatencyMs", "Milliseconds")

KEEPER_TICKS = _keeper("KeeperTicks")
KEYS_CREATED = _keeper("KeysCreated")
KEYS_PROMOTED = _keeper("KeysPromoted")
KEYS_RETIRED = _keeper("KeysRetired")
KEYS_REVOKED = _keeper("KeysRevoked")
ROTATION_FAILURES = _keeper("RotationFailures")
CURRENT_KEY_AGE_SECONDS = _keeper("CurrentKeyAgeSeconds", "Seconds")
NEXT_KEY_PUBLISHED_SECONDS = _keeper("NextKeyPublishedSeconds", "Seconds")
PUBLISHED_KEYS = _keeper("PublishedKeys")
JWKS_DRIFT = _keeper("JwksDrift")
# Keeper state in the bucket that is not what the keeper wrote, or a key tagged with the
# keyset that its registry does not list (trust_anchor.Tampering).
STATE_TAMPERING = _keeper("StateTampering")
SERVICENOW_SYNC_FAILURES = _keeper("ServiceNowSyncFailures")
SERVICENOW_DRIFT = _keeper("ServiceNowDrift")
CANARY_EXCHANGE_FAILURES = _keeper("CanaryExchangeFailures")
SERVICENOW_RECORDS = _keeper("ServiceNowRecords")
CERTIFICATE_EXPIRES_IN_DAYS = _keeper("CertificateExpiresInDays", "None")
# A revocation that could not end the verifier's sessions (oauth_credential unreadable).
SESSIONS_NOT_ENDED = _keeper("SessionsNotEnded")
# A revocation promoted the standby key without the verifier's confirmation.
UNCONFIRMED_PROMOTIONS = _keeper("UnconfirmedPromotions")
# Verifier maps of jwtkeys' ServiceNow application that jwtkeys does not own.
FOREIGN_TRUST_RECORDS = _keeper("ForeignTrustRecords")
# Checks of `jwtkeys doctor` that failed at a keeper container's first action.
SERVICENOW_PREFLIGHT_FAILURES = _keeper("ServiceNowPreflightFailures")

# The tampering inspector: every KMS CloudTrail event it looked at (a burst is counted,
# never dropped unseen), and those that touched a keyset key from a foreign principal.
KMS_EVENTS_INSPECTED = _inspector("KmsEventsInspected")
FOREIGN_KEY_ACTIVITY = _inspector("ForeignKeyActivity")

AUTHORIZER_ACCEPTED = _authorizer("TokensAccepted")
# Like sign refusals: once on the base dimensions (the refusal-rate alarm), once by reason.
AUTHORIZER_REFUSED = _authorizer("TokensRefused")
AUTHORIZER_REFUSED_BY_REASON = _authorizer("TokensRefused", extra=("reason",))
AUTHORIZER_JWKS_REFETCHES = _authorizer("JwksRefetches")
AUTHORIZER_JWKS_FAILURES = _authorizer("JwksFetchFailures")

ALL_METRICS: tuple[MetricSpec, ...] = (
    TOKENS_ISSUED,
    TOKENS_ISSUED_BY_KID,
    SIGN_REQUESTS_REJECTED,
    SIGN_REQUESTS_REJECTED_BY_REASON,
    SIGNING_FAILURES,
    KMS_THROTTLED,
    SIGN_LATENCY_MS,
    KEEPER_TICKS,
    KEYS_CREATED,
    KEYS_PROMOTED,
    KEYS_RETIRED,
    KEYS_REVOKED,
    ROTATION_FAILURES,
    CURRENT_KEY_AGE_SECONDS,
    NEXT_KEY_PUBLISHED_SECONDS,
    PUBLISHED_KEYS,
    JWKS_DRIFT,
    KMS_EVENTS_INSPECTED,
    FOREIGN_KEY_ACTIVITY,
    STATE_TAMPERING,
    SERVICENOW_SYNC_FAILURES,
    SERVICENOW_DRIFT,
    CANARY_EXCHANGE_FAILURES,
    SERVICENOW_RECORDS,
    CERTIFICATE_EXPIRES_IN_DAYS,
    SESSIONS_NOT_ENDED,
    UNCONFIRMED_PROMOTIONS,
    FOREIGN_TRUST_RECORDS,
    SERVICENOW_PREFLIGHT_FAILURES,
    AUTHORIZER_ACCEPTED,
    AUTHORIZER_REFUSED,
    AUTHORIZER_REFUSED_BY_REASON,
    AUTHORIZER_JWKS_REFETCHES,
    AUTHORIZER_JWKS_FAILURES,
)
