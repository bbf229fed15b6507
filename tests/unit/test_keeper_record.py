"""The keeper's record against what the bucket, the CDN and KMS hold (keeper_record.py)."""

from __future__ import annotations

import pytest

from jwtkeys.keeper.keeper_record import (
    decommission_tampering,
    digest,
    origin_tampering,
    served_tampering,
)
from jwtkeys.keeper.state_store import Registry, RegistryEntry

WRITTEN = b'{"keys":[{"kid":"a"}]}'
EXPECTED = b'{"keys":[{"kid":"a"},{"kid":"b"}]}'
FORGED = b'{"keys":[{"kid":"evil"}]}'
URL = "https://keys.example.com/.well-known/jwks.json"


def _registry(written: bytes | None = WRITTEN) -> Registry:
    return Registry(jwks_sha256=None if written is None else digest(written))


@pytest.mark.parametrize(
    ("origin", "written"),
    [
        (None, None),  # before the first publish
        (FORGED, None),  # a registry from before the record: nothing to compare with
        (WRITTEN, WRITTEN),  # what the keeper last wrote
        (EXPECTED, WRITTEN),  # a publish whose registry save was lost
    ],
)
def test_origins_the_keeper_could_have_written_are_not_tampering(
    origin: bytes | None, written: bytes | None
) -> None:
    assert origin_tampering(origin, _registry(written), EXPECTED) is None


def test_an_origin_the_keeper_never_wrote_is_tampering() -> None:
    finding = origin_tampering(FORGED, _registry(), EXPECTED)
    assert finding is not None
    assert finding.what == "served_jwks"
    assert digest(FORGED) in finding.detail
    assert not finding.repaired  # the action marks it once its rewrite is done


def test_a_deleted_origin_is_tampering() -> None:
    finding = origin_tampering(None, _registry(), EXPECTED)
    assert finding is not None
    assert "gone" in finding.detail


@pytest.mark.parametrize("served", [WRITTEN, EXPECTED])
def test_served_copies_of_the_keeper_are_not_tampering(served: bytes) -> None:
    assert served_tampering(served, _registry(), EXPECTED, URL) is None


def test_a_served_copy_nobody_recorded_is_left_to_drift() -> None:
    assert served_tampering(FORGED, _registry(None), EXPECTED, URL) is None


def test_a_served_copy_the_keeper_never_wrote_is_tampering() -> None:
    finding = served_tampering(FORGED, _registry(), EXPECTED, URL)
    assert finding is not None
    assert URL in finding.detail


def _decommissioned(at: float | None, keys: int) -> Registry:
    entries = [RegistryEntry(arn=f"arn:{n}", kid=str(n), jwk={}) for n in range(keys)]
    return Registry(keys=entries, decommissioned=True, decommissioned_at=at)


def test_a_decommission_kms_agrees_with_is_genuine() -> None:
    assert decommission_tampering(_decommissioned(1.0, 0), None) is None


@pytest.mark.parametrize(
    ("registry", "alias", "says"),
    [
        (_decommissioned(None, 0), None, "record is missing"),
        (_decommissioned(1.0, 0), "arn:key", "signing alias still names arn:key"),
        (_decommissioned(1.0, 2), None, "still lists 2 key(s)"),
    ],
)
def test_a_flag_kms_or_the_record_contradicts_is_tampering(
    registry: Registry, alias: str | None, says: str
) -> None:
    finding = decommission_tampering(registry, alias)
    assert finding is not None
    assert finding.what == "decommissioned"
    assert says in finding.detail
    assert finding.repaired
