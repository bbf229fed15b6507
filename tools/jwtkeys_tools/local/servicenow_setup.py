"""The one-time ServiceNow set-up a user does, done on the emulator for local runs."""

from __future__ import annotations

import json
from typing import Any

from jwtkeys import names
from jwtkeys_tools.local.servicenow_emulator import ServiceNowEmulator
from jwtkeys_tools.local.servicenow_emulator.tables import INTEGRATION_ROLE

CLIENT_ID = "jwtkeys-demo-client"
CLIENT_SECRET = "demo-app-secret"  # noqa: S105 - a throwaway secret of the local emulator
INTEGRATION_USER = "jwtkeys.integration"
INTEGRATION_PASSWORD = "demo-integration-password"  # noqa: S105 - local emulator only
SUBJECT = "orders@example.com"
CANARY = "canary@example.com"


def configure_servicenow(
    emulator: ServiceNowEmulator, secretsmanager: Any, keyset: str
) -> dict[str, str]:
    """Create the oauth_jwt app, the users and the integration secret; return the keeper's env.

    Mirrors docs/servicenow.md: an integration user with the two admin roles the
    records need, a non-admin canary user, a non-admin subject, and the app whose
    client_id is both the tokens' issuer and audience.
    """
    emulator.add_user(
        INTEGRATION_USER,
        email="integration@example.com",
        roles=(INTEGRATION_ROLE,),
        password=INTEGRATION_PASSWORD,
    )
    emulator.add_user("orders.service", email=SUBJECT)
    emulator.add_user("jwtkeys.canary", email=CANARY)
    emulator.add_oauth_jwt_app("jwtkeys demo", CLIENT_ID, CLIENT_SECRET, user_field="email")
    secret = {
        "type": "basic",
        "username": INTEGRATION_USER,
        "password": INTEGRATION_PASSWORD,
        "oauth_client_secret": CLIENT_SECRET,
    }
    arn = secretsmanager.create_secret(
        Name=f"jwtkeys/{keyset}/servicenow", SecretString=json.dumps(secret)
    )["ARN"]
    return {
        names.ENV_SERVICENOW_INSTANCE: emulator.url,
        names.ENV_SERVICENOW_SECRET: str(arn),
        names.ENV_SERVICENOW_CLIENT_ID: CLIENT_ID,
        names.ENV_SERVICENOW_CANARY_SUBJECT: CANARY,
        names.ENV_SERVICENOW_CA_BUNDLE: emulator.ca_bundle,
    }
