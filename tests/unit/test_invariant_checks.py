"""check_invariants' judgement (check_observed) refuses each broken invariant, naming it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jwtkeys import names
from jwtkeys_tools.local.invariants import (
    InvariantBroken,
    IssuedRecord,
    Observed,
    check_observed,
)

NOW = 1_800_000_000.0


def tags(kid: str, state: str, kms_state: str = "Enabled") -> dict[str, str]:
    return {
        names.TAG_KEYSET: "test",
        names.TAG_KID: kid,
        names.TAG_STATE: state,
        names.TAG_NONCE: f"nonce-{kid}",
        names.TAG_CREATED_AT: "2027-01-15T08:00:00Z",
        "kms:state": kms_state,
    }


# A sound keyset mid-rotation: current, standby, previous, and one retired key.
SOUND = Observed(
    now=NOW,
    skew=300,
    keys={
        "arn:cur": tags("cur", "current"),
        "arn:next": tags("next", "next"),
        "arn:prev": tags("prev", "previous"),
        "arn:old": tags("old", "retired", "PendingDeletion"),
    },
    served={"cur", "next", "prev"},
    alias_target="arn:cur",
    trusted={"cur", "next", "prev"},
)
LIVE_TOKEN = IssuedRecord(kid="prev", issued_at=NOW - 600, expires_at=NOW + 300)


def with_key(observed: Observed, arn: str, key_tags: dict[str, str]) -> Observed:
    return replace(observed, keys={**observed.keys, arn: key_tags})


def test_a_sound_deployment_passes() -> None:
    check_observed(SOUND, [LIVE_TOKEN])
    # Before bootstrap, no alias and no current key are fine
    check_observed(
        replace(
            SOUND,
            alias_target=None,
            keys={"arn:next": tags("next", "next")},
            served={"next"},
            trusted={"next"},
        ),
        bootstrapped=False,
    )


BROKEN = {
    "I1 alias missing": (replace(SOUND, alias_target=None), "I1: the signing alias does not exist"),
    "I1 alias on a foreign key": (
        replace(SOUND, alias_target="arn:other"),
        "I1: .*not a keyset key",
    ),
    "I1 signing key not served": (
        replace(SOUND, served={"next", "prev"}),
        "I1: the alias names cur, which is not served",
    ),
    "I1 signing key not trusted": (
        replace(SOUND, trusted={"next", "prev"}),
        "I1: the alias names cur, which ServiceNow does not trust",
    ),
    "I2 key left while its token lives": (
        replace(SOUND, served={"cur", "next"}),
        "I2: prev left the JWKS while a token it signed lives",
    ),
    "I3 two current keys": (
        with_key(SOUND, "arn:cur2", tags("cur2", "current")),
        "I3: current keys",
    ),
    "I3 no current key": (
        replace(
            SOUND,
            keys={k: v for k, v in SOUND.keys.items() if k != "arn:cur"},
            alias_target="arn:next",
        ),
        "I3: current keys: \\[\\]",
    ),
    "I3 two next keys": (with_key(SOUND, "arn:next2", tags("next2", "next")), "I3: next keys"),
    "I4 untagged key": (
        with_key(SOUND, "arn:bare", {names.TAG_KEYSET: "test", "kms:state": "Enabled"}),
        "I4: arn:bare lacks the jwtkeys:state tag",
    ),
    "I4 retired key still enabled": (
        with_key(SOUND, "arn:old", tags("old", "retired", "Enabled")),
        "I4: old is retired but still enabled",
    ),
    "I4 published key disabled": (
        with_key(SOUND, "arn:next", tags("next", "next", "Disabled")),
        "I4: next is next but Disabled",
    ),
    "revoked key still served": (
        replace(
            with_key(SOUND, "arn:bad", tags("bad", "revoked", "Disabled")),
            served={"cur", "next", "prev", "bad"},
        ),
        "I1/I2: served .*'bad'.* != published",
    ),
    "retired key still served": (
        replace(SOUND, served={"cur", "next", "prev", "old"}),
        "I1/I2: served",
    ),
    "I5 ServiceNow trusts a retired key": (
        replace(SOUND, trusted={"cur", "next", "prev", "old"}),
        "I5: trusted .* != published",
    ),
    "I5 ServiceNow lacks the standby key": (
        replace(SOUND, trusted={"cur", "prev"}),
        "I5: trusted",
    ),
}


@pytest.mark.parametrize(("observed", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_invariant_is_refused(observed: Observed, message: str) -> None:
    with pytest.raises(InvariantBroken, match=message):
        check_observed(observed, [LIVE_TOKEN])


def test_a_revoked_keys_token_does_not_keep_it_served() -> None:
    # Revocation pulls a key at once: its live tokens do not break I2
    revoked = IssuedRecord(kid="bad", issued_at=NOW - 60, expires_at=NOW + 600, revoked=True)
    check_observed(with_key(SOUND, "arn:bad", tags("bad", "revoked", "Disabled")), [revoked])


def test_an_expired_token_no_longer_holds_its_key() -> None:
    # Expired 300 s ago: with 300 s of skew, its key may go
    expired = IssuedRecord(kid="gone", issued_at=NOW - 1200, expires_at=NOW - 300)
    check_observed(SOUND, [expired])
    with pytest.raises(InvariantBroken, match="I2: gone"):
        check_observed(SOUND, [replace(expired, expires_at=NOW - 299)])
