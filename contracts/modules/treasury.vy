# pragma version ~=0.4.3
"""
@title Vault cash, insurance fund and protocol fees
@custom:contract-name treasury
@license MIT
@notice The liquidity vault moves settlement tokens in and out of the pool here;
        anyone may fund insurance; the admin withdraws protocol fees. Every write to
        the pool word (`state._pool`: the vault's cash and fees not yet split) and to
        the treasury word (`state._treasury`: insurance fund and protocol fees) is in
        this file (issue 10 item 1; tests/unit/test_rule_table.py fails on a write
        anywhere else): settlement, accounts, liquidation and governance call the
        internal functions below, each one booking a whole cash movement in one call.
        The pool sums (`state._pool_sums`) are not a cash word: they aggregate trader
        positions (like open interest) and move with them in settlement.
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
    cash: int256 = self._move_pool_cash(credited)
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
    self._sweep_fees()
    taken: int256 = convert(amount * state.SETTLEMENT_SCALE, int256)
    assert packing._lo_i128(state._pool) >= taken, "clearinghouse: insufficient pool cash"
    cash: int256 = self._move_pool_cash(-taken)
    equity: int256 = state._pool_equity()
    for m: uint256 in range(c.MAX_MARKETS):
        if m == state.market_count:
            break
        skew: int256 = packing._oi_skew(state._oi[m])
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
    log state.VaultCashMoved(receiver=receiver, amount=-taken, pool_cash=cash)


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
    self._credit_treasury(received * state.SETTLEMENT_SCALE, 0)
    insurance: uint256 = packing._treasury_insurance(state._treasury)
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
    self._sweep_fees()
    tw: uint256 = state._treasury
    units: uint256 = packing._treasury_protocol(tw) // state.SETTLEMENT_SCALE
    assert units != 0, "clearinghouse: zero amount"
    state._treasury = packing._treasury_take(tw, 0, units * state.SETTLEMENT_SCALE)
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
    self._move_pool_cash(convert(paid, int256))
    state.seized_collateral[token_index] -= wad
    state.collateral_held[token_index] -= amount
    assert extcall IERC20(state.collateral_token[token_index]).transfer(
        msg.sender, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    log state.SeizedCollateralSold(
        buyer=msg.sender, token_index=token_index, amount=wad, price=unit, paid=paid
    )


# --- the pool and treasury words: every write to them (issue 10 item 1) -----------------


@internal
def _book_fill(cash: int256, fees: uint256):
    """
    @dev A fill's cash against the pool, in one write: the pool pays `cash` (the
         traders' realised PnL less the funding they paid; negative: the pool receives)
         and accrues `fees` until `_sweep_fees` splits them (settlement._settle_side per
         side; ClearinghouseOrders.settle once for a matched fill's two sides).
    """
    state._pool = packing._pool_add(state._pool, -cash, fees)


@internal
def _move_pool_cash(amount: int256) -> int256:
    """
    @dev Adds `amount` (negative: takes) to the pool's cash, pending fees untouched:
         LP deposits and withdrawals, seized collateral bought or sold, socialised bad
         debt. Returns the pool's cash after.
    """
    w: uint256 = packing._pool_add(state._pool, amount, 0)
    state._pool = w
    return packing._lo_i128(w)


@internal
def _credit_treasury(insurance: uint256, protocol: uint256):
    """
    @dev Adds `insurance` to the insurance fund (`fund_insurance`, liquidation
         penalties, its share of swept fees) and `protocol` to protocol fees (their share
         of swept fees; WAD remainders below one token unit that can never be paid out:
         a payout's remainder, a flat account's dust).
    """
    state._treasury = packing._treasury_add(state._treasury, insurance, protocol)


@internal
def _cover_bad_debt(deficit: uint256) -> uint256:
    """
    @dev Covers a `deficit` left after liquidation: fees accrued so far are split first
         (so insurance holds its share), then insurance pays what it can and the rest
         (`deficit` - the returned amount) is socialised through the pool's cash.
         Returns the amount insurance paid.
    """
    self._sweep_fees()
    tw: uint256 = state._treasury
    cover: uint256 = min(deficit, packing._treasury_insurance(tw))
    state._treasury = packing._treasury_take(tw, cover, 0)
    if deficit != cover:
        self._move_pool_cash(-convert(deficit - cover, int256))
    return cover


@internal
def _sweep_fees():
    """
    @dev Splits the fees accrued since the last sweep: the insurance and protocol shares
         to the treasury word, the rest to the pool's cash (rounded down for the
         treasury, so the vault keeps the dust).
    """
    pw: uint256 = state._pool
    pending: uint256 = packing._pool_pending_fees(pw)
    if pending == 0:
        return
    sys: packing.System = packing._system(state._system)
    to_insurance: uint256 = pending * sys.insurance_bps // c.BPS
    to_protocol: uint256 = pending * sys.protocol_bps // c.BPS
    to_vault: uint256 = pending - to_insurance - to_protocol
    self._credit_treasury(to_insurance, to_protocol)
    # the fees are split: the pool word keeps only its cash (w = 0: (cash, 0) packed)
    state._pool = packing._pool_add(0, packing._lo_i128(pw) + convert(to_vault, int256), 0)
    log state.FeesSwept(
        amount=pending, to_insurance=to_insurance, to_protocol=to_protocol, to_vault=to_vault
    )
