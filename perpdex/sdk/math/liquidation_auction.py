"""Mirror of contracts/LiquidationAuction.vy: the auction's pure rules (discount clock and
its scaling, tranche size, keeper reward, the fraction a take moves, critical health, the
cusp test of `redo`, the health test that ends a liquidation). The keeper plans with these.
"""

from __future__ import annotations

from perpdex.constants import WAD
from perpdex.sdk.math.liquidation_hooks import LIQ_COST_SHARE, LIQ_REWARD_SHARE
from perpdex.sdk.math.packing import MASK_96
from perpdex.sdk.math.vyper import vdiv


def liq_scale(maintenance: int, notional: int, max_discount: int, penalty: int) -> int:
    """LiquidationAuction._scale: f = min(1, COST_SHARE x M / (N x (max_discount +
    penalty))), rounded down; every discount and the penalty are multiplied by f."""
    rate = max_discount + penalty
    if rate == 0 or notional == 0:
        return WAD
    return min(WAD, LIQ_COST_SHARE * maintenance // notional * WAD // rate)


def liq_discount(elapsed: int, p: dict[str, int], scale: int = WAD) -> int:
    """The discount `elapsed` seconds into the clock, scaled by `scale` (rounded down)."""
    elapsed = min(elapsed, p["duration"])
    d = p["start_discount"] + (p["max_discount"] - p["start_discount"]) * elapsed // p["duration"]
    return liq_scaled(d, scale)


def liq_scaled(discount: int, scale: int) -> int:
    """take()'s `discount * f // WAD` (and backstop's `max_discount * f // WAD`): a
    schedule discount scaled by f = `liq_scale(...)`, rounded down."""
    return discount * scale // WAD


def liq_healthy(equity: int, maintenance: int) -> bool:
    """LiquidationAuction._due / _sell's end test: no requirement left, or equity at or
    above maintenance (the liquidation finishes)."""
    return maintenance == 0 or equity >= maintenance


def liq_critical(equity: int, maintenance: int, critical_health: int) -> bool:
    """LiquidationAuction._critical: equity < critical_health x maintenance (the whole
    book goes at once, and the sequencer grace period does not hold it)."""
    return equity < maintenance * critical_health // WAD


def liq_lot_value(lot: int, notional: int) -> int:
    """The lot's value as `_open_tranche` and `redo` record it (the `kick` the cusp test
    compares with): min(lot x notional / WAD, 2**96 - 1), USD WAD."""
    return min(lot * notional // WAD, MASK_96)


def liq_moved(old: int, new: int, cusp: int) -> bool:
    """LiquidationAuction._moved: the lot's value moved more than `cusp` (WAD fraction)
    from `old`, its value when the clock started (`redo` restarts the clock)."""
    if old == 0:
        return new != 0
    return abs(old - new) * WAD > cusp * old


def liq_tranche(
    equity: int, maintenance: int, notional: int, p: dict[str, int], critical: bool
) -> int:
    """LiquidationAuction._tranche without window caps: q = (t*M - E) / (t*M - c), c =
    N*(d_max + penalty)*f + REWARD_SHARE*M, rounded up, in [min_step, max_step]; the whole
    book below critical health, for books under `small_account`, or when the rest would
    be under it."""
    if critical or notional < p["small_account"]:
        return WAD
    f = liq_scale(maintenance, notional, p["max_discount"], p["penalty"])
    tm = maintenance * p["target_health"] // WAD
    need = tm - equity
    cost = (
        notional * (p["max_discount"] + p["penalty"]) // WAD * f // WAD
        + maintenance * LIQ_REWARD_SHARE // WAD
    )
    q = WAD
    if tm > cost:
        q = vdiv(need * WAD + tm - cost - 1, tm - cost)
    q = min(max(q, p["min_step"]), p["max_step"])
    if (WAD - q) * notional < p["small_account"] * WAD:
        return WAD
    return q


def liq_reward(value: int, q: int, equity: int, maintenance: int, p: dict[str, int]) -> int:
    """A tranche's keeper reward: tip + fee x notional, within the keeper cap,
    REWARD_SHARE of the maintenance the tranche frees and the account's equity."""
    reward = min(p["keeper_tip"] + value * p["keeper_fee"] // WAD, p["keeper_cap"])
    reward = min(reward, maintenance * q // WAD * LIQ_REWARD_SHARE // WAD)
    return min(reward, max(equity, 0))


def liq_need(equity: int, maintenance: int, notional: int, target_health: int, rate: int) -> int:
    """LiquidationAuction._need: the fraction of the book that restores target health
    when sold at `rate` (scaled discount + penalty): (t*M - E) / (t*M - N*rate) + 1 wei,
    at most the whole book (Clipper: an auction raises at most what the account owes)."""
    tm = maintenance * target_health // WAD
    cost = notional * rate // WAD
    if tm <= cost:
        return WAD
    return min(vdiv((tm - equity) * WAD, tm - cost) + 1, WAD)


def liq_sell_part(
    lot: int,
    requested: int,
    equity: int,
    maintenance: int,
    notional: int,
    discount: int,
    penalty: int,
    p: dict[str, int],
) -> int:
    """The fraction of the book a take (or the backstop) moves: min(requested, need at
    this discount); the whole lot when the book's rest would be under `small_account`."""
    part = min(
        requested, liq_need(equity, maintenance, notional, p["target_health"], discount + penalty)
    )
    if (WAD - part) * notional < p["small_account"] * WAD:
        part = lot
    return part
