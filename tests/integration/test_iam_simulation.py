"""IAM, proven by simulation: what the roles may do, and what they must never do.

Every request below goes through the local endpoint as one of the deployment's roles, so
what is evaluated is what the endpoint recorded (action, resource, request context, the
key policy in force), against the synthesized template's policies
(`tests.iam_simulation`). A must-deny test reads the denials itself, so the check after
each test does not count them as a failure.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.clock import SimulatedClock
from jwtkeys.errors import AwsCallFailed
from jwtkeys.keys.algorithms import KeyPair
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT, LocalStack
from tests.iam_simulation import DeployedPolicies, IamSession
from tests.servicenow_fixtures import CLIENT_ID
from tests.servicenow_sync_fixtures import CANARY_EMAIL, make_stack

ADMIN_ROLE = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/administrator"
ADMIN_POLICY = {
    "name": "AdministratorAccess",
    "policy": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    },
}


@pytest.fixture
def keyset(stack: LocalStack, iam_session: IamSession) -> LocalStack:
    """The `test` keyset after its first tick (a current and a next key, JWKS published)."""
    summary = stack.keeper_service().handle({"action": "tick"})
    assert len(summary["created"]) == 2
    assert iam_session.check(stack.aws) == []
    return stack


def _current_key(stack: LocalStack) -> str:
    metadata = stack.kms.describe_key(KeyId=names.current_alias(stack.config.keyset))
    return str(metadata["KeyMetadata"]["Arn"])


def _denials(iam_session: IamSession, aws: LocalAws) -> list[str]:
    denials = iam_session.check(aws)
    assert denials, "expected the deployed policies to deny the request"
    return denials


def _denied_action(denials: list[str], action: str) -> None:
    assert len(denials) == 1, denials
    assert f"needs {action} on" in denials[0], denials[0]


# --------------------------------------------------------------------------- S3 404 / 403


def test_a_missing_object_is_403_without_list_bucket_and_404_with_it(local_aws: LocalAws) -> None:
    s3 = local_aws.client("s3")
    s3.create_bucket(Bucket="iam-bucket")
    role = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/reader"

    denied = local_aws.client(
        "s3", **local_aws.register_role(role, list_bucket={"iam-bucket": False})
    )
    with pytest.raises(ClientError) as refused:
        denied.get_object(Bucket="iam-bucket", Key="state/registry.json")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    allowed = local_aws.client(
        "s3", **local_aws.register_role(role, list_bucket={"iam-bucket": True})
    )
    with pytest.raises(ClientError) as missing:
        allowed.get_object(Bucket="iam-bucket", Key="state/registry.json")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    local_aws.reset_iam_requests()  # an ad hoc role with no deployed policies


def _with_prefix_conditioned_listing(policies: DeployedPolicies, keeper: str) -> DeployedPolicies:
    """The keeper's policies as first written: s3:ListBucket only with an s3:prefix."""
    identity = copy.deepcopy(policies.identity)
    for entry in identity[keeper]:
        for statement in entry["policy"]["Statement"]:
            if statement.get("Action") == "s3:ListBucket":
                statement["Condition"] = {"StringLike": {"s3:prefix": [".well-known/*", "state/*"]}}
    return DeployedPolicies(
        identity,
        policies.bucket_policy,
        policies.secret_policy,
        policies.bucket,
        policies.secret_arn,
    )


def test_first_tick_is_access_denied_when_listing_needs_a_prefix(
    stack: LocalStack, iam_session: IamSession
) -> None:
    """The grant the keeper first had: its very first read of state/ is AccessDenied."""
    keeper = stack.config.keeper_role_arn
    fixed = iam_session.policies[stack.label]
    iam_session.policies[stack.label] = _with_prefix_conditioned_listing(fixed, keeper)
    try:
        iam_session.register(stack)
        with pytest.raises(AwsCallFailed) as refused:
            stack.keeper_service().handle({"action": "tick"})
        assert refused.value.error_code == "AccessDenied"
        assert refused.value.operation == "GetObject"
        assert refused.value.changed == "no key changed state"
    finally:
        iam_session.policies[stack.label] = fixed
        iam_session.register(stack)
    iam_session.check(stack.aws)

    summary = stack.keeper_service().handle({"action": "tick"})
    assert len(summary["created"]) == 2


# --------------------------------------------------------------------------- recording


def test_recorded_requests_carry_the_context_aws_evaluates(
    stack: LocalStack, iam_session: IamSession
) -> None:
    stack.keeper_service().handle({"action": "tick"})
    stack.sign_service().handle({"subject": "svc-orders", "audience": "client-test"})
    requests = stack.aws.iam_requests()

    def first(action: str, role: str) -> dict[str, Any]:
        return next(r for r in requests if r["action"] == action and r["role_arn"] == role)

    keeper, signer = stack.config.keeper_role_arn, stack.config.signer_role_arn
    create = first("kms:CreateKey", keeper)["context"]
    assert create["kms:KeySpec"] == stack.config.policy.key_spec
    assert create["kms:KeyUsage"] == "SIGN_VERIFY"
    assert create["kms:KeyOrigin"] == "AWS_KMS"
    assert create[f"aws:RequestTag/{names.TAG_KEYSET}"] == "test"
    assert names.TAG_KEYSET in create["aws:TagKeys"]
    tag_new = first("kms:TagResource", keeper)
    assert tag_new["resource"].startswith(f"arn:aws:kms:us-east-1:{LOCAL_ACCOUNT}:key/")
    sign = first("kms:Sign", signer)
    assert sign["context"]["kms:MessageType"] == "DIGEST"
    assert sign["context"]["kms:SigningAlgorithm"] == (
        stack.config.policy.signing_algorithm.kms_algorithm
    )
    assert sign["context"][f"aws:ResourceTag/{names.TAG_KEYSET}"] == "test"
    assert json.loads(sign["resource_policy"])["Statement"]
    read = first("s3:GetObject", keeper)
    assert read["resource"].startswith(f"arn:aws:s3:::{stack.config.bucket}/")
    assert not any("s3:prefix" in r["context"] for r in requests if r["action"] != "s3:ListBucket")
    assert iam_session.check(stack.aws) == []


# --------------------------------------------------------------------------- must deny


@pytest.mark.parametrize(
    ("operation", "action"),
    [
        ("schedule_key_deletion", "kms:ScheduleKeyDeletion"),
        ("disable_key", "kms:DisableKey"),
        ("tag_resource", "kms:TagResource"),
    ],
)
def test_the_signer_may_not_manage_keys(
    keyset: LocalStack, iam_session: IamSession, operation: str, action: str
) -> None:
    kms = keyset.role_client("kms", keyset.config.signer_role_arn)
    arguments: dict[str, Any] = {"KeyId": _current_key(keyset)}
    if operation == "schedule_key_deletion":
        arguments["PendingWindowInDays"] = 7
    if operation == "tag_resource":
        arguments["Tags"] = [{"TagKey": names.TAG_STATE, "TagValue": "current"}]
    getattr(kms, operation)(**arguments)
    _denied_action(_denials(iam_session, keyset.aws), action)


def test_the_signer_may_not_create_keys(keyset: LocalStack, iam_session: IamSession) -> None:
    kms = keyset.role_client("kms", keyset.config.signer_role_arn)
    kms.create_key(
        KeySpec=keyset.config.policy.key_spec,
        KeyUsage="SIGN_VERIFY",
        Tags=[{"TagKey": names.TAG_KEYSET, "TagValue": "test"}],
    )
    denials = _denials(iam_session, keyset.aws)
    assert any("needs kms:CreateKey on *" in denial for denial in denials), denials


@pytest.mark.parametrize("role", ["signer", "keeper"])
@pytest.mark.parametrize(
    ("algorithm", "message_type"),
    [("RSASSA_PSS_SHA_256", "DIGEST"), ("RSASSA_PKCS1_V1_5_SHA_256", "RAW")],
)
def test_sign_only_with_the_keyset_algorithm_and_digests(
    keyset: LocalStack, iam_session: IamSession, role: str, algorithm: str, message_type: str
) -> None:
    assert keyset.config.policy.signing_algorithm.kms_algorithm == "RSASSA_PKCS1_V1_5_SHA_256"
    role_arn = keyset.config.signer_role_arn if role == "signer" else keyset.config.keeper_role_arn
    kms = keyset.role_client("kms", role_arn)
    message = b"\x00" * 32 if message_type == "DIGEST" else b"header.payload"
    kms.sign(
        KeyId=_current_key(keyset),
        Message=message,
        MessageType=message_type,
        SigningAlgorithm=algorithm,
    )
    denials = _denials(iam_session, keyset.aws)
    _denied_action(denials, "kms:Sign")
    # Both the identity policy and the key policy refuse it.
    assert "resource policy: ImplicitlyDenied" in denials[0] or "resource policy" in denials[0]


@pytest.mark.parametrize("role", ["signer", "keeper"])
def test_during_a_rollover_old_keys_sign_with_their_algorithm_and_no_third(
    keyset: LocalStack, iam_session: IamSession, role: str
) -> None:
    """RS256 keys after a move to ES256 with policy.rollover_from: RS256 is allowed on
    them (the algorithm their key policy pins); RS384 is denied."""
    keyset.config.policy = replace(
        keyset.config.policy,
        algorithm="ES256",
        key_spec="ECC_NIST_P256",
        rollover_from=KeyPair("RS256", "RSA_2048"),
    )
    role_arn = keyset.config.signer_role_arn if role == "signer" else keyset.config.keeper_role_arn
    kms = keyset.role_client("kms", role_arn)
    for algorithm in ("RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384"):
        kms.sign(
            KeyId=_current_key(keyset),
            Message=b"\x00" * (32 if algorithm.endswith("256") else 48),
            MessageType="DIGEST",
            SigningAlgorithm=algorithm,
        )
        if algorithm.endswith("256"):
            assert iam_session.check(keyset.aws) == []
    _denied_action(_denials(iam_session, keyset.aws), "kms:Sign")


def test_no_other_role_signs_not_even_an_administrator(
    keyset: LocalStack, iam_session: IamSession
) -> None:
    """The key policy lets only the signer and keeper sign: kms:* in IAM is not enough."""
    iam_session.other_roles[ADMIN_ROLE] = [ADMIN_POLICY]
    try:
        admin = keyset.aws.client("kms", **keyset.aws.register_role(ADMIN_ROLE, label=keyset.label))
        admin.sign(
            KeyId=_current_key(keyset),
            Message=b"\x00" * 32,
            MessageType="DIGEST",
            SigningAlgorithm=keyset.config.policy.signing_algorithm.kms_algorithm,
        )
        denials = _denials(iam_session, keyset.aws)
        _denied_action(denials, "kms:Sign")
        # The administrator may still read it: the denial is the key policy's, not a typo.
        admin.describe_key(KeyId=_current_key(keyset))
        assert iam_session.check(keyset.aws) == []
    finally:
        del iam_session.other_roles[ADMIN_ROLE]


@pytest.mark.parametrize("key", [f"{names.STATE_PREFIX}registry.json", names.JWKS_OBJECT_KEY])
def test_only_the_keeper_writes_state_and_the_jwks(
    keyset: LocalStack, iam_session: IamSession, key: str
) -> None:
    s3 = keyset.role_client("s3", keyset.config.signer_role_arn)
    s3.put_object(Bucket=keyset.config.bucket, Key=key, Body=b"{}")
    _denied_action(_denials(iam_session, keyset.aws), "s3:PutObject")


def test_the_keeper_tags_only_new_sign_verify_keys_of_the_keyset_spec(
    keyset: LocalStack, iam_session: IamSession
) -> None:
    """A key created outside the keeper (another spec, no keyset tag) cannot be adopted."""
    foreign = keyset.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    kms = keyset.role_client("kms", keyset.config.keeper_role_arn)
    kms.tag_resource(
        KeyId=foreign["KeyMetadata"]["KeyId"],
        Tags=[{"TagKey": names.TAG_KEYSET, "TagValue": "test"}],
    )
    _denied_action(_denials(iam_session, keyset.aws), "kms:TagResource")


def test_the_keeper_reads_its_own_secret_and_no_other(
    local_aws: LocalAws, clock: SimulatedClock, iam_session: IamSession
) -> None:
    secrets = local_aws.client("secretsmanager")
    own = secrets.create_secret(Name="jwtkeys/test/servicenow", SecretString="{}")["ARN"]
    other = secrets.create_secret(Name="jwtkeys/test/servicenow-other", SecretString="{}")["ARN"]
    env = {
        names.ENV_SERVICENOW_INSTANCE: "https://instance.example.com",
        names.ENV_SERVICENOW_SECRET: own,
        names.ENV_SERVICENOW_CLIENT_ID: CLIENT_ID,
        names.ENV_SERVICENOW_CANARY_SUBJECT: CANARY_EMAIL,
    }
    stack = make_stack(local_aws, clock, env)
    assert stack.label in iam_session.policies
    keeper = stack.role_client("secretsmanager", stack.config.keeper_role_arn)

    keeper.get_secret_value(SecretId=own)
    assert iam_session.check(local_aws) == []

    # Its grant names the secret and Secrets Manager's six-character suffix, no more.
    keeper.get_secret_value(SecretId=other)
    _denied_action(_denials(iam_session, local_aws), "secretsmanager:GetSecretValue")
