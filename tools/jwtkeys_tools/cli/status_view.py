"""What `jwtkeys status` shows: each key's state, age, publication and next transition."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from jwtkeys.keeper import schedule
from jwtkeys.keeper.lifecycle import KeyLifecycle
from jwtkeys.keys.key_state import KeyState


@dataclass(frozen=True)
class KeyStatus:
    kid: str
    state: str
    age_seconds: int
    published: bool
    trusted: bool | None  # None: no verifier (ServiceNow) is configured
    signing: bool
    next_transition: str | None
    next_transition_at: int | None


def keyset_status(keeper: KeyLifecycle, now: float) -> list[KeyStatus]:
    """The keyset's keys, newest first, with what happens to each next and when."""
    view = keeper.load_view()
    jwks = view.published_jwks
    served = {str(key["kid"]) for key in json.loads(jwks)["keys"]} if jwks else set()
    trusted = keeper.trusted_kids()
    policy = keeper.policy
    current = next((key for key in view.keys if key.state is KeyState.CURRENT), None)
    rows = []
    for key in sorted(view.keys, key=lambda k: k.created_at, reverse=True):
        transition, at = schedule.next_transition(key, current, policy)
        rows.append(
            KeyStatus(
                kid=key.kid,
                state=key.state.value,
                age_seconds=int(now - key.created_at),
                published=key.kid in served,
                trusted=None if trusted is None else key.kid in trusted,
                signing=key.arn == view.alias_target,
                next_transition=transition,
                next_transition_at=None if at is None else int(at),
            )
        )
    for disposed in reversed(view.registry.disposed[-5:]):
        rows.append(
            KeyStatus(
                kid=str(disposed["kid"]),
                state=str(disposed["state"]),
                age_seconds=int(now - float(disposed["at"])),
                published=str(disposed["kid"]) in served,
                trusted=None if trusted is None else str(disposed["kid"]) in trusted,
                signing=False,
                next_transition="deleted by KMS",
                next_transition_at=int(schedule.deletion_at(float(disposed["at"]), policy)),
            )
        )
    return rows


def render_table(rows: list[KeyStatus], now: float) -> str:
    """A plain-text table for operators."""
    header = ("KID", "STATE", "AGE", "PUBLISHED", "TRUSTED", "SIGNS", "NEXT", "WHEN")
    lines = [header]
    for row in rows:
        when = "-" if row.next_transition_at is None else _relative(row.next_transition_at - now)
        lines.append(
            (
                row.kid[:16] + "...",
                row.state,
                _relative(row.age_seconds),
                "yes" if row.published else "no",
                "-" if row.trusted is None else ("yes" if row.trusted else "no"),
                "yes" if row.signing else "no",
                row.next_transition or "-",
                when,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def _relative(seconds: float) -> str:
    """`3d4h`, `2h15m`, `45s`: the largest unit and the next one."""
    sign, remaining = ("-" if seconds < 0 else ""), abs(int(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (name, size) in enumerate(units):
        if remaining >= size or name == "s":
            text = f"{remaining // size}{name}"
            if index + 1 < len(units):
                next_name, next_size = units[index + 1]
                text += f"{(remaining % size) // next_size}{next_name}"
            return sign + text
    return sign + "0s"


def status_json(rows: list[KeyStatus]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2)
