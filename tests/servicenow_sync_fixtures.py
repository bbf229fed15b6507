"""Fixtures and helpers for the ServiceNow trust tests (a pytest plugin, see conftest.py).

A keyset on the local AWS endpoint whose clock is the emulator's own simulated clock,
so certificate validity, token times and the lifecycle all share one time line; an
emulated instance with the `oauth_jwt` app, the integration user and a non-admin
canary user; and the keeper's ServiceNow secret in the local Secrets Manager.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from jwtkeys import names
from jwtkeys.clock import Clock, SimulatedClock
from jwtkeys.keys.algorithms import ALGORITHMS
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.servicenow.target import ServiceNowTrustTarget
from jwtkeys.settings import KeeperSettings
from jwtkeys.trust.target import TrustTarget
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.stack import LocalKeysetConfig, LocalStack
from tests.servicenow_fixtures import CLIENT_ID, CLIENT_SECRET, INTEGRATION_ROLES, INTEGRATION_USER
from tests.stack_fixtures import FAST_POLICY

CANARY_EMAIL = "canary@jwtkeys.test"
SERVICE_EMAIL = "svc-orders@jwtkeys.test"
SECRET_NAME = "jwtkeys/test/servicenow"
KEY_SPECS = {"RS256": "RSA_2048", "ES256": "ECC_NIST_P256", "ES384": "ECC_NIST_P384"}


@dataclass
class Instance:
    """The emulated instance as one test set it up."""

    emulator: ServiceNowEmulator
    app_sys_id: str
    integration_sys_id: str
    canary_sys_id: str

    def owned_rows(self, table: str, keyset: str = "test") -> list[dict[str, str]]:
        """Rows named exactly `jwtkeys/<keyset>/<kid>` (a kid has 43 base64url characters)."""
        owned = re.compile(re.escape(names.servicenow_record_name(keyset, "")) + r"[\w-]{43}")
        return [row for row in self.emulator.rows(table) if owned.fullmatch(row["name"])]

    def trusted_kids(self) -> set[str]:
        """Kids with an owned map pointing at an owned certificate of the same kid."""
        certificates = {row["sys_id"]: row for row in self.owned_rows("sys_certificate")}
        kids = set()
        for row in self.owned_rows("jwt_verifier_map"):
            certificate = certificates.get(row["sys_certificate"])
            if certificate is not None and certificate["name"] == row["name"]:
                kids.add(row["kid"])
        return kids


def set_up_instance(emulator: ServiceNowEmulator) -> Instance:
    """The one-time set-up docs/servicenow.md describes, done on the emulator."""
    user, password = INTEGRATION_USER
    integration = emulator.add_user(user, roles=INTEGRATION_ROLES, password=password)
    app = emulator.add_oauth_jwt_app("jwtkeys test", CLIENT_ID, CLIENT_SECRET)
    canary = emulator.add_user("jwtkeys.canary", email=CANARY_EMAIL)
    emulator.add_user("svc-orders", email=SERVICE_EMAIL)
    return Instance(emulator, app, integration, canary)


def secret_value(kind: str = "basic", *, app_secret: str | None = CLIENT_SECRET) -> str:
    """The keeper's ServiceNow secret, as docs/servicenow.md documents it."""
    user, password = INTEGRATION_USER
    values: dict[str, Any]
    if kind == "basic":
        values = {"type": "basic", "username": user, "password": password}
    else:
        values = {
            "type": "oauth_client_credentials",
            "client_id": "jwtkeys-integration",
            "client_secret": "integration-client-secret",
        }
    if app_secret is not None:
        values["oauth_client_secret"] = app_secret
    return json.dumps(values)


def put_secret(aws: LocalAws, value: str) -> str:
    """Create (or overwrite) the secret in the local Secrets Manager; returns its ARN."""
    client = aws.client("secretsmanager")
    try:
        return str(client.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"])
    except client.exceptions.ResourceExistsException:
        return str(client.put_secret_value(SecretId=SECRET_NAME, SecretString=value)["ARN"])


def servicenow_env(
    emulator: ServiceNowEmulator, secret_id: str, *, canary: str | None = CANARY_EMAIL
) -> dict[str, str]:
    """The keeper's ServiceNow environment variables, as the CDK stack sets them."""
    env = {
        names.ENV_SERVICENOW_INSTANCE: emulator.url,
        names.ENV_SERVICENOW_SECRET: secret_id,
        names.ENV_SERVICENOW_CLIENT_ID: CLIENT_ID,
        names.ENV_SERVICENOW_CA_BUNDLE: emulator.ca_bundle,
    }
    if canary is not None:
        env[names.ENV_SERVICENOW_CANARY_SUBJECT] = canary
    return env


def make_stack(
    aws: LocalAws, clock: Clock, env: dict[str, str], **policy_changes: Any
) -> LocalStack:
    """Keyset `test` with issuer = client_id (ServiceNow checks iss and aud)."""
    policy = FAST_POLICY
    if policy_changes:
        policy = type(policy).from_mapping({**policy.to_mapping(), **policy_changes})
    stack = LocalStack(
        aws,
        LocalKeysetConfig(
            keyset="test",
            issuer=CLIENT_ID,
            policy=policy,
            allowed_subjects=("*@jwtkeys.test",),
            allowed_audiences=(CLIENT_ID,),
            servicenow_env=env,
            # The tests sign with direct invokes, as a stage with the path on would.
            direct_invoke_claims={},
        ),
        clock,
    )
    stack.create_bucket()
    return stack


def trust_factory(aws: LocalAws, **options: Any) -> Any:
    """A keeper trust factory building ServiceNowTrustTarget on the local AWS clients."""

    def build(settings: KeeperSettings, clock: Clock) -> TrustTarget:
        return ServiceNowTrustTarget.create(
            settings,
            clock,
            kms=aws.client("kms"),
            secretsmanager=aws.client("secretsmanager"),
            **options,
        )

    return build


def make_trust(stack: LocalStack, **options: Any) -> ServiceNowTrustTarget:
    """The trust target the keeper of `stack` would build."""
    settings = KeeperSettings.from_environ(stack.keeper_env())
    trust = trust_factory(stack.aws, **options)(settings, stack.clock)
    assert isinstance(trust, ServiceNowTrustTarget)
    return trust


def make_key(stack: LocalStack, algorithm: str = "RS256", now: float | None = None) -> ManagedKey:
    """A KMS key of the account as the keeper would describe it (not registered)."""
    spec = KEY_SPECS[algorithm]
    arn = stack.kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    der = stack.kms.get_public_key(KeyId=arn)["PublicKey"]
    jwk = public_jwk(public_key_from_der(der), ALGORITHMS[algorithm])
    created = stack.clock.now() if now is None else now
    return ManagedKey(
        arn=arn,
        kid=jwk["kid"],
        state=KeyState.NEXT,
        jwk=jwk,
        nonce="test",
        created_at=created,
        published_at=created,
    )


def exchange(emulator: ServiceNowEmulator, token: str) -> requests.Response:
    """POST a JWT to the emulator's token endpoint as the app (the documented form)."""
    return requests.post(
        f"{emulator.url}/oauth_token.do",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": token,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        verify=emulator.ca_bundle,
        timeout=10,
    )


@pytest.fixture
def instance(servicenow: ServiceNowEmulator) -> Instance:
    """The emulator, set up once as a user would (app, integration user, canary)."""
    return set_up_instance(servicenow)


@pytest.fixture
def sn_stack(
    local_aws: LocalAws, instance: Instance, servicenow_clock: SimulatedClock
) -> LocalStack:
    """Keyset `test` on the emulator's clock, with ServiceNow configured (Basic auth)."""
    secret_id = put_secret(local_aws, secret_value())
    return make_stack(local_aws, servicenow_clock, servicenow_env(instance.emulator, secret_id))


def wait_real(seconds: float) -> None:
    """A real pause (only where a socket timeout must really elapse)."""
    time.sleep(seconds)
