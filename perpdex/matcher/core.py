"""The matcher's state machine: engine + database + settler, without any I/O scheduling.

Every method that changes state returns the database operations (`store.Op`) that make the
change durable; the caller commits them (synchronously in tests, through the group
committer in the service) and then calls the matching `*_committed` hook. Nothing is
acknowledged, streamed or settled before its operations have committed.

Settlement of one batch, in order:
  take_batch      queued fills -> a batch (in memory: "in flight", nobody else takes them)
  settler.prepare encode + sign: the transaction id is known before anything is sent
  batch_ops       record the batch `pending` with its id and bytes, fills -> pending
  settler.broadcast
  receipt_ops     from the receipt: fills settled / failed, batch settled / failed
A crash anywhere leaves the batch either unrecorded (its fills are still `queued` in the
database and go into a new batch) or `pending` (at start it is confirmed from its receipt
or, if the chain has never seen it, re-broadcast with the *same* signed bytes, which the
chain cannot execute twice). Chain events (fills by anyone, cancels) are reconciled too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from perpdex.matcher import sigs
from perpdex.matcher import store as st
from perpdex.matcher.engine import CANCELLED, BookOrder, Engine, Fill, Outcome
from perpdex.matcher.settler import (
    CancelEvent,
    ChainEvent,
    FillEvent,
    MatchedFill,
    NonceCancelEvent,
    Prepared,
    Receipt,
    Settler,
)
from perpdex.sdk import orders as o

log = logging.getLogger("perpdex.matcher")

CURSOR_KEY = "event_cursor"


@dataclass(frozen=True)
class MatcherConfig:
    chain_id: int
    verifying_contract: str
    markets: frozenset[int]
    batch_size: int = 20  # settle as soon as this many fills are queued...
    settle_interval: float = 2.0  # ...or when the oldest has waited this long (seconds)
    resend_after: float = 30.0  # re-broadcast a pending batch without receipt after this


class Unauthorized(ValueError):
    """A signature that does not come from the account's owner."""


class NotFound(LookupError):
    pass


@dataclass
class PendingBatch:
    id: int
    prepared: Prepared
    fills: list[Fill]
    sent_at: float = 0.0  # 0: not (known to be) sent: broadcast at the next confirm


@dataclass
class Matcher:
    config: MatcherConfig
    store: st.Store
    settler: Settler
    clock: Callable[[], float] = time.time
    engine: Engine = field(init=False)
    queued: dict[int, Fill] = field(default_factory=dict)  # committed, not yet in a batch
    pending: dict[int, PendingBatch] = field(default_factory=dict)
    cursor: str | None = None
    next_batch: int = 1
    _signed: dict[str, BookOrder] = field(default_factory=dict)  # orders of unsettled fills
    _first_queued_at: float | None = None
    _inflight: dict[int, list[Fill]] = field(default_factory=dict)  # taken, not yet recorded
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.digests = sigs.DigestCache(self.config.chain_id, self.config.verifying_contract)
        self.engine = Engine(set(self.config.markets))

    # ---- start-up: rebuild and reconcile ------------------------------------------------

    def start(self) -> None:
        """Rebuilds the book and the settlement queue from the database, then reconciles
        with the chain (pending batches' receipts, then fill and cancel events)."""
        last_order, last_fill, last_batch = self.store.max_seqs()
        self.engine = Engine(set(self.config.markets), last_order + 1, last_fill + 1)
        self.next_batch = last_batch + 1
        for bo in self.store.open_orders():
            if bo.order.market not in self.engine.books:
                log.warning(
                    "order %s is for market %s, not traded here", bo.digest, bo.order.market
                )
                continue
            self.engine.rest(bo)
        rows = self.store.fills_in_state(st.QUEUED, st.PENDING)
        fills = {int(r.seq): st.fill_from_row(r) for r in rows}
        self._signed = self.store.orders_by_digest(
            d for f in fills.values() for d in (f.maker, f.taker)
        )
        for r in rows:
            if r.state == st.QUEUED:
                self.queued[int(r.seq)] = fills[int(r.seq)]
        for b in self.store.pending_batches():
            seqs = json.loads(b.fills)
            self.pending[int(b.id)] = PendingBatch(
                int(b.id),
                Prepared(b.tx_id, bytes(b.payload)),
                [fills[s] for s in seqs if s in fills],
            )
        self._first_queued_at = self.clock() if self.queued else None
        self.cursor = self.store.meta(CURSOR_KEY)
        log.info(
            "matcher rebuilt: %d open orders, %d queued fills, %d pending batches",
            len(self.engine.orders),
            len(self.queued),
            len(self.pending),
        )
        self.confirm_now(rebroadcast=False)
        self.reconcile_now()

    # ---- orders -------------------------------------------------------------------------

    def verify(self, order: o.Order, signature: bytes) -> str:
        """Validates the order and its signature; returns its digest (0x hex). Raises
        OrderError, sigs.SignatureError or Unauthorized."""
        order.validate()
        digest = self.digests.digest(order)
        signer = sigs.recover(digest, signature)
        owner = sigs.owner_of(order.account)
        if signer != owner:
            raise Unauthorized(
                f"order signed by {signer}, but account {order.account:#x} belongs to {owner}: "
                "sign with the owner's key for this chain and Clearinghouse"
            )
        return "0x" + digest.hex()

    def submit(self, digest: str, order: o.Order, signature: bytes) -> tuple[Outcome, list[st.Op]]:
        """Matches a verified order; returns what happened and the ops to commit before
        acknowledging it. Raises engine.Rejected (nothing changed)."""
        now = self.clock()
        outcome = self.engine.submit(digest, order, signature, int(now))
        ops: list[st.Op] = [st.InsertOrder.of(outcome.taker, now)]
        for bo in outcome.touched:
            ops.append(st.UpdateOrder(bo.digest, bo.filled, bo.status))
        for f in outcome.fills:
            ops.append(st.InsertFill.of(f, now))
        return outcome, ops

    def submit_committed(self, outcome: Outcome) -> None:
        """After the commit: the fills join the settlement queue."""
        if not outcome.fills:
            return
        with self._lock:
            self._signed[outcome.taker.digest] = outcome.taker
            for f in outcome.fills:
                self.queued[f.seq] = f
            for bo in outcome.touched:
                self._signed.setdefault(bo.digest, bo)
            if self._first_queued_at is None:
                self._first_queued_at = self.clock()

    def place(self, order: o.Order, signature: bytes) -> Outcome:
        """Verify, match, commit (synchronous; the service groups commits instead)."""
        digest = self.verify(order, signature)
        outcome, ops = self.submit(digest, order, signature)
        self.store.apply(ops)
        self.submit_committed(outcome)
        return outcome

    def cancel(self, digest: str, signature: bytes) -> tuple[BookOrder, list[st.Op]]:
        """An owner-signed cancel (sigs.sign_cancel) of an open order."""
        bo = self.engine.orders.get(digest)
        if bo is None:
            raise NotFound(
                f"order {digest} is not open on this matcher (filled, cancelled, "
                "expired or never placed): see GET /orders?account="
            )
        signer = sigs.recover(sigs.cancel_message_hash(digest), signature)
        owner = sigs.owner_of(bo.order.account)
        if signer != owner:
            raise Unauthorized(
                f"cancel signed by {signer}, but the order's account belongs to {owner}"
            )
        self.engine.cancel(digest)
        return bo, [st.UpdateOrder(bo.digest, bo.filled, CANCELLED)]

    def expire_ops(self) -> list[st.Op]:
        return [
            st.UpdateOrder(b.digest, b.filled, b.status)
            for b in self.engine.expire(int(self.clock()))
        ]

    # ---- settlement ---------------------------------------------------------------------

    def due(self) -> bool:
        if not self.queued:
            return False
        if len(self.queued) >= self.config.batch_size:
            return True
        first = self._first_queued_at
        return first is not None and self.clock() - first >= self.config.settle_interval

    def take_batch(self) -> tuple[int, list[MatchedFill]] | None:
        """Moves up to batch_size queued fills into a new batch (in memory), more to
        finish an IOC taker's sweep (at most MAX_FILLS_PER_BATCH)."""
        with self._lock:
            if not self.queued:
                return None
            queued = sorted(self.queued)
            seqs = queued[: self.config.batch_size]
            # an IOC taker fills on chain only in the batch of its first fill, its fills
            # one after another: a sweep is never split across two batches
            for s in queued[len(seqs) :]:
                if len(seqs) >= o.MAX_FILLS_PER_BATCH or not self._sweeps_on(seqs[-1], s):
                    break
                seqs.append(s)
            fills = [self.queued.pop(s) for s in seqs]
            self._first_queued_at = self.clock() if self.queued else None
            batch_id = self.next_batch
            self.next_batch += 1
        matched = []
        for f in fills:
            m, t = self._signed[f.maker], self._signed[f.taker]
            matched.append(
                MatchedFill(
                    f.seq, f.maker, m.order, m.signature, f.taker, t.order, t.signature, f.size
                )
            )
        self._inflight[batch_id] = fills
        return batch_id, matched

    def _sweeps_on(self, a: int, b: int) -> bool:
        """Queued fill `b` continues the IOC taker's sweep of fill `a`."""
        taker = self.queued[a].taker
        return self.queued[b].taker == taker and bool(self._signed[taker].order.flags & o.FLAG_IOC)

    def batch_ops(self, batch_id: int, prepared: Prepared, fills: list[MatchedFill]) -> list[st.Op]:
        seqs = tuple(f.seq for f in fills)
        return [
            st.InsertBatch(batch_id, prepared.tx_id, prepared.payload, seqs, self.clock()),
            st.SetFillState(seqs, st.PENDING, batch_id),
        ]

    def batch_committed(
        self, batch_id: int, prepared: Prepared, fills: list[MatchedFill]
    ) -> PendingBatch:
        by_seq = {f.seq: f for f in self._inflight.pop(batch_id, [])}
        pb = PendingBatch(batch_id, prepared, [by_seq[m.seq] for m in fills if m.seq in by_seq])
        self.pending[batch_id] = pb
        return pb

    def batch_lost(self, batch_id: int) -> None:
        """Prepare or the commit failed: the fills go back to the queue."""
        with self._lock:
            for f in self._inflight.pop(batch_id, []):
                self.queued[f.seq] = f
            if self.queued and self._first_queued_at is None:
                self._first_queued_at = self.clock()

    def receipt_ops(self, pb: PendingBatch, receipt: Receipt) -> list[st.Op]:
        settled = tuple(f.seq for f in pb.fills if (f.maker, f.taker) in receipt.settled)
        failed = tuple(f.seq for f in pb.fills if (f.maker, f.taker) not in receipt.settled)
        ops: list[st.Op] = []
        if settled:
            ops.append(st.SetFillState(settled, st.SETTLED))
        if failed:
            log.error(
                "batch %d: the chain refused fills %s (their orders keep their matched "
                "amounts here; see the transaction %s)",
                pb.id,
                failed,
                pb.prepared.tx_id,
            )
            ops.append(st.SetFillState(failed, st.FAILED))
        state = st.SETTLED if receipt.ok else st.FAILED
        ops.append(st.SetBatchState(pb.id, state, self.clock()))
        return ops

    def receipt_committed(self, pb: PendingBatch) -> None:
        self.pending.pop(pb.id, None)
        with self._lock:  # forget the signed orders no unsettled fill needs any more
            live = [*self.queued.values(), *(f for b in self.pending.values() for f in b.fills)]
            live += [f for fs in self._inflight.values() for f in fs]
            keep = {d for f in live for d in (f.maker, f.taker)}
            for f in pb.fills:
                for d in (f.maker, f.taker):
                    if d not in keep:
                        self._signed.pop(d, None)

    # ---- chain events -------------------------------------------------------------------

    def event_ops(
        self, events: list[ChainEvent], cursor: str, known_pairs: set[tuple[str, str]]
    ) -> list[st.Op]:
        """Applies chain events to the book: fills this matcher did not make (another
        matcher or a keeper settled these orders) shrink the orders; cancels remove them.
        Our own fills (`known_pairs`) are confirmed by their batch receipts instead."""
        ops: list[st.Op] = []
        for ev in events:
            if isinstance(ev, FillEvent):
                if (ev.maker, ev.taker) in known_pairs:
                    continue
                for d in (ev.maker, ev.taker):
                    bo = self.engine.reduce(d, ev.size)
                    if bo is not None:
                        ops.append(st.UpdateOrder(bo.digest, bo.filled, bo.status))
            elif isinstance(ev, CancelEvent):
                bo = self.engine.cancel(ev.digest)
                if bo is not None:
                    ops.append(st.UpdateOrder(bo.digest, bo.filled, CANCELLED))
            elif isinstance(ev, NonceCancelEvent):
                for bo in self.engine.cancel_below_nonce(ev.account, ev.nonce):
                    ops.append(st.UpdateOrder(bo.digest, bo.filled, CANCELLED))
        ops.append(st.SetMeta(CURSOR_KEY, cursor))
        self.cursor = cursor
        return ops

    def event_pairs(self, events: list[ChainEvent]) -> list[tuple[str, str]]:
        return [(e.maker, e.taker) for e in events if isinstance(e, FillEvent)]

    # ---- synchronous drivers (tests, start-up) ------------------------------------------

    def settle_now(self) -> int | None:
        """One batch, start to broadcast; returns its id (None: nothing queued)."""
        taken = self.take_batch()
        if taken is None:
            return None
        batch_id, fills = taken
        try:
            prepared = self.settler.prepare(fills)
            self.store.apply(self.batch_ops(batch_id, prepared, fills))
        except Exception:
            self.batch_lost(batch_id)
            raise
        pb = self.batch_committed(batch_id, prepared, fills)
        pb.sent_at = self.clock()
        self.settler.broadcast(prepared)
        return batch_id

    def confirm_now(self, rebroadcast: bool = True) -> None:
        for pb in list(self.pending.values()):
            r = self.settler.receipt(pb.prepared.tx_id)
            if r is None:
                if rebroadcast and self.clock() - pb.sent_at >= self.config.resend_after:
                    pb.sent_at = self.clock()
                    self.settler.broadcast(pb.prepared)
                continue
            self.store.apply(self.receipt_ops(pb, r))
            self.receipt_committed(pb)

    def reconcile_now(self) -> None:
        events, cursor = self.settler.events(self.cursor)
        known = self.store.known_pairs(self.event_pairs(events))
        self.store.apply(self.event_ops(events, cursor, known))
