"""KMS is the only root of trust: every registry entry is checked against the key it names.

The registry under `state/` is written by the keeper, but the bucket is not where trust
comes from. Before a key is published or sent to a verifier, its public JWK must be the
one KMS GetPublicKey gives for its ARN, and the key must be one the keeper could have
made: tagged into this keyset, a SIGN_VERIFY key whose material KMS generated, of one
of the pairs (algorithm, key spec) the keyset accepts (the configured one, and the one
`policy.rollover_from` names during a change), under the key policy the keeper builds for
that algorithm. An entry that fails is tampering. The key policy is also where a key's
algorithm is read from: it allows that one algorithm only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.errors import aws_error_code
from jwtkeys.keeper.state_store import RegistryEntry
from jwtkeys.keys.algorithms import ALGORITHMS, KeyPair, SigningAlgorithm
from jwtkeys.keys.key_state import ManagedKey
from jwtkeys.keys.key_store import KeyStore


@dataclass(frozen=True)
class Tampering:
    """One piece of keeper state that is not what the keeper wrote."""

    what: str  # registry_entry, served_jwks, lease, decommissioned, unregistered_key
    detail: str
    arn: str | None = None
    # True when the keeper put it right (KMS had the truth), False when it left it out.
    repaired: bool = False

    def to_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "what": self.what,
            "detail": self.detail,
            "repaired": self.repaired,
        }
        if self.arn is not None:
            summary["arn"] = self.arn
        return summary


class TrustAnchor:
    """Checks registry entries against KMS; a key's public half and shape are cached."""

    def __init__(self, key_store: KeyStore, pairs: tuple[KeyPair, ...]) -> None:
        self._keys = key_store
        # The pairs a key of the keyset may have, the configured one first.
        self._pairs = pairs
        # Keys the keeper made under another configuration (a pair it no longer accepts),
        # as last checked: such a key is tampering for the anchor, and a reason for the
        # lifecycle to refuse to change anything (policy.rollover_from is missing).
        self.other_pairs: dict[str, KeyPair] = {}
        # A key's public half and its spec, usage and origin never change: one call per
        # key for the function's life. Its policy changes only through PutKeyPolicy,
        # which the key-tampering rule reports whoever calls it; this check is for keys
        # that never had the keeper's policy, so a key found sound is not read again.
        self._public: dict[str, dict[str, str]] = {}
        # Keys found sound, with their pair (the algorithm their policy allows, their spec).
        self._sound: dict[str, KeyPair] = {}

    def check(self, entry: RegistryEntry, key: ManagedKey) -> Tampering | None:
        """None when `key` (loaded for `entry`) can be trusted. A registered JWK that is
        not the key's own is replaced by KMS's in both, and reported."""
        finding = self.check_key(key.arn)
        if finding is not None or not key.state.published:
            # A retired or revoked key is never published again (and KMS refuses
            # GetPublicKey once it is disabled): only its shape and policy matter.
            return finding
        actual = self._public_jwk(key.arn, self.algorithm_of(key.arn))
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
        """None when the key is one the keeper could have made (spec, usage, origin, policy)
        for a pair the keyset accepts; `algorithm_of` then gives the key's algorithm."""
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
        spec, usage, origin = shape
        if (usage, origin) != ("SIGN_VERIFY", "AWS_KMS") or spec not in {
            pair.key_spec for pair in self._pairs
        }:
            expected = "|".join(dict.fromkeys(pair.key_spec for pair in self._pairs))
            finding = self._untrusted(
                arn,
                f"KMS says spec/usage/origin {'/'.join(shape)}, the keyset's keys are"
                f" {expected}/SIGN_VERIFY/AWS_KMS",
            )
        else:
            finding = self._untrusted(arn, "its key policy is not the one the keeper sets")
        pair = self._keeper_pair(spec, usage, origin, policy)
        if pair is None:
            return finding
        if pair not in self._pairs:
            self.other_pairs[arn] = pair
            accepted = " or ".join(str(accepted) for accepted in self._pairs)
            return self._untrusted(
                arn,
                f"a key of {pair}, but the keyset accepts {accepted} (policy.rollover_from"
                " names the pair of the keys made before a change)",
            )
        self.other_pairs.pop(arn, None)
        self._sound[arn] = pair
        return None

    def pair_of(self, arn: str) -> KeyPair:
        """The pair of a key found sound by `check_key` (its policy's algorithm, its spec)."""
        return self._sound[arn]

    def algorithm_of(self, arn: str) -> SigningAlgorithm:
        """The algorithm a key found sound by `check_key` signs with."""
        return self._sound[arn].signing_algorithm

    def _keeper_pair(
        self, spec: str, usage: str, origin: str, policy: dict[str, Any]
    ) -> KeyPair | None:
        """The pair the keeper would have made this key with, under any configuration;
        None when no configuration of the keeper makes such a key."""
        if (usage, origin) != ("SIGN_VERIFY", "AWS_KMS"):
            return None
        # The configured pairs first: RS256 and PS256 keys share a spec, and only the
        # policy tells them apart.
        candidates = [pair.signing_algorithm for pair in self._pairs if pair.key_spec == spec]
        candidates += [
            algorithm
            for algorithm in ALGORITHMS.values()
            if spec in algorithm.key_specs and algorithm not in candidates
        ]
        for algorithm in candidates:
            if policy in self._keys.accepted_policies(algorithm):
                return KeyPair(algorithm.jws_name, spec)
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

    def _public_jwk(self, arn: str, algorithm: SigningAlgorithm) -> dict[str, str]:
        if arn not in self._public:
            self._public[arn] = self._keys.public_jwk(arn, algorithm)
        return self._public[arn]
