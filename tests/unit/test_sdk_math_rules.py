"""The rules the package split moved into the mirror from elsewhere, against hand-computed
values (no chain): the auction's critical / cusp / health / lot-value rules (from the
keeper), OracleRouter's source validity, quorum, sequencer flags and EMA, and
set_risk_book's step bounds (from perpdex.risk.governance). Each expected value is worked
out next to it from the Vyper source named in the function's docstring.
"""

from __future__ import annotations

import pytest

from perpdex.constants import FLAG_DEGRADED, FLAG_SEQUENCER_DOWN, FLAG_SEQUENCER_GRACE
from perpdex.sdk import math as pm
from perpdex.sdk.math import governance as gv
from perpdex.sdk.math import oracle_router as orc

W = 10**18


# --- LiquidationAuction.vy ------------------------------------------------------------------


def test_liq_critical__strictly_below_critical_health_times_maintenance():
    # critical_health 0.5: M = 100 -> line at 50
    assert pm.liq_critical(49 * W, 100 * W, W // 2) is True
    assert pm.liq_critical(50 * W, 100 * W, W // 2) is False
    # the line rounds down: 0.5 x 3 wei = 1 wei; equity 1 wei is not below it
    assert pm.liq_critical(1, 3, W // 2) is False
    assert pm.liq_critical(0, 3, W // 2) is True


def test_liq_moved__cusp_is_a_strict_fraction_of_the_old_value():
    cusp = W // 10  # 10%
    assert pm.liq_moved(100, 110, cusp) is False  # 10 x WAD > 0.1 WAD x 100? no (equal)
    assert pm.liq_moved(100, 111, cusp) is True
    assert pm.liq_moved(100, 89, cusp) is True
    assert pm.liq_moved(0, 0, cusp) is False  # no reference value: moved iff now non-zero
    assert pm.liq_moved(0, 1, cusp) is True


def test_liq_healthy_and_lot_value():
    assert pm.liq_healthy(-5, 0) is True  # no requirement left
    assert pm.liq_healthy(10, 10) is True
    assert pm.liq_healthy(9, 10) is False
    assert pm.liq_lot_value(W // 4, 1_000 * W) == 250 * W
    assert pm.liq_lot_value(W, 2**100) == 2**96 - 1  # capped to the 96-bit field


def test_liq_scaled__discount_times_f_rounded_down():
    assert pm.liq_scaled(W // 10, W // 3) == W // 10 * (W // 3) // W == 33_333_333_333_333_333
    # liq_discount is the schedule then this scaling
    p = {"start_discount": W // 100, "max_discount": W // 10, "duration": 600}
    assert pm.liq_discount(300, p, W // 2) == pm.liq_scaled(W // 100 + 9 * W // 100 // 2, W // 2)


# --- OracleRouter.vy ------------------------------------------------------------------------


def src(answer: int | None, updated_at: int = 1_000, max_age: int = 60, decimals: int = 8):
    return orc.SourceAnswer(answer, updated_at, max_age, decimals)


def test_source_price__rejects_in_the_routers_order():
    lo, hi = W, 10**6 * W
    assert orc.source_price(src(None), 1_000, lo, hi) == (orc.REJECT_UNAVAILABLE, 0)
    assert orc.source_price(src(0), 1_000, lo, hi) == (orc.REJECT_NON_POSITIVE, 0)
    assert orc.source_price(src(-1, updated_at=0), 1_000, lo, hi)[0] == orc.REJECT_NON_POSITIVE
    assert orc.source_price(src(5, updated_at=0), 1_000, lo, hi)[0] == orc.REJECT_STALE
    assert orc.source_price(src(5, updated_at=1_001), 1_000, lo, hi)[0] == orc.REJECT_STALE
    assert orc.source_price(src(5 * 10**8, updated_at=940), 1_000, lo, hi) == (0, 5 * W)
    assert orc.source_price(src(5, updated_at=939), 1_000, lo, hi)[0] == orc.REJECT_STALE
    assert orc.source_price(src(10**8 // 2), 1_000, lo, hi)[0] == orc.REJECT_OUT_OF_RANGE
    # 20 decimals: divided by 100, truncating: 123456789 / 100 = 1234567 (WAD units)
    assert orc.source_price(src(123_456_789, decimals=20), 1_000, 1, hi) == (0, 1_234_567)
    # an answer above MAX_PRICE is out of range before it is scaled
    assert orc.source_price(src(2**88, decimals=18), 1_000, 1, 2**96)[0] == orc.REJECT_OUT_OF_RANGE


def test_quorum__pairs_and_median():
    dev = 200  # 2%
    # two within 2% of their mean (100, 102 -> mean 101; 2 x 10_000 <= 200 x 101)
    assert orc.quorum([100 * W, 102 * W], 2, dev) == 101 * W
    assert orc.quorum([100 * W, 103 * W], 2, dev) is None  # 30_000 > 200 x 101.5
    # three within 2% of the median -> the median, whatever the order
    assert orc.quorum([101 * W, 100 * W, 102 * W], 2, dev) == 101 * W
    # one outlier: the agreeing pair's mean
    assert orc.quorum([100 * W, 101 * W, 150 * W], 2, dev) == 100 * W + W // 2
    # both pairs agree but the ends do not (100, 101.9, 103.8): no quorum
    assert orc.quorum([100 * W, 1019 * W // 10, 1038 * W // 10], 2, dev) is None
    assert orc.quorum([100 * W], 2, dev) is None
    assert orc.quorum([100 * W, 100 * W], 3, dev) is None  # fewer than min_fresh


def test_read__degraded_keeps_the_last_price_and_the_sequencer_flags():
    sources = [src(100 * 10**8), src(100 * 10**8), src(None)]
    assert orc.read(sources, 1_000, W, 10**6 * W, 200, 2) == (100 * W, 0)
    one = [src(100 * 10**8), src(0)]
    assert orc.read(one, 1_000, W, 10**6 * W, 200, 2, FLAG_SEQUENCER_GRACE, 7) == (
        7,
        FLAG_SEQUENCER_GRACE | FLAG_DEGRADED,
    )


def test_sequencer_flags():
    assert orc.sequencer_flags(None, 5, 1_000, 60) == FLAG_SEQUENCER_DOWN
    assert orc.sequencer_flags(1, 5, 1_000, 60) == FLAG_SEQUENCER_DOWN
    assert orc.sequencer_flags(0, 0, 1_000, 60) == FLAG_SEQUENCER_DOWN
    assert orc.sequencer_flags(0, 1_001, 1_000, 60) == FLAG_SEQUENCER_GRACE
    assert orc.sequencer_flags(0, 941, 1_000, 60) == FLAG_SEQUENCER_GRACE  # 59 s < 60
    assert orc.sequencer_flags(0, 940, 1_000, 60) == 0


def test_ema__truncates_toward_zero_both_ways():
    # 100 -> 200 over a third of the window: 100 + 100 / 3 = 133
    assert orc.ema(200, 100, 20, 60) == 133
    # 200 -> 100: 200 - 100 / 3 = 167 (toward zero, not floor's 166)
    assert orc.ema(100, 200, 20, 60) == 167
    assert orc.ema(100, 200, 10_000, 60) == 100  # dt capped at the window


# --- governance.vy: set_risk_book's step bounds ---------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "ok"), [(100, 150, True), (150, 100, True), (100, 151, False), (151, 100, False)]
)
def test_check_step(old, new, ok):
    assert gv.check_step(old, new, 50) is ok


def test_scale_step__at_most_halves_or_doubles():
    assert gv.scale_step_ok(100, 200) and gv.scale_step_ok(100, 50)
    assert not gv.scale_step_ok(100, 201) and not gv.scale_step_ok(100, 49)
