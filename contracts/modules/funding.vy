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
    # Magnitudes (unsafe arithmetic below cannot overflow; SDIV truncates toward zero as
    # the checked `//` does, so results are unchanged): |rate| < 2**66 and
    # bound <= 2**32 * 1e9 < 2**62, so |r0| < 2**62; |skew| < 2**128 (open interest);
    # |prop| <= 1e18 < 2**60; max_velocity < 2**32 * 1e12 < 2**72, so
    # |velocity| < 2**72; dt < 2**35 (34-bit mark times); price < 2**88. The division by
    # the skew scale stays checked (a zero scale reverts, as before).
    prop: int256 = unsafe_mul(skew, c.IWAD) // convert(skew_scale, int256)
    prop = max(min(prop, c.IWAD), -c.IWAD)
    velocity: int256 = unsafe_div(unsafe_mul(prop, convert(max_velocity, int256)), c.IWAD)
    t: int256 = convert(dt, int256)
    day: int256 = convert(c.SECONDS_PER_DAY, int256)
    r1: int256 = unsafe_add(r0, unsafe_div(unsafe_mul(velocity, t), day))
    area: int256 = 0  # rate * seconds
    if r1 > bound:
        # velocity > 0 here (r0 <= bound < r1); 0 <= t_hit <= t
        t_hit: int256 = unsafe_div(unsafe_mul(unsafe_sub(bound, r0), day), velocity)
        area = unsafe_add(
            unsafe_div(unsafe_mul(unsafe_add(r0, bound), t_hit), 2),
            unsafe_mul(bound, unsafe_sub(t, t_hit)),
        )
        r1 = bound
    elif r1 < -bound:
        # velocity < 0 here
        t_hit: int256 = unsafe_div(unsafe_mul(unsafe_sub(-bound, r0), day), velocity)
        area = unsafe_sub(
            unsafe_div(unsafe_mul(unsafe_sub(r0, bound), t_hit), 2),
            unsafe_mul(bound, unsafe_sub(t, t_hit)),
        )
        r1 = -bound
    else:
        area = unsafe_div(unsafe_mul(unsafe_add(r0, r1), t), 2)
    # area (WAD * s) * price (WAD) / 1 day -> USD WAD^2 per unit; to pico-USD: / 1e24.
    # |area| < 2**100, so |area * price| < 2**188.
    return r1, unsafe_div(unsafe_mul(area, convert(price, int256)), day * 10**24)
