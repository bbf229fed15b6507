"""Checks of the lifecycle invariants I1-I5 (design.md) against a local deployment.

Development-only: it scans every KMS key of the account, which the keeper never does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from jwtkeys import names
from jwtkeys.timestamps import from_iso
from jwtkeys_tools.local.stack import LocalStack


@dataclass(frozen=True)
class IssuedRecord:
    """A token the test or demo saw issued: enough to check I2 later."""

    kid: str
    issued_at: float
    expires_at: float
    revoked: bool = False


class InvariantBroken(AssertionError):
    """One of I1-I5 does not hold; the message names it."""


def served_kids(stack: LocalStack) -> set[str]:
    """The kids in the JWKS as served over HTTP right now."""
    response = requests.get(stack.jwks_url, timeout=5)
    if response.status_code == 404:
        return set()
    response.raise_for_status()
    return {str(key["kid"]) for key in json.loads(response.content)["keys"]}


def keyset_keys(stack: LocalStack) -> dict[str, dict[str, str]]:
    """Every KMS key of the account tagged with the keyset: ARN -> tags (+ KMS state)."""
    found: dict[str, dict[str, str]] = {}
    for page in stack.kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            arn = key["KeyArn"]
            tags = {
                t["TagKey"]: t["TagValue"]
                for t in stack.kms.list_resource_tags(KeyId=arn).get("Tags", [])
            }
            if tags.get(names.TAG_KEYSET) == stack.config.keyset:
                tags["kms:state"] = stack.kms.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"]
                found[arn] = tags
    return found


def check_invariants(
    stack: LocalStack,
    tokens: Iterable[IssuedRecord] = (),
    trusted_kids: Callable[[], set[str]] | None = None,
    *,
    bootstrapped: bool = True,
) -> None:
    """Raise InvariantBroken naming the first of I1-I5 that does not hold now."""
    now = stack.clock.now()
    keys = keyset_keys(stack)
    served = served_kids(stack)
    by_state: dict[str, list[str]] = {}
    for tags in keys.values():
        by_state.setdefault(tags.get(names.TAG_STATE, "?"), []).append(tags.get(names.TAG_KID, "?"))
    # I1: the alias names a key that is served (and trusted).
    alias_kid = None
    try:
        target = stack.kms.describe_key(KeyId=names.current_alias(stack.config.keyset))
        alias_kid = keys.get(target["KeyMetadata"]["Arn"], {}).get(names.TAG_KID)
    except stack.kms.exceptions.NotFoundException:
        if bootstrapped:
            raise InvariantBroken("I1: the signing alias does not exist") from None
    if alias_kid is not None:
        if alias_kid not in served:
            raise InvariantBroken(f"I1: the alias names {alias_kid}, which is not served")
        if trusted_kids is not None and alias_kid not in trusted_kids():
            raise InvariantBroken(
                f"I1: the alias names {alias_kid}, which ServiceNow does not trust"
            )
    # I2: a key leaves the JWKS only after its tokens expired (+ skew), unless revoked.
    skew = stack.config.policy.clock_skew
    for token in tokens:
        if not token.revoked and token.expires_at + skew > now and token.kid not in served:
            raise InvariantBroken(f"I2: {token.kid} left the JWKS while a token it signed lives")
    # I3: exactly one current and at most one next.
    if bootstrapped and len(by_state.get("current", [])) != 1:
        raise InvariantBroken(f"I3: current keys: {by_state.get('current', [])}")
    if len(by_state.get("next", [])) > 1:
        raise InvariantBroken(f"I3: next keys: {by_state.get('next')}")
    # I4: no key untagged, orphaned or undeletable.
    for arn, tags in keys.items():
        for tag in (names.TAG_STATE, names.TAG_NONCE, names.TAG_CREATED_AT, names.TAG_KID):
            if tag not in tags:
                raise InvariantBroken(f"I4: {arn} lacks the {tag} tag")
        from_iso(tags[names.TAG_CREATED_AT])
        state = tags[names.TAG_STATE]
        if state in ("retired", "revoked") and tags["kms:state"] == "Enabled":
            # Allowed only inside the tick that retires it; after a clean tick, never.
            raise InvariantBroken(f"I4: {tags[names.TAG_KID]} is {state} but still enabled")
        if state in ("next", "current", "previous") and tags["kms:state"] != "Enabled":
            raise InvariantBroken(f"I4: {tags[names.TAG_KID]} is {state} but {tags['kms:state']}")
    published = {
        tags[names.TAG_KID]
        for tags in keys.values()
        if tags.get(names.TAG_STATE) in ("next", "current", "previous")
    }
    if served != published:
        raise InvariantBroken(f"I1/I2: served {sorted(served)} != published {sorted(published)}")
    # I5: the records ServiceNow holds for us are exactly the published keys.
    if trusted_kids is not None:
        trusted = trusted_kids()
        if trusted != published:
            raise InvariantBroken(f"I5: trusted {sorted(trusted)} != published {sorted(published)}")


def check_artifacts(
    history: list[dict[str, Any]], tokens: list[dict[str, Any]], skew: int
) -> list[str]:
    """I1: each token's kid was served when it was signed. I2: it stayed served until the
    token expired (+ skew), unless its key was revoked."""
    problems = []

    def served_at(moment: float) -> set[str]:
        current: set[str] = set()
        for entry in history:
            if entry["at"] <= moment:
                current = {key["kid"] for key in entry["jwks"]["keys"]}
        return current

    for token in tokens:
        if token["kid"] not in served_at(token["issued_at"]):
            problems.append(
                f"I1: {token['kid']} signed at {token['issued_at']} before it was served"
            )
        if token["key_revoked"]:
            continue
        for entry in history:
            during = token["issued_at"] <= entry["at"] < token["expires_at"] + skew
            if during and token["kid"] not in {key["kid"] for key in entry["jwks"]["keys"]}:
                problems.append(f"I2: {token['kid']} left the JWKS at {entry['at']}")
    return problems
