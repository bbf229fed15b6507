"""The demo's artifact read-back (I1, I2 over the JWKS history) refuses broken histories."""

from __future__ import annotations

from typing import Any

from jwtkeys_tools.local.invariants import check_artifacts

SKEW = 300


def published(at: int, *kids: str) -> dict[str, Any]:
    return {"at": at, "jwks": {"keys": [{"kid": kid} for kid in kids]}}


def token(kid: str, issued_at: int, expires_at: int, revoked: bool = False) -> dict[str, Any]:
    return {"kid": kid, "issued_at": issued_at, "expires_at": expires_at, "key_revoked": revoked}


HISTORY = [published(100, "a", "b"), published(2000, "a", "b", "c"), published(5000, "b", "c")]


def test_a_sound_history_passes() -> None:
    # Given a token of "a" that expired (+ skew) before "a" left the JWKS at 5000
    tokens = [token("a", 200, 1000), token("b", 2100, 4600), token("c", 2500, 3000)]
    # Then nothing is refused
    assert check_artifacts(HISTORY, tokens, SKEW) == []


def test_a_token_signed_before_its_key_was_published_is_refused() -> None:
    # "c" was first served at 2000; a token of it signed at 1500 breaks I1
    problems = check_artifacts(HISTORY, [token("c", 1500, 1800)], SKEW)
    assert problems == ["I1: c signed at 1500 before it was served"]


def test_a_token_signed_before_anything_was_published_is_refused() -> None:
    problems = check_artifacts(HISTORY, [token("a", 50, 90)], SKEW)
    assert [p[:3] for p in problems] == ["I1:"]


def test_a_key_that_left_while_its_token_lived_is_refused() -> None:
    # "a" left at 5000; a token of it lives until 4800 + skew = 5100
    problems = check_artifacts(HISTORY, [token("a", 2100, 4800)], SKEW)
    assert problems == ["I2: a left the JWKS at 5000"]


def test_skew_counts_after_expiry() -> None:
    # Expired at 4700: 4700 + 300 = 5000 is not after the removal at 5000
    assert check_artifacts(HISTORY, [token("a", 2100, 4700)], SKEW) == []
    assert check_artifacts(HISTORY, [token("a", 2100, 4701)], SKEW) != []


def test_a_revoked_key_may_leave_early_but_must_have_been_served() -> None:
    # Revocation excuses I2, never I1
    assert check_artifacts(HISTORY, [token("a", 2100, 4800, revoked=True)], SKEW) == []
    problems = check_artifacts(HISTORY, [token("c", 1500, 1800, revoked=True)], SKEW)
    assert [p[:3] for p in problems] == ["I1:"]
