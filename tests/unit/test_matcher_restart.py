"""The matcher's state machine on SQLite and on a real PostgreSQL server: the book survives
a restart, a crash anywhere in a batch never settles a fill twice, the chain's cancel and
fill events are reconciled, and the fake chain (like the contract) refuses overfills and
IOC remainders."""

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
from perpdex.matcher.core import Matcher, NotFound, Unauthorized
from perpdex.matcher.settler import FakeChain, FakeSettler, MatchedFill, SimulatedCrash
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
