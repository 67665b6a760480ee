"""The step planner: every step within the contract's limits and rules, ending exactly at
the target. The checks here re-implement governance.set_risk_book's rules independently of
perpdex.risk.governance."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from legacy_risk_book import LEGACY_BOOK

from perpdex.config import MarketRisk, load_risk
from perpdex.risk.governance import (
    PlanError,
    StepLimits,
    align_to,
    book_problems,
    path_summary,
    plan_path,
    step_problems,
)
from perpdex.risk.history import load_prices
from perpdex.risk.scenarios import design
from perpdex.sdk import riskbook
from perpdex.sdk.riskbook import RiskBook
from perpdex.units import WAD

SYMS = ["BTC", "ETH", "SOL"]
DEFAULT = StepLimits(shock_bps=1_000, ratio_bps=200)


# --- an independent copy of the contract's rules ------------------------------------------------


def accepted(old: RiskBook | None, new: RiskBook, limits: StepLimits) -> bool:
    if not 1 <= new.n_scenarios <= 16:
        return False
    if not 0 < new.maintenance_bps <= 10_000:
        return False
    for m, r in enumerate(new.markets):
        if not 0 < r.imr_min_bps <= 10_000 or r.margin_scale == 0:
            return False
        if new.floor_bps > r.imr_min_bps:
            return False
        col = [row[m] for row in new.shocks]
        if min(col) < -10_000:
            return False
        if not (min(0, *col) <= -r.imr_min_bps and max(0, *col) >= r.imr_min_bps):
            return False
    # the equal moves: one scenario at every market's lowest shock, one at every highest
    n_m = len(new.markets)
    lows = tuple(min(0, *(row[m] for row in new.shocks)) for m in range(n_m))
    highs = tuple(max(0, *(row[m] for row in new.shocks)) for m in range(n_m))
    if lows not in new.shocks or highs not in new.shocks:
        return False
    if old is None:
        return True
    ratios = [(old.floor_bps, new.floor_bps), (old.maintenance_bps, new.maintenance_bps)]
    for m in range(min(len(old.markets), len(new.markets))):
        ratios.append((old.markets[m].imr_min_bps, new.markets[m].imr_min_bps))
        ratios.append((old.markets[m].imr_slope_bps, new.markets[m].imr_slope_bps))
        a_s, b_s = old.markets[m].margin_scale, new.markets[m].margin_scale
        if b_s * 2 < a_s or b_s > a_s * 2:  # "clearinghouse: scale change above step limit"
            return False
        for k in range(16):
            a = old.shocks[k][m] if k < old.n_scenarios else 0
            b = new.shocks[k][m] if k < new.n_scenarios else 0
            if abs(a - b) > limits.shock_bps:
                return False
    return all(abs(a - b) <= limits.ratio_bps for a, b in ratios)


def assert_valid_path(current, target, path, limits):
    assert path, "a different target needs at least one step"
    assert path[-1] == target
    prev = current
    for i, step in enumerate(path):
        assert accepted(prev, step, limits), f"step {i + 1} of {len(path)} would be refused"
        assert riskbook.decode(riskbook.encode(step)) == step
        prev = step


def book(shocks, imr=(1000, 1000, 1500), floor=200, mmr=5000, slope=1000, names=None):
    n_m = len(shocks[0])
    markets = tuple(MarketRisk(imr[m], slope, 1000 * WAD) for m in range(n_m))
    names = names or tuple(f"s{k}" for k in range(len(shocks)))
    return RiskBook(floor, mmr, markets, tuple(names), tuple(tuple(r) for r in shocks))


@pytest.fixture(scope="module")
def config_book():
    """The book on chain before issue 9 (item 8): the path starts there."""
    return LEGACY_BOOK


@pytest.fixture(scope="module")
def designed(config_book):
    return design(load_prices(), config_book, SYMS).book


def test_the_published_book_is_the_design():
    """config/risk.yaml is `perpdex risk design` with the defaults, ratios unchanged."""
    published = riskbook.from_config(load_risk(), SYMS)
    assert design(load_prices(), published, SYMS).book == published


# --- the replica agrees with the independent checker -------------------------------------------


def test_replica_rules_match(config_book, designed):
    assert book_problems(config_book, 3) == [] and accepted(None, config_book, DEFAULT)
    assert step_problems(config_book, designed, DEFAULT)  # too far for one update
    assert not accepted(config_book, designed, DEFAULT)
    uncovered = dataclasses.replace(
        config_book, shocks=tuple((0, 0, 0) for _ in config_book.shocks)
    )
    assert book_problems(uncovered) and not accepted(None, uncovered, DEFAULT)


# --- planning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limits", [DEFAULT, StepLimits(300, 50), StepLimits(77, 13), StepLimits(5000, 5000)]
)
def test_config_to_designed_book(config_book, designed, limits):
    path = plan_path(config_book, designed, limits, n_listed=3)
    assert_valid_path(config_book, designed, path, limits)
    worst = max(
        abs(
            (a.shocks[k][m] if k < a.n_scenarios else 0)
            - (b.shocks[k][m] if k < b.n_scenarios else 0)
        )
        for a, b in zip([config_book, *path], path, strict=False)
        for k in range(16)
        for m in range(3)
    )
    assert worst <= limits.shock_bps
    # linear interpolation takes the fewest steps the largest move allows (no holds here)
    biggest = max(
        abs(
            (config_book.shocks[k][m] if k < config_book.n_scenarios else 0) - designed.shocks[k][m]
        )
        for k in range(designed.n_scenarios)
        for m in range(3)
    )
    assert len(path) == max(1, -(-biggest // limits.shock_bps))


def test_and_back_again(config_book, designed):
    """Fewer scenarios at the end: the extra ones shrink to zero before they go."""
    limits = StepLimits(300, 50)
    path = plan_path(designed, config_book, limits, 3)
    assert_valid_path(designed, config_book, path, limits)
    assert all(s.n_scenarios == designed.n_scenarios for s in path[:-1])
    assert path[-1].n_scenarios == config_book.n_scenarios


def test_coverage_moving_to_another_scenario_is_held():
    """Down coverage (and the equal move down) moves from scenario 0 to scenario 2.
    Halfway along a straight line both sit at -600 > -1000: the contract would refuse
    that book."""
    old = book([[-1200, -1200], [1200, 1200], [0, 0]], imr=(1000, 1000))
    new = book([[0, 0], [1200, 1200], [-1200, -1200]], imr=(1000, 1000))
    limits = StepLimits(300, 100)
    path = plan_path(old, new, limits, 2)
    assert_valid_path(old, new, path, limits)
    # the naive straight line is refused in the middle, so the test can fail
    mid = book([[-600, -600], [1200, 1200], [-600, -600]], imr=(1000, 1000))
    assert not accepted(None, mid, limits)
    assert any(min(r[0] for r in s.shocks) == -1000 for s in path[:-1])  # the hold
    assert all(s.n_scenarios == 3 for s in path)  # no bridge needed
    # the fewest possible: s1 needs 4 updates to pass -1000, s0 must hold -1000 until
    # then (3 updates) and needs 4 more to reach 0 from there
    assert len(path) == 7


def test_swap_of_signs_in_one_scenario():
    """Scenario 0 flips market 0 from -1000 to +1000 while scenario 1 does the opposite:
    the only down and up coverers trade places."""
    old = book([[-1000], [1000]], imr=(1000,), floor=100)
    new = book([[1000], [-1000]], imr=(1000,), floor=100)
    for limits in (StepLimits(100, 100), StepLimits(700, 100), StepLimits(1999, 100)):
        path = plan_path(old, new, limits)
        assert_valid_path(old, new, path, limits)


def test_rising_initial_margin_drags_the_coverage_up():
    old = book([[-1000, -1000], [1000, 1000]], imr=(1000, 1000), floor=100)
    new = book([[-1900, -1000], [1900, 1000]], imr=(1900, 1000), floor=100)
    limits = StepLimits(1000, 200)
    path = plan_path(old, new, limits)
    assert_valid_path(old, new, path, limits)
    assert len(path) == 5  # 900 bp of imr_min at 200 bp per update
    imrs = [s.markets[0].imr_min_bps for s in path]
    assert imrs == sorted(imrs) and imrs[-1] == 1900


def test_ratios_floor_and_maintenance_interpolate_within_limits():
    old = book([[-1000, -1000], [1000, 1000]], imr=(1000, 1000), floor=900, mmr=5000, slope=100)
    new = book([[-1000, -1000], [1000, 1000]], imr=(1000, 500), floor=300, mmr=3000, slope=1100)
    limits = StepLimits(1000, 150)
    path = plan_path(old, new, limits)
    assert_valid_path(old, new, path, limits)
    for s in path:
        assert s.floor_bps <= min(m.imr_min_bps for m in s.markets)


def test_margin_scale_moves_at_most_a_doubling_a_step():
    """The contract refuses a margin_scale more than doubled or halved in one update (found
    by the mirror's layout work: the planner used to jump straight to the target)."""
    old = book([[-1000, -1000], [1000, 1000]], imr=(1000, 1000))
    grown = dataclasses.replace(old.markets[0], margin_scale=old.markets[0].margin_scale * 10)
    new = dataclasses.replace(old, markets=(grown, old.markets[1]))
    assert any("margin_scale" in p for p in step_problems(old, new, DEFAULT))
    path = plan_path(old, new, DEFAULT)
    assert_valid_path(old, new, path, DEFAULT)
    assert len(path) == 4  # x2, x2, x2, then x1.25
    back = plan_path(new, old, DEFAULT)
    assert_valid_path(new, old, back, DEFAULT)


def test_a_new_market_row_is_published_at_once():
    old = book([[-1000, -1000], [1000, 1000]], imr=(1000, 1000))
    new = book([[-1000, -1000, -3000], [1000, 1000, 3000]], imr=(1000, 1000, 2500))
    path = plan_path(old, new, DEFAULT, n_listed=3)
    assert path == [new]


def test_nothing_to_do_and_first_book():
    b = book([[-1000], [1000]], imr=(1000,))
    assert plan_path(b, b, DEFAULT) == []
    assert plan_path(None, b, DEFAULT) == [b]


def test_invalid_targets_are_refused_before_planning():
    b = book([[-1000], [1000]], imr=(1000,))
    uncovered = book([[-900], [1000]], imr=(1000,))
    with pytest.raises(PlanError, match="imr_min"):
        plan_path(b, uncovered, DEFAULT)
    with pytest.raises(PlanError, match="2 are listed"):
        plan_path(b, b, DEFAULT, n_listed=2)
    with pytest.raises(PlanError, match="positive"):
        StepLimits(0, 100)


def test_path_summary(config_book, designed):
    limits = StepLimits(300, 50)
    path = plan_path(config_book, designed, limits, 3)
    rows = path_summary(config_book, path)
    assert len(rows) == len(path)
    assert all(0 < r["shock_bps"] <= 300 for r in rows)


# --- random books ---------------------------------------------------------------------------------


def _random_book(rng: random.Random, n_m: int, n_s: int) -> RiskBook:
    imr = [rng.randint(50, 3000) for _ in range(n_m)]
    shocks = [[rng.randint(-10_000, 12_000) for _ in range(n_m)] for _ in range(n_s)]
    for m in range(n_m):
        # coverage: one scenario down and another up by at least imr_min
        k_down, k_up = rng.sample(range(n_s), 2)
        shocks[k_down][m] = -rng.randint(imr[m], 10_000)
        shocks[k_up][m] = rng.randint(imr[m], 12_000)
    # the equal moves: one scenario at every market's lowest shock, another at its highest
    k_down, k_up = rng.sample(range(n_s), 2)
    lows = [min(r[m] for r in shocks) for m in range(n_m)]
    highs = [max(r[m] for r in shocks) for m in range(n_m)]
    shocks[k_down], shocks[k_up] = lows, highs
    markets = tuple(
        MarketRisk(imr[m], rng.randint(0, 3000), rng.randint(1, 10**6) * WAD) for m in range(n_m)
    )
    floor = rng.randint(0, min(imr))
    return RiskBook(
        floor,
        rng.randint(1, 10_000),
        markets,
        tuple(f"r{k}" for k in range(n_s)),
        tuple(tuple(r) for r in shocks),
    )


@settings(deadline=None, derandomize=True, max_examples=150)
@given(
    seed=st.integers(0, 2**32),
    n_m=st.integers(1, 4),
    n_old=st.integers(2, 16),
    n_new=st.integers(2, 16),
    shock_step=st.sampled_from([97, 250, 1000, 4000]),
    ratio_step=st.sampled_from([50, 200, 5000]),
)
def test_random_books_reach_the_target_within_limits(
    seed, n_m, n_old, n_new, shock_step, ratio_step
):
    rng = random.Random(seed)
    old, new = _random_book(rng, n_m, n_old), _random_book(rng, n_m, n_new)
    limits = StepLimits(shock_step, ratio_step)
    path = plan_path(old, new, limits, n_listed=n_m)
    assert_valid_path(old, new, path, limits)


# --- scenario order ------------------------------------------------------------------------


def test_align_recovers_a_shuffled_book(config_book):
    rng = random.Random(3)
    order = list(range(config_book.n_scenarios))
    rng.shuffle(order)
    shuffled = dataclasses.replace(
        config_book,
        names=tuple(config_book.names[i] for i in order),
        shocks=tuple(config_book.shocks[i] for i in order),
    )
    assert align_to(shuffled, config_book) == config_book
    assert plan_path(config_book, align_to(shuffled, config_book), DEFAULT, 3) == []


def test_align_never_lengthens_the_path(config_book, designed):
    aligned = align_to(designed, config_book)
    assert sorted(zip(aligned.names, aligned.shocks, strict=True)) == sorted(
        zip(designed.names, designed.shocks, strict=True)
    )
    for limits in (DEFAULT, StepLimits(300, 50)):
        assert len(plan_path(config_book, aligned, limits, 3)) <= len(
            plan_path(config_book, designed, limits, 3)
        )
    # a book in the reverse order costs more updates until aligned
    backwards = dataclasses.replace(
        designed, names=designed.names[::-1], shocks=designed.shocks[::-1]
    )
    assert len(plan_path(config_book, align_to(backwards, config_book), DEFAULT, 3)) < len(
        plan_path(config_book, backwards, DEFAULT, 3)
    )
