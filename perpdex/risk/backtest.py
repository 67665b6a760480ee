"""Historical check of margin: every book against the worst historical days.

For a book of positions (base units per market) at today's prices, the loss over each
overlapping `horizon`-day window of the price history is the loss of the same dollar
exposure had it been held through that window:

    loss_t = -sum_i n_i * (P_i[t + h] / P_i[t] - 1),      n_i = s_i * P_i(today)

The book is flagged when its worst window loses more than its maintenance margin (the
buffer left for liquidation once it becomes liquidatable), in portfolio mode; the isolated
maintenance margin is shown beside it, so a flag that only the portfolio discount causes
("portfolio only") stands apart from ratios that are thin for the history in any mode.

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
from perpdex.risk.history import PriceSeries
from perpdex.risk.scenarios import requirements
from perpdex.sdk.riskbook import RiskBook

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

    @property
    def flagged(self) -> bool:
        """The worst window loses more than the portfolio maintenance margin."""
        return self.worst_loss > self.portfolio_mm

    @property
    def portfolio_only(self) -> bool:
        """Flagged, but the isolated maintenance margin would have covered it: the
        portfolio discount is what the history breaks."""
        return self.flagged and self.worst_loss <= self.isolated_mm


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
) -> BookCheck:
    """`sizes` (base units by symbol) under `book` against `series` (same symbols)."""
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
    )


def check_books(
    book: RiskBook,
    books: Mapping[str, Mapping[str, float]],
    symbols: Sequence[str],
    series: PriceSeries,
    horizon: int = 2,
) -> list[BookCheck]:
    return [check_book(n, book, s, symbols, series, horizon) for n, s in books.items()]


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
