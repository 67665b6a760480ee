"""Design a risk book's stress scenarios from the covariance of a price history.

Over a horizon of h days (the time to close out a defaulted book) the log-returns have
covariance S = h * S_daily = V diag(lambda) V^T. The scenario set is:

* joint crash / rally: every market moves k sigma_i at once, in the same direction
  (correlations go to one in a panic); the hedge-free worst case of a directional book;
* principal components: +/- k sqrt(lambda_j) v_j for the components that explain
  `min_explained` of the variance (PC1 is "the market", later ones are rotations such as
  BTC against alts); these price the hedged books the correlation allows;
* idiosyncratic: market i alone moves +/- k sigma_i|rest, where sigma_i|rest^2 =
  1 / (S^-1)_ii is the variance left after regressing i on every other market; this prices
  relative-value books that the components treat as hedged.

k is `k_sigma`, raised per direction to the empirical `tail_quantile` of the standardised
h-day moves when the history has fatter tails than that (crypto does). Moves are log
returns, converted to simple returns (exp(x) - 1) and rounded away from zero to whole basis
points, so a rounded shock is never milder than the model's. At most `max_scenarios` (16,
the contract's limit) are kept, in whole down/up pairs, joint first, then components by
variance explained, then idiosyncratic pairs by size, then the remaining components.

Coverage (the contract's rule, see governance.set_risk_book): every market needs a
scenario moving it down and one moving it up by at least its imr_min, so a lone position is
never charged less than its isolated margin. Where the data give less, the market's own
idiosyncratic scenario (else the joint crash/rally, else its largest mover) is widened to
exactly imr_min, and the change is reported as an `Adjustment`.

Ratios (imr_min, imr_slope, margin_scale, floor, maintenance) are not estimated here: they
come from the base book (config/risk.yaml), which governance sets separately.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist

import numpy as np

from perpdex.config import load_risk
from perpdex.constants import BPS, MAX_SCENARIOS, WAD
from perpdex.errors import PerpdexError
from perpdex.risk import directions
from perpdex.risk.correlation import RiskEstimate, estimate, log_returns
from perpdex.risk.history import PriceSeries
from perpdex.sdk import riskbook
from perpdex.sdk.riskbook import RiskBook
from perpdex.units import from_wad

MAX_DOWN_BPS = BPS  # the contract refuses shocks below -100%
MAX_UP_BPS = 2**15 - 1  # a shock is a signed 16-bit field
# float noise allowed when rounding up: 0.15 * 10_000 is 1500.0000000000002, not 1501 bp
ROUNDING_SLACK_BPS = 1e-9
KIND_ORDER = {"joint": 0, "idio": 1, "pc": 2}


class DesignError(PerpdexError):
    """The scenario design cannot be built from these inputs."""


@dataclass(frozen=True)
class DesignParams:
    """Knobs of the scenario design (defaults: 2-day horizon, 3.5 sigma, 99.5% tails)."""

    horizon_days: int = 2
    k_sigma: float = 3.5
    tail_quantile: float | None = 0.995
    ewma_lambda: float | None = None
    window: int | None = None  # last N daily returns only
    min_explained: float = 0.99  # kept for the CLI; every component fits when slots allow
    z: float = 2.33  # concentration add-on z * sqrt(n' S n): one-sided 99% (normal)
    idiosyncratic: bool = True
    joint: bool = True
    max_scenarios: int = MAX_SCENARIOS
    # widen the binding scenario wherever a book direction's historical tail loss (at
    # tail_quantile, capped at its imr_min) exceeds the scenario set's worst loss
    cover_history: bool = True

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise DesignError("--horizon must be at least 1 day")
        if self.k_sigma <= 0:
            raise DesignError("--k must be above 0 (it is the move in standard deviations)")
        if self.tail_quantile is not None and not 0.5 < self.tail_quantile < 1:
            raise DesignError("--tail-quantile must lie between 0.5 and 1 (e.g. 0.995)")
        if self.z <= 0:
            raise DesignError("--z must be above 0 (the add-on's standard deviations)")
        if not 0 < self.min_explained <= 1:
            raise DesignError("min_explained must lie in (0, 1]")
        if not 2 <= self.max_scenarios <= MAX_SCENARIOS:
            raise DesignError(f"max_scenarios must lie in 2..{MAX_SCENARIOS} (contract limit)")


@dataclass(frozen=True)
class ScenarioSpec:
    """One designed scenario before rounding: horizon log-moves per market."""

    name: str
    kind: str  # "joint", "pc" or "idio"
    index: int  # component number (pc), market index (idio), 0 (joint)
    direction: int  # -1 down, +1 up
    k: float  # standard deviations used
    log_moves: tuple[float, ...]
    note: str
    linear: bool = False  # the moves are price moves already (no exp(x) - 1)

    @property
    def simple_moves(self) -> tuple[float, ...]:
        """Price moves: exp(x) - 1 of the log moves, except the concentration (pc)
        scenarios, which are linear (the move *is* the vector) so that their worst loss
        bounds the linear add-on z * sqrt(n' S n) exactly."""
        if self.kind == "pc" or self.linear:
            return self.log_moves
        return tuple(math.expm1(x) for x in self.log_moves)


@dataclass(frozen=True)
class Adjustment:
    """A shock widened to satisfy the coverage rule."""

    scenario: str
    market: str
    before_bps: int
    after_bps: int
    reason: str = ""

    def __str__(self) -> str:
        side = "down" if self.after_bps < 0 else "up"
        why = self.reason or f"no scenario moved {self.market} {side} by its imr_min"
        return (
            f"{self.scenario}: {self.market} {self.before_bps:+d} -> {self.after_bps:+d} bp ({why})"
        )


@dataclass(frozen=True)
class Design:
    """The designed book with everything that produced it."""

    symbols: tuple[str, ...]
    estimate: RiskEstimate
    params: DesignParams
    eigenvalues: np.ndarray  # horizon variance per component, descending
    eigenvectors: np.ndarray  # columns, sign-normalised
    specs: tuple[ScenarioSpec, ...]  # in book order
    dropped: tuple[str, ...]  # candidates beyond max_scenarios
    adjustments: tuple[Adjustment, ...]
    book: RiskBook

    @property
    def explained(self) -> np.ndarray:
        return np.asarray(self.eigenvalues / self.eigenvalues.sum())

    @property
    def horizon_vol(self) -> np.ndarray:
        return np.asarray(self.estimate.vol * math.sqrt(self.params.horizon_days))


# --- building blocks -------------------------------------------------------------------------


def round_up_bps(fraction: float) -> int:
    """Simple return -> bp, rounded away from zero (never milder), within [-100%, u16]."""
    if not math.isfinite(fraction):
        raise DesignError(f"shock {fraction} is not a number; check the price history")
    magnitude = math.ceil(abs(fraction) * BPS - ROUNDING_SLACK_BPS)
    magnitude = max(magnitude, 0)
    if fraction < 0:
        return -min(magnitude, MAX_DOWN_BPS)
    return min(magnitude, MAX_UP_BPS)


def principal_components(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of a covariance, each vector
    signed so its components sum to a positive number (PC1 up = the market up), or, if
    they sum to about zero, so its largest component is positive."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    for j in range(vecs.shape[1]):
        v = vecs[:, j]
        total = v.sum()
        sign = np.sign(total) if abs(total) > 1e-9 else np.sign(v[np.argmax(np.abs(v))])
        vecs[:, j] = v * (sign or 1.0)
    return vals, vecs


def tail_k(standardised: np.ndarray, k_sigma: float, q: float | None) -> tuple[float, float]:
    """(k down, k up): `k_sigma`, raised to the empirical q-quantile of the moves in units
    of their own standard deviation when the tails are fatter."""
    if q is None or standardised.size < 2:
        return k_sigma, k_sigma
    s = standardised / standardised.std()
    return max(k_sigma, float(np.quantile(-s, q))), max(k_sigma, float(np.quantile(s, q)))


def _describe(moves: Sequence[float], symbols: Sequence[str]) -> str:
    parts = [f"{s} {math.expm1(x):+.1%}" for s, x in zip(symbols, moves, strict=True) if x]
    return ", ".join(parts) or "no move"


def _candidates(
    series: PriceSeries, est: RiskEstimate, p: DesignParams
) -> tuple[
    list[list[ScenarioSpec]],
    list[list[ScenarioSpec]],
    list[list[ScenarioSpec]],
    np.ndarray,
    np.ndarray,
]:
    """Candidate down/up pairs: (joint, single-market by size, components by variance),
    and the components. Component pairs are unit moves (one sd along the eigenvector);
    `design` scales the ones it keeps."""
    syms = est.symbols
    n = len(syms)
    h = p.horizon_days
    cov_h = est.horizon_cov(h)
    vals, vecs = principal_components(cov_h)
    prices = series.prices if p.window is None else series.prices[-(p.window + h) :]
    rh = log_returns(prices, h)
    rh = rh - rh.mean(axis=0)
    sig = np.sqrt(np.diag(cov_h))

    def pair(
        kind: str,
        idx: int,
        label: str,
        unit: np.ndarray,
        ks: tuple[float, float],
        what: str,
    ) -> list[ScenarioSpec]:
        out = []
        for d, k, side in ((-1, ks[0], "down"), (1, ks[1], "up")):
            moves = tuple(float(x) for x in d * k * unit)
            out.append(
                ScenarioSpec(
                    name=f"{label}-{side}",
                    kind=kind,
                    index=idx,
                    direction=d,
                    k=k,
                    log_moves=moves,
                    note=f"{what} {side} {k:.2f} sd: {_describe(moves, syms)}",
                )
            )
        return out

    joint: list[list[ScenarioSpec]] = []
    if p.joint:
        # per market tails; the crash takes each market's own down-tail multiplier
        ks = [tail_k(rh[:, i], p.k_sigma, p.tail_quantile) for i in range(n)]
        crash = tuple(-ks[i][0] * sig[i] for i in range(n))
        rally = tuple(ks[i][1] * sig[i] for i in range(n))
        joint.append(
            [
                ScenarioSpec(
                    "crypto-crash",
                    "joint",
                    0,
                    -1,
                    min(k[0] for k in ks),
                    crash,
                    f"equal move, every market down together: {_describe(crash, syms)}",
                ),
                ScenarioSpec(
                    "crypto-rally",
                    "joint",
                    0,
                    1,
                    min(k[1] for k in ks),
                    rally,
                    f"equal move, every market up together: {_describe(rally, syms)}",
                ),
            ]
        )
    pcs: list[list[ScenarioSpec]] = []
    for j in range(n):
        if vals[j] <= 0:
            continue
        unit = vecs[:, j] * math.sqrt(vals[j])
        # fat tails: z is a one-sided normal quantile (2.33: 99%); where the component's
        # own standardised h-day moves have a fatter quantile at that confidence, the
        # scenario takes it instead (k here is that factor over z, per direction)
        score = rh @ vecs[:, j]
        ks_pc = (1.0, 1.0)
        if p.tail_quantile is not None:
            zq = tail_k(score, p.z, NormalDist().cdf(p.z))
            ks_pc = (zq[0] / p.z, zq[1] / p.z)
        pcs.append(pair("pc", j, f"pc{j + 1}", unit, ks_pc, f"component {j + 1}"))
    idio: list[tuple[float, list[ScenarioSpec]]] = []
    if p.idiosyncratic:
        prec = np.linalg.pinv(cov_h)
        for i in range(n):
            sd_i = math.sqrt(1.0 / prec[i, i]) if prec[i, i] > 0 else sig[i]
            beta = -prec[i] / prec[i, i]
            beta[i] = 0.0
            resid = rh[:, i] - rh @ beta
            unit = np.zeros(n)
            unit[i] = sd_i
            ks_i = tail_k(resid, p.k_sigma, p.tail_quantile)
            idio.append((sd_i, pair("idio", i, syms[i].lower(), unit, ks_i, f"{syms[i]} alone")))
    idio.sort(key=lambda t: -t[0])
    return joint, [q for _, q in idio], pcs, vals, vecs


# --- the design ---------------------------------------------------------------------------


def coverage_gaps(book: RiskBook) -> list[tuple[int, str]]:
    """(market, "down"|"up") pairs that no scenario covers by imr_min (the contract's rule)."""
    gaps = []
    for m, r in enumerate(book.markets):
        col = [row[m] for row in book.shocks]
        if min([0, *col]) > -r.imr_min_bps:
            gaps.append((m, "down"))
        if max([0, *col]) < r.imr_min_bps:
            gaps.append((m, "up"))
    return gaps


def design(
    series: PriceSeries,
    base: RiskBook,
    symbols: Sequence[str],
    params: DesignParams | None = None,
) -> Design:
    """Scenario set from `series`, with ratios (and market order `symbols`) from `base`.

    Kept in order, in down/up pairs, up to `max_scenarios`: the equal move (joint), every
    market's single-market move, then the concentration scenarios (components by
    variance). The d components kept are scaled to z * sqrt(d) sd each: the worst loss of
    any book over +/- that cross-polytope is at least z * sqrt(n' S_d n), the add-on over
    the components kept (all of them when the slots allow: `Design.concentration_share`).
    Then every single-market move is widened to at least imr_min, the equal moves to at
    least imr_min and to every market's extreme shock of the book."""
    p = params or DesignParams()
    syms = tuple(symbols)
    if len(base.markets) != len(syms):
        raise DesignError(
            f"the base book has {len(base.markets)} markets but {len(syms)} symbols were given; "
            "the base book must list the deployed markets in order"
        )
    data = series.select(syms)
    need = p.horizon_days + (p.window or 0) + 2
    if data.n_days < need:
        raise DesignError(
            f"{data.n_days} days of prices are too few for a {p.horizon_days}-day horizon; "
            "use a longer history or a shorter --horizon"
        )
    est = estimate(data, p.ewma_lambda, p.window)
    joint, single, pcs, vals, vecs = _candidates(data, est, p)
    # the first component ("the market": every coin the same way) merges into the equal
    # moves, scaled out to the book's extremes: one pair fewer (12 scenarios for three
    # markets, the margin check's gas), and a vertex pushed outwards along itself keeps the
    # cross-polytope around the ellipsoid
    merge = bool(joint) and bool(pcs) and pcs[0][0].index == 0 and bool(np.all(vecs[:, 0] > 0))
    pc1 = pcs[0] if merge else None
    if merge:
        pcs = pcs[1:]
    ordered = joint + single + pcs
    keep_pairs = p.max_scenarios // 2
    kept = ordered[:keep_pairs]
    dropped = tuple(s.name for pair in ordered[keep_pairs:] for s in pair)
    n_pc = sum(1 for pair in kept if pair[0].kind == "pc") + (1 if merge else 0)
    scale = p.z * math.sqrt(n_pc) if n_pc else 0.0
    chosen: list[ScenarioSpec] = []
    for pair in kept:
        for sp in pair:
            if sp.kind == "pc":
                moves = tuple(x * scale for x in sp.log_moves)
                side = "down" if sp.direction < 0 else "up"
                sp = dataclasses.replace(
                    sp,
                    k=scale * sp.k,
                    log_moves=moves,
                    note=(
                        f"concentration, component {sp.index + 1} {side} {scale * sp.k:.2f} sd "
                        f"({_z_text(p.z, sp.k)} x sqrt({n_pc})), linear: "
                        f"{_describe_linear(moves, syms)}"
                    ),
                )
            chosen.append(sp)
    chosen.sort(key=lambda s: (KIND_ORDER[s.kind], s.index, s.direction))
    names = [s.name for s in chosen]
    shocks = [[round_up_bps(x) for x in s.simple_moves] for s in chosen]
    adjustments = _widen(shocks, chosen, base, syms)
    adjustments += _cover(shocks, chosen, base, syms)
    if pc1 is not None:
        for k, sp in enumerate(chosen):
            if sp.kind != "joint":
                continue
            d = sp.direction
            pc1_d = next(x for x in pc1 if x.direction == d)
            unit = pc1_d.log_moves
            u = [x * scale for x in unit]
            # every market at least as far as any scenario (and the tail crash / rally)
            ext = [d * x for x in (min(c) if d < 0 else max(c) for c in zip(*shocks, strict=True))]
            c = max([1.0, *(e / BPS / (d * ui) for e, ui in zip(ext, u, strict=True))])
            moves = tuple(c * ui for ui in u)
            side = "down" if d < 0 else "up"
            chosen[k] = dataclasses.replace(
                sp,
                k=c * scale * pc1_d.k,
                log_moves=moves,
                linear=True,
                note=(
                    f"equal move {side}: component 1 at {c * scale * pc1_d.k:.2f} sd "
                    f"({_z_text(p.z, pc1_d.k)} x sqrt({n_pc}) x {c:.3f}, out to every "
                    f"market's largest {side} move), linear: {_describe_linear(moves, syms)}"
                ),
            )
            shocks[k] = [round_up_bps(x) for x in moves]
    adjustments += _equal_moves(shocks, chosen, syms)
    if p.cover_history and p.tail_quantile is not None:
        adjustments += _cover_history(shocks, chosen, base, syms, data, p)
    book = RiskBook(
        floor_bps=base.floor_bps,
        maintenance_bps=base.maintenance_bps,
        markets=base.markets,
        names=tuple(names),
        shocks=tuple(tuple(r) for r in shocks),
    )
    return Design(
        symbols=syms,
        estimate=est,
        params=p,
        eigenvalues=vals,
        eigenvectors=vecs,
        specs=tuple(chosen),
        dropped=dropped,
        adjustments=tuple(adjustments),
        book=book,
    )


def _z_text(z: float, factor: float) -> str:
    """`z 2.33`, or `z 2.33 raised to 2.81 by the tail` (the component's fatter tail)."""
    return f"z {z:g} raised to {z * factor:.2f} by the tail" if factor > 1.0 else f"z {z:g}"


def _describe_linear(moves: Sequence[float], symbols: Sequence[str]) -> str:
    parts = [f"{s} {x:+.1%}" for s, x in zip(symbols, moves, strict=True) if x]
    return ", ".join(parts) or "no move"


def _widen(
    shocks: list[list[int]], specs: list[ScenarioSpec], base: RiskBook, syms: Sequence[str]
) -> list[Adjustment]:
    """Single-market moves to at least imr_min on their market, equal moves to at least
    imr_min on every market (in place)."""
    out = []
    for k, sp in enumerate(specs):
        if sp.kind not in ("idio", "joint"):
            continue
        cols = [sp.index] if sp.kind == "idio" else range(len(syms))
        for m in cols:
            imr = base.markets[m].imr_min_bps
            if sp.direction * shocks[k][m] < imr:
                before = shocks[k][m]
                shocks[k][m] = sp.direction * imr
                out.append(Adjustment(sp.name, syms[m], before, shocks[k][m], "widened to imr_min"))
    return out


def _equal_moves(
    shocks: list[list[int]], specs: list[ScenarioSpec], syms: Sequence[str]
) -> list[Adjustment]:
    """The joint crash (rally) takes every market's largest down (up) shock of the book:
    the equal move the contract requires (in place)."""
    out = []
    for k, sp in enumerate(specs):
        if sp.kind != "joint":
            continue
        d = sp.direction
        for m in range(len(syms)):
            col = [row[m] for row in shocks]
            ext = min(col) if d < 0 else max(col)
            if shocks[k][m] != ext:
                before = shocks[k][m]
                shocks[k][m] = ext
                out.append(
                    Adjustment(sp.name, syms[m], before, ext, "widened to the book's largest move")
                )
    return out


COVER_SAMPLES = 20_000
COVER_SEED = 183  # the history's seed; any fixed seed keeps the design reproducible
COVER_ROUNDS = 6
COVER_STEPS = 500
# the target is met with this much room: the tail of a direction between the sampled ones
# (a quantile of ~1,460 windows, rough in the direction) can sit a little above both
COVER_MARGIN = 1.02


def _cover_history(
    shocks: list[list[int]],
    specs: list[ScenarioSpec],
    base: RiskBook,
    syms: Sequence[str],
    series: PriceSeries,
    p: DesignParams,
) -> list[Adjustment]:
    """Historical-tail coverage (in place): for every book direction n (signed weights on
    the unit L1 sphere, `directions.sphere`, refined locally with `directions.climb`), the
    scenario set's worst loss must reach min(tail(n), sum_i imr_min_i |n_i|), tail(n) the
    `tail_quantile` of n's losses over every `horizon_days` window of the history. Where it
    does not, the scenario that binds there (the largest loss of n) is scaled out from zero
    by the shortfall, worst direction first, and the equal moves follow every market's
    extremes. Covering that target is what `perpdex risk check` gates on: with it, no book's
    tail loss exceeds its portfolio initial margin unless it pays isolated margin (the size
    add-on and the floor only add to both sides)."""
    h = p.horizon_days
    prices = series.prices if p.window is None else series.prices[-(p.window + h) :]
    moves = directions.window_moves(prices, h)
    imr = np.array([r.imr_min_bps for r in base.markets], dtype=np.float64) / BPS
    q = float(p.tail_quantile or 0.995)

    def target(w: np.ndarray) -> np.ndarray:
        tail = directions.tail_losses(moves, w, q) * COVER_MARGIN
        return np.asarray(np.minimum(tail, np.abs(w) @ imr))

    def losses(w: np.ndarray) -> np.ndarray:
        return np.asarray(-(w @ (np.asarray(shocks, dtype=np.float64) / BPS).T))

    rng = np.random.default_rng(COVER_SEED)
    w = directions.sphere(len(syms), COVER_SAMPLES, rng)
    t = target(w)
    before = [list(row) for row in shocks]
    for _ in range(COVER_ROUNDS):
        for _ in range(COVER_STEPS):
            loss = losses(w)
            ratio = t / np.maximum(loss.max(axis=1), 1e-12)
            j = int(np.argmax(ratio))
            if ratio[j] <= 1.0:
                break
            k = int(np.argmax(loss[j]))
            wider = [round_up_bps(x / BPS * float(ratio[j])) for x in shocks[k]]
            if wider == shocks[k]:  # at -100% or the 16-bit limit: cannot widen further
                break
            shocks[k] = wider
            _equal_moves(shocks, specs, syms)
        # directions between the samples: refine the worst and keep any still short
        worst = w[np.argsort(t / np.maximum(losses(w).max(axis=1), 1e-12))[::-1][:16]]
        found, val = directions.climb(
            lambda v: target(v) / np.maximum(losses(v).max(axis=1), 1e-12), worst, rng
        )
        short = found[val > 1.0]
        if short.shape[0] == 0:
            break
        w = np.vstack([w, short])
        t = np.concatenate([t, target(short)])
    out = []
    for k, sp in enumerate(specs):
        for m, sym in enumerate(syms):
            if shocks[k][m] != before[k][m]:
                out.append(
                    Adjustment(
                        sp.name,
                        sym,
                        before[k][m],
                        shocks[k][m],
                        f"widened to the {q:.1%} historical loss",
                    )
                )
    return out


def _cover(
    shocks: list[list[int]], specs: list[ScenarioSpec], base: RiskBook, syms: Sequence[str]
) -> list[Adjustment]:
    """Widen shocks in place until every market is covered down and up by its imr_min."""
    out = []
    for m, r in enumerate(base.markets):
        imr = r.imr_min_bps
        for d in (-1, 1):
            col = [row[m] for row in shocks]
            if any(d * x >= imr for x in col):
                continue
            pick = next(
                (
                    k
                    for k, s in enumerate(specs)
                    if s.kind == "idio" and s.index == m and s.direction == d
                ),
                None,
            )
            if pick is None:
                pick = next(
                    (k for k, s in enumerate(specs) if s.kind == "joint" and s.direction == d),
                    None,
                )
            if pick is None:
                pick = max(range(len(col)), key=lambda k: d * col[k])
            before = shocks[pick][m]
            shocks[pick][m] = d * imr
            out.append(Adjustment(specs[pick].name, syms[m], before, d * imr))
    return out


# --- evaluation: the contract's formulas in floating point -----------------------------------


@dataclass(frozen=True)
class MarginBreakdown:
    """Initial and maintenance requirements of one book of positions (USD)."""

    gross: float
    isolated: float
    worst_loss: float
    worst_scenario: str | None
    floor: float
    addon: float
    portfolio: float
    maintenance_isolated: float
    maintenance_portfolio: float


def requirements(
    book: RiskBook, sizes: Sequence[float], prices: Sequence[float]
) -> MarginBreakdown:
    """margin.vy's formulas (without the contract's wei rounding) for sizes in base units
    and prices in USD, one per market in book order."""
    gross = iso = addon = 0.0
    losses = [0.0] * book.n_scenarios
    for m, (s, px) in enumerate(zip(sizes, prices, strict=True)):
        if not s:
            continue
        r = book.markets[m]
        notional = abs(s) * px
        scale = r.margin_scale / WAD
        slope = notional * r.imr_slope_bps / BPS * abs(s) / scale
        iso += notional * r.imr_min_bps / BPS + slope
        addon += slope
        gross += notional
        for k in range(book.n_scenarios):
            losses[k] -= s * px * book.shocks[k][m] / BPS
    worst, worst_k = 0.0, None
    for k, loss in enumerate(losses):
        if loss > worst:
            worst, worst_k = loss, k
    floor = gross * book.floor_bps / BPS
    port = min(iso, max(worst, floor) + addon)
    mmr = book.maintenance_bps / BPS
    return MarginBreakdown(
        gross=gross,
        isolated=iso,
        worst_loss=worst,
        worst_scenario=None if worst_k is None else book.names[worst_k],
        floor=floor,
        addon=addon,
        portfolio=port,
        maintenance_isolated=iso * mmr,
        maintenance_portfolio=port * mmr,
    )


# --- YAML (the config/risk.yaml layout) -------------------------------------------------------


def _fraction(bps: int) -> str:
    return format((Decimal(bps) / BPS).normalize(), "f")


def book_yaml(
    book: RiskBook,
    symbols: Sequence[str],
    header: Sequence[str] = (),
    notes: dict[str, str] | None = None,
) -> str:
    """The book in config/risk.yaml's layout (loadable with `load_book`)."""
    notes = notes or {}
    lines = [f"# {h}".rstrip() for h in header]
    lines += [
        f"floor: {_fraction(book.floor_bps)}",
        f"maintenance_ratio: {_fraction(book.maintenance_bps)}",
        "",
        "markets:",
    ]
    for s, r in zip(symbols, book.markets, strict=True):
        scale = format(from_wad(r.margin_scale).normalize(), "f")
        lines.append(
            f"  {s}: {{imr_min: {_fraction(r.imr_min_bps)}, "
            f"imr_slope: {_fraction(r.imr_slope_bps)}, margin_scale: {scale}}}"
        )
    lines += ["", "# shocks in basis points", "scenarios:"]
    width = max(len(n) for n in book.names) + 1
    for name, row in zip(book.names, book.shocks, strict=True):
        if name in notes:
            lines.append(f"  # {notes[name]}")
        cells = ", ".join(f"{s}: {x}" for s, x in zip(symbols, row, strict=True))
        lines.append(f"  - {{name: {(name + ',').ljust(width)} {cells}}}")
    return "\n".join(lines) + "\n"


def load_book(path: Path | str, symbols: Sequence[str]) -> RiskBook:
    """A book file in config/risk.yaml's layout, ordered by `symbols`."""
    p = Path(path)
    if not p.exists():
        raise DesignError(
            f"no risk book at {p}; design one with `perpdex risk design --out {p}` or pass "
            "--book config/risk.yaml"
        )
    try:
        return riskbook.from_config(load_risk(p), list(symbols))
    except ValueError as e:
        raise DesignError(f"{p}: {e}; add the missing markets to its `markets:` section") from e
