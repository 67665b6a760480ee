"""Liquidation that pays for itself, only when due (issue 9, items 2 and 9b).

The attacks, each as a regression test:
- cost above maintenance: the maximum discount (5%) + penalty (0.5%) + keeper reward
  exceeded the maintenance requirement of every BTC/ETH isolated book and of every
  portfolio book, so an account entering liquidation with positive equity (health just
  under 1) ended in bad debt;
- the taker kept the discount on the whole lot whatever the account owed (Clipper's rule:
  an auction raises at most what is owed, the rest returns to the owner);
- an account topped up by its owner could still be taken at a discount, and `redo`
  pushed the backstop deadline back each time it was called;
- a LIQUIDATOR_ROLE holder could take a healthy account (the clearinghouse trusted the
  reward and discount it was handed).
Plus the ladder: a slowly falling market liquidates a large account in >= 3 real
tranches, and no tranche leaves a position below the minimum notional.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import ape
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from liquidation_helpers import (
    WAD,
    LiqWorld,
    Victim,
    funded_world,
)

BTC, ETH = 0, 1
EPS_HEALTH = Decimal("0.995")  # "health 1 - epsilon"


@pytest.fixture(scope="module")
def liq(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> LiqWorld:
    return funded_world(protocol, chain, admin, lp, 1_000)


@pytest.fixture(scope="module")
def keeper_acct(liq: LiqWorld, keeper: Any) -> int:
    return liq.account(keeper, 2_000_000, name="keeper")


@pytest.fixture(scope="module")
def rogue(liq: LiqWorld, admin: Any, project: Any) -> Any:
    r = project.RogueLiquidator.deploy(sender=admin)
    liq.p.admin.grantRole(liq.ch.LIQUIDATOR_ROLE(), r, sender=admin)
    return r


def ts(chain: Any, tx: Any) -> int:
    return int(chain.blocks[tx.block_number].timestamp)


def health_at(liq: LiqWorld, acct: int, symbol: str, price: Decimal) -> Decimal:
    liq.post({symbol: price})
    return liq.health(acct)


def hold_at_health(
    liq: LiqWorld, acct: int, symbol: str, lo: Decimal, hi: Decimal, target: Decimal
) -> Decimal:
    """Bisects `symbol`'s price in [lo, hi] (health rising with the price on `hi`'s side)
    for a health in [target, 1), then holds it for the time-weighted price."""
    h_lo = health_at(liq, acct, symbol, lo)
    h_hi = health_at(liq, acct, symbol, hi)
    assert (h_lo < target) != (h_hi < target), (h_lo, h_hi)
    for _ in range(40):
        mid = ((lo + hi) / 2).quantize(Decimal("0.01"))
        h = health_at(liq, acct, symbol, mid)
        if target <= h < 1:
            liq.hold({symbol: mid})
            h = liq.health(acct)
            assert target <= h < 1, h
            return mid
        if (h < target) == (h_lo < target):
            lo, h_lo = mid, h
        else:
            hi = mid
    raise AssertionError("no price found")


def btc_isolated(liq: LiqWorld, who: Any) -> Victim:
    v = liq.btc_long(who, 12_000, size="1")
    hold_at_health(liq, v.account, "BTC", Decimal(90_000), Decimal(100_000), EPS_HEALTH)
    return v


def eth_isolated(liq: LiqWorld, who: Any) -> Victim:
    acct = liq.account(who, 12_000, name="eth")
    liq.trade(who, acct, ETH, "-30")
    hold_at_health(liq, acct, "ETH", Decimal(3_300), Decimal(3_000), EPS_HEALTH)
    return Victim(acct, who, -30 * WAD)


def hedged_portfolio(liq: LiqWorld, who: Any) -> Victim:
    """Long 1 BTC, short 30 ETH in portfolio mode: maintenance about 3.75% of gross."""
    acct = liq.account(who, 20_000, portfolio=True, name="pf")
    liq.trade(who, acct, BTC, "1")
    liq.trade(who, acct, ETH, "-30")
    s = liq.margin(acct)
    assert s.maintenance * 100 < 55 * s.notional // 10, "book should be cheaper than 5.5%"
    hold_at_health(liq, acct, "BTC", Decimal(60_000), Decimal(100_000), EPS_HEALTH)
    return Victim(acct, who, WAD)


BOOKS = {"btc-isolated": btc_isolated, "eth-isolated": eth_isolated, "portfolio": hedged_portfolio}


def deadline_of(liq: LiqWorld, acct: int) -> int:
    if hasattr(liq.auction, "deadline"):
        return int(liq.auction.deadline(acct))
    return liq.state(acct)[1] + liq.params.duration  # before the fix: clock + duration


def drive(
    liq: LiqWorld, acct: int, keeper: Any, keeper_acct: int, chain: Any, mode: str
) -> list[Any]:
    """Runs a started liquidation to its end at constant prices: each tranche is either
    left to the vault's backstop (`backstop`) or taken whole by a keeper at the last
    second of the auction, at (almost) the maximum discount (`late-take`). Checks after
    every step that the account's equity never goes negative. Returns the txs."""
    txs = []
    p = liq.params
    for _ in range(30):
        active, clock, lot, _, _, _ = liq.state(acct)
        if not active:
            return txs
        if lot:
            deadline = deadline_of(liq, acct)
            if mode == "backstop":
                chain.pending_timestamp = deadline + 1
                tx = liq.auction.backstop(acct, sender=keeper)
            else:
                chain.pending_timestamp = deadline
                tx = liq.auction.take(acct, keeper_acct, WAD, sender=keeper)
        else:
            chain.pending_timestamp = clock + p.cooldown
            tx = liq.auction.step(acct, keeper_acct, sender=keeper)
        txs.append(tx)
        liq.assert_conserved()
        assert liq.margin(acct).equity >= 0, "liquidation pushed the account into bad debt"
    raise AssertionError("liquidation did not end")


@pytest.mark.parametrize("mode", ["backstop", "late-take"])
@pytest.mark.parametrize("book", list(BOOKS))
def test_entering_at_health_below_one__no_bad_debt(
    liq, trader, keeper, keeper_acct, chain, book, mode
):
    v = BOOKS[book](liq, trader)
    s = liq.margin(v.account)
    assert 0 < s.equity < s.maintenance
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    txs = [tx, *drive(liq, v.account, keeper, keeper_acct, chain, mode)]
    for t in txs:
        assert t.decode_logs(liq.p.ops.BadDebtSettled) == []
    assert int(liq.ch.balance_of(v.account, 0)) > 0
    end = liq.margin(v.account)
    assert end.equity >= end.maintenance  # healthy (or flat) at the end
    # the whole cost (discounts, penalties, rewards) stayed inside maintenance margin
    assert s.equity - end.equity < s.maintenance


def test_take__stops_at_what_the_account_owes(liq, trader, keeper, keeper_acct, chain):
    """Clipper: a take restoring health ends the liquidation; the rest of the lot stays
    with the owner instead of going to the keeper at a discount."""
    v = btc_isolated(liq, trader)
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    lot = liq.state(v.account)[2]
    assert lot > 0
    chain.pending_timestamp = ts(chain, tx) + 60
    tx = liq.auction.take(v.account, keeper_acct, WAD, sender=keeper)
    take = tx.decode_logs(liq.auction.AuctionTake)[0]
    assert take.fraction < lot, "the keeper got the whole lot"
    assert liq.state(v.account)[0] == 0  # finished
    assert liq.health(v.account) >= 1
    size = int(liq.ch.position(v.account, BTC)[0])
    assert size > v.size - v.size * lot // WAD  # the owner kept more than lot's remainder


def test_take__after_owner_tops_up__no_transfer(liq, trader, keeper, keeper_acct, chain):
    v = btc_isolated(liq, trader)
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    liq.p.ops.deposit(v.account, liq.p.token, liq.fund(trader, 5_000), sender=trader)
    chain.pending_timestamp = ts(chain, tx) + 500
    tx = liq.auction.take(v.account, keeper_acct, WAD, sender=keeper)
    assert tx.decode_logs(liq.p.ops.LiquidationTransfer) == []
    assert len(tx.decode_logs(liq.auction.LiquidationFinished)) == 1
    assert int(liq.ch.position(v.account, BTC)[0]) == v.size
    assert int(liq.ch.position(keeper_acct, BTC)[0]) == 0
    assert liq.state(v.account)[0] == 0


def test_backstop__after_owner_tops_up__no_transfer(liq, trader, keeper, keeper_acct, chain):
    v = btc_isolated(liq, trader)
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    liq.p.ops.deposit(v.account, liq.p.token, liq.fund(trader, 5_000), sender=trader)
    chain.pending_timestamp = ts(chain, tx) + liq.params.duration + 1
    pool_oi = liq.ch.open_interest(BTC)
    tx = liq.auction.backstop(v.account, sender=keeper)
    assert tx.decode_logs(liq.p.ops.LiquidationTransfer) == []
    assert len(tx.decode_logs(liq.auction.LiquidationFinished)) == 1
    assert int(liq.ch.position(v.account, BTC)[0]) == v.size
    assert liq.ch.open_interest(BTC) == pool_oi


def test_redo__cannot_push_the_backstop_deadline(liq, trader, keeper, keeper_acct, chain):
    v = btc_isolated(liq, trader)
    price = liq.feed_price("BTC")
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    t0 = ts(chain, tx)
    deadline = int(liq.auction.deadline(v.account))
    assert deadline == t0 + liq.params.duration
    # prices run past the cusp both ways; redo twice: the discount clock restarts...
    chain.pending_timestamp = t0 + 200
    liq.post({"BTC": price * Decimal("0.89")})
    assert liq.health(v.account) < 1
    liq.auction.redo(v.account, sender=keeper)
    chain.pending_timestamp = t0 + 400
    liq.post({"BTC": price * Decimal("0.98")})
    assert liq.health(v.account) < 1
    tx = liq.auction.redo(v.account, sender=keeper)
    assert liq.state(v.account)[1] == ts(chain, tx)
    # ...but the deadline stays where the tranche opened it
    assert int(liq.auction.deadline(v.account)) == deadline
    chain.pending_timestamp = deadline + 1
    liq.post()
    tx = liq.auction.backstop(v.account, sender=keeper)
    assert len(tx.decode_logs(liq.auction.AuctionBackstop)) == 1


def test_redo__healthy_account__finishes(liq, trader, keeper, keeper_acct, chain):
    v = btc_isolated(liq, trader)
    price = liq.feed_price("BTC")
    tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
    chain.pending_timestamp = ts(chain, tx) + 100
    liq.post({"BTC": price * Decimal("1.12")})  # recovered past the cusp
    tx = liq.auction.redo(v.account, sender=keeper)
    assert tx.decode_logs(liq.auction.AuctionReset) == []
    assert len(tx.decode_logs(liq.auction.LiquidationFinished)) == 1
    assert liq.state(v.account)[0] == 0


def test_rogue_liquidator__cannot_take_a_healthy_account(liq, trader, stranger, rogue, keeper_acct):
    v = liq.btc_long(trader, 12_000, size="1")
    thief = liq.account(stranger, 100_000, name="thief")
    assert liq.health(v.account) > 1
    with ape.reverts("clearinghouse: account is not liquidatable"):
        rogue.begin(liq.ch, v.account, thief, 0, sender=stranger)
    with ape.reverts("clearinghouse: account not in liquidation"):
        rogue.transfer(liq.ch, v.account, thief, WAD, WAD // 2, 0, sender=stranger)


def test_rogue_liquidator__unhealthy_account__reward_and_discount_bounded(
    liq, trader, stranger, rogue, chain
):
    v = btc_isolated(liq, trader)
    thief = liq.account(stranger, 100_000, name="thief")
    s = liq.margin(v.account)
    # a reward above the clearinghouse's bound is refused
    with ape.reverts("clearinghouse: reward above the bound"):
        rogue.begin(liq.ch, v.account, thief, s.equity, sender=stranger)
    rogue.begin(liq.ch, v.account, thief, 0, sender=stranger)
    # a discount the maintenance margin cannot pay for is refused
    with ape.reverts("clearinghouse: discount above the bound"):
        rogue.transfer(liq.ch, v.account, thief, WAD, WAD // 2, 0, sender=stranger)
    # a second reward without a transfer in between is refused
    with ape.reverts("clearinghouse: reward already paid"):
        rogue.reward(liq.ch, v.account, thief, 1, sender=stranger)
    # the owner tops up: no hook moves anything any more
    liq.p.ops.deposit(v.account, liq.p.token, liq.fund(trader, 5_000), sender=trader)
    with ape.reverts("clearinghouse: account is not liquidatable"):
        rogue.transfer(liq.ch, v.account, thief, WAD, 0, 0, sender=stranger)


def test_hooks__stale_marks__refused(liq, trader, stranger, admin, chain):
    v = btc_isolated(liq, trader)
    liq.p.admin.grantRole(liq.ch.LIQUIDATOR_ROLE(), stranger, sender=admin)
    chain.pending_timestamp += 10
    with ape.reverts("clearinghouse: refresh marks first"):
        liq.p.ops.liquidation_begin(v.account, 0, 0, sender=stranger)


def test_slowly_falling_market__three_real_tranches(liq, hedger, keeper, keeper_acct, chain):
    """An 8-BTC long; BTC falls 0.4% a minute. Keepers take each tranche after 2 minutes;
    the account is liquidated in at least three partial tranches, never in bad debt."""
    v = liq.btc_long(hedger, 96_000, size="8")
    price = liq.feed_price("BTC")
    partial = 0
    opened = 0
    for _ in range(80):
        if liq.state(v.account)[0] == 0 and int(liq.ch.position(v.account, BTC)[0]) == 0:
            break
        price = (price * Decimal("0.996")).quantize(Decimal("0.01"))
        liq.hold({"BTC": price}, seconds=60, step=60)
        active, clock, lot, _, _, _ = liq.state(v.account)
        if not active:
            if liq.health(v.account) < 1 and liq.ch.margin_at_twap(v.account).equity < int(
                liq.ch.margin_at_twap(v.account).maintenance
            ):
                tx = liq.auction.start(v.account, keeper_acct, sender=keeper)
            else:
                continue
        elif lot == 0:
            if chain.pending_timestamp < clock + liq.params.cooldown:
                continue
            tx = liq.auction.step(v.account, keeper_acct, sender=keeper)
        else:
            tx = liq.auction.take(v.account, keeper_acct, WAD, sender=keeper)
        for ev in tx.decode_logs(liq.auction.TrancheOpened):
            opened += 1
            partial += ev.fraction < WAD
        assert tx.decode_logs(liq.p.ops.BadDebtSettled) == []
        assert liq.margin(v.account).equity >= 0
        if opened >= 4:
            break
    assert partial >= 3, f"{partial} partial tranches of {opened}"


def test_tranche__never_leaves_a_position_below_the_minimum(
    liq, trader, keeper, keeper_acct, chain
):
    """A small leg next to a large one: the tranche may not cut the small leg under the
    minimum notional; the transfer takes that leg whole."""
    acct = liq.account(trader, 12_000, name="dust")
    liq.trade(trader, acct, BTC, "1")
    # about $120, then ETH falls to leave about $90 (no order may open a leg that small)
    liq.trade(trader, acct, ETH, "0.04")
    liq.post({"ETH": liq.feed_price("ETH") * Decimal("0.75")})
    hold_at_health(liq, acct, "BTC", Decimal(90_000), Decimal(100_000), EPS_HEALTH)
    tx = liq.auction.start(acct, keeper_acct, sender=keeper)
    chain.pending_timestamp = ts(chain, tx) + 30
    liq.auction.take(acct, keeper_acct, WAD, sender=keeper)
    mark = int(liq.ch.mark(ETH)[0])
    left = abs(int(liq.ch.position(acct, ETH)[0])) * mark // WAD
    assert left == 0 or left >= int(liq.auction.MIN_POSITION_NOTIONAL())


def test_take__a_sliver_of_a_large_leg_is_refused_to_the_taker(
    liq, trader, keeper, keeper_acct, chain
):
    """Found by the outside review (F1): a keeper took $10 of a 1-BTC liquidation and
    its own account held a $10 BTC leg, which no market order may open. The taker's side
    of a partial leg now obeys the minimum; a take of at least $100 goes through."""
    v = liq.btc_long(trader, 12_000, size="1")
    liq.hold({"BTC": liq.price_for_health(v.account, Decimal("0.9"))})
    liq.auction.start(v.account, keeper_acct, sender=keeper)
    lot = liq.state(v.account)[2]
    mark = int(liq.ch.mark(BTC)[0])
    held = int(liq.ch.position(keeper_acct, BTC)[0])

    def fraction_worth(usd: int) -> int:
        return (usd * WAD * WAD // mark) * WAD // lot  # of the lot, for a 1-BTC book

    with ape.reverts("clearinghouse: min position size"):
        liq.auction.take(v.account, keeper_acct, fraction_worth(10), sender=keeper)
    liq.auction.take(v.account, keeper_acct, fraction_worth(150), sender=keeper)
    got = abs(int(liq.ch.position(keeper_acct, BTC)[0]) - held) * mark // WAD
    assert 100 * WAD <= got <= 151 * WAD


def test_take__a_small_leg_moves_whole_to_the_taker(liq, trader, keeper, keeper_acct, chain):
    """The account's own leg under $100 (a price fall made it so) moves whole: the taker
    receives it as it is, so the minimum never blocks a take of an account with dust."""
    acct = liq.account(trader, 12_000, name="dust2")
    liq.trade(trader, acct, BTC, "1")
    liq.trade(trader, acct, ETH, "0.04")
    liq.post({"ETH": liq.feed_price("ETH") * Decimal("0.75")})
    hold_at_health(liq, acct, "BTC", Decimal(90_000), Decimal(100_000), EPS_HEALTH)
    eth_before = int(liq.ch.position(keeper_acct, ETH)[0])
    tx = liq.auction.start(acct, keeper_acct, sender=keeper)
    chain.pending_timestamp = ts(chain, tx) + 30
    liq.auction.take(acct, keeper_acct, WAD, sender=keeper)
    assert int(liq.ch.position(acct, ETH)[0]) == 0
    moved = int(liq.ch.position(keeper_acct, ETH)[0]) - eth_before
    assert moved == 4 * 10**16  # the whole $90 leg


def test_redo__after_the_deadline__reverts(liq, trader, keeper, keeper_acct, chain):
    v = btc_isolated(liq, trader)
    liq.auction.start(v.account, keeper_acct, sender=keeper)
    chain.pending_timestamp = int(liq.auction.deadline(v.account)) + 1
    liq.post({"BTC": liq.feed_price("BTC") * Decimal("0.85")})
    with ape.reverts("auction: expired, call backstop"):
        liq.auction.redo(v.account, sender=keeper)


def test_step__healthy_again__finishes_without_a_tranche(liq, trader, keeper, keeper_acct, chain):
    """Between tranches: the owner tops up; `step` ends the liquidation, pays no reward."""
    v = liq.btc_long(trader, 12_000, size="1")
    liq.hold({"BTC": liq.price_for_health(v.account, Decimal("0.6"))})
    assert Decimal("0.55") < liq.health(v.account) < Decimal("0.65")
    liq.auction.start(v.account, keeper_acct, sender=keeper)
    chain.pending_timestamp = int(liq.auction.deadline(v.account)) + 1
    liq.auction.backstop(v.account, sender=keeper)
    active, _, lot, _, _, _ = liq.state(v.account)
    assert active and lot == 0  # 0.6 -> about 0.4 after half the book at the worst price
    liq.p.ops.deposit(v.account, liq.p.token, liq.fund(trader, 20_000), sender=trader)
    liq.sleep(liq.params.cooldown)  # feeds re-posted, marks fresh
    tx = liq.auction.step(v.account, keeper_acct, sender=keeper)
    assert tx.decode_logs(liq.auction.TrancheOpened) == []
    assert tx.decode_logs(liq.p.ops.LiquidationRewardPaid) == []
    assert len(tx.decode_logs(liq.auction.LiquidationFinished)) == 1
