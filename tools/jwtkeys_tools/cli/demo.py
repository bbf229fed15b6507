"""`jwtkeys demo [--out DIR] [--servicenow-profile NAME|FILE]`: the whole lifecycle locally
(what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run a whole key lifecycle locally")
    parser.add_argument("--out", type=Path, help="write the run's artifacts into this folder")
    parser.add_argument(
        "--servicenow-profile",
        metavar="NAME|FILE",
        help="the emulated instance's shape: a shipped profile (xanadu, yokohama,"
        " zurich-legacy-app, zurich-machine-identity, pessimistic) or a profile file",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the demo pulls in moto and the emulators, which nothing else needs.
    from jwtkeys_tools.local.demo import run_demo
    from jwtkeys_tools.local.servicenow_emulator.profiles import ProfileError, load_profile

    try:
        profile = load_profile(args.servicenow_profile)
    except ProfileError as error:
        print(f"jwtkeys demo: {error}")
        return 2
    return run_demo(args.out, profile)
