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
