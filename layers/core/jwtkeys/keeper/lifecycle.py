"""The key lifecycle: next -> current -> previous -> retired (and revoked from any state).

Every public action is a reconciliation under the lease: it reads the state and the
clock, does only what is due, and checks before each step, so a tick may die anywhere
and the next one converges (docs/design.md, "The lifecycle"). The alias says which key signs;
tags follow the alias.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jwtkeys import names
from jwtkeys.clock import Clock
from jwtkeys.errors import InvalidRequest, JwtKeysError, LeaseHeld, LifecycleError
from jwtkeys.keeper import schedule
from jwtkeys.keeper.jwks_publisher import JwksPublisher
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.state_store import Lease, Registry, RegistryEntry, RegistryStore
from jwtkeys.keys.jwk import render_jwks
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.keys.key_store import KeyStore
from jwtkeys.trust.target import TrustReport, TrustTarget

REVOCATION_WARNING = (
    "verifiers and the CDN may keep serving the revoked key from cache for up to "
    "2 x jwks_max_age ({seconds} s); ServiceNow stops trusting it now"
)


class TrustNotConfirmed(LifecycleError):
    """The verifier did not confirm it trusts a key (records not read back, canary refused)."""

    code = "TrustNotConfirmed"


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
    warnings: list[str] = field(default_factory=list)
    current_kid: str | None = None
    next_kid: str | None = None
    current_key_age: float | None = None
    next_key_published_for: float | None = None
    published_keys: int = 0

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
        return summary


@dataclass
class _Tick:
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


class KeyLifecycle:
    """Runs the lifecycle of one keyset."""

    def __init__(
        self,
        *,
        keyset: str,
        policy: RotationPolicy,
        key_store: KeyStore,
        registry_store: RegistryStore,
        lease: Lease,
        publisher: JwksPublisher,
        trust: TrustTarget,
        clock: Clock,
        logger: logging.Logger | Any | None = None,
        revoke_sessions: bool = True,
    ) -> None:
        self.keyset = keyset
        self.policy = policy
        self._keys = key_store
        self._registry = registry_store
        self._lease = lease
        self._publisher = publisher
        self._trust = trust
        self._clock = clock
        self._log = logger or logging.getLogger("jwtkeys.keeper.lifecycle")
        self._revoke_sessions = revoke_sessions

    # Public actions -----------------------------------------------------------------

    def tick(self) -> TickReport:
        """One scheduled reconciliation: create, publish, sync, promote and retire as due."""
        return self._under_lease("tick", lambda tick: self._reconcile(tick, promote="due"))

    def rotate(self, force: bool = False) -> TickReport:
        """Promote the standby key now (force: even before its prepublish window ends)."""
        return self._under_lease(
            "rotate", lambda tick: self._reconcile(tick, promote="force" if force else "now")
        )

    def revoke(self, kid: str) -> TickReport:
        """Emergency: remove a key from the JWKS and ServiceNow and disable it at once."""
        return self._under_lease("revoke", lambda tick: self._revoke(tick, kid))

    def decommission(self, confirm: str) -> TickReport:
        """Remove every trace of the keyset from verifiers and schedule its keys' deletion."""
        if confirm != self.keyset:
            raise InvalidRequest(
                "confirmation_mismatch",
                f"decommission needs the keyset's name as confirmation ({self.keyset!r})",
            )
        return self._under_lease("decommission", self._decommission)

    def trusted_kids(self) -> set[str] | None:
        """What the verifier (ServiceNow) trusts now, for `status`; None without one."""
        return self._trust.trusted_kids()

    def load_view(self) -> tuple[Registry, list[ManagedKey], str | None, bytes | None]:
        """Read-only view for `status`: registry, keys, alias target, published JWKS."""
        registry = self._registry.load()
        keys = self._load_keys(registry)
        return registry, keys, self._keys.alias_target(), self._publisher.read_origin()

    # The frame of every action ------------------------------------------------------

    def _under_lease(self, action: str, body: Callable[[_Tick], None]) -> TickReport:
        report = TickReport(action=action)
        try:
            self._lease.acquire()
        except LeaseHeld as held:
            if action != "tick":
                raise  # an operator asked for this: say it did not happen
            # Another tick is at work: give up quietly, it will do what is due.
            report.skipped = f"lease held: {held}"
            return report
        try:
            self._run(report, body)
        except BaseException:
            # The original error matters; the lease expires on its own if this fails too.
            with contextlib.suppress(Exception):
                self._lease.release()
            raise
        self._lease.release()
        return report

    def _run(self, report: TickReport, body: Callable[[_Tick], None]) -> None:
        registry = self._registry.load()
        if registry.decommissioned:
            report.skipped = "keyset decommissioned"
            return
        tick = _Tick(
            registry=registry,
            keys=self._load_keys(registry),
            alias_target=self._keys.alias_target(),
            origin=self._publisher.read_origin(),
            report=report,
        )
        body(tick)
        if not registry.decommissioned:
            self._audit(tick)

    def _load_keys(self, registry: Registry) -> list[ManagedKey]:
        keys = []
        for entry in list(registry.keys):
            key = self._keys.load(entry.arn, entry.jwk)
            if key is None:
                self._log.warning(
                    "registered key is gone or no longer ours", extra={"arn": entry.arn}
                )
                continue
            keys.append(key)
        return keys

    # The reconciliation (docs/design.md, tick steps 3-8) -------------------------------

    def _reconcile(self, tick: _Tick, promote: str) -> None:
        self._follow_alias(tick)
        self._resolve_duplicate_next(tick)
        self._ensure_next(tick)
        self._publish_and_sync(tick)
        if tick.alias_target is None:
            self._bootstrap(tick)
        elif promote != "due" or self._promotion_due(tick):
            self._promote(tick, force=promote == "force", requested=promote != "due")
        self._retire_due(tick)
        self._dispose_unpublished(tick)

    def _follow_alias(self, tick: _Tick) -> None:
        """Tags follow the alias: finish a promotion cut short between alias and tags."""
        if tick.alias_target is None:
            return
        target = next((key for key in tick.keys if key.arn == tick.alias_target), None)
        if target is None:
            raise LifecycleError(
                f"{self._keys.alias} names {tick.alias_target}, not a key of this keyset"
            )
        if target.state in (KeyState.RETIRED, KeyState.REVOKED):
            raise LifecycleError(
                f"{self._keys.alias} names {target.kid}, which is {target.state.value}:"
                " refusing to follow it"
            )
        if target.state is not KeyState.CURRENT:
            self._transition(target, KeyState.CURRENT, names.TAG_ACTIVATED_AT, "alias names it")
            tick.report.promoted.append(target.kid)
        for key in tick.in_state(KeyState.CURRENT):
            if key is not target:
                self._transition(key, KeyState.PREVIOUS, names.TAG_DEACTIVATED_AT, "alias moved on")

    def _resolve_duplicate_next(self, tick: _Tick) -> None:
        standby = sorted(tick.in_state(KeyState.NEXT), key=lambda key: key.created_at)
        for extra in standby[1:]:
            # I3: at most one standby key. Keep the oldest (published longest).
            self._transition(extra, KeyState.RETIRED, names.TAG_RETIRED_AT, "duplicate next key")
            tick.report.retired.append(extra.kid)

    def _ensure_next(self, tick: _Tick) -> None:
        if tick.one(KeyState.NEXT) is not None:
            return
        registry, now = tick.registry, self._clock.now()
        arn: str | None = None
        if registry.intent_nonce:
            # A CreateKey whose outcome we never learnt: adopt its key if it exists.
            arn = self._keys.find_by_nonce(registry.intent_nonce)
            nonce = registry.intent_nonce
        else:
            nonce = uuid.uuid4().hex
            registry.intent_nonce = nonce
            self._registry.save(registry)
        if arn is None:
            arn = self._keys.create_key(nonce, now)
        jwk = self._keys.public_jwk(arn)
        self._keys.set_tags(arn, {names.TAG_KID: jwk["kid"]})
        registry.keys.append(RegistryEntry(arn=arn, kid=jwk["kid"], jwk=jwk))
        registry.intent_nonce = None
        self._registry.save(registry)
        key = self._keys.load(arn, jwk)
        if key is None:
            raise LifecycleError(f"the key just created ({arn}) does not carry the keyset's tags")
        tick.keys.append(key)
        tick.report.created.append(key.kid)
        self._log.info(
            "key transition",
            extra={
                "kid": key.kid,
                "from": None,
                "to": KeyState.NEXT.value,
                "reason": "standby key created",
            },
        )

    def _publish_and_sync(self, tick: _Tick) -> None:
        published = tick.published
        written = self._publisher.publish([key.jwk for key in published], tick.origin)
        now = self._clock.now()
        if written is not None:
            tick.origin = written
            tick.report.published = True
            tick.registry.jwks_published_at = now
            self._registry.save(tick.registry)
        for key in published:
            if key.published_at is None:
                # Stamped only once the JWKS that holds it is written: never earlier.
                self._keys.stamp(key, names.TAG_PUBLISHED_AT, now)
        try:
            tick.report.trust = self._trust.reconcile(published, now)
        except JwtKeysError as error:
            tick.trust_ok = False
            tick.report.trust_error = str(error)
            self._log.error(
                "trust sync failed", extra={"target": self._trust.name, "error": str(error)}
            )

    def _confirmed(self, tick: _Tick, key: ManagedKey) -> bool:
        if not tick.trust_ok:
            return False
        try:
            self._trust.confirm(key, self._clock.now())
        except JwtKeysError as error:
            tick.report.canary_failed = True
            tick.report.warnings.append(f"{key.kid} not confirmed by {self._trust.name}: {error}")
            return False
        return True

    def _bootstrap(self, tick: _Tick) -> None:
        """No key signs yet: activate the (published, trusted) standby key at once."""
        standby = tick.one(KeyState.NEXT)
        if standby is None or standby.published_at is None or not self._confirmed(tick, standby):
            tick.report.warnings.append(
                "bootstrap waits: the first key is not yet published and trusted"
            )
            return
        self._keys.point_alias(standby.arn, exists=False)
        tick.alias_target = standby.arn
        self._transition(standby, KeyState.CURRENT, names.TAG_ACTIVATED_AT, "bootstrap")
        tick.report.promoted.append(standby.kid)
        self._ensure_next(tick)
        self._publish_and_sync(tick)

    def _promotion_due(self, tick: _Tick) -> bool:
        current = tick.one(KeyState.CURRENT)
        due_at = None if current is None else schedule.rotation_due_at(current, self.policy)
        return due_at is not None and self._clock.now() >= due_at

    def _promote(self, tick: _Tick, *, force: bool, requested: bool) -> None:
        standby, current = tick.one(KeyState.NEXT), tick.one(KeyState.CURRENT)
        ready_at = None if standby is None else schedule.ready_at(standby, self.policy)
        if standby is None or ready_at is None:
            tick.report.warnings.append("no published standby key to promote yet")
            return
        if self._clock.now() < ready_at:
            if not force:
                if requested:
                    tick.report.warnings.append(
                        f"standby key {standby.kid} is published for less than the prepublish"
                        f" window; it can be promoted at {int(ready_at)} (or use force)"
                    )
                return
            tick.report.warnings.append(
                f"forced promotion of {standby.kid} before its prepublish window ended: verifiers"
                " with a stale JWKS cache will refetch on the unknown kid"
            )
        if not self._confirmed(tick, standby):
            return
        self._keys.point_alias(standby.arn, exists=True)
        tick.alias_target = standby.arn
        self._transition(standby, KeyState.CURRENT, names.TAG_ACTIVATED_AT, "rotation")
        tick.report.promoted.append(standby.kid)
        if current is not None:
            self._transition(current, KeyState.PREVIOUS, names.TAG_DEACTIVATED_AT, "rotation")
        self._ensure_next(tick)
        self._publish_and_sync(tick)

    def _retire_due(self, tick: _Tick) -> None:
        now = self._clock.now()
        for key in tick.in_state(KeyState.PREVIOUS):
            retire_at = schedule.retirement_at(key, self.policy)
            if retire_at is not None and now >= retire_at:
                # The state changes first, so the audit of this same tick sees no drift.
                self._transition(key, KeyState.RETIRED, names.TAG_RETIRED_AT, "grace over")
                tick.report.retired.append(key.kid)

    def _dispose_unpublished(self, tick: _Tick) -> None:
        """Retired and revoked keys: unpublish and untrust first, then disable and delete."""
        leaving = [key for key in tick.keys if not key.state.published]
        if not leaving:
            return
        self._publish_and_sync(tick)
        if not tick.trust_ok:
            # Keep the key until the verifier has let it go: the next tick retries.
            return
        for key in leaving:
            self._keys.dispose(key.arn, self.policy.deletion_window_days)
            tick.keys.remove(key)
            tick.registry.keys = [entry for entry in tick.registry.keys if entry.arn != key.arn]
            tick.registry.disposed.append(
                {"arn": key.arn, "kid": key.kid, "state": key.state.value, "at": self._clock.now()}
            )
            tick.report.disposed.append(key.kid)
        self._registry.save(tick.registry)

    # Emergency and end of life ---------------------------------------------------------

    def _revoke(self, tick: _Tick, kid: str) -> None:
        self._follow_alias(tick)
        key = next((key for key in tick.keys if key.kid == kid), None)
        if key is None:
            raise InvalidRequest(
                "unknown_kid", f"no active key of keyset {self.keyset} has kid {kid!r}"
            )
        if key.state is KeyState.CURRENT:
            standby = tick.one(KeyState.NEXT)
            if standby is None:
                self._ensure_next(tick)
                self._publish_and_sync(tick)
                standby = tick.one(KeyState.NEXT)
            assert standby is not None
            # Move the alias first so signers switch before the key is disabled.
            self._keys.point_alias(standby.arn, exists=True)
            tick.alias_target = standby.arn
            self._transition(
                standby, KeyState.CURRENT, names.TAG_ACTIVATED_AT, "revocation of current"
            )
            tick.report.promoted.append(standby.kid)
        if key.state is not KeyState.REVOKED:
            self._transition(key, KeyState.REVOKED, names.TAG_RETIRED_AT, "revoked by operator")
        tick.report.revoked.append(kid)
        self._keys.disable(key.arn)
        self._publish_and_sync(tick)
        if self._revoke_sessions:
            ended = self._trust.end_sessions()
            tick.report.warnings.append(f"ended {ended} {self._trust.name} session(s)")
        tick.report.warnings.append(REVOCATION_WARNING.format(seconds=2 * self.policy.jwks_max_age))
        self._ensure_next(tick)
        self._publish_and_sync(tick)
        self._dispose_unpublished(tick)

    def _decommission(self, tick: _Tick) -> None:
        registry = tick.registry
        if registry.intent_nonce:
            arn = self._keys.find_by_nonce(registry.intent_nonce)
            if arn is not None:
                jwk = self._keys.public_jwk(arn)
                registry.keys.append(RegistryEntry(arn=arn, kid=jwk["kid"], jwk=jwk))
                adopted = self._keys.load(arn, jwk)
                if adopted is not None:
                    tick.keys.append(adopted)
            registry.intent_nonce = None
        self._keys.delete_alias()
        tick.alias_target = None
        for key in tick.keys:
            if key.state.published:
                self._transition(key, KeyState.RETIRED, names.TAG_RETIRED_AT, "decommission")
                tick.report.retired.append(key.kid)
        self._dispose_unpublished(tick)
        if not tick.trust_ok:
            raise LifecycleError(f"decommission incomplete: {tick.report.trust_error}")
        registry.decommissioned = True
        self._registry.save(registry)

    # Audit (step 8) ----------------------------------------------------------------------

    def _audit(self, tick: _Tick) -> None:
        report, now = tick.report, self._clock.now()
        expected = render_jwks(key.jwk for key in tick.published)
        drift = tick.origin != expected
        served = self._publisher.read_served()
        settled = (
            (tick.registry.jwks_published_at or 0)
            + 2 * self.policy.jwks_max_age
            + self.policy.tick_interval
        )
        if served is not None and served != expected and now >= settled:
            # Inside the window, CDN and caches may lawfully still serve the previous copy.
            drift = True
        report.jwks_drift = drift
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
        if len(tick.in_state(KeyState.CURRENT)) > 1 or len(tick.in_state(KeyState.NEXT)) > 1:
            report.warnings.append("more than one current or next key: I3 does not hold")

    def _transition(
        self, key: ManagedKey, state: KeyState, at_tag: str | None, reason: str
    ) -> None:
        before = key.state
        self._keys.transition(key, state, at_tag, self._clock.now())
        # The audit trail: every transition with kid, from, to and why.
        self._log.info(
            "key transition",
            extra={"kid": key.kid, "from": before.value, "to": state.value, "reason": reason},
        )
