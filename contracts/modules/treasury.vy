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

uses: state
uses: access_control

# @notice LP withdrawals may take the vault's exposure up to this multiple of the cap
#         traders are held to (bp, against the same measure), so traders at the cap never
#         freeze LP exits.
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
    @notice Pays settlement tokens out of the pool (LP withdrawals). The cash left must
            keep every market's vault exposure within 1.5x its cap, measured by the rule
            trader fills are held to (state._exposure_limit: cash plus the pool's
            unrealised loss in the market) and against pool equity (cash plus the pool's
            unrealised PnL and funding in every market, less the uncovered provision:
            state._pool_equity, what ADL's cap measures), so a loss the pool carries in
            one market shrinks what the others may expose (review 5, R5-1): every
            market's exposure stays within 1.5x its cap x pool equity, the premise of the
            vault's withdrawal fee. Traders are held to the cap itself on every
            fill (reduces included), so no trader position can block LP exits: with a
            market at its cap, a third of that measure can still leave at once; once a
            market is above its cap (price moves, exits, backstops, close-outs), anyone
            may auto-deleverage it back (modules/vault_limits.vy), which opens the exits
            again (docs/security.md, property 4).
    @param amount Token units.
    """
    assert msg.sender == state.vault, "clearinghouse: caller is not the vault"
    assert amount != 0, "clearinghouse: zero amount"
    state._sweep_fees()
    cash: int256 = packing._lo_i128(state._pool) - convert(amount * state.SETTLEMENT_SCALE, int256)
    assert cash >= 0, "clearinghouse: insufficient pool cash"
    state._pool = packing._pack_pool(cash, 0)
    equity: int256 = state._pool_equity()
    for m: uint256 in range(c.MAX_MARKETS):
        if m == state.market_count:
            break
        oi: uint256 = state._oi[m]
        skew: int256 = convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)
        if skew != 0:
            price: uint256 = packing._mark_price(state._mark[m])
            f: uint256 = packing._unpack_params(state._params[m]).max_vault_exposure
            assert (
                convert(abs(skew), uint256) * price // c.WAD * c.BPS
                <= min(
                    state._exposure_limit(m, skew, price, f),
                    convert(max(equity, 0), uint256) * f // c.WAD,
                )
                * LP_EXIT_HEADROOM_BPS
            ), c.VAULT_CAP_REACHED
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
    @notice Reads the oracle for every market with open interest (not only the stale
            ones) and refreshes each mark that differs from it, so the vault prices
            shares at the current price of every market: an LP cannot deposit at a mark
            the feeds have already left behind. Reverts if one
            lacks price quorum: shares are never priced at a mark the oracle can no longer
            confirm. The vault calls it before every deposit and withdrawal; anyone may
            call it.
    """
    for m: uint256 in range(c.MAX_MARKETS):
        if m == state.market_count:
            break
        if state._oi[m] == 0:
            continue
        price: uint256 = 0
        flags: uint256 = 0
        price, flags = staticcall state.ORACLE.latest(m)
        assert flags & c.FLAG_DEGRADED == 0, "clearinghouse: no price quorum"
        # a mark already at the oracle's price needs no write (and accrues no funding in
        # the middle of an LP action); any other mark, frozen or stale, is re-read
        if (
            price != packing._mark_price(state._mark[m])
            or state._params[m] & (packing.FROZEN_BIT) != 0
        ):
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


@external
@nonreentrant
def buy_collateral(token_index: uint256, amount: uint256, max_price: uint256):
    """
    @notice Buys collateral the vault's pool took over from accounts with bad debt, at
            the fresh mark less half the token's haircut (the pool bought it at the mark
            less the whole haircut), paid in settlement tokens into the pool's cash.
            Anyone may call it; the price needs oracle quorum.
    @param token_index The collateral index (1 .. collateral_count - 1).
    @param amount Token units to buy.
    @param max_price Worst price accepted (USD WAD per whole token).
    """
    assert amount != 0, "clearinghouse: zero amount"
    assert (
        token_index != 0 and token_index < state.collateral_count
    ), "clearinghouse: unknown token"
    wad: uint256 = amount * state.collateral_scale[token_index]
    assert (
        wad <= state.seized_collateral[token_index]
    ), "clearinghouse: not enough seized collateral"
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = extcall IClearinghouseEngine(self).engine_touch(
        state.collateral_market[token_index]
    )
    assert flags & c.FLAG_DEGRADED == 0, "clearinghouse: no price quorum"
    # rounded up: against the buyer
    unit: uint256 = fp._mul_div(
        price, 2 * c.WAD - state.collateral_haircut[token_index], 2 * c.WAD, True
    )
    assert unit <= max_price, "clearinghouse: price worse than acceptable"
    units: uint256 = fp._mul_div(wad, unit, c.WAD * state.SETTLEMENT_SCALE, True)
    paid: uint256 = units * state.SETTLEMENT_SCALE
    token: address = state.collateral_token[0]
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(
        msg.sender, self, units, default_return_value=True
    ), "clearinghouse: transfer failed"
    assert (
        staticcall IERC20(token).balanceOf(self) - before == units
    ), "clearinghouse: fee-on-transfer token"
    state.collateral_held[0] += units
    pool: uint256 = state._pool
    state._pool = packing._pack_pool(packing._lo_i128(pool) + convert(paid, int256), pool >> 128)
    state.seized_collateral[token_index] -= wad
    state.collateral_held[token_index] -= amount
    assert extcall IERC20(state.collateral_token[token_index]).transfer(
        msg.sender, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    log state.SeizedCollateralSold(
        buyer=msg.sender, token_index=token_index, amount=wad, price=unit, paid=paid
    )
