"""Mirror of contracts/modules/marks.vy: touching a market (the mark transition:
funding accrual at a new price), quorum, and the stale-mark refreshes over a `views.Snapshot`.
"""

from __future__ import annotations

from dataclasses import replace

from perpdex.constants import (
    FLAG_DEGRADED,
    MAX_COLLATERALS,
    MAX_MARKETS,
)
from perpdex.sdk.math.funding import accrue
from perpdex.sdk.math.packing import (
    Mark,
    MarketParams,
    collateral_bitmap,
    pack_mark,
    positions_bitmap,
    set_bits,
    unpack_mark,
)
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert


def touch(mark: Mark, params: MarketParams, skew: int, price: int, now: int) -> Mark:
    """marks._touch_with, as a state transition: the mark a touch at `now` with oracle
    price `price` writes (funding accrued at the new price over the time since the last
    touch, rate stored truncated to the 1e-15 grid)."""
    index, rate = mark.index, mark.rate
    if mark.touched_at != 0 and now > mark.touched_at:
        rate, d = accrue(
            rate,
            now - mark.touched_at,
            skew,
            params.skew_scale,
            params.max_funding_velocity,
            params.max_funding_rate,
            price,
        )
        index += d
    return unpack_mark(pack_mark(price, now, index, rate))


def strict_refresh(snap: Snapshot, now: int | None = None) -> Snapshot:
    """engine_check_initial(strict=True): every market the account holds (positions,
    then secondary collateral prices) touched at `now` (default: the snapshot's block
    time) at the oracle median; raises Revert where the oracle refuses a price."""
    now = snap.timestamp if now is None else now
    bitmap = positions_bitmap(snap.header)
    cbits = collateral_bitmap(snap.header)
    if bitmap == 0 and cbits == 0:
        return snap
    touched = [m for m in range(MAX_MARKETS) if (bitmap >> m) & 1]
    for i in range(1, MAX_COLLATERALS):
        if (cbits >> i) & 1 and snap.collateral(i).market not in touched:
            touched.append(snap.collateral(i).market)
    markets = list(snap.markets)
    for m in touched:
        ms = snap.market(m)
        mark = touch(ms.mark, ms.params, ms.skew, snap.oracle_price(m), now)
        markets[m] = replace(ms, mark=mark)
    return replace(snap, markets=tuple(markets))


def _with_market(snap: Snapshot, m: int, mark: Mark, oi: tuple[int, int] | None = None) -> Snapshot:
    """The snapshot with market m's mark (and, after a fill, its long and short open
    interest) replaced."""
    markets = list(snap.markets)
    long_oi, short_oi = (markets[m].long_oi, markets[m].short_oi) if oi is None else oi
    markets[m] = replace(markets[m], mark=mark, long_oi=long_oi, short_oi=short_oi)
    return replace(snap, markets=tuple(markets))


def _require_quorum(flags: int) -> None:
    """marks._require_quorum: nothing is filled, valued or liquidated at a price without
    quorum (the router's FLAG_DEGRADED: fewer than two valid sources agree)."""
    if flags & FLAG_DEGRADED:
        raise Revert("clearinghouse: no price quorum")


def _touch_market(snap: Snapshot, m: int, now: int) -> Snapshot:
    """marks._touch_quorum: the snapshot with market m's mark re-read and funding
    accrued; a market without price quorum reverts the valuation."""
    ms = snap.market(m)
    _require_quorum(ms.oracle_flags or 0)
    mark = touch(ms.mark, ms.params, ms.skew, snap.oracle_price(m), now)
    return _with_market(snap, m, mark)


def refresh_stale(
    snap: Snapshot, now: int | None = None, every: bool = False
) -> tuple[Snapshot, tuple[int, ...]]:
    """marks._refresh_stale (+ _refresh_collateral_marks): re-reads every market of the
    account (positions, then secondary collateral prices) whose cached mark is older than
    `max_mark_age` at `now`, as every margin check does first. Returns the refreshed
    snapshot and the markets touched. Assumes the oracle prices at `now` are the ones the
    snapshot read. `every`: every position market is re-read whatever its age (an
    adding trade of an account with a loss cap)."""
    now = snap.timestamp if now is None else now
    age = snap.system.max_mark_age
    touched: list[int] = []
    bitmap = positions_bitmap(snap.header)
    for m in set_bits(bitmap, MAX_MARKETS):
        if every or snap.mark(m).touched_at + age < now:
            snap = _touch_market(snap, m, now)
            touched.append(m)
    for i in set_bits(collateral_bitmap(snap.header), MAX_COLLATERALS, 1):
        m = snap.collateral(i).market
        if snap.mark(m).touched_at + age < now:
            snap = _touch_market(snap, m, now)
            touched.append(m)
    return snap, tuple(touched)
