"""Price quorum (issue 9, item 1): no fill, close, liquidation step, withdrawal check or
vault share price uses a price without quorum (two valid sources agreeing within the
market's deviation bound; one outlier among three dropped).

The attacks, as found on e9e2063 (where the router returned the mean of the valid sources
and only flagged DEGRADED, and reduce-only closes and liquidation steps used it):
- SOL with two live feeds, one misreporting 10x: a $20k account closed a long at the mean
  and withdrew vault cash; an honest short was liquidated at the bad price;
- BTC with two of three feeds stale: the lone remaining feed priced everything.
Here the market freezes instead (MarketFrozen from the keeper's refresh), nothing moves,
and it resumes by itself (MarketResumed) when the feeds agree again.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import ape
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from liquidation_helpers import LiqWorld, funded_world

from perpdex.constants import WAD

BTC, SOL = 0, 2
FEED = 10**8  # one dollar in the 8-decimal mock feeds
MAX_AGE = 3_600  # config/markets.yaml oracle.max_age
NO_QUORUM = "clearinghouse: no price quorum"


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> LiqWorld:
    """2M USDC of LP money in the vault, 10k of insurance."""
    return funded_world(protocol, chain, admin, lp, 10_000)


def _refresh(w: LiqWorld) -> Any:
    return w.p.ops.refresh([0, 1, 2], sender=w.who)


def _frozen(w: LiqWorld, tx: Any) -> list[int]:
    return [int(e.market) for e in w.ch.MarketFrozen.from_receipt(tx)]


def _resumed(w: LiqWorld, tx: Any) -> list[tuple[int, int]]:
    return [(int(e.market), int(e.price)) for e in w.ch.MarketResumed.from_receipt(tx)]


def _sol_two_live_feeds_one_lying(
    w: LiqWorld, chain: Any, honest: int, lie: int, pin: bool = False
) -> None:
    """SOL as it shipped (two live feeds; the third is stale), one feed reporting `lie`.

    With `pin`, every transaction is mined in the same second as the first: anvil
    otherwise lets the wall clock move the next block on (seen on a slow CI machine)."""
    feeds = w.p.feeds["SOL"]
    now = chain.pending_timestamp
    rounds = ((honest, now), (lie, now), (honest, now - MAX_AGE - 1))
    for feed, (price, at) in zip(feeds, rounds, strict=True):
        if pin:
            chain.pending_timestamp = now
        feed.set_round_data(price * FEED, at, at, sender=w.who)


def test_outlier_of_three_is_dropped__close_fills_at_honest_price(
    w: LiqWorld, chain: Any, trader: Any
) -> None:
    acct = w.account(trader, 20_000, name="attacker")
    w.trade(trader, acct, SOL, "100")
    cash_before = int(w.ch.pool_cash())
    w.p.feeds["SOL"][1].set_answer(1_500 * FEED, sender=w.who)  # 10x

    tx = w.trade(trader, acct, SOL, "-100")

    fill = next(e for e in w.ch.Fill.from_receipt(tx) if e.account == acct)
    # the agreeing pair (150, 150); SOL's two shipped feeds gave the mean 825 here, a
    # realised gain of (825 - 150) x 100 = $67,500 paid out of the vault
    assert Decimal(fill.price) / WAD < 151
    assert int(w.ch.mark(SOL)[0]) == 150 * WAD
    # nothing drained: the round trip cost the attacker fees and impact, the pool gained
    assert int(w.ch.balance_of(acct, 0)) < 20_000 * WAD
    assert int(w.ch.pool_cash()) >= cash_before


def test_two_sources_disagree__close_and_withdraw_frozen_then_resume(
    w: LiqWorld, chain: Any, trader: Any, token: Any
) -> None:
    acct = w.account(trader, 20_000, name="attacker")
    w.trade(trader, acct, SOL, "100")
    balance = int(w.ch.balance_of(acct, 0))
    cash = int(w.ch.pool_cash())
    mark = tuple(w.ch.mark(SOL))
    twap = int(w.p.oracle.twap(SOL))
    chain.pending_timestamp += 61  # past max_mark_age: every check re-reads the oracle
    _sol_two_live_feeds_one_lying(w, chain, 150, 1_500)

    # the keeper's refresh records the freeze without reverting, once
    tx = _refresh(w)
    assert _frozen(w, tx) == [SOL]
    assert _frozen(w, _refresh(w)) == []
    assert tuple(w.ch.mark(SOL)) == mark  # no price, no funding from a reading without quorum
    assert int(w.p.oracle.twap(SOL)) == twap  # the EMA never saw 825
    # the attack: close the long at the mean (825: +$67,500 out of the vault's cash on
    # e9e2063) and withdraw it; both refused
    with ape.reverts(NO_QUORUM):
        w.trade(trader, acct, SOL, "-100")
    with ape.reverts(NO_QUORUM):
        w.p.ops.withdraw(acct, token, w.usd(1_000), trader, sender=trader)
    # LPs cannot enter or leave at a share price the oracle cannot confirm
    with ape.reverts(NO_QUORUM):
        w.vault.withdraw(w.usd(1_000), w.who, w.who, sender=w.who)
    assert int(w.ch.balance_of(acct, 0)) == balance
    assert int(w.ch.pool_cash()) == cash

    # the liar is fixed: the market resumes by itself at the next refresh
    w.p.feeds["SOL"][1].set_answer(150 * FEED, sender=w.who)
    tx = _refresh(w)
    assert _resumed(w, tx) == [(SOL, 150 * WAD)]
    w.trade(trader, acct, SOL, "-100")
    assert int(w.ch.position(acct, SOL)[0]) == 0
    assert int(w.ch.balance_of(acct, 0)) < 20_000 * WAD
    assert int(w.ch.pool_cash()) >= cash


def test_honest_short_not_liquidated_at_bad_price(
    w: LiqWorld, chain: Any, trader: Any, keeper: Any, hedger: Any
) -> None:
    short = w.account(hedger, 5_000, name="short")
    w.trade(hedger, short, SOL, "-100")
    keeper_acct = w.account(keeper, 50_000, name="keeper")
    size = int(w.ch.position(short, SOL)[0])
    # hold the lie for a whole EMA window: the old router's TWAP would have followed it
    for _ in range(3):
        chain.pending_timestamp += 300
        _sol_two_live_feeds_one_lying(w, chain, 150, 1_500)
        _refresh(w)

    with ape.reverts(NO_QUORUM):
        w.auction.start(short, keeper_acct, sender=keeper)
    assert int(w.ch.position(short, SOL)[0]) == size
    assert int(w.ch.balance_of(keeper_acct, 0)) == 50_000 * WAD
    assert not w.state(short)[0]  # no auction opened

    # quorum returns at the honest price: the short is healthy and nobody can liquidate it
    chain.pending_timestamp += 60
    w.post({"SOL": 150})
    with ape.reverts("auction: account is healthy"):
        w.auction.start(short, keeper_acct, sender=keeper)
    assert int(w.ch.position(short, SOL)[0]) == size


def test_lone_btc_source_prices_nothing(w: LiqWorld, chain: Any, trader: Any) -> None:
    acct = w.account(trader, 20_000, name="btc")
    w.trade(trader, acct, BTC, "0.1")
    mark = tuple(w.ch.mark(BTC))
    chain.pending_timestamp += MAX_AGE + 1
    feeds = w.p.feeds["BTC"]
    # two of three feeds stale; the third alone moves the price 30% up
    feeds[2].set_answer(130_000 * FEED, sender=w.who)
    for sym in ("ETH", "SOL"):
        for f in w.p.feeds[sym]:
            f.set_answer(int(f.latestRoundData()[1]), sender=w.who)

    tx = _refresh(w)

    assert _frozen(w, tx) == [BTC]
    assert tuple(w.ch.mark(BTC)) == mark
    with ape.reverts(NO_QUORUM):
        w.trade(trader, acct, BTC, "-0.1")
    with ape.reverts(NO_QUORUM):
        w.trade(trader, acct, BTC, "0.1")
    with ape.reverts(NO_QUORUM):
        w.p.clearinghouse.refresh_account(acct, sender=trader)
    # a second feed comes back agreeing with the honest price: quorum of two, resumes
    feeds[0].set_answer(100_000 * FEED, sender=w.who)
    feeds[2].set_answer(100_000 * FEED, sender=w.who)
    tx = _refresh(w)
    assert _resumed(w, tx) == [(BTC, 100_000 * WAD)]
    w.trade(trader, acct, BTC, "-0.1")


def test_loss_cap_close_out_frozen(w: LiqWorld, chain: Any, trader: Any, keeper: Any) -> None:
    acct = w.account(trader, 20_000, name="capped")
    w.trade(trader, acct, SOL, "100")
    w.p.ops.set_loss_cap(acct, 19_999 * WAD, sender=trader)
    chain.pending_timestamp += 61
    _sol_two_live_feeds_one_lying(w, chain, 150, 15)  # a lie down: equity "below" the cap

    with ape.reverts(NO_QUORUM):
        w.p.ops.trigger_loss_cap(acct, sender=keeper)
    assert int(w.ch.position(acct, SOL)[0]) == 100 * WAD


def test_liquidation_transfer_refuses_frozen_market_even_with_fresh_mark(
    w: LiqWorld, chain: Any, trader: Any, admin: Any, stranger: Any
) -> None:
    """The clearinghouse itself checks quorum in its liquidation hooks, whoever holds
    LIQUIDATOR_ROLE: a mark refreshed earlier in the same second does not count once a
    later reading froze the market."""
    acct = w.account(trader, 20_000, name="locked")
    w.trade(trader, acct, SOL, "100")
    w.p.admin.grantRole(w.ch.LIQUIDATOR_ROLE(), stranger, sender=admin)
    ts = chain.pending_timestamp + 10
    chain.pending_timestamp = ts
    _refresh(w)  # quorum: SOL's mark is from `ts`
    chain.pending_timestamp = ts
    _sol_two_live_feeds_one_lying(w, chain, 150, 1_500, pin=True)
    chain.pending_timestamp = ts
    assert _frozen(w, _refresh(w)) == [SOL]
    assert int(w.ch.mark(SOL)[1]) == ts  # the cached mark still looks fresh
    # every hook checks quorum itself (modules/liquidation_hooks.vy `_liquidatable`),
    # before even asking whether the account is liquidatable
    chain.pending_timestamp = ts
    with ape.reverts(NO_QUORUM):
        w.p.ops.liquidation_begin(acct, 0, 0, sender=stranger)
    assert int(w.ch.position(acct, SOL)[0]) == 100 * WAD
