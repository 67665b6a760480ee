"""Historical check of margin: every book against the worst historical days.

For a book of positions (base units per market) at today's prices, the loss over each
overlapping `horizon`-day window of the price history is the loss of the same dollar
exposure had it been held through that window:

    loss_t = -sum_i n_i * (P_i[t + h] / P_i[t] - 1),      n_i = s_i * P_i(today)

Two figures per book:

* the *tail loss*, the `quantile` (default 99.5%) of the window losses: the confidence and
  horizon the scenarios are designed to (docs/risk-model.md section 3). The scenario loss
  sets the initial margin, so the book *passes* when its initial requirement covers the
  tail loss. A book is *flagged* when it does not and it gets a portfolio discount (the
  discount is part of what the history breaks); a book that fails even at its isolated
  requirement is reported as *ratios thin* (the governed imr_min, not the scenarios: a lone
  BTC long pays its isolated margin in either mode);
* the *worst* window against the maintenance margin (the stress report the issue asks
  for): how many windows lose more than the buffer left once the book is liquidatable.
  The sample maximum of ~1,460 overlapping fat-tailed windows is about twice the 99.5%
  quantile (BTC -24% against -13% on data/prices.csv); no ratio short of about 50% covers
  it, so it is reported, not gated on, unless asked (`--quantile 1 --against maintenance`).

Requirements use `scenarios.requirements` (the contract's formulas without the wei
rounding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perpdex.config import _load_yaml
from perpdex.errors import ConfigError
from perpdex.risk import directions
from perpdex.risk.history import PriceSeries
from perpdex.risk.scenarios import requirements
from perpdex.sdk.riskbook import RiskBook
from perpdex.units import BPS, WAD

# The books `perpdex risk check` is shown when none are given (sizes in base units at the
# history's last closes, BTC 100,000 / ETH 3,000 / SOL 150 for data/prices.csv).
DEFAULT_BOOKS: dict[str, dict[str, float]] = {
    "long BTC": {"BTC": 1},
    "worked example": {"BTC": 3, "ETH": 50, "SOL": -2000},
    "26% net long (issue 9)": {"BTC": 5.1, "ETH": -123.3333, "SOL": 800},
    "crash hedge +SOL/-BTC": {"BTC": -1.66667, "SOL": 666.667},
    "BTC/ETH pair": {"BTC": 1, "ETH": -33.3333},
    "ETH/SOL pair": {"ETH": 50, "SOL": -1000},
}


@dataclass(frozen=True)
class BookCheck:
    """One book against the history (USD)."""

    name: str
    gross: float
    isolated_im: float
    portfolio_im: float
    isolated_mm: float
    portfolio_mm: float
    worst_loss: float
    worst_start: str  # first day of the worst window
    worst_end: str
    windows: int
    windows_over_mm: int  # windows losing more than the portfolio maintenance margin
    tail_loss: float = 0.0  # the `quantile` of the window losses
    quantile: float = 0.995
    windows_over_im: int = 0  # windows losing more than the portfolio initial margin
    against: str = "initial"  # the requirement the tail loss is held against

    def _level(self, portfolio: bool) -> float:
        if self.against == "maintenance":
            return self.portfolio_mm if portfolio else self.isolated_mm
        return self.portfolio_im if portfolio else self.isolated_im

    @property
    def discounted(self) -> bool:
        """Portfolio mode charges less than the isolated sum."""
        return self.portfolio_im < self.isolated_im

    @property
    def uncovered(self) -> bool:
        """The tail loss exceeds the portfolio requirement (`against`)."""
        return self.tail_loss > self._level(True)

    @property
    def flagged(self) -> bool:
        """The tail loss exceeds the portfolio requirement of a discounted book: portfolio
        mode is part of what the history breaks."""
        return self.uncovered and self.discounted

    @property
    def ratios_thin(self) -> bool:
        """The tail loss exceeds even the isolated requirement: the governed ratios are
        thin for the history in either mode."""
        return self.tail_loss > self._level(False)

    @property
    def portfolio_only(self) -> bool:
        """Flagged, but the isolated requirement would have covered it: the portfolio
        discount alone is what the history breaks."""
        return self.flagged and not self.ratios_thin

    @property
    def worst_over_mm(self) -> bool:
        """The worst window loses more than the portfolio maintenance margin (reported)."""
        return self.worst_loss > self.portfolio_mm


def window_losses(series: PriceSeries, exposure: Sequence[float], horizon: int = 2) -> np.ndarray:
    """Loss of the dollar exposure (one per column of `series`) over every overlapping
    `horizon`-day window, oldest first."""
    if horizon < 1:
        raise ConfigError("--horizon must be at least 1 day")
    p = np.asarray(series.prices, dtype=np.float64)
    if p.shape[0] <= horizon:
        raise ConfigError(f"{p.shape[0]} days of prices are too few for {horizon}-day windows")
    moves = p[horizon:] / p[:-horizon] - 1.0
    return np.asarray(-(moves @ np.asarray(exposure, dtype=np.float64)))


def check_book(
    name: str,
    book: RiskBook,
    sizes: Mapping[str, float],
    symbols: Sequence[str],
    series: PriceSeries,
    horizon: int = 2,
    quantile: float = 0.995,
    against: str = "initial",
) -> BookCheck:
    """`sizes` (base units by symbol) under `book` against `series` (same symbols)."""
    if not 0.5 < quantile <= 1:
        raise ConfigError("--quantile must lie in (0.5, 1]; 1 is the worst window")
    if against not in ("initial", "maintenance"):
        raise ConfigError("--against must be initial or maintenance")
    unknown = sorted(set(sizes) - set(symbols))
    if unknown:
        raise ConfigError(f"book {name!r}: unknown markets {unknown}; use {list(symbols)}")
    data = series.select(tuple(symbols))
    prices = [float(x) for x in data.prices[-1]]
    vec = [float(sizes.get(s, 0.0)) for s in symbols]
    m = requirements(book, vec, prices)
    losses = window_losses(data, [v * px for v, px in zip(vec, prices, strict=True)], horizon)
    t = int(np.argmax(losses))
    return BookCheck(
        name=name,
        gross=m.gross,
        isolated_im=m.isolated,
        portfolio_im=m.portfolio,
        isolated_mm=m.maintenance_isolated,
        portfolio_mm=m.maintenance_portfolio,
        worst_loss=float(losses[t]),
        worst_start=data.dates[t],
        worst_end=data.dates[t + horizon],
        windows=int(losses.size),
        windows_over_mm=int(np.sum(losses > m.maintenance_portfolio)),
        tail_loss=float(np.quantile(losses, quantile)),
        quantile=quantile,
        windows_over_im=int(np.sum(losses > m.portfolio)),
        against=against,
    )


def check_books(
    book: RiskBook,
    books: Mapping[str, Mapping[str, float]],
    symbols: Sequence[str],
    series: PriceSeries,
    horizon: int = 2,
    quantile: float = 0.995,
    against: str = "initial",
) -> list[BookCheck]:
    return [
        check_book(n, book, s, symbols, series, horizon, quantile, against)
        for n, s in books.items()
    ]


def load_books(path: Path | str) -> dict[str, dict[str, float]]:
    """Books from YAML: `books: {name: {BTC: 3, ETH: -50}, ...}` (base units)."""
    raw = _load_yaml("books", Path(path))
    books = raw.get("books")
    if not isinstance(books, dict) or not books:
        raise ConfigError(f"{path}: expected `books: {{name: {{SYMBOL: size, ...}}, ...}}`")
    out: dict[str, dict[str, float]] = {}
    for name, legs in books.items():
        if not isinstance(legs, dict) or not legs:
            raise ConfigError(f"{path}: book {name!r} needs SYMBOL: size entries")
        try:
            out[str(name)] = {str(k): float(v) for k, v in legs.items()}
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: book {name!r}: sizes must be numbers ({e})") from e
    return out


def parse_position(text: str) -> tuple[str, float]:
    """`BTC=3` or `SOL=-2000` -> (symbol, size)."""
    sym, sep, size = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return sym.strip().upper(), float(size)
    except ValueError:
        raise ConfigError(
            f"--position {text!r}: expected SYMBOL=SIZE, e.g. BTC=3 or SOL=-2000"
        ) from None


# --- adversarial search: the worst book direction -------------------------------------------

# gross sizes (USD) the search tries: the add-on grows with size, so a direction's ratio
# depends on it a little
SEARCH_GROSS: tuple[float, ...] = (20_000.0, 100_000.0, 1_000_000.0)
SEARCH_SAMPLES = 20_000
SEARCH_SEED = 9  # issue 9; the search is deterministic, so the gate is reproducible


@dataclass(frozen=True)
class SearchResult:
    """The worst book direction found (`weights`: signed shares of gross, |w| sums to 1)."""

    weights: tuple[float, ...]
    gross: float
    sizes: dict[str, float]  # base units at the history's last closes
    ratio: float  # min(tail loss, isolated) / portfolio requirement: above 1 is flagged
    tail_ratio: float  # tail loss / portfolio requirement
    evaluated: int  # books evaluated

    def label(self, symbols: Sequence[str]) -> str:
        legs = ", ".join(
            f"{s} {w:+.1%}" for s, w in zip(symbols, self.weights, strict=True) if abs(w) >= 5e-4
        )
        return f"worst found (${self.gross:,.0f}: {legs})"


def direction_ratios(
    book: RiskBook,
    moves: np.ndarray,
    prices: np.ndarray,
    weights: np.ndarray,
    gross: float,
    quantile: float = 0.995,
    against: str = "initial",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each row of `weights` (signed shares of `gross`, markets in book order):
    (min(tail loss, isolated) / portfolio requirement, tail loss / portfolio requirement,
    discounted), vectorised `requirements`. `moves` are the window price moves (windows x markets),
    `prices` today's closes.

    The first ratio is the gate: it is above 1 exactly when the book is flagged (it gets
    a discount and its tail loss exceeds its portfolio requirement)."""
    imr = np.array([r.imr_min_bps for r in book.markets], dtype=np.float64) / BPS
    slope = np.array([r.imr_slope_bps for r in book.markets], dtype=np.float64) / BPS
    scale = np.array([r.margin_scale for r in book.markets], dtype=np.float64) / WAD
    shocks = np.asarray(book.shocks, dtype=np.float64).reshape(book.n_scenarios, -1) / BPS
    n = np.atleast_2d(np.asarray(weights, dtype=np.float64)) * gross  # dollar exposures
    notional = np.abs(n)
    addon = np.sum(notional * slope * (notional / prices) / scale, axis=1)
    iso = notional @ imr + addon
    worst = np.maximum(np.max(-(n @ shocks.T), axis=1), 0.0)
    floor = book.floor_bps / BPS * np.sum(notional, axis=1)
    port = np.minimum(iso, np.maximum(worst, floor) + addon)
    tail = directions.tail_losses(moves, n, quantile)
    if against == "maintenance":
        mmr = book.maintenance_bps / BPS
        iso, port = iso * mmr, port * mmr
    return np.minimum(tail, iso) / port, tail / port, port < iso * (1 - 1e-12)


def search_worst(
    book: RiskBook,
    symbols: Sequence[str],
    series: PriceSeries,
    horizon: int = 2,
    quantile: float = 0.995,
    against: str = "initial",
    gross: Sequence[float] = SEARCH_GROSS,
    samples: int = SEARCH_SAMPLES,
    seed: int = SEARCH_SEED,
) -> SearchResult:
    """The book, over every direction of the markets and the `gross` sizes, with the
    largest gate ratio min(tail loss, isolated) / portfolio requirement among the books
    that get a portfolio discount (a book paying isolated margin only when none does).

    Directions are signed weights on the unit L1 sphere (`directions.sphere`: every axis
    and pair of axes and `samples` seeded random ones); the best 16 per size are refined
    locally (`directions.climb`). Each evaluation is the tail of the window losses and the
    margin formulas in numpy (`direction_ratios`)."""
    if horizon < 1:
        raise ConfigError("--horizon must be at least 1 day")
    data = series.select(tuple(symbols))
    if data.n_days <= horizon:
        raise ConfigError(f"{data.n_days} days of prices are too few for {horizon}-day windows")
    moves = directions.window_moves(data.prices, horizon)
    prices = np.asarray(data.prices[-1], dtype=np.float64)
    rng = np.random.default_rng(seed)
    base = directions.sphere(len(symbols), samples, rng)
    best: tuple[float, float, np.ndarray, float] | None = None
    best_val = -1.0
    evaluated = 0
    for g in gross:

        def gate(w: np.ndarray, g: float = g) -> np.ndarray:
            nonlocal evaluated
            evaluated += w.shape[0]
            r, _, discounted = direction_ratios(book, moves, prices, w, g, quantile, against)
            # a book paying isolated margin is the ratios' business, not the scenarios':
            # it ranks below every discounted book (its ratio is at most 1 anyway)
            return np.where(discounted, r, r / 2)

        r = gate(base)
        top = base[np.argsort(r)[::-1][:16]]
        cur, val = directions.climb(gate, top, rng)
        i = int(np.argmax(val))
        if val[i] > best_val:
            best_val = float(val[i])
            r, t, _ = direction_ratios(book, moves, prices, cur[i : i + 1], g, quantile, against)
            best = (float(r[0]), float(t[0]), cur[i].copy(), float(g))
    assert best is not None
    ratio, tail_ratio, w, g = best
    sizes = {s: float(wi * g / px) for s, wi, px in zip(symbols, w, prices, strict=True) if wi != 0}
    return SearchResult(
        weights=tuple(float(x) for x in w),
        gross=g,
        sizes=sizes,
        ratio=ratio,
        tail_ratio=tail_ratio,
        evaluated=evaluated,
    )
