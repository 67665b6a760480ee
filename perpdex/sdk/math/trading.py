"""Mirror of contracts/modules/trading.vy: the pool trade (`simulate_trade` = `_pool_trade`;
`pool_fill` = its fill without the margin checks, a leg of a multi-leg order) and loss-cap
close-outs (`_forced_limit`, `_force_close`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    IWAD,
    MIN_POSITION_NOTIONAL,
    WAD,
)
from perpdex.sdk.math import vault_limits as vl
from perpdex.sdk.math.delayed import DELAYED_PENDING
from perpdex.sdk.math.gates import _require_no_stranded_debt, scan
from perpdex.sdk.math.marks import _require_quorum, _with_market, refresh_stale, touch
from perpdex.sdk.math.packing import (
    MASK_128,
    MarketParams,
    Position,
    funding_delta,
    is_frozen,
    pack_pos,
    pack_u128,
    pos_snapshot,
    with_position,
)
from perpdex.sdk.math.positions import adds_risk, apply_fill, funding_owed
from perpdex.sdk.math.pricing import fee, fill_price
from perpdex.sdk.math.state import MarginScan, fee_split
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert, _to_u256, vdiv

LOSS_CAP_WINDOW = 60  # trading.LOSS_CAP_WINDOW (seconds)


def forced_limit(p: MarketParams) -> int:
    """trading._forced_limit: the most base size loss-cap close-outs may force through
    one market per window, 2 x min(maker_fee, taker_fee) x skew_scale (a sandwich's
    capture, S x P x L / skew_scale, then never exceeds its fees, 2 x maker x S x P)."""
    return 2 * min(p.maker_fee, p.taker_fee) * p.skew_scale // WAD


def force_close(
    snap: Snapshot, market: int, window: int, now: int | None = None
) -> tuple[TradeResult | None, int]:
    """trading._force_close: closes as much of the position in `market` as the market's
    loss-cap window (`loss_cap_window(market)`, start << 128 | used) allows (the whole
    position when the rest would be worth less than MIN_POSITION_NOTIONAL), at the
    oracle price, paying the maker/taker fee. Returns (the fill, or None when the window
    is used up, and the window word after). Assumes the account's marks were just
    touched at `now` (trigger_loss_cap refreshes them first)."""
    now = snap.timestamp if now is None else now
    ms = snap.market(market)
    p = ms.params
    used = window & MASK_128
    if (window >> 128) + LOSS_CAP_WINDOW <= now:
        used, window = 0, now << 128
    limit = forced_limit(p)
    if used >= limit:
        return None, window
    flags = ms.oracle_flags or 0
    if flags & FLAG_SEQUENCER_DOWN:
        raise Revert("clearinghouse: sequencer down")
    if flags & FLAG_SEQUENCER_GRACE:
        raise Revert("clearinghouse: sequencer grace period")
    if flags & FLAG_DEGRADED:
        raise Revert("clearinghouse: no price quorum")
    price = snap.oracle_price(market)
    pos = snap.position(market)
    amount = min(abs(pos.size), limit - used)
    # no dust: a rest worth less than MIN_POSITION_NOTIONAL closes with the window's part
    if (abs(pos.size) - amount) * price < MIN_POSITION_NOTIONAL * WAD:
        amount = abs(pos.size)
    delta = -amount if pos.size > 0 else amount
    window = (window >> 128 << 128) | (used + amount)
    mark = touch(ms.mark, p, ms.skew, price, now)
    index = mark.index
    fee_ = fee(price, ms.skew, delta, p.maker_fee, p.taker_fee)
    funding_paid = funding_owed(pos.size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(pos.size, pos.cost, delta, price)
    cash = realized - funding_paid
    long_oi, short_oi = ms.long_oi, ms.short_oi
    if pos.size > 0:
        long_oi -= pos.size - max(new_size, 0)
    else:
        short_oi -= -pos.size - max(-new_size, 0)
    positions = dict(snap.positions)
    if new_size == 0:
        positions.pop(market, None)
    else:
        positions[market] = Position(
            new_size, new_cost, pos_snapshot(pack_pos(new_size, new_cost, index))
        )
    balances = dict(snap.balances)
    balances[0] = snap.balance(0) + cash - fee_
    raw_cash: int | None = None
    if snap.pool_cash is not None:
        raw_cash = snap.pool_cash - fee_split(snap.pending_fees, snap.system)[2] - cash
    pending = snap.pending_fees + fee_
    after = replace(
        snap,
        header=with_position(snap.header, market, new_size != 0),
        balances=balances,
        positions=positions,
        pool_cash=None if raw_cash is None else raw_cash + fee_split(pending, snap.system)[2],
        pending_fees=pending,
        timestamp=now,
        block_number=-1,
    )
    after = _with_market(after, market, mark, (long_oi, short_oi))
    res = TradeResult(
        fill_price=price,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        adds=False,
        refreshed=(),
        margin_after=scan(after),
        after=after,
    )
    return res, window


@dataclass(frozen=True)
class TradeResult:
    """What `trade(account, market, size_delta, acceptable)` does (trading._pool_trade):
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


def require_min_position(size_after: int, price: int) -> None:
    """trading._pool_trade's dust check: a market order leaves the position at zero or
    worth at least MIN_POSITION_NOTIONAL at the oracle price `price` (whole dollars,
    truncated toward zero, as the contract compares them)."""
    usd = vdiv(size_after * price, IWAD * IWAD)
    if size_after != 0 and abs(usd) < MIN_POSITION_NOTIONAL // WAD:
        raise Revert("clearinghouse: min position size")


def _require_can_add_risk(snap: Snapshot, m: int, p: MarketParams, flags: int) -> None:
    """trading._require_can_add_risk."""
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
    """One fill of trading._pool_trade against the vault's pool (a market order, or one
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
    """trading._pool_trade up to its margin checks (mode TRADE_DEFERRED, a leg of
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
    # (settlement._settle_side) until a sweep splits it. `views.pool_cash` adds the vault's share
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
    block time `now` (guards._require_idle, review 4 R4-2) and is not being liquidated."""
    if snap.header & ACCOUNT_EXISTS == 0:
        raise Revert("clearinghouse: unknown account")
    if is_frozen(snap.header, now):
        raise Revert(DELAYED_PENDING)
    if snap.header & ACCOUNT_IN_LIQUIDATION != 0:
        raise Revert("clearinghouse: account in liquidation")


def simulate_trade(
    snap: Snapshot,
    market: int,
    size_delta: int,
    now: int | None = None,
    acceptable_price: int | None = None,
) -> TradeResult:
    """trading.trade -> trading._pool_trade, in full: touch the market (oracle price,
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
