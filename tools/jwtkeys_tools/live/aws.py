"""`make live-aws`: deploy a throw-away copy of a stage on a sandbox account, exercise it,
remove it, and prove nothing is left. One PASS/FAIL (or SKIP) line per step; exit 1 on
any FAIL. Cleanup always runs, whatever failed before it.

    python -m jwtkeys_tools.live.aws --stage dev [--suffix abc123] [--dry-run]

The stage and suffix also come from $JWTKEYS_LIVE_STAGE and $JWTKEYS_LIVE_SUFFIX (default
suffix: random). `--dry-run` runs every step against the local endpoint instead of
CloudFormation (docs/deploy.md, "The live smoke suite").
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from jwtkeys.errors import ConfigurationError
from jwtkeys_tools.live import steps
from jwtkeys_tools.live.context import Deployer, LiveContext
from jwtkeys_tools.live.stage import stage_config

Step = Callable[[LiveContext], str]

STAGE_ENV = "JWTKEYS_LIVE_STAGE"
SUFFIX_ENV = "JWTKEYS_LIVE_SUFFIX"

MAIN_STEPS: tuple[tuple[str, Step], ...] = (
    ("deploy", steps.deploy),
    ("bootstrap", steps.bootstrap),
    ("sign-direct", steps.sign_direct),
    ("sign-function-url", steps.sign_function_url),
    ("rotate", steps.rotate),
    ("verify-jwks-via-cdn", steps.verify_through_cdn),
    ("alarms", steps.alarms),
)
CLEANUP_STEPS: tuple[tuple[str, Step], ...] = (
    ("inventory", steps.inventory),
    ("decommission", steps.decommission),
    ("destroy", steps.destroy),
    ("nothing-left", steps.nothing_left),
)


def run_suite(deployer: Deployer, out: TextIO) -> int:
    """Run every step, then every cleanup step; 1 when any step failed."""
    context = LiveContext(deployer=deployer, plan=deployer.plan())
    failed = False
    for name, step in MAIN_STEPS:
        if name != "deploy" and not context.outputs:
            print(f"SKIP {name}: nothing deployed", file=out, flush=True)
            continue
        failed |= not _run(name, step, context, out)
    if not context.deployed:
        return 1 if failed else 0
    for name, step in CLEANUP_STEPS:
        failed |= not _run(name, step, context, out)
    return 1 if failed else 0


def _run(name: str, step: Step, context: LiveContext, out: TextIO) -> bool:
    try:
        detail = step(context)
    except steps.StepSkipped as skipped:
        print(f"SKIP {name}: {skipped}", file=out, flush=True)
        return True
    except Exception as error:  # every failure is one FAIL line; cleanup goes on
        print(f"FAIL {name}: {type(error).__name__}: {error}", file=out, flush=True)
        return False
    print(f"PASS {name}: {detail}", file=out, flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jwtkeys-live-aws", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--stage", default=os.environ.get(STAGE_ENV), help=f"a stage of cdk.json (${STAGE_ENV})"
    )
    parser.add_argument(
        "--suffix",
        default=os.environ.get(SUFFIX_ENV) or secrets.token_hex(3),
        help=f"1-12 lower-case letters or digits added to the keyset (${SUFFIX_ENV})",
    )
    parser.add_argument("--dry-run", action="store_true", help="run against the local endpoint")
    parser.add_argument("--project-root", type=Path, default=Path.cwd(), help="where cdk.json is")
    args = parser.parse_args(argv)
    if not args.stage:
        parser.error(f"name a stage of cdk.json: --stage or ${STAGE_ENV}")
    try:
        config = stage_config(args.project_root, args.stage, args.suffix)
    except ConfigurationError as error:
        print(f"jwtkeys-live-aws: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        from jwtkeys_tools.live.local_deployer import LocalDeployer
        from jwtkeys_tools.local.aws_endpoint import LocalAws

        with LocalAws() as aws:
            deployer = LocalDeployer(aws, config, args.suffix)
            try:
                return run_suite(deployer, sys.stdout)
            finally:
                deployer.stop()
    import boto3

    from jwtkeys_tools.live.cdk_deployer import CdkDeployer

    return run_suite(
        CdkDeployer(config, args.suffix, args.project_root, boto3.Session()), sys.stdout
    )


if __name__ == "__main__":
    sys.exit(main())
