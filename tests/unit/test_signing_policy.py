"""The signing policy refuses what it must, naming the rule, before anything is signed."""

from __future__ import annotations

from typing import Any

import pytest

from jwtkeys.errors import ConfigurationError, InvalidRequest, PolicyViolation
from jwtkeys.signer.policy import (
    Allowlist,
    CallerRule,
    SigningPolicy,
    SignRequest,
    build_claims,
    judge,
    parse_allowlist,
)

POLICY = SigningPolicy(
    issuer="client-123",
    allowed_subjects=Allowlist(("svc-*@example.com", "integration")),
    allowed_audiences=Allowlist(("client-123",)),
    default_ttl=300,
    max_token_ttl=3600,
    caller_rules={
        "arn:aws:iam::111122223333:role/orders": CallerRule(
            subjects=Allowlist(("svc-orders@example.com",)), audiences=Allowlist(("client-123",))
        )
    },
)
GOOD = {"subject": "svc-orders@example.com", "audience": "client-123"}


@pytest.mark.parametrize(
    ("payload", "error", "reason"),
    [
        ([], InvalidRequest, "malformed_request"),
        ("x", InvalidRequest, "malformed_request"),
        ({**GOOD, "scope": "x"}, InvalidRequest, "unknown_field"),
        ({"audience": "client-123"}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": 7}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": ""}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": "x" * 257}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": " integration"}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": "integ\u200bration"}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": "integration\u202e"}, InvalidRequest, "bad_subject"),
        ({**GOOD, "subject": "e\u0301"}, InvalidRequest, "bad_subject"),
        ({**GOOD, "audience": None}, InvalidRequest, "bad_audience"),
        ({**GOOD, "claims": []}, InvalidRequest, "bad_claims"),
        ({**GOOD, "claims": {"x": float("nan")}}, InvalidRequest, "bad_claims"),
        ({**GOOD, "claims": {"x": {1, 2}}}, InvalidRequest, "bad_claims"),
        ({**GOOD, "claims": {"x": "\ud800"}}, InvalidRequest, "bad_claims"),
        ({**GOOD, "claims": {"": 1}}, InvalidRequest, "bad_claims"),
        ({**GOOD, "claims": {"x": "y" * 5000}}, InvalidRequest, "claims_too_large"),
        ({**GOOD, "claims": {"x": [[[[[[[[["deep"]]]]]]]]]}}, InvalidRequest, "claims_too_deep"),
        ({**GOOD, "ttl_seconds": "60"}, InvalidRequest, "bad_ttl"),
        ({**GOOD, "ttl_seconds": True}, InvalidRequest, "bad_ttl"),
        ({**GOOD, "ttl_seconds": 1.5}, InvalidRequest, "bad_ttl"),
    ],
)
def test_malformed_requests_are_refused(payload: Any, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as refused:
        SignRequest.from_payload(payload)
    assert refused.value.reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name",
    [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "EXP",
        "\uff49\uff53\uff53",
        "a lg",
        "kid",
        "x5u",
    ],
)
def test_reserved_claims_and_header_names_cannot_be_set_or_shadowed(name: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        SignRequest.from_payload({**GOOD, "claims": {name: "evil"}})
    assert refused.value.reason == "reserved_claim"


@pytest.mark.parametrize(
    ("payload", "caller", "reason"),
    [
        ({**GOOD, "subject": "root"}, None, "subject_not_allowed"),
        ({**GOOD, "audience": "someone-else"}, None, "audience_not_allowed"),
        ({**GOOD, "ttl_seconds": 0}, None, "ttl_out_of_range"),
        ({**GOOD, "ttl_seconds": 3601}, None, "ttl_out_of_range"),
        ({**GOOD, "ttl_seconds": -5}, None, "ttl_out_of_range"),
        (GOOD, "arn:aws:iam::111122223333:role/billing", "caller_not_allowed"),
        (
            {**GOOD, "subject": "svc-billing@example.com"},
            "arn:aws:sts::111122223333:assumed-role/orders/session-1",
            "subject_not_allowed",
        ),
    ],
)
def test_policy_refusals_name_the_rule(
    payload: dict[str, Any], caller: str | None, reason: str
) -> None:
    with pytest.raises(PolicyViolation) as refused:
        judge(POLICY, SignRequest.from_payload(payload), caller)
    assert refused.value.reason == reason


def test_an_assumed_role_session_matches_its_roles_rule() -> None:
    request = SignRequest.from_payload(GOOD)
    caller = "arn:aws:sts::111122223333:assumed-role/orders/session-1"
    assert judge(POLICY, request, caller) == 300


def test_patterns_only_treat_star_as_special() -> None:
    allowlist = Allowlist(("svc-*@example.com", "a.b"))
    assert allowlist.allows("svc-x@example.com")
    assert not allowlist.allows("svc-x@exampleXcom")
    assert not allowlist.allows("aXb")
    assert not allowlist.allows("svc-x@example.com\n")


def test_reserved_claims_always_come_from_the_signer() -> None:
    request = SignRequest.from_payload({**GOOD, "claims": {"role": "reader"}, "ttl_seconds": 60})
    ttl = judge(POLICY, request, None)
    claims = build_claims(POLICY, request, now=1000.7, ttl=ttl, jti="j")
    assert claims == {
        "role": "reader",
        "iss": "client-123",
        "sub": "svc-orders@example.com",
        "aud": "client-123",
        "iat": 1000,
        "nbf": 1000,
        "exp": 1060,
        "jti": "j",
    }


def test_a_bad_configuration_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="JWTKEYS_X"):
        parse_allowlist([], "JWTKEYS_X")
    with pytest.raises(ConfigurationError, match="default TTL"):
        SigningPolicy(
            issuer="i",
            allowed_subjects=Allowlist(("a",)),
            allowed_audiences=Allowlist(("b",)),
            default_ttl=7200,
            max_token_ttl=3600,
        )


def test_token_claims_reserved_claims_win_over_extra_ones() -> None:
    # The builder the signer and the keeper's canary share
    from jwtkeys.signer.policy import claims_payload, token_claims

    claims = token_claims(
        issuer="client-1",
        subject="canary@example.com",
        audience="client-1",
        now=1000.9,
        ttl=60,
        jti="j",
        extra={"iss": "forged", "scope": "x"},
    )
    assert claims == {
        "scope": "x",
        "iss": "client-1",
        "sub": "canary@example.com",
        "aud": "client-1",
        "iat": 1000,
        "nbf": 1000,
        "exp": 1060,
        "jti": "j",
    }
    assert claims_payload({"sub": "é"}) == '{"sub":"é"}'.encode()
