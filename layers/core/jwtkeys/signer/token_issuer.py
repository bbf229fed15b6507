"""Issuing tokens: resolve the signing key once per cache period, then one KMS call each."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.clock import Clock
from jwtkeys.errors import SigningUnavailable, aws_error_code
from jwtkeys.keys.algorithms import SigningAlgorithm
from jwtkeys.keys.kms_signer import KeyUnusable, KmsJwsSigner, KmsKeyRef
from jwtkeys.names import TAG_KEYSET, TAG_KID, TAG_STATE, current_alias
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
        algorithm: SigningAlgorithm,
        clock: Clock,
        cache_ttl: float,
    ) -> None:
        self._kms = kms
        self._keyset = keyset
        self._algorithm = algorithm
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
        if self._algorithm.kms_algorithm not in metadata.get("SigningAlgorithms", []):
            raise SigningUnavailable(f"{arn} cannot sign {self._algorithm.jws_name}")
        kid = tags.get(TAG_KID)
        if not kid:
            # Never sign a token whose kid no verifier could look up.
            raise SigningUnavailable(f"{arn} has no kid tag yet")
        return KmsKeyRef(key_arn=arn, kid=kid, algorithm=self._algorithm)


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
