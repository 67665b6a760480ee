"""`perpdex orders book` and `perpdex orders fills [--follow]` against a real matcher
(matcher_support.served: uvicorn on a free port in a thread)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cli_helpers import failed, ok
from matcher_support import Served, account, served, sign, wait_for  # noqa: F401
from typer.testing import CliRunner

from perpdex.cli.main import app
from perpdex.sdk.matcher_client import MatcherClient

ENV = {"COLUMNS": "200"}


def _manifest(tmp_path: Path) -> Path:
    addr = "0x" + "11" * 20
    c = {k: addr for k in ("token", "oracle", "clearinghouse")}
    c |= {"clearinghouse_ops": addr, "clearinghouse_admin": addr}
    data = {"chain_id": 31337, "contracts": c, "markets": ["BTC"], "settlement_decimals": 6}
    path = tmp_path / "local.json"
    path.write_text(json.dumps(data))
    return path


def test_orders_book(served: Served, tmp_path: Path) -> None:
    m = MatcherClient(served.url)
    m.place(sign(0, -2, 101.5))
    m.place(sign(1, -1, 101.5))
    m.place(sign(2, 0.25, 99))
    args = ["--deployment", str(_manifest(tmp_path)), "orders", "book", "btc"]
    out = ok(CliRunner().invoke(app, [*args, "--matcher", served.url], env=ENV))
    assert "BTC book" in out
    row = next(line for line in out.splitlines() if "$99.0000" in line).split()
    assert row == ["1", "0.25", "$99.0000", "$101.5000", "3", "2"]
    err = failed(CliRunner().invoke(app, ["orders", "book", "7", "--matcher", served.url]))
    assert "unknown_market" in err and "market index this matcher trades" in err


def test_orders_fills_and_follow(served: Served) -> None:
    m = MatcherClient(served.url)
    m.place(sign(0, -3, 100))
    m.place(sign(1, 1, 100))
    base = ["orders", "fills", "--matcher", served.url]
    out = ok(CliRunner().invoke(app, [*base, "--account", hex(account(1))], env=ENV))
    assert len([line for line in out.splitlines() if "$100.0000" in line]) == 1
    out = ok(CliRunner().invoke(app, [*base, "--account", hex(account(3))], env=ENV))
    assert "$100.0000" not in out

    def trade_then_stop() -> None:  # once the CLI follows: one fill, then the server stops
        try:
            wait_for(lambda: bool(served.service.listeners), "the CLI to subscribe")
            MatcherClient(served.url).place(sign(2, 0.5, 100))
            wait_for(lambda: len(m.fills()) == 2, "the fill")
        finally:
            served.stop()  # ends the CLI's stream whatever happened

    t = threading.Thread(target=trade_then_stop)
    t.start()
    out = ok(CliRunner().invoke(app, [*base, "--market", "0", "--follow"], env=ENV))
    t.join(15)
    followed = out[out.index("following new fills") :]
    assert "2  #0  buy  0.5  $100.0000" in followed and "1  #0" not in followed
    assert "the matcher closed the stream" in out and "--after 2" in out
