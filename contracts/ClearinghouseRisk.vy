# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse vault-limits half
@custom:contract-name ClearinghouseRisk
@license MIT
@notice Executed only by delegatecall (Clearinghouse -> ClearinghouseOps ->
        ClearinghouseAdmin -> here; its own storage is never used): auto-deleveraging
        and the vault's limits across markets (modules/vault_limits.vy), in a half of
        their own for bytecode room. Call these functions on the Clearinghouse address
        with this contract's ABI; they return nothing (the limits' getters are on
        ClearinghouseOps).
"""

from snekmate.auth import access_control
from snekmate.utils import pausable
from .interfaces import IOracleRouter
from .modules import state
from .modules import engine
from .modules import accounts
from .modules import trading
from .modules import treasury
from .modules import governance
from .modules import views
from .modules import liquidation_hooks
from .modules import vault_limits
from .modules import order_hash as oh
from .modules import delayed

initializes: access_control
initializes: pausable
initializes: state
initializes: engine[state := state, pausable := pausable]
initializes: accounts[state := state, engine := engine]
initializes: trading[state := state, engine := engine]
initializes: treasury[state := state, access_control := access_control]
initializes: governance[state := state, access_control := access_control, pausable := pausable]
initializes: views[state := state, engine := engine]
initializes: liquidation_hooks[state := state, engine := engine, access_control := access_control]
initializes: vault_limits[state := state, engine := engine]
# delayed vault orders (modules/delayed.vy)
initializes: delayed[state := state, engine := engine, access_control := access_control]
exports: delayed.__interface__

exports: (
    vault_limits.auto_deleverage,
    vault_limits.close_with_adl,
    governance.set_vault_limits,
)


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address):
    """
    @param oracle Must equal the Clearinghouse's oracle.
    @param settlement_token Must equal the Clearinghouse's settlement token.
    """
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
def cancel_order(order: oh.Order):
    """
    @notice Cancels one signed order (owner or operator): its nonce is consumed, so no
            order of the account with that nonce can fill afterwards.
    @param order The order as signed (perpdex/sdk/orders.py `Order.as_message`).
    """
    engine._require_trader(order.account)
    nonce: uint256 = convert(order.nonce, uint256)
    state._order_bits[order.account][nonce >> 7] |= oh.ORDER_DONE << ((nonce & 127) << 1)
    log state.OrderCancelled(
        account=order.account, nonce=nonce, order=oh._digest(oh._domain(), order)
    )


@external
def cancel_below(account: uint256, nonce: uint64):
    """
    @notice Cancels every signed order of the account with a nonce below `nonce` (owner
            or operator); the minimum only rises.
    @param account The sub-account id.
    @param nonce The new minimum nonce (above the current one).
    """
    hdr: uint256 = engine._require_trader(account)
    n: uint256 = convert(nonce, uint256)
    assert n > hdr >> oh.MIN_NONCE_SHIFT, "clearinghouse: min nonce only rises"
    state._header[account] = (hdr & ((1 << oh.MIN_NONCE_SHIFT) - 1)) | (n << oh.MIN_NONCE_SHIFT)
    log state.NoncesCancelled(account=account, min_nonce=n)
