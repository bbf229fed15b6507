"""The live suite's steps: each a function of the context, answering one line of detail.

A step raises StepFailed (or any error) to fail and StepSkipped when the stage does not
call for it. Steps reach AWS only through the deployer's clients, so the same code runs
against CloudFormation and, in the dry run, against the local endpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jwt
from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.client import FunctionUrlInvoker, LambdaInvoker
from jwtkeys.verify.jwks_source import load_jwks
from jwtkeys.verify.token import verify_token
from jwtkeys_tools.live.context import (
    KMS_ALIAS,
    KMS_KEY,
    LOG_GROUP,
    S3_BUCKET,
    S3_OBJECT,
    LiveContext,
    Resource,
)
from jwtkeys_tools.live.leftovers import remains

# The stack outputs the steps read (infra/stack.py names them).
REQUIRED_OUTPUTS = (
    "JwksUrl",
    "BucketName",
    "SignerFunctionName",
    "SignerFunctionUrl",
    "KeeperFunctionName",
)
# A sandbox account holds few keys; a bound keeps a crowded one from scanning forever.
_MAX_KEYS_SCANNED = 2000


class StepFailed(Exception):
    """The step ran and found something wrong."""


class StepSkipped(Exception):
    """The stage does not call for this step."""


# ---------------------------------------------------------------- main steps


def deploy(context: LiveContext) -> str:
    # Marked first: a deploy that fails half-way still leaves a stack to destroy.
    context.deployed = True
    outputs = context.deployer.deploy()
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise StepFailed(f"the stack has no output(s) {', '.join(missing)}")
    context.outputs = outputs
    return f"stack {context.plan.stack_name} (keyset {context.plan.keyset})"


def bootstrap(context: LiveContext) -> str:
    # The schedule's first tick may be minutes away: tick now, as an operator would.
    summary = _keeper(context, {"action": "tick"})
    if not summary.get("current_kid"):
        raise StepFailed(f"the first tick left no current key: {summary}")
    return f"current key {summary['current_kid']}"


def sign_direct(context: LiveContext) -> str:
    if not context.plan.direct_invoke:
        raise StepSkipped(f"stage {context.plan.stage!r} leaves direct invoke off")
    invoker = LambdaInvoker(
        context.outputs["SignerFunctionName"], context.deployer.client("lambda")
    )
    issued = invoker.invoke(_sign_request(context))
    context.tokens.append(issued.token)
    return f"token with kid {_kid(issued.token)}"


def sign_function_url(context: LiveContext) -> str:
    invoker = FunctionUrlInvoker(
        context.outputs["SignerFunctionUrl"],
        region=context.deployer.client("lambda").meta.region_name,
        credentials=context.deployer.function_url_credentials(),
    )
    issued = invoker.invoke(_sign_request(context))
    context.tokens.append(issued.token)
    return f"token with kid {_kid(issued.token)} (SigV4, IAM auth)"


def rotate(context: LiveContext) -> str:
    before = _keeper(context, {"action": "tick"}).get("current_kid")
    after = _keeper(context, {"action": "rotate", "force": True}).get("current_kid")
    if not after or after == before:
        raise StepFailed(f"the current key stayed {before}")
    return f"current key {before} -> {after}"


def verify_through_cdn(context: LiveContext) -> str:
    if not context.tokens:
        raise StepFailed("no token was issued to verify")
    jwks = load_jwks(context.outputs["JwksUrl"])
    plan = context.plan
    for token in context.tokens:
        verify_token(
            token,
            jwks,
            issuer=plan.issuer,
            audience=plan.audience,
            now=time.time(),
            max_lifetime=plan.max_token_ttl,
        )
    kids = sorted(str(key.get("kid")) for key in jwks.get("keys", []))
    return f"{len(context.tokens)} token(s) verified against {context.outputs['JwksUrl']} {kids}"


def alarms(context: LiveContext) -> str:
    expected = [
        r.physical_id
        for r in context.deployer.stack_resources()
        if r.type == "AWS::CloudWatch::Alarm"
    ]
    if not expected:
        raise StepFailed("the stack lists no alarm")
    cloudwatch = context.deployer.client("cloudwatch")
    found: dict[str, str] = {}
    for start in range(0, len(expected), 100):
        answer = cloudwatch.describe_alarms(
            AlarmNames=expected[start : start + 100],
            AlarmTypes=["MetricAlarm", "CompositeAlarm"],
            MaxRecords=100,
        )
        for alarm in answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", []):
            found[alarm["AlarmName"]] = alarm["StateValue"]
    missing = sorted(set(expected) - set(found))
    firing = sorted(name for name, state in found.items() if state == "ALARM")
    if missing or firing:
        raise StepFailed(f"missing: {missing or 'none'}; in ALARM: {firing or 'none'}")
    return f"{len(found)} alarm(s), none in ALARM"


# ---------------------------------------------------------------- cleanup steps


def inventory(context: LiveContext) -> str:
    """List what the run created: the stack's resources and what the keeper made."""
    created = list(context.deployer.stack_resources())
    created += [Resource(KMS_KEY, key_id) for key_id in _keyset_keys(context)]
    created += [Resource(KMS_ALIAS, alias) for alias in _keyset_aliases(context)]
    bucket = context.outputs.get("BucketName")
    if bucket:
        created += [
            Resource(S3_OBJECT, f"{bucket}/{key}?versionId={version}")
            for key, version in _object_versions(context, bucket)
        ]
    context.created = created
    lines = "".join(f"\n    {resource}" for resource in created)
    return f"{len(created)} resource(s) created:{lines}"


def decommission(context: LiveContext) -> str:
    if not context.outputs:
        raise StepSkipped("nothing deployed to decommission")
    summary = _keeper(context, {"action": "decommission", "confirm": context.plan.keyset})
    retired = summary.get("retired", [])
    return f"keyset {context.plan.keyset} decommissioned ({len(retired)} key(s) retired)"


def destroy(context: LiveContext) -> str:
    context.deployer.destroy()
    # CloudFormation keeps retained resources (the JWKS bucket, the log groups): the
    # suite made them, so it removes them too.
    purged = [_purge(context, resource) for resource in context.created if resource.retained]
    return f"stack destroyed; retained and purged: {sum(purged)}"


def nothing_left(context: LiveContext) -> str:
    if not context.created:
        raise StepFailed("no inventory to check (the inventory step failed)")
    left: list[str] = []
    notes: set[str] = set()
    for resource in context.created:
        gone, note = remains(context.deployer.client, resource)
        if not gone:
            left.append(f"{resource}: {note}")
        elif note:
            notes.add(note)
    if left:
        raise StepFailed("still there: " + "; ".join(left))
    detail = f"all {len(context.created)} resource(s) gone"
    return detail + "".join(f"\n    note: {note}" for note in sorted(notes))


# ---------------------------------------------------------------- helpers


def _sign_request(context: LiveContext) -> dict[str, Any]:
    return {"subject": context.plan.subject, "audience": context.plan.audience}


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token).get("kid"))


def _keeper(context: LiveContext, event: Mapping[str, Any]) -> dict[str, Any]:
    """Invoke the keeper function (the operator's way: `jwtkeys rotate --keeper-function`)."""
    function = context.outputs.get("KeeperFunctionName")
    if not function:
        raise StepFailed("no keeper function (the deploy step failed)")
    response = context.deployer.client("lambda").invoke(
        FunctionName=function, Payload=json.dumps(dict(event)).encode()
    )
    answer = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        raise StepFailed(f"the keeper failed {event['action']}: {answer}")
    if not isinstance(answer, dict):
        raise StepFailed(f"the keeper answered {answer!r} to {event['action']}")
    return answer


def _keyset_keys(context: LiveContext) -> list[str]:
    """The KMS keys tagged into this keyset (the keeper creates them at run time)."""
    kms = context.deployer.client("kms")
    found: list[str] = []
    for index, key_id in enumerate(_all_keys(kms)):
        if index >= _MAX_KEYS_SCANNED:
            raise StepFailed(f"more than {_MAX_KEYS_SCANNED} keys in the account: use a sandbox")
        try:
            tags = kms.list_resource_tags(KeyId=key_id).get("Tags", [])
        except ClientError:
            continue  # AWS-managed and foreign keys may refuse: they are not ours
        if any(
            t["TagKey"] == names.TAG_KEYSET and t["TagValue"] == context.plan.keyset for t in tags
        ):
            found.append(key_id)
    return found


def _keyset_aliases(context: LiveContext) -> list[str]:
    """The keeper's aliases of this keyset (alias/jwtkeys/<keyset>/...)."""
    prefix = names.alias_prefix(context.plan.keyset)
    kms = context.deployer.client("kms")
    return [
        alias["AliasName"]
        for page in kms.get_paginator("list_aliases").paginate()
        for alias in page.get("Aliases", [])
        if alias["AliasName"].startswith(prefix)
    ]


def _all_keys(kms: Any) -> Iterator[str]:
    for page in kms.get_paginator("list_keys").paginate():
        for key in page.get("Keys", []):
            yield key["KeyId"]


def _object_versions(context: LiveContext, bucket: str) -> list[tuple[str, str]]:
    s3 = context.deployer.client("s3")
    found: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            found.append((item["Key"], item["VersionId"]))
    return found


def _purge(context: LiveContext, resource: Resource) -> int:
    if resource.type == S3_BUCKET:
        s3 = context.deployer.client("s3")
        try:
            for page in s3.get_paginator("list_object_versions").paginate(
                Bucket=resource.physical_id
            ):
                items = page.get("Versions", []) + page.get("DeleteMarkers", [])
                if items:
                    s3.delete_objects(
                        Bucket=resource.physical_id,
                        Delete={
                            "Objects": [
                                {"Key": i["Key"], "VersionId": i["VersionId"]} for i in items
                            ]
                        },
                    )
            s3.delete_bucket(Bucket=resource.physical_id)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchBucket":
                raise
        return 1
    if resource.type == LOG_GROUP:
        logs = context.deployer.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            logs.delete_log_group(logGroupName=resource.physical_id)
        return 1
    raise StepFailed(f"the suite cannot remove retained {resource}: remove it by hand")
