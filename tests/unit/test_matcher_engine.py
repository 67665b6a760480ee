"""The matching engine alone (pure, no signatures, no database): price-time priority,
partial fills at the maker's price, post-only, IOC, expiry, self-trade prevention,
cancels, one open order per (account, nonce), reopening after a refused fill, and
determinism."""

from __future__ import annotations

import random

import pytest

from perpdex.matcher.engine import (
    CANCELLED,
    EXPIRED,
    FILLED,
    OPEN,
    BookOrder,
    Engine,
    Rejected,
)
from perpdex.sdk import orders as o

NOW = 1_000
_n = iter(range(1, 10**9))


def order(
    acct: int,
    size: int,
    price: int,
    flags: int = 0,
    expiry: int = NOW + 100,
    market: int = 0,
    trigger: int = 0,
) -> o.Order:
    return o.Order(
        account=acct,
        market=market,
        size=size,
        limit_price=price,
        expiry=expiry,
        nonce=next(_n),
        flags=flags,
        trigger_price=trigger,
    )


def put(e: Engine, name: str, od: o.Order, now: int = NOW):  # type: ignore[no-untyped-def]
    return e.submit(name, od, b"", now)


def test_price_then_time_priority_and_maker_price() -> None:
    e = Engine({0})
    put(e, "a1", order(1, -5, 101))
    put(e, "a2", order(2, -5, 100))  # better price, later
    put(e, "a3", order(3, -5, 100))  # same price, later still
    out = put(e, "t", order(9, 12, 105))
    assert [(f.maker, f.size, f.price) for f in out.fills] == [
        ("a2", 5, 100),
        ("a3", 5, 100),
        ("a1", 2, 101),
    ]
    assert out.taker.status == FILLED
    assert e.orders["a1"].remaining == 3
    assert e.levels(0) == ([], [(101, 3, 1)])


def test_partial_fill_rests_remainder_and_limit_respected() -> None:
    e = Engine({0})
    put(e, "b", order(1, 4, 99))
    out = put(e, "s", order(2, -10, 98))
    assert [(f.size, f.price) for f in out.fills] == [(4, 99)]
    assert out.taker.status == OPEN and out.taker.remaining == 6
    assert e.levels(0) == ([], [(98, 6, 1)])
    out = put(e, "b2", order(3, 10, 97))  # below the ask: no fill
    assert out.fills == [] and e.levels(0) == ([(97, 10, 1)], [(98, 6, 1)])


def test_post_only_rejected_when_crossing_and_nothing_changes() -> None:
    e = Engine({0})
    put(e, "a", order(1, -5, 100))
    with pytest.raises(Rejected) as r:
        put(e, "p", order(2, 1, 100, flags=o.FLAG_POST_ONLY))
    assert r.value.code == "post_only_would_cross"
    assert e.levels(0) == ([], [(100, 5, 1)]) and "p" not in e.orders
    out = put(e, "p2", order(2, 1, 99, flags=o.FLAG_POST_ONLY))
    assert out.fills == [] and out.taker.status == OPEN


def test_ioc_remainder_cancelled_never_rests() -> None:
    e = Engine({0})
    put(e, "a", order(1, -3, 100))
    out = put(e, "i", order(2, 5, 100, flags=o.FLAG_IOC))
    assert sum(f.size for f in out.fills) == 3
    assert out.taker.status == CANCELLED and out.taker.remaining == 2
    assert e.levels(0) == ([], []) and "i" not in e.orders


def test_reduce_only_passes_through() -> None:
    e = Engine({0})
    put(e, "a", order(1, -3, 100))
    out = put(e, "r", order(2, 3, 100, flags=o.FLAG_REDUCE_ONLY))
    assert len(out.fills) == 1  # the chain decides whether it reduces


def test_expiry_rejects_new_and_skips_resting() -> None:
    e = Engine({0})
    with pytest.raises(Rejected, match="expired"):
        put(e, "x", order(1, 1, 100, expiry=NOW))
    put(e, "old", order(1, -1, 100, expiry=NOW + 5))
    put(e, "new", order(2, -1, 101, expiry=NOW + 50))
    out = put(e, "t", order(3, 1, 101), now=NOW + 5)
    assert [f.maker for f in out.fills] == ["new"]
    assert [(b.digest, b.status) for b in out.touched] == [("old", EXPIRED), ("new", FILLED)]
    put(e, "late", order(4, -1, 200, expiry=NOW + 10))
    assert [b.digest for b in e.expire(NOW + 9)] == []
    assert [b.digest for b in e.expire(NOW + 10)] == ["late"]
    assert e.levels(0) == ([], [])


def test_self_trade_cancels_resting_order() -> None:
    e = Engine({0})
    put(e, "mine", order(1, -1, 100))
    put(e, "other", order(2, -1, 100))
    out = put(e, "t", order(1, 1, 100))
    assert [f.maker for f in out.fills] == ["other"]
    assert e.orders.get("mine") is None
    assert (out.touched[0].digest, out.touched[0].status) == ("mine", CANCELLED)


def test_unknown_market_conditional_duplicate_rejected() -> None:
    e = Engine({0})
    with pytest.raises(Rejected) as r:
        put(e, "m", order(1, 1, 100, market=7))
    assert r.value.code == "unknown_market"
    with pytest.raises(Rejected) as r:
        put(e, "c", order(1, 1, 100, trigger=5))
    assert r.value.code == "conditional_unsupported"
    put(e, "d", order(1, 1, 90))
    with pytest.raises(Rejected) as r:
        e.submit("d", order(1, 1, 90), b"", NOW)
    assert r.value.code == "duplicate"


def test_cancel_and_cancel_below_nonce() -> None:
    e = Engine({0, 1})
    a = order(1, 1, 90)
    b = order(1, 1, 91, market=1)
    c = order(1, 1, 92)
    for name, od in (("a", a), ("b", b), ("c", c)):
        put(e, name, od)
    assert e.cancel("a") is not None and e.cancel("a") is None
    assert [x.digest for x in e.cancel_below_nonce(a.account, c.nonce)] == ["b"]
    assert [x.digest for x in e.open_orders(a.account)] == ["c"]


def test_one_open_order_per_account_nonce() -> None:
    e = Engine({0})
    a = order(1, 1, 90)
    put(e, "a", a)
    with pytest.raises(Rejected) as r:
        put(e, "a2", o.Order(1, 0, 2, 91, NOW + 100, a.nonce))
    assert r.value.code == "nonce_in_use" and "a2" not in e.orders
    put(e, "other", o.Order(2, 0, 2, 91, NOW + 100, a.nonce))  # another account's nonce
    # the chain consumed the nonce (cancel_order of any order with it): the open one goes
    gone = e.cancel_nonce(1, a.nonce)
    assert gone is not None and (gone.digest, gone.status) == ("a", CANCELLED)
    assert "a" not in e.orders and e.cancel_nonce(1, a.nonce) is None
    put(e, "a3", o.Order(1, 0, 2, 89, NOW + 100, a.nonce))  # free again


def test_reopen_after_a_refused_fill() -> None:
    e = Engine({0})
    put(e, "m", order(1, -5, 100))
    t = put(e, "t", order(2, 5, 100)).taker
    assert t.status == FILLED and e.levels(0) == ([], [])
    t.filled -= 5  # the chain refused the fill (its maker is rejected elsewhere)
    out = e.reopen(t, NOW)
    assert (out.fills, t.status, e.levels(0)) == ([], OPEN, ([(100, 5, 1)], []))
    # a reopened order matches what is on the book now, as a taker, keeping its seq
    e.cancel("t")
    put(e, "m2", order(3, -2, 99))
    t.filled, t.status = 0, FILLED
    seq = t.seq
    out = e.reopen(t, NOW)
    assert [(f.maker, f.taker, f.size, f.price) for f in out.fills] == [("m2", "t", 2, 99)]
    assert t.remaining == 3 and t.status == OPEN and t.seq == seq
    # IOC: the remainder is cancelled; past its expiry: expired
    i = put(e, "i", order(4, -3, 100, flags=o.FLAG_IOC)).taker
    assert i.status == FILLED
    i.filled -= 1
    assert e.reopen(i, NOW).fills == [] and i.status == CANCELLED
    x = BookOrder("x", order(5, -1, 100, expiry=NOW + 10), b"", 99, 0, FILLED)
    assert e.reopen(x, NOW + 10).fills == [] and x.status == EXPIRED


def test_never_overfills_and_replays_deterministically() -> None:
    def run(seed: int) -> list[tuple[str, str, int, int]]:
        rng = random.Random(seed)
        e = Engine({0})
        fills = []
        for i in range(400):
            size = rng.randint(1, 9) * (1 if rng.random() < 0.5 else -1)
            flags = rng.choice([0, 0, o.FLAG_IOC, o.FLAG_POST_ONLY])
            try:
                out = put(e, f"o{i}", order(rng.randint(1, 6), size, rng.randint(95, 105), flags))
            except Rejected:
                continue
            fills += [(f.maker, f.taker, f.size, f.price) for f in out.fills]
            assert 0 <= out.taker.filled <= out.taker.total
            for b in out.touched:
                assert 0 <= b.filled <= b.total
        bids, asks = e.levels(0, 500)
        assert not bids or not asks or bids[0][0] < asks[0][0]  # the book never stays crossed
        return fills

    first = run(7)
    assert first and first == run(7)
