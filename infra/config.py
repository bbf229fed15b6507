"""The deployment configuration: cdk.json context, parsed and validated once at synth.

Context layout (`cdk.json` -> `context.jwtkeys`)::

    {"stacks": {"<stage>": {
        "keyset": "servicenow-prod",            # one keyset per stack
        "issuer": "...",                        # `iss` (ServiceNow: the oauth_jwt client_id)
        "policy": {...},                        # RotationPolicy: algorithm, key_spec, timings
        "default_ttl": 300,
        "allowed_audiences": ["..."], "allowed_subjects": ["svc-*"],
        keeper_reserved_concurrency=_reserved_concurrency(
            values.get("keeper_reserved_concurrency"), where
        ),
        steady_traffic_minutes=_steady_traffic(values.get("steady_traffic_minutes"), where),
        account=access.account,
        region=_region(values, where),
                              "client_id": "...", "canary_subject": "..."},
        "alarm_emails": ["secops@example.com"],
        "custom_domain": null | {"domain_name": "keys.example.com", "certificate_arn": "arn:..."},
        "runbook_url": "https://git.example.com/jwtkeys/blob/main/docs/runbook.md",
        "authorizer": null | {"routes": {"GET /orders": {"audience": "orders-api",
                                                       "claims": {"scope": "orders:read"}}},
                              "cache_ttl": 30, "leeway": 60},
        "keeper_reserved_concurrency": null,    # null: no reservation (the lease serialises)
        "steady_traffic_minutes": null | 30,    # alarm when no token is issued for this long
        "account": null, "region": null
    }}}

Every error names the stage and the setting; the rotation policy is validated by the
runtime's own `RotationPolicy`, so an unsafe timing fails `cdk synth` with the same
message the functions would give.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jwtkeys.errors import ConfigurationError
from jwtkeys.keeper.rotation_policy import RotationPolicy
from jwtkeys.names import check_keyset_name
from jwtkeys.servicenow.keyset_rule import check_servicenow_keyset
from jwtkeys.settings import SignerSettings
from jwtkeys.signer.policy import DirectInvoke, SigningPolicy
from jwtkeys.signer.policy import default_ttl as default_ttl_for
from jwtkeys.signer.rules import (
    Allowlist,
    CallerRule,
    check_principal,
    parse_caller_rules,
    parse_claim_rules,
    principal_account,
)
from jwtkeys.verify.authorizer import (
    DEFAULT_CACHE_TTL_SECONDS,
    DEFAULT_LEEWAY_SECONDS,
    AuthorizerSettings,
    RouteRule,
    parse_routes,
)

from .constants import (
    CONTEXT_KEY,
    DEFAULT_RUNBOOK_URL,
    MAX_SILENCE_MINUTES,
    SIGNER_ALARM_PERIOD_SECONDS,
    STACK_NAME_PREFIX,
    STAGE_CONTEXT_KEY,
    SUFFIX_CONTEXT_KEY,
)
from .regions import check_region

_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN_PATTERN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SECRET_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
)
_ACM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[A-Za-z0-9-]+$")
_ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")

_STACK_KEYS = frozenset(
    {
        "keyset",
        "issuer",
        "policy",
        "default_ttl",
        "allowed_audiences",
        "allowed_subjects",
        "layout",
        "direct_invoke",
        "direct_invoke_principals",
        "function_url_callers",
        "operator_role_arns",
        "servicenow",
        "alarm_emails",
        "custom_domain",
        "runbook_url",
        "authorizer",
        "keeper_reserved_concurrency",
        "steady_traffic_minutes",
        "account",
        "region",
    }
)


# Where the signer lives relative to its callers (docs/deploy.md, "Choosing a layout").
SAME_ACCOUNT = "same_account"
DEDICATED_SIGNER_ACCOUNT = "dedicated_signer_account"
LAYOUTS = (SAME_ACCOUNT, DEDICATED_SIGNER_ACCOUNT)


@dataclass(frozen=True)
class ServiceNowConfig:
    """Where the keeper keeps ServiceNow's trust records in step."""

    instance: str
    client_id: str
    canary_subject: str
    # An operator-created secret (name or ARN); None: the stack creates one, named by
    # CloudFormation, so a redeploy after `cdk destroy` never meets the deleted secret's
    # name during its recovery window.
    secret: str | None = None
    # "certificates" (every release) or "jwks_url" (Zurich and later): how the app trusts us.
    trust: str = "certificates"


@dataclass(frozen=True)
class CustomDomain:
    """An optional own host name for the JWKS (the certificate must live in us-east-1)."""

    domain_name: str
    certificate_arn: str


@dataclass(frozen=True)
class AuthorizerConfig:
    """The optional API Gateway authorizer of a stage: its route rules and timings."""

    routes: tuple[tuple[str, RouteRule], ...]
    cache_ttl: int = DEFAULT_CACHE_TTL_SECONDS
    leeway: int = DEFAULT_LEEWAY_SECONDS


@dataclass(frozen=True)
class KeysetConfig:
    """Everything one keyset stack is built from."""

    stage: str
    keyset: str
    issuer: str
    policy: RotationPolicy
    default_ttl: int
    allowed_audiences: tuple[str, ...]
    allowed_subjects: tuple[str, ...]
    direct_invoke_principals: tuple[str, ...] = ()
    function_url_callers: Mapping[str, CallerRule] = field(default_factory=dict)
    # None: a direct invoke is refused by the function (the default).
    direct_invoke: DirectInvoke | None = None
    layout: str = SAME_ACCOUNT
    servicenow: ServiceNowConfig | None = None
    alarm_emails: tuple[str, ...] = ()
    custom_domain: CustomDomain | None = None
    runbook_url: str = DEFAULT_RUNBOOK_URL
    authorizer: AuthorizerConfig | None = None
    # None: no reservation. A reservation is refused on accounts whose concurrency quota
    # is small, and the lease already keeps ticks from overlapping.
    keeper_reserved_concurrency: int | None = None
    # Roles allowed to read the keeper's state/ besides the keeper (status, audits).
    operator_role_arns: tuple[str, ...] = ()
    # A keyset with steady traffic declares how long without a token means trouble.
    steady_traffic_minutes: int | None = None
    account: str | None = None
    region: str | None = None

    @property
    def stack_name(self) -> str:
        """The stack's name carries the keyset, so stages never collide in one account."""
        return f"{STACK_NAME_PREFIX}{self.keyset}"

    def caller_rules_mapping(self) -> dict[str, dict[str, list[str]]]:
        return {arn: rule.to_mapping() for arn, rule in sorted(self.function_url_callers.items())}

    def signer_settings(self) -> SignerSettings:
        """The signing function's typed settings; its environment is their `to_environ()`."""
        return SignerSettings(
            keyset=self.keyset,
            rotation=self.policy,
            policy=SigningPolicy(
                issuer=self.issuer,
                allowed_subjects=Allowlist(self.allowed_subjects),
                allowed_audiences=Allowlist(self.allowed_audiences),
                default_ttl=self.default_ttl,
                max_token_ttl=self.policy.max_token_ttl,
                caller_rules=dict(sorted(self.function_url_callers.items())),
                direct_invoke=self.direct_invoke,
                not_before_margin=self.policy.not_before_margin,
            ),
        )

    def authorizer_settings(self, jwks_url: str) -> AuthorizerSettings | None:
        """The authorizer function's typed settings, when the stage has one."""
        if self.authorizer is None:
            return None
        return AuthorizerSettings(
            keyset=self.keyset,
            issuer=self.issuer,
            jwks_url=jwks_url,
            routes=self.authorizer.routes,
            cache_ttl=self.authorizer.cache_ttl,
            leeway=self.authorizer.leeway,
            max_lifetime=self.policy.max_token_ttl,
        )


def load_stacks(context: object) -> list[KeysetConfig]:
    """Parse `context.jwtkeys`; raise ConfigurationError naming what is wrong."""
    if not isinstance(context, Mapping):
        raise ConfigurationError(f"context {CONTEXT_KEY!r} must be an object with 'stacks'")
    stacks = context.get("stacks")
    if not isinstance(stacks, Mapping) or not stacks:
        raise ConfigurationError(f"context {CONTEXT_KEY}.stacks must name at least one stage")
    configs = [_load_stack(str(stage), values) for stage, values in stacks.items()]
    _refuse_collisions(configs)
    return configs


# A suffix makes a throw-away copy of a stage (the live smoke suite's): short, so the
# suffixed keyset still fits every name derived from it.
_SUFFIX_PATTERN = re.compile(r"^[a-z0-9]{1,12}$")


def select_stacks(
    configs: Sequence[KeysetConfig], stage: str | None, suffix: str | None
) -> list[KeysetConfig]:
    """The stages to synthesize: all, or only `stage`, its keyset suffixed by `suffix`.

    The suffix reaches every name derived from the keyset (stack, aliases, key tags,
    alarms), so the copy shares nothing with the stage it was made from.
    """
    if stage is None:
        if suffix is not None:
            raise ConfigurationError(f"{SUFFIX_CONTEXT_KEY} needs {STAGE_CONTEXT_KEY}")
        return list(configs)
    chosen = [config for config in configs if config.stage == stage]
    if not chosen:
        known = ", ".join(config.stage for config in configs)
        raise ConfigurationError(f"{STAGE_CONTEXT_KEY}: no stage {stage!r} (known: {known})")
    if suffix is None:
        return chosen
    if not _SUFFIX_PATTERN.match(suffix):
        raise ConfigurationError(
            f"{SUFFIX_CONTEXT_KEY} must be 1-12 lower-case letters or digits, got {suffix!r}"
        )
    keyset = f"{chosen[0].keyset}-{suffix}"
    try:
        check_keyset_name(keyset)
    except ConfigurationError as error:
        raise ConfigurationError(f"{SUFFIX_CONTEXT_KEY}: {error}") from None
    return [dataclasses.replace(chosen[0], keyset=keyset)]


def _load_stack(stage: str, values: object) -> KeysetConfig:
    where = f"{CONTEXT_KEY}.stacks.{stage}"
    if not isinstance(values, Mapping):
        raise ConfigurationError(f"{where} must be an object")
    unknown = sorted(set(values) - _STACK_KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown setting(s): {', '.join(unknown)}")
    keyset = _string(values, "keyset", where)
    try:
        check_keyset_name(keyset)
    except ConfigurationError as error:
        raise ConfigurationError(f"{where}.keyset: {error}") from None
    policy_values = values.get("policy", {})
    if not isinstance(policy_values, Mapping):
        raise ConfigurationError(f"{where}.policy must be an object")
    try:
        policy = RotationPolicy.from_mapping(policy_values)
    except ConfigurationError as error:
        # Same exception type and the lifecycle's own message, prefixed with where it came from.
        raise type(error)(f"{where}.policy: {error}") from error
    if policy.tick_interval % 60:
        # EventBridge Scheduler's rate() counts whole minutes.
        raise ConfigurationError(
            f"{where}.policy.tick_interval must be a whole number of minutes,"
            f" got {policy.tick_interval}"
        )
    default_ttl = values.get("default_ttl", default_ttl_for(policy.max_token_ttl))
    if not isinstance(default_ttl, int) or isinstance(default_ttl, bool) or default_ttl <= 0:
        raise ConfigurationError(f"{where}.default_ttl must be a positive integer")
    if default_ttl > policy.max_token_ttl:
        raise ConfigurationError(
            f"{where}.default_ttl {default_ttl} exceeds policy.max_token_ttl {policy.max_token_ttl}"
        )
    access = _signer_access(values, where)
    servicenow = _servicenow(values.get("servicenow"), where)
    issuer = _string(values, "issuer", where)
    if servicenow is not None:
        # The rule the keeper enforces at cold start, refused at synth already.
        try:
            check_servicenow_keyset(
                issuer=issuer,
                algorithm=policy.algorithm,
                client_id=servicenow.client_id,
                key_spec=policy.key_spec,
                issuer_setting="issuer",
                client_id_setting="servicenow.client_id",
            )
        except ConfigurationError as error:
            raise ConfigurationError(f"{where}.{error}") from None
    return KeysetConfig(
        stage=stage,
        keyset=keyset,
        issuer=issuer,
        policy=policy,
        default_ttl=default_ttl,
        allowed_audiences=_strings(values.get("allowed_audiences"), f"{where}.allowed_audiences"),
        allowed_subjects=_strings(values.get("allowed_subjects"), f"{where}.allowed_subjects"),
        direct_invoke_principals=access.direct_invoke_principals,
        function_url_callers=access.function_url_callers,
        direct_invoke=access.direct_invoke,
        layout=access.layout,
        servicenow=servicenow,
        alarm_emails=_emails(values.get("alarm_emails", []), where),
        custom_domain=_custom_domain(values.get("custom_domain"), where),
        runbook_url=_optional_string(values, "runbook_url", where) or DEFAULT_RUNBOOK_URL,
        authorizer=_authorizer(values.get("authorizer"), policy, where),
        keeper_reserved_concurrency=_reserved_concurrency(
            values.get("keeper_reserved_concurrency"), where
        ),
        operator_role_arns=_operator_roles(values.get("operator_role_arns", []), where),
        steady_traffic_minutes=_steady_traffic(values.get("steady_traffic_minutes"), where),
        account=access.account,
        region=_region(values, where),
    )


def _region(values: Mapping[str, Any], where: str) -> str | None:
    region = _optional_string(values, "region", where)
    if region is not None:
        check_region(region, where)
    return region


def _steady_traffic(value: object, where: str) -> int | None:
    if value is None:
        return None
    step = SIGNER_ALARM_PERIOD_SECONDS // 60
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not step <= value <= MAX_SILENCE_MINUTES
        or value % step
    ):
        # CloudWatch evaluates at most one day of periods of the signer's alarm period.
        raise ConfigurationError(
            f"{where}.steady_traffic_minutes must be null or a multiple of {step} from"
            f" {step} to {MAX_SILENCE_MINUTES}"
        )
    return value


def _reserved_concurrency(value: object, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(
            f"{where}.keeper_reserved_concurrency must be null (no reservation) or a"
            " positive integer"
        )
    return value


def _refuse_collisions(configs: Sequence[KeysetConfig]) -> None:
    seen: dict[str, str] = {}
    for config in configs:
        for name in _physical_names(config):
            if name in seen:
                raise ConfigurationError(
                    f"stages {seen[name]!r} and {config.stage!r} would both use {name!r}"
                )
            seen[name] = config.stage


def _physical_names(config: KeysetConfig) -> list[str]:
    # Names that leave the stack: two stages sharing one would clash in one account.
    names = [f"keyset:{config.keyset}"]
    if config.servicenow and config.servicenow.secret:
        names.append(f"secret:{config.servicenow.secret}")
    if config.custom_domain:
        names.append(f"domain:{config.custom_domain.domain_name}")
    return names


def _string(values: Mapping[str, Any], key: str, where: str) -> str:
    value = values.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{where}.{key} must be a non-empty string")
    return value


def _optional_string(values: Mapping[str, Any], key: str, where: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    return _string(values, key, where)


def _strings(value: object, where: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError(f"{where} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ConfigurationError(f"{where} must not be empty")
    return tuple(value)


@dataclass(frozen=True)
class _SignerAccess:
    """Who reaches the signer how: the settings that must be judged together."""

    direct_invoke_principals: tuple[str, ...]
    function_url_callers: Mapping[str, CallerRule]
    direct_invoke: DirectInvoke | None
    layout: str
    account: str | None


def _signer_access(values: Mapping[str, Any], where: str) -> _SignerAccess:
    principals = _principals(values.get("direct_invoke_principals", []), where)
    direct_invoke = _direct_invoke(values.get("direct_invoke"), where)
    if principals and direct_invoke is None:
        raise ConfigurationError(
            f"{where}.direct_invoke_principals needs direct_invoke turned on ({{}} or"
            " {'claims': {...}}): with it off the function refuses every direct invoke"
        )
    callers = parse_caller_rules(
        values.get("function_url_callers", {}), f"{where}.function_url_callers"
    )
    layout = values.get("layout", SAME_ACCOUNT)
    if layout not in LAYOUTS:
        raise ConfigurationError(f"{where}.layout must be one of {', '.join(LAYOUTS)}")
    account = _optional_string(values, "account", where)
    if layout == DEDICATED_SIGNER_ACCOUNT:
        _check_dedicated_layout(where, account, callers, direct_invoke, principals)
    return _SignerAccess(principals, callers, direct_invoke, str(layout), account)


def _principals(value: object, where: str) -> tuple[str, ...]:
    setting = f"{where}.direct_invoke_principals"
    return tuple(
        check_principal(arn, setting) for arn in _strings(value, setting, allow_empty=True)
    )


def _operator_roles(value: object, where: str) -> tuple[str, ...]:
    setting = f"{where}.operator_role_arns"
    roles = _strings(value, setting, allow_empty=True)
    for arn in roles:
        # Role ARNs only: the bucket policy compares aws:PrincipalArn, which is the role's
        # ARN for its sessions; a user, a session or the account root is no operator role.
        if not _ROLE_ARN_PATTERN.match(arn):
            raise ConfigurationError(f"{setting}: {arn!r} is not an IAM role ARN")
    return roles


def _direct_invoke(value: object, where: str) -> DirectInvoke | None:
    setting = f"{where}.direct_invoke"
    if value is None or value is False:
        return None
    if value is True:
        return DirectInvoke()
    if not isinstance(value, Mapping) or set(value) - {"claims"}:
        raise ConfigurationError(f"{setting} must be null, true or {{'claims': {{...}}}}")
    return DirectInvoke(claims=parse_claim_rules(value.get("claims", {}), f"{setting}.claims"))


def _check_dedicated_layout(
    where: str,
    account: str | None,
    callers: Mapping[str, CallerRule],
    direct_invoke: DirectInvoke | None,
    principals: Sequence[str],
) -> None:
    # In its own account the signer is reached only through its resource policy, whose
    # statements all carry lambda:InvokedViaFunctionUrl: no caller can invoke it directly,
    # so none can forge a Function URL event. A direct-invoke path would undo exactly that.
    if direct_invoke is not None or principals:
        raise ConfigurationError(
            f"{where}: layout {DEDICATED_SIGNER_ACCOUNT} serves callers only through the"
            " Function URL; remove direct_invoke and direct_invoke_principals"
        )
    if account is not None:
        inside = sorted(arn for arn in callers if principal_account(arn) == account)
        if inside:
            raise ConfigurationError(
                f"{where}: layout {DEDICATED_SIGNER_ACCOUNT} keeps callers out of the signer's"
                f" account {account}, but {', '.join(inside)} is in it"
            )


def _servicenow(value: object, where: str) -> ServiceNowConfig | None:
    if value is None:
        return None
    sn_where = f"{where}.servicenow"
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{sn_where} must be an object or null")
    if "secret_name" in value:
        # A fixed name stays taken for the deleted secret's recovery window (up to 30
        # days) after `cdk destroy`, so the next deploy of the stage would fail.
        raise ConfigurationError(
            f"{sn_where}.secret_name is no longer accepted: leave it out (the stack creates"
            " the secret and CloudFormation names it; see the ServiceNowSecretArn output),"
            " or set secret to the name or ARN of a secret you created"
        )
    expected = {"instance", "client_id", "canary_subject"}
    optional = {"trust", "secret"}
    if not expected <= set(value) <= expected | optional:
        raise ConfigurationError(
            f"{sn_where} must have {', '.join(sorted(expected))} (and optionally secret, trust)"
        )
    trust = value.get("trust", "certificates")
    if trust not in {"certificates", "jwks_url"}:
        raise ConfigurationError(f"{sn_where}.trust must be 'certificates' or 'jwks_url'")
    instance = _string(value, "instance", sn_where)
    if not instance.startswith("https://"):
        raise ConfigurationError(f"{sn_where}.instance must be an https:// URL")
    return ServiceNowConfig(
        instance=instance.rstrip("/"),
        secret=_secret(value, sn_where),
        client_id=_string(value, "client_id", sn_where),
        canary_subject=_string(value, "canary_subject", sn_where),
        trust=str(trust),
    )


def _secret(values: Mapping[str, Any], where: str) -> str | None:
    secret = _optional_string(values, "secret", where)
    if secret is not None and secret.startswith("arn:") and not _SECRET_ARN_PATTERN.match(secret):
        # A partial ARN (without the 6-character suffix) would grant nothing.
        raise ConfigurationError(
            f"{where}.secret {secret!r} is not a complete Secrets Manager secret ARN"
            " (arn:...:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)"
        )
    return secret


def _emails(value: object, where: str) -> tuple[str, ...]:
    emails = _strings(value, f"{where}.alarm_emails", allow_empty=True)
    for email in emails:
        if not _EMAIL_PATTERN.match(email):
            raise ConfigurationError(f"{where}.alarm_emails: {email!r} is not an e-mail address")
    return emails


def _custom_domain(value: object, where: str) -> CustomDomain | None:
    if value is None:
        return None
    cd_where = f"{where}.custom_domain"
    if not isinstance(value, Mapping) or set(value) != {"domain_name", "certificate_arn"}:
        raise ConfigurationError(f"{cd_where} must be {{'domain_name', 'certificate_arn'}} or null")
    domain = _string(value, "domain_name", cd_where)
    certificate = _string(value, "certificate_arn", cd_where)
    if not _DOMAIN_PATTERN.match(domain):
        raise ConfigurationError(f"{cd_where}.domain_name {domain!r} is not a host name")
    if not _ACM_ARN_PATTERN.match(certificate):
        # CloudFront only accepts certificates from ACM in us-east-1.
        raise ConfigurationError(f"{cd_where}.certificate_arn must be an ACM ARN in us-east-1")
    return CustomDomain(domain_name=domain, certificate_arn=certificate)


def _authorizer(value: object, policy: RotationPolicy, where: str) -> AuthorizerConfig | None:
    if value is None:
        return None
    az_where = f"{where}.authorizer"
    if not isinstance(value, Mapping) or not {"routes"} <= set(value) <= {
        "routes",
        "cache_ttl",
        "leeway",
    }:
        raise ConfigurationError(f"{az_where} must be {{'routes', 'cache_ttl'?, 'leeway'?}}")
    config = AuthorizerConfig(
        routes=parse_routes(value["routes"], f"{az_where}.routes"),
        cache_ttl=value.get("cache_ttl", DEFAULT_CACHE_TTL_SECONDS),
        leeway=value.get("leeway", DEFAULT_LEEWAY_SECONDS),
    )
    try:
        # The same checks the function makes at cold start, with a placeholder URL.
        AuthorizerSettings(
            "placeholder",
            "placeholder",
            "https://x",
            config.routes,
            config.cache_ttl,
            config.leeway,
        )
    except ConfigurationError as error:
        raise ConfigurationError(f"{az_where}: {error}") from None
    if config.cache_ttl >= policy.max_token_ttl:
        # Tokens with less life left than the cache TTL are refused: none would pass.
        raise ConfigurationError(
            f"{az_where}.cache_ttl ({config.cache_ttl}) must be below policy.max_token_ttl"
            f" ({policy.max_token_ttl})"
        )
    return config
