"""`perpdex lp`: provide liquidity to the vault that takes the other side of every trade.

    perpdex lp deposit AMOUNT [--to ADDRESS]
    perpdex lp withdraw AMOUNT | --all | --shares N  [--to ADDRESS]
    perpdex lp status [--owner ADDRESS]

The vault (ERC-4626, perpdex LP shares) prices shares from the pool's equity: its cash
minus traders' unrealised PnL plus the funding they owe it. Every withdrawal pays the
withdrawal fee into the pool, to the LPs who stay. `status` shows the shares, what they
redeem for, the pool, the insurance fund and how much of each market's vault exposure cap
is in use.

Mounted on the root app by main.py (`app.add_typer(lp.app, name="lp")`).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from perpdex.cli import (
    NUMBER_ARGS,
    console,
    fmt_amount,
    fmt_usd,
    jsonout,
    parse_amount,
    say,
    session,
)
from perpdex.cli.jsonout import Json
from perpdex.cli.portfolio import fmt_pct, fmt_price, fmt_qty, new_table
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from perpdex.sdk.client import LpStatus

app = typer.Typer(
    name="lp",
    help="Provide liquidity: deposit into the vault, withdraw, and see shares and the pool.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

To = Annotated[
    str | None, typer.Option("--to", help="Receiver address (default: you).", metavar="ADDRESS")
]


def fmt_shares(value: Decimal) -> str:
    """Six places, cut toward zero (a shown share count can always be redeemed)."""
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_DOWN):,.6f}"


def position_table(st: LpStatus, symbol: str = "USDC") -> Table:
    """The LP's shares and what they are worth."""
    t = new_table(f"LP position of {st.owner}", header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    share = st.shares / st.total_shares if st.total_shares else Decimal(0)
    t.add_row("shares", f"{fmt_shares(st.shares)} ({fmt_pct(share)} of the vault)")
    t.add_row("share price", f"{st.share_price:,.6f} {symbol}")
    t.add_row("worth", f"{fmt_amount(st.assets)} {symbol}")
    t.add_row(
        f"redeemable now (after the {fmt_pct(st.withdraw_fee)} fee)",
        f"{fmt_amount(st.redeemable)} {symbol}",
    )
    return t


def pool_table(st: LpStatus, symbol: str = "USDC") -> Table:
    """The pool behind the shares."""
    t = new_table("pool", header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_row("total shares", fmt_shares(st.total_shares))
    t.add_row("vault assets (totalAssets)", f"{fmt_amount(st.total_assets)} {symbol}")
    t.add_row("pool equity (cash - trader PnL + funding)", fmt_usd(st.pool_equity))
    t.add_row("pool cash", fmt_usd(st.pool_cash))
    t.add_row("LP exits may take now (1.5x the caps)", f"{fmt_amount(st.exit_room)} {symbol}")
    t.add_row("insurance fund", fmt_usd(st.insurance))
    t.add_row("protocol fees", fmt_usd(st.protocol_fees))
    t.add_row("withdrawal fee", fmt_pct(st.withdraw_fee))
    return t


def utilisation_table(st: LpStatus) -> Table:
    """Per market: the vault's position (the other side of the skew) against its cap."""
    t = new_table("vault exposure by market")
    t.add_column("market", no_wrap=True)
    for name in ("long OI", "short OI", "vault side", "mark", "funding/day", "exposure", "cap"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("utilisation", justify="right", no_wrap=True)
    for m in st.markets:
        u = m.utilisation
        text = fmt_pct(u)
        if u is not None and u >= Decimal("0.9"):
            text = f"[bold red]{text}[/]"
        elif u is not None and u >= Decimal("0.6"):
            text = f"[yellow]{text}[/]"
        t.add_row(
            m.symbol,
            fmt_qty(m.long_oi),
            fmt_qty(m.short_oi),
            m.vault_side,
            fmt_price(m.mark_price) if m.mark_price else "-",
            fmt_pct(m.funding_rate, 4),
            fmt_usd(m.exposure),
            fmt_usd(m.cap),
            text,
        )
    return t


def print_status(st: LpStatus, symbol: str) -> None:
    out = console()
    out.print(position_table(st, symbol))
    out.print(pool_table(st, symbol))
    out.print(utilisation_table(st))


@app.command("deposit", context_settings=NUMBER_ARGS)
def deposit(
    ctx: typer.Context,
    amount: Annotated[
        Decimal,
        typer.Argument(parser=parse_amount, metavar="AMOUNT", help="Tokens, e.g. 10000."),
    ],
    to: To = None,
) -> None:
    """Deposit settlement tokens into the vault for LP shares."""
    client = session(ctx).client()
    symbol = client.collaterals()[0].symbol
    move = client.lp_deposit(amount, receiver=to)
    st = client.lp_status(move.owner)
    say(
        f"[green]✓[/] deposited {fmt_amount(move.assets)} {symbol} for "
        f"{fmt_shares(move.shares)} shares; {move.owner} holds {fmt_shares(st.shares)} shares "
        f"worth {fmt_amount(st.assets)} {symbol} (share price {st.share_price:,.6f})"
    )


@app.command("withdraw", context_settings=NUMBER_ARGS)
def withdraw(
    ctx: typer.Context,
    amount: Annotated[
        Decimal | None,
        typer.Argument(
            parser=parse_amount,
            metavar="AMOUNT",
            help="Tokens to receive after the fee (or use --all / --shares).",
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Redeem every share the vault releases now (caps may hold some)."
        ),
    ] = False,
    shares: Annotated[
        Decimal | None,
        typer.Option("--shares", parser=parse_amount, metavar="N", help="Redeem N shares."),
    ] = None,
    to: To = None,
) -> None:
    """Withdraw from the vault: AMOUNT tokens after the fee, --all shares, or --shares N."""
    given = sum(x for x in (amount is not None, all_, shares is not None))
    if given != 1:
        raise typer.BadParameter("give exactly one of AMOUNT, --all or --shares N")
    client = session(ctx).client()
    symbol = client.collaterals()[0].symbol
    held_back = ""
    if amount is not None:
        move = client.lp_withdraw(amount, receiver=to)
    elif all_:
        held, ok, why = client.lp_redeemable_shares()
        move = client.lp_redeem_all(receiver=to)
        if 0 < ok < held:
            held_back = (
                f"; the vault holds back the other shares for now ({why}): they are released "
                "as traders' positions shrink or more LPs deposit"
            )
    else:
        move = client.lp_redeem(shares, receiver=to)
    st = client.lp_status(move.owner)
    say(
        f"[green]✓[/] redeemed {fmt_shares(move.shares)} shares for {fmt_amount(move.assets)} "
        f"{symbol} (after the {fmt_pct(st.withdraw_fee)} withdrawal fee, paid to the pool); "
        f"{fmt_shares(st.shares)} shares left worth {fmt_amount(st.assets)} {symbol}{held_back}"
    )


@app.command("status")
def status(
    ctx: typer.Context,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Address to show (default: --account).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Shares, share price, what they redeem for, the pool, insurance and utilisation."""
    s = session(ctx)
    client = s.reader()
    who = owner if owner is not None else s.address(required=False)
    if who is None:
        raise PerpdexError(
            f"whose LP position? on {s.where} give --owner ADDRESS or --account <ape alias>"
        )
    st, symbol = client.lp_status(who), client.collaterals()[0].symbol
    if json_out:
        jsonout.emit(jsonout.lp_status(st, symbol))
        return
    print_status(st, symbol)
