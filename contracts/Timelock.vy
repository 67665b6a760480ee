# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title perpdex governance timelock
@custom:contract-name Timelock
@license MIT
@notice snekmate's audited `timelock_controller`, deployed as is. After the deploy's
        hand-over (perpdex/deploy.py, `timelock_delay` in config/networks.yaml) it holds
        the powers that could take users' money if abused, so each takes effect only
        after a public delay that users can see coming and leave before:
          - Clearinghouse DEFAULT_ADMIN_ROLE: role grants (LIQUIDATOR_ROLE, RISK_ROLE,
            GUARDIAN_ROLE), `set_vault`, `set_risk_book_delay`, risk-book step limits,
            unpause;
          - OracleRouter DEFAULT_ADMIN_ROLE and RISK_ROLE: source changes, parameters,
            the sequencer feed;
          - LiquidationAuction and LiquidityVault ownership (auction parameters, the
            withdrawal fee).
        Risk books are proposed by the risk role and published only after the
        Clearinghouse's own `risk_book_delay` (a book does not fit a timelock payload).
        The guardian's pause stays instant: it only stops new risk.
        Proposers (and cancellers) and executors are set at construction; the contract
        administers itself (no admin), so changing them is also delayed.
@custom:security The minimum delay can only be changed by an operation through the
        timelock itself (`update_delay`, snekmate).
"""

from snekmate.auth import access_control
from snekmate.governance import timelock_controller

initializes: access_control
initializes: timelock_controller[access_control := access_control]

exports: (
    timelock_controller.DEFAULT_ADMIN_ROLE,
    timelock_controller.hasRole,
    timelock_controller.getRoleAdmin,
    timelock_controller.grantRole,
    timelock_controller.revokeRole,
    timelock_controller.renounceRole,
    timelock_controller.supportsInterface,
    timelock_controller.PROPOSER_ROLE,
    timelock_controller.EXECUTOR_ROLE,
    timelock_controller.CANCELLER_ROLE,
    timelock_controller.get_timestamp,
    timelock_controller.get_minimum_delay,
    timelock_controller.is_operation,
    timelock_controller.is_operation_pending,
    timelock_controller.is_operation_ready,
    timelock_controller.is_operation_done,
    timelock_controller.get_operation_state,
    timelock_controller.hash_operation,
    timelock_controller.hash_operation_batch,
    timelock_controller.schedule,
    timelock_controller.schedule_batch,
    timelock_controller.cancel,
    timelock_controller.execute,
    timelock_controller.execute_batch,
    timelock_controller.update_delay,
    timelock_controller.__default__,
)


@deploy
@payable
def __init__(
    minimum_delay_: uint256,
    proposers_: DynArray[address, 255],
    executors_: DynArray[address, 255],
):
    """
    @dev Self-administered (no optional admin): every role change goes through a delay.
         Payable like snekmate's constructor (no `msg.value` check in the init code).
    @param minimum_delay_ Seconds between scheduling and executing any operation (> 0).
    @param proposers_ Accounts that may schedule and cancel operations.
    @param executors_ Accounts that may execute ready operations.
    """
    assert minimum_delay_ != 0, "timelock: zero delay"
    assert len(proposers_) != 0, "timelock: no proposers"
    access_control.__init__()
    timelock_controller.__init__(minimum_delay_, proposers_, executors_, empty(address))
