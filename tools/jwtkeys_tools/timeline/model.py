"""The key timeline: each key's states over time, its milestones, and the tokens it signed.

Built from what the keeper records (the timestamps tagged on every KMS key, the registry's
disposed keys) plus, where known, when ServiceNow first trusted a key and how many tokens
each key signed per hour. Serialisable, so the demo can leave one beside its artifacts.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from jwtkeys.keys.key_state import KeyState, ManagedKey

HOUR: Final = 3600
STATES: Final = tuple(state.value for state in KeyState)
# The milestones drawn on a key's bar, in the order they happen.
MARKERS: Final = ("published", "trusted", "promoted", "retired", "revoked", "deletion_scheduled")


@dataclass(frozen=True)
class Segment:
    """A key in one state from `start` until `end` (seconds since the epoch)."""

    state: str
    start: float
    end: float


@dataclass(frozen=True)
class Marker:
    """A milestone of a key (one of MARKERS) at a moment."""

    kind: str
    at: float


@dataclass(frozen=True)
class KeyTrack:
    """One key's row in the timeline."""

    kid: str
    segments: tuple[Segment, ...]
    markers: tuple[Marker, ...]
    # Hour start (a multiple of 3600) -> tokens signed by this key in that hour.
    tokens_per_hour: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    """Every key of a keyset between `start` and `end`."""

    keyset: str
    start: float
    end: float
    keys: tuple[KeyTrack, ...]

    def to_json(self) -> str:
        document = {
            "keyset": self.keyset,
            "start": self.start,
            "end": self.end,
            "keys": [
                {
                    "kid": key.kid,
                    "segments": [[s.state, s.start, s.end] for s in key.segments],
                    "markers": [[m.kind, m.at] for m in key.markers],
                    "tokens_per_hour": {str(h): n for h, n in sorted(key.tokens_per_hour.items())},
                }
                for key in self.keys
            ],
        }
        return json.dumps(document, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        document = json.loads(text)
        return cls(
            keyset=str(document["keyset"]),
            start=float(document["start"]),
            end=float(document["end"]),
            keys=tuple(
                KeyTrack(
                    kid=str(key["kid"]),
                    segments=tuple(
                        Segment(str(s), float(a), float(b)) for s, a, b in key["segments"]
                    ),
                    markers=tuple(Marker(str(k), float(at)) for k, at in key["markers"]),
                    tokens_per_hour={int(h): int(n) for h, n in key["tokens_per_hour"].items()},
                )
                for key in document["keys"]
            ),
        )


@dataclass(frozen=True)
class KeyHistory:
    """What is known of one key's life: its transition times and its state now."""

    kid: str
    state: str
    created_at: float
    published_at: float | None = None
    activated_at: float | None = None
    deactivated_at: float | None = None
    # For a revoked key, the moment of revocation (the keeper tags it as retired-at).
    retired_at: float | None = None
    trusted_at: float | None = None
    deletion_scheduled_at: float | None = None

    @classmethod
    def of(cls, key: ManagedKey, **extra: float | None) -> KeyHistory:
        """From a key as the keeper reads it (its KMS tags)."""
        return cls(
            kid=key.kid,
            state=key.state.value,
            created_at=key.created_at,
            published_at=key.published_at,
            activated_at=key.activated_at,
            deactivated_at=key.deactivated_at,
            retired_at=key.retired_at,
            **extra,
        )


def tokens_per_hour(issued: Iterable[tuple[str, float]]) -> dict[str, dict[int, int]]:
    """kid -> {hour start: count}, from (kid, issued_at) pairs."""
    counts: dict[str, Counter[int]] = {}
    for kid, at in issued:
        counts.setdefault(kid, Counter())[int(at // HOUR) * HOUR] += 1
    return {kid: dict(counter) for kid, counter in counts.items()}


def build_timeline(
    keyset: str,
    histories: Iterable[KeyHistory],
    *,
    start: float,
    end: float,
    tokens: Mapping[str, Mapping[int, int]] | None = None,
) -> Timeline:
    """The timeline of `histories` clipped to [start, end], oldest key first."""
    if end <= start:
        raise ValueError("a timeline ends after it starts")
    tracks = []
    for history in sorted(histories, key=lambda h: (h.created_at, h.kid)):
        segments = _clip(_segments(history, end), start, end)
        markers = tuple(m for m in _markers(history) if start <= m.at <= end)
        if not segments and not markers:
            continue
        per_hour = {
            hour: count
            for hour, count in (tokens or {}).get(history.kid, {}).items()
            if start - HOUR < hour <= end
        }
        tracks.append(KeyTrack(history.kid, segments, markers, per_hour))
    return Timeline(keyset, start, end, tuple(tracks))


def _segments(history: KeyHistory, end: float) -> list[Segment]:
    """The states a key went through, each from its transition to the next one."""
    revoked = history.state == KeyState.REVOKED.value
    ended = history.retired_at
    steps: list[tuple[str, float | None]] = [
        ("next", history.created_at),
        ("current", history.activated_at),
        ("previous", history.deactivated_at),
        ("revoked" if revoked else "retired", ended),
    ]
    known = [(state, at) for state, at in steps if at is not None]
    if revoked and ended is None:
        # Revoked without a timestamp: nothing says since when; show it from creation.
        known = [("revoked", history.created_at)]
    segments = []
    for (state, begin), following in zip(known, [*known[1:], (None, None)], strict=True):
        stop = following[1] if following[1] is not None else end
        if history.deletion_scheduled_at is not None and state in ("retired", "revoked"):
            stop = max(stop, history.deletion_scheduled_at)
        if stop > begin:
            segments.append(Segment(state, begin, min(stop, end)))
    return segments


def _markers(history: KeyHistory) -> list[Marker]:
    revoked = history.state == KeyState.REVOKED.value
    moments: list[tuple[str, float | None]] = [
        ("published", history.published_at),
        ("trusted", history.trusted_at),
        ("promoted", history.activated_at),
        ("revoked" if revoked else "retired", history.retired_at),
        ("deletion_scheduled", history.deletion_scheduled_at),
    ]
    return [Marker(kind, at) for kind, at in moments if at is not None]


def _clip(segments: list[Segment], start: float, end: float) -> tuple[Segment, ...]:
    return tuple(
        Segment(s.state, max(s.start, start), min(s.end, end))
        for s in segments
        if s.end > start and s.start < end
    )


def parse_duration(text: str) -> int:
    """Seconds in `30d`, `12h`, `90m` or `3600s` (ValueError otherwise)."""
    units = {"s": 1, "m": 60, "h": HOUR, "d": 24 * HOUR, "w": 7 * 24 * HOUR}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30d, 12h, 90m)")
    return int(number) * units[unit]
