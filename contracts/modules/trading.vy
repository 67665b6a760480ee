# pragma version ~=0.4.3
"""
@title Market orders: the pool trade, its caps and gates, and loss-cap close-outs
@custom:contract-name trading
@license MIT
@notice `_pool_trade` trades against the vault's pool through the one settlement path
        (modules/settlement.vy): price quorum, the can-add-risk gate, open-interest and
        vault caps (`_check_caps`), then the margin gate (modules/gates.vy) unless the
        caller checks the final book. Loss-cap close-outs are forced trades whose timing the
        caller controls: they fill at the oracle price and their size per market per
        window is bounded by the fees a sandwich must pay (`_forced_limit`).
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import guards
from . import marks
from . import settlement
from . import gates
from . import constants as c
from . import packing
from . import pricing
from . import margin
from . import positions

uses: state
uses: guards
uses: marks
uses: settlement
uses: gates

# `_pool_trade` modes. CHECKED: a market order, margin-checked after its fill. REDUCE_ONLY:
# a loss-cap close-out, refused if it adds, not margin-checked (it closes every leg in
# turn). DEFERRED: one leg of a multi-leg order (ClearinghouseRisk.trade_multi), which
# checks the final book once after its last leg instead.
TRADE_CHECKED: constant(uint256) = 0
TRADE_REDUCE_ONLY: constant(uint256) = 1
TRADE_DEFERRED: constant(uint256) = 2


@external
def trade(
    account: uint256, market: uint256, size_delta: int256, acceptable_price: uint256
) -> uint256:
    """
    @notice Market order against the liquidity vault at the oracle price plus the skew
            premium, plus the maker/taker fee.
    @param size_delta Signed base units (WAD): positive buys, negative sells.
    @param acceptable_price Worst fill price accepted (WAD): a ceiling for buys, a floor
           for sells.
    @return The fill price (WAD).
    @dev An order that opens, grows or flips a position must leave the account at or
         above initial margin and at or above its loss cap.
    """
    hdr: uint256 = guards._require_trader(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    return self._pool_trade(account, hdr, market, size_delta, acceptable_price, TRADE_CHECKED)


@external
def refresh(markets: DynArray[uint256, c.MAX_MARKETS]):
    """
    @notice Reads the oracle for each market and accrues funding (keepers call this so
            margin checks find fresh marks).
    """
    assert len(markets) != 0, "clearinghouse: no markets"
    for m: uint256 in markets:
        assert m < state.market_count, "clearinghouse: unknown market"
        extcall IClearinghouseEngine(self).engine_touch(m)


# @notice Length of a loss-cap window (seconds): forced close-outs in one market add up
#         to at most `_forced_limit` per window.
LOSS_CAP_WINDOW: constant(uint256) = 60


@internal
@pure
def _forced_limit(p: packing.MarketParams) -> uint256:
    """
    @dev Largest base size the loss-cap close-out may force through one market in one
         window: 2 x min(maker_fee, taker_fee) x skew_scale.
         Why: the caller chooses when a forced trade happens, so it can wrap it. A round
         trip of size S around a forced fill of size L (sell S, force L, buy S back, or the
         mirror image) gains the premium the forced fill moved, S x P x L / skew_scale
         (the fill price is P x (1 + (2K + d) / 2S_k), linear in the skew), and pays at
         least the maker fee on both legs, 2 x S x P x min(maker, taker). With
         L <= 2 x min(maker, taker) x skew_scale the gain never exceeds the fees, whatever
         S. The forced fill itself is at the oracle price (no premium to push): the
         sandwich can capture only the skew move, and that is bounded here. The rest of
         a position closes in later windows (Synthetix v3 bounds liquidations the same
         way, by (maker + taker) x skew_scale per window).
    """
    return 2 * min(p.maker_fee, p.taker_fee) * p.skew_scale // c.WAD


@external
@nonreentrant
def trigger_loss_cap(account: uint256):
    """
    @notice Closes the positions of an account whose equity is below its loss cap,
            reduce-only against the vault, at the oracle price (no skew premium), paying
            the maker/taker fee. Per market, forced closes add up to at most
            2 x min(maker_fee, taker_fee) x skew_scale per 60 s window (`_forced_limit`
            explains why a sandwich then cannot pay); what is left closes in later calls.
            The caller earns `loss_cap_fee` (at most the account's remaining settlement
            balance), paid in settlement tokens. Refuses prices that are degraded or a
            sequencer that is down or in grace.
    """
    equity_floor: uint256 = state.loss_cap[account]
    assert equity_floor != 0, "clearinghouse: no loss cap"
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    bitmap: uint256 = packing._positions_bitmap(hdr)
    assert bitmap != 0, "clearinghouse: no positions"
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    extcall core.engine_refresh_account(account, False)
    equity: int256 = (staticcall core.account_margin(account))[0]
    assert gates._below_loss_cap(account, equity), "clearinghouse: equity above loss cap"
    closed: bool = False
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if packing._has_bit(bitmap, m):
            closed = self._force_close(account, m) or closed
    assert closed, "clearinghouse: loss-cap window used up"
    hdr = state._header[account]
    # no silent bad debt: closing the last position must not leave negative equity
    if packing._position_count(hdr) == 0 and state._balance[account][0] < 0:
        extcall core.engine_check_initial(
            account, "clearinghouse: close leaves negative equity", False
        )
    fee: uint256 = min(state.loss_cap_fee, convert(max(state._balance[account][0], 0), uint256))
    state._balance[account][0] -= convert(fee, int256)
    settlement._pay_out(msg.sender, fee)
    log state.LossCapTriggered(
        account=account, keeper=msg.sender, equity=equity, equity_floor=equity_floor, fee=fee
    )


@internal
def _force_close(account: uint256, m: uint256) -> bool:
    """
    @dev Closes as much of the account's position in market `m` as the market's window
         allows, at the oracle price just read; returns whether anything closed.
    """
    p: packing.MarketParams = packing._unpack_params(state._params[m])
    w: uint256 = state.loss_cap_window[m]
    used: uint256 = w & packing.MASK_128
    if (w >> 128) + LOSS_CAP_WINDOW <= block.timestamp:
        used = 0
        w = block.timestamp << 128
    limit: uint256 = self._forced_limit(p)
    if used >= limit:
        return False
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = extcall IClearinghouseEngine(self).engine_touch(m)
    marks._require_valid_price(flags)
    pos: int256 = packing._pos_size(state._pos[account][m])
    size: uint256 = convert(abs(pos), uint256)
    amount: uint256 = min(size, limit - used)
    # no dust: a rest worth less than MIN_POSITION_NOTIONAL closes with the window's part
    # (the window overshoots by under that much base, whose premium is cents)
    if (size - amount) * price < c.MIN_POSITION_NOTIONAL * c.WAD:
        amount = size
    delta: int256 = convert(amount, int256)
    if pos > 0:
        delta = -delta
    state.loss_cap_window[m] = (w >> 128 << 128) | (used + amount)
    oi: uint256 = state._oi[m]
    skew: int256 = convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)
    fee: uint256 = pricing._fee(price, skew, delta, p.maker_fee, p.taker_fee)
    extcall IClearinghouseEngine(self).engine_fill(account, state.POOL, m, delta, price, fee)
    return True


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
    price, flags, index = marks._touch_with(m, p, True, pw)
    # no fill of any kind (reduce-only and loss-cap close-outs included) without quorum
    marks._require_quorum(flags)
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
    # market `m`'s risk-book word 0 (read when the trade adds: `gates._lone_isolated_margin`)
    w0: uint256 = 0
    if adds:
        w0 = self._require_can_add_risk(m, p, flags)
    oi: uint256 = state._oi[m]
    skew: int256 = packing._oi_skew(oi)
    fill: uint256 = pricing._fill_price(price, skew, delta, p.skew_scale)
    if delta > 0:
        assert fill <= acceptable, "clearinghouse: price worse than acceptable"
    else:
        assert fill >= acceptable, "clearinghouse: price worse than acceptable"
    fee: uint256 = pricing._fee(fill, skew, delta, p.maker_fee, p.taker_fee)
    new_hdr: uint256 = settlement._fill(
        account, hdr, m, pos_word, delta, fill, index, state.POOL, fee
    )
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
        gates._check_after_trade(account, new_hdr, m, size, adds, 1 << m, w0)
    # closing the last position must not leave a debt no liquidation can reach: an
    # underwater account keeps its positions until a liquidation settles the deficit
    if packing._position_count(new_hdr) == 0 and state._balance[account][0] < 0:
        gates._check_initial(account, new_hdr, "clearinghouse: close leaves negative equity")
    return fill


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
@view
def _require_can_add_risk(m: uint256, p: packing.MarketParams, flags: uint256) -> uint256:
    """
    @dev Whether risk may be added in market `m` (not paused, sequencer up and out of
         grace, the market in the risk book); returns the market's risk-book word 0.
    """
    # pausable.paused and market `m`'s word 0 of the risk book, from their copies in the
    # market's risk word (governance keeps them in step; one cold read, not the system
    # word and the book's code): a test of the named pause bit
    rw: uint256 = state._risk[m]
    assert rw & packing.SYSTEM_PAUSED_BIT == 0, "clearinghouse: paused"
    assert not p.paused, "clearinghouse: market paused"
    # `_require_valid_price` without its quorum assert: both callers (`_pool_trade`,
    # ClearinghouseOrders' settle) assert quorum on these flags before they come here
    assert flags & c.FLAG_SEQUENCER_DOWN == 0, "clearinghouse: sequencer down"
    assert flags & c.FLAG_SEQUENCER_GRACE == 0, "clearinghouse: sequencer grace period"
    # m < n_markets exactly when its word 0 is not zero: a listed market's imr_min is not
    # zero and `set_risk_book` keeps the other slots empty; with the pause bit clear the
    # risk word is that word 0. Which refusal (no book at all, or not in it): off the
    # hot path
    if rw == 0:
        assert packing._system_book(state._system) != empty(address), (
            "clearinghouse: no risk book"
        )
        raise "clearinghouse: market not in risk book"
    return rw


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
    guards._only_self()
    return self._pool_trade(
        account, state._header[account], market, size_delta, acceptable_price, mode
    )
