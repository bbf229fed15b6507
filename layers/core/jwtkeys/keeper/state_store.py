"""The keeper's own state under the bucket's `state/` prefix (never served).

- the lease: one small object written with S3 conditional writes, so two ticks that
  meet cannot both mutate;
- the registry: the keyset's key ARNs with their public JWKs, so a tick never scans
  the account's keys, and the intent nonce recorded before each CreateKey.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jwtkeys.clock import Clock
from jwtkeys.errors import LeaseHeld, LifecycleError, aws_error_code
from jwtkeys.names import STATE_PREFIX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LEASE_KEY = f"{STATE_PREFIX}lease.json"
REGISTRY_KEY = f"{STATE_PREFIX}registry.json"
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class Lease:
    """A lease with an expiry on the keeper's clock; held for one tick at a time."""

    def __init__(self, s3: S3Client, bucket: str, clock: Clock, duration: float) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._clock = clock
        self._duration = duration
        self.holder = uuid.uuid4().hex
        # When the lease this keeper takes (or last tried to take) expires.
        self.expires_at = 0.0

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld when another live tick holds it."""
        self.expires_at = self._clock.now() + self._duration
        self.forged: str | None = None
        body = json.dumps({"holder": self.holder, "expires_at": self.expires_at}).encode()
        try:
            self._s3.put_object(Bucket=self._bucket, Key=LEASE_KEY, Body=body, IfNoneMatch="*")
            return
        except ClientError as error:
            if aws_error_code(error) not in _CONFLICT_CODES:
                raise
        try:
            current = self._s3.get_object(Bucket=self._bucket, Key=LEASE_KEY)
        except ClientError as error:
            if aws_error_code(error) == "NoSuchKey":
                raise LeaseHeld("the lease changed hands while it was read") from error
            raise
        self.forged = None
        expires_at = _lease_expiry(current["Body"].read())
        if expires_at is None or expires_at > self.expires_at:
            # No keeper writes an expiry beyond now + its duration (nor an unreadable
            # lease): someone else did, to stall every tick. Taken over and reported.
            self.forged = (
                f"a lease expiring at {expires_at} (the longest hold ends by {self.expires_at})"
            )
        elif expires_at > self._clock.now():
            raise LeaseHeld(f"another tick holds the lease until {expires_at}")
        try:
            # Steal an expired lease, but only the exact version we judged expired.
            self._s3.put_object(
                Bucket=self._bucket, Key=LEASE_KEY, Body=body, IfMatch=current["ETag"]
            )
        except ClientError as error:
            if aws_error_code(error) in _CONFLICT_CODES:
                raise LeaseHeld("another tick took the expired lease first") from error
            raise

    def release(self) -> None:
        # Unconditional: the lease outlives the keeper's timeout, so it is still ours.
        self._s3.delete_object(Bucket=self._bucket, Key=LEASE_KEY)


def _lease_expiry(body: bytes) -> float | None:
    """The expiry a lease object names, or None when it names none a keeper would write."""
    try:
        value = json.loads(body).get("expires_at")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class RegistryEntry:
    """A key of the keyset: its ARN and public JWK (a public key never changes)."""

    arn: str
    kid: str
    jwk: dict[str, str]


@dataclass
class Registry:
    """What the keeper knows without asking KMS; KMS tags stay the truth about states."""

    keys: list[RegistryEntry] = field(default_factory=list)
    # A CreateKey in flight: the nonce is recorded before the call, so a lost response
    # is found by its tag instead of creating a second key.
    intent_nonce: str | None = None
    jwks_published_at: float | None = None
    # SHA-256 of the JWKS bytes the keeper last put: any other object there was not its.
    jwks_sha256: str | None = None
    decommissioned: bool = False
    # When the keeper decommissioned the keyset: a flag without it is not the keeper's.
    decommissioned_at: float | None = None
    # Keys whose deletion is scheduled: kept for `status`, never queried by a tick.
    disposed: list[dict[str, Any]] = field(default_factory=list)
    # When the last key census ran (keeper/census.py): at most one per census_interval.
    census_at: float | None = None

    def entry(self, arn: str) -> RegistryEntry | None:
        return next((entry for entry in self.keys if entry.arn == arn), None)


class RegistryStore:
    """Reads and writes the registry with optimistic concurrency (ETag conditions)."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._etag: str | None = None

    def load(self) -> Registry:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=REGISTRY_KEY)
        except ClientError as error:
            if aws_error_code(error) == "NoSuchKey":
                self._etag = None
                return Registry()
            raise
        self._etag = response["ETag"]
        raw = json.loads(response["Body"].read())
        return Registry(
            keys=[RegistryEntry(**entry) for entry in raw.get("keys", [])],
            intent_nonce=raw.get("intent_nonce"),
            jwks_published_at=raw.get("jwks_published_at"),
            jwks_sha256=raw.get("jwks_sha256"),
            decommissioned=bool(raw.get("decommissioned", False)),
            decommissioned_at=raw.get("decommissioned_at"),
            disposed=list(raw.get("disposed", [])),
            census_at=raw.get("census_at"),
        )

    def save(self, registry: Registry) -> None:
        body = json.dumps(asdict(registry), sort_keys=True, indent=1).encode()
        try:
            if self._etag is None:
                response = self._s3.put_object(
                    Bucket=self._bucket, Key=REGISTRY_KEY, Body=body, IfNoneMatch="*"
                )
            else:
                response = self._s3.put_object(
                    Bucket=self._bucket, Key=REGISTRY_KEY, Body=body, IfMatch=self._etag
                )
        except ClientError as error:
            if aws_error_code(error) in _CONFLICT_CODES:
                raise LifecycleError(
                    "the registry changed under this tick; retrying next tick"
                ) from error
            raise
        self._etag = response["ETag"]
