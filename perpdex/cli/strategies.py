"""Strategy controls of a sub-account: margin mode, operators and the loss cap.

    perpdex mode isolated|portfolio         [--sub N | --account-id ID]
    perpdex operator add|remove|check ADDRESS  [--sub N | --account-id ID]
    perpdex loss-cap set USD [--yes-above-equity] | clear | show  [--sub N | --account-id ID]
    perpdex loss-cap trigger --account-id ID

Only the account's owner switches its mode, appoints operators (who may trade it but
never withdraw; an operator of two of the owner's sub-accounts may move collateral
between those two, as `perpdex keeper rebalance` tops up a strategy) and sets its loss
cap, an equity floor: once the account's equity is below it, anyone may close every
position of it (reduce-only against the vault) with `trigger` and earns the
Clearinghouse's `loss_cap_fee` for it (the `perpdex keeper loss-caps` bot does so), the
account's own orders may only reduce, and no withdrawal or transfer may take equity below
it. A floor above the equity needs
`--yes-above-equity`.

Three Typers, mounted by main.py: `app` (the root command `mode`), `operator_app` as
`perpdex operator` and `loss_cap_app` as `perpdex loss-cap`.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Annotated

import typer

from perpdex.cli import (
    AccountId,
    Sub,
    console,
    fmt_amount,
    fmt_usd,
    jsonout,
    parse_account_id,
    parse_amount,
    say,
    session,
)
from perpdex.cli.jsonout import Json
from perpdex.cli.portfolio import account_label, fmt_pct, fmt_size, new_table
from perpdex.cli.trade import SIGNED_ARGS
from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk.client import AccountInfo, Margin, PerpdexClient
from perpdex.units import from_wad

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
operator_app = typer.Typer(
    name="operator",
    help="Let another address trade a sub-account (operators may trade, never withdraw).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
loss_cap_app = typer.Typer(
    name="loss-cap",
    help="A sub-account's equity floor: below it anyone may close all its positions for a fee.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

UNDER_MARGINED = "clearinghouse: mode switch leaves account under-margined"


class MarginMode(StrEnum):
    isolated = "isolated"
    portfolio = "portfolio"


Address = Annotated[str, typer.Argument(metavar="ADDRESS", help="The operator's address.")]


# --- margin mode ------------------------------------------------------------------------------


@app.command("mode")
def mode(
    ctx: typer.Context,
    new_mode: Annotated[
        MarginMode,
        typer.Argument(
            metavar="MODE",
            help="isolated: each position margined on its own; portfolio: the book's worst "
            "stress-scenario loss.",
        ),
    ],
    sub: Sub = None,
    account_id: AccountId = None,
) -> None:
    """Switch a sub-account to isolated or portfolio (scenario) margin."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    info = client.account(acct)
    before = client.margin(acct)
    portfolio = new_mode is MarginMode.portfolio
    try:
        client.set_margin_mode(acct, portfolio)
    except TransactionRejected as e:
        if e.reason == UNDER_MARGINED and not portfolio:
            raise _under_margined(e, info, before) from e
        raise
    after = client.margin(acct)
    say(
        f"[green]✓[/] switched {account_label(info)} from {info.mode} to {new_mode.value} "
        f"margin; initial requirement {fmt_usd(before.initial)} → {fmt_usd(after.initial)}, "
        f"equity {fmt_usd(after.equity)}, free margin {fmt_usd(after.free)}"
    )


def _under_margined(e: TransactionRejected, info: AccountInfo, m: Margin) -> PerpdexError:
    """The refusal of a switch to isolated margin, with the figures and the deposit it needs
    (the isolated requirement is the sum of the positions' own requirements)."""
    short = (m.isolated - m.equity).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return PerpdexError(
        f"{e.action} failed: {e.reason}. {account_label(info)} would need "
        f"{fmt_usd(m.isolated)} initial margin in isolated mode but its equity is "
        f"{fmt_usd(m.equity)}: deposit at least {fmt_usd(short)} (`perpdex deposit "
        f"{short} --sub {info.index}`) or reduce positions, then retry"
    )


# --- operators --------------------------------------------------------------------------------


@operator_app.command("add")
def operator_add(
    ctx: typer.Context, address: Address, sub: Sub = None, account_id: AccountId = None
) -> None:
    """Let ADDRESS trade the sub-account (it can never withdraw; it may move collateral
    only to or from another of your sub-accounts it also operates)."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    client.set_operator(acct, address, True)
    info = client.account(acct)
    say(
        f"[green]✓[/] {address} may now trade {account_label(info)}; operators never withdraw "
        "(they move collateral only between two of your sub-accounts they both operate). "
        f"revoke: perpdex operator remove {address} --sub {info.index}"
    )


@operator_app.command("remove")
def operator_remove(
    ctx: typer.Context, address: Address, sub: Sub = None, account_id: AccountId = None
) -> None:
    """Stop ADDRESS from trading the sub-account (takes effect at once)."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    client.set_operator(acct, address, False)
    say(f"[green]✓[/] {address} may no longer trade {account_label(client.account(acct))}")


@operator_app.command("check")
def operator_check(
    ctx: typer.Context,
    address: Address,
    sub: Sub = None,
    account_id: AccountId = None,
    json_out: Json = False,
) -> None:
    """Whether ADDRESS may trade the sub-account."""
    s = session(ctx)
    client = s.reader()
    acct = s.resolve_account(client, sub, account_id)
    allowed = client.is_operator(acct, address)
    info = client.account(acct)
    if json_out:
        owner = address.lower() == info.owner.lower()
        jsonout.emit(
            {
                "account": jsonout.account_info(info),
                "address": address,
                "is_owner": owner,
                "may_trade": owner or allowed,
                "is_operator": allowed,
            }
        )
        return
    label = account_label(info)
    if address.lower() == info.owner.lower():
        say(f"{address} owns {label}: it trades, withdraws and appoints operators")
    elif allowed:
        say(f"{address} [green]is an operator[/] of {label}: it may trade, never withdraw")
    else:
        say(
            f"{address} is [yellow]not an operator[/] of {label}; the owner adds it with "
            f"`perpdex operator add {address} --sub {info.index}`"
        )


# --- loss caps --------------------------------------------------------------------------------


@loss_cap_app.command("set", context_settings=SIGNED_ARGS)
def loss_cap_set(
    ctx: typer.Context,
    usd: Annotated[
        Decimal,
        typer.Argument(
            parser=parse_amount,
            metavar="USD",
            help="Equity floor in dollars, e.g. 19000 (remove it with `loss-cap clear`).",
        ),
    ],
    sub: Sub = None,
    account_id: AccountId = None,
    yes_above_equity: Annotated[
        bool,
        typer.Option(
            "--yes-above-equity",
            help="Set the floor even above the account's equity (anyone may then close "
            "every position at once).",
        ),
    ] = False,
) -> None:
    """Set the equity floor below which anyone may close every position of the account."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    old = client.loss_cap(acct)
    client.set_loss_cap(acct, usd, confirm_above_equity=yes_above_equity)
    summary = client.summary(acct)
    equity, fee = summary.margin.equity, client.loss_cap_fee()
    was = fmt_usd(old) if old else "none"
    say(
        f"[green]✓[/] loss cap of {account_label(summary.info)} set to {fmt_usd(usd)} "
        f"(was {was}); below it anyone may close every position for the {fmt_usd(fee)} fee"
    )
    if equity >= usd:
        say(f"  equity {fmt_usd(equity)} is {fmt_usd(equity - usd)} above it")
    elif summary.margin.health is None:  # no positions yet
        say(
            f"  [yellow]equity {fmt_usd(equity)} is already below it: any position this "
            "account opens may be closed at once; deposit first or set a lower floor[/]"
        )
    else:
        say(
            f"  [yellow]equity {fmt_usd(equity)} is already below it: anyone may close the "
            f"positions now; raise equity or `perpdex loss-cap clear --sub {summary.info.index}`[/]"
        )


@loss_cap_app.command("clear")
def loss_cap_clear(ctx: typer.Context, sub: Sub = None, account_id: AccountId = None) -> None:
    """Remove the account's loss cap."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    label = account_label(client.account(acct))
    old = client.loss_cap(acct)
    if not old:
        say(f"{label} has no loss cap; nothing to clear")
        return
    client.set_loss_cap(acct, 0)
    say(f"[green]✓[/] removed the loss cap of {label} (was {fmt_usd(old)})")


@loss_cap_app.command("show")
def loss_cap_show(
    ctx: typer.Context, sub: Sub = None, account_id: AccountId = None, json_out: Json = False
) -> None:
    """The account's equity floor against its equity now (at the cached marks)."""
    s = session(ctx)
    client = s.reader()
    acct = s.resolve_account(client, sub, account_id)
    summary = client.summary(acct)
    if json_out:
        m, floor = summary.margin, summary.loss_cap
        jsonout.emit(
            {
                "account": jsonout.account_info(summary.info),
                "loss_cap": jsonout.num(floor) if floor else None,
                "equity": jsonout.num(m.equity),
                "headroom": jsonout.num(m.equity - floor) if floor else None,
                "trigger_fee": jsonout.num(client.loss_cap_fee()),
                "triggerable": bool(floor) and m.equity < floor and m.health is not None,
            }
        )
        return
    label = account_label(summary.info)
    if not summary.loss_cap:
        say(
            f"{label} has no loss cap; its owner sets one with "
            f"`perpdex loss-cap set USD --sub {summary.info.index}`"
        )
        return
    print_loss_cap(client, label, summary.loss_cap, summary.margin, acct)


def print_loss_cap(
    client: PerpdexClient, label: str, floor: Decimal, m: Margin, account: int
) -> None:
    """Floor, equity, headroom, the trigger fee and whether the cap can be triggered."""
    headroom = m.equity - floor
    t = new_table(f"loss cap of {label}", header=False)
    t.add_column("", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_row("equity floor", fmt_usd(floor))
    t.add_row("equity (cached marks)", fmt_usd(m.equity))
    share = f" ({fmt_pct(headroom / m.equity)} of equity)" if m.equity > 0 else ""
    t.add_row("headroom", fmt_usd(headroom) + share)
    t.add_row("trigger fee", fmt_usd(client.loss_cap_fee()))
    triggerable = headroom < 0 and m.health is not None  # the contract needs equity < floor
    if headroom > 0:
        status = "[green]above the floor[/]"
    elif headroom == 0:
        status = "[yellow]at the floor; triggerable once below it[/]"
    elif not triggerable:
        status = "[yellow]below the floor, no positions to close[/]"
    else:
        status = "[bold red]below the floor[/]"
    t.add_row("status", status)
    console().print(t)
    if triggerable:
        say(
            "below the floor anyone may close every position: "
            f"perpdex loss-cap trigger --account-id {account:#x}"
        )


@loss_cap_app.command("trigger")
def loss_cap_trigger(
    ctx: typer.Context,
    account_id: Annotated[
        int,
        typer.Option(
            "--account-id",
            parser=parse_account_id,
            metavar="ID",
            help="Account to close out, any owner's (`perpdex account --owner ADDR --full-ids`).",
        ),
    ],
) -> None:
    """Close the positions of an account below its loss cap (at the oracle price, a
    bounded size per market per minute); the caller earns the fee."""
    s = session(ctx)
    client = s.client()
    label = account_label(client.account(account_id))
    receipt = client.trigger_loss_cap(account_id)
    events = receipt.decode_logs(client.ops.LossCapTriggered)
    if not events:
        raise PerpdexError(
            f"trigger {receipt.txn_hash} emitted no LossCapTriggered event; check the "
            "transaction in a block explorer"
        )
    ev = events[-1]
    closed = [  # the position each fill closed: minus its size delta
        f"{fmt_size(from_wad(-int(f.size_delta)))} {client.symbol(int(f.market))}"
        for f in receipt.decode_logs(client.clearinghouse.Fill)
        if int(f.account) == account_id
    ]
    settlement = client.collaterals()[0].symbol
    keeper = getattr(client.signer, "address", "you")
    say(
        f"[green]✓[/] loss cap of {label} triggered: equity {fmt_usd(from_wad(int(ev.equity)))} "
        f"below its floor {fmt_usd(from_wad(int(ev.equity_floor)))}; closed "
        f"{', '.join(closed) or 'nothing'}; tx {receipt.txn_hash}"
    )
    balance = client.balances(account_id)[settlement]
    say(
        f"  fee earned {fmt_usd(from_wad(int(ev.fee)))}, paid in {settlement} to {keeper}; "
        f"the account keeps {fmt_amount(balance)} {settlement}"
    )
