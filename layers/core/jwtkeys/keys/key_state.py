"""The states of a keyset's keys and what each one means for publication and signing."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class KeyState(Enum):
    NEXT = "next"
    CURRENT = "current"
    PREVIOUS = "previous"
    RETIRED = "retired"
    REVOKED = "revoked"

    @property
    def published(self) -> bool:
        """Whether keys in this state belong in the JWKS and in ServiceNow."""
        return self in (KeyState.NEXT, KeyState.CURRENT, KeyState.PREVIOUS)


@dataclass
class ManagedKey:
    """One KMS key of the keyset as the tags describe it (timestamps are Unix seconds)."""

    arn: str
    kid: str
    state: KeyState
    jwk: dict[str, str]
    nonce: str
    created_at: float
    published_at: float | None = None
    activated_at: float | None = None
    deactivated_at: float | None = None
    retired_at: float | None = None
    tags: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def key_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]
