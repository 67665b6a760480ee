"""The end-to-end demo behind `ape run demo` (and `make demo`), as small steps.

Each step takes and returns plain values so later steps can be appended in `run()` and
tested on their own (tests/integration/test_demo.py). Needs a connected ape provider and a
deployment manifest written by `ape run deploy` (or a `Protocol`).

The story (`run()`):
  1. the deployment, two traders' sub-accounts and deposits          (deployment, balances)
  2. an LP deposits into the liquidity vault                                  (LP, pool)
  3. trader A goes long BTC; trader B (portfolio margin) shorts ETH, buys SOL   (trades)
  4. a price path over simulated hours: time moves, feeds are re-posted and
     `refresh` accrues funding                          (one funding table per checkpoint)
  5. trader B's portfolio: scenario losses, the binding one, margin saved   (portfolio)
  6. closes with realised PnL                                                  (closes)
  7. the vault's share price, insurance fund and final balances      (vault, balances)
  8. the fund's story (perpdex/showcase/story.py): three portfolio-margin strategies opened
     with multi-leg orders, margin saved, a resting limit order, a stop, funding, a crash
     with the orders keeper, rebalancer, loss-cap keeper and liquidation keeper ticking
  9. a screenshot of `perpdex dashboard` for the fund (perpdex/showcase/screenshot.py)
 10. the portfolio-margin worked example (perpdex/showcase/worked_example.py) and the crash
     replay (perpdex/showcase/crash.py), each printing its own tables

Charts and the screenshot go to one folder, build/demo/ (PERPDEX_DEMO_OUT).

Every figure printed is read from the chain (Fill events, the lens, the vault); the
trading goes through `perpdex.sdk.client.PerpdexClient`, as a user's would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex import chaintime
from perpdex.cli.lp import pool_table, position_table
from perpdex.cli.portfolio import (
    book_shocks,
    fmt_pct,
    fmt_price,
    fmt_size,
    new_table,
    pnl,
    savings_table,
    scenario_table,
)
from perpdex.constants import WAD
from perpdex.deploy import Protocol, load_protocol
from perpdex.sdk.client import Fill, LpMove, PerpdexClient, Portfolio
from perpdex.sdk.manifest import chain_halves
from perpdex.units import to_units

# Trader name -> (ape test account index, USDC deposited, portfolio margin).
TRADERS: dict[str, tuple[int, Decimal, bool]] = {
    "trader A": (1, Decimal(25_000), False),
    "trader B": (2, Decimal(40_000), True),
}
# The LP: ape test account index and USDC deposited into the vault.
LP: tuple[str, int, Decimal] = ("LP", 3, Decimal(1_000_000))
# Who re-posts the mock feeds and refreshes marks (the deployer, test account 0).
PRICE_KEEPER_INDEX = 0
# (trader, market, signed size): the opening orders.
ORDERS: tuple[tuple[str, str, str], ...] = (
    ("trader A", "BTC", "1.5"),
    ("trader B", "ETH", "-40"),
    ("trader B", "SOL", "800"),
)
# (hours since the trades, prices): the path the feeds follow. BTC rallies (trader A's
# long wins), ETH edges up and SOL down (both of trader B's legs lose).
PRICE_PATH: tuple[tuple[int, dict[str, Decimal]], ...] = (
    (6, {"BTC": Decimal(101_200), "ETH": Decimal(3_015), "SOL": Decimal("149.2")}),
    (12, {"BTC": Decimal(102_600), "ETH": Decimal(3_032), "SOL": Decimal("147.9")}),
    (18, {"BTC": Decimal(101_900), "ETH": Decimal(3_024), "SOL": Decimal("148.6")}),
    (24, {"BTC": Decimal(103_500), "ETH": Decimal(3_046), "SOL": Decimal("147.5")}),
)
# (trader, market): the positions closed at the end.
CLOSES: tuple[tuple[str, str], ...] = (("trader A", "BTC"), ("trader B", "ETH"))
FEED_DECIMALS = 8


@dataclass
class Trader:
    name: str
    wallet: Any  # ape account
    deposit: Decimal  # settlement-token amount to deposit
    portfolio: bool = False  # portfolio (scenario) margin instead of isolated
    account_id: int | None = None
    deposited_units: int = 0


@dataclass
class LiquidityProvider:
    name: str
    wallet: Any  # ape account
    deposit: Decimal
    moves: list[LpMove] = field(default_factory=list)


@dataclass(frozen=True)
class TradeRecord:
    trader: str
    fill: Fill


@dataclass(frozen=True)
class FundingRow:
    """One position at a checkpoint, with its market's mark and funding state."""

    trader: str
    symbol: str
    mark_price: Decimal
    funding_rate: Decimal  # per day
    funding_index: Decimal  # dollars per unit
    size: Decimal
    unrealized_pnl: Decimal
    funding_pnl: Decimal  # accrued since the position's last settlement; + received


@dataclass(frozen=True)
class Checkpoint:
    hours: int
    timestamp: int  # of the block that refreshed the marks
    block_number: int  # the figures are read at this block
    rows: tuple[FundingRow, ...]


@dataclass
class DemoState:
    protocol: Protocol
    traders: list[Trader] = field(default_factory=list)
    lp: LiquidityProvider | None = None
    trades: list[TradeRecord] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    closes: list[TradeRecord] = field(default_factory=list)
    story: Any = None  # perpdex.showcase.story.Story
    story_first_block: int | None = None  # the trading story's figures are read before it
    screenshot: Path | None = None

    def trader(self, name: str) -> Trader:
        for t in self.traders:
            if t.name == name:
                return t
        raise KeyError(f"no trader {name!r} in the demo; known: {[t.name for t in self.traders]}")


# --- loading --------------------------------------------------------------------------


def account_label(account_id: int) -> str:
    """Short form of an account id (`owner << 96 | index`): 0x7099…79C8/0."""
    from eth_utils import to_checksum_address

    owner = to_checksum_address((account_id >> 96).to_bytes(20, "big"))
    return f"{owner[:6]}…{owner[-4:]}/{account_id & (2**96 - 1)}"


def client_for(p: Protocol, wallet: Any) -> PerpdexClient:
    """The SDK client a participant trades with."""
    return PerpdexClient.from_protocol(p, wallet)


def _usd(value: Decimal) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


# --- steps: accounts ----------------------------------------------------------------------


def create_traders(
    accounts: Any, traders: dict[str, tuple[int, Decimal, bool]] | None = None
) -> list[Trader]:
    """Traders backed by ape test accounts (`accounts` = ape's `accounts.test_accounts`)."""
    spec = TRADERS if traders is None else traders
    return [Trader(name, accounts[i], amount, pm) for name, (i, amount, pm) in spec.items()]


def fund_traders(p: Protocol, traders: list[Trader]) -> None:
    """Mint test USDC to each wallet and approve the clearinghouse."""
    decimals = p.system.settlement_decimals
    for t in traders:
        units = to_units(t.deposit, decimals)
        p.token.mint(t.wallet, units, sender=t.wallet)
        p.token.approve(p.clearinghouse, units, sender=t.wallet)


def open_accounts(p: Protocol, traders: list[Trader]) -> None:
    """One sub-account per trader, isolated or portfolio margin as the trader chose."""
    for t in traders:
        tx = p.clearinghouse.open_account("main", t.portfolio, sender=t.wallet)
        t.account_id = int(tx.return_value)


def deposit(p: Protocol, traders: list[Trader]) -> None:
    decimals = p.system.settlement_decimals
    for t in traders:
        assert t.account_id is not None, "open_accounts() first"
        units = to_units(t.deposit, decimals)
        p.ops.deposit(t.account_id, p.token, units, sender=t.wallet)
        t.deposited_units += units


# --- steps: the liquidity vault -------------------------------------------------------------


def create_lp(accounts: Any, spec: tuple[str, int, Decimal] = LP) -> LiquidityProvider:
    name, index, amount = spec
    return LiquidityProvider(name, accounts[index], amount)


def lp_deposit(p: Protocol, lp: LiquidityProvider) -> LpMove:
    """Mint test USDC to the LP and deposit it into the vault through the SDK."""
    p.token.mint(lp.wallet, to_units(lp.deposit, p.system.settlement_decimals), sender=lp.wallet)
    move = client_for(p, lp.wallet).lp_deposit(lp.deposit)
    lp.moves.append(move)
    return move


def lp_tables(p: Protocol, lp: LiquidityProvider) -> list[Table]:
    """The LP's shares and the pool (the `perpdex lp status` tables)."""
    st = client_for(p, lp.wallet).lp_status(lp.wallet)
    sym = p.system.settlement_symbol
    return [position_table(st, sym), pool_table(st, sym)]


# --- steps: trading -----------------------------------------------------------------------------


def open_positions(
    p: Protocol, state: DemoState, orders: Sequence[tuple[str, str, str]] = ORDERS
) -> list[TradeRecord]:
    """Market orders through the SDK (quote, then trade with the default slippage bound)."""
    out = []
    for name, symbol, size in orders:
        t = state.trader(name)
        assert t.account_id is not None, "open_accounts() first"
        fill = client_for(p, t.wallet).trade(t.account_id, symbol, Decimal(size))
        out.append(TradeRecord(name, fill))
    state.trades += out
    return out


def trades_table(records: Sequence[TradeRecord], title: str = "trades") -> Table:
    """Each fill: the oracle price, the fill with its skew premium (impact), the worst
    price the order accepted (limit) and the fee."""
    t = new_table(title)
    t.add_column("trader", no_wrap=True)
    t.add_column("mkt", no_wrap=True)
    for name in ("size", "oracle", "fill", "impact", "limit", "fee"):
        t.add_column(name, justify="right", no_wrap=True)
    for r in records:
        f = r.fill
        t.add_row(
            r.trader,
            f.symbol,
            fmt_size(f.size_delta),
            fmt_price(f.quote.oracle_price),
            fmt_price(f.price),
            fmt_pct(f.quote.price_impact, 4),
            fmt_price(f.acceptable_price),
            _usd(f.fee),
        )
    return t


def close_positions(
    p: Protocol, state: DemoState, closes: Sequence[tuple[str, str]] = CLOSES
) -> list[TradeRecord]:
    """Close whole positions through the SDK; the fills carry the realised PnL."""
    out = []
    for name, symbol in closes:
        t = state.trader(name)
        assert t.account_id is not None, "open_accounts() first"
        out.append(TradeRecord(name, client_for(p, t.wallet).close(t.account_id, symbol)))
    state.closes += out
    return out


def closes_table(records: Sequence[TradeRecord], title: str = "closes") -> Table:
    """Each close: entry and exit, realised PnL, the funding it settled and the fee."""
    t = new_table(title)
    t.add_column("trader", no_wrap=True)
    t.add_column("mkt", no_wrap=True)
    for name in ("size", "entry", "exit", "realised", "funding", "fee"):
        t.add_column(name, justify="right", no_wrap=True)
    for r in records:
        f = r.fill
        closed = -f.size_delta
        # realised PnL of a whole close = closed x (exit - entry): the entry it implies
        entry = f.price - f.realized_pnl / closed
        t.add_row(
            r.trader,
            f.symbol,
            fmt_size(closed),
            fmt_price(entry),
            fmt_price(f.price),
            pnl(f.realized_pnl),
            pnl(-f.funding_paid),
            _usd(f.fee),
        )
    return t


# --- steps: time, prices and funding --------------------------------------------------------


def advance_time(seconds: int) -> int:
    """Move the chain's clock `seconds` ahead (perpdex.chaintime.advance)."""
    return chaintime.advance(seconds)


def post_prices(p: Protocol, prices: dict[str, Decimal], who: Any) -> None:
    """Every mock feed of each market answers its new price (fresh rounds)."""
    for symbol, usd in prices.items():
        answer = int(usd * 10**FEED_DECIMALS)
        for feed in p.feeds[symbol]:
            feed.set_answer(answer, sender=who)


def checkpoint(
    p: Protocol,
    state: DemoState,
    hours: int,
    prices: dict[str, Decimal],
    who: Any,
    elapsed_hours: int = 0,
) -> Checkpoint:
    """Advance to `hours` after the trades, post `prices`, refresh every market (which
    accrues funding at the skew) and read each position's accrued funding."""
    from ape import chain

    advance_time((hours - elapsed_hours) * 3600)
    post_prices(p, prices, who)
    client = client_for(p, who)
    receipt = client.refresh()
    block = chain.blocks[receipt.block_number]
    markets = {m.symbol: m for m in client.markets()}
    rows = []
    for t in state.traders:
        if t.account_id is None:
            continue
        for pos in client.portfolio(t.account_id).positions:
            m = markets[pos.symbol]
            rows.append(
                FundingRow(
                    trader=t.name,
                    symbol=pos.symbol,
                    mark_price=m.mark_price,
                    funding_rate=m.funding_rate,
                    funding_index=m.funding_index,
                    size=pos.size,
                    unrealized_pnl=pos.unrealized_pnl,
                    funding_pnl=pos.funding_pnl,
                )
            )
    cp = Checkpoint(hours, int(block.timestamp), int(block.number or 0), tuple(rows))
    state.checkpoints.append(cp)
    return cp


def price_path(
    p: Protocol,
    state: DemoState,
    who: Any,
    path: Sequence[tuple[int, dict[str, Decimal]]] = PRICE_PATH,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> list[Checkpoint]:
    """Every checkpoint of `path` in order."""
    out = []
    elapsed = 0
    for hours, prices in path:
        cp = checkpoint(p, state, hours, prices, who, elapsed)
        elapsed = hours
        out.append(cp)
        if on_checkpoint is not None:
            on_checkpoint(cp)
    return out


def funding_table(cp: Checkpoint) -> Table:
    """A checkpoint: each position with its market's mark, funding rate (per day) and
    cumulative index (dollars per unit), its unrealised PnL and the funding it accrued
    since it last settled (positive: received)."""
    t = new_table(f"hour {cp.hours}: marks and funding")
    t.add_column("trader", no_wrap=True)
    t.add_column("mkt", no_wrap=True)
    for name in ("mark", "rate/day", "index $/unit", "size", "uPnL", "funding"):
        t.add_column(name, justify="right", no_wrap=True)
    for r in cp.rows:
        t.add_row(
            r.trader,
            r.symbol,
            fmt_price(r.mark_price),
            fmt_pct(r.funding_rate, 4),
            f"{r.funding_index:,.6f}",
            fmt_size(r.size),
            pnl(r.unrealized_pnl),
            pnl(r.funding_pnl),
        )
    return t


# --- steps: portfolio, vault and balances ---------------------------------------------------


def portfolio_of(p: Protocol, trader: Trader) -> Portfolio:
    assert trader.account_id is not None, "open_accounts() first"
    return client_for(p, trader.wallet).portfolio(trader.account_id)


def portfolio_tables(p: Protocol, trader: Trader) -> list[Table]:
    """The scenario table and the savings table of `perpdex portfolio`."""
    pf = portfolio_of(p, trader)
    shocks = book_shocks(pf, client_for(p, trader.wallet).risk_book().shocks)
    return [
        scenario_table(pf, shocks, title=f"{trader.name}: loss under every stress scenario"),
        savings_table(pf, title=f"{trader.name}: portfolio margin vs isolated"),
    ]


def vault_table(p: Protocol, lp: LiquidityProvider) -> Table:
    """Where the money went: share price, pool equity, insurance and fees."""
    client = client_for(p, lp.wallet)
    st = client.lp_status(lp.wallet)
    sym = p.system.settlement_symbol
    deposited = sum((m.assets for m in lp.moves), Decimal(0))
    t = new_table("vault and insurance at the end", header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_row("share price", f"{st.share_price:,.6f} {sym}")
    t.add_row(f"{lp.name} shares", f"{st.shares:,.6f}")
    t.add_row(f"{lp.name} deposited", f"{deposited:,.2f} {sym}")
    t.add_row(f"{lp.name} shares worth", f"{st.assets:,.2f} {sym}")
    t.add_row("pool equity", _usd(st.pool_equity))
    t.add_row("pool cash", _usd(st.pool_cash))
    t.add_row("insurance fund", _usd(st.insurance))
    t.add_row("protocol fees", _usd(st.protocol_fees))
    return t


# --- tables -----------------------------------------------------------------------------


def deployment_table(p: Protocol, title: str | None = None) -> Table:
    table = Table(title=title or f"perpdex deployment ({p.network})")
    table.add_column("contract")
    table.add_column("address", style="cyan", no_wrap=True, min_width=42)
    rows: list[tuple[str, str]] = [("Clearinghouse", str(p.clearinghouse.address))]
    # the code halves it delegates to, as the chain names them (load_protocol checked the
    # manifest's against them)
    halves = p.extra.get("halves") or chain_halves(str(p.clearinghouse.address))
    rows += [(f"  {key.removeprefix('clearinghouse_')} half", a) for key, a in halves.items()]
    rows += [
        ("OracleRouter", str(p.oracle.address)),
        (f"token ({p.system.settlement_symbol})", str(p.token.address)),
    ]
    for sym, feeds in p.feeds.items():
        rows += [(f"{sym} feed {i}", str(f.address)) for i, f in enumerate(feeds)]
    if p.sequencer is not None:
        rows.append(("sequencer feed", str(p.sequencer.address)))
    for name in ("vault", "auction", "lens"):
        if (c := getattr(p, name)) is not None:
            rows.append((name, str(c.address)))
    for name, address in rows:
        table.add_row(name, address)
    return table


def balance_table(p: Protocol, traders: list[Trader], title: str = "trader balances") -> Table:
    sym = p.system.settlement_symbol
    unit = Decimal(10) ** p.system.settlement_decimals
    table = Table(title=title)
    table.add_column("trader")
    table.add_column("account id (owner/index)", style="cyan", no_wrap=True)
    table.add_column("margin", no_wrap=True)
    table.add_column(f"deposited ({sym})", justify="right")
    table.add_column("balance (USD)", justify="right")
    for t in traders:
        bal = "-" if t.account_id is None else p.clearinghouse.balance_of(t.account_id, 0)
        table.add_row(
            t.name,
            "-" if t.account_id is None else account_label(t.account_id),
            "portfolio" if t.portfolio else "isolated",
            f"{Decimal(t.deposited_units) / unit:,.2f}",
            "-" if bal == "-" else f"{Decimal(int(bal)) / WAD:,.2f}",
        )
    return table


# --- the demo ---------------------------------------------------------------------------


def run(
    console: Console | None = None,
    key: str | None = None,
    *,
    protocol: Protocol | None = None,
    extra_steps: bool = True,
    story: bool = True,
    out_dir: Path | None = None,
) -> DemoState:
    """The whole story (module docstring) on the deployment of `key` (default: the
    connected network's manifest) or on `protocol`. `extra_steps=False` skips the worked
    example, the crash replay and the dashboard screenshot; `story=False` the fund's
    strategies (perpdex/showcase/story.py). Every chart and the screenshot go to `out_dir`
    (default: PERPDEX_DEMO_OUT, else build/demo)."""
    from ape import accounts

    console = console or Console()
    p = protocol or load_protocol(key)
    wallets = accounts.test_accounts
    # `ape run deploy` (run just before by `make demo`) printed the deployment table:
    # one line here, not the table a second time
    console.print(
        f"demo on the perpdex deployment of {p.network}: Clearinghouse "
        f"{p.clearinghouse.address} (`ape run deploy` lists every contract)"
    )

    # 1. traders
    state = DemoState(p, create_traders(wallets))
    sym = p.system.settlement_symbol
    console.print(f"minting test {sym} for the traders")
    fund_traders(p, state.traders)
    open_accounts(p, state.traders)
    opened = ", ".join(
        f"{t.name} {account_label(t.account_id or 0)} "
        f"({'portfolio' if t.portfolio else 'isolated'} margin)"
        for t in state.traders
    )
    console.print(f"opened sub-accounts: {opened}")
    console.print(f"depositing {sym}")
    deposit(p, state.traders)
    console.print(balance_table(p, state.traders))

    # 2. the LP
    state.lp = create_lp(wallets)
    move = lp_deposit(p, state.lp)
    console.print(
        f"{state.lp.name} deposited {move.assets:,.2f} {sym} into the vault for "
        f"{move.shares:,.6f} shares"
    )
    for table in lp_tables(p, state.lp):
        console.print(table)

    # 3. trades
    console.print(trades_table(open_positions(p, state), "opening trades (SDK quote + trade)"))

    # 4. price path
    keeper = wallets[PRICE_KEEPER_INDEX]
    console.print(
        "price path: the clock moves, every feed is re-posted and `refresh` accrues funding"
    )
    price_path(p, state, keeper, on_checkpoint=lambda cp: console.print(funding_table(cp)))

    # 5. trader B's portfolio margin
    for t in state.traders:
        if t.portfolio:
            for table in portfolio_tables(p, t):
                console.print(table)

    # 6. closes
    console.print(closes_table(close_positions(p, state), "closes with realised PnL"))

    # 7. the vault and the balances after the trading
    console.print(vault_table(p, state.lp))
    console.print(balance_table(p, state.traders, "trader balances at the end"))

    # 8. the fund's three strategies through a crash, keepers on (perpdex/showcase/story.py)
    out = out_dir or demo_out_dir()
    if story:
        from ape import chain

        from perpdex.showcase.story import story_step

        state.story_first_block = int(chain.blocks.height) + 1
        state.story = story_step(p, console, out)
        if extra_steps:
            # 9. the fund's dashboard right after its story (the crash replay below trades
            # from the same test accounts): a screenshot (perpdex/showcase/screenshot.py)
            from perpdex.showcase.screenshot import screenshot_step

            state.screenshot = screenshot_step(p, console, out)

    # 10. the portfolio-margin worked example, then the crash replay (own modules, own tables)
    if extra_steps:
        from perpdex.showcase.crash import crash_replay_step
        from perpdex.showcase.worked_example import worked_example_step

        worked_example_step(p, console)
        crash_replay_step(p, console, out)
    console.print(f"artefacts (charts, screenshot): {out}/")
    return state


def demo_out_dir() -> Path:
    """Where the demo writes its charts and the dashboard screenshot."""
    import os

    return Path(os.environ.get("PERPDEX_DEMO_OUT", "build/demo"))
