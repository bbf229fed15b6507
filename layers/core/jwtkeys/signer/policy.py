"""What a caller may ask the signer for: request parsing, allowlists, TTLs and claims.

Every check here runs before KMS is called: a refused request signs nothing.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jwtkeys.errors import ConfigurationError, InvalidRequest, PolicyViolation
from jwtkeys.signer.rules import (
    Allowlist,
    CallerRule,
    ClaimRule,
    check_extra_claims,
    check_principal,
    find_caller_rule,
    forbidden_claim,
    is_unsafe_character,
    role_index,
)

MAX_CLAIMS_BYTES = 4096
MAX_CLAIMS_DEPTH = 8
MAX_NAME_LENGTH = 256
REQUEST_FIELDS = frozenset({"subject", "audience", "claims", "ttl_seconds"})
# A request without ttl_seconds gets this, unless the keyset sets its own default.
DEFAULT_TTL_SECONDS = 300


def default_ttl(max_token_ttl: int) -> int:
    """The keyset's default token lifetime when its configuration names none."""
    return min(DEFAULT_TTL_SECONDS, max_token_ttl)


@dataclass(frozen=True)
class DirectInvoke:
    """The direct-invoke path of a stage that turns it on: keyset-wide allowlists apply,
    and only the extra claims named here. No caller identity comes with a direct invoke."""

    claims: Mapping[str, ClaimRule] = field(default_factory=dict)


@dataclass(frozen=True)
class SigningPolicy:
    """The keyset-wide rules of the signer, per-caller rules for Function URL callers, and
    whether (and with which extra claims) a direct invoke is served."""

    issuer: str
    allowed_subjects: Allowlist
    allowed_audiences: Allowlist
    default_ttl: int
    max_token_ttl: int
    caller_rules: Mapping[str, CallerRule] = field(default_factory=dict)
    # None: direct invocation is refused (the stage's default); callers use the Function URL.
    direct_invoke: DirectInvoke | None = None
    # policy.not_before_margin: how far back a token's window is moved (see token_claims).
    not_before_margin: int = 0
    _role_index: Mapping[tuple[str, ...], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for principal in self.caller_rules:
            check_principal(principal, "caller rules")
        object.__setattr__(self, "_role_index", role_index(self.caller_rules, "caller rules"))
        if not 1 <= self.default_ttl <= self.max_token_ttl:
            raise ConfigurationError(
                f"default TTL must be within 1..max_token_ttl ({self.max_token_ttl}),"
                f" got {self.default_ttl}"
            )
        if not self.issuer:
            raise ConfigurationError("the issuer must not be empty")


@dataclass(frozen=True)
class SignRequest:
    """A parsed, well-formed request; the policy has not judged it yet."""

    subject: str
    audience: str
    claims: Mapping[str, Any]
    ttl_seconds: int | None

    @classmethod
    def from_payload(cls, payload: object) -> SignRequest:
        """Parse the request body of either entry shape, or raise InvalidRequest."""
        if not isinstance(payload, dict):
            raise InvalidRequest("malformed_request", "the request must be a JSON object")
        unknown = sorted(str(key) for key in payload if key not in REQUEST_FIELDS)
        if unknown:
            raise InvalidRequest("unknown_field", f"unknown request field(s): {', '.join(unknown)}")
        subject = _name(payload.get("subject"), "subject")
        audience = _name(payload.get("audience"), "audience")
        claims = payload.get("claims", {})
        _check_claims(claims)
        ttl = payload.get("ttl_seconds")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool)):
            raise InvalidRequest("bad_ttl", "ttl_seconds must be an integer number of seconds")
        return cls(subject=subject, audience=audience, claims=claims, ttl_seconds=ttl)


def _name(value: object, field_name: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"bad_{field_name}", f"{field_name} must be a string")
    if not 1 <= len(value) <= MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"bad_{field_name}", f"{field_name} must have 1 to {MAX_NAME_LENGTH} characters"
        )
    if value != value.strip() or any(is_unsafe_character(c) for c in value):
        raise InvalidRequest(
            f"bad_{field_name}",
            f"{field_name} has surrounding space or control/invisible characters",
        )
    if unicodedata.normalize("NFC", value) != value:
        # Two spellings of one name would slip past an exact-match allowlist.
        raise InvalidRequest(f"bad_{field_name}", f"{field_name} must be NFC-normalized")
    return value


def _check_claims(claims: object) -> None:
    if not isinstance(claims, dict):
        raise InvalidRequest("bad_claims", "claims must be a JSON object")
    _check_json_values(claims)
    for name in claims:
        if not name or any(is_unsafe_character(c) for c in name):
            raise InvalidRequest("bad_claims", "claim names must be non-empty printable text")
        why = forbidden_claim(name)
        if why is not None:
            raise PolicyViolation("reserved_claim", why)
    try:
        size = len(json.dumps(claims, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (ValueError, UnicodeEncodeError) as error:
        raise InvalidRequest("bad_claims", f"claims are not serializable JSON: {error}") from None
    if size > MAX_CLAIMS_BYTES:
        raise InvalidRequest(
            "claims_too_large", f"claims are {size} bytes serialized; at most {MAX_CLAIMS_BYTES}"
        )


def _check_json_values(root: dict[Any, Any]) -> None:
    # Iterative, so a hostile nesting depth cannot exhaust the interpreter's stack.
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_CLAIMS_DEPTH:
                raise InvalidRequest(
                    "claims_too_deep", f"claims nest deeper than {MAX_CLAIMS_DEPTH} levels"
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise InvalidRequest("bad_claims", "claim object keys must be strings")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRequest("bad_claims", "claims may not hold NaN or infinities")
        elif isinstance(value, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
                raise InvalidRequest("bad_claims", "claims may not hold lone surrogates")
        elif value is not None and not isinstance(value, bool | int):
            raise InvalidRequest(
                "bad_claims", f"claims hold a non-JSON value ({type(value).__name__})"
            )


def judge(policy: SigningPolicy, request: SignRequest, caller: str | None) -> int:
    """Apply the caller's rule (or the direct-invoke setting) and the keyset's allowlists;
    return the TTL. `caller` is the Function URL principal, None for a direct invoke."""
    if caller is None:
        claim_rules = direct_invoke_rule(policy).claims
    else:
        rule = caller_rule(policy, caller)
        if not rule.subjects.allows(request.subject):
            raise PolicyViolation("subject_not_allowed", "this caller may not ask for that subject")
        if not rule.audiences.allows(request.audience):
            raise PolicyViolation(
                "audience_not_allowed", "this caller may not ask for that audience"
            )
        claim_rules = rule.claims
    if not policy.allowed_subjects.allows(request.subject):
        raise PolicyViolation("subject_not_allowed", "subject is not in the keyset's allowlist")
    if not policy.allowed_audiences.allows(request.audience):
        raise PolicyViolation("audience_not_allowed", "audience is not in the keyset's allowlist")
    check_extra_claims(request.claims, claim_rules)
    ttl = policy.default_ttl if request.ttl_seconds is None else request.ttl_seconds
    if not 1 <= ttl <= policy.max_token_ttl:
        raise PolicyViolation(
            "ttl_out_of_range", f"ttl_seconds must be within 1..{policy.max_token_ttl}"
        )
    return ttl


def direct_invoke_rule(policy: SigningPolicy) -> DirectInvoke:
    """The direct-invoke setting, or PolicyViolation when the stage has it off."""
    if policy.direct_invoke is None:
        # A direct invoke carries no caller identity, so no caller's rule could apply.
        raise PolicyViolation(
            "direct_invoke_disabled",
            "this signer is not invoked directly; call its Function URL (IAM auth)",
        )
    return policy.direct_invoke


def caller_rule(policy: SigningPolicy, caller: str) -> CallerRule:
    """The rule for a caller ARN; an assumed-role session matches its role's ARN (any path)."""
    return find_caller_rule(policy.caller_rules, policy._role_index, caller)


def build_claims(
    policy: SigningPolicy, request: SignRequest, *, now: float, ttl: int, jti: str
) -> dict[str, Any]:
    """The claims of a token the policy allowed for `request`."""
    return token_claims(
        issuer=policy.issuer,
        subject=request.subject,
        audience=request.audience,
        now=now,
        ttl=ttl,
        jti=jti,
        extra=request.claims,
        backdate=policy.not_before_margin,
    )


def token_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    now: float,
    ttl: int,
    jti: str,
    extra: Mapping[str, Any] | None = None,
    backdate: int = 0,
) -> dict[str, Any]:
    """A token's claims: the extra ones first, then the reserved ones, which always win.

    Every token jwtkeys signs is built here: the signer's and the keeper's canaries.
    `backdate` moves the whole window (iat = nbf, and exp) back, by at most half the TTL:
    a verifier with no clock skew whose clock is a little behind then accepts a fresh
    token, and the token still never lives longer than `ttl`.
    """
    issued_at = int(now) - min(max(backdate, 0), ttl // 2)
    claims = dict(extra or {})
    claims.update(
        iss=issuer,
        sub=subject,
        aud=audience,
        iat=issued_at,
        nbf=issued_at,
        exp=issued_at + ttl,
        jti=jti,
    )
    return claims


def claims_payload(claims: Mapping[str, Any]) -> bytes:
    """The JWS payload: compact UTF-8 JSON of the claims."""
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
