"""Least privilege: each function its own role, every sensitive KMS call bound to the keyset."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import (
    Template,
    as_list,
    logical_id_starting,
    only,
    policy_statements,
    resources,
)

KEY_ARNS = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":kms:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":key/*",
        ],
    ]
}
DEV_TAG = {"aws:ResourceTag/jwtkeys:keyset": "servicenow-dev"}
SENSITIVE_KMS_ACTIONS = {
    "kms:Sign",
    "kms:CreateKey",
    "kms:UpdateAlias",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:PutKeyPolicy",
}


@pytest.fixture(scope="module")
def signer(dev: Template) -> dict[str, dict[str, Any]]:
    return policy_statements(dev, "SignerRole")


@pytest.fixture(scope="module")
def keeper(dev: Template) -> dict[str, dict[str, Any]]:
    return policy_statements(dev, "KeeperRole")


def test_signer_signs_only_with_keyset_keys_digest_and_algorithm(
    signer: dict[str, dict[str, Any]],
) -> None:
    statement = signer["SignWithKeysetKeys"]

    assert statement["Action"] == "kms:Sign"
    assert statement["Resource"] == KEY_ARNS
    assert statement["Condition"] == {
        "StringEquals": {
            **DEV_TAG,
            "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
            "kms:MessageType": "DIGEST",
        }
    }


def test_signer_reads_only_keyset_keys(signer: dict[str, dict[str, Any]]) -> None:
    statement = signer["ReadKeysetKeys"]

    assert sorted(statement["Action"]) == [
        "kms:DescribeKey",
        "kms:GetPublicKey",
        "kms:ListResourceTags",
    ]
    assert statement["Resource"] == KEY_ARNS
    assert statement["Condition"] == {"StringEquals": DEV_TAG}


def test_signer_has_nothing_else_but_logs_and_tracing(
    signer: dict[str, dict[str, Any]],
) -> None:
    actions = {a for s in signer.values() for a in as_list(s["Action"])}

    assert actions == {
        "kms:Sign",
        "kms:DescribeKey",
        "kms:GetPublicKey",
        "kms:ListResourceTags",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_keeper_creates_keys_only_with_its_keyset_tags(
    keeper: dict[str, dict[str, Any]],
) -> None:
    statement = keeper["CreateKeysetKeys"]

    assert statement["Action"] == "kms:CreateKey"
    assert statement["Resource"] == "*"
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/jwtkeys:keyset": "servicenow-dev",
            "kms:KeySpec": "RSA_2048",
            "kms:KeyUsage": "SIGN_VERIFY",
            "kms:KeyOrigin": "AWS_KMS",
        },
        "ForAllValues:StringLike": {"aws:TagKeys": ["jwtkeys:*"]},
    }


def test_keeper_tags_only_with_jwtkeys_tag_keys_and_only_its_keys(
    keeper: dict[str, dict[str, Any]],
) -> None:
    on_create = keeper["TagNewKeysetKeys"]
    assert on_create["Action"] == "kms:TagResource"
    assert on_create["Condition"] == {
        "StringEquals": {"aws:RequestTag/jwtkeys:keyset": "servicenow-dev"},
        "ForAllValues:StringLike": {"aws:TagKeys": ["jwtkeys:*"]},
        "Null": {"aws:ResourceTag/jwtkeys:keyset": "true"},
        # An untagged key of another shape (imported material, another spec) is not taken in.
        "StringEqualsIfExists": {
            "kms:KeySpec": "RSA_2048",
            "kms:KeyUsage": "SIGN_VERIFY",
            "kms:KeyOrigin": "AWS_KMS",
        },
    }
    existing = keeper["TagKeysetKeys"]
    assert existing["Action"] == "kms:TagResource"
    assert existing["Resource"] == KEY_ARNS
    assert existing["Condition"] == {
        "StringEquals": {**DEV_TAG, "kms:KeyUsage": "SIGN_VERIFY", "kms:KeyOrigin": "AWS_KMS"},
        "ForAllValues:StringLike": {"aws:TagKeys": ["jwtkeys:*"]},
        "StringEqualsIfExists": {"aws:RequestTag/jwtkeys:keyset": "servicenow-dev"},
    }
    untag = keeper["UntagKeysetKeys"]
    assert untag["Action"] == "kms:UntagResource"
    assert untag["Condition"] == {
        "StringEquals": DEV_TAG,
        "ForAllValues:StringLike": {"aws:TagKeys": ["jwtkeys:*"]},
        "ForAllValues:StringNotEquals": {"aws:TagKeys": ["jwtkeys:keyset"]},
    }


def test_keeper_manages_aliases_only_under_its_prefix(
    keeper: dict[str, dict[str, Any]],
) -> None:
    aliases = keeper["ManageKeysetAliases"]
    assert sorted(aliases["Action"]) == ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"]
    assert aliases["Resource"]["Fn::Join"][1][-1] == ":alias/jwtkeys/servicenow-dev/*"
    assert "Condition" not in aliases
    targets = keeper["PointAliasesAtKeysetKeys"]
    assert targets["Resource"] == KEY_ARNS
    assert targets["Condition"] == {"StringEquals": DEV_TAG}


def test_keeper_cannot_rewrite_key_policies_or_grant(keeper: dict[str, dict[str, Any]]) -> None:
    # The tampering rule exempts the keeper: it must not be able to open a key to others.
    actions = {a for s in keeper.values() for a in as_list(s["Action"])}

    assert not actions & {"kms:PutKeyPolicy", "kms:CreateGrant", "kms:EnableKey"}


def test_keeper_lists_only_what_iam_cannot_scope(keeper: dict[str, dict[str, Any]]) -> None:
    unscoped = [s for s in keeper.values() if s["Resource"] == "*"]
    actions = {a for s in unscoped for a in as_list(s["Action"])}

    assert actions == {
        "kms:CreateKey",
        "kms:ListAliases",
        "kms:ListKeys",
        "tag:GetResources",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


def test_keeper_disables_and_deletes_only_keyset_keys_within_the_window(
    keeper: dict[str, dict[str, Any]],
) -> None:
    disable = keeper["DisableKeysetKeys"]
    assert disable["Action"] == "kms:DisableKey"
    assert disable["Condition"] == {"StringEquals": DEV_TAG}
    delete = keeper["ScheduleKeysetKeyDeletion"]
    assert delete["Action"] == "kms:ScheduleKeyDeletion"
    assert delete["Resource"] == KEY_ARNS
    assert delete["Condition"] == {
        "StringEquals": DEV_TAG,
        "NumericGreaterThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 7},
        "NumericLessThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 30},
    }


def test_keeper_signs_only_canaries_and_certificates_with_keyset_keys(
    keeper: dict[str, dict[str, Any]],
) -> None:
    statement = keeper["SignCanaryAndCertificates"]

    assert statement["Action"] == "kms:Sign"
    assert statement["Condition"]["StringEquals"] == {
        **DEV_TAG,
        "kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256",
        "kms:MessageType": "DIGEST",
    }


def test_keeper_writes_only_the_public_and_state_prefixes(
    dev: Template, keeper: dict[str, dict[str, Any]]
) -> None:
    bucket = logical_id_starting(dev, "AWS::S3::Bucket", "Jwks")
    objects = keeper["ReadWriteOwnPrefixes"]

    assert sorted(objects["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, f"/{prefix}*"]]}
        for prefix in (".well-known/", "state/")
    ]
    listing = keeper["ListBucketSoMissingObjectsAre404"]
    assert listing["Action"] == "s3:ListBucket"
    # No s3:prefix condition: S3 evaluates a missing object's read without one.
    assert "Condition" not in listing
    s3_actions = {a for s in keeper.values() for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}


def test_keeper_may_invalidate_its_distribution_only(
    dev: Template, keeper: dict[str, dict[str, Any]]
) -> None:
    distribution = logical_id_starting(dev, "AWS::CloudFront::Distribution", "Jwks")
    (statement,) = [s for s in keeper.values() if s["Action"] == "cloudfront:CreateInvalidation"]

    assert statement["Resource"]["Fn::Join"][1][-1] == {"Ref": distribution}


def test_only_the_keeper_reads_the_servicenow_secret(prod: Template) -> None:
    keeper_role = logical_id_starting(prod, "AWS::IAM::Role", "KeeperRole")
    secret = logical_id_starting(prod, "AWS::SecretsManager::Secret", "KeeperServiceNowSecret")
    _, policy = only(prod, "AWS::SecretsManager::ResourcePolicy", lambda _lid, _props: True)

    assert policy["SecretId"] == {"Ref": secret}
    assert policy["ResourcePolicy"]["Statement"] == [
        {
            "Sid": "OnlyTheKeeperReads",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": [keeper_role, "Arn"]}}
            },
        }
    ]
    readers = [
        s
        for role in ("SignerRole", "KeeperRole")
        for s in policy_statements(prod, role).values()
        if "secretsmanager:GetSecretValue" in as_list(s["Action"])
    ]
    assert [r["Resource"] for r in readers] == [{"Ref": secret}]


def test_no_kms_wildcard_and_no_unconditioned_sensitive_action_on_star(
    dev: Template, prod: Template
) -> None:
    for template in (dev, prod):
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = set(as_list(statement["Action"]))
                assert "kms:*" not in actions
                if "*" in as_list(statement.get("Resource")) and actions & SENSITIVE_KMS_ACTIONS:
                    assert statement.get("Condition"), statement


def test_each_function_has_its_own_role(dev: Template) -> None:
    functions = resources(dev, "AWS::Lambda::Function").values()
    roles = {function["Properties"]["Role"]["Fn::GetAtt"][0] for function in functions}
    # Signer, keeper, tampering inspector and (dev has one) the API authorizer: one each.
    assert len(roles) == len(functions) == 4
    for role in roles:
        assert "ManagedPolicyArns" not in dev["Resources"][role]["Properties"]


def test_a_rollover_lets_both_roles_sign_with_the_former_algorithm_only_while_it_lasts() -> None:
    """policy.rollover_from adds the former algorithm to Sign; CreateKey keeps one spec."""
    from infra.kms_permissions import keeper_kms_statements, signer_statements
    from jwtkeys.keeper.rotation_policy import RotationPolicy
    from jwtkeys.keys.algorithms import KeyPair

    policy = RotationPolicy(
        algorithm="ES256", key_spec="ECC_NIST_P256", rollover_from=KeyPair("RS256", "RSA_2048")
    )
    statements = {
        str(json["Sid"]): json
        for statement in [*signer_statements("k", policy), *keeper_kms_statements("k", policy)]
        for json in [statement.to_statement_json()]
    }
    for sid in ("SignWithKeysetKeys", "SignCanaryAndCertificates"):
        assert statements[sid]["Condition"]["StringEquals"]["kms:SigningAlgorithm"] == [
            "ECDSA_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_256",
        ]
    create = statements["CreateKeysetKeys"]["Condition"]["StringEquals"]
    assert create["kms:KeySpec"] == "ECC_NIST_P256"
