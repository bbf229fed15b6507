"""Who called, and what AWS would authorise: the IAM view of each request.

Every function role gets its own access key id locally (`LocalAws.role_credentials`), so
the endpoint knows the caller without trusting anything else in the request. For each
request of a registered role it records what IAM would evaluate: the action, the
resource ARN, the request context (`kms:SigningAlgorithm`, `aws:RequestTag/*`,
`aws:ResourceTag/*`, `s3:prefix`, ...) and, for a KMS key, the key policy in force at
that moment. Tests hand these records to an IAM simulator; the endpoint itself only
enforces S3's rule on missing objects (`missing_object_denied`), because that one
changes what the code sees.

Context keys are read from moto's backends as they stand before the request runs
(a key's tags before TagResource), which is when AWS authorises it.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from jwtkeys_tools.local.aws_server.naming import RequestName

LOCAL_ACCOUNT = "123456789012"
PARTITION = "aws"
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/")


@dataclass(frozen=True)
class Principal:
    """A registered function role and what the simulation told the endpoint about it."""

    role_arn: str
    label: str = ""  # which deployment: tells apart roles of the same name
    # bucket -> may the role s3:ListBucket it with no s3:prefix (None: not simulated)
    list_bucket: dict[str, bool] = field(default_factory=dict)

    @property
    def session_arn(self) -> str:
        """The assumed-role session a Lambda function's calls are made as."""
        account, name = self.role_arn.split(":")[4], self.role_arn.rsplit("/", 1)[-1]
        return f"arn:{PARTITION}:sts::{account}:assumed-role/{name}/{name}-function"

    def request(
        self,
        service: str,
        operation: str,
        action: str,
        resource: str,
        context: dict[str, Any],
        resource_policy: str | None = None,
    ) -> IamRequest:
        """One authorisation of this role's call."""
        return IamRequest(
            self.session_arn,
            self.role_arn,
            self.label,
            service,
            operation,
            action,
            resource,
            context,
            resource_policy,
        )


def caller(environ: dict[str, Any]) -> tuple[str | None, str]:
    """(access key id, region) from a SigV4 Authorization header."""
    match = _ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None:
        return None, "us-east-1"
    return match.group(1), match.group(2)


def json_body(environ: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON body, leaving an unread copy for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return {}
    if length <= 0:
        return {}
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass
class IamRequest:
    """One authorisation AWS would make: who, what, on which resource, in which context."""

    principal: str
    role_arn: str
    label: str
    service: str
    operation: str
    action: str
    resource: str
    context: dict[str, Any]
    resource_policy: str | None = None  # a KMS key's policy (others come from the template)

    def to_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "role_arn": self.role_arn,
            "label": self.label,
            "service": self.service,
            "operation": self.operation,
            "action": self.action,
            "resource": self.resource,
            "context": {
                key: _context_value(value)
                for key, value in self.context.items()
                if value is not None
            },
            "resource_policy": self.resource_policy,
        }


def _context_value(value: Any) -> str | list[str]:
    """IAM context values are strings (numbers and booleans in their text form)."""
    if isinstance(value, list):
        return [str(_context_value(item)) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _base_context(principal: Principal) -> dict[str, Any]:
    return {
        "aws:PrincipalArn": principal.role_arn,
        "aws:PrincipalAccount": principal.role_arn.split(":")[4],
        "aws:PrincipalType": "AssumedRole",
        "aws:SecureTransport": "true",
    }


def _tag_context(prefix: str, tags: dict[str, str]) -> dict[str, Any]:
    return {f"aws:{prefix}/{key}": value for key, value in tags.items()}


# --------------------------------------------------------------------------- KMS


def _kms_backend(region: str) -> Any:
    from moto.kms.models import kms_backends

    return kms_backends[LOCAL_ACCOUNT][region]


def _kms_key(region: str, key_id: str) -> Any:
    """moto's key for any id form (id, ARN, alias, alias ARN), or None."""
    backend = _kms_backend(region)
    try:
        return backend.keys.get(backend.any_id_to_key_id(key_id))
    except Exception:  # an unknown alias: the request fails in moto, as in AWS
        return None


def _key_context(region: str, key: Any) -> dict[str, Any]:
    tags = {
        t["TagKey"]: t["TagValue"] for t in _kms_backend(region).list_resource_tags(key.id)["Tags"]
    }
    return {
        **_tag_context("ResourceTag", tags),
        "kms:KeySpec": key.key_spec,
        "kms:KeyUsage": key.key_usage,
        "kms:KeyOrigin": key.origin,
        "kms:CallerAccount": LOCAL_ACCOUNT,
    }


def _request_tags(params: dict[str, Any]) -> dict[str, Any]:
    tags = {t["TagKey"]: t["TagValue"] for t in params.get("Tags", [])}
    context: dict[str, Any] = _tag_context("RequestTag", tags)
    if tags:
        context["aws:TagKeys"] = sorted(tags)
    return context


def _alias_arn(region: str, alias: str) -> str:
    if alias.startswith("arn:"):
        return alias
    return f"arn:{PARTITION}:kms:{region}:{LOCAL_ACCOUNT}:{alias}"


def _operation_context(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The context keys an operation on an existing key adds from its parameters."""
    if operation in ("Sign", "Verify"):
        return {
            "kms:SigningAlgorithm": params.get("SigningAlgorithm"),
            "kms:MessageType": params.get("MessageType", "RAW"),
        }
    if operation == "TagResource":
        return _request_tags(params)
    if operation == "UntagResource":
        return {"aws:TagKeys": sorted(params.get("TagKeys", []))}
    if operation == "ScheduleKeyDeletion":
        return {
            "kms:ScheduleKeyDeletionPendingWindowInDays": int(params.get("PendingWindowInDays", 30))
        }
    return {}


def _kms_requests(
    principal: Principal, name: RequestName, region: str, params: dict[str, Any]
) -> list[IamRequest]:
    action = f"kms:{name.operation}"
    base = _base_context(principal)

    def on_key(key_id: str, extra: dict[str, Any]) -> list[IamRequest]:
        key = _kms_key(region, key_id)
        if key is None:
            # No key (or alias) to evaluate a key policy against: KMS answers
            # NotFoundException, and so does moto; nothing is authorised.
            return []
        return [
            principal.request(
                "kms",
                name.operation,
                action,
                key.arn,
                {**base, **_key_context(region, key), **extra},
                key.policy,
            )
        ]

    def account_wide(context: dict[str, str]) -> IamRequest:
        # Requests on no particular key (CreateKey, ListKeys, ...) are authorised on "*".
        return principal.request("kms", name.operation, action, "*", context)

    def on_alias(alias: str) -> IamRequest:
        return principal.request("kms", name.operation, action, _alias_arn(region, alias), base)

    operation = name.operation
    if operation == "CreateKey":
        context = {
            **base,
            **_request_tags(params),
            "kms:KeySpec": params.get("KeySpec")
            or params.get("CustomerMasterKeySpec")
            or "SYMMETRIC_DEFAULT",
            "kms:KeyUsage": params.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "kms:KeyOrigin": params.get("Origin", "AWS_KMS"),
            "kms:MultiRegion": str(bool(params.get("MultiRegion", False))).lower(),
            "kms:BypassPolicyLockoutSafetyCheck": str(
                bool(params.get("BypassPolicyLockoutSafetyCheck", False))
            ).lower(),
            "kms:CallerAccount": LOCAL_ACCOUNT,
        }
        return [account_wide(context)]
    if operation in ("ListKeys", "ListAliases") and "KeyId" not in params:
        return [account_wide(base)]
    if operation in ("CreateAlias", "DeleteAlias", "UpdateAlias"):
        alias = str(params.get("AliasName", ""))
        requests = [on_alias(alias)]
        backend = _kms_backend(region)
        current = backend.get_key_id_from_alias(alias) if alias else None
        if operation in ("DeleteAlias", "UpdateAlias") and current:
            requests += on_key(current, {})
        if "TargetKeyId" in params:
            requests += on_key(str(params["TargetKeyId"]), {})
        return requests
    extra = _operation_context(operation, params)
    key_id = params.get("KeyId")
    if not isinstance(key_id, str):
        return [account_wide(base)]
    return on_key(key_id, extra)


def created_key_tagging(
    principal: Principal, region: str, params: dict[str, Any], response_body: bytes
) -> IamRequest | None:
    """CreateKey with Tags also needs kms:TagResource, authorised on the new key.

    Which resource AWS names in that check is not documented; the new key's ARN, with no
    resource tags yet, is the stricter reading (a `*` grant would also pass it).
    """
    if not params.get("Tags"):
        return None
    try:
        metadata = json.loads(response_body)["KeyMetadata"]
    except (ValueError, KeyError, TypeError):
        return None  # CreateKey failed: nothing was tagged
    context = {
        **_base_context(principal),
        **_request_tags(params),
        "kms:KeySpec": metadata.get("KeySpec"),
        "kms:KeyUsage": metadata.get("KeyUsage"),
        "kms:KeyOrigin": metadata.get("Origin"),
        "kms:CallerAccount": LOCAL_ACCOUNT,
    }
    return principal.request(
        "kms",
        "CreateKey",
        "kms:TagResource",
        str(metadata["Arn"]),
        context,
        _kms_key(region, str(metadata["KeyId"])).policy,
    )


# --------------------------------------------------------------------------- S3


def s3_location(environ: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) of a path-style S3 request (the local endpoint's only style)."""
    path = unquote(environ.get("PATH_INFO", "") or "/")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def _s3_requests(
    principal: Principal, name: RequestName, environ: dict[str, Any]
) -> list[IamRequest]:
    bucket, key = s3_location(environ)
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    base = _base_context(principal)
    operation = name.operation
    object_arn = f"arn:{PARTITION}:s3:::{bucket}/{key}"
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    versioned = "versionId" in query
    actions: dict[str, tuple[str, str]] = {
        "GetObject": ("s3:GetObjectVersion" if versioned else "s3:GetObject", object_arn),
        "HeadObject": ("s3:GetObjectVersion" if versioned else "s3:GetObject", object_arn),
        "PutObject": ("s3:PutObject", object_arn),
        "DeleteObject": ("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", object_arn),
        "ListObjects": ("s3:ListBucket", bucket_arn),
        "ListObjectsV2": ("s3:ListBucket", bucket_arn),
        "ListObjectVersions": ("s3:ListBucketVersions", bucket_arn),
    }
    action, resource = actions.get(
        operation, (f"s3:{operation}", bucket_arn if not key else object_arn)
    )
    context = dict(base)
    # s3:prefix exists only on listing requests, and only when the request gives one.
    if action in ("s3:ListBucket", "s3:ListBucketVersions") and "prefix" in query:
        context["s3:prefix"] = query["prefix"][0]
    return [principal.request("s3", operation, action, resource, context)]


def missing_object_denied(principal: Principal, name: RequestName, environ: dict[str, Any]) -> bool:
    """S3 answers 403, not 404, for a missing object unless the caller may ListBucket.

    The permission that counts is s3:ListBucket on the bucket evaluated with no
    s3:prefix; the simulation decided it when the role was registered. A bucket it did
    not decide for keeps moto's 404.
    """
    if name.service != "s3" or name.operation not in ("GetObject", "HeadObject"):
        return False
    bucket, key = s3_location(environ)
    if principal.list_bucket.get(bucket, True):
        return False
    from moto.s3.models import s3_backends

    backend = s3_backends[LOCAL_ACCOUNT][PARTITION]
    found = backend.buckets.get(bucket)
    return found is not None and key not in found.keys


# --------------------------------------------------------------------------- others


def _secretsmanager_requests(
    principal: Principal, name: RequestName, region: str, params: dict[str, Any]
) -> list[IamRequest]:
    from moto.secretsmanager.models import secretsmanager_backends

    secret_id = str(params.get("SecretId", ""))
    resource = secret_id if secret_id.startswith("arn:") else "*"
    context = _base_context(principal)
    secrets = secretsmanager_backends[LOCAL_ACCOUNT][region].secrets
    for secret in list(secrets.values()):
        if secret_id in (secret.arn, secret.name):
            resource = secret.arn
            tags = {t["Key"]: t["Value"] for t in (secret.tags or [])}
            context.update(_tag_context("ResourceTag", tags))
            context["secretsmanager:SecretId"] = secret.arn
    action = f"secretsmanager:{name.operation}"
    return [principal.request(name.service, name.operation, action, resource, context)]


def _cloudfront_requests(
    principal: Principal, name: RequestName, environ: dict[str, Any]
) -> list[IamRequest]:
    match = re.search(r"/distribution/([^/]+)", environ.get("PATH_INFO", ""))
    resource = (
        f"arn:{PARTITION}:cloudfront::{LOCAL_ACCOUNT}:distribution/{match.group(1)}"
        if match
        else "*"
    )
    action = f"cloudfront:{name.operation}"
    return [
        principal.request("cloudfront", name.operation, action, resource, _base_context(principal))
    ]


# Services whose IAM actions are not prefixed with the name they sign requests as.
_IAM_PREFIX = {"tagging": "tag"}

# AWS authorises no IAM permission for these.
_UNAUTHORISED = frozenset({("sts", "GetCallerIdentity")})


def describe(
    principal: Principal,
    name: RequestName,
    environ: dict[str, Any],
    region: str,
    params: Callable[[], dict[str, Any]],
) -> list[IamRequest]:
    """The authorisations AWS makes for this request (several for alias calls)."""
    if (name.service, name.operation) in _UNAUTHORISED:
        return []
    if name.service == "kms":
        return _kms_requests(principal, name, region, params())
    if name.service == "s3":
        return _s3_requests(principal, name, environ)
    if name.service == "secretsmanager":
        return _secretsmanager_requests(principal, name, region, params())
    if name.service == "cloudfront":
        return _cloudfront_requests(principal, name, environ)
    # The rest on `*`: the Resource Groups Tagging API (it signs as `tagging`, its IAM
    # actions are `tag:*`, none scoped to a resource), and any unmodelled call, which
    # only a broad grant allows: a new call then fails the simulation until it is
    # modelled here and granted in infra.
    action = f"{_IAM_PREFIX.get(name.service, name.service)}:{name.operation}"
    return [principal.request(name.service, name.operation, action, "*", _base_context(principal))]
