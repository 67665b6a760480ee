"""Mirror of contracts/modules/vault_limits.vy: the PnL cap and auto-deleveraging (ADL),
and the vault's exposure caps measured against pool equity.

Same integer arithmetic as the contract (Vyper's truncating `//` on signed values), so a
keeper can tell which positions `auto_deleverage` accepts and by how much it closes them
before sending anything (perpdex/keepers/adl.py; tests/security/test_vault_limits.py
checks the figures against the chain's events), and how much of its target
`close_with_adl` closes once a reduce is refused by the cap (`paired_amount`).

`exposure_limit` is the one exposure rule every path measures with (contracts
state._exposure_limit): trader fills (`math.simulate_trade`), LP exits (`exit_allowed`,
`max_exit`: what `perpdex lp status` reports) and auto-deleveraging (`adl_amount`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
# treasury.LP_EXIT_HEADROOM_BPS: LP exits may take exposure to 1.5x the cap
LP_EXIT_HEADROOM_BPS = 15_000


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


#: the Clearinghouse views one PoolMarket is read from, in `pool_market`'s order
POOL_MARKET_VIEWS = ("open_interest", "pool_sums", "mark", "market_params")


def pool_market(oi: Any, sums: Any, mark: Any, params: Any) -> PoolMarket:
    """A PoolMarket from the answers of POOL_MARKET_VIEWS for one market."""
    return PoolMarket(
        long_oi=int(oi[0]),
        short_oi=int(oi[1]),
        sum_cost=int(sums[0]),
        sum_funding=int(sums[1]),
        price=int(mark[0]),
        index=int(mark[2]),
        # a struct (ape, the lite client) or the raw tuple (a batched call)
        max_vault_exposure=int(
            params.max_vault_exposure if hasattr(params, "max_vault_exposure") else params[8]
        ),
    )


def fees_to_vault(pending: int, insurance_bps: int, protocol_bps: int) -> int:
    """The vault's share of unswept fees (treasury._sweep_fees): views.pool_cash includes it,
    the contract's raw cash word does not."""
    return pending - pending * insurance_bps // BPS - pending * protocol_bps // BPS


def traders_price_pnl(m: PoolMarket) -> int:
    """Traders' net unrealised PnL in the market at its price, funding left out."""
    return vdiv(m.skew * m.price, IWAD) - m.sum_cost


def trader_pnl(m: PoolMarket) -> int:
    """Traders' net unrealised PnL in the market net of the funding they owe."""
    owed = div_floor(m.skew * m.index, PICO_PER_USD) - m.sum_funding
    return traders_price_pnl(m) - owed


def pool_equity(cash: int, markets: list[PoolMarket], provision: int, insurance: int) -> int:
    """The contract's conservative pool equity (state._pool_equity): raw cash, every
    market's claim, minus the provision insurance does not cover (seized collateral and
    unswept fees left out)."""
    return cash - sum(trader_pnl(m) for m in markets) - uncovered_provision(provision, insurance)


def uncovered_provision(provision: int, insurance: int) -> int:
    """The bad-debt provision insurance does not cover (0 when it does)."""
    return max(provision - insurance, 0)


def exposure_cap(m: PoolMarket, base: int) -> int:
    """The market's cap against `base` (pool equity or its floor), 0 when not positive."""
    return base * m.max_vault_exposure // WAD if base > 0 else 0


def exposure(m: PoolMarket, skew: int | None = None, price: int | None = None) -> int:
    """The vault's exposure |skew| x price (USD WAD, rounded down), at the market's skew
    and price unless given."""
    skew = m.skew if skew is None else skew
    return abs(skew) * (m.price if price is None else price) // WAD


def exposure_limit(
    m: PoolMarket, cash: int, skew: int | None = None, price: int | None = None
) -> int:
    """state._exposure_limit, THE exposure rule: max_vault_exposure x (the pool's raw cash
    `cash` + its unrealised loss in the market: sum of cost bases - skew x price, when
    negative), 0 when that is not positive; at the market's skew and price unless given.
    A trader's fill that grows |skew| must leave `exposure` at or below it (at the fill's
    skew, cost sum and cash); an LP exit must leave every market within 1.5x it."""
    skew = m.skew if skew is None else skew
    price = m.price if price is None else price
    base = cash + min(m.sum_cost - vdiv(skew * price, IWAD), 0)
    return base * m.max_vault_exposure // WAD if base > 0 else 0


def exit_allowed(
    cash_after: int, markets: list[PoolMarket], *, provision: int, insurance: int
) -> bool:
    """treasury.vault_withdraw's cap check: with `cash_after` (the pool's cash once fees
    are swept, less the exit) every market with a skew keeps its exposure within
    LP_EXIT_HEADROOM_BPS of both `exposure_limit` and its cap against pool equity
    (`pool_equity` with the bad-debt `provision` and the `insurance` fund after the
    sweep: views.insurance_fund), and the cash is not negative."""
    if cash_after < 0:
        return False
    equity = pool_equity(cash_after, markets, provision, insurance)
    return all(
        exposure(m) * BPS
        <= min(exposure_limit(m, cash_after), exposure_cap(m, equity)) * LP_EXIT_HEADROOM_BPS
        for m in markets
        if m.skew != 0
    )


def max_exit(
    cash: int,
    markets: list[PoolMarket],
    scale: int = 1,
    *,
    provision: int,
    insurance: int,
) -> int:
    """The most whole units of `scale` (USD WAD per token unit) `vault_withdraw` can pay
    out of `cash` (views.pool_cash: with the vault's share of unswept fees, which the
    withdrawal sweeps first; `provision` and `insurance`: views.bad_debt_provision and
    views.insurance_fund, the latter with its share of the fees the sweep pays) now: 0
    when the caps hold back everything."""
    kw = {"provision": provision, "insurance": insurance}
    if not exit_allowed(cash, markets, **kw):
        return 0
    lo, hi = 0, max(cash, 0) // scale  # lo passes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if exit_allowed(cash - mid * scale, markets, **kw):
            lo = mid
        else:
            hi = mid - 1
    return lo


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
    *,
    cash: int,
) -> tuple[int, int]:
    """(reason, base amount before the minimum-position rule) `auto_deleverage` closes
    of a position (`size`, `cost`, funding index - its snapshot) at `m.price`, with pool
    equity `equity` (`pool_equity` of the unswept state: the contract's insurance word,
    views.insurance_fund less its share of pending fees) and the pool's raw cash word
    `cash` (views.pool_cash less the vault's share of unswept fees); raises Revert with
    the contract's reason when it refuses."""
    if size == 0:
        raise Revert("clearinghouse: no position to deleverage")
    pnl = trader_pnl(m)
    capped = pnl_capped(pnl, equity, max_pnl_factor)
    price_pnl = vdiv(size * m.price, IWAD) - cost
    owed = funding_owed(size, index_delta)
    if capped and price_pnl > owed and price_pnl > 0:
        return REASON_PNL, pnl_close_amount(size, price_pnl, owed, pnl, equity, target_factor)
    if exposure(m) <= min(exposure_cap(m, equity), exposure_limit(m, cash)):
        if capped:
            raise Revert("clearinghouse: adl closes profitable positions only")
        raise Revert("clearinghouse: vault within its limits")
    if (size > 0) != (m.skew > 0):
        raise Revert("clearinghouse: adl closes the skew's side only")
    return REASON_EXPOSURE, exposure_amount(m, cash, equity, size, cost, owed)


def exposure_amount(m: PoolMarket, cash: int, equity: int, size: int, cost: int, owed: int) -> int:
    """vault_limits._exposure_amount: base amount of a position on the skew's side
    (`size`, `cost`, funding `owed`, settled whole at the fill: + owes, - earned) to
    close at `m.price` so that the exposure comes back within the cap against `equity`
    (which such a fill leaves unchanged) and `exposure_limit` at raw cash `cash`
    (min(K, cash) x f, K = cash + sum of cost bases - skew x price: the fill leaves K
    unchanged but for the funding, and takes from cash what it realises, q x the
    position's PnL per unit rounded up). Rounded up, +1 wei on the rule's terms; before
    the minimum-position rule (`deleverage_delta`)."""
    e = exposure(m)
    cap = exposure_cap(m, equity)
    q = mul_div(e - cap, WAD, m.price, True) if e > cap else 0
    f = m.max_vault_exposure
    cash += owed
    k = cash + m.sum_cost - vdiv(m.skew * m.price, IWAD)
    need = e - div_floor(f * k, IWAD)
    if need > 0:
        q = max(q, mul_div(need, WAD, m.price, True) + 1)
    need = e - div_floor(f * cash, IWAD)
    if need > 0:
        unit = div_ceil(size * m.price - cost * IWAD, abs(size))
        slope = m.price - div_ceil(f * unit, IWAD)
        if slope <= 0:
            return abs(size)
        q = max(q, mul_div(need, WAD, slope, True) + 1)
    return q


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
