"""Unit conversions shared by the SDK, the deploy and the tests.

On chain: prices, sizes and money are WAD (1e18) integers; market fractions (fees,
funding, exposure) are WAD too but must sit on the grids their packed fields hold (1e-6 to
1e-9, contracts/modules/packing.vy); shocks and margin ratios are basis points. Conversions
from decimal strings go through `Decimal` so "0.0005" becomes exactly 5 * 10**14.
"""

from __future__ import annotations

from decimal import Context, Decimal

from perpdex.constants import BPS, WAD

# the finest grid of the packed market parameters (1e-9 of a WAD)
NANO = 10**9


def _dec(x: int | float | str | Decimal) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


# 80 digits: a uint256 has 78, so every on-chain figure converts exactly (the default
# context keeps 28 and would round a size of 1e10 units or more)
EXACT = Context(prec=80)


def to_wad(x: int | float | str | Decimal) -> int:
    """Decimal quantity -> WAD integer (exact for up to 18 decimals)."""
    return int(EXACT.multiply(_dec(x), WAD))


def from_wad(x: int) -> Decimal:
    """WAD integer -> Decimal, exactly."""
    return EXACT.divide(Decimal(x), WAD)


def to_nano_wad(x: int | float | str | Decimal) -> int:
    """Fraction -> WAD truncated to the 1e-9 grid (the finest of the packed parameters')."""
    return int(_dec(x) * NANO) * NANO


def to_bps(x: int | float | str | Decimal) -> int:
    """Fraction -> basis points (must be a whole number of bp)."""
    v = _dec(x) * BPS
    if v != v.to_integral_value():
        raise ValueError(f"{x} is not a whole number of basis points")
    return int(v)


def to_units(x: int | float | str | Decimal, decimals: int) -> int:
    """Token amount -> integer token units."""
    return int(_dec(x) * 10**decimals)
