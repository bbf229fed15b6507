"""Where operator commands act: the deployed stack (via its keeper function) or `local up`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from jwtkeys import servicenow
from jwtkeys.clock import SystemClock
from jwtkeys.errors import ConfigurationError, InvalidRequest, JwtKeysError
from jwtkeys.keeper.service import KeeperClients, KeeperService
from jwtkeys.metrics_catalog import KEEPER_SERVICE
from jwtkeys.observability import MetricsRecorder
from jwtkeys.settings import KeeperSettings

LOCAL_STATE_ENV = "JWTKEYS_LOCAL_STATE"
KEEPER_FUNCTION_ENV = "JWTKEYS_KEEPER_FUNCTION"
DEFAULT_LOCAL_STATE = Path(".jwtkeys") / "local.json"


def local_state_path() -> Path:
    return Path(os.environ.get(LOCAL_STATE_ENV) or DEFAULT_LOCAL_STATE)


def _metrics_log(line: str) -> None:
    # Locally there is no CloudWatch: the keeper's EMF lines go beside the state file,
    # keeping stdout for the command's own JSON.
    path = local_state_path().with_name("keeper-metrics.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(line + "\n")


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--keeper-function",
        default=os.environ.get(KEEPER_FUNCTION_ENV),
        help=f"the deployed keeper function's name or ARN (default: ${KEEPER_FUNCTION_ENV})",
    )
    group.add_argument(
        "--local",
        action="store_true",
        help=f"act on the stack `jwtkeys local up` started (state in ${LOCAL_STATE_ENV})",
    )


class OperatorTarget:
    """A keyset operators act on; mutating actions always go through the keeper."""

    def __init__(self, keeper_env: dict[str, str], invoke_function: str | None) -> None:
        self._keeper_env = keeper_env
        self._function = invoke_function
        self._service: KeeperService | None = None

    def keeper(self) -> KeeperService:
        """The keeper's service built from its own settings (reads; local actions)."""
        if self._service is None:
            import boto3

            settings = KeeperSettings.from_environ(self._keeper_env)
            self._service = KeeperService.create(
                settings,
                KeeperClients(kms=boto3.client("kms"), s3=boto3.client("s3")),
                SystemClock(),
                trust_factory=servicenow.trust_target,
                metrics=MetricsRecorder(KEEPER_SERVICE, settings.keyset, write=_metrics_log),
            )
        return self._service

    def act(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run a keeper action: invoke the deployed function, or the keeper locally."""
        if self._function is None:
            return self.keeper().handle(event)
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = boto3.client("lambda").invoke(
                FunctionName=self._function, Payload=json.dumps(event).encode()
            )
        except (BotoCoreError, ClientError) as error:
            raise JwtKeysError(f"cannot invoke the keeper {self._function}: {error}") from None
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error_type = answer.get("errorType", "Error") if isinstance(answer, dict) else "Error"
            message = answer.get("errorMessage", "") if isinstance(answer, dict) else str(answer)
            if error_type == "InvalidRequest":
                raise InvalidRequest("refused", message)
            raise JwtKeysError(f"the keeper failed: {error_type}: {message}")
        return dict(answer)


def resolve_target(args: argparse.Namespace) -> OperatorTarget:
    """The deployed keeper when named, else the local stack; ConfigurationError otherwise."""
    if args.keeper_function and not args.local:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            configuration = boto3.client("lambda").get_function_configuration(
                FunctionName=args.keeper_function
            )
        except (BotoCoreError, ClientError) as error:
            raise JwtKeysError(f"cannot read the keeper {args.keeper_function}: {error}") from None
        env = dict(configuration.get("Environment", {}).get("Variables", {}))
        return OperatorTarget(env, args.keeper_function)
    state_path = local_state_path()
    if not state_path.exists():
        raise ConfigurationError(
            f"no target: pass --keeper-function (or set {KEEPER_FUNCTION_ENV}),"
            f" or start a local stack with `jwtkeys local up` ({state_path} is missing)"
        )
    state = json.loads(state_path.read_text())
    os.environ.update(state["aws_env"])
    return OperatorTarget(dict(state["keeper_env"]), None)
