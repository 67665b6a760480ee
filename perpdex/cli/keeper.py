"""`perpdex keeper`: run the liquidation keeper and the mock-feed price pusher.

    perpdex keeper liquidate [--once] [--state PATH] [--interval S] [--keeper-sub N]
                             [--min-profit USD] [--max-take USD] [--hedge] [--ticks N]
                             [--rpc-max-calls N] [--rpc-max-bytes N] [--rpc-parallel N]
    perpdex keeper loss-caps [--once] [--state PATH] [--interval S] [--ticks N]
    perpdex keeper adl       [--once] [--state PATH] [--interval S] [--ticks N] [--near X]
    perpdex keeper orders    [--once] [--state PATH] [--interval S] [--ticks N]
                             [--orders PATH] [--min-fee USD]
    perpdex keeper settle    [--once] [--state PATH] [--interval S] [--ticks N]
                             [--cancel-expired] [--min-fee USD]
    perpdex keeper prices    [--path FILE|random-walk] [--interval S] [--steps N]
                             [--seed N] [--vol X] [--warp]
    perpdex keeper rebalance [run] --rules FILE [--once] [--state PATH] [--interval S]
                             [--ticks N] [--slippage PCT]
    perpdex keeper rebalance pause|resume|status [--state PATH] [--note TEXT]
    perpdex keeper rebalance kill [--rules FILE] [--bot ADDRESS] [--state PATH]

Both connect to `--network` (default ethereum:local:node: an anvil on port 8545, e.g. the
one `make demo` starts) and read the deployment manifest; they sign with `--account`
(default test:0 on local networks). The keeper's rewards and takes land in one of the
signer's sub-accounts (`--keeper-sub`, default 0), which needs collateral: open and fund it
with `perpdex open-account keeper` and `perpdex deposit AMOUNT`. Stop either with Ctrl-C;
the keeper's state file lets the next start resume where this one stopped
(docs/operations.md).

`rebalance` signs as the bot, an operator of the owner's managed sub-accounts (`run`), or
as the owner (`kill`); `pause`, `resume` and `status` only edit or read the state file,
without the chain.

Mount on the root app with `app.add_typer(keeper.app, name="keeper")`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from perpdex.cli import console, fmt_usd, parse_account_id, say, session, short_id
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from perpdex.deploy import Protocol
    from perpdex.keepers.liquidator import TickReport
    from perpdex.keepers.rebalance import TickReport as RebalanceTick

app = typer.Typer(
    name="keeper",
    help="Run keeper bots: liquidations, loss caps, auto-deleveraging, conditional orders, "
    "delayed-order settlement, the strategy rebalancer and (local networks, testnets) mock "
    "price feeds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEFAULT_STATE_DIR = Path(".keeper")


def _protocol(ctx: typer.Context) -> Protocol:
    from perpdex.deploy import load_protocol, network_key
    from perpdex.sdk.client import resolve_manifest

    s = session(ctx)
    s.connect()
    path = resolve_manifest(s.deployment)
    return load_protocol(network_key(), path)


class _PrintedByTheCommand(logging.Filter):
    """Drops the keepers' log lines that these commands print themselves, so nothing shows
    twice: the liquidator's per-action lines (`liquidate` prints one table row per action),
    the orders keeper's per-order lines (`orders` prints one row per order tried), the
    pusher's "pushed ..." line (`prices` prints the prices) and the rebalancer's override
    lines (`rebalance pause|resume|kill` print the change and the revocations). Errors
    always pass."""

    DROP = frozenset(
        {
            ("perpdex.keepers.liquidator", "execute"),
            ("perpdex.keepers.orders", "execute"),
            ("perpdex.keepers.orders", "_refused"),
            ("perpdex.keepers.price_pusher", "push"),
            ("perpdex.keepers.rebalance", "set_mode"),
            ("perpdex.keepers.rebalance", "kill"),
        }
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or (record.name, record.funcName) not in self.DROP


def _logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    handler.addFilter(_PrintedByTheCommand())
    logger = logging.getLogger("perpdex.keepers")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        say(f"[yellow]signal {signum}: finishing the current tick, then stopping[/]")
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def tick_table(report: TickReport) -> Table:
    t = Table(
        title=(
            f"block {report.block}: watching {report.watched} account(s) with positions, "
            f"{report.unhealthy} unhealthy, {report.in_liquidation} in liquidation"
        )
    )
    for col in ("action", "account", "result", "gas", "detail"):
        t.add_column(col, justify="right" if col == "gas" else "left")
    for o in report.outcomes:
        a = o.action
        detail = a.why
        if a.kind == "take" and o.ok:
            detail += f"; expected profit {fmt_usd(a.expected_profit)}"
        t.add_row(
            a.kind,
            short_id(a.account),
            "[green]ok[/]" if o.ok else f"[yellow]{o.stage}: {o.error}[/]",
            f"{o.gas_used:,}" if o.ok else "-",
            detail,
        )
    return t


def rpc_limits(key: str, given: dict[str, int | None]) -> dict[str, int]:
    """The scan's batch limits: command-line options, else config/networks.yaml
    `<network>.keeper_rpc` (max_calls, max_bytes, parallel), else LiquidatorConfig's."""
    from perpdex.config import load_networks

    section = load_networks().get(key, {}).get("keeper_rpc") or {}
    unknown = set(section) - set(given)
    if unknown:
        raise PerpdexError(
            f"config/networks.yaml[{key}].keeper_rpc: unknown key(s) {sorted(unknown)}; "
            f"use {sorted(given)}"
        )
    out = {}
    for name, value in given.items():
        v = value if value is not None else section.get(name)
        if v is not None:
            out[f"rpc_{name}"] = int(v)
    return out


def _locked_state(ctx: typer.Context, state: Path | None, kind: str) -> Path:
    """The keeper's state file (`--state`, else .keeper/<kind>-<network>.json), locked for
    the whole command: a second keeper on the same file stops here, before reading it."""
    from perpdex.deploy import network_key
    from perpdex.keepers.state import StateLock

    path = state or DEFAULT_STATE_DIR / f"{kind}-{network_key()}.json"
    lock = StateLock(path)
    lock.acquire()
    ctx.call_on_close(lock.release)
    return path


def _run_keeper(
    keeper: Any, once: bool, interval: float, ticks: int | None, show: Callable[[Any], None]
) -> int | None:
    """One tick (`--once`: returns None) or the loop until Ctrl-C / SIGTERM or `ticks`
    (returns the ticks run)."""
    if once:
        show(keeper.tick())
        return None
    stop = threading.Event()
    _stop_on_signals(stop)
    return int(keeper.run(interval=interval, ticks=ticks, stop=stop, on_tick=show))


# options every keeper loop takes
Once = Annotated[bool, typer.Option("--once", help="Run one tick and exit.")]
Interval = Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between ticks.")]
Ticks = Annotated[int | None, typer.Option("--ticks", min=1, help="Stop after this many ticks.")]


@app.command("liquidate")
def liquidate(
    ctx: typer.Context,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/liquidator-<network>.json)."),
    ] = None,
    interval: Interval = 2.0,
    ticks: Ticks = None,
    keeper_sub: Annotated[
        int | None,
        typer.Option("--keeper-sub", min=0, help="Signer's sub-account for rewards and takes."),
    ] = None,
    keeper_account: Annotated[
        int | None,
        typer.Option(
            "--keeper-account",
            parser=parse_account_id,
            metavar="ID",
            help="Full account id (one the signer operates) instead of --keeper-sub.",
        ),
    ] = None,
    min_profit: Annotated[
        float, typer.Option("--min-profit", min=0, help="USD after gas for a take.")
    ] = 1.0,
    max_take: Annotated[
        float, typer.Option("--max-take", min=1, help="USD notional per take.")
    ] = 250_000.0,
    gas_price_gwei: Annotated[
        float | None,
        typer.Option("--gas-price-gwei", help="Gas price for the profit estimate (default: node)."),
    ] = None,
    hedge: Annotated[
        bool,
        typer.Option("--hedge/--no-hedge", help="Close taken positions against the vault."),
    ] = False,
    no_backstop: Annotated[
        bool, typer.Option("--no-backstop", help="Leave expired auctions to others.")
    ] = False,
    rpc_max_calls: Annotated[
        int | None,
        typer.Option(
            "--rpc-max-calls", min=1, help="eth_calls per JSON-RPC batch (default 1,000)."
        ),
    ] = None,
    rpc_max_bytes: Annotated[
        int | None,
        typer.Option(
            "--rpc-max-bytes", min=256, help="Bytes per JSON-RPC request (default 1 MiB)."
        ),
    ] = None,
    rpc_parallel: Annotated[
        int | None,
        typer.Option("--rpc-parallel", min=1, help="JSON-RPC batches in flight (default 2)."),
    ] = None,
) -> None:
    """Watch every account; start, bid on, backstop and finish liquidations."""
    from perpdex.deploy import network_key
    from perpdex.keepers.liquidator import Liquidator, LiquidatorConfig

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    assert signer is not None  # required=True raises instead
    if keeper_account is not None and keeper_sub is not None:
        raise typer.BadParameter("give --keeper-sub or --keeper-account, not both")
    if keeper_account is None:
        client = s.client()
        keeper_account = s.own_sub_account(client, keeper_sub or 0)
    cfg = LiquidatorConfig(
        keeper_account=keeper_account,
        min_profit=Decimal(str(min_profit)),
        max_take=Decimal(str(max_take)),
        gas_price=None if gas_price_gwei is None else int(Decimal(str(gas_price_gwei)) * 10**9),
        hedge=hedge,
        backstop=not no_backstop,
    )
    given = {"max_calls": rpc_max_calls, "max_bytes": rpc_max_bytes, "parallel": rpc_parallel}
    for name, value in rpc_limits(network_key(), given).items():
        setattr(cfg, name, value)
    path = _locked_state(ctx, state, "liquidator")
    keeper = Liquidator(p, signer, cfg, state_path=path, name=signer.address[:10])
    say(
        f"keeper {signer.address} -> account {short_id(keeper_account)} on {p.network}; "
        f"state {path} (cursor block {keeper.state.cursor}, "
        f"{len(keeper.state.accounts)} known account(s))"
    )
    out = console()

    def show(report: TickReport) -> None:
        if report.outcomes or once:
            out.print(tick_table(report))

    n = _run_keeper(keeper, once, interval, ticks, show)
    if n is None:
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(keeper.state.counts.items())) or "none"
    say(f"stopped after {n} tick(s); actions so far: {counts}; state saved to {path}")


@app.command("loss-caps")
def loss_caps(
    ctx: typer.Context,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/loss-caps-<network>.json)."),
    ] = None,
    interval: Interval = 5.0,
    ticks: Ticks = None,
) -> None:
    """Trigger every sub-account below its loss cap (the close-out fee pays the signer)."""
    from perpdex.deploy import network_key
    from perpdex.keepers.loss_caps import LossCapConfig, LossCapKeeper, LossCapReport

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    assert signer is not None  # required=True raises instead
    cfg = LossCapConfig()
    for name, value in rpc_limits(
        network_key(), dict.fromkeys(("max_calls", "max_bytes", "parallel"))
    ).items():
        setattr(cfg, name, value)
    path = _locked_state(ctx, state, "loss-caps")
    keeper = LossCapKeeper(p, signer, cfg, state_path=path, name=signer.address[:10])
    say(
        f"loss-cap keeper {signer.address} on {p.network}; state {path} (cursor block "
        f"{keeper.state.cursor}, {len(keeper.state.accounts)} capped account(s) known)"
    )
    out = console()

    def show(report: LossCapReport) -> None:
        if not (report.outcomes or once):
            return
        t = Table(
            title=f"block {report.block}: {report.capped} capped account(s) with positions, "
            f"{report.below} below the floor"
        )
        for col in ("account", "result", "fee", "gas", "detail"):
            t.add_column(col, justify="right" if col in ("fee", "gas") else "left")
        for o in report.outcomes:
            t.add_row(
                short_id(o.account),
                "[green]triggered[/]" if o.ok else f"[yellow]{o.stage}: {o.error}[/]",
                fmt_usd(Decimal(o.fee) / 10**18) if o.ok else "-",
                f"{o.gas_used:,}" if o.ok else "-",
                o.why,
            )
        out.print(t)

    n = _run_keeper(keeper, once, interval, ticks, show)
    if n is None:
        return
    done = keeper.state.counts.get("trigger", 0)
    say(f"stopped after {n} tick(s); {done} trigger(s) so far; state saved to {path}")


@app.command("adl")
def adl(
    ctx: typer.Context,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/adl-<network>.json)."),
    ] = None,
    interval: Interval = 5.0,
    ticks: Ticks = None,
    near: Annotated[
        float,
        typer.Option(
            "--near",
            min=0,
            max=0.5,
            help="Also try a market this share below a limit at the cached marks (the "
            "contract decides at the oracle price).",
        ),
    ] = 0.02,
) -> None:
    """Auto-deleverage markets over the vault's PnL or exposure cap (most profitable
    positions first, just back to the target); the signer pays the gas, earns nothing."""
    from perpdex.deploy import network_key
    from perpdex.keepers.adl import AdlConfig, AdlKeeper, AdlReport

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    assert signer is not None  # required=True raises instead
    cfg = AdlConfig(near=Decimal(str(near)))
    for name, value in rpc_limits(
        network_key(), dict.fromkeys(("max_calls", "max_bytes", "parallel"))
    ).items():
        setattr(cfg, name, value)
    path = _locked_state(ctx, state, "adl")
    keeper = AdlKeeper(p, signer, cfg, state_path=path, name=signer.address[:10])
    say(
        f"ADL keeper {signer.address} on {p.network}; state {path} (cursor block "
        f"{keeper.state.cursor}, {len(keeper.state.accounts)} account(s) known)"
    )
    out = console()
    symbols = p.symbols

    def show(report: AdlReport) -> None:
        if not (report.outcomes or once):
            return
        t = Table(title=f"block {report.block}: vault limits by market")
        for col in ("market", "profit/equity", "exposure", "cap", "ADL"):
            t.add_column(col, justify="left" if col in ("market", "ADL") else "right")
        for st in report.markets:
            after = report.after.get(st.market)
            state_txt = (
                "[red]PnL cap[/]"
                if st.pnl_capped
                else "[red]exposure cap[/]"
                if st.over_cap
                else "[yellow]near[/]"
                if st.near
                else "[green]within[/]"
            )
            if after is not None:
                state_txt += f" -> {'[green]within[/]' if not after.open else '[red]still open[/]'}"
            t.add_row(
                symbols[st.market] if st.market < len(symbols) else str(st.market),
                f"{st.ratio:.2%}" + (f" -> {after.ratio:.2%}" if after else ""),
                fmt_usd(Decimal(st.exposure) / 10**18),
                fmt_usd(Decimal(st.cap) / 10**18),
                state_txt,
            )
        out.print(t)
        if not report.outcomes:
            return
        a = Table(title="auto-deleverage transactions")
        for col in ("account", "market", "result", "closed", "gas", "detail"):
            a.add_column(col, justify="right" if col in ("closed", "gas") else "left")
        for o in report.outcomes:
            a.add_row(
                short_id(o.account),
                symbols[o.market] if o.market < len(symbols) else str(o.market),
                "[green]ok[/]" if o.ok else f"[yellow]{o.stage}: {o.error}[/]",
                f"{Decimal(-o.size_delta) / 10**18:.4f}" if o.ok else "-",
                f"{o.gas_used:,}" if o.ok else "-",
                o.why,
            )
        out.print(a)

    n = _run_keeper(keeper, once, interval, ticks, show)
    if n is None:
        return
    done = keeper.state.counts.get("adl", 0)
    say(f"stopped after {n} round(s); {done} ADL(s) so far; state saved to {path}")


@app.command("orders")
def orders(
    ctx: typer.Context,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/orders-<network>.json)."),
    ] = None,
    interval: Interval = 2.0,
    ticks: Ticks = None,
    orders_path: Annotated[
        Path | None,
        typer.Option(
            "--orders",
            help="Signed orders: a JSON-lines file or a directory of them (default "
            ".orders/<network>.jsonl, what `perpdex orders stop` writes).",
        ),
    ] = None,
    min_fee: Annotated[
        float, typer.Option("--min-fee", min=0, help="Skip orders paying a lower keeper fee (USD).")
    ] = 0.0,
) -> None:
    """Execute signed stop and take-profit orders once the oracle price crosses their
    trigger (the orders' keeper fees pay the signer)."""
    from perpdex.deploy import network_key
    from perpdex.keepers.orders import OrdersConfig, OrdersKeeper, OrdersReport
    from perpdex.sdk import order_store as store

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    assert signer is not None  # required=True raises instead
    source = orders_path or store.default_path(network_key())
    cfg = OrdersConfig(orders=source, min_fee=int(Decimal(str(min_fee)) * 10**18))
    for name, value in rpc_limits(
        network_key(), dict.fromkeys(("max_calls", "max_bytes", "parallel"))
    ).items():
        setattr(cfg, name, value)
    path = _locked_state(ctx, state, "orders")
    keeper = OrdersKeeper(p, signer, cfg, state_path=path, name=signer.address[:10])
    say(
        f"orders keeper {signer.address} on {p.network}; orders from {source}"
        f"{'' if source.exists() else ' (none yet: waiting for it)'}; state {path} "
        f"({len(keeper.state.done)} finished order(s) known)"
    )
    out = console()
    symbols = p.symbols

    def show(report: OrdersReport) -> None:
        if not (report.outcomes or once):
            return
        t = Table(
            title=f"block {report.block}: {report.live} live order(s) of {report.loaded}, "
            f"{report.triggered} triggered"
        )
        for col in ("order", "account", "kind", "market", "result", "fee", "gas", "detail"):
            t.add_column(col, justify="right" if col in ("fee", "gas") else "left")
        for o in report.outcomes:
            t.add_row(
                o.order[:10],
                short_id(o.account),
                o.kind,
                symbols[o.market] if o.market < len(symbols) else str(o.market),
                "[green]executed[/]" if o.ok else f"[yellow]{o.stage}: {o.error}[/]",
                fmt_usd(Decimal(o.fee) / 10**18) if o.ok else "-",
                f"{o.gas_used:,}" if o.ok else "-",
                o.why,
            )
        out.print(t)

    n = _run_keeper(keeper, once, interval, ticks, show)
    if n is None:
        return
    done = keeper.state.counts.get("execute", 0)
    say(f"stopped after {n} tick(s); {done} order(s) executed so far; state saved to {path}")


@app.command("prices")
def prices(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Option("--path", help="CSV price path (t,BTC,ETH,...) or `random-walk`."),
    ] = "random-walk",
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval", min=0.1, help="Seconds between pushes (default 5, or the CSV's t step)."
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Stop after this many pushes.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random-walk seed.")] = 0,
    vol: Annotated[
        float, typer.Option("--vol", min=0, help="Random-walk volatility per step.")
    ] = 0.002,
    spread_bps: Annotated[
        int, typer.Option("--spread-bps", min=0, max=100, help="Spread between a market's feeds.")
    ] = 0,
    warp: Annotated[
        bool,
        typer.Option("--warp", help="Development chains: move the chain clock instead of waiting."),
    ] = False,
) -> None:
    """Drive the mock price feeds along a CSV path or a random walk."""
    from perpdex.keepers.price_pusher import PricePath, PricePusher, PriceSource, RandomWalk

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    source: PriceSource
    if path == "random-walk":
        source = RandomWalk(vol=vol, seed=seed)
        every = 5.0 if interval is None else interval
    else:
        file = Path(path)
        if not file.exists():
            raise PerpdexError(f"no price file {file}; give a CSV path or `--path random-walk`")
        csv_path = PricePath.from_csv(file)
        source = csv_path
        every = float(csv_path.interval or 5) if interval is None else interval
    if warp and not s.is_dev:
        raise PerpdexError("--warp moves the chain clock: only on local networks and forks")
    pusher = PricePusher(p, signer, source, spread_bps=spread_bps)
    say(f"pushing prices to {p.network} every {every:g}s from {signer.address if signer else '-'}")
    stop = threading.Event()
    _stop_on_signals(stop)

    def show(prices: dict[str, Decimal]) -> None:
        say("  ".join(f"{sym} {fmt_usd(v)}" for sym, v in sorted(prices.items())))

    n = pusher.run(every, steps=steps, warp=warp, stop=stop, on_step=show)
    say(f"pushed {n} step(s)")


REBALANCE_ACTIONS = ("run", "pause", "resume", "kill", "status")


def _offline_key(ctx: typer.Context) -> str:
    """The network key without connecting (PERPDEX_NETWORK, else --network's ecosystem and
    network: `ethereum:local:node` -> local), as `perpdex.deploy.network_key` names it."""
    import os

    if key := os.environ.get("PERPDEX_NETWORK"):
        return key
    parts = session(ctx).network.split(":")
    eco = parts[0] or "ethereum"
    name = (parts[1] if len(parts) > 1 and parts[1] else "local").removesuffix("-fork")
    return "local" if name == "local" else f"{eco}-{name}"


@app.command("rebalance")
def rebalance(
    ctx: typer.Context,
    action: Annotated[
        str,
        typer.Argument(
            metavar="[run|pause|resume|kill|status]",
            help="run (default): the bot; pause / resume: stop or restart its actions; "
            "kill: revoke its operator rights on chain (signed by the owner); status: the "
            "state file.",
        ),
    ] = "run",
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules", metavar="FILE", help="Rules (YAML; see config/rebalance.example.yaml)."
        ),
    ] = None,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/rebalance-<network>.json)."),
    ] = None,
    interval: Interval = 10.0,
    ticks: Ticks = None,
    slippage: Annotated[
        float,
        typer.Option(
            "--slippage", min=0, max=10, help="Percent a reduce leg may fill past its quote."
        ),
    ] = 0.5,
    bot: Annotated[
        str | None,
        typer.Option(
            "--bot",
            metavar="ADDRESS",
            help="kill: the bot's address (default: the rules' `bot`, else the state file's).",
        ),
    ] = None,
    note: Annotated[
        str, typer.Option("--note", help="pause / resume / kill: why (state file and log).")
    ] = "",
) -> None:
    """Keep each managed strategy (a sub-account) inside its health band, leverage and
    hedge ratio: top it up from its reserve sub-account or reduce it with one multi-leg
    reduce-only order, as its rules prefer; pause, resume, or kill (revoke the bot's
    operator rights on chain).

    The bot signs with --account, an operator of every managed sub-account; every action
    is logged with its reason and appended to <state>.actions.jsonl.
    """
    if action not in REBALANCE_ACTIONS:
        raise typer.BadParameter(
            f"{action!r}; use one of {', '.join(REBALANCE_ACTIONS)}", param_hint="ACTION"
        )
    s = session(ctx)
    _logging(s.verbose)
    from perpdex.keepers import rebalance as rb

    if action in ("pause", "resume", "status"):
        path = state or rb.default_state_path(_offline_key(ctx))
        if action == "status":
            _rebalance_status(path)
            return
        before = rb.read_state(path).get("mode", "active")
        mode = "paused" if action == "pause" else "active"
        rb.set_mode(path, mode, action, note)
        say(f"rebalancer {mode} ({path}; was {before}); a running bot follows at its next tick")
        if action == "resume" and before == "killed":
            say(
                "[yellow]the bot was killed: its operator rights are revoked on chain; the "
                "owner grants them again with `perpdex operator add BOT --sub N`[/]"
            )
        return
    if action == "kill":
        _rebalance_kill(ctx, rules, state, bot, note)
        return
    _rebalance_run(ctx, rules, once, state, interval, ticks, slippage)


def _load_rules(client: Any, rules: Path) -> Any:
    from perpdex.keepers.rebalance_rules import load_rules

    return load_rules(rules, client.deployment.markets)


def _rebalance_run(
    ctx: typer.Context,
    rules: Path | None,
    once: bool,
    state: Path | None,
    interval: float,
    ticks: int | None,
    slippage: float,
) -> None:
    from perpdex.keepers.rebalance import Rebalancer

    if rules is None:
        raise typer.BadParameter("the bot needs its rules: --rules FILE", param_hint="--rules")
    s = session(ctx)
    client = s.client()
    rs = _load_rules(client, rules)  # a bad file stops here, before anything is sent
    signer = str(client.signer.address) if client.signer else ""
    if rs.bot is not None and rs.bot.lower() != signer.lower():
        raise PerpdexError(
            f"{rules} names the bot {rs.bot}, but --account signs as {signer}; run the bot "
            "with its own key"
        )
    managed = [client.account_id(rs.owner, i) for i in rs.managed_subs()]
    for acct in managed:
        client.account(acct)  # an account not open: UnknownAccount, nothing sent
    if signer.lower() == rs.owner.lower():
        say(
            "[yellow]the bot signs as the owner: `kill` cannot revoke the owner; run it "
            "with an operator's key instead[/]"
        )
    else:
        missing = [a for a in managed if not client.is_operator(a, signer)]
        for a in missing:
            say(
                f"[yellow]{signer} is no operator of {short_id(a)}: its actions there are "
                f"refused; the owner grants it with `perpdex operator add {signer} --sub "
                f"{a & (2**96 - 1)}`[/]"
            )
    path = _locked_state(ctx, state, "rebalance")
    bot = Rebalancer(
        client, rs, state_path=path, max_slippage=Decimal(str(slippage)) / 100, name="rebalance"
    )
    say(
        f"rebalancer {signer} for {rs.owner}'s {len(rs.strategies)} strateg"
        f"{'y' if len(rs.strategies) == 1 else 'ies'} on {client.deployment.network}; mode "
        f"{bot.mode}; state {path}; actions {path.with_name(path.stem + '.actions.jsonl')}"
    )
    out = console()

    def show(report: RebalanceTick) -> None:
        if not (report.outcomes or once):
            return
        t = Table(title=f"block {report.block}: rebalancer {report.mode}")
        for col in ("strategy", "account", "health", "leverage", "hedge", "decision", "result"):
            t.add_column(col, justify="right" if col in ("health", "leverage", "hedge") else "left")
        for st in report.strategies:
            if st.state is None or st.decision is None:
                t.add_row(st.rule.name, short_id(st.account), "-", "-", "-", "-", st.error)
                continue
            x, r = st.state, st.rule
            ratio = x.hedge_ratio(r.hedge) if r.hedge else None
            result = "-"
            if st.outcomes:
                o = st.outcomes[-1]
                result = (
                    f"[green]{o.plan}[/] (tx {o.tx_hash[:10]}…)"
                    if o.ok
                    else f"[yellow]{o.plan}: {o.stage}: {o.error}[/]"
                )
            elif st.decision.breaches and report.mode != "active":
                result = f"{report.mode}: no action"
            t.add_row(
                r.name,
                short_id(st.account),
                _num(x.health, 3),
                _num(x.leverage, 2),
                _num(ratio, 3),
                st.decision.reason or "-",
                result,
            )
        out.print(t)

    n = _run_keeper(bot, once, interval, ticks, show)
    if n is None:
        return
    counts = ", ".join(f"{k} {v}" for k, v in sorted(bot.counts.items())) or "none"
    say(f"stopped after {n} tick(s); actions so far: {counts}; state saved to {path}")


def _num(value: Decimal | None, places: int) -> str:
    if value is None:
        return "-"
    return "inf" if not value.is_finite() else f"{value:.{places}f}"


def _rebalance_kill(
    ctx: typer.Context, rules: Path | None, state: Path | None, bot: str | None, note: str
) -> None:
    from perpdex.deploy import network_key
    from perpdex.keepers import rebalance as rb
    from perpdex.sdk.handles import _address

    s = session(ctx)
    client = s.client()
    path = state or rb.default_state_path(network_key())
    saved = rb.read_state(path)
    rs = _load_rules(client, rules) if rules is not None else None
    who = bot or (rs.bot if rs is not None else None) or saved.get("bot")
    if not who:
        raise PerpdexError(
            "whose rights to revoke? give --bot ADDRESS (or `bot:` in --rules, or a state "
            f"file with the bot's address: {path} has none)"
        )
    if rs is not None:
        accounts = [client.account_id(rs.owner, i) for i in rs.managed_subs()]
    else:
        accounts = [int(a, 16) for a in saved.get("accounts", [])]
    if not accounts:
        raise PerpdexError(f"which accounts? give --rules FILE ({path} lists no managed accounts)")
    signer = str(client.signer.address) if client.signer else ""
    owners = {_address(f"{a >> 96:#042x}") for a in accounts}
    if owners != {_address(signer)}:
        raise PerpdexError(
            f"kill is signed by the owner of the managed accounts ({', '.join(sorted(owners))}"
            f"): only the owner may revoke an operator; give --account OWNER, not {signer}"
        )
    done = rb.kill(client, accounts, _address(who), path, note)
    t = Table(title=f"kill: {who}'s operator rights")
    for col in ("account", "was operator", "result", "tx"):
        t.add_column(col)
    for r in done:
        t.add_row(
            short_id(r.account),
            "yes" if r.was_operator else "no",
            "[green]revoked[/]"
            if r.ok and r.was_operator
            else "ok"
            if r.ok
            else f"[red]{r.error}[/]",
            r.tx_hash or "-",
        )
    console().print(t)
    sent = len({r.tx_hash for r in done if r.tx_hash})
    revoked = sum(1 for r in done if r.tx_hash)
    failed = [r for r in done if not r.ok]
    say(
        f"{sent} transaction(s) revoked the bot on {revoked} account(s) "
        "(`revoke_operator`: every operated account at once). Mode killed in "
        f"{path}; `resume` after granting the rights again"
    )
    if failed:
        raise PerpdexError(
            f"{len(failed)} revocation(s) failed ({failed[0].error}); the bot may still trade "
            "those accounts: retry `perpdex keeper rebalance kill`"
        )


def _rebalance_status(path: Path) -> None:
    from perpdex.keepers import rebalance as rb

    data = rb.read_state(path)
    if not data:
        say(f"no rebalancer state at {path} (the bot never ran there, nothing paused)")
        return
    t = Table(title=f"rebalancer state {path}")
    t.add_column("field")
    t.add_column("value")
    for k, v in data.items():
        t.add_row(k, v if isinstance(v, str) else json.dumps(v))
    console().print(t)


@app.command("settle")
def settle(
    ctx: typer.Context,
    once: Once = False,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State file (default .keeper/settle-<network>.json)."),
    ] = None,
    interval: Interval = 1.0,
    ticks: Ticks = None,
    cancel_expired: Annotated[
        bool,
        typer.Option("--cancel-expired", help="Also clear expired orders (no reward)."),
    ] = False,
    min_fee: Annotated[
        float, typer.Option("--min-fee", min=0, help="Skip orders paying less (USD).")
    ] = 0.0,
) -> None:
    """Settle every delayed vault order once a price observed after its delay is
    published (contracts/modules/delayed.vy); each settlement's keeper fee pays the
    signer."""
    from perpdex.deploy import network_key
    from perpdex.keepers.delayed import DelayedKeeper, DelayedKeeperConfig, SettleReport

    s = session(ctx)
    _logging(s.verbose)
    p = _protocol(ctx)
    signer = s.signer()
    assert signer is not None  # required=True raises instead
    cfg = DelayedKeeperConfig(cancel_expired=cancel_expired, min_fee=Decimal(str(min_fee)))
    for name, value in rpc_limits(
        network_key(), dict.fromkeys(("max_calls", "max_bytes", "parallel"))
    ).items():
        setattr(cfg, name, value)
    path = _locked_state(ctx, state, "settle")
    keeper = DelayedKeeper(p, signer, cfg, state_path=path, name=signer.address[:10])
    say(
        f"delayed-order keeper {signer.address} on {p.network}; state {path} (cursor block "
        f"{keeper.state.cursor}, {len(keeper.state.accounts)} order(s) known)"
    )
    out = console()
    symbols = p.symbols

    def show(report: SettleReport) -> None:
        if not (report.outcomes or once):
            return
        t = Table(
            title=f"block {report.block}: {report.pending} pending delayed order(s), "
            f"{report.ready} ready, {report.expired} expired"
        )
        for col in ("action", "account", "market", "result", "price", "fee", "gas"):
            t.add_column(col, justify="right" if col in ("price", "fee", "gas") else "left")
        for o in report.outcomes:
            t.add_row(
                o.action,
                short_id(o.account),
                symbols[o.market] if o.market < len(symbols) else str(o.market),
                "[green]ok[/]" if o.ok else f"[yellow]{o.stage}: {o.error}[/]",
                fmt_usd(Decimal(o.price) / 10**18) if o.ok and o.price else "-",
                fmt_usd(Decimal(o.fee) / 10**18) if o.ok else "-",
                f"{o.gas_used:,}" if o.ok else "-",
            )
        out.print(t)

    n = _run_keeper(keeper, once, interval, ticks, show)
    if n is None:
        return
    done = keeper.state.counts.get("settle", 0)
    say(f"stopped after {n} tick(s); {done} settlement(s) so far; state saved to {path}")
