"""ServiceNow trust for a keyset: certificates and verifier maps kept in step with the JWKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jwtkeys.clock import Clock
    from jwtkeys.settings import KeeperSettings
    from jwtkeys.trust.target import TrustTarget


def trust_target(settings: KeeperSettings, clock: Clock) -> TrustTarget:
    """The keyset's trust target: ServiceNow when configured, otherwise NoTrustTarget."""
    # Imported here: keepers without ServiceNow never load its client.
    from jwtkeys.trust.target import NoTrustTarget

    if settings.servicenow is None:
        return NoTrustTarget()
    from jwtkeys.servicenow.target import ServiceNowTrustTarget

    return ServiceNowTrustTarget.from_settings(settings, clock)
