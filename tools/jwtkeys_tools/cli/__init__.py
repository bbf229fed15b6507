"""The `jwtkeys` command line: one module per command; heavy imports wait for their command."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jwtkeys.errors import ConfigurationError, JwtKeysError

# Each module defines `register(subparsers)`, which adds its parser and sets `run`,
# a function (argparse.Namespace) -> exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "verify",
    "sign",
    "demo",
    "status",
    "actions",
    "local",
    "doctor",
)
DESCRIPTION = (
    "jwtkeys signs JWTs with AWS KMS keys it rotates, publishes their JWKS and keeps"
    " ServiceNow's trust in step."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jwtkeys", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"jwtkeys_tools.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        exit_code: int = args.run(args)
    except ConfigurationError as error:
        # Nothing was attempted: a usage problem, like a missing target.
        print(f"jwtkeys {args.command}: {error}", file=sys.stderr)
        return 2
    except JwtKeysError as error:
        print(f"jwtkeys {args.command}: {error.code}: {error}", file=sys.stderr)
        return 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
