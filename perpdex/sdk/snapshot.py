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

The dataclasses (`Snapshot`, `MarketState`, `CollateralInfo`) live in the mirror,
perpdex/sdk/math/views.py, and hold no chain handles: a snapshot can be built by hand
(tests, what-if analysis) with `Snapshot(...)` and `dataclasses.replace`. This module adds
only the chain reading (`Snapshot.load`), so the mirror never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpdex.constants import MAX_COLLATERALS, MAX_MARKETS
from perpdex.sdk.math import views
from perpdex.sdk.math.margin import Book, RiskBook, decode
from perpdex.sdk.math.packing import Mark, MarketParams, Position, System, positions_bitmap
from perpdex.sdk.math.views import CollateralInfo, MarketState

__all__ = ["CollateralInfo", "MarketState", "Snapshot"]


@dataclass(frozen=True)
class Snapshot(views.Snapshot):
    """`perpdex.sdk.math.views.Snapshot` with `load`, the chain reading (same fields)."""

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
        decoded: RiskBook | None = None
        if int(book_address, 16) != 0:
            code = bytes(chain.provider.get_code(book_address, block_id=bid))
            book = Book.from_code(code)
            decoded = decode(book.data)

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

    from perpdex.sdk.handles import contract_type

    return Contract(address, contract_type=contract_type(project, name))
