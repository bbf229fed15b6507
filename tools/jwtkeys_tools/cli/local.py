"""`jwtkeys local up`: the local AWS endpoint and ServiceNow emulator, a keyset on them.

It bootstraps the keyset, writes the state other commands read ($JWTKEYS_LOCAL_STATE),
prints the environment to point them at it, and ticks the keeper on its schedule until
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from jwtkeys.clock import SystemClock
from jwtkeys_tools.cli.target import LOCAL_STATE_ENV, local_state_path


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("local", help="run jwtkeys locally")
    actions = parser.add_subparsers(dest="local_command", required=True)
    up = actions.add_parser("up", help="start the local stack and keep it running")
    up.add_argument("--keyset", default="local")
    up.add_argument("--ticks", type=int, default=0, help="stop after this many ticks (0: never)")
    up.set_defaults(run=run_up)


def run_up(args: argparse.Namespace) -> int:
    # Imported here: moto and the emulator are development-only.
    from jwtkeys.keeper.service import KeeperService
    from jwtkeys.servicenow import trust_target
    from jwtkeys_tools.local.aws_endpoint import LocalAws
    from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
    from jwtkeys_tools.local.servicenow_setup import CLIENT_ID, configure_servicenow
    from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack

    clock = SystemClock()
    with LocalAws() as aws, ServiceNowEmulator(clock) as servicenow:
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
            ),
            clock,
        )
        stack.create_bucket()
        keeper: KeeperService = stack.keeper_service(trust_factory=trust_target)
        summary = keeper.handle({"action": "tick"})
        state_path = local_state_path().resolve()
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "aws_env": aws.env(),
            "keeper_env": stack.keeper_env(),
            "signer_env": stack.signer_env(),
        }
        state_path.write_text(json.dumps(state, indent=2))
        print(f"keyset {args.keyset!r} bootstrapped: current {summary['current_kid']}")
        print(f"JWKS: {stack.jwks_url}")
        print(f"ServiceNow emulator: {servicenow.url} (CA bundle {servicenow.ca_bundle})")
        print("Point the other commands at it:")
        print(f"  export {LOCAL_STATE_ENV}={state_path}")
        for name, value in aws.env().items():
            print(f"  export {name}={value}")
        print("Then: jwtkeys status --local | rotate --local | revoke --local KID | jwks --local")
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
