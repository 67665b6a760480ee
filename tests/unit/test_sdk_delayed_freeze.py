"""The SDK's mirror of the delayed-order freeze (review 4, R4-2): the account header's
pending count and expiry (contracts/modules/packing.vy, bits 56-103) and the expiry rule
of contracts/modules/delayed.vy `_expired` (commit + max_age, capped by the freeze)."""

from __future__ import annotations

import pytest

from perpdex.constants import ACCOUNT_EXISTS, ACCOUNT_PORTFOLIO
from perpdex.sdk.math import (
    Revert,
    is_frozen,
    pending_count,
    pending_until,
    position_count,
    positions_bitmap,
    with_pending,
    with_position,
)
from perpdex.sdk.math.delayed import DelayedConfig, DelayedOrder
from perpdex.sdk.settlement import MIN_NONCE_SHIFT, min_nonce

NOW = 1_700_000_000


def test_with_pending_sets_only_its_bits():
    hdr = with_position(ACCOUNT_EXISTS | ACCOUNT_PORTFOLIO, 3, True) | (7 << MIN_NONCE_SHIFT)
    frozen = with_pending(hdr, 2, NOW + 300)
    assert (pending_count(frozen), pending_until(frozen)) == (2, NOW + 300)
    assert frozen >> 56 & (2**48 - 1) == 2 | (NOW + 300) << 8  # bits 56-63, then 64-103
    # flags, positions, count and the minimum nonce are untouched
    assert frozen & (2**56 - 1) == hdr & (2**56 - 1)
    assert (positions_bitmap(frozen), position_count(frozen), min_nonce(frozen)) == (8, 1, 7)
    assert with_pending(frozen, 0, 0) == hdr
    with pytest.raises(Revert, match="clearinghouse: value too large"):
        with_pending(hdr, 256, NOW)
    with pytest.raises(Revert, match="clearinghouse: value too large"):
        with_pending(hdr, 1, 2**40)


def test_is_frozen_through_the_last_second_an_order_may_settle():
    hdr = with_pending(ACCOUNT_EXISTS, 1, NOW)
    assert is_frozen(hdr, NOW) and not is_frozen(hdr, NOW + 1)
    assert not is_frozen(ACCOUNT_EXISTS, NOW)  # none pending: until = 0


def test_order_expiry_is_capped_by_the_freeze():
    cfg = DelayedConfig(mode=1, min_delay=30, max_age=3_600, keeper_fee=0)
    order = DelayedOrder(size=1, acceptable_price=2**256 - 1, commit_time=NOW, keeper_fee=0)
    assert order.expires(cfg) == NOW + 3_600
    # committed when max_age was 300 (the header's until), raised to 3,600 since
    assert order.expires(cfg, until=NOW + 300) == NOW + 300
    assert order.expired(cfg, NOW + 301, until=NOW + 300)
    refusal = order.settle_refusal(cfg, NOW + 301, NOW + 100, until=NOW + 300)
    assert refusal == "clearinghouse: delayed order expired"
    assert order.cancel_refusal(cfg, NOW + 301, by_trader=False, until=NOW + 300) is None
