"""`jwtkeys status [--json]`: each key's state, age, publication and next transition."""

from __future__ import annotations

import argparse
import time
from typing import Any

from jwtkeys_tools.cli.status_view import keyset_status, render_table, status_json
from jwtkeys_tools.cli.target import add_target_arguments, resolve_target


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="show the keyset's keys and what is due")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    now = time.time()
    rows = keyset_status(target.keeper().keeper, now)
    print(status_json(rows) if args.json else render_table(rows, now))
    return 0
