"""Mirror of contracts/ClearinghouseRisk.vy's multi-leg orders (`trade_multi`): the leg
checks, every leg through trading._pool_trade without its margin check, and one margin
check on the final book, over a `views.Snapshot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perpdex.constants import ACCOUNT_PORTFOLIO, FLAG_DEGRADED
from perpdex.sdk.math.gates import (
    _require_no_stranded_debt,
    scan,
)
from perpdex.sdk.math.marks import (
    _with_market,
    refresh_stale,
    touch,
)
from perpdex.sdk.math.positions import adds_risk
from perpdex.sdk.math.state import MarginScan
from perpdex.sdk.math.trading import (
    PoolFill,
    _require_trader_state,
    pool_fill,
)
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert

#: ClearinghouseRisk.MAX_LEGS: most legs one `trade_multi` takes.
MAX_LEGS = 8

#: One leg of a multi-leg order: (market, size_delta WAD, acceptable price WAD or None).
LegOrder = tuple[int, int, int | None]


@dataclass(frozen=True)
class MultiFills:
    """A multi-leg order with every leg filled and before its final margin check
    (`fill_multi`): the fills in order, whether any adds risk, the initial requirement the
    reduce rule compares with (0 when not applied), the markets re-read so far and the
    account's state after the last leg."""

    fills: tuple[PoolFill, ...]
    adds: bool
    reduce_rule: bool
    before_initial: int
    refreshed: tuple[int, ...]
    after: Snapshot
    now: int


@dataclass(frozen=True)
class MultiTradeResult:
    """What `trade_multi(account, legs)` does: each leg's fill, the markets the final
    margin check re-read, the account's state after the order and its margin scan there
    (what `account_margin` returns right after it)."""

    fills: tuple[PoolFill, ...]
    adds: bool
    refreshed: tuple[int, ...]
    margin_after: MarginScan
    after: Snapshot


def fill_multi(snap: Snapshot, legs: Sequence[LegOrder], now: int | None = None) -> MultiFills:
    """ClearinghouseRisk.trade_multi up to its final margin check: the account and leg
    checks (none, too many, zero size, unknown market, a market twice), for an order that
    only reduces a portfolio account the requirement before (the legs' markets touched
    first and stale marks re-read, so both sides of the comparison see the same marks),
    then every leg through `pool_fill` (TRADE_DEFERRED). Raises `Revert` with the
    contract's reason."""
    now = snap.timestamp if now is None else now
    _require_trader_state(snap, now)
    if not legs:
        raise Revert("clearinghouse: no legs")
    if len(legs) > MAX_LEGS:
        raise Revert("clearinghouse: too many legs")
    seen: set[int] = set()
    adds = False
    for market, delta, _bound in legs:
        if delta == 0:
            raise Revert("clearinghouse: zero size")
        if market >= snap.market_count:
            raise Revert("clearinghouse: unknown market")
        if market in seen:
            raise Revert("clearinghouse: market twice")
        seen.add(market)
        adds = adds or adds_risk(snap.position(market).size, delta)
    reduce_rule = not adds and snap.header & ACCOUNT_PORTFOLIO != 0
    before = 0
    refreshed: tuple[int, ...] = ()
    cur = snap
    if reduce_rule:
        for market, _delta, _bound in legs:
            ms = cur.market(market)
            # engine_touch: a market without quorum is left as it is (its leg reverts)
            if not (ms.oracle_flags or 0) & FLAG_DEGRADED:
                mark = touch(ms.mark, ms.params, ms.skew, cur.oracle_price(market), now)
                cur = _with_market(cur, market, mark)
        cur, refreshed = refresh_stale(cur, now)
        before = scan(cur, with_equity=False).initial
    fills: list[PoolFill] = []
    for market, delta, bound in legs:
        filled, cur = pool_fill(cur, market, delta, now, bound)
        fills.append(filled)
    return MultiFills(tuple(fills), adds, reduce_rule, before, refreshed, cur, now)


def check_multi(filled: MultiFills, loss_cap: int) -> MultiTradeResult:
    """ClearinghouseRisk.trade_multi's final check, on the book after every leg: if any
    leg adds, fresh marks (all of them with a loss cap) and equity >= initial and >= the
    loss cap `loss_cap` (USD WAD, 0: none); if every leg reduces a portfolio account,
    equity >= initial or a requirement no higher than before; then no stranded debt.
    Raises `Revert` with the contract's reason."""
    after, now, refreshed = filled.after, filled.now, filled.refreshed
    adds = filled.adds
    if adds or filled.reduce_rule:
        after, more = refresh_stale(after, now, every=adds and loss_cap != 0)
        refreshed += tuple(m for m in more if m not in refreshed)
        s = scan(after)
        if not (s.equity >= s.initial or (not adds and s.initial <= filled.before_initial)):
            raise Revert("clearinghouse: below initial margin")
        if adds and loss_cap != 0 and s.equity < loss_cap:  # losscap.below_loss_cap
            raise Revert("clearinghouse: below loss cap, reduce only")
    after, refreshed = _require_no_stranded_debt(after, now, refreshed)
    return MultiTradeResult(
        fills=filled.fills,
        adds=adds,
        refreshed=refreshed,
        margin_after=scan(after),
        after=after,
    )


def simulate_multi(
    snap: Snapshot, legs: Sequence[LegOrder], now: int | None = None
) -> MultiTradeResult:
    """ClearinghouseRisk.trade_multi in full (`fill_multi`, then `check_multi`): every leg
    settled like `trade` without its own margin check, then one check on the final book.
    Raises `Revert` with the contract's reason where the order would revert; does not
    check who sends it. `now` as in `simulate_trade`."""
    return check_multi(fill_multi(snap, legs, now), snap.loss_cap)
