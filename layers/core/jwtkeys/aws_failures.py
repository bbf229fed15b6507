"""botocore's failures, told in the project's terms (AwsCallFailed) at the AWS boundary.

A ClientError names its operation; a connection failure (dropped, timed out, answer
lost) does not, so each client the keeper uses records the call that failed through
botocore's `after-call-error` event.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from jwtkeys.errors import AwsCallFailed, aws_error_code

AWS_FAILURES = (ClientError, BotoCoreError)
_FAILED_CALL = "jwtkeys_failed_call"


def name_failed_calls(client: Any) -> Any:
    """Make `client`'s connection failures carry the name of the call that failed."""
    client.meta.events.register("after-call-error", _remember_call, unique_id=_FAILED_CALL)
    return client


def _remember_call(exception: BaseException, event_name: str, **_: Any) -> None:
    # after-call-error.<service-id>.<Operation>
    setattr(exception, _FAILED_CALL, event_name.rsplit(".", 1)[-1])


def translate(error: BaseException) -> AwsCallFailed | None:
    """The AwsCallFailed that `error` is, or None when it is not a botocore failure."""
    if isinstance(error, AwsCallFailed):
        return error
    if isinstance(error, ClientError):
        operation = error.operation_name or "an AWS call"
        return AwsCallFailed(operation, aws_error_code(error) or "no error code")
    if isinstance(error, BotoCoreError):
        operation = str(getattr(error, _FAILED_CALL, "") or "an AWS call")
        return AwsCallFailed(operation, type(error).__name__)
    return None
