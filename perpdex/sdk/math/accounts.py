"""Mirror of contracts/modules/accounts.vy: the value-out gate of `withdraw` and
`transfer_collateral` (`_check_value_out`): unrealised profit, free value, the largest
withdrawable amount.
"""

from __future__ import annotations

from dataclasses import replace

from perpdex.constants import MAX_MARKETS
from perpdex.sdk.math.gates import (
    scan,
)
from perpdex.sdk.math.marks import (
    strict_refresh,
)
from perpdex.sdk.math.packing import funding_delta, positions_bitmap, set_bits
from perpdex.sdk.math.positions import funding_owed, value_pnl
from perpdex.sdk.math.views import Snapshot


def unrealized_profit(snap: Snapshot) -> int:
    """accounts._check_value_out's extra pass: the sum over positions of max(pnl, 0),
    pnl = value_pnl at the cached mark less the funding owed against its index (the terms
    `scan` adds to equity), USD WAD."""
    total = 0
    bitmap = positions_bitmap(snap.header)
    for m in set_bits(bitmap, MAX_MARKETS):
        pos = snap.position(m)
        mark = snap.mark(m)
        pnl = value_pnl(pos.size, pos.cost, mark.price) - funding_owed(
            pos.size, funding_delta(pos.snapshot, mark.index)
        )
        total += max(pnl, 0)
    return total


def value_out_free(snap: Snapshot, now: int | None = None) -> int:
    """Equity a withdrawal or transfer out may take (USD WAD, may be negative): equity
    less positive unrealised PnL less the initial requirement, at the marks the strict
    gate writes at `now`."""
    fresh = strict_refresh(snap, now)
    s = scan(fresh)
    free = s.equity - unrealized_profit(fresh) - s.initial
    if snap.loss_cap:  # the loss cap: equity after the debit stays >= the floor
        free = min(free, s.equity - snap.loss_cap)
    return free


def withdrawable(snap: Snapshot, index: int, scale: int, now: int | None = None) -> int:
    """Largest amount of collateral `index` (token units; `scale` = WAD per unit, the
    token's `collateral_scale`) that `withdraw` or `transfer_collateral` accepts now:
    the balance, limited by the value-out gate (equity - sum max(pnl, 0) >= initial, and
    equity >= the loss cap if one is set)."""
    bal = snap.balance(index)
    if bal <= 0:
        return 0
    units_held = bal // scale
    fresh = strict_refresh(snap, now)
    s = scan(fresh)
    free = s.equity - unrealized_profit(fresh) - s.initial
    if snap.loss_cap:  # the loss cap: equity after the debit stays >= the floor
        free = min(free, s.equity - snap.loss_cap)
    if free < 0:
        return 0
    if index == 0:
        return min(units_held, free // scale)

    def ok(units: int) -> bool:
        balances = dict(fresh.balances)
        balances[index] = bal - units * scale
        after = replace(fresh, balances=balances)
        t = scan(after)
        return t.equity - unrealized_profit(after) >= t.initial and t.equity >= snap.loss_cap

    lo, hi = 0, units_held
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
