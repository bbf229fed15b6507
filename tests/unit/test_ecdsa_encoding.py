"""DER -> raw R||S conversion for JWS ECDSA signatures (property-tested)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from jwtkeys.keys.kms_signer import der_to_raw_ecdsa

CURVES = {32: ec.SECP256R1(), 48: ec.SECP384R1(), 66: ec.SECP521R1()}
ORDERS = {
    32: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    48: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    66: int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
        "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def test_the_curve_orders_are_the_curves_sizes() -> None:
    assert {size: order.bit_length() for size, order in ORDERS.items()} == {
        32: 256,
        48: 384,
        66: 521,
    }


@given(data=st.data(), size=st.sampled_from(sorted(ORDERS)))
@settings(max_examples=300)
def test_raw_is_fixed_width_and_round_trips(data: st.DataObject, size: int) -> None:
    # Small values exercise the left-padding: r or s with many leading zero bytes.
    bits = data.draw(st.integers(min_value=1, max_value=ORDERS[size].bit_length()))
    r = data.draw(st.integers(min_value=1, max_value=min(ORDERS[size] - 1, 2**bits)))
    s = data.draw(st.integers(min_value=1, max_value=ORDERS[size] - 1))
    raw = der_to_raw_ecdsa(encode_dss_signature(r, s), size)
    assert len(raw) == 2 * size
    assert int.from_bytes(raw[:size], "big") == r
    assert int.from_bytes(raw[size:], "big") == s


@pytest.mark.parametrize("size", sorted(CURVES))
def test_real_signatures_with_leading_zero_bytes_convert(size: int) -> None:
    # Sign enough messages that some r or s has a leading zero byte (p ~ 1/128 each).
    key = ec.generate_private_key(CURVES[size])
    seen_short = False
    for index in range(600):
        der = key.sign(b"message %d" % index, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = der_to_raw_ecdsa(der, size)
        assert len(raw) == 2 * size
        assert raw == r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if raw[0] == 0 or raw[size] == 0:
            seen_short = True
            if size != 66:
                break
    # P-521's top byte is 0 or 1 almost always (521 bits in 66 bytes), so it always pads.
    assert seen_short
