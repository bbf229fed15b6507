"""The lifecycle's timings, validated together: an unsafe combination never loads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from jwtkeys.errors import ConfigurationError, UnsafePolicy
from jwtkeys.keys.algorithms import KeyPair, SigningAlgorithm, algorithm_named, check_key_spec

MIN_DELETION_WINDOW_DAYS = 7
MAX_DELETION_WINDOW_DAYS = 30


# A margin for clocks a few seconds apart, not a way to make tokens valid in the past.
MAX_NOT_BEFORE_MARGIN = 60


@dataclass(frozen=True)
class RotationPolicy:
    """Every timing of the key lifecycle, in seconds (deletion window in days)."""

    algorithm: str = "RS256"
    key_spec: str = "RSA_2048"
    rotation_period: int = 30 * 86400
    prepublish_window: int = 3600
    grace: int = 2 * 3600
    max_token_ttl: int = 3600
    clock_skew: int = 300
    jwks_max_age: int = 300
    signer_cache_ttl: int = 300
    tick_interval: int = 300
    deletion_window_days: int = 30
    # How often the keeper looks for keys tagged with the keyset that its registry does
    # not list (keeper/census.py): one Resource Groups Tagging API call per census.
    census_interval: int = 86400
    # ServiceNow's own JWKS cache lifespan when it trusts us through a JWKS URL; 0 otherwise.
    verifier_jwks_cache_lifespan: int = 0
    # Seconds a token's whole window (iat = nbf, exp) is moved back, so a verifier with 0 s
    # clock skew whose clock is behind the signer's accepts a fresh token (ServiceNow's
    # Machine Identity Console defaults to 0 s). exp moves back too: a token never lives
    # longer than its TTL, so every lifetime inequality holds unchanged.
    not_before_margin: int = 0
    # The algorithm and key spec the keyset's keys were made with before either changed:
    # its keys are still trusted, and its current key signs until its rotation, so the
    # change rolls over through a normal rotation (docs/deploy.md). None: no change under way.
    rollover_from: KeyPair | None = None

    def __post_init__(self) -> None:
        self._validate()

    @property
    def signing_algorithm(self) -> SigningAlgorithm:
        return algorithm_named(self.algorithm)

    @property
    def key_pair(self) -> KeyPair:
        """The pair every new key is made with."""
        return KeyPair(self.algorithm, self.key_spec)

    @property
    def accepted_pairs(self) -> tuple[KeyPair, ...]:
        """The pairs a live key of the keyset may have: the configured one first."""
        if self.rollover_from is None:
            return (self.key_pair,)
        return (self.key_pair, self.rollover_from)

    @property
    def min_prepublish_window(self) -> int:
        # Verifiers and the CDN may each hold a copy for max-age; a tick may pass before
        # the keeper notices the window has elapsed.
        return 2 * self.jwks_max_age + self.tick_interval + self.verifier_jwks_cache_lifespan

    @property
    def min_grace(self) -> int:
        # A signer may keep the old key for its cache TTL, its last token lives max_token_ttl,
        # verifiers accept it for clock_skew more, and retirement happens on a tick.
        return self.signer_cache_ttl + self.max_token_ttl + self.clock_skew + self.tick_interval

    def _validate(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int) and (
                not isinstance(value, int) or isinstance(value, bool)
            ):
                raise ConfigurationError(f"policy.{field.name} must be an integer, got {value!r}")
        for name in (
            "rotation_period",
            "prepublish_window",
            "grace",
            "max_token_ttl",
            "jwks_max_age",
            "signer_cache_ttl",
            "tick_interval",
            "census_interval",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"policy.{name} must be positive")
        if self.clock_skew < 0 or self.verifier_jwks_cache_lifespan < 0:
            raise ConfigurationError("policy.clock_skew and cache lifespans cannot be negative")
        if not 0 <= self.not_before_margin <= MAX_NOT_BEFORE_MARGIN:
            raise ConfigurationError(
                f"policy.not_before_margin must be within 0..{MAX_NOT_BEFORE_MARGIN} seconds"
            )
        check_key_spec(self.signing_algorithm, self.key_spec)
        self._validate_rollover()
        if self.prepublish_window < self.min_prepublish_window:
            raise UnsafePolicy(
                "prepublish_window >= 2 x jwks_max_age + tick_interval"
                " + verifier_jwks_cache_lifespan fails: "
                f"{self.prepublish_window} < {self.min_prepublish_window}"
            )
        if self.grace < self.min_grace:
            raise UnsafePolicy(
                "grace >= signer_cache_ttl + max_token_ttl + clock_skew + tick_interval fails: "
                f"{self.grace} < {self.min_grace}"
            )
        if self.rotation_period < self.prepublish_window + self.grace:
            raise UnsafePolicy(
                "rotation_period >= prepublish_window + grace fails: "
                f"{self.rotation_period} < {self.prepublish_window + self.grace}"
            )
        if not MIN_DELETION_WINDOW_DAYS <= self.deletion_window_days <= MAX_DELETION_WINDOW_DAYS:
            raise UnsafePolicy(
                f"{MIN_DELETION_WINDOW_DAYS} <= deletion_window_days <= "
                f"{MAX_DELETION_WINDOW_DAYS} fails: {self.deletion_window_days}"
            )

    def _validate_rollover(self) -> None:
        if self.rollover_from is None:
            return
        if not isinstance(self.rollover_from, KeyPair):
            raise ConfigurationError(
                f"policy.rollover_from must be a KeyPair, got {self.rollover_from!r}"
            )
        if self.rollover_from == self.key_pair:
            raise ConfigurationError(
                f"policy.rollover_from ({self.rollover_from}) is the configured algorithm"
                " and key spec: it names the pair used BEFORE a change (remove it once"
                " the rollover is complete)"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RotationPolicy:
        """Build from a mapping (cdk.json context, an env var's JSON); unknown keys refused."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(f"unknown policy setting(s): {', '.join(unknown)}")
        settings = dict(values)
        rollover_from = settings.pop("rollover_from", None)
        if rollover_from is not None:
            settings["rollover_from"] = KeyPair.from_mapping(rollover_from, "policy.rollover_from")
        return cls(**settings)

    def to_mapping(self) -> dict[str, Any]:
        """What `from_mapping` reads back (rollover_from only when set)."""
        mapping = {field.name: getattr(self, field.name) for field in fields(self)}
        rollover_from = mapping.pop("rollover_from")
        if rollover_from is not None:
            mapping["rollover_from"] = rollover_from.to_mapping()
        return mapping
