"""Mirror of contracts/modules/engine.vy: touching a market (mark transition), the margin
scan, stale-mark refreshes, the initial-margin gate and the pool trade in full
(`simulate_trade` = `_pool_trade`; `pool_fill` = its fill without the margin checks, a
leg of a multi-leg order), over a `views.Snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    BPS,
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    IWAD,
    MAX_COLLATERALS,
    MAX_MARKETS,
    MAX_SCENARIOS,
    MIN_POSITION_NOTIONAL,
    WAD,
)
from perpdex.sdk.math import vault_limits as vl
from perpdex.sdk.math.delayed import DELAYED_PENDING
from perpdex.sdk.math.fixed_point import div_floor, mul_div
from perpdex.sdk.math.funding import accrue
from perpdex.sdk.math.margin import combine, isolated_requirement, shock
from perpdex.sdk.math.packing import (
    Mark,
    MarketParams,
    Position,
    collateral_bitmap,
    funding_delta,
    is_frozen,
    pack_mark,
    pack_pos,
    pack_u128,
    pos_snapshot,
    position_count,
    positions_bitmap,
    unpack_mark,
    with_position,
)
from perpdex.sdk.math.positions import adds_risk, apply_fill, funding_owed
from perpdex.sdk.math.pricing import fee, fill_price
from perpdex.sdk.math.state import NO_OVERRIDE, MarginScan, fee_split
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert, _to_i256, _to_u256, vdiv


def touch(mark: Mark, params: MarketParams, skew: int, price: int, now: int) -> Mark:
    """engine._touch_with, as a state transition: the mark a touch at `now` with oracle
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


def collateral_value(snap: Snapshot) -> int:
    """engine._collateral_value (cached marks) == ClearinghouseLens._collateral_value:
    the settlement balance plus every other held token at its market's mark less its
    haircut, rounded down."""
    value = snap.balance(0)
    cbits = collateral_bitmap(snap.header)
    if cbits == 0:
        return value
    for i in range(1, MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        col = snap.collateral(i)
        price = snap.mark(col.market).price
        worth = mul_div(_to_u256(snap.balance(i)), price * (WAD - col.haircut), WAD * WAD, False)
        value += _to_i256(worth)
    return value


def scan(
    snap: Snapshot,
    *,
    with_equity: bool = True,
    override_market: int = NO_OVERRIDE,
    override_size: int = 0,
) -> MarginScan:
    """engine._scan at the cached marks (`views.account_margin` is `scan(snap)`):
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
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 0:
            continue
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
        iso, slope = isolated_requirement(notional, abs_value, abs_size, w0)
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


@dataclass(frozen=True)
class TradeResult:
    """What `trade(account, market, size_delta, acceptable)` does (engine._pool_trade):
    the fill, the settled amounts, the markets the post-trade margin check re-read (stale
    marks), the account's state after the trade and its margin scan there (what
    `account_margin` returns right after the trade)."""

    fill_price: int
    fee: int
    realized_pnl: int
    funding_paid: int
    adds: bool
    refreshed: tuple[int, ...]
    margin_after: MarginScan
    after: Snapshot


def _with_market(snap: Snapshot, m: int, mark: Mark, oi: tuple[int, int] | None = None) -> Snapshot:
    """The snapshot with market m's mark (and, after a fill, its long and short open
    interest) replaced."""
    markets = list(snap.markets)
    long_oi, short_oi = (markets[m].long_oi, markets[m].short_oi) if oi is None else oi
    markets[m] = replace(markets[m], mark=mark, long_oi=long_oi, short_oi=short_oi)
    return replace(snap, markets=tuple(markets))


def _require_quorum(flags: int) -> None:
    """engine._require_quorum: nothing is filled, valued or liquidated at a price without
    quorum (the router's FLAG_DEGRADED: fewer than two valid sources agree)."""
    if flags & FLAG_DEGRADED:
        raise Revert("clearinghouse: no price quorum")


def _touch_market(snap: Snapshot, m: int, now: int) -> Snapshot:
    """engine._touch_quorum: the snapshot with market m's mark re-read and funding
    accrued; a market without price quorum reverts the valuation."""
    ms = snap.market(m)
    _require_quorum(ms.oracle_flags or 0)
    mark = touch(ms.mark, ms.params, ms.skew, snap.oracle_price(m), now)
    return _with_market(snap, m, mark)


def check_initial(snap: Snapshot, now: int, reason: str) -> tuple[Snapshot, tuple[int, ...]]:
    """engine._check_initial: equity >= initial requirement at fresh marks (stale ones
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


def refresh_stale(
    snap: Snapshot, now: int | None = None, every: bool = False
) -> tuple[Snapshot, tuple[int, ...]]:
    """engine._refresh_stale (+ _refresh_collateral_marks): re-reads every market of the
    account (positions, then secondary collateral prices) whose cached mark is older than
    `max_mark_age` at `now`, as every margin check does first. Returns the refreshed
    snapshot and the markets touched. Assumes the oracle prices at `now` are the ones the
    snapshot read. `every`: every position market is re-read whatever its age (an
    adding trade of an account with a loss cap)."""
    now = snap.timestamp if now is None else now
    age = snap.system.max_mark_age
    touched: list[int] = []
    bitmap = positions_bitmap(snap.header)
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1 and (every or snap.mark(m).touched_at + age < now):
            snap = _touch_market(snap, m, now)
            touched.append(m)
    cbits = collateral_bitmap(snap.header)
    if cbits != 0:
        for i in range(1, MAX_COLLATERALS):
            if cbits >> i == 0:
                break
            if (cbits >> i) & 1 == 1:
                m = snap.collateral(i).market
                if snap.mark(m).touched_at + age < now:
                    snap = _touch_market(snap, m, now)
                    touched.append(m)
    return snap, tuple(touched)


def require_min_position(size_after: int, price: int) -> None:
    """engine._pool_trade's dust check: a market order leaves the position at zero or
    worth at least MIN_POSITION_NOTIONAL at the oracle price `price` (whole dollars,
    truncated toward zero, as the contract compares them)."""
    usd = vdiv(size_after * price, IWAD * IWAD)
    if size_after != 0 and abs(usd) < MIN_POSITION_NOTIONAL // WAD:
        raise Revert("clearinghouse: min position size")


def _require_can_add_risk(snap: Snapshot, m: int, p: MarketParams, flags: int) -> None:
    """engine._require_can_add_risk."""
    if snap.paused:
        raise Revert("clearinghouse: paused")
    if p.paused:
        raise Revert("clearinghouse: market paused")
    if flags & FLAG_SEQUENCER_DOWN:
        raise Revert("clearinghouse: sequencer down")
    if flags & FLAG_SEQUENCER_GRACE:
        raise Revert("clearinghouse: sequencer grace period")
    _require_quorum(flags)
    if snap.book is None:
        raise Revert("clearinghouse: no risk book")
    if m >= snap.book.header.n_markets:
        raise Revert("clearinghouse: market not in risk book")


@dataclass(frozen=True)
class PoolFill:
    """One fill of engine._pool_trade against the vault's pool (a market order, or one
    leg of a multi-leg order): the oracle price it was valued at, the fill price and fee,
    the amounts settled, the position before and after, and whether it adds risk (opens,
    grows or flips the position)."""

    market: int
    size_delta: int
    oracle_price: int
    fill_price: int
    fee: int
    realized_pnl: int
    funding_paid: int
    size_before: int
    size_after: int
    adds: bool


def pool_fill(
    snap: Snapshot,
    market: int,
    size_delta: int,
    now: int,
    acceptable_price: int | None = None,
) -> tuple[PoolFill, Snapshot]:
    """engine._pool_trade up to its margin checks (mode TRADE_DEFERRED, a leg of
    `trade_multi`, stops there): the zero-size and market checks, the touch (oracle price,
    funding accrued to `now`), the quorum, dust and add-risk gates, the fill price and its
    bound, settlement and the fee (_settle_side) and the caps (_check_caps).
    The vault's exposure cap (`vault_limits.exposure_limit`, the chain's one rule: the
    pool's raw cash, before pending fees are swept, plus its unrealised loss in the market
    after the fill) is checked only when the snapshot carries `pool_cash` and the market's
    `pool_sum_cost` (`Snapshot.load` reads both). Returns the fill and the account's state
    after it. Raises `Revert` where the contract reverts."""
    if size_delta == 0:
        raise Revert("clearinghouse: zero size")
    if market >= snap.market_count:
        raise Revert("clearinghouse: unknown market")
    ms = snap.market(market)
    p = ms.params
    price = snap.oracle_price(market)
    flags = ms.oracle_flags or 0
    # no fill of any kind (reduce-only included) without a price quorum
    _require_quorum(flags)
    mark = touch(ms.mark, p, ms.skew, price, now)
    index = mark.index
    pos = snap.position(market)
    size, cost = pos.size, pos.cost
    adds = adds_risk(size, size_delta)
    require_min_position(size + size_delta, price)
    if adds:
        _require_can_add_risk(snap, market, p, flags)
    skew = ms.skew
    fill = fill_price(price, skew, size_delta, p.skew_scale)
    if acceptable_price is not None:
        if size_delta > 0 and fill > acceptable_price:
            raise Revert("clearinghouse: price worse than acceptable")
        if size_delta < 0 and fill < acceptable_price:
            raise Revert("clearinghouse: price worse than acceptable")
    fee_ = fee(fill, skew, size_delta, p.maker_fee, p.taker_fee)
    # _settle_side
    funding_paid = 0
    if size != 0:
        funding_paid = funding_owed(size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(size, cost, size_delta, fill)
    cash = realized - funding_paid
    long_oi, short_oi = ms.long_oi, ms.short_oi
    if size > 0:
        long_oi -= size
    else:
        short_oi += size
    if new_size > 0:
        long_oi += new_size
    else:
        short_oi -= new_size
    pack_u128(_to_u256(long_oi), _to_u256(short_oi))
    positions = dict(snap.positions)
    if new_size == 0:
        positions.pop(market, None)
    else:
        word = pack_pos(new_size, new_cost, index)
        positions[market] = Position(new_size, new_cost, pos_snapshot(word))
    hdr = with_position(snap.header, market, new_size != 0)
    balances = dict(snap.balances)
    balances[0] = snap.balance(0) + cash
    # the pool word: its raw cash pays the trader's cash; the fee accrues as pending
    # (engine._settle_side) until a sweep splits it. `views.pool_cash` adds the vault's share
    # of the pending fees to the raw cash.
    raw_cash: int | None = None
    if snap.pool_cash is not None:
        raw_cash = snap.pool_cash - fee_split(snap.pending_fees, snap.system)[2] - cash
    pending = snap.pending_fees
    if fee_ != 0:
        balances[0] -= fee_
        pending += fee_
    after = replace(
        snap,
        header=hdr,
        balances=balances,
        positions=positions,
        pool_cash=None if raw_cash is None else raw_cash + fee_split(pending, snap.system)[2],
        pending_fees=pending,
        timestamp=now,
        block_number=-1,
    )
    after = _with_market(after, market, mark, (long_oi, short_oi))
    if ms.pool_sum_cost is not None:
        # the market's pool sums (positions.vy) follow the position's cost
        markets = list(after.markets)
        markets[market] = replace(markets[market], pool_sum_cost=ms.pool_sum_cost + new_cost - cost)
        after = replace(after, markets=tuple(markets))
    # _check_caps, on every fill (reduces included)
    if long_oi > ms.long_oi and long_oi > p.max_oi:
        raise Revert("clearinghouse: open interest cap reached")
    if short_oi > ms.short_oi and short_oi > p.max_oi:
        raise Revert("clearinghouse: open interest cap reached")
    new_skew = skew + size_delta
    if abs(new_skew) > abs(skew) and raw_cash is not None and ms.pool_sum_cost is not None:
        # the one exposure rule (state._exposure_limit), at the fill's skew, cost sum and
        # raw cash
        pool = vl.PoolMarket(
            long_oi=long_oi,
            short_oi=short_oi,
            sum_cost=ms.pool_sum_cost + new_cost - cost,
            sum_funding=0,
            price=price,
            index=index,
            max_vault_exposure=p.max_vault_exposure,
        )
        if vl.exposure(pool) > vl.exposure_limit(pool, raw_cash):
            raise Revert("clearinghouse: vault exposure cap reached")
    filled = PoolFill(
        market=market,
        size_delta=size_delta,
        oracle_price=price,
        fill_price=fill,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        size_before=size,
        size_after=new_size,
        adds=adds,
    )
    return filled, after


def _require_trader_state(snap: Snapshot, now: int) -> None:
    """The account checks of `trade` and `trade_multi` the snapshot can make (who sends
    the order is not checked): it exists, has no delayed order that may still settle at
    block time `now` (engine._require_idle, review 4 R4-2) and is not being liquidated."""
    if snap.header & ACCOUNT_EXISTS == 0:
        raise Revert("clearinghouse: unknown account")
    if is_frozen(snap.header, now):
        raise Revert(DELAYED_PENDING)
    if snap.header & ACCOUNT_IN_LIQUIDATION != 0:
        raise Revert("clearinghouse: account in liquidation")


def _require_no_stranded_debt(
    snap: Snapshot, now: int, refreshed: tuple[int, ...]
) -> tuple[Snapshot, tuple[int, ...]]:
    """The end of every order: closing the last position must not leave a debt no
    liquidation can reach (engine._check_initial with its own reason)."""
    if position_count(snap.header) == 0 and snap.balance(0) < 0:
        snap, more = check_initial(snap, now, "clearinghouse: close leaves negative equity")
        refreshed += tuple(m for m in more if m not in refreshed)
    return snap, refreshed


def simulate_trade(
    snap: Snapshot,
    market: int,
    size_delta: int,
    now: int | None = None,
    acceptable_price: int | None = None,
) -> TradeResult:
    """trading.trade -> engine._pool_trade, in full: touch the market (oracle price,
    funding accrued to `now`), the fill price and fee against the pool, settlement
    (_settle_side: funding, realised PnL, open interest, the position), the fee
    (_settle_side), the caps (_check_caps, every fill), and the post-trade
    margin check (_check_after_trade: stale marks re-read, then equity >= initial, or a
    reduce-only trade that does not raise the requirement; a trade that adds needs
    equity >= the loss cap too). Raises `Revert` with the
    contract's reason where the trade would revert.

    Unlike the lens's `quote` (which `quote` mirrors), the figures after the trade are
    exact even when other marks are stale or a secondary collateral is priced by the
    traded market. `now` defaults to the snapshot's timestamp; pass the pending block's.
    The exposure cap (on the pool's raw cash, before pending fees are swept) is checked
    only when the snapshot carries `pool_cash`. Does not check who sends it. Assumes the
    oracle prices at `now` are the ones the snapshot read."""
    now = snap.timestamp if now is None else now
    _require_trader_state(snap, now)
    filled, after = pool_fill(snap, market, size_delta, now, acceptable_price)
    adds = filled.adds
    refreshed: tuple[int, ...] = ()
    if adds or after.header & ACCOUNT_PORTFOLIO != 0:  # _check_after_trade
        after, refreshed = refresh_stale(after, now, every=adds and snap.loss_cap != 0)
        s = scan(after)
        if s.equity < s.initial:
            if adds:
                raise Revert("clearinghouse: below initial margin")
            before = scan(
                after, with_equity=False, override_market=market, override_size=filled.size_before
            )
            if s.initial > before.initial:
                raise Revert("clearinghouse: below initial margin")
        elif adds and s.equity < snap.loss_cap:  # (perpdex.sdk.losscap.below_loss_cap)
            raise Revert("clearinghouse: below loss cap, reduce only")
    after, refreshed = _require_no_stranded_debt(after, now, refreshed)
    return TradeResult(
        fill_price=filled.fill_price,
        fee=filled.fee,
        realized_pnl=filled.realized_pnl,
        funding_paid=filled.funding_paid,
        adds=adds,
        refreshed=refreshed,
        margin_after=scan(after),
        after=after,
    )
