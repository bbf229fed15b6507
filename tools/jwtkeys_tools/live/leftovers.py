"""Is a resource the run created gone? One check per resource type, AWS's own answer.

KMS keys cannot be deleted at once: pending deletion (for the keyset's deletion window)
is the most AWS allows, and counts as gone. A secret scheduled for deletion likewise.
Types without a check of their own are asked through the Cloud Control API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from jwtkeys_tools.live.context import (
    ALARM,
    KMS_ALIAS,
    KMS_KEY,
    LOG_GROUP,
    S3_BUCKET,
    S3_OBJECT,
    SECRET,
    STACK,
    Resource,
)

ClientFactory = Callable[[str], Any]
# (gone, note): a note says how it is gone when that is less than deleted.
Answer = tuple[bool, str]

_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchEntity",
        "NoSuchBucket",
        "NotFoundException",
        "NotFound",
        "404",
        "NoSuchKey",
        "NoSuchVersion",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchDistribution",
    }
)


def remains(client: ClientFactory, resource: Resource) -> Answer:
    """Whether `resource` is gone, asking the service that owns it."""
    check = _CHECKS.get(resource.type, _cloud_control)
    try:
        return check(client, resource)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _NOT_FOUND:
            return True, ""
        return False, f"cannot confirm: {code}: {error}"


def _kms_key(client: ClientFactory, resource: Resource) -> Answer:
    state = client("kms").describe_key(KeyId=resource.physical_id)["KeyMetadata"]["KeyState"]
    if state == "PendingDeletion":
        return True, "KMS keys are pending deletion: the most AWS allows before the window ends"
    return False, f"key state {state}"


def _kms_alias(client: ClientFactory, resource: Resource) -> Answer:
    for page in client("kms").get_paginator("list_aliases").paginate():
        if any(a["AliasName"] == resource.physical_id for a in page.get("Aliases", [])):
            return False, "the alias exists"
    return True, ""


def _bucket(client: ClientFactory, resource: Resource) -> Answer:
    client("s3").head_bucket(Bucket=resource.physical_id)
    return False, "the bucket exists"


def _object(client: ClientFactory, resource: Resource) -> Answer:
    path, _, version = resource.physical_id.partition("?versionId=")
    bucket, _, key = path.partition("/")
    s3 = client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return True, ""
        raise
    answer = s3.list_object_versions(Bucket=bucket, Prefix=key)
    for item in answer.get("Versions", []) + answer.get("DeleteMarkers", []):
        if item["Key"] == key and item["VersionId"] == version:
            return False, "the object version exists"
    return True, ""


def _log_group(client: ClientFactory, resource: Resource) -> Answer:
    groups = client("logs").describe_log_groups(logGroupNamePrefix=resource.physical_id)
    if any(g["logGroupName"] == resource.physical_id for g in groups.get("logGroups", [])):
        return False, "the log group exists"
    return True, ""


def _alarm(client: ClientFactory, resource: Resource) -> Answer:
    answer = client("cloudwatch").describe_alarms(
        AlarmNames=[resource.physical_id], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    if answer.get("MetricAlarms") or answer.get("CompositeAlarms"):
        return False, "the alarm exists"
    return True, ""


def _secret(client: ClientFactory, resource: Resource) -> Answer:
    secret = client("secretsmanager").describe_secret(SecretId=resource.physical_id)
    if secret.get("DeletedDate"):
        return True, "secrets are scheduled for deletion (recoverable until the window ends)"
    return False, "the secret exists"


def _stack(client: ClientFactory, resource: Resource) -> Answer:
    try:
        stacks = client("cloudformation").describe_stacks(StackName=resource.physical_id)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return True, ""
        raise
    status = stacks[0]["StackStatus"] if stacks else "DELETE_COMPLETE"
    if status == "DELETE_COMPLETE":
        return True, ""
    return False, f"the stack is {status}"


def _cloud_control(client: ClientFactory, resource: Resource) -> Answer:
    # Cloud Control reads most types by their physical id. A type it cannot read (a
    # Lambda permission, an inline policy, a custom resource) has no life outside the
    # stack: unless retained, the stack's own DELETE_COMPLETE (checked as a resource of
    # the inventory too) is the proof.
    try:
        client("cloudcontrol").get_resource(TypeName=resource.type, Identifier=resource.physical_id)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _UNREADABLE and not resource.retained:
            return True, (
                "types Cloud Control cannot read are proven gone by the stack's DELETE_COMPLETE"
            )
        raise
    return False, "Cloud Control still reads it"


_UNREADABLE = frozenset(
    {"UnsupportedActionException", "TypeNotFoundException", "InvalidRequestException"}
)


_CHECKS: dict[str, Callable[[ClientFactory, Resource], Answer]] = {
    KMS_KEY: _kms_key,
    KMS_ALIAS: _kms_alias,
    S3_BUCKET: _bucket,
    S3_OBJECT: _object,
    LOG_GROUP: _log_group,
    ALARM: _alarm,
    SECRET: _secret,
    STACK: _stack,
}
