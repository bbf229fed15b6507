"""ISO-8601 UTC timestamps as the tags and ServiceNow write them."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(unix_seconds: float) -> str:
    """`2026-11-29T00:00:00Z`: second precision, always UTC."""
    return datetime.fromtimestamp(int(unix_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> float:
    """Parse what `to_iso` writes (and any ISO-8601 form with an offset)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
