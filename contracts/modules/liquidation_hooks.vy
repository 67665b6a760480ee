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
          liquidation_end       an account left with no positions and a negative
                                balance: the pool buys just enough of its other
                                collateral at the mark less the haircut; a deficit left
                                is covered from insurance, the rest socialised through
                                the vault's cash; then unlock
        Bad-debt provision: from liquidation start, each step records the account's
        deficit (max(0, -equity) at the marks just refreshed) in `bad_debt_provision`
        (event BadDebtProvisioned); the lens takes what insurance cannot cover off vault
        equity, so an LP who exits while the account is being liquidated shares the loss.
        Released at liquidation end, in the transaction that settles the bad debt.
        Positions move proportionally (the same fraction of every leg), so a hedged book
        stays hedged while it shrinks; a leg whose rest would be worth less than
        MIN_POSITION_NOTIONAL (modules/constants.vy) moves whole (no dust).
        The Clearinghouse does not trust its liquidator: begin, reward and transfer each
        require the account to be liquidatable at marks refreshed in this block
        (collateral markets: within max_mark_age, as in every margin check)
        (equity < maintenance), and bound what the caller hands over, with E, M, N the
        account's equity, maintenance and gross notional at those marks:
          reward     <= min(MAX_REWARD_SHARE x M, MAX_KEEPER_REWARD, max(E, 0)), once
                        per tranche (a further reward needs a transfer in between)
          discount + penalty_rate <= MAX_COST_SHARE x M / N
        so whoever holds LIQUIDATOR_ROLE can neither touch a healthy account nor make a
        liquidation cost more than 0.9 x the maintenance it frees
        (LiquidationAuction.vy's glossary has the arithmetic).
"""

from snekmate.auth import access_control
from ..interfaces import IClearinghouseEngine
from . import state
from . import guards
from . import gates
from . import treasury
from . import constants as c
from . import fixed_point as fp
from . import packing

uses: state
uses: guards
uses: gates
uses: treasury
uses: access_control

# Liquidation budget, as fractions of maintenance margin (WAD); LiquidationAuction.vy
# uses the same numbers.
MAX_COST_SHARE: constant(uint256) = 8 * 10**17
MAX_REWARD_SHARE: constant(uint256) = 10**17
MAX_KEEPER_REWARD: constant(uint256) = 1_000 * 10**18
# Account header flag: a keeper reward was paid and no transfer has happened since.
ACCOUNT_REWARD_PAID: constant(uint256) = 8


interface IMarginView:
    def account_margin(account: uint256) -> state.MarginScan: view


@external
def liquidation_begin(account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Locks an account for liquidation (no trades, withdrawals or transfers out;
            deposits stay open) and pays the keeper's reward (USD WAD) from it into
            `keeper_account`'s settlement balance. Liquidator only; the account must be
            liquidatable at marks refreshed in this block and the reward within bounds.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    state._header[account] = hdr | c.ACCOUNT_IN_LIQUIDATION | ACCOUNT_REWARD_PAID
    self._reward(account, keeper_account, reward, self._liquidatable(account, hdr))
    log state.LiquidationBegun(account=account, keeper_account=keeper_account, reward=reward)
    self._provision(account)


@external
def liquidation_reward(account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Pays a keeper's reward for a further tranche of a locked account, once per
            tranche. Liquidator only; the account must be liquidatable at marks refreshed
            in this block and the reward within bounds.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    assert hdr & ACCOUNT_REWARD_PAID == 0, "clearinghouse: reward already paid"
    state._header[account] = hdr | ACCOUNT_REWARD_PAID
    self._reward(account, keeper_account, reward, self._liquidatable(account, hdr))
    log state.LiquidationRewardPaid(account=account, keeper_account=keeper_account, reward=reward)


@external
def liquidation_end(account: uint256):
    """
    @notice Ends a liquidation: an account left with no positions first has its bad debt
            settled (the pool buys just enough of its other collateral at the mark less
            the haircut, the rest stays with the owner; a deficit left is covered by
            insurance, the rest socialised through the vault's cash, with events); then
            it is unlocked.
            Liquidator only.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    if packing._position_count(hdr) == 0:
        hdr = self._settle_bad_debt(account, hdr)
    state._header[account] = hdr & ~(c.ACCOUNT_IN_LIQUIDATION | ACCOUNT_REWARD_PAID)
    self._set_provision(account, 0)
    log state.LiquidationEnded(account=account)


@internal
@view
def _liquidatable(account: uint256, hdr: uint256) -> state.MarginScan:
    """
    @dev The account's scan at marks refreshed in this block, with quorum, for every
         position market (collateral markets: within `max_mark_age`); reverts unless
         equity < maintenance.
    """
    bitmap: uint256 = packing._positions_bitmap(hdr)
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if packing._has_bit(bitmap, m):
            assert (
                packing._mark_time(state._mark[m]) == block.timestamp
            ), "clearinghouse: refresh marks first"
            # a frozen market's mark is its last quorum price, not a price
            assert state._params[m] & packing.FROZEN_BIT == 0, "clearinghouse: no price quorum"
    cbits: uint256 = packing._collateral_bitmap(hdr)
    if cbits != 0:
        # collateral is valued at marks no older than `max_mark_age` (what
        # `refresh_account` guarantees for collateral, as every margin check does)
        age: uint256 = packing._system(state._system).max_mark_age
        for i: uint256 in range(1, c.MAX_COLLATERALS):
            if packing._no_bits_from(cbits, i):
                break
            if packing._has_bit(cbits, i):
                assert (
                    packing._mark_time(state._mark[state.collateral_market[i]]) + age
                    >= block.timestamp
                ), "clearinghouse: refresh marks first"
    e: int256 = 0
    i0: uint256 = 0
    mm: uint256 = 0
    iso: uint256 = 0
    n: uint256 = 0
    e, i0, mm, iso, n = staticcall IClearinghouseEngine(self).account_margin(account)
    s: state.MarginScan = state.MarginScan(
        equity=e, initial=i0, maintenance=mm, isolated=iso, notional=n
    )
    # (without positions: only negative equity, a debt the other collateral no longer
    # covers)
    assert s.equity < convert(s.maintenance, int256), "clearinghouse: account is not liquidatable"
    return s


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
def _reward(account: uint256, keeper_account: uint256, reward: uint256, s: state.MarginScan):
    assert (
        reward <= s.maintenance * MAX_REWARD_SHARE // c.WAD
        and reward <= MAX_KEEPER_REWARD
        and convert(reward, int256) <= max(s.equity, 0)
    ), "clearinghouse: reward above the bound"
    if reward == 0:
        return
    assert keeper_account != account, "clearinghouse: keeper account is the account"
    guards._require_exists(keeper_account)
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
            insurance fund. A taker account must end above initial margin and, if it has
            a loss cap, at or above its floor (a take adds risk), and have no delayed
            order pending (`guards._require_idle`). Liquidator
            only; marks must have been refreshed in this block, the account must be
            liquidatable at them, and (discount + penalty_rate) x gross notional at most
            MAX_COST_SHARE x maintenance. A leg whose rest would be worth less than
            MIN_POSITION_NOTIONAL moves whole; a taker account's leg must end at zero or
            at least MIN_POSITION_NOTIONAL where only part of a leg moved.
    """
    access_control._check_role(state.LIQUIDATOR_ROLE, msg.sender)
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION != 0, "clearinghouse: account not in liquidation"
    assert fraction != 0 and fraction <= c.WAD, "clearinghouse: bad fraction"
    assert discount < c.WAD and penalty_rate < c.WAD, "clearinghouse: bad discount"
    assert taker != account, "clearinghouse: taker is the account"
    s: state.MarginScan = self._liquidatable(account, hdr)
    assert (discount + penalty_rate) * s.notional <= MAX_COST_SHARE * s.maintenance, (
        "clearinghouse: discount above the bound"
    )
    state._header[account] = hdr & ~ACCOUNT_REWARD_PAID
    if taker != state.POOL:
        taker_hdr: uint256 = guards._require_exists(taker)
        assert taker_hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: taker in liquidation"
        # a take is its owner's choice and adds risk: not into an account whose delayed
        # order may still settle (review 4, R4-2; the liquidated account's may)
        guards._require_idle(taker_hdr)
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    bitmap: uint256 = packing._positions_bitmap(hdr)
    notional: uint256 = 0
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if not packing._has_bit(bitmap, m):
            continue
        size: int256 = packing._pos_size(state._pos[account][m])
        mark: uint256 = packing._mark_price(state._mark[m])
        part: int256 = size
        if fraction < c.WAD:
            part = size * convert(fraction, int256) // c.IWAD  # toward zero: never more than held
            # no dust: a rest worth less than the minimum goes with the part
            if fp._mul_div(convert(abs(size - part), uint256), mark, c.WAD, False) < (
                c.MIN_POSITION_NOTIONAL
            ):
                part = size
        if part == 0:
            continue
        price: uint256 = 0
        if size > 0:
            price = fp._mul_div(mark, c.WAD - discount, c.WAD, False)
        else:
            price = fp._mul_div(mark, c.WAD + discount, c.WAD, True)
        extcall core.engine_fill(account, taker, m, -part, price, 0)
        if part != size and taker != state.POOL:
            # the taker's leg obeys the minimum too (a whole leg moves as it is): a
            # sliver of a large leg would open dust no market order may open
            held: int256 = packing._pos_size(state._pos[taker][m])
            assert (
                held == 0
                or fp._mul_div(convert(abs(held), uint256), mark, c.WAD, False)
                >= c.MIN_POSITION_NOTIONAL
            ), "clearinghouse: min position size"
        notional += fp._mul_div(convert(abs(part), uint256), mark, c.WAD, False)
    penalty: uint256 = fp._mul_div(notional, penalty_rate, c.WAD, True)
    if penalty != 0:
        state._balance[account][0] -= convert(penalty, int256)
        treasury._credit_treasury(penalty, 0)
    if taker != state.POOL:
        extcall core.engine_check_initial(taker, "clearinghouse: taker below initial margin", False)
        # a take adds risk to the taker: not into an account left below its loss cap
        gates._require_loss_cap(taker, "clearinghouse: taker below loss cap")
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
    @dev An account left without positions: while its settlement balance is negative,
         the vault's pool buys its other collateral at the mark less the token's haircut
         (the value the margin check counted; rounded against the account), only as much
         as covers the debt; the rest stays with the owner. A deficit left after that is
         covered from insurance and the rest socialised through the vault's cash.
         Returns the updated header.
    """
    hdr: uint256 = header
    bal0: int256 = state._balance[account][0]
    cbits: uint256 = packing._collateral_bitmap(hdr)
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if packing._no_bits_from(cbits, i) or bal0 >= 0:
            break
        if not packing._has_bit(cbits, i):
            continue
        bal: uint256 = convert(state._balance[account][i], uint256)
        price: uint256 = 0
        flags: uint256 = 0
        index: int256 = 0
        price, flags, index = extcall core.engine_touch(state.collateral_market[i])
        assert flags & c.FLAG_DEGRADED == 0, "clearinghouse: no price quorum"
        unit: uint256 = fp._mul_div(price, c.WAD - state.collateral_haircut[i], c.WAD, False)
        if unit == 0:
            continue
        # the smallest amount whose credit covers the debt (rounded up), at most the balance
        sold: uint256 = min(bal, fp._mul_div(convert(-bal0, uint256), c.WAD, unit, True))
        credit: uint256 = fp._mul_div(sold, unit, c.WAD, False)
        state._balance[account][i] = convert(bal - sold, int256)
        if sold == bal:
            hdr = packing._with_collateral(hdr, i, False)
        state.seized_collateral[i] += sold
        bal0 += convert(credit, int256)
        treasury._move_pool_cash(-convert(credit, int256))
        log state.CollateralSeized(
            account=account, token_index=i, amount=sold, price=unit, credit=credit
        )
    state._balance[account][0] = bal0
    if bal0 >= 0:
        return hdr
    deficit: uint256 = convert(-bal0, uint256)
    cover: uint256 = treasury._cover_bad_debt(deficit)
    socialized: uint256 = deficit - cover
    state._balance[account][0] = 0
    log state.BadDebtSettled(
        account=account, deficit=deficit, from_insurance=cover, socialized=socialized
    )
    return hdr
