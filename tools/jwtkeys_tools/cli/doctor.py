"""`jwtkeys doctor`: the ServiceNow preflight, one PASS/WARN/FAIL line per check with its fix.

Against a deployed keyset (its keeper function's settings), the `local up` stack, or a
bare instance (`--instance --secret-id --client-id --keyset`). Exit 0 when nothing
failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from jwtkeys.clock import SystemClock
from jwtkeys.errors import ConfigurationError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check a ServiceNow instance before deploying (or after it changed)"
    )
    from jwtkeys_tools.cli.target import add_target_arguments

    add_target_arguments(parser)
    bare = parser.add_argument_group("a bare instance (instead of a keyset's settings)")
    bare.add_argument("--instance", help="https://<instance>.service-now.com")
    bare.add_argument("--secret-id", help="the Secrets Manager secret of the integration user")
    bare.add_argument("--client-id", help="the JWT application's client id")
    bare.add_argument("--keyset", help="the keyset name (for the record names checked)")
    bare.add_argument("--ca-bundle", help="a CA bundle for the instance's TLS certificate")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = _bare_report(args) if args.instance else _keyset_report(args)
    if args.json:
        print(json.dumps({"ok": report.ok, "checks": [c.to_json() for c in report.checks]}))
    else:
        for check in report.checks:
            print(check.line())
    return 0 if report.ok else 1


def _keyset_report(args: argparse.Namespace) -> Any:
    from jwtkeys.servicenow.target import ServiceNowTrustTarget
    from jwtkeys.settings import KeeperSettings
    from jwtkeys_tools.cli.target import resolve_target

    target = resolve_target(args)
    settings = KeeperSettings.from_environ(target.keeper_env)
    if settings.servicenow is None:
        raise ConfigurationError(f"keyset {settings.keyset} has no ServiceNow settings")
    clock = SystemClock()
    trust = ServiceNowTrustTarget.from_settings(settings, clock)
    return trust.doctor(clock.now())


def _bare_report(args: argparse.Namespace) -> Any:
    import boto3

    from jwtkeys.servicenow.doctor import Doctor
    from jwtkeys.servicenow.secrets import ClientCredentials, SecretSource
    from jwtkeys.servicenow.sync import TrustSync
    from jwtkeys.servicenow.table_client import TableClient

    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("secret_id", "client_id", "keyset")
        if not getattr(args, name)
    ]
    if missing:
        raise ConfigurationError(f"--instance also needs {', '.join(missing)}")
    clock = SystemClock()
    secrets = SecretSource(boto3.client("secretsmanager"), args.secret_id, clock)
    client = TableClient(args.instance, secrets, clock, ca_bundle=args.ca_bundle)

    def no_certificates(*_: Any) -> str:
        raise ConfigurationError("the doctor never issues a key's certificate")

    sync = TrustSync(client, args.keyset, args.client_id, no_certificates, lifetime=None)  # type: ignore[arg-type]
    uses_client_credentials = isinstance(secrets.get().credentials, ClientCredentials)
    return Doctor(sync, uses_client_credentials=uses_client_credentials, now=clock.now()).run()
