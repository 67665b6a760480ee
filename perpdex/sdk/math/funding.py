"""Mirror of contracts/modules/funding.vy: the funding rate's drift and the index increment
over an interval (`_accrue`).
"""

from __future__ import annotations

from perpdex.constants import IWAD, SECONDS_PER_DAY
from perpdex.sdk.math.vyper import _to_i256, vdiv


def accrue(
    rate: int,
    dt: int,
    skew: int,
    skew_scale: int,
    max_velocity: int,
    max_rate: int,
    price: int,
) -> tuple[int, int]:
    """funding._accrue: (new rate, index increment in pico-USD per unit) over `dt`
    seconds, the rate drifting at the skew's velocity and clamped to +-max_rate."""
    bound = _to_i256(max_rate)
    r0 = max(min(rate, bound), -bound)
    if dt == 0:
        return r0, 0
    prop = vdiv(skew * IWAD, _to_i256(skew_scale))
    prop = max(min(prop, IWAD), -IWAD)
    velocity = vdiv(prop * _to_i256(max_velocity), IWAD)
    t = _to_i256(dt)
    day = SECONDS_PER_DAY
    r1 = r0 + vdiv(velocity * t, day)
    if r1 > bound:
        t_hit = vdiv((bound - r0) * day, velocity)
        area = vdiv((r0 + bound) * t_hit, 2) + bound * (t - t_hit)
        r1 = bound
    elif r1 < -bound:
        t_hit = vdiv((-bound - r0) * day, velocity)
        area = vdiv((r0 - bound) * t_hit, 2) - bound * (t - t_hit)
        r1 = -bound
    else:
        area = vdiv((r0 + r1) * t, 2)
    return r1, vdiv(area * _to_i256(price), day * 10**24)
