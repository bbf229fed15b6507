"""Checks of the lifecycle invariants I1-I5 (docs/design.md) against a local deployment.

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


PUBLISHED_STATES = ("next", "current", "previous")


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


@dataclass(frozen=True)
class Observed:
    """What a deployment looks like at one moment: enough to judge I1-I5."""

    now: float
    skew: int
    keys: dict[str, dict[str, str]]  # every KMS key tagged with the keyset: ARN -> tags
    served: set[str]  # kids in the JWKS as served
    alias_target: str | None  # the ARN the signing alias names; None: no alias
    trusted: set[str] | None  # kids the verifier (ServiceNow) trusts; None: no verifier

    def kids_in(self, *states: str) -> list[str]:
        return [
            tags.get(names.TAG_KID, "?")
            for tags in self.keys.values()
            if tags.get(names.TAG_STATE) in states
        ]


def observe(stack: LocalStack, trusted_kids: Callable[[], set[str]] | None = None) -> Observed:
    """Read the deployment: KMS keys and tags, the alias, the served JWKS, the verifier."""
    try:
        target = stack.kms.describe_key(KeyId=names.current_alias(stack.config.keyset))
        alias_target: str | None = target["KeyMetadata"]["Arn"]
    except stack.kms.exceptions.NotFoundException:
        alias_target = None
    return Observed(
        now=stack.clock.now(),
        skew=stack.config.policy.clock_skew,
        keys=keyset_keys(stack),
        served=served_kids(stack),
        alias_target=alias_target,
        trusted=None if trusted_kids is None else trusted_kids(),
    )


def check_invariants(
    stack: LocalStack,
    tokens: Iterable[IssuedRecord] = (),
    trusted_kids: Callable[[], set[str]] | None = None,
    *,
    bootstrapped: bool = True,
) -> None:
    """Raise InvariantBroken naming the first of I1-I5 that does not hold now."""
    check_observed(observe(stack, trusted_kids), tokens, bootstrapped=bootstrapped)


def check_observed(
    observed: Observed, tokens: Iterable[IssuedRecord] = (), *, bootstrapped: bool = True
) -> None:
    """Raise InvariantBroken naming the first of I1-I5 that `observed` breaks."""
    _check_signing_key(observed, bootstrapped)
    _check_tokens_keys_served(observed, tokens)
    _check_one_current(observed, bootstrapped)
    _check_keys_accounted(observed)
    _check_served_is_published(observed)
    _check_trusted_is_published(observed)


def _check_signing_key(observed: Observed, bootstrapped: bool) -> None:
    # I1: the alias names a key of the keyset that is served (and trusted).
    if observed.alias_target is None:
        if bootstrapped:
            raise InvariantBroken("I1: the signing alias does not exist")
        return
    tags = observed.keys.get(observed.alias_target)
    if tags is None:
        raise InvariantBroken(f"I1: the alias names {observed.alias_target}, not a keyset key")
    alias_kid = tags.get(names.TAG_KID)
    if alias_kid not in observed.served:
        raise InvariantBroken(f"I1: the alias names {alias_kid}, which is not served")
    if observed.trusted is not None and alias_kid not in observed.trusted:
        raise InvariantBroken(f"I1: the alias names {alias_kid}, which ServiceNow does not trust")


def _check_tokens_keys_served(observed: Observed, tokens: Iterable[IssuedRecord]) -> None:
    # I2: a key leaves the JWKS only after its tokens expired (+ skew), unless revoked.
    for token in tokens:
        alive = token.expires_at + observed.skew > observed.now
        if not token.revoked and alive and token.kid not in observed.served:
            raise InvariantBroken(f"I2: {token.kid} left the JWKS while a token it signed lives")


def _check_one_current(observed: Observed, bootstrapped: bool) -> None:
    # I3: exactly one current and at most one next.
    current, standby = observed.kids_in("current"), observed.kids_in("next")
    if bootstrapped and len(current) != 1:
        raise InvariantBroken(f"I3: current keys: {current}")
    if len(standby) > 1:
        raise InvariantBroken(f"I3: next keys: {standby}")


def _check_keys_accounted(observed: Observed) -> None:
    # I4: no key untagged, orphaned or undeletable.
    for arn, tags in observed.keys.items():
        for tag in (names.TAG_STATE, names.TAG_NONCE, names.TAG_CREATED_AT, names.TAG_KID):
            if tag not in tags:
                raise InvariantBroken(f"I4: {arn} lacks the {tag} tag")
        from_iso(tags[names.TAG_CREATED_AT])
        state, kms_state = tags[names.TAG_STATE], tags["kms:state"]
        if state in ("retired", "revoked") and kms_state == "Enabled":
            # Allowed only inside the tick that retires it; after a clean tick, never.
            raise InvariantBroken(f"I4: {tags[names.TAG_KID]} is {state} but still enabled")
        if state in PUBLISHED_STATES and kms_state != "Enabled":
            raise InvariantBroken(f"I4: {tags[names.TAG_KID]} is {state} but {kms_state}")


def _check_served_is_published(observed: Observed) -> None:
    # I1/I2 seen from the JWKS: it serves exactly the keys in a published state.
    published = set(observed.kids_in(*PUBLISHED_STATES))
    if observed.served != published:
        raise InvariantBroken(
            f"I1/I2: served {sorted(observed.served)} != published {sorted(published)}"
        )


def _check_trusted_is_published(observed: Observed) -> None:
    # I5: the records ServiceNow holds for us are exactly the published keys.
    if observed.trusted is None:
        return
    published = set(observed.kids_in(*PUBLISHED_STATES))
    if observed.trusted != published:
        raise InvariantBroken(
            f"I5: trusted {sorted(observed.trusted)} != published {sorted(published)}"
        )


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
