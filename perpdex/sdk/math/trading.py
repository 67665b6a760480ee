"""Mirror of contracts/modules/trading.vy: loss-cap close-outs (`_forced_limit`,
`_force_close`).
"""

from __future__ import annotations

from dataclasses import replace

from perpdex.constants import (
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    MIN_POSITION_NOTIONAL,
    WAD,
)
from perpdex.sdk.math.engine import TradeResult, _with_market, scan, touch
from perpdex.sdk.math.packing import (
    MASK_128,
    MarketParams,
    Position,
    funding_delta,
    pack_pos,
    pos_snapshot,
    with_position,
)
from perpdex.sdk.math.positions import apply_fill, funding_owed
from perpdex.sdk.math.pricing import fee
from perpdex.sdk.math.state import fee_split
from perpdex.sdk.math.views import Snapshot
from perpdex.sdk.math.vyper import Revert

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
