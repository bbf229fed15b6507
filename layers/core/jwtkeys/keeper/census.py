"""The key census: keys tagged into the keyset that the registry does not list.

A tick reads only the keys its registry lists, so a key someone else created and tagged
`jwtkeys:keyset=<ours>` (or one an old bug left behind) is never seen, yet the keeper's
IAM grants follow that tag. Once per `policy.census_interval` on the keeper's clock, the
keeper asks the Resource Groups Tagging API for the KMS keys carrying the keyset's tag:
one paginated call, however many keys the account holds (a ListKeys scan would read the
tags of every key, one call each). Each key it does not know is reported as tampering at
every census until it is gone; it is never adopted, published nor deleted: an operator
decides (docs/runbook.md, state-tampering, `unregistered_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from jwtkeys import names
from jwtkeys.clock import Clock
from jwtkeys.errors import aws_error_code
from jwtkeys.keeper.state_store import Registry
from jwtkeys.keeper.trust_anchor import Tampering
from jwtkeys.keys.key_store import KeyStore

if TYPE_CHECKING:
    from mypy_boto3_resourcegroupstaggingapi import ResourceGroupsTaggingAPIClient

# A keyset has a handful of keys: ten full pages (1,000 keys) means something is flooding
# the tag, and the census says it stopped rather than hold the tick and its lease.
CENSUS_MAX_PAGES = 10
_PAGE_SIZE = 100  # the API's largest page


def census_due(last: float | None, now: float, interval: int) -> bool:
    """Whether a census is due at `now`, the last one having run at `last`.

    A time ahead of the clock is never one the keeper wrote: were it trusted, a forged
    registry could put the next census off forever.
    """
    return last is None or last > now or now >= last + interval


@dataclass(frozen=True)
class CensusResult:
    """What one census found: keys nobody registered, and whether it saw every key."""

    unregistered: list[Tampering] = field(default_factory=list)
    gave_up: str | None = None


class KeyCensus:
    """Finds the keys tagged with the keyset that the registry does not account for."""

    def __init__(
        self,
        tagging: ResourceGroupsTaggingAPIClient,
        key_store: KeyStore,
        clock: Clock,
        interval: int,
    ) -> None:
        self._tagging = tagging
        self._keys = key_store
        self._clock = clock
        self._interval = interval

    def due(self, registry: Registry) -> bool:
        return census_due(registry.census_at, self._clock.now(), self._interval)

    def run(self, registry: Registry) -> CensusResult:
        """The census (whether due or not): the caller records `registry.census_at`."""
        tagged, complete = self._tagged_keys()
        listed = {entry.arn for entry in registry.keys}
        disposed = {str(item.get("arn")) for item in registry.disposed}
        found = []
        for arn, tags in sorted(tagged.items()):
            if arn in listed:
                continue
            if registry.intent_nonce and tags.get(names.TAG_NONCE) == registry.intent_nonce:
                continue  # an unanswered CreateKey's: nonce adoption takes it or disposes of it
            finding = self._judge(arn, arn in disposed)
            if finding is not None:
                found.append(finding)
        gave_up = None
        if not complete:
            gave_up = (
                f"the key census stopped after {CENSUS_MAX_PAGES * _PAGE_SIZE} keys tagged"
                f" {names.TAG_KEYSET}={self._keys.keyset}; keys beyond them were not checked:"
                " list them with the Tag Editor (docs/runbook.md, state-tampering)"
            )
        return CensusResult(found, gave_up)

    def _tagged_keys(self) -> tuple[dict[str, dict[str, str]], bool]:
        """ARN -> tags of the KMS keys the tagging index lists with the keyset's tag."""
        keys: dict[str, dict[str, str]] = {}
        pages = self._tagging.get_paginator("get_resources").paginate(
            ResourceTypeFilters=["kms:key"],
            TagFilters=[{"Key": names.TAG_KEYSET, "Values": [self._keys.keyset]}],
            PaginationConfig={"PageSize": _PAGE_SIZE},
        )
        # Pages are fetched as they are read: stopping early saves the calls.
        for number, page in enumerate(pages, start=1):
            for mapping in page.get("ResourceTagMappingList", []):
                tags = {tag["Key"]: tag["Value"] for tag in mapping.get("Tags", [])}
                keys[mapping["ResourceARN"]] = tags
            if number == CENSUS_MAX_PAGES and page.get("PaginationToken"):
                return keys, False
        return keys, True

    def _judge(self, arn: str, disposed: bool) -> Tampering | None:
        """Tampering unless KMS says the key is gone or on its way out."""
        try:
            state = self._keys.key_state(arn)
        except ClientError as error:
            code = aws_error_code(error)
            if code == "NotFoundException":
                return None  # the tagging index lags behind a deletion
            if code != "AccessDeniedException":
                raise
            state = "unreadable by the keeper"
        if state == "PendingDeletion":
            # It can neither sign nor be used, and KMS deletes it at the window's end; a
            # cancelled deletion brings it back to the next census.
            return None
        where = "listed as disposed of, yet" if disposed else "not in the registry,"
        return Tampering(
            "unregistered_key",
            f"a KMS key tagged {names.TAG_KEYSET}={self._keys.keyset} is {where} KMS state"
            f" {state}: never published nor trusted; find who created it in CloudTrail, then"
            " disable it and schedule its deletion (docs/runbook.md)",
            arn,
        )
