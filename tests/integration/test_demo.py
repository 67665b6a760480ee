"""The demo's trading story on the test chain: every figure its tables print is the one the
chain holds (read here independently: Fill events, marks and the lens at the checkpoint's
block, the vault, balances)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from perpdex.cli.portfolio import fmt_pct, fmt_price, fmt_size, pnl
from perpdex.showcase import demo
from perpdex.showcase import story as story_mod
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
def out_dir(tmp_path_factory: Any) -> Path:
    return Path(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def story(
    protocol: Any, accounts: Any, chain: Any, out_dir: Path
) -> tuple[demo.DemoState, str, int]:
    """The whole demo (the fund's story included; without the worked example, the crash
    replay and the screenshot) on the session deployment, once for the module (ape reverts
    it after the module); its printed text and the first block it used."""
    first = chain.blocks.height + 1
    console = Console(record=True, width=WIDTH)
    state = demo.run(console, protocol=protocol, extra_steps=False, out_dir=out_dir)
    return state, console.export_text(), first


def _end(state: demo.DemoState) -> int:
    """The block after the trading story's last (the fund's story starts there)."""
    assert state.story_first_block is not None
    return state.story_first_block


def test_demo__trades_print_the_fills(story, protocol, chain):
    state, text, first = story
    fills = list(protocol.clearinghouse.Fill.range(first, _end(state)))
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
    fills = list(protocol.clearinghouse.Fill.range(first, _end(state)))
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
    at = {"block_id": _end(state) - 1}  # printed before the fund's story
    table = _section(text, "vault and insurance at the end")
    supply, assets = vault.totalSupply(**at), vault.totalAssets(**at)
    price = Decimal(assets + 1) * 10**6 / Decimal(supply + 10**6)
    assert _row(table, "share", "price")[2] == f"{price:,.6f}"
    shares = vault.balanceOf(state.lp.wallet, **at)
    worth = vault.convertToAssets(shares, **at)
    assert _row(table, "LP", "shares", "worth")[-2] == f"{worth / 10**6:,.2f}"
    assert _row(table, "insurance", "fund")[-1] == f"${from_wad(ch.insurance_fund(**at)):,.2f}"
    equity = protocol.lens.vault_equity(**at)
    assert _row(table, "pool", "equity")[-1] == f"${from_wad(equity):,.2f}"
    balances = _section(text, "trader balances at the end")
    for t in state.traders:
        cells = _row(balances, *t.name.split())
        assert cells[-1] == f"{Decimal(ch.balance_of(t.account_id, 0, **at)) / WAD:,.2f}"


def test_demo__portfolio_tables_for_the_portfolio_trader(story, protocol):
    _, text, _ = story
    assert "trader B: loss under every stress scenario" in text
    savings = _section(text, "trader B: portfolio margin vs isolated")
    assert "binds" in savings and "margin saved vs isolated" in savings


# --- the fund's story (perpdex/showcase/story.py) --------------------------------------------


def _logs(protocol: Any, event: str, state: demo.DemoState, chain: Any) -> list[Any]:
    """`event` of the Clearinghouse (or of its orders/auction handles) during the story."""
    for c in (protocol.clearinghouse, protocol.ops, protocol.orders, protocol.auction):
        if c is not None and hasattr(c, event):
            return list(getattr(c, event).range(_end(state), chain.blocks.height + 1))
    raise AssertionError(f"no contract handle with the event {event}")


def test_story__strategies_opened_multi_leg_under_portfolio_margin(story, protocol):
    state, text, _ = story
    s = state.story
    ch = protocol.clearinghouse
    table = _section(text, "strategies opened")
    for spec in story_mod.STRATEGIES:
        acct = s.accounts[spec.name]
        assert ch.account_header(acct) & 2  # portfolio margin
        fill = s.opened[spec.name]
        assert len(fill.legs) == len(spec.legs) >= 2  # one multi-leg transaction
        assert len({leg.symbol for leg in fill.legs}) == len(spec.legs)
        assert _row(table, spec.name)
    saved = _row(table, "eth-sol-pair")[-1]
    assert saved != "$0.00" and Decimal(saved.strip("$").replace(",", "")) > 0


def test_story__limit_order_filled_and_stop_fired_once(story, protocol, chain):
    state, text, _ = story
    s = state.story
    assert s.limit_filled == story_mod.LIMIT_BUY_BTC
    assert "resting limit order filled by `settle`" in text
    assert s.stop_fired == 1
    executed = _logs(protocol, "ConditionalOrderExecuted", state, chain)
    assert len(executed) == 1 and int(executed[0].account) == s.accounts["btc-trend"]
    assert "stop-loss fired" in _section(text, "the crash: what each keeper did")


def test_story__rebalancer_loss_cap_and_liquidation(story, protocol, chain):
    state, text, _ = story
    s = state.story
    ch = protocol.clearinghouse
    events = _section(text, "the crash: what each keeper did")
    # the rebalancer topped up the managed strategy from the reserve; it is healthy
    assert s.rebalancer_actions >= 1 and "top-up $" in events
    trend = s.accounts["btc-trend"]
    m = ch.account_margin(trend)
    assert int(m.equity) > int(m.maintenance) > 0
    # the loss cap closed the pair, exactly once
    assert s.loss_caps_fired == 1
    (fired,) = _logs(protocol, "LossCapTriggered", state, chain)
    assert int(fired.account) == s.accounts["eth-sol-pair"]
    pair = s.accounts["eth-sol-pair"]
    assert all(int(ch.position(pair, protocol.market_id(x))[0]) == 0 for x in ("ETH", "SOL"))
    # the unmanaged one was laddered and auctioned
    assert s.tranches >= 1 and s.auction_takes + s.backstops >= 1
    assert "ladder step 1" in events and "auction" in events
    hedged = {int(x.account) for x in _logs(protocol, "TrancheOpened", state, chain)}
    assert hedged == {s.accounts["sol-hedge"]}
    assert "strategies after the crash" in text


def test_story__charts_and_screenshot_in_one_folder(story, protocol, out_dir):
    from perpdex.showcase import screenshot

    state, _, _ = story
    assert state.story.chart == out_dir / "story.png"
    pngs = {p.name for p in out_dir.glob("*.png")}
    assert "story.png" in pngs
    why = screenshot.missing()
    if why is not None:
        pytest.skip(f"no screenshot here: {why}")
    shot = screenshot.screenshot_step(protocol, Console(record=True, width=WIDTH), out_dir)
    assert shot == out_dir / screenshot.SHOT
    assert {p.name for p in out_dir.glob("*.png")} >= {"story.png", "dashboard.png"}
    for name in ("story.png", "dashboard.png"):
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out_dir / name).stat().st_size > 10_000
