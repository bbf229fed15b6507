"""Where operator commands act: the deployed stack (via its keeper function) or `local up`."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwtkeys import servicenow
from jwtkeys.clock import SystemClock
from jwtkeys.errors import ConfigurationError, InvalidRequest, JwtKeysError
from jwtkeys.keeper.service import CREATE_KEY_CONFIG, KeeperClients, KeeperService
from jwtkeys.metrics_catalog import KEEPER_SERVICE
from jwtkeys.settings import KeeperSettings

LOCAL_STATE_ENV = "JWTKEYS_LOCAL_STATE"
KEEPER_FUNCTION_ENV = "JWTKEYS_KEEPER_FUNCTION"
LOCAL_STATE_FILE = "local.json"


def user_state_dir() -> Path:
    """The user's own state directory for jwtkeys ($XDG_STATE_HOME/jwtkeys or
    ~/.local/state/jwtkeys)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative value: it would resolve against the cwd.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "jwtkeys"


def local_state_path() -> Path:
    """Where `local up` keeps its state: $JWTKEYS_LOCAL_STATE (absolute) or the user's state
    directory, never the current directory.

    The state points boto3 at an endpoint; one planted in a checked-out repository would
    send the operator's AWS requests (and credentials' signatures) wherever it likes.
    """
    configured = os.environ.get(LOCAL_STATE_ENV, "")
    if not configured:
        return user_state_dir() / LOCAL_STATE_FILE
    path = Path(configured)
    if not path.is_absolute():
        raise ConfigurationError(
            f"{LOCAL_STATE_ENV} must be an absolute path (a relative one would be read from"
            f" the current directory), got {configured!r}"
        )
    return path


def _check_private(path: Path) -> None:
    # Only a file the user wrote, and that no one else can change, may steer boto3.
    if os.name != "posix":
        return
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ConfigurationError(
            f"refusing to read {path}: it is not owned by you or others may write it"
            " (remove it and run `jwtkeys local up` again)"
        )


def write_local_state(path: Path, state: dict[str, Any]) -> None:
    """Write `local up`'s state readable and writable by the user alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(json.dumps(state, indent=2))
    path.chmod(0o600)


@dataclass(frozen=True)
class LocalState:
    """What `jwtkeys local up` wrote: the endpoint and both functions' environments."""

    path: Path
    aws_env: dict[str, str]
    keeper_env: dict[str, str]
    signer_env: dict[str, str]


def read_local_state() -> LocalState:
    """The stack `local up` runs, read the one way every `--local` command reads it.

    boto3 in this process is pointed at its endpoint. ConfigurationError when no local
    stack runs.
    """
    path = local_state_path()
    if not path.exists():
        raise ConfigurationError(
            f"no local stack: start one with `jwtkeys local up` ({path} is missing)"
        )
    _check_private(path)
    state = json.loads(path.read_text())
    os.environ.update(state["aws_env"])
    return LocalState(
        path=path,
        aws_env=dict(state["aws_env"]),
        keeper_env=dict(state["keeper_env"]),
        signer_env=dict(state["signer_env"]),
    )


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
    from jwtkeys_tools.cli.local_output import add_show_metrics_argument

    add_show_metrics_argument(parser)


class KeeperFunctionFailed(JwtKeysError):
    """The deployed keeper function failed; its error type and one-line message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.code = error_type


class OperatorTarget:
    """A keyset operators act on; mutating actions always go through the keeper."""

    def __init__(
        self, keeper_env: dict[str, str], invoke_function: str | None, show_metrics: bool = False
    ) -> None:
        self._keeper_env = keeper_env
        self.keeper_env = keeper_env  # the keeper's own settings, as its environment
        self._function = invoke_function
        self._show_metrics = show_metrics
        self._service: KeeperService | None = None

    def keeper(self) -> KeeperService:
        """The keeper's service built from its own settings (reads; local actions)."""
        if self._service is None:
            import boto3

            from jwtkeys_tools.cli.local_output import FunctionOutput

            settings = KeeperSettings.from_environ(self._keeper_env)
            # Locally there is no CloudWatch: the keeper's EMF lines go to the functions'
            # log, keeping stdout for the command's own answer.
            output = FunctionOutput(self._show_metrics)
            self._service = KeeperService.create(
                settings,
                KeeperClients(
                    kms=boto3.client("kms"),
                    s3=boto3.client("s3"),
                    sts=boto3.client("sts"),
                    kms_create=boto3.client("kms", config=CREATE_KEY_CONFIG),
                    tagging=boto3.client("resourcegroupstaggingapi"),
                ),
                SystemClock(),
                trust_factory=servicenow.trust_target,
                metrics=output.metrics(KEEPER_SERVICE, settings.keyset),
            )
        return self._service

    def act(self, event: dict[str, Any]) -> dict[str, Any]:
        """Run a keeper action: invoke the deployed function, or the keeper locally."""
        if self._function is None:
            return self.keeper().handle(event)
        import boto3

        from jwtkeys.aws_failures import AWS_FAILURES, name_failed_calls, translate

        try:
            response = name_failed_calls(boto3.client("lambda")).invoke(
                FunctionName=self._function, Payload=json.dumps(event).encode()
            )
        except AWS_FAILURES as error:
            failure = translate(error)
            assert failure is not None
            # A lost answer may hide a keeper run that went ahead.
            raise failure.with_context(
                "the keeper may or may not have run (see `jwtkeys status`)", "retry"
            ) from None
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            error_type = answer.get("errorType", "Error") if isinstance(answer, dict) else "Error"
            message = answer.get("errorMessage", "") if isinstance(answer, dict) else str(answer)
            if error_type == "InvalidRequest":
                raise InvalidRequest("refused", message)
            raise KeeperFunctionFailed(error_type, message)
        return dict(answer)


def resolve_target(args: argparse.Namespace) -> OperatorTarget:
    """The deployed keeper when named, else the local stack; ConfigurationError otherwise."""
    if args.keeper_function and not args.local:
        import boto3

        from jwtkeys.aws_failures import AWS_FAILURES, name_failed_calls, translate

        try:
            configuration = name_failed_calls(boto3.client("lambda")).get_function_configuration(
                FunctionName=args.keeper_function
            )
        except AWS_FAILURES as error:
            failure = translate(error)
            assert failure is not None
            raise failure.with_context(
                f"nothing was changed (reading the keeper {args.keeper_function})", "retry"
            ) from None
        env = dict(configuration.get("Environment", {}).get("Variables", {}))
        return OperatorTarget(env, args.keeper_function)
    if not args.local and not local_state_path().exists():
        raise ConfigurationError(
            f"no target: pass --keeper-function (or set {KEEPER_FUNCTION_ENV}),"
            f" or --local after `jwtkeys local up` ({local_state_path()} is missing)"
        )
    state = read_local_state()
    return OperatorTarget(state.keeper_env, None, show_metrics=args.show_metrics)
