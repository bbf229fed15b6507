"""The key lifecycle: next -> current -> previous -> retired (and revoked from any state).

Every public action is a reconciliation under the lease: it reads the state and the
clock, does only what is due, and checks before each step, so a tick may die anywhere
and the next one converges (docs/design.md, "The lifecycle"). The alias says which key signs;
tags follow the alias.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwtkeys import names
from jwtkeys.aws_failures import AWS_FAILURES, translate
from jwtkeys.clock import Clock
from jwtkeys.errors import (
    AwsCallFailed,
    InvalidRequest,
    JwtKeysError,
    KeyPairChanged,
    LeaseHeld,
    LifecycleError,
    SessionsNotEnded,
)
from jwtkeys.keeper import schedule
from jwtkeys.keeper.audit import Audit
from jwtkeys.keeper.census import KeyCensus
from jwtkeys.keeper.jwks_publisher import JwksPublisher
from jwtkeys.keeper.keeper_record import decommission_tampering, digest, origin_tampering
from jwtkeys.keeper.nonce_adoption import NonceAdoption
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.state_store import Lease, Registry, RegistryStore
from jwtkeys.keeper.tick import TickReport, TickState
from jwtkeys.keeper.trust_anchor import Tampering, TrustAnchor
from jwtkeys.keys.algorithms import KeyPair
from jwtkeys.keys.jwk import render_jwks
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.keys.key_store import KeyStore
from jwtkeys.timestamps import to_iso
from jwtkeys.trust.target import TrustTarget

REVOCATION_WARNING = (
    "verifiers and the CDN may keep serving the revoked key from cache for up to "
    "2 x jwks_max_age ({seconds} s); ServiceNow stops trusting it now"
)


class Promotion(enum.Enum):
    """When a reconciliation promotes the standby key."""

    DUE = "due"  # the scheduled tick: only once the current key's rotation period is over
    NOW = "now"  # an operator's rotate: now, if the prepublish window has ended
    FORCE = "force"  # an operator's rotate --force: now, even inside the prepublish window


@dataclass(frozen=True)
class KeysetView:
    """A read-only view of the keyset for `status` and `jwks`."""

    registry: Registry
    keys: list[ManagedKey]
    alias_target: str | None  # the ARN the signing alias names; None before bootstrap
    published_jwks: bytes | None  # the JWKS document at the origin; None before the first


def _what_changed(report: TickReport, failure: AwsCallFailed) -> str:
    """What an action that failed had done, for the operator's one line."""
    done = [
        f"{verb} {', '.join(kids)}"
        for verb, kids in (
            ("created", report.created),
            ("promoted", report.promoted),
            ("retired", report.retired),
            ("revoked", report.revoked),
            ("disposed of", report.disposed),
        )
        if kids
    ]
    if report.published:
        done.append("published the JWKS")
    changed = "done: " + "; ".join(done) if done else "no key changed state"
    if report.tampering:
        # Found before the failure: the alarm's words must not be lost with the report.
        found = sorted({finding.what for finding in report.tampering})
        changed += f"; found tampering: {', '.join(found)}"
    if failure.operation == "CreateKey":
        # Never retried blindly: the intent nonce finds the key if KMS made it.
        changed += " (a key may have been created: the next run adopts it by its nonce)"
    return changed


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
        census: KeyCensus,
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
        self._census = census
        self._clock = clock
        self._log = logger or logging.getLogger("jwtkeys.keeper.lifecycle")
        self._revoke_sessions = revoke_sessions
        self._adoption = NonceAdoption(key_store, registry_store, clock)
        self._audit = Audit(publisher, policy, clock)
        self._anchor = TrustAnchor(key_store, policy.accepted_pairs)
        # What the last action found, kept even when it failed after finding it: the
        # keeper service counts it for the alarm either way.
        self.tampering_found: list[Tampering] = []

    @property
    def trust(self) -> TrustTarget:
        """The verifier kept in step (the keeper service runs its preflight)."""
        return self._trust

    @property
    def clock(self) -> Clock:
        """The injected clock."""
        return self._clock

    # Public actions -----------------------------------------------------------------

    def tick(self) -> TickReport:
        """One scheduled reconciliation: create, publish, sync, promote and retire as due."""
        return self._under_lease("tick", lambda tick: self._reconcile(tick, Promotion.DUE))

    def rotate(self, force: bool = False) -> TickReport:
        """Promote the standby key now (force: even before its prepublish window ends)."""
        promotion = Promotion.FORCE if force else Promotion.NOW
        return self._under_lease("rotate", lambda tick: self._reconcile(tick, promotion))

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

    def load_view(self) -> KeysetView:
        """Read-only view for `status`: registry, keys, alias target, published JWKS."""
        registry = self._registry.load()
        keys = self._load_keys(registry, [])
        return KeysetView(
            registry=registry,
            keys=keys,
            alias_target=self._keys.alias_target(),
            published_jwks=self._publisher.read_origin(),
        )

    # The frame of every action ------------------------------------------------------

    def _under_lease(self, action: str, body: Callable[[TickState], None]) -> TickReport:
        report = TickReport(action=action)
        self.tampering_found = report.tampering
        try:
            self._lease.acquire()
        except LeaseHeld as held:
            if action != "tick":
                raise  # an operator asked for this: say it did not happen
            # Another tick is at work: give up quietly, it will do what is due.
            report.skipped = f"lease held: {held}"
            return report
        except AWS_FAILURES as error:
            failure = translate(error)
            assert failure is not None
            # The lease's write may have been applied with its answer lost.
            expires = to_iso(self._lease.expires_at)
            advice = f"retry (should the lease be taken: after {expires}, when the lease expires)"
            raise failure.with_context("no key was changed", advice) from error
        if self._lease.forged is not None:
            report.tampering.append(Tampering("lease", self._lease.forged))
        try:
            self._run(report, body)
        except BaseException as error:
            # The original error matters; the lease expires on its own if this fails too.
            released = False
            with contextlib.suppress(Exception):
                self._lease.release()
                released = True
            failure = translate(error)
            if failure is None:
                raise
            advice = (
                "retry now"
                if released
                else f"retry after {to_iso(self._lease.expires_at)}, when the lease expires"
            )
            raise failure.with_context(_what_changed(report, failure), advice) from error
        try:
            self._lease.release()
        except AWS_FAILURES as error:
            failure = translate(error)
            assert failure is not None
            raise failure.with_context(
                f"the {action} itself completed ({_what_changed(report, failure)})",
                f"the next run can start after {to_iso(self._lease.expires_at)},"
                " when the lease expires",
            ) from error
        return report

    def _run(self, report: TickReport, body: Callable[[TickState], None]) -> None:
        registry = self._registry.load()
        if registry.decommissioned:
            # Only a decommission KMS agrees with idles; a forged flag is reported and
            # cleared, and the action goes on as usual.
            forged = decommission_tampering(registry, self._keys.alias_target())
            if forged is None:
                report.skipped = "keyset decommissioned"
                return
            report.tampering.append(forged)
            registry.decommissioned = False
            registry.decommissioned_at = None
        other_pairs: list[tuple[ManagedKey, KeyPair]] = []
        keys = self._load_keys(registry, report.tampering, other_pairs)
        if other_pairs:
            self._refuse_other_pairs(other_pairs)
        for key in keys:
            self._tag_algorithm(key)
        tick = TickState(
            registry=registry,
            keys=keys,
            alias_target=self._keys.alias_target(),
            origin=self._publisher.read_origin(),
            report=report,
        )
        if any(finding.repaired for finding in report.tampering):
            self._registry.save(registry)  # KMS's public keys (or no forged flag) back
        self._take_census(registry, report)
        # Reported before the body rewrites it, so the finding stands even if that fails.
        expected = render_jwks(key.jwk for key in tick.published)
        overwritten = origin_tampering(tick.origin, registry, expected)
        if overwritten is not None:
            report.tampering.append(overwritten)
        elif registry.jwks_sha256 is None and tick.origin is not None and tick.origin == expected:
            # A registry from before the keeper kept its record (or whose first save was
            # lost): the object is what the keeper would write, so it becomes the record
            # now rather than at the next change, which may be a rotation period away.
            registry.jwks_sha256 = digest(tick.origin)
            self._registry.save(registry)
        body(tick)
        if overwritten is not None and report.published:
            index = report.tampering.index(overwritten)
            report.tampering[index] = dataclasses.replace(overwritten, repaired=True)
        if not registry.decommissioned:
            self._audit.run(tick)

    def _take_census(self, registry: Registry, report: TickReport) -> None:
        """Keys tagged with the keyset that the registry does not list, when a census is
        due: before the body, so the keys this action creates are not yet in question."""
        if not self._census.due(registry):
            return
        result = self._census.run(registry)
        report.tampering.extend(result.unregistered)
        if result.gave_up:
            report.warnings.append(result.gave_up)
        registry.census_at = self._clock.now()
        self._registry.save(registry)

    def _load_keys(
        self,
        registry: Registry,
        tampering: list[Tampering],
        other_pairs: list[tuple[ManagedKey, KeyPair]] | None = None,
    ) -> list[ManagedKey]:
        """The registered keys KMS vouches for (trust_anchor.py); the others are reported
        in `tampering` and left out, so they are never published nor trusted. Live keys
        the keeper made for a pair the keyset no longer accepts go to `other_pairs`."""
        keys = []
        for entry in list(registry.keys):
            key = self._keys.load(entry.arn, entry.jwk)
            finding = (
                self._anchor.check_absent(entry) if key is None else self._anchor.check(entry, key)
            )
            if finding is not None:
                tampering.append(finding)
                pair = self._anchor.other_pairs.get(entry.arn)
                if other_pairs is not None and pair is not None and key and key.state.published:
                    other_pairs.append((key, pair))
                if finding.repaired and key is not None:
                    keys.append(key)  # its forged JWK was replaced by KMS's: still ours
                continue
            if key is None:
                self._log.warning("registered key is gone", extra={"arn": entry.arn})
                continue
            keys.append(key)
        return keys

    def _tag_algorithm(self, key: ManagedKey) -> None:
        """Tag a live key with the algorithm its policy allows, when it is not yet (keys
        made before the tag existed) or the tag says otherwise: the signer reads it."""
        algorithm = self._anchor.algorithm_of(key.arn).jws_name
        if key.state.published and key.tags.get(names.TAG_ALG) != algorithm:
            self._keys.set_tags(key.arn, {names.TAG_ALG: algorithm})
            key.tags[names.TAG_ALG] = algorithm

    def _refuse_other_pairs(self, other_pairs: list[tuple[ManagedKey, KeyPair]]) -> None:
        """Nothing changes while live keys have a pair the keyset no longer accepts: a new
        standby, a promotion or a JWKS without them would strand the key that signs."""
        kids = ", ".join(f"{key.kid} ({key.state.value}, {pair})" for key, pair in other_pairs)
        accepted = " or ".join(str(pair) for pair in self.policy.accepted_pairs)
        # The pair to roll over from is the signing key's (else the first found).
        former = next(
            (pair for key, pair in other_pairs if key.state is KeyState.CURRENT),
            other_pairs[0][1],
        )
        advice = (
            f"Set policy.rollover_from to {json.dumps(former.to_mapping())} and deploy:"
            " those keys then keep signing until a normal rotation replaces them"
        )
        if len({pair for _, pair in other_pairs}) > 1:
            advice += (
                "; rollover_from names one former pair: keys of another must leave (deploy"
                " the configuration they were made under until they do) before this change"
            )
        raise KeyPairChanged(
            f"live keys {kids} were made for a pair the keyset does not accept ({accepted}):"
            f" nothing was changed. {advice}"
            ' (docs/deploy.md, "Changing the algorithm or key spec")'
        )

    # The reconciliation (docs/design.md, tick steps 3-8) -------------------------------

    def _reconcile(self, tick: TickState, promotion: Promotion) -> None:
        self._follow_alias(tick)
        self._resolve_duplicate_next(tick)
        self._replace_former_standby(tick)
        self._ensure_next(tick)
        self._publish_and_sync(tick)
        if tick.alias_target is None:
            self._bootstrap(tick)
        elif promotion is not Promotion.DUE or self._promotion_due(tick):
            self._promote(tick, promotion)
        self._retire_due(tick)
        self._dispose_unpublished(tick)
        self._report_rollover(tick)

    def _follow_alias(self, tick: TickState) -> None:
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

    def _resolve_duplicate_next(self, tick: TickState) -> None:
        standby = sorted(tick.in_state(KeyState.NEXT), key=lambda key: key.created_at)
        for extra in standby[1:]:
            # I3: at most one standby key. Keep the oldest (published longest).
            self._transition(extra, KeyState.RETIRED, names.TAG_RETIRED_AT, "duplicate next key")
            tick.report.retired.append(extra.kid)

    def _replace_former_standby(self, tick: TickState) -> None:
        """A standby of the pair before a change (policy.rollover_from) would bring the
        old algorithm back at the next rotation: it never signed, so it goes at once (like
        a duplicate next) and a standby of the configured pair takes its place."""
        for key in tick.in_state(KeyState.NEXT):
            if self._anchor.pair_of(key.arn) != self.policy.key_pair:
                self._transition(
                    key, KeyState.RETIRED, names.TAG_RETIRED_AT, "standby of the former pair"
                )
                tick.report.retired.append(key.kid)

    def _report_rollover(self, tick: TickState) -> None:
        former = self.policy.rollover_from
        if former is None:
            return
        if not any(self._anchor.pair_of(key.arn) == former for key in tick.keys):
            tick.report.warnings.append(
                f"rollover complete: remove policy.rollover_from ({former}) and deploy;"
                " no key of that pair is left"
            )

    def _ensure_next(self, tick: TickState) -> None:
        if tick.one(KeyState.NEXT) is not None:
            return
        registry = tick.registry
        recovery = self._adoption.recover(registry)
        if recovery.gave_up:
            tick.report.warnings.append(recovery.gave_up)
        arn = recovery.adopted
        refused = None if arn is None else self._anchor.check_key(arn)
        if refused is not None:
            # A key carrying our nonce but not the keeper's spec or policy was not made by
            # the lost CreateKey: never adopted; a new key with a new nonce is made.
            tick.report.tampering.append(refused)
            registry.intent_nonce = None
            arn = None
        else:
            self._dispose_strays(tick, recovery.strays)
        # An adopted key is listed with its own algorithm (its CreateKey may predate a
        # change of algorithm); a new key has the configured one.
        algorithm = None if arn is None else self._anchor.algorithm_of(arn)
        if arn is None:
            arn = self._keys.create_key(self._adoption.announce(registry), self._clock.now())
        entry = self._adoption.register(registry, arn, algorithm)
        self._keys.set_tags(arn, {names.TAG_KID: entry.kid})
        self._registry.save(registry)
        key = self._keys.load(arn, entry.jwk)
        if key is None:
            raise LifecycleError(f"the key just created ({arn}) does not carry the keyset's tags")
        # Checked now, while it is new: later ticks find it in the anchor's cache.
        finding = self._anchor.check(entry, key)
        if finding is not None:
            raise LifecycleError(f"the key just created ({arn}): {finding.detail}")
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

    def _publish_and_sync(self, tick: TickState) -> None:
        published = tick.published
        written = self._publisher.publish([key.jwk for key in published], tick.origin)
        now = self._clock.now()
        if written is not None:
            tick.origin = written
            tick.report.published = True
            tick.registry.jwks_published_at = now
            tick.registry.jwks_sha256 = digest(written)
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

    def _confirmed(self, tick: TickState, key: ManagedKey) -> bool:
        return self._confirmation_error(tick, key) is None

    def _confirmation_error(self, tick: TickState, key: ManagedKey) -> str | None:
        """Why the verifier does not confirm `key` (after a warning), or None when it does."""
        if not tick.trust_ok:
            return f"the trust sync failed: {tick.report.trust_error}"
        try:
            self._trust.confirm(key, self._clock.now())
        except JwtKeysError as error:
            tick.report.canary_failed = True
            tick.report.warnings.append(f"{key.kid} not confirmed by {self._trust.name}: {error}")
            return str(error)
        return None

    def _bootstrap(self, tick: TickState) -> None:
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

    def _promotion_due(self, tick: TickState) -> bool:
        current = tick.one(KeyState.CURRENT)
        due_at = None if current is None else schedule.rotation_due_at(current, self.policy)
        return due_at is not None and self._clock.now() >= due_at

    def _promote(self, tick: TickState, promotion: Promotion) -> None:
        standby, current = tick.one(KeyState.NEXT), tick.one(KeyState.CURRENT)
        ready_at = None if standby is None else schedule.ready_at(standby, self.policy)
        if standby is None or ready_at is None:
            tick.report.warnings.append("no published standby key to promote yet")
            return
        if self._clock.now() < ready_at:
            if promotion is not Promotion.FORCE:
                if promotion is Promotion.NOW:
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

    def _retire_due(self, tick: TickState) -> None:
        now = self._clock.now()
        for key in tick.in_state(KeyState.PREVIOUS):
            retire_at = schedule.retirement_at(key, self.policy)
            if retire_at is not None and now >= retire_at:
                # The state changes first, so the audit of this same tick sees no drift.
                self._transition(key, KeyState.RETIRED, names.TAG_RETIRED_AT, "grace over")
                tick.report.retired.append(key.kid)

    def _dispose_unpublished(self, tick: TickState) -> None:
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

    def _dispose_strays(self, tick: TickState, strays: list[str]) -> None:
        """Keys of a CreateKey's nonce beyond the one adopted: never published or trusted,
        so they are retired and disposed of at once (no orphaned key stays enabled)."""
        for arn in strays:
            jwk = self._keys.public_jwk(arn)
            self._keys.set_tags(arn, {names.TAG_KID: jwk["kid"]})
            key = self._keys.load(arn, jwk)
            if key is None:
                continue  # no longer tagged with the keyset: not ours to dispose of
            self._transition(key, KeyState.RETIRED, names.TAG_RETIRED_AT, "stray of a nonce")
            self._keys.dispose(arn, self.policy.deletion_window_days)
            tick.registry.disposed.append(
                {"arn": arn, "kid": key.kid, "state": key.state.value, "at": self._clock.now()}
            )
            tick.report.disposed.append(key.kid)
            tick.report.warnings.append(
                f"disposed of {key.kid}: a second key created under one intent nonce"
            )
        if strays:
            self._registry.save(tick.registry)

    # Emergency and end of life ---------------------------------------------------------

    def _revoke(self, tick: TickState, kid: str) -> None:
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
            # A revocation never waits for the verifier: the compromised key must stop
            # signing now. The standby is confirmed first all the same, and promoted
            # unconfirmed (loudly) when that fails: its tokens may be refused, while the
            # compromised key's would be accepted by anyone who holds it.
            unconfirmed = self._confirmation_error(tick, standby)
            # Move the alias first so signers switch before the key is disabled.
            self._keys.point_alias(standby.arn, exists=True)
            tick.alias_target = standby.arn
            self._transition(
                standby, KeyState.CURRENT, names.TAG_ACTIVATED_AT, "revocation of current"
            )
            tick.report.promoted.append(standby.kid)
            if unconfirmed is not None:
                self._report_unconfirmed(tick, standby, unconfirmed)
        if key.state is not KeyState.REVOKED:
            self._transition(key, KeyState.REVOKED, names.TAG_RETIRED_AT, "revoked by operator")
        tick.report.revoked.append(kid)
        self._keys.disable(key.arn)
        self._publish_and_sync(tick)
        if self._revoke_sessions:
            try:
                ended = self._trust.end_sessions()
                tick.report.warnings.append(f"ended {ended} {self._trust.name} session(s)")
            except SessionsNotEnded as error:
                # The key is revoked either way: say loudly that its sessions may live on.
                tick.report.sessions_not_ended = str(error)
                tick.report.warnings.append(f"{self._trust.name}: {error}")
        tick.report.warnings.append(REVOCATION_WARNING.format(seconds=2 * self.policy.jwks_max_age))
        self._ensure_next(tick)
        self._publish_and_sync(tick)
        self._dispose_unpublished(tick)

    def _report_unconfirmed(self, tick: TickState, key: ManagedKey, error: str) -> None:
        """A key promoted without the verifier's confirmation: in the report, a warning,
        the log and (through the report) the UnconfirmedPromotions metric."""
        records = self._trust.records_of(key)
        tick.report.unconfirmed_promotion = {
            "kid": key.kid,
            "verifier": self._trust.name,
            "records": records,
            "error": error,
        }
        tick.report.warnings.append(
            f"PROMOTED UNCONFIRMED: {key.kid} signs now but {self._trust.name} did not confirm"
            f" it ({error}); its tokens may be refused by {'; '.join(records) or 'the verifier'}"
        )
        self._log.error(
            "promoted without the verifier's confirmation",
            extra={
                "kid": key.kid,
                "verifier": self._trust.name,
                "records": records,
                "error": error,
            },
        )

    def _decommission(self, tick: TickState) -> None:
        registry = tick.registry
        recovery = self._adoption.recover(registry)
        if recovery.gave_up:
            tick.report.warnings.append(recovery.gave_up)
        self._dispose_strays(tick, recovery.strays)
        arn = recovery.adopted
        if arn is not None:
            adopted = self._keys.load(arn, self._adoption.register(registry, arn).jwk)
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
        # Entries still listed name keys gone from KMS or never the keeper's (reported):
        # nothing of them is left to dispose of, and the record lists no key.
        registry.keys = []
        registry.decommissioned = True
        registry.decommissioned_at = self._clock.now()
        self._registry.save(registry)

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
