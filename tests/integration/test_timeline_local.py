"""The key timeline from a real local deployment: rotation, retirement and a revocation."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jwtkeys import metrics_catalog as catalog
from jwtkeys.clock import SimulatedClock
from jwtkeys_tools.cli import main
from jwtkeys_tools.local.aws_endpoint import LocalAws
from jwtkeys_tools.local.stack import LocalStack
from jwtkeys_tools.timeline.model import HOUR, build_timeline, tokens_per_hour
from jwtkeys_tools.timeline.sources import cloudwatch_tokens, keeper_histories
from jwtkeys_tools.timeline.svg import STATE_COLOURS, write_svg

from ..stack_fixtures import FAST_POLICY

SVG = "{http://www.w3.org/2000/svg}"


def test_a_rotation_a_retirement_and_a_revocation_drawn_from_the_registry(
    stack: LocalStack, clock: SimulatedClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keeper = stack.keeper_service()
    started = clock.now()
    first = keeper.handle({"action": "tick"})
    issued: list[tuple[str, float]] = []
    for _ in range(2 * FAST_POLICY.rotation_period // 1800):
        clock.advance(1800)
        keeper.handle({"action": "tick"})
        signed = stack.sign_service().handle({"subject": "svc-orders", "audience": "client-test"})
        issued.append((str(signed["kid"]), clock.now()))
    current = keeper.handle({"action": "tick"})["current_kid"]
    clock.advance(600)
    revoked = keeper.handle({"action": "revoke", "kid": current})
    assert revoked["revoked"] == [current]
    clock.advance(600)

    histories = keeper_histories(keeper.keeper, stack.kms)
    timeline = build_timeline(
        "test", histories, start=started, end=clock.now(), tokens=tokens_per_hour(issued)
    )
    tracks = {key.kid: key for key in timeline.keys}
    bootstrap = tracks[first["current_kid"]]
    assert [s.state for s in bootstrap.segments] == ["current", "previous", "retired"]
    assert {m.kind for m in bootstrap.markers} >= {"published", "promoted", "retired"}
    assert {"deletion_scheduled"} <= {m.kind for m in bootstrap.markers}
    assert [s.state for s in tracks[current].segments][-2:] == ["current", "revoked"]
    assert "revoked" in {m.kind for m in tracks[current].markers}
    assert sum(sum(key.tokens_per_hour.values()) for key in timeline.keys) == len(issued)

    svg = tmp_path / "timeline.svg"
    write_svg(timeline, svg)
    root = ET.parse(svg).getroot()  # noqa: S314 - our own file
    ids = {g.attrib["id"]: g for g in root.iter(f"{SVG}g") if "id" in g.attrib}
    for key in timeline.keys:
        for index, segment in enumerate(key.segments):
            path = next(iter(ids[f"bar-{segment.state}-{key.kid}-{index}"].iter(f"{SVG}path")))
            assert f"fill: {STATE_COLOURS[segment.state]}" in path.attrib["style"]
        for marker in key.markers:
            assert f"marker-{marker.kind}-{key.kid}" in ids

    # The CLI draws the same from a demo-style artifacts folder.
    (tmp_path / "timeline.json").write_text(timeline.to_json())
    out = tmp_path / "cli.svg"
    assert main(["status", "--timeline", "--from-demo", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for key in timeline.keys:
        assert key.kid[:10] in printed
    assert out.read_bytes() == svg.read_bytes()
    assert main(["status", "--timeline", "--since", "soon", "--from-demo", str(tmp_path)]) == 2


def test_tokens_per_hour_come_from_tokens_issued_by_kid(local_aws: LocalAws) -> None:
    cloudwatch = local_aws.client("cloudwatch")
    now = time.time()
    hour = int(now // HOUR) * HOUR
    base = [
        {"Name": "keyset", "Value": "orders"},
        {"Name": "service", "Value": catalog.SIGNER_SERVICE},
    ]
    for kid, at, count in (
        ("kid-a", hour - HOUR + 10, 3),
        ("kid-a", hour + 5, 2),
        ("kid-b", hour, 4),
    ):
        cloudwatch.put_metric_data(
            Namespace=catalog.TOKENS_ISSUED_BY_KID.namespace,
            MetricData=[
                {
                    "MetricName": catalog.TOKENS_ISSUED_BY_KID.name,
                    "Dimensions": [*base, {"Name": "kid", "Value": kid}],
                    "Timestamp": datetime.fromtimestamp(at, tz=UTC),
                    "Value": count,
                    "Unit": "Count",
                }
            ],
        )
    # The keyset-wide series (no kid) and another keyset's are not a key's tokens.
    for dimensions in (base, [{"Name": "keyset", "Value": "other"}, *base[1:]]):
        cloudwatch.put_metric_data(
            Namespace=catalog.TOKENS_ISSUED.namespace,
            MetricData=[{"MetricName": "TokensIssued", "Dimensions": dimensions, "Value": 9}],
        )

    tokens = cloudwatch_tokens(cloudwatch, "orders", now - 2 * HOUR, now + 60)

    assert tokens == {"kid-a": {hour - HOUR: 3, hour: 2}, "kid-b": {hour: 4}}
