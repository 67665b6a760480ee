"""The crash replay (perpdex/showcase/crash.py) as a test: a -40% crash over ten minutes on 30
accounts with two keepers; every account ends healthy or fully liquidated, bad debt is
covered by insurance then socialised with events, conservation holds after every step,
and the summary table and chart are produced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from perpdex.showcase.crash import CrashConfig, run

pytestmark = pytest.mark.slow


def test_crash_replay(protocol: Any, accounts: Any, tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    report = run(protocol, list(accounts)[:10], console, tmp_path, CrashConfig())
    n = report.config.accounts
    assert len(report.population) == n
    # the crash did liquidate, through keepers and (some) through the vault
    assert report.fully_liquidated and report.takes
    assert (
        len(report.fully_liquidated) + len(report.partially_liquidated) + len(report.untouched) == n
    )
    # losses accounted: every dollar of bad debt came from insurance or socialisation
    assert report.bad_debt == pytest.approx(report.from_insurance + report.socialized, abs=1e-9)
    # liquidation pays for itself: none that started with positive equity ended in bad debt
    assert report.positive_then_bad_debt == []
    if report.socialized > 0:
        assert report.insurance_end < report.insurance_start + report.penalties
    # conservation held after every step (checked by run(); recorded here)
    assert all(0 <= s.gap <= 10**12 for s in report.steps)
    # the last step: no running auction, every account with positions healthy
    last = report.steps[-1]
    assert last.discounts == {}
    assert all(h >= 1 for h in last.health.values())
    # socialised loss only ever grows, and the share price fell in the crash
    soc = [s.socialized for s in report.steps]
    assert soc == sorted(soc)
    assert report.chart is not None and report.chart.stat().st_size > 20_000
    text = console.export_text()
    assert "crash replay: what happened" in text and "socialised" in text
    assert "started with positive equity" in text
