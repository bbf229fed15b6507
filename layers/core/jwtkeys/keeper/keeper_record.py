"""What the keeper last wrote, against what the bucket, the CDN and KMS hold now.

The JWKS object and the registry's `decommissioned` flag are in a bucket anyone with S3
write access could change. The keeper keeps its own record of them (the SHA-256 of the
JWKS bytes it last put; when it decommissioned the keyset) and KMS's evidence (the
signing alias), so a change made behind its back is reported as tampering instead of
being repaired or obeyed silently.
"""

from __future__ import annotations

import hashlib

from jwtkeys.keeper.state_store import Registry
from jwtkeys.keeper.trust_anchor import Tampering


def digest(document: bytes) -> str:
    """The SHA-256 (hex) the registry records for a JWKS document the keeper wrote."""
    return hashlib.sha256(document).hexdigest()


def origin_tampering(origin: bytes | None, registry: Registry, expected: bytes) -> Tampering | None:
    """The JWKS object at the origin, judged before this action writes anything.

    Not tampering: no record yet (first publish, or a registry from before the keeper
    kept one), the bytes the keeper last wrote, or exactly what the keeper's own keys
    render to now (a publish whose registry save was lost wrote just that).
    """
    written = registry.jwks_sha256
    if written is None:
        return None
    if origin is None:
        return Tampering("served_jwks", "the JWKS object the keeper wrote is gone from the bucket")
    if origin == expected or digest(origin) == written:
        return None
    return Tampering(
        "served_jwks",
        f"the JWKS object in the bucket (sha256 {digest(origin)}) is not the one the keeper"
        f" last wrote (sha256 {written})",
    )


def served_tampering(
    served: bytes, registry: Registry, expected: bytes, url: str | None
) -> Tampering | None:
    """The JWKS verifiers fetch, once the CDN and caches have had time to settle.

    A copy that is neither the one the keeper last wrote nor the expected one was put
    there behind the keeper's back (at the origin or the CDN). Without a record the
    keeper cannot tell, and the audit reports drift only.
    """
    written = registry.jwks_sha256
    if written is None or served == expected or digest(served) == written:
        return None
    return Tampering(
        "served_jwks",
        f"{url} serves a JWKS (sha256 {digest(served)}) that is neither the one the keeper"
        f" last wrote (sha256 {written}) nor the one its keys render to",
    )


def decommission_tampering(registry: Registry, alias_target: str | None) -> Tampering | None:
    """A registry flagged decommissioned, judged against the keeper's record and KMS.

    A decommission deletes the signing alias and disposes of every registered key
    before it records `decommissioned_at`; a flag without all of that was not set by
    the keeper (and would idle every tick with every alarm quiet).
    """
    missing = []
    if registry.decommissioned_at is None:
        missing.append("the keeper's decommission record is missing")
    if alias_target is not None:
        missing.append(f"the signing alias still names {alias_target}")
    if registry.keys:
        missing.append(f"the registry still lists {len(registry.keys)} key(s)")
    if not missing:
        return None
    return Tampering(
        "decommissioned",
        "the registry says decommissioned, but " + "; ".join(missing) + ": the flag is cleared",
        repaired=True,
    )
