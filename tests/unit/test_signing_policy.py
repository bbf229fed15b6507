"""The signing policy refuses what it must, naming the rule, before anything is signed."""

from __future__ import annotations

from typing import Any

import pytest

from jwtkeys.errors import ConfigurationError, InvalidRequest, PolicyViolation
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy, SignRequest, build_claims, judge
from jwtkeys.signer.rules import (
    Allowlist,
    CallerRule,
    ClaimRule,
    parse_allowlist,
    parse_caller_rules,
    shadow_form,
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
        ),
        "arn:aws:iam::111122223333:role/teams/payments/payments-api": CallerRule(
            subjects=Allowlist(("svc-payments@example.com",)),
            audiences=Allowlist(("client-123",)),
            claims={
                "roles": ClaimRule(Allowlist(("reader", "writer"))),
                "tenant": ClaimRule(Allowlist(("t-*",))),
                "trace": ClaimRule(),
            },
        ),
    },
    direct_invoke=DirectInvoke(claims={"role": ClaimRule()}),
)
PAYMENTS = {"subject": "svc-payments@example.com", "audience": "client-123"}
PAYMENTS_SESSION = "arn:aws:sts::111122223333:assumed-role/payments-api/i-0abc"
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
        # Dotted and dotless capital/small I, and look-alikes that survive NFKC + casefold
        "\u0130ss",
        "\u0131ss",
        "\u0130SS",
        "\u0456ss",  # Cyrillic i
        "i\u0455s",  # Cyrillic dze
        "\u03b9ss",  # Greek iota
        "s\u0075\u0308b",  # u + combining diaeresis
        "\u212aid",  # Kelvin sign
        # Identity claims: sub is the only one a caller chooses
        "email",
        "Email",
        "upn",
        "user_name",
        "preferred_username",
        "azp",
        "act",
        "client_id",
        "\u0435mail",  # Cyrillic e
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


# --- the claims policy: nothing a caller's rule does not name ----------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"roles": ["admin"]}, "claim_value_not_allowed"),
        ({"roles": ["reader", "admin"]}, "claim_value_not_allowed"),
        ({"roles": []}, "claim_value_not_allowed"),
        ({"roles": "admin"}, "claim_value_not_allowed"),
        ({"roles": [["reader"]]}, "claim_value_not_allowed"),
        ({"roles": {"reader": True}}, "claim_value_not_allowed"),
        ({"tenant": "x-1"}, "claim_value_not_allowed"),
        ({"tenant": 7}, "claim_value_not_allowed"),
        ({"scope": "orders:write"}, "claim_not_allowed"),
        ({"Roles": ["reader"]}, "claim_not_allowed"),
        ({"role": "reader"}, "claim_not_allowed"),
        ({"email": "ceo@example.com"}, "reserved_claim"),
        ({"act": {"sub": "svc-admin"}}, "reserved_claim"),
        ({"upn": "admin"}, "reserved_claim"),
        ({"user_name": "admin"}, "reserved_claim"),
        ({"azp": "other-client"}, "reserved_claim"),
    ],
)
def test_extra_claims_must_be_named_by_the_callers_rule(
    claims: dict[str, Any], reason: str
) -> None:
    # Given a caller whose rule names roles (reader/writer), tenant (t-*) and trace (any)
    # When it asks for a claim or value the rule does not name, Then that is refused
    with pytest.raises(PolicyViolation) as refused:
        judge(POLICY, SignRequest.from_payload({**PAYMENTS, "claims": claims}), PAYMENTS_SESSION)
    assert refused.value.reason == reason


def test_named_claims_with_allowed_values_pass() -> None:
    claims = {"roles": ["reader", "writer"], "tenant": "t-42", "trace": {"id": [1, 2]}}
    request = SignRequest.from_payload({**PAYMENTS, "claims": claims})
    assert judge(POLICY, request, PAYMENTS_SESSION) == 300


def test_a_caller_without_claim_rules_may_add_no_claim() -> None:
    request = SignRequest.from_payload({**GOOD, "claims": {"roles": ["admin"]}})
    with pytest.raises(PolicyViolation) as refused:
        judge(POLICY, request, "arn:aws:iam::111122223333:role/orders")
    assert refused.value.reason == "claim_not_allowed"


def test_direct_invoke_is_refused_by_name_when_the_stage_has_it_off() -> None:
    policy = SigningPolicy(
        issuer="client-123",
        allowed_subjects=Allowlist(("*",)),
        allowed_audiences=Allowlist(("*",)),
        default_ttl=300,
        max_token_ttl=3600,
    )
    with pytest.raises(PolicyViolation) as refused:
        judge(policy, SignRequest.from_payload(GOOD), None)
    assert refused.value.reason == "direct_invoke_disabled"
    assert str(refused.value).startswith("direct_invoke_disabled: ")


def test_direct_invoke_claims_are_named_by_the_stage() -> None:
    allowed = SignRequest.from_payload({**GOOD, "claims": {"role": "x"}})
    assert judge(POLICY, allowed, None) == 300
    with pytest.raises(PolicyViolation) as refused:
        judge(POLICY, SignRequest.from_payload({**GOOD, "claims": {"roles": ["x"]}}), None)
    assert refused.value.reason == "claim_not_allowed"


# --- caller principals ------------------------------------------------------------------


def test_a_role_with_a_path_matches_its_rule_from_an_assumed_role_session() -> None:
    # The session ARN carries the role's name but never its path
    assert judge(POLICY, SignRequest.from_payload(PAYMENTS), PAYMENTS_SESSION) == 300
    # ...and the name must match whole: no prefix, no other account or partition
    for stranger in (
        "arn:aws:sts::111122223333:assumed-role/payments/i-0abc",
        "arn:aws:sts::111122223333:assumed-role/payments-api-x/i-0abc",
        "arn:aws:sts::999999999999:assumed-role/payments-api/i-0abc",
        "arn:aws-cn:sts::111122223333:assumed-role/payments-api/i-0abc",
        "arn:aws:sts::111122223333:assumed-role/teams/payments/payments-api/i-0abc",
    ):
        with pytest.raises(PolicyViolation) as refused:
            judge(POLICY, SignRequest.from_payload(PAYMENTS), stranger)
        assert refused.value.reason == "caller_not_allowed", stranger


@pytest.mark.parametrize(
    "caller",
    [
        "arn:aws:iam::111122223333:root",
        "111122223333",
        "*",
        "arn:aws:iam::111122223333:role/orders\n",
        "arn:aws:iam::111122223333:role/orders ",
        "",
    ],
)
def test_a_root_or_malformed_caller_is_refused(caller: str) -> None:
    with pytest.raises(PolicyViolation) as refused:
        judge(POLICY, SignRequest.from_payload(GOOD), caller)
    assert refused.value.reason == "caller_not_allowed"


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ({"arn:aws:iam::111122223333:root": {"subjects": ["a"], "audiences": ["b"]}}, "root"),
        ({"111122223333": {"subjects": ["a"], "audiences": ["b"]}}, "principal ARN"),
        ({"*": {"subjects": ["a"], "audiences": ["b"]}}, "principal ARN"),
        (
            {
                "arn:aws:iam::111122223333:role/a/x": {"subjects": ["a"], "audiences": ["b"]},
                "arn:aws:iam::111122223333:role/b/x": {"subjects": ["a"], "audiences": ["b"]},
            },
            "same role",
        ),
        (
            {"arn:aws:iam::1:role/x": {"subjects": ["a"], "audiences": ["b"]}},
            "principal ARN",
        ),
        (
            {
                "arn:aws:iam::111122223333:role/x": {
                    "subjects": ["a"],
                    "audiences": ["b"],
                    "claims": {"email": True},
                }
            },
            "identity",
        ),
        (
            {
                "arn:aws:iam::111122223333:role/x": {
                    "subjects": ["a"],
                    "audiences": ["b"],
                    "claims": {"\u0131ss": True},
                }
            },
            "printable ASCII",
        ),
        (
            {
                "arn:aws:iam::111122223333:role/x": {
                    "subjects": ["a"],
                    "audiences": ["b"],
                    "claims": {"ISS": True},
                }
            },
            "reserved",
        ),
        (
            {
                "arn:aws:iam::111122223333:role/x": {
                    "subjects": ["a"],
                    "audiences": ["b"],
                    "claims": {"roles": []},
                }
            },
            "non-empty",
        ),
        (
            {
                "arn:aws:iam::111122223333:role/x": {
                    "subjects": ["a"],
                    "audiences": ["b"],
                    "scopes": ["x"],
                }
            },
            "subjects, audiences, claims",
        ),
    ],
)
def test_bad_caller_rules_are_refused_naming_the_problem(rules: Any, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        parse_caller_rules(rules, "JWTKEYS_CALLER_RULES")


def test_a_root_rule_is_refused_even_when_built_in_code() -> None:
    with pytest.raises(ConfigurationError, match="root"):
        SigningPolicy(
            issuer="i",
            allowed_subjects=Allowlist(("a",)),
            allowed_audiences=Allowlist(("b",)),
            default_ttl=300,
            max_token_ttl=3600,
            caller_rules={
                "arn:aws:iam::111122223333:root": CallerRule(Allowlist(("a",)), Allowlist(("b",)))
            },
        )


@pytest.mark.parametrize(
    "name", ["\u0130ss", "\u0131ss", "\uff29\uff33\uff33", "i\u200bss", "\u0406SS"]
)
def test_the_shadow_form_folds_every_spelling_of_iss(name: str) -> None:
    assert shadow_form(name) == "iss"


def test_a_backdated_window_moves_iat_nbf_and_exp_together() -> None:
    from jwtkeys.signer.policy import token_claims

    claims = token_claims(
        issuer="i", subject="s", audience="a", now=1000.7, ttl=300, jti="j", backdate=5
    )
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (995, 995, 1295)
    # Never more than half the TTL: a short token is not born expired.
    short = token_claims(
        issuer="i", subject="s", audience="a", now=1000, ttl=6, jti="j", backdate=5
    )
    assert (short["iat"], short["exp"]) == (997, 1003)


def test_the_margin_is_a_policy_setting_within_bounds() -> None:
    from jwtkeys.errors import ConfigurationError
    from jwtkeys.keeper.rotation_policy import RotationPolicy

    assert RotationPolicy(not_before_margin=5).to_mapping()["not_before_margin"] == 5
    with pytest.raises(ConfigurationError, match="not_before_margin"):
        RotationPolicy(not_before_margin=61)
