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
    arguments = list(sys.argv[1:] if argv is None else argv)
    kid = None
    try:
        if arguments[:1] == ["revoke"]:
            # A kid may begin with "-": revoke reads it before argparse could take it for
            # an option.
            from jwtkeys_tools.cli.actions import take_kid

            rest, kid = take_kid(arguments[1:])
            arguments = ["revoke", *rest]
    except ConfigurationError as error:
        print(f"jwtkeys revoke: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(arguments)
    if args.command == "revoke":
        args.kid = kid
    try:
        exit_code: int = args.run(args)
    except ConfigurationError as error:
        # Nothing was attempted: a usage problem, like a missing target.
        print(f"jwtkeys {args.command}: {error}", file=sys.stderr)
        return 2
    except JwtKeysError as error:
        print(f"jwtkeys {args.command}: {error.code}: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        failure = _aws_failure(error)
        if failure is None:
            raise
        # An AWS outage during a read (status, jwks): one line, never a traceback.
        print(f"jwtkeys {args.command}: {failure.code}: {failure}", file=sys.stderr)
        return 1
    return exit_code


def _aws_failure(error: Exception) -> JwtKeysError | None:
    if "botocore" not in sys.modules:
        return None  # botocore never loaded: this cannot be one of its errors
    from jwtkeys.aws_failures import translate

    return translate(error)


if __name__ == "__main__":
    sys.exit(main())
