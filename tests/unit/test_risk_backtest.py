"""perpdex.risk.backtest: books against every window of a price history."""

from __future__ import annotations

import numpy as np
import pytest

from perpdex.config import load_risk
from perpdex.errors import ConfigError
from perpdex.risk.backtest import check_book, parse_position, window_losses
from perpdex.risk.history import PriceSeries
from perpdex.risk.scenarios import requirements
from perpdex.sdk import riskbook

SYMS = ("BTC", "ETH", "SOL")


def series(rows: list[tuple[float, float, float]]) -> PriceSeries:
    return PriceSeries(
        dates=tuple(f"2024-01-{d + 1:02d}" for d in range(len(rows))),
        symbols=SYMS,
        prices=np.asarray(rows, dtype=np.float64),
    )


@pytest.fixture(scope="module")
def book():
    return riskbook.from_config(load_risk(), list(SYMS))


def test_window_losses_by_hand():
    s = series([(100, 10, 1), (90, 10, 1), (99, 11, 1), (99, 11, 2)])
    # long $1,000 BTC, short $500 ETH over 2-day windows
    losses = window_losses(s, [1_000, -500, 0], 2)
    # day0->2: BTC -1% (-10), ETH +10% (-50): loss 60; day1->3: BTC +10% (+100), ETH +10% (-50)
    assert np.allclose(losses, [60.0, -50.0])
    with pytest.raises(ConfigError, match="too few"):
        window_losses(s, [1, 0, 0], 4)


def test_a_hedge_that_breaks_beyond_its_portfolio_margin_is_flagged_portfolio_only(book):
    """BTC/ETH pair ($100k each way). BTC -8% with ETH flat in two days loses 8,000: more
    than the portfolio maintenance margin, less than the isolated one."""
    sizes = {"BTC": 1.0, "ETH": -100_000 / 3_000}
    m = requirements(book, [1.0, sizes["ETH"], 0.0], [100_000.0, 3_000.0, 150.0])
    assert m.maintenance_portfolio < 8_000 < m.maintenance_isolated
    s = series([(100_000 / 0.92, 3_000, 150), (100_000, 3_000, 150), (100_000, 3_000, 150)])
    r = check_book("pair", book, sizes, SYMS, s)
    assert r.worst_loss == pytest.approx(8_000)
    assert r.flagged and r.portfolio_only
    assert (r.worst_start, r.worst_end) == ("2024-01-01", "2024-01-03")
    assert r.windows == 1 and r.windows_over_mm == 1
    calm = series([(100_000 / 0.97, 3_000, 150), (100_000, 3_000, 150), (100_000, 3_000, 150)])
    assert not check_book("pair", book, sizes, SYMS, calm).flagged


def test_a_directional_loss_beyond_isolated_is_not_portfolio_only(book):
    s = series([(125_000, 3_000, 150), (110_000, 3_000, 150), (100_000, 3_000, 150)])
    r = check_book("long", book, {"BTC": 1}, SYMS, s)
    assert r.flagged and not r.portfolio_only  # -20% on a lone long: thin in any mode


def test_bad_inputs(book):
    s = series([(1, 1, 1), (1, 1, 1), (1, 1, 1)])
    with pytest.raises(ConfigError, match="unknown markets"):
        check_book("x", book, {"DOGE": 1}, SYMS, s)
    assert parse_position("sol=-2000") == ("SOL", -2000.0)
    with pytest.raises(ConfigError, match="SYMBOL=SIZE"):
        parse_position("BTC")
