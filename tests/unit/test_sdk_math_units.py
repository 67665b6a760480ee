"""perpdex/sdk/math.py's pure functions against hand-computed values (no chain).

Each expected value is worked out in the comment next to it from the Vyper source the
function mirrors; tests/integration/test_sdk_math.py proves the same functions equal the
deployed contracts on random books.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.snapshot import CollateralInfo, MarketState, Snapshot

W = 10**18  # WAD
DAY = 86_400
I256 = st.integers(-(2**200), 2**200)


# --- Vyper arithmetic ------------------------------------------------------------------------


def test_vdiv_vmod__truncate_toward_zero_and_keep_the_dividends_sign():
    assert pm.vdiv(7, 2) == 3
    assert pm.vdiv(-7, 2) == -3  # Python's -7 // 2 is -4
    assert pm.vdiv(7, -2) == -3
    assert pm.vdiv(-7, -2) == 3
    assert pm.vmod(-7, 2) == -1  # Python's -7 % 2 is 1
    assert pm.vmod(7, -2) == 1
    with pytest.raises(pm.Revert):
        pm.vdiv(1, 0)


def test_div_floor_and_div_ceil():
    assert (pm.div_floor(7, 2), pm.div_floor(-7, 2), pm.div_floor(-6, 2)) == (3, -4, -3)
    assert (pm.div_ceil(7, 2), pm.div_ceil(-7, 2), pm.div_ceil(-6, 2)) == (4, -3, -3)


@given(x=I256, d=st.integers(1, 2**128))
def test_div_floor_and_div_ceil__equal_exact_floor_and_ceil(x, d):
    q = Fraction(x, d)
    assert pm.div_floor(x, d) == q.__floor__()
    assert pm.div_ceil(x, d) == q.__ceil__()
    assert pm.vdiv(x, d) == int(q)  # int() truncates toward zero


def test_mul_div__512_bit_intermediate_and_rounding():
    assert pm.mul_div(2**255, 4, 8, False) == 2**254  # x * y = 2**257 overflows 256 bits
    assert (pm.mul_div(10, 3, 4, False), pm.mul_div(10, 3, 4, True)) == (7, 8)
    assert pm.mul_div(12, 3, 4, True) == 9  # exact: no round-up
    with pytest.raises(pm.Revert, match="overflow"):
        pm.mul_div(2**256 - 1, 2**256 - 1, 1, False)
    with pytest.raises(pm.Revert, match="division by zero"):
        pm.mul_div(1, 1, 0, False)


def test_smul_div__rounds_toward_the_requested_infinity():
    # -10 * 3 / 4 = -7.5
    assert pm.smul_div(-10, 3, 4, True) == -7
    assert pm.smul_div(-10, 3, 4, False) == -8
    assert pm.smul_div(10, 3, 4, True) == 8
    assert pm.smul_div(10, 3, 4, False) == 7


# --- packing ---------------------------------------------------------------------------------


def test_mark_word__round_trip_and_rate_truncated_toward_zero():
    w = pm.pack_mark(123 * W, 1_700_000_000, -5, -1_500)
    assert pm.unpack_mark(w) == pm.Mark(123 * W, 1_700_000_000, -5, -1_000)  # -1.5 fm -> -1
    assert pm.mark_rate(pm.pack_mark(1, 1, 0, 2_999)) == 2_000
    assert pm.mark_index(pm.pack_mark(1, 1, -(2**71 - 1), 0)) == -(2**71 - 1)
    with pytest.raises(pm.Revert, match="price too large"):
        pm.pack_mark(2**88, 0, 0, 0)
    with pytest.raises(pm.Revert, match="funding index too large"):
        pm.pack_mark(1, 0, 2**71, 0)


def test_position_word__signed_fields():
    w = pm.pack_pos(-3 * W, 250 * W, -7)
    assert (pm.pos_size(w), pm.pos_cost(w), pm.pos_snapshot(w)) == (-3 * W, 250 * W, 2**64 - 7)
    with pytest.raises(pm.Revert, match="position too large"):
        pm.pack_pos(2**95, 0, 0)


def test_funding_delta__wraps_around_the_64_bit_snapshot():
    # snapshot taken at index 2**64 - 2 keeps only its low 64 bits; the index has since
    # crossed 2**64: the wrapped difference is still the true 5
    w = pm.pack_pos(W, 0, 2**64 - 2)
    assert pm.pos_funding_delta(w, 2**64 + 3) == 5
    # negative indexes: snapshot at 2, index now -3 -> -5; snapshot at -1, index 1 -> 2
    assert pm.pos_funding_delta(pm.pack_pos(W, 0, 2), -3) == -5
    assert pm.pos_funding_delta(pm.pack_pos(W, 0, -1), 1) == 2
    # the view-level snapshot (`position()[2]`) gives the same difference
    assert pm.funding_delta(2**64 - 2, 2**64 + 3) == 5
    # a difference of 2**63 or more is ambiguous and reads as negative (documented bound)
    assert pm.funding_delta(0, 2**63) == -(2**63)


def test_params_word__round_trip():
    p = pm.MarketParams(
        10_000 * W, 2 * 10**14, 5 * 10**14, W, 10**16, True, True, 1_000 * W, W // 2
    )
    w = pm.pack_params(p)
    assert pm.unpack_params(w) == p
    # skew scale 10,000 whole units in the low 48 bits, maker 2 bp = 20,000 x 1e-8 next
    assert (w & (2**48 - 1), (w >> 48) & (2**24 - 1)) == (10_000, 20_000)
    with pytest.raises(pm.Revert, match="off its grid"):
        pm.pack_params(pm.MarketParams(W, 10**9, 10**10, 0, 0, True, False, W, 0))
    with pytest.raises(pm.Revert, match="too large"):
        pm.pack_params(pm.MarketParams(2**48 * W, 0, 0, 0, 0, True, False, W, 0))


def test_pool_word__cash_and_pending_fees():
    w = pm.pack_pool(-5 * W, 7)
    assert pm.unpack_pool(w) == (-5 * W, 7)


def test_header_and_system_words():
    h = pm.ACCOUNT_EXISTS | pm.ACCOUNT_PORTFOLIO
    h = pm.with_position(pm.with_position(h, 0, True), 5, True)
    assert (pm.positions_bitmap(h), pm.position_count(h)) == (0b100001, 2)
    h = pm.with_position(h, 0, False)
    assert (pm.positions_bitmap(h), pm.position_count(h)) == (0b100000, 1)
    s = pm.System(0xABC, 12, 200, 5_000, 1_000, 1_000, 60)
    assert pm.unpack_system(pm.pack_system(s)) == s
    # a sweep of 1,001 wei of fees: 10% to each of insurance and protocol, rounded down,
    # the vault keeps the dust
    assert pm.fee_split(1_001, s) == (100, 100, 801)


# --- pricing ---------------------------------------------------------------------------------


def test_fill_price__premium_is_the_mean_over_the_fill():
    # P = 100, K = 0, d = +1, S = 1000: 100 * (1 + 1 / 2000) = 100.05
    assert pm.fill_price(100 * W, 0, W, 1_000 * W) == 100_050_000_000_000_000_000
    # selling 1 into K = +10: 100 * (1 + 19 / 2000) = 100.95 (still above the oracle)
    assert pm.fill_price(100 * W, 10 * W, -W, 1_000 * W) == 100_950_000_000_000_000_000


def test_fill_price__rounds_against_the_trader():
    # P = 3 wei, S = 1 wei: a buy of 1 wei pays 3 + ceil(3/2) = 5, a sell gets 3 - 2 = 1
    assert pm.fill_price(3, 0, 1, 1) == 5
    assert pm.fill_price(3, 0, -1, 1) == 1
    with pytest.raises(pm.Revert, match="price impact too large"):
        pm.fill_price(100, 0, -3 * W, W)  # 100 * (1 - 3/2) < 0


def test_fee__maker_on_the_skew_reducing_part_taker_on_the_rest():
    # sell 8 into K = +5 at 100: 5 maker at 2 bp (0.10) + 3 taker at 5 bp (0.15) = 0.25 USD
    assert pm.maker_size(5 * W, -8 * W) == 5 * W
    assert pm.fee(100 * W, 5 * W, -8 * W, 2 * 10**14, 5 * 10**14) == W // 4
    # same-side fills are all taker
    assert pm.maker_size(5 * W, 8 * W) == 0
    # 1 wei at 3 wei with a 1-wei fee rounds up to 1
    assert pm.fee(3, 0, 1, 0, 1) == 1


# --- positions -------------------------------------------------------------------------------


def test_apply_fill__open_and_increase_round_cost_up():
    assert pm.apply_fill(0, 0, 2 * W, 100_500_000_000_000_000_000) == (2 * W, 201 * W, 0)
    # a short's cost is negative; ceil(-1 wei * 1.5) = -1
    assert pm.apply_fill(0, 0, -1, 3 * W // 2) == (-1, -1, 0)
    assert pm.apply_fill(2 * W, 201 * W, W, 99 * W) == (3 * W, 300 * W, 0)


def test_apply_fill__partial_reduce():
    # long 3 wei, cost 10: close 1 at 5 -> closed = ceil(10/3) = 4, realised = 5 - 4
    assert pm.apply_fill(3, 10, -1, 5 * W) == (2, 6, 1)
    # short 3 wei, cost -10: buy back 1 at 2 -> closed = ceil(-10/3) = -3,
    # realised = floor(-1 * 2) - (-3) = 1
    assert pm.apply_fill(-3, -10, 1, 2 * W) == (-2, -7, 1)


def test_apply_fill__close():
    # long 2 with cost 201 sold at 99: realised 198 - 201 = -3, nothing left
    assert pm.apply_fill(2 * W, 201 * W, -2 * W, 99 * W) == (0, 0, -3 * W)


def test_apply_fill__flip():
    # long 2 (cost 201) sells 5 at 99: realise the long (198 - 201), open short 3 at 99
    assert pm.apply_fill(2 * W, 201 * W, -5 * W, 99 * W) == (-3 * W, -297 * W, -3 * W)
    # 1 wei long (cost 1) sells 2 wei at 1.5: realised floor(1.5) - 1 = 0,
    # new cost ceil(-1.5) = -1
    assert pm.apply_fill(1, 1, -2, 3 * W // 2) == (-1, -1, 0)


def test_funding_owed_and_value_pnl__round_against_the_trader():
    assert pm.funding_owed(2 * W, 5 * 10**12) == 10 * W  # 2 units x 5 USD per unit
    assert pm.funding_owed(3, 1) == 1  # owes: 3e-12 wei rounds up to 1
    assert pm.funding_owed(-3, 1) == 0  # earns: -3e-12 rounds up to 0
    assert pm.funding_owed(5, 0) == 0
    assert pm.value_pnl(-3, 0, W // 2) == -2  # floor(-1.5)
    assert pm.value_pnl(3, 1, W // 2) == 0  # floor(1.5) - 1


# --- funding ---------------------------------------------------------------------------------


def test_accrue__linear_drift():
    # K/S = 0.1, max velocity 1/day^2 -> 0.1/day^2; over a day the rate goes 0 -> 0.1 and
    # the index by mean rate 0.05 x 100 USD = 5 USD = 5e12 pico-USD
    assert pm.accrue(0, DAY, 100 * W, 1_000 * W, W, W, 100 * W) == (W // 10, 5 * 10**12)


def test_accrue__clamped_interval():
    # the rate hits the 0.05 cap after half a day: 0.025 x 0.5 + 0.05 x 0.5 = 0.0375/day
    # of 100 USD = 3.75 USD
    assert pm.accrue(0, DAY, 100 * W, 1_000 * W, W, W // 20, 100 * W) == (
        W // 20,
        3_750_000_000_000,
    )
    # mirrored below -cap
    assert pm.accrue(0, DAY, -100 * W, 1_000 * W, W, W // 20, 100 * W) == (
        -W // 20,
        -3_750_000_000_000,
    )
    # already at the cap: the whole interval at the cap
    assert pm.accrue(W // 20, DAY, 100 * W, 1_000 * W, W, W // 20, 100 * W) == (
        W // 20,
        5 * 10**12,
    )


def test_accrue__clamps_a_rate_above_a_lowered_cap_even_without_time():
    assert pm.accrue(W // 5, 0, 0, W, W, W // 10, 100 * W) == (W // 10, 0)


def test_accrue__truncates_toward_zero():
    # rate -1e-18/day over 1 s at 100 USD: area -1, index -1e20 / 8.64e28 -> 0 (a floor
    # would give -1)
    assert pm.accrue(-1, 1, 0, W, W, W, 100 * W) == (-1, 0)
    # velocity: K/S = -1e-18 -> prop -1, velocity trunc(-1 * 1e18 / 1e18) = -1 /day^2,
    # over 1 s trunc(-1 / 86400) = 0: the rate does not move
    assert pm.accrue(0, 1, -1, W, W, W, 100 * W)[0] == 0


def test_touch__accrues_only_after_the_last_touch_and_stores_the_rate_on_its_grid():
    p = pm.MarketParams(1_000 * W, 0, 0, W, W, True, False, W, W)
    fresh = pm.Mark(100 * W, 0, 7, 1_234)
    # never touched: no accrual, the stored rate is truncated to the 1e-15 grid
    assert pm.touch(fresh, p, 100 * W, 110 * W, 50) == pm.Mark(110 * W, 50, 7, 1_000)
    m = pm.Mark(100 * W, 1_000, 0, 0)
    assert pm.touch(m, p, 100 * W, 100 * W, 1_000) == pm.Mark(100 * W, 1_000, 0, 0)
    assert pm.touch(m, p, 100 * W, 100 * W, 1_000 + DAY) == pm.Mark(
        100 * W, 1_000 + DAY, 5 * 10**12, W // 10
    )


# --- margin ----------------------------------------------------------------------------------

W0_BTC = 1_000 | (1_000 << 16) | ((1_000 * W) << 32)  # imr 10%, slope 10%, scale 1000


def test_isolated_requirement():
    # 1 BTC at 100,000: 10% = 10,000 plus 10% x 1/1000 = 10 USD of size add-on
    assert pm.isolated_requirement(100_000 * W * W, W, W0_BTC) == (10_010 * W, 10 * W)
    # both parts round up; the imr_min part once, from the unscaled |size| x price
    assert pm.isolated_requirement(1, 1, W0_BTC) == (2, 1)
    # imr_min 15%, 6.5 wei of notional: 0.975 -> 1 wei (rounding the notional to 7 first
    # would charge 1.05 -> 2): the same single rounding as a -15% scenario loss
    w0_sol = 1_500 | (1_000 << 16) | ((500_000 * W) << 32)
    base, slope = pm.isolated_requirement(6 * W + W // 2, 1, w0_sol)
    assert (base - slope, slope) == (1, 1)


def test_combine():
    assert pm.combine(500, 10**30, 10**40, 7, 200, False) == 500  # isolated mode
    worst = 123 * W * pm.BPS + 1  # just above 123 wei of loss -> 124
    assert pm.combine(10**30, worst, 10**22, 7, 200, True) == max(124, 200) + 7
    assert pm.combine(10**30, worst, 10**20, 7, 200, True) == 124 + 7
    assert pm.combine(100, worst, 10**20, 7, 200, True) == 100  # never above isolated
    assert pm.combine(10**30, -5, 0, 0, 200, True) == 0


def test_health():
    assert pm.health(5, 0) == pm.NO_RISK_HEALTH
    assert pm.health(-5, 10) == 0
    assert pm.health(0, 10) == 0
    assert pm.health(15, 10) == 3 * W // 2
    assert pm.health(1, 3) == W // 3  # rounded down


def test_book__words_shocks_and_decode():
    rb = riskbook.RiskBook(
        floor_bps=200,
        maintenance_bps=5_000,
        markets=(riskbook.MarketRisk(1_000, 1_000, 1_000 * W),),
        names=("down", "up"),
        shocks=((-1_500,), (2_000,)),
    )
    book = pm.Book.from_riskbook(rb)
    assert book.header == pm.BookHeader(1, 2, 200, 5_000)
    w0, w1 = book.market_words(0)
    assert w0 == W0_BTC
    assert (pm.shock(w1, 0), pm.shock(w1, 1)) == (-1_500, 2_000)
    assert book.decode() == rb
    assert pm.Book.from_code(b"\x00" + book.data) == book
    # reading past the end of the code reverts (Vyper's bounds-checked slice)
    with pytest.raises(pm.Revert):
        pm.Book(book.data[:100]).market_words(1)


# --- lens ------------------------------------------------------------------------------------

W0_SIMPLE = 1_000 | (1 << 32)  # imr 10%, no size add-on
ISO = pm.Ctx(n_s=0, floor_bps=0, mmr_bps=5_000, portfolio=False)


def _leg(size: int, cost: int, price: int = 100 * W, owed: int = 0) -> pm.Leg:
    return pm.Leg(
        market=0, size=size, cost=cost, funding_owed=owed, price=price, w0=W0_SIMPLE, w1=0
    )


def test_liquidation_price__long():
    # 1 unit bought at 100 with 20 of collateral; maintenance = 50% of 10% of notional:
    # gap(P) = 20 + P - 100 - ceil(ceil(P/10)/2) = 0 at P = 84.2105263157894736842..;
    # at P = ..685: ceil(P/10) = ..369, mm = ..685 -> gap 0; at ..686 -> gap 1
    legs = [_leg(W, 100 * W)]
    lp = pm.liquidation_price(legs, 0, 20 * W, ISO)
    assert lp == 84_210_526_315_789_473_685
    assert pm.gap(pm.Totals(), legs[0], 20 * W, lp, ISO) <= 0
    assert pm.gap(pm.Totals(), legs[0], 20 * W, lp + 1, ISO) > 0


def test_liquidation_price__short():
    # gap(P) = 20 + 100 - P - ceil(ceil(P/10)/2) = 0 at P = 114.2857142857142857142..;
    # at ..714: ceil(P/10) = ..572, mm = ..286 -> gap 0; at ..713 -> gap 1
    legs = [_leg(-W, -100 * W)]
    lp = pm.liquidation_price(legs, 0, 20 * W, ISO)
    assert lp == 114_285_714_285_714_285_714
    assert pm.gap(pm.Totals(), legs[0], 20 * W, lp, ISO) <= 0
    assert pm.gap(pm.Totals(), legs[0], 20 * W, lp - 1, ISO) > 0


def test_liquidation_price__edges():
    # already below maintenance: the mark itself
    assert pm.liquidation_price([_leg(W, 100 * W)], 0, 4 * W, ISO) == 100 * W
    # a fully funded long survives price 0: none
    assert pm.liquidation_price([_leg(W, 100 * W)], 0, 101 * W, ISO) == 0
    # a short survives 100x the mark: none
    assert pm.liquidation_price([_leg(-W, -100 * W)], 0, 100_000 * W, ISO) == 0
    # funding owed lowers equity: 20 of collateral but 5 owed = 15 of equity, the
    # threshold moves up: 15 + P - 100 - P/20 -> P = 89.47..
    owed = _leg(W, 100 * W, owed=5 * W)
    assert pm.liquidation_price([owed], 0, 15 * W, ISO) == 89_473_684_210_526_315_790


@given(
    size=st.integers(1, 10**22),
    entry=st.integers(10**15, 10**24),
    mark=st.integers(10**15, 10**24),
    collateral=st.integers(0, 10**26),
    long=st.booleans(),
)
def test_liquidation_price__is_the_boundary_for_one_isolated_leg(
    size, entry, mark, collateral, long
):
    s = size if long else -size
    leg = _leg(s, pm.div_ceil(s * entry, W), price=mark)
    equity = collateral + pm.value_pnl(leg.size, leg.cost, mark)
    lp = pm.liquidation_price([leg], 0, equity, ISO)
    base_equity = collateral

    def gap(p: int) -> int:
        return pm.gap(pm.Totals(), leg, base_equity, p, ISO)

    if lp == mark:
        assert gap(mark) <= 0
    elif lp == 0:
        assert gap(0 if long else mark * pm.LIQ_SEARCH_CEILING) > 0
    elif long:
        assert gap(lp) <= 0 < gap(lp + 1) and lp < mark
    else:
        assert gap(lp) <= 0 < gap(lp - 1) and lp > mark


def _snapshot(header: int, positions: dict[int, pm.Position], balance: int) -> Snapshot:
    rb = riskbook.RiskBook(
        floor_bps=200,
        maintenance_bps=5_000,
        markets=(riskbook.MarketRisk(1_000, 1_000, 1_000 * W),) * 2,
        names=("crash", "rally", "split"),
        shocks=((-1_500, -2_000), (1_500, 2_000), (1_000, -1_000)),
    )
    book = pm.Book.from_riskbook(rb)
    params = pm.MarketParams(1_000 * W, 2 * 10**14, 5 * 10**14, W, W // 100, True, False, W, W)
    markets = tuple(
        MarketState(m, params, pm.Mark(p, 1_000, 3 * 10**12, 0), 10 * W, 4 * W, p, 0)
        for m, p in ((0, 100 * W), (1, 50 * W))
    )
    return Snapshot(
        account=1,
        block_number=1,
        timestamp=1_000 + DAY,
        header=header,
        market_count=2,
        balances={0: balance},
        collaterals={0: CollateralInfo(0, "USDC", 0, 0)},
        positions=positions,
        markets=markets,
        book=book,
        risk_book=rb,
        system=pm.System(1, 3, 200, 5_000, 1_000, 1_000, 60),
    )


def test_scan_and_account_summary__hedged_portfolio_book():
    # long 10 @ 100 (cost 1000), short 20 @ 50 (cost -1000), snapshots at index 0 while
    # the index is 3 USD per unit: the long owes 30, the short earns 60
    hdr = pm.ACCOUNT_EXISTS | pm.ACCOUNT_PORTFOLIO | (0b11 << 8) | (2 << 48)
    pos = {0: pm.Position(10 * W, 1_000 * W, 0), 1: pm.Position(-20 * W, -1_000 * W, 0)}
    snap = _snapshot(hdr, pos, 500 * W)
    s = pm.scan(snap)
    assert s.equity == 500 * W - 30 * W + 60 * W
    # isolated: 10% of 1000 plus the size add-on 10% x |size| / 1000 of 1000: 1 for the
    # 10 BTC-like long, 2 for the 20-unit short -> 101 + 102
    assert (s.isolated, s.notional) == (203 * W, 2_000 * W)
    # scenario losses (-sum value x shock): crash -(1000 x -15% + -1000 x -20%) = -50 (a
    # gain), rally +50, split -(100 + 100) = -200 -> worst 50; floor 2% x 2000 = 40;
    # initial = min(203, max(50, 40) + 3) = 53, maintenance 26.5
    assert (s.initial, s.maintenance) == (53 * W, 53 * W // 2)
    v = pm.account_summary(snap)
    assert (v.equity, v.initial, v.maintenance, v.isolated_initial) == (
        s.equity,
        s.initial,
        s.maintenance,
        s.isolated,
    )
    assert v.scenario_losses == (-50 * W, 50 * W, -200 * W)
    assert (v.binding_scenario, v.floor, v.addon) == (1, 40 * W, 3 * W)
    assert v.funding_owed == -30 * W
    assert v.health == 530 * W * W // (53 * W // 2)  # 20.0
    assert v.health == 20 * W
    assert [p.entry_price for p in v.positions] == [100 * W, 50 * W]
    # isolated mode of the same book: the requirement is the isolated one
    iso = pm.scan(_snapshot(hdr & ~pm.ACCOUNT_PORTFOLIO, pos, 500 * W))
    assert (iso.initial, iso.maintenance) == (203 * W, 203 * W // 2)


def test_quote__close_settles_funding_and_removes_the_leg():
    hdr = pm.ACCOUNT_EXISTS | (0b1 << 8) | (1 << 48)
    snap = _snapshot(hdr, {0: pm.Position(10 * W, 1_000 * W, 0)}, 500 * W)
    q = pm.quote(snap, 0, -10 * W)
    # one day since the last touch at skew +6: rate 0 -> 0.006, index + 0.003 x 100 = 0.3
    index = 3 * 10**12 + 300_000_000_000
    assert q.funding_paid == pm.funding_owed(10 * W, index)
    # selling 10 into skew +6 at 100 with S = 1000: 100 x (1 + 2/2000) = 100.1;
    # 6 maker at 2 bp + 4 taker at 5 bp of 1001 USD
    assert q.fill_price == 100_100_000_000_000_000_000
    assert q.fee == pm.mul_div(6 * W * 2 * 10**14 + 4 * W * 5 * 10**14, q.fill_price, W * W, True)
    assert q.realized_pnl == 1_001 * W - 1_000 * W
    assert q.equity_after == 500 * W + q.realized_pnl - q.funding_paid - q.fee
    assert (q.initial_after, q.maintenance_after, q.liquidation_price_after) == (0, 0, 0)
    assert q.health_after == pm.NO_RISK_HEALTH
    with pytest.raises(pm.Revert, match="zero size"):
        pm.quote(snap, 0, 0)
    with pytest.raises(pm.Revert, match="unknown market"):
        pm.quote(snap, 2, W)


def test_set_bits_walks_a_bitmap_like_the_contracts_loops() -> None:
    from perpdex.sdk.math.packing import set_bits

    def loop(bitmap: int, stop: int, start: int) -> list[int]:  # the Vyper loop's shape
        out = []
        for i in range(start, stop):
            if bitmap >> i == 0:
                break
            if (bitmap >> i) & 1 == 1:
                out.append(i)
        return out

    for bitmap in (0, 1, 0b1011, 1 << 31, (1 << 32) - 1, 0b110, 1 << 40 | 1):
        for start in (0, 1):
            assert list(set_bits(bitmap, 32, start)) == loop(bitmap, 32, start)
    assert list(set_bits(0b1011, 32)) == [0, 1, 3]
    assert list(set_bits(0b1011, 32, 1)) == [1, 3]
    assert list(set_bits(1 << 40 | 1, 32)) == [0]  # bits at or above `stop` are not read
