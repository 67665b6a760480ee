# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse operations half
@custom:contract-name ClearinghouseOps
@license MIT
@notice Executed only by delegatecall from the Clearinghouse (its own storage is never
        used): deposits, withdrawals, collateral transfers, loss caps and the liquidation
        hooks (margin-mode switches live in ClearinghouseAdmin, for bytecode room). Call
        these functions on the Clearinghouse address with this contract's ABI; they
        return nothing. Selectors not exported here go on, again by delegatecall, to
        ClearinghouseAdmin.
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
from .modules import liquidation_hooks
from .modules import order_hash as oh
from .modules import conditional

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
# fmt: off
# (one line of 106 columns: mamushi splits a longer initializes list into code it cannot
# parse back)
initializes: liquidation_hooks[
    state := state, guards := guards, gates := gates, access_control := access_control, treasury := treasury
]
# fmt: on
initializes: oh[state := state]
initializes: conditional[
    state := state, guards := guards, settlement := settlement, accounts := accounts, oh := oh
]

exports: (
    accounts.deposit,
    accounts.withdraw,
    accounts.transfer_collateral,
    trading.trigger_loss_cap,
    liquidation_hooks.liquidation_begin,
    liquidation_hooks.liquidation_reward,
    liquidation_hooks.liquidation_transfer,
    liquidation_hooks.liquidation_end,
    # self-only: a conditional order's keeper fee through the withdrawal gate compiled
    # here (`execute_order` itself is in ClearinghouseRisk)
    conditional.conditional_keeper_fee,
    # cold getters, here for the hot half's bytecode room (no contract calls them on a
    # gas-budgeted path); the Clearinghouse's __default__ returns their data
    access_control.getRoleAdmin,
    access_control.supportsInterface,
    state.sub_account_count,
    state.account_name,
    state.risk_book_version,
    state.risk_book_delay,
    state.max_shock_step_bps,
    state.max_ratio_step_bps,
    state.loss_cap_fee,
    state.loss_cap_window,
    state.collateral_cap,
    state.max_total_exposure,
    state.max_pnl_factor,
    state.adl_target_factor,
    state.delayed_config,
    state.delayed_order,
    views.account_owner,
    views.position_markets,
    views.account_id,
    views.pending_fees,
    views.protocol_fees,
    # (off the hot half when the treasury module took every pool and treasury write,
    # issue 10 item 1: the Lens reads them)
    views.insurance_fund,
    views.pool_sums,
    state.seized_collateral,
    state.bad_debt_provision,
    views.risk_book,
    state.collateral_held,
    state.collateral_scale,
    state.collateral_token,
    state.vault,
    state.loss_cap,
    state.RISK_ROLE,
    state.GUARDIAN_ROLE,
    state.LIQUIDATOR_ROLE,
    state.ORACLE,
    state.is_operator,
    access_control.hasRole,
    access_control.DEFAULT_ADMIN_ROLE,
    pausable.paused,
    state.SETTLEMENT_SCALE,
    views.settlement_token,
    state.collateral_haircut,
    state.collateral_market,
)


interface IExtension:
    def extension_config() -> (address, address): view


# @notice Governance half, reached by delegatecall for selectors not exported here.
ADMIN: public(immutable(address))


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address, admin_half: address):
    """
    @param oracle Must equal the Clearinghouse's oracle (checked by its constructor).
    @param settlement_token Must equal the Clearinghouse's settlement token.
    @param admin_half A `ClearinghouseAdmin` deployed with the same oracle and token.
    """
    ext_oracle: address = empty(address)
    ext_token: address = empty(address)
    ext_oracle, ext_token = staticcall IExtension(admin_half).extension_config()
    assert (
        ext_oracle == oracle.address and ext_token == settlement_token
    ), "clearinghouse: extension mismatch"
    access_control.__init__()
    pausable.__init__()
    state.__init__(oracle, settlement_token)
    ADMIN = admin_half


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
    @notice Forwards the remaining selectors to ClearinghouseAdmin by delegatecall.
    """
    raw_call(ADMIN, msg.data, is_delegate_call=True)
