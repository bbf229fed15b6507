"""The least-privilege IAM statements of the signer and the keeper.

Every sensitive KMS action is bound to the keyset: existing keys by their
`jwtkeys:keyset` tag (aws:ResourceTag), new keys by the tags in the request
(aws:RequestTag, aws:TagKeys), aliases by their `alias/jwtkeys/<keyset>/` prefix.
Only the listing calls that IAM cannot scope (kms:ListAliases, kms:ListKeys,
tag:GetResources) are on `*`.
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from jwtkeys.keeper.rotation_policy import MAX_DELETION_WINDOW_DAYS, RotationPolicy
from jwtkeys.names import TAG_KEYSET, TAG_PREFIX, alias_prefix

_RESOURCE_TAG = f"aws:ResourceTag/{TAG_KEYSET}"
_REQUEST_TAG = f"aws:RequestTag/{TAG_KEYSET}"
_OWN_TAG_KEYS = f"{TAG_PREFIX}*"
# Reads a signer or keeper makes on its own keys.
_KEY_READS = ("kms:DescribeKey", "kms:GetPublicKey", "kms:ListResourceTags")


def key_arns() -> str:
    """Every KMS key of this account and region: narrowed by tag conditions, never alone."""
    return f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:key/*"


def alias_arns(keyset: str) -> str:
    """The keyset's own aliases, and no one else's."""
    return f"arn:{Aws.PARTITION}:kms:{Aws.REGION}:{Aws.ACCOUNT_ID}:{alias_prefix(keyset)}*"


def _own_keys(keyset: str) -> dict[str, dict[str, str]]:
    return {"StringEquals": {_RESOURCE_TAG: keyset}}


def _key_shape(key_spec: str) -> dict[str, str]:
    """A signing key KMS generated (never imported material) of the keyset's spec."""
    return {"kms:KeySpec": key_spec, "kms:KeyUsage": "SIGN_VERIFY", "kms:KeyOrigin": "AWS_KMS"}


def _signing_algorithms(policy: RotationPolicy) -> str | list[str]:
    algorithms = [pair.signing_algorithm.kms_algorithm for pair in policy.accepted_pairs]
    # One value stays a plain string: the template of a stage without a rollover is unchanged.
    return algorithms[0] if len(set(algorithms)) == 1 else list(dict.fromkeys(algorithms))


def _sign_statement(keyset: str, policy: RotationPolicy, sid: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["kms:Sign"],
        resources=[key_arns()],
        conditions={
            "StringEquals": {
                _RESOURCE_TAG: keyset,
                # The same restriction each key's policy carries (docs/design.md): the
                # keyset's algorithm, and digests only. While policy.rollover_from is set,
                # the former algorithm too: the keys made before the change sign with it
                # until they rotate out (their own key policy allows only that one).
                "kms:SigningAlgorithm": _signing_algorithms(policy),
                "kms:MessageType": "DIGEST",
            }
        },
    )


def signer_statements(keyset: str, policy: RotationPolicy) -> list[iam.PolicyStatement]:
    """The signer signs with, and reads, its keyset's keys; nothing else in KMS."""
    return [
        _sign_statement(keyset, policy, "SignWithKeysetKeys"),
        iam.PolicyStatement(
            sid="ReadKeysetKeys",
            actions=list(_KEY_READS),
            resources=[key_arns()],
            conditions=_own_keys(keyset),
        ),
    ]


def keeper_kms_statements(keyset: str, policy: RotationPolicy) -> list[iam.PolicyStatement]:
    """Create, tag, alias, disable and delete only the keyset's keys.

    No kms:PutKeyPolicy: the policy is given in CreateKey (its lockout check is met by
    the account-root statement of that policy), and the tampering rule exempts the
    keeper, so a keeper able to rewrite policies could grant signing unseen.
    """
    tag_keys_own = {"aws:TagKeys": [_OWN_TAG_KEYS]}
    return [
        iam.PolicyStatement(
            sid="CreateKeysetKeys",
            actions=["kms:CreateKey"],
            # CreateKey has no resource to name; the request's tags and key shape bind it.
            resources=["*"],
            conditions={
                # The configured spec only, even during a rollover (policy.rollover_from):
                # keys of the former pair are never made again.
                "StringEquals": {_REQUEST_TAG: keyset, **_key_shape(policy.key_spec)},
                "ForAllValues:StringLike": tag_keys_own,
            },
        ),
        iam.PolicyStatement(
            # Tags given in CreateKey need kms:TagResource too; the key has no tags yet,
            # so this binds the request's tags and only keys that carry no keyset tag.
            sid="TagNewKeysetKeys",
            actions=["kms:TagResource"],
            resources=[key_arns()],
            conditions={
                "StringEquals": {_REQUEST_TAG: keyset},
                "ForAllValues:StringLike": tag_keys_own,
                "Null": {_RESOURCE_TAG: "true"},
                # An untagged key someone else made (imported material they hold, another
                # spec, an encryption key) can never be tagged into the keyset. IfExists:
                # the tagging CreateKey implies may not carry the key's properties (not
                # confirmed); CreateKey itself is bound to them above.
                "StringEqualsIfExists": _key_shape(policy.key_spec),
            },
        ),
        iam.PolicyStatement(
            sid="TagKeysetKeys",
            actions=["kms:TagResource"],
            resources=[key_arns()],
            conditions={
                # No key spec here: after an algorithm change the old spec's keys are
                # still the keyset's and must be retired through their tags.
                "StringEquals": {
                    **_own_keys(keyset)["StringEquals"],
                    "kms:KeyUsage": "SIGN_VERIFY",
                    "kms:KeyOrigin": "AWS_KMS",
                },
                "ForAllValues:StringLike": tag_keys_own,
                # A key may never be moved to another keyset.
                "StringEqualsIfExists": {_REQUEST_TAG: keyset},
            },
        ),
        iam.PolicyStatement(
            sid="UntagKeysetKeys",
            actions=["kms:UntagResource"],
            resources=[key_arns()],
            conditions={
                "StringEquals": _own_keys(keyset)["StringEquals"],
                "ForAllValues:StringLike": tag_keys_own,
                # Removing the keyset tag would orphan the key (invariant I4).
                "ForAllValues:StringNotEquals": {"aws:TagKeys": [TAG_KEYSET]},
            },
        ),
        iam.PolicyStatement(
            sid="ManageKeysetAliases",
            actions=["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
            resources=[alias_arns(keyset)],
        ),
        iam.PolicyStatement(
            # Alias calls are authorised on the alias and on the key it names.
            sid="PointAliasesAtKeysetKeys",
            actions=["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
            resources=[key_arns()],
            conditions=_own_keys(keyset),
        ),
        iam.PolicyStatement(
            sid="DisableKeysetKeys",
            actions=["kms:DisableKey"],
            resources=[key_arns()],
            conditions=_own_keys(keyset),
        ),
        iam.PolicyStatement(
            sid="ScheduleKeysetKeyDeletion",
            actions=["kms:ScheduleKeyDeletion"],
            resources=[key_arns()],
            conditions={
                **_own_keys(keyset),
                # Never a shorter window than configured: the window is the last chance
                # to cancel a mistaken retirement.
                "NumericGreaterThanEquals": {
                    "kms:ScheduleKeyDeletionPendingWindowInDays": policy.deletion_window_days
                },
                "NumericLessThanEquals": {
                    "kms:ScheduleKeyDeletionPendingWindowInDays": MAX_DELETION_WINDOW_DAYS
                },
            },
        ),
        # The keeper signs too: the canary token and the self-signed certificates.
        _sign_statement(keyset, policy, "SignCanaryAndCertificates"),
        iam.PolicyStatement(
            sid="ReadKeysetKeys",
            actions=[*_KEY_READS, "kms:GetKeyPolicy"],
            resources=[key_arns()],
            conditions=_own_keys(keyset),
        ),
        iam.PolicyStatement(
            # Listing calls IAM cannot scope to a resource; they reveal no key material.
            sid="ListKeysAndAliases",
            actions=["kms:ListAliases", "kms:ListKeys"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            # The key census (keeper/census.py): the keys carrying the keyset's tag. The
            # Tagging API has no resource-level permissions; it returns ARNs and tags only.
            sid="KeyCensusByTag",
            actions=["tag:GetResources"],
            resources=["*"],
        ),
    ]
