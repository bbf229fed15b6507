"""How long a fetched JWKS may be kept: Cache-Control and Age, then the verifier's bounds."""

from __future__ import annotations

import pytest

from jwtkeys.verify.jwks_source import freshness_seconds
from jwtkeys.verify.jwks_verifier import JwksCachePolicy


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "public, max-age=300"}, 300),
        ({"cache-control": "max-age=300", "age": "120"}, 180),
        ({"Cache-Control": "max-age=300", "Age": "900"}, 0),
        ({"Cache-Control": 'max-age="60"'}, 60),
        ({"Cache-Control": "max-age=600, max-age=60"}, 60),
        ({"Cache-Control": "max-age=300, no-cache"}, 0),
        ({"Cache-Control": "no-store"}, 0),
        ({"Cache-Control": "max-age=-5"}, 0),
        ({"Cache-Control": "max-age=soon"}, 0),
        ({"Cache-Control": "public"}, None),
        ({}, None),
    ],
)
def test_freshness_from_headers(headers: dict[str, str], expected: int | None) -> None:
    assert freshness_seconds(headers) == expected


def test_the_policy_bounds_what_the_server_allows() -> None:
    policy = JwksCachePolicy(max_age_cap=600, default_max_age=120, min_refetch_interval=30)
    assert policy.freshness(300) == 300
    assert policy.freshness(86400) == 600
    assert policy.freshness(None) == 120
    assert policy.freshness(0) == 30
