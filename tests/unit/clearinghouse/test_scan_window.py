"""The margin scan's window on the risk book (gates._scan, issue 10).

The scan copies 8 markets' slots of the book at once (markets 0-7) and, for an account
holding a position past them, moves that window in its loop (a jump over empty windows
included). These tests list 20 markets, publish a book whose every market has its own
words (ratios and shocks), so that a word read from the wrong window gives another figure,
and hold the chain's scan to the SDK mirror (`perpdex.sdk.math.scan`) to the wei for
accounts inside the first window, across three windows, and past the first one only.
"""

from typing import Any

import pytest

from perpdex.config import MarketRisk, load_risk
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.snapshot import Snapshot

from .helpers import MAX_UINT256, WAD

pytestmark = pytest.mark.usefixtures("granted_roles", "vault_cash")

N_MARKETS = 20
WINDOW = 8


def _clone_risk(base: MarketRisk, m: int) -> MarketRisk:
    # a slope of its own per market: word 0 differs from every other market's
    return MarketRisk(
        imr_min_bps=base.imr_min_bps,
        imr_slope_bps=base.imr_slope_bps + 7 * m,
        margin_scale=base.margin_scale,
    )


@pytest.fixture(scope="module")
def wide_book(protocol: Any, gov: Any, admin: Any, project: Any) -> riskbook.RiskBook:
    """20 markets (clones of the first one, priced like it), a book of their own words."""
    p = protocol
    ch = p.clearinghouse
    if int(ch.risk_book_delay()) != 0:
        gov.set_risk_book_delay(0, sender=admin)
    limits = (int(p.ops.max_pnl_factor()), int(p.ops.adl_target_factor()))
    p.risk.set_vault_limits(3 * WAD, *limits, sender=admin)
    first = p.system.markets[0]
    params = dict(first.params())
    params["max_vault_exposure"] = 10**16  # 1% each: room under the total cap
    o = first.oracle
    while int(ch.market_count()) < N_MARKETS:
        feeds = [
            project.MockAggregator.deploy(8, int(first.price * 10**8), sender=admin)
            for _ in range(o.sources)
        ]
        p.oracle.add_market(*o.add_market_args([f.address for f in feeds]), sender=admin)
        gov.add_market(params, sender=admin)
    old = riskbook.from_config(load_risk(), list(p.symbols))
    k = len(old.markets)
    markets = old.markets + tuple(_clone_risk(old.markets[0], m) for m in range(k, N_MARKETS))
    # shocks of the first market scaled by (100 + m)%: larger, so they still cover imr_min,
    # and the same scenarios stay each market's largest moves
    shocks = tuple(
        row + tuple(row[0] * (100 + m) // 100 for m in range(k, N_MARKETS)) for row in old.shocks
    )
    book = riskbook.RiskBook(old.floor_bps, old.maintenance_bps, markets, old.names, shocks)
    gov.set_risk_book(riskbook.encode(book), sender=admin)
    p.ops.refresh(list(range(N_MARKETS)), sender=admin)
    return book


def _open(p: Any, h: Any, trader: Any, name: str, portfolio: bool, legs: list[int]) -> int:
    acct = h.funded_account(trader, 200_000, portfolio=portfolio, name=name)
    for i, m in enumerate(legs):
        # $2,000, $3,000, ... long and short in turn
        size = (2_000 + 1_000 * i) * WAD * WAD // int(p.oracle.latest(m)[0])
        if i % 2:
            size = -size
        p.clearinghouse.trade(acct, m, size, MAX_UINT256 if size > 0 else 0, sender=trader)
    return acct


def _assert_scan_equals_mirror(protocol: Any, acct: int, legs: list[int]) -> None:
    ch = protocol.clearinghouse
    snap = Snapshot.load(protocol, acct)
    book = snap.require_book()
    for m in legs:
        if m >= WINDOW:
            # a read from the window of markets 0-7 would give another figure
            assert book.market_words(m) != book.market_words(m % WINDOW)
    mine = pm.scan(snap)
    theirs = pm.MarginScan(*(int(x) for x in ch.account_margin(acct)))
    assert theirs == mine
    assert tuple(int(x) for x in ch.margin_requirement(acct)) == (
        mine.initial,
        mine.maintenance,
    )
    assert mine.initial > 0


@pytest.mark.parametrize("portfolio", [True, False], ids=["portfolio", "isolated"])
@pytest.mark.parametrize(
    "legs",
    [[0, 1, 5], [1, 9, 17, 19], [10, 11], [2, 16]],
    ids=["first-window", "three-windows", "past-the-first", "skips-a-window"],
)
def test_scan_window__equals_the_mirror(wide_book, protocol, h, trader, portfolio, legs):
    ch = protocol.clearinghouse
    acct = _open(
        protocol, h, trader, f"w{int(portfolio)}-{'-'.join(map(str, legs))}", portfolio, legs
    )
    _assert_scan_equals_mirror(protocol, acct, legs)
    # a reduction in a market past the first window: the scan again
    m = legs[-1]
    size = int(ch.position(acct, m)[0])
    ch.trade(acct, m, -size // 2, 0 if size > 0 else MAX_UINT256, sender=trader)
    _assert_scan_equals_mirror(protocol, acct, legs)
