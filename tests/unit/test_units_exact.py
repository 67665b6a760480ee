"""WAD conversions are exact for every uint256-sized figure.

Found by the outside review: `from_wad` divided in Python's default 28-digit decimal
context, so a size of 1e10 units or more came back rounded and `Client.close` sent a
size that left a remainder (refused on chain as below the minimum position size)."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest

from perpdex.sdk.client import _size_wad
from perpdex.units import from_wad, to_wad

BIG = [12_345_678_901_234_567_890_123_456_789, 2**255 - 1, 10**28 + 1, 1]


@pytest.mark.parametrize("wad", BIG)
def test_round_trip__exact(wad: int) -> None:
    assert to_wad(from_wad(wad)) == wad
    assert to_wad(from_wad(-wad)) == -wad


@pytest.mark.parametrize("wad", BIG)
def test_close_size__negated_exactly(wad: int) -> None:
    """What `Client.close` sends: the position's size, negated without rounding."""
    assert _size_wad(from_wad(wad).copy_negate()) == -wad


def test_default_context_would_round() -> None:
    """The case the fix is for: Python's default 28 digits are not enough for this size
    (an explicit context: another module in the session may change the global one)."""
    wad = BIG[0]
    ctx = Context(prec=28)
    assert int(ctx.multiply(ctx.divide(Decimal(wad), 10**18), 10**18)) != wad
