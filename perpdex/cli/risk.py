"""`perpdex risk`: design the risk book's stress scenarios from price history, compare
books, publish one on chain in bounded steps, and chart it.

    perpdex risk design [--prices data/prices.csv] [--out book.yaml]
    perpdex risk diff   [--book book.yaml] [--against chain|PATH] [--by position|name]
    perpdex risk push   [--book book.yaml] [--yes]
    perpdex risk plot   [--prices data/prices.csv] [--book PATH] [--out-dir plots]

`design` and `plot` work offline. `diff --against chain` and `push` connect to
`--network` (ape network choice, default ethereum:local:node) and read the deployment
manifest deployments/<key>.json (or `--deployment PATH|KEY`); `push` signs with
`--account` (ape alias, or test:N; default test:0 on local networks), which needs the
clearinghouse's RISK_ROLE. The root `perpdex --network/--account/--deployment` options
apply when these are not given here.

Mount on the root app with `app.add_typer(risk.app, name="risk")`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perpdex.config import ROOT, load_risk, load_system
from perpdex.errors import ConfigError, DeploymentNotFound, PerpdexError
from perpdex.risk import backtest, governance
from perpdex.risk.diff import diff_books, ratio_table, scenario_table, summary_line
from perpdex.risk.history import DEFAULT_PRICES, load_prices
from perpdex.risk.scenarios import Design, DesignParams, book_yaml, design, load_book
from perpdex.sdk import riskbook
from perpdex.sdk.riskbook import RiskBook

app = typer.Typer(
    name="risk",
    help="Design, compare and publish the risk book (portfolio-margin stress scenarios).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DEFAULT_NETWORK = "ethereum:local:node"
DEFAULT_BOOK = Path("book.yaml")
DEFAULT_BASE = ROOT / "config" / "risk.yaml"
TEST_PREFIX = "test:"


def _out() -> Console:
    return Console(highlight=False)


def _fail(message: str) -> NoReturn:
    line = " ".join(message.split())
    Console(stderr=True, highlight=False).print(
        f"[bold red]error:[/] [red]{escape(line)}[/]", soft_wrap=True
    )
    raise typer.Exit(code=1)


def _first_sentence(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()).split(". ")[0].rstrip(".") or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextmanager
def _errors() -> Iterator[None]:
    """PerpdexError and ape errors -> one red line and exit code 1."""
    from ape.exceptions import ApeException

    try:
        yield
    except PerpdexError as e:
        _fail(str(e))
    except ApeException as e:
        text = _first_sentence(e)
        _fail(
            f"{text}; check that --network reaches the chain of the deployment and that "
            "--account can sign there"
        )


# --- shared options -------------------------------------------------------------------------

PricesOpt = Annotated[
    Path, typer.Option("--prices", help="Daily close CSV (default: the synthetic history).")
]
BookOpt = Annotated[
    Path, typer.Option("--book", "-b", help="Risk book YAML (config/risk.yaml layout).")
]
BaseOpt = Annotated[
    Path,
    typer.Option("--base", help="Book whose margin ratios the design keeps and aligns to."),
]
NetworkOpt = Annotated[
    str | None,
    typer.Option("--network", "-n", help="ape network choice (default ethereum:local:node)."),
]
AccountOpt = Annotated[
    str | None,
    typer.Option("--account", "-a", help="ape account alias or test:N (default test:0 locally)."),
]
DeploymentOpt = Annotated[
    str | None,
    typer.Option("--deployment", "-d", help="Manifest path or network key."),
]


def _show(path: Path) -> str:
    """`path` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _symbols() -> list[str]:
    return [m.symbol for m in load_system().markets]


def _base_book(path: Path, symbols: list[str]) -> RiskBook:
    if path.resolve() == DEFAULT_BASE.resolve():
        try:
            return riskbook.from_config(load_risk(path), symbols)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}; add the market to its `markets:` section") from e
    return load_book(path, symbols)


# --- chain connection (same conventions as `ape run deploy` and the SDK) --------------------


@dataclass
class DeploymentHandles:
    """The clearinghouse of a deployment under its hot-path and admin ABIs."""

    ch: Any
    admin: Any
    symbols: list[str]
    manifest: Path
    network: str


def _root_value(ctx: typer.Context, name: str) -> str | None:
    """A global option of the root `perpdex` command, if it was given."""
    root = ctx.find_root()
    value = getattr(root.obj, name, None)
    return value if isinstance(value, str) else None


def _same_network(active: str, requested: str) -> bool:
    have, want = active.split(":"), requested.split(":")
    return len(want) <= len(have) and all(w in ("", h) for w, h in zip(want, have, strict=False))


def _connect(stack: ExitStack, network: str) -> None:
    """Use the connected provider if it is `network` (tests, ape console); else connect."""
    from ape import networks
    from ape.exceptions import ApeException

    active = networks.active_provider
    if active is not None and active.is_connected and _same_network(active.network_choice, network):
        return
    try:
        stack.enter_context(networks.parse_network_choice(network, disconnect_after=True))
    except (ApeException, OSError) as e:
        raise PerpdexError(
            f"cannot connect to {network} ({_first_sentence(e)}); start the node "
            "it points at (ethereum:local:node: anvil on port 8545, or `make demo`) or pick "
            "another --network (`ape networks list`)"
        ) from e


def _manifest(spec: str | None) -> Path:
    from perpdex.deploy import manifest_path, network_key

    if spec is None:
        return manifest_path(network_key())
    if spec.endswith(".json") or "/" in spec or "\\" in spec:
        return Path(spec).expanduser()
    return manifest_path(spec)


def open_chain(stack: ExitStack, network: str, deployment: str | None) -> DeploymentHandles:
    from perpdex.sdk.manifest import check_chain

    _connect(stack, network)
    path = _manifest(deployment)
    if not path.exists():
        raise DeploymentNotFound(
            f"no deployment manifest at {path}; deploy first (`ape run deploy --network "
            f"{network}`) or pass --deployment <manifest path>"
        )
    try:
        data = json.loads(path.read_text())
        address = str(data["contracts"]["clearinghouse"])
        symbols = [str(s) for s in data["markets"]]
        chain_id = int(data["chain_id"])
    except (KeyError, TypeError, ValueError) as e:
        raise DeploymentNotFound(
            f"{path} is incomplete (missing or bad field {e}); re-run `ape run deploy`"
        ) from e
    # chain id, genesis hash (a restarted anvil keeps the chain id) and code
    genesis = data.get("genesis")
    check_chain(path, chain_id, str(genesis) if genesis else None, address)
    return DeploymentHandles(
        ch=governance.contract_at("Clearinghouse", address),
        admin=governance.contract_at("ClearinghouseAdmin", address),
        symbols=symbols,
        manifest=path,
        network=network,
    )


def load_signer(alias: str | None) -> Any:
    from ape import accounts, networks
    from ape.exceptions import ApeException

    if alias is None:
        if not networks.provider.network.is_dev:
            raise PerpdexError(
                "this network needs a signer: pass --account <ape alias> holding RISK_ROLE "
                "(list them with `ape accounts list`)"
            )
        alias = f"{TEST_PREFIX}0"
    if alias.startswith(TEST_PREFIX):
        n = alias.removeprefix(TEST_PREFIX)
        if not n.isdigit():
            raise PerpdexError(f"{alias!r} is not a test account; write it as test:N")
        return accounts.test_accounts[int(n)]
    try:
        acct = accounts.load(alias)
    except (ApeException, IndexError, KeyError) as e:
        raise PerpdexError(
            f"no ape account named {alias!r}; import it with `ape accounts import {alias}`"
        ) from e
    if f"APE_ACCOUNTS_{alias}_PASSPHRASE" in os.environ:
        acct.set_autosign(True)
    return acct


# --- tables -------------------------------------------------------------------------------------


def _design_tables(d: Design, book: RiskBook, console: Console) -> None:
    est, p = d.estimate, d.params
    stats = Table(
        title=f"{est.method} estimate, {est.n_obs} daily returns {est.first_date}..{est.last_date}",
        title_justify="left",
    )
    stats.add_column("market")
    stats.add_column("vol / yr", justify="right")
    stats.add_column(f"σ {p.horizon_days}d", justify="right")
    for s in est.symbols:
        stats.add_column(f"ρ {s}", justify="right")
    for i, s in enumerate(est.symbols):
        stats.add_row(
            s,
            f"{est.annual_vol()[i]:.1%}",
            f"{d.horizon_vol[i]:.2%}",
            *(f"{est.corr[i, j]:.2f}" for j in range(len(est.symbols))),
        )
    console.print(stats)
    pcs = Table(title="principal components of the horizon covariance", title_justify="left")
    pcs.add_column("component")
    pcs.add_column("explained", justify="right")
    pcs.add_column("σ", justify="right")
    for s in est.symbols:
        pcs.add_column(s, justify="right")
    for j, lam in enumerate(d.eigenvalues):
        pcs.add_row(
            f"pc{j + 1}",
            f"{d.explained[j]:.1%}",
            f"{lam**0.5:.2%}",
            *(f"{d.eigenvectors[i, j]:+.3f}" for i in range(len(est.symbols))),
        )
    console.print(pcs)
    sc = Table(
        title=f"designed scenarios: ±{p.k_sigma:g}σ over {p.horizon_days} days"
        + ("" if p.tail_quantile is None else f", tails at {p.tail_quantile:.1%}")
        + " (bp, rounded away from zero)",
        title_justify="left",
    )
    sc.add_column("#", justify="right")
    sc.add_column("scenario")
    sc.add_column("kind")
    sc.add_column("k σ", justify="right")
    for s in d.symbols:
        sc.add_column(s, justify="right")
    specs = {s.name: s for s in d.specs}
    adjusted = {(a.scenario, a.market) for a in d.adjustments}
    for k, (name, row) in enumerate(zip(book.names, book.shocks, strict=True)):
        spec = specs[name]
        cells = [
            f"[bold magenta]{x:+d}*[/]" if (name, sym) in adjusted else f"{x:+d}"
            for sym, x in zip(d.symbols, row, strict=True)
        ]
        sc.add_row(str(k), name, spec.kind, f"{spec.k:.2f}", *cells)
    console.print(sc)
    for a in d.adjustments:
        console.print(f"[magenta]* coverage:[/] {a}")
    if d.dropped:
        console.print(
            f"[yellow]dropped (over {p.max_scenarios} scenarios):[/] {', '.join(d.dropped)}"
        )


def _plan_table(
    current: RiskBook | None,
    steps: list[RiskBook] | tuple[RiskBook, ...],
    limits: governance.StepLimits,
) -> Table:
    t = Table(
        title=f"publication plan (limits: shocks {limits.shock_bps} bp, ratios "
        f"{limits.ratio_bps} bp per update)",
        title_justify="left",
    )
    t.add_column("step", justify="right")
    t.add_column("largest shock move", justify="right")
    t.add_column("largest ratio move", justify="right")
    t.add_column("scenarios", justify="right")
    for i, row in enumerate(governance.path_summary(current, steps), start=1):
        t.add_row(
            f"{i}/{len(steps)}",
            f"{row['shock_bps']} bp",
            f"{row['ratio_bps']} bp",
            str(row["n_scenarios"]),
        )
    return t


# --- commands -----------------------------------------------------------------------------------


@app.command("design")
def design_cmd(
    prices: PricesOpt = DEFAULT_PRICES,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the book here (YAML).")
    ] = DEFAULT_BOOK,
    base: BaseOpt = DEFAULT_BASE,
    horizon: Annotated[int, typer.Option(min=1, help="Close-out horizon in days.")] = 2,
    k: Annotated[
        float, typer.Option("--k", min=0.1, help="Move size in standard deviations.")
    ] = 3.5,
    tail_quantile: Annotated[
        float,
        typer.Option(help="Raise k to this empirical quantile of the moves; 0 turns it off."),
    ] = 0.995,
    ewma: Annotated[
        float | None, typer.Option(help="EWMA decay (e.g. 0.94) instead of equal weights.")
    ] = None,
    window: Annotated[int | None, typer.Option(min=2, help="Use the last N days only.")] = None,
    max_scenarios: Annotated[int, typer.Option(min=2, max=16)] = 16,
    z: Annotated[
        float,
        typer.Option(
            "--z", min=0.01, help="Concentration add-on z * sqrt(n' S n) the components cover."
        ),
    ] = 2.33,
    align: Annotated[
        bool,
        typer.Option(help="Order scenarios to minimise the governance steps from --base."),
    ] = True,
) -> None:
    """Derive a scenario set from price history (equal moves, single-market moves and
    concentration scenarios from the covariance), enforce the coverage rules and write
    the book."""
    with _errors():
        console = _out()
        symbols = _symbols()
        series = load_prices(prices)
        base_book = _base_book(base, symbols)
        params = DesignParams(
            horizon_days=horizon,
            k_sigma=k,
            tail_quantile=tail_quantile or None,
            ewma_lambda=ewma,
            window=window,
            max_scenarios=max_scenarios,
            z=z,
        )
        d = design(series, base_book, symbols, params)
        book = governance.align_to(d.book, base_book) if align else d.book
        problems = governance.policy_problems(book, len(symbols))
        if problems:
            raise PerpdexError(
                f"the designed book would be refused ({problems[0]}); check the margin ratios "
                f"in {base}"
            )
        if series.synthetic:
            console.print(
                f"[yellow]note:[/] {_show(prices)} is SYNTHETIC (generated, not market data); "
                "design from real closes before using the book in production"
            )
        _design_tables(d, book, console)
        diff = diff_books(base_book, book, symbols, by="position")
        console.print(scenario_table(diff, title=f"{base.name} → designed book, by position"))
        if diff.ratios:
            console.print(ratio_table(diff))
        console.print(summary_line(diff))
        if out is not None:
            header = [
                f"Risk book designed by `perpdex risk design` from {_show(prices)}",
                f"({series.n_days} days {series.dates[0]}..{series.dates[-1]}"
                + (", SYNTHETIC data)" if series.synthetic else ")"),
                f"{d.estimate.method}; horizon {horizon} days; k {k:g} sd; tail quantile "
                f"{params.tail_quantile}; z {z:g}; ratios from {base.name}.",
                "Publish in bounded steps with `perpdex risk push --book <this file>`.",
            ]
            notes = {s.name: s.note for s in d.specs}
            grouped: dict[tuple[str, str], list[str]] = {}
            for a in d.adjustments:
                why = a.reason or "coverage"
                grouped.setdefault((a.scenario, why), []).append(f"{a.market} {a.after_bps:+d}")
            for (name, why), cells in grouped.items():
                notes[name] += f" [{', '.join(cells)} bp: {why}]"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(book_yaml(book, symbols, header, notes))
            console.print(
                f"[green]✓[/] wrote {book.n_scenarios} scenarios to {out}; next: "
                f"`perpdex risk diff --book {out}` then `perpdex risk push --book {out}`"
            )


@app.command("diff")
def diff_cmd(
    ctx: typer.Context,
    book: BookOpt = DEFAULT_BOOK,
    against: Annotated[
        str,
        typer.Option(
            help="`chain` (the published book) or a YAML book path, e.g. config/risk.yaml."
        ),
    ] = "chain",
    by: Annotated[
        str, typer.Option(help="Match scenarios by `position` (as the contract does) or `name`.")
    ] = "position",
    all_rows: Annotated[bool, typer.Option("--all/--changed", help="Show unchanged rows.")] = True,
    network: NetworkOpt = None,
    deployment: DeploymentOpt = None,
) -> None:
    """Show what changes when BOOK replaces the on-chain book (or another book file)."""
    with _errors(), ExitStack() as stack:
        if by not in ("position", "name"):
            raise PerpdexError(f"--by must be `position` or `name`, not {by!r}")
        console = _out()
        plan_info = None
        if against == "chain":
            net = network or _root_value(ctx, "network") or DEFAULT_NETWORK
            c = open_chain(stack, net, deployment or _root_value(ctx, "deployment"))
            symbols = c.symbols
            new = load_book(book, symbols)
            old = governance.read_book(c.ch)
            label = f"on-chain book (version {c.ch.risk_book_version()})"
            limits = governance.read_limits(c.ch)
            steps = governance.plan_path(old, new, limits, int(c.ch.market_count()))
            plan_info = (old, steps, limits)
            if old is None:
                console.print(f"no risk book on chain yet; {book} would be published in one step")
                return
        else:
            symbols = _symbols()
            old = _base_book(Path(against), symbols)
            new = load_book(book, symbols)
            label = against
        d = diff_books(old, new, symbols, by=by)
        console.print(scenario_table(d, title=f"{label} → {book} (by {by})", all_rows=all_rows))
        if d.ratios:
            console.print(ratio_table(d))
        console.print(summary_line(d))
        if plan_info is not None:
            old_book, steps, limits = plan_info
            if steps:
                console.print(_plan_table(old_book, steps, limits))
                console.print(f"publish with `perpdex risk push --book {book}`")
            else:
                console.print("[green]the chain already holds this book[/]")


def run_push(
    console: Console,
    chain_handles: Any,
    book: RiskBook,
    sender: Any,
    symbols: list[str],
    yes: bool,
    book_label: str = "the book",
) -> list[Any]:
    """Plan, show, confirm (unless `yes`) and send; shared by `perpdex risk push` and
    `ape run risk_push`."""
    problems = governance.policy_problems(book, len(symbols))
    if problems:
        raise PerpdexError(
            f"{book_label} breaks the coverage rules ({problems[0]}"
            + ("" if len(problems) == 1 else f"; +{len(problems) - 1} more")
            + "); design it with `perpdex risk design`"
        )
    plan = governance.plan_push(chain_handles, book)
    if not plan.steps:
        console.print(f"[green]✓[/] the chain already holds {book_label}; nothing to send")
        return []
    if plan.current is not None:
        d = diff_books(plan.current, book, symbols, by="position")
        console.print(
            scenario_table(
                d, title=f"on-chain (version {plan.version}) → {book_label}", all_rows=False
            )
        )
        if d.ratios:
            console.print(ratio_table(d))
        console.print(summary_line(d))
    console.print(_plan_table(plan.current, plan.steps, plan.limits))
    governance.check_sender(chain_handles, sender)
    if not yes and not typer.confirm(f"send {len(plan.steps)} transaction(s)?", default=False):
        raise PerpdexError("cancelled; nothing was sent (pass --yes to skip the question)")

    def on_step(i: int, n: int, step: RiskBook, receipt: Any) -> None:
        console.print(
            f"  step {i}/{n}: {receipt.txn_hash}  gas {receipt.gas_used:,}  "
            f"({step.n_scenarios} scenarios)"
        )

    receipts = governance.push(chain_handles, book, sender, plan=plan, on_step=on_step)
    final = governance.read_book(chain_handles)
    if final != book:
        raise PerpdexError(
            "the steps landed but the on-chain book differs from the target; inspect it "
            "with `perpdex risk diff`"
        )
    console.print(
        f"[green]✓[/] published {book_label} in {len(receipts)} step(s); on-chain version "
        f"{plan.version + len(receipts)}"
    )
    return receipts


@app.command("push")
def push_cmd(
    ctx: typer.Context,
    book: BookOpt = DEFAULT_BOOK,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking.")] = False,
    network: NetworkOpt = None,
    account: AccountOpt = None,
    deployment: DeploymentOpt = None,
) -> None:
    """Publish BOOK on chain in steps that each respect the contract's step limits."""
    with _errors(), ExitStack() as stack:
        console = _out()
        net = network or _root_value(ctx, "network") or DEFAULT_NETWORK
        c = open_chain(stack, net, deployment or _root_value(ctx, "deployment"))
        target = load_book(book, c.symbols)
        sender = load_signer(account or _root_value(ctx, "account"))
        run_push(console, c.ch, target, sender, c.symbols, yes, str(book))


@app.command("check")
def check_cmd(
    prices: PricesOpt = DEFAULT_PRICES,
    book: Annotated[
        Path, typer.Option("--book", "-b", help="Risk book YAML (default config/risk.yaml).")
    ] = DEFAULT_BASE,
    books: Annotated[
        Path | None,
        typer.Option("--books", help="YAML `books: {name: {SYMBOL: size}}` to check."),
    ] = None,
    position: Annotated[
        list[str] | None,
        typer.Option("--position", "-p", help="SYMBOL=SIZE of one ad-hoc book (repeat)."),
    ] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Window length in days.")] = 2,
    quantile: Annotated[
        float,
        typer.Option(
            help="Tail of the window losses held against the requirement (the design's "
            "99.5%); 1 is the worst window."
        ),
    ] = 0.995,
    against: Annotated[
        str,
        typer.Option(help="Requirement the tail loss must stay within: initial or maintenance."),
    ] = "initial",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Also exit 1 when the isolated ratios alone are thin (no discount)."
        ),
    ] = False,
    fail: Annotated[
        bool, typer.Option("--fail/--no-fail", help="Exit 1 when any book is flagged.")
    ] = True,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="Also search every book direction at $20k/$100k/$1M gross for the worst "
            "tail loss against the portfolio requirement, and check that book too.",
        ),
    ] = True,
) -> None:
    """Check books against every HORIZON-day window of the price history: flag any
    discounted book whose tail loss (QUANTILE of the windows) exceeds its portfolio
    requirement, and report every book whose worst window exceeds its maintenance margin.
    Besides the books shown, a seeded search over the directions of all markets finds the
    book the requirement covers worst and checks it as one more row."""
    with _errors():
        console = _out()
        symbols = _symbols()
        series = load_prices(prices)
        rb = _base_book(book, symbols)
        shown: dict[str, dict[str, float]] = {}
        if books is not None:
            shown.update(backtest.load_books(books))
        if position:
            legs: dict[str, float] = {}
            for p in position:
                sym, size = backtest.parse_position(p)
                legs[sym] = size
            shown["--position"] = legs
        if not shown:
            shown = dict(backtest.DEFAULT_BOOKS)
        results = backtest.check_books(rb, shown, symbols, series, horizon, quantile, against)
        found = None
        if search:
            found = backtest.search_worst(rb, symbols, series, horizon, quantile, against)
            results.append(
                backtest.check_book(
                    found.label(symbols),
                    rb,
                    found.sizes,
                    symbols,
                    series,
                    horizon,
                    quantile,
                    against,
                )
            )
        if series.synthetic:
            console.print(
                f"[yellow]note:[/] {_show(prices)} is SYNTHETIC (generated, not market data)"
            )
        level = "IM" if against == "initial" else "MM"
        tail = "worst" if quantile >= 1 else f"{quantile:.1%}"
        t = Table(
            title=f"{horizon}-day losses over {results[0].windows} windows ({_show(book)}): "
            f"{tail} loss vs {level}, worst window vs MM"
        )
        for col in (
            "book",
            "gross",
            "IM iso",
            "IM port",
            "MM port",
            f"{tail} loss",
            f"windows > {level} port",
            "worst loss",
            "worst window",
            "windows > MM port",
            "flag",
        ):
            t.add_column(
                col, justify="left" if col in ("book", "worst window", "flag") else "right"
            )
        for r in results:
            if r.portfolio_only:
                flag = "[red]OVER (portfolio only)[/]"
            elif r.flagged:
                flag = "[red]OVER (portfolio, ratios thin too)[/]"
            elif r.ratios_thin:
                flag = "[yellow]ratios thin (no discount)[/]"
            elif r.uncovered:
                flag = "[yellow]over (no discount)[/]"
            else:
                flag = "[green]ok[/]"
            over = r.windows_over_im if against == "initial" else r.windows_over_mm
            t.add_row(
                escape(r.name),
                f"{r.gross:,.0f}",
                f"{r.isolated_im:,.0f}",
                f"{r.portfolio_im:,.0f}",
                f"{r.portfolio_mm:,.0f}",
                f"{r.tail_loss:,.0f}",
                f"{over}",
                f"{r.worst_loss:,.0f}",
                f"{r.worst_start}..{r.worst_end}",
                f"{r.windows_over_mm}",
                flag,
            )
        console.print(t)
        if found is not None:
            sizes = ", ".join(f"{k}={v:.6g}" for k, v in found.sizes.items())
            console.print(
                f"search: {found.evaluated:,} books over every direction of "
                f"{', '.join(symbols)}; worst {tail} loss / portfolio {level} "
                f"{found.tail_ratio:.2f} (capped at isolated {found.ratio:.2f}) at "
                f"{escape(sizes)}"
            )
        worst_mm = [r.name for r in results if r.worst_over_mm]
        if worst_mm:
            console.print(
                f"stress: {len(worst_mm)} of {len(results)} book(s) lose more than their "
                f"portfolio maintenance margin in their worst {horizon}-day window: "
                + ", ".join(escape(n) for n in worst_mm)
            )
        thin = [r.name for r in results if r.ratios_thin and not r.flagged]
        if thin:
            console.print(
                f"[yellow]ratios:[/] the isolated requirement of {', '.join(map(escape, thin))} "
                f"is below its {tail} {horizon}-day loss too (no portfolio discount: the "
                "imr_min, not the scenarios)"
            )
        flagged = [r for r in results if r.flagged]
        if flagged:
            only = [r.name for r in flagged if r.portfolio_only]
            console.print(
                f"[red]{len(flagged)} of {len(results)} discounted book(s) lose more than "
                f"their portfolio {level} in the {tail} {horizon}-day window[/]"
                + (f"; the portfolio discount alone explains: {', '.join(only)}" if only else "")
            )
        else:
            console.print(
                f"[green]✓[/] every discounted book's portfolio {level} covers its {tail} "
                f"{horizon}-day loss"
            )
        if fail and (flagged or (strict and thin)):
            raise typer.Exit(1)


@app.command("plot")
def plot_cmd(
    prices: PricesOpt = DEFAULT_PRICES,
    book: Annotated[
        Path | None,
        typer.Option("--book", "-b", help="Book to chart (default: design one from --prices)."),
    ] = None,
    base: BaseOpt = DEFAULT_BASE,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the PNG files.")] = Path(
        "plots"
    ),
    ewma: Annotated[float | None, typer.Option(help="EWMA decay for the heatmap.")] = None,
) -> None:
    """Write correlation.png (heatmap) and scenarios.png (shocks against ±imr_min)."""
    with _errors():
        from perpdex.risk.correlation import estimate
        from perpdex.risk.plots import correlation_heatmap, scenario_chart

        console = _out()
        symbols = _symbols()
        series = load_prices(prices).select(symbols)
        base_book = _base_book(base, symbols)
        if book is None:
            chart_book = design(series, base_book, symbols, DesignParams(ewma_lambda=ewma)).book
            title = f"designed from {prices.name}"
        else:
            chart_book = load_book(book, symbols)
            title = str(book)
        heat = correlation_heatmap(estimate(series, ewma), out_dir / "correlation.png")
        bars = scenario_chart(
            chart_book,
            symbols,
            out_dir / "scenarios.png",
            title=title,
            compare=base_book,
            compare_title=base.name,
        )
        console.print(f"[green]✓[/] wrote {heat} and {bars}")
