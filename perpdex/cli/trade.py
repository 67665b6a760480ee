"""`perpdex quote`, `perpdex trade`, `perpdex close`: market orders against the vault.

    perpdex quote                               every market: oracle, mark, funding, OI
    perpdex quote SYMBOL SIZE  [--sub N]        what the order would do; signs nothing
    perpdex trade SYMBOL SIZE  [--slippage PCT | --limit PRICE] [--delayed [--no-wait]]
                               [--sub N] [--json]
    perpdex trade SYMBOL SIZE SYMBOL SIZE ...  [--slippage PCT] [--sub N] [--json]
    perpdex close SYMBOL       [--slippage PCT] [--sub N]

SIZE is signed base units: 0.5 buys (goes long), -0.5 sells (goes short). A trade carries
a worst acceptable price: the quoted fill moved --slippage percent against the order
(default 0.5), or --limit; the Clearinghouse refuses a fill beyond it. Figures come from
`ClearinghouseLens.quote`, which the trade matches to the wei in the same block. Several
SYMBOL SIZE pairs are one multi-leg order (`trade_multi`): every leg fills in one
transaction and the margin check runs once, on the final book (a hedged book needs only
its final requirement); its figures come from the SDK's mirror of the contract over the
pending block, which the fills match to the wei.

A market whose delayed-order mode requires it (contracts/modules/delayed.vy), or --delayed,
makes the trade a delayed order: committed now, filled at the first oracle price observed
at least the market's min delay later. The command then waits and settles it itself as soon
as it may (a keeper may be faster: its fill is reported), unless --no-wait.

Mounted on the root app by main.py (`app.add_typer(trade.app)`: root commands).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer
from rich.table import Table

from perpdex.cli import Session, console, fmt_amount, fmt_usd, jsonout, say, session
from perpdex.cli.jsonout import Json
from perpdex.cli.portfolio import (
    AccountId,
    Sub,
    account_label,
    fmt_pct,
    fmt_price,
    fmt_qty,
    fmt_size,
    health_text,
    new_table,
    pnl,
)
from perpdex.errors import PerpdexError
from perpdex.sdk.client import (
    DEFAULT_MAX_SLIPPAGE,
    DelayedFill,
    Fill,
    LegFill,
    MarketInfo,
    MultiQuote,
    PerpdexClient,
    Quote,
)

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)

# negative sizes (-0.5) are arguments, not options
SIGNED_ARGS = {"ignore_unknown_options": True}


def parse_size(text: str) -> Decimal:
    """A signed size such as 0.5, -2 or +1_000 (base units; negative sells)."""
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation as e:
        raise typer.BadParameter(
            f"{text!r} is not a size; write it like 0.5 (buy) or -0.5 (sell)"
        ) from e
    if not value.is_finite() or value == 0:
        raise typer.BadParameter(f"{text!r}: give a size other than zero (0.5 buys, -0.5 sells)")
    return value


def parse_percent(text: str) -> Decimal:
    """A percentage such as 0.5 or 0.5% -> the fraction 0.005."""
    try:
        value = Decimal(text.strip().removesuffix("%"))
    except InvalidOperation as e:
        raise typer.BadParameter(f"{text!r} is not a percentage; write it like 0.5 or 1%") from e
    if not value.is_finite() or not 0 <= value < 100:
        raise typer.BadParameter(f"{text!r} must be a percentage from 0 up to 100")
    return value / 100


def parse_price(text: str) -> Decimal:
    """A positive price in dollars such as 101500 or 151.25."""
    try:
        value = Decimal(text.replace("_", "").removeprefix("$").replace(",", ""))
    except InvalidOperation as e:
        raise typer.BadParameter(f"{text!r} is not a price; write it like 101500.5") from e
    if not value.is_finite() or value <= 0:
        raise typer.BadParameter(f"{text!r} must be a price above zero")
    return value


Symbol = Annotated[str, typer.Argument(metavar="SYMBOL", help="Market, e.g. BTC, ETH, SOL.")]
Size = Annotated[
    Decimal,
    typer.Argument(parser=parse_size, metavar="SIZE", help="Base units: 0.5 buys, -0.5 sells."),
]
Slippage = Annotated[
    Decimal,
    typer.Option(
        "--slippage",
        parser=parse_percent,
        metavar="PCT",
        help="Worst fill accepted: the quoted fill moved this many percent against you.",
    ),
]
DEFAULT_SLIPPAGE_TEXT = str((DEFAULT_MAX_SLIPPAGE * 100).normalize())  # "0.5" (percent)


# --- tables -------------------------------------------------------------------------------------


def markets_table(markets: list[MarketInfo], title: str = "markets") -> Table:
    """Oracle price, mark, funding and open interest of every market."""
    t = new_table(title)
    t.add_column("market", no_wrap=True)
    for name in ("oracle", "mark", "funding/day", "long OI", "short OI", "skew", "taker fee"):
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("status", no_wrap=True)
    for m in markets:
        t.add_row(
            m.symbol,
            fmt_price(m.oracle_price) if m.oracle_price is not None else "[red]no price[/]",
            fmt_price(m.mark_price) if m.mark_time else "-",
            fmt_pct(m.funding_rate, 4),
            fmt_qty(m.long_oi),
            fmt_qty(m.short_oi),
            fmt_size(m.skew) if m.skew else "0",
            fmt_pct(m.taker_fee, 3),
            "[red]paused[/]" if m.paused else "[green]open[/]",
        )
    return t


def quote_table(q: Quote, now: tuple[Decimal, Decimal, Decimal, Decimal | None] | None) -> Table:
    """The order's price and cost, and the account's margin now and after it. `now`:
    (equity, initial, maintenance, health) before the order."""
    side = "buy" if q.is_buy else "sell"
    title = f"quote: {side} {fmt_qty(abs(q.size))} {q.symbol}"
    t = new_table(title)
    t.add_column("", no_wrap=True)
    t.add_column("now" if now else "", justify="right", no_wrap=True)
    t.add_column("after the order" if now else "", justify="right", no_wrap=True)
    t.add_row("oracle price", "", fmt_price(q.oracle_price))
    t.add_row("fill price", "", f"[bold]{fmt_price(q.fill_price)}[/]")
    t.add_row("price impact", "", fmt_pct(q.price_impact, 4))
    t.add_row("notional", "", fmt_usd(q.notional))
    t.add_row("fee", "", fmt_usd(q.fee))
    if q.realized_pnl:
        t.add_row("realised PnL", "", pnl(q.realized_pnl))
    if q.funding_paid:
        t.add_row("funding settled", "", pnl(-q.funding_paid))
    e0, i0, m0, h0 = now or (None, None, None, None)
    t.add_row("equity", fmt_usd(e0) if e0 is not None else "", fmt_usd(q.equity_after))
    t.add_row("initial margin", fmt_usd(i0) if i0 is not None else "", fmt_usd(q.initial_after))
    t.add_row(
        "maintenance margin", fmt_usd(m0) if m0 is not None else "", fmt_usd(q.maintenance_after)
    )
    before = (
        health_text(h0, e0, i0, m0) if e0 is not None and i0 is not None and m0 is not None else ""
    )
    after = health_text(q.health_after, q.equity_after, q.initial_after, q.maintenance_after)
    t.add_row("health", before, after)
    liq = q.liquidation_price_after
    t.add_row(f"{q.symbol} liquidation price", "", fmt_price(liq) if liq is not None else "none")
    return t


def multi_quote_table(
    q: MultiQuote, now: tuple[Decimal, Decimal, Decimal, Decimal | None] | None
) -> Table:
    """Each leg's predicted fill, and the account's margin now and after the whole order.
    `now`: (equity, initial, maintenance, health) before the order."""
    t = new_table(f"quote: multi-leg order, {len(q.legs)} legs, one margin check")
    t.add_column("market", no_wrap=True)
    for name in ("side", "size", "oracle", "fill price", "impact", "notional", "fee"):
        t.add_column(name, justify="right", no_wrap=True)
    for leg in q.legs:
        t.add_row(
            leg.symbol,
            "buy" if leg.is_buy else "sell",
            fmt_qty(abs(leg.size)),
            fmt_price(leg.oracle_price),
            f"[bold]{fmt_price(leg.fill_price)}[/]",
            fmt_pct(leg.price_impact, 4),
            fmt_usd(leg.notional),
            fmt_usd(leg.fee),
        )
    m = new_table(None)
    m.add_column("", no_wrap=True)
    m.add_column("now" if now else "", justify="right", no_wrap=True)
    m.add_column("after the order", justify="right", no_wrap=True)
    e0, i0, m0, h0 = now or (None, None, None, None)
    m.add_row("equity", fmt_usd(e0) if e0 is not None else "", fmt_usd(q.equity_after))
    m.add_row("initial margin", fmt_usd(i0) if i0 is not None else "", fmt_usd(q.initial_after))
    m.add_row(
        "maintenance margin", fmt_usd(m0) if m0 is not None else "", fmt_usd(q.maintenance_after)
    )
    before = (
        health_text(h0, e0, i0, m0) if e0 is not None and i0 is not None and m0 is not None else ""
    )
    after = health_text(q.health_after, q.equity_after, q.initial_after, q.maintenance_after)
    m.add_row("health", before, after)
    outer = new_table(None, header=False)
    outer.add_column()
    outer.add_row(t)
    outer.add_row(m)
    return outer


def fill_line(f: Fill | LegFill | DelayedFill, with_tx: bool = True) -> str:
    """One line describing a fill (`with_tx`: ending with its transaction hash; a delayed
    one: with its keeper fee)."""
    verb = "bought" if f.size_delta > 0 else "sold"
    text = f"[green]✓[/] {verb} {fmt_qty(abs(f.size_delta))} {f.symbol} at {fmt_price(f.price)}"
    if isinstance(f, DelayedFill):
        text += f", fee {fmt_usd(f.fee)}, keeper fee {fmt_usd(f.keeper_fee)}"
    else:
        text += f" (limit {fmt_price(f.acceptable_price)}), fee {fmt_usd(f.fee)}"
    if f.realized_pnl:
        text += f", realised PnL {pnl(f.realized_pnl)}"
    if f.funding_paid:
        text += f", funding {pnl(-f.funding_paid)}"
    position = "flat" if f.size_after == 0 else f"{fmt_size(f.size_after)} {f.symbol}"
    return f"{text}; position {position}" + (f"; tx {f.tx_hash}" if with_tx else "")


# --- helpers -------------------------------------------------------------------------------


def check_limit(q: Quote, limit: Decimal) -> None:
    """Refuse a --limit the quoted fill is already past (a buy's limit below the fill, a
    sell's above): it cannot fill now, and the contract's revert would read as if the price
    had moved. Says how far the limit is from the quote and what would fill."""
    fill = q.fill_price
    if (limit >= fill) if q.is_buy else (limit <= fill):
        return
    away = abs(limit - fill) / fill
    side, verb, edge = ("buy", "below", "at least") if q.is_buy else ("sell", "above", "at most")
    raise PerpdexError(
        f"--limit {fmt_price(limit)} is {fmt_pct(away)} {verb} the quoted fill "
        f"{fmt_price(fill)} (oracle {fmt_price(q.oracle_price)}) for this {side}: the order "
        f"cannot fill at that price now. Set --limit to {edge} {fmt_price(fill)}, use "
        f"--slippage PCT instead, or wait for the market to reach your price and retry"
    )


def _now(
    client: PerpdexClient, acct: int, exists: bool
) -> tuple[Decimal, Decimal, Decimal, Decimal | None] | None:
    if not exists:
        return None
    m = client.margin(acct)
    return m.equity, m.initial, m.maintenance, m.health


def _quote_account(
    s: Session, client: PerpdexClient, sub: int | None, account_id: int | None
) -> tuple[int, bool]:
    """The account to quote for and whether it exists: without a sub-account yet, quote as
    the `--account`'s first (empty) one."""
    if account_id is None and not sub:
        owner = s.address()
        if owner is not None and client.sub_account_count(owner) == 0:
            return client.account_id(owner, 0), False
    return s.resolve_account(client, sub, account_id), True


def _delayed_trade(
    client: PerpdexClient,
    acct: int,
    symbol: str,
    size: Decimal,
    slippage: Decimal,
    limit: Decimal | None,
    q: Quote,
    no_wait: bool,
) -> DelayedFill | None:
    """Commit a delayed order, then (unless `no_wait`) wait for its fill, settling it
    ourselves once a price observed after its delay is published; None: no fill to show."""
    c = client.commit_trade(
        acct, symbol, size, max_slippage=slippage, acceptable_price=limit, quote=q
    )
    o = c.order
    bound = "any price" if o.acceptable_price is None else fmt_price(o.acceptable_price)
    say(
        f"committed a delayed order: {fmt_size(o.size)} {o.symbol} (limit {bound}), filled at "
        f"the first oracle price observed from t={o.settle_from} "
        f"({o.settle_from - o.commit_time} s after the commit) until t={o.expires}; keeper "
        f"fee {fmt_usd(o.keeper_fee)}; tx {c.tx_hash}"
    )
    if no_wait:
        say("left to keepers (`perpdex keeper settle`); anyone may settle it")
        return None
    say("waiting for a price observed after the delay...")
    timeout = float(o.expires - o.commit_time + 30)
    got = client.settle_when_ready(acct, symbol, from_block=c.block_number or 0, timeout=timeout)
    if got is None:
        raise PerpdexError(
            f"the delayed {o.symbol} order did not fill: it expired or was cancelled (no "
            "price observed after its delay arrived in time, or its checks refused it); "
            "check the market with `perpdex quote` and trade again"
        )
    return got


# --- commands --------------------------------------------------------------------------------


@app.command("quote", context_settings=SIGNED_ARGS)
def quote(
    ctx: typer.Context,
    symbol: Annotated[
        str | None, typer.Argument(metavar="SYMBOL", help="Market; omit to list all.")
    ] = None,
    size: Annotated[
        Decimal | None,
        typer.Argument(parser=parse_size, metavar="SIZE", help="Base units: 0.5 buys, -0.5 sells."),
    ] = None,
    sub: Sub = None,
    account_id: AccountId = None,
    json_out: Json = False,
) -> None:
    """Quote a market order (fill price, impact, fee, margin and liquidation price after
    it), or list the markets. Signs nothing."""
    s = session(ctx)
    client = s.reader()  # with --rpc: the standalone client (no ape)
    if symbol is None:
        if json_out:
            jsonout.emit(jsonout.markets(client.deployment.network, client.markets()))
            return
        console().print(markets_table(client.markets(), f"markets on {client.deployment.network}"))
        say("quote one: perpdex quote SYMBOL SIZE (0.5 buys, -0.5 sells)")
        return
    if size is None:
        raise typer.BadParameter("give the SIZE to quote, e.g. 0.5 (buy) or -0.5 (sell)")
    client.market_id(symbol)  # an unknown market fails before any account lookup
    acct, exists = _quote_account(s, client, sub, account_id)
    check = client.check_order(acct, symbol, size) if exists else None
    q = check.quote if check is not None else client.quote(acct, symbol, size)
    bound = q.acceptable_price(DEFAULT_MAX_SLIPPAGE)
    if json_out:
        out = jsonout.quote(q, exists, Decimal(bound) / 10**18)
        out.update(jsonout.order_check(check))
        jsonout.emit(out)
        return
    console().print(quote_table(q, _now(client, acct, exists)))
    if check is None:
        say(
            "no sub-account yet: figures after the order assume an empty account; "
            "open one with `perpdex open-account NAME` and deposit"
        )
        return
    lev = f", {check.max_leverage:.1f}x leverage" if check.max_leverage is not None else ""
    largest = (
        f"largest {q.symbol} order that would pass now: {fmt_size(check.max_size)}{lev}"
        if check.max_size != 0
        else "no order in this direction would pass now"
    )
    if check.accepted:
        say(f"[green]would be accepted[/] in the next block; {largest}")
        say(
            f"trade it: perpdex trade {q.symbol} {q.size} (fills up to "
            f"{fmt_price(Decimal(bound) / 10**18)} at the default {DEFAULT_SLIPPAGE_TEXT}% "
            "slippage)"
        )
    else:
        hint = f" ({check.hint})" if check.hint else ""
        say(f"[red]would be refused[/]: {check.reason}{hint}")
        say(largest)


def parse_legs(symbol: str, size: Decimal, more: list[str]) -> list[tuple[str, Decimal]]:
    """The SYMBOL SIZE pairs of `perpdex trade`, in order (the first pair parsed by typer)."""
    if len(more) % 2:
        raise typer.BadParameter(
            f"{more[-1]!r} has no size: give SYMBOL SIZE pairs, e.g. perpdex trade BTC 1 ETH -30"
        )
    legs = [(symbol, size)]
    legs += [(more[k], parse_size(more[k + 1])) for k in range(0, len(more), 2)]
    return legs


@app.command("trade", context_settings=SIGNED_ARGS)
def trade(
    ctx: typer.Context,
    symbol: Symbol,
    size: Size,
    more: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SYMBOL SIZE",
            help="More legs: several pairs trade in one transaction, margin-checked once.",
            show_default=False,
        ),
    ] = None,
    slippage: Annotated[
        Decimal | None,
        typer.Option(
            "--slippage",
            parser=parse_percent,
            metavar="PCT",
            help="Worst fill accepted: the quoted fill moved this many percent against you "
            f"(default {DEFAULT_SLIPPAGE_TEXT}).",
        ),
    ] = None,
    limit: Annotated[
        Decimal | None,
        typer.Option(
            "--limit",
            parser=parse_price,
            metavar="PRICE",
            help="Worst fill price accepted, instead of --slippage (one leg only).",
        ),
    ] = None,
    delayed: Annotated[
        bool,
        typer.Option(
            "--delayed",
            help="Commit a delayed order, filled at a price observed after the market's "
            "delay (automatic where the market requires it).",
        ),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="With a delayed order: commit only, leave it to keepers."),
    ] = False,
    sub: Sub = None,
    account_id: AccountId = None,
    json_out: Json = False,
) -> None:
    """Market order against the vault: SIZE base units (0.5 buys, -0.5 sells); several
    SYMBOL SIZE pairs trade in one transaction, margin-checked once on the final book.

    `perpdex trade BTC 1 ETH -30 SOL -500` opens a hedged book in one multi-leg order: it
    needs only the final book's initial margin, not what each leg alone would need on the
    way there."""
    if slippage is not None and limit is not None:
        raise typer.BadParameter(
            "give --slippage PCT or --limit PRICE, not both: each sets the worst fill price"
        )
    legs = parse_legs(symbol, size, more or [])
    if len(legs) > 1 and limit is not None:
        raise typer.BadParameter(
            "--limit sets one price and this order has several legs; use --slippage PCT"
        )
    s = session(ctx)
    client = s.client()
    ids = [client.market_id(sym) for sym, _ in legs]
    twice = sorted({client.symbol(m) for m in ids if ids.count(m) > 1})
    if twice:
        raise typer.BadParameter(
            f"{', '.join(twice)} given twice: one leg per market (add the sizes up)"
        )
    acct = s.resolve_account(client, sub, account_id)
    info = client.account(acct)
    max_slippage = DEFAULT_MAX_SLIPPAGE if slippage is None else slippage
    fills: list[Fill] | list[LegFill] | list[DelayedFill]
    if len(legs) == 1:
        q = client.quote(acct, symbol, size)
        if not json_out:
            console().print(quote_table(q, _now(client, acct, True)))
        if limit is not None:
            check_limit(q, limit)
        if delayed or client.requires_delayed(acct, symbol, size):
            got = _delayed_trade(client, acct, symbol, size, max_slippage, limit, q, no_wait)
            if got is None:
                return
            fills = [got]
        else:
            fills = [
                client.trade(
                    acct, symbol, size, max_slippage=max_slippage, acceptable_price=limit, quote=q
                )
            ]
    else:
        late = [sym for sym, sz in legs if client.requires_delayed(acct, sym, sz)]
        if delayed or late:
            raise typer.BadParameter(
                "a delayed order has one leg"
                + (f" and {', '.join(late)} fills only by delayed order" if late else "")
                + ": send the legs one by one with --delayed"
            )
        mq = client.quote_multi(acct, legs)
        if not json_out:
            console().print(multi_quote_table(mq, _now(client, acct, True)))
        fills = list(client.trade_multi(acct, legs, max_slippage=max_slippage, quote=mq).legs)
    after = client.margin(acct)
    if json_out:
        jsonout.emit(jsonout.trade(info, fills, after))
        return
    for f in fills:
        say(fill_line(f, with_tx=len(fills) == 1))
    if len(fills) > 1:
        say(f"{len(fills)} fills in one transaction, one margin check; tx {fills[0].tx_hash}")
    say(
        f"{account_label(info)}: equity {fmt_usd(after.equity)}, free margin "
        f"{fmt_usd(after.free)}, health "
        f"{health_text(after.health, after.equity, after.initial, after.maintenance)}; "
        "details: perpdex portfolio"
    )


@app.command("close")
def close(
    ctx: typer.Context,
    symbol: Symbol,
    slippage: Slippage = DEFAULT_SLIPPAGE_TEXT,  # type: ignore[assignment]  # parsed
    sub: Sub = None,
    account_id: AccountId = None,
) -> None:
    """Close a whole position at market; prints the realised PnL.

    A market that leaves every vault trade to delayed orders (mode 2) closes by delayed
    order."""
    s = session(ctx)
    client = s.client()
    sym = client.symbol(client.market_id(symbol))
    acct = s.resolve_account(client, sub, account_id)
    if client.position_size(acct, sym) == 0:
        raise PerpdexError(
            f"{account_label(client.account(acct))} has no {sym} position; "
            "`perpdex portfolio` lists its positions"
        )
    held = client.position_size(acct, sym)
    if client.requires_delayed(acct, sym, held.copy_negate()):
        q = client.quote(acct, sym, held.copy_negate())
        got = _delayed_trade(client, acct, sym, held.copy_negate(), slippage, None, q, False)
        assert got is not None  # waited for
        f: Fill | DelayedFill = got
    else:
        f = client.close(acct, symbol, max_slippage=slippage)
    say(fill_line(f))
    balance = client.balances(acct)[client.collaterals()[0].symbol]
    say(
        f"closed the {fmt_qty(abs(f.size_delta))} {f.symbol} "
        f"{'long' if f.size_delta < 0 else 'short'}: realised PnL {pnl(f.realized_pnl)}, "
        f"fee {fmt_usd(f.fee)}, funding {pnl(-f.funding_paid)}; net {pnl(f.cash_flow)}; "
        f"balance {fmt_amount(balance)} {client.collaterals()[0].symbol}"
    )
