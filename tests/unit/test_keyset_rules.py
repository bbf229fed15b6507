"""The keyset rules have one home each; synth, cold start and the trust target share them."""

from __future__ import annotations

import dataclasses

import boto3
import pytest

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import ConfigurationError
from jwtkeys.servicenow.keyset_rule import check_servicenow_keyset
from jwtkeys.servicenow.target import ServiceNowTrustTarget
from jwtkeys.settings import KeeperSettings, SignerSettings

KEEPER = {
    names.ENV_KEYSET: "prod",
    names.ENV_ISSUER: "client-1",
    names.ENV_BUCKET: "bucket",
    names.ENV_SIGNER_ROLE_ARN: "arn:aws:iam::123456789012:role/signer",
    names.ENV_KEEPER_ROLE_ARN: "arn:aws:iam::123456789012:role/keeper",
    names.ENV_SERVICENOW_INSTANCE: "https://acme.service-now.com",
    names.ENV_SERVICENOW_SECRET: "jwtkeys/prod/servicenow",
    names.ENV_SERVICENOW_CLIENT_ID: "client-1",
}


@pytest.mark.parametrize("keyset", ["a", "servicenow-prod", "a" * 40, "a-1", "0a"])
def test_plain_names_up_to_40_characters_are_keysets(keyset: str) -> None:
    assert names.check_keyset_name(keyset) == keyset


@pytest.mark.parametrize("keyset", ["", "a" * 41, "-a", "a-", "Prod", "a_b", "a.b", "a b"])
def test_other_names_are_refused(keyset: str) -> None:
    with pytest.raises(ConfigurationError, match="1-40 lower-case letters"):
        names.check_keyset_name(keyset)


def test_both_functions_refuse_a_name_that_infra_refuses() -> None:
    too_long = "a" * 41
    with pytest.raises(ConfigurationError, match="1-40"):
        KeeperSettings.from_environ({**KEEPER, names.ENV_KEYSET: too_long})
    with pytest.raises(ConfigurationError, match="1-40"):
        SignerSettings.from_environ(
            {
                names.ENV_KEYSET: too_long,
                names.ENV_ISSUER: "client-1",
                names.ENV_ALLOWED_SUBJECTS: '["*"]',
                names.ENV_ALLOWED_AUDIENCES: '["*"]',
            }
        )


@pytest.mark.parametrize(
    ("issuer", "algorithm", "message"),
    [
        ("https://issuer.example.com", "RS256", "issuer must equal client_id"),
        ("client-1", "PS256", "does not verify PS256"),
        ("client-1", "PS512", "does not verify PS512"),
    ],
)
def test_servicenow_refuses_other_issuers_and_pss(
    issuer: str, algorithm: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_servicenow_keyset(issuer=issuer, algorithm=algorithm, client_id="client-1")


@pytest.mark.parametrize("algorithm", ["RS256", "RS512", "ES256"])
def test_servicenow_accepts_its_client_id_with_rs_and_es(algorithm: str) -> None:
    check_servicenow_keyset(issuer="client-1", algorithm=algorithm, client_id="client-1")


@pytest.mark.parametrize("key_spec", ["RSA_3072", "RSA_4096"])
def test_servicenow_refuses_rsa_keys_above_2048_bits(key_spec: str) -> None:
    with pytest.raises(ConfigurationError, match=f"key_spec {key_spec} is refused"):
        check_servicenow_keyset(
            issuer="client-1", algorithm="RS256", client_id="client-1", key_spec=key_spec
        )


@pytest.mark.parametrize("key_spec", ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384"])
def test_servicenow_accepts_rsa_2048_and_ec_keys(key_spec: str) -> None:
    check_servicenow_keyset(
        issuer="client-1", algorithm="RS256", client_id="client-1", key_spec=key_spec
    )


def test_the_trust_target_refuses_what_cold_start_refuses() -> None:
    # Given settings built past the environment check (as a caller holding settings could)
    settings = dataclasses.replace(
        KeeperSettings.from_environ(KEEPER), issuer="https://issuer.example.com"
    )
    # Then building the ServiceNow trust target refuses them too (it used to only warn)
    with pytest.raises(ConfigurationError, match="must equal client_id"):
        ServiceNowTrustTarget.create(
            settings,
            SimulatedClock(start=0.0),
            # Clients only: building the target makes no call.
            kms=boto3.client("kms", region_name="us-east-1"),
            secretsmanager=boto3.client("secretsmanager", region_name="us-east-1"),
        )
