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
