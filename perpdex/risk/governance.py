"""Move the on-chain risk book to a target book in steps the contract accepts.

`set_risk_book` (contracts/modules/governance.vy) refuses a book that moves any shock by
more than `max_shock_step_bps`, or the floor, the maintenance ratio or any market's imr_min
or imr_slope by more than `max_ratio_step_bps`, from the current book (a scenario missing
on one side counts as all zeros; rows of markets new to the book are not bounded), and
any market's margin_scale by more than a halving or a doubling. Every published book must
also pass the static checks: coverage (each market moved down and up by at least its
imr_min), floor <= imr_min, shocks >= -100%.

`plan_path` interpolates linearly from the current book to the target in n steps, n the
fewest the limits allow, with every value rounded half-up on the way (so a step moves a
value by at most ceil(change / n) <= limit). Linear interpolation keeps floor <= imr_min
but not coverage: when the market's down (up) coverage moves from one scenario to another,
the mid-point can cover neither. The planner then holds one reachable shock at exactly
-imr_min (+imr_min) for that step, and keeps pursuing the linear path afterwards (with a
few extra steps if a hold put a value behind it). Where no hold can work (e.g. a book of two
scenarios whose down and up roles swap), it bridges: two temporary scenarios covering every
market are grown first, carry the coverage while the rest moves, and are shrunk and dropped
at the end. Each planned step is checked against a replica of the contract's rules before
anything is sent; the last step is the target.

The equal-move rule (the contract's too) survives interpolation only when the joint
scenarios keep their positions; otherwise the previous book's joint scenario is held at
every market's extreme shock for the step (always within one shock step, see
`_hold_equal_moves`) until another scenario takes the role.

`policy_problems` adds the design policy `perpdex risk` enforces before a push on top of
the contract's rules: every market moves alone (single-market scenarios), down and up, by
at least its imr_min (the contract cannot require it: 16 scenarios would not hold one
pair per market for more than 7 markets).

`push` reads the current book and limits from the chain, plans, and sends the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from perpdex.config import ROOT, MarketRisk
from perpdex.constants import BPS, MAX_SCENARIOS
from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk import riskbook
from perpdex.sdk.math.governance import (
    book_problems,
    check_step,
    equal_move_rows,
    scale_step_ok,
)
from perpdex.sdk.math.margin import SHOCK_MAX
from perpdex.sdk.riskbook import RiskBook

REVERT_HINTS = {
    "clearinghouse: shock change above step limit": (
        "the on-chain book or the step limits changed since the plan was made; re-run "
        "`perpdex risk push` to plan again from the chain"
    ),
    "clearinghouse: ratio change above step limit": (
        "the on-chain book or the step limits changed since the plan was made; re-run "
        "`perpdex risk push` to plan again from the chain"
    ),
    "clearinghouse: book must cover every market": (
        "a market was listed after the book was designed; add its ratios to the book "
        "(config/risk.yaml) and run `perpdex risk design` again"
    ),
    "clearinghouse: no scenario moves every market by its largest shock": (
        "add (or widen) an equal-move pair: one scenario moving every market down by its "
        "largest down shock of the book, one moving every market up by its largest up "
        "shock (`perpdex risk design` builds them as crypto-crash / crypto-rally)"
    ),
    "clearinghouse: scenarios must cover initial margin": (
        "give every market a scenario down and one up by at least its imr_min "
        "(`perpdex risk design` does this)"
    ),
    "access_control: account is missing role": (
        "sign with an account holding the clearinghouse's RISK_ROLE (--account)"
    ),
}
DEFAULT_HINT = "check the book with `perpdex risk diff` and the account with --account"


class PlanError(PerpdexError):
    """No bounded path to the target book, or the target book is invalid."""


@dataclass(frozen=True)
class StepLimits:
    """The contract's per-update bounds (bp)."""

    shock_bps: int
    ratio_bps: int

    def __post_init__(self) -> None:
        if self.shock_bps <= 0 or self.ratio_bps <= 0:
            raise PlanError("step limits must be positive; read them from the chain")


# --- the contract's rules, in Python -----------------------------------------------------------
# book_problems, equal_move_rows and check_step live in the mirror, perpdex/sdk/math/governance.py;
# the step limits and the single-market policy stay here.


def single_market_rows(book: RiskBook, m: int, d: int) -> list[int]:
    """Scenarios that move market m alone (every other market flat) by at least its
    imr_min in direction d."""
    imr = book.markets[m].imr_min_bps
    return [
        k
        for k, row in enumerate(book.shocks)
        if d * row[m] >= imr and all(x == 0 for j, x in enumerate(row) if j != m)
    ]


def policy_problems(book: RiskBook, n_listed: int = 0) -> list[str]:
    """Why `perpdex risk` refuses to publish `book`: the contract's rules
    (`book_problems`) plus the single-market rule (each market alone, down and up, by at
    least its imr_min). Empty if the book passes."""
    out = book_problems(book, n_listed)
    if any("do not match" in p for p in out):
        return out
    for m, r in enumerate(book.markets):
        for d, side in ((-1, "down"), (1, "up")):
            if not single_market_rows(book, m, d):
                out.append(
                    f"market {m}: no single-market move {side} (a scenario moving it alone "
                    f"by at least its imr_min, {r.imr_min_bps} bp)"
                )
    return out


def step_problems(old: RiskBook, new: RiskBook, limits: StepLimits) -> list[str]:
    """Why `set_risk_book(new)` would exceed the step limits over `old` (empty if not)."""
    out: list[str] = []

    def ratio(what: str, a: int, b: int) -> None:
        if not check_step(a, b, limits.ratio_bps):
            out.append(f"{what} moves {a} -> {b} bp (limit {limits.ratio_bps})")

    ratio("floor", old.floor_bps, new.floor_bps)
    ratio("maintenance ratio", old.maintenance_bps, new.maintenance_bps)
    for m in range(min(len(old.markets), len(new.markets))):
        ratio(f"market {m} imr_min", old.markets[m].imr_min_bps, new.markets[m].imr_min_bps)
        ratio(f"market {m} imr_slope", old.markets[m].imr_slope_bps, new.markets[m].imr_slope_bps)
        a_s, b_s = old.markets[m].margin_scale, new.markets[m].margin_scale
        if not scale_step_ok(a_s, b_s):
            out.append(f"market {m} margin_scale moves {a_s} -> {b_s} (at most x2 or /2 a step)")
        for k in range(MAX_SCENARIOS):
            a = old.shocks[k][m] if k < old.n_scenarios else 0
            b = new.shocks[k][m] if k < new.n_scenarios else 0
            if not check_step(a, b, limits.shock_bps):
                out.append(
                    f"scenario {k} market {m} shock moves {a} -> {b} bp (limit {limits.shock_bps})"
                )
    return out


# --- planning ------------------------------------------------------------------------------


def _lerp(a: int, b: int, i: int, n: int) -> int:
    """a + (b - a) * i / n rounded half-up, exactly (integers)."""
    return a + ((b - a) * i * 2 + n) // (2 * n)


def _clamp(x: int, centre: int, radius: int) -> int:
    return max(centre - radius, min(centre + radius, x))


def _steps_for(delta: int, limit: int) -> int:
    return math.ceil(abs(delta) / limit)


def _scale_steps(a: int, b: int) -> int:
    """Updates needed to move a margin_scale from a to b, halving or doubling at most."""
    n = 0
    while a != b:
        a = _scale_toward(a, b)
        n += 1
    return n


def _scale_toward(prev: int, target: int) -> int:
    """The next margin_scale on the way from `prev` to `target` (the contract's bound)."""
    return min(target, prev * 2) if target > prev else max(target, (prev + 1) // 2)


def plan_path(
    current: RiskBook | None, target: RiskBook, limits: StepLimits, n_listed: int = 0
) -> list[RiskBook]:
    """Books to publish in order, the last equal to `target`; [] if already there."""
    problems = book_problems(target, n_listed)
    if problems:
        raise PlanError(
            "the target book would be refused: "
            + "; ".join(problems[:3])
            + ("" if len(problems) <= 3 else f" (+{len(problems) - 3} more)")
            + "; fix the book (e.g. `perpdex risk design`) and try again"
        )
    if current is None or not step_problems(current, target, limits):
        return [] if current == target else [target]
    try:
        return _interpolate(current, target, limits, n_listed)
    except PlanError as direct:
        bridged = _bridged(current, target, limits, n_listed)
        if bridged is None:
            raise direct from None
        return bridged


def _bridged(
    current: RiskBook, target: RiskBook, limits: StepLimits, n_listed: int
) -> list[RiskBook] | None:
    """Three legs through two temporary scenarios that move every market down / up by
    the largest move either book gives it (at least the larger of its current and target
    imr_min), so they carry both the coverage and the equal moves: grow them (the current book still
    covers), move everything else (they cover), shrink and drop them (the target covers).
    None when there is no room for two more scenarios or a leg fails."""
    n_s = max(current.n_scenarios, target.n_scenarios)
    if n_s + 2 > MAX_SCENARIOS:
        return None
    n_m, old_m = len(target.markets), len(current.markets)
    start_markets = tuple(
        current.markets[m] if m < old_m else target.markets[m] for m in range(n_m)
    )
    reach = [max(start_markets[m].imr_min_bps, target.markets[m].imr_min_bps) for m in range(n_m)]

    def extreme(m: int, d: int) -> int:
        # the bridges are also the equal moves while they stand: every market at the
        # largest move either book gives it (and at least imr_min)
        vals = [d * reach[m]]
        for b in (current, target):
            if m < len(b.markets):
                vals += [row[m] for row in b.shocks]
        return min(vals) if d < 0 else max(vals)

    bridges = (
        tuple(extreme(m, -1) for m in range(n_m)),
        tuple(extreme(m, 1) for m in range(n_m)),
    )
    names = (
        *(target.names[k] if k < target.n_scenarios else current.names[k] for k in range(n_s)),
        "bridge-down",
        "bridge-up",
    )

    def padded(book: RiskBook, k: int, m: int) -> int:
        if m >= len(book.markets):
            return target.shocks[k][m] if k < target.n_scenarios else 0
        return book.shocks[k][m] if k < book.n_scenarios else 0

    a = RiskBook(
        floor_bps=current.floor_bps,
        maintenance_bps=current.maintenance_bps,
        markets=start_markets,
        names=names,
        shocks=tuple(tuple(padded(current, k, m) for m in range(n_m)) for k in range(n_s))
        + bridges,
    )
    b = RiskBook(
        floor_bps=target.floor_bps,
        maintenance_bps=target.maintenance_bps,
        markets=target.markets,
        names=names,
        shocks=tuple(tuple(padded(target, k, m) for m in range(n_m)) for k in range(n_s)) + bridges,
    )
    try:
        legs = [
            _interpolate(current, a, limits, n_listed),
            _interpolate(a, b, limits, n_listed),
            _interpolate(b, target, limits, n_listed),
        ]
    except PlanError:
        return None
    path = [step for leg in legs for step in leg]
    _verify(current, path, limits, n_listed)
    return path


def _interpolate(
    current: RiskBook, target: RiskBook, limits: StepLimits, n_listed: int
) -> list[RiskBook]:
    """Linear path with coverage holds (module docstring); raises PlanError if stuck."""
    if current == target:
        return []
    n_m = len(target.markets)
    n_s = max(current.n_scenarios, target.n_scenarios)
    old_m = len(current.markets)

    def start_shock(k: int, m: int) -> int:
        if m >= old_m:  # a market new to the book: its row is not step-checked
            return end_shock(k, m)
        return current.shocks[k][m] if k < current.n_scenarios else 0

    def end_shock(k: int, m: int) -> int:
        return target.shocks[k][m] if k < target.n_scenarios else 0

    s0 = [[start_shock(k, m) for m in range(n_m)] for k in range(n_s)]
    s1 = [[end_shock(k, m) for m in range(n_m)] for k in range(n_s)]
    r0 = [current.markets[m] if m < old_m else target.markets[m] for m in range(n_m)]
    r1 = list(target.markets)
    # imr_min also moves no faster than a shock can follow it (coverage holds, below)
    imr_rate = min(limits.ratio_bps, limits.shock_bps)
    n = max(
        [1, _steps_for(target.floor_bps - current.floor_bps, limits.ratio_bps)]
        + [_steps_for(target.maintenance_bps - current.maintenance_bps, limits.ratio_bps)]
        + [_steps_for(r1[m].imr_min_bps - r0[m].imr_min_bps, imr_rate) for m in range(n_m)]
        + [
            _steps_for(r1[m].imr_slope_bps - r0[m].imr_slope_bps, limits.ratio_bps)
            for m in range(n_m)
        ]
        + [
            _steps_for(s1[k][m] - s0[k][m], limits.shock_bps)
            for k in range(n_s)
            for m in range(n_m)
        ]
        + [_scale_steps(r0[m].margin_scale, r1[m].margin_scale) for m in range(n_m)]
    )
    scales = [r.margin_scale for r in r0]
    names = tuple(
        target.names[k] if k < target.n_scenarios else current.names[k] for k in range(n_s)
    )
    step = limits.shock_bps
    prev = [row[:] for row in s0]
    path: list[RiskBook] = []
    max_iter = n + 2 * math.ceil((2 * BPS + SHOCK_MAX) / step) + 2
    for i in range(1, max_iter + 1):
        t = min(i, n)
        scales = [_scale_toward(scales[m], r1[m].margin_scale) for m in range(n_m)]
        markets = tuple(
            MarketRisk(
                imr_min_bps=_lerp(r0[m].imr_min_bps, r1[m].imr_min_bps, t, n),
                imr_slope_bps=_lerp(r0[m].imr_slope_bps, r1[m].imr_slope_bps, t, n),
                margin_scale=scales[m],
            )
            for m in range(n_m)
        )
        cur = [
            [_clamp(_lerp(s0[k][m], s1[k][m], t, n), prev[k][m], step) for m in range(n_m)]
            for k in range(n_s)
        ]
        for m in range(n_m):
            _hold_coverage(cur, prev, m, markets[m].imr_min_bps, step)
        _hold_equal_moves(cur, prev, [r.imr_min_bps for r in markets])
        prev = cur
        if i >= n and cur == s1:
            path.append(target)
            break
        path.append(
            RiskBook(
                floor_bps=_lerp(current.floor_bps, target.floor_bps, t, n),
                maintenance_bps=_lerp(current.maintenance_bps, target.maintenance_bps, t, n),
                markets=markets,
                names=names,
                shocks=tuple(tuple(r) for r in cur),
            )
        )
    else:
        raise PlanError(
            f"no bounded path reached the target within {max_iter} steps; raise the step "
            "limits (admin `set_risk_book_limits`) or publish an intermediate book first"
        )
    _verify(current, path, limits, n_listed)
    return path


def _hold_coverage(
    cur: list[list[int]], prev: list[list[int]], m: int, imr: int, step: int
) -> None:
    """Make market m covered down and up by `imr` in `cur`, setting as few shocks as
    possible to exactly -imr / +imr, each within `step` of `prev`.

    The previous book's best down (up) shock, its "anchor", can always reach -imr (+imr)
    this step when the previous book was covered and imr rose by at most `step`; the down
    repair never touches the up anchor and vice versa, and a repaired shock is not moved
    again, so two passes leave both directions covered."""
    n_s = len(cur)
    anchor = {
        -1: min(range(n_s), key=lambda k: prev[k][m]),
        1: max(range(n_s), key=lambda k: prev[k][m]),
    }
    fixed: set[int] = set()
    for d in (-1, 1, -1, 1):
        if any(d * cur[k][m] >= imr for k in range(n_s)):
            continue
        options = [
            k
            for k in range(n_s)
            if k not in fixed and k != anchor[-d] and d * prev[k][m] + step >= imr
        ]
        if not options:
            return  # _verify reports it
        # prefer a shock that does not cover the other side, then the nearest one
        k = min(options, key=lambda k: (-d * cur[k][m] >= imr, -d * cur[k][m]))
        cur[k][m] = d * imr
        fixed.add(k)


def _hold_equal_moves(cur: list[list[int]], prev: list[list[int]], imr: list[int]) -> None:
    """Keep an equal move each way in `cur`: if no scenario moves every market by its
    extreme shock (and by at least imr_min), set the previous book's equal-move scenario
    to those extremes.

    Feasible within one shock step: every shock of `cur` is within `step` of `prev`, and
    the anchor row held every market's extreme in `prev` (at or beyond imr_min there, and
    imr_min rose by at most one step), so the new extreme is at most one step further out
    than the anchor's old value; the anchor only moves outwards from `cur`, which was
    within a step inwards. Both extremes are computed before either anchor moves (the
    down anchor only falls and the up anchor only rises, so neither spoils the other)."""
    n_s, n_m = len(cur), len(imr)
    if n_s == 0 or n_m == 0:
        return
    ext = {
        -1: [min(min(r[m] for r in cur), -imr[m]) for m in range(n_m)],
        1: [max(max(r[m] for r in cur), imr[m]) for m in range(n_m)],
    }
    for d in (-1, 1):
        if any(all(r[m] == ext[d][m] for m in range(n_m)) for r in cur):
            continue
        anchors = equal_move_rows(prev, n_m, d)
        if not anchors:
            return  # _verify reports it
        cur[anchors[0]] = list(ext[d])


def _verify(current: RiskBook, path: Sequence[RiskBook], limits: StepLimits, n_listed: int) -> None:
    prev = current
    for i, book in enumerate(path, start=1):
        problems = book_problems(book, n_listed) + step_problems(prev, book, limits)
        if problems:
            raise PlanError(
                f"planned step {i}/{len(path)} would be refused ({problems[0]}); publish an "
                "intermediate book by hand or raise the step limits"
            )
        prev = book


def path_summary(current: RiskBook | None, path: Sequence[RiskBook]) -> list[dict[str, Any]]:
    """Per step: the largest shock and ratio moves and the scenario count."""
    out = []
    prev = current
    for book in path:
        shock = ratio = 0
        if prev is not None:
            for m in range(min(len(prev.markets), len(book.markets))):
                for k in range(MAX_SCENARIOS):
                    a = prev.shocks[k][m] if k < prev.n_scenarios else 0
                    b = book.shocks[k][m] if k < book.n_scenarios else 0
                    shock = max(shock, abs(b - a))
                a_r, b_r = prev.markets[m], book.markets[m]
                ratio = max(
                    ratio,
                    abs(a_r.imr_min_bps - b_r.imr_min_bps),
                    abs(a_r.imr_slope_bps - b_r.imr_slope_bps),
                )
            ratio = max(
                ratio,
                abs(prev.floor_bps - book.floor_bps),
                abs(prev.maintenance_bps - book.maintenance_bps),
            )
        out.append({"shock_bps": shock, "ratio_bps": ratio, "n_scenarios": book.n_scenarios})
        prev = book
    return out


# --- scenario order --------------------------------------------------------------------------


def _distance(a: Sequence[int], b: Sequence[int]) -> int:
    return max((abs(x - y) for x, y in zip(a, b, strict=False)), default=0)


def _hungarian(cost: list[list[float]]) -> list[int]:
    """Minimum-cost assignment of rows to columns (square matrix): column of each row."""
    n = len(cost)
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    p, way = [0] * (n + 1), [0] * (n + 1)
    for i in range(1, n + 1):
        p[0], j0 = i, 0
        minv, used = [inf] * (n + 1), [False] * (n + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = p[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    c = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if c < minv[j]:
                        minv[j], way[j] = c, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(n + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    col = [0] * n
    for j in range(1, n + 1):
        col[p[j] - 1] = j - 1
    return col


def align_to(target: RiskBook, reference: RiskBook) -> RiskBook:
    """`target` with its scenarios reordered so the largest index-wise shock change from
    `reference` (what the step limits bound) is as small as possible, then the total
    change, preferring equal names. Margins do not depend on scenario order."""
    n = target.n_scenarios
    slots = [
        list(reference.shocks[j]) if j < reference.n_scenarios else [0] * len(target.markets)
        for j in range(n)
    ]
    dist = [[_distance(target.shocks[i], slots[j]) for j in range(n)] for i in range(n)]
    name_penalty = [
        [
            0.0 if j < reference.n_scenarios and reference.names[j] == target.names[i] else 0.5
            for j in range(n)
        ]
        for i in range(n)
    ]
    # smallest bottleneck: the least threshold under which a full assignment exists
    big = float(10**9)
    best: list[int] | None = None
    for threshold in sorted({d for row in dist for d in row}):
        cost = [
            [dist[i][j] + name_penalty[i][j] if dist[i][j] <= threshold else big for j in range(n)]
            for i in range(n)
        ]
        col = _hungarian(cost)
        if all(cost[i][col[i]] < big for i in range(n)):
            best = col
            break
    assert best is not None  # the largest threshold admits every assignment
    order = sorted(range(n), key=lambda i: best[i])
    return RiskBook(
        floor_bps=target.floor_bps,
        maintenance_bps=target.maintenance_bps,
        markets=target.markets,
        names=tuple(target.names[i] for i in order),
        shocks=tuple(target.shocks[i] for i in order),
    )


# --- the chain ----------------------------------------------------------------------------------


def _handles(target: Any) -> tuple[Any, Any]:
    """(Clearinghouse ABI, ClearinghouseAdmin ABI) at the clearinghouse address, from a
    deploy.Protocol or either contract handle."""
    if hasattr(target, "admin") and hasattr(target, "clearinghouse"):
        return target.clearinghouse, target.admin
    address = str(target.address)
    ch = target if hasattr(target, "max_shock_step_bps") else contract_at("Clearinghouse", address)
    admin = (
        target if hasattr(target, "set_risk_book") else contract_at("ClearinghouseAdmin", address)
    )
    return ch, admin


@cache
def _contract_type(name: str) -> Any:
    from ape import Project, project

    from perpdex.sdk.handles import contract_type

    proj = project if Path(project.path).resolve() == ROOT else Project(ROOT)
    return contract_type(proj, name)


def contract_at(name: str, address: str) -> Any:
    """The perpdex contract `name`'s ABI at `address` (from any working directory)."""
    from ape import Contract

    return Contract(address, contract_type=_contract_type(name))


def read_limits(target: Any) -> StepLimits:
    ch, _ = _handles(target)
    return StepLimits(int(ch.max_shock_step_bps()), int(ch.max_ratio_step_bps()))


def read_book(target: Any) -> RiskBook | None:
    """The published book (None before the first one): the code at `risk_book()` after
    its leading STOP byte."""
    from ape import chain

    ch, _ = _handles(target)
    address = ch.risk_book()
    if int(str(address), 16) == 0:
        return None
    code = bytes(chain.provider.get_code(address))
    if len(code) < 33:
        raise PerpdexError(
            f"the risk book at {address} holds no data; check --network and --deployment"
        )
    return riskbook.decode(code[1:])


@dataclass(frozen=True)
class Plan:
    """What `push` would send."""

    current: RiskBook | None
    target: RiskBook
    limits: StepLimits
    steps: tuple[RiskBook, ...]
    version: int  # risk_book_version before the first step


def plan_push(target: Any, book: RiskBook) -> Plan:
    """Read the chain and plan (sends nothing)."""
    ch, _ = _handles(target)
    limits = read_limits(ch)
    current = read_book(ch)
    steps = plan_path(current, book, limits, int(ch.market_count()))
    return Plan(current, book, limits, tuple(steps), int(ch.risk_book_version()))


def check_sender(target: Any, sender: Any) -> None:
    """Raise unless `sender` holds the clearinghouse's RISK_ROLE (set_risk_book needs it)."""
    ch, _ = _handles(target)
    if not ch.hasRole(ch.RISK_ROLE(), sender):
        raise PerpdexError(
            f"{getattr(sender, 'address', sender)} lacks the clearinghouse's RISK_ROLE; sign "
            "with the risk account (--account), or have the admin grant it"
        )


# `set_risk_book` reverts with these while a book waits for the clearinghouse's
# `risk_book_delay` (a deployment handed over to the Timelock; see perpdex/deploy.py).
TIMELOCK_REASONS = (
    "clearinghouse: risk book not proposed",
    "clearinghouse: risk book timelock not over",
)


class BookTimelocked(PerpdexError):
    """The next book of a push is proposed (now or earlier) and not yet publishable."""

    def __init__(self, action: str, eta: int | None) -> None:
        self.eta = eta
        when = f"at or after unix time {eta}" if eta else "once its delay has passed"
        super().__init__(
            f"{action}: proposed, publishable {when} (the clearinghouse's risk_book_delay); "
            "run the same `perpdex risk push` again then to publish it"
        )


def _timelocked(ch: Any, admin: Any, data: bytes, sender: Any, action: str, reason: str) -> Any:
    """Propose `data` if it was not, and say when it can be published."""
    from ape import chain

    if reason == TIMELOCK_REASONS[0]:
        admin.propose_risk_book(data, sender=sender)
        return BookTimelocked(action, chain.blocks.head.timestamp + int(ch.risk_book_delay()))
    return BookTimelocked(action, None)


def push(
    protocol_or_ch_admin: Any,
    book: RiskBook,
    sender: Any,
    *,
    plan: Plan | None = None,
    on_step: Callable[[int, int, RiskBook, Any], None] | None = None,
) -> list[Any]:
    """Publish `book` in bounded steps; returns one receipt per step ([] if the chain
    already holds it). `on_step(i, n, step, receipt)` runs after each step lands."""
    from ape.exceptions import ContractLogicError

    ch, admin = _handles(protocol_or_ch_admin)
    check_sender(ch, sender)
    plan = plan or plan_push(ch, book)
    if plan.target != book:
        raise PlanError("the plan was made for another book; plan again")
    receipts = []
    n = len(plan.steps)
    for i, step in enumerate(plan.steps, start=1):
        action = f"risk book step {i}/{n}"
        try:
            receipt = admin.set_risk_book(riskbook.encode(step), sender=sender)
        except ContractLogicError as e:
            reason = str(getattr(e, "revert_message", None) or e).strip() or "reverted"
            if reason in TIMELOCK_REASONS:
                raise _timelocked(ch, admin, riskbook.encode(step), sender, action, reason) from e
            raise TransactionRejected(action, reason, REVERT_HINTS.get(reason, DEFAULT_HINT)) from e
        landed = read_book(ch)
        if landed != step:
            raise PerpdexError(
                f"{action}: the chain holds a different book than was sent; stop and inspect "
                "it with `perpdex risk diff`"
            )
        receipts.append(receipt)
        if on_step is not None:
            on_step(i, n, step, receipt)
    return receipts
