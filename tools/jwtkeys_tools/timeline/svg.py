"""The key timeline as an SVG picture (matplotlib; an operator/dev dependency, never a layer).

Every drawn element carries an SVG id that names what it is, so the picture can be
checked by parsing it: `bar-<state>-<kid>-<n>` for a state segment, `marker-<kind>-<kid>`
for a milestone, `tokens-<kid>-<hour>` for an hour of the tokens strip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.timeline.model import HOUR, Timeline

STATE_COLOURS: Final = {
    "next": "#9ecae1",
    "current": "#2ca02c",
    "previous": "#ff7f0e",
    "retired": "#7f7f7f",
    "revoked": "#d62728",
}
MARKER_STYLES: Final = {
    "published": ("^", "#1f77b4"),
    "trusted": ("s", "#9467bd"),
    "promoted": ("*", "#2ca02c"),
    "retired": ("v", "#7f7f7f"),
    "revoked": ("X", "#d62728"),
    "deletion_scheduled": ("D", "#000000"),
}
_ROW: Final = 2.2  # vertical space per key: markers, the bar, the tokens strip, a gap
_BAR_HEIGHT: Final = 0.7
_STRIP_HEIGHT: Final = 0.45
_DAY: Final = 86400.0


def write_svg(timeline: Timeline, path: Path) -> None:
    """Draw `timeline` into the SVG file `path` (ConfigurationError without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise ConfigurationError(
            "the SVG timeline needs matplotlib: pip install 'jwtkeys[operator]'"
        ) from None

    def x(at: float) -> float:
        moment = datetime.fromtimestamp(at, tz=UTC)
        return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]

    rows = max(1, len(timeline.keys))
    figure, axes = plt.subplots(figsize=(12, 1.4 + 1.1 * rows))
    for row, key in enumerate(timeline.keys):
        y = (rows - 1 - row) * _ROW
        for index, segment in enumerate(key.segments):
            axes.barh(
                y,
                (segment.end - segment.start) / _DAY,
                left=x(segment.start),
                height=_BAR_HEIGHT,
                color=STATE_COLOURS.get(segment.state, "#cccccc"),
                edgecolor="none",
                gid=f"bar-{segment.state}-{key.kid}-{index}",
            )
        for marker in key.markers:
            symbol, colour = MARKER_STYLES[marker.kind]
            # One height per kind: milestones of one tick (published, trusted, promoted)
            # share a moment and would hide one another.
            lane = list(MARKER_STYLES).index(marker.kind)
            axes.plot(
                [x(marker.at)],
                [y + _BAR_HEIGHT / 2 + 0.12 + 0.13 * lane],
                marker=symbol,
                color=colour,
                markersize=8,
                linestyle="none",
                gid=f"marker-{marker.kind}-{key.kid}",
            )
        peak = max(key.tokens_per_hour.values(), default=0)
        strip = y - _BAR_HEIGHT / 2 - 0.05 - _STRIP_HEIGHT
        for hour, count in sorted(key.tokens_per_hour.items()):
            axes.bar(
                x(hour),
                _STRIP_HEIGHT * count / peak,
                width=HOUR / _DAY,
                bottom=strip,
                align="edge",
                color="#8c8c8c",
                edgecolor="white",
                linewidth=0.5,
                gid=f"tokens-{key.kid}-{hour}",
            )
    axes.set_yticks([(rows - 1 - row) * _ROW for row in range(len(timeline.keys))])
    axes.set_yticklabels([f"{key.kid[:10]}…" for key in timeline.keys], fontfamily="monospace")
    # A little room at both ends: milestones on the first or last moment stay visible.
    margin = (timeline.end - timeline.start) * 0.02
    axes.set_xlim(x(timeline.start - margin), x(timeline.end + margin))
    top_lane = _BAR_HEIGHT / 2 + 0.12 + 0.13 * len(MARKER_STYLES)
    axes.set_ylim(-_ROW / 2 - _STRIP_HEIGHT, (rows - 1) * _ROW + top_lane)
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.set_title(f"jwtkeys keyset {timeline.keyset}: keys over time (UTC); tokens per hour below")
    axes.grid(axis="x", alpha=0.3)
    legend = [Patch(color=colour, label=state) for state, colour in STATE_COLOURS.items()] + [
        Line2D([], [], marker=symbol, color=colour, linestyle="none", label=kind.replace("_", " "))
        for kind, (symbol, colour) in MARKER_STYLES.items()
    ]
    axes.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No date in the metadata and fixed ids: the same timeline always gives the same file.
    with plt.rc_context({"svg.hashsalt": "jwtkeys-timeline"}):
        figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
