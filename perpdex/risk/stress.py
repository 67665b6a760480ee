"""Historical and scenario stress of many accounts at once (`perpdex stress`).

Read this first if you touch the stress:
- `load_paths` reads data/crash_paths.csv (real daily closes of BTC, ETH and SOL in five
  crash periods, sources in its header) and refuses a malformed file: a missing day, a
  duplicate, a price that is not a positive number, a symbol column that is not a ticker,
  a symbol present on some days of a period only.
- `AccountBook` holds A accounts over M markets as float64 arrays: sizes, secondary
  collateral priced by each market, equity now, margin mode; plus the risk book (ratios and
  the on-chain scenario set). `book_from_snapshots` builds one from SDK snapshots (chain),
  `load_book_file` from a JSON file (offline; `BOOK_FILE_FORMAT`).
- `evaluate(book, multipliers)` revalues every account at K price vectors (each market's
  mark times a multiplier) at once: P&L, equity, the initial and maintenance requirements
  with margin.vy's formulas (as `perpdex.sdk.math.scan`: isolated = notional x (imr_min +
  imr_slope x |size| / margin_scale); portfolio = min(isolated, max(worst scenario loss,
  floor x gross) + size add-on); maintenance = maintenance_ratio x initial), the health
  (equity / maintenance) and whether it is liquidatable (equity < maintenance, the
  Clearinghouse's test). numpy over accounts x vectors; no Python loop per account.
- float64 is exact to ~1e-15 relative; where an account's equity and maintenance after a
  move lie within `EXACT_BAND` of each other the verdict could differ from the chain's by
  wei rounding, so `recheck` re-derives those cells with the wei-exact mirror (pm.scan on
  the moved Snapshot) whenever the snapshots are at hand (chain mode).
- The historical replay holds every position constant and moves each market by its
  symbol's close-to-close path from the period's first day (no funding, no trading, no
  liquidation cascade); a market with no figure in a period moves like its proxy.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perpdex.config import ROOT, load_risk
from perpdex.constants import BPS, WAD
from perpdex.errors import PerpdexError
from perpdex.sdk.math.margin import RiskBook

if TYPE_CHECKING:
    from perpdex.sdk.math.views import Snapshot

DEFAULT_PATHS = ROOT / "data" / "crash_paths.csv"
DEFAULT_PROXY = "ETH"
EXACT_BAND = 1e-9  # relative gap |equity - maintenance| / maintenance re-checked exactly
CHUNK = 4096  # accounts per block of the (accounts x vectors x markets) tensor
TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,15}$")

BOOK_FILE_FORMAT = (
    'a JSON object: {"prices": {"BTC": 100000, "ETH": 3500, "SOL": 180}, '
    '"risk_book": "config/risk.yaml" (optional), "accounts": [{"id": "trend", '
    '"portfolio": true, "equity": 20000, "positions": {"BTC": 0.5, "ETH": -2}, '
    '"collateral": {"ETH": 1.0} (optional, units after haircut)}]}'
)


class StressError(PerpdexError):
    """The stress cannot run on these inputs (paths, book file, options)."""


# --- crash paths ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPath:
    """One crash period: daily closes, a column per symbol (NaN: no figure this period)."""

    period: str
    label: str
    dates: tuple[str, ...]
    symbols: tuple[str, ...]
    closes: np.ndarray  # (days, symbols)

    @property
    def n_days(self) -> int:
        return len(self.dates)

    def has(self, symbol: str) -> bool:
        i = self.symbols.index(symbol)
        return bool(np.all(np.isfinite(self.closes[:, i])))

    def moves(self, symbol: str) -> np.ndarray:
        """Close over the first close, every day (day 0 is 1.0)."""
        col = self.closes[:, self.symbols.index(symbol)]
        return np.asarray(col / col[0])


def load_paths(path: Path | str = DEFAULT_PATHS) -> dict[str, CrashPath]:
    """The crash periods of a paths file by period id, in file order; see `parse_paths`."""
    p = Path(path)
    if not p.exists():
        raise StressError(
            f"no crash paths at {p}; pass --paths FILE or restore data/crash_paths.csv"
        )
    return parse_paths(p.read_text(), str(p))


def parse_paths(text: str, source: str = "<text>") -> dict[str, CrashPath]:
    """`period,label,date,SYM...` rows (comments `#`) -> periods. Refuses a gap (a day
    missing inside a period), a duplicate or unordered date, a bad ticker, a price that is
    not a positive number, and a symbol given on some days of a period but not all."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise StressError(f"{source}: no rows; the header is period,label,date,SYMBOL,...")
    rows = list(csv.reader(lines))
    head = [c.strip() for c in rows[0]]
    if head[:3] != ["period", "label", "date"] or len(head) < 4:
        raise StressError(
            f"{source}: the header must be period,label,date then one column per symbol "
            f"(e.g. period,label,date,BTC,ETH,SOL), not {','.join(head)}"
        )
    symbols = tuple(head[3:])
    for s in symbols:
        if not TICKER.match(s):
            raise StressError(
                f"{source}: column {s!r} is not a ticker symbol (upper-case letters and "
                "digits, e.g. BTC); rename it"
            )
    if len(set(symbols)) != len(symbols):
        raise StressError(f"{source}: a symbol column appears twice in {','.join(symbols)}")
    grouped: dict[str, list[tuple[int, list[str]]]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(head):
            raise StressError(
                f"{source}: data row {n} has {len(row)} cells, the header {len(head)}; "
                "leave an empty cell for a symbol with no figure"
            )
        grouped.setdefault(row[0].strip(), []).append((n, [c.strip() for c in row]))
    out: dict[str, CrashPath] = {}
    for period, items in grouped.items():
        if not period:
            raise StressError(f"{source}: data row {items[0][0]} has no period id")
        dates: list[str] = []
        values = np.full((len(items), len(symbols)), np.nan)
        prev: dt.date | None = None
        for i, (n, row) in enumerate(items):
            try:
                day = dt.date.fromisoformat(row[2])
            except ValueError:
                raise StressError(
                    f"{source}: row {n}: {row[2]!r} is not a date (write YYYY-MM-DD)"
                ) from None
            if prev is not None and day != prev + dt.timedelta(days=1):
                what = "repeats or goes back" if day <= prev else "skips a day"
                raise StressError(
                    f"{source}: period {period} {what} at row {n} ({prev} then {day}); a path "
                    "must be consecutive daily closes: add the missing day or split the period"
                )
            prev = day
            dates.append(day.isoformat())
            for j, cell in enumerate(row[3:]):
                if not cell:
                    continue
                try:
                    v = float(cell)
                except ValueError:
                    v = float("nan")
                if not np.isfinite(v) or v <= 0:
                    raise StressError(
                        f"{source}: row {n}: {symbols[j]} {cell!r} is not a positive price"
                    )
                values[i, j] = v
        for j, s in enumerate(symbols):
            given = np.isfinite(values[:, j])
            if given.any() and not given.all():
                missing = [d for d, g in zip(dates, given, strict=True) if not g]
                raise StressError(
                    f"{source}: period {period} has {s} on some days but not on "
                    f"{', '.join(missing)}: fill the gap or leave {s} empty for the whole period"
                )
        if len(items) < 2:
            raise StressError(f"{source}: period {period} has one day; a path needs two or more")
        labels = {row[1] for _, row in items}
        out[period] = CrashPath(period, items[0][1][1], tuple(dates), symbols, values)
        if len(labels) != 1:
            raise StressError(f"{source}: period {period} has several labels: {sorted(labels)}")
    return out


def select_periods(paths: Mapping[str, CrashPath], wanted: Sequence[str]) -> list[CrashPath]:
    """The named periods (all when `wanted` is empty); an unknown name is refused."""
    if not wanted:
        return list(paths.values())
    unknown = [w for w in wanted if w not in paths]
    if unknown:
        raise StressError(
            f"unknown period {', '.join(unknown)}; the paths file has {', '.join(paths)}"
        )
    return [paths[w] for w in wanted]


def parse_proxies(
    text: str | None, markets: Sequence[str], path_symbols: Sequence[str]
) -> dict[str, str]:
    """`SOL=ETH,X3=BTC` -> {market: path symbol}. Unknown names are refused."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        name, sep, proxy = (x.strip().upper() for x in item.partition("="))
        if not sep or not name or not proxy:
            raise StressError(f"--proxy {item!r}: write MARKET=SYMBOL, e.g. SOL=ETH")
        if name not in markets:
            raise StressError(f"--proxy: {name} is not a market ({', '.join(markets)})")
        if proxy not in path_symbols:
            raise StressError(
                f"--proxy: {proxy} is not in the paths file ({', '.join(path_symbols)})"
            )
        out[name] = proxy
    return out


def path_multipliers(
    path: CrashPath, markets: Sequence[str], proxies: Mapping[str, str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """(days x markets) price multipliers of `path` for `markets`, and notes on the markets
    moved by a proxy. A market without figures in the period moves like its proxy
    (`proxies`, else ETH, else the first symbol with figures)."""
    proxies = dict(proxies or {})
    mult = np.ones((path.n_days, len(markets)))
    notes: list[str] = []
    present = [s for s in path.symbols if path.has(s)]
    if not present:
        raise StressError(f"period {path.period} has no symbol with figures")
    for m, sym in enumerate(markets):
        if sym in path.symbols and path.has(sym):
            mult[:, m] = path.moves(sym)
            continue
        proxy = proxies.get(sym) or (DEFAULT_PROXY if DEFAULT_PROXY in present else present[0])
        if not path.has(proxy):
            raise StressError(
                f"period {path.period}: {sym}'s proxy {proxy} has no figures either; "
                f"choose one of {', '.join(present)} with --proxy {sym}=SYMBOL"
            )
        mult[:, m] = path.moves(proxy)
        why = "not in the file" if sym not in path.symbols else "no figures in this period"
        notes.append(f"{path.period}: {sym} moves like {proxy} ({why})")
    return mult, notes


# --- the book of accounts ---------------------------------------------------------------------


@dataclass(frozen=True)
class AccountBook:
    """A accounts x M markets (float64, USD and base units) and the risk book."""

    ids: tuple[Any, ...]
    names: tuple[str, ...]
    markets: tuple[str, ...]
    prices: np.ndarray  # (M,) marks now
    sizes: np.ndarray  # (A, M) signed base units
    collateral: np.ndarray  # (A, M) secondary collateral units priced by market m, net of haircut
    equity: np.ndarray  # (A,) USD now
    portfolio: np.ndarray  # (A,) bool
    risk: RiskBook
    snapshots: tuple[Snapshot, ...] | None = None  # chain mode: for the exact re-check
    source: str = ""

    @property
    def n_accounts(self) -> int:
        return len(self.ids)

    @property
    def scenario_multipliers(self) -> np.ndarray:
        """(scenarios x markets) multipliers of the on-chain scenario set."""
        return np.asarray(1.0 + np.asarray(self.risk.shocks, dtype=np.float64) / BPS)


def _ratios(risk: RiskBook) -> tuple[np.ndarray, np.ndarray]:
    imr = np.array([r.imr_min_bps for r in risk.markets], dtype=np.float64) / BPS
    slope = np.array(
        [
            (r.imr_slope_bps / BPS) / (r.margin_scale / WAD) if r.margin_scale else 0.0
            for r in risk.markets
        ]
    )
    return imr, slope


def book_from_snapshots(
    snaps: Sequence[Snapshot], markets: Sequence[str], names: Sequence[str] | None = None
) -> AccountBook:
    """The accounts of `snaps` (one block each; the same deployment) as arrays: sizes and
    marks from the snapshot, equity from the SDK's margin scan (wei-exact), secondary
    collateral at its haircut, the risk book the chain publishes."""
    from perpdex.sdk import math as pm
    from perpdex.sdk.math.packing import collateral_bitmap

    if not snaps:
        raise StressError("no accounts to stress")
    first = snaps[0]
    risk = first.risk_book or (first.book.decode() if first.book is not None else None)
    if risk is None:
        raise StressError(
            "the deployment has no risk book published; publish one with `perpdex risk push`"
        )
    m_count = len(markets)
    sizes = np.zeros((len(snaps), m_count))
    coll = np.zeros((len(snaps), m_count))
    equity = np.zeros(len(snaps))
    portfolio = np.zeros(len(snaps), dtype=bool)
    for a, snap in enumerate(snaps):
        for m, pos in snap.positions.items():
            if pos.size and m < m_count:
                sizes[a, m] = pos.size / WAD
        cbits = collateral_bitmap(snap.header)
        for i in range(1, 16):
            if (cbits >> i) & 1 and i in snap.collaterals:
                c = snap.collaterals[i]
                coll[a, c.market] += snap.balance(i) / WAD * (WAD - c.haircut) / WAD
        equity[a] = pm.scan(snap).equity / WAD
        portfolio[a] = snap.portfolio
    prices = np.array([first.mark(m).price / WAD for m in range(m_count)])
    return AccountBook(
        ids=tuple(s.account for s in snaps),
        names=tuple(names) if names is not None else tuple(f"{s.account:#x}" for s in snaps),
        markets=tuple(markets),
        prices=prices,
        sizes=sizes,
        collateral=coll,
        equity=equity,
        portfolio=portfolio,
        risk=risk,
        snapshots=tuple(snaps),
        source=f"chain, block {first.block_number}",
    )


def load_book_file(path: Path | str, risk_book: Path | str | None = None) -> AccountBook:
    """An offline book (`BOOK_FILE_FORMAT`); the risk book from the file's `risk_book`,
    else `risk_book`, else config/risk.yaml."""
    p = Path(path)
    if not p.exists():
        raise StressError(f"no book file at {p}; write {BOOK_FILE_FORMAT}")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise StressError(f"{p} is not JSON ({e}); write {BOOK_FILE_FORMAT}") from None
    return parse_book(doc, str(p), risk_book, base=p.parent)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StressError(f"{what}: {value!r} is not a number")
    try:
        x = float(value)
    except ValueError:
        raise StressError(f"{what}: {value!r} is not a number") from None
    if not np.isfinite(x):
        raise StressError(f"{what}: {value!r} is not a finite number")
    return x


def parse_book(
    doc: Any, source: str, risk_book: Path | str | None = None, base: Path | None = None
) -> AccountBook:
    """`BOOK_FILE_FORMAT` (already decoded) -> AccountBook; every refusal names the field."""
    from perpdex.sdk import riskbook

    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
        raise StressError(f"{source}: no `prices` object; write {BOOK_FILE_FORMAT}")
    if not isinstance(doc.get("accounts"), list) or not doc["accounts"]:
        raise StressError(f"{source}: `accounts` must be a non-empty list; {BOOK_FILE_FORMAT}")
    markets = tuple(str(s).upper() for s in doc["prices"])
    prices = np.array(
        [_number(v, f"{source}: prices.{s}") for s, v in doc["prices"].items()], dtype=np.float64
    )
    if np.any(prices <= 0):
        raise StressError(f"{source}: every price must be above 0")
    rb_path = doc.get("risk_book") or risk_book or (ROOT / "config" / "risk.yaml")
    rb = Path(rb_path)
    if not rb.is_absolute() and base is not None and (base / rb).exists():
        rb = base / rb
    if not rb.exists():
        raise StressError(f"{source}: no risk book at {rb}; pass --risk-book config/risk.yaml")
    try:
        risk = riskbook.from_config(load_risk(rb), list(markets))
    except ValueError as e:
        raise StressError(f"{source}: {e}; list only markets the risk book has") from None
    n = len(doc["accounts"])
    sizes = np.zeros((n, len(markets)))
    coll = np.zeros((n, len(markets)))
    equity = np.zeros(n)
    portfolio = np.zeros(n, dtype=bool)
    ids: list[Any] = []
    for a, acct in enumerate(doc["accounts"]):
        where = f"{source}: accounts[{a}]"
        if not isinstance(acct, dict):
            raise StressError(f"{where} is not an object; {BOOK_FILE_FORMAT}")
        ids.append(acct.get("id", a))
        if "equity" not in acct:
            raise StressError(f"{where} has no `equity` (USD now)")
        equity[a] = _number(acct["equity"], f"{where}.equity")
        portfolio[a] = bool(acct.get("portfolio", False))
        for key, target in (("positions", sizes), ("collateral", coll)):
            items = acct.get(key, {})
            if not isinstance(items, dict):
                raise StressError(f"{where}.{key} must map a market to a size")
            for sym, size in items.items():
                s = str(sym).upper()
                if s not in markets:
                    raise StressError(
                        f"{where}.{key}: {sym!r} is not a market of `prices` ({', '.join(markets)})"
                    )
                target[a, markets.index(s)] = _number(size, f"{where}.{key}.{sym}")
    return AccountBook(
        ids=tuple(ids),
        names=tuple(str(i) for i in ids),
        markets=markets,
        prices=prices,
        sizes=sizes,
        collateral=coll,
        equity=equity,
        portfolio=portfolio,
        risk=risk,
        source=source,
    )


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Every account at K price vectors (arrays A x K, USD)."""

    pnl: np.ndarray
    equity: np.ndarray
    initial: np.ndarray
    maintenance: np.ndarray
    exact: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    @property
    def health(self) -> np.ndarray:
        """Equity / maintenance; +inf without a requirement."""
        with np.errstate(divide="ignore", invalid="ignore"):
            h = self.equity / self.maintenance
        return np.asarray(np.where(self.maintenance > 0, h, np.inf))

    @property
    def liquidatable(self) -> np.ndarray:
        return np.asarray(self.equity < self.maintenance)


def evaluate(book: AccountBook, multipliers: np.ndarray) -> Outcome:
    """Every account of `book` at each price vector `book.prices * multipliers[k]`."""
    mult = np.atleast_2d(np.asarray(multipliers, dtype=np.float64))
    k_count = mult.shape[0]
    a_count = book.n_accounts
    pk = mult * book.prices  # (K, M)
    dp = pk - book.prices
    pnl = (book.sizes + book.collateral) @ dp.T  # (A, K)
    imr, slope = _ratios(book.risk)
    shocks = np.asarray(book.risk.shocks, dtype=np.float64).T / BPS  # (M, N)
    floor = book.risk.floor_bps / BPS
    mmr = book.risk.maintenance_bps / BPS
    initial = np.empty((a_count, k_count))
    for lo in range(0, a_count, CHUNK):
        hi = min(lo + CHUNK, a_count)
        s = book.sizes[lo:hi]
        v = s[:, None, :] * pk[None, :, :]  # (a, K, M) position values
        absv = np.abs(v)
        addon = (absv * np.abs(s)[:, None, :]) @ slope
        iso = absv @ imr + addon
        gross = absv.sum(axis=2)
        if shocks.shape[1]:
            worst = np.maximum((-(v @ shocks)).max(axis=2), 0.0)
        else:
            worst = np.zeros_like(gross)
        port = np.minimum(iso, np.maximum(worst, floor * gross) + addon)
        initial[lo:hi] = np.where(book.portfolio[lo:hi, None], port, iso)
    return Outcome(
        pnl=pnl,
        equity=book.equity[:, None] + pnl,
        initial=initial,
        maintenance=initial * mmr,
        exact=np.zeros((a_count, k_count), dtype=bool),
    )


def moved_snapshot(snap: Snapshot, multipliers: Sequence[float]) -> Snapshot:
    """`snap` with every market's cached mark times its multiplier (rounded to the wei)."""
    markets = list(snap.markets)
    for m, x in enumerate(multipliers):
        if m < len(markets):
            ms = markets[m]
            price = round(ms.mark.price * float(x))
            markets[m] = replace(ms, mark=replace(ms.mark, price=price))
    return replace(snap, markets=tuple(markets))


def recheck(book: AccountBook, multipliers: np.ndarray, out: Outcome) -> int:
    """Re-derive, with the wei-exact mirror, the cells whose equity and maintenance lie
    within EXACT_BAND of each other (chain mode only); returns how many were re-checked."""
    if book.snapshots is None:
        return 0
    from perpdex.sdk import math as pm

    mult = np.atleast_2d(multipliers)
    gap = np.abs(out.equity - out.maintenance)
    close = gap <= EXACT_BAND * np.maximum(out.maintenance, 1.0)
    cells = np.argwhere(close & (out.maintenance > 0))
    for a, k in cells:
        scan = pm.scan(moved_snapshot(book.snapshots[a], mult[k]))
        out.equity[a, k] = scan.equity / WAD
        out.pnl[a, k] = out.equity[a, k] - book.equity[a]
        out.initial[a, k] = scan.initial / WAD
        out.maintenance[a, k] = scan.maintenance / WAD
        out.exact[a, k] = True
        # the verdict is the exact one: equity < maintenance in wei
        if scan.equity < scan.maintenance and not out.equity[a, k] < out.maintenance[a, k]:
            out.equity[a, k] = np.nextafter(out.maintenance[a, k], -np.inf)
        elif scan.equity >= scan.maintenance and out.equity[a, k] < out.maintenance[a, k]:
            out.equity[a, k] = out.maintenance[a, k]
    return len(cells)


# --- the runs the CLI reports -----------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioRun:
    """The on-chain scenario set, one instantaneous move per scenario."""

    names: tuple[str, ...]
    shocks_bps: np.ndarray  # (N, M)
    now: Outcome  # (A, 1): at today's marks
    out: Outcome  # (A, N)


@dataclass(frozen=True)
class PathRun:
    """One crash period replayed day by day (day 0 = today's marks)."""

    path: CrashPath
    multipliers: np.ndarray  # (D, M)
    out: Outcome  # (A, D)
    notes: tuple[str, ...]

    @property
    def first_liquidation_day(self) -> np.ndarray:
        """Per account, the first day index at which it is liquidatable (-1: never)."""
        liq = self.out.liquidatable
        first = np.argmax(liq, axis=1)
        return np.asarray(np.where(liq.any(axis=1), first, -1))


def run_scenarios(book: AccountBook, exact: bool = True) -> ScenarioRun:
    mult = book.scenario_multipliers
    out = evaluate(book, mult)
    now = evaluate(book, np.ones((1, len(book.markets))))
    if exact:
        recheck(book, mult, out)
        recheck(book, np.ones((1, len(book.markets))), now)
    return ScenarioRun(book.risk.names, np.asarray(book.risk.shocks), now, out)


def run_path(
    book: AccountBook,
    path: CrashPath,
    proxies: Mapping[str, str] | None = None,
    exact: bool = True,
) -> PathRun:
    mult, notes = path_multipliers(path, book.markets, proxies)
    out = evaluate(book, mult)
    if exact:
        recheck(book, mult, out)
    return PathRun(path, mult, out, tuple(notes))
