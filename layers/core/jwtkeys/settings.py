"""Typed settings read once from the environment; a bad setting fails at cold start."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jwtkeys import names
from jwtkeys.errors import ConfigurationError
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.names import check_keyset_name
from jwtkeys.servicenow.keyset_rule import check_servicenow_keyset
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy, default_ttl
from jwtkeys.signer.rules import CallerRule, parse_allowlist, parse_caller_rules, parse_claim_rules


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _json(environ: Mapping[str, str], name: str, default: str) -> Any:
    raw = environ.get(name, default)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"environment variable {name} is not valid JSON: {error}"
        ) from None


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be an integer") from None


def load_rotation_policy(environ: Mapping[str, str]) -> RotationPolicy:
    """The keyset's lifecycle policy from ENV_POLICY (JSON), validated."""
    values = _json(environ, names.ENV_POLICY, "{}")
    if not isinstance(values, dict):
        raise ConfigurationError(f"environment variable {names.ENV_POLICY} must be a JSON object")
    try:
        return RotationPolicy.from_mapping(values)
    except ConfigurationError as error:
        raise type(error)(f"{names.ENV_POLICY}: {error}") from None
    except TypeError as error:
        raise ConfigurationError(f"{names.ENV_POLICY}: {error}") from None


def _caller_rules(environ: Mapping[str, str]) -> dict[str, CallerRule]:
    return parse_caller_rules(_json(environ, names.ENV_CALLER_RULES, "{}"), names.ENV_CALLER_RULES)


def _direct_invoke(environ: Mapping[str, str]) -> DirectInvoke | None:
    # Absent or null: off. A direct invoke carries no caller identity (see DirectInvoke).
    raw = _json(environ, names.ENV_DIRECT_INVOKE, "null")
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"claims"}:
        raise ConfigurationError(f"{names.ENV_DIRECT_INVOKE} must be null or {{claims?}}")
    return DirectInvoke(
        claims=parse_claim_rules(raw.get("claims", {}), f"{names.ENV_DIRECT_INVOKE}.claims")
    )


@dataclass(frozen=True)
class SignerSettings:
    """Everything the signing function needs, parsed and validated."""

    keyset: str
    rotation: RotationPolicy
    policy: SigningPolicy

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SignerSettings:
        keyset = check_keyset_name(_required(environ, names.ENV_KEYSET))
        rotation = load_rotation_policy(environ)
        policy = SigningPolicy(
            issuer=_required(environ, names.ENV_ISSUER),
            allowed_subjects=parse_allowlist(
                _json(environ, names.ENV_ALLOWED_SUBJECTS, "null"), names.ENV_ALLOWED_SUBJECTS
            ),
            allowed_audiences=parse_allowlist(
                _json(environ, names.ENV_ALLOWED_AUDIENCES, "null"), names.ENV_ALLOWED_AUDIENCES
            ),
            default_ttl=_int(environ, names.ENV_DEFAULT_TTL, default_ttl(rotation.max_token_ttl)),
            max_token_ttl=rotation.max_token_ttl,
            caller_rules=_caller_rules(environ),
            direct_invoke=_direct_invoke(environ),
            not_before_margin=rotation.not_before_margin,
        )
        return cls(keyset=keyset, rotation=rotation, policy=policy)

    def to_environ(self) -> dict[str, str]:
        """The signing function's environment: `from_environ` reads back these settings."""
        policy = self.policy
        caller_rules = {
            principal: rule.to_mapping() for principal, rule in policy.caller_rules.items()
        }
        direct_invoke = None
        if policy.direct_invoke is not None:
            direct_invoke = {
                "claims": {
                    name: rule.to_json() for name, rule in policy.direct_invoke.claims.items()
                }
            }
        return {
            **_keyset_environ(self.keyset, policy.issuer, self.rotation),
            names.ENV_ALLOWED_AUDIENCES: json.dumps(list(policy.allowed_audiences.patterns)),
            names.ENV_ALLOWED_SUBJECTS: json.dumps(list(policy.allowed_subjects.patterns)),
            names.ENV_DEFAULT_TTL: str(policy.default_ttl),
            names.ENV_CALLER_RULES: json.dumps(caller_rules, sort_keys=True),
            names.ENV_DIRECT_INVOKE: json.dumps(direct_invoke, sort_keys=True),
        }


@dataclass(frozen=True)
class ServiceNowSettings:
    """Where the keyset's ServiceNow trust records live and how to reach them."""

    instance_url: str
    secret_id: str
    client_id: str
    canary_subject: str | None
    ca_bundle: str | None
    revoke_sessions: bool
    jwks_url: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServiceNowSettings | None:
        """The keyset's ServiceNow settings, or None when no instance is configured."""
        instance = environ.get(names.ENV_SERVICENOW_INSTANCE) or None
        if instance is None:
            return None
        if not instance.startswith("https://"):
            raise ConfigurationError(f"{names.ENV_SERVICENOW_INSTANCE} must be an https URL")
        revoke = environ.get(names.ENV_SERVICENOW_REVOKE_SESSIONS, "true").lower()
        if revoke not in {"true", "false"}:
            raise ConfigurationError(
                f"{names.ENV_SERVICENOW_REVOKE_SESSIONS} must be true or false"
            )
        return cls(
            instance_url=instance.rstrip("/"),
            secret_id=_required(environ, names.ENV_SERVICENOW_SECRET),
            client_id=_required(environ, names.ENV_SERVICENOW_CLIENT_ID),
            canary_subject=environ.get(names.ENV_SERVICENOW_CANARY_SUBJECT) or None,
            ca_bundle=environ.get(names.ENV_SERVICENOW_CA_BUNDLE) or None,
            revoke_sessions=revoke == "true",
            jwks_url=environ.get(names.ENV_SERVICENOW_JWKS_URL) or None,
        )

    def to_environ(self) -> dict[str, str]:
        """The keeper's ServiceNow variables; unset options are left out (their defaults)."""
        environ = {
            names.ENV_SERVICENOW_INSTANCE: self.instance_url,
            names.ENV_SERVICENOW_SECRET: self.secret_id,
            names.ENV_SERVICENOW_CLIENT_ID: self.client_id,
        }
        optional = {
            names.ENV_SERVICENOW_CANARY_SUBJECT: self.canary_subject,
            names.ENV_SERVICENOW_CA_BUNDLE: self.ca_bundle,
            names.ENV_SERVICENOW_REVOKE_SESSIONS: None if self.revoke_sessions else "false",
            names.ENV_SERVICENOW_JWKS_URL: self.jwks_url,
        }
        return environ | {name: value for name, value in optional.items() if value is not None}


@dataclass(frozen=True)
class KeeperSettings:
    """Everything the keeper function needs, parsed and validated."""

    keyset: str
    issuer: str
    rotation: RotationPolicy
    bucket: str
    public_base_url: str | None
    distribution_id: str | None
    signer_role_arn: str
    keeper_role_arn: str
    servicenow: ServiceNowSettings | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> KeeperSettings:
        servicenow = ServiceNowSettings.from_environ(environ)
        settings = cls(
            keyset=check_keyset_name(_required(environ, names.ENV_KEYSET)),
            issuer=_required(environ, names.ENV_ISSUER),
            rotation=load_rotation_policy(environ),
            bucket=_required(environ, names.ENV_BUCKET),
            public_base_url=environ.get(names.ENV_PUBLIC_BASE_URL) or None,
            distribution_id=environ.get(names.ENV_DISTRIBUTION_ID) or None,
            signer_role_arn=_required(environ, names.ENV_SIGNER_ROLE_ARN),
            keeper_role_arn=_required(environ, names.ENV_KEEPER_ROLE_ARN),
            servicenow=servicenow,
        )
        if servicenow is not None:
            check_servicenow_keyset(
                issuer=settings.issuer,
                algorithm=settings.rotation.algorithm,
                client_id=servicenow.client_id,
                key_spec=settings.rotation.key_spec,
                issuer_setting=names.ENV_ISSUER,
                client_id_setting=names.ENV_SERVICENOW_CLIENT_ID,
            )
        return settings

    def to_environ(self) -> dict[str, str]:
        """The keeper function's environment: `from_environ` reads back these settings."""
        environ = {
            **_keyset_environ(self.keyset, self.issuer, self.rotation),
            names.ENV_BUCKET: self.bucket,
            names.ENV_SIGNER_ROLE_ARN: self.signer_role_arn,
            names.ENV_KEEPER_ROLE_ARN: self.keeper_role_arn,
        }
        if self.public_base_url is not None:
            environ[names.ENV_PUBLIC_BASE_URL] = self.public_base_url
        if self.distribution_id is not None:
            environ[names.ENV_DISTRIBUTION_ID] = self.distribution_id
        if self.servicenow is not None:
            environ |= self.servicenow.to_environ()
        return environ


def _keyset_environ(keyset: str, issuer: str, rotation: RotationPolicy) -> dict[str, str]:
    # What every function of a keyset reads: its name, its issuer and its lifecycle policy.
    return {
        names.ENV_KEYSET: keyset,
        names.ENV_ISSUER: issuer,
        names.ENV_POLICY: json.dumps(rotation.to_mapping(), sort_keys=True),
    }
