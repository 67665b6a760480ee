# pragma version ~=0.4.3
"""
@title Funding: velocity-driven rate and a cumulative index per market
@custom:contract-name funding
@license MIT
@notice Glossary (rates are WAD fractions of the price per day):
          r      current funding rate; positive: longs pay shorts
          K, S   skew and skew scale (base WAD)
          v      velocity = clamp(K / S, -1, 1) * max_velocity  (per day, per day)
          R      max_funding_rate: the rate is bounded to [-R, R]
          I      funding index: cumulative funding per unit of base, pico-USD (1e-12)
        After Synthetix v3 (`currentFundingVelocity`, `recomputeFunding`): the rate drifts
        linearly at v while the skew stays the same, here clamped to +-R. Over an
        interval dt (seconds) the index grows by the area under the rate times the price:
            dI = P * integral(r dt) / 1 day
        with the clamp handled piecewise. A position of size s settles
        ceil(s * (I_now - I_snapshot) / 1e12) USD WAD (rounded against the trader); the
        index truncates toward zero (symmetric), the stored rate toward zero to 1e-15.
"""

from . import constants as c


@internal
@pure
def _accrue(
    rate: int256,
    dt: uint256,
    skew: int256,
    skew_scale: uint256,
    max_velocity: uint256,
    max_rate: uint256,
    price: uint256,
) -> (int256, int256):
    """
    @dev Returns the new rate and the index increment over `dt` seconds.
    """
    bound: int256 = convert(max_rate, int256)
    r0: int256 = max(min(rate, bound), -bound)
    if dt == 0:
        return r0, 0
    prop: int256 = skew * c.IWAD // convert(skew_scale, int256)
    prop = max(min(prop, c.IWAD), -c.IWAD)
    velocity: int256 = prop * convert(max_velocity, int256) // c.IWAD
    t: int256 = convert(dt, int256)
    day: int256 = convert(c.SECONDS_PER_DAY, int256)
    r1: int256 = r0 + velocity * t // day
    area: int256 = 0  # rate * seconds
    if r1 > bound:
        t_hit: int256 = (bound - r0) * day // velocity
        area = (r0 + bound) * t_hit // 2 + bound * (t - t_hit)
        r1 = bound
    elif r1 < -bound:
        t_hit: int256 = (-bound - r0) * day // velocity
        area = (r0 - bound) * t_hit // 2 - bound * (t - t_hit)
        r1 = -bound
    else:
        area = (r0 + r1) * t // 2
    # area (WAD * s) * price (WAD) / 1 day -> USD WAD^2 per unit; to pico-USD: / 1e24.
    return r1, area * convert(price, int256) // (day * 10**24)
