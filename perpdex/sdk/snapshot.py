"""A typed snapshot of the raw chain state perpdex's margin math reads, at one block.

`Snapshot.load(protocol, account, block_id)` reads, through the Clearinghouse's views and
every call pinned to the same block:

* the account header (flags, positions and collateral bitmaps), its balance of every
  listed collateral token, and each secondary token's price market and haircut;
* the account's positions (size, cost basis, 64-bit funding snapshot);
* for every market: the cached mark (price, last touch, funding index and rate), open
  interest, unpacked parameters and the oracle's latest median (what a quote prices at;
  `None` where the oracle refuses to price the market at that block);
* the risk book (the code at `risk_book()`, leading STOP byte stripped), decoded with
  `perpdex.sdk.riskbook.decode` and kept raw for the word-exact math;
* the system word (risk-book address and header fields, fee split, max mark age), the
  pool's cash and the global pause flag (what a trade's caps and gates read), and
  `block.timestamp` of the block read.

`perpdex.sdk.math` computes every figure from it (margin scan, account summary with
liquidation prices, quotes, a whole trade) exactly as the contracts do, so
`math.scan(snap)` equals `ch.account_margin(account, block_id=snap.block_number)` to the
wei. A "pending" snapshot carries the pending block's timestamp (the next block's, as set
by `chain.pending_timestamp`), so its quotes accrue funding to it.

The dataclasses here hold no chain handles: a snapshot can be built by hand (tests,
what-if analysis) with `Snapshot(...)` and `dataclasses.replace`.
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
from perpdex.sdk import riskbook
from perpdex.sdk.math import (
    Book,
    Mark,
    MarketParams,
    Position,
    Revert,
    System,
    collateral_bitmap,
    positions_bitmap,
)

__all__ = ["CollateralInfo", "MarketState", "Snapshot"]


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

    @property
    def skew(self) -> int:
        """Long minus short open interest of trader positions (base WAD)."""
        return self.long_oi - self.short_oi


@dataclass(frozen=True)
class Snapshot:
    """Raw chain state for one account at one block (see the module docstring)."""

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
    risk_book: riskbook.RiskBook | None = None
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
        in the order a margin check re-reads them (engine._refresh_stale)."""
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

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        protocol_or_contracts: Any,
        account: int,
        block_id: int | str | None = None,
        *,
        oracle: Any = None,
    ) -> Snapshot:
        """Read the snapshot of `account` at one block.

        `protocol_or_contracts`: a `perpdex.deploy.Protocol`, a `PerpdexClient`, anything
        with a `.clearinghouse` (and optionally `.oracle`) attribute, or the Clearinghouse
        contract itself. `block_id`: a block number, "latest" / None (the head, pinned to
        its number so every read sees the same block), or "pending".
        """
        from ape import chain

        ch = getattr(protocol_or_contracts, "clearinghouse", protocol_or_contracts)
        oracle = oracle or getattr(protocol_or_contracts, "oracle", None)
        if oracle is None:
            oracle = _at("OracleRouter", str(ch.ORACLE()))

        if block_id is None or block_id == "latest":
            blk = chain.provider.get_block("latest")
            bid: int | str = int(blk.number)
        elif block_id == "pending":
            blk = chain.provider.get_block("pending")
            bid = "pending"
        else:
            blk = chain.provider.get_block(block_id)
            bid = int(blk.number) if blk.number is not None else block_id
        timestamp = int(blk.timestamp)
        number = int(blk.number) if blk.number is not None else -1

        def call(fn: Any, *args: Any) -> Any:
            return fn(*args, block_id=bid)

        header = int(call(ch.account_header, account))
        market_count = int(call(ch.market_count))
        collateral_count = int(call(ch.collateral_count))

        collaterals: dict[int, CollateralInfo] = {}
        balances: dict[int, int] = {}
        for i in range(min(collateral_count, MAX_COLLATERALS)):
            token = str(call(ch.collateral_token, i))
            if i == 0:
                collaterals[i] = CollateralInfo(index=0, token=token, market=0, haircut=0)
            else:
                collaterals[i] = CollateralInfo(
                    index=i,
                    token=token,
                    market=int(call(ch.collateral_market, i)),
                    haircut=int(call(ch.collateral_haircut, i)),
                )
            balances[i] = int(call(ch.balance_of, account, i))

        positions: dict[int, Position] = {}
        bitmap = positions_bitmap(header)
        for m in range(MAX_MARKETS):
            if (bitmap >> m) & 1:
                size, cost, snap = call(ch.position, account, m)
                positions[m] = Position(int(size), int(cost), int(snap))

        markets: list[MarketState] = []
        for m in range(market_count):
            price, ts, index, rate = call(ch.mark, m)
            long_oi, short_oi = call(ch.open_interest, m)
            p = call(ch.market_params, m)
            try:
                o_price, o_flags = call(oracle.latest, m)
                oracle_price: int | None = int(o_price)
                oracle_flags: int | None = int(o_flags)
            except Exception:  # the router reverts when no source is valid
                oracle_price = oracle_flags = None
            markets.append(
                MarketState(
                    market=m,
                    params=MarketParams(
                        skew_scale=int(p.skew_scale),
                        maker_fee=int(p.maker_fee),
                        taker_fee=int(p.taker_fee),
                        max_funding_velocity=int(p.max_funding_velocity),
                        max_funding_rate=int(p.max_funding_rate),
                        listed=bool(p.listed),
                        paused=bool(p.paused),
                        max_oi=int(p.max_oi),
                        max_vault_exposure=int(p.max_vault_exposure),
                    ),
                    mark=Mark(int(price), int(ts), int(index), int(rate)),
                    long_oi=int(long_oi),
                    short_oi=int(short_oi),
                    oracle_price=oracle_price,
                    oracle_flags=oracle_flags,
                )
            )

        book_address = str(call(ch.risk_book))
        book: Book | None = None
        decoded: riskbook.RiskBook | None = None
        if int(book_address, 16) != 0:
            code = bytes(chain.provider.get_code(book_address, block_id=bid))
            book = Book.from_code(code)
            decoded = riskbook.decode(book.data)

        sp = call(ch.system_params)
        system = System(
            book=int(str(sp.book), 16),
            n_scenarios=int(sp.n_scenarios),
            floor_bps=int(sp.floor_bps),
            mmr_bps=int(sp.mmr_bps),
            insurance_bps=int(sp.insurance_bps),
            protocol_bps=int(sp.protocol_bps),
            max_mark_age=int(sp.max_mark_age),
        )
        pool_cash = int(call(ch.pool_cash))
        pending_fees = int(call(ch.pending_fees)) if hasattr(ch, "pending_fees") else 0
        paused = bool(call(ch.paused))
        loss_cap = int(call(ch.loss_cap, account))
        return cls(
            account=int(account),
            block_number=number,
            timestamp=timestamp,
            header=header,
            market_count=market_count,
            balances=balances,
            collaterals=collaterals,
            positions=positions,
            markets=tuple(markets),
            book=book,
            risk_book=decoded,
            book_address=book_address,
            system=system,
            pool_cash=pool_cash,
            pending_fees=pending_fees,
            paused=paused,
            loss_cap=loss_cap,
        )


def _at(name: str, address: str) -> Any:
    from ape import Contract, project

    return Contract(address, contract_type=getattr(project, name).contract_type)
