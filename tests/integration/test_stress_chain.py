"""perpdex/risk/stress.py on chain accounts: the book built from SDK snapshots values every
account as the Clearinghouse does now, and its prediction at moved prices equals the
chain's margin after the oracle is moved there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from perpdex.risk import stress as st
from perpdex.sdk.client import PerpdexClient
from perpdex.sdk.snapshot import Snapshot

USDC = 10**6
W = 10**18


def _set_price(p: Any, symbol: str, usd: float, who: Any) -> None:
    for feed in p.feeds[symbol]:
        feed.set_answer(int(Decimal(str(usd)) * 10**8), sender=who)


@pytest.fixture
def client(protocol: Any, trader: Any, vault_pool: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


def test_stress_book__matches_the_chain_now_and_after_a_move(client, protocol, trader):
    protocol.token.mint(trader, 100_000 * USDC, sender=trader)
    trend = client.open_account("trend")
    pair = client.open_account("pair", portfolio=True)
    client.deposit(trend, 30_000)
    client.deposit(pair, 40_000)
    client.trade(trend, "BTC", "1")
    client.trade(pair, "ETH", "10")
    client.trade(pair, "SOL", "-200")
    ids = [trend, pair]
    markets = tuple(client.deployment.markets)
    book = st.book_from_snapshots([Snapshot.load(client, a) for a in ids], markets)
    run = st.run_scenarios(book)
    for i, a in enumerate(ids):
        m = protocol.clearinghouse.account_margin(a)
        assert run.now.equity[i, 0] == pytest.approx(int(m.equity) / W, rel=1e-9)
        assert run.now.maintenance[i, 0] == pytest.approx(int(m.maintenance) / W, rel=1e-9)
    # BTC -20%, ETH -25%, SOL +10% from the marks, then the same on chain
    mult = np.array([[0.8, 0.75, 1.1][: len(markets)]])
    out = st.evaluate(book, mult)
    for sym, x in zip(markets, mult[0], strict=True):
        _set_price(protocol, sym, float(book.prices[markets.index(sym)]) * x, trader)
    before = {a: int(protocol.lens.account_summary(a).funding_owed) for a in ids}
    client.refresh()
    for i, a in enumerate(ids):
        m = protocol.clearinghouse.account_margin(a)
        owed = int(protocol.lens.account_summary(a).funding_owed) - before[a]
        # the move is instantaneous: add back the funding the refresh's block accrued
        assert out.equity[i, 0] == pytest.approx((int(m.equity) + owed) / W, rel=1e-6)
        assert out.maintenance[i, 0] == pytest.approx(int(m.maintenance) / W, rel=1e-9)
        assert out.liquidatable[i, 0] == (int(m.equity) < int(m.maintenance))
