# pragma version ~=0.4.3
"""
@title Margin scan and margin gates
@custom:contract-name gates
@license MIT
@notice `_scan` computes equity and the initial / maintenance requirement of an account
        in one pass (formulas in modules/margin.vy); `_check_initial` is the one
        margin gate every risk-adding action ends in; the loss-cap checks.
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import margin
from . import positions
from . import guards
from . import marks

uses: state
uses: marks


@internal
@view
def _scan(
    account: uint256,
    hdr: uint256,
    with_equity: bool,
    use_twap: bool,
    override_market: uint256,
    override_size: int256,
) -> state.MarginScan:
    """
    @dev One pass over the account's positions: equity (if asked), isolated and
         portfolio requirements. Prices are the cached marks, or the oracle's
         time-weighted prices when `use_twap`. `override_market`/`override_size`
         substitute one position's size (requirement only), to price the book as it was
         before a trade.
    """
    s: state.MarginScan = empty(state.MarginScan)
    bitmap: uint256 = packing._positions_bitmap(hdr)
    if override_market < c.MAX_MARKETS:
        bitmap |= 1 << override_market
    if with_equity:
        s.equity = self._collateral_value(account, hdr, use_twap)
    if bitmap == 0:
        return s
    # single fields of the system word (warm): no `System` struct on the hot path
    sw: uint256 = state._system
    book: address = packing._system_book(sw)
    n_s: uint256 = packing._system_n_scenarios(sw)
    # one copy of the book's market section (the book has a fixed size): cheaper than a
    # copy per position; only the first 8 markets' slots when that covers the account
    markets: Bytes[margin.MARKETS_BYTES] = b""
    if bitmap < 256:
        markets = slice(book.code, 1 + margin.HEADER_BYTES, 8 * margin.MARKET_BYTES)
    else:
        markets = slice(book.code, 1 + margin.HEADER_BYTES, margin.MARKETS_BYTES)
    portfolio: bool = hdr & c.ACCOUNT_PORTFOLIO != 0
    # One accumulator per scenario, unrolled: an indexed memory array costs ~6x the gas
    # in this loop (bounds checks), and this loop is the margin check's hot path.
    # |value| < 2**183 and |shock| <= 2**15, so |value * shock| < 2**198; at most 16
    # positions add up, so the unsafe arithmetic cannot overflow.
    l0: int256 = 0
    l1: int256 = 0
    l2: int256 = 0
    l3: int256 = 0
    l4: int256 = 0
    l5: int256 = 0
    l6: int256 = 0
    l7: int256 = 0
    l8: int256 = 0
    l9: int256 = 0
    l10: int256 = 0
    l11: int256 = 0
    l12: int256 = 0
    l13: int256 = 0
    l14: int256 = 0
    l15: int256 = 0
    gross_raw: uint256 = 0
    addon: uint256 = 0
    isolated: uint256 = 0
    total_notional: uint256 = 0
    special: bool = use_twap or override_market < c.MAX_MARKETS
    for m: uint256 in range(c.MAX_MARKETS):
        rest: uint256 = bitmap >> m
        if rest == 0:
            break
        if rest & 1 == 0:
            continue
        pw: uint256 = state._pos[account][m]
        # inline packing._pos_size: signed 96 bits at bit 0
        size: int256 = convert(convert(pw << 160, bytes32), int256) >> 160
        mw: uint256 = state._mark[m]
        price: uint256 = mw & packing.MASK_88
        if special:
            if m == override_market:
                size = override_size
            if use_twap:
                price = staticcall state.ORACLE.twap(m)
        if size == 0:
            continue
        # price < 2**96 fits int256: reinterpret the bits instead of a clamped convert
        value: int256 = unsafe_mul(size, convert(convert(price, bytes32), int256))
        abs_size: uint256 = convert(convert(size, bytes32), uint256)
        if size < 0:
            abs_size = convert(convert(unsafe_sub(0, size), bytes32), uint256)
        abs_value: uint256 = unsafe_mul(abs_size, price)
        notional: uint256 = unsafe_div(unsafe_add(abs_value, c.WAD - 1), c.WAD)
        w0: uint256 = extract32(markets, margin.MARKET_BYTES * m, output_type=uint256)
        # margin._isolated inline, the same expressions (its one copy, kept for gas: a call
        # per position costs 168 gas, +1,345 on an 8-position margin check, whose budget
        # has 18 gas left; tests/unit/test_margin_properties.py and the SDK mirror hold the
        # two equal); margin_scale != 0 is enforced when a book is published
        scale: uint256 = unsafe_mul(c.BPS, (w0 >> 32) & margin.MASK_128)
        slope: uint256 = unsafe_div(
            unsafe_add(
                unsafe_mul(unsafe_mul(notional, (w0 >> 16) & margin.MASK_16), abs_size),
                unsafe_sub(scale, 1),
            ),
            scale,
        )
        # sums of at most 16 terms under 2**245 each: no overflow
        isolated = unsafe_add(
            isolated,
            unsafe_add(
                unsafe_div(
                    unsafe_add(unsafe_mul(abs_value, w0 & margin.MASK_16), c.WAD * c.BPS - 1),
                    c.WAD * c.BPS,
                ),
                slope,
            ),
        )
        if portfolio:
            addon = unsafe_add(addon, slope)
            gross_raw = unsafe_add(gross_raw, abs_value)
            # shock k is the signed 16-bit field at bits 16k (bp)
            w1: uint256 = extract32(markets, margin.MARKET_BYTES * m + 32, output_type=uint256)
            l0 = unsafe_sub(
                l0, unsafe_mul(value, convert(convert(w1 << 240, bytes32), int256) >> 240)
            )
            l1 = unsafe_sub(
                l1, unsafe_mul(value, convert(convert(w1 << 224, bytes32), int256) >> 240)
            )
            l2 = unsafe_sub(
                l2, unsafe_mul(value, convert(convert(w1 << 208, bytes32), int256) >> 240)
            )
            l3 = unsafe_sub(
                l3, unsafe_mul(value, convert(convert(w1 << 192, bytes32), int256) >> 240)
            )
            if n_s > 4:
                l4 = unsafe_sub(
                    l4, unsafe_mul(value, convert(convert(w1 << 176, bytes32), int256) >> 240)
                )
                l5 = unsafe_sub(
                    l5, unsafe_mul(value, convert(convert(w1 << 160, bytes32), int256) >> 240)
                )
                l6 = unsafe_sub(
                    l6, unsafe_mul(value, convert(convert(w1 << 144, bytes32), int256) >> 240)
                )
                l7 = unsafe_sub(
                    l7, unsafe_mul(value, convert(convert(w1 << 128, bytes32), int256) >> 240)
                )
            if n_s > 8:
                l8 = unsafe_sub(
                    l8, unsafe_mul(value, convert(convert(w1 << 112, bytes32), int256) >> 240)
                )
                l9 = unsafe_sub(
                    l9, unsafe_mul(value, convert(convert(w1 << 96, bytes32), int256) >> 240)
                )
                l10 = unsafe_sub(
                    l10, unsafe_mul(value, convert(convert(w1 << 80, bytes32), int256) >> 240)
                )
                l11 = unsafe_sub(
                    l11, unsafe_mul(value, convert(convert(w1 << 64, bytes32), int256) >> 240)
                )
            if n_s > 12:
                l12 = unsafe_sub(
                    l12, unsafe_mul(value, convert(convert(w1 << 48, bytes32), int256) >> 240)
                )
                l13 = unsafe_sub(
                    l13, unsafe_mul(value, convert(convert(w1 << 32, bytes32), int256) >> 240)
                )
                l14 = unsafe_sub(
                    l14, unsafe_mul(value, convert(convert(w1 << 16, bytes32), int256) >> 240)
                )
                l15 = unsafe_sub(
                    l15, unsafe_mul(value, convert(convert(w1 << 0, bytes32), int256) >> 240)
                )
        if with_equity:
            total_notional = unsafe_add(total_notional, notional)
            s.equity += fp._div_floor(value, c.IWAD) - packing._pos_cost(pw)
            s.equity -= positions._funding_owed(
                size, packing._pos_funding_delta(pw, packing._mark_index(mw))
            )
    s.isolated = isolated
    s.notional = total_notional
    worst: int256 = 0
    if portfolio:
        if n_s > 0:
            worst = max(worst, l0)
        if n_s > 1:
            worst = max(worst, l1)
        if n_s > 2:
            worst = max(worst, l2)
        if n_s > 3:
            worst = max(worst, l3)
        if n_s > 4:
            worst = max(worst, l4)
        if n_s > 5:
            worst = max(worst, l5)
        if n_s > 6:
            worst = max(worst, l6)
        if n_s > 7:
            worst = max(worst, l7)
        if n_s > 8:
            worst = max(worst, l8)
        if n_s > 9:
            worst = max(worst, l9)
        if n_s > 10:
            worst = max(worst, l10)
        if n_s > 11:
            worst = max(worst, l11)
        if n_s > 12:
            worst = max(worst, l12)
        if n_s > 13:
            worst = max(worst, l13)
        if n_s > 14:
            worst = max(worst, l14)
        if n_s > 15:
            worst = max(worst, l15)
    floor_bps: uint256 = 0
    if portfolio:
        floor_bps = packing._system_floor_bps(sw)
    s.initial = margin._combine(isolated, worst, gross_raw, addon, floor_bps, portfolio)
    # initial < 2**140 and mmr_bps < 2**16: no overflow; rounds up
    s.maintenance = unsafe_div(
        unsafe_add(unsafe_mul(s.initial, packing._system_mmr_bps(sw)), c.BPS - 1), c.BPS
    )
    return s


@internal
@pure
def _lone_isolated(hdr: uint256, m: uint256) -> bool:
    """
    @dev Whether `_lone_isolated_margin` applies: an isolated account (header `hdr`) without
         a loss cap whose only position is in market `m` and that holds no collateral
         but the settlement token.
    """
    return (
        hdr & (c.ACCOUNT_PORTFOLIO | c.ACCOUNT_LOSS_CAP) == 0
        and packing._holdings_bitmap(hdr) == 1 << m
    )


@internal
@view
def _lone_isolated_margin(account: uint256, m: uint256, w0: uint256) -> (int256, uint256):
    """
    @dev (equity, initial requirement) of an account `_lone_isolated` in market `m`,
         whose mark is fresh (nothing for `_refresh_stale` to re-read): the margin scan
         reduced to the one position, the same expressions on the same bounds (`_scan`:
         keep them in step). `w0`: the risk book's word 0 of market `m`. The vault trade
         (`_check_after_trade`) and a signed fill (ClearinghouseOrders' `_after`) take it
         instead of the scan.
    """
    pw: uint256 = state._pos[account][m]
    size: int256 = packing._pos_size(pw)
    mw: uint256 = state._mark[m]
    price: uint256 = mw & packing.MASK_88
    abs_size: uint256 = convert(convert(size, bytes32), uint256)
    if size < 0:
        abs_size = convert(convert(unsafe_sub(0, size), bytes32), uint256)
    abs_value: uint256 = unsafe_mul(abs_size, price)
    initial: uint256 = 0
    slope: uint256 = 0
    initial, slope = margin._isolated(
        unsafe_div(unsafe_add(abs_value, c.WAD - 1), c.WAD), abs_value, abs_size, w0
    )
    return (
        state._balance[account][0]
        + fp._div_floor(unsafe_mul(size, convert(convert(price, bytes32), int256)), c.IWAD)
        - packing._pos_cost(pw)
        - positions._funding_owed(size, packing._pos_funding_delta(pw, packing._mark_index(mw)))
    ), initial


@internal
@view
def _collateral_value(account: uint256, hdr: uint256, use_twap: bool) -> int256:
    """
    @dev Settlement balance plus every other token at its price less its haircut
         (rounded down).
    """
    value: int256 = state._balance[account][0]
    cbits: uint256 = packing._collateral_bitmap(hdr)
    if cbits == 0:
        return value
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        bal: int256 = state._balance[account][i]
        m: uint256 = state.collateral_market[i]
        price: uint256 = packing._mark_price(state._mark[m])
        if use_twap:
            price = staticcall state.ORACLE.twap(m)
        worth: uint256 = margin._collateral_worth(
            convert(bal, uint256), price, state.collateral_haircut[i]
        )
        value += convert(worth, int256)
    return value


@internal
def _check_initial(account: uint256, hdr: uint256, reason: String[64]):
    """
    @dev The one margin gate for withdrawals, transfers, mode switches and risk-adding
         trades: equity >= initial requirement at fresh marks. Without positions only the
         balances count (equity must not be negative).
    """
    if packing._position_count(hdr) == 0 and packing._collateral_bitmap(hdr) == 0:
        assert state._balance[(account)][0] >= 0, reason
        return
    marks._refresh_stale(hdr)
    s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
    assert s.equity >= convert(s.initial, int256), reason


@internal
def _check_after_trade(
    account: uint256,
    hdr: uint256,
    m: uint256,
    old_size: int256,
    adds: bool,
    fresh: uint256 = 0,
    w0: uint256 = 0,
):
    """
    @dev A trade must leave the account at or above initial margin, unless it is
         reduce-only and does not raise the requirement (portfolio mode, where closing a
         hedge leg can raise it). A trade that adds (opens, grows or flips a position)
         must also leave equity at or above the account's loss cap. `fresh`: as
         `_refresh_stale`'s. `w0`: market `m`'s risk-book word 0 when the trade adds, `m`'s
         mark is fresh and the caller read the word (0: not read); an account
         `_lone_isolated` in `m` then takes `_lone_isolated_margin` instead of the scan.
    """
    # an adding trade of a capped account is valued at fresh marks (every position
    # market re-read), as the trigger values it: a stale mark must not let an
    # account below its floor add risk (review finding L1)
    # ACCOUNT_LOSS_CAP: the account has a loss cap (no read of it without one)
    capped: bool = hdr & c.ACCOUNT_LOSS_CAP != 0
    equity: int256 = 0
    initial: uint256 = 0
    if w0 != 0 and self._lone_isolated(hdr, m):
        equity, initial = self._lone_isolated_margin(account, m, w0)
    else:
        marks._refresh_stale(hdr, adds and capped, fresh)
        s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
        equity = s.equity
        initial = s.initial
    if equity >= convert(initial, int256):
        # below its loss cap an account only reduces: a trade that opens, grows or flips
        # a position must leave equity >= the floor (`_below_loss_cap`, inlined for
        # bytecode; equity >= initial >= 0 here, so its bits read as a uint256). The
        # close-out (reduce_only) never comes here.
        if adds and capped:
            assert convert(convert(equity, bytes32), uint256) >= state.loss_cap[account], (
                "clearinghouse: below loss cap, reduce only"
            )
        return
    # one revert string for both refusals (bytecode); `and` short-circuits, so an adding
    # trade is refused without the second scan
    assert (
        not adds and initial <= self._scan(account, hdr, False, False, m, old_size).initial
    ), "clearinghouse: below initial margin"


@internal
@view
def _below_loss_cap(account: uint256, equity: int256) -> bool:
    """
    @dev The loss-cap test every path shares (trigger, trades, value out): a floor is set
         and `equity` (the `_scan` figure, as `account_margin` returns it) is below it.
    """
    cap: uint256 = state.loss_cap[account]
    return cap != 0 and (equity < 0 or convert(equity, uint256) < cap)


@internal
@view
def _require_loss_cap(account: uint256, reason: String[48]):
    """
    @dev Reverts with `reason` when the account has a loss cap and its equity at the
         cached marks (`account_margin`, what `trigger_loss_cap` reads; callers refresh
         the marks first) is below it. Costs one SLOAD without a cap. For the extension
         halves: the engine's own scan is not compiled into them.
    """
    if state.loss_cap[account] == 0:
        return
    equity: int256 = (staticcall IClearinghouseEngine(self).account_margin(account))[0]
    assert not self._below_loss_cap(account, equity), reason


@external
def engine_check_initial(account: uint256, reason: String[64], strict: bool):
    """
    @notice Self-only: the margin gate (equity >= initial requirement at fresh marks).
            `strict` (withdrawals, transfers out, mode switches) first re-reads the
            oracle for every market the account holds and refuses degraded prices or a
            sequencer that is down or in its grace period: taking collateral out adds
            risk. Liquidation takers are checked without it.
    """
    guards._only_self()
    hdr: uint256 = state._header[account]
    if strict and (packing._position_count(hdr) != 0 or packing._collateral_bitmap(hdr) != 0):
        bitmap: uint256 = packing._positions_bitmap(hdr)
        for m: uint256 in range(c.MAX_MARKETS):
            if packing._no_bits_from(bitmap, m):
                break
            if packing._has_bit(bitmap, m):
                marks._require_valid_price(marks._touch(m)[1])
        cbits: uint256 = packing._collateral_bitmap(hdr)
        for i: uint256 in range(1, c.MAX_COLLATERALS):
            if packing._no_bits_from(cbits, i):
                break
            if packing._has_bit(cbits, i):
                marks._require_valid_price(marks._touch(state.collateral_market[i])[1])
    self._check_initial(account, hdr, reason)


@external
def engine_check_fill(
    account: uint256, market: uint256, old_size: int256, adds: bool, worse: bool, fresh: uint256
):
    """
    @notice Self-only: a matched fill's margin checks of one side, after it settled
            (ClearinghouseOrders' `settle`; here for the Orders half's bytecode room): as
            a market order's (`_check_after_trade`) when it adds or the account is in
            portfolio mode; and a side filled worse than the oracle price that does not
            add stays at or above maintenance in its own margin mode and at or above its
            loss cap (review 3 R3-2, review 4 R4-4). `fresh`: the batch's touched markets.
    """
    guards._only_self()
    hdr: uint256 = state._header[account]
    if adds or hdr & c.ACCOUNT_PORTFOLIO != 0:
        self._check_after_trade(account, hdr, market, old_size, adds, fresh)
    if worse and not adds:
        marks._refresh_stale(hdr, False, fresh)
        s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
        # value moved out at a worse price is a transfer out (R4-4): `_below_loss_cap`
        assert s.equity >= convert(s.maintenance, int256) and not self._below_loss_cap(
            account, s.equity
        ), "clearinghouse: off-oracle fill below maintenance or loss cap"
