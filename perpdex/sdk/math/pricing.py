"""Mirror of contracts/modules/pricing.vy: the skew-premium fill price and the
maker / taker fee.
"""

from __future__ import annotations

from perpdex.constants import WAD
from perpdex.sdk.math.fixed_point import mul_div, smul_div
from perpdex.sdk.math.vyper import Revert, _to_i256


def fill_price(price: int, skew: int, delta: int, skew_scale: int) -> int:
    """pricing._fill_price: oracle price plus the mean skew premium over the fill,
    rounded against the trader (up for buys, down for sells)."""
    adj = smul_div(2 * skew + delta, price, 2 * skew_scale, delta > 0)
    fill = _to_i256(price) + adj
    if fill <= 0:
        raise Revert("clearinghouse: price impact too large")
    return fill


def maker_size(skew: int, delta: int) -> int:
    """The maker part of pricing._fee: the part of |delta| that reduces |skew|."""
    if (skew > 0 and delta < 0) or (skew < 0 and delta > 0):
        return min(abs(delta), abs(skew))
    return 0


def fee(fill: int, skew: int, delta: int, maker_fee: int, taker_fee: int) -> int:
    """pricing._fee: maker fee on the skew-reducing part, taker fee on the rest, rounded
    up."""
    size = abs(delta)
    maker = maker_size(skew, delta)
    weighted = maker * maker_fee + (size - maker) * taker_fee
    return mul_div(weighted, fill, WAD * WAD, True)
