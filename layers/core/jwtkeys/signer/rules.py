"""Who may ask the signer for what: caller principals, their rules, the claims each may add.

A rule names a caller by its IAM principal ARN and says which subjects, audiences and extra
claims (by name, and optionally by allowed values) it may ask for. Nothing a rule does not
name is allowed, and some claims no rule may name at all: the reserved ones the signer sets,
JOSE header names, and identity claims (`sub` is the only identity a caller chooses).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jwtkeys.errors import ConfigurationError, PolicyViolation

RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
# JOSE header parameters: a claim named like one could confuse a careless verifier.
HEADER_FIELDS = frozenset(
    {"alg", "kid", "typ", "cty", "crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#s256", "b64"}
)
# Claims that say who the token speaks for, on whose behalf, or how they authenticated.
# A verifier may map any of them to a user (ServiceNow's "User Claim" is configurable), so
# a caller choosing one would choose an identity its subject rule never allowed.
IDENTITY_CLAIMS = frozenset(
    {
        "email", "email_verified", "upn", "user_name", "username", "preferred_username",
        "unique_name", "name", "nickname", "given_name", "family_name", "nameid", "sys_id",
        "uid", "user_id", "oid", "sid", "azp", "act", "may_act", "client_id", "cid", "appid",
        "cnf", "auth_time", "acr", "amr", "nonce", "at_hash", "c_hash",
    }
)  # fmt: skip
FORBIDDEN_CLAIM_NAMES = RESERVED_CLAIMS | HEADER_FIELDS | IDENTITY_CLAIMS

# Letters that look like Latin ones but survive NFKC and case folding: dotless i, the
# Cyrillic and Greek look-alikes of the letters in the forbidden names, and a few more.
_CONFUSABLES = str.maketrans(
    {
        "\u0131": "i",  # latin small letter dotless i
        "\u0237": "j",  # latin small letter dotless j
        "\u0251": "a",  # latin small letter alpha
        "\u0261": "g",  # latin small letter script g
        "\u028f": "y",  # latin letter small capital y
        "\u0430": "a",  # cyrillic small letter a
        "\u0441": "c",  # cyrillic small letter es
        "\u0501": "d",  # cyrillic small letter komi de
        "\u0435": "e",  # cyrillic small letter ie
        "\u04bb": "h",  # cyrillic small letter shha
        "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
        "\u0458": "j",  # cyrillic small letter je
        "\u043a": "k",  # cyrillic small letter ka
        "\u04cf": "l",  # cyrillic small letter palochka
        "\u043c": "m",  # cyrillic small letter em
        "\u043e": "o",  # cyrillic small letter o
        "\u0440": "p",  # cyrillic small letter er
        "\u051b": "q",  # cyrillic small letter qa
        "\u0455": "s",  # cyrillic small letter dze
        "\u0442": "t",  # cyrillic small letter te
        "\u0446": "u",  # cyrillic small letter tse
        "\u0475": "v",  # cyrillic small letter izhitsa
        "\u051d": "w",  # cyrillic small letter we
        "\u0445": "x",  # cyrillic small letter ha
        "\u0443": "y",  # cyrillic small letter u
        "\u03b1": "a",  # greek small letter alpha
        "\u03b2": "b",  # greek small letter beta
        "\u03b5": "e",  # greek small letter epsilon
        "\u03b7": "n",  # greek small letter eta
        "\u03b9": "i",  # greek small letter iota
        "\u03ba": "k",  # greek small letter kappa
        "\u03bc": "u",  # greek small letter mu
        "\u03bd": "v",  # greek small letter nu
        "\u03bf": "o",  # greek small letter omicron
        "\u03c1": "p",  # greek small letter rho
        "\u03c4": "t",  # greek small letter tau
        "\u03c5": "u",  # greek small letter upsilon
        "\u03c7": "x",  # greek small letter chi
        "\u03b3": "y",  # greek small letter gamma
        "\u03f3": "j",  # greek letter yot
        "\u03c2": "s",  # greek small letter final sigma
    }
)

# Printable ASCII without spaces: what a rule may name, so that a rule's claim names have
# one spelling only (no confusable, no invisible character, no normalization question).
_RULE_CLAIM_NAME = re.compile(r"\A[!-~]{1,256}\Z")
# IAM principals as Lambda reports a caller (userArn) and as rules name them.
_PRINCIPAL = re.compile(r"\Aarn:(aws[a-z-]*):(iam|sts)::(\d{12}):([A-Za-z0-9+=,.@_/-]{1,1024})\Z")
# Role names are unique in an account whatever their path; an assumed-role session ARN
# carries the name but never the path.
_ROLE = re.compile(r"\Arole/(?:[!-~]*/)?([\w+=,.@-]{1,64})\Z")
_ASSUMED_ROLE = re.compile(r"\Aassumed-role/([\w+=,.@-]{1,64})/[\w+=,.@-]{1,64}\Z")
MAX_PRINCIPAL_LENGTH = 2048


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    # Only `*` is special: fnmatch's [] and ? would make allowlists surprising.
    return re.compile("\\A" + ".*".join(re.escape(part) for part in pattern.split("*")) + "\\Z")


@dataclass(frozen=True)
class Allowlist:
    """Exact values, or patterns where `*` matches any run of characters."""

    patterns: tuple[str, ...]
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(_compile_pattern(p) for p in self.patterns))

    def allows(self, value: str) -> bool:
        return any(pattern.match(value) for pattern in self._compiled)


def parse_allowlist(values: object, setting: str) -> Allowlist:
    """An Allowlist from a JSON list of strings, or ConfigurationError naming the setting."""
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ConfigurationError(f"{setting} must be a non-empty JSON list of strings")
    if not all(isinstance(value, str) and value for value in values):
        raise ConfigurationError(f"{setting} must hold only non-empty strings")
    return Allowlist(tuple(values))


@dataclass(frozen=True)
class ClaimRule:
    """What one extra claim may hold: anything (no `values`), or only allowed strings.

    With `values`, the claim must be a string they allow, or a non-empty list of such
    strings (`roles: ["reader"]`); numbers, objects and nested lists are refused.
    """

    values: Allowlist | None = None

    def allows(self, value: object) -> bool:
        if self.values is None:
            return True
        if isinstance(value, str):
            return self.values.allows(value)
        if isinstance(value, list) and value:
            return all(isinstance(item, str) and self.values.allows(item) for item in value)
        return False

    def to_json(self) -> list[str] | bool:
        return True if self.values is None else list(self.values.patterns)


@dataclass(frozen=True)
class CallerRule:
    """Which subjects, audiences and extra claims one caller may ask for."""

    subjects: Allowlist
    audiences: Allowlist
    claims: Mapping[str, ClaimRule] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        """The rule as JSON: `parse_caller_rule` reads it back."""
        mapping: dict[str, Any] = {
            "subjects": list(self.subjects.patterns),
            "audiences": list(self.audiences.patterns),
        }
        if self.claims:
            mapping["claims"] = {name: rule.to_json() for name, rule in sorted(self.claims.items())}
        return mapping


def is_unsafe_character(character: str) -> bool:
    """Control (Cc), format (Cf: zero-width, bidi overrides), surrogates, unassigned, private."""
    return unicodedata.category(character) in {"Cc", "Cf", "Cs", "Cn", "Co"}


def shadow_form(name: str) -> str:
    """The name as a careless reader would see it: dotted or dotless capital I, fullwidth,
    Cyrillic or Greek look-alike letters, invisible characters and case all fold away."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    # Case folding turns U+0130 (dotted capital I) into i + U+0307: decompose, then drop
    # every combining mark.
    decomposed = unicodedata.normalize("NFKD", folded)
    kept = (
        c
        for c in decomposed
        if not unicodedata.combining(c) and not is_unsafe_character(c) and not c.isspace()
    )
    return "".join(kept).translate(_CONFUSABLES)


def forbidden_claim(name: str) -> str | None:
    """Why no caller may set claim `name` (reserved, header, identity), or None."""
    shadow = shadow_form(name)
    if shadow in RESERVED_CLAIMS or shadow in HEADER_FIELDS:
        return f"claim {name!r} is reserved or shadows a reserved name"
    if shadow in IDENTITY_CLAIMS:
        return f"claim {name!r} names an identity; only sub says who a token is for"
    return None


def parse_claim_rules(raw: object, setting: str) -> dict[str, ClaimRule]:
    """`{name: true | [allowed values or patterns]}` -> rules, or ConfigurationError.

    `true` allows any value. Not null: the CDK drops null members of context objects on
    the way to the app, and a claim rule must never vanish silently.
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{setting} must be an object of claim name -> true or list")
    rules: dict[str, ClaimRule] = {}
    for name, values in raw.items():
        where = f"{setting}[{name!r}]"
        if not isinstance(name, str) or not _RULE_CLAIM_NAME.match(name):
            raise ConfigurationError(f"{where}: a claim name is 1-256 printable ASCII characters")
        why = forbidden_claim(name)
        if why is not None:
            raise ConfigurationError(f"{where}: {why}")
        if values is True:
            rules[name] = ClaimRule()
        elif isinstance(values, list):
            rules[name] = ClaimRule(parse_allowlist(values, where))
        else:
            raise ConfigurationError(f"{where} must be true (any value) or a list of values")
    return rules


def check_principal(arn: object, setting: str) -> str:
    """A caller principal ARN fit for a rule, or ConfigurationError (root is never one)."""
    if not isinstance(arn, str) or len(arn) > MAX_PRINCIPAL_LENGTH or not _PRINCIPAL.match(arn):
        raise ConfigurationError(f"{setting}: {arn!r} is not an IAM or STS principal ARN")
    if arn.endswith(":root"):
        # In a resource policy the root ARN means every principal of that account.
        raise ConfigurationError(
            f"{setting}: {arn!r} is an account root; it would let the whole account sign"
        )
    return arn


def parse_caller_rule(raw: object, setting: str) -> CallerRule:
    """`{subjects, audiences, claims?}` -> a CallerRule, or ConfigurationError."""
    if not isinstance(raw, Mapping) or not {"subjects", "audiences"} <= set(raw) <= {
        "subjects",
        "audiences",
        "claims",
    }:
        raise ConfigurationError(f"{setting} must be {{subjects, audiences, claims?}}")
    return CallerRule(
        subjects=parse_allowlist(raw["subjects"], f"{setting}.subjects"),
        audiences=parse_allowlist(raw["audiences"], f"{setting}.audiences"),
        claims=parse_claim_rules(raw.get("claims", {}), f"{setting}.claims"),
    )


def parse_caller_rules(raw: object, setting: str) -> dict[str, CallerRule]:
    """`{principal ARN: rule}` -> rules, or ConfigurationError naming what is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{setting} must be an object of principal ARN -> rule")
    rules = {
        check_principal(principal, setting): parse_caller_rule(rule, f"{setting}[{principal!r}]")
        for principal, rule in raw.items()
    }
    role_index(rules, setting)
    return rules


def role_index(rules: Mapping[str, CallerRule], setting: str) -> dict[tuple[str, ...], str]:
    """(partition, account, role name) -> the rule's principal, for assumed-role callers."""
    index: dict[tuple[str, ...], str] = {}
    for principal in rules:
        key = _role_key(principal)
        if key is None:
            continue
        if key in index:
            # One role name, two paths: one of them is not the role that will call.
            raise ConfigurationError(
                f"{setting}: {index[key]!r} and {principal!r} name the same role"
            )
        index[key] = principal
    return index


def _role_key(principal: str) -> tuple[str, ...] | None:
    match = _PRINCIPAL.match(principal)
    if not match or match.group(2) != "iam":
        return None
    partition, _, account, resource = match.groups()
    role = _ROLE.match(resource)
    return (partition, account, role.group(1)) if role else None


def principal_account(arn: str) -> str | None:
    """The account id of a principal ARN, or None when it is not one."""
    match = _PRINCIPAL.match(arn)
    return match.group(3) if match else None


def is_principal_arn(value: str) -> bool:
    """Whether `value` has the shape of an IAM or STS principal ARN (not whether it may sign)."""
    return len(value) <= MAX_PRINCIPAL_LENGTH and _PRINCIPAL.match(value) is not None


def find_caller_rule(
    rules: Mapping[str, CallerRule], index: Mapping[tuple[str, ...], str], caller: str
) -> CallerRule:
    """The rule of caller ARN `caller`; an assumed-role session matches its role, any path."""
    match = _PRINCIPAL.match(caller) if len(caller) <= MAX_PRINCIPAL_LENGTH else None
    if not match:
        raise PolicyViolation("caller_not_allowed", "the caller is not an IAM principal ARN")
    partition, service, account, resource = match.groups()
    if service == "iam" and resource == "root":
        raise PolicyViolation("caller_not_allowed", "an account root is never a caller")
    rule = rules.get(caller)
    if rule is None and service == "sts":
        session = _ASSUMED_ROLE.match(resource)
        principal = index.get((partition, account, session.group(1))) if session else None
        rule = rules.get(principal) if principal else None
    if rule is None:
        raise PolicyViolation("caller_not_allowed", "this caller has no signing rule")
    return rule


def check_extra_claims(claims: Mapping[str, Any], rules: Mapping[str, ClaimRule]) -> None:
    """Refuse (PolicyViolation) any claim the rule does not name, or a value it does not allow."""
    for name in sorted(claims):
        why = forbidden_claim(name)
        if why is not None:
            raise PolicyViolation("reserved_claim", why)
        rule = rules.get(name)
        if rule is None:
            raise PolicyViolation(
                "claim_not_allowed", f"claim {name[:64]!r} is not named in this caller's rule"
            )
        if not rule.allows(claims[name]):
            # The value is not echoed: claims may carry what the caller considers private.
            raise PolicyViolation(
                "claim_value_not_allowed", f"claim {name!r} holds a value its rule does not allow"
            )
