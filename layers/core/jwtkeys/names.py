"""Names shared by the runtime, the infrastructure and the tests: one place for each."""

from __future__ import annotations

import re

from jwtkeys.errors import ConfigurationError

METRIC_NAMESPACE = "jwtkeys"

# KMS tags carried by every key of a keyset.
TAG_KEYSET = "jwtkeys:keyset"
TAG_STATE = "jwtkeys:state"
TAG_NONCE = "jwtkeys:nonce"
TAG_KID = "jwtkeys:kid"
TAG_CREATED_AT = "jwtkeys:created-at"
TAG_PUBLISHED_AT = "jwtkeys:published-at"
TAG_ACTIVATED_AT = "jwtkeys:activated-at"
TAG_DEACTIVATED_AT = "jwtkeys:deactivated-at"
TAG_RETIRED_AT = "jwtkeys:retired-at"
# The JWS algorithm the key signs with (its key policy allows that one only).
TAG_ALG = "jwtkeys:alg"
TAG_PREFIX = "jwtkeys:"

# S3 objects in the keyset's bucket.
JWKS_OBJECT_KEY = ".well-known/jwks.json"
OPENID_CONFIGURATION_KEY = ".well-known/openid-configuration"
PUBLIC_PREFIX = ".well-known/"
STATE_PREFIX = "state/"


# A keyset name is part of the stack name, KMS aliases, tags, alarm and dashboard names,
# the local bucket `jwtkeys-<keyset>-jwks` (63 at most) and ServiceNow record names
# `jwtkeys/<keyset>/<kid>` (52 + its length; ServiceNow's usual string column is 100):
# 40 keeps every one of them in bounds. No trailing hyphen, so joining with '-' is clean.
KEYSET_NAME_MAX = 40
KEYSET_NAME = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")  # 1-40 characters


def check_keyset_name(keyset: str) -> str:
    """The keyset name, or ConfigurationError when a derived name could not hold it."""
    if not KEYSET_NAME.match(keyset):
        raise ConfigurationError(
            f"keyset name {keyset!r} must be 1-{KEYSET_NAME_MAX} lower-case letters, digits"
            " or inner hyphens"
        )
    return keyset


def alias_prefix(keyset: str) -> str:
    return f"alias/jwtkeys/{keyset}/"


def current_alias(keyset: str) -> str:
    """The alias that names the signing key: the truth about which key signs."""
    return f"alias/jwtkeys/{keyset}/current"


def servicenow_record_name(keyset: str, kid: str) -> str:
    """The only marker of a ServiceNow record jwtkeys owns."""
    return f"jwtkeys/{keyset}/{kid}"


# Environment variables read by the functions' settings (set by the CDK stack).
ENV_KEYSET = "JWTKEYS_KEYSET"
ENV_ISSUER = "JWTKEYS_ISSUER"
ENV_POLICY = "JWTKEYS_POLICY"  # JSON of RotationPolicy
ENV_ALLOWED_AUDIENCES = "JWTKEYS_ALLOWED_AUDIENCES"  # JSON list of exact values or patterns
ENV_ALLOWED_SUBJECTS = "JWTKEYS_ALLOWED_SUBJECTS"  # JSON list of exact values or patterns
ENV_DEFAULT_TTL = "JWTKEYS_DEFAULT_TTL"
ENV_CALLER_RULES = "JWTKEYS_CALLER_RULES"  # JSON {principal ARN: {subjects, audiences, claims?}}
# JSON null (direct invoke refused, the default) or {"claims": {name: true | [values]}}
ENV_DIRECT_INVOKE = "JWTKEYS_DIRECT_INVOKE"
ENV_BUCKET = "JWTKEYS_BUCKET"
ENV_PUBLIC_BASE_URL = "JWTKEYS_PUBLIC_BASE_URL"
ENV_DISTRIBUTION_ID = "JWTKEYS_DISTRIBUTION_ID"
ENV_SIGNER_ROLE_ARN = "JWTKEYS_SIGNER_ROLE_ARN"
ENV_KEEPER_ROLE_ARN = "JWTKEYS_KEEPER_ROLE_ARN"
ENV_SERVICENOW_INSTANCE = "JWTKEYS_SERVICENOW_INSTANCE"
ENV_SERVICENOW_SECRET = "JWTKEYS_SERVICENOW_SECRET"  # noqa: S105 (a variable name)
ENV_SERVICENOW_CLIENT_ID = "JWTKEYS_SERVICENOW_CLIENT_ID"
ENV_SERVICENOW_CANARY_SUBJECT = "JWTKEYS_SERVICENOW_CANARY_SUBJECT"
ENV_SERVICENOW_CA_BUNDLE = "JWTKEYS_SERVICENOW_CA_BUNDLE"
ENV_SERVICENOW_REVOKE_SESSIONS = "JWTKEYS_SERVICENOW_REVOKE_SESSIONS"
# Set only in JWKS-URL mode: the URL the oauth_jwt app is pointed at instead of certificates.
ENV_SERVICENOW_JWKS_URL = "JWTKEYS_SERVICENOW_JWKS_URL"
ENV_AUTHORIZER_JWKS_URL = "JWTKEYS_AUTHORIZER_JWKS_URL"
ENV_AUTHORIZER_ROUTES = "JWTKEYS_AUTHORIZER_ROUTES"  # JSON {pattern: {audience, claims?}}
ENV_AUTHORIZER_CACHE_TTL = "JWTKEYS_AUTHORIZER_CACHE_TTL"
ENV_AUTHORIZER_LEEWAY = "JWTKEYS_AUTHORIZER_LEEWAY"
ENV_AUTHORIZER_MAX_LIFETIME = "JWTKEYS_AUTHORIZER_MAX_LIFETIME"

# KMS CloudTrail events. The keeper makes the first kind on its keys (and Sign for
# canaries and certificates); it never makes the second, so those are foreign whoever
# makes them.
KMS_EVENTS_MADE_BY_KEEPER = ("UpdateAlias", "DisableKey", "ScheduleKeyDeletion", "TagResource")
KMS_EVENTS_NEVER_MADE_BY_KEEPER = (
    "PutKeyPolicy",
    "CreateGrant",
    "EnableKey",
    "CancelKeyDeletion",
    "UntagResource",
)
KMS_SIGN_EVENT = "Sign"
