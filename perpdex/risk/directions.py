"""Book directions: signed weights on the unit L1 sphere (shares of gross notional, long or
short), their historical tail losses, and a local search over them.

Shared by the adversarial search of `perpdex risk check` (backtest.search_worst: the book
whose tail loss most exceeds its portfolio margin) and by the scenario design's
historical-tail coverage (scenarios.design: the direction in which the scenario set charges
least against that tail). Everything is vectorised over directions with numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHUNK = 2048  # directions per quantile call: (windows x CHUNK) floats at a time

Objective = Callable[[np.ndarray], np.ndarray]


def window_moves(prices: np.ndarray, horizon: int) -> np.ndarray:
    """Simple price moves over every overlapping `horizon`-day window (windows x markets)."""
    p = np.asarray(prices, dtype=np.float64)
    return np.asarray(p[horizon:] / p[:-horizon] - 1.0)


def unit(w: np.ndarray) -> np.ndarray:
    """Rows scaled to sum(|w|) = 1."""
    return np.asarray(w / np.sum(np.abs(w), axis=-1, keepdims=True))


def sphere(n_markets: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Every axis and every pair of axes (long/short, equal weights), then `samples`
    directions uniform on the L1 sphere's directions (Gaussian draws, normalised)."""
    eye = np.eye(n_markets)
    rows = [eye, -eye]
    for i in range(n_markets):
        for j in range(i + 1, n_markets):
            for a in (0.5, -0.5):
                for b in (0.5, -0.5):
                    v = np.zeros((1, n_markets))
                    v[0, i], v[0, j] = a, b
                    rows.append(v)
    rows.append(unit(rng.standard_normal((samples, n_markets))))
    return np.vstack(rows)


def tail_losses(moves: np.ndarray, exposures: np.ndarray, quantile: float) -> np.ndarray:
    """The `quantile` of the window losses -moves @ n for every row n of `exposures`."""
    n = np.atleast_2d(exposures)
    out = np.empty(n.shape[0])
    for lo in range(0, n.shape[0], CHUNK):
        losses = -(moves @ n[lo : lo + CHUNK].T)
        out[lo : lo + CHUNK] = np.quantile(losses, quantile, axis=0)
    return out


def climb(
    objective: Objective,
    start: np.ndarray,
    rng: np.random.Generator,
    steps: int = 40,
    tries: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Local refinement of every row of `start`: `steps` rounds of `tries` random steps
    each (Gaussian, shrinking from 0.1 to 0.001 of gross), keeping a step that raises the
    objective. Returns the directions and their objective values."""
    cur = np.array(start, dtype=np.float64)
    val = objective(cur)
    k, m = cur.shape
    for step in np.geomspace(0.1, 0.001, steps):
        cand = unit(cur[:, None, :] + step * rng.standard_normal((k, tries, m)))
        v = objective(cand.reshape(-1, m)).reshape(k, tries)
        best = np.argmax(v, axis=1)
        gain = v[np.arange(k), best] > val
        idx = np.nonzero(gain)[0]
        cur[idx] = cand[idx, best[idx]]
        val[idx] = v[idx, best[idx]]
    return cur, val
