"""`perpdex dashboard` without a chain: bad input stops it with one line and exit code 1
before it listens (a missing manifest, a stopped node, a taken port), the rebalancer's
row, the server's push rule (only when a new block changes the figures), its routes, and
the markets' returns correlation. The page itself is tested in a browser against the
chain: tests/integration/test_dashboard.py."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

from cli_helpers import failed
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from perpdex.cli.main import app
from perpdex.dashboard.server import Hub, Poller, create_app, sse
from perpdex.dashboard.state import figures, rebalancer_status
from perpdex.errors import PerpdexError
from perpdex.sdk.history import MIN_POINTS, MarkPoint, returns_correlation

MANIFEST = {
    "network": "local",
    "chain_id": 31337,
    "contracts": {
        "token": "0x" + "11" * 20,
        "oracle": "0x" + "22" * 20,
        "clearinghouse": "0x" + "33" * 20,
        "clearinghouse_ops": "0x" + "44" * 20,
        "clearinghouse_admin": "0x" + "55" * 20,
    },
    "markets": ["BTC", "ETH"],
    "settlement_decimals": 6,
}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400", "PERPDEX_RPC_URL": None})


# --- bad input: one line, exit code 1, nothing served ----------------------------------------


def test_missing_manifest__clear_error_exit_1(tmp_path: Path):
    port = closed_port()
    missing = tmp_path / "deployments" / "nowhere.json"
    rpc = f"http://127.0.0.1:{closed_port()}"
    result = run("--rpc", rpc, "--deployment", str(missing), "dashboard", "--port", str(port))
    line = failed(result)
    assert "no deployment manifest at" in line and "nowhere.json" in line
    with socket.socket() as s:  # nothing listens on the page's port
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_stopped_node__clear_error_exit_1(tmp_path: Path):
    manifest = tmp_path / "local.json"
    manifest.write_text(json.dumps(MANIFEST))
    port = closed_port()
    rpc = f"http://127.0.0.1:{closed_port()}"
    result = run("--rpc", rpc, "--deployment", str(manifest), "dashboard", "--port", str(port))
    line = failed(result)
    assert f"no JSON-RPC answer from {rpc}" in line
    assert "perpdex devnet up" in line  # what to do next
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_port_taken__clear_error_before_reading(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        missing = tmp_path / "nowhere.json"  # never read: the port is checked first
        result = run("--deployment", str(missing), "dashboard", "--port", str(port))
    line = failed(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_remote_network_without_rpc__asks_for_it():
    result = run("--network", "arbitrum:sepolia:node", "dashboard")
    line = failed(result)
    assert "give --rpc URL" in line


# --- the rebalancer's row ------------------------------------------------------------------------


def test_rebalancer__absent_state_file__not_running(tmp_path: Path):
    row = rebalancer_status(tmp_path / ".keeper" / "rebalance-local.json")
    assert row["status"] == "not running" and row["updated"] is None and row["fields"] == {}


def test_rebalancer__state_file_with_and_without_its_lock(tmp_path: Path):
    state = tmp_path / "rebalance-local.json"
    state.write_text(json.dumps({"version": 1, "cursor": 42, "targets": {"BTC": "0.5"}}))
    row = rebalancer_status(state)
    assert row["status"] == "stopped"
    assert row["fields"] == {"version": 1, "cursor": 42, "targets": '{"BTC": "0.5"}'}
    lock = state.with_name(state.name + ".lock")
    with lock.open("a+") as f:  # what perpdex.keepers.state.StateLock holds while it runs
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert rebalancer_status(state)["status"] == "running"
    assert rebalancer_status(state)["status"] == "stopped"


# --- the server ----------------------------------------------------------------------------------


def _doc(block: int, equity: str) -> dict[str, Any]:
    return {"block_number": block, "block_time": 1000 + block, "refreshed_at": 5, "equity": equity}


def test_hub__pushes_a_new_block_only_when_the_figures_change():
    hub = Hub()
    loop = asyncio.new_event_loop()
    try:
        hub.bind(loop)
        q = hub.subscribe()
        assert hub.set_document(_doc(10, "100")) is True
        assert hub.set_document(_doc(11, "100")) is False  # same figures, a later block
        assert hub.set_document(_doc(12, "99.5")) is True
        loop.run_until_complete(asyncio.sleep(0))  # deliver the thread-safe callbacks
        pushed = [q.get_nowait() for _ in range(q.qsize())]
    finally:
        loop.close()
    states = [json.loads(m.split("data: ", 1)[1]) for m in pushed if m.startswith("event: state")]
    assert [(s["block_number"], s["equity"], s["version"]) for s in states] == [
        (10, "100", 1),
        (12, "99.5", 2),
    ]
    assert figures(_doc(1, "7")) == figures(_doc(2, "7")) == {"equity": "7"}


def test_sse__one_event_on_one_data_line():
    assert sse("state", {"a": "x\ny"}) == 'event: state\ndata: {"a":"x\\ny"}\n\n'


def test_routes__page_assets_state_and_health():
    hub = Hub()
    with TestClient(create_app(hub)) as http:
        page = http.get("/")
        assert page.status_code == 200 and "/static/dashboard.js" in page.text
        assert (
            http.get("/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        )
        assert http.get("/static/other.js").status_code == 404
        assert http.get("/api/state").status_code == 503  # no read yet
        hub.set_document(_doc(3, "1"))
        state = http.get("/api/state").json()
        assert state["block_number"] == 3 and state["version"] == 1
        assert http.get("/health").json()["ok"] is True


# --- the markets' returns correlation ----------------------------------------------------------


def _marks(prices: dict[int, list[tuple[int, str]]]) -> dict[int, list[MarkPoint]]:
    return {
        m: [MarkPoint(m, b, 0, Decimal(p), Decimal(0)) for b, p in points]
        for m, points in prices.items()
    }


def test_returns_correlation__aligned_on_moves_from_the_first_full_block():
    marks = _marks(
        {
            0: [(1, "100"), (3, "110"), (5, "99"), (7, "108.9")],
            1: [(2, "10"), (3, "11"), (5, "9.9"), (6, "9.9"), (7, "10.89")],
        }
    )
    corr = returns_correlation(marks, ["BTC", "ETH"])
    # block 1: only BTC priced; 2: both priced (first full block, no step); 6: no move
    assert corr.blocks == (3, 5, 7)
    assert corr.returns[0] == (Decimal("0.1"), Decimal("-0.1"), Decimal("0.1"))
    assert corr.returns[1] == (Decimal("0.1"), Decimal("-0.1"), Decimal("0.1"))
    assert corr.matrix is not None and corr.matrix[0][1] == Decimal(1)
    assert corr.symbols == ("BTC", "ETH")


def test_returns_correlation__too_few_steps_or_a_flat_market():
    few = returns_correlation(_marks({0: [(1, "100"), (2, "101")], 1: [(1, "5"), (2, "6")]}))
    assert few.points == 1 < MIN_POINTS and few.matrix is None and not few.enough
    flat = returns_correlation(
        _marks({0: [(1, "100"), (2, "101"), (3, "99"), (4, "102")], 1: [(1, "5")]})
    )
    assert flat.matrix is not None and flat.matrix[0][1] is None  # a flat series: undefined


class _FlakyTracker:
    """A Tracker stand-in: the node answers, stops, then answers again."""

    def __init__(self) -> None:
        self.up = True
        self.block = 7
        self.reads = 0

    def head(self) -> int:
        if not self.up:
            raise PerpdexError("no JSON-RPC answer from http://127.0.0.1:1 (refused)")
        return self.block

    def read(self) -> dict[str, Any]:
        self.reads += 1
        return _doc(self.block, "100")


def test_poller__reads_a_new_block_once_keeps_the_figures_when_the_node_stops(caplog):
    tracker = _FlakyTracker()
    hub = Hub()
    poller = Poller(tracker, hub, interval=0.1)  # type: ignore[arg-type]
    assert poller.poll(None) == 7 and tracker.reads == 1
    assert poller.poll(7) == 7 and tracker.reads == 1  # same head: nothing re-read
    tracker.up = False
    with caplog.at_level(logging.WARNING, logger="perpdex.dashboard"):
        assert poller.poll(7) is None
        assert poller.poll(None) is None
    assert hub.status["ok"] is False and "no JSON-RPC answer" in hub.status["error"]
    assert len(caplog.records) == 1  # logged once per outage
    snap = hub.snapshot()
    assert snap is not None and snap["block_number"] == 7  # the last figures stay
    tracker.up, tracker.block = True, 8
    assert poller.poll(None) == 8
    assert hub.status == {**hub.status, "ok": True, "error": None, "head": 8}
