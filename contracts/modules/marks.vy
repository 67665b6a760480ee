# pragma version ~=0.4.3
"""
@title Marks: oracle reads, quorum and funding accrual
@custom:contract-name marks
@license MIT
@notice `_touch` reads a market's oracle through the router, stores the mark and
        accrues funding (modules/funding.vy); the refresh helpers touch every market
        an account holds; `_require_quorum` / `_require_valid_price` are the price
        guards every risk-adding path ends in.
"""

from . import state
from . import constants as c
from . import packing
from . import funding
from . import guards

uses: state
uses: guards


@internal
@pure
def _require_valid_price(flags: uint256):
    """
    @dev Risk may only be added at a valid price: sources agree, sequencer up past grace.
    """
    assert flags & c.FLAG_SEQUENCER_DOWN == 0, "clearinghouse: sequencer down"
    assert flags & c.FLAG_SEQUENCER_GRACE == 0, "clearinghouse: sequencer grace period"
    self._require_quorum(flags)


@internal
@pure
def _require_quorum(flags: uint256):
    """
    @dev Nothing is filled, valued or liquidated at a price without quorum (FLAG_DEGRADED).
    """
    assert flags & c.FLAG_DEGRADED == 0, "clearinghouse: no price quorum"


@internal
def _touch(m: uint256) -> (uint256, uint256, int256):
    pw: uint256 = state._params[m]
    return self._touch_with(m, packing._unpack_params(pw), False, pw)


@internal
def _touch_with(
    m: uint256, p: packing.MarketParams, reuse: bool, params_word: uint256 = 0
) -> (uint256, uint256, int256):
    """
    @dev Reads the oracle (`record`: it updates its time-weighted price and logs nothing;
         MarkUpdated carries the price), accrues funding over
         the time since the last touch at the new price, and caches both in the mark word.
         Without a price quorum (FLAG_DEGRADED) the market freezes instead: the mark word
         is left as it is (no price, no funding), the params word's FROZEN_BIT is set
         (MarketFrozen, once) and price 0 is returned with the flags: every caller
         must check them. The first touch with quorum
         again clears the bit (MarketResumed) and accrues funding over the whole gap.
         With `reuse` (a trade), a mark written in this block (same timestamp and block
         tag, packing.vy) by a quorum touch that saw
         the sequencer up, and no touch without quorum since (both oracle bits clear), is
         returned as it is: the router would read the same feeds at the same timestamp,
         so quorum, staleness, deviation and the sequencer rules gave their answer
         already; no oracle call, no write.
    """
    mw: uint256 = state._mark[m]
    # `params_word`: the caller's copy of state._params[m] (0: not read yet). A touched
    # market is listed, and a listed market's word has LISTED set: never 0
    pw: uint256 = params_word
    if pw == 0:
        pw = state._params[m]
    # the oracle bits (packing.ORACLE_SHIFT, small shifts for bytecode): 1 frozen,
    # 2 sequencer flagged at the last quorum touch
    have: uint256 = (pw >> packing.ORACLE_SHIFT) & 3
    if reuse and have == 0 and packing._mark_is_this_block(mw):
        return mw & packing.MASK_88, 0, packing._mark_index(mw)
    price: uint256 = 0
    flags: uint256 = 0
    price, flags = extcall state.ORACLE.record(m)
    if flags & c.FLAG_DEGRADED != 0:
        if have & 1 == 0:
            state._params[m] = pw | (1 << packing.ORACLE_SHIFT)
            log state.MarketFrozen(market=m, mark=packing._mark_price(mw))
        return 0, flags, 0
    # with quorum, `flags` holds only sequencer flags: SEQUENCER_BIT records them
    want: uint256 = 0
    if flags != 0:
        want = 2
    if have != want:
        state._params[m] = pw ^ ((have ^ want) << packing.ORACLE_SHIFT)
    if have & 1 != 0:
        log state.MarketResumed(market=m, price=price)
    index: int256 = packing._mark_index(mw)
    last: uint256 = packing._mark_time(mw)
    rate: int256 = packing._mark_rate(mw)
    if last != 0 and block.timestamp > last:
        oi: uint256 = state._oi[m]
        skew: int256 = convert(oi << 128 >> 128, int256) - convert(oi >> 128, int256)
        delta_index: int256 = 0
        rate, delta_index = funding._accrue(
            rate,
            block.timestamp - last,
            skew,
            p.skew_scale,
            p.max_funding_velocity,
            p.max_funding_rate,
            price,
        )
        index += delta_index
    state._mark[m] = packing._pack_mark(
        price, block.timestamp | (block.number & 63) << 34, index, rate
    )
    log state.MarkUpdated(market=m, price=price, funding_rate=rate, funding_index=index)
    return price, flags, index


@internal
def _touch_quorum(m: uint256):
    """
    @dev Touches market `m` for a valuation; reverts if its price lacks quorum (the
         cached mark would be old).
    """
    self._require_quorum(self._touch(m)[1])


@internal
def _refresh_stale(hdr: uint256, every: bool = False, fresh: uint256 = 0):
    """
    @dev Re-reads the oracle for every market of the account whose cached mark is older
         than `max_mark_age` (with `every`, all of them: a feed may have moved within the
         second its mark was written), so a margin check never values risk at an old
         price; a market without price quorum reverts it. `fresh`: a bitmap of markets
         whose marks this transaction wrote or found written in this block (a signed
         batch's touched markets): none of them is stale, so without `every` an account
         with positions only there has no market to re-read.
    """
    bitmap: uint256 = packing._positions_bitmap(hdr)
    if not every and bitmap & ~fresh == 0:
        if packing._collateral_bitmap(hdr) != 0:
            self._refresh_collateral_marks(hdr)
        return
    age: uint256 = packing._system_max_mark_age(state._system)
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1 and (
            every or packing._mark_time(state._mark[m]) + age < block.timestamp
        ):
            self._touch_quorum(m)
    if packing._collateral_bitmap(hdr) != 0:
        # (it returns at once without collateral bits: no call then)
        self._refresh_collateral_marks(hdr)


@internal
def _refresh_collateral_marks(hdr: uint256):
    cbits: uint256 = packing._collateral_bitmap(hdr)
    if cbits == 0:
        return
    age: uint256 = packing._system_max_mark_age(state._system)
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if packing._no_bits_from(cbits, i):
            break
        if packing._has_bit(cbits, i):
            m: uint256 = state.collateral_market[i]
            if packing._mark_time(state._mark[m]) + age < block.timestamp:
                self._touch_quorum(m)


@internal
def _refresh_all(hdr: uint256):
    """
    @dev Touches every position market with quorum, then the collateral markets.
    """
    bitmap: uint256 = packing._positions_bitmap(hdr)
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if packing._has_bit(bitmap, m):
            self._touch_quorum(m)
    self._refresh_collateral_marks(hdr)


@external
def engine_touch(market: uint256) -> (uint256, uint256, int256):
    """
    @notice Self-only: reads the oracle for `market` and accrues funding.
    @return (price, oracle flags, funding index).
    """
    guards._only_self()
    assert market < state.market_count, "clearinghouse: unknown market"
    return self._touch(market)


@external
def engine_refresh_account(account: uint256, stale_only: bool):
    """
    @notice Self-only: refreshes the marks of every market the account holds (positions
            and collateral), or only the stale ones. Reverts if one lacks price quorum:
            nothing (liquidation steps, loss-cap close-outs) may value the account then.
    """
    guards._only_self()
    hdr: uint256 = state._header[account]
    if stale_only:
        self._refresh_stale(hdr)
        return
    self._refresh_all(hdr)


@external
def refresh_account(account: uint256):
    """
    @notice Re-reads the oracle for every market an account holds (positions and
            collateral) and accrues their funding. Anyone may call it. In the hot half,
            not behind the proxy: the liquidation auction calls it on every step.
    """
    self._refresh_all(guards._require_exists(account))
