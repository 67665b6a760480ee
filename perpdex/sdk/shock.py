"""A custom price stress: an account revalued at shocked oracle prices (`perpdex portfolio
--shock BTC=-30%,ETH=-25%`, `PerpdexClient.stress`).

Read this first if you touch the stress:
- `parse_shocks` turns the `SYMBOL=PCT%` list into {market id: move as a fraction}; every
  refusal is one line that repeats the expected format (`SHOCK_FORMAT`).
- `stress(snap, moves)` is pure: each shocked market's cached mark in the `Snapshot` is
  replaced by its oracle price moved by the shock (the cached mark when the oracle has no
  quorum price), every other market keeps its cached mark, and the SDK's mirror of the
  engine (`perpdex.sdk.math.scan`, the margin scan a liquidation checks) values the account
  before and after. Funding indices are left alone (the shock is instantaneous), and a
  secondary collateral token priced by a shocked market is revalued with it.
- Liquidatable after the shock means equity < maintenance, the Clearinghouse's own test
  (liquidation_hooks._liquidatable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING

from perpdex.constants import FLAG_DEGRADED
from perpdex.errors import PerpdexError
from perpdex.sdk import math as pm
from perpdex.units import from_wad

if TYPE_CHECKING:
    from perpdex.sdk.snapshot import Snapshot

__all__ = [
    "MAX_MOVE",
    "SHOCK_FORMAT",
    "ShockedLeg",
    "ShockedPrice",
    "StressResult",
    "parse_shocks",
    "shocked_price",
    "stress",
]

SHOCK_FORMAT = (
    "write --shock as SYMBOL=PCT% pairs separated by commas, e.g. BTC=-30%,ETH=-25% "
    "(one move per market, above -100%, at most +1000%)"
)
#: Largest upward move accepted (a fraction): +1000%.
MAX_MOVE = Decimal(10)


def _refuse(problem: str) -> PerpdexError:
    return PerpdexError(f"{problem}; {SHOCK_FORMAT}")


def parse_shocks(text: str, symbols: Sequence[str]) -> dict[int, Decimal]:
    """`BTC=-30%,ETH=+12.5%` -> {market id: move as a fraction}, markets by symbol in any
    case (`btc`, `BTC-PERP`). Refuses an empty list, a missing `=` or `%`, a number that
    is not one, a move at or below -100% or above +1000%, an unlisted symbol and a market
    given twice."""
    listed = [s.upper() for s in symbols]
    items = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in items):
        raise _refuse(f"--shock {text!r} has an empty entry")
    out: dict[int, Decimal] = {}
    for item in items:
        if item.count("=") != 1:
            raise _refuse(f"{item!r} is not SYMBOL=PCT%")
        name, _, pct = (x.strip() for x in item.partition("="))
        symbol = name.upper().removesuffix("-PERP").removesuffix("-USD")
        if symbol not in listed:
            raise _refuse(f"{name!r} is not a listed market (listed: {', '.join(symbols)})")
        market = listed.index(symbol)
        if market in out:
            raise _refuse(f"{symbol} is shocked twice")
        if not pct.endswith("%"):
            raise _refuse(f"{item!r} lacks the % sign")
        try:
            value = Decimal(pct[:-1].strip())
        except InvalidOperation:
            raise _refuse(f"{pct!r} is not a percentage") from None
        if not value.is_finite():
            raise _refuse(f"{pct!r} is not a percentage")
        move = value.scaleb(-2)
        if move <= -1:
            raise _refuse(f"{symbol} cannot fall {pct.lstrip('-')} (a price stays above zero)")
        if move > MAX_MOVE:
            raise _refuse(f"{symbol} {pct} is beyond +1000%")
        out[market] = move
    return out


def shocked_price(price: int, move: Decimal) -> int:
    """`price` (WAD) moved by `move` (a fraction), rounded down to the wei."""
    return int(price * (1 + Fraction(move)))


@dataclass(frozen=True)
class ShockedPrice:
    """One shocked market: the price the shock starts from and where it lands (dollars)."""

    market: int
    symbol: str
    move: Decimal  # fraction: -0.3 for -30%
    base: Decimal  # the oracle price, or the cached mark when `source` is "mark"
    shocked: Decimal
    source: str  # "oracle", or "mark" when the oracle has no quorum price now


@dataclass(frozen=True)
class ShockedLeg:
    """One position of the account before and after the shock (dollars)."""

    market: int
    symbol: str
    size: Decimal
    price_before: Decimal  # the cached mark
    price_after: Decimal
    pnl_change: Decimal  # change of the position's value (what equity gains or loses)


@dataclass(frozen=True)
class StressResult:
    """An account's margin at the cached marks and at the shocked prices (dollars)."""

    account: int
    block_number: int
    prices: tuple[ShockedPrice, ...]
    legs: tuple[ShockedLeg, ...]
    equity_before: Decimal
    initial_before: Decimal
    maintenance_before: Decimal
    equity_after: Decimal
    initial_after: Decimal
    maintenance_after: Decimal

    @property
    def equity_change(self) -> Decimal:
        return self.equity_after - self.equity_before

    @property
    def health_before(self) -> Decimal | None:
        """Equity over maintenance now; None without a requirement."""
        return _ratio(self.equity_before, self.maintenance_before)

    @property
    def health_after(self) -> Decimal | None:
        return _ratio(self.equity_after, self.maintenance_after)

    @property
    def liquidatable_before(self) -> bool:
        return self.equity_before < self.maintenance_before

    @property
    def liquidatable(self) -> bool:
        """Whether the shocked account could be liquidated: equity < maintenance."""
        return self.equity_after < self.maintenance_after


def _ratio(equity: Decimal, maintenance: Decimal) -> Decimal | None:
    return None if maintenance == 0 else equity / maintenance


def stress(
    snap: Snapshot, moves: Mapping[int, Decimal], symbols: Sequence[str] = ()
) -> StressResult:
    """The account of `snap` before and after moving each market of `moves` (id -> move
    as a fraction) from its oracle price; see the module docstring. `symbols` names the
    markets (by id) in the result."""

    def name(m: int) -> str:
        return symbols[m] if m < len(symbols) else str(m)

    markets = list(snap.markets)
    prices: list[ShockedPrice] = []
    for m, move in sorted(moves.items()):
        ms = snap.market(m)
        quorum = ms.oracle_price is not None and not (ms.oracle_flags or 0) & FLAG_DEGRADED
        base = ms.oracle_price if quorum and ms.oracle_price is not None else ms.mark.price
        new = shocked_price(base, move)
        markets[m] = replace(ms, mark=replace(ms.mark, price=new))
        prices.append(
            ShockedPrice(
                m, name(m), move, from_wad(base), from_wad(new), "oracle" if quorum else "mark"
            )
        )
    after_snap = replace(snap, markets=tuple(markets))
    before = pm.scan(snap)
    after = pm.scan(after_snap)
    legs = []
    for m, pos in sorted(snap.positions.items()):
        if pos.size == 0:
            continue
        p0, p1 = snap.mark(m).price, after_snap.mark(m).price
        change = pm.value_pnl(pos.size, pos.cost, p1) - pm.value_pnl(pos.size, pos.cost, p0)
        legs.append(
            ShockedLeg(m, name(m), from_wad(pos.size), from_wad(p0), from_wad(p1), from_wad(change))
        )
    return StressResult(
        account=snap.account,
        block_number=snap.block_number,
        prices=tuple(prices),
        legs=tuple(legs),
        equity_before=from_wad(before.equity),
        initial_before=from_wad(before.initial),
        maintenance_before=from_wad(before.maintenance),
        equity_after=from_wad(after.equity),
        initial_after=from_wad(after.initial),
        maintenance_after=from_wad(after.maintenance),
    )
