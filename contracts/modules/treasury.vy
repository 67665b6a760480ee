# pragma version ~=0.4.3
"""
@title Vault cash, insurance fund and protocol fees
@custom:contract-name treasury
@license MIT
@notice The liquidity vault moves settlement tokens in and out of the pool here;
        anyone may fund insurance; the admin withdraws protocol fees.
"""

from ethereum.ercs import IERC20
from ..interfaces import IClearinghouseEngine
from . import state
from snekmate.auth import access_control
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import pricing
from . import funding
from . import margin

uses: state
uses: access_control

# @notice LP withdrawals may take the vault's exposure up to this multiple of the cap
#         traders are held to (bp), so traders at the cap never freeze LP exits.
LP_EXIT_HEADROOM_BPS: constant(uint256) = 15_000


@external
@nonreentrant
def vault_deposit(amount: uint256):
    """
    @notice Moves settlement tokens from the vault into the pool (LP deposits).
    """
    assert msg.sender == state.vault, "clearinghouse: caller is not the vault"
    assert amount != 0, "clearinghouse: zero amount"
    token: address = state.collateral_token[0]
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(
        msg.sender, self, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    state.collateral_held[0] += received
    credited: int256 = convert(received * state.SETTLEMENT_SCALE, int256)
    pool: uint256 = state._pool
    cash: int256 = packing._lo_i128(pool) + credited
    state._pool = packing._pack_pool(cash, pool >> 128)
    log state.VaultCashMoved(receiver=msg.sender, amount=credited, pool_cash=cash)


@external
@nonreentrant
def vault_withdraw(amount: uint256, receiver: address):
    """
    @notice Pays settlement tokens out of the pool (LP withdrawals). The pool must keep
            every market's vault exposure within 1.5x its cap. Traders are held to the
            cap itself on every fill (reduces included), so no trader position can block
            LP exits: with every market at its cap, a third of the cash can still leave.
    @param amount Token units.
    """
    assert msg.sender == state.vault, "clearinghouse: caller is not the vault"
    assert amount != 0, "clearinghouse: zero amount"
    state._sweep_fees()
    cash: int256 = packing._lo_i128(state._pool) - convert(amount * state.SETTLEMENT_SCALE, int256)
    assert cash >= 0, "clearinghouse: insufficient pool cash"
    state._pool = packing._pack_pool(cash, 0)
    for m: uint256 in range(c.MAX_MARKETS):
        if m == state.market_count:
            break
        oi: uint256 = state._oi[m]
        skew: uint256 = convert(
            abs(convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)), uint256
        )
        if skew != 0:
            p: packing.MarketParams = packing._unpack_params(state._params[m])
            exposure: uint256 = skew * packing._mark_price(state._mark[m]) // c.WAD
            assert (
                exposure * c.BPS
                <= convert(cash, uint256) * p.max_vault_exposure // c.WAD * LP_EXIT_HEADROOM_BPS
            ), "clearinghouse: vault exposure cap reached"
    state.collateral_held[0] -= amount
    assert extcall IERC20(state.collateral_token[0]).transfer(
        receiver, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    log state.VaultCashMoved(
        receiver=receiver, amount=-convert(amount * state.SETTLEMENT_SCALE, int256), pool_cash=cash
    )


@external
def sync_marks():
    """
    @notice Refreshes every market with open interest whose mark is stale; the vault
            calls it before pricing shares.
    """
    age: uint256 = packing._system(state._system).max_mark_age
    for m: uint256 in range(c.MAX_MARKETS):
        if m == state.market_count:
            break
        if state._oi[m] != 0 and packing._mark_time(state._mark[m]) + age < block.timestamp:
            extcall IClearinghouseEngine(self).engine_touch(m)


@external
@nonreentrant
def fund_insurance(amount: uint256):
    """
    @notice Adds settlement tokens to the insurance fund.
    @param amount Token units.
    """
    assert amount != 0, "clearinghouse: zero amount"
    token: address = state.collateral_token[0]
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(
        msg.sender, self, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    state.collateral_held[0] += received
    tw: uint256 = state._treasury
    insurance: uint256 = (tw & packing.MASK_128) + received * state.SETTLEMENT_SCALE
    state._treasury = packing._pack_u128(insurance, tw >> 128)
    log state.InsuranceFunded(
        sender=msg.sender, amount=received * state.SETTLEMENT_SCALE, insurance=insurance
    )


@external
@nonreentrant
def withdraw_protocol_fees(receiver: address):
    """
    @notice Sends accrued protocol fees (whole token units) to `receiver`. Admin only.
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert receiver != empty(address), "clearinghouse: zero receiver"
    state._sweep_fees()
    tw: uint256 = state._treasury
    units: uint256 = (tw >> 128) // state.SETTLEMENT_SCALE
    assert units != 0, "clearinghouse: zero amount"
    state._treasury = tw - ((units * state.SETTLEMENT_SCALE) << 128)
    state.collateral_held[0] -= units
    assert extcall IERC20(state.collateral_token[0]).transfer(
        receiver, units, default_return_value=True
    ), "clearinghouse: transfer failed"
    log state.ProtocolFeesWithdrawn(receiver=receiver, amount=units * state.SETTLEMENT_SCALE)
