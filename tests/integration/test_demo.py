"""The demo's trading story on the test chain: every figure its tables print is the one the
chain holds (read here independently: Fill events, marks and the lens at the checkpoint's
block, the vault, balances)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from perpdex.cli.portfolio import fmt_pct, fmt_price, fmt_size, pnl
from perpdex.showcase import demo
from perpdex.units import WAD, from_wad

WIDTH = 220


def _plain(markup: str) -> str:
    """What rich prints for a cell written with markup (`[green]+$5.00[/]` -> `+$5.00`)."""
    console = Console(record=True, width=WIDTH)
    console.print(markup)
    return console.export_text().strip()


def _row(text: str, *starts: str) -> list[str]:
    for line in text.splitlines():
        cells = line.replace("│", " ").split()  # the balance tables have column rules
        if cells[: len(starts)] == list(starts):
            return cells
    raise AssertionError(f"no row starting with {starts}")


def _section(text: str, title: str) -> str:
    """The lines of one printed table, from its title to the next blank line."""
    start = text.index(title)
    end = text.find("\n\n", start)
    return text[start : end if end != -1 else len(text)]


@pytest.fixture(scope="module")
def story(protocol: Any, accounts: Any, chain: Any) -> tuple[demo.DemoState, str, int]:
    """The whole demo (without the hooks) on the session deployment, once for the module
    (ape reverts it after the module); its printed text and the first block it used."""
    first = chain.blocks.height + 1
    console = Console(record=True, width=WIDTH)
    state = demo.run(console, protocol=protocol, extra_steps=False)
    return state, console.export_text(), first


def test_demo__trades_print_the_fills(story, protocol, chain):
    state, text, first = story
    fills = list(protocol.clearinghouse.Fill.range(first, chain.blocks.height + 1))
    assert len(fills) == len(demo.ORDERS) + len(demo.CLOSES)
    table = _section(text, "opening trades")
    for (name, symbol, size), ev in zip(demo.ORDERS, fills, strict=False):
        assert protocol.symbols[ev.market] == symbol
        assert from_wad(ev.size_delta) == Decimal(size)
        cells = _row(table, *name.split(), symbol)
        oracle = protocol.oracle.latest(ev.market, block_id=ev.block_number)[0]
        assert cells[3:5] == [fmt_size(Decimal(size)), fmt_price(from_wad(oracle))]
        assert cells[5] == fmt_price(from_wad(ev.price))
        assert cells[-1] == f"${from_wad(ev.fee):,.2f}"
    # trader B holds a portfolio account; its ETH short and SOL long were both filled
    b = state.trader("trader B")
    assert protocol.clearinghouse.account_header(b.account_id) & 2


def test_demo__funding_tables_show_the_chain_at_each_checkpoint(story, protocol):
    state, text, _ = story
    ch, lens = protocol.clearinghouse, protocol.lens
    assert [cp.hours for cp in state.checkpoints] == [h for h, _ in demo.PRICE_PATH]
    for cp, (_, prices) in zip(state.checkpoints, demo.PRICE_PATH, strict=True):
        table = _section(text, f"hour {cp.hours}: marks and funding")
        assert len(cp.rows) == 3
        for r in cp.rows:
            m = protocol.market_id(r.symbol)
            price, ts, index, rate = ch.mark(m, block_id=cp.block_number)
            assert ts == cp.timestamp  # refreshed in this block
            assert from_wad(price) == prices[r.symbol]
            trader = state.trader(r.trader)
            view = lens.account_summary(trader.account_id, block_id=cp.block_number)
            pos = next(p for p in view.positions if p.market == m)
            cells = _row(table, *r.trader.split(), r.symbol)
            assert cells[3:6] == [
                fmt_price(from_wad(price)),
                fmt_pct(from_wad(rate), 4),
                f"{Decimal(index) / 10**12:,.6f}",
            ]
            assert cells[6] == fmt_size(from_wad(pos.size))
            assert cells[7] == _plain(pnl(from_wad(pos.unrealized_pnl)))
            assert cells[8] == _plain(pnl(-from_wad(pos.funding_owed)))
    # funding accrues: every position's accrued funding grows in size over the path
    last = {(r.trader, r.symbol): r.funding_pnl for r in state.checkpoints[-1].rows}
    first = {(r.trader, r.symbol): r.funding_pnl for r in state.checkpoints[0].rows}
    for key, value in last.items():
        assert value != 0 and abs(value) > abs(first[key])


def test_demo__closes_print_the_realised_pnl(story, protocol, chain):
    state, text, first = story
    fills = list(protocol.clearinghouse.Fill.range(first, chain.blocks.height + 1))
    table = _section(text, "closes with realised PnL")
    for (name, symbol), ev in zip(demo.CLOSES, fills[len(demo.ORDERS) :], strict=True):
        assert protocol.symbols[ev.market] == symbol
        assert ev.size == 0  # closed
        cells = _row(table, *name.split(), symbol)
        realized = from_wad(ev.realized_pnl)
        assert cells[5] == fmt_price(from_wad(ev.price))
        assert cells[6] == _plain(pnl(realized))
        assert cells[7] == _plain(pnl(-from_wad(ev.funding_paid)))
        assert cells[8] == f"${from_wad(ev.fee):,.2f}"
    # the BTC long gained with the price path (100,000 -> 103,500)
    btc = state.closes[0].fill
    assert btc.symbol == "BTC" and btc.realized_pnl > Decimal("1.5") * 3_000


def test_demo__vault_and_balances_at_the_end(story, protocol):
    state, text, _ = story
    ch, vault = protocol.clearinghouse, protocol.vault
    table = _section(text, "vault and insurance at the end")
    supply, assets = vault.totalSupply(), vault.totalAssets()
    price = Decimal(assets + 1) * 10**6 / Decimal(supply + 10**6)
    assert _row(table, "share", "price")[2] == f"{price:,.6f}"
    shares = vault.balanceOf(state.lp.wallet)
    assert (
        _row(table, "LP", "shares", "worth")[-2] == f"{vault.convertToAssets(shares) / 10**6:,.2f}"
    )
    assert _row(table, "insurance", "fund")[-1] == f"${from_wad(ch.insurance_fund()):,.2f}"
    assert _row(table, "pool", "equity")[-1] == f"${from_wad(protocol.lens.vault_equity()):,.2f}"
    balances = _section(text, "trader balances at the end")
    for t in state.traders:
        cells = _row(balances, *t.name.split())
        assert cells[-1] == f"{Decimal(ch.balance_of(t.account_id, 0)) / WAD:,.2f}"


def test_demo__portfolio_tables_for_the_portfolio_trader(story, protocol):
    _, text, _ = story
    assert "trader B: loss under every stress scenario" in text
    savings = _section(text, "trader B: portfolio margin vs isolated")
    assert "binds" in savings and "margin saved vs isolated" in savings
