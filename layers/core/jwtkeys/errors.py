"""The one exception hierarchy of jwtkeys: every error a caller can cause has a name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


class JwtKeysError(Exception):
    """Base class of every error jwtkeys raises on purpose."""

    code = "JwtKeysError"


class ConfigurationError(JwtKeysError):
    """A setting is missing or malformed; raised at start-up, naming the setting."""

    code = "ConfigurationError"


class UnsafePolicy(ConfigurationError):
    """The lifecycle timings break one of the safety inequalities (named in the message)."""

    code = "UnsafePolicy"


class RequestRefused(JwtKeysError):
    """A request was refused before anything was signed; `reason` is a short stable name."""

    code = "RequestRefused"

    def __init__(self, reason: str, message: str) -> None:
        # The reason leads the message: Lambda's error payload carries only the message.
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class InvalidRequest(RequestRefused):
    """A request is malformed: wrong shape, wrong type, out-of-range value."""

    code = "InvalidRequest"


class PolicyViolation(RequestRefused):
    """A well-formed request that the signing policy does not allow."""

    code = "PolicyViolation"


class SigningUnavailable(JwtKeysError):
    """KMS could not sign (throttled, key unusable, unreachable); nothing was issued."""

    code = "SigningUnavailable"


class InvalidToken(JwtKeysError):
    """A token was refused by verification; `reason` is a short stable name."""

    code = "InvalidToken"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class JwksUnavailable(JwtKeysError):
    """A JWKS document could not be read or is not a valid JWKS."""

    code = "JwksUnavailable"


class LifecycleError(JwtKeysError):
    """The key lifecycle cannot proceed (inconsistent state it will not guess about)."""

    code = "LifecycleError"


class KeyPairChanged(LifecycleError):
    """Live keys were made with an algorithm or key spec the keyset no longer accepts."""

    code = "KeyPairChanged"


class LeaseHeld(LifecycleError):
    """Another tick holds the keeper's lease."""

    code = "LeaseHeld"


class TrustNotConfirmed(LifecycleError):
    """The verifier did not confirm it trusts a key (records not read back, canary refused)."""

    code = "TrustNotConfirmed"


class AwsCallFailed(JwtKeysError):
    """An AWS call failed (an error answer, throttling, a lost connection or answer).

    The message is one line for an operator: the call and its error code, what changed
    before it failed, and what to do; the attributes carry the same for logs.
    """

    code = "AwsCallFailed"

    def __init__(
        self,
        operation: str,
        error_code: str,
        changed: str = "nothing was changed",
        advice: str = "retry",
    ) -> None:
        super().__init__(f"{operation} failed ({error_code}); {changed}; {advice}")
        self.operation = operation
        self.error_code = error_code
        self.changed = changed
        self.advice = advice

    def with_context(self, changed: str, advice: str) -> AwsCallFailed:
        """The same failure, told with what the action had changed and what to do now."""
        return AwsCallFailed(self.operation, self.error_code, changed, advice)

    def details(self) -> dict[str, str]:
        """The failure in structured form (logs, the keeper's answer)."""
        return {
            "error": self.code,
            "operation": self.operation,
            "aws_error_code": self.error_code,
            "changed": self.changed,
            "advice": self.advice,
        }


class ServiceNowError(JwtKeysError):
    """ServiceNow refused or failed a request; the message names the table and status."""

    code = "ServiceNowError"


class SessionsNotEnded(ServiceNowError):
    """Revocation could not end the application's sessions (oauth_credential unreadable)."""

    code = "SessionsNotEnded"


def aws_error_code(error: ClientError) -> str:
    """The AWS error code of a botocore ClientError ("" when the answer carries none)."""
    return str(error.response.get("Error", {}).get("Code", ""))
