"""The keeper bots against the test chain: the liquidation keeper's loop (start, bid,
backstop, finish), two keepers racing, restart from the state file, reverts that must not
stop it, and the price pusher moving the mock feeds."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from liquidation_helpers import LiqWorld, Victim, funded_world

from perpdex.keepers import liquidator as liquidator_module
from perpdex.keepers.liquidator import (
    AccountRead,
    Liquidator,
    LiquidatorConfig,
    plan,
)
from perpdex.keepers.price_pusher import PricePath, PricePusher, RandomWalk
from perpdex.keepers.scan import BatchLimits, batch_call
from perpdex.keepers.state import KeeperState, StateMismatch
from perpdex.sdk import math as pm
from perpdex.units import WAD

BTC = 0


@pytest.fixture(scope="module")
def kp_world(
    actors: dict[str, Any],
    protocol: Any,
    chain: Any,
    admin: Any,
    lp: Any,
) -> LiqWorld:
    return funded_world(protocol, chain, admin, lp, insurance=1_000)


@pytest.fixture(scope="module")
def kp_keeper_acct(kp_world: LiqWorld, keeper: Any) -> int:
    return kp_world.account(keeper, 200_000, name="keeper")


@pytest.fixture(scope="module")
def kp_rival_acct(kp_world: LiqWorld, liquidator: Any) -> int:
    return kp_world.account(liquidator, 200_000, name="rival")


def cfg(acct: int, **kw: Any) -> LiquidatorConfig:
    # gas priced at 1 gwei and ETH at $3,000: a take costs about $1.2 of gas
    return LiquidatorConfig(
        **{"keeper_account": acct, "min_profit": Decimal(0), "gas_price": 10**9, **kw}
    )


@pytest.fixture
def unhealthy(kp_world: LiqWorld, trader: Any, kp_keeper_acct: int, kp_rival_acct: int) -> Victim:
    """A 1-BTC long at health 0.85 at the median and the time-weighted price."""
    v = kp_world.btc_long(trader, 12_000)
    kp_world.hold({"BTC": kp_world.price_for_health(v.account, Decimal("0.85"))})
    return v


def kinds(report: Any, ok: bool = True) -> list[tuple[str, int]]:
    return [(o.action.kind, o.action.account) for o in report.outcomes if o.ok == ok]


# --- the loop ------------------------------------------------------------------------------


def test_keeper__starts_and_completes_a_liquidation(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, chain, tmp_path
):
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct), state_path=tmp_path / "k.json")
    r1 = k.tick()
    assert r1.discovered >= 2 and unhealthy.account in k.state.accounts
    assert kinds(r1) == [("start", unhealthy.account)]
    assert r1.outcomes[0].events["TrancheOpened"][0]["fraction"] == WAD // 2
    # at the start discount (0.2%) half a BTC is worth ~$90 to the keeper: it bids at once
    chain.pending_timestamp += 30
    r2 = k.tick()
    assert kinds(r2) == [("take", unhealthy.account)]
    take = r2.outcomes[0]
    assert take.events["AuctionTake"][0]["keeper_account"] == kp_keeper_acct
    assert "LiquidationFinished" in take.events
    assert not protocol.auction.auction(unhealthy.account)[0]
    assert kp_world.health(unhealthy.account) >= 1
    # the take is cut to what restores target health (Clipper): less than the half lot
    got = int(take.events["AuctionTake"][0]["fraction"])
    assert 0 < got < WAD // 2
    assert int(protocol.clearinghouse.position(kp_keeper_acct, BTC)[0]) == got
    # nothing left to do: the next tick sends nothing
    assert k.tick().outcomes == []
    assert json.loads((tmp_path / "k.json").read_text())["counts"] == {"start": 1, "take": 1}
    kp_world.assert_conserved()


def test_keeper__healthy_accounts_are_left_alone(
    protocol, kp_world, trader, keeper, kp_keeper_acct
):
    v = kp_world.btc_long(trader, 12_000)
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct))
    report = k.tick()
    assert report.outcomes == [] and report.unhealthy == 0
    assert v.account in k.state.accounts


def test_keeper__unprofitable_auction__backstops_after_expiry(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, chain
):
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct, min_profit=Decimal(1_000_000)))
    assert kinds(k.tick()) == [("start", unhealthy.account)]
    chain.pending_timestamp += 300
    assert k.tick().outcomes == []  # no take: below the profit threshold
    chain.pending_timestamp += 301
    kp_world.post()
    s0 = kp_world.margin(unhealthy.account)
    r = k.tick()
    assert kinds(r) == [("backstop", unhealthy.account)]
    p = protocol.auction.params()
    # the maximum discount, scaled to what the account's maintenance margin can pay
    scale = pm.liq_scale(s0.maintenance, s0.notional, p.max_discount, p.penalty)
    assert scale < WAD
    assert r.outcomes[0].events["AuctionBackstop"][0]["discount"] == pm.liq_scaled(
        p.max_discount, scale
    )
    # sold at the worst discount the account is still unhealthy: after the cooldown the
    # keeper opens the next tranche, and a later backstop ends it
    chain.pending_timestamp += 60
    kp_world.post()
    r = k.tick()
    assert kinds(r) == [("step", unhealthy.account)]
    assert r.outcomes[0].events["TrancheOpened"][0]["step"] == 2
    kp_world.assert_conserved()


def test_keeper__finishes_when_the_owner_tops_up(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct
):
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct, min_profit=Decimal(1_000_000)))
    k.tick()
    units = kp_world.fund(unhealthy.owner, 10_000)
    protocol.ops.deposit(unhealthy.account, protocol.token, units, sender=unhealthy.owner)
    r = k.tick()
    assert kinds(r) == [("finish", unhealthy.account)]
    assert not protocol.auction.auction(unhealthy.account)[0]


def test_keeper__hedge_flattens_what_it_took(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, chain
):
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct, hedge=True))
    k.tick()
    chain.pending_timestamp += 30
    r = k.tick()
    assert kinds(r) == [("take", unhealthy.account)]
    got = int(r.outcomes[0].events["AuctionTake"][0]["fraction"])
    assert int(protocol.clearinghouse.position(kp_keeper_acct, BTC)[0]) == got > 0
    r = k.tick()
    assert kinds(r) == [("hedge", kp_keeper_acct)]
    assert int(protocol.clearinghouse.position(kp_keeper_acct, BTC)[0]) == 0


# --- the scan (perpdex/keepers/scan.py) against ape's own calls ------------------------------


def test_scan__equals_ape_per_call_results(
    protocol, kp_world, unhealthy, trader, keeper, kp_keeper_acct, chain
):
    """A healthy account, an account in liquidation, an empty one and the keeper's: the
    raw batch read decodes to what ape's per-call machinery returns."""
    ch, auction = protocol.clearinghouse, protocol.auction
    healthy = kp_world.btc_long(trader, 50_000).account
    empty = kp_world.account(trader, 100, name="empty")
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct))
    assert kinds(k.tick()) == [("start", unhealthy.account)]
    chain.pending_timestamp += 30
    chain.mine()
    accounts = [healthy, unhealthy.account, empty, kp_keeper_acct]
    head = int(chain.blocks.head.number)
    # near = 10**6: every account with positions is read in full (the empty ones never)
    full = Liquidator(protocol, keeper, cfg(kp_keeper_acct, near=Decimal(10**6)))
    detailed: dict[str, set[int]] = {}
    for name, keeper_ in (("k", k), ("full", full)):
        reads = keeper_.read(accounts, head)
        assert [r.account for r in reads] == accounts
        detailed[name] = {r.account for r in reads if r.detailed}
        for r in reads:
            a = r.account
            m, t = ch.account_margin(a), ch.margin_at_twap(a)
            assert (r.equity, r.maintenance, r.notional) == (int(m[0]), int(m[2]), int(m[4]))
            if not r.detailed:
                continue
            au = auction.auction(a)
            assert (r.twap_equity, r.twap_maintenance) == (int(t[0]), int(t[2]))
            assert (r.active, r.started, r.lot, r.kick, r.step, r.discount) == (
                bool(au[0]),
                *(int(x) for x in au[1:]),
            )
            assert r.deadline == int(auction.deadline(a))
    assert detailed == {"k": {unhealthy.account}, "full": {unhealthy.account, healthy}}
    reads = {r.account: r for r in k.read(accounts, head)}
    assert reads[unhealthy.account].active and reads[unhealthy.account].lot > 0
    # batch_call (the crash replay's reader) decodes as ape does, in chunks of 3 calls
    calls = [(ch.account_margin, (a,)) for a in accounts] + [
        (auction.auction, (a,)) for a in accounts
    ]
    got = batch_call(calls, BatchLimits(max_calls=3))
    assert [tuple(int(x) for x in g) for g in got] == [
        tuple(int(x) for x in m(*args)) for m, args in calls
    ]


def test_scan__failed_reads_are_skipped_with_a_warning(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, caplog, monkeypatch
):
    """A provider that errors on every call: the tick reads nothing, warns, and goes on."""
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct))

    def failing(body: bytes) -> Any:
        reqs = json.loads(body)
        err = {"code": -32000, "message": "header not found"}
        if isinstance(reqs, list):
            return [{"jsonrpc": "2.0", "id": r["id"], "error": err} for r in reqs]
        return {"jsonrpc": "2.0", "id": reqs["id"], "error": err}

    monkeypatch.setattr(k.scanner.batcher, "transport", failing)
    caplog.set_level(logging.WARNING, logger="perpdex.keepers.scan")
    report = k.tick()
    assert report.outcomes == [] and report.watched == 0
    assert "account read(s) reverted or failed" in caplog.text
    assert "header not found" in caplog.text


# --- races and reverts ---------------------------------------------------------------------


def test_two_keepers_race__one_wins_the_other_moves_on(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, liquidator, kp_rival_acct, chain, caplog
):
    a = Liquidator(protocol, keeper, cfg(kp_keeper_acct), name="A")
    b = Liquidator(protocol, liquidator, cfg(kp_rival_acct), name="B")
    # both see the unhealthy account in the same block and both decide to start it
    plans = []
    for k in (a, b):
        _, now, _, reads = k.observe()
        plans.append(k.plan(reads, now))
    assert [x.kind for x in plans[0]] == [x.kind for x in plans[1]] == ["start"]
    won = a.execute(plans[0][0])
    caplog.set_level(logging.INFO, logger="perpdex.keepers.liquidator")
    lost = b.execute(plans[1][0])
    assert won.ok and not lost.ok
    assert (lost.stage, lost.error) == ("preflight", "auction: already in liquidation")
    assert lost.gas_used == 0 and "already in liquidation" in caplog.text
    # the same race for the lot
    chain.pending_timestamp += 30
    plans = []
    for k in (a, b):
        _, now, _, reads = k.observe()
        plans.append([x for x in k.plan(reads, now) if x.kind == "take"])
    assert len(plans[0]) == len(plans[1]) == 1
    won = b.execute(plans[1][0])
    assert won.ok
    lost = a.execute(plans[0][0])
    assert not lost.ok and lost.error == "auction: nothing to take"
    assert int(protocol.clearinghouse.position(kp_keeper_acct, BTC)[0]) == 0
    got = int(won.events["AuctionTake"][0]["fraction"])
    assert int(protocol.clearinghouse.position(kp_rival_acct, BTC)[0]) == got > 0
    # both carry on: the next ticks find nothing to do and raise nothing
    assert a.tick().outcomes == [] and b.tick().outcomes == []


def test_keeper__reverted_send_does_not_crash_it(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, liquidator, kp_rival_acct, monkeypatch
):
    """The preflight passed but another keeper's transaction landed first: the send
    reverts on chain; the keeper records it and goes on."""
    a = Liquidator(protocol, keeper, cfg(kp_keeper_acct), name="A")
    _, now, _, reads = a.observe()
    start = a.plan(reads, now)[0]
    protocol.auction.start(unhealthy.account, kp_rival_acct, sender=liquidator)
    monkeypatch.setattr(liquidator_module, "preflight", lambda *args: None)
    out = a.execute(start)
    assert not out.ok and out.stage == "send"
    assert "already in liquidation" in out.error
    monkeypatch.undo()
    assert a.run(interval=0, ticks=2) == 2


def test_keeper__run_survives_a_failing_tick(
    protocol, kp_world, keeper, kp_keeper_acct, monkeypatch
):
    k = Liquidator(protocol, keeper, cfg(kp_keeper_acct))
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ConnectionError("node went away")

    monkeypatch.setattr(k, "tick", broken)
    assert k.run(interval=0, ticks=3) == 3 and len(calls) == 3


# --- restart -------------------------------------------------------------------------------


def test_keeper__restart_resumes_from_the_state_file(
    protocol, kp_world, unhealthy, keeper, kp_keeper_acct, trader, chain, tmp_path, monkeypatch
):
    path = tmp_path / "keeper.json"
    first = Liquidator(protocol, keeper, cfg(kp_keeper_acct, min_profit=Decimal(10**9)), path)
    assert kinds(first.tick()) == [("start", unhealthy.account)]
    saved = json.loads(path.read_text())
    assert saved["cursor"] == first.state.cursor
    assert f"{unhealthy.account:#x}" in saved["accounts"]
    del first  # stopped

    opened_later = kp_world.account(trader, 1_000, name="later")
    scanned: list[tuple[int, int]] = []
    real_logs = liquidator_module._logs

    def spy(p: Any, topics: Any, start: int, stop: int, chunk: int) -> Any:
        scanned.append((start, stop))
        return real_logs(p, topics, start, stop, chunk)

    monkeypatch.setattr(liquidator_module, "_logs", spy)
    second = Liquidator(protocol, keeper, cfg(kp_keeper_acct), path)
    assert second.state.cursor == saved["cursor"]
    assert second.state.counts == {"start": 1}
    chain.pending_timestamp += 30
    r = second.tick()
    # only the blocks mined since the stop were scanned, and only the new account is new
    assert scanned[0][0] == saved["cursor"] + 1
    assert r.discovered == 1 and opened_later in second.state.accounts
    # the auction the first run started is carried on, not started again
    assert kinds(r) == [("take", unhealthy.account)]
    assert json.loads(path.read_text())["counts"] == {"start": 1, "take": 1}


def test_keeper_state__other_deployment__refused(tmp_path):
    path = tmp_path / "s.json"
    KeeperState(chain_id=1, clearinghouse="0xabc", cursor=5, accounts={7}, path=path).save()
    loaded = KeeperState.load(path, 1, "0xABC")
    assert (loaded.cursor, loaded.accounts) == (5, {7})
    with pytest.raises(StateMismatch, match="delete this one"):
        KeeperState.load(path, 31337, "0xabc")


# --- the pure planner ----------------------------------------------------------------------


def test_plan__profit_threshold_and_gas(protocol):
    p = protocol.auction.params()
    read = AccountRead(
        account=1, equity=5_000 * WAD, maintenance=7_000 * WAD, notional=100_000 * WAD,
        twap_equity=80, twap_maintenance=100, active=True, started=1_000, lot=WAD // 2,
        kick=50_000 * WAD, step=1, discount=WAD // 100,
    )  # fmt: skip
    c = LiquidatorConfig(keeper_account=2, min_profit=Decimal(100))
    # 1% of $50,000 = $500; minus $350 of gas leaves $150 > $100
    (take,) = plan([read], p, 1_100, c, Decimal(350))
    assert take.kind == "take" and take.expected_profit == Decimal(150)
    assert plan([read], p, 1_100, c, Decimal(450)) == []
    # hedging costs the taker fee too
    c.hedge = True
    assert plan([read], p, 1_100, c, Decimal(350), taker_fee=Decimal("0.0005")) == [
        plan([read], p, 1_100, c, Decimal(350), taker_fee=Decimal("0.0005"))[0]
    ]
    assert plan([read], p, 1_100, c, Decimal(350), taker_fee=Decimal("0.002")) == []
    # expired: backstop, whatever the profit
    assert [a.kind for a in plan([read], p, 1_000 + p.duration + 1, c, Decimal(0))] == ["backstop"]
    # a book whose maintenance cannot pay the full discount gets it scaled down
    # (7% -> 5%: f = 0.8 x 5% / 5.5%): $500 x 0.727 - $350 = $13.6, under the threshold
    c.hedge = False
    thin = replace(read, maintenance=5_000 * WAD, equity=4_000 * WAD)
    assert plan([thin], p, 1_100, c, Decimal(350)) == []
    # the deadline read from the chain wins over started + duration (a redo moved the clock)
    redone = replace(read, started=1_300, deadline=1_600)
    assert [a.kind for a in plan([redone], p, 1_601, c, Decimal(0))] == ["backstop"]


def test_plan__collateral_only_debt__is_started(protocol):
    """No positions, negative equity at the median and the time-weighted price: start
    (it settles at once); at a non-negative equity, or negative at one price only, no."""
    p = protocol.auction.params()
    c = LiquidatorConfig(keeper_account=2)

    def read(equity: int, twap_equity: int) -> AccountRead:
        return AccountRead(
            account=1, equity=equity, maintenance=0, notional=0, twap_equity=twap_equity,
            twap_maintenance=0,
        )  # fmt: skip

    assert [a.kind for a in plan([read(-1, -1)], p, 1_000, c, Decimal(0))] == ["start"]
    assert plan([read(0, -1)], p, 1_000, c, Decimal(0)) == []
    assert plan([read(-1, 5)], p, 1_000, c, Decimal(0)) == []


# --- price pusher ----------------------------------------------------------------------------


def test_price_pusher__random_walk_moves_every_feed(protocol, kp_world, stranger):
    before = {s: kp_world.feed_price(s) for s in protocol.feeds}
    pusher = PricePusher(protocol, stranger, RandomWalk(vol=0.01, seed=7))
    pushed = [pusher.step() for _ in range(3)]
    assert pusher.pushed == 3
    last = pushed[-1]
    assert last is not None and set(last) == set(protocol.feeds)
    for sym, feeds in protocol.feeds.items():
        answers = {int(f.latestRoundData()[1]) for f in feeds}
        assert answers == {int(last[sym] * 10**8)}
        assert last[sym] != before[sym]
        m = protocol.market_id(sym)
        assert int(protocol.clearinghouse.mark(m)[0]) == int(protocol.oracle.latest(m)[0])
    # the same seed replays the same path
    again = RandomWalk(vol=0.01, seed=7)
    assert again.next(before) == pushed[0]


def test_price_pusher__csv_path_then_stops(protocol, kp_world, stranger, tmp_path: Path, chain):
    f = tmp_path / "path.csv"
    f.write_text("t,BTC,ETH\n0,99000,2990\n60,97000.5,2950\n")
    path = PricePath.from_csv(f)
    assert path.interval == 60
    pusher = PricePusher(protocol, stranger, path, spread_bps=10)
    n = pusher.run(interval=60, warp=True)
    assert n == 2
    btc = [int(x.latestRoundData()[1]) for x in protocol.feeds["BTC"]]
    assert btc == [int(Decimal("97000.5") * Decimal(d) * 10**8) for d in ("0.999", "1.0", "1.001")]
    assert kp_world.feed_price("SOL") == 150  # not in the file: unchanged


# --- command line --------------------------------------------------------------------------


@pytest.fixture
def keeper_cli(protocol: Any, networks: Any, tmp_path: Path) -> Any:
    """`perpdex keeper ...` in-process, on the test chain, with a manifest of `protocol`."""
    from typer.testing import CliRunner

    from perpdex.cli.main import app
    from perpdex.sdk.client import Deployment

    manifest = Deployment.from_protocol(protocol).write(tmp_path / "local.json")
    choice = str(networks.provider.network_choice)

    def invoke(*args: str, account: str = "test:5") -> Any:
        options = ["--network", choice, "--deployment", str(manifest), "--account", account]
        return CliRunner().invoke(app, [*options, "keeper", *args], env={"COLUMNS": "200"})

    return invoke


def test_cli_keeper_liquidate__once_starts_and_saves_state(
    keeper_cli, protocol, unhealthy, kp_keeper_acct, tmp_path
):
    state = tmp_path / "cli-keeper.json"
    sub = kp_keeper_acct & (2**96 - 1)
    result = keeper_cli("liquidate", "--once", "--state", str(state), "--keeper-sub", str(sub))
    assert result.exit_code == 0, result.output
    assert "start" in result.output and "ok" in result.output
    assert protocol.auction.auction(unhealthy.account)[0]
    assert json.loads(state.read_text())["counts"] == {"start": 1}


def test_cli_keeper_liquidate__state_file_in_use__one_line_error(
    keeper_cli, kp_keeper_acct, tmp_path
):
    from perpdex.keepers.state import StateLock

    state = tmp_path / "shared.json"
    sub = kp_keeper_acct & (2**96 - 1)
    with StateLock(state):  # another keeper runs on this file
        result = keeper_cli("liquidate", "--once", "--state", str(state), "--keeper-sub", str(sub))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "another keeper (pid" in lines[0] and "--state PATH" in lines[0]
    assert not state.exists()  # refused before reading or writing it
    ok = keeper_cli("liquidate", "--once", "--state", str(state), "--keeper-sub", str(sub))
    assert ok.exit_code == 0, ok.output  # free once the other stopped


def test_cli_keeper_prices__each_step_printed_once(keeper_cli, kp_world):
    result = keeper_cli("prices", "--steps", "2", "--interval", "0.1", "--seed", "3", "--warp")
    assert result.exit_code == 0, result.output
    assert result.output.count("BTC $") == 2  # the command's line, not also the log's
    assert "pushed BTC" not in result.output


def test_cli_keeper_liquidate__no_keeper_account__one_line_error(keeper_cli, tmp_path):
    result = keeper_cli(
        "liquidate", "--once", "--state", str(tmp_path / "s.json"), account="test:9"
    )
    assert result.exit_code == 1
    assert "has no sub-account yet" in result.output and "Traceback" not in result.output


def test_cli_keeper_prices__random_walk_steps(keeper_cli, protocol, kp_world):
    before = kp_world.feed_price("BTC")
    result = keeper_cli("prices", "--steps", "2", "--interval", "0.1", "--seed", "3", "--warp")
    assert result.exit_code == 0, result.output
    assert "pushed 2 step(s)" in result.output
    assert kp_world.feed_price("BTC") != before
