"""`perpdex`: the root command, its global options, and the account and collateral commands.

    perpdex [--network CHOICE] [--account ALIAS|test:N] [--deployment PATH|KEY] [-v] COMMAND

Later command groups live in their own modules under perpdex/cli/ and are mounted at the
bottom of this file (see "command groups").
"""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer

from perpdex.cli import (
    DEFAULT_NETWORK,
    NUMBER_ARGS,
    AccountId,
    LazyCommand,
    PerpdexGroup,
    Session,
    Sub,
    console,
    fmt_amount,
    fmt_usd,
    parse_amount,
    say,
    session,
    short_id,
)
from perpdex.cli.jsonout import Json
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from rich.table import Table

    from perpdex.sdk.client import AccountInfo, AccountSummary, PerpdexClient


class RootGroup(PerpdexGroup):
    """The root `perpdex` group. The command groups below are imported when dispatched
    (perpdex.cli.LazyCommand); `--help` lists them from these summaries, in this order
    after the commands defined in this file."""

    lazy: ClassVar[dict[str, LazyCommand]] = {
        "quote": LazyCommand(
            "perpdex.cli.trade",
            "app",
            "Quote a market order (fill price, impact, fee, margin and liquidation price "
            "after it), or list the markets. Signs nothing.",
        ),
        "trade": LazyCommand(
            "perpdex.cli.trade",
            "app",
            "Market order against the vault: SIZE base units (0.5 buys, -0.5 sells); several "
            "SYMBOL SIZE pairs trade in one transaction, margin-checked once on the final book.",
        ),
        "close": LazyCommand(
            "perpdex.cli.trade",
            "app",
            "Close a whole position at market; prints the realised PnL.",
        ),
        "portfolio": LazyCommand(
            "perpdex.cli.portfolio",
            "app",
            "Positions, PnL, funding, margin, health and liquidation prices, the loss under "
            "every stress scenario, which one binds, and the margin saved against isolated "
            "mode.",
        ),
        "history": LazyCommand(
            "perpdex.cli.history",
            "app",
            "P&L history from the chain's events: fills (realised P&L, funding, fee), deposits, "
            "withdrawals, transfers and liquidation charges, with the cumulative P&L series.",
        ),
        "dashboard": LazyCommand(
            "perpdex.cli.dashboard",
            "app",
            "A local web page for one owner, updated live from the chain: every sub-account "
            "with equity, margin, health and liquidation prices, P&L per strategy and over "
            "time, the correlation of strategies and markets, the stress scenarios, "
            "liquidations and loss caps.",
        ),
        "mode": LazyCommand(
            "perpdex.cli.strategies",
            "app",
            "Switch a sub-account to isolated or portfolio (scenario) margin.",
        ),
        "operator": LazyCommand(
            "perpdex.cli.strategies",
            "operator_app",
            "Let another address trade a sub-account (operators may trade, never withdraw).",
            group=True,
        ),
        "loss-cap": LazyCommand(
            "perpdex.cli.strategies",
            "loss_cap_app",
            "A sub-account's equity floor: below it anyone may close all its positions for a fee.",
            group=True,
        ),
        "lp": LazyCommand(
            "perpdex.cli.lp",
            "app",
            "Provide liquidity: deposit into the vault, withdraw, and see shares and the pool.",
            group=True,
        ),
        "risk": LazyCommand(
            "perpdex.cli.risk",
            "app",
            "Design, compare and publish the risk book (portfolio-margin stress scenarios).",
            group=True,
        ),
        "stress": LazyCommand(
            "perpdex.cli.stress",
            "app",
            "Run accounts through real crash periods (BTC/ETH/SOL daily closes of March 2020, "
            "May 2021, June 2022, November 2022 and August 2024) and through the on-chain "
            "scenario set: P&L per scenario and per day, resulting health, which accounts would "
            "be liquidated and when.",
        ),
        "gas": LazyCommand(
            "perpdex.cli.gas",
            "app",
            "Fee per operation on an OP-stack chain (Ecotone, Fjord) and on Arbitrum: measured "
            "L2 gas, calldata and signed-transaction bytes, their compressed sizes, the L1 data "
            "fee and the total, at gas prices you pass or read from the chain (--rpc); with "
            "--per-day N, a day of a strategy's rebalancing.",
        ),
        "devnet": LazyCommand(
            "perpdex.cli.devnet",
            "app",
            "A local devnet: anvil with perpdex deployed and funded.",
            group=True,
        ),
        "faucet": LazyCommand(
            "perpdex.cli.devnet",
            "faucet_app",
            "Mint mock USDC and 10 ETH to ADDRESS on a local devnet (never on a live network).",
        ),
        "orders": LazyCommand(
            "perpdex.cli.orders",
            "app",
            "Stop-market, stop-limit and take-profit orders: sign and store them for keepers, "
            "list their state, cancel them on chain.",
            group=True,
        ),
        "keeper": LazyCommand(
            "perpdex.cli.keeper",
            "app",
            "Run keeper bots: liquidations, loss caps, auto-deleveraging, conditional orders, "
            "delayed-order settlement, the strategy rebalancer and (local networks, testnets) "
            "mock price feeds.",
            group=True,
        ),
        "matcher": LazyCommand(
            "perpdex.matcher.cli",
            "app",
            "Run an off-chain order matcher: signed limit orders, price-time priority, batch "
            "settlement on chain.",
            group=True,
        ),
    }


app = typer.Typer(
    cls=RootGroup,
    name="perpdex",
    help="Trade and manage perpdex accounts from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print locals: they can hold keys
)


def version_text() -> str:
    """`perpdex 0.1.0 (python 3.11.7)`: the installed package's version."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("perpdex")
    except PackageNotFoundError:
        v = "unknown (not installed: `pip install -e .`)"
    return f"perpdex {v} (python {platform.python_version()})"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


# --- shared options -----------------------------------------------------------------------

Amount = Annotated[
    Decimal,
    typer.Argument(parser=parse_amount, metavar="AMOUNT", help="Token amount, e.g. 250 or 99.5."),
]
Token = Annotated[str, typer.Option("--token", "-t", help="Collateral token symbol or address.")]


@app.callback()
def main(
    ctx: typer.Context,
    network: Annotated[
        str,
        typer.Option(
            "--network",
            "-n",
            help="ape network choice (`ape networks list`), e.g. arbitrum:sepolia:node.",
        ),
    ] = DEFAULT_NETWORK,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            "-a",
            help="ape account alias, or test:N for ape's test accounts "
            "(default test:0 on local networks and forks). "
            "APE_ACCOUNTS_<alias>_PASSPHRASE unlocks an alias without prompts.",
        ),
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(
            "--deployment",
            "-d",
            help="Deployment manifest path or network key (default: deployments/<network>.json).",
        ),
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc",
            envvar="PERPDEX_RPC_URL",
            help="JSON-RPC URL of the node (overrides --network; a local anvil stays a "
            "development chain), e.g. http://127.0.0.1:8545. Env: PERPDEX_RPC_URL.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show ape's connection and transaction logs.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit (needs no chain).",
        ),
    ] = False,
) -> None:
    """Trade and manage perpdex accounts from the command line."""
    if not verbose:
        # raised while ape loads its plugins; says nothing a perpdex user can act on
        warnings.filterwarnings("ignore", module=r"pydantic_settings\..*")
    ctx.obj = Session(
        ctx, network=network, account=account, deployment=deployment, verbose=verbose, rpc=rpc
    )


# --- collateral ---------------------------------------------------------------------------


@app.command(context_settings=NUMBER_ARGS)
def deposit(
    ctx: typer.Context,
    amount: Amount,
    sub: Sub = None,
    account_id: AccountId = None,
    token: Token = "USDC",
) -> None:
    """Deposit collateral into one of your sub-accounts (or any account by --account-id)."""
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    col = client.collateral(token)
    client.deposit(acct, amount, col.symbol)
    balance = client.balances(acct)[col.symbol]
    say(
        f"[green]✓[/] deposited {fmt_amount(amount)} {col.symbol} into "
        f"{account_label(client.account(acct))}; balance {fmt_amount(balance)} {col.symbol}"
    )


@app.command(context_settings=NUMBER_ARGS)
def withdraw(
    ctx: typer.Context,
    amount: Annotated[
        Decimal | None,
        typer.Argument(
            parser=parse_amount,
            metavar="AMOUNT",
            help="Token amount, e.g. 250 or 99.5 (or --all).",
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Everything the margin rules allow now (the whole balance when flat).",
        ),
    ] = False,
    sub: Sub = None,
    account_id: AccountId = None,
    token: Token = "USDC",
    to: Annotated[str | None, typer.Option("--to", help="Receiver address (default: you).")] = None,
) -> None:
    """Withdraw collateral from one of your sub-accounts to your wallet (or --to)."""
    if (amount is None) == (not all_):
        raise typer.BadParameter("give AMOUNT or --all (not both)")
    s = session(ctx)
    client = s.client()
    acct = s.resolve_account(client, sub, account_id)
    col = client.collateral(token)
    if all_:
        _, units = client.withdraw_all(acct, col.symbol, receiver=to)
        amount = Decimal(units).scaleb(-col.decimals)
    else:
        assert amount is not None
        client.withdraw(acct, amount, col.symbol, receiver=to)
    summary = client.summary(acct)
    receiver = to if to is not None else getattr(s.signer(), "address", "you")
    say(
        f"[green]✓[/] withdrew {fmt_amount(amount, col.decimals)} {col.symbol} from "
        f"{account_label(summary.info)} "
        f"to {receiver}; balance {fmt_amount(summary.balances[col.symbol])} {col.symbol}, "
        f"free margin {fmt_usd(summary.margin.free)}, still withdrawable "
        f"{fmt_amount(client.withdrawable(acct, col.symbol))} {col.symbol}"
    )


@app.command(context_settings=NUMBER_ARGS)
def transfer(
    ctx: typer.Context,
    amount: Amount,
    from_sub: Annotated[int, typer.Option("--from-sub", min=0, help="Sending sub-account.")],
    to_sub: Annotated[int, typer.Option("--to-sub", min=0, help="Receiving sub-account.")],
    token: Token = "USDC",
) -> None:
    """Move collateral between two of your sub-accounts."""
    s = session(ctx)
    client = s.client()
    src = s.own_sub_account(client, from_sub)
    dst = s.own_sub_account(client, to_sub)
    col = client.collateral(token)
    client.transfer(src, dst, amount, col.symbol)
    a, b = client.balances(src)[col.symbol], client.balances(dst)[col.symbol]
    say(
        f"[green]✓[/] moved {fmt_amount(amount)} {col.symbol} from "
        f"{account_label(client.account(src))} to {account_label(client.account(dst))}; balances "
        f"{fmt_amount(a)} / {fmt_amount(b)} {col.symbol}"
    )


# --- accounts -----------------------------------------------------------------------------


def parse_name(text: str) -> str:
    """A sub-account name: not empty, no leading or trailing blanks."""
    if not text.strip():
        raise typer.BadParameter(
            "give the sub-account a name, e.g. `perpdex open-account main` (up to 32 bytes)"
        )
    if text != text.strip():
        raise typer.BadParameter(f"{text!r} starts or ends with blanks; write {text.strip()!r}")
    return text


@app.command("open-account")
def open_account(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(parser=parse_name, metavar="NAME", help="Strategy name (up to 32 bytes)."),
    ],
    portfolio: Annotated[
        bool,
        typer.Option("--portfolio", help="Portfolio (scenario) margin instead of isolated margin."),
    ] = False,
) -> None:
    """Open your next sub-account."""
    client = session(ctx).client()
    info = client.account(client.open_account(name, portfolio))
    label = account_label(info)
    say(f"[green]✓[/] opened sub-account {label} with {info.mode} margin; id {info.id:#x}")
    say(f"  next: perpdex deposit AMOUNT --sub {info.index}")


def account_label(info: AccountInfo) -> str:
    from perpdex.cli.portfolio import account_label as label

    return label(info)


def _health(summary: AccountSummary) -> str:
    m = summary.margin
    if summary.info.in_liquidation:
        return "[bold red]in liquidation[/]"
    if m.health is None:
        return "[green]no positions[/]"
    text = f"{m.health:.2f}×"
    if m.equity < m.maintenance:
        return f"[bold red]{text} liquidatable[/]"
    if m.equity < m.initial:
        return f"[yellow]{text} below initial[/]"
    return f"[green]{text}[/]"


def _balances(balances: dict[str, Decimal], settlement: str) -> str:
    lines = [f"{fmt_amount(balances.get(settlement, Decimal(0)))} {settlement}"]
    lines += [f"{fmt_amount(v)} {k}" for k, v in balances.items() if k != settlement and v]
    return "\n".join(lines)


def _equity(value: Decimal) -> str:
    return f"[red]{fmt_usd(value)}[/]" if value < 0 else fmt_usd(value)


def _loss_cap(summary: AccountSummary) -> str:
    """The equity floor, red once equity is below it; `-` without a cap."""
    if not summary.loss_cap:
        return "-"
    text = fmt_usd(summary.loss_cap)
    return f"[red]{text}[/]" if summary.margin.equity < summary.loss_cap else text


def account_table(
    client: PerpdexClient, summaries: list[AccountSummary], title: str, full_ids: bool = False
) -> Table:
    """The `perpdex account` table (for any command that lists sub-accounts)."""
    from rich import box
    from rich.table import Table

    settlement = client.collaterals()[0].symbol
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("name", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("loss cap", justify="right", no_wrap=True)
    table.add_column("balance", justify="right", no_wrap=True)
    table.add_column("equity", justify="right", no_wrap=True)
    table.add_column("initial", justify="right", no_wrap=True)
    table.add_column("maint.", justify="right", no_wrap=True)
    table.add_column("health", justify="right", no_wrap=True)
    for s in summaries:
        m = s.margin
        table.add_row(
            str(s.info.index),
            f"{s.info.id:#x}" if full_ids else short_id(s.info.id),
            s.info.name,
            s.info.mode,
            _loss_cap(s),
            _balances(s.balances, settlement),
            _equity(m.equity),
            fmt_usd(m.initial),
            fmt_usd(m.maintenance),
            _health(s),
        )
    return table


def print_accounts(
    client: PerpdexClient, summaries: list[AccountSummary], title: str, full_ids: bool = False
) -> None:
    """The accounts as a table, or one block per account when the terminal is too narrow."""
    from rich.measure import Measurement

    out = console()
    table = account_table(client, summaries, title, full_ids)
    natural = Measurement.get(out, out.options.update_width(10**6), table).maximum
    if natural <= out.width:
        out.print(table)
        return
    settlement = client.collaterals()[0].symbol
    out.print(title, soft_wrap=True)
    for s in summaries:
        m = s.margin
        ident = f"{s.info.id:#x}" if full_ids else short_id(s.info.id)
        balances = _balances(s.balances, settlement).replace("\n", ", ")
        out.print(f"#{s.info.index} {s.info.name!r} {s.info.mode} {ident}", soft_wrap=True)
        cap = f"  loss cap {_loss_cap(s)}" if s.loss_cap else ""
        out.print(f"  balance {balances}  equity {_equity(m.equity)}{cap}", soft_wrap=True)
        out.print(
            f"  initial {fmt_usd(m.initial)}  maint. {fmt_usd(m.maintenance)}  health {_health(s)}",
            soft_wrap=True,
        )


@app.command("account")
def account(
    ctx: typer.Context,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Address to show (default: --account).")
    ] = None,
    full_ids: Annotated[
        bool, typer.Option("--full-ids", help="Print whole account ids (for --account-id).")
    ] = False,
    json_out: Json = False,
) -> None:
    """List sub-accounts: mode, loss cap, balances, equity, requirements and health."""
    s = session(ctx)
    client = s.reader()
    who = owner if owner is not None else s.address(required=False)
    if who is None:
        raise PerpdexError(
            f"whose accounts? on {s.where} give --owner ADDRESS or --account <ape alias>"
        )
    infos = client.accounts(who)
    address = infos[0].owner if infos else who
    summaries = [client.summary(i.id) for i in infos]
    if json_out:
        from perpdex.cli import jsonout

        jsonout.emit(jsonout.summaries(address, client.deployment.network, summaries))
        return
    if not infos:
        say(f"{address} has no sub-account yet; open one with `perpdex open-account NAME`")
        return
    title = f"sub-accounts of {address} on {client.deployment.network}"
    print_accounts(client, summaries, title, full_ids)


# --- command groups -------------------------------------------------------------------------
# Each group lives in its own module under perpdex/cli/ and exposes a `typer.Typer`, mounted
# lazily by RootGroup.lazy above (imported when dispatched, so `perpdex --help` stays fast).
# Its commands take `ctx: typer.Context`, use `perpdex.cli.session(ctx).client()` and raise
# PerpdexError on failure; the root group prints the one-line error and exits with 1.


if __name__ == "__main__":
    app()
