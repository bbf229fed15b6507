"""The key census's bounds: at most one census per interval on the keeper's clock, and
at most CENSUS_MAX_PAGES pages of the tagging index per census."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError
from jwtkeys.keeper.census import CENSUS_MAX_PAGES, KeyCensus, census_due
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keeper.state_store import Registry

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


class _EndlessTagIndex:
    """A tagging index with more keyset-tagged keys than the census reads: every page
    is full and names a next one. Counts the pages the census actually asked for."""

    def __init__(self) -> None:
        self.pages_read = 0

    def get_paginator(self, operation: str) -> _EndlessTagIndex:
        assert operation == "get_resources"
        return self

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        assert kwargs["ResourceTypeFilters"] == ["kms:key"]
        assert kwargs["TagFilters"] == [{"Key": names.TAG_KEYSET, "Values": ["orders"]}]
        while True:
            self.pages_read += 1
            base = self.pages_read * 1000
            yield {
                "ResourceTagMappingList": [
                    {
                        "ResourceARN": f"arn:aws:kms:eu-west-1:123456789012:key/{base + n}",
                        "Tags": [{"Key": names.TAG_KEYSET, "Value": "orders"}],
                    }
                    for n in range(100)
                ],
                "PaginationToken": f"page-{self.pages_read + 1}",
            }


class _Keys:
    keyset = "orders"

    def key_state(self, arn: str) -> str:
        return "Enabled"


def test_a_flooded_tag_stops_the_census_at_its_page_bound_and_says_so() -> None:
    index = _EndlessTagIndex()
    census = KeyCensus(index, _Keys(), SimulatedClock(0.0), DAY)  # type: ignore[arg-type]

    result = census.run(Registry())

    # Pages are fetched as they are read: the census stops asking at its bound.
    assert index.pages_read == CENSUS_MAX_PAGES
    assert len(result.unregistered) == CENSUS_MAX_PAGES * 100
    assert result.gave_up is not None
    assert "stopped after 1000 keys" in result.gave_up
