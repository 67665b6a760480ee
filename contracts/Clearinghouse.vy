# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse
@custom:contract-name Clearinghouse
@license MIT
@notice The cross-margin clearinghouse: accounts, collateral, perpetual positions and the
        settlement path every fill goes through. One address and one storage, six code
        halves, because the engine does not fit the 24 KB contract-size limit
        (docs/architecture.md weighs the options):
          Clearinghouse            the hot path: accounts, market orders, mark refreshes,
                                   views, and the settlement engine itself
          ClearinghouseOps         deposits, withdrawals, transfers, loss caps,
                                   liquidation hooks, cold getters
          ClearinghouseAdmin       governance: markets, collateral, fees, risk book,
                                   pause, margin modes
          ClearinghouseOrders      settlement of matched signed (EIP-712) orders
          ClearinghouseRisk        auto-deleveraging, multi-leg, conditional and delayed
                                   orders, signed-order cancels
          ClearinghouseTreasury    insurance, protocol fees, collateral sales, the
                                   vault's cash and limits
        A selector not exported here goes by delegatecall to Ops, from Ops to Admin, and
        on to Orders, Risk and Treasury; `settle` (a signed batch) goes to Orders at
        once: each hop copies the batch's calldata (~6 KB) and pays a cold delegatecall. contracts/interfaces/IClearinghouse.vyi is the
        union of all six: the one ABI of this address.
        The halves call the engine back through self-only entry points (`engine_*`), so it
        is compiled once. Extension functions return nothing through the proxy; their
        results are events and state read back through the views here.
@custom:security The extension addresses are immutable and checked at deployment to share
        the oracle and settlement token. Every half initialises access_control, pausable
        and state first, in that order, then only the modules it uses, which hold no
        storage, so their storage layouts are identical (a test compares the compiler's
        layouts). `engine_*` functions revert unless called by this contract.
"""

from snekmate.auth import access_control
from snekmate.utils import pausable
from .interfaces import IOracleRouter
from .modules import state
from .modules import guards
from .modules import marks
from .modules import settlement
from .modules import treasury
from .modules import gates
from .modules import accounts
from .modules import trading
from .modules import views

initializes: access_control
initializes: pausable
initializes: state
initializes: guards[state := state]
initializes: marks[state := state, guards := guards]
initializes: treasury[state := state, access_control := access_control]
initializes: settlement[state := state, treasury := treasury]
initializes: gates[state := state, marks := marks]
initializes: accounts[
    state := state, guards := guards, settlement := settlement, gates := gates, treasury := treasury
]
initializes: trading[
    state := state, guards := guards, marks := marks, settlement := settlement, gates := gates
]
initializes: views[state := state, gates := gates]

exports: (
    state.market_count,
    accounts.open_account,
    trading.trade,
    marks.engine_touch,
    marks.engine_refresh_account,
    marks.refresh_account,
    gates.engine_check_initial,
    trading.engine_pool_trade,
    settlement.engine_fill,
    views.account_header,
    views.balance_of,
    views.position,
    views.mark,
    views.open_interest,
    views.market_params,
    views.account_margin,
    views.margin_requirement,
    views.margin_at_twap,
    views.pool_cash,
    state.collateral_count,
    views.system_params,
)


interface IExtension:
    def extension_config() -> (address, address): view


interface IHalfChain:
    def ADMIN() -> address: view
    def ORDERS() -> address: view
    def RISK() -> address: view
    def TREASURY() -> address: view


# @notice Code half reached by delegatecall for every selector not exported here.
OPS: public(immutable(address))
# The signed-order half (Ops -> Admin -> Orders, read from the chain at deployment):
# `settle` is delegated to it directly, the same code the chain would reach.
ORDERS: immutable(address)
SETTLE: constant(bytes4) = method_id("settle(uint256[])", output_type=bytes4)
# The last half (Orders -> Risk -> Treasury): a signed fill's margin check off the common
# case (engine_check_fill, self-only) goes to it directly.
TREASURY: immutable(address)
CHECK_FILL: constant(bytes4) = method_id(
    "engine_check_fill(uint256,uint256,int256,bool,bool,uint256)", output_type=bytes4
)


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address, admin: address, ops: address):
    """
    @param oracle The oracle router.
    @param settlement_token Collateral index 0 (PnL, funding and fees settle in it).
    @param admin Receives the admin, risk and guardian roles.
    @param ops A `ClearinghouseOps` deployed with the same oracle and token.
    """
    assert admin != empty(address), "clearinghouse: zero admin"
    assert ops != empty(address), "clearinghouse: zero extension"
    ext_oracle: address = empty(address)
    ext_token: address = empty(address)
    ext_oracle, ext_token = staticcall IExtension(ops).extension_config()
    assert (
        ext_oracle == oracle.address and ext_token == settlement_token
    ), "clearinghouse: extension mismatch"
    access_control.__init__()
    pausable.__init__()
    state.__init__(oracle, settlement_token)
    OPS = ops
    ORDERS = staticcall IHalfChain(staticcall IHalfChain(ops).ADMIN()).ORDERS()
    TREASURY = staticcall IHalfChain(staticcall IHalfChain(ORDERS).RISK()).TREASURY()
    access_control._grant_role(access_control.DEFAULT_ADMIN_ROLE, admin)
    access_control._grant_role(state.RISK_ROLE, admin)
    access_control._grant_role(state.GUARDIAN_ROLE, admin)
    if admin != msg.sender:
        access_control._revoke_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)


@external
@raw_return
def __default__() -> Bytes[128]:
    """
    @notice Forwards every other call to ClearinghouseOps by delegatecall; its return data
            (the cold getters Ops exports; at most 128 bytes) and reverts bubble up.
            `settle` (ClearinghouseOrders; it returns nothing) goes to Orders directly,
            `engine_check_fill` (self-only, returns nothing) to Treasury.
    """
    # both take at least 196 bytes (engine_check_fill exactly, settle 388 and up): the
    # short calls (deposits, withdrawals, getters) skip the selector's copy
    if len(msg.data) >= 196:
        selector: bytes4 = convert(slice(msg.data, 0, 4), bytes4)
        if selector == SETTLE:
            raw_call(ORDERS, msg.data, is_delegate_call=True)
            return b""
        if selector == CHECK_FILL:
            raw_call(TREASURY, msg.data, is_delegate_call=True)
            return b""
    return raw_call(OPS, msg.data, max_outsize=128, is_delegate_call=True)
