# pragma version ~=0.4.3
"""
@title Accounts and collateral
@custom:contract-name accounts
@license MIT
@notice Sub-accounts (id = owner << 96 | index, so the owner is read from the id
        without storage), operators (trade, never withdraw), deposits credited by the
        measured balance change, withdrawals and transfers through the margin gate,
        margin mode and loss cap per sub-account (below its floor an account only
        reduces, and no value leaves it past the floor: modules/gates.vy). While a
        delayed order of the account may settle, withdrawals, transfers out and loss-cap
        and margin-mode changes are refused (`guards._require_idle`, review 4 R4-2).
        Value leaves an account only against realised equity: withdrawals and transfers
        out pass the margin gate with every position's unrealised PnL (funding owed
        included) counted only when negative, min(pnl, 0), position by position. A mark
        pump, or a hedge leg's paper profit, can never be taken out before it is realised
        by a fill (the Mango pattern); realised profit is in the balance and withdrawable.
"""

from ethereum.ercs import IERC20
from ..interfaces import IClearinghouseEngine
from . import state
from . import guards
from . import settlement
from . import gates
from . import treasury
from . import constants as c
from . import packing
from . import margin
from . import positions

uses: state
uses: guards
uses: settlement
uses: gates
uses: treasury


@external
def open_account(name: String[32], portfolio: bool) -> uint256:
    """
    @notice Opens the caller's next numbered sub-account.
    @param name Strategy name shown by the SDK and CLI.
    @param portfolio True for portfolio (scenario) margin, false for isolated margin.
    @return The account id (`owner << 96 | index`).
    """
    index: uint256 = state.sub_account_count[msg.sender]
    state.sub_account_count[msg.sender] = index + 1
    account: uint256 = packing._account_id(msg.sender, index)
    hdr: uint256 = c.ACCOUNT_EXISTS
    if portfolio:
        hdr |= c.ACCOUNT_PORTFOLIO
    state._header[account] = hdr
    state.account_name[account] = name
    log state.AccountOpened(account=account, owner=msg.sender, name=name, portfolio=portfolio)
    return account


@external
def set_operator(account: uint256, operator: address, allowed: bool):
    """
    @notice Authorises (or revokes, at once) an address to trade for an account.
            Operators never withdraw; collateral moves only between two accounts of
            the same owner that the operator operates both of (`transfer_collateral`).
    """
    guards._require_owner(account)
    assert operator != empty(address), "clearinghouse: zero operator"
    state.is_operator[account][operator] = allowed
    log state.OperatorSet(account=account, operator=operator, allowed=allowed)


# @notice Most accounts `revoke_operator` takes in one call.
MAX_REVOKE: constant(uint256) = 32


@external
def revoke_operator(operator: address, accounts: DynArray[uint256, MAX_REVOKE]):
    """
    @notice Revokes `operator` on every one of `accounts` in one transaction: the owner's
            kill switch for a bot that operates several sub-accounts (`perpdex keeper
            rebalance kill`). Every account must be the caller's; one the operator does
            not operate is left as it is (no event).
    @param accounts At most MAX_REVOKE account ids.
    """
    assert len(accounts) != 0, "clearinghouse: no accounts"
    for account: uint256 in accounts:
        guards._require_owner(account)
        if state.is_operator[account][operator]:
            state.is_operator[account][operator] = False
            log state.OperatorSet(account=account, operator=operator, allowed=False)


@external
def set_margin_mode(account: uint256, portfolio: bool):
    """
    @notice Switches an account between isolated and portfolio margin. Refused when the
            account would be below initial margin in the new mode.
    """
    hdr: uint256 = guards._require_idle(guards._require_owner(account))
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    assert (hdr & c.ACCOUNT_PORTFOLIO != 0) != portfolio, "clearinghouse: mode unchanged"
    hdr ^= c.ACCOUNT_PORTFOLIO
    state._header[account] = hdr
    if packing._position_count(hdr) > 0:
        extcall IClearinghouseEngine(self).engine_check_initial(
            account, "clearinghouse: mode switch leaves account under-margined", True
        )
    log state.MarginModeChanged(account=account, portfolio=portfolio)


@external
def set_loss_cap(account: uint256, equity_floor: uint256):
    """
    @notice Sets the account's equity floor (USD WAD). Below it anyone may close every
            position of the account (reduce-only) for `loss_cap_fee`, the account's own
            trades may only reduce, and withdrawals and transfers out may not leave
            equity below it. 0 removes the cap. A floor above the current equity is
            accepted (the SDK asks for confirmation first).
    """
    hdr: uint256 = guards._require_idle(guards._require_owner(account))
    log state.LossCapSet(account=account, old_floor=state.loss_cap[account], new_floor=equity_floor)
    state.loss_cap[account] = equity_floor
    # the header's copy of "has a loss cap" (trades read the header, not the cap)
    flagged: uint256 = hdr & ~c.ACCOUNT_LOSS_CAP
    if equity_floor != 0:
        flagged |= c.ACCOUNT_LOSS_CAP
    if flagged != hdr:
        state._header[account] = flagged


@external
@nonreentrant
def deposit(account: uint256, token: address, amount: uint256):
    """
    @notice Deposits collateral into an existing account. Anyone may top up any account.
    @param amount Token units; the account is credited with the balance actually received.
    """
    assert amount != 0, "clearinghouse: zero amount"
    hdr: uint256 = guards._require_exists(account)
    idx: uint256 = guards._token_index(token)
    before: uint256 = staticcall IERC20(token).balanceOf(self)
    assert extcall IERC20(token).transferFrom(
        msg.sender, self, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    received: uint256 = staticcall IERC20(token).balanceOf(self) - before
    assert received != 0, "clearinghouse: nothing received"
    held: uint256 = state.collateral_held[idx] + received
    assert held <= state.collateral_cap[idx], "clearinghouse: deposit cap reached"
    state.collateral_held[idx] = held
    credited: uint256 = received * state.collateral_scale[idx]
    state._balance[account][idx] += convert(credited, int256)
    if idx != 0:
        # the header read again after the token call: a token with transfer hooks could
        # have re-entered a header writer meanwhile (set_loss_cap, commit_order, a
        # trade's position bit), and writing back `hdr` would undo it (review 7)
        state._header[account] = packing._with_collateral(state._header[account], idx, True)
    log state.Deposit(
        account=account, token=token, sender=msg.sender, amount=received, credited=credited
    )


@external
@nonreentrant
def withdraw(account: uint256, token: address, amount: uint256, receiver: address):
    """
    @notice Withdraws collateral to `receiver`. Only the owner; the account must stay
            above initial margin (with no positions, only balances are checked) and at
            or above its loss cap, if one is set. A flat account's settlement balance
            left below one token unit goes to protocol fees (`DustSwept`).
    @param amount Token units.
    """
    assert amount != 0, "clearinghouse: zero amount"
    assert receiver != empty(address), "clearinghouse: zero receiver"
    hdr: uint256 = guards._require_idle(guards._require_owner(account))
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    idx: uint256 = guards._token_index(token)
    settlement._debit(account, hdr, idx, amount)
    self._check_value_out(account)
    state.collateral_held[idx] -= amount
    assert extcall IERC20(token).transfer(
        receiver, amount, default_return_value=True
    ), "clearinghouse: transfer failed"
    log state.Withdraw(account=account, token=token, receiver=receiver, amount=amount)
    if idx == 0 and packing._positions_bitmap(hdr) == 0:
        # a flat account's settlement balance below one token unit (PnL is kept in WAD)
        # can never be paid out: it goes to protocol fees, like the close-out fee's
        # remainder, so `withdraw --all` leaves the account at exactly zero
        dust: int256 = state._balance[account][0]
        if dust > 0 and dust < convert(state.SETTLEMENT_SCALE, int256):
            state._balance[account][0] = 0
            treasury._credit_treasury(0, convert(dust, uint256))
            log state.DustSwept(account=account, amount=convert(dust, uint256))


@external
def transfer_collateral(
    from_account: uint256, to_account: uint256, token: address, amount: uint256
):
    """
    @notice Moves collateral between two sub-accounts of one owner in one call: by the
            owner, or by an operator of both accounts (a rebalancing bot topping up a
            strategy from its reserve; the collateral never leaves the owner's accounts,
            and an operator of both could already trade either). The sending account
            must stay above initial margin and at or above its loss cap.
    @param amount Token units.
    """
    assert amount != 0, "clearinghouse: zero amount"
    assert from_account != to_account, "clearinghouse: same account"
    hdr: uint256 = guards._require_exists(from_account)
    to_hdr: uint256 = guards._require_exists(to_account)
    owner: address = packing._account_owner(from_account)
    assert packing._account_owner(to_account) == owner and (
        msg.sender == owner
        or (
            state.is_operator[from_account][msg.sender]
            and state.is_operator[to_account][msg.sender]
        )
    ), "clearinghouse: not account owner"
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    # into an account with a delayed order pending, yes (a deposit); out of one, no
    guards._require_idle(hdr)
    idx: uint256 = guards._token_index(token)
    settlement._debit(from_account, hdr, idx, amount)
    state._balance[to_account][idx] += convert(amount * state.collateral_scale[idx], int256)
    if idx != 0:
        state._header[to_account] = packing._with_collateral(to_hdr, idx, True)
    self._check_value_out(from_account)
    log state.CollateralTransferred(
        from_account=from_account, to_account=to_account, token=token, amount=amount
    )


@internal
def _check_value_out(account: uint256):
    """
    @dev The gate for value leaving an account: the strict margin gate (every oracle of
         the account re-read, degraded prices refused, equity >= initial), the loss cap
         (equity after the debit >= the floor, if one is set), then the same
         check with positive unrealised PnL left out: equity - sum(max(pnl_i, 0)) >=
         initial, where pnl_i = value_i - cost_i - funding owed_i at the marks just read
         (the terms `gates._scan` sums into equity). Only this path pays for the extra
         pass; the margin checks of trades are unchanged.
    """
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    extcall core.engine_check_initial(account, "clearinghouse: below initial margin", True)
    # the strict check just re-read every mark of the account: the trigger's figure
    gates._require_loss_cap(account, "clearinghouse: would cross loss cap")
    bitmap: uint256 = packing._positions_bitmap(state._header[account])
    if bitmap == 0:
        return
    profit: int256 = 0
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if not packing._has_bit(bitmap, m):
            continue
        pw: uint256 = state._pos[account][m]
        size: int256 = packing._pos_size(pw)
        mw: uint256 = state._mark[m]
        pnl: int256 = positions._value_pnl(
            size, packing._pos_cost(pw), packing._mark_price(mw)
        ) - positions._funding_owed(size, packing._pos_funding_delta(pw, packing._mark_index(mw)))
        if pnl > 0:
            profit += pnl
    if profit == 0:
        return
    equity: int256 = 0
    initial: uint256 = 0
    x: uint256 = 0
    y: uint256 = 0
    z: uint256 = 0
    equity, initial, x, y, z = staticcall core.account_margin(account)
    assert equity - profit >= convert(initial, int256), (
        "clearinghouse: unrealised profit is not withdrawable"
    )
