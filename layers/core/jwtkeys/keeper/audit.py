"""The audit closing every keeper action (tick step 8): drift, served tampering, ages, I3.

It only reads: what it finds goes into the action's report (and from there into the
keeper's metrics and alarms), never into a change.
"""

from __future__ import annotations

from jwtkeys.clock import Clock
from jwtkeys.errors import JwksUnavailable
from jwtkeys.keeper.jwks_publisher import JwksPublisher
from jwtkeys.keeper.keeper_record import served_tampering
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.tick import TickState
from jwtkeys.keys.jwk import render_jwks
from jwtkeys.keys.key_state import KeyState


class Audit:
    """Compares what should be served and trusted with what is, and reports the keys' ages."""

    def __init__(self, publisher: JwksPublisher, policy: RotationPolicy, clock: Clock) -> None:
        self._publisher = publisher
        self._policy = policy
        self._clock = clock

    def run(self, tick: TickState) -> None:
        """Fill the report of `tick` with what the audit finds."""
        report, now = tick.report, self._clock.now()
        report.jwks_drift = self._jwks_drift(tick, now)
        current, standby = tick.one(KeyState.CURRENT), tick.one(KeyState.NEXT)
        report.published_keys = len(tick.published)
        if current is not None:
            report.current_kid = current.kid
            if current.activated_at is not None:
                report.current_key_age = now - current.activated_at
        if standby is not None:
            report.next_kid = standby.kid
            if standby.published_at is not None:
                report.next_key_published_for = now - standby.published_at
        for record in report.trust.foreign if report.trust is not None else []:
            report.warnings.append(
                f"{record['table']} {record['name']!r} (sys_id {record['sys_id']}, kid"
                f" {record['kid']!r}) trusts keys for jwtkeys' application but is not"
                " jwtkeys': left as it is, an operator decides"
            )
        if len(tick.in_state(KeyState.CURRENT)) > 1 or len(tick.in_state(KeyState.NEXT)) > 1:
            report.warnings.append("more than one current or next key: I3 does not hold")

    def _jwks_drift(self, tick: TickState, now: float) -> bool:
        expected = render_jwks(key.jwk for key in tick.published)
        drift = tick.origin != expected
        try:
            served = self._publisher.read_served()
        except JwksUnavailable as error:
            # What verifiers cannot fetch is not what they should see: drift, not a crash.
            tick.report.warnings.append(str(error))
            return True
        settled = (
            (tick.registry.jwks_published_at or 0)
            + 2 * self._policy.jwks_max_age
            + self._policy.tick_interval
        )
        # Inside the window, CDN and caches may lawfully still serve the previous copy.
        if served is None or served == expected or now < settled:
            return drift
        # Past it, a copy the keeper never wrote is tampering, not only drift.
        finding = served_tampering(served, tick.registry, expected, self._publisher.jwks_url)
        if finding is not None:
            tick.report.tampering.append(finding)
        return True
