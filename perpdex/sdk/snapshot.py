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

The reads go out as two JSON-RPC batches (`perpdex.keepers.scan.batch_call`): the
header and the counts, then everything they size: ~13-16 ms a load against ~290-360 ms
for ~27 ape calls one by one (medians of 15 loads, 2 cores, other jobs running).

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

        # two JSON-RPC batches pinned to the block (perpdex.keepers.scan.batch_call): what
        # sizes the rest, then the rest
        from perpdex.keepers.scan import batch_call

        fixed: list[tuple[Any, tuple[Any, ...]]] = [
            (ch.account_header, (account,)),
            (ch.market_count, ()),
            (ch.collateral_count, ()),
            (ch.risk_book, ()),
            (ch.system_params, ()),
            (ch.pool_cash, ()),
            (ch.paused, ()),
            (ch.loss_cap, (account,)),
        ]
        if hasattr(ch, "pending_fees"):
            fixed.append((ch.pending_fees, ()))
        first = batch_call(fixed, block=bid)
        header, market_count, collateral_count = (int(x) for x in first[:3])
        book_address, sp, pool_cash, paused, loss_cap = first[3:8]
        pending_fees = int(first[8]) if len(first) > 8 else 0

        n_collaterals = min(collateral_count, MAX_COLLATERALS)
        bitmap = positions_bitmap(header)
        held = [m for m in range(MAX_MARKETS) if (bitmap >> m) & 1]
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for i in range(n_collaterals):
            calls.append((ch.collateral_token, (i,)))
            if i:
                calls += [(ch.collateral_market, (i,)), (ch.collateral_haircut, (i,))]
            calls.append((ch.balance_of, (account, i)))
        calls += [(ch.position, (account, m)) for m in held]
        for m in range(market_count):
            calls += [(ch.mark, (m,)), (ch.open_interest, (m,)), (ch.market_params, (m,))]
        # the router reverts when no source is valid: no oracle price at that block
        latest_calls = [(oracle.latest, (m,)) for m in range(market_count)]
        second = batch_call(calls + latest_calls, block=bid, strict=False)
        latest = second[len(calls) :]
        for (fn, args), got in zip(calls, second, strict=False):
            if got is None:  # not the oracle's: let ape raise the real error
                fn(*args, block_id=bid)
        rest = iter(second[: len(calls)])

        collaterals: dict[int, CollateralInfo] = {}
        balances: dict[int, int] = {}
        for i in range(n_collaterals):
            token = str(next(rest))
            if i == 0:
                collaterals[i] = CollateralInfo(index=0, token=token, market=0, haircut=0)
            else:
                market, haircut = int(next(rest)), int(next(rest))
                collaterals[i] = CollateralInfo(
                    index=i, token=token, market=market, haircut=haircut
                )
            balances[i] = int(next(rest))

        positions: dict[int, Position] = {}
        for m in held:
            size, cost, snap = next(rest)
            positions[m] = Position(int(size), int(cost), int(snap))

        markets: list[MarketState] = []
        for m in range(market_count):
            price, ts, index, rate = next(rest)
            long_oi, short_oi = next(rest)
            p = next(rest)
            oracle_price: int | None = None
            oracle_flags: int | None = None
            if latest[m] is not None:
                oracle_price, oracle_flags = (int(x) for x in latest[m])
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

        book_address = str(book_address)
        book: Book | None = None
        decoded: RiskBook | None = None
        if int(book_address, 16) != 0:
            code = bytes(chain.provider.get_code(book_address, block_id=bid))
            book = Book.from_code(code)
            decoded = decode(book.data)

        system = System(
            book=int(str(sp.book), 16),
            n_scenarios=int(sp.n_scenarios),
            floor_bps=int(sp.floor_bps),
            mmr_bps=int(sp.mmr_bps),
            insurance_bps=int(sp.insurance_bps),
            protocol_bps=int(sp.protocol_bps),
            max_mark_age=int(sp.max_mark_age),
        )
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
            pool_cash=int(pool_cash),
            pending_fees=pending_fees,
            paused=bool(paused),
            loss_cap=int(loss_cap),
        )


def _at(name: str, address: str) -> Any:
    from ape import Contract, project

    return Contract(address, contract_type=getattr(project, name).contract_type)
