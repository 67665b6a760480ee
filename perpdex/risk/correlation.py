"""Returns, volatility and correlation of a price history, equally weighted or EWMA.

Equal weights estimate the long-run (through-the-cycle) covariance; EWMA (RiskMetrics,
weight of day t-s proportional to lambda**s, lambda 0.94 for daily data) follows the
current regime. Means are removed with the same weights. All figures are per day of log
return; `RiskEstimate.annual_vol` scales by sqrt(365) (crypto trades every day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perpdex.risk.history import PriceSeries

TRADING_DAYS = 365
RISKMETRICS_LAMBDA = 0.94


def log_returns(prices: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Overlapping `horizon`-day log-returns, shape (T - horizon, N)."""
    if horizon < 1:
        raise ValueError("horizon must be at least one day")
    logp = np.log(np.asarray(prices, dtype=np.float64))
    if logp.shape[0] <= horizon:
        raise ValueError(f"{logp.shape[0]} prices are too few for {horizon}-day returns")
    return logp[horizon:] - logp[:-horizon]


def weights(n: int, ewma_lambda: float | None = None) -> np.ndarray:
    """Observation weights (oldest first, summing to 1): equal, or lambda**age."""
    if n < 2:
        raise ValueError("need at least two observations")
    if ewma_lambda is None:
        return np.full(n, 1.0 / n)
    if not 0 < ewma_lambda < 1:
        raise ValueError(f"EWMA lambda must lie in (0, 1), not {ewma_lambda}")
    w = ewma_lambda ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return w / w.sum()


def covariance(returns: np.ndarray, ewma_lambda: float | None = None) -> np.ndarray:
    """Weighted covariance of the rows of `returns` (bias-corrected for equal weights)."""
    r = np.asarray(returns, dtype=np.float64)
    w = weights(r.shape[0], ewma_lambda)
    mean = w @ r
    d = r - mean
    cov = (d * w[:, None]).T @ d
    # unbiased: divide by 1 - sum(w^2) (n-1 over n for equal weights)
    cov /= 1.0 - float(w @ w)
    return np.asarray((cov + cov.T) / 2)


def cov_to_corr(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diag(cov))
    if np.any(sd == 0):
        raise ValueError("a market has zero variance; its correlation is undefined")
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return np.asarray(np.clip(corr, -1.0, 1.0))


def volatility(returns: np.ndarray, ewma_lambda: float | None = None) -> np.ndarray:
    """Per-market standard deviation of the returns."""
    return np.asarray(np.sqrt(np.diag(covariance(returns, ewma_lambda))))


def correlation(returns: np.ndarray, ewma_lambda: float | None = None) -> np.ndarray:
    return cov_to_corr(covariance(returns, ewma_lambda))


@dataclass(frozen=True)
class RiskEstimate:
    """Daily log-return statistics of a set of markets."""

    symbols: tuple[str, ...]
    cov: np.ndarray  # daily covariance (N, N)
    n_obs: int
    ewma_lambda: float | None = None
    first_date: str = ""
    last_date: str = ""

    @property
    def vol(self) -> np.ndarray:
        """Daily volatility per market."""
        return np.asarray(np.sqrt(np.diag(self.cov)))

    @property
    def corr(self) -> np.ndarray:
        return cov_to_corr(self.cov)

    @property
    def method(self) -> str:
        if self.ewma_lambda is None:
            return "equal-weight"
        return f"EWMA lambda={self.ewma_lambda:g}"

    def annual_vol(self, periods: int = TRADING_DAYS) -> np.ndarray:
        return self.vol * math.sqrt(periods)

    def horizon_cov(self, days: int) -> np.ndarray:
        """Covariance of `days`-day log-returns (square-root-of-time scaling)."""
        return self.cov * days


def estimate(
    series: PriceSeries, ewma_lambda: float | None = None, window: int | None = None
) -> RiskEstimate:
    """Daily covariance of `series` (the last `window` returns if given)."""
    r = log_returns(series.prices)
    dates = series.dates[1:]
    if window is not None:
        if window < 2:
            raise ValueError("window must hold at least two returns")
        r, dates = r[-window:], dates[-window:]
    return RiskEstimate(
        symbols=series.symbols,
        cov=covariance(r, ewma_lambda),
        n_obs=r.shape[0],
        ewma_lambda=ewma_lambda,
        first_date=dates[0],
        last_date=dates[-1],
    )
