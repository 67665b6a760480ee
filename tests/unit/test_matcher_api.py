"""The matcher's HTTP and websocket API in-process (FastAPI TestClient, SQLite): the happy
path, and every kind of bad input getting a clear 4xx JSON error while nothing changes and
the matcher keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from matcher_support import CH, CHAIN_ID, KEYS, NOW, WAD, Clock, signed

from perpdex.matcher import sigs
from perpdex.matcher.api import MAX_BODY, create_app
from perpdex.matcher.core import Matcher, MatcherConfig
from perpdex.matcher.settler import FakeChain, FakeSettler
from perpdex.matcher.store import Store, sqlite_url
from perpdex.sdk import orders as o


def body(order: o.Order, sig: bytes) -> dict[str, Any]:
    d: dict[str, Any] = {k: str(v) for k, v in order.__dict__.items()}
    d["market"] = order.market  # numbers are accepted too
    d["signature"] = "0x" + sig.hex()
    return d


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), batch_size=1, settle_interval=0.05)
    m = Matcher(config, Store(sqlite_url(str(tmp_path / "m.db"))), FakeSettler(chain), Clock())
    with TestClient(create_app(m)) as c:
        c.chain = chain  # type: ignore[attr-defined]
        yield c


def test_place_match_book_orders_fills_stream(client: TestClient) -> None:
    with client.websocket_connect("/ws/fills") as ws:
        r = client.post("/orders", json=body(*signed(0, -2, 100)))
        assert r.status_code == 201, r.text
        maker = r.json()
        assert maker["status"] == "open" and maker["fills"] == []
        assert client.get("/book/0").json()["asks"] == [
            {"price": str(100 * WAD), "size": str(2 * WAD), "orders": 1}
        ]
        r = client.post("/orders", json=body(*signed(1, 1, 101)))
        assert r.status_code == 201
        taker = r.json()
        assert taker["status"] == "filled" and taker["fills"][0]["price"] == str(100 * WAD)
        msg = ws.receive_json()
        assert (msg["maker"], msg["taker"], msg["size"]) == (
            maker["digest"],
            taker["digest"],
            str(WAD),
        )
    mine = client.get("/orders", params={"account": maker["account"]}).json()["orders"]
    assert [(x["digest"], x["remaining"]) for x in mine] == [(maker["digest"], str(WAD))]
    fills = client.get("/fills").json()["fills"]
    assert len(fills) == 1 and fills[0]["taker"] == taker["digest"]


def test_cancel_needs_the_owner_signature(client: TestClient) -> None:
    d = client.post("/orders", json=body(*signed(0, 1, 90))).json()["digest"]
    assert client.delete(f"/orders/{d}").status_code == 401
    bad = {"X-Perpdex-Signature": "0x" + sigs.sign_cancel(d, KEYS[1]).hex()}
    assert client.delete(f"/orders/{d}", headers=bad).json()["error"] == "wrong_signer"
    good = {"X-Perpdex-Signature": "0x" + sigs.sign_cancel(d, KEYS[0]).hex()}
    r = client.delete(f"/orders/{d}", headers=good)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert client.delete(f"/orders/{d}", headers=good).status_code == 404
    assert client.get("/book/0").json()["bids"] == []


def _high_s(order: o.Order, sig: bytes) -> dict[str, Any]:
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (sigs.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    return body(order, twin)


BAD: list[tuple[str, Any, int, str]] = [
    ("malformed json", b"{not json", 422, "invalid_request"),
    ("not an object", b"[1, 2]", 422, "invalid_request"),
    ("unknown field", lambda: {**body(*signed(0, 1, 90)), "leverage": 100}, 422, "invalid_request"),
    ("float amount", lambda: {**body(*signed(0, 1, 90)), "size": 1.5}, 422, "invalid_request"),
    ("bool amount", lambda: {**body(*signed(0, 1, 90)), "nonce": True}, 422, "invalid_request"),
    (
        "missing field",
        lambda: {k: v for k, v in body(*signed(0, 1, 90)).items() if k != "nonce"},
        422,
        "invalid_request",
    ),
    ("size 0", lambda: {**body(*signed(0, 1, 90)), "size": "0"}, 422, "invalid_order"),
    ("sig not hex", lambda: {**body(*signed(0, 1, 90)), "signature": "0xzz"}, 400, "bad_signature"),
    (
        "sig short",
        lambda: {**body(*signed(0, 1, 90)), "signature": "0x" + "ab" * 64},
        400,
        "bad_signature",
    ),
    ("high s", lambda: _high_s(*signed(0, 1, 90)), 400, "bad_signature"),
    ("wrong signer", lambda: body(*signed(0, 1, 90, key=KEYS[1])), 403, "wrong_signer"),
    ("wrong chain", lambda: body(*signed(0, 1, 90, chain_id=1)), 403, "wrong_signer"),
    (
        "wrong contract",
        lambda: body(*signed(0, 1, 90, contract="0x" + "22" * 20)),
        403,
        "wrong_signer",
    ),
    (
        "tampered",
        lambda: {**body(*signed(0, 1, 90)), "limit_price": str(95 * WAD)},
        403,
        "wrong_signer",
    ),
    ("expired", lambda: body(*signed(0, 1, 90, expiry=NOW)), 422, "expired"),
    ("unknown market", lambda: body(*signed(0, 1, 90, market=1)), 422, "unknown_market"),
    (
        "post-only crossing",
        lambda: body(*signed(0, 1, 200, flags=o.FLAG_POST_ONLY)),
        409,
        "post_only_would_cross",
    ),
    ("oversized", lambda: {**body(*signed(0, 1, 90)), "x": "a" * MAX_BODY}, 413, "body_too_large"),
]


@pytest.mark.parametrize(
    ("payload", "status", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_refused_and_nothing_changes(
    client: TestClient, payload: Any, status: int, code: str
) -> None:
    client.post("/orders", json=body(*signed(3, -1, 150)))  # one resting ask
    book = client.get("/book/0").json()
    data = payload() if callable(payload) else payload
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    r = client.post("/orders", content=raw, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["detail"]
    assert client.get("/book/0").json() == book
    assert client.get("/fills").json()["fills"] == []
    assert client.get("/health").json()["ok"] is True
    assert client.post("/orders", json=body(*signed(4, 1, 90))).status_code == 201  # serving


def test_duplicate_and_chunked_oversized_refused(client: TestClient) -> None:
    b = body(*signed(0, 1, 90))
    assert client.post("/orders", json=b).status_code == 201
    r = client.post("/orders", json=b)
    assert (r.status_code, r.json()["error"]) == (409, "duplicate")

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 100 + 2):
            yield b" " * 100

    r = client.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/orders", params={"account": "nope"}).status_code == 422
    assert client.get("/book/9").status_code == 404


def test_fills_settle_through_the_settler(client: TestClient) -> None:
    import time

    client.post("/orders", json=body(*signed(0, -1, 100)))
    client.post("/orders", json=body(*signed(1, 1, 100)))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fills = client.get("/fills").json()["fills"]
        if fills[0]["state"] == "settled":
            break
        time.sleep(0.05)
    assert fills[0]["state"] == "settled"
    assert len(client.chain.settlements) == 1  # type: ignore[attr-defined]


def test_nonce_in_use_is_a_409(client: TestClient) -> None:
    first = client.post("/orders", json=body(*signed(0, 1, 90, nonce=77)))
    assert first.status_code == 201
    r = client.post("/orders", json=body(*signed(0, 2, 91, nonce=77)))
    assert (r.status_code, r.json()["error"]) == (409, "nonce_in_use")
    assert first.json()["digest"] in r.json()["detail"]
    assert client.post("/orders", json=body(*signed(1, -1, 95, nonce=77))).status_code == 201
    assert client.get("/book/0").json()["bids"][0]["orders"] == 1
    listed = client.get(
        "/orders", params={"account": first.json()["account"], "status": "rejected"}
    )
    assert listed.status_code == 200 and listed.json()["orders"] == []


def _answer(client: TestClient, raw: bytes, direct: bool) -> tuple[int, str, str, bytes]:
    client.app.direct = direct  # type: ignore[attr-defined]
    r = client.post("/orders", content=raw, headers={"content-type": "application/json"})
    return r.status_code, r.headers["content-type"], r.headers["content-length"], r.content


@pytest.mark.parametrize("payload", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_direct_post_orders_answers_as_the_fastapi_route(client: TestClient, payload: Any) -> None:
    """MatcherApp answers POST /orders without FastAPI's layers: byte for byte what the
    FastAPI route answers, for every refusal (and 503 once the matcher stopped, 413 first)."""
    assert client.app.direct is True  # type: ignore[attr-defined]  # telemetry is off here
    client.post("/orders", json=body(*signed(3, -1, 150)))
    data = payload() if callable(payload) else payload
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    assert _answer(client, raw, True) == _answer(client, raw, False)
    client.app.state.service.failed = "OperationalError: disk I/O error"  # type: ignore[attr-defined]
    direct, route = _answer(client, raw, True), _answer(client, raw, False)
    assert direct == route and direct[0] == (413 if len(raw) > MAX_BODY else 503)


def test_direct_post_orders_201_as_the_fastapi_route(tmp_path: Path) -> None:
    orders = [signed(0, -2, 100), signed(1, 1, 101), signed(2, 3, 102, flags=o.FLAG_IOC)]
    answers = []
    for direct in (True, False):
        chain = FakeChain(CHAIN_ID, CH, now=NOW)
        config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), settle_interval=60)
        db = sqlite_url(str(tmp_path / f"{direct}.db"))
        m = Matcher(config, Store(db), FakeSettler(chain), Clock())
        with TestClient(create_app(m)) as c:
            answers.append([_answer(c, json.dumps(body(*x)).encode(), direct) for x in orders])
    assert answers[0] == answers[1]
    assert [a[0] for a in answers[0]] == [201, 201, 201]
    assert json.loads(answers[0][2][3])["status"] == "cancelled"  # IOC remainder, 2 fills


@pytest.mark.parametrize("serving", [True, False])
def test_served_app_freezes_its_start_up_heap(tmp_path: Path, serving: bool) -> None:
    """`api.serve` (the CLI's and the bench's server) freezes the heap after start-up, so a
    full collection does not walk it; an app used otherwise (tests) leaves gc alone."""
    import gc

    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), settle_interval=60)
    m = Matcher(config, Store(sqlite_url(str(tmp_path / "m.db"))), FakeSettler(chain), Clock())
    app = create_app(m)
    if serving:
        app.state.freeze_heap = True  # what api.serve sets before uvicorn runs the app
    gc.unfreeze()
    try:
        with TestClient(app):
            assert (gc.get_freeze_count() > 0) is serving
    finally:
        gc.unfreeze()


def test_serve_runs_uvicorn_with_a_frozen_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from perpdex.matcher.api import serve

    got: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: got.update(app=app, **kw))
    app = create_app(Matcher(MatcherConfig(CHAIN_ID, CH, frozenset({0})), None, None))  # type: ignore[arg-type]
    serve(app, "127.0.0.1", 8555)
    assert got["app"] is app and app.state.freeze_heap is True
    assert (got["port"], got["loop"], got["http"]) == (8555, "uvloop", "httptools")


def test_group_commit__a_failed_commit_fails_what_was_queued_after_it(tmp_path: Path) -> None:
    """Orders matched while a commit is on the disk go in the next group; if that commit
    fails, the matcher's memory is ahead of its database: the queued group fails too
    (its orders may have matched against the lost ones) and nothing more is written."""
    import asyncio
    import threading

    from perpdex.matcher.service import Service, Unavailable

    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), settle_interval=60)
    m = Matcher(config, Store(sqlite_url(str(tmp_path / "m.db"))), FakeSettler(chain), Clock())
    svc = Service(m, tick=60)
    on_disk, release = threading.Event(), threading.Event()
    real_commit = m.store.commit

    def failing_commit(conn: Any) -> None:
        if on_disk.is_set():  # only the first commit fails: the disk came back
            real_commit(conn)
            return
        on_disk.set()
        release.wait(5)
        conn.rollback()
        conn.close()
        raise OSError("disk I/O error")

    async def run() -> list[BaseException | None]:
        await svc.start()
        m.store.commit = failing_commit  # type: ignore[method-assign]
        try:
            first_ops = m.submit(*_verified(m, signed(0, -1, 100)))[1]
            first = asyncio.ensure_future(svc.commit(first_ops))
            while not on_disk.is_set():
                await asyncio.sleep(0.01)
            second = asyncio.ensure_future(
                svc.commit(m.submit(*_verified(m, signed(1, 1, 100)))[1])
            )
            await asyncio.sleep(0.05)  # queued behind the commit on the disk
            release.set()
            out = await asyncio.gather(first, second, return_exceptions=True)
            with pytest.raises(Unavailable, match="OSError: disk I/O error"):
                await svc.commit([])
            return out
        finally:
            m.store.commit = real_commit  # type: ignore[method-assign]
            await svc.stop()

    results = asyncio.run(run())
    assert [type(r) for r in results] == [Unavailable, Unavailable]
    assert Store(sqlite_url(str(tmp_path / "m.db"))).open_orders() == []


def _verified(m: Matcher, signed_order: tuple[o.Order, bytes]) -> tuple[str, o.Order, bytes]:
    order, sig = signed_order
    return m.verify(order, sig), order, sig


def test_group_commit__waits_for_more_only_under_load(tmp_path: Path) -> None:
    """A lone request is committed at once; after a group of several, the committer lets
    the next group gather for `coalesce` seconds (one commit for requests that trickle in)."""
    import asyncio
    import time

    from perpdex.matcher.service import Service

    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), settle_interval=60)
    store = Store(sqlite_url(str(tmp_path / "m.db")))
    m = Matcher(config, store, FakeSettler(FakeChain(CHAIN_ID, CH, now=NOW)), Clock())
    svc = Service(m, tick=60, coalesce=0.5)

    async def run() -> tuple[float, int, int]:
        await svc.start()
        try:
            t = time.perf_counter()
            for _ in range(3):  # one at a time: no waiting
                await svc.commit([])
            alone = time.perf_counter() - t
            await asyncio.gather(*(svc.commit([]) for _ in range(4)))  # a burst: one group
            before = svc.commits

            async def later(delay: float) -> None:
                await asyncio.sleep(delay)
                await svc.commit([])

            await asyncio.gather(*(later(0.02 * i) for i in range(5)))  # trickling in
            return alone, before, svc.commits - before
        finally:
            await svc.stop()

    alone, before, trickled = asyncio.run(run())
    assert alone < 0.4 and before == 4
    assert trickled == 1


def test_settlement_loop__receipts_keep_their_turn_while_fills_pile_up(tmp_path: Path) -> None:
    """Fills queued faster than batches go out: the ticker makes new batches for one tick at
    most, then confirms receipts again (it once made batches until the queue was empty,
    so pending batches piled up unconfirmed and lost ones were not re-broadcast)."""
    import asyncio

    from perpdex.matcher.service import Service

    chain = FakeChain(CHAIN_ID, CH, now=NOW)
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), batch_size=1, settle_interval=0)
    m = Matcher(config, Store(sqlite_url(str(tmp_path / "m.db"))), FakeSettler(chain), Clock())
    m.start()
    for _ in range(100):
        m.place(*signed(0, -1, 100))
        m.place(*signed(1, 1, 100))
    assert len(m.queued) == 100
    svc = Service(m, tick=0.01)

    async def run() -> int:
        await svc.start()
        peak = 0
        try:
            for _ in range(20_000):
                peak = max(peak, len(m.pending))
                if not m.queued and not m.pending and not m.inflight():
                    break
                await asyncio.sleep(0.0005)
        finally:
            await svc.stop()
        return peak

    peak = asyncio.run(run())
    assert len(chain.settlements) == 100 and not m.queued and not m.pending
    assert peak < 50, f"{peak} batches waited for their receipts at once"
