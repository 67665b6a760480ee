"""Unit conversions shared by the SDK, the deploy and the tests.

On chain: prices, sizes and money are WAD (1e18) integers, packed market fractions are
nano (1e-9) units, shocks and margin ratios are basis points. Conversions from decimal
strings go through `Decimal` so "0.0005" becomes exactly 5 * 10**14.
"""

from __future__ import annotations

from decimal import Decimal

WAD = 10**18
NANO = 10**9
BPS = 10_000


def _dec(x: int | float | str | Decimal) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


def to_wad(x: int | float | str | Decimal) -> int:
    """Decimal quantity -> WAD integer (exact for up to 18 decimals)."""
    return int(_dec(x) * WAD)


def from_wad(x: int) -> Decimal:
    """WAD integer -> Decimal."""
    return Decimal(x) / WAD


def to_nano_wad(x: int | float | str | Decimal) -> int:
    """Fraction -> WAD rounded to the 1e-9 grid the contract's packed parameters hold."""
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
