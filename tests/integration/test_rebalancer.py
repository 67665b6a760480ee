"""`perpdex keeper rebalance` (perpdex/keepers/rebalance.py) on the test chain.

The owner (trader) runs a hedged portfolio strategy (long BTC, short ETH) in sub-account 1
with a reserve in sub-account 0, and makes the bot (keeper, test:5) an operator of both.
The band is set around the strategy's health at the start; BTC -5% and ETH +5% push it
below the band's low edge. Then:

* preferring top-ups, the bot moves collateral from the reserve (an operator of both
  accounts may: `transfer_collateral`), enough for the middle of the band; a restarted bot
  on the same state file does nothing more;
* preferring reduces, it sends ONE multi-leg reduce-only order (`trade_multi`, both legs
  in one transaction) that brings health back to the middle of the band;
* paused, it sends nothing (and says what it would do); resumed, it acts;
* `kill` (signed by the owner) revokes the bot's operator rights on every sub-account in
  ONE transaction (`revoke_operator`); a bot that keeps running is refused cleanly, logs
  it and does not crash;
* the command line runs one tick, and refuses a bad rules file before sending anything.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from perpdex.cli.main import app
from perpdex.keepers import rebalance as rb
from perpdex.keepers.rebalance import Rebalancer
from perpdex.keepers.rebalance_rules import Rules, parse_rules
from perpdex.sdk.client import Deployment, PerpdexClient
from perpdex.units import WAD

BOOK = {"BTC": "1", "ETH": "-20"}
STRATEGY_USD = 40_000
RESERVE_USD = 60_000


class World:
    def __init__(self, protocol: Any, h: Any, owner: Any, bot: Any, admin: Any) -> None:
        self.p, self.h, self.owner, self.bot, self.admin = protocol, h, owner, bot, admin
        self.ch = protocol.clearinghouse
        self.reserve = h.funded_account(owner, RESERVE_USD, name="reserve")
        self.strategy = h.funded_account(owner, STRATEGY_USD, portfolio=True, name="pair")
        assert self.reserve & (2**96 - 1) == 0 and self.strategy & (2**96 - 1) == 1
        owner_client = PerpdexClient.from_protocol(protocol, owner)
        owner_client.trade_multi(self.strategy, BOOK)
        for acct in (self.reserve, self.strategy):
            protocol.ops.set_operator(acct, bot, True, sender=owner)
        self.client = PerpdexClient.from_protocol(protocol, bot)
        self.h0 = self.health()

    def rules(self, prefer: str = "top-up", **extra: Any) -> Rules:
        band = {"low": f"{self.h0 * Decimal('0.9'):.3f}", "high": f"{self.h0 * Decimal('1.5'):.3f}"}
        return parse_rules(self.doc(prefer, band, **extra), self.client.deployment.markets)

    def doc(self, prefer: str, band: dict[str, str], **extra: Any) -> dict[str, Any]:
        body = {"sub": 1, "reserve": 0, "health": band, "prefer": prefer, **extra}
        return {
            "owner": str(self.owner.address),
            "bot": str(self.bot.address),
            "strategies": {"pair": body},
        }

    def crash(self) -> None:
        """BTC -5%, ETH +5%: the long and the short both lose."""
        for symbol, move in (("BTC", Decimal("0.95")), ("ETH", Decimal("1.05"))):
            self.h.set_price(symbol, Decimal(self.h.price(symbol)) / WAD * move, self.admin)

    def health(self) -> Decimal:
        """The strategy's health at marks re-read at the oracle (what the bot reads)."""
        bot = Rebalancer(self.client, self.rules_for_reading())
        state, _ = bot.read(bot.rules.strategies[0])
        assert state.health is not None
        return state.health

    def rules_for_reading(self) -> Rules:
        band = {"low": "1.1", "high": "1000"}
        return parse_rules(self.doc("top-up", band), self.client.deployment.markets)

    def sizes(self) -> dict[str, int]:
        return {s: int(self.ch.position(self.strategy, self.p.market_id(s))[0]) for s in BOOK}

    def reserve_balance(self) -> int:
        return int(self.ch.balance_of(self.reserve, 0))


@pytest.fixture
def world(protocol, h, trader, keeper, admin, vault_pool) -> World:
    return World(protocol, h, trader, keeper, admin)


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in rb.actions_path(path).read_text().splitlines()]


# --- top-up and reduce ------------------------------------------------------------------------


def test_top_up__from_the_reserve_to_the_middle__restart_does_not_repeat(
    world, keeper, tmp_path, caplog
):
    rules = world.rules("top-up")
    band = rules.strategies[0].band
    world.crash()
    before = world.health()
    assert before < band.low
    state = tmp_path / "rebalance-local.json"
    caplog.set_level(logging.INFO, logger="perpdex.keepers.rebalance")
    bot = Rebalancer(world.client, rules, state_path=state)
    reserve, sizes, nonce = world.reserve_balance(), world.sizes(), keeper.nonce
    report = bot.tick()

    (o,) = report.outcomes
    assert o.ok and o.kind == "top-up" and keeper.nonce == nonce + 1
    moved = reserve - world.reserve_balance()
    assert moved > 0 and Decimal(moved) / WAD == Decimal(o.plan.split("$")[1].replace(",", ""))
    assert world.sizes() == sizes  # a top-up trades nothing
    after = world.health()
    assert band.mid <= after < band.mid * Decimal("1.001")  # the middle, to the cent
    assert any("top-up $" in m and "below the band's low edge" in m for m in caplog.messages)
    (line,) = [x for x in log_lines(state) if x["kind"] == "top-up"]
    assert line["ok"] and line["tx"] == o.tx_hash and "below the band" in line["reason"]
    saved = rb.read_state(state)
    assert saved["counts"] == {"top-up": 1} and saved["pending"] is None
    assert saved["mode"] == "active" and saved["bot"] == str(keeper.address)

    again = Rebalancer(world.client, rules, state_path=state)  # a restart
    report = again.tick()
    assert report.outcomes == [] and keeper.nonce == nonce + 1
    assert rb.read_state(state)["counts"] == {"top-up": 1}


def test_reduce__one_multi_leg_reduce_only_order_to_the_middle(world, keeper, tmp_path, chain):
    rules = world.rules("reduce")
    band = rules.strategies[0].band
    world.crash()
    assert world.health() < band.low
    bot = Rebalancer(world.client, rules, state_path=tmp_path / "r.json")
    reserve, sizes, nonce = world.reserve_balance(), world.sizes(), keeper.nonce
    (o,) = bot.tick().outcomes

    assert o.ok and o.kind == "reduce" and keeper.nonce == nonce + 1  # one transaction
    receipt = chain.provider.get_receipt(o.tx_hash)
    fills = [f for f in receipt.decode_logs(world.ch.Fill) if int(f.account) == world.strategy]
    assert sorted(int(f.market) for f in fills) == [world.p.market_id(s) for s in ("BTC", "ETH")]
    now = world.sizes()
    for s in BOOK:  # both legs reduced, neither closed past zero nor flipped
        assert 0 < abs(now[s]) < abs(sizes[s]) and (now[s] > 0) == (sizes[s] > 0)
    ratio = [Decimal(now[s]) / sizes[s] for s in BOOK]
    assert abs(ratio[0] - ratio[1]) < Decimal("0.00001")  # one factor: the hedge kept
    assert world.reserve_balance() == reserve
    after = world.health()
    assert band.mid * Decimal("0.99") <= after < band.mid * Decimal("1.05")


# --- the override ----------------------------------------------------------------------------


def test_pause_stops_actions__resume_restores(world, keeper, tmp_path, caplog):
    state = tmp_path / "rebalance-local.json"
    bot = Rebalancer(world.client, world.rules("top-up"), state_path=state)
    world.crash()
    rb.set_mode(state, "paused", "pause", "maintenance")
    caplog.set_level(logging.INFO, logger="perpdex.keepers.rebalance")
    nonce = keeper.nonce
    report = bot.tick()
    assert report.mode == "paused" and report.outcomes == [] and keeper.nonce == nonce
    assert any("paused, no action; would top-up $" in m for m in caplog.messages)
    bot.tick()  # still paused: said once
    assert sum("paused, no action" in m for m in caplog.messages) == 1
    assert rb.read_state(state)["mode"] == "paused"  # the bot never writes the mode back
    assert [x["kind"] for x in log_lines(state)] == ["pause", "skip"]

    rb.set_mode(state, "active", "resume")
    (o,) = bot.tick().outcomes
    assert o.ok and o.kind == "top-up" and keeper.nonce == nonce + 1


def test_kill__revokes_on_chain__the_next_action_fails_cleanly(
    world, keeper, trader, protocol, networks, tmp_path, caplog
):
    rules_file = tmp_path / "rules.yaml"
    band = {"low": f"{world.h0 * Decimal('0.9'):.3f}", "high": f"{world.h0 * 2:.3f}"}
    rules_file.write_text(yaml.safe_dump(world.doc("top-up", band)))
    state = tmp_path / "rebalance-local.json"
    rules = world.rules("top-up")
    running = Rebalancer(world.client, rules, state_path=state)
    elsewhere = Rebalancer(world.client, rules)  # a copy that never reads the state file
    owner_nonce = trader.nonce

    out = cli(
        protocol,
        networks,
        tmp_path,
        "kill",
        "--rules",
        str(rules_file),
        "--state",
        str(state),
        "--note",
        "runaway",
        account="test:1",
    )
    assert out.exit_code == 0, out.output
    assert "1 transaction(s) revoked the bot on 2 account(s)" in out.output
    assert trader.nonce == owner_nonce + 1  # one transaction for both sub-accounts
    for acct in (world.reserve, world.strategy):
        assert not world.client.is_operator(acct, keeper)
    saved = rb.read_state(state)
    assert saved["mode"] == "killed" and saved["note"] == "runaway"
    assert [x["kind"] for x in log_lines(state)] == ["kill", "revoke", "revoke"]

    keepers_log = logging.getLogger("perpdex.keepers")  # the CLI gave it its own handler
    keepers_log.handlers, keepers_log.propagate = [], True
    world.crash()
    nonce = keeper.nonce
    assert running.tick().outcomes == []  # killed: it stops on its own
    caplog.set_level(logging.INFO, logger="perpdex.keepers.rebalance")
    report = elsewhere.tick()  # the chain stops the one that ignores the file
    top, red = report.outcomes
    assert (top.kind, top.ok, top.stage) == ("top-up", False, "refused")
    assert "not account owner" in top.error
    assert (red.kind, red.ok, red.stage) == ("reduce", False, "refused")
    assert "not authorized" in red.error
    assert keeper.nonce == nonce  # refused before sending: no gas spent
    assert any("no operator of the strategy or its reserve" in m for m in caplog.messages)
    assert any("no action possible" in m for m in caplog.messages)


def test_in_flight_transaction_of_an_earlier_run__cleared_once_mined(world, keeper, tmp_path):
    state = tmp_path / "r.json"
    rb._write_state(
        state,
        {"mode": "active", "pending": {"action": "top-up $1.00", "nonce": keeper.nonce - 1}},
    )
    bot = Rebalancer(world.client, world.rules("top-up"), state_path=state)
    report = bot.tick()
    assert report.waiting == "" and rb.read_state(state)["pending"] is None
    assert log_lines(state)[0]["kind"] == "pending-cleared" and log_lines(state)[0]["mined"]


# --- the command line ------------------------------------------------------------------------


def cli(protocol: Any, networks: Any, tmp_path: Path, *args: str, account: str) -> Any:
    manifest = Deployment.from_protocol(protocol).write(tmp_path / "local.json")
    choice = str(networks.provider.network_choice)
    options = ["--network", choice, "--deployment", str(manifest), "--account", account]
    return CliRunner().invoke(app, [*options, "keeper", "rebalance", *args], env={"COLUMNS": "200"})


def test_cli__once_acts__bad_rules_send_nothing(world, keeper, protocol, networks, tmp_path):
    band = {"low": f"{world.h0 * Decimal('0.9'):.3f}", "high": f"{world.h0 * 2:.3f}"}
    world.crash()
    nonce = keeper.nonce
    bad = tmp_path / "bad.yaml"
    for body, message in (
        ({"reserve": 1}, "is the strategy itself"),
        ({"health": {"low": "-2", "high": "3"}}, "a band cannot be negative"),
        ({"health": {"low": "3", "high": "2"}}, "low 3 must be below high 2"),
        ({"hedge": {"legs": ["ETH", "XRP"]}}, "unknown market 'XRP'"),
    ):
        doc = world.doc("top-up", band)
        doc["strategies"]["pair"].update(body)
        bad.write_text(yaml.safe_dump(doc))
        out = cli(
            protocol,
            networks,
            tmp_path,
            "--rules",
            str(bad),
            "--once",
            "--state",
            str(tmp_path / "s.json"),
            account="test:5",
        )
        assert out.exit_code == 1, out.output
        assert message in out.output and "Traceback" not in out.output
    assert keeper.nonce == nonce and not (tmp_path / "s.json").exists()

    good = tmp_path / "rules.yaml"
    good.write_text(yaml.safe_dump(world.doc("top-up", band)))
    state = tmp_path / "rebalance-local.json"
    out = cli(
        protocol,
        networks,
        tmp_path,
        "--rules",
        str(good),
        "--once",
        "--state",
        str(state),
        account="test:5",
    )
    assert out.exit_code == 0, out.output
    assert "rebalancer active" in out.output and "top-up $" in out.output
    assert keeper.nonce == nonce + 1
    assert rb.read_state(state)["counts"] == {"top-up": 1}
    out = cli(
        protocol,
        networks,
        tmp_path,
        "--rules",
        str(good),
        "--once",
        "--state",
        str(state),
        account="test:1",
    )  # the owner is not the rules' bot
    assert out.exit_code == 1 and "run the bot with its own key" in out.output
