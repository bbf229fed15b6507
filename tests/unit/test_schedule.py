"""The lifecycle's timing arithmetic (keeper.schedule), shared by the keeper and `status`."""

from __future__ import annotations

from dataclasses import replace

from jwtkeys.keeper import schedule
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.key_state import KeyState, ManagedKey

POLICY = RotationPolicy(
    rotation_period=7200,
    prepublish_window=1200,
    grace=1800,
    max_token_ttl=900,
    clock_skew=300,
    jwks_max_age=300,
    signer_cache_ttl=60,
    tick_interval=300,
    deletion_window_days=7,
)


def key(
    state: KeyState,
    published_at: float | None = None,
    activated_at: float | None = None,
    deactivated_at: float | None = None,
) -> ManagedKey:
    return ManagedKey(
        f"arn:{state.value}",
        state.value,
        state,
        {},
        "nonce",
        1000.0,
        published_at=published_at,
        activated_at=activated_at,
        deactivated_at=deactivated_at,
    )


CURRENT = key(KeyState.CURRENT, published_at=1000.0, activated_at=2000.0)
STANDBY = key(KeyState.NEXT, published_at=5000.0)


def test_promotion_waits_for_the_later_of_rotation_and_prepublish() -> None:
    # Rotation due at 2000 + 7200 = 9200; standby ready at 5000 + 1200 = 6200
    assert schedule.promotion_at(STANDBY, CURRENT, POLICY) == 9200
    # A standby published late is promoted when ready, after the rotation came due
    late = replace(STANDBY, published_at=8500.0)
    assert schedule.promotion_at(late, CURRENT, POLICY) == 9700


def test_bootstrap_promotes_as_soon_as_the_first_key_is_published() -> None:
    assert schedule.promotion_at(STANDBY, None, POLICY) == 5000


def test_unknown_timestamps_schedule_nothing() -> None:
    unpublished = key(KeyState.NEXT)
    assert schedule.ready_at(unpublished, POLICY) is None
    assert schedule.promotion_at(unpublished, CURRENT, POLICY) is None
    assert schedule.promotion_at(unpublished, None, POLICY) is None
    never_activated = key(KeyState.CURRENT, published_at=1000.0)
    assert schedule.rotation_due_at(never_activated, POLICY) is None
    assert schedule.promotion_at(STANDBY, never_activated, POLICY) is None
    assert schedule.retirement_at(key(KeyState.PREVIOUS), POLICY) is None


def test_retirement_after_grace_and_deletion_after_the_window() -> None:
    previous = key(KeyState.PREVIOUS, activated_at=2000.0, deactivated_at=9200.0)
    assert schedule.retirement_at(previous, POLICY) == 11000
    assert schedule.deletion_at(11000.0, POLICY) == 11000 + 7 * 86400


def test_next_transition_names_each_state() -> None:
    previous = key(KeyState.PREVIOUS, deactivated_at=9200.0)
    assert schedule.next_transition(STANDBY, CURRENT, POLICY) == ("promote to current", 9200)
    assert schedule.next_transition(CURRENT, CURRENT, POLICY) == (
        "becomes previous at the next promotion",
        9200,
    )
    assert schedule.next_transition(previous, CURRENT, POLICY) == ("retire", 11000)
    assert schedule.next_transition(key(KeyState.REVOKED), CURRENT, POLICY) == (
        "disable and schedule deletion",
        None,
    )


def test_a_keys_planned_published_life_is_two_periods_and_a_grace() -> None:
    assert schedule.planned_published_life(POLICY) == 2 * 7200 + 1800
