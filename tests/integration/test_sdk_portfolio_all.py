"""PerpdexClient.history, .strategies and .stress against the `protocol` fixture.

Each figure is checked against an independent read of the chain: the Fill, Deposit,
Withdraw and CollateralTransferred events decoded by ape, the Clearinghouse's balances and
`account_margin`, the lens; the stress is checked by moving the oracle to the shocked
prices afterwards and reading the chain's margin there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from perpdex.errors import PerpdexError
from perpdex.sdk import history as hist
from perpdex.sdk.client import PerpdexClient
from perpdex.units import from_wad

USDC = 10**6


def _set_price(p: Any, symbol: str, usd: Decimal | int, who: Any) -> None:
    for feed in p.feeds[symbol]:
        feed.set_answer(int(Decimal(usd) * 10**8), sender=who)


@pytest.fixture
def pool(vault_pool: Any) -> Any:
    return vault_pool


@pytest.fixture
def client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def strategies(client: PerpdexClient, protocol: Any, trader: Any, pool: None) -> list[int]:
    """Three sub-accounts: a BTC trend (isolated), an ETH/SOL pair (portfolio) and an idle
    one; trades, price moves, a partial close, a transfer and a withdrawal."""
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    trend = client.open_account("trend")
    pair = client.open_account("pair", portfolio=True)
    idle = client.open_account("idle")
    client.deposit(trend, 60_000)
    client.deposit(pair, 80_000)
    client.deposit(idle, 10_000)
    client.trade(trend, "BTC", "1")
    client.trade(pair, "ETH", "10")
    client.trade(pair, "SOL", "-200")
    _set_price(protocol, "BTC", 103_000, trader)
    _set_price(protocol, "ETH", 2_950, trader)
    client.refresh()
    client.trade(trend, "BTC", "-0.4")
    client.trade(pair, "ETH", "-4")
    client.transfer(idle, pair, 2_500)
    client.withdraw(trend, 1_000)
    _set_price(protocol, "BTC", 104_000, trader)
    _set_price(protocol, "SOL", 148, trader)
    client.refresh()
    return [trend, pair, idle]


def _events(contract: Any, name: str, head: int) -> list[Any]:
    return list(getattr(contract, name).range(0, head + 1))


def test_history__totals_equal_the_events_ape_decodes_and_reconcile_the_balance(
    client, protocol, strategies, chain
):
    found = client.history(strategies)
    head = found[0].to_block
    assert head == chain.blocks.head.number
    fills = _events(protocol.clearinghouse, "Fill", head)
    for h in found:
        mine = [f for f in fills if int(f.account) == h.account]
        assert [e.block_number for e in h.events if e.kind == "fill"] == [
            f.block_number for f in mine
        ]
        assert h.realized_pnl == sum(from_wad(int(f.realized_pnl)) for f in mine)
        assert h.funding_settled == -sum(from_wad(int(f.funding_paid)) for f in mine)
        assert h.fees == sum(from_wad(int(f.fee)) for f in mine)
        # settlement balance = deposits - withdrawals +- transfers + settled P&L
        balance = from_wad(int(protocol.clearinghouse.balance_of(h.account, 0)))
        assert h.flows.get("USDC", Decimal(0)) + h.cash_pnl == balance
        # open P&L from the lens at the same block
        view = protocol.lens.account_summary(h.account, block_id=head)
        assert h.unrealized_pnl == from_wad(int(view.unrealized_pnl))
        assert h.funding_accrued == -from_wad(int(view.funding_owed))
    trend, pair, idle = found
    assert trend.realized_pnl != 0 and pair.realized_pnl != 0 and trend.fees > 0
    deposits = _events(protocol.ops, "Deposit", head)
    assert trend.flows == {"USDC": Decimal(60_000 - 1_000)}
    assert [e.kind for e in idle.events] == ["deposit", "transfer out"]
    assert [e.kind for e in pair.events if e.kind == "transfer in"] == ["transfer in"]
    assert sum(1 for d in deposits if int(d.account) in strategies) == 3
    assert [p.pnl for p in idle.series] == [0]  # no P&L event: only "now"


def test_history__chunked_reads_and_from_block_select_the_same_events(client, strategies):
    whole = client.history(strategies)
    tiny = client.history(strategies, chunk=3)
    assert [h.events for h in tiny] == [h.events for h in whole]
    later = whole[0].events[-1].block_number
    tail = client.history(strategies[0], from_block=later)
    assert tail[0].events == tuple(e for e in whole[0].events if e.block_number >= later)
    with pytest.raises(PerpdexError, match="is after the chain's head"):
        client.history(strategies, from_block=whole[0].to_block + 10)


def test_strategies__every_sub_account_with_margin_from_the_chain(
    client, protocol, strategies, trader
):
    book = client.strategies(trader)
    assert [line.info.id for line in book.lines] == strategies
    for line in book.lines:
        m = protocol.clearinghouse.account_margin(line.info.id, block_id=book.block_number)
        assert line.equity == from_wad(int(m.equity))
        assert line.margin_used == from_wad(int(m.initial))
        assert line.maintenance == from_wad(int(m.maintenance))
        assert line.free == line.equity - line.margin_used
        assert line.total_pnl == (
            line.realized_pnl + line.unrealized_pnl + line.funding - line.fees
        )
    assert book.equity == sum(line.equity for line in book.lines)
    assert book.total_pnl == sum(line.total_pnl for line in book.lines)
    c = book.correlation
    assert c.enough and c.matrix is not None
    assert c == hist.correlate({line.info.id: line.history.series for line in book.lines})
    assert c.matrix[0][0] == 1 and c.matrix[0][1] == c.matrix[1][0]
    assert c.matrix[2][2] is None  # the idle account's P&L never moves


def test_stress__predicts_the_chains_margin_at_the_shocked_prices(
    client, protocol, strategies, trader
):
    trend, pair, _ = strategies
    results = {a: client.stress(a, "BTC=-30%,SOL=+50%") for a in (trend, pair)}
    before = {a: protocol.lens.account_summary(a) for a in results}
    oracle_btc = results[trend].prices[0].base
    assert results[trend].prices[0].shocked == oracle_btc * Decimal("0.7")
    _set_price(protocol, "BTC", 104_000 * Decimal("0.7"), trader)
    _set_price(protocol, "SOL", 148 * Decimal("1.5"), trader)
    client.refresh()
    assert results[trend].equity_change < 0 and results[pair].equity_change < 0
    for a, r in results.items():
        m = protocol.clearinghouse.account_margin(a)
        after = protocol.lens.account_summary(a)
        assert r.maintenance_after == from_wad(int(m.maintenance))
        assert r.initial_after == from_wad(int(m.initial))
        # the stress is instantaneous: the chain accrued funding while the refresh mined
        owed_then, owed_now = int(before[a].funding_owed), int(after.funding_owed)
        assert r.equity_after == from_wad(int(m.equity) + owed_now - owed_then)
        assert r.liquidatable == (int(m.equity) < int(m.maintenance))


def test_stress__a_mapping_of_moves_and_its_refusals(client, strategies):
    trend = strategies[0]
    as_text = client.stress(trend, "btc=-10%")
    as_map = client.stress(trend, {"BTC": Decimal("-0.1")})
    assert as_text == as_map
    with pytest.raises(PerpdexError, match="must be one move per market above -1"):
        client.stress(trend, {"BTC": Decimal("-1.5")})
    with pytest.raises(PerpdexError, match="is not a listed market"):
        client.stress(trend, "DOGE=-10%")
