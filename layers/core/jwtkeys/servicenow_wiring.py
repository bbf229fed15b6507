"""Chooses the keeper's trust target: ServiceNow when configured, otherwise none."""

from __future__ import annotations

from .clock import Clock
from .settings import KeeperSettings
from .trust import NoTrustTarget, TrustTarget


def servicenow_trust(settings: KeeperSettings, clock: Clock) -> TrustTarget:
    """The ServiceNow trust target of the keyset, or NoTrustTarget when none is set."""
    if settings.servicenow is None:
        return NoTrustTarget()
    # Imported here: keepers without ServiceNow never load its client.
    from .servicenow.trust import ServiceNowTrust

    return ServiceNowTrust.from_settings(settings, clock)
