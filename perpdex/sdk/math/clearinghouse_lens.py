"""Mirror of contracts/ClearinghouseLens.vy: the account summary (requirements, health,
scenario losses, liquidation prices by the lens's bisection) and `quote`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from perpdex.constants import (
    ACCOUNT_PORTFOLIO,
    BPS,
    FLAG_DEGRADED,
    IWAD,
    MAX_COLLATERALS,
    MAX_MARKETS,
    MAX_POSITIONS,
    MAX_SCENARIOS,
    WAD,
)
from perpdex.sdk.math.fixed_point import div_ceil, mul_div
from perpdex.sdk.math.funding import accrue
from perpdex.sdk.math.gates import (
    collateral_value,
)
from perpdex.sdk.math.margin import Book, collateral_worth, combine, isolated_requirement, shock
from perpdex.sdk.math.packing import (
    MAX_I96,
    collateral_bitmap,
    funding_delta,
    positions_bitmap,
    set_bits,
)
from perpdex.sdk.math.positions import apply_fill, funding_owed, value_pnl
from perpdex.sdk.math.pricing import fee, fill_price
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import UINT256_MAX, Revert, _to_i256, _to_u256, vdiv

MAX_BISECTION = 128
LIQ_SEARCH_CEILING = 100
NO_RISK_HEALTH = UINT256_MAX
NO_SCENARIO = UINT256_MAX


@dataclass(frozen=True)
class Ctx:
    """ClearinghouseLens.Ctx: the book header fields and the account's mode."""

    n_s: int
    floor_bps: int
    mmr_bps: int
    portfolio: bool


@dataclass(frozen=True)
class Leg:
    """ClearinghouseLens.Leg: one position as the lens prices it."""

    market: int
    size: int
    cost: int
    funding_owed: int
    price: int
    w0: int
    w1: int


@dataclass(frozen=True)
class Totals:
    """ClearinghouseLens.Totals: running sums of a book of legs (losses raw, WAD^2 * bp)."""

    losses: tuple[int, ...] = (0,) * MAX_SCENARIOS
    gross_raw: int = 0
    isolated: int = 0
    addon: int = 0
    notional: int = 0


@dataclass(frozen=True)
class PositionView:
    """ClearinghouseLens.PositionView."""

    market: int
    size: int
    cost: int
    entry_price: int
    mark_price: int
    notional: int
    unrealized_pnl: int
    funding_owed: int
    isolated_initial: int
    liquidation_price: int


@dataclass(frozen=True)
class AccountView:
    """ClearinghouseLens.AccountView (`lens.account_summary`)."""

    portfolio: bool
    collateral_value: int
    unrealized_pnl: int
    funding_owed: int
    equity: int
    initial: int
    maintenance: int
    isolated_initial: int
    floor: int
    addon: int
    health: int
    binding_scenario: int
    scenario_losses: tuple[int, ...] = ()
    positions: tuple[PositionView, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class QuoteView:
    """ClearinghouseLens.QuoteView (`lens.quote`)."""

    oracle_price: int
    fill_price: int
    price_impact: int
    fee: int
    realized_pnl: int
    funding_paid: int
    equity_after: int
    initial_after: int
    maintenance_after: int
    health_after: int
    liquidation_price_after: int


def lens_ctx(snap: Snapshot) -> Ctx:
    """ClearinghouseLens._ctx."""
    portfolio = snap.header & ACCOUNT_PORTFOLIO != 0
    if snap.book is None:
        return Ctx(n_s=0, floor_bps=0, mmr_bps=0, portfolio=portfolio)
    bh = snap.book.header
    return Ctx(n_s=bh.n_scenarios, floor_bps=bh.floor_bps, mmr_bps=bh.mmr_bps, portfolio=portfolio)


def lens_leg(book: Book | None, market: int, size: int, cost: int, owed: int, price: int) -> Leg:
    """ClearinghouseLens._leg: a leg with its market's risk-book words."""
    if book is None:
        raise Revert("slice out of bounds")  # slicing the empty address's code
    w0, w1 = book.market_words(market)
    return Leg(market=market, size=size, cost=cost, funding_owed=owed, price=price, w0=w0, w1=w1)


def fresh_mark(snap: Snapshot, market: int, now: int) -> tuple[int, int]:
    """ClearinghouseLens._fresh_mark: the (price, funding index) a touch of `market` at
    `now` would write (oracle median, funding accrued at the market's skew)."""
    price = snap.oracle_price(market)
    long_oi, short_oi = snap.open_interest(market)
    return price, touched_index(snap, market, long_oi - short_oi, price, now)


def load_legs(snap: Snapshot, refresh: bool = False, now: int | None = None) -> list[Leg]:
    """ClearinghouseLens._load_legs: every position at its cached mark, with the funding
    it owes against the cached index; with `refresh`, a mark older than max_mark_age at
    `now` is replaced by what a stale-mark refresh would write (as in a quote)."""
    now = snap.timestamp if now is None else now
    age = snap.system.max_mark_age
    legs: list[Leg] = []
    bitmap = positions_bitmap(snap.header)
    for m in set_bits(bitmap, MAX_MARKETS):
        pos = snap.position(m)
        mark = snap.mark(m)
        price, index = mark.price, mark.index
        if refresh and mark.touched_at + age < now:
            price, index = fresh_mark(snap, m, now)
        owed = funding_owed(pos.size, funding_delta(pos.snapshot, index))
        legs.append(lens_leg(snap.book, m, pos.size, pos.cost, owed, price))
    return legs


def quote_collateral_value(
    snap: Snapshot, traded: int, traded_price: int, refresh: bool, now: int
) -> int:
    """ClearinghouseLens._quote_collateral_value: a token priced by the traded
    market at the fresh price, a stale market (with `refresh`) at the oracle's median."""
    value = snap.balance(0)
    cbits = collateral_bitmap(snap.header)
    age = snap.system.max_mark_age
    for i in set_bits(cbits, MAX_COLLATERALS, 1):
        col = snap.collateral(i)
        mark = snap.mark(col.market)
        price = mark.price
        if col.market == traded:
            price = traded_price
        elif refresh and mark.touched_at + age < now:
            price = snap.oracle_price(col.market)
        worth = collateral_worth(_to_u256(snap.balance(i)), price, col.haircut)
        value += _to_i256(worth)
    return value


def add_leg(t: Totals, leg: Leg, price: int, n_s: int) -> Totals:
    """ClearinghouseLens._add: the totals with `leg` valued at `price` added."""
    value = leg.size * price
    abs_value = abs(value)
    abs_size = abs(leg.size)
    notional = (abs_value + WAD - 1) // WAD
    iso, slope = isolated_requirement(abs_value, abs_size, leg.w0)
    losses = list(t.losses)
    for k in range(min(n_s, MAX_SCENARIOS)):
        losses[k] -= value * shock(leg.w1, k)
    return Totals(
        losses=tuple(losses),
        gross_raw=t.gross_raw + abs_value,
        isolated=t.isolated + iso,
        addon=t.addon + slope,
        notional=t.notional + notional,
    )


def initial_requirement(t: Totals, ctx: Ctx) -> int:
    """ClearinghouseLens._initial: worst scenario loss combined for the account's mode."""
    worst = 0
    for k in range(min(ctx.n_s, MAX_SCENARIOS)):
        worst = max(worst, t.losses[k])
    return combine(t.isolated, worst, t.gross_raw, t.addon, ctx.floor_bps, ctx.portfolio)


def health(equity: int, maintenance: int) -> int:
    """ClearinghouseLens._health: equity / maintenance in WAD, rounded down; 0 at or
    below zero equity; NO_RISK_HEALTH (2**256 - 1) without a requirement."""
    if maintenance == 0:
        return NO_RISK_HEALTH
    if equity <= 0:
        return 0
    return mul_div(equity, WAD, maintenance, False)


def binding_scenario(losses: Sequence[int], n_s: int) -> int:
    """The account summary's binding scenario: the first scenario with the largest
    strictly positive raw loss, NO_SCENARIO when none loses."""
    best = NO_SCENARIO
    worst = 0
    for k in range(min(n_s, MAX_SCENARIOS)):
        if losses[k] > worst:
            worst = losses[k]
            best = k
    return best


def gap(base: Totals, leg: Leg, base_equity: int, price: int, ctx: Ctx) -> int:
    """ClearinghouseLens._gap: equity - maintenance with `leg` valued at `price`."""
    t = add_leg(base, leg, price, ctx.n_s)
    mm = mul_div(initial_requirement(t, ctx), ctx.mmr_bps, BPS, True)
    equity = base_equity + value_pnl(leg.size, leg.cost, price) - leg.funding_owed
    return equity - mm


def liquidation_price(legs: Sequence[Leg], j: int, equity: int, ctx: Ctx) -> int:
    """ClearinghouseLens._liquidation_price: the price of leg j's market (every other
    price held) at which equity meets maintenance, by the lens's integer bisection: the
    mark itself when already at or below maintenance; for a long the largest price in
    [0, mark) with gap <= 0 (0 if even price 0 leaves gap > 0); for a short the smallest
    price in (mark, 100 * mark] with gap <= 0 (0 if none)."""
    leg = legs[j]
    base = Totals()
    for i, other in enumerate(legs):
        if i != j:
            base = add_leg(base, other, other.price, ctx.n_s)
    base_equity = equity - value_pnl(leg.size, leg.cost, leg.price) + leg.funding_owed
    if gap(base, leg, base_equity, leg.price, ctx) <= 0:
        return leg.price
    lo = 0
    hi = leg.price
    if leg.size > 0:
        if gap(base, leg, base_equity, 0, ctx) > 0:
            return 0
    else:
        lo = leg.price
        hi = leg.price * LIQ_SEARCH_CEILING
        if gap(base, leg, base_equity, hi, ctx) > 0:
            return 0
    for _ in range(MAX_BISECTION):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        below = gap(base, leg, base_equity, mid, ctx) <= 0
        if below == (leg.size > 0):
            lo = mid
        else:
            hi = mid
    return lo if leg.size > 0 else hi


def account_summary(snap: Snapshot) -> AccountView:
    """ClearinghouseLens.account_summary: equity, PnL, funding, requirements, health, the
    loss under every scenario (rounded up to USD WAD) and each position with its
    liquidation price, at the cached marks."""
    ctx = lens_ctx(snap)
    legs = load_legs(snap)
    coll = collateral_value(snap)
    t = Totals()
    upnl = 0
    owed = 0
    for leg in legs:
        t = add_leg(t, leg, leg.price, ctx.n_s)
        upnl += value_pnl(leg.size, leg.cost, leg.price)
        owed += leg.funding_owed
    equity = coll + upnl - owed
    initial = initial_requirement(t, ctx)
    maintenance = mul_div(initial, ctx.mmr_bps, BPS, True)
    n_s = min(ctx.n_s, MAX_SCENARIOS)
    losses = tuple(div_ceil(t.losses[k], WAD * BPS) for k in range(n_s))
    views: list[PositionView] = []
    for j, leg in enumerate(legs[:MAX_POSITIONS]):
        abs_size = abs(leg.size)
        notional = (abs_size * leg.price + WAD - 1) // WAD
        iso, _slope = isolated_requirement(abs_size * leg.price, abs_size, leg.w0)
        entry = abs(vdiv(leg.cost * IWAD, leg.size)) if leg.size != 0 else 0
        views.append(
            PositionView(
                market=leg.market,
                size=leg.size,
                cost=leg.cost,
                entry_price=entry,
                mark_price=leg.price,
                notional=notional,
                unrealized_pnl=value_pnl(leg.size, leg.cost, leg.price),
                funding_owed=leg.funding_owed,
                isolated_initial=iso,
                liquidation_price=liquidation_price(legs, j, equity, ctx),
            )
        )
    return AccountView(
        portfolio=ctx.portfolio,
        collateral_value=coll,
        unrealized_pnl=upnl,
        funding_owed=owed,
        equity=equity,
        initial=initial,
        maintenance=maintenance,
        isolated_initial=t.isolated,
        floor=mul_div(t.gross_raw, ctx.floor_bps, WAD * BPS, True),
        addon=t.addon,
        health=health(equity, maintenance),
        binding_scenario=binding_scenario(t.losses, ctx.n_s),
        scenario_losses=losses,
        positions=tuple(views),
    )


def touched_index(snap: Snapshot, market: int, skew: int, price: int, now: int) -> int:
    """ClearinghouseLens._touched_index: the funding index a touch of `market` at `now`
    and oracle price `price` would write."""
    mark = snap.mark(market)
    if mark.touched_at == 0 or now <= mark.touched_at:
        return mark.index
    p = snap.params(market)
    _rate, d = accrue(
        mark.rate,
        now - mark.touched_at,
        skew,
        p.skew_scale,
        p.max_funding_velocity,
        p.max_funding_rate,
        price,
    )
    return mark.index + d


def quote(snap: Snapshot, market: int, size_delta: int, now: int | None = None) -> QuoteView:
    """ClearinghouseLens.quote: what a market order of `size_delta` on `market` would do
    at `now` (default: the snapshot's block timestamp, i.e. the lens called at the same
    block): fill price, price impact, fee, realised PnL and funding settled, and the
    account's equity, requirements, health and the position's liquidation price after.
    Pass the pending block's timestamp to predict a trade in the next block."""
    if size_delta == 0:
        raise Revert("lens: zero size")
    if market >= snap.market_count:
        raise Revert("lens: unknown market")
    now = snap.timestamp if now is None else now
    ctx = lens_ctx(snap)
    price = snap.oracle_price(market)
    if (snap.market(market).oracle_flags or 0) & FLAG_DEGRADED:
        raise Revert("lens: no price quorum")
    p = snap.params(market)
    long_oi, short_oi = snap.open_interest(market)
    skew = long_oi - short_oi
    index = touched_index(snap, market, skew, price, now)
    fill = fill_price(price, skew, size_delta, p.skew_scale)
    impact = vdiv((fill - price) * IWAD, _to_i256(price))
    fee_ = fee(fill, skew, size_delta, p.maker_fee, p.taker_fee)
    pos = snap.position(market)
    funding_paid = 0
    if pos.size != 0:
        funding_paid = funding_owed(pos.size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(pos.size, pos.cost, size_delta, fill)
    if not -MAX_I96 <= new_size <= MAX_I96:
        raise Revert("lens: position too large")  # margin._isolated's bounds
    size = pos.size
    adds = size == 0 or (size > 0) == (size_delta > 0) or abs(size_delta) > abs(size)
    refresh = adds or ctx.portfolio
    legs = load_legs(snap, refresh, now)
    found = False
    after: list[Leg] = []
    j = 0
    for leg in legs:
        if leg.market == market:
            found = True
            if new_size != 0:
                j = len(after)
                after.append(lens_leg(snap.book, market, new_size, new_cost, 0, price))
        else:
            after.append(leg)
    if not found and new_size != 0:
        j = len(after)
        after.append(lens_leg(snap.book, market, new_size, new_cost, 0, price))
    if len(after) > MAX_POSITIONS:
        raise Revert("array index out of bounds")  # DynArray[Leg, MAX_POSITIONS] append
    equity = (
        quote_collateral_value(snap, market, price, refresh, now) + realized - funding_paid - fee_
    )
    t = Totals()
    for leg in after:
        t = add_leg(t, leg, leg.price, ctx.n_s)
        equity += value_pnl(leg.size, leg.cost, leg.price) - leg.funding_owed
    initial = initial_requirement(t, ctx)
    maintenance = mul_div(initial, ctx.mmr_bps, BPS, True)
    return QuoteView(
        oracle_price=price,
        fill_price=fill,
        price_impact=impact,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        equity_after=equity,
        initial_after=initial,
        maintenance_after=maintenance,
        health_after=health(equity, maintenance),
        liquidation_price_after=liquidation_price(after, j, equity, ctx) if new_size != 0 else 0,
    )
