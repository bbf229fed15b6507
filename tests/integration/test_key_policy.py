"""The key policy the keeper builds at run time, read back from the local KMS."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from jwtkeys.errors import LifecycleError
from jwtkeys.keeper.service import CREATE_KEY_CONFIG
from jwtkeys.keys.algorithms import algorithm_named
from jwtkeys.keys.key_store import KeyStore
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LOCAL_ACCOUNT

SIGNER = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jwtkeys-test-signer"
KEEPER = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/jwtkeys-test-keeper"


def _store(local_aws: LocalAws, *, sts_region: str = "us-east-1", keeper: str = KEEPER) -> KeyStore:
    return KeyStore(
        local_aws.client("kms"),
        local_aws.client("sts", region_name=sts_region),
        local_aws.client("kms", config=CREATE_KEY_CONFIG),
        "test",
        algorithm_named("RS256"),
        "RSA_2048",
        SIGNER,
        keeper,
    )


def _statements(local_aws: LocalAws, arn: str) -> dict[str, dict[str, Any]]:
    policy = local_aws.client("kms").get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
    return {statement["Sid"]: statement for statement in json.loads(policy)["Statement"]}


def _allows(statement: dict[str, Any], action: str) -> bool:
    actions = statement["Action"]
    actions = [actions] if isinstance(actions, str) else actions
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in actions)


def test_the_account_cannot_delegate_signing_through_a_grant(local_aws: LocalAws) -> None:
    # Before: "kms:Create*" let any administrator (or an IAM policy) CreateGrant a role the
    # Sign operation, and grants carry neither the algorithm nor the DIGEST condition.
    arn = _store(local_aws).create_key("nonce-1", 1_700_000_000.0)

    statements = _statements(local_aws, arn)
    for sid, statement in statements.items():
        assert not _allows(statement, "kms:CreateGrant"), sid
    root = statements["AccountAdministrationWithoutSigning"]
    assert not _allows(root, "kms:Sign")
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:RevokeGrant"):
        assert _allows(root, action), action


def test_the_root_principal_is_in_the_partition_sts_names(local_aws: LocalAws) -> None:
    # The local STS answers in the partition of the client's Region (aws-cn for cn-north-1):
    # before, the policy said arn:aws: wherever the keeper ran.
    china = _store(local_aws, sts_region="cn-north-1")
    assert china.caller().partition == "aws-cn"
    root = china.key_policy()["Statement"][0]
    assert root["Principal"] == {"AWS": f"arn:aws-cn:iam::{LOCAL_ACCOUNT}:root"}

    arn = _store(local_aws).create_key("nonce-2", 1_700_000_000.0)
    root = _statements(local_aws, arn)["AccountAdministrationWithoutSigning"]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{LOCAL_ACCOUNT}:root"}


def test_a_keeper_role_of_another_account_is_refused_before_any_key(local_aws: LocalAws) -> None:
    store = _store(local_aws, keeper="arn:aws:iam::999988887777:role/jwtkeys-test-keeper")
    local_aws.reset_calls()

    with pytest.raises(LifecycleError, match="runs in account 123456789012"):
        store.create_key("nonce-3", 1_700_000_000.0)
    assert ("kms", "CreateKey") not in local_aws.calls()
