"""The key timeline: states and milestones from key histories, the SVG and the text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from jwtkeys_tools.timeline.model import (
    HOUR,
    KeyHistory,
    Marker,
    Segment,
    Timeline,
    build_timeline,
    parse_duration,
    tokens_per_hour,
)
from jwtkeys_tools.timeline.svg import MARKER_STYLES, STATE_COLOURS, write_svg
from jwtkeys_tools.timeline.text import render_text

T0 = 1_800_000_000.0
SVG = "{http://www.w3.org/2000/svg}"

# A rotation, then a revocation of the promoted key, then a fresh standby.
OLD = KeyHistory(
    "kid-old",
    "retired",
    created_at=T0,
    published_at=T0,
    activated_at=T0,
    deactivated_at=T0 + 10 * HOUR,
    retired_at=T0 + 13 * HOUR,
    trusted_at=T0 + 60,
    deletion_scheduled_at=T0 + 13 * HOUR,
)
REVOKED = KeyHistory(
    "kid-revoked",
    "revoked",
    created_at=T0 + 60,
    published_at=T0 + 120,
    activated_at=T0 + 10 * HOUR,
    retired_at=T0 + 20 * HOUR,
    trusted_at=T0 + 180,
    deletion_scheduled_at=T0 + 20 * HOUR,
)
STANDBY = KeyHistory("kid-standby", "next", created_at=T0 + 20 * HOUR, published_at=T0 + 20 * HOUR)
TOKENS = tokens_per_hour(
    [("kid-old", T0 + 5), ("kid-old", T0 + 100), ("kid-old", T0 + 2 * HOUR)]
    + [("kid-revoked", T0 + 11 * HOUR + i) for i in range(5)]
)


def _timeline(start: float = T0, end: float = T0 + 24 * HOUR) -> Timeline:
    return build_timeline("orders", [STANDBY, REVOKED, OLD], start=start, end=end, tokens=TOKENS)


def test_each_key_runs_through_its_states_in_order() -> None:
    timeline = _timeline()
    assert [key.kid for key in timeline.keys] == ["kid-old", "kid-revoked", "kid-standby"]
    old, revoked, standby = timeline.keys
    # The bootstrap key was activated when it was created: it never was `next`. A retired
    # key stays retired (disabled, deletion pending) to the end of the picture.
    assert old.segments == (
        Segment("current", T0, T0 + 10 * HOUR),
        Segment("previous", T0 + 10 * HOUR, T0 + 13 * HOUR),
        Segment("retired", T0 + 13 * HOUR, T0 + 24 * HOUR),
    )
    assert revoked.segments == (
        Segment("next", T0 + 60, T0 + 10 * HOUR),
        Segment("current", T0 + 10 * HOUR, T0 + 20 * HOUR),
        Segment("revoked", T0 + 20 * HOUR, T0 + 24 * HOUR),
    )
    assert standby.segments == (Segment("next", T0 + 20 * HOUR, T0 + 24 * HOUR),)
    assert Marker("revoked", T0 + 20 * HOUR) in revoked.markers
    assert Marker("trusted", T0 + 180) in revoked.markers
    assert old.tokens_per_hour == {
        int(T0 // HOUR) * HOUR: 2,
        int((T0 + 2 * HOUR) // HOUR) * HOUR: 1,
    }


def test_a_window_clips_bars_and_drops_keys_outside_it() -> None:
    timeline = _timeline(start=T0 + 15 * HOUR, end=T0 + 24 * HOUR)
    old, revoked, _ = timeline.keys
    assert old.segments == (Segment("retired", T0 + 15 * HOUR, T0 + 24 * HOUR),)
    assert old.markers == ()
    assert revoked.segments[0] == Segment("current", T0 + 15 * HOUR, T0 + 20 * HOUR)
    # Before the standby key existed, it has no row at all.
    early = _timeline(start=T0, end=T0 + 5 * HOUR)
    assert [key.kid for key in early.keys] == ["kid-old", "kid-revoked"]
    with pytest.raises(ValueError, match="ends after"):
        build_timeline("orders", [], start=T0, end=T0)


def test_json_round_trip() -> None:
    timeline = _timeline()
    assert Timeline.from_json(timeline.to_json()) == timeline


@pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-3d", "3y", "0h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _groups(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    return {g.attrib["id"]: g for g in root.iter(f"{SVG}g") if "id" in g.attrib}


def _fill(group: ET.Element) -> str:
    style = next(iter(group.iter(f"{SVG}path"))).attrib["style"]
    return next(p.split(":")[1].strip() for p in style.split(";") if p.strip().startswith("fill"))


def test_the_svg_has_a_coloured_bar_per_state_and_every_milestone(tmp_path: Path) -> None:
    timeline = _timeline()
    path = tmp_path / "timeline.svg"
    write_svg(timeline, path)
    groups = _groups(path)

    for key in timeline.keys:
        for index, segment in enumerate(key.segments):
            bar = groups[f"bar-{segment.state}-{key.kid}-{index}"]
            assert _fill(bar) == STATE_COLOURS[segment.state]
        for marker in key.markers:
            assert f"marker-{marker.kind}-{key.kid}" in groups
            assert marker.kind in MARKER_STYLES
        for hour in key.tokens_per_hour:
            assert f"tokens-{key.kid}-{hour}" in groups
    bars = [name for name in groups if name.startswith("bar-")]
    assert len(bars) == sum(len(key.segments) for key in timeline.keys) == 7
    assert {name.split("-")[1] for name in groups if name.startswith("marker-")} == {
        "published",
        "trusted",
        "promoted",
        "retired",
        "revoked",
        "deletion_scheduled",
    }
    # The same timeline draws the same file.
    again = tmp_path / "again.svg"
    write_svg(timeline, again)
    assert again.read_bytes() == path.read_bytes()


def test_the_text_fallback_draws_one_line_per_key() -> None:
    text = render_text(_timeline(), width=24)
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1
    old = next(line for line in lines if line.startswith("kid-old"))
    assert "|##########===" in old
    assert "tokens 3" in old
    revoked = next(line for line in lines if line.startswith("kid-revoke"))
    assert "x" in revoked.split("|")[1]
    assert lines[-1].startswith("legend:")
