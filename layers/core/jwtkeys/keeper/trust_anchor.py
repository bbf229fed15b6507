"""KMS is the only root of trust: every registry entry is checked against the key it names.

The registry under `state/` is written by the keeper, but the bucket is not where trust
comes from. Before a key is published or sent to a verifier, its public JWK must be the
one KMS GetPublicKey gives for its ARN, and the key must be one the keeper could have
made: tagged into this keyset, a SIGN_VERIFY key of the keyset's spec whose material KMS
generated, under the keeper's key policy. An entry that fails is tampering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.errors import aws_error_code
from jwtkeys.keeper.state_store import RegistryEntry
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.keys.key_store import KeyStore


@dataclass(frozen=True)
class Tampering:
    """One piece of keeper state that is not what the keeper wrote."""

    what: str  # registry_entry, served_jwks, lease, decommissioned
    detail: str
    arn: str | None = None
    # True when the keeper put it right (KMS had the truth), False when it left it out.
    repaired: bool = False

    def to_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"what": self.what, "detail": self.detail}
        if self.arn is not None:
            summary["arn"] = self.arn
        return summary


class TrustAnchor:
    """Checks registry entries against KMS; a key's public half and shape are cached."""

    def __init__(self, key_store: KeyStore) -> None:
        self._keys = key_store
        # A key's public half and its spec, usage and origin never change: one call per
        # key for the function's life. Its policy changes only through PutKeyPolicy,
        # which the key-tampering rule reports whoever calls it; this check is for keys
        # that never had the keeper's policy, so a key found sound is not read again.
        self._public: dict[str, dict[str, str]] = {}
        self._sound: set[str] = set()

    def check(self, entry: RegistryEntry, key: ManagedKey) -> Tampering | None:
        """None when `key` (loaded for `entry`) can be trusted. A registered JWK that is
        not the key's own is replaced by KMS's in both, and reported."""
        finding = self.check_key(key.arn)
        if finding is not None or not key.state.published:
            # A retired or revoked key is never published again (and KMS refuses
            # GetPublicKey once it is disabled): only its shape and policy matter.
            return finding
        actual = self._public_jwk(key.arn)
        if key.jwk != actual or entry.jwk != actual:
            # The key is sound; only the registry lies about it. KMS's half is used.
            key.jwk, entry.jwk, entry.kid = actual, actual, actual["kid"]
            key.kid = key.tags.get(names.TAG_KID, actual["kid"])
            return Tampering(
                "registry_entry",
                "its registered public JWK is not the one KMS holds for the key; KMS's is used",
                key.arn,
                repaired=True,
            )
        return None

    def check_key(self, arn: str) -> Tampering | None:
        """None when the key is one the keeper could have made (spec, usage, origin, policy)."""
        if arn in self._sound:
            return None
        try:
            shape = self._keys.shape(arn)
            policy = self._keys.policy_of(arn)
        except ClientError as error:
            if aws_error_code(error) != "AccessDeniedException":
                raise
            # The keeper may read every key it made: one it may not read is someone else's.
            return self._untrusted(arn, "the keeper may not read the key")
        expected = (self._keys.key_spec, "SIGN_VERIFY", "AWS_KMS")
        if shape != expected:
            return self._untrusted(
                arn,
                f"KMS says spec/usage/origin {'/'.join(shape)}, the keyset's keys are"
                f" {'/'.join(expected)}",
            )
        if policy not in self._keys.accepted_policies():
            return self._untrusted(arn, "its key policy is not the one the keeper sets")
        self._sound.add(arn)
        return None

    def check_absent(self, entry: RegistryEntry) -> Tampering | None:
        """An entry whose key did not load: gone (None), or a key of someone else."""
        try:
            tags = self._keys.tags(entry.arn)
        except ClientError as error:
            if aws_error_code(error) == "NotFoundException":
                return None
            if aws_error_code(error) != "AccessDeniedException":
                raise
            return self._untrusted(entry.arn, "the keeper may not read the key's tags")
        return self._untrusted(
            entry.arn,
            f"the key is tagged for keyset {tags.get(names.TAG_KEYSET)!r},"
            f" not {self._keys.keyset!r}",
        )

    def _untrusted(self, arn: str, reason: str) -> Tampering:
        return Tampering("registry_entry", f"never published: {reason}", arn)

    def _public_jwk(self, arn: str) -> dict[str, str]:
        if arn not in self._public:
            self._public[arn] = self._keys.public_jwk(arn)
        return self._public[arn]
