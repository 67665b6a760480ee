# pragma version ~=0.4.3
"""
@title Market orders, mark refreshes and loss-cap close-outs
@custom:contract-name trading
@license MIT
@notice Entry points that trade against the vault's pool through the one settlement
        path in modules/engine.vy.
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import engine
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import pricing
from . import funding
from . import margin

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
    """
    hdr: uint256 = engine._require_trader(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    return engine._pool_trade(account, hdr, market, size_delta, acceptable_price, False)


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


@external
@nonreentrant
def trigger_loss_cap(account: uint256):
    """
    @notice Closes every position of an account whose equity is below its loss cap,
            reduce-only against the vault. The caller earns `loss_cap_fee` (at most the
            account's remaining settlement balance), paid in settlement tokens.
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
    assert equity < convert(equity_floor, int256), "clearinghouse: equity above loss cap"
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1:
            size: int256 = packing._pos_size(state._pos[account][m])
            bound: uint256 = max_value(uint256)
            if size > 0:
                bound = 0
            extcall core.engine_pool_trade(account, m, -size, bound, True)
    fee: uint256 = min(state.loss_cap_fee, convert(max(state._balance[account][0], 0), uint256))
    state._balance[account][0] -= convert(fee, int256)
    engine._pay_out(msg.sender, fee)
    log state.LossCapTriggered(
        account=account, keeper=msg.sender, equity=equity, equity_floor=equity_floor, fee=fee
    )
