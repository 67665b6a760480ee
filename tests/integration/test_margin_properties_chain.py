"""The margin properties (tests/unit/test_margin_properties.py) on chain, with
`ch.account_margin` of real accounts, and the chain equal to the SDK mirror.

Each hypothesis example, on a chain snapshot restored afterwards: publishes the deployed
risk book or a random one that `set_risk_book` accepts (step limits lifted), moves the
prices, and opens the same 1-3 legs in a portfolio and an isolated sub-account, plus the
legs scaled by k in a third (portfolio) one. Then:

* portfolio initial <= isolated initial, and the portfolio account's isolated figure is
  the isolated account's requirement;
* one leg: equal (to the wei when every covering shock is beyond imr_min, else within
  the 1-wei rounding the unit tests document);
* the scaled book needs at least as much; a lone leg grown needs at least as much;
* never below floor x gross notional;
* every figure equals the mirror: `math.scan` of a snapshot (the engine's path) and an
  independent lens-path computation from the published book and the marks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpdex.config import MarketRisk, load_risk
from perpdex.constants import BPS, WAD
from perpdex.risk.governance import book_problems
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.riskbook import RiskBook
from perpdex.sdk.snapshot import Snapshot

USDC = 10**6
FEED = 10**8
MAX_UINT256 = 2**256 - 1
POOL_USD = 50_000_000
SYMS = ("BTC", "ETH", "SOL")
BASE_PRICE = {"BTC": Decimal(100_000), "ETH": Decimal(3_000), "SOL": Decimal(150)}


@pytest.fixture(scope="module")
def chain_margin_world(
    actors: dict[str, Any], protocol: Any, token: Any, h: Any, admin: Any, lp: Any
) -> None:
    """Pool cash for the examples' trades; risk-book step limits lifted so any valid book
    can be published in one update."""
    units = h.fund(lp, POOL_USD)
    token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    protocol.admin.set_risk_book_limits(2**16, 2**16, sender=admin)


# --- plans ---------------------------------------------------------------------------------


@st.composite
def books(draw: st.DrawFn) -> RiskBook | None:
    """None (keep the deployed book) or a random 3-market book set_risk_book accepts."""
    if draw(st.booleans()):
        return None
    n_s = draw(st.integers(2, 16))
    imr = [draw(st.sampled_from([100, 500, 1000, 1500, 2500, 5000])) for _ in SYMS]
    # set_risk_book lets a margin scale at most halve or double per update
    deployed = load_risk().markets
    markets = tuple(
        MarketRisk(
            imr_min_bps=i,
            imr_slope_bps=draw(st.integers(0, 3_000)),
            margin_scale=deployed[sym].margin_scale * draw(st.integers(50, 200)) // 100,
        )
        for sym, i in zip(SYMS, imr, strict=True)
    )
    shocks = [[draw(st.integers(-3_000, 3_000)) for _ in SYMS] for _ in range(n_s)]
    for m, i in enumerate(imr):
        down, up = draw(st.lists(st.integers(0, n_s - 1), min_size=2, max_size=2, unique=True))
        shocks[down][m] = -draw(st.sampled_from([i, i + 1, min(2 * i, BPS)]))
        shocks[up][m] = draw(st.sampled_from([i, i + 1, 2 * i]))
    # the equal moves set_risk_book requires: every market's lowest / highest shock at once
    down, up = draw(st.lists(st.integers(0, n_s - 1), min_size=2, max_size=2, unique=True))
    lows = [min(r[m] for r in shocks) for m in range(len(SYMS))]
    highs = [max(r[m] for r in shocks) for m in range(len(SYMS))]
    shocks[down], shocks[up] = lows, highs
    book = RiskBook(
        floor_bps=draw(st.integers(0, min(imr))),
        maintenance_bps=draw(st.integers(1_000, BPS)),
        markets=markets,
        names=tuple(f"random-{k}" for k in range(n_s)),
        shocks=tuple(tuple(r) for r in shocks),
    )
    assert book_problems(book, n_listed=len(SYMS)) == []
    return book


@dataclass(frozen=True)
class Plan:
    book: RiskBook | None
    prices: tuple[Decimal, ...] | None  # new oracle prices (USD), None: keep
    legs: tuple[tuple[int, int, int], ...]  # (market, notional USD, +1/-1)
    k: int  # scale of the third account's book
    grow: int  # extra notional (USD) for a lone leg


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    prices = None
    if draw(st.booleans()):
        prices = tuple(BASE_PRICE[s] * Decimal(draw(st.integers(50, 150))) / 100 for s in SYMS)
    n = draw(st.integers(1, 3))
    markets = draw(st.permutations(range(3)))[:n]
    legs = tuple(
        (m, draw(st.integers(1_000, 150_000)), draw(st.sampled_from([1, -1]))) for m in markets
    )
    return Plan(draw(books()), prices, legs, draw(st.integers(2, 3)), draw(st.integers(1, 50_000)))


# --- helpers -------------------------------------------------------------------------------


def size_of(notional_usd: int, sign: int, price: int) -> int:
    """Base WAD size worth about `notional_usd` at `price` (WAD), on the 1e-6 grid."""
    micro = notional_usd * WAD * USDC // price
    return sign * micro * 10**12


def requirement(book: RiskBook, legs: list[tuple[int, int, int]], portfolio: bool) -> int:
    """The lens-path mirror from the book alone: legs = (market, size, mark price)."""
    b = pm.Book.from_riskbook(book)
    hd = b.header
    ctx = pm.Ctx(hd.n_scenarios, hd.floor_bps, hd.mmr_bps, portfolio)
    t = pm.Totals()
    for m, size, price in legs:
        t = pm.add_leg(t, pm.lens_leg(b, m, size, 0, 0, price), price, ctx.n_s)
    return pm.initial_requirement(t, ctx)


def strict(book: RiskBook, markets: list[int]) -> bool:
    """Every covering shock of these markets beyond imr_min (single-leg equality exact)."""
    for m in markets:
        col = [row[m] for row in book.shocks]
        imr = book.markets[m].imr_min_bps
        if min(col) == -imr or max(col) == imr:
            return False
    return True


class Runner:
    def __init__(self, protocol: Any, trader: Any, admin: Any) -> None:
        self.p = protocol
        self.ch = protocol.clearinghouse
        self.trader = trader
        self.admin = admin

    def open(self, name: str, portfolio: bool, usd: int, legs: list[tuple[int, int]]) -> int:
        ch, p, who = self.ch, self.p, self.trader
        acct = int(ch.open_account(name, portfolio, sender=who).return_value)
        units = usd * USDC
        p.token.mint(who, units, sender=who)
        p.token.approve(ch, units, sender=who)
        p.ops.deposit(acct, p.token, units, sender=who)
        for m, size in legs:
            ch.trade(acct, m, size, MAX_UINT256 if size > 0 else 0, sender=who)
        return acct


@settings(
    max_examples=int(os.environ.get("PERPDEX_MARGIN_CHAIN_EXAMPLES", "8")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=plans())
def test_margin_properties__hold_on_chain(protocol, chain_margin_world, chain, trader, admin, plan):
    p, ch = protocol, protocol.clearinghouse
    snapshot_id = chain.snapshot()
    try:
        book = plan.book or riskbook.from_config(load_risk(), list(SYMS))
        if plan.book is not None:
            p.admin.set_risk_book(riskbook.encode(plan.book), sender=admin)
        if plan.prices is not None:
            for sym, usd in zip(SYMS, plan.prices, strict=True):
                for f in p.feeds[sym]:
                    f.set_answer(int(usd * FEED), sender=admin)
            p.ops.refresh([0, 1, 2], sender=admin)
        price = {m: int(p.oracle.latest(m)[0]) for m in range(3)}
        legs = [(m, size_of(usd, sign, price[m])) for m, usd, sign in plan.legs]
        scaled = [(m, s * plan.k) for m, s in legs]
        priced = [(m, s, price[m]) for m, s in legs]
        priced_k = [(m, s, price[m]) for m, s in scaled]
        # enough for the scaled book in isolated mode, plus fees and price impact
        usd = requirement(book, priced_k, False) * 12 // 10 // WAD + 20_000
        r = Runner(p, trader, admin)
        port = r.open("port", True, usd, legs)
        iso = r.open("iso", False, usd, legs)
        big = r.open("port-k", True, usd, scaled)

        mp, mi, mk = (ch.account_margin(a) for a in (port, iso, big))
        # the chain equals the mirror: the engine's scan and the lens path from the book
        for acct, m in ((port, mp), (iso, mi), (big, mk)):
            assert pm.scan(Snapshot.load(p, acct)) == pm.MarginScan(*(int(x) for x in m))
            assert int(p.lens.account_summary(acct).initial) == m.initial
        assert mp.initial == requirement(book, priced, True)
        assert mi.initial == requirement(book, priced, False) == mp.isolated == mi.isolated
        assert mk.initial == requirement(book, priced_k, True)
        # 1. portfolio <= isolated
        assert mp.initial <= mi.initial
        # 2. one leg: equal (to the rounding of an exactly-imr_min covering shock)
        if len(legs) == 1:
            assert 0 <= mi.initial - mp.initial <= (0 if strict(book, [legs[0][0]]) else 1)
        # 3. monotone in scale
        assert mk.initial >= mp.initial and mk.isolated >= mp.isolated
        # 4. never below the floor
        gross = sum(abs(s) * price[m] for m, s in legs)
        assert mp.initial >= -(-gross * book.floor_bps // (WAD * BPS))
        # 3. a lone leg grown never needs less
        if len(legs) == 1:
            (m, s) = legs[0]
            extra = size_of(plan.grow, 1 if s > 0 else -1, price[m])
            ch.trade(port, m, extra, MAX_UINT256 if extra > 0 else 0, sender=trader)
            grown = ch.account_margin(port)
            assert grown.initial >= mp.initial
            assert grown.initial == requirement(book, [(m, s + extra, price[m])], True)
    finally:
        chain.restore(snapshot_id)
