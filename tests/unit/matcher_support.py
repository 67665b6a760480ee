"""Shared helpers of the matcher tests (test_matcher_*.py): keys, signed orders, and the
`db_url` fixture that runs a test on SQLite and on a real PostgreSQL server started for the
session (perpdex.matcher.pg). Import the fixtures into a test module with
`from matcher_support import db_url, pg_server  # noqa: F401`. `served` runs a matcher
behind uvicorn on a free 127.0.0.1 port in a thread (the SDK client and CLI tests)."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from eth_account import Account

from perpdex.matcher.api import create_app
from perpdex.matcher.core import Matcher, MatcherConfig
from perpdex.matcher.pg import NoPostgres, TempPostgres
from perpdex.matcher.service import Service
from perpdex.matcher.settler import FakeChain, FakeSettler
from perpdex.matcher.store import Store, sqlite_url
from perpdex.sdk import orders as o

CHAIN_ID = 31337
CH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
KEYS = ["0x" + f"{i:02x}" * 32 for i in range(1, 6)]
ADDRS = [Account.from_key(k).address for k in KEYS]
NOW = 1_800_000_000
WAD = 10**18
_nonce = itertools.count(1)


def account(i: int, sub: int = 0) -> int:
    return (int(ADDRS[i], 16) << 96) | sub


def signed(
    who: int,
    size: float,
    price: float,
    flags: int = 0,
    expiry: int = NOW + 3600,
    market: int = 0,
    key: str | None = None,
    chain_id: int = CHAIN_ID,
    contract: str = CH,
    nonce: int | None = None,
) -> tuple[o.Order, bytes]:
    order = o.Order(
        account=account(who),
        market=market,
        size=int(size * WAD),
        limit_price=int(price * WAD),
        expiry=expiry,
        nonce=next(_nonce) if nonce is None else nonce,
        flags=flags,
    )
    return order, o.sign_order(order, key or KEYS[who], chain_id, contract)


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_matcher(url: str, chain: FakeChain, clock: Clock, **cfg: float) -> Matcher:
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0, 1}), **cfg)  # type: ignore[arg-type]
    m = Matcher(config, Store(url), FakeSettler(chain), clock=clock)
    m.start()
    return m


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TempPostgres | None]:
    try:
        pg = TempPostgres(durable=False)
    except NoPostgres as e:
        yield None
        print(f"\n*** PostgreSQL tests SKIPPED: {e} ***")
        return
    with pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: TempPostgres | None) -> str:
    if request.param == "sqlite":
        return sqlite_url(str(tmp_path / "matcher.db"))
    if pg_server is None:
        pytest.skip(
            "PostgreSQL server binaries are absent: `apt-get install -y postgresql` "
            "(.ci/run does) to run the PostgreSQL backend tests"
        )
    return pg_server.new_database("m")


@dataclass
class Served:
    url: str
    service: Service
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the matcher server did not stop"


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    config = MatcherConfig(CHAIN_ID, CH, frozenset({0}), batch_size=1, settle_interval=0.05)
    store = Store(sqlite_url(str(tmp_path / "m.db")))
    m = Matcher(config, store, FakeSettler(FakeChain(CHAIN_ID, CH, now=NOW)), Clock())
    app = create_app(m)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # a bounded shutdown all the same: a regression in the websocket handler's
    # disconnect watch must fail a test, not hang the suite
    cfg = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the matcher server to start")
    s = Served(f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.service, server, thread)
    yield s
    if thread.is_alive():
        s.stop()


def sign(who: int, size: float, price: float, **kw: object) -> o.SignedOrder:
    return o.SignedOrder(*signed(who, size, price, **kw))  # type: ignore[arg-type]
