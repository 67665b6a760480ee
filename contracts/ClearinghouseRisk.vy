# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse vault-limits half
@custom:contract-name ClearinghouseRisk
@license MIT
@notice Executed only by delegatecall (Clearinghouse -> ClearinghouseOps ->
        ClearinghouseAdmin -> ClearinghouseOrders -> here -> ClearinghouseTreasury; its own
        storage is never used): auto-deleveraging and the vault's limits across markets
        (modules/vault_limits.vy), and multi-leg market orders (`trade_multi`), in a half
        of their own for bytecode room. Call these functions on the Clearinghouse address
        with this contract's ABI; they return nothing (the limits' getters are on
        ClearinghouseOps).
"""

from snekmate.auth import access_control
from snekmate.utils import pausable
from .interfaces import IOracleRouter
from .interfaces import IClearinghouseEngine
from .modules import state
from .modules import guards
from .modules import marks
from .modules import settlement
from .modules import treasury
from .modules import gates
from .modules import trading
from .modules import accounts
from .modules import vault_limits
from .modules import order_hash as oh
from .modules import constants as c
from .modules import packing
from .modules import positions
from .modules import conditional
from .modules import delayed

initializes: access_control
initializes: pausable
initializes: state
initializes: guards[state := state]
initializes: marks[state := state, guards := guards]
initializes: treasury[state := state, access_control := access_control]
initializes: settlement[state := state, treasury := treasury]
initializes: gates[state := state, marks := marks]
initializes: trading[
    state := state, guards := guards, marks := marks, settlement := settlement, gates := gates
]
initializes: accounts[
    state := state, guards := guards, settlement := settlement, gates := gates, treasury := treasury
]
initializes: vault_limits[state := state, guards := guards]
initializes: oh[state := state]
initializes: conditional[
    state := state, guards := guards, settlement := settlement, accounts := accounts, oh := oh
]
# delayed vault orders (modules/delayed.vy)
initializes: delayed[
    state := state, guards := guards, settlement := settlement, access_control := access_control
]
exports: (
    delayed.commit_order,
    delayed.settle_order,
    delayed.cancel_delayed_order,
)

exports: (
    vault_limits.auto_deleverage,
    vault_limits.close_with_adl,
    # conditional orders (stop-market, stop-limit, take-profit): modules/conditional.vy
    conditional.execute_order,
)


interface IExtension:
    def extension_config() -> (address, address): view


# @notice Treasury half, reached by delegatecall for selectors not exported here.
TREASURY: public(immutable(address))


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address, treasury_half: address):
    """
    @param oracle Must equal the Clearinghouse's oracle.
    @param settlement_token Must equal the Clearinghouse's settlement token.
    @param treasury_half A `ClearinghouseTreasury` deployed with the same oracle and token.
    """
    ext_oracle: address = empty(address)
    ext_token: address = empty(address)
    ext_oracle, ext_token = staticcall IExtension(treasury_half).extension_config()
    assert (
        ext_oracle == oracle.address and ext_token == settlement_token
    ), "clearinghouse: extension mismatch"
    TREASURY = treasury_half
    access_control.__init__()
    pausable.__init__()
    state.__init__(oracle, settlement_token)


@external
@view
def extension_config() -> (address, address):
    """
    @notice The oracle and settlement token this code half was built for.
    """
    return state.ORACLE.address, state.collateral_token[0]


@external
def __default__():
    """
    @notice Forwards the remaining selectors to ClearinghouseTreasury by delegatecall.
    """
    raw_call(TREASURY, msg.data, is_delegate_call=True)


@external
def cancel_order(order: oh.Order):
    """
    @notice Cancels one signed order (owner or operator): its nonce is consumed, so no
            order of the account with that nonce can fill afterwards.
    @param order The order as signed (perpdex/sdk/orders.py `Order.as_message`).
    """
    guards._require_trader_any(order.account)
    nonce: uint256 = convert(order.nonce, uint256)
    # in the header's replay window or in its order_bits word (order_hash, review 8)
    oh._set_replay_bits(order.account, nonce, oh.ORDER_DONE)
    log state.OrderCancelled(
        account=order.account, nonce=nonce, order=oh._digest(oh._domain(), order)
    )


# --- multi-leg market orders (issue 12 item 5) ------------------------------------------

# @notice Most legs one `trade_multi` takes.
MAX_LEGS: constant(uint256) = 8


struct Leg:
    market: uint256
    size_delta: int256
    acceptable_price: uint256


@external
def trade_multi(account: uint256, legs: DynArray[Leg, c.MAX_MARKETS]):
    """
    @notice Several market orders of one sub-account against the liquidity vault in one
            transaction, margin-checked once, on the final book. Each leg settles exactly
            like `trade` (fill price, fee, caps, price quorum, minimum position size, its
            acceptable price) and logs its Fill. Then: if any leg opens, grows or flips a
            position, the account must end at or above initial margin and its loss cap;
            if every leg reduces, a portfolio account must end at or above initial margin
            or with a requirement no higher than before (the rules of `trade`).
    @param legs (market, size_delta, acceptable_price) per leg, at most MAX_LEGS, each
           market once; sizes and prices as in `trade`.
    @dev Owner or operator only. Legs fill in the order given; they are on distinct
         markets, so no leg's price depends on another's.
    """
    hdr: uint256 = guards._require_trader(account)
    guards._require_active(hdr)
    assert len(legs) != 0, "clearinghouse: no legs"
    assert len(legs) <= MAX_LEGS, "clearinghouse: too many legs"
    seen: uint256 = 0
    adds: bool = False
    for leg: Leg in legs:
        assert leg.size_delta != 0, "clearinghouse: zero size"
        assert leg.market < state.market_count, "clearinghouse: unknown market"
        assert not packing._has_bit(seen, leg.market), "clearinghouse: market twice"
        seen = packing._with_bit(seen, leg.market)
        # distinct markets: each leg meets the position held before the order
        if positions._adds(packing._pos_size(state._pos[account][leg.market]), leg.size_delta):
            adds = True
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    reduce_rule: bool = not adds and hdr & c.ACCOUNT_PORTFOLIO != 0
    before: uint256 = 0
    if reduce_rule:
        # the requirement before, at the marks the final check reads: the legs' markets
        # read now (their fills reuse these marks) and every stale mark re-read
        for leg: Leg in legs:
            extcall core.engine_touch(leg.market)
        extcall core.engine_refresh_account(account, True)
        before = (staticcall core.account_margin(account))[1]
    for leg: Leg in legs:
        extcall core.engine_pool_trade(
            account, leg.market, leg.size_delta, leg.acceptable_price, trading.TRADE_DEFERRED
        )
    if adds or reduce_rule:
        # gates._check_after_trade's rule, on the final book: fresh marks (every
        # position's when an adding order meets a loss cap; nothing went stale since
        # `before`, same block), then initial margin, or for reduces a requirement no
        # higher than before; an order that adds must also leave equity at its loss cap
        extcall core.engine_refresh_account(account, not adds or state.loss_cap[account] == 0)
        equity: int256 = 0
        initial: uint256 = 0
        maintenance: uint256 = 0
        isolated: uint256 = 0
        notional: uint256 = 0
        equity, initial, maintenance, isolated, notional = staticcall core.account_margin(account)
        assert equity >= convert(initial, int256) or (
            not adds and initial <= before
        ), "clearinghouse: below initial margin"
        assert not (adds and gates._below_loss_cap(account, equity)), (
            "clearinghouse: below loss cap, reduce only"
        )
    # closing the last position must not leave a debt no liquidation can reach
    if packing._position_count(state._header[account]) == 0 and state._balance[account][0] < 0:
        extcall core.engine_check_initial(
            account, "clearinghouse: close leaves negative equity", False
        )
