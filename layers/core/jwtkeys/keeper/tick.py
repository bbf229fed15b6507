"""What one keeper action works on (its state, loaded once) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jwtkeys.keeper.state_store import Registry
from jwtkeys.keeper.trust_anchor import Tampering
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.trust.target import TrustReport


@dataclass
class TickReport:
    """What one keeper action did: the JSON summary the keeper returns."""

    action: str
    skipped: str | None = None
    created: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    disposed: list[str] = field(default_factory=list)
    published: bool = False
    jwks_drift: bool = False
    trust: TrustReport | None = None
    trust_error: str | None = None
    canary_failed: bool = False
    # Revocation could not end the verifier's sessions (why), or None.
    sessions_not_ended: str | None = None
    # A revocation promoted the standby without the verifier's confirmation: its kid,
    # the verifier, the records that may refuse its tokens and the error; or None.
    unconfirmed_promotion: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    current_kid: str | None = None
    next_kid: str | None = None
    current_key_age: float | None = None
    next_key_published_for: float | None = None
    published_keys: int = 0
    # Keeper state that is not what the keeper wrote (registry, JWKS, lease, flags).
    tampering: list[Tampering] = field(default_factory=list)

    def to_summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "action": self.action,
            "created": self.created,
            "promoted": self.promoted,
            "retired": self.retired,
            "revoked": self.revoked,
            "disposed": self.disposed,
            "published": self.published,
            "drift": {
                "jwks": self.jwks_drift,
                "servicenow": self.trust.drift if self.trust else 0,
            },
            "current_kid": self.current_kid,
            "next_kid": self.next_kid,
            "published_keys": self.published_keys,
            "warnings": self.warnings,
        }
        if self.skipped:
            summary["skipped"] = self.skipped
        if self.trust_error:
            summary["trust_error"] = self.trust_error
        if self.sessions_not_ended:
            summary["sessions_not_ended"] = self.sessions_not_ended
        if self.trust is not None and self.trust.foreign:
            summary["foreign_trust"] = self.trust.foreign
        if self.unconfirmed_promotion:
            summary["unconfirmed_promotion"] = self.unconfirmed_promotion
        if self.tampering:
            summary["tampering"] = [finding.to_summary() for finding in self.tampering]
        return summary


@dataclass
class TickState:
    """The state one action works on, loaded once and kept in step with each change."""

    registry: Registry
    keys: list[ManagedKey]
    alias_target: str | None
    origin: bytes | None
    report: TickReport
    trust_ok: bool = True

    def in_state(self, state: KeyState) -> list[ManagedKey]:
        return [key for key in self.keys if key.state is state]

    def one(self, state: KeyState) -> ManagedKey | None:
        keys = self.in_state(state)
        return keys[0] if keys else None

    @property
    def published(self) -> list[ManagedKey]:
        return [key for key in self.keys if key.state.published]
