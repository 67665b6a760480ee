"""`perpdex quote | trade | close | portfolio | lp`, run in-process with typer's CliRunner
against the test chain (like tests/unit/test_cli.py).

The printed figures are compared with the chain read independently: the lens, the
Clearinghouse's views and Fill events, the vault; errors are one line with a next step.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cli_helpers import failed, ok
from typer.testing import CliRunner

from perpdex.cli import fmt_amount, fmt_usd
from perpdex.cli.main import app
from perpdex.cli.portfolio import fmt_pct, fmt_price, health_text, pnl
from perpdex.cli.trade import parse_percent, parse_size
from perpdex.config import load_risk
from perpdex.sdk.client import PerpdexClient
from perpdex.units import WAD, from_wad

USDC = 10**6
TRADER = "test:1"  # the `trader` fixture is ape's test account 1
LP = "test:3"  # the `lp` fixture


@pytest.fixture
def run(cli: Any) -> Any:
    return cli


@pytest.fixture
def cli_client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def cli_acct(cli_client: PerpdexClient, protocol: Any, trader: Any, cli_pool: None) -> int:
    """The trader's portfolio sub-account 0 holding $50,000."""
    protocol.token.mint(trader, 50_000 * USDC, sender=trader)
    acct = cli_client.open_account("main", portfolio=True)
    cli_client.deposit(acct, 50_000)
    return acct


def last_fill(protocol: Any, chain: Any) -> Any:
    """The Fill event of the newest block (the command's trade)."""
    height = chain.blocks.height
    logs = list(protocol.clearinghouse.Fill.range(height, height + 1))
    assert logs, f"no Fill in block {height}"
    return logs[-1]


def row(out: str, *starts: str) -> list[str]:
    """The whitespace-split cells of the first output line whose cells start with `starts`."""
    for line in out.splitlines():
        cells = line.split()
        if cells[: len(starts)] == list(starts):
            return cells
    raise AssertionError(f"no row starting with {starts} in:\n{out}")


# --- pure helpers ------------------------------------------------------------------------------


def test_help__lists_the_trading_commands():
    out = ok(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}))
    for command in ("quote", "trade", "close", "portfolio", "lp", "risk"):
        assert f" {command} " in out


def test_lp_help__lists_deposit_withdraw_status():
    out = ok(CliRunner().invoke(app, ["lp", "--help"], env={"COLUMNS": "200"}))
    for command in ("deposit", "withdraw", "status"):
        assert f" {command} " in out


def test_parse_size__signed_and_refuses_zero():
    assert parse_size("-0.5") == Decimal("-0.5")
    assert parse_size("1_000") == Decimal(1000)
    with pytest.raises(Exception, match="other than zero"):
        parse_size("0")
    with pytest.raises(Exception, match="not a size"):
        parse_size("lots")


def test_parse_percent():
    assert parse_percent("0.5") == Decimal("0.005")
    assert parse_percent("2%") == Decimal("0.02")
    with pytest.raises(Exception, match="from 0 up to 100"):
        parse_percent("-1")


def test_formatting():
    assert fmt_price(Decimal("101234.5")) == "$101,234.50"
    assert fmt_price(Decimal("151.23456")) == "$151.2346"
    assert fmt_price(None) == "-"
    assert fmt_pct(Decimal("0.01234")) == "1.23%"
    assert pnl(Decimal(5)) == "[green]+$5.00[/]"
    assert pnl(Decimal(-5)) == "[red]-$5.00[/]"


@pytest.mark.parametrize(
    ("equity", "colour"),
    [(Decimal(300), "[green]"), (Decimal(150), "[yellow]"), (Decimal(90), "[bold red]")],
)
def test_health_text__colours_by_margin(equity, colour):
    text = health_text(equity / 100, equity, Decimal(200), Decimal(100))
    assert text.startswith(colour)
    assert health_text(None, Decimal(1), Decimal(0), Decimal(0)) == "[green]no positions[/]"


# --- quote -------------------------------------------------------------------------------------


def test_quote__without_arguments__lists_the_markets(run, protocol, cli_pool):
    out = ok(run("quote", account=None))
    for symbol in protocol.symbols:
        m = protocol.market_id(symbol)
        cells = row(out, symbol)
        assert cells[1] == fmt_price(from_wad(protocol.oracle.latest(m)[0]))
        assert cells[-1] == "open"
    assert "perpdex quote SYMBOL SIZE" in out


def test_quote__prints_the_lens_figures(run, protocol, cli_acct):
    out = ok(run("quote", "BTC", "0.5"))
    q = protocol.lens.quote(cli_acct, 0, WAD // 2)
    assert "quote: buy 0.5 BTC" in out
    assert row(out, "fill", "price")[-1] == fmt_price(from_wad(q.fill_price))
    assert row(out, "oracle", "price")[-1] == fmt_price(from_wad(q.oracle_price))
    assert row(out, "fee")[-1] == fmt_usd(from_wad(q.fee))
    assert row(out, "equity")[1:] == [fmt_usd(Decimal(50_000)), fmt_usd(from_wad(q.equity_after))]
    assert row(out, "initial", "margin")[-1] == fmt_usd(from_wad(q.initial_after))
    assert row(out, "BTC", "liquidation", "price")[-1] == fmt_price(
        from_wad(q.liquidation_price_after)
    )
    assert protocol.clearinghouse.position(cli_acct, 0)[0] == 0  # nothing traded


def test_quote__negative_size_sells(run, protocol, cli_acct):
    out = ok(run("quote", "ETH", "-4"))
    q = protocol.lens.quote(cli_acct, 1, -4 * WAD)
    assert "quote: sell 4 ETH" in out
    assert row(out, "fill", "price")[-1] == fmt_price(from_wad(q.fill_price))
    assert from_wad(q.fill_price) < from_wad(q.oracle_price)


def test_quote__without_sub_account__quotes_an_empty_one(run, cli_pool):
    out = ok(run("quote", "SOL", "10"))
    assert "no sub-account yet" in out
    assert "fill price" in out


def test_quote__unknown_market__one_line_error(run, cli_pool):
    line = failed(run("quote", "XRP", "1"))
    assert "'XRP' is not a listed market; use one of: BTC, ETH, SOL" in line


def test_quote__symbol_without_size__usage_error(run, cli_pool):
    result = run("quote", "BTC")
    assert result.exit_code == 2
    assert "give the SIZE" in result.output


# --- trade and close -----------------------------------------------------------------------------


def test_trade__opens_a_position_at_the_printed_price(run, protocol, chain, cli_acct):
    q = protocol.lens.quote(cli_acct, 0, WAD // 2)
    out = ok(run("trade", "BTC", "0.5"))
    ch = protocol.clearinghouse
    assert ch.position(cli_acct, 0)[0] == WAD // 2
    fill = last_fill(protocol, chain)
    price = from_wad(fill.price)
    assert price == from_wad(q.fill_price)  # nothing moved between the quote and the trade
    assert row(out, "fill", "price")[-1] == fmt_price(price)  # the quote it printed first
    limit = fmt_price(from_wad(-(-fill.price * 1005 // 1000)))
    assert f"✓ bought 0.5 BTC at {fmt_price(price)} (limit {limit}), fee " in out
    assert f"fee {fmt_usd(from_wad(fill.fee))}; position +0.5 BTC" in out
    m = ch.account_margin(cli_acct)
    assert f"equity {fmt_usd(from_wad(m.equity))}" in out


def test_trade__negative_size_opens_a_short(run, protocol, cli_acct):
    out = ok(run("trade", "ETH", "-4", "--slippage", "1"))
    assert protocol.clearinghouse.position(cli_acct, 1)[0] == -4 * WAD
    assert "✓ sold 4 ETH" in out and "position -4 ETH" in out


def test_trade__limit_below_the_fill__refused_with_the_distance_to_the_quote(
    run, protocol, cli_acct
):
    q = protocol.lens.quote(cli_acct, 0, WAD)
    fill = from_wad(q.fill_price)
    limit = fill * Decimal("0.9")
    result = run("trade", "BTC", "1", "--limit", str(limit))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]  # after the quote table
    away = fmt_pct((fill - limit) / fill)
    assert line.startswith(
        f"error: --limit {fmt_price(limit)} is {away} below the quoted fill {fmt_price(fill)}"
    )
    assert f"Set --limit to at least {fmt_price(fill)}, use --slippage PCT instead" in line
    assert "moved past" not in line
    assert protocol.clearinghouse.position(cli_acct, 0)[0] == 0


def test_trade__sell_limit_above_the_fill__refused(run, protocol, cli_acct):
    q = protocol.lens.quote(cli_acct, 1, -2 * WAD)
    fill = from_wad(q.fill_price)
    result = run("trade", "ETH", "-2", "--limit", str(fill + 1))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]  # after the quote table
    assert f"above the quoted fill {fmt_price(fill)} (oracle" in line
    assert f"Set --limit to at most {fmt_price(fill)}" in line
    assert protocol.clearinghouse.position(cli_acct, 1)[0] == 0


def test_trade__limit_at_the_fill__fills(run, protocol, cli_acct):
    q = protocol.lens.quote(cli_acct, 0, WAD // 2)
    ok(run("trade", "BTC", "0.5", "--limit", str(from_wad(q.fill_price))))
    assert protocol.clearinghouse.position(cli_acct, 0)[0] == WAD // 2


def test_trade__beyond_margin__one_line_error(run, protocol, cli_acct):
    result = run("trade", "BTC", "5")  # $500k: isolated IM $50,250 > $50k
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(
            "error: trade failed: clearinghouse: below initial margin. reduce positions or deposit"
        )
    )


def test_trade__without_sub_account__says_open_one(run, cli_pool):
    assert "`perpdex open-account NAME`" in failed(run("trade", "BTC", "1"))


def test_close__prints_the_realised_pnl(run, protocol, chain, cli_client, cli_acct, trader):
    cli_client.trade(cli_acct, "BTC", "0.4")
    for feed in protocol.feeds["BTC"]:
        feed.set_answer(105_000 * 10**8, sender=trader)
    ch = protocol.clearinghouse
    before = ch.balance_of(cli_acct, 0)
    out = ok(run("close", "BTC"))
    assert ch.position(cli_acct, 0)[0] == 0
    log = last_fill(protocol, chain)
    realized = from_wad(log.realized_pnl)
    fee = from_wad(log.fee)
    assert realized > 0
    assert f"realised PnL +{fmt_usd(realized)}" in out
    assert f"fee {fmt_usd(fee)}" in out
    assert "position flat" in out
    balance = from_wad(ch.balance_of(cli_acct, 0))
    assert balance - from_wad(before) == realized - fee - from_wad(log.funding_paid)
    assert f"balance {fmt_amount(balance)} USDC" in out


def test_close__no_position__one_line_error(run, cli_acct):
    line = failed(run("close", "SOL"))
    assert "has no SOL position; `perpdex portfolio` lists its positions" in line


# --- portfolio -----------------------------------------------------------------------------------


def test_portfolio__tables_match_the_lens(run, protocol, cli_client, cli_acct, trader):
    cli_client.trade(cli_acct, "BTC", "0.3")
    cli_client.trade(cli_acct, "ETH", "-6")
    cli_client.trade(cli_acct, "SOL", "100")
    for feed in protocol.feeds["ETH"]:
        feed.set_answer(3_030 * 10**8, sender=trader)
    cli_client.refresh(["ETH"])
    out = ok(run("portfolio"))
    v = protocol.lens.account_summary(cli_acct)
    assert "portfolio margin" in out
    # positions: size, entry, mark, PnL and liquidation price per market
    for p in v.positions:
        symbol = protocol.symbols[p.market]
        cells = row(out, symbol, "long" if p.size > 0 else "short")
        assert cells[3:6] == [
            fmt_price(from_wad(p.entry_price)),
            fmt_price(from_wad(p.mark_price)),
            fmt_usd(from_wad(p.notional)),
        ]
        assert cells[6] == pnl(from_wad(p.unrealized_pnl)).split("]")[1].split("[")[0]
        liq = from_wad(p.liquidation_price)
        assert cells[9] == (fmt_price(liq) if liq else "none")
    # margin
    assert row(out, "equity")[-1] == fmt_usd(from_wad(v.equity))
    assert row(out, "initial", "margin")[-1] == fmt_usd(from_wad(v.initial))
    assert row(out, "maintenance", "margin")[-1] == fmt_usd(from_wad(v.maintenance))
    assert row(out, "health")[-1] == f"{from_wad(v.health):.2f}×"
    # every scenario by name with its loss, the binding one marked
    names = [s.name for s in load_risk().scenarios]
    for k, name in enumerate(names):
        cells = row(out, str(k), name)
        loss = fmt_usd(from_wad(v.scenario_losses[k]))
        if k == v.binding_scenario:
            assert cells[-3:] == [loss, "◀", "worst"]
        else:
            assert cells[-1] == loss
    # the saving against isolated mode
    saved = from_wad(v.isolated_initial - v.initial)
    assert saved > 0
    assert row(out, "isolated", "requirement")[-1] == fmt_usd(from_wad(v.isolated_initial))
    assert row(out, "portfolio", "requirement")[-1] == fmt_usd(from_wad(v.initial))
    assert f"{fmt_usd(saved)} (" in row(out, "margin", "saved", "vs", "isolated")[-2] + " ("


def test_portfolio__isolated_account_shows_what_switching_saves(
    run, protocol, cli_client, cli_pool, trader
):
    protocol.token.mint(trader, 50_000 * USDC, sender=trader)
    acct = cli_client.open_account("iso")
    cli_client.deposit(acct, 50_000)
    cli_client.trade(acct, "ETH", "-6")
    cli_client.trade(acct, "BTC", "0.2")  # a hedge the fat-tailed book still credits
    out = ok(run("portfolio"))
    pf = cli_client.portfolio(acct)
    assert pf.margin_saved > 0
    assert "isolated margin" in out
    assert row(out, "portfolio", "mode", "would", "save")[-2] == fmt_usd(pf.margin_saved)
    assert "switch this account to portfolio margin" in out
    assert f"`perpdex mode portfolio --account-id {acct:#x}`" in out
    assert "PerpdexClient" not in out


def test_portfolio__narrow_terminal__one_block_per_position(run, protocol, cli_client, cli_acct):
    cli_client.trade(cli_acct, "ETH", "-6")
    out = ok(run("portfolio", columns=80))
    pos = protocol.lens.account_summary(cli_acct).positions[0]
    entry, mark = fmt_price(from_wad(pos.entry_price)), fmt_price(from_wad(pos.mark_price))
    assert f"ETH short -6 @ {entry}, mark {mark}, notional" in out
    assert f"liq. {fmt_price(from_wad(pos.liquidation_price))} (" in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 100  # blocks wrap, tables fit


def test_portfolio__no_positions(run, cli_acct):
    out = ok(run("portfolio"))
    assert "no open positions" in out
    assert row(out, "equity")[-1] == "$50,000.00"
    assert "stress scenarios" not in out


def test_portfolio__other_owners_account_by_id(run, cli_acct):
    out = ok(run("portfolio", "--account-id", f"{cli_acct:#x}", account="test:7"))
    assert "'main'" in out


# --- lp ----------------------------------------------------------------------------------------


def test_lp__deposit_status_withdraw(run, protocol, lp, cli_pool):
    vault, token = protocol.vault, protocol.token
    token.mint(lp, 20_000 * USDC, sender=lp)
    out = ok(run("lp", "deposit", "10000", account=LP))
    shares = Decimal(vault.balanceOf(lp)) / 10**12
    assert f"deposited 10,000.00 USDC for {shares:,.6f} shares" in out
    assert token.balanceOf(lp) == 10_000 * USDC

    out = ok(run("lp", "status", account=LP))
    assert row(out, "shares")[1] == f"{shares:,.6f}"
    assert row(out, "pool", "equity")[-1] == fmt_usd(from_wad(protocol.lens.vault_equity()))
    assert row(out, "insurance", "fund")[-1] == fmt_usd(
        from_wad(protocol.clearinghouse.insurance_fund())
    )
    redeemable = Decimal(vault.previewRedeem(vault.balanceOf(lp))) / USDC
    assert row(out, "redeemable")[-2] == fmt_amount(redeemable)
    for symbol in protocol.symbols:
        assert row(out, symbol)[-1] == "0.00%"  # no open interest yet

    out = ok(run("lp", "withdraw", "--all", account=LP))
    assert vault.balanceOf(lp) == 0
    assert token.balanceOf(lp) == 10_000 * USDC + int(redeemable * USDC)
    assert f"for {fmt_amount(redeemable)} USDC" in out and "1.05% withdrawal fee" in out


def test_lp__withdraw_amount(run, protocol, lp, cli_pool):
    protocol.token.mint(lp, 1_000 * USDC, sender=lp)
    ok(run("lp", "deposit", "1000", account=LP))
    ok(run("lp", "withdraw", "250.5", account=LP))
    assert protocol.token.balanceOf(lp) == 250_500_000


def test_lp__status_shows_utilisation(run, protocol, cli_client, cli_acct):
    cli_client.trade(cli_acct, "BTC", "1")
    out = ok(run("lp", "status", "--owner", protocol.vault.owner(), account=None))
    ch = protocol.clearinghouse
    # the chain's exposure rule: max_vault_exposure x (raw cash + the pool's loss in BTC)
    pending, sysp = int(ch.pending_fees()), ch.system_params()
    shares = (
        pending * int(sysp.insurance_bps) // 10_000 + pending * int(sysp.protocol_bps) // 10_000
    )
    base = int(ch.pool_cash()) - (pending - shares)
    base += min(int(ch.pool_sums(0)[0]) - int(ch.mark(0)[0]), 0)
    cap = from_wad(base * int(ch.market_params(0).max_vault_exposure) // WAD)
    exposure = from_wad(ch.mark(0)[0])
    cells = row(out, "BTC")
    assert cells[3] == "short"
    assert cells[-3:] == [fmt_usd(exposure), fmt_usd(cap), fmt_pct(exposure / cap)]


def test_lp__withdraw_needs_one_way_to_say_how_much(run, cli_pool):
    result = run("lp", "withdraw", "10", "--all", account=LP)
    assert result.exit_code == 2
    assert "exactly one of AMOUNT, --all or --shares" in result.output


def test_lp__withdraw_without_shares__one_line_error(run, cli_pool):
    assert "holds no LP shares; deposit first" in failed(run("lp", "withdraw", "--all", account=LP))


def test_lp__deposit_more_than_wallet__one_line_error(run, cli_pool):
    line = failed(run("lp", "deposit", "5", account="test:7"))
    assert "transfer amount exceeds balance" in line and "fund the wallet first" in line


# --- --json -------------------------------------------------------------------------------------


def as_json(result: Any) -> Any:
    """The one JSON document a --json command printed (nothing else on stdout)."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_quote_json__markets_match_the_oracle(run, protocol, cli_pool):
    doc = as_json(run("quote", "--json", account=None))
    assert [m["symbol"] for m in doc["markets"]] == list(protocol.symbols)
    for m in doc["markets"]:
        raw = protocol.oracle.latest(m["id"])[0]
        assert Decimal(m["oracle_price"]) == from_wad(raw)
        params = protocol.clearinghouse.market_params(m["id"])
        assert Decimal(m["taker_fee"]) == from_wad(params.taker_fee)
        assert m["paused"] is False and isinstance(m["mark_time"], int)


def test_quote_json__order_matches_the_lens_to_the_wei(run, protocol, cli_acct):
    doc = as_json(run("quote", "ETH", "-4", "--json"))
    q = protocol.lens.quote(cli_acct, 1, -4 * WAD)
    assert doc["account"] == f"{cli_acct:#x}" and doc["account_exists"] is True
    assert doc["side"] == "sell" and doc["size"] == "-4"
    for key, raw in (
        ("fill_price", q.fill_price),
        ("oracle_price", q.oracle_price),
        ("fee", q.fee),
        ("equity_after", q.equity_after),
        ("initial_after", q.initial_after),
        ("liquidation_price_after", q.liquidation_price_after),
    ):
        assert Decimal(doc[key]) * WAD == raw, key  # exact: no float, no rounding


def test_portfolio_json__matches_the_lens(run, protocol, cli_client, cli_acct):
    cli_client.trade(cli_acct, "BTC", "0.3")
    cli_client.trade(cli_acct, "ETH", "-6")
    doc = as_json(run("portfolio", "--json"))
    v = protocol.lens.account_summary(cli_acct)
    assert doc["account"]["id"] == f"{cli_acct:#x}" and doc["margin"]["mode"] == "portfolio"
    assert Decimal(doc["margin"]["equity"]) * WAD == v.equity
    assert Decimal(doc["margin"]["initial"]) * WAD == v.initial
    assert Decimal(doc["requirement"]["isolated"]) * WAD == v.isolated_initial
    by_symbol = {p["symbol"]: p for p in doc["positions"]}
    for p in v.positions:
        line = by_symbol[protocol.symbols[p.market]]
        assert Decimal(line["size"]) * WAD == p.size
        assert Decimal(line["entry_price"]) * WAD == p.entry_price
    losses = [Decimal(s["loss"]) * WAD for s in doc["scenarios"]]
    assert losses == [Decimal(x) for x in v.scenario_losses]
    assert [s["binding"] for s in doc["scenarios"]].index(True) == v.binding_scenario
    assert set(doc["scenarios"][0]["shocks_bp"]) == {"BTC", "ETH"}


def test_lp_status_json(run, protocol, lp, cli_pool):
    protocol.token.mint(lp, 1_000 * USDC, sender=lp)
    ok(run("lp", "deposit", "1000", account=LP))
    doc = as_json(run("lp", "status", "--json", account=LP))
    vault = protocol.vault
    assert Decimal(doc["shares"]) == Decimal(vault.balanceOf(lp)) / 10**12
    assert Decimal(doc["redeemable"]) == Decimal(vault.previewRedeem(vault.balanceOf(lp))) / USDC
    assert Decimal(doc["pool"]["insurance"]) * WAD == protocol.clearinghouse.insurance_fund()
    assert [m["symbol"] for m in doc["markets"]] == list(protocol.symbols)
