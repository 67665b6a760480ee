"""The matching engine: per-market limit order books with price-time priority, pure and
in-memory (no clock, no I/O, no randomness: the caller passes `now`, so a run replays
exactly).

Rules:
- a taker matches the best opposite level first, oldest order first within a level; every
  fill is at the maker's limit price, for min(taker remaining, maker remaining);
- a post-only order that would cross is rejected whole (nothing fills, nothing rests);
- an IOC order's unfilled remainder is cancelled instead of resting;
- reduce-only is passed through: the chain knows the position and enforces it at settlement;
- an expired order never fills: it is rejected on entry and a resting one is dropped when
  met while matching or by `expire(now)`;
- self-trade prevention: a taker that meets a resting order of the same account cancels
  that resting order (it could not settle against itself) and matches on;
- conditional orders (a trigger price) are not matched here (issue 12 item 4);
- one open order per (account, nonce): the chain keeps one replay state per nonce, so a
  second order with a nonce in use is refused (`nonce_in_use`);
- a fill the chain refused is undone (`reopen`): the order it belonged to matches again
  from where it stood, or rests, as if it had just arrived.
Amounts are integers (WAD); sizes inside the engine are unsigned base amounts.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass, field

from perpdex.sdk import orders as o

OPEN = "open"
FILLED = "filled"
CANCELLED = "cancelled"
EXPIRED = "expired"
REJECTED = "rejected"  # the chain refused to settle it (cancelled there, margin, ...)


class Rejected(ValueError):
    """The engine refuses an order; `code` is a stable machine name, the text says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BookOrder:
    """One order the matcher acknowledged, resting or done."""

    digest: str  # 0x hex of the EIP-712 digest (the order's id on chain too)
    order: o.Order
    signature: bytes
    seq: int  # time priority: lower arrived first
    filled: int = 0  # base amount filled so far (unsigned)
    status: str = OPEN

    @property
    def total(self) -> int:
        return abs(self.order.size)

    @property
    def remaining(self) -> int:
        return self.total - self.filled


@dataclass(frozen=True)
class Fill:
    seq: int
    market: int
    maker: str  # digest
    taker: str  # digest
    size: int  # base amount, unsigned
    price: int  # the maker's limit price
    taker_is_buy: bool
    maker_account: int
    taker_account: int


@dataclass
class Outcome:
    """What one submission did: the taker (its final state), the fills, and the resting
    orders it touched (filled, cancelled by self-trade prevention, found expired)."""

    taker: BookOrder
    fills: list[Fill] = field(default_factory=list)
    touched: list[BookOrder] = field(default_factory=list)


class _Side:
    """One side of one market: price -> FIFO of orders, and the sorted prices."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, deque[BookOrder]] = {}
        self.prices: list[int] = []  # ascending

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def add(self, bo: BookOrder) -> None:
        price = bo.order.limit_price
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = deque()
            bisect.insort(self.prices, price)
        level.append(bo)

    def remove(self, bo: BookOrder) -> None:
        price = bo.order.limit_price
        level = self.levels.get(price)
        if level is None:
            return
        try:
            level.remove(bo)
        except ValueError:
            return
        if not level:
            self._drop_level(price)

    def _drop_level(self, price: int) -> None:
        del self.levels[price]
        i = bisect.bisect_left(self.prices, price)
        del self.prices[i]

    def aggregated(self, depth: int) -> list[tuple[int, int, int]]:
        """(price, total remaining, order count), best first."""
        prices = reversed(self.prices) if self.is_bid else iter(self.prices)
        out: list[tuple[int, int, int]] = []
        for p in prices:
            if len(out) >= depth:
                break
            level = self.levels[p]
            out.append((p, sum(b.remaining for b in level), len(level)))
        return out


def nonce_in_use(order: o.Order, holder: str) -> Rejected:
    return Rejected(
        "nonce_in_use",
        f"nonce {order.nonce} of account {order.account:#x} is in use by order {holder} "
        "(open, or filled and not yet settled): the chain keeps one replay state per "
        "(account, nonce), so sign this order with a nonce the account has not used",
    )


class Book:
    def __init__(self, market: int) -> None:
        self.market = market
        self.bids = _Side(is_bid=True)
        self.asks = _Side(is_bid=False)


class Engine:
    def __init__(self, markets: set[int], next_order_seq: int = 1, next_fill_seq: int = 1) -> None:
        self.books = {m: Book(m) for m in markets}
        self.orders: dict[str, BookOrder] = {}  # open orders only
        self.by_account: dict[int, set[str]] = {}
        self.nonces: dict[tuple[int, int], str] = {}  # (account, nonce) -> open order
        self._expiry: list[tuple[int, int, str]] = []  # (expiry, seq, digest) heap
        self.next_order_seq = next_order_seq
        self.next_fill_seq = next_fill_seq

    # ---- entry --------------------------------------------------------------------------

    def check(self, order: o.Order, now: int) -> None:
        """Raises Rejected for an order the engine would refuse on its face."""
        if order.market not in self.books:
            known = ", ".join(str(m) for m in sorted(self.books)) or "none"
            raise Rejected(
                "unknown_market", f"market {order.market} is not traded here (markets: {known})"
            )
        if order.is_conditional:
            raise Rejected(
                "conditional_unsupported",
                "conditional orders (trigger price) are not matched by this matcher; "
                "send a plain limit order (trigger_price 0)",
            )
        if order.expiry <= now:
            raise Rejected("expired", f"order expired at {order.expiry} (now {now}): re-sign it")

    def submit(self, digest: str, order: o.Order, signature: bytes, now: int) -> Outcome:
        """Matches `order` and rests what is left (unless IOC). Raises Rejected (nothing
        changed) for a duplicate, an unknown market, an expired order or a post-only order
        that would cross."""
        self.check(order, now)
        if digest in self.orders:
            raise Rejected("duplicate", f"order {digest} is already on the book")
        held = self.nonces.get((order.account, order.nonce))
        if held is not None:
            raise nonce_in_use(order, held)
        self._check_post_only(order, now)
        taker = BookOrder(digest, order, signature, self.next_order_seq)
        self.next_order_seq += 1
        out = Outcome(taker)
        self._match(taker, out, now)
        return out

    def reopen(self, bo: BookOrder, now: int) -> Outcome:
        """A closed order whose filled amount was lowered (the chain refused one of its
        fills) takes its remainder back to the book: an expired order stays expired, an
        IOC order's remainder is cancelled, a post-only order that would now cross is
        cancelled; otherwise it matches like a new arrival (keeping its seq) and rests
        what is left."""
        assert bo.digest not in self.orders, "reopen is for closed orders"
        out = Outcome(bo)
        bo.status = OPEN
        if bo.order.expiry <= now:
            bo.status = EXPIRED
        elif not bo.remaining:
            bo.status = FILLED
        elif bo.order.flags & o.FLAG_IOC:
            bo.status = CANCELLED
        elif (bo.order.account, bo.order.nonce) in self.nonces:
            bo.status = CANCELLED  # another open order took the nonce meanwhile
        else:
            try:
                self._check_post_only(bo.order, now)
            except Rejected:
                bo.status = CANCELLED
                return out
            self._match(bo, out, now)
        return out

    def _check_post_only(self, order: o.Order, now: int) -> None:
        if not order.flags & o.FLAG_POST_ONLY:
            return
        is_buy = order.is_buy
        book = self.books[order.market]
        best = self._best_live(book.asks if is_buy else book.bids, now)
        if best is not None and (
            best <= order.limit_price if is_buy else best >= order.limit_price
        ):
            raise Rejected(
                "post_only_would_cross",
                f"post-only order would cross the best {'ask' if is_buy else 'bid'} "
                f"{best}: lower the price or drop the post-only flag",
            )

    def _match(self, taker: BookOrder, out: Outcome, now: int) -> None:
        """Matches `taker` against the opposite side, then rests it, fills it or (IOC)
        cancels its remainder."""
        order, digest = taker.order, taker.digest
        is_buy = order.is_buy
        opposite = self.books[order.market].asks if is_buy else self.books[order.market].bids
        limit = order.limit_price
        while taker.remaining and opposite.prices:
            price = opposite.best()
            assert price is not None
            if (is_buy and price > limit) or (not is_buy and price < limit):
                break
            level = opposite.levels[price]
            while level and taker.remaining:
                maker = level[0]
                if maker.order.expiry <= now:
                    self._close(maker, EXPIRED, opposite, popleft=True)
                    out.touched.append(maker)
                    continue
                if maker.order.account == order.account:
                    self._close(maker, CANCELLED, opposite, popleft=True)
                    out.touched.append(maker)
                    continue
                size = min(taker.remaining, maker.remaining)
                taker.filled += size
                maker.filled += size
                out.fills.append(
                    Fill(
                        self.next_fill_seq,
                        order.market,
                        maker.digest,
                        digest,
                        size,
                        price,
                        is_buy,
                        maker.order.account,
                        order.account,
                    )
                )
                self.next_fill_seq += 1
                out.touched.append(maker)
                if not maker.remaining:
                    self._close(maker, FILLED, opposite, popleft=True)
            if not level and price in opposite.levels:
                opposite._drop_level(price)
        if not taker.remaining:
            taker.status = FILLED
        elif order.flags & o.FLAG_IOC:
            taker.status = CANCELLED
        else:
            taker.status = OPEN
            self.rest(taker)

    def rest(self, bo: BookOrder) -> None:
        """Puts an open order on its book (also used to rebuild the book at start)."""
        book = self.books[bo.order.market]
        (book.bids if bo.order.is_buy else book.asks).add(bo)
        self.orders[bo.digest] = bo
        self.by_account.setdefault(bo.order.account, set()).add(bo.digest)
        self.nonces[(bo.order.account, bo.order.nonce)] = bo.digest
        heapq.heappush(self._expiry, (bo.order.expiry, bo.seq, bo.digest))

    def _best_live(self, side: _Side, now: int) -> int | None:
        """Best price on `side` ignoring expired orders (drops them on the way)."""
        while side.prices:
            price = side.best()
            assert price is not None
            level = side.levels[price]
            while level and level[0].order.expiry <= now:
                self._close(level[0], EXPIRED, side, popleft=True)
            if level:
                return price
            if price in side.levels:
                side._drop_level(price)
        return None

    def _close(self, bo: BookOrder, status: str, side: _Side, popleft: bool = False) -> None:
        bo.status = status
        if popleft:
            side.levels[bo.order.limit_price].popleft()
        else:
            side.remove(bo)
        self.orders.pop(bo.digest, None)
        key = (bo.order.account, bo.order.nonce)
        if self.nonces.get(key) == bo.digest:
            del self.nonces[key]
        digests = self.by_account.get(bo.order.account)
        if digests is not None:
            digests.discard(bo.digest)
            if not digests:
                del self.by_account[bo.order.account]

    def _side_of(self, bo: BookOrder) -> _Side:
        book = self.books[bo.order.market]
        return book.bids if bo.order.is_buy else book.asks

    # ---- removal ------------------------------------------------------------------------

    def cancel(self, digest: str, status: str = CANCELLED) -> BookOrder | None:
        """Takes an open order off its book; None if it is not open here."""
        bo = self.orders.get(digest)
        if bo is None:
            return None
        self._close(bo, status, self._side_of(bo))
        return bo

    def cancel_below_nonce(self, account: int, nonce: int) -> list[BookOrder]:
        """The chain's cancel-everything-below-a-nonce for one account."""
        out = []
        for d in sorted(self.by_account.get(account, set())):
            bo = self.orders[d]
            if bo.order.nonce < nonce:
                self._close(bo, CANCELLED, self._side_of(bo))
                out.append(bo)
        return out

    def cancel_nonce(self, account: int, nonce: int) -> BookOrder | None:
        """The chain consumed this nonce of the account (`cancel_order`): its open order
        with that nonce, whatever its digest, can never fill."""
        digest = self.nonces.get((account, nonce))
        return None if digest is None else self.cancel(digest)

    def reduce(self, digest: str, amount: int) -> BookOrder | None:
        """Someone else filled `amount` of an order resting here (another matcher settled
        it on chain): shrink it, and close it when nothing is left."""
        bo = self.orders.get(digest)
        if bo is None:
            return None
        bo.filled = min(bo.total, bo.filled + amount)
        if not bo.remaining:
            self._close(bo, FILLED, self._side_of(bo))
        return bo

    def expire(self, now: int) -> list[BookOrder]:
        """Drops every resting order whose expiry has passed."""
        out = []
        while self._expiry and self._expiry[0][0] <= now:
            _, _, digest = heapq.heappop(self._expiry)
            bo = self.orders.get(digest)
            if bo is not None and bo.order.expiry <= now:
                self._close(bo, EXPIRED, self._side_of(bo))
                out.append(bo)
        return out

    # ---- views --------------------------------------------------------------------------

    def levels(
        self, market: int, depth: int = 50
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        book = self.books[market]
        return book.bids.aggregated(depth), book.asks.aggregated(depth)

    def open_orders(self, account: int) -> list[BookOrder]:
        return sorted(
            (self.orders[d] for d in self.by_account.get(account, set())), key=lambda b: b.seq
        )
