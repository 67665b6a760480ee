"""The matcher settling into the chain (issue 12 item 3): orders placed through its HTTP
API, matched, settled by `ChainSettler` into the deployed Clearinghouse on anvil, and the
positions read back on chain.

- happy path: fills settle in one batch; a second order with a nonce in use is refused
  with 409 `nonce_in_use`;
- bad fills: a batch holding a fill whose maker order was cancelled on chain and a fill
  whose maker cannot margin it settles its good fills; the two bad orders are
  `rejected`, their takers get their amounts back (they rest again), nothing settles twice;
- a crash after broadcast (or before it) mid-batch: the restarted matcher confirms (or
  sends) the recorded transaction and settles its fills exactly once;
- a cancel on chain (`cancel_order`, `cancel_below`) drops orders from the book through
  the chain's events;
- `perpdex matcher serve --settler chain` (a subprocess, the deployment's manifest, the
  key in PERPDEX_MATCHER_KEY) settles too, and a wrong node, address or key is refused
  with what to do.

The matcher runs in-process (TestClient: its asyncio service, a SQLite file) and talks
JSON-RPC to the test session's anvil with its own funded key, so each test's
transactions are part of ape's per-test snapshot and reverted with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from perpdex.constants import WAD
from perpdex.matcher import store as st
from perpdex.matcher.api import create_app
from perpdex.matcher.core import Matcher, MatcherConfig
from perpdex.matcher.service import Service
from perpdex.matcher.settler import ChainSettler, Prepared, SettlerUnavailable, SimulatedCrash
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs
from perpdex.sdk.lite.rpc import Rpc
from perpdex.sdk.manifest import Deployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from test_signed_orders import World

BTC = 0


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


@pytest.fixture
def rpc_url(chain: Any) -> str:
    return str(chain.provider.uri)


@pytest.fixture
def settler_key(chain: Any) -> str:
    """A fresh key with gas money: no ape account shares its nonces."""
    acct = Account.create()
    chain.provider.set_balance(acct.address, 10**20)
    return str(acct.key.hex())


class Harness:
    """Starts matchers on one SQLite file against the session's deployment."""

    def __init__(self, w: World, rpc_url: str, key: str, db: str) -> None:
        self.w, self.rpc_url, self.key, self.db = w, rpc_url, key, db

    def matcher(self, settler: ChainSettler | None = None, **cfg: Any) -> Matcher:
        config = MatcherConfig(
            self.w.chain.chain_id,
            self.w.ch.address,
            frozenset({0, 1, 2}),
            **{"batch_size": 20, "settle_interval": 0.2, "resend_after": 1.0, **cfg},
        )
        return Matcher(config, st.Store(self.db), settler or self.settler())

    def settler(self) -> ChainSettler:
        return ChainSettler(
            self.rpc_url, self.w.ch.address, self.key, chain_id=self.w.chain.chain_id
        )

    @contextmanager
    def serve(self, m: Matcher, reconcile_every: float = 0.2) -> Iterator[TestClient]:
        app = create_app(m, Service(m, tick=0.02, reconcile_every=reconcile_every))
        with TestClient(app) as client:
            yield client


@pytest.fixture
def harness(w: World, rpc_url: str, settler_key: str, tmp_path: Path) -> Harness:
    w.refresh()  # fresh oracle prices: `settle` needs a quorum
    return Harness(w, rpc_url, settler_key, f"sqlite:///{tmp_path / 'matcher.db'}")


def expiry(w: World) -> int:
    return max(int(w.chain.pending_timestamp), int(time.time())) + 3_600


def place(client: httpx.Client, w: World, account: int, size: float, **kw: Any) -> Any:
    """Signs (the account's owner) and posts an order; returns the HTTP response."""
    owner = w.maker_owner if account == w.maker else w.taker_owner
    owner = kw.pop("owner", owner)
    order = w.order(account, size, expiry=expiry(w), **kw)
    signed = w.sign(order, owner)
    body: dict[str, Any] = {k: str(v) for k, v in order.__dict__.items()}
    body["signature"] = "0x" + signed.signature.hex()
    return client.post("/orders", json=body)


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait(client: httpx.Client, done: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = client.get("/health").json()
        if done(health):
            return
        assert time.monotonic() < deadline, f"matcher did not get there: {health}"
        time.sleep(0.05)


def settled(h: dict[str, Any]) -> bool:
    busy = ("queued_fills", "inflight_fills", "pending_batches", "deferred_fills")
    return not any(h[k] for k in busy)


def fills_by_state(client: TestClient) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in client.get("/fills").json()["fills"]:
        out.setdefault(f["state"], []).append(int(f["seq"]))
    return out


def matched_events(w: World, since: int) -> list[cs.ChainEvent]:
    rpc = Rpc(str(w.chain.provider.uri))
    logs = rpc(
        "eth_getLogs",
        {"address": w.ch.address, "fromBlock": hex(since), "toBlock": "latest"},
    )
    return [e for e in o.decode_settlement_logs(logs) if isinstance(e, cs.FillEvent)]


# --- settlement through the API ----------------------------------------------------------


def test_orders_settle_on_chain_through_the_api(w: World, harness: Harness) -> None:
    start = int(w.chain.blocks.head.number) + 1
    before = (w.size(w.maker), w.size(w.taker))
    with harness.serve(harness.matcher()) as client:
        ask = ok(place(client, w, w.maker, -1.0))
        # the chain keeps one replay state per (account, nonce): a second order is refused
        again = place(client, w, w.maker, -0.5, nonce=int(ask["nonce"]))
        assert again.status_code == 409 and again.json()["error"] == "nonce_in_use"
        t1 = ok(place(client, w, w.taker, 0.6))
        t2 = ok(place(client, w, w.taker, 0.4))
        assert [len(t["fills"]) for t in (t1, t2)] == [1, 1]
        wait(client, settled)
        assert fills_by_state(client) == {"settled": [1, 2]}
        mine = client.get("/orders", params={"account": str(w.maker)}).json()["orders"]
        assert [(x["status"], x["remaining"]) for x in mine] == [("filled", "0")]
    assert (w.size(w.maker), w.size(w.taker)) == (before[0] - WAD, before[1] + WAD)
    events = matched_events(w, start)
    assert sorted(e.size for e in events) == [4 * WAD // 10, 6 * WAD // 10]
    assert {e.maker for e in events} == {ask["digest"]}


def test_bad_fills_are_dropped_and_the_good_ones_settle(
    w: World, harness: Harness, h: Any, stranger: Any
) -> None:
    """Four fills in one batch: the second's maker order was cancelled on chain (before
    the matcher started, so no event told it), the third's maker holds $300 against a
    1 BTC short. The simulation drops both, blames the makers and settles the other two
    in one transaction."""
    poor = h.funded_account(stranger, 300, name="poor")
    start = int(w.chain.blocks.head.number) + 1
    gone = w.sign(w.order(w.maker, -0.5, expiry=expiry(w)), w.maker_owner)
    w.orders.cancel_order(gone.order.as_message(), sender=w.maker_owner)
    w.refresh()
    before = (w.size(w.maker), w.size(w.taker), w.size(poor))
    m = harness.matcher(batch_size=4, settle_interval=60)
    with harness.serve(m) as client:
        ok(place(client, w, w.maker, -0.5))
        t1 = ok(place(client, w, w.taker, 0.5))
        body = {k: str(v) for k, v in gone.order.__dict__.items()}
        cancelled = ok(
            client.post("/orders", json={**body, "signature": "0x" + gone.signature.hex()})
        )
        t2 = ok(place(client, w, w.taker, 0.5))
        broke = ok(place(client, w, poor, -1.0, owner=stranger))
        t3 = ok(place(client, w, w.taker, 1.0))
        ok(place(client, w, w.maker, -0.25))
        t4 = ok(place(client, w, w.taker, 0.25))
        assert all(len(t["fills"]) == 1 for t in (t1, t2, t3, t4))
        wait(client, settled)
        assert fills_by_state(client) == {"settled": [1, 4], "failed": [2, 3]}

        def status(account: int) -> dict[str, tuple[str, str]]:
            rows = client.get("/orders", params={"account": str(account)}).json()["orders"]
            return {x["digest"]: (x["status"], x["remaining"]) for x in rows}

        assert status(w.maker)[cancelled["digest"]] == ("rejected", str(WAD // 2))
        assert status(poor)[broke["digest"]] == ("rejected", str(WAD))
        takers = status(w.taker)
        # the good takers of the refused fills got their amounts back and rest again
        assert takers[t2["digest"]] == ("open", str(WAD // 2))
        assert takers[t3["digest"]] == ("open", str(WAD))
        assert takers[t1["digest"]] == takers[t4["digest"]] == ("filled", "0")
        book = client.get("/book/0").json()
        assert book["asks"] == [] and book["bids"][0]["size"] == str(3 * WAD // 2)
        batches = m.store.batch_states()
        assert list(batches.values()) == [st.SETTLED]
    assert w.size(w.maker) == before[0] - 3 * WAD // 4
    assert w.size(w.taker) == before[1] + 3 * WAD // 4
    assert w.size(poor) == before[2] == 0
    assert len(matched_events(w, start)) == 2


# --- restart mid-batch -------------------------------------------------------------------


class Crashing(ChainSettler):
    """Dies (stops the service's chain work, as a killed process would) right after
    sending the batch ("after") or right before ("before")."""

    when = "after"
    service: Service | None = None

    def broadcast(self, prepared: Prepared) -> None:
        if self.when == "after":
            super().broadcast(prepared)
        assert self.service is not None
        self.service.failed = f"simulated crash {self.when} broadcast"
        raise SimulatedCrash(self.service.failed)


@pytest.mark.parametrize("when", ["after", "before"])
def test_crash_mid_batch__restart_settles_once(w: World, harness: Harness, when: str) -> None:
    start = int(w.chain.blocks.head.number) + 1
    before = (w.size(w.maker), w.size(w.taker))
    crashing = Crashing(harness.rpc_url, w.ch.address, harness.key)
    crashing.when = when
    m1 = harness.matcher(crashing, batch_size=2, settle_interval=60)
    svc = Service(m1, tick=0.02)
    crashing.service = svc
    with TestClient(create_app(m1, svc)) as client:
        ok(place(client, w, w.maker, -1.0))
        ok(place(client, w, w.taker, 0.5))
        ok(place(client, w, w.taker, 0.5))
        deadline = time.monotonic() + 60
        while svc.failed is None:
            assert time.monotonic() < deadline, "the batch was never sent"
            time.sleep(0.05)
    (batch,) = m1.store.pending_batches()
    receipt = None
    if when == "after":  # anvil mines a sent transaction a moment after taking it
        rpc = Rpc(harness.rpc_url)
        while receipt is None:
            assert time.monotonic() < deadline, "the sent batch was never mined"
            receipt = rpc("eth_getTransactionReceipt", batch.tx_id)
    mined = (w.size(w.maker), w.size(w.taker))
    assert mined == ((before[0] - WAD, before[1] + WAD) if when == "after" else before)

    m2 = harness.matcher()
    with harness.serve(m2) as client:
        wait(client, settled)
        assert fills_by_state(client) == {"settled": [1, 2]}
    assert m2.store.batch_states() == {int(batch.id): st.SETTLED}
    # the recorded bytes, sent again, are refused by the chain: nothing fills twice
    harness.settler().broadcast(Prepared(batch.tx_id, bytes(batch.payload)))
    assert (w.size(w.maker), w.size(w.taker)) == (before[0] - WAD, before[1] + WAD)
    assert len(matched_events(w, start)) == 2


# --- cancels on chain --------------------------------------------------------------------


def test_cancel_on_chain_drops_orders_from_the_book(w: World, harness: Harness) -> None:
    with harness.serve(harness.matcher()) as client:
        a = ok(place(client, w, w.maker, -1.0))
        b = ok(place(client, w, w.maker, -1.0, limit_price=w.btc + 10 * WAD))
        c = ok(place(client, w, w.maker, -1.0, limit_price=w.btc + 20 * WAD))
        assert len(client.get("/book/0").json()["asks"]) == 3
        order_a = o.Order(
            **{k: int(v) for k, v in a.items() if k in o.Order.__dataclass_fields__}  # type: ignore[arg-type]
        )
        w.orders.cancel_order(order_a.as_message(), sender=w.maker_owner)
        w.orders.cancel_below(w.maker, int(c["nonce"]), sender=w.maker_owner)  # b, not c

        def statuses() -> dict[str, str]:
            rows = client.get("/orders", params={"account": str(w.maker)}).json()["orders"]
            return {x["digest"]: x["status"] for x in rows}

        def only_c(_: dict[str, Any]) -> bool:
            # the book (in memory) drops a cancelled order before the store commits its
            # status: wait for both, then check what each says
            asks = client.get("/book/0").json()["asks"]
            if [x["price"] for x in asks] != [c["limit_price"]]:
                return False
            return list(statuses().values()).count("open") == 1

        wait(client, only_c, timeout=30)
        assert [x["price"] for x in client.get("/book/0").json()["asks"]] == [c["limit_price"]]
        assert statuses() == {
            a["digest"]: "cancelled",
            b["digest"]: "cancelled",
            c["digest"]: "open",
        }


# --- the command line --------------------------------------------------------------------


def test_chain_settler_checks_the_node_first(w: World, harness: Harness) -> None:
    url = harness.rpc_url
    with pytest.raises(SettlerUnavailable, match="is chain 31337, the deployment is chain 1"):
        ChainSettler(url, w.ch.address, harness.key, chain_id=1)
    with pytest.raises(SettlerUnavailable, match=r"no contract at .*deploy"):
        ChainSettler(url, "0x" + "12" * 20, harness.key)
    with pytest.raises(SettlerUnavailable, match=r"has no ETH .*fund it"):
        ChainSettler(url, w.ch.address, str(Account.create().key.hex()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serve__settles_into_the_chain(
    w: World, harness: Harness, protocol: Any, tmp_path: Path
) -> None:
    manifest = Deployment.from_protocol(protocol).write(tmp_path / "local.json")
    port = _free_port()
    cmd = [
        *(sys.executable, "-m", "perpdex.cli.main", "--deployment", str(manifest)),
        *("matcher", "serve", "--rpc", harness.rpc_url, "--port", str(port)),
        *("--db", f"sqlite:///{tmp_path / 'cli.db'}", "--settle-interval", "0.2"),
    ]
    env = {**os.environ, "PERPDEX_MATCHER_KEY": harness.key}
    before = (w.size(w.maker), w.size(w.taker))
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - the process writes it
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the matcher did not start"
                time.sleep(0.2)
            ok(place(client, w, w.maker, -0.5))
            ok(place(client, w, w.taker, 0.5))
            wait(client, settled)
            assert [f["state"] for f in client.get("/fills").json()["fills"]] == ["settled"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert (w.size(w.maker), w.size(w.taker)) == (before[0] - WAD // 2, before[1] + WAD // 2)
    assert "settling into" in (tmp_path / "serve.log").read_text()
