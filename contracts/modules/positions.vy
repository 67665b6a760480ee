# pragma version ~=0.4.3
"""
@title Position arithmetic: cost basis, realised PnL, funding owed
@custom:contract-name positions
@license MIT
@notice Glossary, for a position of signed size s (base WAD) and cost basis C (USD WAD,
        s * average entry price):
          unrealised PnL    floor(s * P) - C                 (P mark price, WAD)
          fill of d at p    open / increase:  C += ceil(d * p)
                            reduce / close:   closed = ceil(C * |d| / |s|),
                                              realised = floor(-d * p) - closed,
                                              C -= closed
                            flip:             realised = floor(s * p) - C,
                                              C = ceil((s + d) * p)
          funding owed      ceil(s * (I - I_snapshot) / 1e12)   (index in pico-USD)
        Every rounding goes against the trader; the pool takes the other side of each
        amount exactly, so nothing is created or lost.
"""

from . import constants as c
from . import fixed_point as fp

PICO_PER_USD: constant(int256) = 10**12


@internal
@pure
def _apply_fill(
    size: int256, cost: int256, delta: int256, price: uint256
) -> (int256, int256, int256):
    """
    @dev Returns (new size, new cost basis, realised PnL) of filling `delta` at `price`.
    """
    iprice: int256 = convert(price, int256)
    new_size: int256 = size + delta
    if size == 0 or (size > 0) == (delta > 0):
        return new_size, cost + fp._div_ceil(delta * iprice, c.IWAD), 0
    if abs(delta) <= abs(size):
        # |cost|, |delta| < 2**95 (packed widths), so the product cannot overflow
        closed_cost: int256 = fp._div_ceil(cost * abs(delta), abs(size))
        return new_size, cost - closed_cost, fp._div_floor(-delta * iprice, c.IWAD) - closed_cost
    return new_size, fp._div_ceil(new_size * iprice, c.IWAD), fp._div_floor(
        size * iprice, c.IWAD
    ) - cost


@internal
@pure
def _adds(size: int256, delta: int256) -> bool:
    """
    @dev Whether filling `delta` against a position of `size` adds risk: it opens, grows
         or flips the position (anything but a pure reduce or close).
    """
    return size == 0 or (size > 0) == (delta > 0) or abs(delta) > abs(size)


@internal
@pure
def _funding_owed(size: int256, index_delta: int256) -> int256:
    """
    @dev Funding a position owes (positive) or earns (negative) for an index move, USD WAD.
    """
    if index_delta == 0:
        return 0
    return fp._div_ceil(size * index_delta, PICO_PER_USD)


@internal
@pure
def _value_pnl(size: int256, cost: int256, price: uint256) -> int256:
    """
    @dev Unrealised PnL at `price`, rounded down.
    """
    return fp._div_floor(size * convert(price, int256), c.IWAD) - cost
