"""Mirror of contracts/modules/vault_limits.vy: the PnL cap and auto-deleveraging (ADL),
and the vault's exposure caps measured against pool equity.

Same integer arithmetic as the contract (Vyper's truncating `//` on signed values), so a
keeper can tell which positions `auto_deleverage` accepts and by how much it closes them
before sending anything (perpdex/keepers/adl.py; tests/security/test_vault_limits.py
checks the figures against the chain's events), and how much of its target
`close_with_adl` closes once a reduce is refused by the cap (`paired_amount`).
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.constants import IWAD, MIN_POSITION_NOTIONAL, WAD
from perpdex.sdk.math.fixed_point import div_ceil, div_floor, mul_div
from perpdex.sdk.math.packing import PICO_PER_USD
from perpdex.sdk.math.positions import apply_fill, funding_owed
from perpdex.sdk.math.pricing import fill_price
from perpdex.sdk.math.vyper import Revert, vdiv

REASON_PNL = 1
REASON_EXPOSURE = 2
REASON_PAIRED = 3
BPS = 10_000
PAIRED_BUFFER_BPS = 10


@dataclass(frozen=True)
class PoolMarket:
    """One market as the pool sees it (chain views: open_interest, pool_sums, mark)."""

    long_oi: int
    short_oi: int
    sum_cost: int
    sum_funding: int
    price: int
    index: int
    max_vault_exposure: int

    @property
    def skew(self) -> int:
        return self.long_oi - self.short_oi


def trader_pnl(m: PoolMarket) -> int:
    """Traders' net unrealised PnL in the market net of the funding they owe."""
    pnl = vdiv(m.skew * m.price, IWAD) - m.sum_cost
    owed = div_floor(m.skew * m.index, PICO_PER_USD) - m.sum_funding
    return pnl - owed


def pool_equity(cash: int, markets: list[PoolMarket], provision: int, insurance: int) -> int:
    """The contract's conservative pool equity: raw cash, every market's claim, minus
    the provision insurance does not cover (seized collateral and unswept fees left out)."""
    equity = cash - sum(trader_pnl(m) for m in markets)
    if provision > insurance:
        equity -= provision - insurance
    return equity


def exposure_cap(m: PoolMarket, base: int) -> int:
    return base * m.max_vault_exposure // WAD if base > 0 else 0


def pnl_capped(pnl: int, equity: int, max_pnl_factor: int) -> bool:
    return max_pnl_factor != 0 and pnl * IWAD > max_pnl_factor * max(equity, 0)


def adl_amount(
    m: PoolMarket,
    size: int,
    cost: int,
    index_delta: int,
    equity: int,
    max_pnl_factor: int,
    target_factor: int,
) -> tuple[int, int]:
    """(reason, base amount before the minimum-position rule) `auto_deleverage` closes
    of a position (`size`, `cost`, funding index - its snapshot) at `m.price`; raises
    Revert with the contract's reason when it refuses."""
    if size == 0:
        raise Revert("clearinghouse: no position to deleverage")
    pnl = trader_pnl(m)
    capped = pnl_capped(pnl, equity, max_pnl_factor)
    price_pnl = vdiv(size * m.price, IWAD) - cost
    owed = funding_owed(size, index_delta)
    if capped and price_pnl > owed and price_pnl > 0:
        return REASON_PNL, pnl_close_amount(size, price_pnl, owed, pnl, equity, target_factor)
    exposure = abs(m.skew) * m.price // WAD
    cap = exposure_cap(m, equity)
    if exposure <= cap:
        if capped:
            raise Revert("clearinghouse: adl closes profitable positions only")
        raise Revert("clearinghouse: vault within its limits")
    if (size > 0) != (m.skew > 0):
        raise Revert("clearinghouse: adl closes the skew's side only")
    return REASON_EXPOSURE, mul_div(exposure - cap, WAD, m.price, True)


def pnl_close_amount(
    size: int, price_pnl: int, owed: int, pnl: int, equity: int, target_factor: int
) -> int:
    """Base amount of a profitable position (PnL `price_pnl` at the oracle price, funding
    `owed`, settled whole) whose close takes the market's traders' profit `pnl` down to
    `target_factor` x `equity`: closing q of it takes q x price_pnl - owed off. 0 when
    the funding the position earned (owed < 0) covers the excess: the contract then
    fills 0, which settles that funding and closes nothing."""
    excess = pnl - vdiv(target_factor * max(equity, 0), IWAD)
    if excess + owed <= 0:
        return 0  # settling the funding it earned is enough: a fill of size 0
    return mul_div(abs(size), excess + owed, price_pnl, True)


def deleverage_delta(size: int, amount: int, price: int) -> int:
    """The signed fill `_deleverage` makes: at most the position, and all of it when the
    rest would be below the minimum position."""
    n = min(amount, abs(size))
    if (abs(size) - n) * price < MIN_POSITION_NOTIONAL * WAD:
        n = abs(size)
    return -n if size > 0 else n


def paired_amount(
    m: PoolMarket,
    cash: int,
    skew_scale: int,
    size_delta: int,
    held: int,
    held_cost: int,
    held_index_delta: int,
    adl_size: int,
    adl_cost: int,
    adl_index_delta: int,
) -> int:
    """The base amount `close_with_adl` asks `_deleverage` to close of the ADL target
    (`adl_size`, `adl_cost`, funding index - its snapshot) when the closer's reduce of
    `size_delta` (its position `held`, `held_cost`, `held_index_delta`) is refused by the
    hot path's exposure cap; `cash` is the raw pool cash word and `m` the market at the
    oracle price the call touched. Whether the reduce is refused is the chain's own
    trade, tried first; this is only the size once it is (before the minimum-position
    rule: `deleverage_delta`)."""
    skew = m.skew + size_delta
    most = abs(skew)
    exposure = most * m.price // WAD
    best = fill_price(m.price, -size_delta, size_delta, skew_scale)
    _, new_cost, realised = apply_fill(held, held_cost, size_delta, best)
    cash = (
        cash
        - realised
        + funding_owed(held, held_index_delta)
        + funding_owed(adl_size, adl_index_delta)
    )
    k = cash + m.sum_cost + new_cost - held_cost - vdiv(skew * m.price, IWAD)
    f = m.max_vault_exposure
    q = 0
    need = exposure - div_floor(f * k, IWAD)
    if need > 0:
        q = mul_div(need, WAD, m.price, True)
    need = exposure - div_floor(f * cash, IWAD)
    if need > 0:
        unit = div_ceil(adl_size * m.price - adl_cost * IWAD, abs(adl_size))
        slope = m.price - div_ceil(f * unit, IWAD)
        q = most if slope <= 0 else max(q, mul_div(need, WAD, slope, True))
    q = min(q, most)
    return q + q * PAIRED_BUFFER_BPS // BPS + 1
