"""Stress benchmark: `python -m perpdex.risk.stress_bench` (also run by `make bench`).

Times perpdex.risk.stress on a seeded random book of 10,000 accounts over the three
markets of config/risk.yaml (1 to 3 positions each, half in portfolio mode):
  stress_10k_x16_s      the on-chain scenario set widened to 16 scenarios (the contract's
                        limit), every account at every scenario, plus today's figures
  stress_history_10k_s  every crash period of data/crash_paths.csv, day by day
Each figure is the best of `REPEATS` runs (wall clock), printed and merged into
docs/perf.json (other keys kept). Targets from issue 13: < 1 s and < 5 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from perpdex.config import load_risk
from perpdex.constants import MAX_SCENARIOS
from perpdex.devtools.perf import record
from perpdex.risk import stress
from perpdex.sdk import riskbook

ACCOUNTS = 10_000
REPEATS = 3
SEED = 13
MARKETS = ("BTC", "ETH", "SOL")
PRICES = (100_000.0, 3_500.0, 180.0)
TARGETS = {"stress_10k_x16_s": 1.0, "stress_history_10k_s": 5.0}


def sixteen_scenarios(book: riskbook.RiskBook) -> riskbook.RiskBook:
    """The book with its scenario list cycled (scaled 1.1x per lap) to MAX_SCENARIOS."""
    names, shocks = list(book.names), [list(r) for r in book.shocks]
    lap = 0
    while len(names) < MAX_SCENARIOS:
        k = len(names) % book.n_scenarios
        lap = len(names) // book.n_scenarios
        names.append(f"{book.names[k]}-x{lap}")
        shocks.append([max(-10_000, int(x * 1.1**lap)) for x in book.shocks[k]])
    return riskbook.RiskBook(
        book.floor_bps,
        book.maintenance_bps,
        book.markets,
        tuple(names[:MAX_SCENARIOS]),
        tuple(tuple(r) for r in shocks[:MAX_SCENARIOS]),
    )


def random_book(n: int = ACCOUNTS, seed: int = SEED) -> stress.AccountBook:
    rng = np.random.default_rng(seed)
    risk = sixteen_scenarios(riskbook.from_config(load_risk(), list(MARKETS)))
    prices = np.array(PRICES)
    notional = rng.lognormal(np.log(20_000), 1.0, size=(n, len(MARKETS)))
    held = rng.random((n, len(MARKETS))) < 0.6
    held[np.arange(n), rng.integers(0, len(MARKETS), n)] = True  # at least one position
    sign = np.where(rng.random((n, len(MARKETS))) < 0.5, -1.0, 1.0)
    sizes = np.where(held, sign * notional / prices, 0.0)
    gross = np.abs(sizes * prices).sum(axis=1)
    equity = gross * rng.uniform(0.05, 0.5, size=n)  # 2x to 20x leverage
    return stress.AccountBook(
        ids=tuple(range(n)),
        names=tuple(str(i) for i in range(n)),
        markets=MARKETS,
        prices=prices,
        sizes=sizes,
        collateral=np.zeros_like(sizes),
        equity=equity,
        portfolio=rng.random(n) < 0.5,
        risk=risk,
        source=f"random book, seed {seed}",
    )


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    write = "--no-record" not in args
    console = Console()
    book = random_book()
    paths = list(stress.load_paths().values())
    days = sum(p.n_days for p in paths)

    def scenarios() -> None:
        stress.run_scenarios(book)

    def history() -> None:
        for p in paths:
            stress.run_path(book, p)

    figures = {
        "stress_10k_x16_s": round(best_of(scenarios), 3),
        "stress_history_10k_s": round(best_of(history), 3),
    }
    run = stress.run_scenarios(book)
    table = Table(title=f"stress benchmark: {ACCOUNTS:,} accounts (best of {REPEATS})")
    for col in ("figure", "seconds", "target", "what"):
        table.add_column(col, justify="right" if col in ("seconds", "target") else "left")
    table.add_row(
        "stress_10k_x16_s",
        f"{figures['stress_10k_x16_s']:.3f}",
        f"< {TARGETS['stress_10k_x16_s']:g}",
        f"{book.risk.n_scenarios} scenarios + today: {run.out.liquidatable.sum():,} "
        "account-scenarios liquidatable",
    )
    table.add_row(
        "stress_history_10k_s",
        f"{figures['stress_history_10k_s']:.3f}",
        f"< {TARGETS['stress_history_10k_s']:g}",
        f"{len(paths)} crash periods, {days} days",
    )
    console.print(table)
    if write:
        record(figures)
        console.print("merged into docs/perf.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
