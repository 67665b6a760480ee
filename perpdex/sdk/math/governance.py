"""Mirror of contracts/modules/governance.vy's risk-book rules: what `set_risk_book`
refuses regardless of the current book (`book_problems`, every reason at once instead of
the first assert), the equal moves, and the per-update steps (`_check_step`, the scale's
halve-or-double bound).
"""

from __future__ import annotations

from collections.abc import Sequence

from perpdex.constants import BPS, MAX_MARKETS, MAX_SCENARIOS
from perpdex.sdk.math.margin import SHOCK_MAX, SHOCK_MIN, RiskBook, width_problems


def book_problems(book: RiskBook, n_listed: int = 0) -> list[str]:
    """Why `set_risk_book` would refuse `book` regardless of the current book (empty if
    it accepts it)."""
    out: list[str] = []
    n_m, n_s = len(book.markets), book.n_scenarios
    if not 1 <= n_s <= MAX_SCENARIOS:
        out.append(f"bad scenario count {n_s} (1..{MAX_SCENARIOS})")
    if not n_listed <= n_m <= MAX_MARKETS:
        out.append(f"book covers {n_m} markets but {n_listed} are listed")
    if not 0 < book.maintenance_bps <= BPS:
        out.append(f"bad maintenance ratio {book.maintenance_bps} bp")
    # a field too wide for its bits (set_risk_book refuses a word 0 with stray bits)
    out += width_problems(book)
    if len(book.shocks) != n_s or any(len(row) != n_m for row in book.shocks):
        out.append("shock rows do not match the scenario and market counts")
        return out
    for k, name in enumerate(book.names):
        if len(name.encode()) > 32:
            out.append(f"scenario name {name!r} is longer than 32 bytes")
        for m in range(n_m):
            x = book.shocks[k][m]
            if not SHOCK_MIN <= x <= SHOCK_MAX:
                out.append(f"{name}: shock {x} bp of market {m} does not fit 16 bits")
            elif x < -BPS:
                out.append(f"{name}: shock {x} bp of market {m} is below -100%")
    for m, r in enumerate(book.markets):
        if not 0 < r.imr_min_bps <= BPS:
            out.append(f"market {m}: bad initial margin ratio {r.imr_min_bps} bp")
        if r.margin_scale == 0:
            out.append(f"market {m}: zero margin scale")
        if book.floor_bps > r.imr_min_bps:
            out.append(f"market {m}: floor {book.floor_bps} bp above imr_min {r.imr_min_bps} bp")
        col = [row[m] for row in book.shocks]
        if min([0, *col]) > -r.imr_min_bps or max([0, *col]) < r.imr_min_bps:
            out.append(
                f"market {m}: scenarios must move it down and up by at least its imr_min "
                f"({r.imr_min_bps} bp)"
            )
    for d, side in ((-1, "down"), (1, "up")):
        if n_s and n_m and not equal_move_rows(book.shocks, n_m, d):
            out.append(
                f"no equal move {side}: no scenario moves every market {side} by its largest "
                f"{side} shock of the book at once"
            )
    return out


def extreme(shocks: Sequence[Sequence[int]], m: int, d: int) -> int:
    """Market m's largest shock in direction d (-1 down, +1 up), 0 if none goes that way
    (the contract starts its min / max at 0)."""
    col = [row[m] for row in shocks]
    return min([0, *col]) if d < 0 else max([0, *col])


def equal_move_rows(shocks: Sequence[Sequence[int]], n_m: int, d: int) -> list[int]:
    """Scenarios that move every market by its largest shock in direction d at once (the
    equal move; the contract requires one each way)."""
    ext = [extreme(shocks, m, d) for m in range(n_m)]
    return [k for k, row in enumerate(shocks) if all(row[m] == ext[m] for m in range(n_m))]


def check_step(old: int, new: int, step: int) -> bool:
    """governance._check_step: a ratio (floor, maintenance, imr_min, imr_slope, in bp)
    moves by at most `step` in one update (the contract asserts it)."""
    return abs(new - old) <= step


def scale_step_ok(old_scale: int, new_scale: int) -> bool:
    """set_risk_book's bound on a market's margin_scale: it at most halves or doubles per
    update."""
    return new_scale * 2 >= old_scale and new_scale <= old_scale * 2
