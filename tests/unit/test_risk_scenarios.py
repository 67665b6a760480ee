"""Scenario design: components, coverage rule, conservative rounding, the 16-scenario
cap, the YAML layout and the margin formulas."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpdex.config import MarketRisk, load_risk
from perpdex.risk.correlation import log_returns
from perpdex.risk.governance import book_problems, policy_problems
from perpdex.risk.history import GeneratorParams, generate_prices, load_prices
from perpdex.risk.scenarios import (
    DesignError,
    DesignParams,
    book_yaml,
    coverage_gaps,
    design,
    load_book,
    principal_components,
    requirements,
    round_up_bps,
)
from perpdex.sdk import riskbook
from perpdex.units import WAD

SYMS = ["BTC", "ETH", "SOL"]


@pytest.fixture(scope="module")
def series():
    return load_prices()


@pytest.fixture(scope="module")
def base():
    return riskbook.from_config(load_risk(), SYMS)


@pytest.fixture(scope="module")
def designed(series, base):
    """The design with the defaults on the committed history: the tests below only read
    it (a frozen Design), so the module builds it once (each build is seconds of numpy)."""
    return design(series, base, SYMS)


def _with_imr(book, imrs):
    return dataclasses.replace(
        book,
        markets=tuple(
            dataclasses.replace(m, imr_min_bps=i) for m, i in zip(book.markets, imrs, strict=True)
        ),
    )


# --- rounding ---------------------------------------------------------------------------------


@settings(deadline=None, derandomize=True, max_examples=500)
@given(st.floats(min_value=-0.9999, max_value=3.0, allow_nan=False))
def test_rounding_is_never_milder(x: float):
    r = round_up_bps(x)
    exact = x * 10_000
    assert abs(r) >= abs(exact) - 1e-9  # never milder than the model
    assert abs(r) < abs(exact) + 1  # by less than one basis point
    assert r == 0 or (r > 0) == (x > 0)


@pytest.mark.parametrize(
    ("x", "bp"),
    [
        (0.15, 1500),  # 0.15 * 10_000 is 1500.0000000000002 in floats: not 1501
        (0.150001, 1501),
        (-0.12341, -1235),
        (-0.1234, -1234),
        (1e-7, 1),
        (0.0, 0),
        (-1.0, -10_000),
        (5.0, 32_767),  # the 16-bit field's top
    ],
)
def test_rounding_examples(x: float, bp: int):
    assert round_up_bps(x) == bp


# --- the design on the committed history --------------------------------------------------------


def test_design_satisfies_the_contract(designed):
    d = designed
    assert coverage_gaps(d.book) == []
    assert book_problems(d.book, n_listed=3) == []
    assert 1 <= d.book.n_scenarios <= 16
    assert riskbook.decode(riskbook.encode(d.book)) == d.book
    kinds = [s.kind for s in d.specs]
    assert kinds.count("joint") == 2 and kinds.count("pc") == 4 and kinds.count("idio") == 6
    assert d.book.n_scenarios == 12  # the gas budget of the margin check
    assert policy_problems(d.book, n_listed=3) == []  # single-market moves too


def test_shocks_round_the_model_moves_away_from_zero(designed):
    d = designed
    adjusted = {(a.scenario, a.market) for a in d.adjustments}
    for spec, row in zip(d.specs, d.book.shocks, strict=True):
        for sym, exact, bp in zip(SYMS, spec.simple_moves, row, strict=True):
            if (spec.name, sym) in adjusted:
                continue
            assert abs(bp) >= abs(exact) * 10_000 - 1e-9
            assert abs(bp) - abs(exact) * 10_000 < 1
            assert bp == 0 or (bp > 0) == (exact > 0)


def test_component_scenarios_are_k_sigma_along_the_eigenvectors(series, designed):
    d = designed
    vecs = d.eigenvectors
    assert np.allclose(vecs.T @ vecs, np.eye(3))
    assert np.all(vecs[:, 0] > 0)  # PC1 is the market: every coin the same way
    cov_h = d.estimate.horizon_cov(d.params.horizon_days)
    assert np.allclose(vecs @ np.diag(d.eigenvalues) @ vecs.T, cov_h)
    for s in d.specs:
        if s.kind != "pc":
            continue
        # z * sqrt(d) sd along the component (d = 3 components kept), linear moves; z
        # raised to the component's own one-sided quantile at z's confidence (99%) when
        # that is fatter (standardised h-day scores of the demeaned log moves)
        rh = log_returns(series.select(SYMS).prices, d.params.horizon_days)
        score = (rh - rh.mean(axis=0)) @ vecs[:, s.index]
        score = s.direction * score / score.std()
        z_tail = max(d.params.z, float(np.quantile(score, NormalDist().cdf(d.params.z))))
        assert math.isclose(s.k, z_tail * math.sqrt(3))
        assert s.k >= d.params.z * math.sqrt(3)
        expected = s.direction * s.k * math.sqrt(d.eigenvalues[s.index]) * vecs[:, s.index]
        assert np.allclose(s.log_moves, expected)
        assert s.simple_moves == s.log_moves


def test_single_market_scenarios_move_one_market_by_its_residual_sigma(designed):
    d = designed
    prec = np.linalg.inv(d.estimate.horizon_cov(d.params.horizon_days))
    for s in d.specs:
        if s.kind != "idio":
            continue
        i = s.index
        assert [j for j, x in enumerate(s.log_moves) if x] == [i]
        assert math.isclose(abs(s.log_moves[i]), s.k / math.sqrt(prec[i, i]))
        assert np.sign(s.log_moves[i]) == s.direction


def test_joint_crash_is_at_least_pc1_in_every_market(designed):
    d = designed
    shocks = dict(zip(d.book.names, d.book.shocks, strict=True))
    # the equal moves: every market at its largest shock of the whole book
    for m in range(3):
        col = [row[m] for row in d.book.shocks]
        assert shocks["crypto-crash"][m] == min(col)
        assert shocks["crypto-rally"][m] == max(col)


def test_fat_tails_raise_k_above_the_floor(series, base):
    off = design(series, base, SYMS, DesignParams(tail_quantile=None))
    # the single-market moves carry k (the equal moves are component 1 scaled out)
    assert all(s.k == 3.5 for s in off.specs if s.kind == "idio")
    on = design(series, base, SYMS, DesignParams(tail_quantile=0.999))
    assert max(s.k for s in on.specs if s.kind == "idio") > 3.5


# --- coverage -----------------------------------------------------------------------------------


def test_coverage_is_enforced_through_the_idiosyncratic_scenarios(series, base):
    book = _with_imr(base, [3_000, 3_500, 4_000])
    d = design(series, book, SYMS)
    assert coverage_gaps(d.book) == []
    assert book_problems(d.book, 3) == []
    assert {(a.market, a.after_bps) for a in d.adjustments} >= {("BTC", -3_000), ("SOL", 4_000)}
    row = dict(zip(d.book.names, d.book.shocks, strict=True))
    assert row["btc-down"] == (-3_000, 0, 0)
    assert row["sol-up"] == (0, 0, 4_000)


def test_coverage_without_idiosyncratic_scenarios_uses_the_joint_ones(series, base):
    book = _with_imr(base, [3_000, 3_000, 3_000])
    d = design(series, book, SYMS, DesignParams(idiosyncratic=False))
    assert coverage_gaps(d.book) == []
    # the imr_min widenings (the historical-tail ones may widen any scenario)
    imr = {a.scenario for a in d.adjustments if "historical" not in a.reason}
    assert imr <= {"crypto-crash", "crypto-rally"}


def test_coverage_with_components_only(series, base):
    book = _with_imr(base, [3_000, 3_000, 3_000])
    d = design(series, book, SYMS, DesignParams(idiosyncratic=False, joint=False))
    assert coverage_gaps(d.book) == []
    assert book_problems(d.book, 3) == []


def test_without_the_rule_the_gaps_would_be_visible(series, base):
    """coverage_gaps sees a book that misses imr_min (the check itself can fail)."""
    d = design(series, _with_imr(base, [3_000, 3_000, 3_000]), SYMS)
    # the model's moves before any widening (the equal moves are built from the widened
    # book, so they are left out)
    specs = [s for s in d.specs if s.kind != "joint"]
    raw = riskbook.RiskBook(
        d.book.floor_bps,
        d.book.maintenance_bps,
        d.book.markets,
        tuple(s.name for s in specs),
        tuple(tuple(round_up_bps(x) for x in s.simple_moves) for s in specs),
    )
    assert coverage_gaps(raw)


# --- the cap of 16 ------------------------------------------------------------------------------


def test_many_markets_are_capped_at_sixteen_scenarios():
    n = 10
    corr = tuple(tuple(1.0 if i == j else 0.5 for j in range(n)) for i in range(n))
    params = GeneratorParams(
        symbols=tuple(f"C{i}" for i in range(n)),
        annual_vol=tuple(0.5 + 0.05 * i for i in range(n)),
        correlation=corr,
        end_prices=(100.0,) * n,
        days=800,
    )
    series = generate_prices(params, seed=4)
    base = riskbook.RiskBook(
        200,
        5_000,
        tuple(MarketRisk(1_500, 1_000, 1000 * WAD) for _ in range(n)),
        ("x",),
        ((-1_500,) * n,),
    )
    d = design(series, base, params.symbols)
    assert d.book.n_scenarios == 16
    assert d.dropped
    # equal moves first, then single-market moves by size; no room for components
    assert {"crypto-crash", "crypto-rally"} <= set(d.book.names)
    assert not any(name.startswith("pc") for name in d.book.names)
    assert coverage_gaps(d.book) == []
    assert book_problems(d.book, n) == []
    # 7 single-market pairs fit: the policy names the three markets left out
    assert len([p for p in policy_problems(d.book, n) if "single-market" in p]) == 6
    smaller = design(series, base, params.symbols, DesignParams(max_scenarios=6))
    assert smaller.book.n_scenarios == 6 and coverage_gaps(smaller.book) == []


def test_bad_parameters_say_what_to_change(series, base):
    with pytest.raises(DesignError, match="horizon"):
        DesignParams(horizon_days=0)
    with pytest.raises(DesignError, match="contract limit"):
        DesignParams(max_scenarios=17)
    with pytest.raises(DesignError, match="base book"):
        design(series, base, ["BTC", "ETH"])


# --- components ---------------------------------------------------------------------------------


def test_principal_component_signs():
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    vals, vecs = principal_components(cov)
    assert vals[0] > vals[1]
    assert np.all(vecs[:, 0] > 0)
    assert vecs[:, 1].sum() >= -1e-12


# --- YAML ---------------------------------------------------------------------------------------


def test_yaml_round_trip(tmp_path: Path, designed):
    d = designed
    path = tmp_path / "book.yaml"
    path.write_text(book_yaml(d.book, SYMS, ["header"], {d.book.names[0]: "a note"}))
    assert load_book(path, SYMS) == d.book
    text = path.read_text()
    assert text.startswith("# header") and "# a note" in text


def test_missing_book_file_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(DesignError, match="perpdex risk design"):
        load_book(tmp_path / "none.yaml", SYMS)


# --- the margin formulas --------------------------------------------------------------------------

PRICES = (100_000.0, 3_000.0, 150.0)


def test_single_position_portfolio_equals_isolated(designed):
    d = designed
    for m in range(3):
        for size in (1.0, -1.0, 5.0):
            sizes = [0.0, 0.0, 0.0]
            sizes[m] = size * 10 ** (m * 1.5)
            r = requirements(d.book, sizes, PRICES)
            assert math.isclose(r.portfolio, r.isolated)


def test_hedged_book_posts_less_but_at_least_the_floor(designed):
    """Long 1 BTC against $100k of ETH short: with correlation 0.8 the pair still moves
    about 3.4% in two days (sd); its 99.5% 2-day loss (13,582 on the committed history,
    BTC alone falling) sets the charge: ~78% of isolated margin."""
    d = designed
    r = requirements(d.book, [1.0, -100_000 / 3_000, 0.0], PRICES)
    assert r.portfolio < 0.8 * r.isolated
    assert r.worst_loss > 0.10 * 100_000  # but the spread risk is priced
    assert r.portfolio >= r.floor + r.addon - 1e-9
    assert math.isclose(r.maintenance_portfolio, r.portfolio * 0.5)


def test_portfolio_margin_is_monotone_in_scale(designed):
    d = designed
    sizes = np.array([0.7, -12.0, 150.0])
    prev = 0.0
    for scale in (0.5, 1.0, 2.0, 4.0):
        r = requirements(d.book, list(sizes * scale), PRICES)
        assert r.portfolio >= prev
        assert r.portfolio <= r.isolated + 1e-9
        prev = r.portfolio


# --- the concentration add-on ---------------------------------------------------------------


@settings(deadline=None, derandomize=True, max_examples=300)
@given(
    n=st.lists(
        st.floats(min_value=-1e7, max_value=1e7, allow_nan=False), min_size=3, max_size=3
    ).filter(lambda v: any(abs(x) > 1 for x in v))
)
def test_worst_scenario_loss_covers_the_concentration_addon(designed, n):
    """For any dollar exposures n, the worst loss over the designed scenarios is at least
    z * sqrt(n' S n), S the 2-day covariance, less the bp rounding (< 1 bp of gross)."""
    d = designed
    S = d.estimate.horizon_cov(d.params.horizon_days)
    x = np.asarray(n)
    addon = d.params.z * math.sqrt(float(x @ S @ x))
    worst = max(
        -sum(xi * k / 10_000 for xi, k in zip(x, row, strict=True)) for row in d.book.shocks
    )
    assert worst >= addon - np.abs(x).sum() * 1e-4


def test_without_the_sqrt_d_scaling_the_addon_is_not_covered(designed):
    """The scaling is what covers it: a book loaded equally on all three components
    loses only z * sqrt(n' S n) / sqrt(3) on the plain +/- z sd component scenarios."""
    d = designed
    vals, vecs = d.eigenvalues, d.eigenvectors
    x = sum(vecs[:, j] / math.sqrt(vals[j]) for j in range(3))  # a_j * sqrt(l_j) all 1
    S = d.estimate.horizon_cov(d.params.horizon_days)
    addon = d.params.z * math.sqrt(float(x @ S @ x))
    plain = max(abs(float(x @ (d.params.z * math.sqrt(vals[j]) * vecs[:, j]))) for j in range(3))
    assert plain < addon * 0.6
    scaled = max(
        -sum(xi * k / 10_000 for xi, k in zip(x, row, strict=True)) for row in d.book.shocks
    )
    assert scaled >= addon * 0.999
