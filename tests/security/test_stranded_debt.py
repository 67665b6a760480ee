"""No stranded debt, no confiscated collateral (issue 9, item 3).

Two attacks on main at e9e2063:
- at bad-debt settlement every non-settlement token moved into `seized_collateral`, which
  nothing could release, while insurance and LPs still paid the whole USDC deficit: an
  account whose WETH more than covered its debt lost all of it;
- an account with no positions and a negative USDC balance backed by WETH could never be
  liquidated (`auction: no positions`): when WETH fell the debt stayed silent.

Now the pool buys just enough collateral at the mark less its haircut to cover the debt
(the rest stays with the owner), any account with negative equity can be started, and the
pool's collateral is counted in vault equity and sold to anyone at the mark less half the
haircut (`buy_collateral`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest
from liquidation_helpers import (
    WAD,
    LiqWorld,
    funded_world,
)

BTC, ETH = 0, 1
HAIRCUT = WAD // 10  # 10%


@pytest.fixture(scope="module")
def liq(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> LiqWorld:
    return funded_world(protocol, chain, admin, lp, 1_000)


@pytest.fixture(scope="module")
def weth(liq: LiqWorld, admin: Any, project: Any) -> Any:
    token = project.MockERC20.deploy("Mock WETH", "WETH", 18, sender=admin)
    liq.p.admin.add_collateral(token, HAIRCUT, ETH, 2**256 - 1, sender=admin)
    assert liq.ch.collateral_count() == 2
    return token


@pytest.fixture(scope="module")
def keeper_acct(liq: LiqWorld, keeper: Any) -> int:
    return liq.account(keeper, 200_000, name="keeper")


def weth_account(liq: LiqWorld, weth: Any, who: Any, amount: int | Decimal) -> int:
    """An account holding `amount` WETH (whole tokens) and no USDC."""
    acct = int(liq.ch.open_account("weth", False, sender=who).return_value)
    wad = int(Decimal(amount) * WAD)
    weth.mint(who, wad, sender=who)
    weth.approve(liq.ch, 2**256 - 1, sender=who)
    liq.p.ops.deposit(acct, weth, wad, sender=who)
    return acct


def crash_to_health(liq: LiqWorld, acct: int, health: Decimal) -> None:
    """Hold BTC at the price giving `health` to a one-position account whose other
    collateral does not move: equity(P) = E0 + s (P - P0), maintenance(P) = M0 P / P0."""
    s0 = liq.ch.account_margin(acct)
    size = Decimal(int(liq.ch.position(acct, BTC)[0])) / WAD
    p0 = Decimal(int(liq.ch.mark(BTC)[0])) / WAD
    e0, m0 = Decimal(s0.equity) / WAD, Decimal(s0.maintenance) / WAD
    price = (size * p0 - e0) / (size - health * m0 / p0)
    liq.hold({"BTC": price.quantize(Decimal("0.01"))})
    s1 = liq.ch.account_margin(acct)
    assert s1.equity < s1.maintenance * health * 11 / 10


def settle_whole_book(liq: LiqWorld, acct: int, keeper: Any, keeper_acct: int) -> Any:
    """Start (a book under `small_account` goes whole) and take it all at once. Returns
    the take's receipt."""
    tx = liq.auction.start(acct, keeper_acct, sender=keeper)
    [opened] = tx.decode_logs(liq.auction.TrancheOpened)
    assert opened.fraction == WAD
    tx = liq.auction.take(acct, keeper_acct, WAD, sender=keeper)
    assert liq.state(acct)[0] == 0, "the liquidation should have ended"
    return tx


def small_weth_book(liq: LiqWorld, weth: Any, trader: Any) -> int:
    """0.1 WETH ($270 after the haircut) backing 0.015 BTC ($1,500, under `small_account`,
    so the auction sells it whole), crashed to health 0.6: the book goes at a small
    discount and the account keeps positive equity, so its WETH more than covers the
    settlement debt the BTC loss left."""
    acct = weth_account(liq, weth, trader, Decimal("0.1"))
    liq.trade(trader, acct, BTC, "0.015")
    assert liq.margin(acct).notional < liq.params.small_account
    crash_to_health(liq, acct, Decimal("0.6"))
    return acct


def test_settlement__sells_only_what_covers_the_debt(
    liq: LiqWorld, weth: Any, trader: Any, keeper: Any, keeper_acct: int
) -> None:
    """The pool buys just enough WETH for the debt; the rest stays the owner's; insurance
    and LPs pay nothing. (Before the fix all 0.1 WETH was seized.)"""
    acct = small_weth_book(liq, weth, trader)
    insurance0 = int(liq.ch.insurance_fund())
    tx = settle_whole_book(liq, acct, keeper, keeper_acct)
    liq.assert_conserved()
    [seized] = tx.decode_logs(liq.p.ops.CollateralSeized)
    mark = int(liq.ch.mark(ETH)[0])
    unit = mark * (WAD - HAIRCUT) // WAD
    assert seized.price == unit
    assert 0 < seized.amount < WAD // 10
    assert seized.credit == seized.amount * unit // WAD
    # just enough: one wei of WETH less would not have covered the debt
    debt = seized.credit - int(liq.ch.balance_of(acct, 0))
    assert seized.credit >= debt > (seized.amount - 1) * unit // WAD
    assert tx.decode_logs(liq.p.ops.BadDebtSettled) == []
    assert int(liq.ch.insurance_fund()) >= insurance0
    left = int(liq.ch.balance_of(acct, 1))
    assert left == WAD // 10 - seized.amount
    assert int(liq.ch.seized_collateral(1)) == seized.amount
    # the surplus is the owner's to withdraw
    liq.p.ops.withdraw(acct, weth, left, trader, sender=trader)
    assert int(weth.balanceOf(trader)) == left


def test_settlement__pool_buying_does_not_move_vault_equity(
    liq: LiqWorld, weth: Any, trader: Any, keeper: Any, keeper_acct: int
) -> None:
    acct = small_weth_book(liq, weth, trader)
    liq.auction.start(acct, keeper_acct, sender=keeper)
    before = int(liq.p.lens.vault_equity())
    price0 = liq.share_price()
    tx = liq.auction.take(acct, keeper_acct, WAD, sender=keeper)
    [seized] = tx.decode_logs(liq.p.ops.CollateralSeized)
    assert seized.credit > 0
    # the pool paid `credit` in cash for WETH it values at the same price (rounded down);
    # the keeper, not the pool, took the position: the vault's equity does not move
    assert abs(int(liq.p.lens.vault_equity()) - before) <= 10**12
    assert liq.share_price() >= price0


def collateral_only_debt(liq: LiqWorld, weth: Any, trader: Any, eth_after: int) -> tuple[int, int]:
    """A position closed at a loss leaves a negative USDC balance that WETH backs; then ETH
    falls to `eth_after`. Returns (account, USDC balance before the fall)."""
    acct = weth_account(liq, weth, trader, 10)
    liq.trade(trader, acct, BTC, "1")
    liq.hold({"BTC": 90_000})
    liq.trade(trader, acct, BTC, "-1")  # close: -$10k realised, allowed (WETH covers it)
    bal = int(liq.ch.balance_of(acct, 0))
    assert bal < -9_000 * WAD
    assert int(liq.ch.account_margin(acct).equity) > 0
    liq.hold({"ETH": eth_after})
    return acct, bal


def test_collateral_only_debt__was_silent__now_liquidatable(
    liq: LiqWorld, weth: Any, trader: Any, keeper: Any, keeper_acct: int, admin: Any
) -> None:
    """No positions, -$10k USDC, 10 WETH: ETH 3,000 -> 1,000 puts equity below zero
    (10 x 1,000 x 0.9 = $9,000 < $10k). Before the fix `start` said "no positions"."""
    liq.fund_insurance(admin, 5_000)
    acct, bal = collateral_only_debt(liq, weth, trader, 1_000)
    s = liq.ch.account_margin(acct)
    assert s.maintenance == 0 and s.equity < 0
    insurance0 = int(liq.ch.insurance_fund())
    tx = liq.auction.start(acct, keeper_acct, sender=keeper)
    liq.assert_conserved()
    [seized] = tx.decode_logs(liq.p.ops.CollateralSeized)
    assert seized.amount == 10 * WAD  # all of it: it does not cover the debt
    [bad] = tx.decode_logs(liq.p.ops.BadDebtSettled)
    assert bad.deficit == -(bal + seized.credit)
    assert bad.from_insurance == min(bad.deficit, insurance0)
    [begun] = tx.decode_logs(liq.p.ops.LiquidationBegun)
    assert begun.reward == 0
    [done] = tx.decode_logs(liq.auction.LiquidationFinished)
    assert done.steps == 0
    assert int(liq.ch.balance_of(acct, 0)) == 0 and int(liq.ch.balance_of(acct, 1)) == 0
    assert int(liq.ch.account_header(acct)) & 4 == 0  # unlocked
    assert liq.state(acct)[0] == 0


def test_collateral_only_debt__covered__is_healthy(
    liq: LiqWorld, weth: Any, trader: Any, keeper: Any, keeper_acct: int
) -> None:
    """The same account while WETH still covers the debt is not liquidatable."""
    acct, _ = collateral_only_debt(liq, weth, trader, 2_500)
    assert liq.ch.account_margin(acct).equity > 0
    with ape.reverts("auction: no positions"):
        liq.auction.start(acct, keeper_acct, sender=keeper)


# --- buying the pool's collateral ----------------------------------------------------------


@pytest.fixture
def pool_weth(
    liq: LiqWorld, weth: Any, trader: Any, keeper: Any, keeper_acct: int, admin: Any
) -> int:
    """The pool holds 10 WETH taken over at $900 (ETH at $1,000, 10% haircut)."""
    acct, _ = collateral_only_debt(liq, weth, trader, 1_000)
    liq.auction.start(acct, keeper_acct, sender=keeper)
    held = int(liq.ch.seized_collateral(1))
    assert held == 10 * WAD
    return held


def buyer_funds(liq: LiqWorld, who: Any, dollars: int) -> None:
    liq.fund(who, dollars)


def test_buy_collateral__at_mark_less_half_the_haircut(
    liq: LiqWorld, weth: Any, pool_weth: int, stranger: Any
) -> None:
    buyer_funds(liq, stranger, 10_000)
    usdc0 = int(liq.p.token.balanceOf(stranger))
    cash0, equity0, price0 = (
        int(liq.ch.pool_cash()),
        int(liq.p.lens.vault_equity()),
        liq.share_price(),
    )
    mark = int(liq.ch.mark(ETH)[0])
    unit = -((-mark * (2 * WAD - HAIRCUT)) // (2 * WAD))  # rounded up
    tx = liq.p.admin.buy_collateral(1, 2 * WAD, unit, sender=stranger)
    liq.assert_conserved()
    [sold] = tx.decode_logs(liq.p.admin.SeizedCollateralSold)
    assert (sold.buyer, sold.token_index, sold.amount, sold.price) == (
        stranger.address,
        1,
        2 * WAD,
        unit,
    )
    units = -((-2 * unit) // liq.scale)  # 2 WETH, rounded up to token units
    assert sold.paid == units * liq.scale
    assert usdc0 - int(liq.p.token.balanceOf(stranger)) == units
    assert int(weth.balanceOf(stranger)) == 2 * WAD
    assert int(liq.ch.seized_collateral(1)) == pool_weth - 2 * WAD
    assert int(liq.ch.pool_cash()) == cash0 + sold.paid
    # sold above what the pool paid: LPs gain half the haircut
    gain = sold.paid - 2 * (mark * (WAD - HAIRCUT) // WAD)
    assert abs(int(liq.p.lens.vault_equity()) - equity0 - gain) <= 10**12
    assert liq.share_price() >= price0


@pytest.mark.parametrize(
    ("index", "amount", "reason"),
    [
        (1, 0, "clearinghouse: zero amount"),
        (0, WAD, "clearinghouse: unknown token"),
        (2, WAD, "clearinghouse: unknown token"),
        (1, 11 * WAD, "clearinghouse: not enough seized collateral"),
    ],
)
def test_buy_collateral__bad_input__reverts(
    liq: LiqWorld, pool_weth: int, stranger: Any, index: int, amount: int, reason: str
) -> None:
    with ape.reverts(reason):
        liq.p.admin.buy_collateral(index, amount, 2**256 - 1, sender=stranger)


def test_buy_collateral__price_above_limit__reverts(
    liq: LiqWorld, pool_weth: int, stranger: Any
) -> None:
    buyer_funds(liq, stranger, 10_000)
    mark = int(liq.ch.mark(ETH)[0])
    with ape.reverts("clearinghouse: price worse than acceptable"):
        liq.p.admin.buy_collateral(1, WAD, mark * 9 // 10, sender=stranger)


def test_buy_collateral__without_quorum__reverts(
    liq: LiqWorld, pool_weth: int, stranger: Any
) -> None:
    """Two of ETH's three feeds disagree by 50%: no trustworthy price, no sale."""
    buyer_funds(liq, stranger, 10_000)
    feeds = liq.p.feeds["ETH"]
    answer = int(feeds[0].latestRoundData()[1])
    feeds[1].set_answer(answer * 3 // 2, sender=stranger)
    feeds[2].set_answer(answer // 2, sender=stranger)
    with ape.reverts("clearinghouse: no price quorum"):
        liq.p.admin.buy_collateral(1, WAD, 2**256 - 1, sender=stranger)


def test_unit_price_matches_decimal_model() -> None:
    """The sale price formula, independently: $1,000 x (1 - 5%) = $950 per WETH."""
    mark = 1_000 * WAD
    unit = -((-mark * (2 * WAD - HAIRCUT)) // (2 * WAD))
    assert Decimal(unit) / WAD == Decimal(950)
