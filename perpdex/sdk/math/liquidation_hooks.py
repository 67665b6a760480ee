"""Mirror of contracts/modules/liquidation_hooks.vy: the liquidation budget's bounds
(MAX_COST_SHARE, MAX_REWARD_SHARE, MAX_KEEPER_REWARD) and `liquidation_transfer`'s per-leg
rules (dust legs move whole; a taker's partial leg ends at zero or above the minimum).
"""

from __future__ import annotations

from perpdex.constants import MIN_POSITION_NOTIONAL, WAD
from perpdex.sdk.math.fixed_point import mul_div

# the liquidation budget (liquidation_hooks.MAX_*, LiquidationAuction.COST_SHARE / REWARD_SHARE):
# discount + penalty cost at most LIQ_COST_SHARE x maintenance per unit of book moved, the
# keeper reward at most LIQ_REWARD_SHARE x the maintenance the tranche frees; the auction's
# glossary proves an account entering at health 1 - e (e < 0.1) never ends in bad debt.
LIQ_COST_SHARE = 8 * 10**17
LIQ_REWARD_SHARE = 10**17
LIQ_MAX_KEEPER_REWARD = 1_000 * WAD
LIQ_MIN_POSITION_NOTIONAL = MIN_POSITION_NOTIONAL  # the same constant (modules/constants.vy)


def liq_leg_part(size: int, fraction: int, mark: int) -> int:
    """liquidation_transfer's part of one leg: size x fraction toward zero; the whole leg
    when the rest would be worth less than MIN_POSITION_NOTIONAL."""
    if fraction >= WAD:
        return size
    part = abs(size) * fraction // WAD
    part = part if size > 0 else -part
    if mul_div(abs(size - part), mark, WAD, False) < LIQ_MIN_POSITION_NOTIONAL:
        return size
    return part


def liq_taker_leg_ok(size: int, part: int, taker_size: int, mark: int) -> bool:
    """liquidation_transfer's rule for a taker account: where only part of a leg moves
    (`part` of `size`), the taker's leg ends at zero or at least MIN_POSITION_NOTIONAL at
    the mark; a whole leg moves as it is."""
    if part in (0, size):
        return True
    held = taker_size + part
    return held == 0 or mul_div(abs(held), mark, WAD, False) >= LIQ_MIN_POSITION_NOTIONAL
