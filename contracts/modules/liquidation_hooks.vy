# pragma version ~=0.4.3
"""
@title Liquidation hooks of the Clearinghouse
@custom:contract-name liquidation_hooks
@license MIT
@notice The primitives the liquidation auction (LIQUIDATOR_ROLE) drives; the auction holds
        the ladder and price logic, these hold the money:
          liquidation_begin     lock an account against new risk; pay the keeper's
                                reward from it into the keeper's account
          liquidation_reward    the reward for a further tranche
          liquidation_transfer  move a fraction of every position of a locked account to
                                a taker (a keeper's account, or the vault's pool) at the
                                mark worsened by a discount, through the one settlement
                                path; charge the liquidation penalty to insurance
          liquidation_end       an account left with no positions and negative equity:
                                seize its other collateral, cover the deficit from
                                insurance, socialise the rest through the vault's cash;
                                then unlock
        Bad-debt provision: from liquidation start, each step records the account's
        deficit (max(0, -equity) at the marks just refreshed) in `bad_debt_provision`
        (event BadDebtProvisioned); the lens takes what insurance cannot cover off vault
        equity, so an LP who exits while the account is being liquidated shares the loss.
        Released at liquidation end, in the transaction that settles the bad debt.
        Positions move proportionally (the same fraction of every leg), so a hedged book
        stays hedged while it shrinks.
"""

from snekmate.auth import access_control
from ..interfaces import IClearinghouseEngine
from . import state
from . import engine
from . import constants as c
from . import fixed_point as fp
from . import packing

uses: state
uses: engine
uses: access_control


interface IMarginView:
    def account_margin(account: uint256) -> state.MarginScan: view


@external
def refresh_account(account: uint256):
    """
    @notice Re-reads the oracle for every market an account holds (positions and
            collateral) and accrues their funding. Anyone may call it.
    """
    engine._require_exists(account)
    extcall IClearinghouseEngine(self).engine_refresh_account(account, False)


@external
def liquidation_begin(account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Locks an account for liquidation (no trades, withdrawals or transfers out;
            deposits stay open) and pays the keeper's reward (USD WAD) from it into
            `keeper_account`'s settlement balance. Liquidator only.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    state._header[account] = hdr | c.ACCOUNT_IN_LIQUIDATION
    self._reward(account, keeper_account, reward)
    log state.LiquidationBegun(account=account, keeper_account=keeper_account, reward=reward)
    self._provision(account)


@external
def liquidation_reward(account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Pays a keeper's reward for a further tranche of a locked account. Liquidator
            only.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    self._reward(account, keeper_account, reward)
    log state.LiquidationRewardPaid(account=account, keeper_account=keeper_account, reward=reward)


@external
def liquidation_end(account: uint256):
    """
    @notice Ends a liquidation: an account left with no positions first has its bad debt
            settled (other collateral seized; deficit covered by insurance, the rest
            socialised through the vault's cash, with events); then it is unlocked.
            Liquidator only.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    if packing._position_count(hdr) == 0:
        hdr = self._settle_bad_debt(account, hdr)
    state._header[account] = hdr & ~c.ACCOUNT_IN_LIQUIDATION
    self._set_provision(account, 0)
    log state.LiquidationEnded(account=account)


@internal
def _provision(account: uint256):
    """
    @dev Provisions the account's deficit, max(0, -equity) at the cached marks (fresh: the
         auction refreshes them before every step), against the vault.
    """
    equity: int256 = (staticcall IMarginView(self).account_margin(account)).equity
    self._set_provision(account, convert(max(-equity, 0), uint256))


@internal
def _set_provision(account: uint256, amount: uint256):
    old: uint256 = state._provision[account]
    if amount == old:
        return
    state._provision[account] = amount
    total: uint256 = state.bad_debt_provision + amount - old
    state.bad_debt_provision = total
    log state.BadDebtProvisioned(account=account, provision=amount, total=total)


@internal
def _reward(account: uint256, keeper_account: uint256, reward: uint256):
    if reward == 0:
        return
    assert keeper_account != account, "clearinghouse: keeper account is the account"
    engine._require_exists(keeper_account)
    state._balance[account][0] -= convert(reward, int256)
    state._balance[keeper_account][0] += convert(reward, int256)


@external
def liquidation_transfer(
    account: uint256, taker: uint256, fraction: uint256, discount: uint256, penalty_rate: uint256
):
    """
    @notice Moves `fraction` (WAD, of each position) of a locked account's book to `taker`
            (an account, or 0 for the vault's pool) at each market's mark moved
            `discount` (WAD) against the liquidated account: longs sell below the mark,
            shorts buy back above it. Charges `penalty_rate` x the notional moved to the
            insurance fund. A taker account must end above initial margin. Liquidator
            only; marks must have been refreshed in this block.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    assert fraction != 0 and fraction <= c.WAD, "clearinghouse: bad fraction"
    assert discount < c.WAD and penalty_rate < c.WAD, "clearinghouse: bad discount"
    assert taker != account, "clearinghouse: taker is the account"
    if taker != state.POOL:
        taker_hdr: uint256 = engine._require_exists(taker)
        assert taker_hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: taker in liquidation"
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    bitmap: uint256 = packing._positions_bitmap(hdr)
    notional: uint256 = 0
    for m: uint256 in range(c.MAX_MARKETS):
        rest: uint256 = bitmap >> m
        if rest == 0:
            break
        if rest & 1 == 0:
            continue
        size: int256 = packing._pos_size(state._pos[account][m])
        part: int256 = size
        if fraction < c.WAD:
            part = size * convert(fraction, int256) // c.IWAD  # toward zero: never more than held
        if part == 0:
            continue
        mw: uint256 = state._mark[m]
        assert packing._mark_time(mw) == block.timestamp, "clearinghouse: refresh marks first"
        mark: uint256 = packing._mark_price(mw)
        price: uint256 = 0
        if size > 0:
            price = fp._mul_div(mark, c.WAD - discount, c.WAD, False)
        else:
            price = fp._mul_div(mark, c.WAD + discount, c.WAD, True)
        extcall core.engine_fill(account, taker, m, -part, price)
        notional += fp._mul_div(convert(abs(part), uint256), mark, c.WAD, False)
    penalty: uint256 = fp._mul_div(notional, penalty_rate, c.WAD, True)
    if penalty != 0:
        state._balance[account][0] -= convert(penalty, int256)
        state._treasury += penalty  # insurance is the low half; cannot carry: insurance < 2**128
    if taker != state.POOL:
        extcall core.engine_check_initial(taker, "clearinghouse: taker below initial margin", False)
    log state.LiquidationTransfer(
        account=account,
        taker=taker,
        fraction=fraction,
        discount=discount,
        notional=notional,
        penalty=penalty,
    )
    self._provision(account)


@internal
def _settle_bad_debt(account: uint256, header: uint256) -> uint256:
    """
    @dev Seizes non-settlement collateral for the protocol, covers a negative settlement
         balance from insurance and socialises the rest through the vault's cash.
         Returns the updated header.
    """
    hdr: uint256 = header
    cbits: uint256 = packing._collateral_bitmap(hdr)
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        bal: int256 = state._balance[account][i]
        if bal > 0:
            state.seized_collateral[i] += convert(bal, uint256)
            state._balance[account][i] = 0
            log state.CollateralSeized(account=account, token_index=i, amount=convert(bal, uint256))
        hdr = packing._with_collateral(hdr, i, False)
    bal0: int256 = state._balance[account][0]
    if bal0 >= 0:
        return hdr
    deficit: uint256 = convert(-bal0, uint256)
    state._sweep_fees()
    tw: uint256 = state._treasury
    insurance: uint256 = tw & packing.MASK_128
    cover: uint256 = min(deficit, insurance)
    socialized: uint256 = deficit - cover
    state._treasury = tw - cover
    if socialized != 0:
        pool: uint256 = state._pool
        state._pool = packing._pack_pool(
            packing._lo_i128(pool) - convert(socialized, int256), pool >> 128
        )
    state._balance[account][0] = 0
    log state.BadDebtSettled(
        account=account, deficit=deficit, from_insurance=cover, socialized=socialized
    )
    return hdr
