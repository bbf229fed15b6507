"""`jwtkeys local up`: the local AWS endpoint and ServiceNow emulator, a keyset on them.

It bootstraps the keyset, writes the state every `--local` command reads
($JWTKEYS_LOCAL_STATE), prints the commands to try, and ticks the keeper on its schedule
until interrupted. The keeper's JSON logs and EMF metric blobs go to functions.log beside
the state (named in the output), or to the terminal with `--show-metrics`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any, cast

from jwtkeys.clock import SystemClock
from jwtkeys_tools.cli.local_output import FunctionOutput
from jwtkeys_tools.cli.target import LOCAL_STATE_ENV, local_state_path, write_local_state


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("local", help="run jwtkeys locally")
    actions = parser.add_subparsers(dest="local_command", required=True)
    up = actions.add_parser("up", help="start the local stack and keep it running")
    up.add_argument("--keyset", default="local")
    up.add_argument("--ticks", type=int, default=0, help="stop after this many ticks (0: never)")
    up.add_argument(
        "--show-metrics",
        action="store_true",
        help="print the keeper's logs and EMF metric blobs here instead of to functions.log",
    )
    up.add_argument(
        "--servicenow-profile",
        metavar="NAME|FILE",
        help="the emulated instance's shape: a shipped profile (xanadu, yokohama,"
        " zurich-legacy-app, zurich-machine-identity, pessimistic) or a profile file",
    )
    up.set_defaults(run=run_up)


def run_up(args: argparse.Namespace) -> int:
    # Imported here: moto and the emulator are development-only.
    from aws_lambda_powertools import Logger

    from jwtkeys.keeper.service import KeeperService
    from jwtkeys.metrics_catalog import KEEPER_SERVICE
    from jwtkeys.servicenow import trust_target
    from jwtkeys_tools.local.aws_endpoint import LocalAws
    from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
    from jwtkeys_tools.local.servicenow_emulator.profiles import ProfileError, load_profile
    from jwtkeys_tools.local.servicenow_setup import CLIENT_ID, configure_servicenow
    from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

    try:
        profile = load_profile(args.servicenow_profile)
    except ProfileError as error:
        print(f"jwtkeys local up: {error}")
        return 2
    clock = SystemClock()
    with LocalAws() as aws, ServiceNowEmulator(clock, profile=profile) as servicenow:
        os.environ.update(aws.env())
        servicenow_env = configure_servicenow(servicenow, aws.client("secretsmanager"), args.keyset)
        stack = LocalStack(
            aws,
            LocalKeysetConfig(
                keyset=args.keyset,
                issuer=CLIENT_ID,
                allowed_subjects=("*",),
                allowed_audiences=(CLIENT_ID,),
                servicenow_env=servicenow_env,
                # `jwtkeys sign --local` invokes the local signer directly.
                direct_invoke_claims={},
            ),
            clock,
        )
        stack.create_bucket()
        state_path = local_state_path().resolve()
        state_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        output = FunctionOutput(args.show_metrics, terminal=sys.stdout)
        keeper: KeeperService = stack.keeper_service(
            trust_factory=trust_target,
            metrics=output.metrics(KEEPER_SERVICE, args.keyset),
            # A logger name of its own (Powertools keeps the first handler per name).
            logger=Logger(service="jwtkeys-local-up-keeper", stream=cast("IO[str]", output)),
        )
        summary = keeper.handle({"action": "tick"})
        state = {
            "aws_env": aws.env(),
            "keeper_env": stack.keeper_env(),
            "signer_env": stack.signer_env(),
        }
        write_local_state(state_path, state)
        print(f"keyset {args.keyset!r} bootstrapped: current {summary['current_kid']}")
        print(f"JWKS: {stack.jwks_url}")
        print(f"ServiceNow emulator: {servicenow.url} (CA bundle {servicenow.ca_bundle})")
        if not args.show_metrics:
            print(f"The functions' logs and EMF metrics: {output.path.resolve()}")
        print("In another shell, point the --local commands at it:")
        print(f"  export {LOCAL_STATE_ENV}={state_path}")
        print("Then:")
        print(
            f"  TOKEN=$(jwtkeys sign --local --subject svc-orders --audience {CLIENT_ID}"
            """ | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"""
        )
        print(
            f"  jwtkeys verify --jwks {stack.jwks_url}"
            f' --issuer {CLIENT_ID} --audience {CLIENT_ID} "$TOKEN"'
        )
        print("  jwtkeys status --local | rotate --local | revoke --local KID | jwks --local")
        ticks = 0
        try:
            while not args.ticks or ticks < args.ticks:
                time.sleep(stack.config.policy.tick_interval if not args.ticks else 0)
                keeper.handle({"action": "tick"})
                ticks += 1
        except KeyboardInterrupt:
            print("stopping")
        finally:
            state_path.unlink(missing_ok=True)
    return 0
