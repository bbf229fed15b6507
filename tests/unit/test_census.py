"""The key census's rate limit: at most one census per interval on the keeper's clock."""

from __future__ import annotations

import dataclasses

import pytest

from jwtkeys.errors import ConfigurationError
from jwtkeys.keeper.census import census_due
from jwtkeys.keeper.rotation_policy import RotationPolicy

DAY = 86400


def test_the_first_action_takes_a_census() -> None:
    assert census_due(None, 1_000.0, DAY)


def test_no_census_before_the_interval_has_passed() -> None:
    assert not census_due(1_000.0, 1_000.0, DAY)
    assert not census_due(1_000.0, 1_000.0 + DAY - 1, DAY)


def test_a_census_once_the_interval_has_passed() -> None:
    assert census_due(1_000.0, 1_000.0 + DAY, DAY)
    assert census_due(1_000.0, 1_000.0 + 3 * DAY + 5, DAY)


def test_a_census_time_ahead_of_the_clock_does_not_put_the_next_one_off() -> None:
    # The keeper never records a time it has not reached: a forged one must not silence
    # the census until then.
    assert census_due(1_000.0 + 365 * DAY, 1_000.0, DAY)
    assert census_due(1_000.5, 1_000.0, DAY)


def test_the_interval_defaults_to_a_day_and_must_be_positive() -> None:
    assert RotationPolicy().census_interval == DAY
    assert RotationPolicy.from_mapping({"census_interval": 3600}).census_interval == 3600
    for bad in (0, -1):
        with pytest.raises(ConfigurationError, match="census_interval"):
            dataclasses.replace(RotationPolicy(), census_interval=bad)
