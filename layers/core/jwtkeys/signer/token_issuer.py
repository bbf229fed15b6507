"""Issuing tokens: resolve the signing key once per cache period, then one KMS call each."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.clock import Clock
from jwtkeys.errors import SigningUnavailable, aws_error_code
from jwtkeys.keys.algorithms import ALGORITHMS, KeyPair, SigningAlgorithm
from jwtkeys.keys.kms_signer import KeyUnusable, KmsJwsSigner, KmsKeyRef
from jwtkeys.names import TAG_ALG, TAG_KEYSET, TAG_KID, TAG_STATE, current_alias
from jwtkeys.signer.policy import (
    SigningPolicy,
    SignRequest,
    build_claims,
    claims_payload,
    judge,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

# A promotion cut short leaves the alias on a key still tagged `next`; that key is
# already published and trusted, so it may sign. Any other state means the alias is wrong.
SIGNABLE_STATES = frozenset({"current", "next"})


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and what a caller needs to know about it."""

    token: str
    kid: str
    alg: str
    jti: str
    expires_at: int

    def to_response(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "kid": self.kid,
            "alg": self.alg,
            "jti": self.jti,
            "expires_at": self.expires_at,
        }


class SigningKeyResolver:
    """Resolves the keyset's alias to key ARN and kid, cached for `cache_ttl` seconds."""

    def __init__(
        self,
        kms: KMSClient,
        keyset: str,
        pairs: tuple[KeyPair, ...],
        clock: Clock,
        cache_ttl: float,
    ) -> None:
        self._kms = kms
        self._keyset = keyset
        # The pairs a key may sign with: the configured one first, then the one
        # policy.rollover_from names while a change of algorithm rolls over.
        self._pairs = pairs
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._cached: tuple[KmsKeyRef, float] | None = None
        self._lock = threading.Lock()

    def resolve(self) -> KmsKeyRef:
        """The key to sign with now (two KMS reads when the cache is cold, none otherwise)."""
        cached = self._cached
        if cached is not None and self._clock.now() < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock.now() < cached[1]:
                return cached[0]
            key = self._lookup()
            self._cached = (key, self._clock.now() + self._cache_ttl)
            return key

    def invalidate(self) -> None:
        """Forget the cached key (it was disabled, deleted or the alias moved)."""
        self._cached = None

    def _lookup(self) -> KmsKeyRef:
        alias = current_alias(self._keyset)
        try:
            metadata = self._kms.describe_key(KeyId=alias)["KeyMetadata"]
            tags = {
                tag["TagKey"]: tag["TagValue"]
                for tag in self._kms.list_resource_tags(KeyId=metadata["Arn"]).get("Tags", [])
            }
        except ClientError as error:
            code = aws_error_code(error)
            raise SigningUnavailable(f"cannot resolve {alias} ({code})") from error
        except BotoCoreError as error:
            raise SigningUnavailable(f"KMS unreachable while resolving {alias}: {error}") from error
        arn = metadata["Arn"]
        if tags.get(TAG_KEYSET) != self._keyset:
            raise SigningUnavailable(f"{alias} names {arn}, which is not a key of this keyset")
        if tags.get(TAG_STATE) not in SIGNABLE_STATES:
            raise SigningUnavailable(f"{alias} names {arn} in state {tags.get(TAG_STATE)!r}")
        if metadata.get("KeyState") != "Enabled":
            raise KeyUnusable(f"{alias} names {arn}, which is {metadata.get('KeyState')}")
        algorithm = self._algorithm_of(arn, tags, metadata)
        kid = tags.get(TAG_KID)
        if not kid:
            # Never sign a token whose kid no verifier could look up.
            raise SigningUnavailable(f"{arn} has no kid tag yet")
        return KmsKeyRef(key_arn=arn, kid=kid, algorithm=algorithm)

    def _algorithm_of(
        self, arn: str, tags: dict[str, str], metadata: Mapping[str, Any]
    ) -> SigningAlgorithm:
        """The key's own algorithm: its tag (its key policy allows that one only), or for a
        key made before the tag, the accepted pair of its spec (else the configured one).
        It must be an accepted one: after a change of algorithm without
        policy.rollover_from, the key that signs would be refused by its own policy."""
        configured = self._pairs[0]
        spec = str(metadata.get("KeySpec", ""))
        name = tags.get(TAG_ALG) or next(
            (pair.algorithm for pair in self._pairs if pair.key_spec == spec),
            configured.algorithm,
        )
        algorithm = ALGORITHMS.get(name)
        if algorithm is None or algorithm.kms_algorithm not in metadata.get(
            "SigningAlgorithms", []
        ):
            signs = f"is a {spec} key that cannot sign {name}"
            former = {"algorithm": "<the former algorithm>", "key_spec": spec}
        elif all(pair.algorithm != name for pair in self._pairs):
            signs = f"signs {name}"
            former = {"algorithm": name, "key_spec": spec}
        else:
            return algorithm
        accepted = configured.algorithm
        if len(self._pairs) > 1:
            accepted += f" (or {self._pairs[1].algorithm}, policy.rollover_from)"
        raise SigningUnavailable(
            f"the current key {arn} {signs}, but the keyset signs {accepted}: set"
            f" policy.rollover_from to {json.dumps(former)} and deploy, so it signs until"
            " a normal rotation replaces it"
        )


def new_jti() -> str:
    """128 bits of randomness, URL-safe: ServiceNow refuses a replayed jti."""
    return secrets.token_urlsafe(16)


class TokenIssuer:
    """Judges a request against the policy, then signs it with the current key."""

    def __init__(
        self,
        policy: SigningPolicy,
        resolver: SigningKeyResolver,
        signer: KmsJwsSigner,
        clock: Clock,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._signer = signer
        self._clock = clock

    def issue(self, request: SignRequest, caller: str | None = None) -> IssuedToken:
        """Sign a token for `request`; `caller` is the Function URL principal, if any."""
        ttl = judge(self._policy, request, caller)
        key = self._resolver.resolve()
        claims = build_claims(self._policy, request, now=self._clock.now(), ttl=ttl, jti=new_jti())
        payload = claims_payload(claims)
        try:
            token = self._signer.sign(payload, key)
        except KeyUnusable:
            # The alias moved and the old key was disabled under our cache: re-resolve once.
            self._resolver.invalidate()
            key = self._resolver.resolve()
            token = self._signer.sign(payload, key)
        return IssuedToken(
            token=token,
            kid=key.kid,
            alg=key.algorithm.jws_name,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
