"""cdk.json context: validated at synth, an unsafe lifecycle never synthesizes."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from aws_cdk import App

from infra.config import load_stacks, select_stacks
from infra.stack import build_app
from jwtkeys.errors import ConfigurationError, UnsafePolicy
from jwtkeys.settings import SignerSettings
from tests.infra.conftest import cdk_json_context


def _jwtkeys_context() -> dict[str, Any]:
    return copy.deepcopy(cdk_json_context()["jwtkeys"])


def test_cdk_json_configures_dev_and_prod_with_distinct_keysets() -> None:
    configs = load_stacks(_jwtkeys_context())

    assert [(c.stage, c.stack_name) for c in configs] == [
        ("dev", "jwtkeys-servicenow-dev"),
        ("prod", "jwtkeys-servicenow-prod"),
    ]
    assert configs[1].servicenow is not None
    assert configs[1].policy.deletion_window_days == 30


def test_unsafe_policy_fails_synth_with_the_lifecycle_message() -> None:
    # Given a grace shorter than signer cache + max TTL + skew + tick
    context = cdk_json_context()
    context["jwtkeys"]["stacks"]["prod"]["policy"]["grace"] = 600
    app = App(context=context)

    # When the app is built (what `cdk synth` runs), Then the lifecycle refuses it
    with pytest.raises(UnsafePolicy) as refused:
        build_app(app)
    message = str(refused.value)
    assert message.startswith("jwtkeys.stacks.prod.policy: ")
    assert "grace >= signer_cache_ttl + max_token_ttl + clock_skew + tick_interval fails" in message


RULE = {"subjects": ["svc-a"], "audiences": ["jwtkeys-dev-client-id"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policy": {"algorithm": "ES256", "key_spec": "RSA_2048"}}, "cannot sign ES256"),
        ({"policy": {"tick_interval": 90}}, "whole number of minutes"),
        (
            {"policy": {"rollover_from": {"algorithm": "ES256", "key_spec": "RSA_2048"}}},
            "policy.rollover_from: key spec 'RSA_2048' cannot sign ES256",
        ),
        ({"default_ttl": 7200}, "exceeds policy.max_token_ttl"),
        ({"keyset": "Bad_Name"}, "lower-case letters"),
        ({"colour": "blue"}, "unknown setting(s): colour"),
        ({"direct_invoke_principals": ["batch-jobs"]}, "not an IAM or STS principal ARN"),
        ({"alarm_emails": ["nobody"]}, "not an e-mail address"),
        (
            {"custom_domain": {"domain_name": "keys.example.com", "certificate_arn": "arn:x"}},
            "ACM ARN in us-east-1",
        ),
        (
            {"function_url_callers": {"arn:aws:iam::111122223333:role/x": {"subjects": ["a"]}}},
            "{subjects, audiences, claims?}",
        ),
        # Signer access (issue: direct invoke bypassed per-caller rules)
        (
            {"function_url_callers": {"arn:aws:iam::111122223333:root": RULE}},
            "account root",
        ),
        ({"direct_invoke_principals": ["arn:aws:iam::111122223333:root"]}, "account root"),
        (
            {"direct_invoke_principals": ["arn:aws:iam::111122223333:role/batch"]},
            "needs direct_invoke turned on",
        ),
        ({"direct_invoke": "yes"}, "must be null, true or"),
        ({"direct_invoke": {"claims": {"email": True}}}, "names an identity"),
        ({"direct_invoke": {"claims": {"\u0130ss": True}}}, "printable ASCII"),
        (
            {
                "function_url_callers": {
                    "arn:aws:iam::111122223333:role/x": RULE | {"claims": {"Sub": True}}
                }
            },
            "reserved",
        ),
        (
            {
                "function_url_callers": {
                    "arn:aws:iam::111122223333:role/x": RULE | {"claims": {"act": ["x"]}}
                }
            },
            "identity",
        ),
        ({"direct_invoke": {"claims": {"trace": None}}}, "must be true (any value) or a list"),
        ({"layout": "shared"}, "layout must be one of"),
        (
            {"layout": "dedicated_signer_account", "direct_invoke": {}},
            "remove direct_invoke",
        ),
        (
            {
                "layout": "dedicated_signer_account",
                "account": "111122223333",
                "function_url_callers": {"arn:aws:iam::111122223333:role/x": RULE},
            },
            "keeps callers out of the signer's account 111122223333",
        ),
        (
            {"operator_role_arns": ["arn:aws:iam::111122223333:root"]},
            "operator_role_arns: 'arn:aws:iam::111122223333:root' is not an IAM role ARN",
        ),
        (
            {"operator_role_arns": ["arn:aws:sts::111122223333:assumed-role/ops/alice"]},
            "is not an IAM role ARN",
        ),
    ],
)
def test_malformed_settings_are_refused_naming_the_setting(
    change: dict[str, Any], message: str
) -> None:
    context = _jwtkeys_context()
    dev = context["stacks"]["dev"]
    for key, value in change.items():
        if key == "policy":
            dev["policy"] = {k: v for k, v in dev["policy"].items() if k not in value} | value
        else:
            dev[key] = value

    with pytest.raises(ConfigurationError) as refused:
        load_stacks(context)
    assert "jwtkeys.stacks.dev" in str(refused.value)
    assert message in str(refused.value)


def test_two_stages_on_one_keyset_are_refused() -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["keyset"] = context["stacks"]["dev"]["keyset"]

    with pytest.raises(ConfigurationError, match="'dev' and 'prod' would both use"):
        load_stacks(context)


OPERATOR_SECRET_ARN = (
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:jwtkeys/servicenow-AbC123"
)


def test_two_stages_sharing_an_operator_secret_are_refused() -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["servicenow"]["secret"] = OPERATOR_SECRET_ARN
    context["stacks"]["dev"]["servicenow"] = dict(context["stacks"]["prod"]["servicenow"])
    context["stacks"]["dev"]["issuer"] = context["stacks"]["prod"]["issuer"]

    with pytest.raises(ConfigurationError, match=f"secret:{OPERATOR_SECRET_ARN}"):
        load_stacks(context)


def test_a_fixed_secret_name_is_refused_with_the_ways_out() -> None:
    # A named secret's name stays taken for up to 30 days after `cdk destroy`.
    context = _jwtkeys_context()
    context["stacks"]["prod"]["servicenow"]["secret_name"] = "jwtkeys/servicenow-prod/servicenow"

    with pytest.raises(ConfigurationError) as refused:
        load_stacks(context)
    assert "jwtkeys.stacks.prod.servicenow.secret_name is no longer accepted" in str(refused.value)
    assert "CloudFormation names it" in str(refused.value)


@pytest.mark.parametrize(
    "secret", ["jwtkeys/servicenow-prod", OPERATOR_SECRET_ARN], ids=["name", "arn"]
)
def test_an_operator_secret_is_taken_by_name_or_complete_arn(secret: str) -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["servicenow"]["secret"] = secret

    servicenow = load_stacks(context)[1].servicenow
    assert servicenow is not None
    assert servicenow.secret == secret


def test_a_partial_secret_arn_is_refused() -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["servicenow"]["secret"] = OPERATOR_SECRET_ARN[:-7]

    with pytest.raises(ConfigurationError, match="not a complete Secrets Manager secret ARN"):
        load_stacks(context)


def test_the_keeper_reserves_no_concurrency_unless_a_stage_asks() -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["keeper_reserved_concurrency"] = 1

    dev, prod = load_stacks(context)
    assert dev.keeper_reserved_concurrency is None
    assert prod.keeper_reserved_concurrency == 1


@pytest.mark.parametrize("value", [0, 7, 1445, True, "30"])
def test_a_bad_steady_traffic_window_is_refused(value: object) -> None:
    context = _jwtkeys_context()
    context["stacks"]["dev"]["steady_traffic_minutes"] = value

    with pytest.raises(ConfigurationError, match="steady_traffic_minutes must be null"):
        load_stacks(context)


@pytest.mark.parametrize("value", [0, -1, True, "1"])
def test_a_bad_reserved_concurrency_is_refused(value: object) -> None:
    context = _jwtkeys_context()
    context["stacks"]["dev"]["keeper_reserved_concurrency"] = value

    with pytest.raises(ConfigurationError, match="keeper_reserved_concurrency must be null"):
        load_stacks(context)


@pytest.mark.parametrize(
    ("region", "missing"),
    [
        ("eu-central-2", "Lambda Function URLs"),
        ("ap-southeast-4", "Lambda Function URLs"),
        ("us-gov-west-1", "Amazon CloudFront"),
    ],
)
def test_a_region_lacking_a_needed_service_is_refused_at_synth(region: str, missing: str) -> None:
    context = cdk_json_context()
    context["jwtkeys"]["stacks"]["dev"]["region"] = region

    with pytest.raises(ConfigurationError) as refused:
        build_app(App(context=context))
    message = str(refused.value)
    assert message.startswith(f"jwtkeys.stacks.dev.region {region!r} lacks {missing}")
    assert "https://docs.aws.amazon.com/" in message


def test_a_region_with_every_service_is_accepted() -> None:
    context = _jwtkeys_context()
    context["stacks"]["dev"]["region"] = "eu-west-1"

    assert load_stacks(context)[0].region == "eu-west-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"issuer": "https://issuer.example.com"}, "issuer must equal servicenow.client_id"),
        ({"policy": {"algorithm": "PS256"}}, "ServiceNow does not verify PS256"),
        ({"servicenow_trust": "pinned"}, "trust must be 'certificates' or 'jwks_url'"),
    ],
)
def test_a_keyset_servicenow_could_never_trust_is_refused(
    change: dict[str, Any], message: str
) -> None:
    context = _jwtkeys_context()
    prod = context["stacks"]["prod"]
    if "policy" in change:
        prod["policy"] |= change["policy"]
    if "issuer" in change:
        prod["issuer"] = change["issuer"]
    if "servicenow_trust" in change:
        prod["servicenow"]["trust"] = change["servicenow_trust"]

    with pytest.raises(ConfigurationError, match=message):
        load_stacks(context)


def test_jwks_url_trust_is_accepted() -> None:
    context = _jwtkeys_context()
    context["stacks"]["prod"]["servicenow"]["trust"] = "jwks_url"
    servicenow = load_stacks(context)[1].servicenow
    assert servicenow is not None
    assert servicenow.trust == "jwks_url"


def test_a_role_with_a_path_and_claims_reaches_the_signers_environment() -> None:
    context = _jwtkeys_context()
    role = "arn:aws:iam::111122223333:role/teams/payments/payments-api"
    rule = RULE | {"claims": {"roles": ["reader"], "trace": True}}
    context["stacks"]["dev"] |= {"function_url_callers": {role: rule}, "direct_invoke": True}
    (dev, _) = load_stacks(context)
    settings = SignerSettings.from_environ(dev.signer_settings().to_environ())
    assert settings.policy.caller_rules[role].to_mapping() == rule
    assert settings.policy.direct_invoke is not None
    assert settings.policy.direct_invoke.claims == {}


def test_direct_invoke_is_off_unless_the_stage_turns_it_on() -> None:
    for config in load_stacks(_jwtkeys_context()):
        assert config.direct_invoke is None
        assert config.signer_settings().policy.direct_invoke is None


def test_the_example_production_stage_uses_a_dedicated_signer_account() -> None:
    configs = {config.stage: config for config in load_stacks(_jwtkeys_context())}
    assert configs["prod"].layout == "dedicated_signer_account"


def test_a_suffix_makes_a_throw_away_copy_of_one_stage() -> None:
    configs = load_stacks(_jwtkeys_context())

    [copy_of_dev] = select_stacks(configs, "dev", "ab12")

    assert copy_of_dev.stage == "dev"
    assert copy_of_dev.keyset == "servicenow-dev-ab12"
    # Every name derived from the keyset follows: stack, aliases, key tags, alarms.
    assert copy_of_dev.stack_name == "jwtkeys-servicenow-dev-ab12"
    assert copy_of_dev.issuer == configs[0].issuer
    assert select_stacks(configs, "prod", None) == [configs[1]]
    assert select_stacks(configs, None, None) == configs


@pytest.mark.parametrize(
    ("stage", "suffix", "message"),
    [
        ("qa", None, "no stage 'qa' (known: dev, prod)"),
        (None, "ab12", "jwtkeys:suffix needs jwtkeys:stage"),
        ("dev", "AB_12", "jwtkeys:suffix must be 1-12 lower-case letters or digits"),
        ("dev", "a" * 13, "jwtkeys:suffix must be 1-12"),
    ],
)
def test_a_bad_stage_or_suffix_is_refused(
    stage: str | None, suffix: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        select_stacks(load_stacks(_jwtkeys_context()), stage, suffix)


def test_a_suffix_that_would_make_the_keyset_too_long_is_refused() -> None:
    context = _jwtkeys_context()
    context["stacks"]["dev"]["keyset"] = "k" * 35

    with pytest.raises(ConfigurationError, match="jwtkeys:suffix: keyset name"):
        select_stacks(load_stacks(context), "dev", "abcdef")


def test_the_cdk_app_builds_only_the_suffixed_stage_from_command_line_context() -> None:
    # What `cdk deploy -c jwtkeys:stage=dev -c jwtkeys:suffix=ab12` hands the app.
    context = {**cdk_json_context(), "jwtkeys:stage": "dev", "jwtkeys:suffix": "ab12"}

    stacks = build_app(App(context=context))

    assert [stack.stack_name for stack in stacks] == ["jwtkeys-servicenow-dev-ab12"]
    assert stacks[0].config.keyset == "servicenow-dev-ab12"
