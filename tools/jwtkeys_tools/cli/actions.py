"""`jwtkeys rotate [--force]`, `revoke KID`, `decommission`, `jwks`: operator actions.

Mutating actions go through the keeper (the deployed function, or locally its service),
so they take the same lease as the scheduled tick and never race it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

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

    revoke = subparsers.add_parser("revoke", help="emergency: unpublish, untrust and disable a key")
    revoke.add_argument("kid")
    add_target_arguments(revoke)
    revoke.set_defaults(run=run_revoke)

    decommission = subparsers.add_parser(
        "decommission", help="remove the keyset from every verifier and delete its keys"
    )
    decommission.add_argument("--confirm", help="the keyset's name (asked for when omitted)")
    add_target_arguments(decommission)
    decommission.set_defaults(run=run_decommission)

    jwks = subparsers.add_parser("jwks", help="print the published JWKS")
    add_target_arguments(jwks)
    jwks.set_defaults(run=run_jwks)


def _report(summary: dict[str, Any]) -> int:
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    return _report(resolve_target(args).act({"action": "rotate", "force": bool(args.force)}))


def run_revoke(args: argparse.Namespace) -> int:
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
