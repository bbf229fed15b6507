"""The lifecycle's timing inequalities (docs/design.md) are enforced when a policy loads."""

from __future__ import annotations

import pytest

from jwtkeys.errors import ConfigurationError, UnsafePolicy
from jwtkeys.keeper.rotation_policy import RotationPolicy


def test_defaults_are_safe() -> None:
    policy = RotationPolicy()
    assert policy.prepublish_window >= policy.min_prepublish_window
    assert policy.grace >= policy.min_grace


@pytest.mark.parametrize(
    ("overrides", "inequality"),
    [
        ({"prepublish_window": 600}, "prepublish_window >= 2 x jwks_max_age + tick_interval"),
        ({"jwks_max_age": 3600}, "prepublish_window >= 2 x jwks_max_age"),
        (
            {"verifier_jwks_cache_lifespan": 3000},
            "+ verifier_jwks_cache_lifespan fails",
        ),
        ({"grace": 1000}, "grace >= signer_cache_ttl + max_token_ttl + clock_skew + tick_interval"),
        ({"max_token_ttl": 7200}, "grace >= signer_cache_ttl + max_token_ttl"),
        ({"rotation_period": 3600}, "rotation_period >= prepublish_window + grace"),
        ({"deletion_window_days": 6}, "7 <= deletion_window_days <= 30"),
        ({"deletion_window_days": 31}, "7 <= deletion_window_days <= 30"),
    ],
)
def test_unsafe_combinations_are_refused_naming_the_inequality(
    overrides: dict[str, int], inequality: str
) -> None:
    with pytest.raises(UnsafePolicy) as refused:
        RotationPolicy(**overrides)  # type: ignore[arg-type]
    assert inequality in str(refused.value)


def test_boundaries_are_inclusive() -> None:
    base = RotationPolicy()
    exact = RotationPolicy(
        prepublish_window=base.min_prepublish_window,
        grace=base.min_grace,
        rotation_period=base.min_prepublish_window + base.min_grace,
        deletion_window_days=7,
    )
    assert exact.rotation_period == exact.prepublish_window + exact.grace


@pytest.mark.parametrize(
    "values",
    [
        {"tick": 60},
        {"grace": "7200"},
        {"grace": True},
        {"tick_interval": 0},
        {"clock_skew": -1},
        {"algorithm": "HS256"},
        {"algorithm": "ES256", "key_spec": "RSA_2048"},
    ],
)
def test_malformed_policies_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RotationPolicy.from_mapping(values)


def test_round_trips_through_a_mapping() -> None:
    policy = RotationPolicy(algorithm="ES384", key_spec="ECC_NIST_P384")
    assert RotationPolicy.from_mapping(policy.to_mapping()) == policy
