"""Mirror of contracts/modules/views.vy: the raw chain state the Clearinghouse's views
return for one account at one block (`Snapshot`), which the engine, account and lens
mirrors read. No chain handles here: `perpdex.sdk.snapshot.Snapshot.load` reads one from a
chain; tests and what-if analysis build one by hand and change it with `dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    MAX_COLLATERALS,
    MAX_MARKETS,
)
from perpdex.sdk.math.margin import Book, RiskBook
from perpdex.sdk.math.packing import (
    Mark,
    MarketParams,
    Position,
    System,
    collateral_bitmap,
    positions_bitmap,
)
from perpdex.sdk.math.vyper import Revert


@dataclass(frozen=True)
class CollateralInfo:
    """A listed collateral token (index >= 1 is secondary): the market whose mark prices
    it and its haircut (WAD fraction). Index 0, the settlement token, has neither."""

    index: int
    token: str
    market: int
    haircut: int


@dataclass(frozen=True)
class MarketState:
    """One market at the snapshot's block."""

    market: int
    params: MarketParams
    mark: Mark
    long_oi: int
    short_oi: int
    oracle_price: int | None  # OracleRouter.latest quorum price (WAD); with FLAG_DEGRADED
    # in oracle_flags only the last quorum price, which nothing may use; None: no answer
    oracle_flags: int | None
    # pool_sums(m)[0]: sum of the trader positions' cost bases (USD WAD), which the vault
    # exposure rule reads (vault_limits.exposure_limit); None: not read
    pool_sum_cost: int | None = None

    @property
    def skew(self) -> int:
        """Long minus short open interest of trader positions (base WAD)."""
        return self.long_oi - self.short_oi


@dataclass(frozen=True)
class Snapshot:
    """Raw chain state for one account at one block (fields: perpdex/sdk/snapshot.py)."""

    account: int
    block_number: int
    timestamp: int  # block.timestamp of the block read
    header: int
    market_count: int
    balances: dict[int, int]  # collateral index -> balance (USD WAD scale)
    collaterals: dict[int, CollateralInfo]  # every listed token, index 0 included
    positions: dict[int, Position]  # market -> position, for the positions bitmap
    markets: tuple[MarketState, ...]  # by market id
    book: Book | None  # None: no risk book published
    risk_book: RiskBook | None = None
    book_address: str | None = None
    system: System = field(default_factory=lambda: System(0, 0, 0, 0, 0, 0, 0))
    pool_cash: int | None = None  # views.pool_cash: with its share of pending fees
    pending_fees: int = 0  # fees accrued since the last sweep (views.pending_fees)
    paused: bool = False  # the whole clearinghouse paused (no new risk)
    loss_cap: int = 0  # state.loss_cap: the account's equity floor (USD WAD); 0: none
    extra: dict[str, Any] = field(default_factory=dict)

    # --- accessors the math reads through ------------------------------------------------

    @property
    def exists(self) -> bool:
        return self.header & ACCOUNT_EXISTS != 0

    @property
    def portfolio(self) -> bool:
        return self.header & ACCOUNT_PORTFOLIO != 0

    @property
    def in_liquidation(self) -> bool:
        return self.header & ACCOUNT_IN_LIQUIDATION != 0

    @property
    def max_mark_age(self) -> int:
        return self.system.max_mark_age

    def balance(self, index: int) -> int:
        """`balance_of(account, index)` (0 for a token the snapshot did not read)."""
        return self.balances.get(index, 0)

    def collateral(self, index: int) -> CollateralInfo:
        try:
            return self.collaterals[index]
        except KeyError:
            raise Revert(f"snapshot holds no collateral token {index}") from None

    def position(self, market: int) -> Position:
        """`position(account, market)`; a market outside the positions bitmap is empty."""
        return self.positions.get(market, Position())

    def market(self, market: int) -> MarketState:
        if not 0 <= market < len(self.markets):
            raise Revert(f"snapshot holds no market {market}")
        return self.markets[market]

    def mark(self, market: int) -> Mark:
        return self.market(market).mark

    def params(self, market: int) -> MarketParams:
        return self.market(market).params

    def open_interest(self, market: int) -> tuple[int, int]:
        ms = self.market(market)
        return ms.long_oi, ms.short_oi

    def oracle_price(self, market: int) -> int:
        price = self.market(market).oracle_price
        if price is None:
            raise Revert(f"oracle: market {market} had no valid price at this block")
        return price

    def require_book(self) -> Book:
        if self.book is None:
            raise Revert("slice out of bounds")  # the engine slices the empty address's code
        return self.book

    def stale_markets(self, now: int | None = None) -> list[int]:
        """Markets of the account (positions, then secondary collateral prices) whose
        cached mark is older than `max_mark_age` at `now` (default: the block's timestamp),
        in the order a margin check re-reads them (marks._refresh_stale)."""
        now = self.timestamp if now is None else now
        age = self.system.max_mark_age
        out = [
            m
            for m in range(MAX_MARKETS)
            if (positions_bitmap(self.header) >> m) & 1 and self.mark(m).touched_at + age < now
        ]
        cbits = collateral_bitmap(self.header)
        for i in range(1, MAX_COLLATERALS):
            if (cbits >> i) & 1:
                m = self.collateral(i).market
                if m not in out and self.mark(m).touched_at + age < now:
                    out.append(m)
        return out
