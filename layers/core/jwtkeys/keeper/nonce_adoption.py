"""Nonce adoption: a key whose CreateKey answer was lost is adopted, never created twice.

Before each CreateKey the keeper records an intent nonce in the registry; the key is
created carrying it as a tag. When a tick finds a nonce still recorded, the CreateKey's
outcome was never learnt: the key it may have made is looked up by its nonce and
adopted before anything new is created. CreateKey is never retried blindly, but should
more than one key carry the nonce (a retry outside the keeper's control), one is
adopted and the others are strays, disposed of like retired keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from jwtkeys.clock import Clock
from jwtkeys.keeper.state_store import Registry, RegistryEntry, RegistryStore
from jwtkeys.keys.algorithms import SigningAlgorithm
from jwtkeys.keys.key_store import KeyStore, ScanBound

# The recovery scan reads the tags of every key in the account (one call each): an
# account with thousands of keys must not hold the tick, and the lease, for minutes.
NONCE_SCAN_MAX_KEYS = 1000
NONCE_SCAN_SECONDS = 60.0


@dataclass(frozen=True)
class Recovery:
    """What an unanswered CreateKey left: the key to adopt and any strays to dispose of."""

    adopted: str | None = None
    strays: list[str] = field(default_factory=list)
    # Set when the scan stopped at its bound: keys beyond it were not checked.
    gave_up: str | None = None


class NonceAdoption:
    """Announces each CreateKey in the registry and adopts the key of an unanswered one."""

    def __init__(self, key_store: KeyStore, registry_store: RegistryStore, clock: Clock) -> None:
        self._keys = key_store
        self._registry = registry_store
        self._clock = clock

    def announce(self, registry: Registry) -> str:
        """The nonce the next CreateKey carries, saved in the registry before the call."""
        if registry.intent_nonce:
            return registry.intent_nonce  # the earlier CreateKey made no key: reuse its nonce
        registry.intent_nonce = uuid.uuid4().hex
        self._registry.save(registry)
        return registry.intent_nonce

    def recover(self, registry: Registry) -> Recovery:
        """The keys an unanswered CreateKey made: the oldest is adopted, the rest are strays."""
        if not registry.intent_nonce:
            return Recovery()
        bound = ScanBound(NONCE_SCAN_MAX_KEYS, self._clock.now() + NONCE_SCAN_SECONDS, self._clock)
        search = self._keys.find_by_nonce(registry.intent_nonce, bound)
        listed = {entry.arn for entry in registry.keys}
        found = [arn for arn in search.found if arn not in listed]
        gave_up = None
        if not search.complete:
            gave_up = (
                f"the search for keys of intent nonce {registry.intent_nonce} gave up after"
                f" {search.examined} keys (bound: {NONCE_SCAN_MAX_KEYS} keys,"
                f" {NONCE_SCAN_SECONDS:.0f} s); a key it did not reach would be an orphan:"
                " look for keys tagged with this nonce"
            )
        if not found:
            return Recovery(gave_up=gave_up)
        return Recovery(found[0], found[1:], gave_up)

    def register(
        self, registry: Registry, arn: str, algorithm: SigningAlgorithm | None = None
    ) -> RegistryEntry:
        """List a created or adopted key in `registry` (not saved) and settle the intent;
        its JWK carries `algorithm` (default: the configured one, that of new keys)."""
        jwk = self._keys.public_jwk(arn, algorithm)
        entry = RegistryEntry(arn=arn, kid=jwk["kid"], jwk=jwk)
        registry.keys.append(entry)
        registry.intent_nonce = None
        return entry
