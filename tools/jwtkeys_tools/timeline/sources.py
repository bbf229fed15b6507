"""Where a timeline's facts come from: KMS tags via the keeper, CloudWatch, the demo."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jwtkeys import metrics_catalog as catalog
from jwtkeys import names
from jwtkeys.errors import JwtKeysError
from jwtkeys.keeper.lifecycle import KeyLifecycle
from jwtkeys.timestamps import from_iso
from jwtkeys_tools.timeline.model import HOUR, KeyHistory


def history_from_tags(
    tags: Mapping[str, str],
    *,
    trusted_at: float | None = None,
    deletion_scheduled_at: float | None = None,
) -> KeyHistory:
    """A key's history from its jwtkeys tags (KeyError when it has no kid or state)."""

    def moment(tag: str) -> float | None:
        value = tags.get(tag)
        return None if value is None else from_iso(value)

    created = moment(names.TAG_CREATED_AT)
    return KeyHistory(
        kid=tags[names.TAG_KID],
        state=tags[names.TAG_STATE],
        created_at=created if created is not None else 0.0,
        published_at=moment(names.TAG_PUBLISHED_AT),
        activated_at=moment(names.TAG_ACTIVATED_AT),
        deactivated_at=moment(names.TAG_DEACTIVATED_AT),
        retired_at=moment(names.TAG_RETIRED_AT),
        trusted_at=trusted_at,
        deletion_scheduled_at=deletion_scheduled_at,
    )


def kms_tags(kms: Any, arn: str) -> dict[str, str] | None:
    """A key's tags, or None when KMS no longer answers for it (deleted)."""
    from botocore.exceptions import ClientError

    try:
        pages = kms.get_paginator("list_resource_tags").paginate(KeyId=arn)
        return {tag["TagKey"]: tag["TagValue"] for page in pages for tag in page.get("Tags", [])}
    except ClientError:
        return None


def keeper_histories(
    lifecycle: KeyLifecycle, kms: Any, trusted_at: Mapping[str, float] | None = None
) -> list[KeyHistory]:
    """Every key the keeper's registry knows: live keys from their tags, disposed ones too."""
    trusted = trusted_at or {}
    view = lifecycle.load_view()
    histories = [KeyHistory.of(key, trusted_at=trusted.get(key.kid)) for key in view.keys]
    for disposed in view.registry.disposed:
        kid, at = str(disposed["kid"]), float(disposed["at"])
        tags = kms_tags(kms, str(disposed["arn"]))
        if tags and names.TAG_KID in tags and names.TAG_STATE in tags:
            histories.append(
                history_from_tags(tags, trusted_at=trusted.get(kid), deletion_scheduled_at=at)
            )
        else:
            # Deleted already: only the registry's record of the scheduled deletion is left.
            histories.append(
                KeyHistory(kid, str(disposed["state"]), created_at=at, deletion_scheduled_at=at)
            )
    return histories


def cloudwatch_tokens(
    cloudwatch: Any, keyset: str, start: float, end: float
) -> dict[str, dict[int, int]]:
    """kid -> {hour: tokens issued}, from the signer's TokensIssued by kid."""
    spec = catalog.TOKENS_ISSUED_BY_KID
    fixed = [{"Name": "keyset", "Value": keyset}, {"Name": "service", "Value": spec.service}]
    first = int(start // HOUR) * HOUR
    tokens: dict[str, dict[int, int]] = {}
    try:
        listed = cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=spec.namespace, MetricName=spec.name, Dimensions=fixed
        )
        kids = sorted(
            {
                dimension["Value"]
                for page in listed
                for metric in page["Metrics"]
                for dimension in metric["Dimensions"]
                if dimension["Name"] == "kid" and len(metric["Dimensions"]) == len(spec.dimensions)
            }
        )
        # One query per kid, labelled with it (GetMetricData takes up to 500 queries).
        queries = [
            {
                "Id": f"k{index}",
                "Label": kid,
                "MetricStat": {
                    "Metric": {
                        "Namespace": spec.namespace,
                        "MetricName": spec.name,
                        "Dimensions": [*fixed, {"Name": "kid", "Value": kid}],
                    },
                    "Period": HOUR,
                    "Stat": "Sum",
                },
            }
            for index, kid in enumerate(kids[:500])
        ]
        if not queries:
            return tokens
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries,
            StartTime=datetime.fromtimestamp(first, tz=UTC),
            EndTime=datetime.fromtimestamp(end, tz=UTC),
        )
        for page in pages:
            for result in page["MetricDataResults"]:
                counts = tokens.setdefault(str(result["Label"]), {})
                for timestamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                    counts[int(timestamp.timestamp() // HOUR) * HOUR] = int(value)
    except Exception as error:  # botocore's errors, reported as one line by the CLI
        raise JwtKeysError(f"cannot read TokensIssued from CloudWatch: {error}") from None
    return tokens


def demo_timeline_json(path: str) -> str:
    """The timeline the demo left in its artifacts folder (its timeline.json)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        json.loads(text)
    except (OSError, ValueError) as error:
        raise JwtKeysError(f"cannot read the demo's timeline {path}: {error}") from None
    return text
