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

Fills the chain refuses (`settle` is atomic, so the settler simulates and drops them;
see settler.py and blame.py): in the same commit as the batch, a dropped fill is
  - blamed on one or both of its orders: the fill fails, the blamed orders are
    `rejected` (off the book), and the other order gets the amount back: it stays on the
    book, or, if that fill had closed it, matches again or rests (`Engine.reopen`);
  - blamed on nobody (quorum, price band, caps, pause): it waits `retry_after` seconds in
    `deferred` and is tried again; after `max_attempts` both orders are rejected.
A batch whose transaction reverted or can never be mined settled nothing: its fills go
back to the queue (and through the simulation again). A fill is only marked settled from
a receipt of a transaction that executed, so no fill is ever settled twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from perpdex.matcher import sigs
from perpdex.matcher import store as st
from perpdex.matcher.engine import (
    CANCELLED,
    FILLED,
    REJECTED,
    BookOrder,
    Engine,
    Fill,
    Outcome,
    nonce_in_use,
)
from perpdex.matcher.settler import (
    CancelEvent,
    ChainEvent,
    Dropped,
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
    retry_after: float = 10.0  # a fill the chain refused for no order's fault waits this
    max_attempts: int = 5  # ...this many times; then both its orders are rejected

    def __post_init__(self) -> None:
        # the contract settles at most MAX_FILLS_PER_BATCH fills a transaction: a larger
        # batch would be refused whole, and `take_batch` could not keep an IOC sweep that
        # reaches the bound in one batch (the chain refuses a sweep's tail as "order done")
        if not 1 <= self.batch_size <= o.MAX_FILLS_PER_BATCH:
            raise ValueError(
                f"batch_size {self.batch_size} is outside 1..{o.MAX_FILLS_PER_BATCH} (the "
                "contract's fills per settle transaction); pick a size in that range"
            )


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
    deferred: dict[int, tuple[Fill, float]] = field(default_factory=dict)  # fill, retry at
    _signed: dict[str, BookOrder] = field(default_factory=dict)  # orders of unsettled fills
    _nonce_refs: dict[tuple[int, int], str] = field(default_factory=dict)  # of _signed
    _first_queued_at: float | None = None
    _inflight: dict[int, list[Fill]] = field(default_factory=dict)  # taken, not yet recorded
    _matched: dict[int, Fill] = field(default_factory=dict)  # matched, commit in flight
    # digest -> how many unsettled fills (matched, queued, in flight, pending, deferred)
    # name it as maker or taker: `_forget` releases a digest when its count falls to 0
    _refs: dict[str, int] = field(default_factory=dict)
    _dropping: dict[int, tuple[list[Outcome], list[Fill]]] = field(default_factory=dict)
    _attempts: dict[int, int] = field(default_factory=dict)  # fill seq -> refusals so far
    reopened: list[Fill] = field(default_factory=list)  # new fills of reopened orders
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
        self._signed, self._nonce_refs = {}, {}
        for bo in self.store.orders_by_digest(
            d for f in fills.values() for d in (f.maker, f.taker)
        ).values():
            self._hold(self.engine.orders.get(bo.digest, bo))
        for r in rows:
            if r.state == st.QUEUED:
                self.queued[int(r.seq)] = fills[int(r.seq)]
        self._refs = {}
        self._count(self.queued.values())
        for b in self.store.pending_batches():
            seqs = json.loads(b.fills)
            pb = PendingBatch(
                int(b.id),
                Prepared(b.tx_id, bytes(b.payload)),
                [fills[s] for s in seqs if s in fills],
            )
            self.pending[pb.id] = pb
            self._count(pb.fills)
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
        acknowledging it. Raises engine.Rejected (nothing changed), also `nonce_in_use`
        when an open order or an order with unsettled fills holds the account's nonce."""
        now = self.clock()
        held = self._nonce_refs.get((order.account, order.nonce))
        if held is not None and digest not in self.engine.orders:
            raise nonce_in_use(order, held)
        outcome = self.engine.submit(digest, order, signature, int(now))
        ops: list[st.Op] = [st.InsertOrder.of(outcome.taker, now)]
        for bo in outcome.touched:
            ops.append(st.UpdateOrder(bo.digest, bo.filled, bo.status))
        for f in outcome.fills:
            ops.append(st.InsertFill.of(f, now))
        self._hold_outcome(outcome)  # the nonce is taken from now on, not from the commit
        with self._lock:
            for f in outcome.fills:
                self._matched[f.seq] = f  # its orders stay held until it is queued
            self._count(outcome.fills)
        return outcome, ops

    def _count(self, fills: Iterable[Fill]) -> None:
        """`fills` are new unsettled fills: their orders gain a reference each."""
        refs = self._refs
        for f in fills:
            refs[f.maker] = refs.get(f.maker, 0) + 1
            refs[f.taker] = refs.get(f.taker, 0) + 1

    def _hold(self, bo: BookOrder) -> None:
        self._signed.setdefault(bo.digest, bo)
        self._nonce_refs[(bo.order.account, bo.order.nonce)] = bo.digest

    def _release(self, digest: str) -> None:
        bo = self._signed.pop(digest, None)
        if bo is not None:
            key = (bo.order.account, bo.order.nonce)
            if self._nonce_refs.get(key) == digest:
                del self._nonce_refs[key]

    def _hold_outcome(self, outcome: Outcome) -> None:
        if outcome.fills:
            self._hold(outcome.taker)
            for bo in outcome.touched:
                self._hold(bo)

    def submit_committed(self, outcome: Outcome) -> None:
        """After the commit: the fills join the settlement queue."""
        if not outcome.fills:
            return
        with self._lock:
            for f in outcome.fills:
                self._matched.pop(f.seq, None)
                self.queued[f.seq] = f
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

    def _promote(self) -> None:
        """Deferred fills whose wait is over go back to the queue."""
        if not self.deferred:
            return
        now = self.clock()
        with self._lock:
            for seq, (f, at) in list(self.deferred.items()):
                if at <= now:
                    del self.deferred[seq]
                    self.queued[seq] = f
                    # it has waited long enough: due at once
                    due = now - self.config.settle_interval
                    self._first_queued_at = min(self._first_queued_at or due, due)
            if self.queued and self._first_queued_at is None:
                self._first_queued_at = now

    def due(self) -> bool:
        self._promote()
        if not self.queued:
            return False
        if len(self.queued) >= self.config.batch_size:
            return True
        first = self._first_queued_at
        return first is not None and self.clock() - first >= self.config.settle_interval

    def take_batch(self) -> tuple[int, list[MatchedFill]] | None:
        """Moves up to batch_size queued fills into a new batch (in memory), more to
        finish an IOC taker's sweep (at most MAX_FILLS_PER_BATCH)."""
        self._promote()
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
        """The batch and its fills `pending`; the dropped fills failed (their blamed orders
        rejected, the other orders given their amounts back) or waiting for a retry."""
        drops = {d.seq: d for d in prepared.dropped}
        seqs = tuple(f.seq for f in fills if f.seq not in drops)
        ops: list[st.Op] = []
        if seqs:
            assert prepared.sends, "a prepared batch with fills has a transaction"
            ops.append(
                st.InsertBatch(batch_id, prepared.tx_id, prepared.payload, seqs, self.clock())
            )
            ops.append(st.SetFillState(seqs, st.PENDING, batch_id))
        by_seq = {f.seq: f for f in self._inflight.get(batch_id, [])}
        outcomes: list[Outcome] = []
        retry: list[Fill] = []
        for d in prepared.dropped:
            fill = by_seq.get(d.seq)
            if fill is None:
                continue
            tries = self._attempts[fill.seq] = self._attempts.get(fill.seq, 0) + 1
            blame = d.blame
            if not blame and tries >= self.config.max_attempts:
                log.error(
                    "fill %d refused %d times (%s): rejecting both its orders",
                    fill.seq,
                    tries,
                    d.reason,
                )
                blame = (fill.maker, fill.taker)
            if blame:
                ops += self._fail_ops(fill, Dropped(d.seq, d.reason, blame), outcomes)
            else:
                log.warning(
                    "fill %d refused by the chain for now (%s): retrying in %.0f s",
                    fill.seq,
                    d.reason,
                    self.config.retry_after,
                )
                retry.append(fill)
        self._dropping[batch_id] = (outcomes, retry)
        return ops

    def _fail_ops(self, fill: Fill, d: Dropped, outcomes: list[Outcome]) -> list[st.Op]:
        """A fill the chain refused for good: it fails; its blamed orders are rejected; the
        other order gets the amount back (and, if that fill had closed it, reopens)."""
        ops: list[st.Op] = [st.SetFillState((fill.seq,), st.FAILED)]
        now = self.clock()
        # blamed orders first, so a reopened order cannot match them again
        for digest in sorted((fill.maker, fill.taker), key=lambda x: x not in d.blame):
            bo = self.engine.orders.get(digest) or self._signed.get(digest)
            if bo is None:
                continue
            bo.filled = max(0, bo.filled - fill.size)
            if digest in d.blame:
                if digest in self.engine.orders:
                    self.engine.cancel(digest, REJECTED)
                bo.status = REJECTED
                ops.append(st.UpdateOrder(digest, bo.filled, REJECTED))
                log.warning(
                    "order %s rejected: the chain refused its fill %d (%s)",
                    digest,
                    fill.seq,
                    d.reason,
                )
            elif digest in self.engine.orders or bo.status != FILLED:
                ops.append(st.UpdateOrder(digest, bo.filled, bo.status))
            else:
                oc = self.engine.reopen(bo, int(now))
                ops.append(st.UpdateOrder(digest, bo.filled, bo.status))
                for t in oc.touched:
                    ops.append(st.UpdateOrder(t.digest, t.filled, t.status))
                for f in oc.fills:
                    ops.append(st.InsertFill.of(f, now))
                self._hold_outcome(oc)
                with self._lock:
                    self._count(oc.fills)
                outcomes.append(oc)
        return ops

    def batch_committed(
        self, batch_id: int, prepared: Prepared, fills: list[MatchedFill]
    ) -> PendingBatch | None:
        """After the commit of `batch_ops`; None when nothing is to be sent."""
        inflight = self._inflight.pop(batch_id, [])
        outcomes, retry = self._dropping.pop(batch_id, ([], []))
        at = self.clock() + self.config.retry_after
        with self._lock:
            for f in retry:
                self.deferred[f.seq] = (f, at)
            for oc in outcomes:
                for f in oc.fills:
                    self.queued[f.seq] = f
                    self.reopened.append(f)
            if self.queued and self._first_queued_at is None:
                self._first_queued_at = self.clock()
        dropped = {d.seq for d in prepared.dropped}
        waiting = {f.seq for f in retry}
        failed = [f for f in inflight if f.seq in dropped and f.seq not in waiting]
        for f in failed:
            self._attempts.pop(f.seq, None)
        self._forget(failed)
        kept = [f for f in inflight if f.seq not in dropped]
        if not kept:
            return None
        by_seq = {f.seq: f for f in kept}
        pb = PendingBatch(batch_id, prepared, [by_seq[m.seq] for m in fills if m.seq in by_seq])
        self.pending[batch_id] = pb
        return pb

    def batch_lost(self, batch_id: int) -> None:
        """Prepare or the commit failed: the fills go back to the queue."""
        self._dropping.pop(batch_id, None)
        with self._lock:
            for f in self._inflight.pop(batch_id, []):
                self.queued[f.seq] = f
            if self.queued and self._first_queued_at is None:
                self._first_queued_at = self.clock()

    def receipt_ops(self, pb: PendingBatch, receipt: Receipt) -> list[st.Op]:
        seqs = tuple(f.seq for f in pb.fills)
        if not receipt.ok:
            log.warning(
                "batch %d (transaction %s) reverted or can never be mined: nothing settled, "
                "its fills %s go back to the queue",
                pb.id,
                pb.prepared.tx_id,
                seqs,
            )
            return [
                st.SetFillState(seqs, st.QUEUED),
                st.SetBatchState(pb.id, st.FAILED, self.clock()),
            ]
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
        ops.append(st.SetBatchState(pb.id, st.SETTLED, self.clock()))
        return ops

    def receipt_committed(self, pb: PendingBatch, receipt: Receipt | None = None) -> None:
        self.receipts_committed([(pb, receipt)])

    def receipts_committed(self, done: list[tuple[PendingBatch, Receipt | None]]) -> None:
        """`receipt_committed` for several batches: one pass over the unsettled fills
        (`_forget`) for all of them."""
        settled: list[Fill] = []
        for pb, receipt in done:
            self.pending.pop(pb.id, None)
            if receipt is not None and not receipt.ok:
                with self._lock:
                    for f in pb.fills:
                        self._attempts[f.seq] = self._attempts.get(f.seq, 0) + 1
                        self.queued[f.seq] = f
                    if self.queued and self._first_queued_at is None:
                        self._first_queued_at = self.clock()
                continue
            for f in pb.fills:
                self._attempts.pop(f.seq, None)
            settled += pb.fills
        self._forget(settled)

    def _forget(self, done: list[Fill]) -> None:
        """Forgets the signed orders (and frees the nonces) no unsettled fill needs."""
        if not done:
            return
        refs = self._refs
        with self._lock:
            for f in done:
                for d in (f.maker, f.taker):
                    n = refs.get(d, 0) - 1
                    if n > 0:
                        refs[d] = n
                        continue
                    refs.pop(d, None)
                    self._release(d)

    def inflight(self) -> int:
        """Fills taken into a batch not yet recorded (being prepared)."""
        return sum(len(fs) for fs in self._inflight.values())

    def take_reopened(self) -> list[Fill]:
        """The fills reopened orders made since the last call (for the fills stream)."""
        out, self.reopened = self.reopened, []
        return out

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
                if bo is None and ev.account is not None and ev.nonce is not None:
                    # the nonce is consumed: an open order with it is dead whatever its digest
                    bo = self.engine.cancel_nonce(ev.account, ev.nonce)
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
        if pb is None:
            return batch_id
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
            self.receipt_committed(pb, r)

    def reconcile_now(self) -> None:
        events, cursor = self.settler.events(self.cursor)
        known = self.store.known_pairs(self.event_pairs(events))
        self.store.apply(self.event_ops(events, cursor, known))
