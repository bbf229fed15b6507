"""KeyLifecycle and signer settings from the environment: refused at cold start, naming why."""

from __future__ import annotations

import json

import pytest

from jwtkeys import names
from jwtkeys.errors import ConfigurationError
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


def test_a_servicenow_keyset_loads_with_its_jwks_url_mode() -> None:
    settings = KeeperSettings.from_environ(
        {**KEEPER, names.ENV_SERVICENOW_JWKS_URL: "https://keys.example.com/.well-known/jwks.json"}
    )
    assert settings.servicenow is not None
    assert settings.servicenow.jwks_url == "https://keys.example.com/.well-known/jwks.json"
    assert settings.servicenow.revoke_sessions is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {names.ENV_ISSUER: "https://issuer.example.com"},
            "must equal JWTKEYS_SERVICENOW_CLIENT_ID",
        ),
        ({names.ENV_POLICY: json.dumps({"algorithm": "PS256"})}, "does not verify PS256"),
        ({names.ENV_SERVICENOW_INSTANCE: "http://acme.service-now.com"}, "must be an https URL"),
        ({names.ENV_SERVICENOW_REVOKE_SESSIONS: "maybe"}, "true or false"),
        ({names.ENV_BUCKET: ""}, "JWTKEYS_BUCKET is required"),
        ({names.ENV_KEYSET: "Prod!"}, "keyset name"),
        ({names.ENV_POLICY: "{not json"}, "not valid JSON"),
    ],
)
def test_bad_keeper_settings_are_refused_naming_the_setting(
    change: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KeeperSettings.from_environ({**KEEPER, **change})


def test_signer_settings_refuse_malformed_caller_rules() -> None:
    env = {
        names.ENV_KEYSET: "prod",
        names.ENV_ISSUER: "client-1",
        names.ENV_ALLOWED_SUBJECTS: '["svc-*"]',
        names.ENV_ALLOWED_AUDIENCES: '["client-1"]',
        names.ENV_CALLER_RULES: json.dumps({"arn:aws:iam::1:role/x": {"subjects": ["a"]}}),
    }
    with pytest.raises(ConfigurationError, match=names.ENV_CALLER_RULES):
        SignerSettings.from_environ(env)
    env[names.ENV_CALLER_RULES] = "{}"
    assert SignerSettings.from_environ(env).policy.default_ttl == 300
