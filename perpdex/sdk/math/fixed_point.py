"""Mirror of contracts/modules/fixed_point.vy: floor / ceil division and snekmate's
512-bit `_mul_div`, unsigned and signed.
"""

from __future__ import annotations

from perpdex.sdk.math.vyper import UINT256_MAX, Revert, _to_i256, vdiv, vmod


def div_floor(x: int, d: int) -> int:
    """fixed_point._div_floor: division rounded toward -inf (`d` must be positive)."""
    q = vdiv(x, d)
    if vmod(x, d) != 0 and x < 0:
        q -= 1
    return q


def div_ceil(x: int, d: int) -> int:
    """fixed_point._div_ceil: division rounded toward +inf (`d` must be positive)."""
    q = vdiv(x, d)
    if vmod(x, d) != 0 and x > 0:
        q += 1
    return q


def mul_div(x: int, y: int, d: int, roundup: bool) -> int:
    """fixed_point._mul_div / snekmate `math._mul_div`: floor (or ceil when `roundup`)
    of x * y / d with an exact 512-bit intermediate; reverts on d == 0 or a result at or
    above 2**256."""
    if not (0 <= x <= UINT256_MAX and 0 <= y <= UINT256_MAX and 0 <= d <= UINT256_MAX):
        raise Revert("math: mul_div operand out of uint256 range")
    if d == 0:
        raise Revert("math: mul_div division by zero")
    q, r = divmod(x * y, d)
    if roundup and r != 0:
        q += 1
    if q > UINT256_MAX:
        raise Revert("math: mul_div overflow")
    return q


def smul_div(x: int, y: int, d: int, toward_pos_inf: bool) -> int:
    """fixed_point._smul_div: signed x * y / d (512-bit), toward +inf or toward -inf."""
    if x >= 0:
        return _to_i256(mul_div(x, y, d, toward_pos_inf))
    return -_to_i256(mul_div(-x, y, d, not toward_pos_inf))
