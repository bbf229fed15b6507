"""The key timeline as text, for the terminal: one line per key, one character per slice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from jwtkeys_tools.timeline.model import Timeline

WIDTH: Final = 60
STATE_CHARS: Final = {"next": ".", "current": "#", "previous": "=", "retired": "-", "revoked": "x"}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%MZ")


def render_text(timeline: Timeline, width: int = WIDTH) -> str:
    """The timeline as lines of text; each bar `width` characters across the whole span."""
    span = timeline.end - timeline.start
    lines = [
        f"keyset {timeline.keyset}: {_when(timeline.start)} .. {_when(timeline.end)}"
        f" (one column = {span / width / 60:.0f} min)"
    ]
    for key in timeline.keys:
        row = [" "] * width
        for segment in key.segments:
            first = int((segment.start - timeline.start) / span * width)
            last = max(first + 1, int((segment.end - timeline.start) / span * width))
            for column in range(first, min(last, width)):
                row[column] = STATE_CHARS.get(segment.state, "?")
        milestones = ", ".join(f"{m.kind} {_when(m.at)[11:]}" for m in key.markers)
        tokens = sum(key.tokens_per_hour.values())
        lines.append(f"{key.kid[:10]}  |{''.join(row)}|  tokens {tokens}; {milestones}")
    legend = "  ".join(f"{char} {state}" for state, char in STATE_CHARS.items())
    lines.append(f"legend: {legend}")
    return "\n".join(lines)
