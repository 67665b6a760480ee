"""The matcher's state machine on SQLite and on a real PostgreSQL server: the book survives
a restart, a crash anywhere in a batch never settles a fill twice, the chain's cancel and
fill events are reconciled, the fake chain (like the contract) refuses overfills and IOC
remainders, and fills the chain refuses are dropped from their batch: the blamed order
rejected, the other order given its amount back, a fill nobody is blamed for retried,
then given up; a reverted batch's fills are queued again."""

from __future__ import annotations

import pytest
from matcher_support import (  # noqa: F401
    CH,
    CHAIN_ID,
    KEYS,
    NOW,
    WAD,
    Clock,
    account,
    db_url,
    make_matcher,
    pg_server,
    signed,
)

from perpdex.matcher import sigs
from perpdex.matcher import store as st
from perpdex.matcher.core import Matcher, MatcherConfig, NotFound, Unauthorized
from perpdex.matcher.engine import Rejected
from perpdex.matcher.settler import (
    CancelEvent,
    FakeChain,
    FakeSettler,
    MatchedFill,
    SimulatedCrash,
)
from perpdex.sdk import orders as o


def _book(m: Matcher) -> tuple[object, ...]:
    return (m.engine.levels(0), m.engine.levels(1), sorted(m.engine.orders))


def _trade(m: Matcher, n: int) -> None:
    """n makers resting on each side of market 0, then takers filling some of them."""
    for i in range(n):
        m.place(*signed(0, -1, 100 + i))
        m.place(*signed(1, 1, 99 - i))
    m.place(*signed(2, 2.5, 101))  # fills 100 and 101 (1 each) and 0.5 of nothing -> rests
    m.place(*signed(3, -1.5, 99))  # fills the bid at 101 (0.5) and 99 (1)


def _restart(m: Matcher, chain: FakeChain, clock: Clock) -> Matcher:
    m.store.close()
    return make_matcher(m.store.url, chain, clock, batch_size=20)


def test_restart_rebuilds_book_and_queue(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    _trade(m, 3)
    older = m.place(*signed(4, -1, 102)).taker  # behind account 0's ask at 102
    before, queued = _book(m), sorted(m.queued)
    assert len(queued) == 4
    m2 = _restart(m, chain, clock)
    assert _book(m2) == before and sorted(m2.queued) == queued
    # time priority survives the restart: the older ask at 102 fills first
    out = m2.place(*signed(3, 1.5, 102))
    assert [(f.price, f.size) for f in out.fills] == [(102 * WAD, WAD), (102 * WAD, WAD // 2)]
    assert out.fills[1].maker == older.digest
    assert out.fills[0].seq == queued[-1] + 1
    assert out.taker.seq > older.seq


@pytest.mark.parametrize("crash", ["after", "before"])
def test_crash_mid_batch_never_settles_twice(db_url: str, crash: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    _trade(m, 3)
    fills = sorted(m.queued)
    m.settler.crash = crash  # type: ignore[attr-defined]
    with pytest.raises(SimulatedCrash):
        m.settle_now()
    assert len(chain.settlements) == (4 if crash == "after" else 0)
    m2 = _restart(m, chain, clock)
    assert m2.queued == {}  # the batch's fills are pending, not queued again
    for _ in range(3):  # however often it is confirmed, re-broadcast or settled again
        m2.confirm_now()
        m2.settle_now()
        m2.reconcile_now()
    pairs = [(a, b) for a, b, _ in chain.settlements]
    assert len(pairs) == len(set(pairs)) == len(fills)
    assert chain.broadcasts == 1  # "before": the restart sends it; "after": never again
    states = {int(r.seq): r.state for r in m2.store.fills_in_state(st.SETTLED)}
    assert sorted(states) == fills and m2.pending == {}
    assert set(m2.store.batch_states().values()) == {st.SETTLED}


def test_lost_transaction_is_rebroadcast_same_bytes(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock, resend_after=30)
    _trade(m, 2)
    m.settler.lose = True  # type: ignore[attr-defined]
    m.settle_now()
    m.settler.lose = False  # type: ignore[attr-defined]
    m.confirm_now()
    assert chain.settlements == [] and len(m.pending) == 1
    clock.t += 31
    m.confirm_now()  # re-broadcast
    m.confirm_now()  # receipt
    assert len(chain.settlements) == 4 and m.pending == {}
    assert len(chain.receipts) == 1  # one transaction, sent twice


def test_timer_or_size_triggers_a_batch(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock, batch_size=3, settle_interval=2.0)
    m.place(*signed(0, -1, 100))
    m.place(*signed(1, 1, 100))
    assert len(m.queued) == 1 and not m.due()
    clock.t += 2
    assert m.due()
    for i in range(3):
        m.place(*signed(0, -1, 100 + i))
    m.place(*signed(1, 3, 110))
    assert len(m.queued) == 4 and m.due()
    m.settle_now()
    assert len(m.queued) == 1  # one batch holds batch_size fills


def test_chain_cancels_and_foreign_fills_reconciled(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    a = m.place(*signed(0, -2, 100)).taker
    m.place(*signed(0, -1, 101))
    c = m.place(*signed(0, -1, 102)).taker
    chain.cancel(a.digest)
    chain.cancel_below(account(0), c.order.nonce)  # cancels b (and a again)
    m.reconcile_now()
    assert sorted(m.engine.orders) == [c.digest]
    # a fill of c settled on chain by someone else shrinks it here
    other, osig = signed(4, 0.5, 102)
    chain.execute(
        [
            MatchedFill(
                0,
                c.digest,
                c.order,
                c.signature,
                "0x" + sigs.DigestCache(CHAIN_ID, CH).digest(other).hex(),
                other,
                osig,
                WAD // 2,
            )
        ]
    )
    m.reconcile_now()
    assert m.engine.orders[c.digest].remaining == WAD // 2
    m2 = _restart(m, chain, clock)
    assert sorted(m2.engine.orders) == [c.digest]
    assert m2.engine.orders[c.digest].remaining == WAD // 2
    assert m2.store.order(a.digest).status == "cancelled"  # type: ignore[union-attr]
    m2.reconcile_now()  # the cursor was stored: old events are not applied twice
    assert m2.engine.orders[c.digest].remaining == WAD // 2


def test_owner_signed_cancel(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    bo = m.place(*signed(0, 1, 90)).taker
    with pytest.raises(Unauthorized):
        m.cancel(bo.digest, sigs.sign_cancel(bo.digest, KEYS[1]))
    _, ops = m.cancel(bo.digest, sigs.sign_cancel(bo.digest, KEYS[0]))
    m.store.apply(ops)
    with pytest.raises(NotFound):
        m.cancel(bo.digest, sigs.sign_cancel(bo.digest, KEYS[0]))
    assert _restart(m, chain, clock).engine.orders == {}


def test_fake_chain_refuses_overfill_and_bad_fills() -> None:
    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    cache = sigs.DigestCache(CHAIN_ID, CH)
    mk, mks = signed(0, -1, 100)
    tk, tks = signed(1, 2, 100)
    md, td = "0x" + cache.digest(mk).hex(), "0x" + cache.digest(tk).hex()

    def fill(size: int, taker_sig: bytes = tks) -> MatchedFill:
        return MatchedFill(0, md, mk, mks, td, tk, taker_sig, size)

    assert not chain.execute([fill(2 * WAD)]).settled  # above the maker's signed size
    assert not chain.execute([fill(WAD, taker_sig=mks)]).settled  # wrong signer
    assert chain.execute([fill(WAD)]).settled
    assert not chain.execute([fill(WAD)]).settled  # the maker is now fully filled
    assert chain.filled == {md: WAD, td: WAD}
    assert FakeSettler(chain).receipt("0xunknown") is None


def test_fake_chain_ioc_taker_done_after_its_batch() -> None:
    """Like the contract (review 3, R3-3): an IOC taker fills only in the batch of its
    first fill, in fills one after another; its remainder cannot fill later."""
    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    cache = sigs.DigestCache(CHAIN_ID, CH)
    tk, tks = signed(1, 3, 100, flags=o.FLAG_IOC)
    td = "0x" + cache.digest(tk).hex()

    def fill() -> MatchedFill:
        mk, mks = signed(0, -1, 100)
        return MatchedFill(0, "0x" + cache.digest(mk).hex(), mk, mks, td, tk, tks, WAD)

    sweep = [fill(), fill()]
    assert len(chain.execute(sweep).settled) == 2
    assert not chain.execute([fill()]).settled
    assert chain.filled[td] == 2 * WAD


def test_take_batch_keeps_an_ioc_sweep_together(db_url: str) -> None:
    """A batch never splits an IOC taker's fills (the chain would refuse the tail)."""
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock, batch_size=2)
    for i in range(3):
        m.place(*signed(0, -1, 100 + i))
    m.place(*signed(1, 3, 102, flags=o.FLAG_IOC))
    assert len(m.queued) == 3
    m.settle_now()
    assert m.queued == {} and len(chain.settlements) == 3


def test_batch_size__bounded_by_the_contracts_fills_per_settle() -> None:
    """A batch larger than the contract's MAX_FILLS would be refused whole, and a sweep
    reaching the bound would be split (the bench ran 50-fill batches: the fake chain
    refused the sweep's tail past each boundary as "order done")."""
    ok = MatcherConfig(CHAIN_ID, CH, frozenset({0}), batch_size=o.MAX_FILLS_PER_BATCH)
    assert ok.batch_size == 32
    for bad in (0, o.MAX_FILLS_PER_BATCH + 1):
        with pytest.raises(ValueError, match=r"outside 1\.\.32"):
            MatcherConfig(CHAIN_ID, CH, frozenset({0}), batch_size=bad)


def _status(m: Matcher, digest: str) -> tuple[str, int]:
    bo = m.store.order(digest)
    assert bo is not None
    return bo.status, bo.remaining


def test_refused_fill__blamed_order_rejected__good_fills_settle(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    m.place(*signed(0, -1, 100))
    good = m.place(*signed(1, 1, 100)).fills[0]
    gone = m.place(*signed(2, -1, 100)).taker
    chain.cancel(gone.digest)  # on chain; the matcher has not reconciled it yet
    taker = m.place(*signed(3, 1, 100)).taker
    assert taker.status == "filled" and len(m.queued) == 2
    m.settle_now()
    assert [(a, b) for a, b, _ in chain.settlements] == [(good.maker, good.taker)]
    m.confirm_now()
    states = {int(r.seq): r.state for r in m.store.fills_in_state(st.SETTLED, st.FAILED)}
    assert states == {1: st.SETTLED, 2: st.FAILED}
    assert _status(m, gone.digest) == ("rejected", WAD)
    # the taker got its amount back and rests again, where a new ask finds it
    assert _status(m, taker.digest) == ("open", WAD)
    assert m.engine.levels(0) == ([(100 * WAD, WAD, 1)], [])
    assert m.queued == {} and m.pending == {}
    m2 = _restart(m, chain, clock)
    assert sorted(m2.engine.orders) == [taker.digest]
    again = m2.place(*signed(4, -1, 100))
    assert [f.maker for f in again.fills] == [taker.digest]
    m2.settle_now()
    m2.confirm_now()
    assert len(chain.settlements) == 2 and _status(m2, taker.digest) == ("filled", 0)


def test_refusal_nobody_is_blamed_for__retried_then_given_up(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock, retry_after=10, max_attempts=3)
    a = m.place(*signed(0, -1, 100)).taker
    b = m.place(*signed(1, 1, 100)).taker
    chain.halted = "clearinghouse: no price quorum"
    assert m.settle_now() is not None and chain.broadcasts == 0
    assert m.queued == {} and list(m.deferred) == [1] and not m.due()
    clock.t += 10
    assert m.due()
    m.settle_now()  # refused again: waits again
    assert list(m.deferred) == [1]
    chain.halted = None
    clock.t += 10
    m.settle_now()
    m.confirm_now()
    assert len(chain.settlements) == 1 and m.deferred == {}
    # a refusal that lasts: after max_attempts both orders are rejected, the fill failed
    c = m.place(*signed(2, -1, 100)).taker
    d = m.place(*signed(3, 1, 100)).taker
    chain.halted = "clearinghouse: price off oracle band"
    for _ in range(3):
        m.settle_now()
        clock.t += 10
    assert m.deferred == {} and m.queued == {}
    assert _status(m, c.digest) == ("rejected", WAD) and _status(m, d.digest)[0] == "rejected"
    assert [int(r.seq) for r in m.store.fills_in_state(st.FAILED)] == [2]
    assert (_status(m, a.digest), _status(m, b.digest)) == (("filled", 0), ("filled", 0))


def test_reverted_batch__fills_queued_again__settled_once(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    _trade(m, 2)
    fills = sorted(m.queued)
    m.settler.revert = True  # type: ignore[attr-defined]
    m.settle_now()
    m.confirm_now()
    assert chain.settlements == [] and sorted(m.queued) == fills and m.pending == {}
    assert {r.state for r in m.store.fills_in_state(st.QUEUED)} == {st.QUEUED}
    assert set(m.store.batch_states().values()) == {st.FAILED}
    m.settler.revert = False  # type: ignore[attr-defined]
    m2 = _restart(m, chain, clock)  # the queue survives a restart too
    m2.settle_now()
    m2.confirm_now()
    pairs = [(a, b) for a, b, _ in chain.settlements]
    assert len(pairs) == len(set(pairs)) == len(fills)


def test_nonce_in_use__until_its_fills_settle(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    resting = m.place(*signed(0, -1, 100, nonce=7)).taker
    with pytest.raises(Rejected) as r:
        m.place(*signed(0, -2, 101, nonce=7))
    assert r.value.code == "nonce_in_use" and resting.digest in str(r.value)
    m.place(*signed(1, 1, 100, nonce=7))  # another account's nonce 7: fine
    # filled, not yet settled: the nonce is still taken (the same order, too)
    with pytest.raises(Rejected, match="in use by order"):
        m.place(*signed(0, -2, 101, nonce=7))
    with pytest.raises(Rejected) as r:
        m.place(resting.order, resting.signature)
    assert r.value.code == "nonce_in_use"
    assert len(m.engine.orders) == 0
    m2 = _restart(m, chain, clock)  # rebuilt from the unsettled fills
    with pytest.raises(Rejected):
        m2.place(*signed(0, -2, 101, nonce=7))
    m2.settle_now()
    m2.confirm_now()
    assert m2.place(*signed(0, -2, 101, nonce=7)).taker.status == "open"


def test_chain_cancel_consumes_the_nonce_whatever_the_digest(db_url: str) -> None:
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    bo = m.place(*signed(0, -1, 100, nonce=42)).taker
    # the owner cancelled, on chain, another order with the same nonce
    chain.log.append(CancelEvent("0x" + "ab" * 32, account(0), 42))
    m.reconcile_now()
    assert m.engine.orders == {} and _status(m, bo.digest)[0] == "cancelled"


def test_settled_batch_keeps_an_order_a_commit_in_flight_still_needs(db_url: str) -> None:
    """The service matches at once and commits later: a receipt committed in between
    must not forget the maker (nor free its nonce) that the uncommitted fill needs."""
    chain, clock = FakeChain(CHAIN_ID, CH, now=NOW), Clock()
    m = make_matcher(db_url, chain, clock)
    maker = m.place(*signed(0, -2, 100, nonce=5)).taker
    m.place(*signed(1, 1, 100))
    m.settle_now()
    assert m.pending
    # a second taker is matched (in memory), its commit still in flight...
    order, sig = signed(2, 1, 100)
    outcome, ops = m.submit(m.verify(order, sig), order, sig)
    assert outcome.fills and outcome.fills[0].maker == maker.digest
    m.confirm_now()  # ...while the first batch's receipt commits
    with pytest.raises(Rejected) as r:
        m.place(*signed(0, -1, 101, nonce=5))
    assert r.value.code == "nonce_in_use"
    m.store.apply(ops)
    m.submit_committed(outcome)
    m.settle_now()
    m.confirm_now()
    assert len(chain.settlements) == 2 and not m.queued and not m.pending
