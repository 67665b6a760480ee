"""perpdex/risk/stress.py without a chain: the crash-path file and its refusals, hand-worked
1- and 2-position accounts through scenarios and a path, the vectorised engine against the
SDK's wei-exact margin scan, and the offline book file.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from perpdex.config import MarketRisk
from perpdex.risk import stress as st
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.snapshot import CollateralInfo, MarketState, Snapshot

W = 10**18


def _book(
    sizes: list[list[float]],
    equity: list[float],
    portfolio: list[bool],
    risk: riskbook.RiskBook,
    prices: list[float],
    markets: tuple[str, ...] = ("BTC", "ETH"),
) -> st.AccountBook:
    n = len(sizes)
    return st.AccountBook(
        ids=tuple(range(n)),
        names=tuple(str(i) for i in range(n)),
        markets=markets,
        prices=np.array(prices, dtype=float),
        sizes=np.array(sizes, dtype=float),
        collateral=np.zeros((n, len(markets))),
        equity=np.array(equity, dtype=float),
        portfolio=np.array(portfolio),
        risk=risk,
    )


ONE_RISK = riskbook.RiskBook(
    floor_bps=200,
    maintenance_bps=5_000,
    markets=(MarketRisk(1_000, 100, 10 * W), MarketRisk(1_200, 0, W)),
    names=("crash", "rally"),
    shocks=((-2_000, -2_500), (2_000, 2_500)),
)


def test_one_position__scenarios_and_a_path_by_hand():
    """Isolated account: long 1 BTC at $100,000 with $20,000 of equity. BTC: imr_min 10%,
    imr_slope 1% per margin_scale 10 BTC; maintenance 50% of initial.

    now:    initial = 100,000 x 10% + 100,000 x 1% x 1/10 = 10,000 + 100 = 10,100;
            maintenance 5,050; health 20,000 / 5,050 = 3.960
    crash (BTC -20%, price 80,000): P&L -20,000, equity 0;
            initial 8,000 + 80 = 8,080, maintenance 4,040 -> liquidatable (0 < 4,040)
    rally (BTC +20%, 120,000): P&L +20,000, equity 40,000;
            initial 12,000 + 120 = 12,120, maintenance 6,060, health 6.601
    a path 100,000 -> 90,000 -> 85,000 -> 95,000 (multipliers 1, .9, .85, .95):
      day 1: equity 10,000, maintenance (9,000 + 90) / 2 = 4,545, health 2.200
      day 2: equity 5,000, maintenance (8,500 + 85) / 2 = 4,292.5 -> still above
      day 3: equity 15,000
      with $14,000 of equity instead: day 2 equity -1,000 < 4,292.5: liquidated on day 2
      (day 1: 4,000 < 4,545 already: liquidated on day 1).
    """
    book = _book([[1.0, 0.0]], [20_000.0], [False], ONE_RISK, [100_000.0, 3_000.0])
    run = st.run_scenarios(book)
    assert run.now.maintenance[0, 0] == pytest.approx(5_050)
    assert run.now.health[0, 0] == pytest.approx(20_000 / 5_050)
    crash, rally = 0, 1
    assert run.out.pnl[0, crash] == pytest.approx(-20_000)
    assert run.out.equity[0, crash] == pytest.approx(0)
    assert run.out.maintenance[0, crash] == pytest.approx(4_040)
    assert run.out.liquidatable[0, crash]
    assert run.out.pnl[0, rally] == pytest.approx(20_000)
    assert run.out.initial[0, rally] == pytest.approx(12_120)
    assert run.out.health[0, rally] == pytest.approx(40_000 / 6_060)
    assert not run.out.liquidatable[0, rally]

    path = st.CrashPath(
        "t",
        "test",
        ("2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"),
        ("BTC", "ETH"),
        np.array([[100.0, 10.0], [90.0, 10.0], [85.0, 10.0], [95.0, 10.0]]),
    )
    pr = st.run_path(book, path)
    np.testing.assert_allclose(pr.out.equity[0], [20_000, 10_000, 5_000, 15_000])
    np.testing.assert_allclose(pr.out.maintenance[0, 1:3], [4_545, 4_292.5])
    assert pr.first_liquidation_day.tolist() == [-1]
    poorer = replace(book, equity=np.array([14_000.0]))
    assert st.run_path(poorer, path).first_liquidation_day.tolist() == [1]


TWO_RISK = riskbook.RiskBook(
    floor_bps=200,
    maintenance_bps=5_000,
    markets=(MarketRisk(1_000, 0, W), MarketRisk(1_200, 0, W)),
    names=("crash", "rally", "btc-down", "eth-up"),
    shocks=((-2_000, -2_500), (2_000, 2_500), (-1_500, 0), (0, 1_500)),
)


def test_two_positions__portfolio_margin_by_hand():
    """Portfolio account: long 1 BTC at $100,000, short 20 ETH at $5,000, $15,000 equity.
    imr_min BTC 10%, ETH 12%, no slope, floor 2%, maintenance 50%. Scenario losses of the
    book (V = +100,000 / -100,000): crash -(−20,000 + 25,000) = −5,000 (a gain), rally
    +5,000, btc-down 15,000, eth-up 15,000.

    now: isolated 10,000 + 12,000 = 22,000; worst loss 15,000 > floor 4,000, so initial
         min(22,000, 15,000) = 15,000, maintenance 7,500, health 2.0
    crash (80,000 / 3,750): P&L -20,000 + 25,000 = +5,000, equity 20,000; values
         +80,000 / -75,000: losses crash -2,750, rally 2,750, btc-down 12,000, eth-up 11,250;
         isolated 8,000 + 9,000 = 17,000; initial 12,000, maintenance 6,000, health 3.333
    eth-up (100,000 / 5,750): P&L -20 x 750 = -15,000, equity 0; values +100,000 /
         -115,000: worst eth-up 17,250; isolated 10,000 + 13,800 = 23,800; initial 17,250,
         maintenance 8,625 -> liquidatable
    the same book in isolated mode: maintenance now 11,000, health 1.364
    """
    book = _book(
        [[1.0, -20.0], [1.0, -20.0]],
        [15_000.0, 15_000.0],
        [True, False],
        TWO_RISK,
        [100_000.0, 5_000.0],
    )
    run = st.run_scenarios(book)
    assert run.now.initial[:, 0] == pytest.approx([15_000, 22_000])
    assert run.now.health[0, 0] == pytest.approx(2.0)
    assert run.now.health[1, 0] == pytest.approx(15_000 / 11_000)
    crash, eth_up = 0, 3
    assert run.out.pnl[0, crash] == pytest.approx(5_000)
    assert run.out.initial[0, crash] == pytest.approx(12_000)
    assert run.out.health[0, crash] == pytest.approx(20_000 / 6_000)
    assert run.out.equity[0, eth_up] == pytest.approx(0)
    assert run.out.maintenance[0, eth_up] == pytest.approx(8_625)
    assert run.out.liquidatable[:, eth_up].tolist() == [True, True]
    assert run.out.liquidatable[:, crash].tolist() == [False, False]


# --- against the wei-exact mirror ---------------------------------------------------------------


def _snapshot(size0: int, size1: int, balance: int, portfolio: bool) -> Snapshot:
    rb = riskbook.RiskBook(
        floor_bps=200,
        maintenance_bps=5_000,
        markets=(MarketRisk(1_000, 1_000, 1_000 * W), MarketRisk(1_500, 500, 2_000 * W)),
        names=("crash", "rally", "split"),
        shocks=((-1_500, -2_000), (1_500, 2_000), (1_000, -1_000)),
    )
    params = pm.MarketParams(1_000 * W, 2 * 10**14, 5 * 10**14, W, W // 100, True, False, W, W)
    markets = (
        MarketState(0, params, pm.Mark(100 * W, 1_000, 3 * 10**12, 0), 10 * W, 4 * W, None, 0),
        MarketState(1, params, pm.Mark(50 * W, 1_000, 3 * 10**12, 0), 10 * W, 4 * W, None, 0),
    )
    header = pm.ACCOUNT_EXISTS | (0b11 << 8) | (2 << 48)
    if portfolio:
        header |= pm.ACCOUNT_PORTFOLIO
    return Snapshot(
        account=7,
        block_number=1,
        timestamp=1_000,
        header=header,
        market_count=2,
        balances={0: balance},
        collaterals={0: CollateralInfo(0, "USDC", 0, 0)},
        positions={
            0: pm.Position(size0, size0 * 90, 0),
            1: pm.Position(size1, size1 * 55, 0),
        },
        markets=markets,
        book=pm.Book.from_riskbook(rb),
        risk_book=rb,
        system=pm.System(1, 3, 200, 5_000, 1_000, 1_000, 60),
    )


@pytest.mark.parametrize("portfolio", [False, True])
def test_engine_agrees_with_the_sdk_scan(portfolio):
    """Random books: the float engine equals pm.scan on the moved snapshot (wei-exact,
    funding included) to 1e-9 relative, at the scenario set and at random moves."""
    rng = np.random.default_rng(7)
    snaps = [
        _snapshot(int(rng.uniform(-30, 30) * W), int(rng.uniform(-60, 60) * W), 800 * W, portfolio)
        for _ in range(12)
    ]
    book = st.book_from_snapshots(snaps, ("BTC", "ETH"))
    mult = np.vstack([book.scenario_multipliers, rng.uniform(0.5, 1.6, size=(5, 2))])
    out = st.evaluate(book, mult)
    for a, snap in enumerate(snaps):
        for k, row in enumerate(mult):
            exact = pm.scan(st.moved_snapshot(snap, row))
            assert out.equity[a, k] == pytest.approx(exact.equity / W, rel=1e-9, abs=1e-9)
            assert out.initial[a, k] == pytest.approx(exact.initial / W, rel=1e-9, abs=1e-9)
            assert out.liquidatable[a, k] == (exact.equity < exact.maintenance)


def test_recheck__borderline_cells_take_the_exact_verdict():
    snap = _snapshot(10 * W, 0, 500 * W, False)
    book = st.book_from_snapshots([snap], ("BTC", "ETH"))
    # equity now: 500 + 10 x (100 - 90) - funding 30 = 570; at multiplier x the equity is
    # 570 + 1000 (x - 1); the requirement 1000 x (10% + 10% x 10/1000) = 101 x, the
    # maintenance 50.5 x: equal at x = 430 / 949.5
    x = 430 / 949.5
    mult = np.array([[x, 1.0]])
    out = st.evaluate(book, mult)
    assert st.recheck(book, mult, out) == 1
    assert out.exact[0, 0]
    exact = pm.scan(st.moved_snapshot(snap, mult[0]))
    assert out.liquidatable[0, 0] == (exact.equity < exact.maintenance)


# --- the crash-path file ------------------------------------------------------------------------


def test_shipped_paths__five_periods_consecutive_and_sol_absent_in_march_2020():
    paths = st.load_paths()
    assert list(paths) == ["2020-03", "2021-05", "2022-06", "2022-11", "2024-08"]
    assert not paths["2020-03"].has("SOL")
    assert paths["2022-11"].has("SOL") and paths["2022-11"].has("BTC")
    # the days that made each period: BTC's worst close-to-close fall
    worst = {p: min(np.diff(np.log(path.closes[:, 0]))) for p, path in paths.items()}
    assert worst["2020-03"] < np.log(0.65)  # 12 March 2020: about -37%
    for path in paths.values():
        assert path.n_days >= 8


HEAD = "period,label,date,BTC,ETH\n"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("p,l,2020-01-01,1,1\np,l,2020-01-03,1,1\n", "skips a day"),
        ("p,l,2020-01-02,1,1\np,l,2020-01-01,1,1\n", "repeats or goes back"),
        ("p,l,2020-01-01,1,1\np,l,2020-01-02,1,\n", "has ETH on some days but not on 2020-01-02"),
        ("p,l,2020-01-01,1,1\np,l,2020-01-02,-1,1\n", "is not a positive price"),
        ("p,l,2020-01-01,1,1\np,l,2020-01-02,abc,1\n", "is not a positive price"),
        ("p,l,01/02/2020,1,1\n", "is not a date"),
        ("p,l,2020-01-01,1\n", "leave an empty cell"),
        ("p,l,2020-01-01,1,1\n", "has one day"),
    ],
)
def test_paths__refusals(body, problem):
    with pytest.raises(st.StressError, match=problem):
        st.parse_paths(HEAD + body)


def test_paths__unknown_symbols_and_periods_are_refused():
    with pytest.raises(st.StressError, match="'btc usd' is not a ticker"):
        st.parse_paths("period,label,date,btc usd\np,l,2020-01-01,1\n")
    paths = st.load_paths()
    with pytest.raises(st.StressError, match="unknown period 1999-01"):
        st.select_periods(paths, ["1999-01"])
    with pytest.raises(st.StressError, match="DOGE is not in the paths file"):
        st.parse_proxies("SOL=DOGE", ("BTC", "ETH", "SOL"), ("BTC", "ETH", "SOL"))
    with pytest.raises(st.StressError, match="XRP is not a market"):
        st.parse_proxies("XRP=ETH", ("BTC", "ETH", "SOL"), ("BTC", "ETH", "SOL"))


def test_absent_symbol_moves_like_its_proxy_with_a_note():
    path = st.load_paths()["2020-03"]
    mult, notes = st.path_multipliers(path, ("BTC", "SOL"))
    np.testing.assert_allclose(mult[:, 1], path.moves("ETH"))
    assert notes == ["2020-03: SOL moves like ETH (no figures in this period)"]
    mult, notes = st.path_multipliers(path, ("BTC", "SOL"), {"SOL": "BTC"})
    np.testing.assert_allclose(mult[:, 1], path.moves("BTC"))


# --- the offline book file ----------------------------------------------------------------------


def test_book_file__loads_and_refuses_unknown_markets(tmp_path):
    doc = {
        "prices": {"BTC": 100_000, "ETH": 3_500, "SOL": 180},
        "accounts": [
            {"id": "trend", "portfolio": True, "equity": 20_000, "positions": {"BTC": 0.5}},
            {"id": "pair", "equity": 9_000, "positions": {"ETH": 2, "SOL": -40}},
        ],
    }
    f = tmp_path / "book.json"
    f.write_text(json.dumps(doc))
    book = st.load_book_file(f)
    assert book.markets == ("BTC", "ETH", "SOL")
    assert book.sizes.tolist() == [[0.5, 0, 0], [0, 2, -40]]
    assert book.portfolio.tolist() == [True, False]
    doc["accounts"][1]["positions"]["DOGE"] = 1
    f.write_text(json.dumps(doc))
    with pytest.raises(st.StressError, match="'DOGE' is not a market of `prices`"):
        st.load_book_file(f)
    f.write_text("{not json")
    with pytest.raises(st.StressError, match="is not JSON"):
        st.load_book_file(f)
    with pytest.raises(st.StressError, match="no book file"):
        st.load_book_file(tmp_path / "missing.json")


# --- the command, offline -----------------------------------------------------------------------


def test_cli_stress__offline_book_tables_and_chart(tmp_path):
    from typer.testing import CliRunner

    from perpdex.cli.main import app

    doc = {
        "prices": {"BTC": 100_000, "ETH": 3_500, "SOL": 180},
        "accounts": [
            {"id": "btc-trend", "portfolio": True, "equity": 20_000, "positions": {"BTC": 0.8}},
            {"id": "hedged", "portfolio": True, "equity": 50_000, "positions": {"ETH": 1}},
        ],
    }
    f = tmp_path / "book.json"
    f.write_text(json.dumps(doc))
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["stress", "--book", str(f), "-p", "2020-03", "--out", str(tmp_path)],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    # 0.8 BTC from $100,000 through 12 March 2020 (BTC 9,078.76 -> 4,970.79): -$36,199
    assert "btc-trend" in res.output and "2020-03-12 (day 7)" in res.output
    assert "-$36,199" in res.output
    assert "SOL moves like ETH" in res.output
    assert (tmp_path / "stress.png").stat().st_size > 10_000
    bad = runner.invoke(app, ["stress", "--book", str(f), "-p", "1999-01"])
    assert bad.exit_code == 1 and "unknown period 1999-01" in bad.output
