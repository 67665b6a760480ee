"""perpdex.sdk.matcher_client against a real matcher: uvicorn on a free 127.0.0.1 port in a
thread (matcher_support.served: SQLite, fake settler), so HTTP and the websocket go
through the network stack."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from eth_account import Account
from matcher_support import KEYS, WAD, Served, account, served, sign  # noqa: F401

from perpdex.sdk.matcher_client import MatcherClient, MatcherError, MatcherFill


async def subscribed(served: Served) -> None:
    while not served.service.listeners:
        await asyncio.sleep(0.01)


def test_place_book_orders_fills_and_the_stream(served: Served) -> None:
    m = MatcherClient(served.url)
    maker = m.place(sign(0, -2, 100))
    assert (maker.order.status, maker.order.size, maker.fills) == ("open", -2 * WAD, ())
    assert maker.order.account == account(0) and maker.order.remaining == 2 * WAD
    assert [x.digest for x in m.orders(account(0), status="open")] == [maker.digest]
    book = m.book(0)
    assert book.bids == () and [(a.price, a.size, a.orders) for a in book.asks] == [
        (100 * WAD, 2 * WAD, 1)
    ]

    async def first_streamed() -> MatcherFill:
        it = m.stream_fills(market=0)
        nxt = asyncio.ensure_future(anext(it))
        await asyncio.wait_for(subscribed(served), 5)
        taker = await asyncio.to_thread(m.place, sign(1, 1, 101))
        assert taker.order.status == "filled" and len(taker.fills) == 1
        fill = await asyncio.wait_for(nxt, 5)
        assert fill == taker.fills[0]
        served.stop()  # the server closes the stream: the iterator ends
        assert await asyncio.wait_for(anext(it, None), 5) is None
        return fill

    server_stopping = asyncio.run(first_streamed())
    assert server_stopping.price == 100 * WAD  # the maker's price
    assert (server_stopping.size, server_stopping.taker_side) == (WAD, "buy")
    assert server_stopping.maker == maker.digest and server_stopping.taker_account == account(1)


def test_fills_are_typed_and_resume_after_a_seq(served: Served) -> None:
    m = MatcherClient(served.url)
    m.place(sign(0, -4, 100))
    t1 = m.place(sign(1, 1, 100))
    t2 = m.place(sign(2, 1, 100))
    stored = m.fills(market=0)
    assert stored == [*t1.fills, *t2.fills] and stored[0].seq < stored[1].seq
    assert all(isinstance(f.at, float) and f.state for f in stored)
    assert m.fills(account=account(2)) == list(t2.fills)
    assert m.fills(after=stored[0].seq) == [stored[1]]

    real_fills = m.fills
    racing: list[MatcherFill] = []

    def fills_after_a_racing_fill(*args: object) -> list[MatcherFill]:
        # a fill lands between the subscription and the backfill: the stream carries it
        # and the backfill holds it too; it must come out once
        if not racing:
            racing.extend(m.place(sign(3, 1, 100)).fills)
        return real_fills(*args)  # type: ignore[arg-type]

    m.fills = fills_after_a_racing_fill  # type: ignore[method-assign]

    async def resumed() -> list[MatcherFill]:
        it = m.stream_fills(after=stored[0].seq)
        got = [await asyncio.wait_for(anext(it), 5) for _ in range(2)]  # stored after seq
        t4 = await asyncio.to_thread(m.place, sign(4, 1, 100))
        got.append(await asyncio.wait_for(anext(it), 5))  # then the live one
        await it.aclose()
        assert t4.order.status == "filled"
        return [*got, *t4.fills]

    got = asyncio.run(resumed())
    assert got[:2] == [stored[1], *racing] and got[2] == got[3]
    assert len({f.seq for f in got[:3]}) == 3


def test_cancel_with_a_key_or_an_account(served: Served) -> None:
    m = MatcherClient(served.url)
    a = m.place(sign(0, 1, 90))
    b = m.place(sign(0, 1, 89))
    with pytest.raises(MatcherError) as e:
        m.cancel(a.digest, KEYS[1])
    assert (e.value.code, e.value.status) == ("wrong_signer", 403)
    assert m.cancel(a.digest, KEYS[0]).status == "cancelled"
    assert m.cancel(b.digest, Account.from_key(KEYS[0])).status == "cancelled"
    assert m.book(0).bids == ()
    with pytest.raises(MatcherError) as e:
        m.cancel(a.digest, KEYS[0])
    assert (e.value.code, e.value.status) == ("not_open", 404)
    assert "final status" in str(e.value)


def test_refusals_raise_matcher_error_with_the_code(served: Served) -> None:
    m = MatcherClient(served.url)
    first = m.place(sign(0, 1, 90, nonce=77))
    with pytest.raises(MatcherError) as e:
        m.place(sign(0, 2, 91, nonce=77))
    assert (e.value.code, e.value.status) == ("nonce_in_use", 409)
    assert first.digest in e.value.detail and "pick a new nonce" in str(e.value)
    with pytest.raises(MatcherError) as e:
        m.place(sign(0, 1, 90, key=KEYS[1]))
    assert (e.value.code, e.value.status) == ("wrong_signer", 403)
    with pytest.raises(MatcherError) as e:
        m.book(9)
    assert (e.value.code, e.value.status) == ("unknown_market", 404)
    with pytest.raises(MatcherError) as e:
        m.fills(limit=0)  # a validation error: its detail names the field
    assert (e.value.code, e.value.status) == ("invalid_request", 422)
    assert "limit" in e.value.detail
    assert [x.digest for x in m.orders(account(0))] == [first.digest]  # nothing changed


def test_unreachable_matcher_says_so(served: Served) -> None:
    served.stop()
    m = MatcherClient(served.url, timeout=2)
    with pytest.raises(MatcherError) as e:
        m.book(0)
    assert e.value.code == "unreachable" and e.value.status is None
    assert "perpdex matcher serve" in str(e.value)

    async def stream() -> None:
        async for _ in m.stream_fills():
            pass

    with pytest.raises(MatcherError, match="unreachable"):
        asyncio.run(stream())


def test_a_client_that_leaves_the_stream_is_dropped_at_once(served: Served) -> None:
    """The websocket handler watches the client too: one that disconnects is unsubscribed
    without waiting for the next fill (before: its queue stayed until a fill came, and a
    server shutdown waited on it)."""
    m = MatcherClient(served.url)

    async def leave() -> None:
        stream = m.stream_fills()
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.wait_for(subscribed(served), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await task
        await stream.aclose()

    asyncio.run(leave())
    deadline = time.monotonic() + 5
    while served.service.listeners and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not served.service.listeners, "the matcher still holds the departed client's queue"
