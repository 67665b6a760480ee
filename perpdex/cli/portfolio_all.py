"""Tables of the multi-strategy views: `perpdex portfolio --all` (every sub-account of an
owner with totals and the correlation of their P&L), `--shock` (a custom price stress, one
account or all) and `perpdex history` (events and cumulative P&L).

The figures come from the SDK (perpdex/sdk/history.py, perpdex/sdk/shock.py through
`PerpdexClient.strategies`, `.stress`, `.history`); this module only lays them out, and
perpdex/cli/jsonout.py's builders give the same figures as JSON.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from rich.table import Table

from perpdex.cli import console, fmt_amount, fmt_usd
from perpdex.cli.portfolio import (
    account_label,
    fmt_pct,
    fmt_price,
    fmt_size,
    health_text,
    new_table,
    pnl,
)

if TYPE_CHECKING:
    from perpdex.sdk.client import AccountInfo
    from perpdex.sdk.history import AccountHistory, PnlCorrelation, StrategyBook
    from perpdex.sdk.shock import ShockedPrice, StressResult

ZERO = Decimal(0)


def _usd(value: Decimal) -> str:
    return f"[red]{fmt_usd(value)}[/]" if value < 0 else fmt_usd(value)


def _name(info: AccountInfo) -> str:
    return f"#{info.index} {info.name}"


# --- portfolio --all ------------------------------------------------------------------------


def strategies_table(book: StrategyBook) -> Table:
    """One row per sub-account and a total row: equity, margin used (initial requirement),
    free margin, health, and P&L realised / unrealised / funding / fees / total."""
    t = new_table(None)
    t.add_column("account", no_wrap=True)
    t.add_column("mode", no_wrap=True)
    for name in ("equity", "margin used", "free", "health"):
        t.add_column(name, justify="right", no_wrap=True)
    for name in ("realised", "unrealised", "funding", "fees", "total P&L"):
        t.add_column(name, justify="right", no_wrap=True)
    for i, line in enumerate(book.lines):
        pf = line.portfolio
        t.add_row(
            _name(line.info),
            line.info.mode,
            _usd(line.equity),
            fmt_usd(line.margin_used),
            _usd(line.free),
            health_text(pf.health, pf.equity, pf.initial, pf.maintenance, pf.info.in_liquidation),
            pnl(line.realized_pnl),
            pnl(line.unrealized_pnl),
            pnl(line.funding),
            pnl(-line.fees),
            pnl(line.total_pnl),
            end_section=i == len(book.lines) - 1,
        )
    health = "-" if book.health is None else f"{book.health:.2f}×"
    t.add_row(
        "[bold]total[/]",
        "",
        f"[bold]{_usd(book.equity)}[/]",
        f"[bold]{fmt_usd(book.margin_used)}[/]",
        f"[bold]{_usd(book.free)}[/]",
        health,
        pnl(book.realized_pnl),
        pnl(book.unrealized_pnl),
        pnl(book.funding),
        pnl(-book.fees),
        f"[bold]{pnl(book.total_pnl)}[/]",
    )
    return t


def fmt_corr(r: Decimal | None) -> str:
    """`+0.83`, `-0.10`, bold when |r| >= 0.7; `-` where undefined (a flat series)."""
    if r is None:
        return "-"
    text = f"{r:+.2f}"
    return f"[bold]{text}[/]" if abs(r) >= Decimal("0.7") else text


def correlation_table(corr: PnlCorrelation, names: dict[int, str]) -> Table:
    """The correlation matrix with the strategies' names on both axes."""
    assert corr.matrix is not None
    t = new_table(None)
    t.add_column("", no_wrap=True)
    for a in corr.accounts:
        t.add_column(names[a], justify="right", no_wrap=True)
    for a, row in zip(corr.accounts, corr.matrix, strict=True):
        t.add_row(names[a], *(fmt_corr(r) for r in row))
    return t


def correlation_note(corr: PnlCorrelation) -> str:
    if len(corr.accounts) < 2:
        return "P&L correlation: needs two sub-accounts or more"
    if corr.matrix is None:
        return (
            f"P&L correlation: not enough history ({corr.points} block(s) with P&L events; "
            "needs 3); trade for longer or give an earlier --from-block"
        )
    return (
        f"P&L correlation between strategies (changes of cumulative P&L at {corr.points} "
        "blocks; `-`: a series that never moves)"
    )


def print_strategies(book: StrategyBook, network: str) -> None:
    out = console()
    if not book.lines:
        out.print(
            f"{book.owner} has no sub-account yet; open one with `perpdex open-account NAME`",
            soft_wrap=True,
        )
        return
    out.print(
        f"strategies of {book.owner} on {network} at block {book.block_number} "
        f"(P&L since block {book.from_block})",
        soft_wrap=True,
    )
    out.print(strategies_table(book))
    corr = book.correlation
    out.print(correlation_note(corr), soft_wrap=True)
    if corr.matrix is not None and len(corr.accounts) >= 2:
        out.print(correlation_table(corr, {ln.info.id: _name(ln.info) for ln in book.lines}))


# --- --shock ------------------------------------------------------------------------------------


def shock_line(prices: tuple[ShockedPrice, ...]) -> str:
    """`stress: BTC -30.00% ($100,000.00 → $70,000.00), ETH ...`."""
    parts = []
    for p in prices:
        src = "" if p.source == "oracle" else ", from the cached mark: no oracle quorum"
        parts.append(
            f"{p.symbol} {'+' if p.move > 0 else ''}{fmt_pct(p.move)} "
            f"({fmt_price(p.base)} → {fmt_price(p.shocked)}{src})"
        )
    return "stress: " + ", ".join(parts) + "; other markets at their cached marks"


def _liq(flag: bool) -> str:
    return "[bold red]yes[/]" if flag else "[green]no[/]"


def stress_table(rows: list[tuple[AccountInfo, StressResult]]) -> Table:
    """Equity, maintenance and health before and after the shock per account (and a total
    row for several)."""
    t = new_table(None)
    t.add_column("account", no_wrap=True)
    for name in (
        "equity now",
        "equity after",
        "change",
        "maint. after",
        "health now",
        "health after",
        "liquidatable",
    ):
        t.add_column(name, justify="right", no_wrap=True)
    for i, (info, r) in enumerate(rows):
        t.add_row(
            _name(info),
            _usd(r.equity_before),
            _usd(r.equity_after),
            pnl(r.equity_change),
            fmt_usd(r.maintenance_after),
            health_text(
                r.health_before, r.equity_before, r.initial_before, r.maintenance_before, False
            ),
            health_text(r.health_after, r.equity_after, r.initial_after, r.maintenance_after),
            _liq(r.liquidatable),
            end_section=len(rows) > 1 and i == len(rows) - 1,
        )
    if len(rows) > 1:
        before = sum((r.equity_before for _, r in rows), ZERO)
        after = sum((r.equity_after for _, r in rows), ZERO)
        maint = sum((r.maintenance_after for _, r in rows), ZERO)
        count = sum(1 for _, r in rows if r.liquidatable)
        t.add_row(
            "[bold]total[/]",
            _usd(before),
            f"[bold]{_usd(after)}[/]",
            pnl(after - before),
            fmt_usd(maint),
            "",
            "-" if maint == 0 else f"{after / maint:.2f}×",
            f"{count} of {len(rows)}",
        )
    return t


def legs_table(r: StressResult) -> Table:
    t = new_table(None)
    t.add_column("market", no_wrap=True)
    for name in ("size", "mark", "shocked", "value change"):
        t.add_column(name, justify="right", no_wrap=True)
    for leg in r.legs:
        t.add_row(
            leg.symbol,
            fmt_size(leg.size),
            fmt_price(leg.price_before),
            fmt_price(leg.price_after),
            pnl(leg.pnl_change),
        )
    return t


def print_stress(rows: list[tuple[AccountInfo, StressResult]]) -> None:
    """The stress of one account (with its legs) or of several (with the total)."""
    out = console()
    if not rows:
        return
    out.print(shock_line(rows[0][1].prices), soft_wrap=True)
    if len(rows) == 1 and rows[0][1].legs:
        out.print(legs_table(rows[0][1]))
    out.print(stress_table(rows))
    hit = [info for info, r in rows if r.liquidatable]
    if hit:
        names = ", ".join(account_label(i) for i in hit)
        out.print(
            f"[bold red]liquidatable after the shock:[/] {names}; add collateral "
            "(`perpdex deposit`) or reduce positions",
            soft_wrap=True,
        )
    else:
        out.print("[green]no account would be liquidatable after the shock[/]", soft_wrap=True)


# --- history ------------------------------------------------------------------------------------


def _flow(amount: Decimal, token: str | None) -> str:
    if token is None or amount == 0:
        return ""
    sign = "+" if amount > 0 else "-"
    return f"{sign}{fmt_amount(abs(amount))} {token}"


def events_table(h: AccountHistory) -> Table:
    """Every event of the account with its P&L and the cumulative P&L after it."""
    t = new_table(None)
    t.add_column("block", justify="right", no_wrap=True)
    t.add_column("tx", no_wrap=True)
    t.add_column("event", no_wrap=True)
    t.add_column("market", no_wrap=True)
    for name in ("size", "price", "realised", "funding", "fee", "flow", "cum. P&L"):
        t.add_column(name, justify="right", no_wrap=True)
    total = ZERO
    for e in h.events:
        total += e.pnl
        fee = e.fee - e.other
        t.add_row(
            str(e.block_number),
            e.tx_hash[:10] + "…",
            e.kind,
            e.symbol or "",
            fmt_size(e.size_delta) if e.size_delta is not None else "",
            fmt_price(e.price) if e.price is not None else "",
            pnl(e.realized_pnl) if e.realized_pnl else "",
            pnl(e.funding) if e.funding else "",
            pnl(-fee) if fee else "",
            _flow(e.amount, e.token),
            pnl(total),
        )
    return t


def history_summary(h: AccountHistory) -> Table:
    t = new_table(None, header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_row("realised P&L", pnl(h.realized_pnl))
    t.add_row("funding settled", pnl(h.funding_settled))
    t.add_row("fees paid", pnl(-h.fees))
    if h.other:
        t.add_row("rewards and write-offs received", pnl(h.other))
    t.add_row("settled P&L", pnl(h.cash_pnl))
    t.add_row(f"unrealised P&L (block {h.to_block})", pnl(h.unrealized_pnl))
    t.add_row("funding accrued, unsettled", pnl(h.funding_accrued))
    t.add_row("[bold]total P&L[/]", f"[bold]{pnl(h.total_pnl)}[/]")
    for token, amount in h.flows.items():
        t.add_row(f"net {token} in (deposits, transfers)", fmt_amount(amount))
    return t


def series_table(histories: list[AccountHistory]) -> Table:
    """Cumulative P&L per account at every block where one of them had a P&L event, and
    "now" (open positions at the last block)."""
    t = new_table(None)
    t.add_column("block", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    for h in histories:
        t.add_column(_name(h.info), justify="right", no_wrap=True)
    points = {h.account: {p.block_number: p for p in h.series[:-1]} for h in histories}
    blocks = sorted({b for pts in points.values() for b in pts})
    level = {h.account: ZERO for h in histories}
    for b in blocks:
        labels = []
        for h in histories:
            p = points[h.account].get(b)
            if p is not None:
                level[h.account] = p.pnl
                labels.append(p.label if len(histories) == 1 else f"{h.info.index}: {p.label}")
        t.add_row(str(b), "; ".join(labels), *(pnl(level[h.account]) for h in histories))
    last = max((h.to_block for h in histories), default=0)
    t.add_row(str(last), "now (open positions)", *(pnl(h.total_pnl) for h in histories))
    return t


def print_histories(histories: list[AccountHistory]) -> None:
    out = console()
    for h in histories:
        out.print(
            f"history of {account_label(h.info)} from block {h.from_block} to {h.to_block}: "
            f"{len(h.events)} event(s)",
            soft_wrap=True,
        )
        if h.events:
            out.print(events_table(h))
        out.print(history_summary(h))
    if histories:
        out.print("cumulative P&L", soft_wrap=True)
        out.print(series_table(histories))
