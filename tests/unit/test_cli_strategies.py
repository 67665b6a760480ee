"""`perpdex mode | operator | loss-cap`, run in-process with typer's CliRunner against the
test chain (like tests/unit/test_cli.py), and the SDK calls behind them.

Each command's effect is read back from the Clearinghouse (the mode flag, `is_operator`,
`loss_cap`, positions and the trigger fee in the caller's wallet); each refusal is one
line with a next step and leaves the chain as it was.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from cli_helpers import failed, ok
from typer.testing import CliRunner

from perpdex.cli import fmt_amount, fmt_usd
from perpdex.cli.main import app
from perpdex.errors import PerpdexError
from perpdex.sdk.client import PerpdexClient
from perpdex.units import WAD, from_wad

PORTFOLIO_FLAG = 2  # account header bit (contracts/modules/constants.vy)
UNIT = 10**12  # one USDC unit (6 decimals) in USD WAD
HEDGER = "test:2"  # the `hedger` fixture: another owner
KEEPER = "test:5"  # the `keeper` fixture


@pytest.fixture
def sdk(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


def is_portfolio(ch: Any, acct: int) -> bool:
    return bool(int(ch.account_header(acct)) & PORTFOLIO_FLAG)


def sizes(ch: Any, acct: int) -> list[int]:
    return [int(ch.position(acct, m)[0]) for m in range(3)]


def hedged(h: Any, trader: Any, dollars: int, portfolio: bool) -> int:
    """The trader's sub-account long 1 BTC hedged by short 20 ETH: the isolated
    requirement is ~$16,016, the portfolio one ~$15,586."""
    acct = h.funded_account(trader, dollars, portfolio=portfolio, name="hedged")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-20")
    return acct


def losing(protocol: Any, h: Any, trader: Any) -> int:
    """$20,000, long 1 BTC, short 10 ETH, long 100 SOL, then BTC -1.5%: equity ~$18,450."""
    acct = h.funded_account(trader, 20_000, name="losing")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-10")
    h.trade(trader, acct, "SOL", "100")
    h.set_price("BTC", 98_500, trader)
    protocol.ops.refresh([0, 1, 2], sender=trader)
    return acct


def test_help__lists_the_strategy_commands():
    runner = CliRunner()
    out = ok(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}))
    for command in ("mode", "operator", "loss-cap"):
        assert f" {command} " in out
    out = ok(runner.invoke(app, ["operator", "--help"], env={"COLUMNS": "200"}))
    for command in ("add", "remove", "check"):
        assert f" {command} " in out
    out = ok(runner.invoke(app, ["loss-cap", "--help"], env={"COLUMNS": "200"}))
    for command in ("set", "clear", "show", "trigger"):
        assert f" {command} " in out


# --- mode ---------------------------------------------------------------------------------------


def test_mode__both_ways_prints_the_requirement_before_and_after(cli, ch, sdk, h, trader, cli_pool):
    acct = hedged(h, trader, 20_000, portfolio=False)
    iso = sdk.margin(acct)

    out = ok(cli("mode", "portfolio"))
    assert is_portfolio(ch, acct)
    port = sdk.margin(acct)
    assert port.initial < iso.initial
    assert "from isolated to portfolio margin" in out
    assert f"initial requirement {fmt_usd(iso.initial)} → {fmt_usd(port.initial)}" in out
    assert f"free margin {fmt_usd(port.free)}" in out

    out = ok(cli("mode", "isolated", "--account-id", f"{acct:#x}"))
    assert not is_portfolio(ch, acct)
    assert "from portfolio to isolated margin" in out
    assert f"initial requirement {fmt_usd(port.initial)} → {fmt_usd(iso.initial)}" in out


def test_mode__under_margined_in_isolated__refused_with_the_shortfall(
    cli, ch, sdk, h, trader, cli_pool
):
    acct = hedged(h, trader, 15_800, portfolio=True)
    m = sdk.margin(acct)
    assert m.initial <= m.equity < m.isolated
    line = failed(cli("mode", "isolated"))
    assert "clearinghouse: mode switch leaves account under-margined" in line
    assert f"would need {fmt_usd(m.isolated)} initial margin in isolated mode" in line
    assert f"its equity is {fmt_usd(m.equity)}" in line
    assert "deposit at least $" in line and "--sub 0`) or reduce positions" in line
    assert is_portfolio(ch, acct)


def test_mode__unchanged__one_line_error(cli, h, trader):
    h.open(trader, "iso")
    line = failed(cli("mode", "isolated"))
    assert "clearinghouse: mode unchanged" in line and "already uses that margin mode" in line


def test_mode__by_non_owner__refused(cli, ch, h, trader):
    acct = h.open(trader, "iso")
    line = failed(cli("mode", "portfolio", "--account-id", f"{acct:#x}", account=HEDGER))
    assert "not account owner" in line
    assert not is_portfolio(ch, acct)


def test_mode__unknown_mode__usage_error(cli):
    result = cli("mode", "cross")
    assert result.exit_code == 2
    assert "'cross' is not one of" in result.output


# --- operator -----------------------------------------------------------------------------------


def test_operator__add_check_remove(cli, ch, h, trader, hedger, cli_pool):
    acct = h.funded_account(trader, 5_000)
    ident = f"{acct:#x}"
    out = ok(cli("operator", "add", hedger.address))
    assert ch.is_operator(acct, hedger)
    assert f"{hedger.address} may now trade #0 'main'" in out and "never withdraw" in out
    assert "is an operator" in ok(cli("operator", "check", hedger.address))

    # the operator trades the account, but cannot withdraw from it
    ok(cli("trade", "BTC", "0.01", "--account-id", ident, account=HEDGER))
    assert int(ch.position(acct, 0)[0]) == WAD // 100
    assert "not account owner" in failed(
        cli("withdraw", "1", "--account-id", ident, account=HEDGER)
    )

    out = ok(cli("operator", "remove", hedger.address, "--sub", "0"))
    assert not ch.is_operator(acct, hedger)
    assert f"{hedger.address} may no longer trade #0 'main'" in out
    out = ok(cli("operator", "check", hedger.address, "--account-id", ident, account="test:7"))
    assert "is not an operator" in out and "perpdex operator add" in out
    result = cli("trade", "BTC", "0.01", "--account-id", ident, account=HEDGER)
    assert result.exit_code == 1  # after the quote it printed: one line with the next step
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: trade failed: clearinghouse: not authorized")
    assert "`perpdex operator add ADDRESS`" in line


def test_operator__check_the_owner(cli, h, trader):
    h.open(trader)
    assert f"{trader.address} owns #0 'main'" in ok(cli("operator", "check", trader.address))


def test_operator__by_non_owner__refused(cli, ch, h, trader, stranger):
    acct = h.open(trader)
    line = failed(
        cli("operator", "add", stranger.address, "--account-id", f"{acct:#x}", account=HEDGER)
    )
    assert "set operator failed: clearinghouse: not account owner" in line
    assert "sign as the owner" in line
    assert not ch.is_operator(acct, stranger)


def test_operator__bad_address__one_line_error(cli, h, trader):
    h.open(trader)
    assert "'0x1234' is not an address" in failed(cli("operator", "add", "0x1234"))


# --- loss-cap set / show / clear -----------------------------------------------------------------


def test_loss_cap__set_show_clear(cli, ch, sdk, h, trader):
    acct = h.funded_account(trader, 20_000)
    out = ok(cli("loss-cap", "set", "19000.5"))
    assert int(ch.loss_cap(acct)) == 19_000_500_000_000_000_000_000
    assert sdk.loss_cap(acct) == Decimal("19000.5")
    fee = from_wad(int(ch.loss_cap_fee()))
    assert "set to $19,000.50 (was none)" in out and f"for the {fmt_usd(fee)} fee" in out
    assert "equity $20,000.00 is $999.50 above it" in out

    out = ok(cli("loss-cap", "show"))
    assert "loss cap of #0 'main'" in out
    assert out.count("$19,000.50") == 1 and "$20,000.00" in out
    assert "$999.50 (5.00% of equity)" in out and "above the floor" in out
    assert fmt_usd(fee) in out

    # the account table shows the cap too
    row = next(line for line in ok(cli("account")).splitlines() if " main " in line)
    assert row.split()[:5] == ["0", row.split()[1], "main", "isolated", "$19,000.50"]

    out = ok(cli("loss-cap", "set", "18000", "--account-id", f"{acct:#x}"))
    assert "set to $18,000.00 (was $19,000.50)" in out
    assert int(ch.loss_cap(acct)) == 18_000 * WAD

    out = ok(cli("loss-cap", "clear"))
    assert int(ch.loss_cap(acct)) == 0
    assert "removed the loss cap of #0 'main'" in out and "(was $18,000.00)" in out
    assert "has no loss cap; nothing to clear" in ok(cli("loss-cap", "clear"))
    assert "has no loss cap; its owner sets one" in ok(cli("loss-cap", "show"))


def test_loss_cap__set_above_the_equity__needs_confirmation_then_warns(cli, ch, h, trader):
    acct = h.funded_account(trader, 100)
    line = failed(cli("loss-cap", "set", "500"))
    assert "loss cap $500.00 is above the account's equity $100.00" in line
    assert "--yes-above-equity" in line
    assert int(ch.loss_cap(acct)) == 0  # refused before sending
    out = ok(cli("loss-cap", "set", "500", "--yes-above-equity"))
    assert int(ch.loss_cap(acct)) == 500 * WAD
    assert "equity $100.00 is already below it: any position this account opens" in out


@pytest.mark.parametrize("amount", ["0", "-5", "lots"])
def test_loss_cap__set_needs_a_positive_amount(cli, ch, h, trader, amount):
    acct = h.open(trader)
    result = cli("loss-cap", "set", amount)
    assert result.exit_code == 2
    assert "above zero" in result.output or "not a number" in result.output
    assert int(ch.loss_cap(acct)) == 0


def test_loss_cap__set_by_non_owner__refused(cli, ch, h, trader):
    acct = h.open(trader)
    line = failed(cli("loss-cap", "set", "100", "--account-id", f"{acct:#x}", account=HEDGER))
    assert "set loss cap failed: clearinghouse: not account owner" in line
    assert int(ch.loss_cap(acct)) == 0


def test_loss_cap__sdk_units_and_refusals(sdk, ch, h, trader):
    acct = h.funded_account(trader, 1_000)
    sdk.set_loss_cap(acct, "900.25")
    assert int(ch.loss_cap(acct)) == 900_250_000_000_000_000_000
    assert sdk.summary(acct).loss_cap == Decimal("900.25")
    sdk.set_loss_cap(acct, 0)
    assert sdk.loss_cap(acct) == 0
    with pytest.raises(PerpdexError, match="must be zero or more dollars"):
        sdk.set_loss_cap(acct, -1)
    with pytest.raises(PerpdexError, match="finer than 18 decimals"):
        sdk.set_loss_cap(acct, "1e-19")
    with pytest.raises(PerpdexError, match="not a number"):
        sdk.set_loss_cap(acct, "lots")


# --- loss-cap trigger ---------------------------------------------------------------------------


def test_loss_cap__trigger_below_the_floor_closes_and_pays_the_caller(
    cli, ch, protocol, sdk, h, trader, keeper, cli_pool
):
    acct = losing(protocol, h, trader)
    out = ok(cli("loss-cap", "set", "19000", "--yes-above-equity"))
    equity = sdk.margin(acct).equity
    assert equity < 19_000
    assert f"equity {fmt_usd(equity)} is already below it" in out
    out = ok(cli("loss-cap", "show", "--account-id", f"{acct:#x}", account="test:7"))
    assert "below the floor" in out
    assert f"perpdex loss-cap trigger --account-id {acct:#x}" in out

    fee = int(ch.loss_cap_fee())
    wallet = int(protocol.token.balanceOf(keeper))
    out = ok(cli("loss-cap", "trigger", "--account-id", f"{acct:#x}", account=KEEPER))

    assert sizes(ch, acct) == [0, 0, 0]
    assert int(protocol.token.balanceOf(keeper)) == wallet + fee // UNIT
    assert "loss cap of #0 'losing'" in out and "below its floor $19,000.00" in out
    assert "closed +1 BTC, -10 ETH, +100 SOL" in out
    balance = from_wad(int(ch.balance_of(acct, 0)))
    assert f"fee earned {fmt_usd(from_wad(fee))}, paid in USDC to {keeper.address}" in out
    assert f"the account keeps {fmt_amount(balance)} USDC" in out
    assert int(ch.loss_cap(acct)) == 19_000 * WAD  # the cap stays

    line = failed(cli("loss-cap", "trigger", "--account-id", f"{acct:#x}", account=KEEPER))
    assert "clearinghouse: no positions" in line and "nothing to close" in line


def test_loss_cap__trigger_above_the_floor__refused(cli, ch, protocol, h, trader, keeper, cli_pool):
    acct = h.funded_account(trader, 20_000)
    h.trade(trader, acct, "BTC", "1")
    ok(cli("loss-cap", "set", "15000"))
    before = sizes(ch, acct)
    wallet = int(protocol.token.balanceOf(keeper))
    line = failed(cli("loss-cap", "trigger", "--account-id", f"{acct:#x}", account=KEEPER))
    assert "trigger loss cap failed: clearinghouse: equity above loss cap" in line
    assert "`perpdex loss-cap show --account-id ID`" in line
    assert sizes(ch, acct) == before != [0, 0, 0]
    assert int(protocol.token.balanceOf(keeper)) == wallet


def test_loss_cap__trigger_without_a_cap__refused(cli, ch, protocol, h, trader, cli_pool):
    acct = losing(protocol, h, trader)
    line = failed(cli("loss-cap", "trigger", "--account-id", f"{acct:#x}", account=KEEPER))
    assert "clearinghouse: no loss cap" in line and "perpdex loss-cap set USD" in line
    assert sizes(ch, acct) != [0, 0, 0]


def test_loss_cap__trigger_needs_the_account_id(cli):
    result = cli("loss-cap", "trigger", account=KEEPER)
    assert result.exit_code == 2
    assert "--account-id" in result.output
