"""Vyper's own semantics, which no contract file spells out (an allowed off-chain helper, see
tests/unit/test_sdk_math_layout.py): signed `//` and `%` truncating toward zero, the
reverting `convert`s, two's-complement fields, and `Revert`, raised where a contract would.
"""

from __future__ import annotations

from perpdex.errors import PerpdexError

UINT256_MAX = 2**256 - 1
INT256_MAX = 2**255 - 1
INT256_MIN = -(2**255)


class Revert(PerpdexError):
    """The contract would revert here; the message is its reason string."""


def vdiv(x: int, d: int) -> int:
    """Vyper's `x // d`: truncates toward zero (signed), reverts on a zero divisor."""
    if d == 0:
        raise Revert("division by zero")
    q = abs(x) // abs(d)
    return q if (x >= 0) == (d > 0) else -q


def vmod(x: int, d: int) -> int:
    """Vyper's `x % d`: the remainder takes the sign of the dividend."""
    if d == 0:
        raise Revert("modulo by zero")
    r = abs(x) % abs(d)
    return r if x >= 0 else -r


def _to_u256(x: int) -> int:
    """`convert(x, uint256)` of an int256: reverts when negative."""
    if x < 0:
        raise Revert("convert: negative value to uint256")
    return x


def _to_i256(x: int) -> int:
    """`convert(x, int256)` of a uint256: reverts at or above 2**255."""
    if x > INT256_MAX:
        raise Revert("convert: value out of int256 range")
    return x


def _u(x: int) -> int:
    """`convert(convert(x, bytes32), uint256)`: the two's-complement bit pattern."""
    return x % 2**256


def _signed(w: int, bits: int) -> int:
    """The low `bits` of `w` read as a two's-complement signed integer."""
    w &= (1 << bits) - 1
    return w - (1 << bits) if w >> (bits - 1) else w
