"""Fidelity fixes for moto's KMS, applied inside the local AWS server process only.

moto 5.2 departs from AWS KMS in ways that matter to jwtkeys (docs/emulators.md):
it hashes a `MessageType=DIGEST` message again, uses the maximum RSA-PSS salt length,
signs with disabled keys and keys pending deletion, answers HTTP 500 when DisableKey,
EnableKey or ScheduleKeyDeletion are given a key ARN, never checks a digest's length
and silently ignores an out-of-range `PendingWindowInDays`. It also answers a failed
Verify with `SignatureValid: false` where AWS raises `KMSInvalidSignatureException`.

The fixes replace the affected `KmsResponse` operation methods; moto's own lookups
(`_validate_key_id`, `_validate_cmk_id`) still produce its NotFoundException, so only
the behaviour that differs from AWS changes. Nothing here touches boto3 or botocore:
clients reach these fixes over real HTTP, exactly as they would reach AWS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from moto.core.exceptions import JsonRESTError
from moto.kms.responses import KmsResponse

__all__ = ["apply_kms_fixes"]

# AWS's Sign and Verify accept at most 4096 bytes of RAW message.
_MAX_RAW_MESSAGE = 4096
_MIN_PENDING_WINDOW_DAYS = 7
_MAX_PENDING_WINDOW_DAYS = 30
_DEFAULT_PENDING_WINDOW_DAYS = 30

_ENABLED = "Enabled"
_DISABLED = "Disabled"
_PENDING_DELETION = "PendingDeletion"
# How AWS words each key state in its DisabledException/KMSInvalidStateException messages.
_STATE_WORDS = {
    _ENABLED: "enabled",
    _DISABLED: "disabled",
    _PENDING_DELETION: "pending deletion",
}


class KmsError(JsonRESTError):
    """A KMS error as AWS sends it: its `__type`, message and HTTP status.

    DisabledException and KMSInvalidStateException are 409 in the KMS API reference;
    the rest of what these fixes raise is 400.
    """

    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(error_type, message)
        self.code = status


def _disabled(message: str) -> KmsError:
    return KmsError("DisabledException", message, 409)


def _invalid_state(message: str) -> KmsError:
    return KmsError("KMSInvalidStateException", message, 409)


def _invalid_usage(message: str) -> KmsError:
    return KmsError("InvalidKeyUsageException", message)


def _invalid(message: str) -> KmsError:
    return KmsError("ValidationException", message)


@dataclass(frozen=True)
class _Scheme:
    """How one KMS signing algorithm signs: its family and its hash."""

    family: str  # "pkcs1" | "pss" | "ecdsa"
    hash_factory: Callable[[], hashes.HashAlgorithm]


_SCHEMES: dict[str, _Scheme] = {
    "RSASSA_PKCS1_V1_5_SHA_256": _Scheme("pkcs1", hashes.SHA256),
    "RSASSA_PKCS1_V1_5_SHA_384": _Scheme("pkcs1", hashes.SHA384),
    "RSASSA_PKCS1_V1_5_SHA_512": _Scheme("pkcs1", hashes.SHA512),
    "RSASSA_PSS_SHA_256": _Scheme("pss", hashes.SHA256),
    "RSASSA_PSS_SHA_384": _Scheme("pss", hashes.SHA384),
    "RSASSA_PSS_SHA_512": _Scheme("pss", hashes.SHA512),
    "ECDSA_SHA_256": _Scheme("ecdsa", hashes.SHA256),
    "ECDSA_SHA_384": _Scheme("ecdsa", hashes.SHA384),
    "ECDSA_SHA_512": _Scheme("ecdsa", hashes.SHA512),
}


def _params(response: KmsResponse) -> dict[str, Any]:
    """The request's JSON body, parsed once (moto's `_get_param` re-parses per call)."""
    body = response.body
    parsed = json.loads(body) if body else {}
    if not isinstance(parsed, dict):
        raise _invalid("The request body must be a JSON object.")
    return parsed


def _key_for(response: KmsResponse, key_id: str, *, aliases: bool = True) -> Any:
    """Resolve any key identifier to moto's Key, raising moto's own NotFoundException."""
    if aliases:
        response._validate_key_id(key_id)
    else:
        response._validate_cmk_id(key_id)
    return response.kms_backend.describe_key(key_id)


def _require_state(key: Any, allowed: frozenset[str], *, disabled_error: bool = False) -> None:
    """Refuse an operation the key's state does not allow, as AWS does.

    Cryptographic operations (Sign, Verify, GetPublicKey) on a disabled key answer
    DisabledException; every other refusal is KMSInvalidStateException.
    """
    state = key.key_state
    if state in allowed:
        return
    if disabled_error and state == _DISABLED:
        raise _disabled(f"{key.arn} is disabled.")
    word = _STATE_WORDS.get(state, state)
    if state == _ENABLED:
        raise _invalid_state(
            f"{key.arn} is enabled, but the operation doesn't support such a state"
        )
    raise _invalid_state(f"{key.arn} is {word}.")


def _scheme_for(key: Any, algorithm: Any) -> _Scheme:
    """The signing scheme for `algorithm`, refusing keys and algorithms that cannot sign."""
    if key.key_usage != "SIGN_VERIFY":
        raise _invalid_usage(
            f"{key.arn} key usage is {key.key_usage} which is not valid for signing."
        )
    if not isinstance(algorithm, str) or algorithm not in (key.signing_algorithms or []):
        raise _invalid_usage(f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}.")
    scheme = _SCHEMES.get(algorithm)
    if scheme is None:  # e.g. SM2DSA: moto's own implementation is all there is
        raise _invalid_usage(f"Algorithm {algorithm} is not supported locally.")
    return scheme


def _message(params: dict[str, Any], scheme: _Scheme, algorithm: str) -> tuple[bytes, Any]:
    """The bytes to sign and the hash argument for `cryptography`, per `MessageType`.

    DIGEST means the message *is* the hash: AWS skips its own hashing step and insists
    the length matches the algorithm's hash.
    """
    raw = params.get("Message")
    message = base64.b64decode(raw) if isinstance(raw, str) else b""
    if not message:
        raise _invalid(
            "1 validation error detected: Value at 'message' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    message_type = params.get("MessageType") or "RAW"
    hash_algorithm = scheme.hash_factory()
    if message_type == "RAW":
        if len(message) > _MAX_RAW_MESSAGE:
            raise _invalid(
                "1 validation error detected: Value at 'message' failed to satisfy "
                f"constraint: Member must have length less than or equal to {_MAX_RAW_MESSAGE}"
            )
        return message, hash_algorithm
    if message_type == "DIGEST":
        if len(message) != hash_algorithm.digest_size:
            raise _invalid(f"Digest is invalid length for algorithm {algorithm}.")
        return message, Prehashed(hash_algorithm)
    raise _invalid(
        f"1 validation error detected: Value '{message_type}' at 'messageType' failed to "
        "satisfy constraint: Member must satisfy enum value set: [DIGEST, RAW]"
    )


def _pss(scheme: _Scheme) -> padding.PSS:
    # AWS KMS uses a salt as long as the digest (RFC 8017's recommendation, and what
    # JOSE's PS256/384/512 expect), not the maximum that fits.
    digest = scheme.hash_factory()
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)


def _sign(private_key: Any, scheme: _Scheme, message: bytes, hash_arg: Any) -> bytes:
    if scheme.family == "ecdsa":
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        return private_key.sign(message, ec.ECDSA(hash_arg))  # DER, as AWS returns it
    assert isinstance(private_key, rsa.RSAPrivateKey)
    pad = _pss(scheme) if scheme.family == "pss" else padding.PKCS1v15()
    return private_key.sign(message, pad, hash_arg)


def _verifies(
    private_key: Any, scheme: _Scheme, message: bytes, hash_arg: Any, signature: bytes
) -> bool:
    public_key = private_key.public_key()
    try:
        if scheme.family == "ecdsa":
            public_key.verify(signature, message, ec.ECDSA(hash_arg))
        else:
            pad = _pss(scheme) if scheme.family == "pss" else padding.PKCS1v15()
            public_key.verify(signature, message, pad, hash_arg)
    except (InvalidSignature, ValueError):
        return False
    return True


_USABLE = frozenset({_ENABLED})
_MANAGEABLE = frozenset({_ENABLED, _DISABLED})
_PENDING = frozenset({_PENDING_DELETION})


@dataclass(frozen=True)
class _SigningCall:
    """What Sign and Verify both check and prepare before any cryptography."""

    params: dict[str, Any]
    key: Any
    algorithm: str
    scheme: _Scheme
    message: bytes
    hash_arg: Any


def _signing_call(response: KmsResponse) -> _SigningCall:
    """Resolve the key, enforce its state and usage, and prepare the message to sign."""
    params = _params(response)
    key = _key_for(response, params.get("KeyId", ""))
    _require_state(key, _USABLE, disabled_error=True)
    algorithm = params.get("SigningAlgorithm")
    scheme = _scheme_for(key, algorithm)
    message, hash_arg = _message(params, scheme, str(algorithm))
    return _SigningCall(params, key, str(algorithm), scheme, message, hash_arg)


def _fixed_sign(self: KmsResponse) -> str:
    """Sign as AWS does: DIGEST is prehashed, PSS salt = digest length, state enforced."""
    call = _signing_call(self)
    signature = _sign(call.key.private_key.private_key, call.scheme, call.message, call.hash_arg)
    return json.dumps(
        {
            "KeyId": call.key.arn,
            "Signature": base64.b64encode(signature).decode("ascii"),
            "SigningAlgorithm": call.algorithm,
        }
    )


def _fixed_verify(self: KmsResponse) -> str:
    """Verify as AWS does: same hashing as Sign; a bad signature is an error, not `false`."""
    call = _signing_call(self)
    raw_signature = call.params.get("Signature")
    signature = base64.b64decode(raw_signature) if isinstance(raw_signature, str) else b""
    if not signature:
        raise _invalid(
            "1 validation error detected: Value at 'signature' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    private_key = call.key.private_key.private_key
    if not _verifies(private_key, call.scheme, call.message, call.hash_arg, signature):
        raise KmsError("KMSInvalidSignatureException", "")
    return json.dumps(
        {"KeyId": call.key.arn, "SignatureValid": True, "SigningAlgorithm": call.algorithm}
    )


def _fixed_get_public_key(self: KmsResponse) -> str:
    """GetPublicKey refuses disabled keys and keys pending deletion, and names the key ARN."""
    params = _params(self)
    key = _key_for(self, params.get("KeyId", ""))
    _require_state(key, _USABLE, disabled_error=True)
    if key.key_spec == "SYMMETRIC_DEFAULT" or key.key_spec.startswith("HMAC"):
        raise KmsError(
            "UnsupportedOperationException",
            f"{key.arn} key type is not supported for this operation.",
        )
    return json.dumps(
        {
            "CustomerMasterKeySpec": key.key_spec,
            "KeySpec": key.key_spec,
            "EncryptionAlgorithms": key.encryption_algorithms,
            "KeyId": key.arn,
            "KeyUsage": key.key_usage,
            "PublicKey": base64.b64encode(key.private_key.public_key()).decode("ascii"),
            "SigningAlgorithms": key.signing_algorithms,
        }
    )


def _set_enabled(self: KmsResponse, enabled: bool) -> str:
    params = _params(self)
    # moto's backend indexes its key table with the raw argument, so an ARN raised a
    # KeyError (HTTP 500); resolve it to the key first, as AWS accepts both.
    key = _key_for(self, params.get("KeyId", ""), aliases=False)
    _require_state(key, _MANAGEABLE)
    key.enabled = enabled
    key.key_state = _ENABLED if enabled else _DISABLED
    return json.dumps(None)


def _fixed_disable_key(self: KmsResponse) -> str:
    """DisableKey accepts a key ARN; a key pending deletion is refused."""
    return _set_enabled(self, False)


def _fixed_enable_key(self: KmsResponse) -> str:
    """EnableKey accepts a key ARN; a key pending deletion is refused."""
    return _set_enabled(self, True)


def _fixed_schedule_key_deletion(self: KmsResponse) -> str:
    """ScheduleKeyDeletion validates the 7-30 day window and accepts a key ARN."""
    params = _params(self)
    window = params.get("PendingWindowInDays")
    if window is None:
        window = _DEFAULT_PENDING_WINDOW_DAYS
    if (
        not isinstance(window, int)
        or not _MIN_PENDING_WINDOW_DAYS <= window <= _MAX_PENDING_WINDOW_DAYS
    ):
        raise _invalid(
            f"PendingWindowInDays should be between {_MIN_PENDING_WINDOW_DAYS} and "
            f"{_MAX_PENDING_WINDOW_DAYS}, but it is {window}"
        )
    key = _key_for(self, params.get("KeyId", ""), aliases=False)
    _require_state(key, _MANAGEABLE)
    deletion_date = self.kms_backend.schedule_key_deletion(key.id, window)
    return json.dumps(
        {
            "KeyId": key.arn,
            "DeletionDate": deletion_date,
            "KeyState": key.key_state,
            "PendingWindowInDays": window,
        }
    )


def _fixed_cancel_key_deletion(self: KmsResponse) -> str:
    """CancelKeyDeletion accepts a key ARN, only for a key pending deletion; leaves it Disabled."""
    params = _params(self)
    key = _key_for(self, params.get("KeyId", ""), aliases=False)
    _require_state(key, _PENDING)
    self.kms_backend.cancel_key_deletion(key.id)
    key.enabled = False
    return json.dumps({"KeyId": key.arn})


def _guarded(
    original: Callable[[KmsResponse], str], param: str, allowed: frozenset[str]
) -> Callable[[KmsResponse], str]:
    """Run moto's `original` only when the key named by `param` is in an allowed state."""

    def guarded(self: KmsResponse) -> str:
        key_id = _params(self).get(param)
        if isinstance(key_id, str):
            backend = self.kms_backend
            try:
                raw_id = backend.any_id_to_key_id(key_id)
            except Exception:  # an unknown alias: moto's original answers NotFound
                raw_id = None
            key = backend.keys.get(raw_id) if raw_id else None
            if key is not None:
                _require_state(key, allowed)
        return original(self)

    guarded.__doc__ = f"moto's {original.__name__}, refused on keys in other states than {allowed}."
    return guarded


_APPLIED_MARK = "_jwtkeys_fixes_applied"


def apply_kms_fixes() -> None:
    """Install the KMS fidelity fixes into moto's KmsResponse (idempotent)."""
    if getattr(KmsResponse, _APPLIED_MARK, False):
        return
    replacements: dict[str, Callable[[KmsResponse], str]] = {
        "sign": _fixed_sign,
        "verify": _fixed_verify,
        "get_public_key": _fixed_get_public_key,
        "disable_key": _fixed_disable_key,
        "enable_key": _fixed_enable_key,
        "schedule_key_deletion": _fixed_schedule_key_deletion,
        "cancel_key_deletion": _fixed_cancel_key_deletion,
        # AWS refuses to tag, untag or alias a key pending deletion.
        "tag_resource": _guarded(KmsResponse.tag_resource, "KeyId", _MANAGEABLE),
        "untag_resource": _guarded(KmsResponse.untag_resource, "KeyId", _MANAGEABLE),
        "create_alias": _guarded(KmsResponse.create_alias, "TargetKeyId", _MANAGEABLE),
        "update_alias": _guarded(KmsResponse.update_alias, "TargetKeyId", _MANAGEABLE),
    }
    for name, method in replacements.items():
        setattr(KmsResponse, name, method)
    setattr(KmsResponse, _APPLIED_MARK, True)
