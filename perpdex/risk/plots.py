"""PNG charts of a design: the correlation heatmap and the scenario shocks.

Uses matplotlib's object API with the Agg canvas (no display, no global pyplot state), so
it runs on servers and inside tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from perpdex.risk.correlation import RiskEstimate
from perpdex.sdk.riskbook import RiskBook


def _save(fig: Figure, path: Path | str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(p, dpi=120, bbox_inches="tight")
    return p


def correlation_heatmap(est: RiskEstimate, path: Path | str, title: str = "") -> Path:
    """Heatmap of the correlation matrix, with values and annualised vols in the labels."""
    corr = est.corr
    n = len(est.symbols)
    fig = Figure(figsize=(1.6 + 1.1 * n, 1.2 + 1.0 * n))
    ax = fig.add_subplot()
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    labels = [f"{s}\n{v:.0%}/yr" for s, v in zip(est.symbols, est.annual_vol(), strict=True)]
    ax.set_xticks(range(n), labels=labels)
    ax.set_yticks(range(n), labels=labels)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{corr[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if abs(corr[i, j]) > 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(
        title
        or f"daily log-return correlation ({est.method}, {est.n_obs} days "
        f"{est.first_date}..{est.last_date})",
        fontsize=9,
    )
    return _save(fig, path)


def scenario_chart(
    book: RiskBook,
    symbols: Sequence[str],
    path: Path | str,
    title: str = "risk book scenarios",
    compare: RiskBook | None = None,
    compare_title: str = "compared book",
) -> Path:
    """Grouped bars: one group per scenario, one bar per market (bp), with each market's
    +/- imr_min as dashed lines (the coverage rule). `compare` adds a second panel."""
    books = [(title, book)] + ([(compare_title, compare)] if compare is not None else [])
    fig = Figure(
        figsize=(max(8.0, 0.7 * max(b.n_scenarios for _, b in books) + 3), 4.2 * len(books))
    )
    colors = ["#f7931a", "#627eea", "#14f195", "#888888", "#d62728", "#9467bd"]
    for row, (label, b) in enumerate(books, start=1):
        ax = fig.add_subplot(len(books), 1, row)
        n_s, n_m = b.n_scenarios, len(b.markets)
        x = np.arange(n_s)
        width = 0.8 / max(n_m, 1)
        for m in range(n_m):
            color = colors[m % len(colors)]
            ys = [b.shocks[k][m] for k in range(n_s)]
            name = symbols[m] if m < len(symbols) else f"market{m}"
            ax.bar(x + (m - (n_m - 1) / 2) * width, ys, width, label=name, color=color)
            imr = b.markets[m].imr_min_bps
            ax.axhline(imr, color=color, linestyle="--", linewidth=0.8)
            ax.axhline(-imr, color=color, linestyle="--", linewidth=0.8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, labels=list(b.names), rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("shock (bp)")
        ax.set_title(f"{label} (dashed: ±imr_min per market)", fontsize=9)
        ax.legend(fontsize=8, ncols=n_m)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def stress_chart(
    scenario_names: Sequence[str],
    scenario_pnl: np.ndarray,
    scenario_liquidated: np.ndarray,
    periods: Sequence[tuple[str, Sequence[str], np.ndarray, np.ndarray]],
    path: Path | str,
    title: str = "historical stress",
) -> Path:
    """`perpdex stress`'s chart: the book's total P&L under each on-chain scenario (bars,
    red where an account would be liquidated), then one panel per crash period with the
    total equity day by day and a marker on each day accounts are first liquidated.
    `periods`: (label, dates, total equity per day, accounts first liquidated per day)."""
    n = 1 + len(periods)
    cols = 2
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(12, 3.4 * rows))
    ax = fig.add_subplot(rows, cols, 1)
    x = np.arange(len(scenario_names))
    colors = ["#d62728" if liq else "#1f77b4" for liq in scenario_liquidated]
    ax.bar(x, scenario_pnl, color=colors)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, labels=list(scenario_names), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("P&L (USD)")
    ax.set_title("on-chain scenarios: total P&L (red: a liquidation)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    for i, (label, dates, equity, liquidated) in enumerate(periods, start=2):
        ax = fig.add_subplot(rows, cols, i)
        d = np.arange(len(dates))
        ax.plot(d, equity, color="#1f77b4", marker=".", linewidth=1.2)
        hit = np.nonzero(liquidated)[0]
        if hit.size:
            ax.scatter(hit, equity[hit], color="#d62728", zorder=3, label="liquidations")
            for j in hit:
                ax.annotate(str(int(liquidated[j])), (j, equity[j]), fontsize=7, color="#d62728")
            ax.legend(fontsize=7)
        ax.axhline(0, color="black", linewidth=0.6)
        step = max(1, len(dates) // 6)
        ax.set_xticks(d[::step], labels=[s[5:] for s in dates[::step]], fontsize=7)
        ax.set_ylabel("equity (USD)")
        ax.set_title(f"{label}: total equity by day", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
