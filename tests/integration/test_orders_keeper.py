"""`perpdex keeper orders` (perpdex/keepers/orders.py) against the test chain: it reads
signed conditional orders from a JSON-lines file (perpdex/sdk/order_store.py), fires a
stop once the price has crossed its trigger and earns its fee, exactly once (later ticks,
a keeper restarted on its state file and one started without it send nothing more),
retries an order refused for now, survives a bad line and a lost race; and the
`perpdex orders` commands sign, list and cancel such orders."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from liquidation_helpers import LiqWorld, funded_world
from typer.testing import CliRunner

from perpdex.constants import WAD
from perpdex.keepers.orders import OrdersConfig, OrdersKeeper
from perpdex.sdk import order_store as store
from perpdex.sdk import orders as so

BTC = 0


@pytest.fixture(scope="module")
def okw(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> LiqWorld:
    return funded_world(protocol, chain, admin, lp, 10_000)


def _stored(okw: LiqWorld, chain: Any, who: Any, order: so.Order) -> store.StoredOrder:
    ch = str(okw.ch.address)
    sig = so.sign_order(order, who.private_key, chain.chain_id, ch)
    return store.StoredOrder(so.SignedOrder(order, sig), chain.chain_id, ch, symbol="BTC")


def _long_with_stop(
    okw: LiqWorld, chain: Any, trader: Any, nonce: int, fee: int = 3, size: str = "1"
) -> tuple[int, store.StoredOrder]:
    acct = okw.account(trader, 50_000, name="stopped")
    okw.trade(trader, acct, BTC, size)
    order = so.stop_loss(
        acct,
        BTC,
        -int(float(size) * WAD),
        95_000 * WAD,
        expiry=chain.pending_timestamp + 86_400,
        nonce=nonce,
        keeper_fee=fee * WAD,
    )
    return acct, _stored(okw, chain, trader, order)


def _size(okw: LiqWorld, acct: int) -> int:
    return int(okw.ch.position(acct, BTC)[0])


def test_keeper__fires_a_stop_after_the_move_once__restart_does_not_double_fire(
    okw: LiqWorld, chain: Any, trader: Any, keeper: Any, tmp_path: Path, caplog: Any
) -> None:
    acct, stop = _long_with_stop(okw, chain, trader, store.NONCE_BASE)
    orders = tmp_path / "orders"
    store.append(orders / "trader.jsonl", stop)
    (orders / "broken.jsonl").write_text('{"version": 1, "order": \n')  # a half-written line
    state = tmp_path / "orders-keeper.json"
    cfg = OrdersConfig(orders=orders)
    caplog.set_level(logging.INFO, logger="perpdex.keepers.orders")

    k = OrdersKeeper(okw.p, keeper, cfg, state_path=state)
    nonce = keeper.nonce
    r1 = k.tick()
    assert (r1.loaded, r1.live, r1.triggered, r1.outcomes) == (1, 1, 0, [])
    assert keeper.nonce == nonce and _size(okw, acct) == WAD  # nothing sent before the move
    assert any("broken.jsonl:1" in m for m in caplog.messages)

    okw.post({"BTC": 94_000})
    wallet = int(okw.p.token.balanceOf(keeper))
    r2 = k.tick()
    (done,) = r2.outcomes
    assert done.ok and done.order == stop.id and done.fee == 3 * WAD and done.gas_used > 0
    assert _size(okw, acct) == 0
    assert int(okw.p.token.balanceOf(keeper)) - wallet == okw.usd(3)
    assert k.state.done == {stop.id: "done"} and k.state.counts == {"execute": 1}
    assert json.loads(state.read_text())["done"] == {stop.id: "done"}
    nonce = keeper.nonce

    assert k.tick().outcomes == []  # still triggered, already done: not even an eth_call
    again = OrdersKeeper(okw.p, keeper, cfg, state_path=state)  # restarted on its state
    assert again.state.done == k.state.done
    assert again.tick().outcomes == []
    blank = OrdersKeeper(okw.p, keeper, cfg)  # no state at all: the chain refuses it
    (refused,) = blank.tick().outcomes
    assert (refused.ok, refused.stage, refused.state) == (False, "preflight", "done")
    assert blank.state.done == {stop.id: "done"}
    assert keeper.nonce == nonce and _size(okw, acct) == 0
    assert int(okw.p.token.balanceOf(keeper)) - wallet == okw.usd(3)


def test_keeper__refused_for_now__retried_later_and_new_lines_picked_up(
    okw: LiqWorld, chain: Any, trader: Any, keeper: Any, tmp_path: Path
) -> None:
    """A stop-loss whose position was closed by hand is refused ("nothing to reduce") but
    kept; appended while the keeper runs, a second order is picked up on the next tick;
    when the account is long again the first stop fires."""
    acct, stop = _long_with_stop(okw, chain, trader, store.NONCE_BASE)
    okw.trade(trader, acct, BTC, "-1")  # closed by hand
    file = tmp_path / "orders.jsonl"
    store.append(file, stop)
    k = OrdersKeeper(okw.p, keeper, OrdersConfig(orders=file))
    okw.post({"BTC": 94_000})
    (o,) = k.tick().outcomes
    assert (o.ok, o.state, o.error) == (False, "blocked", "clearinghouse: nothing to reduce")
    assert k.state.done == {}

    other, later = _long_with_stop(okw, chain, trader, store.NONCE_BASE, size="0.5")
    store.append(file, later)
    okw.trade(trader, acct, BTC, "1")
    r = k.tick()
    assert sorted((x.order, x.ok) for x in r.outcomes) == sorted(
        [(stop.id, True), (later.id, True)]
    )
    assert _size(okw, acct) == _size(okw, other) == 0


def test_keeper__lost_race_is_an_outcome_not_a_crash(
    okw: LiqWorld, chain: Any, trader: Any, keeper: Any, admin: Any, tmp_path: Path, monkeypatch
) -> None:
    from perpdex.keepers import orders as keeper_mod

    _, stop = _long_with_stop(okw, chain, trader, store.NONCE_BASE)
    file = tmp_path / "orders.jsonl"
    store.append(file, stop)
    okw.post({"BTC": 94_000})
    real = keeper_mod.preflight

    def racing(method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        ok = real(method, args, sender)
        if ok is None:
            method(*args, sender=admin)  # the rival is faster
        return ok

    monkeypatch.setattr(keeper_mod, "preflight", racing)
    k = OrdersKeeper(okw.p, keeper, OrdersConfig(orders=file))
    (o,) = k.tick().outcomes
    assert (o.ok, o.stage, o.state) == (False, "send", "done")
    assert "order done" in o.error and k.state.done == {stop.id: "done"}


def test_keeper__expired_and_foreign_orders_are_skipped(
    okw: LiqWorld, chain: Any, trader: Any, keeper: Any, tmp_path: Path
) -> None:
    acct, stop = _long_with_stop(okw, chain, trader, store.NONCE_BASE)
    expired = so.stop_loss(
        acct, BTC, -WAD, 95_000 * WAD, expiry=chain.pending_timestamp - 100, nonce=1
    )
    foreign = store.StoredOrder(stop.signed, stop.chain_id + 1, stop.clearinghouse)
    file = tmp_path / "orders.jsonl"
    for s in (_stored(okw, chain, trader, expired), foreign):
        store.append(file, s)
    k = OrdersKeeper(okw.p, keeper, OrdersConfig(orders=file))
    okw.post({"BTC": 94_000})
    r = k.tick()
    assert (r.loaded, r.live, r.outcomes) == (1, 0, [])
    assert list(k.state.done.values()) == ["expired"]
    assert _size(okw, acct) == WAD


# --- command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(protocol: Any, networks: Any, tmp_path: Path) -> Any:
    """`perpdex ...` in-process, on the test chain, with a manifest of `protocol`."""
    from perpdex.cli.main import app
    from perpdex.sdk.client import Deployment

    manifest = Deployment.from_protocol(protocol).write(tmp_path / "local.json")
    choice = str(networks.provider.network_choice)

    def invoke(*args: str, account: str = "test:1") -> Any:
        options = ["--network", choice, "--deployment", str(manifest), "--account", account]
        return CliRunner().invoke(app, [*options, *args], env={"COLUMNS": "200"})

    return invoke


def test_cli__sign_list_execute_cancel(
    cli: Any, okw: LiqWorld, trader: Any, tmp_path: Path
) -> None:
    acct = okw.account(trader, 50_000, name="cli-stops")
    okw.trade(trader, acct, BTC, "1")
    file = tmp_path / "orders.jsonl"
    common = ["--file", str(file), "--account-id", hex(acct)]
    out = cli("orders", "stop", "BTC", "-1", "--trigger", "95000", "--fee", "2", *common)
    assert out.exit_code == 0, out.output
    assert "fires when BTC is at or below $95,000.00" in out.output
    assert "fills down to $90,250.00" in out.output
    out = cli(
        "orders", "take-profit", "BTC", "-1", "--trigger", "120000", "--limit", "119000", *common
    )
    assert out.exit_code == 0, out.output
    assert "at or above $120,000.00" in out.output
    found, problems = store.load(file)
    assert problems == [] and [s.order.nonce for s in found] == [2**32, 2**32 + 1]
    _, tp = found

    listing = cli("orders", "list", "--file", str(file))
    assert listing.exit_code == 0, listing.output
    assert listing.output.count("waiting") == 2

    okw.post({"BTC": 94_000})
    state = tmp_path / "keeper.json"
    ran = cli(
        "keeper", "orders", "--once", "--orders", str(file), "--state", str(state),
        account="test:5",
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    assert "executed" in ran.output and "$2.00" in ran.output
    assert int(okw.ch.position(acct, BTC)[0]) == 0

    gone = cli("orders", "cancel", tp.id[:12], "--file", str(file))
    assert gone.exit_code == 0, gone.output
    assert f"cancelled order {tp.id}" in gone.output
    listing = cli("orders", "list", "--file", str(file), "--all")
    assert listing.exit_code == 0, listing.output
    assert "waiting" not in listing.output and listing.output.count("done") == 2
    assert "2 finished" in cli("orders", "list", "--file", str(file)).output
