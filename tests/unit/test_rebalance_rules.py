"""The rebalancer's rules and decisions without a chain (perpdex/keepers/rebalance_rules.py),
its state file and override (perpdex/keepers/rebalance.py) as the dashboard reads them, and
the `perpdex keeper rebalance` usage errors and file-only actions.

Decisions run on synthetic strategies through `LinearModel` (maintenance in proportion to
notional); the chain's sizing (the SDK's `trade_multi` mirror) is in
tests/integration/test_rebalancer.py."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from perpdex.cli.main import app
from perpdex.config import ROOT
from perpdex.dashboard.state import rebalancer_status
from perpdex.errors import ConfigError
from perpdex.keepers import rebalance as rb
from perpdex.keepers.rebalance_rules import (
    Band,
    Hedge,
    Leg,
    LinearModel,
    Rule,
    StrategyState,
    decide,
    load_rules,
    parse_rules,
)
from perpdex.keepers.state import StateLock

MARKETS = ("BTC", "ETH", "SOL")
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOT = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
D = Decimal


def doc(**strategy: Any) -> dict[str, Any]:
    body = {"sub": 1, "reserve": 0, "health": {"low": 1.5, "high": 3}, **strategy}
    return {"owner": OWNER, "bot": BOT, "strategies": {"s": body}}


def rule(**kw: Any) -> Rule:
    return parse_rules(doc(**kw), MARKETS).strategies[0]


BOOK = (Leg("BTC", D(1), D(100_000)), Leg("ETH", D(-30), D(3_000)))


def state(equity: str = "12000", maintenance: str = "10000", **kw: Any) -> StrategyState:
    kw.setdefault("positions", BOOK)
    kw.setdefault("reserve_available", D(50_000))
    return StrategyState(equity=D(equity), maintenance=D(maintenance), **kw)


# --- rules files ------------------------------------------------------------------------


def test_example_rules__parse():
    rules = load_rules(ROOT / "config" / "rebalance.example.yaml", MARKETS)
    assert rules.owner == OWNER and rules.bot == BOT
    trend, pair = rules.strategies
    assert (trend.name, trend.sub, trend.reserve, trend.prefer) == ("btc-trend", 1, 0, "top-up")
    assert trend.band == Band(D("1.5"), D("3.0")) and trend.band.mid == D("2.25")
    assert trend.target_leverage == D(8) * D("0.8") and trend.max_top_up == D(20_000)
    assert pair.hedge == Hedge(("ETH", "SOL"), D("1.0"), D("0.15"))
    assert pair.prefer == "reduce" and pair.target_leverage == D(4)
    assert rules.managed_subs() == [0, 1, 2]


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"health": {"low": -1.5, "high": 3}}, "a band cannot be negative"),
        ({"health": {"low": 1.5, "high": -3}}, "a band cannot be negative"),
        ({"health": {"low": 3, "high": 1.5}}, "low 3 must be below high 1.5"),
        ({"health": {"low": 2, "high": 2}}, "low 2 must be below high 2"),
        ({"health": {"low": 0.8, "high": 2}}, "already liquidatable"),
        ({"health": {"low": 1.5}}, "write the band as"),
        ({"reserve": 1}, "reserve: is the strategy itself (sub-account 1)"),
        ({"hedge": {"legs": ["ETH", "DOGE"]}}, "unknown market 'DOGE'; the deployment lists"),
        ({"hedge": {"legs": ["ETH", "ETH"]}}, "ETH twice"),
        ({"hedge": {"legs": ["ETH", "SOL"], "ratio": -1}}, "ratio: -1 must be above zero"),
        ({"hedge": {"legs": ["ETH", "SOL"], "tolerance": 2}}, "below the ratio 1"),
        ({"max_leverage": -2}, "max_leverage: -2 must be above zero"),
        ({"max_leverage": 4, "target_leverage": 5}, "5 is above max_leverage 4"),
        ({"target_leverage": 3}, "target_leverage: needs max_leverage"),
        ({"prefer": "pray"}, "'pray'; use top-up or reduce"),
        ({"sub": -1}, "strategies.s.sub: -1"),
        ({"max_top_up": "lots"}, "'lots' is not a number"),
        ({"leverage": 3}, "unknown key"),
    ],
)
def test_rules__bad_values__name_the_field(strategy, message):
    with pytest.raises(ConfigError, match=r"rules: strategies\.s") as e:
        parse_rules(doc(**strategy), MARKETS)
    assert message in str(e.value)


def test_rules__file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="owner: missing"):
        parse_rules({"strategies": doc()["strategies"]}, MARKETS)
    with pytest.raises(ConfigError, match="'0x12' is not an address"):
        parse_rules({**doc(), "owner": "0x12"}, MARKETS)
    with pytest.raises(ConfigError, match="bot: is the owner"):
        parse_rules({**doc(), "bot": OWNER.lower()}, MARKETS)
    with pytest.raises(ConfigError, match="give at least one strategy"):
        parse_rules({"owner": OWNER, "strategies": {}}, MARKETS)
    two = doc()
    two["strategies"]["t"] = {"sub": 2, "reserve": 1, "health": {"low": 1.5, "high": 3}}
    with pytest.raises(ConfigError, match=r"reserve: sub-account 1 is strategy 's'"):
        parse_rules(two, MARKETS)
    two["strategies"]["t"]["sub"] = 1
    two["strategies"]["t"]["reserve"] = 0
    with pytest.raises(ConfigError, match="one rule per sub-account"):
        parse_rules(two, MARKETS)
    with pytest.raises(ConfigError, match="cannot read the rebalancer rules"):
        load_rules(tmp_path / "missing.yaml", MARKETS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("owner: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_rules(bad, MARKETS)


# --- decisions ------------------------------------------------------------------------------


def test_decide__inside_or_above_the_band__nothing():
    r = rule(max_leverage=20)
    assert decide(r, state("20000")).plans == ()
    assert decide(r, state("20000")).note == "within its band"
    assert decide(r, state("40000")).note == "above its band"  # never moves collateral out
    assert decide(r, state(positions=())).note == "no positions"


def test_decide__health_below_band__top_up_to_the_middle_then_reduce():
    r = rule()
    d = decide(r, state())
    assert [b.what for b in d.breaches] == ["health"]
    assert "health 1.200 below the band's low edge 1.5" in d.reason
    top, red = d.plans
    assert top.kind == "top-up" and not top.partial
    assert top.amount == D("10500.00")  # 2.25 x 10,000 - 12,000
    assert red.kind == "reduce"


def test_decide__prefer_reduce__one_reduce_only_order_to_the_middle():
    s = state()
    d = decide(rule(prefer="reduce"), s)
    red, top = d.plans
    assert red.kind == "reduce" and top.kind == "top-up"
    assert set(red.legs) == {"BTC", "ETH"}
    for leg in s.positions:  # against each position, never past it
        delta = red.legs[leg.symbol]
        assert (delta > 0) != (leg.size > 0) and abs(delta) <= abs(leg.size)
    assert red.expect is not None and red.expect.health is not None
    # the one factor that brings 12,000 / (10,000 f) to 2.25, on the 1e-6 size grid
    assert D("2.25") <= red.expect.health < D("2.2501")
    # one factor on both legs (8/15 of the book left), sizes on the 1e-6 grid
    assert abs(red.legs["BTC"] - D("-0.466667")) < D("0.00001")
    assert abs(red.legs["ETH"] - D(14)) < D("0.0001")
    assert all(d == d.quantize(D("0.000001")) for d in red.legs.values())


def test_decide__reduce_pays_fees__still_reaches_the_middle():
    s = state()
    red = decide(rule(prefer="reduce"), s, LinearModel(s, fee=D("0.001"))).plans[0]
    assert red.expect is not None and red.expect.health is not None
    assert D("2.25") <= red.expect.health < D("2.251")


def test_decide__leverage_above_max__top_up_to_the_target():
    s = state("25000", "5000")  # health 5: fine; 190k / 25k = 7.6x
    d = decide(rule(max_leverage=6), s)
    assert [b.what for b in d.breaches] == ["leverage"]
    assert d.plans[0].amount == D("14583.34")  # 190,000 / 4.8 - 25,000, up to the cent
    red = d.plans[1]
    assert red.expect is not None and red.expect.leverage is not None
    assert red.expect.leverage <= D("4.8")


def test_decide__loss_cap_fired__never_tops_up():
    d = decide(rule(), state(loss_cap=D(13_000)))  # equity 12,000 below the floor
    assert [p.kind for p in d.plans] == ["reduce"]
    assert any("loss cap fired" in b and "never topped up" in b for b in d.blocked)
    unfired = decide(rule(), state(loss_cap=D(11_000)))
    assert unfired.plans[0].kind == "top-up"


def test_decide__reserve_short__reduce_first_then_partial_top_up():
    d = decide(rule(), state(reserve_available=D("4000.559")))
    assert [p.kind for p in d.plans] == ["reduce", "top-up"]
    assert d.plans[1].partial and d.plans[1].amount == D("4000.55")
    assert any("allows $4,000.55" in b for b in d.blocked)
    empty = decide(rule(), state(reserve_available=D(0)))
    assert [p.kind for p in empty.plans] == ["reduce"]
    assert any("reserve may send nothing" in b for b in empty.blocked)
    capped = decide(rule(max_top_up=1000), state())
    assert capped.plans[-1].partial and capped.plans[-1].amount == D(1000)
    assert any("max_top_up allows $1,000.00" in b for b in capped.blocked)


def test_decide__hedge_drift__reduces_the_heavy_leg_to_the_ratio():
    legs = (Leg("ETH", D(-30), D(3_000)), Leg("SOL", D(500), D(150)))  # 90k vs 75k: 1.2
    s = state("40000", "10000", positions=legs)
    d = decide(rule(hedge={"legs": ["ETH", "SOL"], "ratio": 1, "tolerance": 0.1}), s)
    assert [b.what for b in d.breaches] == ["hedge"]
    assert "hedge ETH/SOL 1.200 outside 1 ± 0.1" in d.reason
    (red,) = d.plans  # a top-up changes no ratio
    assert red.legs == {"ETH": D(5)}  # to 25 ETH = 75k
    inside = state("40000", "10000", positions=(legs[0], Leg("SOL", D(580), D(150))))
    assert decide(rule(hedge={"legs": ["ETH", "SOL"]}), inside).breaches == ()


def test_decide__leg_left_under_the_minimum__closed_whole():
    legs = (Leg("BTC", D(1), D(100_000)), Leg("SOL", D("1.2"), D(150)))  # SOL: $180
    s = StrategyState(D(12_000), D(10_000), legs, reserve_available=D(0))
    red = decide(rule(), s).plans[0]
    assert red.legs["SOL"] == D("-1.2")  # half of $180 is under $100: closed


def test_decide__in_liquidation__left_to_the_liquidation_keeper():
    d = decide(rule(), state(in_liquidation=True))
    assert d.plans == () and "liquidation keeper" in d.blocked[0]


# --- the state file, the override and the dashboard -------------------------------------------


def test_state_file__pause_while_the_bot_runs__the_dashboard_sees_both(tmp_path):
    path = tmp_path / ".keeper" / "rebalance-local.json"
    assert rb.default_state_path("local") == Path(".keeper") / "rebalance-local.json"
    assert rebalancer_status(path)["status"] == "not running"
    with StateLock(path):  # the running bot's lock, the one the dashboard probes
        rb.set_mode(path, "paused", "pause", "maintenance window")
        shown = rebalancer_status(path)
        assert shown["status"] == "running"
        assert shown["fields"]["mode"] == "paused"
        assert shown["fields"]["note"] == "maintenance window"
    assert rebalancer_status(path)["status"] == "stopped"
    rb.set_mode(path, "active", "resume")
    data = rb.read_state(path)
    assert list(data)[:2] == ["mode", "mode_since"] and data["mode"] == "active"
    lines = [json.loads(x) for x in rb.actions_path(path).read_text().splitlines()]
    assert [(x["kind"], x["mode"], x["was"]) for x in lines] == [
        ("pause", "paused", "active"),
        ("resume", "active", "paused"),
    ]
    assert rb.actions_path(path).name == "rebalance-local.actions.jsonl"
    with pytest.raises(Exception, match="unknown rebalancer mode"):
        rb.set_mode(path, "asleep", "pause")


def test_state_file__the_dashboard_shows_the_bots_fields_first(tmp_path):
    path = tmp_path / "rebalance-local.json"
    fields = {k: k for k in reversed(rb.FIELD_ORDER)}  # written in any order
    rb._write_state(path, fields)
    shown = rebalancer_status(path)["fields"]
    assert list(shown) == list(rb.FIELD_ORDER[:12])
    assert {"mode", "bot", "strategies", "last_action", "counts"} <= set(shown)


# --- the command line without a chain ---------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["keeper", "rebalance", *args], env={"COLUMNS": "200"})


def test_cli__pause_resume_status__no_chain_needed(tmp_path):
    path = tmp_path / "r.json"
    out = run("pause", "--state", str(path), "--note", "crash")
    assert out.exit_code == 0, out.output
    assert "rebalancer paused" in out.output and rb.read_state(path)["mode"] == "paused"
    out = run("status", "--state", str(path))
    assert out.exit_code == 0 and "paused" in out.output and "crash" in out.output
    out = run("resume", "--state", str(path))
    assert out.exit_code == 0 and rb.read_state(path)["mode"] == "active"
    assert "no rebalancer state" in run("status", "--state", str(tmp_path / "x.json")).output


def test_cli__usage_errors(tmp_path):
    out = run("nap")
    assert out.exit_code == 2 and "use one of run, pause, resume, kill, status" in out.output
    out = run("--once")
    assert out.exit_code == 2 and "--rules FILE" in out.output


def test_rules_file_written_by_yaml_dump__round_trips(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump(doc(max_leverage=5, prefer="reduce")))
    r = load_rules(f, MARKETS).strategies[0]
    assert r.prefer == "reduce" and r.max_leverage == D(5)
