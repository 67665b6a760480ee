"""Fair LP pricing (issue 9, item 5): attacks on the vault's share price.

1. Exit ahead of a haircut. Two LPs deposit $1M each. A trader's 4-BTC long (48k USDC)
   goes underwater in a crash to 80,000 (equity about -$33k). Its liquidation starts; one
   LP redeems before the vault backstop settles the bad debt, the other after. Before the
   fix the pool counted the trader's whole loss as profit until the settlement, so the
   early LP walked away with about half the deficit that the late LP then paid. Now the
   deficit is provisioned in vault equity at liquidation start (BadDebtProvisioned): both
   LPs get the same to within the withdrawal fee the first one paid into the pool.
2. Sandwich a correlated oracle update across markets. Traders are long BTC, ETH and SOL
   up to the vault's exposure caps; every feed moves 0.5% down (the pool's favour) at
   once. An attacker deposits right after the feeds move and redeems after a keeper
   refreshes the marks. Before the fix the deposit was priced at the cached marks (up to
   60 s old) and the 0.3% fee covered one market only: the round trip paid. Now every
   market with open interest is re-read on deposit and withdrawal and the fee covers the
   summed exposure: the round trip loses money.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from liquidation_helpers import WAD, LiqWorld

BTC, ETH, SOL = 0, 1, 2
LP_DEPOSIT = 1_000_000


@pytest.fixture
def world(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any) -> LiqWorld:
    return LiqWorld(protocol, chain, admin)


def redeem_all(w: LiqWorld, who: Any) -> int:
    """Redeems every share of `who`; returns the token units paid."""
    shares = int(w.vault.balanceOf(who))
    before = int(w.p.token.balanceOf(who))
    w.vault.redeem(shares, who, who, sender=who)
    return int(w.p.token.balanceOf(who)) - before


def test_exit_before_bad_debt_settles__both_lps_get_the_same(
    world: LiqWorld, lp: Any, hedger: Any, trader: Any, keeper: Any, chain: Any
) -> None:
    w = world
    w.lp_deposit(lp, LP_DEPOSIT)
    w.lp_deposit(hedger, LP_DEPOSIT)
    keeper_acct = w.account(keeper, 200_000, name="keeper")
    victim = w.account(trader, 48_000, name="victim")
    w.trade(trader, victim, BTC, "3.9")  # at the BTC cap (40% of the pool)
    w.hold({"BTC": 80_000})
    equity = int(w.margin(victim).equity)
    assert equity < -30_000 * WAD, equity

    w.auction.start(victim, keeper_acct, sender=keeper)
    early = redeem_all(w, lp)  # LP A leaves while the account is still being liquidated
    chain.pending_timestamp += int(w.params.duration) + 1
    w.post()
    tx = w.auction.backstop(victim, sender=keeper)
    bad = tx.decode_logs(w.p.ops.BadDebtSettled)
    assert len(bad) == 1 and bad[0].socialized > 0
    late = redeem_all(w, hedger)  # LP B stays until the bad debt is settled

    fee_bps = int(w.vault.withdraw_fee_bps())
    print(f"early LP ${Decimal(early) / w.unit:,.2f}, late LP ${Decimal(late) / w.unit:,.2f}")
    # the late LP received the early LP's fee: they differ by at most that fee
    assert abs(early - late) <= early * fee_bps // 10_000 + w.unit, (early, late)
    # and the late LP is not the one who carries the deficit: it got at least what the
    # early one did
    assert late >= early, (early, late)
    w.assert_conserved()


def test_liquidation_start__provisions_the_deficit(
    world: LiqWorld, lp: Any, trader: Any, keeper: Any, chain: Any
) -> None:
    w = world
    w.lp_deposit(lp, LP_DEPOSIT)
    keeper_acct = w.account(keeper, 200_000, name="keeper")
    victim = w.account(trader, 48_000, name="victim")
    w.trade(trader, victim, BTC, "3.9")  # at the BTC cap (40% of the pool)
    w.hold({"BTC": 80_000})
    equity_before = int(w.p.lens.vault_equity())
    price_before = w.share_price()
    insurance = int(w.ch.insurance_fund())
    tx = w.auction.start(victim, keeper_acct, sender=keeper)
    prov = tx.decode_logs(w.p.ops.BadDebtProvisioned)
    assert len(prov) == 1 and prov[0].account == victim
    deficit = -int(w.margin(victim).equity)
    assert deficit > 30_000 * WAD
    assert prov[0].provision == deficit and prov[0].total == deficit
    assert int(w.ch.bad_debt_provision()) == deficit
    # the provision, net of what insurance will cover, comes off vault equity at once (up
    # to the funding the start's mark refresh accrues if the clock moved a second: < $1)
    fell = equity_before - int(w.p.lens.vault_equity())
    assert abs(fell - (deficit - insurance)) < WAD, (fell, deficit, insurance)
    assert w.share_price() < price_before
    # settled: the provision is released in the transaction that socialises the loss
    chain.pending_timestamp += int(w.params.duration) + 1
    w.post()
    tx = w.auction.backstop(victim, sender=keeper)
    assert len(tx.decode_logs(w.p.ops.BadDebtSettled)) == 1
    released = tx.decode_logs(w.p.ops.BadDebtProvisioned)
    assert released[-1].account == victim
    assert released[-1].provision == 0 and released[-1].total == 0
    assert int(w.ch.bad_debt_provision()) == 0
    w.assert_conserved()


def test_liquidation_start__insurance_covers_the_provision(
    world: LiqWorld, lp: Any, trader: Any, keeper: Any, admin: Any
) -> None:
    """Insurance larger than the deficit: nothing comes off vault equity."""
    w = world
    w.lp_deposit(lp, LP_DEPOSIT)
    w.fund_insurance(admin, 100_000)
    keeper_acct = w.account(keeper, 200_000, name="keeper")
    victim = w.account(trader, 48_000, name="victim")
    w.trade(trader, victim, BTC, "3.9")  # at the BTC cap (40% of the pool)
    w.hold({"BTC": 80_000})
    before = int(w.p.lens.vault_equity())
    price = w.share_price()
    tx = w.auction.start(victim, keeper_acct, sender=keeper)
    assert tx.decode_logs(w.p.ops.BadDebtProvisioned)[0].provision > 0
    # nothing comes off (only funding a mark refresh accrues if the clock moved: < $1)
    assert abs(int(w.p.lens.vault_equity()) - before) < WAD
    assert abs(w.share_price() - price) <= 1


def test_healthy_liquidation__no_provision(
    world: LiqWorld, lp: Any, trader: Any, keeper: Any
) -> None:
    """An account that enters liquidation with positive equity provisions nothing."""
    w = world
    w.lp_deposit(lp, LP_DEPOSIT)
    keeper_acct = w.account(keeper, 200_000, name="keeper")
    victim = w.account(trader, 12_000, name="victim")
    w.trade(trader, victim, BTC, "1")
    w.hold({"BTC": w.price_for_health(victim, Decimal("0.9"))})
    tx = w.auction.start(victim, keeper_acct, sender=keeper)
    assert tx.decode_logs(w.p.ops.BadDebtProvisioned) == []
    assert int(w.ch.bad_debt_provision()) == 0


def test_sandwich_correlated_update_across_markets__unprofitable(
    world: LiqWorld, lp: Any, trader: Any, hedger: Any, stranger: Any, keeper: Any
) -> None:
    w = world
    w.lp_deposit(lp, LP_DEPOSIT)
    # traders long every market, each close to the vault's exposure cap (fraction of cash)
    cash = Decimal(int(w.ch.pool_cash())) / WAD
    acct = w.account(trader, 2_000_000, name="longs")
    for m, sym in ((BTC, "BTC"), (ETH, "ETH"), (SOL, "SOL")):
        cap = Decimal(int(w.ch.market_params(m).max_vault_exposure)) / WAD
        price = w.feed_price(sym)
        size = (cash * cap * Decimal("0.97") / price).quantize(Decimal("0.001"))
        w.trade(trader, acct, m, size)
    # one correlated oracle round: every feed 0.5% lower (the longs lose, the pool gains);
    # nobody has refreshed the marks yet
    new = {s: w.feed_price(s) * Decimal("0.995") for s in ("BTC", "ETH", "SOL")}
    for sym, feeds in w.p.feeds.items():
        for f in feeds:
            f.set_answer(int(new[sym] * 10**8), sender=w.who)
    units = w.fund(stranger, 1_000_000)
    w.p.token.approve(w.vault, units, sender=stranger)
    w.vault.deposit(units, stranger, sender=stranger)
    w.p.ops.refresh([BTC, ETH, SOL], sender=keeper)
    out = redeem_all(w, stranger)
    print(f"sandwich: in ${units / w.unit:,.2f}, out ${Decimal(out) / w.unit:,.2f}")
    assert out < units, f"sandwich paid {out - units} units"


def test_exit_ahead_of_correlated_update_and_return__unprofitable(
    world: LiqWorld, lp: Any, trader: Any, stranger: Any, keeper: Any
) -> None:
    """The other side of the sandwich: an LP who sees a round of feed updates against the
    pool coming (every market 0.5% up while traders are long near the caps) leaves before
    it and comes back after. The fee it pays exceeds the loss it dodges."""
    w = world
    w.lp_deposit(lp, 900_000)
    units = w.fund(stranger, 100_000)
    w.p.token.approve(w.vault, units, sender=stranger)
    w.vault.deposit(units, stranger, sender=stranger)
    cash = Decimal(int(w.ch.pool_cash())) / WAD
    acct = w.account(trader, 2_000_000, name="longs")
    for m, sym in ((BTC, "BTC"), (ETH, "ETH"), (SOL, "SOL")):
        cap = Decimal(int(w.ch.market_params(m).max_vault_exposure)) / WAD
        size = (cash * cap * Decimal("0.85") / w.feed_price(sym)).quantize(Decimal("0.001"))
        w.trade(trader, acct, m, size)
    shares = int(w.vault.balanceOf(stranger))
    # what staying through the update is worth: the same update applied in a snapshot
    new = {s: w.feed_price(s) * Decimal("1.005") for s in ("BTC", "ETH", "SOL")}
    out = redeem_all(w, stranger)  # leaves just before the update
    w.post(new)  # the correlated round: the pool loses about 0.5% x 0.85 x 1.4
    back = int(w.vault.previewDeposit(out))
    stay_value = int(w.vault.previewRedeem(shares))
    back_value = int(w.vault.previewRedeem(back))
    print(f"exit-and-return: {back_value / w.unit:,.2f} vs staying {stay_value / w.unit:,.2f}")
    assert back_value < stay_value, (back_value, stay_value)
