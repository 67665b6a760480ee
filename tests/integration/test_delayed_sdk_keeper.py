"""Delayed vault orders through the SDK (`commit_trade`, `settle_order`, `pending_order`,
`settle_when_ready`, `cancel_delayed_order`) and `perpdex keeper settle`
(perpdex/keepers/delayed.py) against the test chain, with the markets' delayed-order
settings of config/markets.yaml (BTC: min delay 2 s, max age 60 s, keeper fee $0.50).

Every figure is checked against an independent read: the contract's words and events, the
mirror in perpdex/sdk/math/delayed.py, token balances."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.errors import TransactionRejected
from perpdex.keepers.delayed import DelayedKeeper, DelayedKeeperConfig, pair_key, plan
from perpdex.sdk.client import REVERT_HINTS, PerpdexClient
from perpdex.sdk.math import delayed as dm
from perpdex.sdk.math import oracle_router as orm
from perpdex.units import WAD, from_wad

BTC = 0
POLL = 0.0123  # settle_when_ready's poll in the test (its fake sleep publishes a price)


@pytest.fixture(scope="module")
def dk_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 2_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture
def cfg(protocol: Any) -> dm.DelayedConfig:
    c = protocol.system.markets[BTC].delayed
    assert c is not None, "config/markets.yaml gives BTC delayed-order settings"
    return dm.DelayedConfig(c.mode, c.min_delay, c.max_age, c.keeper_fee)


@pytest.fixture
def client(protocol: Any, trader: Any, dk_pool: None) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


def _account(client: PerpdexClient, protocol: Any, trader: Any, name: str = "delayed") -> int:
    protocol.token.mint(trader, 50_000 * 10**6, sender=trader)
    acct = client.open_account(name)
    client.deposit(acct, 50_000)
    return acct


def _publish(h: Any, who: Any, seconds: int, usd: int = 100_000) -> None:
    """`seconds` later, every BTC feed observes `usd`."""
    ape.chain.pending_timestamp += seconds
    h.set_price("BTC", usd, who)


def test_deploy__applies_the_configured_delayed_settings(protocol, cfg):
    for i, m in enumerate(protocol.system.markets):
        want = m.delayed.word() if m.delayed else 0
        assert int(protocol.ops.delayed_config(i)) == want
    assert cfg.mode == dm.MODE_IMMEDIATE  # the demo markets stay immediate (report)
    assert dm.unpack_config(cfg.pack()) == cfg


def test_sdk__commit_settle_and_the_mirror(protocol, ch, h, client, trader, keeper, cfg):
    acct = _account(client, protocol, trader)
    assert not client.requires_delayed(acct, "BTC", "0.5")  # mode 0
    c = client.commit_trade(acct, "BTC", "0.5", max_slippage="0.01")
    o = c.order
    word = int(protocol.ops.delayed_order(acct, BTC))
    mirror = dm.unpack_order(word)
    assert mirror is not None and mirror.commit_time == o.commit_time
    assert word == dm.pack_order(WAD // 2, mirror.acceptable_price, o.commit_time, cfg)
    assert (o.size, o.symbol, o.keeper_fee) == (Decimal("0.5"), "BTC", Decimal("0.5"))
    assert o.acceptable_price == from_wad(c.quote.acceptable_price(Decimal("0.01")))
    assert (o.settle_from, o.expires) == (
        o.commit_time + cfg.min_delay,
        o.commit_time + cfg.max_age,
    )
    assert client.pending_order(acct, "BTC") == o
    # too early: the feeds' last observation is older than the commit + delay
    keeper_client = client.with_signer(keeper)
    with pytest.raises(TransactionRejected) as e:
        keeper_client.settle_order(acct, "BTC")
    assert e.value.reason == "clearinghouse: no price after commit yet"
    assert e.value.hint == REVERT_HINTS[e.value.reason]
    assert o.status(ape.chain.pending_timestamp, int(protocol.oracle.price_time(BTC))) == (
        "waiting"
    )
    _publish(h, keeper, cfg.min_delay)
    published = int(protocol.oracle.price_time(BTC))
    assert o.status(ape.chain.pending_timestamp, published) == "ready"
    wallet = int(protocol.token.balanceOf(keeper))
    f = keeper_client.settle_order(acct, "BTC")
    ev = next(x for x in ch.Fill.range(f.block_number, f.block_number + 1) if x.account == acct)
    assert (f.size_delta, f.size_after, f.keeper) == (
        Decimal("0.5"),
        Decimal("0.5"),
        keeper.address,
    )
    assert f.price == Decimal(ev.price) / WAD and f.fee == Decimal(ev.fee) / WAD
    assert f.keeper_fee == Decimal("0.5") and f.price_time == published
    assert int(protocol.token.balanceOf(keeper)) - wallet == 500_000  # $0.50 in USDC units
    assert client.pending_order(acct, "BTC") is None
    assert client.find_settlement(acct, "BTC", c.block_number or 0) == f


def test_sdk__cancel_rules_and_mode_gate(protocol, h, client, trader, stranger, admin, cfg):
    acct = _account(client, protocol, trader)
    client.commit_trade(acct, "BTC", "0.2")
    with pytest.raises(TransactionRejected) as e:
        client.with_signer(stranger).cancel_delayed_order(acct, "BTC")
    assert e.value.reason == "clearinghouse: not authorized"
    client.cancel_delayed_order(acct, "BTC")  # the owner, within the delay
    assert client.pending_order(acct, "BTC") is None
    client.commit_trade(acct, "BTC", "0.2")
    order = dm.unpack_order(int(protocol.ops.delayed_order(acct, BTC)))
    assert order is not None
    ape.chain.pending_timestamp += cfg.min_delay
    assert order.cancel_refusal(cfg, ape.chain.pending_timestamp, True) == (
        "clearinghouse: settlement window open"
    )
    with pytest.raises(TransactionRejected) as e:
        client.cancel_delayed_order(acct, "BTC")
    assert e.value.reason == "clearinghouse: settlement window open"
    ape.chain.pending_timestamp += cfg.max_age
    ape.chain.mine()  # the preflight's eth_call sees the head block's time
    assert order.cancel_refusal(cfg, ape.chain.pending_timestamp, False) is None
    client.with_signer(stranger).cancel_delayed_order(acct, "BTC")
    # mode 1: adding trades are refused with the hint that says what to do
    protocol.risk.set_delayed_params(
        BTC, 1, cfg.min_delay, cfg.max_age, cfg.keeper_fee, sender=admin
    )
    assert client.delayed_config("BTC").mode == 1
    assert client.requires_delayed(acct, "BTC", "0.1")
    with pytest.raises(TransactionRejected) as e:
        client.trade(acct, "BTC", "0.1")
    assert e.value.reason == dm.USE_COMMIT and "--delayed" in (e.value.hint or "")


def test_sdk__settle_when_ready_settles_itself_once_a_price_arrives(
    protocol, h, client, trader, keeper, cfg, monkeypatch
):
    import time

    acct = _account(client, protocol, trader)
    c = client.commit_trade(acct, "BTC", "0.3", max_slippage="0.01")
    polls: list[float] = []

    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # each poll: the feeds publish once more, later
        if seconds != POLL:  # ape's own waits
            real_sleep(seconds)
            return
        polls.append(seconds)
        _publish(h, keeper, cfg.min_delay)

    monkeypatch.setattr(time, "sleep", sleep)
    wallet = int(protocol.token.balanceOf(trader))
    f = client.settle_when_ready(acct, "BTC", from_block=c.block_number or 0, poll=POLL)
    assert f is not None and f.size_delta == Decimal("0.3") and f.keeper == trader.address
    assert len(polls) == 1  # waited for one price, then settled
    assert int(protocol.token.balanceOf(trader)) - wallet == 500_000  # its own keeper fee
    # already settled (by someone): found in the logs
    assert client.settle_when_ready(acct, "BTC", from_block=c.block_number or 0) == f


# --- the keeper ----------------------------------------------------------------------------------


def test_keeper__settles_ready_orders_once_and_survives_restart(
    protocol, h, client, trader, hedger, keeper, tmp_path, caplog, cfg
):
    ready = _account(client, protocol, trader, "ready")
    client.commit_trade(ready, "BTC", "0.4", max_slippage="0.01")
    _publish(h, keeper, cfg.min_delay)
    other = PerpdexClient.from_protocol(protocol, hedger)
    waiting = _account(other, protocol, hedger, "waiting")
    other.commit_trade(waiting, "ETH", "-3", max_slippage="0.01")  # no new ETH price yet
    state = tmp_path / "settle.json"
    wallet = int(protocol.token.balanceOf(keeper))

    k = DelayedKeeper(protocol, keeper, state_path=state)
    caplog.set_level(logging.INFO, logger="perpdex.keepers.delayed")
    r1 = k.tick()
    assert pair_key(waiting, 1) in k.state.accounts
    assert r1.ready >= 1 and r1.pending >= 2
    (done,) = [o for o in k.history if o.account == ready]
    assert done.ok and done.action == "settle" and done.fee == cfg.keeper_fee
    assert int(protocol.token.balanceOf(keeper)) - wallet == 500_000
    assert int(protocol.clearinghouse.position(ready, BTC)[0]) == 4 * WAD // 10
    assert [o for o in k.history if o.account == waiting] == []  # waiting: not sent
    assert pair_key(ready, BTC) not in k.state.accounts  # gone: dropped
    assert any(f"settle {ready:#x} BTC ok" in m for m in caplog.messages)

    nonce = keeper.nonce
    k.tick()  # nothing new is ready
    assert keeper.nonce == nonce

    again = DelayedKeeper(protocol, keeper, state_path=state)  # restart from the file
    assert again.state.cursor == k.state.cursor and again.state.accounts == k.state.accounts
    ape.chain.pending_timestamp += cfg.min_delay
    for f in protocol.feeds["ETH"]:
        f.set_answer(3_000 * 10**8, sender=keeper)
    again.tick()
    (eth,) = [o for o in again.history if o.account == waiting]
    assert eth.ok and int(protocol.clearinghouse.position(waiting, 1)[0]) == -3 * WAD
    assert again.state.counts["settle"] == k.state.counts["settle"] + 1


def test_keeper__refusal_is_logged_not_sent_and_expired_orders_cleared(
    protocol, h, client, trader, keeper, tmp_path, cfg
):
    acct = _account(client, protocol, trader, "bounded")
    client.commit_trade(acct, "BTC", "0.1", acceptable_price="100050")
    _publish(h, keeper, cfg.min_delay, usd=101_000)  # past the order's bound
    k = DelayedKeeper(protocol, keeper, DelayedKeeperConfig(cancel_expired=True))
    nonce = keeper.nonce
    k.tick()
    (refused,) = [o for o in k.history if o.account == acct]
    assert not refused.ok and refused.stage == "preflight"
    assert refused.error == "clearinghouse: price worse than acceptable"
    assert keeper.nonce == nonce  # nothing sent
    ape.chain.pending_timestamp += cfg.max_age + 1
    ape.chain.mine()  # the keeper reads the head block's time
    k.tick()
    cancel = [o for o in k.history if o.account == acct and o.action == "cancel"]
    assert cancel and cancel[0].ok
    assert client.pending_order(acct, "BTC") is None


def test_plan__ready_first_by_commit_time_and_min_fee():
    c = dm.DelayedConfig(1, 2, 60, 5 * 10**17)

    def read(account: int, t: int, fee: int, now: int, price_time: int) -> Any:
        from perpdex.keepers.delayed import OrderRead

        return OrderRead(account, 0, dm.DelayedOrder(WAD, 2**256 - 1, t, fee), c, price_time, now)

    reads = [
        read(1, 100, 5 * 10**17, 110, 105),  # ready
        read(2, 90, 5 * 10**17, 110, 105),  # ready, older
        read(3, 108, 5 * 10**17, 110, 105),  # waiting (opens at 110)
        read(4, 10, 5 * 10**17, 110, 105),  # expired
        read(5, 100, 10**14, 110, 105),  # ready, fee below min_fee
    ]
    got = plan(reads, DelayedKeeperConfig(min_fee=Decimal("0.01"), cancel_expired=True))
    assert [(a, r.account) for a, r in got] == [("settle", 2), ("settle", 1), ("cancel", 4)]


def test_price_time__mirror_matches_the_router(protocol, keeper):
    feeds = protocol.feeds["ETH"]
    now = ape.chain.pending_timestamp
    rounds = [(now - 30, now - 20), (0, now - 7), (now - 9_000, now - 9_000)]
    for f, (started, updated) in zip(feeds, rounds, strict=True):
        f.set_round_data(3_000 * 10**8, started, updated, sender=keeper)
    max_age = protocol.system.markets[1].oracle.max_age
    want = orm.price_time([(s, u, max_age) for s, u in rounds], ape.chain.pending_timestamp)
    assert want == now - 30
    assert int(protocol.oracle.price_time(1)) == want
