"""Liquidation end to end: ladder, Dutch auction, vault backstop, bad debt, oracle guard.

Every path of contracts/LiquidationAuction.vy against the whole deployed system, with the
amounts checked to the wei against independent mirrors of the formulas
(liquidation_helpers: tranche size, keeper reward, discount, fill price) and the events
decoded with the ABI of the contract that emits them: TrancheOpened / AuctionTake /
AuctionBackstop / AuctionReset / LiquidationFinished from the auction;
LiquidationBegun / LiquidationRewardPaid / LiquidationTransfer / LiquidationEnded /
BadDebtSettled from the Clearinghouse's Ops ABI; Fill from its hot-path ABI. Conservation
(tokens held by the Clearinghouse = Σ balances + pool cash + insurance + protocol fees) is
checked after every step.

The victim is an isolated 1-BTC long opened at 100,000 with 12,000 USDC; `LiqWorld.hold`
keeps a price for one EMA window so the time-weighted price agrees with the median.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest
from liquidation_helpers import (
    WAD,
    LiqWorld,
    Victim,
    expected_discount,
    expected_reward,
    expected_scale,
    expected_tranche,
    fill_price,
    funded_world,
    part_of,
)

from perpdex.sdk import math as pm

BTC = 0
DEPOSIT = 12_000
INSURANCE = 1_000


@pytest.fixture(scope="module")
def liq(
    actors: dict[str, Any],
    protocol: Any,
    chain: Any,
    admin: Any,
    lp: Any,
) -> LiqWorld:
    """The vault holds 2M USDC of LP money and insurance holds 1,000 USDC."""
    return funded_world(protocol, chain, admin, lp, INSURANCE)


@pytest.fixture(scope="module")
def keeper_acct(liq: LiqWorld, keeper: Any) -> int:
    return liq.account(keeper, 200_000, name="keeper")


@pytest.fixture(scope="module")
def rival_acct(liq: LiqWorld, liquidator: Any) -> int:
    return liq.account(liquidator, 200_000, name="rival")


@pytest.fixture
def victim(liq: LiqWorld, trader: Any, keeper_acct: int, rival_acct: int) -> Victim:
    return liq.btc_long(trader, DEPOSIT)


def at_health(liq: LiqWorld, v: Victim, health: str) -> Decimal:
    """Hold BTC at the price giving `health`; returns that price."""
    price = liq.price_for_health(v.account, Decimal(health))
    liq.hold({"BTC": price})
    return price


def started(liq: LiqWorld, v: Victim, keeper: Any, keeper_acct: int) -> Any:
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    liq.assert_conserved()
    return tx


def ts(chain: Any, tx: Any) -> int:
    return int(chain.blocks[tx.block_number].timestamp)


def one(tx: Any, event: Any) -> Any:
    logs = tx.decode_logs(event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    return logs[0]


def none_of(tx: Any, event: Any) -> None:
    assert tx.decode_logs(event) == [], f"unexpected {event.name}"


# --- start: the oracle guard and refusals --------------------------------------------------


def test_start__healthy_account__reverts(liq, victim, keeper, keeper_acct):
    at_health(liq, victim, "1.05")
    with ape.reverts("auction: account is healthy"):
        liq.auction.start(victim.account, keeper_acct, sender=keeper)


def test_start__account_without_positions__reverts(liq, keeper, keeper_acct, trader):
    flat = liq.account(trader, 1_000, name="flat")
    with ape.reverts("auction: no positions"):
        liq.auction.start(flat, keeper_acct, sender=keeper)


def test_start__unhealthy_only_at_the_median__reverts(liq, victim, keeper, keeper_acct):
    """One tick down: the median says unhealthy, the time-weighted price does not."""
    price = liq.price_for_health(victim.account, Decimal("0.8"))
    liq.post({"BTC": price})
    assert liq.health(victim.account) < 1
    t = liq.ch.margin_at_twap(victim.account)
    assert t.equity >= t.maintenance
    with ape.reverts("auction: healthy at the time-weighted price"):
        liq.auction.start(victim.account, keeper_acct, sender=keeper)
    # the same price held for one EMA window passes the guard
    liq.hold({"BTC": price})
    tx = started(liq, victim, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert ev.twap_equity < ev.twap_maintenance


def test_start__twice__reverts(liq, victim, keeper, keeper_acct, liquidator, rival_acct):
    at_health(liq, victim, "0.8")
    started(liq, victim, keeper, keeper_acct)
    with ape.reverts("auction: already in liquidation"):
        liq.auction.start(victim.account, rival_acct, sender=liquidator)


@pytest.mark.parametrize("down", [True, False], ids=["sequencer-down", "grace-period"])
def test_start__sequencer_not_ready__refuses_non_critical(
    liq, victim, keeper, keeper_acct, chain, down
):
    at_health(liq, victim, "0.8")
    liq.set_sequencer(up=not down)
    with ape.reverts("auction: sequencer grace period"):
        liq.auction.start(victim.account, keeper_acct, sender=keeper)
    # once the grace period is over the same account can be liquidated
    liq.set_sequencer(up=True, since=chain.pending_timestamp - 3_601)
    started(liq, victim, keeper, keeper_acct)


def test_start__sequencer_grace__critical_account_goes_whole(liq, victim, keeper, keeper_acct):
    at_health(liq, victim, "0.3")
    liq.set_sequencer(up=True)  # just came back: grace period
    assert int(liq.p.oracle.sequencer_flags()) & 6 != 0
    tx = started(liq, victim, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert ev.critical and ev.fraction == WAD


def test_take__sequencer_grace__refused_for_non_critical(liq, victim, keeper, keeper_acct, chain):
    at_health(liq, victim, "0.8")
    started(liq, victim, keeper, keeper_acct)
    liq.set_sequencer(up=True)
    with ape.reverts("auction: sequencer grace period"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    chain.pending_timestamp += 700
    with ape.reverts("auction: sequencer grace period"):
        liq.auction.backstop(victim.account, sender=keeper)


# --- the partial ladder ------------------------------------------------------------------


def test_partial_ladder__first_tranche_exact(liq, victim, keeper, keeper_acct, chain):
    at_health(liq, victim, "0.85")
    ins0 = liq.balances()["insurance"]
    kbal0 = int(liq.ch.balance_of(keeper_acct, 0))
    tx = started(liq, victim, keeper, keeper_acct)
    t0 = ts(chain, tx)
    ev = one(tx, liq.auction.TrancheOpened)
    begun = one(tx, liq.p.ops.LiquidationBegun)
    after = liq.margin(victim.account)
    p = liq.params
    # the event carries the scan before the reward was paid
    assert ev.equity == after.equity + ev.reward
    assert ev.maintenance == after.maintenance
    assert not ev.critical and ev.step == 1
    q = expected_tranche(ev.equity, ev.maintenance, after.notional, p, False)
    assert ev.fraction == q == p.max_step  # 0.4 M to restore at a 0.9 M cost: capped
    assert ev.notional == q * after.notional // WAD
    assert ev.reward == expected_reward(ev.notional, ev.equity, p, ev.maintenance, q)
    assert (begun.account, begun.keeper_account, begun.reward) == (
        victim.account,
        keeper_acct,
        ev.reward,
    )
    assert int(liq.ch.balance_of(keeper_acct, 0)) == kbal0 + ev.reward
    assert liq.state(victim.account)[:5] == (1, t0, q, ev.notional, 1)
    assert int(liq.ch.account_header(victim.account)) & 4  # locked
    with ape.reverts("clearinghouse: account in liquidation"):
        liq.trade(victim.owner, victim.account, BTC, "0.1")

    # a keeper asks for the whole lot 200 s into the auction; the discount is scaled to
    # the maintenance budget (5% maintenance cannot pay 5.5%: f = 0.8 x M/N / 5.5%) and
    # the take is cut to what restores target health at it (Clipper)
    f = expected_scale(after.maintenance, after.notional, p)
    assert f < WAD
    chain.pending_timestamp = t0 + 200
    bal0 = int(liq.ch.balance_of(victim.account, 0))
    pool0 = liq.balances()["pool_cash"]
    tx = liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    liq.assert_conserved()
    d = expected_discount(ts(chain, tx) - t0, p, f)
    take = one(tx, liq.auction.AuctionTake)
    assert take.discount == d
    assert take.keeper_account == keeper_acct and take.keeper == keeper.address
    mark = int(liq.ch.mark(BTC)[0])
    # the equity the take started from: what it ended with plus what the sale cost
    moved = one(tx, liq.p.ops.LiquidationTransfer)
    sold = part_of(victim.size, take.fraction)
    cost = sold * mark // WAD - sold * fill_price(mark, d, long=True) // WAD + moved.penalty
    e_before = liq.margin(victim.account).equity + cost
    rate = pm.liq_scaled(p.penalty, f)  # the scaled penalty
    need = pm.liq_need(e_before, after.maintenance, after.notional, p.target_health, d + rate)
    assert abs(take.fraction - need) <= 10**6 and take.fraction < q
    assert take.lot_left == (q - take.fraction) * WAD // (WAD - take.fraction)
    q = take.fraction
    part = part_of(victim.size, q)
    fills = {f.account: f for f in tx.decode_logs(liq.ch.Fill)}
    vf, kf = fills[victim.account], fills[keeper_acct]
    assert vf.size_delta == -part and kf.size_delta == part
    assert vf.price == kf.price == fill_price(mark, d, long=True)
    assert vf.counterparty == keeper_acct and vf.fee == 0
    moved = one(tx, liq.p.ops.LiquidationTransfer)
    notional = part * mark // WAD
    penalty = -((-notional * rate) // WAD)
    assert (moved.taker, moved.fraction, moved.discount) == (keeper_acct, q, d)
    assert (d + rate) * after.notional <= pm.LIQ_COST_SHARE * after.maintenance
    assert (moved.notional, moved.penalty) == (notional, penalty)
    # money: the victim pays realised PnL, funding and the penalty; insurance gets the penalty
    assert int(liq.ch.balance_of(victim.account, 0)) == (
        bal0 + vf.realized_pnl - vf.funding_paid - penalty
    )
    assert liq.balances()["insurance"] == ins0 + penalty
    assert liq.balances()["pool_cash"] == pool0 - (vf.realized_pnl - vf.funding_paid) - (
        kf.realized_pnl - kf.funding_paid
    )
    assert int(liq.ch.position(keeper_acct, BTC)[0]) == part
    assert int(liq.ch.position(victim.account, BTC)[0]) == victim.size - part
    # health restored: finished and unlocked; the rest of the lot stays with the owner
    fin = one(tx, liq.auction.LiquidationFinished)
    assert fin.steps == 1 and fin.equity >= fin.maintenance
    one(tx, liq.p.ops.LiquidationEnded)
    none_of(tx, liq.p.ops.BadDebtSettled)
    assert liq.state(victim.account)[0] == 0
    assert int(liq.ch.account_header(victim.account)) & 4 == 0
    liq.trade(victim.owner, victim.account, BTC, "-0.1")  # unlocked: it may trade again


def test_partial_ladder__second_tranche_after_cooldown(liq, victim, keeper, keeper_acct, chain):
    """Sold at the worst discount the first tranche leaves the account unhealthy: it stays
    locked, the next tranche opens after the cooldown, and the ladder ends healthy."""
    at_health(liq, victim, "0.85")
    t0 = ts(chain, started(liq, victim, keeper, keeper_acct))
    p = liq.params
    chain.pending_timestamp = t0 + p.duration  # last second of the auction: max discount
    tx = liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    liq.assert_conserved()
    m0 = liq.margin(victim.account)
    take = one(tx, liq.auction.AuctionTake)
    # sold whole (the need at the worst discount is above the lot), at the scaled maximum
    assert take.lot_left == 0
    assert take.discount < p.max_discount
    none_of(tx, liq.auction.LiquidationFinished)
    assert m0.equity >= 0
    assert liq.health(victim.account) < 1
    active, clock, lot, kick, step, _ = liq.state(victim.account)
    assert (active, clock, lot, kick, step) == (1, ts(chain, tx), 0, 0, 1)
    with ape.reverts("auction: cooldown"):
        liq.auction.step(victim.account, keeper_acct, sender=keeper)
    with ape.reverts("auction: account still unhealthy"):
        liq.auction.finish(victim.account, sender=keeper)
    chain.pending_timestamp = ts(chain, tx) + p.cooldown
    size_before = int(liq.ch.position(victim.account, BTC)[0])
    tx2 = liq.auction.step(victim.account, keeper_acct, sender=keeper)
    liq.assert_conserved()
    ev = one(tx2, liq.auction.TrancheOpened)
    paid = one(tx2, liq.p.ops.LiquidationRewardPaid)
    after = liq.margin(victim.account)
    assert ev.step == 2 and not ev.critical
    assert (ev.twap_equity, ev.twap_maintenance) == (0, 0)  # guard figures: start only
    assert ev.fraction == expected_tranche(ev.equity, ev.maintenance, after.notional, p, False)
    assert (
        ev.reward
        == paid.reward
        == expected_reward(ev.notional, ev.equity, p, ev.maintenance, ev.fraction)
    )
    none_of(tx2, liq.p.ops.LiquidationBegun)
    chain.pending_timestamp = ts(chain, tx2) + 10
    tx3 = liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    liq.assert_conserved()
    moved3 = one(tx3, liq.auction.AuctionTake).fraction
    assert moved3 <= ev.fraction  # cut to what restores target health
    assert int(liq.ch.position(victim.account, BTC)[0]) == size_before - part_of(
        size_before, moved3
    )
    fin = one(tx3, liq.auction.LiquidationFinished)
    assert fin.steps == 2 and fin.equity >= fin.maintenance


def test_take__part_of_the_lot__rest_stays_for_sale(
    liq, victim, keeper, keeper_acct, liquidator, rival_acct, chain
):
    at_health(liq, victim, "0.85")
    t0 = ts(chain, started(liq, victim, keeper, keeper_acct))
    _, _, lot, kick, _, _ = liq.state(victim.account)
    chain.pending_timestamp = t0 + 60
    tx = liq.auction.take(victim.account, keeper_acct, WAD // 4, sender=keeper)
    liq.assert_conserved()
    part = lot * (WAD // 4) // WAD
    left = (lot - part) * WAD // (WAD - part)
    take = one(tx, liq.auction.AuctionTake)
    assert (take.fraction, take.lot_left) == (part, left)
    assert liq.state(victim.account)[2:4] == (left, kick * (lot - part) // lot)
    # the rest: another keeper asks for all of it and gets what restores target health;
    # the liquidation ends and what is left of the lot stays with the owner
    tx = liq.auction.take(victim.account, rival_acct, WAD, sender=liquidator)
    liq.assert_conserved()
    take = one(tx, liq.auction.AuctionTake)
    assert 0 < take.fraction < left
    one(tx, liq.auction.LiquidationFinished)
    assert liq.health(victim.account) >= 1
    assert int(liq.ch.position(rival_acct, BTC)[0]) > 0


def test_two_keepers_race__one_take_wins(
    liq, victim, keeper, keeper_acct, liquidator, rival_acct, chain
):
    at_health(liq, victim, "0.85")
    started(liq, victim, keeper, keeper_acct)
    chain.pending_timestamp += 30
    liq.auction.take(victim.account, rival_acct, WAD, sender=liquidator)
    with ape.reverts("auction: nothing to take"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    assert int(liq.ch.position(keeper_acct, BTC)[0]) == 0
    liq.assert_conserved()


def test_take__taker_below_initial_margin__reverts(liq, victim, keeper, keeper_acct, stranger):
    poor = liq.account(stranger, 100, name="poor keeper")
    at_health(liq, victim, "0.85")
    started(liq, victim, keeper, keeper_acct)
    with ape.reverts("clearinghouse: taker below initial margin"):
        liq.auction.take(victim.account, poor, WAD, sender=stranger)


# --- full liquidation ---------------------------------------------------------------------


def test_full_liquidation__critical_account_goes_whole(liq, victim, keeper, keeper_acct, chain):
    at_health(liq, victim, "0.3")
    tx = started(liq, victim, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert ev.critical and ev.fraction == WAD
    assert ev.equity * 2 < ev.maintenance
    chain.pending_timestamp += 10
    tx = liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    liq.assert_conserved()
    # the lot is the whole book, but the take is cut to what restores target health at
    # this (small) discount: the keeper gets that part, the owner keeps the rest
    part = one(tx, liq.auction.AuctionTake).fraction
    assert WAD // 2 < part < WAD
    kept = int(liq.ch.position(victim.account, BTC)[0])
    assert kept == victim.size - part_of(victim.size, part) > 0
    assert int(liq.ch.position(keeper_acct, BTC)[0]) == part_of(victim.size, part)
    fin = one(tx, liq.auction.LiquidationFinished)
    assert fin.equity >= fin.maintenance > 0
    one(tx, liq.p.ops.LiquidationEnded)
    none_of(tx, liq.p.ops.BadDebtSettled)
    # unlocked: the owner closes the rest and withdraws what is left
    liq.trade(victim.owner, victim.account, BTC, str(Decimal(-kept) / WAD))
    left = int(liq.ch.balance_of(victim.account, 0))
    assert left > 0
    liq.p.ops.withdraw(
        victim.account, liq.p.token, left // liq.scale, victim.owner, sender=victim.owner
    )


def test_full_liquidation__small_book_goes_whole(liq, trader, keeper, keeper_acct):
    """A book under `small_account` notional is sold at once even above critical health."""
    v = liq.btc_long(trader, 200, size="0.015")  # $1,500 of BTC
    assert liq.margin(v.account).notional < liq.params.small_account
    at_health(liq, v, "0.8")
    tx = started(liq, v, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert not ev.critical and ev.fraction == WAD


# --- no bidder: the vault's backstop ------------------------------------------------------


def test_no_bidder__vault_backstop_at_max_discount(
    liq, victim, keeper, keeper_acct, stranger, chain
):
    at_health(liq, victim, "0.85")
    t0 = ts(chain, started(liq, victim, keeper, keeper_acct))
    p = liq.params
    with ape.reverts("auction: still running"):
        liq.auction.backstop(victim.account, sender=stranger)
    chain.pending_timestamp = t0 + p.duration + 1
    with ape.reverts("auction: expired, call backstop"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    _, _, lot, _, _, _ = liq.state(victim.account)
    oi_long0, oi_short0 = liq.ch.open_interest(BTC)
    price0 = liq.share_price()
    s0 = liq.margin(victim.account)  # M/N before the sale set the scale
    tx = liq.auction.backstop(victim.account, sender=stranger)
    liq.assert_conserved()
    b = one(tx, liq.auction.AuctionBackstop)
    d = p.max_discount * expected_scale(s0.maintenance, s0.notional, p) // WAD
    assert (b.caller, b.fraction, b.discount) == (stranger.address, lot, d)
    moved = one(tx, liq.p.ops.LiquidationTransfer)
    assert (moved.taker, moved.discount) == (0, d)
    fill = one(tx, liq.ch.Fill)
    assert fill.counterparty == 0 and fill.size_delta == -part_of(victim.size, lot)
    assert fill.price == fill_price(int(liq.ch.mark(BTC)[0]), d, long=True)
    # the pool took the long: long open interest fell by what moved
    assert liq.ch.open_interest(BTC) == (oi_long0 - part_of(victim.size, lot), oi_short0)
    # buying below the mark never lowers the share price
    assert liq.share_price() >= price0
    assert liq.health(victim.account) < 1  # 0.85 -> about 0.9: still unhealthy
    assert liq.state(victim.account)[0] == 1


# --- bad debt: insurance first, then socialisation ----------------------------------------


def bad_debt_run(liq: LiqWorld, v: Victim, keeper: Any, keeper_acct: int, chain: Any) -> Any:
    """Crash BTC to 80,000 (equity about -8,000), start (critical, no reward), nobody bids,
    backstop. Returns (backstop tx, share price and balances at each step)."""
    liq.hold({"BTC": 80_000})
    assert liq.margin(v.account).equity < 0
    steps = [("before", liq.share_price(), liq.balances())]
    tx = started(liq, v, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert ev.critical and ev.fraction == WAD and ev.equity < 0
    assert ev.reward == 0  # never more than the remaining equity
    assert one(tx, liq.p.ops.LiquidationBegun).reward == 0
    steps.append(("start", liq.share_price(), liq.balances()))
    chain.pending_timestamp = ts(chain, tx) + liq.params.duration + 1
    liq.p.ops.refresh([0, 1, 2], sender=keeper)
    steps.append(("expired", liq.share_price(), liq.balances()))
    bal0 = int(liq.ch.balance_of(v.account, 0))
    tx = liq.auction.backstop(v.account, sender=keeper)
    liq.assert_conserved()
    steps.append(("backstop", liq.share_price(), liq.balances()))
    return tx, bal0, steps


def check_settlement(liq: LiqWorld, v: Victim, tx: Any, bal0: int, steps: list[Any]) -> Any:
    fill = one(tx, liq.ch.Fill)
    moved = one(tx, liq.p.ops.LiquidationTransfer)
    bad = one(tx, liq.p.ops.BadDebtSettled)
    before = steps[-2][2]
    deficit = -(bal0 + fill.realized_pnl - fill.funding_paid - moved.penalty)
    assert bad.account == v.account and bad.deficit == deficit > 0
    available = before["insurance"] + moved.penalty
    assert bad.from_insurance == min(deficit, available)
    assert bad.socialized == deficit - bad.from_insurance
    after = steps[-1][2]
    assert after["insurance"] == available - bad.from_insurance
    assert (
        after["pool_cash"]
        == before["pool_cash"] - (fill.realized_pnl - fill.funding_paid) - bad.socialized
    )
    # no account left silently negative: the deficit was written off to zero
    assert int(liq.ch.balance_of(v.account, 0)) == 0
    assert int(liq.ch.position(v.account, BTC)[0]) == 0
    assert int(liq.ch.account_header(v.account)) & 4 == 0
    one(tx, liq.p.ops.LiquidationEnded)
    assert one(tx, liq.auction.LiquidationFinished).maintenance == 0
    return bad


def test_bad_debt__covered_by_insurance(liq, victim, keeper, keeper_acct, admin, chain):
    liq.fund_insurance(admin, 20_000)
    tx, bal0, steps = bad_debt_run(liq, victim, keeper, keeper_acct, chain)
    bad = check_settlement(liq, victim, tx, bal0, steps)
    assert bad.socialized == 0 and bad.from_insurance == bad.deficit
    prices = [s[1] for s in steps]
    assert prices == sorted(prices), f"share price fell without socialisation: {prices}"


def test_bad_debt__insurance_short__loss_socialised(liq, victim, keeper, keeper_acct, chain):
    tx, bal0, steps = bad_debt_run(liq, victim, keeper, keeper_acct, chain)
    bad = check_settlement(liq, victim, tx, bal0, steps)
    assert bad.socialized > 0 and steps[-1][2]["insurance"] == 0
    # the share price falls when the deficit is provisioned, at liquidation start
    # (BadDebtProvisioned: the loss insurance cannot cover comes off vault equity), not
    # when it is settled: an LP leaving in between shares it (tests/security/
    # test_lp_fairness.py)
    prices = [s[1] for s in steps]
    before, start, expired = (s[2] for s in steps[:3])
    assert start["provision"] > start["insurance"] and prices[1] < prices[0], prices
    fell = before["vault_equity"] - start["vault_equity"]
    assert abs(fell - (start["provision"] - start["insurance"])) < WAD, fell  # funding
    assert steps[-1][2]["provision"] == 0
    # at settlement the pool's equity moves by the socialised loss less what it gained
    # buying at a discount, less the provision it already carried
    mark = int(liq.ch.mark(BTC)[0])
    fill = one(tx, liq.ch.Fill)
    gain = -fill.size_delta * (mark - fill.price) // WAD
    carried = expired["provision"] - expired["insurance"]
    drop = expired["vault_equity"] - steps[-1][2]["vault_equity"]
    assert abs(drop - (bad.socialized - gain - carried)) <= 10**15, (drop, bad.socialized, gain)


# --- the discount clock, top-ups, window caps ----------------------------------------------


def test_redo__after_price_move_past_cusp(liq, victim, keeper, keeper_acct, stranger, chain):
    at_health(liq, victim, "0.85")
    t0 = ts(chain, started(liq, victim, keeper, keeper_acct))
    with ape.reverts("auction: prices have not moved past the cusp"):
        liq.auction.redo(victim.account, sender=stranger)
    _, _, lot, kick, _, _ = liq.state(victim.account)
    price = liq.feed_price("BTC")
    chain.pending_timestamp = t0 + 300
    liq.post({"BTC": price * Decimal("0.88")})  # 12% lower: past the 10% cusp
    tx = liq.auction.redo(victim.account, sender=stranger)
    new = pm.liq_lot_value(lot, int(liq.margin(victim.account).notional))
    reset = one(tx, liq.auction.AuctionReset)
    assert (reset.caller, reset.old_notional, reset.new_notional) == (stranger.address, kick, new)
    active, clock, lot2, kick2, _, discount = liq.state(victim.account)
    assert (active, clock, lot2, kick2) == (1, ts(chain, tx), lot, new)
    assert discount == liq.params.start_discount  # the clock starts again


def test_finish__after_owner_tops_up(liq, victim, keeper, keeper_acct, stranger, chain):
    at_health(liq, victim, "0.85")
    started(liq, victim, keeper, keeper_acct)
    with ape.reverts("auction: account still unhealthy"):
        liq.auction.finish(victim.account, sender=stranger)
    # deposits stay open during a liquidation
    liq.p.ops.deposit(
        victim.account, liq.p.token, liq.fund(victim.owner, 5_000), sender=victim.owner
    )
    tx = liq.auction.finish(victim.account, sender=stranger)
    liq.assert_conserved()
    fin = one(tx, liq.auction.LiquidationFinished)
    assert fin.equity >= fin.maintenance and fin.steps == 1
    assert liq.state(victim.account) == (0, 0, 0, 0, 0, liq.params.max_discount)
    with ape.reverts("auction: nothing to take"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    assert int(liq.ch.position(victim.account, BTC)[0]) == victim.size  # nothing was sold


def test_window_cap__limits_tranche_and_next_start(
    liq, victim, keeper, keeper_acct, hedger, admin, chain
):
    other = liq.btc_long(hedger, DEPOSIT)
    cap = 30_000 * WAD
    tx = liq.auction.set_window_cap(BTC, cap, sender=admin)
    up = one(tx, liq.auction.WindowCapUpdated)
    assert (up.market, up.old_cap, up.new_cap) == (BTC, 0, cap)
    assert liq.auction.capped_markets() == 1
    at_health(liq, victim, "0.85")
    tx = started(liq, victim, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    n = abs(victim.size) * int(liq.ch.mark(BTC)[0]) // WAD
    assert ev.fraction == cap * WAD // n  # the cap, not max_step, binds
    chain.pending_timestamp += 30
    liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    # the window is used up (to rounding) by the first take: the next start must wait
    assert liq.health(other.account) < 1
    with ape.reverts("auction: window cap reached, retry next window"):
        liq.auction.start(other.account, keeper_acct, sender=keeper)
    liq.sleep(liq.params.window)
    liq.hold({"BTC": liq.feed_price("BTC")})
    started(liq, other, keeper, keeper_acct)
    liq.auction.set_window_cap(BTC, 0, sender=admin)
    assert liq.auction.capped_markets() == 0


def test_reward__never_exceeds_remaining_equity(liq, victim, keeper, keeper_acct):
    """Equity of a few dollars: the reward (tip 5 + fee) is cut to what is left."""
    liq.hold({"BTC": liq.price_for_health(victim.account, Decimal("0.0004"))})
    s = liq.margin(victim.account)
    assert 0 < s.equity < liq.params.keeper_tip
    tx = started(liq, victim, keeper, keeper_acct)
    ev = one(tx, liq.auction.TrancheOpened)
    assert (
        ev.reward == ev.equity < liq.params.keeper_tip + ev.notional * liq.params.keeper_fee // WAD
    )
    assert liq.margin(victim.account).equity == 0


# --- every other revert string of the auction ----------------------------------------------


@pytest.mark.parametrize("fraction", [0, WAD + 1], ids=["zero", "above-one"])
def test_take__bad_fraction__reverts(liq, victim, keeper, keeper_acct, fraction):
    with ape.reverts("auction: bad fraction"):
        liq.auction.take(victim.account, keeper_acct, fraction, sender=keeper)


def test_take__into_the_liquidated_account__reverts(liq, victim, trader):
    with ape.reverts("auction: cannot take into the liquidated account"):
        liq.auction.take(victim.account, victim.account, WAD, sender=trader)


def test_take__into_someone_elses_account__reverts(liq, victim, keeper_acct, stranger):
    with ape.reverts("auction: not your account"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=stranger)


def test_take__no_auction__reverts(liq, victim, keeper, keeper_acct):
    with ape.reverts("auction: nothing to take"):
        liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)


def test_take__fraction_rounding_to_zero__reverts(liq, victim, keeper, keeper_acct):
    at_health(liq, victim, "0.85")
    started(liq, victim, keeper, keeper_acct)
    with ape.reverts("auction: fraction too small"):
        liq.auction.take(victim.account, keeper_acct, 1, sender=keeper)


def test_backstop__no_auction__reverts(liq, victim, stranger):
    with ape.reverts("auction: nothing to take"):
        liq.auction.backstop(victim.account, sender=stranger)


def test_redo__no_auction__reverts(liq, victim, stranger):
    with ape.reverts("auction: nothing to reset"):
        liq.auction.redo(victim.account, sender=stranger)


def test_step_and_finish__not_in_liquidation__revert(liq, victim, keeper, keeper_acct):
    with ape.reverts("auction: not in liquidation"):
        liq.auction.step(victim.account, keeper_acct, sender=keeper)
    with ape.reverts("auction: not in liquidation"):
        liq.auction.finish(victim.account, sender=keeper)


def test_step__tranche_still_open__reverts(liq, victim, keeper, keeper_acct):
    at_health(liq, victim, "0.85")
    started(liq, victim, keeper, keeper_acct)
    with ape.reverts("auction: tranche still open"):
        liq.auction.step(victim.account, keeper_acct, sender=keeper)


def test_set_window_cap__unknown_market__reverts(liq, admin):
    with ape.reverts("auction: unknown market"):
        liq.auction.set_window_cap(32, 1, sender=admin)


def test_governance__not_owner__reverts(liq, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        liq.auction.set_window_cap(BTC, 1, sender=stranger)
    with ape.reverts("ownable: caller is not the owner"):
        liq.auction.set_params(liq.params, sender=stranger)


PARAM_NAMES = [
    "keeper_tip", "keeper_fee", "keeper_cap", "penalty", "target_health",
    "critical_health", "min_step", "max_step", "small_account", "cooldown",
    "start_discount", "max_discount", "duration", "cusp", "window",
]  # fmt: skip
BAD_PARAMS = [
    ("target_health", WAD, "auction: target health must exceed 1"),
    ("critical_health", WAD, "auction: critical health must be below 1"),
    ("min_step", 0, "auction: bad step bounds"),
    ("max_step", WAD + 1, "auction: bad step bounds"),
    ("start_discount", WAD // 10, "auction: bad discounts"),  # above max_discount
    ("max_discount", WAD // 2, "auction: bad discounts"),
    ("penalty", WAD // 10, "auction: penalty too high"),
    ("keeper_fee", WAD // 10, "auction: keeper fee too high"),
    ("duration", 0, "auction: bad duration"),
    ("duration", 86_401, "auction: bad duration"),
    ("cusp", 0, "auction: bad cusp"),
    ("window", 0, "auction: zero window"),
    ("cooldown", 86_401, "auction: cooldown too long"),
    ("keeper_tip", 2**128, "auction: parameter too large"),
    ("target_health", 2**64, "auction: parameter too large"),
    ("keeper_cap", 1_000 * WAD + 1, "auction: keeper cap above the clearinghouse bound"),
]


@pytest.mark.parametrize(
    ("field", "value", "reason"), BAD_PARAMS, ids=[f"{f}={v}" for f, v, _ in BAD_PARAMS]
)
def test_set_params__invalid__reverts(liq, admin, field, value, reason):
    params = {n: int(getattr(liq.params, n)) for n in PARAM_NAMES}
    params[field] = value
    with ape.reverts(reason):
        liq.auction.set_params(params, sender=admin)


def test_set_params__valid__logged_with_old_and_new(liq, admin):
    new = {n: int(getattr(liq.params, n)) for n in PARAM_NAMES}
    new["duration"] = 900
    tx = liq.auction.set_params(new, sender=admin)
    ev = one(tx, liq.auction.ParamsUpdated)
    duration = PARAM_NAMES.index("duration")
    assert ev.old_params[duration] == 600 and ev.new_params[duration] == 900
    assert liq.auction.params().duration == 900
