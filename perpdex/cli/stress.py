"""`perpdex stress`: accounts through real crash periods and the on-chain scenario set.

    perpdex stress [--sub N | --account-id ID | --owner ADDR | --all | --book FILE.json]
                   [--period 2022-11 ...] [--paths CSV] [--proxy SOL=ETH] [--out DIR]

The figures come from perpdex/risk/stress.py (vectorised over accounts x scenarios, the
margin rules of perpdex.sdk.math); the crash paths from data/crash_paths.csv. This module
gathers the accounts (SDK snapshots at one block, or an offline JSON book) and lays the
results out. Mounted lazily by main.py (`RootGroup.lazy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.table import Table

from perpdex.cli import AccountId, Sub, console, session, short_id
from perpdex.cli.portfolio import new_table
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from perpdex.risk.stress import AccountBook, PathRun, ScenarioRun

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def _usd(x: float) -> str:
    text = f"${abs(x):,.0f}"
    return f"[red]-{text}[/]" if x < -0.5 else (f"+{text}" if x > 0.5 else text)


def _level(x: float) -> str:
    """An amount that is not a change (equity, maintenance): no + sign, red below zero."""
    text = f"${abs(x):,.0f}"
    return f"[red]-{text}[/]" if x < -0.5 else text


def _health(h: float, liq: bool) -> str:
    if not np.isfinite(h):
        return "[green]no risk[/]"
    text = f"{h:.2f}×"
    return f"[bold red]{text} liq.[/]" if liq else (f"[yellow]{text}[/]" if h < 1.5 else text)


def _moves(mult: np.ndarray, markets: tuple[str, ...]) -> str:
    return " ".join(f"{s} {x - 1:+.1%}" for s, x in zip(markets, mult, strict=True))


def scenario_table(book: AccountBook, run: ScenarioRun) -> Table:
    """One row per on-chain scenario: the moves, then (one account) its P&L, equity,
    maintenance and health, or (several) total P&L, worst account, lowest health and how
    many would be liquidated."""
    t = new_table("on-chain scenario set (instantaneous moves from today's marks)")
    t.add_column("scenario", no_wrap=True)
    t.add_column("moves", no_wrap=True)
    one = book.n_accounts == 1
    cols = (
        ("P&L", "equity", "maint.", "health")
        if one
        else ("total P&L", "worst P&L", "lowest health", "liquidated")
    )
    for c in cols:
        t.add_column(c, justify="right", no_wrap=True)
    out = run.out
    health = out.health
    liq = out.liquidatable
    now_row = ["[dim]today[/]", ""]
    if one:
        now_row += [
            "",
            _level(float(run.now.equity[0, 0])),
            _level(float(run.now.maintenance[0, 0])),
            _health(float(run.now.health[0, 0]), bool(run.now.liquidatable[0, 0])),
        ]
    else:
        h = run.now.health[:, 0]
        now_row += ["", "", _health(float(h.min()), False), str(int(run.now.liquidatable.sum()))]
    t.add_row(*now_row, end_section=True)
    for k, name in enumerate(run.names):
        mult = 1 + run.shocks_bps[k] / 10_000
        if one:
            cells = [
                _usd(float(out.pnl[0, k])),
                _level(float(out.equity[0, k])),
                _level(float(out.maintenance[0, k])),
                _health(float(health[0, k]), bool(liq[0, k])),
            ]
        else:
            n_liq = int(liq[:, k].sum())
            cells = [
                _usd(float(out.pnl[:, k].sum())),
                _usd(float(out.pnl[:, k].min())),
                _health(float(health[:, k].min()), bool(n_liq)),
                f"[bold red]{n_liq}[/]" if n_liq else "0",
            ]
        t.add_row(name, _moves(mult, book.markets), *cells)
    return t


def periods_table(book: AccountBook, runs: list[PathRun]) -> Table:
    """One row per crash period: its days, the deepest cumulative move per market, the
    book's worst day and how many accounts would be liquidated, and when first."""
    t = new_table("crash periods (positions held, moves from today's marks)")
    for c in ("period", "days", "deepest moves", "worst day", "P&L then", "lowest health"):
        t.add_column(c, no_wrap=True, justify="right" if c in ("days", "P&L then") else "left")
    t.add_column("liquidated", justify="right", no_wrap=True)
    t.add_column("first on", no_wrap=True)
    for r in runs:
        total = r.out.pnl.sum(axis=0)
        worst = int(np.argmin(total))
        first = r.first_liquidation_day
        hit = first[first >= 0]
        t.add_row(
            f"{r.path.period} {r.path.label}",
            str(r.path.n_days),
            _moves(r.multipliers.min(axis=0), book.markets),
            r.path.dates[worst],
            _usd(float(total[worst])),
            _health(float(r.out.health.min()), bool(hit.size)),
            f"[bold red]{hit.size}[/]" if hit.size else "0",
            r.path.dates[int(hit.min())] if hit.size else "-",
        )
    return t


def days_table(book: AccountBook, r: PathRun) -> Table:
    """A crash period day by day: moves since day 0, the book's P&L (cumulative and that
    day), the lowest health, and the accounts liquidated that day for the first time."""
    t = new_table(f"{r.path.period} {r.path.label}, day by day")
    t.add_column("date", no_wrap=True)
    t.add_column("moves since the first day", no_wrap=True)
    for c in ("P&L", "that day", "lowest health", "newly liquidated"):
        t.add_column(c, justify="right", no_wrap=True)
    total = r.out.pnl.sum(axis=0)
    first = r.first_liquidation_day
    health = r.out.health.min(axis=0)
    for d, date in enumerate(r.path.dates):
        new = int((first == d).sum())
        t.add_row(
            date,
            _moves(r.multipliers[d], book.markets),
            _usd(float(total[d])),
            _usd(float(total[d] - total[d - 1])) if d else "",
            _health(float(health[d]), bool(r.out.liquidatable[:, d].any())),
            f"[bold red]{new}[/]" if new else "",
        )
    return t


def liquidations_table(book: AccountBook, runs: list[PathRun], limit: int) -> Table | None:
    """Accounts that would be liquidated: in which period, on which day, with the equity
    and maintenance then (the first `limit` rows)."""
    rows = []
    for r in runs:
        first = r.first_liquidation_day
        for a in np.nonzero(first >= 0)[0]:
            d = int(first[a])
            rows.append((r.path.period, r.path.dates[d], int(a), d, r))
    if not rows:
        return None
    t = new_table(f"liquidations ({len(rows)} account-periods; first {min(limit, len(rows))})")
    for c in ("account", "period", "day", "equity", "maint.", "P&L to then"):
        t.add_column(
            c, no_wrap=True, justify="left" if c in ("account", "period", "day") else "right"
        )
    for period, date, a, d, r in rows[:limit]:
        t.add_row(
            book.names[a],
            period,
            f"{date} (day {d}{': already now' if d == 0 else ''})",
            _level(float(r.out.equity[a, d])),
            _level(float(r.out.maintenance[a, d])),
            _usd(float(r.out.pnl[a, d])),
        )
    return t


def _chain_book(
    ctx: typer.Context,
    sub: int | None,
    account_id: int | None,
    owner: str | None,
    all_: bool,
) -> AccountBook:
    from ape import chain

    from perpdex.risk.stress import book_from_snapshots
    from perpdex.sdk.snapshot import Snapshot

    s = session(ctx)
    one = sub is not None or account_id is not None
    client = s.client(signer_required=one and account_id is None)
    markets = tuple(client.deployment.markets)
    head = int(chain.blocks.head.number or 0)
    if one:
        ids = [s.resolve_account(client, sub, account_id)]
        names = [f"{short_id(ids[0])}"]
    elif all_:
        from perpdex.keepers.liquidator import accounts_opened

        ids = list(dict.fromkeys(accounts_opened(client, 0, head)))  # type: ignore[arg-type]
        if not ids:
            raise PerpdexError(
                f"no account is open on {client.deployment.network}; nothing to stress"
            )
        names = [short_id(i) for i in ids]
    else:
        who = owner if owner is not None else client.signer
        if who is None:
            raise PerpdexError(
                f"whose accounts? on {s.network} give --owner ADDRESS, --all, --account-id ID "
                "or --book FILE.json"
            )
        infos = client.accounts(who)
        if not infos:
            raise PerpdexError(f"{who} has no sub-account; open one with `perpdex open-account`")
        ids = [i.id for i in infos]
        names = [f"#{i.index} {i.name}" for i in infos]
    snaps = [Snapshot.load(client, a, head) for a in ids]
    return book_from_snapshots(snaps, markets, names)


@app.command("stress")
def stress(
    ctx: typer.Context,
    sub: Sub = None,
    account_id: AccountId = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", metavar="ADDR", help="Every sub-account (strategy) of ADDR."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every account of the deployment (AccountOpened logs).")
    ] = False,
    book_file: Annotated[
        Path | None,
        typer.Option(
            "--book",
            metavar="FILE.json",
            help="Offline: accounts from a JSON file instead of the chain (format in "
            "perpdex/risk/stress.py, BOOK_FILE_FORMAT).",
        ),
    ] = None,
    risk_book: Annotated[
        Path | None,
        typer.Option(
            "--risk-book", metavar="YAML", help="With --book: the risk book (config/risk.yaml)."
        ),
    ] = None,
    period: Annotated[
        list[str] | None,
        typer.Option("--period", "-p", metavar="ID", help="Only this crash period (repeatable)."),
    ] = None,
    paths: Annotated[
        Path | None,
        typer.Option("--paths", metavar="CSV", help="Crash paths (default data/crash_paths.csv)."),
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option(
            "--proxy",
            metavar="MKT=SYM,...",
            help="Move a market absent from a period like SYM (default ETH), e.g. SOL=BTC.",
        ),
    ] = None,
    days: Annotated[
        bool, typer.Option("--days/--no-days", help="Print every period day by day.")
    ] = True,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Rows of the liquidations table.")
    ] = 30,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Write the chart (stress.png) into DIR."),
    ] = None,
) -> None:
    """Run accounts through real crash periods (BTC/ETH/SOL daily closes of March 2020, May
    2021, June 2022, November 2022 and August 2024) and through the on-chain scenario set:
    P&L per scenario and per day, resulting health, which accounts would be liquidated and
    when.

    Accounts: one (--sub / --account-id), an owner's strategies (--owner, default you),
    every account of the deployment (--all), or an offline JSON book (--book). Positions
    are held through each period; the margin rules are the contract's (perpdex.sdk.math).
    """
    from perpdex.risk import stress as st

    chosen = sum(
        [sub is not None or account_id is not None, owner is not None, all_, book_file is not None]
    )
    if chosen > 1:
        raise typer.BadParameter("give one of --sub/--account-id, --owner, --all or --book")
    if risk_book is not None and book_file is None:
        raise typer.BadParameter(
            "--risk-book goes with --book (on chain the published book counts)"
        )
    all_paths = st.load_paths(paths or st.DEFAULT_PATHS)
    periods = st.select_periods(all_paths, period or [])
    if book_file is not None:
        book = st.load_book_file(book_file, risk_book)
    else:
        book = _chain_book(ctx, sub, account_id, owner, all_)
    symbols = tuple(dict.fromkeys(s for p in periods for s in p.symbols))
    if not set(book.markets) & set(symbols):
        raise PerpdexError(
            f"no market of the book ({', '.join(book.markets)}) is in the paths file "
            f"({', '.join(symbols)}); pass --paths with those symbols"
        )
    proxies = st.parse_proxies(proxy, book.markets, symbols)
    scen = st.run_scenarios(book)
    runs = [st.run_path(book, p, proxies) for p in periods]

    c = console()
    marks = ", ".join(f"{s} ${p:,.2f}" for s, p in zip(book.markets, book.prices, strict=True))
    c.print(
        f"[bold]stress[/] of {book.n_accounts:,} account(s) from {book.source}; marks {marks}",
        soft_wrap=True,
    )
    c.print(scenario_table(book, scen))
    c.print(periods_table(book, runs))
    if days:
        for r in runs:
            c.print(days_table(book, r))
    liq = liquidations_table(book, runs, limit)
    if liq is not None:
        c.print(liq)
    else:
        c.print("[green]no account would be liquidated in these periods[/]")
    for note in (n for r in runs for n in r.notes):
        c.print(f"[dim]note: {note}[/]", soft_wrap=True)
    if out is not None:
        from perpdex.risk.plots import stress_chart

        panels = []
        for r in runs:
            first = r.first_liquidation_day
            per_day = np.array([(first == d).sum() for d in range(r.path.n_days)])
            panels.append((r.path.label, r.path.dates, r.out.equity.sum(axis=0), per_day))
        png = stress_chart(
            scen.names,
            scen.out.pnl.sum(axis=0),
            scen.out.liquidatable.any(axis=0),
            panels,
            out / "stress.png",
            f"perpdex stress: {book.n_accounts:,} account(s), {book.source}",
        )
        c.print(f"wrote {png}")
