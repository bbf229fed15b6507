"""The lifecycle's timing inequalities (docs/design.md) are enforced when a policy loads."""

from __future__ import annotations

import pytest

from jwtkeys.errors import ConfigurationError, UnsafePolicy
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.algorithms import KeyPair


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


def test_rollover_from_names_the_former_pair() -> None:
    policy = RotationPolicy.from_mapping(
        {
            "algorithm": "ES256",
            "key_spec": "ECC_NIST_P256",
            "rollover_from": {"algorithm": "RS256", "key_spec": "RSA_2048"},
        }
    )
    assert policy.rollover_from == KeyPair("RS256", "RSA_2048")
    assert policy.accepted_pairs == (
        KeyPair("ES256", "ECC_NIST_P256"),
        KeyPair("RS256", "RSA_2048"),
    )
    assert RotationPolicy.from_mapping(policy.to_mapping()) == policy
    # Unset, it is left out of the mapping (the functions' environment does not change).
    assert "rollover_from" not in RotationPolicy().to_mapping()
    assert RotationPolicy.from_mapping({"rollover_from": None}).accepted_pairs == (
        KeyPair("RS256", "RSA_2048"),
    )


@pytest.mark.parametrize(
    ("rollover_from", "message"),
    [
        ({"algorithm": "RS256", "key_spec": "RSA_2048"}, "is the configured algorithm"),
        ({"algorithm": "ES256", "key_spec": "RSA_2048"}, "cannot sign ES256"),
        ({"algorithm": "HS256", "key_spec": "RSA_2048"}, "unsupported signing algorithm"),
        ({"algorithm": "RS256"}, "must be an object"),
        ("RS256", "must be an object"),
        ({"algorithm": "RS256", "key_spec": "RSA_2048", "x": 1}, "must be an object"),
    ],
)
def test_a_malformed_rollover_from_is_refused_by_name(rollover_from: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"policy\.rollover_from") as refused:
        RotationPolicy.from_mapping({"rollover_from": rollover_from})
    assert message in str(refused.value)
