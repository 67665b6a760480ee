"""Properties of the margin requirement (contracts/modules/margin.vy), on the SDK's
integer-exact mirror (perpdex/sdk/math.py: the lens's `_add` / `_initial` path, which
tests/integration/test_margin_properties_chain.py and test_sdk_math.py tie to the chain).

For any book, under the deployed risk book and under random risk books that pass
`set_risk_book`'s validation (generated valid, then checked with the Python replica of
that validation, `perpdex.risk.governance.book_problems`):

1. portfolio requirement <= isolated requirement;
2. equal for a single position, to the wei (also when a covering shock is exactly
   imr_min);
3. monotone: scaling the whole book by k >= 1 never lowers either requirement; growing
   the one position of a single-position book never lowers it; growing any position
   never lowers the isolated requirement. (Growing one leg of a hedged book *can* lower
   the portfolio requirement: that is what a hedge is; shown below.)
4. never below the floor: both requirements >= floor ratio x gross notional (rounded up).

A book that breaks the coverage rule is shown to break property 2, so the rule (and the
generator that respects it) is what these tests depend on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from perpdex.config import MarketRisk, load_risk
from perpdex.constants import BPS, WAD
from perpdex.risk.governance import book_problems
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.riskbook import RiskBook

EXAMPLES = int(os.environ.get("PERPDEX_MARGIN_EXAMPLES", "400"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SYMS = ["BTC", "ETH", "SOL"]

# sizes and prices the packed position and mark words can hold (|size| < 2**95 base WAD,
# price < 2**88 WAD): 1e-6 to 1e9 base units at 0.001 to 1e7 USD, so every notional is at
# least 1e-9 USD (1e9 wei) and the rounding of a notional to the wei is far below any ratio
SIZE = st.integers(min_value=10**12, max_value=10**27)
PRICE = st.integers(min_value=10**15, max_value=10**25)


@dataclass(frozen=True)
class Figures:
    initial: int
    isolated: int
    floor: int
    maintenance: int


def figures(book: RiskBook, legs: list[tuple[int, int, int]], portfolio: bool) -> Figures:
    """Requirement of `legs` = [(market, size WAD, price WAD)] under `book` (the lens's
    arithmetic, which equals the engine's scan)."""
    b = pm.Book.from_riskbook(book)
    h = b.header
    ctx = pm.Ctx(n_s=h.n_scenarios, floor_bps=h.floor_bps, mmr_bps=h.mmr_bps, portfolio=portfolio)
    t = pm.Totals()
    for m, size, price in legs:
        t = pm.add_leg(t, pm.lens_leg(b, m, size, 0, 0, price), price, ctx.n_s)
    initial = pm.initial_requirement(t, ctx)
    return Figures(
        initial=initial,
        isolated=t.isolated,
        floor=pm.mul_div(t.gross_raw, h.floor_bps, WAD * BPS, True),
        maintenance=pm.mul_div(initial, h.mmr_bps, BPS, True),
    )


def portfolio(book: RiskBook, legs: list[tuple[int, int, int]]) -> int:
    return figures(book, legs, True).initial


def isolated(book: RiskBook, legs: list[tuple[int, int, int]]) -> int:
    return figures(book, legs, False).initial


# --- generators ------------------------------------------------------------------------------


@st.composite
def risk_books(draw: st.DrawFn, strict: bool = False) -> RiskBook:
    """A risk book `set_risk_book` accepts: 1-8 markets, 2-16 scenarios, imr_min 1 bp to
    100%, the floor at or below every imr_min, every shock >= -100%, and for every market
    a scenario moving it down and one moving it up by at least imr_min (exactly imr_min
    often, unless `strict`: then every covering shock is beyond it), and the two equal
    moves (every market by its largest down / up shock in one scenario)."""
    n_m = draw(st.integers(1, 8))
    n_s = draw(st.integers(2, 16))
    imr = [
        draw(st.one_of(st.integers(1, BPS), st.sampled_from([1000, 1500, 5000, BPS])))
        for _ in range(n_m)
    ]
    if strict:
        imr = [min(i, BPS - 1) for i in imr]  # room for a down shock beyond it
    markets = tuple(
        MarketRisk(
            imr_min_bps=i,
            imr_slope_bps=draw(st.integers(0, 5_000)),
            margin_scale=draw(st.integers(1, 10**9)) * WAD // 1_000,
        )
        for i in imr
    )
    floor_bps = draw(st.integers(0, min(imr)))
    shocks = [[draw(st.integers(-BPS, 2 * BPS)) for _ in range(n_m)] for _ in range(n_s)]
    for m, i in enumerate(imr):
        down, up = draw(st.lists(st.integers(0, n_s - 1), min_size=2, max_size=2, unique=True))
        lo = 1 if strict else 0
        shocks[down][m] = -draw(st.integers(i + lo, BPS)) if i + lo <= BPS else -BPS
        shocks[up][m] = draw(st.one_of(st.just(i + lo), st.integers(i + lo, 3 * BPS)))
    # the equal moves set_risk_book requires: one scenario at every market's largest down
    # shock, another at every market's largest up shock
    down, up = draw(st.lists(st.integers(0, n_s - 1), min_size=2, max_size=2, unique=True))
    lows = [min(row[m] for row in shocks) for m in range(n_m)]
    highs = [max(row[m] for row in shocks) for m in range(n_m)]
    shocks[down], shocks[up] = lows, highs
    book = RiskBook(
        floor_bps=floor_bps,
        maintenance_bps=draw(st.integers(1, BPS)),
        markets=markets,
        names=tuple(f"s{k}" for k in range(n_s)),
        shocks=tuple(tuple(row) for row in shocks),
    )
    assert book_problems(book, n_listed=n_m) == [], book_problems(book, n_listed=n_m)
    return book


def deployed_book() -> RiskBook:
    return riskbook.from_config(load_risk(), SYMS)


@st.composite
def book_and_legs(
    draw: st.DrawFn, min_legs: int = 1, max_legs: int = 8, strict: bool = False
) -> tuple[RiskBook, list[tuple[int, int, int]]]:
    """A risk book (the deployed one a quarter of the time) and positions on distinct
    markets of it, long or short."""
    book = draw(st.one_of(st.just(deployed_book()), risk_books(strict=strict)))
    n_m = len(book.markets)
    k = draw(st.integers(min(min_legs, n_m), min(max_legs, n_m)))
    markets = draw(st.permutations(range(n_m)))[:k]
    legs = [(m, draw(SIZE) * draw(st.sampled_from([1, -1])), draw(PRICE)) for m in markets]
    return book, legs


# --- 1. portfolio <= isolated --------------------------------------------------------------


@SETTINGS
@given(case=book_and_legs())
def test_portfolio_never_exceeds_isolated(case):
    book, legs = case
    port, iso = figures(book, legs, True), figures(book, legs, False)
    assert port.initial <= iso.initial == iso.isolated == port.isolated
    assert port.maintenance <= iso.maintenance


# --- 2. equal for a single position ---------------------------------------------------------


@SETTINGS
@given(case=book_and_legs(max_legs=1))
def test_single_position_portfolio_equals_isolated(case):
    """To the wei, including books whose covering shock is exactly imr_min."""
    book, legs = case
    assert len(legs) == 1
    assert portfolio(book, legs) == isolated(book, legs)


def test_single_position_equal_to_the_wei_when_a_shock_equals_imr_min():
    """Regression: margin.vy once rounded the notional up before applying imr_min
    (isolated) but a scenario loss once (portfolio), so this position was charged 1 wei
    less in portfolio mode. Both now round once from |size| x price."""
    book = RiskBook(
        floor_bps=200,
        maintenance_bps=5_000,
        markets=(MarketRisk(imr_min_bps=1_500, imr_slope_bps=1_000, margin_scale=500_000 * WAD),),
        names=("down", "up"),
        shocks=((-1_500,), (1_500,)),
    )
    assert book_problems(book, n_listed=1) == []  # set_risk_book accepts it
    legs = [(0, 4_359_808_648_441_032_830_010, 889_480_513_278_985_400_893)]
    assert portfolio(book, legs) == isolated(book, legs)


def test_without_coverage_a_single_position_pays_less_in_portfolio_mode():
    """The coverage rule is what makes property 2 hold: drop it and a lone position is
    discounted (and the replica of set_risk_book's validation refuses the book)."""
    base = deployed_book()
    # SOL's largest up move cut below its imr_min (15%): every SOL rise above 10% -> 10%
    rows = [list(r) for r in base.shocks]
    for k, row in enumerate(rows):
        if row[2] > 1_000:
            rows[k][2] = 1_000
    weak = replace(base, shocks=tuple(tuple(r) for r in rows))
    assert any("SOL" in p or "market 2" in p for p in book_problems(weak, n_listed=3))
    short_sol = [(2, -1_000 * WAD, 150 * WAD)]
    assert portfolio(weak, short_sol) < isolated(weak, short_sol)
    assert portfolio(base, short_sol) == isolated(base, short_sol)


# --- 3. monotone ---------------------------------------------------------------------------


@SETTINGS
@given(case=book_and_legs(), p=st.integers(1, 50), q=st.integers(1, 50))
def test_scaling_the_book_up_never_lowers_the_requirement(case, p, q):
    """Book x k for k = max(p, q) / min(p, q) >= 1: sizes are q * s and p * s, so both
    books are exact."""
    book, legs = case
    lo, hi = min(p, q), max(p, q)
    small = [(m, s * lo, px) for m, s, px in legs]
    big = [(m, s * hi, px) for m, s, px in legs]
    for mode in (True, False):
        assert figures(book, big, mode).initial >= figures(book, small, mode).initial


@SETTINGS
@given(case=book_and_legs(max_legs=1), extra=SIZE)
def test_growing_a_lone_position_never_lowers_the_requirement(case, extra):
    book, legs = case
    (m, s, px) = legs[0]
    grown = [(m, s + extra if s > 0 else s - extra, px)]
    assert portfolio(book, grown) >= portfolio(book, legs)
    assert isolated(book, grown) >= isolated(book, legs)


@SETTINGS
@given(case=book_and_legs(min_legs=2), j=st.integers(0, 7), extra=SIZE)
def test_growing_any_position_never_lowers_the_isolated_requirement(case, j, extra):
    book, legs = case
    j %= len(legs)
    m, s, px = legs[j]
    grown = list(legs)
    grown[j] = (m, s + extra if s > 0 else s - extra, px)
    assert isolated(book, grown) >= isolated(book, legs)


def test_growing_a_hedge_leg_can_lower_the_portfolio_requirement():
    """Why property 3 is stated for the whole book and for a lone position: in a hedged
    book the hedge leg's growth offsets the other legs' worst scenario. Long 1 BTC and
    30 ETH lose most in the equal move down; a SOL short of 200, 300, then 400 SOL cuts
    that loss while the isolated sum rises. The hedge never buys the book below its
    unhedged requirement here: the fat-tailed concentration scenario pc2 (BTC and ETH
    down, SOL up) charges the SOL short as a risk of its own."""
    book = deployed_book()
    long = [(0, WAD, 100_000 * WAD), (1, 30 * WAD, 3_000 * WAD)]
    alone = portfolio(book, long)
    books = [[*long, (2, -n * WAD, 150 * WAD)] for n in (200, 300, 400)]
    hedged = [portfolio(book, b) for b in books]
    assert alone == isolated(book, long)
    assert hedged[0] > hedged[1] > hedged[2]  # bigger hedge, less margin
    iso = [isolated(book, b) for b in books]
    assert iso[0] < iso[1] < iso[2]
    assert hedged[2] < iso[2]
    # the same in a smaller book: with 20 ETH, 300 SOL short costs less than 200
    small = [(0, WAD, 100_000 * WAD), (1, 20 * WAD, 3_000 * WAD)]
    at = {n: portfolio(book, [*small, (2, -n * WAD, 150 * WAD)]) for n in (200, 300)}
    assert at[300] < at[200]


# --- 4. never below the floor --------------------------------------------------------------


@SETTINGS
@given(case=book_and_legs())
def test_requirement_never_below_the_floor(case):
    book, legs = case
    for mode in (True, False):
        f = figures(book, legs, mode)
        gross = sum(abs(s) * px for _m, s, px in legs)
        assert f.floor == -(-gross * book.floor_bps // (WAD * BPS))
        assert f.initial >= f.floor


@SETTINGS
@given(book=risk_books(), m=st.integers(0, 7), size=SIZE, price=PRICE)
def test_perfect_hedge_in_one_market_pays_the_floor_plus_addon(book, m, size, price):
    """A book flat in every scenario pays exactly max(0, floor) + size add-on: two
    opposite positions on one market cannot sit in one account, so the 'perfect hedge'
    is two markets given identical shocks and ratios."""
    m %= len(book.markets)
    twin = replace(
        book,
        markets=(*book.markets, book.markets[m]),
        shocks=tuple((*row, row[m]) for row in book.shocks),
    )
    assume(len(twin.markets) <= 32)
    n = len(twin.markets) - 1
    legs = [(m, size, price), (n, -size, price)]
    f = figures(twin, legs, True)
    _iso, slope = pm.isolated_requirement(
        size * price, size, pm.Book.from_riskbook(twin).market_words(m)[0]
    )
    assert f.initial == min(f.isolated, f.floor + 2 * slope)
    assert f.initial >= f.floor


# --- the deployed book ---------------------------------------------------------------------


def test_deployed_book_passes_the_validation_the_generators_assume():
    book = deployed_book()
    assert book_problems(book, n_listed=len(SYMS)) == []
    # strict coverage (beyond imr_min) for every market: property 2 holds to the wei
    for m, r in enumerate(book.markets):
        col = [row[m] for row in book.shocks]
        assert min(col) < -r.imr_min_bps and max(col) > r.imr_min_bps
