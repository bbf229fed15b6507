"""The verifiers jwtkeys keeps in step with the JWKS (ServiceNow, or none)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from jwtkeys.keys.key_state import ManagedKey


@dataclass
class TrustReport:
    """What one reconciliation found and did."""

    created: int = 0
    removed: int = 0
    repaired: int = 0  # owned records edited or deleted by hand, put back
    records: int = 0
    certificate_expires_in_days: float | None = None
    notes: list[str] = field(default_factory=list)
    # Records that make the verifier trust keys for jwtkeys' application but that jwtkeys
    # does not own (an admin's stray trust): reported at each audit, never changed.
    foreign: list[dict[str, str]] = field(default_factory=list)

    @property
    def drift(self) -> int:
        return self.repaired


@runtime_checkable
class Preflight(Protocol):
    """A trust target that checks its verifier's set-up (`jwtkeys doctor`'s checks)."""

    def preflight(self, now: float) -> int:
        """Run the checks, log what is not right; returns how many failed."""
        ...


class TrustTarget(Protocol):
    """A verifier whose trust records must equal the published keys."""

    name: str

    def reconcile(self, keys: Sequence[ManagedKey], now: float) -> TrustReport:
        """Make the trusted set exactly `keys`; idempotent; raises on failure."""
        ...

    def confirm(self, key: ManagedKey, now: float) -> None:
        """Raise TrustNotConfirmed unless `key` is read back as trusted (and passes a canary)."""
        ...

    def end_sessions(self) -> int:
        """End sessions minted by the verifier (revocation); returns how many."""
        ...

    def trusted_kids(self) -> set[str] | None:
        """The kids the verifier trusts for this keyset now; None when there is no verifier."""
        ...

    def records_of(self, key: ManagedKey) -> list[str]:
        """The verifier's records that trust `key`, named for an operator (what may refuse
        its tokens when they are not as they should be)."""
        ...


class NoTrustTarget:
    """No external verifier configured: the JWKS is the whole of trust."""

    name = "none"

    def reconcile(self, keys: Sequence[ManagedKey], now: float) -> TrustReport:
        return TrustReport()

    def confirm(self, key: ManagedKey, now: float) -> None:
        return None

    def end_sessions(self) -> int:
        return 0

    def trusted_kids(self) -> set[str] | None:
        return None

    def records_of(self, key: ManagedKey) -> list[str]:
        return []
