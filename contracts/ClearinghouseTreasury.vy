# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse treasury half
@custom:contract-name ClearinghouseTreasury
@license MIT
@notice Executed only by delegatecall (Clearinghouse -> ClearinghouseOps ->
        ClearinghouseAdmin -> ClearinghouseOrders -> ClearinghouseRisk -> here; its own
        storage is never used), the last half: the treasury's calls (the vault's cash,
        insurance, protocol fees, collateral purchases: modules/treasury.vy) and the
        vault-limit and delayed-order parameters, moved here for the other halves'
        bytecode room (docs/architecture.md, "Six code halves"). LP actions pay the
        extra delegatecall hops (about 2.6k gas each); no trade path reaches this half.
        Call these functions on the Clearinghouse address; they return nothing.
"""

from snekmate.auth import access_control
from snekmate.utils import pausable
from .interfaces import IOracleRouter
from .modules import state
from .modules import guards
from .modules import marks
from .modules import settlement
from .modules import gates
from .modules import trading
from .modules import treasury
from .modules import governance
from .modules import delayed

initializes: access_control
initializes: pausable
initializes: state
initializes: treasury[state := state, access_control := access_control]
initializes: guards[state := state]
initializes: marks[state := state, guards := guards]
initializes: settlement[state := state, treasury := treasury]
initializes: gates[state := state, marks := marks]
initializes: trading[
    state := state, guards := guards, marks := marks, settlement := settlement, gates := gates
]
initializes: governance[
    state := state, access_control := access_control, pausable := pausable, treasury := treasury
]
initializes: delayed[
    state := state, guards := guards, settlement := settlement, access_control := access_control
]

exports: (
    treasury.buy_collateral,
    treasury.fund_insurance,
    treasury.withdraw_protocol_fees,
    treasury.vault_deposit,
    treasury.vault_withdraw,
    treasury.sync_marks,
    governance.set_vault_limits,
    delayed.set_delayed_params,
    # self-only: a signed fill's margin checks off the common case (ClearinghouseOrders
    # `_after`; the Orders half has no room for the margin scan)
    gates.engine_check_fill,
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
