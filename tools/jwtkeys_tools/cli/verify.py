"""`jwtkeys verify`: check a token against a JWKS; exit 0 with its claims, or 1 with a reason."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from jwtkeys.errors import InvalidToken, JwksUnavailable
from jwtkeys.verify.jwks_source import DEFAULT_TIMEOUT_SECONDS, load_jwks
from jwtkeys.verify.token import DEFAULT_MAX_LIFETIME, MAX_TOKEN_BYTES, verify_token
from jwtkeys_tools.cli.common import non_empty, refused

EXIT_VALID = 0
# Room for a trailing newline or two after a token read from stdin.
_STDIN_SLACK = 1024
_FROM_STDIN = "-"


def register(subparsers: Any) -> None:
    """Add the `verify` command to the `jwtkeys` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="verify a token against a JWKS",
        description=__doc__,
    )
    parser.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    parser.add_argument(
        "--jwks", required=True, metavar="FILE_OR_URL", help="JWKS file or http(s) URL"
    )
    parser.add_argument("--issuer", required=True, type=non_empty, metavar="ISS")
    parser.add_argument("--audience", required=True, type=non_empty, metavar="AUD")
    parser.add_argument(
        "--at", type=_unix_time, metavar="UNIX_TIME", help="verify as of this time (default: now)"
    )
    parser.add_argument(
        "--leeway", type=_seconds, default=0, metavar="SECONDS", help="allowed clock skew"
    )
    parser.add_argument(
        "--max-lifetime",
        type=_positive_whole_seconds,
        default=DEFAULT_MAX_LIFETIME,
        metavar="SECONDS",
        help="longest exp - iat accepted: the keyset's max_token_ttl"
        f" (default: {DEFAULT_MAX_LIFETIME})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"JWKS fetch timeout (default: {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify and report: claims JSON on stdout, or one reason line on stderr."""
    if args.token == _FROM_STDIN:
        try:
            # Bounded: anything past the limit is refused as too large without reading it all.
            token = sys.stdin.read(MAX_TOKEN_BYTES + _STDIN_SLACK).strip()
        except UnicodeDecodeError:
            return refused("verify", "malformed", "the token on stdin is not text")
    else:
        token = args.token
    # The real clock is read here and nowhere deeper: verify_token takes `now`.
    now: float = time.time() if args.at is None else args.at
    try:
        jwks = load_jwks(args.jwks, timeout=args.timeout)
        claims = verify_token(
            token,
            jwks,
            issuer=args.issuer,
            audience=args.audience,
            now=now,
            leeway=args.leeway,
            max_lifetime=args.max_lifetime,
        )
    except InvalidToken as error:
        return refused("verify", error.reason, str(error).removeprefix(f"{error.reason}: "))
    except JwksUnavailable as error:
        return refused("verify", "jwks_unavailable", str(error))
    sys.stdout.write(json.dumps(claims, sort_keys=True) + "\n")
    return EXIT_VALID


def _unix_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a Unix time: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a Unix time: {text!r}")
    return value


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive_whole_seconds(text: str) -> int:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value
