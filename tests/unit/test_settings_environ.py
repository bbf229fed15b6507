"""One builder from typed settings to the functions' environment: settings -> env -> settings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jwtkeys import names
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.keys.algorithms import KeyPair
from jwtkeys.settings import KeeperSettings, ServiceNowSettings, SignerSettings
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy
from jwtkeys.signer.rules import Allowlist, CallerRule, ClaimRule

ROTATION = RotationPolicy(algorithm="ES256", key_spec="ECC_NIST_P256", max_token_ttl=1800)
SIGNER = SignerSettings(
    keyset="servicenow-prod",
    rotation=ROTATION,
    policy=SigningPolicy(
        issuer="client-1",
        allowed_subjects=Allowlist(("svc-*", "batch@example.com")),
        allowed_audiences=Allowlist(("client-1",)),
        default_ttl=600,
        max_token_ttl=1800,
        caller_rules={
            "arn:aws:iam::123456789012:role/b": CallerRule(
                Allowlist(("b@example.com",)), Allowlist(("client-1",))
            ),
            "arn:aws:iam::123456789012:role/teams/a": CallerRule(
                Allowlist(("a-*",)),
                Allowlist(("client-1", "other")),
                claims={"roles": ClaimRule(Allowlist(("reader", "t-*"))), "trace": ClaimRule()},
            ),
        },
        direct_invoke=DirectInvoke(claims={"batch_id": ClaimRule()}),
    ),
)
SERVICENOW = ServiceNowSettings(
    instance_url="https://acme.service-now.com",
    secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:jwtkeys",
    client_id="client-1",
    canary_subject="canary@example.com",
    ca_bundle=None,
    revoke_sessions=True,
)
KEEPER = KeeperSettings(
    keyset="servicenow-prod",
    issuer="client-1",
    rotation=ROTATION,
    bucket="jwtkeys-servicenow-prod-jwks",
    public_base_url="https://keys.example.com",
    distribution_id="E2ABCDEF",
    signer_role_arn="arn:aws:iam::123456789012:role/signer",
    keeper_role_arn="arn:aws:iam::123456789012:role/keeper",
    servicenow=SERVICENOW,
)


def test_signer_settings_survive_their_environment() -> None:
    environ = SIGNER.to_environ()
    assert set(environ) <= {value for key, value in vars(names).items() if key.startswith("ENV_")}
    assert SignerSettings.from_environ(environ) == SIGNER
    # And back: the environment is canonical (stable across synths)
    assert SignerSettings.from_environ(environ).to_environ() == environ


@pytest.mark.parametrize(
    "keeper",
    [
        KEEPER,
        replace(KEEPER, servicenow=None, public_base_url=None, distribution_id=None),
        replace(
            KEEPER,
            servicenow=replace(
                SERVICENOW,
                canary_subject=None,
                ca_bundle="/opt/ca.pem",
                revoke_sessions=False,
                jwks_url="https://keys.example.com/.well-known/jwks.json",
            ),
        ),
        replace(
            KEEPER,
            rotation=replace(ROTATION, rollover_from=KeyPair("RS256", "RSA_2048")),
        ),
    ],
    ids=["servicenow", "no-servicenow", "servicenow-options", "rollover-from"],
)
def test_keeper_settings_survive_their_environment(keeper: KeeperSettings) -> None:
    environ = keeper.to_environ()
    assert KeeperSettings.from_environ(environ) == keeper
    assert KeeperSettings.from_environ(environ).to_environ() == environ


def test_defaults_are_left_out_of_the_environment() -> None:
    environ = replace(KEEPER, servicenow=None, distribution_id=None).to_environ()
    assert names.ENV_DISTRIBUTION_ID not in environ
    assert not [name for name in environ if name.startswith("JWTKEYS_SERVICENOW")]
    assert names.ENV_SERVICENOW_REVOKE_SESSIONS not in KEEPER.to_environ()


def test_direct_invoke_off_survives_its_environment() -> None:
    off = replace(SIGNER, policy=replace(SIGNER.policy, direct_invoke=None))
    environ = off.to_environ()
    assert environ[names.ENV_DIRECT_INVOKE] == "null"
    assert SignerSettings.from_environ(environ).policy.direct_invoke is None
    # And an environment without the variable (an older stack) has it off too
    del environ[names.ENV_DIRECT_INVOKE]
    assert SignerSettings.from_environ(environ).policy.direct_invoke is None
