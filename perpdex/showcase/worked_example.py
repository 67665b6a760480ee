"""The worked example of portfolio margin: one $100k book, margined twice.

A trader with $100,000 of collateral runs three strategies:

1. **BTC trend**: long 3 BTC ($300,000 at $100,000): the directional view.
2. **ETH/SOL pair**: long 50 ETH ($150,000) against short 800 SOL ($120,000): ETH to
   outperform SOL. Sized by crash beta, not by dollars: the crash scenario takes 20% off
   ETH and 25% off SOL, and 20% x $150,000 = 25% x $120,000, so a crypto-wide crash leaves
   the pair flat and only the ETH/SOL spread is at risk.
3. **SOL crash hedge**: short 1,200 SOL ($180,000): protection for the BTC long without
   selling it. SOL is the high-beta coin (-25% when BTC is -15%), so 25% x $180,000 =
   15% x $300,000 offsets the BTC long in a crash; what is left is a BTC-versus-SOL view
   (BTC dominance). The same leg is what a SOL basis trade (staked spot SOL held
   elsewhere, short perp for the funding) leaves on the exchange.

Why the third leg is a SOL short and not, say, a short BTC or ETH basis leg: a
sub-account holds one position per market (BTC, ETH and SOL are listed), so a short BTC
or ETH leg would net against the BTC long or the pair's ETH long instead of standing
beside them, and the isolated-mode figure would no longer be "each strategy alone". The
SOL hedge adds to the pair's SOL short (same direction), so the account holds +3 BTC,
+50 ETH and -2,000 SOL, and every strategy keeps its full size.

As isolated legs the book needs about $90,000 (10% of BTC and ETH notional, 15% of SOL,
plus the size add-on): about $30,000 per strategy, 90% of the collateral. In portfolio
mode it needs the worst loss of the whole book over the governed scenarios: the book is
sized by crash beta, so the equal moves cost little and the binding scenario is sol-up,
SOL alone up 24% (its move widened to the 99.5% two-day historical loss; both SOL shorts
lose together), about $72,600, with the concentration scenario pc2-down (SOL +11.5%
against BTC and ETH) a close second. The saving, about $17,600, is collateral the trader
can use for a fourth strategy.

`run` opens the book twice on chain (one isolated sub-account, one portfolio sub-account,
same positions) and reads every figure back (`lens.account_summary` and
`ch.account_margin`); `render` and `markdown` draw the side-by-side tables the demo and
README show. The renderers need no chain: this module imports ape only inside `run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table

from perpdex.constants import WAD
from perpdex.errors import PerpdexError
from perpdex.units import to_units, to_wad

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = [
    "COLLATERAL_USD",
    "ISOLATED_NAME",
    "POOL_USD",
    "PORTFOLIO_NAME",
    "STRATEGIES",
    "AccountFigures",
    "LegOrderCollateral",
    "PositionFigures",
    "Strategy",
    "StrategyLeg",
    "WorkedExample",
    "ensure_pool",
    "format_usd",
    "leg_order_collateral",
    "leg_order_markdown",
    "markdown",
    "net_positions",
    "open_book",
    "read_figures",
    "render",
    "run",
]

#: Collateral each of the two sub-accounts holds (USD).
COLLATERAL_USD = Decimal(100_000)
#: Cash the liquidity vault needs so both books fit under its exposure caps (both accounts
#: push the pool's skew the same way: 6 BTC, 100 ETH, 4,000 SOL; SOL's 40% cap binds).
POOL_USD = Decimal(3_000_000)
#: Worst fill accepted per order, as a fraction of the oracle price.
SLIPPAGE = Decimal("0.02")
#: Names of the two sub-accounts `run` opens (at most 32 bytes each).
ISOLATED_NAME = "worked example: isolated"
PORTFOLIO_NAME = "worked example: portfolio"
_NONE = 2**256 - 1  # the lens's NO_SCENARIO


@dataclass(frozen=True)
class StrategyLeg:
    symbol: str
    size: Decimal  # signed base units: positive long, negative short


@dataclass(frozen=True)
class Strategy:
    name: str
    thesis: str
    legs: tuple[StrategyLeg, ...]


STRATEGIES: tuple[Strategy, ...] = (
    Strategy(
        "BTC trend",
        "directional long",
        (StrategyLeg("BTC", Decimal(3)),),
    ),
    Strategy(
        "ETH/SOL pair",
        "ETH beats SOL; crash-beta neutral (20% x $150k = 25% x $120k)",
        (StrategyLeg("ETH", Decimal(50)), StrategyLeg("SOL", Decimal(-800))),
    ),
    Strategy(
        "SOL crash hedge",
        "high-beta short against the BTC long (25% x $180k = 15% x $300k)",
        (StrategyLeg("SOL", Decimal(-1_200)),),
    ),
)


def net_positions(strategies: Sequence[Strategy] = STRATEGIES) -> dict[str, Decimal]:
    """The positions a sub-account running `strategies` holds: legs on the same market
    add up (one position per market); markets in order of first appearance, flat ones
    dropped."""
    out: dict[str, Decimal] = {}
    for s in strategies:
        for leg in s.legs:
            out[leg.symbol] = out.get(leg.symbol, Decimal(0)) + leg.size
    return {sym: size for sym, size in out.items() if size != 0}


# --- figures read from the chain --------------------------------------------------------


@dataclass(frozen=True)
class PositionFigures:
    """One position as the lens reports it (USD WAD, sizes base WAD)."""

    symbol: str
    market: int
    size: int
    mark_price: int
    notional: int
    isolated_initial: int


@dataclass(frozen=True)
class AccountFigures:
    """One sub-account's margin, USD WAD. `equity` ... `notional` come from the
    Clearinghouse's own margin scan (`account_margin`); `floor`, `addon`, `binding` and
    `scenario_losses` from `lens.account_summary`, whose own equity and requirements are
    kept in the `lens_*` fields (they equal the Clearinghouse's)."""

    account: int
    name: str
    portfolio: bool
    equity: int
    initial: int
    maintenance: int
    isolated: int
    notional: int
    floor: int
    addon: int
    binding: int | None  # scenario index with the largest loss; None if none loses
    scenario_losses: tuple[int, ...]  # per scenario, rounded up (negative: a gain)
    positions: tuple[PositionFigures, ...]
    lens_equity: int
    lens_initial: int
    lens_maintenance: int
    lens_isolated: int

    @property
    def worst_loss(self) -> int:
        return max([0, *self.scenario_losses])

    @property
    def free(self) -> int:
        """Collateral not tied up by the initial requirement."""
        return self.equity - self.initial


@dataclass(frozen=True)
class WorkedExample:
    """Both sub-accounts' figures plus what is needed to read them."""

    symbols: tuple[str, ...]  # market order on chain
    scenario_names: tuple[str, ...]
    shocks: tuple[tuple[int, ...], ...]  # shocks[k][m], basis points
    floor_bps: int
    mmr_bps: int
    collateral: int  # USD WAD deposited in each account
    strategies: tuple[Strategy, ...]
    isolated: AccountFigures
    portfolio: AccountFigures

    @property
    def saving(self) -> int:
        """Initial margin portfolio mode frees (USD WAD)."""
        return self.isolated.initial - self.portfolio.initial

    @property
    def saving_ratio(self) -> Decimal:
        return Decimal(self.saving) / Decimal(self.isolated.initial)

    @property
    def binding_name(self) -> str | None:
        k = self.portfolio.binding
        return None if k is None else self.scenario_names[k]


# --- on chain ---------------------------------------------------------------------------


def _rejected(action: str, err: Exception) -> PerpdexError:
    from perpdex.sdk.client import rejected

    return rejected(action, err)


def _pool_needed(p: Protocol, strategies: Sequence[Strategy]) -> Decimal:
    """Pool cash under which the example's two books (isolated and portfolio, open at
    once) could meet a vault exposure cap: per market, the vault's exposure today plus
    both books' legs, over the market's cap fraction, with a 10% margin. Other trading
    (an earlier demo step, a test session) may already have used part of a cap."""
    from perpdex.sdk.client import PerpdexClient

    legs: dict[str, Decimal] = {}
    for s in strategies:
        for leg in s.legs:
            legs[leg.symbol] = legs.get(leg.symbol, Decimal(0)) + abs(leg.size)
    need = Decimal(0)
    for mk in PerpdexClient.from_protocol(p).markets():
        if mk.symbol in legs and mk.max_vault_exposure > 0:
            exposure = (abs(mk.skew) + 2 * legs[mk.symbol]) * mk.mark_price
            need = max(need, exposure / mk.max_vault_exposure * Decimal("1.1"))
    return need


def ensure_pool(
    p: Protocol, lp: Any, usd: Decimal = POOL_USD, strategies: Sequence[Strategy] = STRATEGIES
) -> None:
    """Tops the liquidity vault's pool cash up to `usd`, or more if the vault's exposure
    caps need it for `strategies` (`_pool_needed`), from `lp` (test tokens minted), so the
    example's trades fit under the caps."""
    if p.vault is None:
        return
    have = Decimal(int(p.clearinghouse.pool_cash())) / WAD
    usd = max(usd, _pool_needed(p, strategies))
    if have >= usd:
        return
    units = to_units(usd - have, p.system.settlement_decimals)
    if int(p.token.balanceOf(lp)) < units:
        if not hasattr(p.token, "mint"):
            raise PerpdexError(
                f"the vault needs {usd - have:,.0f} more {p.system.settlement_symbol} of pool "
                f"cash for the example and {lp} holds less; deposit it into the vault first"
            )
        p.token.mint(lp, units, sender=lp)
    p.token.approve(p.vault, units, sender=lp)
    try:
        p.vault.deposit(units, lp, sender=lp)
    except Exception as e:
        raise _rejected("vault deposit", e) from e


def open_book(
    p: Protocol,
    trader: Any,
    name: str,
    portfolio: bool,
    strategies: Sequence[Strategy] = STRATEGIES,
    collateral: Decimal = COLLATERAL_USD,
    slippage: Decimal = SLIPPAGE,
) -> int:
    """Opens a sub-account of `trader` named `name` in the given margin mode, deposits
    `collateral` (test tokens minted to the trader if the wallet holds too few) and
    opens the net positions of `strategies` with market orders against the vault, each
    bounded to `slippage` from the oracle price. Returns the account id."""
    ch = p.clearinghouse
    units = to_units(collateral, p.system.settlement_decimals)
    if int(p.token.balanceOf(trader)) < units:
        if not hasattr(p.token, "mint"):
            raise PerpdexError(
                f"{trader} holds less than {collateral} {p.system.settlement_symbol}; fund "
                "the wallet first (the worked example mints test tokens only on mocks)"
            )
        p.token.mint(trader, units, sender=trader)
    p.token.approve(ch, units, sender=trader)
    try:
        account = int(ch.open_account(name, portfolio, sender=trader).return_value)
        p.ops.deposit(account, p.token, units, sender=trader)
    except Exception as e:
        raise _rejected(f"open {name!r}", e) from e
    for sym, size in net_positions(strategies).items():
        m = p.market_id(sym)
        price = Decimal(int(p.oracle.latest(m)[0])) / WAD
        bound = price * (1 + slippage) if size > 0 else price * (1 - slippage)
        try:
            ch.trade(account, m, to_wad(size), to_wad(bound), sender=trader)
        except Exception as e:
            raise _rejected(f"{name}: trade {size} {sym}", e) from e
    return account


def _lens(p: Protocol) -> Any:
    if p.lens is None:
        raise PerpdexError("the deployment has no lens; run `ape run deploy` again")
    return p.lens


def read_figures(p: Protocol, account: int) -> AccountFigures:
    """Every margin figure of `account`, from `ch.account_margin` and
    `lens.account_summary` (same block)."""
    from ape import chain

    ch, lens = p.clearinghouse, _lens(p)
    block = int(chain.blocks.head.number)
    m = ch.account_margin(account, block_id=block)
    v = lens.account_summary(account, block_id=block)
    binding = int(v.binding_scenario)
    symbols = p.symbols
    return AccountFigures(
        account=account,
        name=str(ch.account_name(account, block_id=block)),
        portfolio=bool(v.portfolio),
        equity=int(m[0]),
        initial=int(m[1]),
        maintenance=int(m[2]),
        isolated=int(m[3]),
        notional=int(m[4]),
        floor=int(v.floor),
        addon=int(v.addon),
        binding=None if binding == _NONE else binding,
        scenario_losses=tuple(int(x) for x in v.scenario_losses),
        positions=tuple(
            PositionFigures(
                symbol=symbols[int(q.market)],
                market=int(q.market),
                size=int(q.size),
                mark_price=int(q.mark_price),
                notional=int(q.notional),
                isolated_initial=int(q.isolated_initial),
            )
            for q in v.positions
        ),
        lens_equity=int(v.equity),
        lens_initial=int(v.initial),
        lens_maintenance=int(v.maintenance),
        lens_isolated=int(v.isolated_initial),
    )


def run(
    p: Protocol,
    trader: Any,
    lp: Any | None = None,
    *,
    strategies: Sequence[Strategy] = STRATEGIES,
    collateral: Decimal = COLLATERAL_USD,
    pool_usd: Decimal = POOL_USD,
) -> WorkedExample:
    """Opens the book twice (isolated, then portfolio sub-account of `trader`, the same
    positions) and returns both accounts' figures. With `lp`, first tops the vault's pool
    up to `pool_usd` so the trades fit its exposure caps."""
    from ape import chain

    from perpdex.sdk import riskbook
    from perpdex.sdk.math import Book

    if lp is not None:
        ensure_pool(p, lp, pool_usd, strategies)
    iso = open_book(p, trader, ISOLATED_NAME, False, strategies, collateral)
    port = open_book(p, trader, PORTFOLIO_NAME, True, strategies, collateral)
    code = bytes(chain.provider.get_code(str(p.clearinghouse.risk_book())))
    book = riskbook.decode(Book.from_code(code).data)
    return WorkedExample(
        symbols=tuple(p.symbols),
        scenario_names=book.names,
        shocks=book.shocks,
        floor_bps=book.floor_bps,
        mmr_bps=book.maintenance_bps,
        collateral=to_wad(collateral),
        strategies=tuple(strategies),
        isolated=read_figures(p, iso),
        portfolio=read_figures(p, port),
    )


# --- opening the book leg by leg or in one multi-leg order -------------------------------


@dataclass(frozen=True)
class LegOrderCollateral:
    """The collateral (USD WAD) a flat sub-account needs to open a book: leg by leg, one
    market order per leg margin-checked after its fill, for every order of the legs; and
    in one multi-leg order (`trade_multi`), checked once on the final book. Each figure is
    the least deposit every check passes with: max over the checks of (initial
    requirement - equity without the deposit), the latter being the fees and skew premium
    paid so far (negative)."""

    symbols: tuple[str, ...]  # the legs, in `legs` order
    by_order: tuple[tuple[tuple[str, ...], int], ...]  # (leg order, collateral needed)
    one_order: int

    @property
    def best(self) -> tuple[tuple[str, ...], int]:
        return min(self.by_order, key=lambda x: x[1])

    @property
    def worst(self) -> tuple[tuple[str, ...], int]:
        return max(self.by_order, key=lambda x: x[1])

    def extra(self, need: int) -> Decimal:
        """How much more than the multi-leg order `need` is, as a fraction."""
        return Decimal(need - self.one_order) / Decimal(self.one_order)


def leg_order_collateral(
    snap: Any, legs: Sequence[tuple[int, int]], symbols: Sequence[str]
) -> LegOrderCollateral:
    """`LegOrderCollateral` of opening `legs` ((market, size WAD), distinct markets;
    `symbols` by market id) from
    `snap`, a flat sub-account's `perpdex.sdk.snapshot.Snapshot` (its collateral does not
    count), by the SDK's mirror of the contracts: `pool_fill` and `scan` after each leg for
    the leg-by-leg orders (all in the snapshot's block: fill prices do not depend on the
    order, the legs being on distinct markets), `fill_multi` for the multi-leg order."""
    from itertools import permutations

    from perpdex.sdk import math as pm

    base = pm.scan(snap).equity
    names = tuple(symbols[m] for m, _ in legs)

    def short(s: pm.MarginScan) -> int:
        return max(s.initial - (s.equity - base), 0)

    by_order = []
    for order in permutations(range(len(legs))):
        cur, need = snap, 0
        for k in order:
            _, cur = pm.pool_fill(cur, legs[k][0], legs[k][1], snap.timestamp)
            need = max(need, short(pm.scan(cur)))
        by_order.append((tuple(names[k] for k in order), need))
    multi = pm.fill_multi(snap, [(m, d, None) for m, d in legs], snap.timestamp)
    return LegOrderCollateral(names, tuple(by_order), short(pm.scan(multi.after)))


# --- rendering (no chain needed) --------------------------------------------------------


def format_usd(x: int) -> str:
    """USD WAD -> whole dollars with separators (half a dollar rounds up)."""
    return f"{(Decimal(x) / WAD).quantize(Decimal(1), ROUND_HALF_UP):,}"


def _size(x: Decimal) -> str:
    """A signed size with separators and no trailing fractional zeros: +3, -1,200, +0.5."""
    whole, _, frac = f"{abs(x):,f}".partition(".")
    frac = frac.rstrip("0")
    return ("-" if x < 0 else "+") + whole + (f".{frac}" if frac else "")


def _shock(bp: int) -> str:
    return "0%" if bp == 0 else f"{bp / 100:+g}%"


def _pct(x: Decimal) -> str:
    return f"{x * 100:.1f}%"


def _strategy_rows(ex: WorkedExample) -> list[tuple[str, str, str, str]]:
    """(strategy, legs, notional at the marks, what it is for) per strategy."""
    prices = {q.symbol: Decimal(q.mark_price) / WAD for q in ex.portfolio.positions}
    rows = []
    for s in ex.strategies:
        legs = ", ".join(f"{_size(leg.size)} {leg.symbol}" for leg in s.legs)
        notional = sum(
            (abs(leg.size) * prices.get(leg.symbol, Decimal(0)) for leg in s.legs), Decimal(0)
        )
        rows.append((s.name, legs, f"{notional:,.0f}", s.thesis))
    return rows


def _comparison_rows(ex: WorkedExample) -> list[tuple[str, str, str]]:
    i, p = ex.isolated, ex.portfolio
    binding = ex.binding_name or "-"
    return [
        ("collateral", format_usd(ex.collateral), format_usd(ex.collateral)),
        ("equity after fees", format_usd(i.equity), format_usd(p.equity)),
        ("gross notional", format_usd(i.notional), format_usd(p.notional)),
        ("sum of isolated legs", format_usd(i.isolated), format_usd(p.isolated)),
        (f"worst scenario loss ({binding})", "-", format_usd(p.worst_loss)),
        (f"floor ({ex.floor_bps / 100:g}% of gross)", "-", format_usd(p.floor)),
        ("size add-on", "-", format_usd(p.addon)),
        ("initial margin", format_usd(i.initial), format_usd(p.initial)),
        (
            f"maintenance ({ex.mmr_bps / 100:g}% of initial)",
            format_usd(i.maintenance),
            format_usd(p.maintenance),
        ),
        ("free collateral", format_usd(i.free), format_usd(p.free)),
        ("initial margin saved", "-", f"{format_usd(ex.saving)} ({_pct(ex.saving_ratio)})"),
    ]


def _position_rows(ex: WorkedExample) -> list[tuple[str, str, str, str]]:
    return [
        (
            q.symbol,
            _size(Decimal(q.size) / WAD),
            format_usd(q.notional),
            format_usd(q.isolated_initial),
        )
        for q in ex.portfolio.positions
    ]


def _scenario_rows(ex: WorkedExample) -> list[tuple[str, ...]]:
    rows = []
    for k, name in enumerate(ex.scenario_names):
        shocks = [_shock(ex.shocks[k][m]) for m in range(len(ex.symbols))]
        loss = ex.portfolio.scenario_losses[k]
        mark = " <- binds" if k == ex.portfolio.binding else ""
        rows.append((name, *shocks, f"{format_usd(loss)}{mark}"))
    return rows


def render(ex: WorkedExample) -> Group:
    """The example as rich tables: the strategies, the positions the account holds, the
    two accounts side by side, and the book's loss in every scenario."""
    title = f"The book: {len(ex.strategies)} strategies on ${format_usd(ex.collateral)}"
    strategies = Table(title=title, title_justify="left")
    for col in ("strategy", "legs", "notional (USD)", "why"):
        strategies.add_column(col, justify="right" if col == "notional (USD)" else "left")
    for row in _strategy_rows(ex):
        strategies.add_row(*row)

    positions = Table(title="Positions the sub-account holds", title_justify="left")
    positions.add_column("market")
    for col in ("size", "notional (USD)", "isolated initial (USD)"):
        positions.add_column(col, justify="right")
    for row in _position_rows(ex):
        positions.add_row(*row)

    side = Table(title="Same book, two margin modes (USD)", title_justify="left")
    side.add_column("")
    side.add_column("isolated", justify="right")
    side.add_column("portfolio", justify="right")
    for label, a, b in _comparison_rows(ex):
        bold = label in ("initial margin", "initial margin saved")
        side.add_row(label, a, b, style="bold" if bold else None)

    scen = Table(title="Loss of the whole book per scenario (USD)", title_justify="left")
    scen.add_column("scenario")
    for sym in ex.symbols:
        scen.add_column(sym, justify="right")
    scen.add_column("book loss", justify="right")
    for loss_row in _scenario_rows(ex):
        scen.add_row(*loss_row, style="bold" if loss_row[-1].endswith("binds") else None)
    return Group(strategies, positions, side, scen)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    align = ["---:" if r else "---" for r in right]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(ex: WorkedExample) -> str:
    """The same tables as Markdown (README and docs/worked-example.md)."""
    parts = [
        _md(
            ("strategy", "legs", "notional (USD)", "why"),
            _strategy_rows(ex),
            (False, False, True, False),
        ),
        _md(
            ("market", "size", "notional (USD)", "isolated initial (USD)"),
            _position_rows(ex),
            (False, True, True, True),
        ),
        _md(
            ("", "isolated", "portfolio"),
            [
                (f"**{a}**" if a.startswith(("initial", "free")) else a, b, c)
                for a, b, c in _comparison_rows(ex)
            ],
            (False, True, True),
        ),
        _md(
            ("scenario", *ex.symbols, "book loss"),
            _scenario_rows(ex),
            (False, *([True] * len(ex.symbols)), True),
        ),
    ]
    return "\n\n".join(parts) + "\n"


def leg_order_markdown(books: Sequence[tuple[str, dict[str, Decimal], LegOrderCollateral]]) -> str:
    """The collateral table of docs/worked-example.md ("Opening the book: leg by leg or in
    one order"): per book (label, {symbol: size}, its `LegOrderCollateral`), what one
    multi-leg order needs and what the best and the worst leg order need leg by leg."""

    def order_cell(c: LegOrderCollateral, which: tuple[tuple[str, ...], int]) -> str:
        same = len({need for _, need in c.by_order}) == 1
        where = "any order" if same else ", ".join(which[0])
        extra = c.extra(which[1])
        more = f"; {'+' if extra >= 0 else ''}{_pct(extra)}" if which[1] != c.one_order else ""
        return f"{format_usd(which[1])} ({where}{more})"

    rows = [
        (
            ", ".join(f"{_size(size)} {sym}" for sym, size in book.items()) + f" ({label})",
            format_usd(c.one_order),
            order_cell(c, c.best),
            order_cell(c, c.worst),
        )
        for label, book, c in books
    ]
    return _md(
        ("book", "one multi-leg order", "leg by leg, best order", "leg by leg, worst order"),
        rows,
        (False, True, True, True),
    )


# --- the demo step ------------------------------------------------------------------------

#: ape test accounts the demo step uses: the example's trader and the LP who tops up the pool.
DEMO_TRADER_INDEX = 5
DEMO_LP_INDEX = 3
_FEED_DECIMALS = 8


def reset_prices(p: Protocol, who: Any) -> dict[str, Decimal]:
    """Posts every market's reference price from config/markets.yaml (BTC $100,000, ETH
    $3,000, SOL $150) on its mock feeds and refreshes the marks, so the example's figures
    are the documented ones whatever the chain did before. Mock feeds only."""
    from perpdex.config import load_system

    prices = {m.symbol: m.price for m in load_system().markets if m.symbol in p.symbols}
    for sym, usd in prices.items():
        for feed in p.feeds[sym]:
            if not hasattr(feed, "set_answer"):
                raise PerpdexError(
                    f"{sym} reads a real price feed; the worked example needs the mock "
                    "feeds of a local deployment (`make demo`)"
                )
            feed.set_answer(int(usd * 10**_FEED_DECIMALS), sender=who)
    p.ops.refresh([p.market_id(s) for s in prices], sender=who)
    return prices


def close_book(p: Protocol, trader: Any, account: int, slippage: Decimal = SLIPPAGE) -> None:
    """Closes every position of `account` with market orders and withdraws its collateral
    back to `trader`, so later demo steps start from a flat vault."""
    ch = p.clearinghouse
    for q in _lens(p).account_summary(account).positions:
        size = int(q.size)
        if size == 0:
            continue
        price = Decimal(int(p.oracle.latest(int(q.market))[0])) / WAD
        bound = price * (1 - slippage) if size > 0 else price * (1 + slippage)
        try:
            ch.trade(account, int(q.market), -size, to_wad(bound), sender=trader)
        except Exception as e:
            raise _rejected(f"close market {int(q.market)} of account {account}", e) from e
    scale = 10 ** (18 - p.system.settlement_decimals)
    units = max(int(ch.balance_of(account, 0)), 0) // scale
    if units > 0:
        try:
            p.ops.withdraw(account, p.token, units, trader, sender=trader)
        except Exception as e:
            raise _rejected(f"withdraw from account {account}", e) from e


def worked_example_step(protocol: Protocol, console: Any) -> WorkedExample:
    """The demo's worked-example step: reference prices, the book opened in an isolated
    and a portfolio sub-account, the side-by-side tables, then both books closed."""
    from ape import accounts

    wallets = accounts.test_accounts
    trader, lp = wallets[DEMO_TRADER_INDEX], wallets[DEMO_LP_INDEX]
    console.print(
        "worked example: $100k of collateral, three strategies, margined as isolated legs "
        "and as one portfolio (prices reset to BTC $100,000, ETH $3,000, SOL $150)"
    )
    reset_prices(protocol, wallets[0])
    ex = run(protocol, trader, lp)
    console.print(render(ex))
    console.print(
        f"portfolio margin needs {format_usd(ex.saving)} USD ({_pct(ex.saving_ratio)}) "
        f"less than isolated legs; binding scenario: {ex.binding_name}"
    )
    for acct in (ex.isolated.account, ex.portfolio.account):
        close_book(protocol, trader, acct)
    console.print("both worked-example books closed and withdrawn")
    return ex
