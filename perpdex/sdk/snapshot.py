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

        `protocol_or_contracts`: a `perpdex.deploy.Protocol`, a `PerpdexClient` (its
        transport reads: the lite one in two JSON-RPC batches), anything with a
        `.clearinghouse` (and optionally `.oracle`) attribute, or the Clearinghouse
        contract itself. `block_id`: a block number, "latest" / None (the head, pinned to
        its number so every read sees the same block), or "pending".
        """
        from perpdex.sdk.transport import ApeTransport, Transport

        t: Transport = getattr(protocol_or_contracts, "transport", None) or ApeTransport()
        ch = getattr(protocol_or_contracts, "clearinghouse", protocol_or_contracts)
        oracle = oracle or getattr(protocol_or_contracts, "oracle", None)
        if oracle is None:
            oracle = t.at("OracleRouter", str(ch.ORACLE()))

        tag = "latest" if block_id is None else block_id
        number_or_none, timestamp = t.block(tag)
        number = number_or_none if number_or_none is not None else -1
        # "pending" stays a tag; anything else is pinned to its number
        bid: int | str = tag if tag == "pending" or number_or_none is None else number

        def read(calls: list[tuple[Any, tuple[Any, ...]]]) -> list[Any]:
            return t.calls(calls, bid)

        # round 1: what says which collaterals, positions and markets to read
        first = [
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
            first.append((ch.pending_fees, ()))
        got = _raise_reverts(read(first))
        header, market_count, collateral_count = int(got[0]), int(got[1]), int(got[2])
        book_address, sp = str(got[3]), got[4]
        pool_cash, paused, loss_cap = int(got[5]), bool(got[6]), int(got[7])
        pending_fees = int(got[8]) if len(got) > 8 else 0

        # round 2: per collateral, position and market
        n_col = min(collateral_count, MAX_COLLATERALS)
        bitmap = positions_bitmap(header)
        held = [m for m in range(MAX_MARKETS) if (bitmap >> m) & 1]
        second: list[tuple[Any, tuple[Any, ...]]] = []
        for i in range(n_col):
            second += [(ch.collateral_token, (i,)), (ch.balance_of, (account, i))]
            if i:
                second += [(ch.collateral_market, (i,)), (ch.collateral_haircut, (i,))]
        second += [(ch.position, (account, m)) for m in held]
        for m in range(market_count):
            second += [(ch.mark, (m,)), (ch.open_interest, (m,)), (ch.market_params, (m,))]
            second += [(ch.pool_sums, (m,)), (oracle.latest, (m,))]
        rest = iter(read(second))

        def take() -> Any:
            value = next(rest)
            if isinstance(value, BaseException):
                raise value
            return value

        collaterals: dict[int, CollateralInfo] = {}
        balances: dict[int, int] = {}
        for i in range(n_col):
            token, balances[i] = str(take()), int(take())
            if i == 0:
                collaterals[i] = CollateralInfo(index=0, token=token, market=0, haircut=0)
            else:
                market, haircut = int(take()), int(take())
                collaterals[i] = CollateralInfo(i, token, market, haircut)

        positions: dict[int, Position] = {}
        for m in held:
            size, cost, snap = take()
            positions[m] = Position(int(size), int(cost), int(snap))

        markets: list[MarketState] = []
        for m in range(market_count):
            price, ts, index, rate = take()
            long_oi, short_oi = take()
            p = take()
            sum_cost = int(take()[0])
            latest = next(rest)  # the router reverts when no source is valid
            oracle_price: int | None = None
            oracle_flags: int | None = None
            if not isinstance(latest, BaseException):
                oracle_price, oracle_flags = int(latest[0]), int(latest[1])
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
                    pool_sum_cost=sum_cost,
                )
            )

        book: Book | None = None
        decoded: RiskBook | None = None
        if int(book_address, 16) != 0:
            book = Book.from_code(t.code(book_address, bid))
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
            pool_cash=pool_cash,
            pending_fees=pending_fees,
            paused=paused,
            loss_cap=loss_cap,
        )


def _raise_reverts(values: list[Any]) -> list[Any]:
    for v in values:
        if isinstance(v, BaseException):
            raise v
    return values
