"""Mirror of contracts/modules/positions.vy: fills against a position (new size, cost
basis, realised PnL), funding owed and unrealised PnL.
"""

from __future__ import annotations

from perpdex.constants import IWAD
from perpdex.sdk.math.fixed_point import div_ceil, div_floor
from perpdex.sdk.math.packing import PICO_PER_USD
from perpdex.sdk.math.vyper import _to_i256


def apply_fill(size: int, cost: int, delta: int, price: int) -> tuple[int, int, int]:
    """positions._apply_fill: (new size, new cost basis, realised PnL) of filling `delta`
    at `price`."""
    iprice = _to_i256(price)
    new_size = size + delta
    if size == 0 or (size > 0) == (delta > 0):
        return new_size, cost + div_ceil(delta * iprice, IWAD), 0
    if abs(delta) <= abs(size):
        closed_cost = div_ceil(cost * abs(delta), abs(size))
        return new_size, cost - closed_cost, div_floor(-delta * iprice, IWAD) - closed_cost
    return (
        new_size,
        div_ceil(new_size * iprice, IWAD),
        div_floor(size * iprice, IWAD) - cost,
    )


def adds_risk(size: int, delta: int) -> bool:
    """positions._adds: whether filling `delta` against a position of `size` opens, grows
    or flips it (anything but a pure reduce or close)."""
    return size == 0 or (size > 0) == (delta > 0) or abs(delta) > abs(size)


def funding_owed(size: int, index_delta: int) -> int:
    """positions._funding_owed: funding a position owes (+) or earns (-), USD WAD."""
    if index_delta == 0:
        return 0
    return div_ceil(size * index_delta, PICO_PER_USD)


def value_pnl(size: int, cost: int, price: int) -> int:
    """positions._value_pnl: unrealised PnL at `price`, rounded down."""
    return div_floor(size * _to_i256(price), IWAD) - cost
