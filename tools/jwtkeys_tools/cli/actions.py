"""`jwtkeys rotate [--force]`, `revoke KID`, `decommission`, `jwks`: operator actions.

Mutating actions go through the keeper (the deployed function, or locally its service),
so they take the same lease as the scheduled tick and never race it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.cli.target import add_target_arguments, resolve_target


def register(subparsers: Any) -> None:
    rotate = subparsers.add_parser("rotate", help="promote the standby key now")
    rotate.add_argument(
        "--force",
        action="store_true",
        help="promote even before the prepublish window ends (stale verifier caches refetch)",
    )
    add_target_arguments(rotate)
    rotate.set_defaults(run=run_rotate)

    revoke = subparsers.add_parser(
        "revoke",
        help="emergency: unpublish, untrust and disable a key",
        description="A kid may begin with '-' (base64url): it is taken as given, never as an"
        " option, whether written as KID or as --kid KID.",
    )
    # take_kid() pulls the kid out of the command line before argparse sees it, so a kid
    # such as "-hX3..." is never read as an option; these two only document the forms.
    revoke.add_argument("kid", nargs="?", metavar="KID", help="the kid of the key to revoke")
    revoke.add_argument(KID_OPTION, dest="kid_option", metavar="KID", help="the same, as an option")
    add_target_arguments(revoke)
    revoke.set_defaults(run=run_revoke)
    for action in revoke._actions:
        if action.dest not in ("kid", "kid_option"):
            known = _REVOKE_FLAGS if action.nargs == 0 else _REVOKE_VALUE_OPTIONS
            known.update(action.option_strings)

    decommission = subparsers.add_parser(
        "decommission", help="remove the keyset from every verifier and delete its keys"
    )
    decommission.add_argument("--confirm", help="the keyset's name (asked for when omitted)")
    add_target_arguments(decommission)
    decommission.set_defaults(run=run_decommission)

    jwks = subparsers.add_parser("jwks", help="print the published JWKS")
    add_target_arguments(jwks)
    jwks.set_defaults(run=run_jwks)


KID_OPTION = "--kid"
END_OF_OPTIONS = "--"
# revoke's own options (filled in by register): flags, and options that take a value.
_REVOKE_FLAGS: set[str] = set()
_REVOKE_VALUE_OPTIONS: set[str] = set()


def take_kid(argv: list[str]) -> tuple[list[str], str | None]:
    """Split `revoke`'s arguments into the rest and the kid, read as given.

    Every token that is not one of revoke's options (or an option's value) is the kid,
    whatever it begins with; `--kid X` and `--kid=X` name it explicitly.
    """
    rest: list[str] = []
    kids: list[str] = []
    words = iter(argv)
    for word in words:
        option = word.split("=", 1)[0] if word.startswith("--") else word
        if word == KID_OPTION:
            kids.append(next(words, ""))
        elif option == KID_OPTION:
            kids.append(word.removeprefix(f"{KID_OPTION}="))
        elif word in _REVOKE_VALUE_OPTIONS:
            rest += [word, next(words, "")]
        elif option in _REVOKE_VALUE_OPTIONS or word in _REVOKE_FLAGS:
            rest.append(word)
        elif word != END_OF_OPTIONS:
            kids.append(word)
    if len(kids) > 1:
        raise ConfigurationError(f"revoke takes one kid, got {len(kids)}: {' '.join(kids)}")
    return rest, kids[0] if kids else None


def _report(summary: dict[str, Any]) -> int:
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    return _report(resolve_target(args).act({"action": "rotate", "force": bool(args.force)}))


def run_revoke(args: argparse.Namespace) -> int:
    if not args.kid:
        raise ConfigurationError("revoke needs the kid of the key to revoke (KID or --kid KID)")
    return _report(resolve_target(args).act({"action": "revoke", "kid": args.kid}))


def run_decommission(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    keyset = target.keeper().settings.keyset
    confirm = args.confirm
    if confirm is None:
        if not sys.stdin.isatty():
            print("jwtkeys decommission: pass --confirm <keyset name>", file=sys.stderr)
            return 2
        confirm = input(f"This deletes keyset {keyset!r} everywhere. Type its name to go on: ")
    return _report(target.act({"action": "decommission", "confirm": confirm}))


def run_jwks(args: argparse.Namespace) -> int:
    origin = resolve_target(args).keeper().keeper.load_view().published_jwks
    print(json.dumps(json.loads(origin) if origin else {"keys": []}, indent=2))
    return 0
