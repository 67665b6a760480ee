"""`perpdex portfolio`: positions, PnL, funding, margin, health, liquidation prices, and the
loss under every stress scenario with the one that binds and the margin saved against
isolated mode.

    perpdex portfolio [--sub N | --account-id ID | --all [--owner ADDR]] [--shock SYM=PCT%,...]
                      [--from-block B] [--json]

Every figure comes from `ClearinghouseLens.account_summary` at the cached marks (what the
Clearinghouse's own margin check sees); scenario names come from the on-chain risk book.
The table builders here are also used by `perpdex trade` and the demo (perpdex/showcase/demo.py).

Mounted on the root app by main.py (`RootGroup.lazy`: a root command). `--all` and
`--shock` are laid out by perpdex/cli/portfolio_all.py (figures: perpdex/sdk/history.py,
perpdex/sdk/shock.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.measure import Measurement
from rich.table import Table

from perpdex.cli import AccountId, Sub, console, fmt_usd, jsonout, session, short_id
from perpdex.cli.jsonout import Json

if TYPE_CHECKING:
    from perpdex.sdk.client import AccountInfo, Portfolio, PositionLine

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


# --- formatting -------------------------------------------------------------------------------


def fmt_price(value: Decimal | None) -> str:
    """`$101,234.50`, `$151.2345`, `$0.123456`; `-` for none."""
    if value is None:
        return "-"
    places = 2 if abs(value) >= 1000 else (4 if abs(value) >= 1 else 6)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.{places}f}"


def fmt_qty(value: Decimal, max_places: int = 8) -> str:
    """Base units as given, up to `max_places` decimals: `0.5`, `1,200`, `0.00012`."""
    exponent = value.normalize().as_tuple().exponent
    places = min(max_places, max(0, -exponent if isinstance(exponent, int) else 0))
    return f"{value:,.{places}f}"


def fmt_size(value: Decimal) -> str:
    """Signed base units: `+0.5`, `-20`."""
    return ("+" if value > 0 else "") + fmt_qty(value)


def fmt_pct(value: Decimal | None, places: int = 2) -> str:
    """A fraction as a percentage: 0.0123 -> `1.23%` (no sign on what rounds to zero)."""
    if value is None:
        return "-"
    shown = (value * 100).quantize(Decimal(1).scaleb(-places))
    return f"{shown.copy_abs() if shown == 0 else shown:,.{places}f}%"


def pnl(value: Decimal) -> str:
    """Signed dollars to the cent, green when positive and red when negative."""
    cents = value.quantize(Decimal("0.01"))
    if cents > 0:
        return f"[green]+{fmt_usd(cents)}[/]"
    if cents < 0:
        return f"[red]{fmt_usd(cents)}[/]"
    return fmt_usd(cents.copy_abs())


def health_text(
    health: Decimal | None,
    equity: Decimal,
    initial: Decimal,
    maintenance: Decimal,
    in_liquidation: bool = False,
) -> str:
    """Equity over maintenance, coloured: red when liquidatable, yellow below initial
    margin, green otherwise."""
    if in_liquidation:
        return "[bold red]in liquidation[/]"
    if health is None:
        return "[green]no positions[/]"
    text = f"{health:.2f}×"
    if equity < maintenance:
        return f"[bold red]{text} liquidatable[/]"
    if equity < initial:
        return f"[yellow]{text} below initial[/]"
    return f"[green]{text}[/]"


def account_label(info: AccountInfo) -> str:
    return f"#{info.index} {info.name!r} ({short_id(info.id)})"


# --- tables -------------------------------------------------------------------------------------


def new_table(title: str | None, header: bool = True) -> Table:
    """The trading commands' table style: a rule under the header, two spaces between
    columns, no edges; `header=False` for two-column label/value tables."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD if header else None,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
        show_header=header,
    )


def positions_table(pf: Portfolio, title: str | None = "positions") -> Table:
    """One row per position: size, entry, mark, notional, unrealised PnL, accrued funding
    (+ received), isolated initial margin and liquidation price with the distance to it."""
    t = new_table(title)
    for name in ("market", "side"):
        t.add_column(name, no_wrap=True)
    for name in (
        "size",
        "entry",
        "mark",
        "notional",
        "uPnL",
        "funding",
        "iso. IM",
        "liq. price",
        "to liq.",
    ):
        t.add_column(name, justify="right", no_wrap=True)
    for p in pf.positions:
        t.add_row(*position_cells(p))
    return t


def position_block(p: PositionLine) -> str:
    """One position as two lines, for terminals too narrow for the table."""
    cells = position_cells(p)
    liq = f"liq. {cells[9]} ({cells[10]} away)" if p.liquidation_price else "no liq. price"
    return (
        f"{p.symbol} {cells[1]} {cells[2]} @ {cells[3]}, mark {cells[4]}, notional {cells[5]}\n"
        f"  uPnL {cells[6]}, funding {cells[7]}, isolated IM {cells[8]}, {liq}"
    )


def position_cells(p: PositionLine) -> list[str]:
    distance = p.liquidation_distance
    to_liq = fmt_pct(distance)
    if distance is not None and distance < Decimal("0.05"):
        to_liq = f"[bold red]{to_liq}[/]"
    return [
        p.symbol,
        f"[green]{p.side}[/]" if p.size > 0 else f"[red]{p.side}[/]",
        fmt_size(p.size),
        fmt_price(p.entry_price),
        fmt_price(p.mark_price),
        fmt_usd(p.notional),
        pnl(p.unrealized_pnl),
        pnl(p.funding_pnl),
        fmt_usd(p.isolated_initial),
        fmt_price(p.liquidation_price) if p.liquidation_price is not None else "none",
        to_liq,
    ]


def margin_table(pf: Portfolio, title: str | None = "margin") -> Table:
    """Collateral, PnL, funding, equity, requirements, free margin and health."""
    t = new_table(title, header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    mode = "portfolio (scenario) margin" if pf.portfolio_mode else "isolated margin"
    t.add_row("mode", mode)
    t.add_row("collateral", fmt_usd(pf.collateral_value))
    t.add_row("unrealised PnL", pnl(pf.unrealized_pnl))
    t.add_row("funding PnL", pnl(-pf.funding_owed))
    t.add_row("equity", fmt_usd(pf.equity) if pf.equity >= 0 else f"[red]{fmt_usd(pf.equity)}[/]")
    t.add_row("initial margin", fmt_usd(pf.initial))
    t.add_row("maintenance margin", fmt_usd(pf.maintenance))
    t.add_row("free margin", pnl(pf.free) if pf.free < 0 else fmt_usd(pf.free))
    t.add_row(
        "health (equity / maint.)",
        health_text(pf.health, pf.equity, pf.initial, pf.maintenance, pf.info.in_liquidation),
    )
    return t


def scenario_table(
    pf: Portfolio,
    shocks: dict[str, tuple[int, ...]] | None = None,
    title: str | None = "stress scenarios (risk book)",
) -> Table:
    """The loss under every scenario, with the binding one marked. `shocks` (symbol ->
    per-scenario shock in bp) adds the moves of the markets the account holds."""
    t = new_table(title)
    t.add_column("#", justify="right", no_wrap=True)
    t.add_column("scenario", no_wrap=True)
    held = [p.symbol for p in pf.positions]
    for sym in held if shocks else []:
        t.add_column(sym, justify="right", no_wrap=True)
    t.add_column("loss", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    for s in pf.scenarios:
        moves = [_shock(shocks[sym][s.index]) for sym in held] if shocks else []
        loss = fmt_usd(s.loss)
        mark = ""
        if s.binding:
            loss = f"[bold]{loss}[/]"
            mark = "[bold yellow]◀ worst[/]"
        t.add_row(str(s.index), s.name, *moves, loss, mark)
    return t


def _shock(bp: int) -> str:
    return "0%" if bp == 0 else f"{bp / 100:+g}%"


def savings_table(pf: Portfolio, title: str | None = "portfolio margin vs isolated") -> Table:
    """How the portfolio requirement is built, what binds it, and the margin it saves."""
    t = new_table(title, header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    worst = pf.binding_scenario
    t.add_row("isolated requirement (sum of positions)", fmt_usd(pf.isolated_initial))
    t.add_row(f"worst scenario loss ({worst.name if worst else 'none'})", fmt_usd(pf.worst_loss))
    t.add_row("floor (share of gross notional)", fmt_usd(pf.floor))
    t.add_row("size add-on", fmt_usd(pf.addon))
    t.add_row("portfolio requirement", f"[bold]{fmt_usd(pf.portfolio_initial)}[/]")
    t.add_row("binds", pf.binds)
    share = pf.margin_saved / pf.isolated_initial if pf.isolated_initial else Decimal(0)
    saved = f"{fmt_usd(pf.margin_saved)} ({fmt_pct(share, 1)})"
    if pf.portfolio_mode:
        t.add_row("margin saved vs isolated", f"[green]{saved}[/]" if pf.margin_saved else saved)
    else:
        t.add_row("portfolio mode would save", saved)
    return t


def print_portfolio(pf: Portfolio, shocks: dict[str, tuple[int, ...]] | None = None) -> None:
    """Everything `perpdex portfolio` prints for one account."""
    out = console()
    mode = "portfolio margin" if pf.portfolio_mode else "isolated margin"
    out.print(
        f"portfolio of {account_label(pf.info)}, {mode}, at block {pf.block_number}",
        soft_wrap=True,
    )
    if pf.positions:
        table = positions_table(pf)
        if Measurement.get(out, out.options.update_width(10**6), table).maximum <= out.width:
            out.print(table)
        else:
            out.print("positions")
            for p in pf.positions:
                out.print(position_block(p), soft_wrap=True)
    else:
        out.print("no open positions; open one with `perpdex trade SYMBOL SIZE`", soft_wrap=True)
    out.print(margin_table(pf))
    if not pf.positions:
        return
    out.print(scenario_table(pf, shocks))
    out.print(savings_table(pf))
    if not pf.portfolio_mode and pf.margin_saved > 0:
        out.print(
            f"switch this account to portfolio margin to free {fmt_usd(pf.margin_saved)}: "
            f"`perpdex mode portfolio --account-id {pf.info.id:#x}`, or open a portfolio "
            "sub-account with `perpdex open-account NAME --portfolio`",
            soft_wrap=True,
        )


def book_shocks(
    pf: Portfolio, shocks_by_market: tuple[tuple[int, ...], ...]
) -> dict[str, tuple[int, ...]]:
    """symbol -> per-scenario shocks (bp) of the held markets, from `RiskBook.shocks`
    (indexed [scenario][market])."""
    return {p.symbol: tuple(row[p.market] for row in shocks_by_market) for p in pf.positions}


# --- the command ------------------------------------------------------------------------------


AllAccounts = Annotated[
    bool,
    typer.Option(
        "--all",
        help="Every sub-account of the owner in one table with totals and the correlation "
        "of their P&L.",
    ),
]
Owner = Annotated[
    str | None,
    typer.Option("--owner", metavar="ADDR", help="Whose sub-accounts, with --all (default: you)."),
]
FromBlock = Annotated[
    int | None,
    typer.Option(
        "--from-block",
        min=0,
        metavar="B",
        help="With --all: first block of the event history the P&L is read from (default 0: all).",
    ),
]
Shock = Annotated[
    str | None,
    typer.Option(
        "--shock",
        metavar="SYM=PCT%,...",
        help="Custom stress, e.g. BTC=-30%,ETH=-25%: equity, maintenance and health at "
        "the shocked oracle prices (other markets unchanged).",
    ),
]


@app.command("portfolio")
def portfolio(
    ctx: typer.Context,
    sub: Sub = None,
    account_id: AccountId = None,
    all_: AllAccounts = False,
    owner: Owner = None,
    shock: Shock = None,
    from_block: FromBlock = None,
    json_out: Json = False,
) -> None:
    """Positions, PnL, funding, margin, health and liquidation prices, the loss under every
    stress scenario, which one binds, and the margin saved against isolated mode.

    With --all: every sub-account of the owner (you, or --owner) with equity, margin used,
    free margin, health and P&L (realised, unrealised, funding, fees) and their totals,
    then the correlation of the strategies' P&L from their event history. --shock
    revalues the account(s) at shocked oracle prices and says which would be liquidatable.
    """
    if all_ and (sub is not None or account_id is not None):
        raise typer.BadParameter("give --all or --sub / --account-id, not both")
    if owner is not None and not all_:
        raise typer.BadParameter(
            "--owner goes with --all; for one account of another owner use --account-id"
        )
    if from_block is not None and not all_:
        raise typer.BadParameter(
            "--from-block goes with --all; one account's history: `perpdex history`"
        )
    if all_:
        _portfolio_all(ctx, owner, shock, from_block or 0, json_out)
        return
    s = session(ctx)
    client = s.reader()
    acct = s.resolve_account(client, sub, account_id)
    moves = client.parse_shocks(shock) if shock is not None else None
    pf = client.portfolio(acct)
    shocks = book_shocks(pf, client.risk_book().shocks)
    stressed = [(pf.info, client.stress(acct, moves))] if moves is not None else None
    if json_out:
        document = jsonout.portfolio(pf, shocks)
        if stressed is not None:
            document["shock"] = jsonout.stress(stressed)
        jsonout.emit(document)
        return
    print_portfolio(pf, shocks)
    if stressed is not None:
        from perpdex.cli.portfolio_all import print_stress

        print_stress(stressed)


def _portfolio_all(
    ctx: typer.Context, owner: str | None, shock: str | None, from_block: int, json_out: bool
) -> None:
    from perpdex.cli.portfolio_all import print_strategies, print_stress
    from perpdex.errors import PerpdexError

    s = session(ctx)
    client = s.reader()
    who = owner if owner is not None else s.address(required=False)
    if who is None:
        raise PerpdexError(
            f"whose sub-accounts? on {s.where} give --owner ADDRESS or --account <ape alias>"
        )
    moves = client.parse_shocks(shock) if shock is not None else None
    book = client.strategies(who, from_block)
    stressed = None
    if moves is not None:
        stressed = [(line.info, client.stress(line.info.id, moves)) for line in book.lines]
    network = client.deployment.network
    if json_out:
        jsonout.emit(jsonout.strategies(book, network, stressed))
        return
    print_strategies(book, network)
    if stressed:
        print_stress(stressed)
