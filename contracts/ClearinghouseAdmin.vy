# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse governance half
@custom:contract-name ClearinghouseAdmin
@license MIT
@notice Executed only by delegatecall (Clearinghouse -> ClearinghouseOps -> here; its own
        storage is never used): markets, collateral, fees, pausing and the risk book;
        and, for the other halves' bytecode room, the margin-mode switch, the signed
        orders' `cancel_below` and a contract wallet's (EIP-1271) order-signature check.
        Call
        these functions on the Clearinghouse address with this contract's ABI; they
        return nothing. Selectors not exported here go on, again by delegatecall, to
        ClearinghouseOrders (signed-order settlement).
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
from .modules import governance
from .modules import order_hash as oh

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
initializes: governance[
    state := state, access_control := access_control, pausable := pausable, treasury := treasury
]
initializes: oh[state := state]

exports: (
    # the owner's operator settings and kill switch for a bot (cold, so here for the hot
    # halves' room: set_operator moved off Ops when position_markets filled it)
    accounts.set_operator,
    accounts.revoke_operator,
    access_control.grantRole,
    access_control.revokeRole,
    access_control.renounceRole,
    governance.add_market,
    governance.set_market_params,
    governance.pause_market,
    governance.pause,
    governance.unpause,
    governance.add_collateral,
    governance.set_collateral_params,
    governance.set_fee_split,
    governance.set_max_mark_age,
    governance.set_loss_cap_fee,
    governance.set_vault,
    governance.set_risk_book_limits,
    governance.set_risk_book,
    governance.propose_risk_book,
    governance.set_risk_book_delay,
    # cold code moved off the full halves (bytecode room): the margin-mode switch off
    # Ops, and a contract wallet's signature check off Orders (self-only, reached by a
    # static call from order_hash._verify)
    accounts.set_margin_mode,
    # off Ops when the treasury module took every pool and treasury write (issue 10
    # item 1): the loss-cap setting and the keepers' mark refresh (both return nothing,
    # so Ops' __default__ reaches them here; one more delegatecall hop for a keeper)
    accounts.set_loss_cap,
    trading.refresh,
    oh.order_wallet_check,
)


interface IExtension:
    def extension_config() -> (address, address): view


# @notice Signed-order half, reached by delegatecall for selectors not exported here.
ORDERS: public(immutable(address))


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address, orders_half: address):
    """
    @param oracle Must equal the Clearinghouse's oracle.
    @param settlement_token Must equal the Clearinghouse's settlement token.
    @param orders_half A `ClearinghouseOrders` deployed with the same oracle and token.
    """
    ext_oracle: address = empty(address)
    ext_token: address = empty(address)
    ext_oracle, ext_token = staticcall IExtension(orders_half).extension_config()
    assert (
        ext_oracle == oracle.address and ext_token == settlement_token
    ), "clearinghouse: extension mismatch"
    access_control.__init__()
    pausable.__init__()
    state.__init__(oracle, settlement_token)
    ORDERS = orders_half


@external
@view
def extension_config() -> (address, address):
    """
    @notice The oracle and settlement token this code half was built for.
    """
    return state.ORACLE.address, state.collateral_token[0]


# signed orders' bulk cancel (ClearinghouseOrders' order type; here for the other halves'
# room: moving the header's replay window takes a loop, review 8)
@external
def cancel_below(account: uint256, nonce: uint64):
    """
    @notice Cancels every signed order of the account with a nonce below `nonce` (owner
            or operator); the minimum only rises.
    @param account The sub-account id.
    @param nonce The new minimum nonce (above the current one).
    """
    hdr: uint256 = guards._require_trader_any(account)
    n: uint256 = convert(nonce, uint256)
    # the header's replay window moves up with the minimum (order_hash, review 8)
    oh._raise_min_nonce(account, hdr, n)
    log state.NoncesCancelled(account=account, min_nonce=n)


@external
def __default__():
    """
    @notice Forwards the remaining selectors to ClearinghouseOrders by delegatecall.
    """
    raw_call(ORDERS, msg.data, is_delegate_call=True)
