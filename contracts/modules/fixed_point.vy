# pragma version ~=0.4.3
"""
@title Signed fixed-point helpers with explicit rounding
@custom:contract-name fixed_point
@license MIT
@notice Every division in perpdex states its rounding direction. Money that leaves a
        user (fees, losses, funding owed, margin requirements) rounds up; money that
        reaches a user (profits, funding received) rounds down. These helpers make the
        direction explicit for signed values, where Vyper's `//` truncates toward zero.
        Full 512-bit products go through snekmate's audited `math._mul_div`.
"""

from snekmate.utils import math


@internal
@pure
def _div_floor(x: int256, d: int256) -> int256:
    """
    @dev Division rounded toward negative infinity. `d` must be positive (every caller
         divides by a positive constant or by |size| of a non-zero position).
    """
    # SDIV truncates toward zero like the checked `//`; with d > 0 it cannot overflow,
    # and |q * d| <= |x| (unsafe arithmetic: bytecode and gas on the trade path)
    q: int256 = unsafe_div(x, d)
    if x < 0 and unsafe_mul(q, d) != x:
        q = unsafe_sub(q, 1)
    return q


@internal
@pure
def _div_ceil(x: int256, d: int256) -> int256:
    """
    @dev Division rounded toward positive infinity. `d` must be positive (as
         `_div_floor`).
    """
    q: int256 = unsafe_div(x, d)
    if x > 0 and unsafe_mul(q, d) != x:
        q = unsafe_add(q, 1)
    return q


@internal
@pure
def _mul_div(x: uint256, y: uint256, d: uint256, roundup: bool) -> uint256:
    """
    @dev `x * y / d` with a 512-bit intermediate (snekmate), rounded up or down.
    """
    # All three below 2**128: the product fits a word, so one MUL and one DIV give
    # snekmate's result (the trade path's fills and fees); else, or with d = 0 (its
    # revert), the 512-bit path.
    # (No local variables: a larger frame here would shift every caller's memory.)
    if (x | y | d) >> 128 == 0 and d != 0:
        if roundup:
            # Cannot overflow: x * y + d - 1 < 2**256 with all three below 2**128.
            return unsafe_div(unsafe_add(unsafe_mul(x, y), unsafe_sub(d, 1)), d)
        return unsafe_div(unsafe_mul(x, y), d)
    return math._mul_div(x, y, d, roundup)


@internal
@pure
def _smul_div(x: int256, y: uint256, d: uint256, toward_pos_inf: bool) -> int256:
    """
    @dev Signed `x * y / d` with a 512-bit intermediate, rounded toward +inf when
         `toward_pos_inf`, else toward -inf.
    """
    if x >= 0:
        return convert(self._mul_div(convert(x, uint256), y, d, toward_pos_inf), int256)
    return -convert(self._mul_div(convert(-x, uint256), y, d, not toward_pos_inf), int256)
