# pragma version ~=0.4.3
"""
@title Market orders, mark refreshes and loss-cap close-outs
@custom:contract-name trading
@license MIT
@notice Entry points that trade against the vault's pool through the one settlement
        path in modules/engine.vy. Loss-cap close-outs are forced trades whose timing the
        caller controls: they fill at the oracle price and their size per market per
        window is bounded by the fees a sandwich must pay (`_forced_limit`).
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import engine
from . import constants as c
from . import packing
from . import pricing

uses: state
uses: engine


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
    hdr: uint256 = engine._require_trader(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    return engine._pool_trade(
        account, hdr, market, size_delta, acceptable_price, engine.TRADE_CHECKED
    )


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
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    bitmap: uint256 = packing._positions_bitmap(hdr)
    assert bitmap != 0, "clearinghouse: no positions"
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    extcall core.engine_refresh_account(account, False)
    equity: int256 = (staticcall core.account_margin(account))[0]
    assert engine._below_loss_cap(account, equity), "clearinghouse: equity above loss cap"
    closed: bool = False
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1:
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
    engine._pay_out(msg.sender, fee)
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
    engine._require_valid_price(flags)
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
