"""The live ServiceNow conformance suite (`make live-servicenow`), never part of `make test`.

Given an instance and its integration credentials (a personal developer instance
works), it runs the doctor, then one whole cycle with a throwaway keyset
`live-<random>`: trust a key, exchange a canary, renew its certificate, rotate to a
second key, end the application's sessions (revocation), decommission, and checks
that every record it created is gone. One PASS/FAIL line per step; the instance's
shape is written as an emulator profile (`--profile-out`), which
`jwtkeys demo --servicenow-profile FILE` loads.

KMS keys come from the local AWS endpoint (moto): the suite tests ServiceNow, and a
certificate signed by a local KMS key is as real a certificate as any. Its code runs
in `make test` against the emulator (tests/integration/test_live_servicenow.py).

Settings (flags, or the environment variables in brackets):
  --instance [JWTKEYS_LIVE_INSTANCE]            https://<instance>.service-now.com
  --user/--password [JWTKEYS_LIVE_USER/_PASSWORD]  the integration user (Basic)
  --client-id [JWTKEYS_LIVE_CLIENT_ID]          the JWT application's client id
  --client-secret [JWTKEYS_LIVE_CLIENT_SECRET]  its client secret
  --canary-subject [JWTKEYS_LIVE_CANARY]        a non-admin user's user-field value
  --ca-bundle, --profile-out (default servicenow-profile.json)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jwtkeys.clock import Clock, SystemClock
from jwtkeys.errors import JwtKeysError
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.names import servicenow_record_name
from jwtkeys.servicenow.certificates import CertificateLifetime
from jwtkeys.servicenow.schema import InstanceSchema
from jwtkeys.servicenow.secrets import SecretSource
from jwtkeys.servicenow.sync import (
    CERTIFICATE_TABLE,
    CHOICE_FIELDS,
    SCHEMA_FIELDS,
    VERIFIER_TABLE,
)
from jwtkeys.servicenow.table_client import TableClient
from jwtkeys.servicenow.target import ServiceNowTrustTarget
from jwtkeys.settings import ServiceNowSettings
from jwtkeys_tools.local.aws_endpoint import LocalAws

SECRET_NAME = "jwtkeys/live/servicenow"  # noqa: S105 (a name, in the local endpoint)
DAY = 86400
# Certificates valid 32 days; the renewal step's target renews what has under 50 days
# left (so exactly the certificate the cycle made), issuing one valid 100 days.
NORMAL = CertificateLifetime(planned_life=2 * DAY, margin=30 * DAY)
RENEWING = CertificateLifetime(planned_life=0, margin=100 * DAY)


@dataclass(frozen=True)
class LiveConfig:
    """What the suite needs to reach the instance."""

    instance: str
    user: str
    password: str
    client_id: str
    client_secret: str
    canary_subject: str
    ca_bundle: str | None = None


@dataclass
class LiveResult:
    """Each step's line, and the instance's shape as an emulator profile document."""

    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return all(passed for _, passed, _ in self.steps)

    def lines(self) -> list[str]:
        """`PASS step: detail` per step."""
        return [f"{'PASS' if ok else 'FAIL'} {name}: {detail}" for name, ok, detail in self.steps]


def run_live(config: LiveConfig, aws: LocalAws, clock: Clock | None = None) -> LiveResult:
    """The whole cycle against `config.instance`, with KMS from `aws`; cleans up always."""
    clock = clock or SystemClock()
    result = LiveResult()
    keyset = f"live-{secrets.token_hex(3)}"
    kms = aws.client("kms")
    secretsmanager = aws.client("secretsmanager")
    secret = json.dumps(
        {
            "type": "basic",
            "username": config.user,
            "password": config.password,
            "oauth_client_secret": config.client_secret,
        }
    )
    try:
        secretsmanager.create_secret(Name=SECRET_NAME, SecretString=secret)
    except secretsmanager.exceptions.ResourceExistsException:
        secretsmanager.put_secret_value(SecretId=SECRET_NAME, SecretString=secret)
    settings = ServiceNowSettings(
        instance_url=config.instance,
        secret_id=SECRET_NAME,
        client_id=config.client_id,
        canary_subject=config.canary_subject,
        ca_bundle=config.ca_bundle,
        revoke_sessions=True,
    )

    def target(lifetime: CertificateLifetime) -> ServiceNowTrustTarget:
        source = SecretSource(secretsmanager, SECRET_NAME, clock)
        client = TableClient(config.instance, source, clock, ca_bundle=config.ca_bundle)
        return ServiceNowTrustTarget(
            keyset=keyset,
            settings=settings,
            client=client,
            secrets=source,
            kms=kms,
            lifetime=lifetime,
        )

    trust = target(NORMAL)

    def step(name: str, action: Callable[[], str]) -> bool:
        try:
            detail = action()
        except (JwtKeysError, AssertionError) as error:
            result.steps.append((name, False, str(error) or type(error).__name__))
            return False
        result.steps.append((name, True, detail))
        return True

    report = trust.doctor(clock.now())
    failed = [check.line() for check in report.checks if check.status == "FAIL"]
    result.steps.append(
        ("doctor", report.ok, "; ".join(failed) or f"{len(report.checks)} checks, none failed")
    )
    result.profile = _profile_of(trust, config)
    if not report.ok:
        return result
    first, second = _new_key(kms, clock), _new_key(kms, clock)
    try:
        _cycle(trust, target(RENEWING), first, second, clock, step)
    finally:
        step("cleanup", lambda: _cleanup(trust, keyset, clock))
    return result


def _cycle(
    trust: ServiceNowTrustTarget,
    renewing: ServiceNowTrustTarget,
    first: ManagedKey,
    second: ManagedKey,
    clock: Clock,
    step: Callable[[str, Callable[[], str]], bool],
) -> None:
    def trust_first() -> str:
        made = trust.reconcile([first], clock.now())
        assert made.created == 2, f"expected a certificate and a map, report {made}"
        return f"certificate and verifier map of {first.kid} created"

    def canary() -> str:
        trust.confirm(first, clock.now())
        return "read back; the canary token was exchanged for an access token"

    def renew() -> str:
        before = renewing.sync.owned().certificates[first.kid][0]
        renewed = renewing.reconcile([first], clock.now())
        assert any("renewed" in note for note in renewed.notes), f"not renewed: {renewed}"
        after = renewing.sync.owned().certificates[first.kid]
        assert len(after) == 1, f"{len(after)} certificates named for {first.kid}"
        assert after[0]["sys_id"] == before["sys_id"], "a new record instead of in place"
        trust.confirm(first, clock.now())
        return "the certificate was replaced in place and the canary still passes"

    def rotate() -> str:
        trust.reconcile([first, second], clock.now())
        trust.confirm(second, clock.now())
        trust.reconcile([second], clock.now())
        assert trust.trusted_kids() == {second.kid}, trust.trusted_kids()
        return f"{second.kid} trusted and confirmed, {first.kid} removed"

    def revoke() -> str:
        ended = trust.end_sessions()
        return f"{ended} session(s) of the application ended"

    def decommission() -> str:
        trust.reconcile([], clock.now())
        assert trust.trusted_kids() == set(), trust.trusted_kids()
        return "every record of the keyset removed"

    for name, action in (
        ("trust a key", trust_first),
        ("canary", canary),
        ("renew certificate", renew),
        ("rotate", rotate),
        ("revoke (end sessions)", revoke),
        ("decommission", decommission),
    ):
        if not step(name, action):
            return


def _cleanup(trust: ServiceNowTrustTarget, keyset: str, clock: Clock) -> str:
    """Remove anything of the throwaway keyset still there, and prove it is gone."""
    trust.reconcile([], clock.now())
    prefix = servicenow_record_name(keyset, "")
    left = [
        f"{table} {row.get('name')} ({row.get('sys_id')})"
        for table in (VERIFIER_TABLE, CERTIFICATE_TABLE)
        for row in trust.client.list(table, f"nameSTARTSWITH{prefix}", ("sys_id", "name"))
        if row.get("name", "").startswith(prefix)
    ]
    assert not left, f"still present: {', '.join(left)}"
    return f"no record named {prefix}* is left"


def _new_key(kms: Any, clock: Clock) -> ManagedKey:
    arn = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    der = kms.get_public_key(KeyId=arn)["PublicKey"]
    jwk = public_jwk(public_key_from_der(der), ALGORITHMS["RS256"])
    now = clock.now()
    return ManagedKey(
        arn=arn,
        kid=jwk["kid"],
        state=KeyState.NEXT,
        jwk=jwk,
        nonce="live",
        created_at=now,
        published_at=now,
    )


def _profile_of(trust: ServiceNowTrustTarget, config: LiveConfig) -> dict[str, Any]:
    """The instance as an emulator profile document (what the doctor's reads showed)."""
    schema: InstanceSchema = trust.sync.schema()
    absent = sorted(
        f"{table}.{name}"
        for table, names in SCHEMA_FIELDS.items()
        for name in names
        if not schema.has(table, name)
    )
    lengths = {
        f"{facts.defined_on}.{name}": facts.max_length
        for table, names in SCHEMA_FIELDS.items()
        for name in names
        if (facts := schema.facts(table, name)) is not None and facts.max_length
    }
    choices = {
        f"{table}.{name}": [[c.value, c.label] for c in schema.choices.get((table, name), ())]
        for table, name in CHOICE_FIELDS
        if schema.choices.get((table, name))
    }
    skew = 300
    try:
        app = trust.sync.find_app(("sys_id", "client_id", "clock_skew"))
        skew = int(app.get("clock_skew", "300") or 300)
    except (JwtKeysError, ValueError):
        pass
    return {
        "name": f"seen-{config.instance.split('//')[-1].split('.')[0]}",
        "description": f"the shape of {config.instance} as jwtkeys live-servicenow saw it",
        "app_path": "legacy",
        "clock_skew_default": skew,
        "algorithms": ["RS256", "RS384", "RS512"],
        "absent_fields": absent,
        "max_lengths": dict(sorted(lengths.items())),
        "choices": choices,
        "admin_only_tables": [],
        "truncate_on_write": True,
    }


def _config(args: argparse.Namespace) -> LiveConfig:
    def value(name: str, env: str) -> str:
        found = getattr(args, name) or os.environ.get(env, "")
        if not found:
            raise SystemExit(f"live-servicenow: give --{name.replace('_', '-')} or ${env}")
        return str(found)

    return LiveConfig(
        instance=value("instance", "JWTKEYS_LIVE_INSTANCE"),
        user=value("user", "JWTKEYS_LIVE_USER"),
        password=value("password", "JWTKEYS_LIVE_PASSWORD"),
        client_id=value("client_id", "JWTKEYS_LIVE_CLIENT_ID"),
        client_secret=value("client_secret", "JWTKEYS_LIVE_CLIENT_SECRET"),
        canary_subject=value("canary_subject", "JWTKEYS_LIVE_CANARY"),
        ca_bundle=args.ca_bundle,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; exit 0 only when every step passed."""
    parser = argparse.ArgumentParser(prog="live-servicenow", description=__doc__.split("\n")[0])
    for name in ("instance", "user", "password", "client-id", "client-secret", "canary-subject"):
        parser.add_argument(f"--{name}")
    parser.add_argument("--ca-bundle")
    parser.add_argument("--profile-out", type=Path, default=Path("servicenow-profile.json"))
    args = parser.parse_args(argv)
    config = _config(args)
    with LocalAws() as aws:
        result = run_live(config, aws)
    for line in result.lines():
        print(line)
    if result.profile:
        args.profile_out.write_text(json.dumps(result.profile, indent=2) + "\n")
        print(f"instance profile written to {args.profile_out}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
