"""`perpdex portfolio --all`, `--shock` and `perpdex history`, run in-process with typer's
CliRunner against the test chain (like tests/unit/test_cli_trading.py).

Printed and JSON figures are compared with the chain read independently (account_margin,
balances, Fill events decoded by ape) or with the SDK result they render; bad --shock
input is one line that says the expected format.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cli_helpers import failed, ok

from perpdex.cli import fmt_usd
from perpdex.cli.jsonout import num
from perpdex.sdk.client import PerpdexClient
from perpdex.units import from_wad

USDC = 10**6


def _set_price(p: Any, symbol: str, usd: Decimal | int, who: Any) -> None:
    for feed in p.feeds[symbol]:
        feed.set_answer(int(Decimal(usd) * 10**8), sender=who)


def row(out: str, *starts: str, last: bool = False) -> list[str]:
    """The whitespace-split cells of the first (or `last`) output line whose cells start
    with `starts`."""
    found = [ln.split() for ln in out.splitlines() if ln.split()[: len(starts)] == list(starts)]
    if not found:
        raise AssertionError(f"no row starting with {starts} in:\n{out}")
    return found[-1] if last else found[0]


@pytest.fixture
def cli_client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def cli_strategies(
    cli_client: PerpdexClient, protocol: Any, trader: Any, cli_pool: None
) -> list[int]:
    """The trader's strategies: 'trend' (isolated, BTC), 'pair' (portfolio, ETH/SOL) and
    'lev' (isolated, 8x BTC), with P&L at several blocks."""
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    trend = cli_client.open_account("trend")
    pair = cli_client.open_account("pair", portfolio=True)
    lev = cli_client.open_account("lev")
    cli_client.deposit(trend, 60_000)
    cli_client.deposit(pair, 80_000)
    cli_client.deposit(lev, 5_000)
    cli_client.trade(trend, "BTC", "1")
    cli_client.trade(pair, "ETH", "10")
    cli_client.trade(pair, "SOL", "-200")
    cli_client.trade(lev, "BTC", "0.4")
    _set_price(protocol, "BTC", 102_000, trader)
    _set_price(protocol, "ETH", 2_950, trader)
    cli_client.refresh()
    cli_client.trade(trend, "BTC", "-0.3")
    cli_client.trade(pair, "ETH", "-3")
    _set_price(protocol, "BTC", 101_000, trader)
    _set_price(protocol, "SOL", 152, trader)
    cli_client.refresh()
    cli_client.trade(trend, "BTC", "-0.2")
    cli_client.trade(pair, "SOL", "50")
    return [trend, pair, lev]


# --- portfolio --all ------------------------------------------------------------------------


def test_portfolio_all__one_row_per_strategy_totals_and_correlation(
    run_all, protocol, cli_strategies
):
    out = run_all()
    ch = protocol.clearinghouse
    equities = []
    for index, (acct, name) in enumerate(
        zip(cli_strategies, ("trend", "pair", "lev"), strict=True)
    ):
        m = ch.account_margin(acct)
        equity = from_wad(int(m.equity))
        equities.append(equity)
        cells = row(out, f"#{index}", name)
        assert fmt_usd(equity) in cells
        assert fmt_usd(from_wad(int(m.initial))) in cells  # margin used
        assert fmt_usd(equity - from_wad(int(m.initial))) in cells  # free
    total = row(out, "total")
    assert fmt_usd(sum(equities, Decimal(0))) == total[1]
    assert "P&L correlation between strategies" in out
    corr = row(out, "#0", "trend", "+1.00")  # the matrix row: trend with itself first
    assert len(corr) == 2 + 3


def test_portfolio_all__json_matches_the_chain(cli, protocol, cli_strategies):
    doc = json.loads(ok(cli("portfolio", "--all", "--json")))
    assert [a["id"] for a in doc["accounts"]] == [f"{a:#x}" for a in cli_strategies]
    for a, acct in zip(doc["accounts"], cli_strategies, strict=True):
        m = protocol.clearinghouse.account_margin(acct, block_id=doc["block_number"])
        assert a["equity"] == num(from_wad(int(m.equity)))
        assert a["margin_used"] == num(from_wad(int(m.initial)))
        p = a["pnl"]
        parts = Decimal(p["realized"]) + Decimal(p["unrealized"]) + Decimal(p["funding"])
        assert Decimal(p["total"]) == parts - Decimal(p["fees"])
    equity = sum(Decimal(a["equity"]) for a in doc["accounts"])
    assert Decimal(doc["totals"]["equity"]) == equity
    c = doc["correlation"]
    assert c["enough_history"] and c["points"] == len(c["blocks"]) >= 3
    assert c["matrix"][0][0] == "1" and c["matrix"][0][1] == c["matrix"][1][0]
    assert doc["shock"] is None


def test_portfolio_all__not_enough_history(cli, cli_client, protocol, trader, cli_pool):
    protocol.token.mint(trader, 20_000 * USDC, sender=trader)
    for name in ("a", "b"):
        acct = cli_client.open_account(name)
        cli_client.deposit(acct, 10_000)
        cli_client.trade(acct, "ETH", "1")
    out = ok(cli("portfolio", "--all"))
    assert "P&L correlation: not enough history (2 block(s) with P&L events; needs 3)" in out
    doc = json.loads(ok(cli("portfolio", "--all", "--json")))
    assert doc["correlation"]["matrix"] is None


def test_portfolio_all__another_owner_without_a_signer_of_theirs(cli, trader, cli_strategies):
    out = ok(cli("portfolio", "--all", "--owner", trader.address, account="test:7"))
    assert f"strategies of {trader.address}" in out
    assert row(out, "#2", "lev")


# --- --shock ------------------------------------------------------------------------------------


def test_portfolio_shock__one_account(cli, cli_client, cli_strategies):
    trend = cli_strategies[0]
    out = ok(cli("portfolio", "--sub", "0", "--shock", "BTC=-30%"))
    r = cli_client.stress(trend, "BTC=-30%")
    assert "stress: BTC -30.00% (" in out
    assert "other markets at their cached marks" in out
    cells = row(out, "#0", "trend", fmt_usd(r.equity_before))
    assert cells[3] == fmt_usd(r.equity_after)
    assert "no account would be liquidatable after the shock" in out
    doc = json.loads(ok(cli("portfolio", "--shock", "btc=-30%", "--json")))
    shock = doc["shock"]
    assert shock["prices"][0]["move"] == "-0.3"
    assert shock["accounts"][0]["equity_after"] == num(r.equity_after)
    assert shock["accounts"][0]["liquidatable"] is False
    assert doc["positions"]  # the usual portfolio document is still there


def test_portfolio_shock__all_accounts_total_and_who_is_liquidatable(
    cli, cli_client, cli_strategies
):
    out = ok(cli("portfolio", "--all", "--shock", "BTC=-30%,ETH=-25%"))
    results = [cli_client.stress(a, "BTC=-30%,ETH=-25%") for a in cli_strategies]
    assert [r.liquidatable for r in results] == [False, False, True]  # 'lev': 8x long BTC
    assert "liquidatable after the shock: #2 'lev'" in out
    before = fmt_usd(sum((r.equity_before for r in results), Decimal(0)))
    total = row(out, "total", before, last=True)  # the stress table's, after the book's
    assert total[2] == fmt_usd(sum((r.equity_after for r in results), Decimal(0)))
    assert total[-3:] == ["1", "of", "3"]
    doc = json.loads(ok(cli("portfolio", "--all", "--shock", "BTC=-30%,ETH=-25%", "--json")))
    assert doc["shock"]["total"]["liquidatable"] == [f"{cli_strategies[2]:#x}"]
    assert [a["equity_after"] for a in doc["shock"]["accounts"]] == [
        num(r.equity_after) for r in results
    ]


@pytest.mark.parametrize(
    ("shock", "problem"),
    [
        ("BTC=abc", "lacks the % sign"),
        ("BTC=abc%", "is not a percentage"),
        ("DOGE=-10%", "'DOGE' is not a listed market"),
        ("BTC=-150%", "BTC cannot fall 150%"),
        ("BTC=-10%,ETH=-5%,btc=-20%", "BTC is shocked twice"),
    ],
)
def test_portfolio_shock__bad_input_is_one_line_with_the_format(
    cli, cli_strategies, shock, problem
):
    line = failed(cli("portfolio", "--all", "--shock", shock))
    assert problem in line
    assert "SYMBOL=PCT% pairs separated by commas, e.g. BTC=-30%,ETH=-25%" in line


def test_portfolio_all__usage_mistakes(cli, cli_strategies):
    for args in (
        ["portfolio", "--all", "--sub", "1"],
        ["portfolio", "--owner", "0x" + "11" * 20],
        ["portfolio", "--from-block", "3"],
        ["history", "--all", "--account-id", "0x1"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)


# --- history ------------------------------------------------------------------------------------


def test_history__events_and_cumulative_pnl_match_the_fill_events(
    cli, protocol, chain, cli_strategies
):
    trend = cli_strategies[0]
    out = ok(cli("history", "--sub", "0"))
    fills = [
        f
        for f in protocol.clearinghouse.Fill.range(0, chain.blocks.height + 1)
        if int(f.account) == trend
    ]
    assert len(fills) == 3
    for f in fills:
        cells = row(out, str(f.block_number))
        assert "fill" in cells and "BTC" in cells
    realised = sum(from_wad(int(f.realized_pnl)) for f in fills)
    assert realised != 0
    cents = realised.quantize(Decimal("0.01"))
    assert row(out, "realised", "P&L")[-1] == ("+" if cents > 0 else "") + fmt_usd(cents)
    assert "cumulative P&L" in out
    assert row(out, str(chain.blocks.height), "now")


def test_history__all_json_reconciles_each_balance(cli, protocol, cli_strategies):
    doc = json.loads(ok(cli("history", "--all", "--json")))
    assert [a["account"]["id"] for a in doc["accounts"]] == [f"{a:#x}" for a in cli_strategies]
    for a, acct in zip(doc["accounts"], cli_strategies, strict=True):
        t = a["totals"]
        balance = from_wad(int(protocol.clearinghouse.balance_of(acct, 0)))
        assert Decimal(t["net_flows"]["USDC"]) + Decimal(t["settled_pnl"]) == balance
        assert a["series"][-1]["label"] == "now"
        assert a["series"][-1]["pnl"] == t["total_pnl"]
        assert a["events"][0]["kind"] == "deposit" and a["events"][0]["amount"] is not None
    later = doc["accounts"][0]["events"][-1]["block_number"]
    tail = json.loads(ok(cli("history", "--from-block", str(later), "--json")))
    assert [e["block_number"] for e in tail["accounts"][0]["events"]] == [later]


@pytest.fixture
def run_all(cli: Any) -> Any:
    def invoke() -> str:
        return ok(cli("portfolio", "--all"))

    return invoke
