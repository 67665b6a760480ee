# pragma version ~=0.4.3
"""
@title Clearinghouse engine: settlement, marks, funding and the margin scan
@custom:contract-name engine
@license MIT
@notice The internal machinery both clearinghouse deployables share:
        `_fill` / `_settle_side` is THE settlement path (account A trades size d with
        counterparty B at price P; B is the vault's pool for market orders, a keeper's
        account for liquidation auctions); `_touch` reads the oracle and accrues
        funding; `_scan` computes equity and the initial / maintenance requirement of an
        account in one pass (formulas in modules/margin.vy); `_check_initial` is the one
        margin gate every risk-adding action ends in.
"""

from ethereum.ercs import IERC20
from ..interfaces import IClearinghouseEngine
from . import state
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import pricing
from . import funding
from . import margin
from . import positions

uses: state

# `_pool_trade` modes. CHECKED: a market order, margin-checked after its fill. REDUCE_ONLY:
# a loss-cap close-out, refused if it adds, not margin-checked (it closes every leg in
# turn). DEFERRED: one leg of a multi-leg order (ClearinghouseRisk.trade_multi), which
# checks the final book once after its last leg instead.
TRADE_CHECKED: constant(uint256) = 0
TRADE_REDUCE_ONLY: constant(uint256) = 1
TRADE_DEFERRED: constant(uint256) = 2


@internal
def _debit(account: uint256, hdr: uint256, idx: uint256, amount: uint256) -> uint256:
    """
    @dev Takes `amount` token units out of a balance that holds them; returns the header.
    """
    wad: int256 = convert(amount * state.collateral_scale[idx], int256)
    bal: int256 = state._balance[account][idx]
    assert bal >= wad, "clearinghouse: insufficient balance"
    state._balance[account][idx] = bal - wad
    if idx != 0 and bal == wad:
        new_hdr: uint256 = packing._with_collateral(hdr, idx, False)
        state._header[account] = new_hdr
        return new_hdr
    return hdr


@internal
def _pool_trade(
    account: uint256,
    hdr: uint256,
    m: uint256,
    delta: int256,
    acceptable: uint256,
    mode: uint256,
) -> uint256:
    """
    @dev A market order against the vault's pool (`mode`: TRADE_* above). Returns the
         fill price.
    """
    assert delta != 0, "clearinghouse: zero size"
    # a market below market_count is listed (its params word has LISTED, never cleared);
    # one above has a zero word: no market_count read
    pw: uint256 = 0
    if m < c.MAX_MARKETS:
        pw = state._params[m]
    p: packing.MarketParams = packing._unpack_params(pw)
    assert p.listed, "clearinghouse: unknown market"
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = self._touch_with(m, p, True, pw)
    # no fill of any kind (reduce-only and loss-cap close-outs included) without quorum
    self._require_quorum(flags)
    pos_word: uint256 = state._pos[account][m]
    size: int256 = packing._pos_size(pos_word)
    adds: bool = positions._adds(size, delta)
    if mode == TRADE_REDUCE_ONLY:
        assert not adds, "clearinghouse: not reduce-only"
    # a delayed market (modules/delayed.vy) fills adding vault trades, and with its
    # ALL bit every vault trade, only through `settle_order`: at a price observed after
    # the order was committed, which its trader could not know
    if pw & packing.DELAYED_ADD_BIT != 0:
        assert state._delayed_fill or (not adds and pw & packing.DELAYED_ALL_BIT == 0), (
            "clearinghouse: use commit_order"
        )
    # no dust: the fill leaves zero or at least MIN_POSITION_NOTIONAL at the oracle price.
    # In whole dollars d (truncated), |d| < M exactly when d + (M - 1), as two's
    # complement, is at most 2 (M - 1): one comparison (bytecode). An absurd delta may
    # wrap here, but then the fill price overflows and the trade reverts anyway.
    left: int256 = size + delta
    usd: int256 = unsafe_div(
        unsafe_mul(left, convert(convert(price, bytes32), int256)), c.IWAD * c.IWAD
    )
    assert left == 0 or unsafe_add(
        convert(convert(usd, bytes32), uint256), c.MIN_POSITION_NOTIONAL // c.WAD - 1
    ) > 2 * (c.MIN_POSITION_NOTIONAL // c.WAD - 1), "clearinghouse: min position size"
    if adds:
        self._require_can_add_risk(m, p, flags)
    oi: uint256 = state._oi[m]
    skew: int256 = convert(oi << 128 >> 128, int256) - convert(oi >> 128, int256)
    fill: uint256 = pricing._fill_price(price, skew, delta, p.skew_scale)
    if delta > 0:
        assert fill <= acceptable, "clearinghouse: price worse than acceptable"
    else:
        assert fill >= acceptable, "clearinghouse: price worse than acceptable"
    fee: uint256 = pricing._fee(fill, skew, delta, p.maker_fee, p.taker_fee)
    new_hdr: uint256 = self._fill(account, hdr, m, pos_word, delta, fill, index, state.POOL, fee)
    # caps on every fill, reduces included: closing a hedge must not leave the vault
    # above its exposure cap (the OI caps bind only sides that grow)
    self._check_caps(m, p.max_oi, p.max_vault_exposure, oi, skew, skew + delta, price)
    # a multi-leg order's margin checks run once, on its final book
    if mode == TRADE_DEFERRED:
        return fill
    # TRADE_REDUCE_ONLY is a forced close-out, which closes every leg in turn: closing a
    # hedge leg first may raise the requirement for a moment, and must not stop it
    # market `m`'s mark is fresh: `_touch_with` wrote it in this transaction or found it
    # written in this block (the `fresh` bitmap of `_refresh_stale`)
    if (adds or new_hdr & c.ACCOUNT_PORTFOLIO != 0) and mode == TRADE_CHECKED:
        self._check_after_trade(account, new_hdr, m, size, adds, 1 << m)
    # closing the last position must not leave a debt no liquidation can reach: an
    # underwater account keeps its positions until a liquidation settles the deficit
    if packing._position_count(new_hdr) == 0 and state._balance[account][0] < 0:
        self._check_initial(account, new_hdr, "clearinghouse: close leaves negative equity")
    return fill


@internal
def _fill(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    counterparty: uint256,
    fee: uint256,
) -> uint256:
    """
    @dev THE settlement path: `account` trades `delta` at `price` with `counterparty`
         (state.POOL for the vault, else another account, which takes -delta). Each side
         settles funding, realises PnL against the pool, and updates open interest and
         the pool's sums; `account` pays `fee` (`_settle_side`). `pw`: `account`'s
         position word in `m` as stored (the caller has read it). Returns `account`'s
         new header.
    """
    new_hdr: uint256 = self._settle_logged(
        account, hdr, m, pw, delta, price, index, counterparty, fee
    )
    if counterparty != state.POOL:
        self._settle_logged(
            counterparty,
            state._header[counterparty],
            m,
            state._pos[counterparty][m], -delta,
            price,
            index,
            account,
            0,
        )
    return new_hdr


@internal
def _settle_logged(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    counterparty: uint256,
    fee: uint256,
) -> uint256:
    """
    @dev `_settle_side` and its `Fill` event (`pw`: the position word, as stored).
         Returns the new header.
    """
    new_hdr: uint256 = 0
    realized: int256 = 0
    funding_paid: int256 = 0
    new_size: int256 = 0
    new_hdr, realized, funding_paid, new_size = self._settle_side(
        account, hdr, m, pw, delta, price, index, fee
    )
    log state.Fill(
        account=account,
        market=m,
        counterparty=counterparty,
        size_delta=delta,
        price=price,
        fee=fee,
        realized_pnl=realized,
        funding_paid=funding_paid,
        size=new_size,
    )
    return new_hdr


@internal
def _settle_side(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    fee: uint256,
) -> (uint256, int256, int256, int256):
    """
    @dev One side of a fill, without its event (the caller logs it: `_settle_logged`'s
         `Fill`; a matched fill settles through `_settle_account`, the same arithmetic). `pw` is the
         account's position word in `m` as stored (`state._pos[account][m]`: callers
         have read it for their own checks). Returns (new header, realised PnL, funding
         paid, position size after).
    """
    size: int256 = packing._pos_size(pw)
    cost: int256 = packing._pos_cost(pw)
    funding_paid: int256 = 0
    old_snap: int256 = index
    if size != 0:
        d: int256 = packing._pos_funding_delta(pw, index)
        old_snap = index - d
        funding_paid = positions._funding_owed(size, d)
    new_size: int256 = 0
    new_cost: int256 = 0
    realized: int256 = 0
    new_size, new_cost, realized = positions._apply_fill(size, cost, delta, price)
    cash: int256 = realized - funding_paid
    # the trading fee, in the same two writes: it accrues in the pool word until
    # `state._sweep_fees` splits it between insurance, protocol and vault
    if cash != 0 or fee != 0:
        state._balance[account][0] += cash - convert(fee, int256)
        pool: uint256 = state._pool
        state._pool = packing._pack_pool(packing._lo_i128(pool) - cash, (pool >> 128) + fee)
    # pool sums: sum of cost bases and of size * funding snapshot over trader positions.
    # The snapshot sum rounds up (toward +inf) at every step, so the funding the vault
    # books as receivable (skew x index, rounded down, minus this sum) never exceeds what
    # the accounts owe (each rounded up): rounding dust stays in the protocol.
    sums: uint256 = state._pool_sums[m]
    state._pool_sums[m] = packing._pack_i128(
        packing._lo_i128(sums) + new_cost - cost,
        packing._hi_i128(sums)
        + fp._div_ceil(new_size * index - size * old_snap, packing.PICO_PER_USD),
    )
    oi: uint256 = state._oi[m]
    long_oi: int256 = convert(oi << 128 >> 128, int256)
    short_oi: int256 = convert(oi >> 128, int256)
    if size > 0:
        long_oi -= size
    else:
        short_oi += size
    if new_size > 0:
        long_oi += new_size
    else:
        short_oi -= new_size
    state._oi[m] = packing._pack_u128(convert(long_oi, uint256), convert(short_oi, uint256))
    if new_size == 0:
        state._pos[account][m] = 0
    else:
        state._pos[account][m] = packing._pack_pos(new_size, new_cost, index)
    new_hdr: uint256 = packing._with_position(hdr, m, new_size != 0)
    if new_hdr != hdr:
        state._header[account] = new_hdr
    return new_hdr, realized, funding_paid, new_size


@internal
def _settle_account(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    fee: uint256,
) -> (uint256, int256, int256, int256, int256, int256):
    """
    @dev One side of a matched fill (ClearinghouseOrders.settle): `_settle_side`'s
         account part (funding, PnL, fee, position, header) without the market's shared
         words, which the fill's two sides (one market) update once: the pool's cash goes
         down by (realised PnL - funding paid) of each side and its pending fees up by
         the fees; the pool sums and open interest as `_settle_side` moves them. Same
         arithmetic and rounding as `_settle_side` (keep the two in step). Returns (new
         header, realised PnL, funding paid, position size after, cost-basis change,
         funding-snapshot-sum change).
    """
    size: int256 = packing._pos_size(pw)
    cost: int256 = packing._pos_cost(pw)
    funding_paid: int256 = 0
    old_snap: int256 = index
    if size != 0:
        d: int256 = packing._pos_funding_delta(pw, index)
        old_snap = index - d
        funding_paid = positions._funding_owed(size, d)
    new_size: int256 = 0
    new_cost: int256 = 0
    realized: int256 = 0
    new_size, new_cost, realized = positions._apply_fill(size, cost, delta, price)
    cash: int256 = realized - funding_paid
    if cash != 0 or fee != 0:
        state._balance[account][0] += cash - convert(fee, int256)
    if new_size == 0:
        state._pos[account][m] = 0
    else:
        state._pos[account][m] = packing._pack_pos(new_size, new_cost, index)
    new_hdr: uint256 = packing._with_position(hdr, m, new_size != 0)
    if new_hdr != hdr:
        state._header[account] = new_hdr
    return (
        new_hdr,
        realized,
        funding_paid,
        new_size,
        new_cost - cost,
        fp._div_ceil(new_size * index - size * old_snap, packing.PICO_PER_USD),
    )


@internal
@view
def _require_can_add_risk(m: uint256, p: packing.MarketParams, flags: uint256):
    # pausable.paused, from its copy in the system word (governance keeps them in step;
    # the bits above it are zero: a shift, a short push, bytecode)
    sw: uint256 = state._system
    assert sw >> packing.SYSTEM_PAUSED_SHIFT == 0, "clearinghouse: paused"
    assert not p.paused, "clearinghouse: market paused"
    # `_require_valid_price` without its quorum assert: both callers (`_pool_trade`,
    # ClearinghouseOrders' settle) assert quorum on these flags before they come here
    assert flags & c.FLAG_SEQUENCER_DOWN == 0, "clearinghouse: sequencer down"
    assert flags & c.FLAG_SEQUENCER_GRACE == 0, "clearinghouse: sequencer grace period"
    book: address = packing._system_book(sw)
    assert book != empty(address), "clearinghouse: no risk book"
    # n_markets is the header word's low byte (margin._header), without the struct
    assert (
        m < margin._book_word(book, 0) & margin.MASK_8
    ), "clearinghouse: market not in risk book"


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
@view
def _check_caps(
    m: uint256,
    max_oi: uint256,
    max_exposure: uint256,
    old_oi: uint256,
    skew: int256,
    new_skew: int256,
    price: uint256,
):
    """
    @dev Open-interest cap per side that grows, and the vault's exposure cap when the
         fill moves |skew| up (whether the account adds or reduces; a reduce the cap
         refuses can close with `close_with_adl`, modules/vault_limits.vy). `max_oi` and
         `max_exposure`: the market's MarketParams fields (two words, not the struct).
    """
    oi: uint256 = state._oi[m]
    long_oi: uint256 = oi << 128 >> 128
    short_oi: uint256 = oi >> 128
    if long_oi > old_oi << 128 >> 128:
        assert long_oi <= max_oi, "clearinghouse: open interest cap reached"
    if short_oi > old_oi >> 128:
        assert short_oi <= max_oi, "clearinghouse: open interest cap reached"
    # |skew| and |new_skew| are below 2**128 (each the difference of an OI word's halves,
    # the new one just packed) and price <= MAX_PRICE < 2**88: no overflow below
    abs_new: uint256 = convert(convert(new_skew, bytes32), uint256)
    if new_skew < 0:
        abs_new = convert(convert(unsafe_sub(0, new_skew), bytes32), uint256)
    abs_old: uint256 = convert(convert(skew, bytes32), uint256)
    if skew < 0:
        abs_old = convert(convert(unsafe_sub(0, skew), bytes32), uint256)
    if abs_new > abs_old:
        # against pool equity, cheaply and conservatively: cash plus the pool's unrealised
        # loss in this market at the fill's skew (the words are warm): the one rule LP
        # exits and auto-deleveraging measure too (state._exposure_limit). The other
        # markets and the bad-debt provision count in auto-deleveraging
        # (modules/vault_limits.vy), which restores the cap against full equity as well.
        assert unsafe_div(unsafe_mul(abs_new, price), c.WAD) <= state._exposure_limit(
            m, new_skew, price, max_exposure
        ), c.VAULT_CAP_REACHED


@internal
def _check_after_trade(
    account: uint256, hdr: uint256, m: uint256, old_size: int256, adds: bool, fresh: uint256 = 0
):
    """
    @dev A trade must leave the account at or above initial margin, unless it is
         reduce-only and does not raise the requirement (portfolio mode, where closing a
         hedge leg can raise it). A trade that adds (opens, grows or flips a position)
         must also leave equity at or above the account's loss cap. `fresh`: as
         `_refresh_stale`'s.
    """
    # an adding trade of a capped account is valued at fresh marks (every position
    # market re-read), as the trigger values it: a stale mark must not let an
    # account below its floor add risk (review finding L1)
    # ACCOUNT_LOSS_CAP: the account has a loss cap (no read of it without one)
    capped: bool = hdr & c.ACCOUNT_LOSS_CAP != 0
    self._refresh_stale(hdr, adds and capped, fresh)
    s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
    if s.equity >= convert(s.initial, int256):
        # below its loss cap an account only reduces: a trade that opens, grows or flips
        # a position must leave equity >= the floor (`_below_loss_cap`, inlined for
        # bytecode; equity >= initial >= 0 here, so its bits read as a uint256). The
        # close-out (reduce_only) never comes here.
        if adds and capped:
            assert convert(convert(s.equity, bytes32), uint256) >= state.loss_cap[account], (
                "clearinghouse: below loss cap, reduce only"
            )
        return
    # one revert string for both refusals (bytecode); `and` short-circuits, so an adding
    # trade is refused without the second scan
    assert (
        not adds and s.initial <= self._scan(account, hdr, False, False, m, old_size).initial
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
    self._refresh_stale(hdr)
    s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
    assert s.equity >= convert(s.initial, int256), reason


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
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 1:
            m: uint256 = state.collateral_market[i]
            if packing._mark_time(state._mark[m]) + age < block.timestamp:
                self._touch_quorum(m)


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
        # inline margin._isolated (same formula, same rounding); margin_scale != 0 is
        # enforced when a book is published
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
        worth: uint256 = fp._mul_div(
            convert(bal, uint256),
            price * (c.WAD - state.collateral_haircut[i]),
            c.WAD * c.WAD,
            False,
        )
        value += convert(worth, int256)
    return value


@internal
def _pay_out(receiver: address, amount: uint256):
    """
    @dev Transfers `amount` USD WAD (rounded down to token units) of settlement token.
    """
    units: uint256 = amount // state.SETTLEMENT_SCALE
    if units == 0:
        return
    state.collateral_held[0] -= units
    assert extcall IERC20(state.collateral_token[0]).transfer(
        receiver, units, default_return_value=True
    ), "clearinghouse: transfer failed"
    # the WAD remainder below one token unit stays with the protocol
    dust: uint256 = amount - units * state.SETTLEMENT_SCALE
    if dust != 0:
        state._treasury += dust << 128


@internal
@pure
def _owner(account: uint256) -> address:
    return convert(account >> 96, address)


@internal
@view
def _require_exists(account: uint256) -> uint256:
    hdr: uint256 = state._header[account]
    assert hdr & c.ACCOUNT_EXISTS != 0, "clearinghouse: unknown account"
    return hdr


@internal
@view
def _require_owner(account: uint256) -> uint256:
    hdr: uint256 = self._require_exists(account)
    assert msg.sender == self._owner(account), "clearinghouse: not account owner"
    return hdr


@internal
@pure
def _require_active(hdr: uint256):
    """
    @dev The account (its header `hdr`) is not in a liquidation: one copy of the check
         for the cold paths (bytecode: the Risk half holds several).
    """
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"


@internal
@view
def _require_trader_any(account: uint256) -> uint256:
    """
    @dev The sender is the account's owner or an operator; the account's header. For the
         actions a pending delayed order does not freeze (committing and cancelling
         delayed orders, cancelling signed orders).
    """
    hdr: uint256 = self._require_exists(account)
    assert (
        msg.sender == self._owner(account) or state.is_operator[account][msg.sender]
    ), "clearinghouse: not authorized"
    return hdr


@internal
@view
def _require_trader(account: uint256) -> uint256:
    """
    @dev `_require_trader_any`, and no delayed order of the account pending
         (`_require_idle`): the check of every owner or operator trade.
    """
    hdr: uint256 = self._require_exists(account)
    assert (
        msg.sender == self._owner(account) or state.is_operator[account][msg.sender]
    ), "clearinghouse: not authorized"
    # `_require_idle`, inline (bytecode: the hot half has no other use of it)
    assert hdr << 152 >> 216 < block.timestamp, "clearinghouse: delayed order pending"
    return hdr


@internal
@view
def _require_idle(hdr: uint256) -> uint256:
    """
    @dev Refuses what the account's owner or operators start or signed while a delayed
         order of the account may still settle (review 4, R4-2): a trade or fill in any
         market, a withdrawal or transfer out, a loss-cap or margin-mode change. Each
         could make the order's settlement fail once its price is known, a free option;
         so until it settles, is cancelled before its window or expires, only deposits
         come in (Synthetix v3 freezes an account with a pending order the same way).
         Liquidations, auto-deleveraging and loss-cap close-outs do not come here.
         Returns `hdr`.
    """
    # packing._pending_until, inline: bits 64-103
    assert hdr << 152 >> 216 < block.timestamp, "clearinghouse: delayed order pending"
    return hdr


@internal
@view
def _token_index(token: address) -> uint256:
    idx: uint256 = state._collateral_index[token]
    assert idx != 0, "clearinghouse: unknown token"
    return idx - 1


# --- self-only entry points (exported by the Clearinghouse, called by its extensions) ---


@internal
@view
def _only_self():
    assert msg.sender == self, "clearinghouse: internal entry point"


@external
def engine_touch(market: uint256) -> (uint256, uint256, int256):
    """
    @notice Self-only: reads the oracle for `market` and accrues funding.
    @return (price, oracle flags, funding index).
    """
    self._only_self()
    assert market < state.market_count, "clearinghouse: unknown market"
    return self._touch(market)


@external
def engine_refresh_account(account: uint256, stale_only: bool):
    """
    @notice Self-only: refreshes the marks of every market the account holds (positions
            and collateral), or only the stale ones. Reverts if one lacks price quorum:
            nothing (liquidation steps, loss-cap close-outs) may value the account then.
    """
    self._only_self()
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
    self._refresh_all(self._require_exists(account))


@internal
def _refresh_all(hdr: uint256):
    """
    @dev Touches every position market with quorum, then the collateral markets.
    """
    bitmap: uint256 = packing._positions_bitmap(hdr)
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1:
            self._touch_quorum(m)
    self._refresh_collateral_marks(hdr)


@external
def engine_check_initial(account: uint256, reason: String[64], strict: bool):
    """
    @notice Self-only: the margin gate (equity >= initial requirement at fresh marks).
            `strict` (withdrawals, transfers out, mode switches) first re-reads the
            oracle for every market the account holds and refuses degraded prices or a
            sequencer that is down or in its grace period: taking collateral out adds
            risk. Liquidation takers are checked without it.
    """
    self._only_self()
    hdr: uint256 = state._header[account]
    if strict and (packing._position_count(hdr) != 0 or packing._collateral_bitmap(hdr) != 0):
        bitmap: uint256 = packing._positions_bitmap(hdr)
        for m: uint256 in range(c.MAX_MARKETS):
            rest: uint256 = bitmap >> m
            if rest == 0:
                break
            if rest & 1 == 1:
                self._require_valid_price(self._touch(m)[1])
        cbits: uint256 = packing._collateral_bitmap(hdr)
        for i: uint256 in range(1, c.MAX_COLLATERALS):
            if cbits >> i == 0:
                break
            if (cbits >> i) & 1 == 1:
                self._require_valid_price(self._touch(state.collateral_market[i])[1])
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
    self._only_self()
    hdr: uint256 = state._header[account]
    if adds or hdr & c.ACCOUNT_PORTFOLIO != 0:
        self._check_after_trade(account, hdr, market, old_size, adds, fresh)
    if worse and not adds:
        self._refresh_stale(hdr, False, fresh)
        s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
        # value moved out at a worse price is a transfer out (R4-4): `_below_loss_cap`
        assert s.equity >= convert(s.maintenance, int256) and not self._below_loss_cap(
            account, s.equity
        ), "clearinghouse: off-oracle fill below maintenance or loss cap"


@external
def engine_pool_trade(
    account: uint256,
    market: uint256,
    size_delta: int256,
    acceptable_price: uint256,
    mode: uint256,
) -> uint256:
    """
    @notice Self-only: a market order against the vault's pool through the settlement path.
    @param mode TRADE_CHECKED, TRADE_REDUCE_ONLY or TRADE_DEFERRED (margin checks left to
           the caller, which checks the final book).
    @return The fill price.
    """
    self._only_self()
    return self._pool_trade(
        account, state._header[account], market, size_delta, acceptable_price, mode
    )


@external
def engine_fill(
    account: uint256,
    counterparty: uint256,
    market: uint256,
    size_delta: int256,
    price: uint256,
    fee: uint256,
):
    """
    @notice Self-only: `account` trades `size_delta` with `counterparty` (POOL = the vault)
            at `price`, through the one settlement path, paying `fee` (logged in its
            Fill). Used by liquidation transfers and loss-cap close-outs.
    """
    self._only_self()
    mw: uint256 = state._mark[market]
    self._fill(
        account,
        state._header[account],
        market,
        state._pos[account][market],
        size_delta,
        price,
        packing._mark_index(mw),
        counterparty,
        fee,
    )
