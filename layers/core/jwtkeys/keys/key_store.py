"""The keyset's keys in AWS KMS: creation with tags and key policy, tags, alias, disposal.

Every method is one small step that checks before it acts, so the keeper can retry any
of them after an interruption.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.errors import LifecycleError, aws_error_code
from jwtkeys.keys.algorithms import SigningAlgorithm
from jwtkeys.keys.jwk import public_jwk, public_key_from_der
from jwtkeys.keys.key_state import KeyState, ManagedKey
from jwtkeys.timestamps import from_iso, to_iso

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_sts import STSClient

    from jwtkeys.clock import Clock

_TIMESTAMP_TAGS = {
    "created_at": names.TAG_CREATED_AT,
    "published_at": names.TAG_PUBLISHED_AT,
    "activated_at": names.TAG_ACTIVATED_AT,
    "deactivated_at": names.TAG_DEACTIVATED_AT,
    "retired_at": names.TAG_RETIRED_AT,
}


def account_of(role_arn: str) -> str:
    """The account id in an IAM role ARN (arn:<partition>:iam::<account>:role/...)."""
    parts = role_arn.split(":")
    if len(parts) < 6 or not parts[4].isdigit():
        raise LifecycleError(f"not an IAM role ARN: {role_arn!r}")
    return parts[4]


@dataclass(frozen=True)
class CallerIdentity:
    """Where the keeper runs, as STS GetCallerIdentity says (never assumed: aws-cn and
    aws-us-gov keys need their own partition in every ARN of the policy)."""

    partition: str
    account: str

    @classmethod
    def from_arn(cls, arn: str) -> CallerIdentity:
        parts = arn.split(":")
        if len(parts) < 6 or parts[0] != "arn" or not parts[1] or not parts[4].isdigit():
            raise LifecycleError(f"caller identity is not an ARN: {arn!r}")
        return cls(partition=parts[1], account=parts[4])


# Administration by the account: everything but using the key (Sign, Verify, ...) and
# kms:CreateGrant. A grant would let its grantee sign with no kms:SigningAlgorithm or
# kms:MessageType condition (grants cannot carry either), so it is not delegated at all;
# and this statement is what lets IAM policies in the account grant anything, so an
# identity policy can never grant CreateGrant either.
ACCOUNT_ADMINISTRATION_ACTIONS = (
    "kms:CreateAlias",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:RetireGrant",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)


# The account statement of keys created before that change (kms:Create* included
# kms:CreateGrant); accepted on existing keys so an upgrade does not disown them.
_EARLIER_ACCOUNT_ACTIONS = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)


def key_policy(
    algorithm: SigningAlgorithm,
    signer_role_arn: str,
    keeper_role_arn: str,
    caller: CallerIdentity,
) -> dict[str, Any]:
    """Administration by the account, but Sign only by the signer and keeper roles,
    only with the keyset's algorithm and MessageType=DIGEST: even an account
    administrator must change this policy (which is alarmed) to sign."""
    account = account_of(keeper_role_arn)
    if caller.account != account:
        raise LifecycleError(
            f"the keeper runs in account {caller.account} but its role {keeper_role_arn}"
            f" is in {account}: keys would be administered by the wrong account"
        )
    signers = sorted({signer_role_arn, keeper_role_arn})
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministrationWithoutSigning",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{caller.partition}:iam::{account}:root"},
                "Action": list(ACCOUNT_ADMINISTRATION_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "SignOnlyBySignerAndKeeperWithTheKeysetAlgorithm",
                "Effect": "Allow",
                "Principal": {"AWS": signers},
                "Action": "kms:Sign",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:SigningAlgorithm": algorithm.kms_algorithm,
                        "kms:MessageType": "DIGEST",
                    }
                },
            },
            {
                # KMS refuses CreateKey when the new policy would not let the caller put a
                # policy later (the lockout safety check); the keeper never calls it, so
                # any PutKeyPolicy event at all is tampering for the alarm rule.
                "Sid": "LockoutSafetyForTheKeeper",
                "Effect": "Allow",
                "Principal": {"AWS": keeper_role_arn},
                "Action": "kms:PutKeyPolicy",
                "Resource": "*",
            },
            {
                "Sid": "ReadByRoles",
                "Effect": "Allow",
                "Principal": {"AWS": signers},
                "Action": ["kms:DescribeKey", "kms:GetPublicKey", "kms:ListResourceTags"],
                "Resource": "*",
            },
        ],
    }


def _remember(key: ManagedKey, tags: Mapping[str, str], now: float) -> None:
    """Keep `key` in step with tags just written (timestamps at second precision)."""
    key.tags.update(tags)
    for attribute, tag in _TIMESTAMP_TAGS.items():
        if tag in tags:
            setattr(key, attribute, float(int(now)))


@dataclass(frozen=True)
class ScanBound:
    """How far an account-wide key scan may go: keys examined and a deadline on `clock`."""

    max_keys: int
    deadline: float
    clock: Clock


@dataclass(frozen=True)
class NonceSearch:
    """The keys found carrying a nonce, and whether the scan saw every key of the account."""

    found: list[str]
    examined: int
    complete: bool


class KeyStore:
    """KMS operations on one keyset's keys."""

    def __init__(
        self,
        kms: KMSClient,
        sts: STSClient,
        kms_create: KMSClient,
        keyset: str,
        algorithm: SigningAlgorithm,
        key_spec: str,
        signer_role_arn: str,
        keeper_role_arn: str,
    ) -> None:
        self._kms = kms
        self._sts = sts
        # A client that never retries: see create_key.
        self._kms_create = kms_create
        self.keyset = keyset
        self.algorithm = algorithm
        self.key_spec = key_spec
        self._signer_role_arn = signer_role_arn
        self._keeper_role_arn = keeper_role_arn
        self._caller: CallerIdentity | None = None
        self.alias = names.current_alias(keyset)

    def caller(self) -> CallerIdentity:
        """The keeper's own partition and account, asked of STS once (they never change)."""
        if self._caller is None:
            arn = self._sts.get_caller_identity()["Arn"]
            self._caller = CallerIdentity.from_arn(arn)
        return self._caller

    def key_policy(self, algorithm: SigningAlgorithm | None = None) -> dict[str, Any]:
        """The policy a key of `algorithm` gets (default: the configured one, that of
        every new key); built when first needed: it asks STS."""
        return key_policy(
            algorithm or self.algorithm,
            self._signer_role_arn,
            self._keeper_role_arn,
            self.caller(),
        )

    def create_key(self, nonce: str, now: float) -> str:
        """Create a `next` key; keyset, state, nonce and created-at are set atomically.

        Made once, never retried: when its answer is lost the key may exist, and only
        the nonce (find_by_nonce) can tell; a retry would make a second key.
        """
        response = self._kms_create.create_key(
            Description=f"jwtkeys signing key of keyset {self.keyset}",
            KeyUsage="SIGN_VERIFY",
            KeySpec=self.key_spec,  # type: ignore[arg-type]
            Policy=json.dumps(self.key_policy()),
            Tags=[
                {"TagKey": names.TAG_KEYSET, "TagValue": self.keyset},
                {"TagKey": names.TAG_STATE, "TagValue": KeyState.NEXT.value},
                {"TagKey": names.TAG_NONCE, "TagValue": nonce},
                {"TagKey": names.TAG_CREATED_AT, "TagValue": to_iso(now)},
                # What the signer signs with; its key policy allows no other algorithm.
                {"TagKey": names.TAG_ALG, "TagValue": self.algorithm.jws_name},
            ],
        )
        return response["KeyMetadata"]["Arn"]

    def accepted_policies(self, algorithm: SigningAlgorithm | None = None) -> list[dict[str, Any]]:
        """The key policies a keyset key of `algorithm` may carry: today's, and the one
        keys created before kms:CreateGrant was taken from the account (they leave at
        retirement)."""
        current = self.key_policy(algorithm)
        earlier = json.loads(json.dumps(current))
        earlier["Statement"][0]["Action"] = list(_EARLIER_ACCOUNT_ACTIONS)
        return [current, earlier]

    def policy_of(self, arn: str) -> dict[str, Any]:
        """The key's policy as KMS holds it."""
        policy = self._kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
        parsed: dict[str, Any] = json.loads(policy)
        return parsed

    def shape(self, arn: str) -> tuple[str, str, str]:
        """(KeySpec, KeyUsage, Origin): fixed for a key's life."""
        metadata = self._kms.describe_key(KeyId=arn)["KeyMetadata"]
        return (
            str(metadata.get("KeySpec", "")),
            str(metadata.get("KeyUsage", "")),
            str(metadata.get("Origin", "")),
        )

    def public_jwk(self, arn: str, algorithm: SigningAlgorithm | None = None) -> dict[str, str]:
        """The key's public JWK (kid = RFC 7638 thumbprint) from GetPublicKey, its `alg`
        the key's own algorithm (default: the configured one, that of every new key)."""
        response = self._kms.get_public_key(KeyId=arn)
        return public_jwk(public_key_from_der(response["PublicKey"]), algorithm or self.algorithm)

    def tags(self, arn: str) -> dict[str, str]:
        response = self._kms.list_resource_tags(KeyId=arn, Limit=50)
        return {tag["TagKey"]: tag["TagValue"] for tag in response.get("Tags", [])}

    def set_tags(self, arn: str, tags: Mapping[str, str]) -> None:
        self._kms.tag_resource(
            KeyId=arn, Tags=[{"TagKey": key, "TagValue": value} for key, value in tags.items()]
        )

    def load(self, arn: str, jwk: dict[str, str]) -> ManagedKey | None:
        """The key as its tags describe it; None when it is not (or no longer) ours."""
        try:
            tags = self.tags(arn)
        except ClientError as error:
            if aws_error_code(error) == "NotFoundException":
                return None
            raise
        if tags.get(names.TAG_KEYSET) != self.keyset:
            return None
        try:
            state = KeyState(tags.get(names.TAG_STATE, ""))
        except ValueError:
            raise LifecycleError(
                f"{arn} has an unknown state tag {tags.get(names.TAG_STATE)!r}"
            ) from None
        times = {
            attribute: from_iso(tags[tag]) if tag in tags else None
            for attribute, tag in _TIMESTAMP_TAGS.items()
        }
        return ManagedKey(
            arn=arn,
            kid=tags.get(names.TAG_KID, jwk.get("kid", "")),
            state=state,
            jwk=jwk,
            nonce=tags.get(names.TAG_NONCE, ""),
            created_at=times.pop("created_at") or 0.0,
            tags=tags,
            **times,
        )

    def transition(self, key: ManagedKey, state: KeyState, at_tag: str | None, now: float) -> None:
        """Tag a new state (and the transition's timestamp), then update `key` to match."""
        tags = {names.TAG_STATE: state.value}
        if at_tag is not None:
            tags[at_tag] = to_iso(now)
        self.set_tags(key.arn, tags)
        key.state = state
        _remember(key, tags, now)

    def stamp(self, key: ManagedKey, tag: str, now: float) -> None:
        """Set one timestamp tag (e.g. published-at) without changing the state."""
        tags = {tag: to_iso(now)}
        self.set_tags(key.arn, tags)
        _remember(key, tags, now)

    def alias_target(self) -> str | None:
        """The ARN the signing alias names, or None before bootstrap."""
        try:
            return self._kms.describe_key(KeyId=self.alias)["KeyMetadata"]["Arn"]
        except ClientError as error:
            if aws_error_code(error) == "NotFoundException":
                return None
            raise

    def point_alias(self, arn: str, exists: bool) -> None:
        """Move (or create) the signing alias onto `arn`: this is what makes a key sign."""
        if exists:
            self._kms.update_alias(AliasName=self.alias, TargetKeyId=arn)
        else:
            self._kms.create_alias(AliasName=self.alias, TargetKeyId=arn)

    def delete_alias(self) -> None:
        try:
            self._kms.delete_alias(AliasName=self.alias)
        except ClientError as error:
            if aws_error_code(error) != "NotFoundException":
                raise

    def key_state(self, arn: str) -> str:
        """KMS's own KeyState: Enabled, Disabled, PendingDeletion, ..."""
        return self._kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]

    def dispose(self, arn: str, deletion_window_days: int) -> None:
        """Disable the key and schedule its deletion; each half is skipped when done."""
        state = self.key_state(arn)
        if state == "PendingDeletion":
            return
        if state == "Enabled":
            self._kms.disable_key(KeyId=arn)
        self._kms.schedule_key_deletion(KeyId=arn, PendingWindowInDays=deletion_window_days)

    def disable(self, arn: str) -> None:
        """Disable at once (revocation); a key already disabled or pending deletion is left."""
        if self.key_state(arn) == "Enabled":
            self._kms.disable_key(KeyId=arn)

    def find_by_nonce(self, nonce: str, bound: ScanBound) -> NonceSearch:
        """Every key of the keyset created with `nonce`, oldest first (recovery only: it
        scans the account, one ListResourceTags per key, so it stops at `bound`)."""
        found: list[tuple[str, str]] = []
        examined = 0
        for arn in self._all_key_arns():
            if examined >= bound.max_keys or bound.clock.now() >= bound.deadline:
                return NonceSearch([arn for _, arn in sorted(found)], examined, complete=False)
            examined += 1
            try:
                tags = self.tags(arn)
            except ClientError:
                continue  # keys of other owners may refuse us; they are not ours anyway
            if tags.get(names.TAG_KEYSET) == self.keyset and tags.get(names.TAG_NONCE) == nonce:
                found.append((tags.get(names.TAG_CREATED_AT, ""), arn))
        return NonceSearch([arn for _, arn in sorted(found)], examined, complete=True)

    def _all_key_arns(self) -> Iterator[str]:
        paginator = self._kms.get_paginator("list_keys")
        for page in paginator.paginate():
            for key in page.get("Keys", []):
                yield key["KeyArn"]
