"""`jwtkeys status [--json] [--timeline ...]`: each key's state, age and what is due; or
the key timeline (a text picture, and an SVG with `--out`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.cli.status_view import keyset_status, render_table, status_json
from jwtkeys_tools.cli.target import add_target_arguments, resolve_target


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show the keyset's keys and what is due")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeline", action="store_true", help="each key's life over time, with its milestones"
    )
    parser.add_argument(
        "--since", default="30d", help="how far back the timeline goes (30d, 12h, 90m)"
    )
    parser.add_argument("--out", type=Path, help="also write the timeline as an SVG file")
    parser.add_argument(
        "--from-demo",
        type=Path,
        metavar="DIR",
        help="the timeline a `jwtkeys demo --out DIR` run left (DIR/timeline.json)",
    )
    add_target_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.timeline or args.out or args.from_demo:
        return _timeline(args)
    target = resolve_target(args)
    now = time.time()
    rows = keyset_status(target.keeper().keeper, now)
    print(status_json(rows) if args.json else render_table(rows, now))
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from jwtkeys_tools.timeline.model import Timeline, build_timeline, parse_duration
    from jwtkeys_tools.timeline.text import render_text

    try:
        since = parse_duration(args.since)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if args.from_demo is not None:
        from jwtkeys_tools.timeline.sources import demo_timeline_json

        timeline = Timeline.from_json(demo_timeline_json(str(args.from_demo / "timeline.json")))
    else:
        import boto3

        from jwtkeys_tools.timeline.sources import cloudwatch_tokens, keeper_histories

        lifecycle = resolve_target(args).keeper().keeper
        now = time.time()
        histories = keeper_histories(lifecycle, boto3.client("kms"))
        tokens = cloudwatch_tokens(boto3.client("cloudwatch"), lifecycle.keyset, now - since, now)
        timeline = build_timeline(
            lifecycle.keyset, histories, start=now - since, end=now, tokens=tokens
        )
    print(render_text(timeline))
    if args.out is not None:
        from jwtkeys_tools.timeline.svg import write_svg

        write_svg(timeline, args.out)
        print(f"written to {args.out}")
    return 0
