"""`perpdex dashboard` against the test chain, in a real browser.

The browser test deploys (the `protocol` fixture), opens a portfolio sub-account with two
legs and an isolated one with a loss cap, starts `perpdex dashboard` as its own process
on a free loopback port (reading the anvil over JSON-RPC, as a user would), and loads the
page in Debian's headless Chromium driven by playwright-core (tests/browser/driver.js):
the figures shown (equity, health, the liquidation price of each leg, P&L) equal the
SDK's at the same block, and after a trade the page updates without a reload (a marker
set in the page survives). Screenshots go to build/screenshots/ and are checked to be
PNGs of the page. Skips only when chromium is absent (.ci/run installs it).

The SDK reads the dashboard adds (`PerpdexClient.liquidations`, `liquidation_starts`,
`mark_history`) and the `Tracker` document are checked against the chain without a
browser: a liquidation started by a keeper shows up as running, with its auction.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from liquidation_helpers import LiqWorld, funded_world

from perpdex.cli.jsonout import num
from perpdex.dashboard.server import Hub, create_app
from perpdex.dashboard.state import Tracker
from perpdex.sdk import history as hist
from perpdex.sdk.client import Deployment, PerpdexClient
from perpdex.sdk.lite import ReadClient
from perpdex.units import from_wad

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "browser" / "driver.js"
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
USDC = 10**6


# --- formatting as the page does it (dashboard.js: half-up on the decimal string) -----------


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def usd(value: Decimal) -> str:
    q = _round(value, 2)
    return f"{'-' if q < 0 else ''}${abs(q):,.2f}"


def price(value: Decimal | None) -> str:
    if value is None:
        return "none"
    places = 2 if abs(value) >= 1000 else (4 if abs(value) >= 1 else 6)
    q = _round(value, places)
    return f"{'-' if q < 0 else ''}${abs(q):,.{places}f}"


def health(value: Decimal | None) -> str:
    return "-" if value is None else f"{_round(value, 2):,.2f}×"


# --- the server and the browser -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """tests/browser/driver.js: one JSON command a line, one JSON answer a line."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed: the browser test needs it (make setup)")
        if not (ROOT / "node_modules" / "playwright-core").exists():
            pytest.fail("node_modules/playwright-core is missing: run `make setup` (npm ci)")
        self.proc = subprocess.Popen(
            [node, str(DRIVER)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "CHROMIUM": CHROMIUM},
        )

    def __call__(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the browser driver died during {op}"
        answer: dict[str, Any] = json.loads(line)
        assert answer["ok"], f"{op}: {answer.get('error')}"
        return answer

    def close(self) -> None:
        try:
            self("close")
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=30)


def start_dashboard(
    rpc: str, manifest: Path, owner: str, cwd: Path, port: int
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perpdex.cli.main",
            "--rpc",
            rpc,
            "--deployment",
            str(manifest),
            "dashboard",
            "--owner",
            owner,
            "--port",
            str(port),
            "--interval",
            "0.2",
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"perpdex dashboard exited with {proc.returncode}: {out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("perpdex dashboard did not start listening within 90 s")


@contextlib.contextmanager
def served(document: dict[str, Any]) -> Iterator[str]:
    """The dashboard's app serving one fixed document on a free loopback port."""
    import uvicorn

    hub = Hub()
    hub.set_document(document)
    hub.set_status(ok=True, error=None, head=document["block_number"])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def cell(fig: dict[str, Any], field: str, account: str, market: str | None = None) -> Any:
    found = [
        c
        for c in fig["cells"]
        if c["field"] == field and c["account"] == account and c["market"] == market
    ]
    assert len(found) == 1, f"{field} of {account} {market}: {len(found)} cells"
    return found[0]


def check_figures(fig: dict[str, Any], reader: ReadClient, owner: str) -> int:
    """The page's figures equal the SDK's at the page's block; returns how many checked."""
    book = reader.strategies(owner)
    assert fig["block"] == book.block_number, "the page is not at the chain's head"
    checked = 0
    for line in book.lines:
        a = f"{line.info.id:#x}"
        for field, value, text in (
            ("equity", line.equity, usd(line.equity)),
            ("margin_used", line.margin_used, usd(line.margin_used)),
            ("health", line.health, health(line.health)),
        ):
            c = cell(fig, field, a)
            assert c["value"] == num(value), (field, a)
            assert c["text"] == text, (field, a, c["text"])
            checked += 1
        c = cell(fig, "total_pnl", a)
        assert c["value"] == num(line.total_pnl)
        checked += 1
        for p in reader.portfolio(line.info.id).positions:
            c = cell(fig, "liquidation_price", a, p.symbol)
            assert c["value"] == num(p.liquidation_price)
            assert c["text"] == price(p.liquidation_price), (p.symbol, c["text"])
            assert cell(fig, "size", a, p.symbol)["value"] == num(p.size)
            checked += 2
    assert cell(fig, "equity", "total")["value"] == num(book.equity)
    return checked + 1


def check_png(path: Path) -> tuple[int, int]:
    """A PNG of a real page: signature, IHDR size, and more than a handful of colours."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1400 and height > 900, (width, height)
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, f"{path} looks blank"
    return width, height


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def rpc_url(chain: Any) -> str:
    return str(chain.provider.uri)


@pytest.fixture
def manifest(protocol: Any, tmp_path: Path) -> Path:
    return Deployment.from_protocol(protocol).write(tmp_path / "deployments" / "local.json")


@pytest.fixture
def owner_accounts(protocol: Any, trader: Any, vault_pool: Any) -> dict[str, int]:
    """The trader's strategies: #0 an isolated BTC long with a loss cap, #1 a portfolio
    ETH long / SOL short pair, a price move and a refresh (P&L and marks' history)."""
    client = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    trend = client.open_account("trend")
    pair = client.open_account("pair", portfolio=True)
    client.deposit(trend, 30_000)
    client.deposit(pair, 40_000)
    client.trade(trend, "BTC", "0.5")
    client.trade(pair, "ETH", "8")
    client.trade(pair, "SOL", "-100")
    client.set_loss_cap(trend, 20_000)
    for sym, usd_ in (("BTC", 101_000), ("ETH", 2_950)):
        for feed in protocol.feeds[sym]:
            feed.set_answer(usd_ * 10**8, sender=trader)
    client.refresh()
    client.trade(trend, "BTC", "-0.1")
    return {"trend": trend, "pair": pair}


# --- the browser test ----------------------------------------------------------------------------


def test_dashboard__page_shows_the_sdk_figures_and_updates_live(
    protocol, trader, rpc_url, manifest, owner_accounts, tmp_path
):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    t0 = time.monotonic()
    reader = ReadClient(rpc_url, Deployment.load(manifest))
    owner = str(trader.address)
    port = free_port()
    server = start_dashboard(rpc_url, manifest, owner, tmp_path, port)
    browser = Browser()
    try:
        browser("open", url=f"http://127.0.0.1:{port}/", timeout_ms=30_000)
        fig = browser("figures")
        assert fig["errors"] == []
        assert fig["live"] == "live"
        assert fig["rebalancer"] == "not running"  # no .keeper/rebalance-local.json
        checked = check_figures(fig, reader, owner)
        assert checked >= 15
        SHOTS.mkdir(parents=True, exist_ok=True)
        first = SHOTS / "dashboard-initial.png"
        browser("screenshot", path=str(first))

        # a trade: a new block changes the figures; the server pushes them to the page
        browser("mark")
        block = fig["block"]
        client = PerpdexClient.from_protocol(protocol, trader)
        client.trade(owner_accounts["pair"], "ETH", "-3")
        after = browser("wait_head", above=block, timeout_ms=30_000)
        assert after["mark"], "the page reloaded instead of updating in place"
        assert after["version"] > fig["version"]
        pair = f"{owner_accounts['pair']:#x}"
        assert cell(after, "size", pair, "ETH")["value"] == "5"
        check_figures(after, reader, owner)
        assert after["errors"] == []
        second = SHOTS / "dashboard-after-trade.png"
        browser("screenshot", path=str(second))
        for shot in (first, second):
            check_png(shot)
    finally:
        browser.close()
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert server.returncode in (0, -15), out
    elapsed = time.monotonic() - t0
    print(f"browser test: {elapsed:.1f} s (server start, two page reads, a live update)")


# --- the SDK reads behind the page, without a browser -----------------------------------------


@pytest.fixture
def dash_liq(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> LiqWorld:
    return funded_world(protocol, chain, admin, lp, 1_000)


def test_tracker__a_running_liquidation_with_its_auction(
    dash_liq, protocol, trader, keeper, rpc_url
):
    keeper_acct = dash_liq.account(keeper, 200_000, name="keeper")
    victim = dash_liq.btc_long(trader, 12_000)
    price_ = dash_liq.price_for_health(victim.account, Decimal("0.9"))
    dash_liq.hold({"BTC": price_})
    dash_liq.auction.start(victim.account, keeper_acct, sender=keeper)

    reader = ReadClient(rpc_url, Deployment.from_protocol(protocol))
    assert reader.liquidation_starts() == (victim.account,)
    [q] = reader.liquidations([victim.account])
    active, started, lot_left, lot_notional, tranche, _ = dash_liq.state(victim.account)
    assert q.in_liquidation and q.tranche == tranche == 1
    assert q.auction_active == bool(active) and q.clock_start == started
    assert q.lot_left == from_wad(lot_left) and q.lot_notional == from_wad(lot_notional)
    assert q.discount == from_wad(int(dash_liq.auction.current_discount(victim.account)))
    assert q.deadline == int(dash_liq.auction.deadline(victim.account)) > 0
    assert q.margin == reader.margin(victim.account)
    ape_side = PerpdexClient.from_protocol(protocol)
    assert ape_side.liquidations([victim.account]) == [q]  # both transports agree

    # the keeper's own dashboard: the victim is someone else's, seen through its start
    doc = Tracker(reader, str(keeper.address)).read()
    [row] = doc["liquidations"]["running"]
    assert row["id"] == f"{victim.account:#x}" and not row["own"]
    assert row["tranche"] == 1 and row["lot_left"] == num(q.lot_left)
    # the trader's dashboard: its own account, in liquidation
    mine = Tracker(reader, str(trader.address)).read()
    assert [r["own"] for r in mine["liquidations"]["running"]] == [True]
    [acct] = mine["strategies"]["accounts"]
    assert acct["in_liquidation"] is True

    # the page lays the running auction out (served from this document, no poller)
    if not Path(CHROMIUM).exists():
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served(mine) as url:
        browser = Browser()
        try:
            browser("open", url=url, timeout_ms=30_000)
            fig = browser("figures")
            browser("screenshot", path=str(SHOTS / "dashboard-liquidation.png"))
        finally:
            browser.close()
    assert fig["errors"] == []
    a = f"{victim.account:#x}"
    assert cell(fig, "lot_left", a)["value"] == num(q.lot_left)
    assert cell(fig, "discount", a)["value"] == num(q.discount)
    assert "in liquidation" in cell(fig, "health", a)["text"]


def test_mark_history__the_marks_the_chain_recorded_and_their_returns(
    dash_liq, protocol, rpc_url, chain
):
    start = chain.blocks.head.number + 1
    moves = (
        (101_000, 3_030, 150),
        (99_000, 2_940, 149),
        (102_000, 3_090, 147),
        (100_000, 3_000, 151),
    )
    for btc, eth, sol in moves:  # ETH moves with BTC; SOL does not
        dash_liq.post({"BTC": btc, "ETH": eth, "SOL": sol})
    reader = ReadClient(rpc_url, Deployment.from_protocol(protocol))
    marks = reader.mark_history(start)
    assert sorted(marks) == [0, 1, 2]
    for m, points in marks.items():
        assert [p.price for p in points][-1] == from_wad(int(protocol.clearinghouse.mark(m)[0]))
    corr = hist.returns_correlation(marks, protocol.symbols)
    assert corr.symbols == ("BTC", "ETH", "SOL")
    assert corr.points == len(moves) - 1 == len(corr.returns[0])  # from the first post on
    assert corr.matrix is not None
    assert corr.matrix[0][1] is not None and corr.matrix[0][1] > Decimal("0.99")
    assert corr.returns[0][0] == Decimal(99_000) / Decimal(101_000) - 1
    doc = Tracker(reader, str(dash_liq.who.address), from_block=start).read()
    assert doc["market_correlation"]["points"] == corr.points
