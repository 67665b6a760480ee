"""`perpdex orders`: sign stop and take-profit orders for keepers, list and cancel them.

    perpdex orders stop SYMBOL SIZE --trigger PRICE [--limit PRICE | --slippage PCT]
                        [--fee USD] [--expires DAYS] [--no-reduce-only] [--nonce N]
                        [--file PATH] [--sub N | --account-id ID]
    perpdex orders take-profit SYMBOL SIZE --trigger PRICE [same options]
    perpdex orders list [--file PATH] [--all]
    perpdex orders cancel ORDER [--file PATH]
    perpdex orders book SYMBOL [--depth N] [--matcher URL]
    perpdex orders fills [--market SYMBOL] [--account ID] [--after SEQ] [--limit N] [--follow]
                         [--matcher URL]

A conditional order is an EIP-712 signed order with a trigger price (perpdex/sdk/orders.py).
Signing sends nothing: the order is appended to a JSON-lines file (default
`.orders/<network>.jsonl`, perpdex/sdk/order_store.py) that `perpdex keeper orders` watches;
once the oracle price crosses the trigger, a keeper executes it against the vault
(`execute_order`) and earns its --fee. SIZE is signed base units (0.5 buys, -0.5 sells):
a stop-loss of a 1 BTC long is `perpdex orders stop BTC -1 --trigger 95000`.

Stop orders arm when the price moves against the order's side to the trigger (a sell at
or below it, a buy at or above it); take-profit orders when it moves in favour (a sell at
or above, a buy at or below). Without --limit an order is a stop-market order: it fills
down (sells) or up (buys) to --slippage percent past the trigger (default 5); with
--limit it is a stop-limit order and waits while the fill would be beyond it. Orders are
reduce-only unless --no-reduce-only (a breakout entry): clipped to the position, they
never flip it, and do nothing while there is no position to reduce.

`cancel` consumes the order's nonce on chain (the file keeps the line; `list` then shows
it `done`). `book` and `fills` read an order matcher (perpdex/matcher/, `perpdex matcher
serve`) through perpdex.sdk.matcher_client; `fills --follow` streams new fills until
Ctrl-C or until the matcher closes the stream. Mounted by main.py as `perpdex orders`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from perpdex.cli import (
    AccountId,
    Sub,
    console,
    fmt_usd,
    parse_account_id,
    say,
    session,
    short_id,
)
from perpdex.cli.portfolio import fmt_price, fmt_qty, fmt_size, new_table
from perpdex.cli.trade import SIGNED_ARGS, Size, Symbol, parse_percent, parse_price
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from perpdex.sdk import order_store as store
    from perpdex.sdk.client import PerpdexClient

app = typer.Typer(
    name="orders",
    help="Stop-market, stop-limit and take-profit orders: sign and store them for keepers, "
    "list their state, cancel them on chain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEFAULT_EXPIRY_DAYS = 30
STATE_STYLE = {
    "executable": "[bold green]triggered[/]",
    "waiting": "waiting",
    "done": "[dim]done[/]",
    "cancelled": "[dim]cancelled[/]",
    "expired": "[dim]expired[/]",
    "invalid": "[red]invalid[/]",
    "blocked": "[yellow]blocked[/]",
}

Trigger = Annotated[
    Decimal,
    typer.Option(
        "--trigger",
        parser=parse_price,
        metavar="PRICE",
        help="Oracle price that arms the order (USD).",
    ),
]
Limit = Annotated[
    Decimal | None,
    typer.Option(
        "--limit",
        parser=parse_price,
        metavar="PRICE",
        help="Stop-limit: worst fill price accepted (a sell's floor, a buy's ceiling).",
    ),
]
Slippage = Annotated[
    Decimal | None,
    typer.Option(
        "--slippage",
        parser=parse_percent,
        metavar="PCT",
        help="Stop-market: fill up to this many percent past the trigger (default 5).",
    ),
]
Fee = Annotated[
    Decimal,
    typer.Option("--fee", min=0, metavar="USD", help="Keeper fee the executor earns (USD)."),
]
Expires = Annotated[
    float,
    typer.Option("--expires", min=0.001, metavar="DAYS", help="Days until the order expires."),
]
ReduceOnly = Annotated[
    bool,
    typer.Option(
        "--reduce-only/--no-reduce-only",
        help="Only reduce a position (default); --no-reduce-only for an entry order.",
    ),
]
Nonce = Annotated[
    int | None,
    typer.Option("--nonce", min=0, max=2**64 - 1, help="Order nonce (default: the next free)."),
]
OrdersFile = Annotated[
    Path | None,
    typer.Option("--file", help="Orders file (default .orders/<network>.jsonl)."),
]


def _path(client: PerpdexClient, file: Path | None) -> Path:
    from perpdex.sdk import order_store as store

    return file or store.default_path(client.deployment.network)


def _load(client: PerpdexClient, path: Path) -> list[store.StoredOrder]:
    from perpdex.sdk import order_store as store

    d = client.deployment
    found, problems = store.load(path, d.chain_id, d.clearinghouse)
    for msg in problems:
        say(f"[yellow]{msg}[/]")
    return found


def _place(
    ctx: typer.Context,
    kind: str,
    symbol: str,
    size: Decimal,
    trigger: Decimal,
    limit: Decimal | None,
    slippage: Decimal | None,
    fee: Decimal,
    expires: float,
    reduce_only: bool,
    nonce: int | None,
    file: Path | None,
    sub: int | None,
    account_id: int | None,
) -> None:
    from perpdex.sdk import order_store as store
    from perpdex.sdk import orders as so
    from perpdex.sdk.client import _size_wad
    from perpdex.units import from_wad, to_wad

    if limit is not None and slippage is not None:
        raise typer.BadParameter("give --limit PRICE (stop-limit) or --slippage PCT, not both")
    s = session(ctx)
    client = s.client()
    m = client.market_id(symbol)
    sym = client.symbol(m)
    acct = s.resolve_account(client, sub, account_id)
    client.account(acct)  # refuses an account that is not open
    path = _path(client, file)
    if nonce is None:
        min_nonce = int(client.clearinghouse.account_header(acct)) >> 192
        nonce = store.next_nonce(_load(client, path), acct, min_nonce)
    head = int(client.transport.block("latest")[1])
    build = so.take_profit if kind == "take-profit" else so.stop
    try:
        order = build(
            acct,
            m,
            _size_wad(size),
            to_wad(trigger),
            expiry=int(head + expires * 86_400),
            nonce=nonce,
            limit_price=None if limit is None else to_wad(limit),
            slippage_bps=int((slippage if slippage is not None else Decimal("0.05")) * 10_000),
            keeper_fee=to_wad(fee),
            reduce_only=reduce_only,
        )
    except so.OrderError as e:
        raise PerpdexError(str(e)) from e
    signed = client.sign_order(order)
    d = client.deployment
    stored = store.StoredOrder(signed, d.chain_id, d.clearinghouse, symbol=sym, created=head)
    store.append(path, stored)
    above = bool(order.flags & so.FLAG_TRIGGER_ABOVE)
    side = "buy" if order.is_buy else "sell"
    bound = "up to" if order.is_buy else "down to"
    say(
        f"[green]✓[/] signed {kind} {side} {fmt_qty(from_wad(abs(order.size)))} {sym} "
        f"({'reduce-only' if reduce_only else 'may open'}): fires when {sym} is "
        f"{'at or above' if above else 'at or below'} {fmt_price(trigger)}, fills {bound} "
        f"{fmt_price(from_wad(order.limit_price))}, keeper fee {fmt_usd(fee)}; nonce {nonce}"
    )
    say(f"order {stored.id} stored in {path}")
    st = client.order_status(signed)
    if st.triggered:
        say(
            f"[yellow]already triggered[/] at {fmt_price(st.oracle_price)}: a keeper executes "
            "it at once" + (f" (now it would be refused: {st.reason})" if st.reason else "")
        )
    say(f"a keeper executes it: perpdex keeper orders --orders {path}")


@app.command("stop", context_settings=SIGNED_ARGS)
def stop(
    ctx: typer.Context,
    symbol: Symbol,
    size: Size,
    trigger: Trigger,
    limit: Limit = None,
    slippage: Slippage = None,
    fee: Fee = Decimal(0),
    expires: Expires = DEFAULT_EXPIRY_DAYS,
    reduce_only: ReduceOnly = True,
    nonce: Nonce = None,
    file: OrdersFile = None,
    sub: Sub = None,
    account_id: AccountId = None,
) -> None:
    """Sign a stop order (stop-market, or stop-limit with --limit) and store it for keepers.

    A sell fires when the oracle price falls to --trigger (the stop-loss of a long: SIZE
    negative), a buy when it rises to it (of a short).
    """
    _place(
        ctx, "stop", symbol, size, trigger, limit, slippage, fee, expires, reduce_only, nonce,
        file, sub, account_id,
    )  # fmt: skip


@app.command("take-profit", context_settings=SIGNED_ARGS)
def take_profit(
    ctx: typer.Context,
    symbol: Symbol,
    size: Size,
    trigger: Trigger,
    limit: Limit = None,
    slippage: Slippage = None,
    fee: Fee = Decimal(0),
    expires: Expires = DEFAULT_EXPIRY_DAYS,
    reduce_only: ReduceOnly = True,
    nonce: Nonce = None,
    file: OrdersFile = None,
    sub: Sub = None,
    account_id: AccountId = None,
) -> None:
    """Sign a take-profit order and store it for keepers.

    A sell fires when the oracle price rises to --trigger (a long's profit: SIZE
    negative), a buy when it falls to it (a short's).
    """
    _place(
        ctx, "take-profit", symbol, size, trigger, limit, slippage, fee, expires, reduce_only,
        nonce, file, sub, account_id,
    )  # fmt: skip


@app.command("list")
def list_orders(
    ctx: typer.Context,
    file: OrdersFile = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also the orders executed, cancelled or expired.")
    ] = False,
) -> None:
    """The stored conditional orders with their state on chain now: waiting for the
    trigger, triggered (a keeper can execute it), blocked (triggered but refused for now,
    with the reason), done, cancelled, expired."""
    from perpdex.sdk import orders as so
    from perpdex.units import from_wad

    s = session(ctx)
    client = s.client(signer_required=False)
    path = _path(client, file)
    if not path.exists():
        say(f"no orders at {path}; sign one with `perpdex orders stop SYMBOL SIZE --trigger P`")
        return
    found = _load(client, path)
    t = new_table(f"conditional orders in {path}")
    for col in ("order", "account", "kind", "size", "trigger", "limit", "fee", "oracle", "state"):
        right = col in ("size", "trigger", "limit", "fee", "oracle")
        t.add_column(col, justify="right" if right else "left", no_wrap=col != "state")
    shown = 0
    for st in found:
        o = st.order
        status = client.order_status(st.signed)
        if status.state in so.FINAL_STATES and not show_all:
            continue
        shown += 1
        sym = st.symbol or client.symbol(o.market)
        above = o.flags & so.FLAG_TRIGGER_ABOVE
        state = STATE_STYLE.get(status.state, status.state)
        if status.state in ("blocked", "invalid") and status.reason:
            state += f": {status.reason.removeprefix('clearinghouse: ')}"
        t.add_row(
            st.id[:10],
            short_id(o.account),
            f"{so.kind(o)}{'' if o.flags & so.FLAG_REDUCE_ONLY else ' (entry)'}",
            f"{fmt_size(from_wad(o.size))} {sym}",
            f"{'≥' if above else '≤'} {fmt_price(from_wad(o.trigger_price))}",
            fmt_price(from_wad(o.limit_price)),
            fmt_usd(from_wad(o.keeper_fee)),
            fmt_price(status.oracle_price) if status.quorum else "[red]no quorum[/]",
            state,
        )
    console().print(t)
    hidden = len(found) - shown
    if hidden:
        say(f"{hidden} finished order(s) not shown (--all shows them)")


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    order_id: Annotated[
        str, typer.Argument(metavar="ORDER", help="Order id (0x digest) or its first digits.")
    ],
    file: OrdersFile = None,
) -> None:
    """Cancel a stored conditional order on chain (its account's owner or an operator): its
    nonce is consumed, so no keeper can execute it."""
    s = session(ctx)
    client = s.client()
    path = _path(client, file)
    want = order_id.lower()
    if not want.startswith("0x"):
        want = "0x" + want
    matches = [st for st in _load(client, path) if st.id.startswith(want)]
    if not matches:
        raise PerpdexError(f"no order {order_id} in {path}; `perpdex orders list --all` shows them")
    if len(matches) > 1:
        raise PerpdexError(f"{order_id} matches {len(matches)} orders; give more digits")
    st = matches[0]
    receipt = client.cancel_order(st.order)
    say(f"[green]✓[/] cancelled order {st.id} (nonce {st.order.nonce}); tx {receipt.txn_hash}")


# --- an order matcher's book and fills (perpdex/sdk/matcher_client.py) -------------------

Matcher = Annotated[
    str,
    typer.Option(
        "--matcher",
        envvar="PERPDEX_MATCHER_URL",
        metavar="URL",
        help="The order matcher's URL (`perpdex matcher serve`).",
    ),
]
DEFAULT_MATCHER = "http://127.0.0.1:8700"


def _market(ctx: typer.Context, text: str) -> tuple[int, str]:
    """A market index (`0`), or a symbol the deployment manifest (--deployment) lists."""
    if text.isdigit():
        return int(text), f"#{text}"
    from perpdex.sdk.manifest import Deployment, resolve_manifest

    d = Deployment.load(resolve_manifest(session(ctx).deployment or "local"))
    sym = text.strip().upper().removesuffix("-PERP").removesuffix("-USD")
    if sym not in d.markets:
        raise PerpdexError(f"{text!r} is not listed; use one of {', '.join(d.markets)} or an index")
    return d.markets.index(sym), sym


@app.command("book")
def book(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Market symbol (BTC) or index (0).")],
    depth: Annotated[int, typer.Option("--depth", min=1, max=500, help="Levels a side.")] = 10,
    matcher: Matcher = DEFAULT_MATCHER,
) -> None:
    """An order matcher's book: the price levels on each side, best first."""
    from perpdex.sdk.matcher_client import MatcherClient
    from perpdex.units import from_wad

    market, label = _market(ctx, symbol)
    with MatcherClient(matcher) as m:
        b = m.book(market, depth)
    t = new_table(f"{label} book at {matcher}")
    for col in ("bid orders", "bid size", "bid", "ask", "ask size", "ask orders"):
        t.add_column(col, justify="right")
    for i in range(max(len(b.bids), len(b.asks))):
        row: list[str] = []
        for side, lv in (("bid", b.bids), ("ask", b.asks)):
            if i >= len(lv):
                cells = ["", "", ""]
            else:
                price, size = fmt_price(from_wad(lv[i].price)), fmt_qty(from_wad(lv[i].size))
                cells = [str(lv[i].orders), size, price]
            row += cells if side == "bid" else cells[::-1]
        t.add_row(*row)
    console().print(t)
    if not (b.bids or b.asks):
        say(f"no open orders in {label}")


@app.command("fills")
def fills(
    ctx: typer.Context,
    market: Annotated[str | None, typer.Option("--market", help="Symbol or index.")] = None,
    account_id: Annotated[
        int | None,
        typer.Option(
            "--account", parser=parse_account_id, metavar="ID", help="Only this account's."
        ),
    ] = None,
    after: Annotated[int, typer.Option("--after", min=0, help="Only fills after SEQ.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    follow: Annotated[bool, typer.Option("--follow", help="Then stream new fills.")] = False,
    matcher: Matcher = DEFAULT_MATCHER,
) -> None:
    """An order matcher's fills, oldest first; --follow then prints each new fill as it
    is matched (Ctrl-C stops)."""
    import asyncio

    from perpdex.sdk.matcher_client import MatcherClient, MatcherFill
    from perpdex.units import from_wad

    mk, label = _market(ctx, market) if market is not None else (None, "")

    def cells(f: MatcherFill) -> list[str]:
        return [
            str(f.seq),
            label or f"#{f.market}",
            f.taker_side,
            fmt_qty(from_wad(f.size)),
            fmt_price(from_wad(f.price)),
            short_id(f.maker_account),
            short_id(f.taker_account),
            f.state or "",
        ]

    with MatcherClient(matcher) as m:
        rows = m.fills(mk, account_id, after, limit)
        t = new_table(f"fills at {matcher}")
        for col in ("seq", "market", "taker", "size", "price", "maker acct", "taker acct"):
            t.add_column(col, justify="right" if col in ("seq", "size", "price") else "left")
        t.add_column("state")
        for f in rows:
            t.add_row(*cells(f))
        console().print(t)
        if not follow:
            return
        last = rows[-1].seq if rows else after

        async def stream() -> None:
            nonlocal last
            async for f in m.stream_fills(mk, after=last):
                last = f.seq
                if account_id is None or account_id in (f.maker_account, f.taker_account):
                    console().print("  ".join(c for c in cells(f) if c))

        say("following new fills (Ctrl-C stops)")
        try:
            asyncio.run(stream())
        except KeyboardInterrupt:
            return
    say(f"the matcher closed the stream; resume: perpdex orders fills --follow --after {last}")
