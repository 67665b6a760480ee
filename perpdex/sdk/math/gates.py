"""Mirror of contracts/modules/gates.vy: the margin scan (equity, initial and maintenance
requirements in one pass) and the initial-margin gate, over a `views.Snapshot`.
"""

from __future__ import annotations

from perpdex.constants import (
    ACCOUNT_PORTFOLIO,
    BPS,
    IWAD,
    MAX_COLLATERALS,
    MAX_MARKETS,
    MAX_SCENARIOS,
    WAD,
)
from perpdex.sdk.math.fixed_point import div_floor, mul_div
from perpdex.sdk.math.margin import collateral_worth, combine, isolated_requirement, shock
from perpdex.sdk.math.marks import refresh_stale
from perpdex.sdk.math.packing import (
    collateral_bitmap,
    funding_delta,
    position_count,
    positions_bitmap,
    set_bits,
)
from perpdex.sdk.math.positions import funding_owed
from perpdex.sdk.math.state import NO_OVERRIDE, MarginScan
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert, _to_i256, _to_u256


def collateral_value(snap: Snapshot) -> int:
    """gates._collateral_value (cached marks) == the lens's
    `_quote_collateral_value` without a traded market:
    the settlement balance plus every other held token at its market's mark less its
    haircut, rounded down."""
    value = snap.balance(0)
    cbits = collateral_bitmap(snap.header)
    if cbits == 0:
        return value
    for i in set_bits(cbits, MAX_COLLATERALS, 1):
        col = snap.collateral(i)
        price = snap.mark(col.market).price
        worth = collateral_worth(_to_u256(snap.balance(i)), price, col.haircut)
        value += _to_i256(worth)
    return value


def scan(
    snap: Snapshot,
    *,
    with_equity: bool = True,
    override_market: int = NO_OVERRIDE,
    override_size: int = 0,
) -> MarginScan:
    """gates._scan at the cached marks (`views.account_margin` is `scan(snap)`):
    equity, initial and maintenance requirement, isolated requirement and gross notional.
    Like the engine, it takes the scenario count, floor and maintenance ratio from the
    system word (the lens takes them from the book's header; set_risk_book writes both).
    `override_market`/`override_size` substitute one position's size (requirement only),
    as the reduce-only check does."""
    hdr = snap.header
    equity = 0
    isolated = 0
    notional_sum = 0
    bitmap = positions_bitmap(hdr)
    if override_market < MAX_MARKETS:
        bitmap |= 1 << override_market
    if with_equity:
        equity = collateral_value(snap)
    if bitmap == 0:
        return MarginScan(equity=equity)
    # the engine reads the book's address and header fields from the system word
    sysw = snap.system
    book = snap.require_book()
    n_s = sysw.n_scenarios
    losses = [0] * MAX_SCENARIOS
    gross_raw = 0
    addon = 0
    for m in set_bits(bitmap, MAX_MARKETS):
        pos = snap.position(m)
        size = override_size if m == override_market else pos.size
        if size == 0:
            continue
        mark = snap.mark(m)
        price = mark.price
        value = size * price
        abs_value = abs(value)
        abs_size = abs(size)
        notional = (abs_value + WAD - 1) // WAD
        w0, w1 = book.market_words(m)
        iso, slope = isolated_requirement(abs_value, abs_size, w0)
        isolated += iso
        notional_sum += notional
        addon += slope
        gross_raw += abs_value
        for k in range(min(n_s, MAX_SCENARIOS)):
            losses[k] -= value * shock(w1, k)
        if with_equity:
            equity += div_floor(value, IWAD) - pos.cost
            equity -= funding_owed(size, funding_delta(pos.snapshot, mark.index))
    worst = 0
    for k in range(min(n_s, MAX_SCENARIOS)):
        worst = max(worst, losses[k])
    initial = combine(
        isolated, worst, gross_raw, addon, sysw.floor_bps, hdr & ACCOUNT_PORTFOLIO != 0
    )
    return MarginScan(
        equity=equity,
        initial=initial,
        maintenance=mul_div(initial, sysw.mmr_bps, BPS, True),
        isolated=isolated,
        notional=notional_sum,
    )


def check_initial(snap: Snapshot, now: int, reason: str) -> tuple[Snapshot, tuple[int, ...]]:
    """gates._check_initial: equity >= initial requirement at fresh marks (stale ones
    re-read first), or, with neither positions nor other collateral, a settlement balance
    that is not negative. Raises `Revert(reason)`; returns the snapshot with the re-read
    marks and the markets re-read."""
    hdr = snap.header
    if position_count(hdr) == 0 and collateral_bitmap(hdr) == 0:
        if snap.balance(0) < 0:
            raise Revert(reason)
        return snap, ()
    snap, refreshed = refresh_stale(snap, now)
    s = scan(snap)
    if s.equity < s.initial:
        raise Revert(reason)
    return snap, refreshed


def _require_no_stranded_debt(
    snap: Snapshot, now: int, refreshed: tuple[int, ...]
) -> tuple[Snapshot, tuple[int, ...]]:
    """The end of every order: closing the last position must not leave a debt no
    liquidation can reach (gates._check_initial with its own reason)."""
    if position_count(snap.header) == 0 and snap.balance(0) < 0:
        snap, more = check_initial(snap, now, "clearinghouse: close leaves negative equity")
        refreshed += tuple(m for m in more if m not in refreshed)
    return snap, refreshed
