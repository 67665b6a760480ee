"""`perpdex trade --delayed`, the automatic delayed order of a market that requires it, and
`perpdex keeper settle`, run in-process against the test chain (like test_cli_trading.py).

The chain does not move by itself here: the tests publish the price observed after the
delay themselves (or through the command's own wait, whose sleep they replace)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import ape
import pytest
from cli_helpers import ok

from perpdex.cli import fmt_usd
from perpdex.cli.portfolio import fmt_price
from perpdex.sdk.client import PerpdexClient
from perpdex.units import WAD, from_wad

USDC = 10**6
BTC = 0


@pytest.fixture
def client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def acct(client: PerpdexClient, protocol: Any, trader: Any, cli_pool: None) -> int:
    protocol.token.mint(trader, 50_000 * USDC, sender=trader)
    a = client.open_account("main")
    client.deposit(a, 50_000)
    return a


def _publish(protocol: Any, who: Any, seconds: int, usd: int = 100_000) -> None:
    ape.chain.pending_timestamp += seconds
    for f in protocol.feeds["BTC"]:
        f.set_answer(usd * 10**8, sender=who)


def test_trade_delayed_no_wait__commits_and_the_keeper_settles(
    cli, protocol, client, acct, keeper, tmp_path
):
    out = ok(cli("trade", "BTC", "0.5", "--delayed", "--no-wait"))
    order = client.pending_order(acct, "BTC")
    assert order is not None and order.size == Decimal("0.5")
    assert "committed a delayed order: +0.5 BTC" in out
    assert f"from t={order.settle_from} (2 s after the commit) until t={order.expires}" in out
    assert "left to keepers (`perpdex keeper settle`)" in out
    assert protocol.clearinghouse.position(acct, BTC)[0] == 0  # nothing filled yet
    state = str(tmp_path / "settle.json")
    out = ok(cli("keeper", "settle", "--once", "--state", state, account="test:5"))
    assert "1 pending delayed order(s), 0 ready" in out  # no price after the delay yet
    _publish(protocol, keeper, 2)
    out = ok(cli("keeper", "settle", "--once", "--state", state, account="test:5"))
    assert "settle" in out and "ok" in out and "$0.50" in out
    assert protocol.clearinghouse.position(acct, BTC)[0] == WAD // 2
    assert client.pending_order(acct, "BTC") is None


def test_trade__market_requiring_delayed_orders_commits_waits_and_settles(
    cli, protocol, client, acct, admin, keeper, monkeypatch
):
    protocol.risk.set_delayed_params(BTC, 1, 2, 60, 5 * 10**17, sender=admin)
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # the command's poll: the next price arrives
        if seconds != 1.0:
            real_sleep(seconds)
            return
        _publish(protocol, keeper, 2)

    monkeypatch.setattr(time, "sleep", sleep)
    out = ok(cli("trade", "BTC", "0.5"))
    assert "committed a delayed order" in out and "waiting for a price" in out
    ch = protocol.clearinghouse
    height = ape.chain.blocks.height
    fill = next(f for f in ch.Fill.range(height, height + 1) if f.account == acct)
    assert ch.position(acct, BTC)[0] == WAD // 2
    price = fmt_price(from_wad(fill.price))
    assert f"✓ bought 0.5 BTC at {price}, fee {fmt_usd(from_wad(fill.fee))}, keeper fee $0.50" in (
        out
    )
    # a reduce stays immediate in mode 1
    out = ok(cli("close", "BTC"))
    assert "closed the 0.5 BTC long" in out and "committed" not in out


def test_trade__delayed_refusal_is_one_line_with_its_hint(cli, protocol, acct, admin):
    protocol.risk.set_delayed_params(BTC, 0, 0, 0, 0, sender=admin)  # none in BTC
    result = cli("trade", "BTC", "0.5", "--delayed", "--no-wait")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]  # after the quote table
    assert line.startswith("error: commit_order failed: ")
    assert "clearinghouse: no delayed orders in market" in line
    assert "trade it with a plain market order" in line
