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

# the margin scan's copy of the risk book: a window of this many markets' slots
WINDOW_MARKETS: constant(uint256) = 8
WINDOW_BYTES: constant(uint256) = WINDOW_MARKETS * margin.MARKET_BYTES


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
    # one copy of a window of 8 markets' slots of the book (cheaper than a copy per
    # position; a copy of all 32 slots would cost more in memory expansion, every scan,
    # than it saves): markets 0-7, moved on in the loop for an account that holds a
    # position beyond them (`wide`; the book has a fixed size, every window is in it)
    markets: Bytes[WINDOW_BYTES] = slice(book.code, 1 + margin.HEADER_BYTES, WINDOW_BYTES)
    window: uint256 = 0  # the copy's first market
    wide: bool = bitmap >= 256
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
    pnl: int256 = 0
    # one position's isolated requirement and its size-scaled part (`margin._isolated`),
    # declared once for the loop
    iso: uint256 = 0
    slope: uint256 = 0
    # the scenario groups of four past the first (a flag each: cheaper per position than
    # a comparison)
    group_1: bool = n_s > 4
    group_2: bool = n_s > 8
    group_3: bool = n_s > 12
    special: bool = use_twap or override_market < c.MAX_MARKETS or wide
    for m: uint256 in range(c.MAX_MARKETS):
        rest: uint256 = bitmap >> m
        # one test per position: the end of the bitmap only where no position is
        if rest & 1 == 0:
            if rest == 0:
                break
            continue
        pw: uint256 = state._pos[account][m]
        # inline packing._pos_size: signed 96 bits at bit 0
        size: int256 = convert(convert(pw << 160, bytes32), int256) >> 160
        mw: uint256 = state._mark[m]
        price: uint256 = mw & packing.MASK_88
        # market m's slot in the copy (m < 32: unchecked offset arithmetic)
        off: uint256 = unsafe_mul(m, margin.MARKET_BYTES)
        if special:
            if m == override_market:
                size = override_size
            if use_twap:
                price = staticcall state.ORACLE.twap(m)
            if wide:
                if m >= unsafe_add(window, WINDOW_MARKETS):
                    # the window holding m (m increases: each window is copied once)
                    window = unsafe_sub(m, m % WINDOW_MARKETS)
                    markets = slice(
                        book.code,
                        1 + margin.HEADER_BYTES + unsafe_mul(window, margin.MARKET_BYTES),
                        WINDOW_BYTES,
                    )
                off = unsafe_mul(unsafe_sub(m, window), margin.MARKET_BYTES)
        if size == 0:
            continue
        # price < 2**96 fits int256: reinterpret the bits instead of a clamped convert
        value: int256 = unsafe_mul(size, convert(convert(price, bytes32), int256))
        abs_size: uint256 = convert(convert(size, bytes32), uint256)
        if size < 0:
            abs_size = convert(convert(unsafe_sub(0, size), bytes32), uint256)
        abs_value: uint256 = unsafe_mul(abs_size, price)
        w0: uint256 = extract32(markets, off, output_type=uint256)
        # the isolated formula's one definition, given word 0's fields unpacked here (not
        # through packing's accessors: three calls per position); sums of at most 16
        # terms under 2**245 each: no overflow
        iso, slope = margin._isolated(
            abs_value,
            abs_size,
            w0 & margin.MASK_16,
            (w0 >> 16) & margin.MASK_16,
            (w0 >> 32) & margin.MASK_128,
        )
        isolated = unsafe_add(isolated, iso)
        if portfolio:
            addon = unsafe_add(addon, slope)
            gross_raw = unsafe_add(gross_raw, abs_value)
            # shock k is the signed 16-bit field at bits 16k (bp)
            w1: uint256 = extract32(markets, unsafe_add(off, 32), output_type=uint256)
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
            if group_1:
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
            if group_2:
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
            if group_3:
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
            # the notional as `margin._isolated` rounds it
            total_notional = unsafe_add(
                total_notional, unsafe_div(unsafe_add(abs_value, c.WAD - 1), c.WAD)
            )
            # each term is below 2**216 in magnitude (an int256 over WAD, a 96-bit cost,
            # a checked product over 1e12), so 16 positions' sum cannot wrap: one checked
            # add after the loop
            pnl = unsafe_sub(
                unsafe_sub(unsafe_add(pnl, fp._div_floor(value, c.IWAD)), packing._pos_cost(pw)),
                positions._funding_owed(size, packing._pos_mark_funding_delta(pw, mw)),
            )
    s.equity += pnl
    s.isolated = isolated
    s.notional = total_notional
    # the largest scenario loss (a test and a store each: cheaper than max())
    worst: int256 = 0
    if portfolio:
        if n_s > 0:
            if l0 > worst:
                worst = l0
        if n_s > 1:
            if l1 > worst:
                worst = l1
        if n_s > 2:
            if l2 > worst:
                worst = l2
        if n_s > 3:
            if l3 > worst:
                worst = l3
        if n_s > 4:
            if l4 > worst:
                worst = l4
        if n_s > 5:
            if l5 > worst:
                worst = l5
        if n_s > 6:
            if l6 > worst:
                worst = l6
        if n_s > 7:
            if l7 > worst:
                worst = l7
        if n_s > 8:
            if l8 > worst:
                worst = l8
        if n_s > 9:
            if l9 > worst:
                worst = l9
        if n_s > 10:
            if l10 > worst:
                worst = l10
        if n_s > 11:
            if l11 > worst:
                worst = l11
        if n_s > 12:
            if l12 > worst:
                worst = l12
        if n_s > 13:
            if l13 > worst:
                worst = l13
        if n_s > 14:
            if l14 > worst:
                worst = l14
        if n_s > 15:
            if l15 > worst:
                worst = l15
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
        abs_value,
        abs_size,
        packing._book_imr_min_bps(w0),
        packing._book_imr_slope_bps(w0),
        packing._book_margin_scale(w0),
    )
    return (
        state._balance[account][0]
        + fp._div_floor(unsafe_mul(size, convert(convert(price, bytes32), int256)), c.IWAD)
        - packing._pos_cost(pw)
        - positions._funding_owed(size, packing._pos_mark_funding_delta(pw, mw))
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
