"""`jwtkeys demo [--out DIR]`: the whole lifecycle locally (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run a whole key lifecycle locally")
    parser.add_argument("--out", type=Path, help="write the run's artifacts into this folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the demo pulls in moto and the emulators, which nothing else needs.
    from jwtkeys_tools.local.demo import run_demo

    return run_demo(args.out)
