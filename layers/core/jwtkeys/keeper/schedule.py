"""When each key's next transition is due: the lifecycle's timing arithmetic, in one place.

The keeper acts on these moments; `jwtkeys status` shows them. A moment that depends on
a timestamp the key does not carry (yet) is None: the keeper does not act on it.
"""

from __future__ import annotations

from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.key_state import KeyState, ManagedKey

DAY = 86400


def planned_published_life(policy: RotationPolicy) -> int:
    """How long a key stays published when every rotation is on time: `next` for about
    one rotation period, `current` for another, then `previous` for the grace."""
    return 2 * policy.rotation_period + policy.grace


def rotation_due_at(current: ManagedKey, policy: RotationPolicy) -> float | None:
    """When the current key has signed for a whole rotation period."""
    if current.activated_at is None:
        return None
    return current.activated_at + policy.rotation_period


def ready_at(standby: ManagedKey, policy: RotationPolicy) -> float | None:
    """When the standby key has been published for the prepublish window."""
    if standby.published_at is None:
        return None
    return standby.published_at + policy.prepublish_window


def promotion_at(
    standby: ManagedKey, current: ManagedKey | None, policy: RotationPolicy
) -> float | None:
    """When a tick promotes the standby key: once published with no current key
    (bootstrap), otherwise when the rotation is due and the standby key is ready."""
    if current is None:
        return standby.published_at
    due, ready = rotation_due_at(current, policy), ready_at(standby, policy)
    if due is None or ready is None:
        return None
    return max(due, ready)


def retirement_at(previous: ManagedKey, policy: RotationPolicy) -> float | None:
    """When a previous key's grace is over."""
    if previous.deactivated_at is None:
        return None
    return previous.deactivated_at + policy.grace


def deletion_at(disposed_at: float, policy: RotationPolicy) -> float:
    """When KMS deletes a key disposed of at `disposed_at` (its deletion window)."""
    return disposed_at + policy.deletion_window_days * DAY


def next_transition(
    key: ManagedKey, current: ManagedKey | None, policy: RotationPolicy
) -> tuple[str, float | None]:
    """What happens to `key` next, and when (None: not scheduled by time)."""
    if key.state is KeyState.NEXT:
        return "promote to current", promotion_at(key, current, policy)
    if key.state is KeyState.CURRENT:
        return "becomes previous at the next promotion", rotation_due_at(key, policy)
    if key.state is KeyState.PREVIOUS:
        return "retire", retirement_at(key, policy)
    return "disable and schedule deletion", None
