"""The `perpdex` CLI, run in-process with typer's CliRunner against the test chain.

The CLI adopts the provider ape's test runner has connected when `--network` names it, and
reads the deployment from a manifest written for the session's `protocol` fixture.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cli_helpers import failed, ok
from typer.testing import CliRunner

from perpdex.cli import (
    _same_network,
    fmt_amount,
    fmt_usd,
    parse_account_id,
    parse_amount,
    short_id,
)
from perpdex.cli.main import app
from perpdex.sdk.client import PerpdexClient
from perpdex.units import WAD

USDC = 10**6
TRADER = "test:1"  # the `trader` fixture is ape's test account 1


@pytest.fixture
def sdk(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def wallet(token: Any, trader: Any) -> None:
    token.mint(trader, 10_000 * USDC, sender=trader)


# --- pure helpers -----------------------------------------------------------------------------


def test_help__lists_the_commands():
    out = ok(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}))
    for command in ("deposit", "withdraw", "transfer", "open-account", "account", "risk"):
        assert command in out


def test_short_id__owner_prefix_and_index_suffix():
    owner = 0x70997970C51812DC3A010C7D01B50E0D17DC79C8
    assert short_id(owner << 96 | 1) == "0x7099…0001"
    assert short_id(owner << 96 | 0x2A) == "0x7099…002a"


@pytest.mark.parametrize(
    ("value", "text"),
    [("1234.5", "1,234.50"), ("0", "0.00"), ("0.000123", "0.000123"), ("-2", "-2.00")],
)
def test_fmt_amount(value, text):
    assert fmt_amount(Decimal(value)) == text


def test_fmt_usd():
    assert fmt_usd(Decimal("-12.5")) == "-$12.50"
    assert fmt_usd(Decimal("1000000")) == "$1,000,000.00"


def test_parsers():
    assert parse_amount("99.5") == Decimal("99.5")
    assert parse_amount("1_000") == Decimal(1000)
    assert parse_account_id("0x2a") == 42
    assert parse_account_id("42") == 42


def test_same_network__matches_a_prefix_of_the_connected_choice():
    assert _same_network("ethereum:local:foundry", "ethereum:local:foundry")
    assert _same_network("ethereum:local:foundry", "ethereum:local")
    assert _same_network("ethereum:local:foundry", "::foundry")
    assert not _same_network("ethereum:local:foundry", "ethereum:local:node")
    assert not _same_network("ethereum:local:foundry", "arbitrum:local")


# --- open-account and account -----------------------------------------------------------------


def test_open_account__opens_the_next_sub_account(cli, ch, sdk, trader):
    out = ok(cli("open-account", "basis"))
    acct = sdk.account_id(trader, 0)
    assert ch.sub_account_count(trader) == 1
    assert ch.account_name(acct) == "basis"
    assert f"{acct:#x}" in out
    assert "isolated margin" in out
    ok(cli("open-account", "hedge", "--portfolio"))
    assert sdk.account(sdk.account_id(trader, 1)).portfolio


def test_open_account__without_account_uses_test_0_locally(cli, ch, admin, trader):
    ok(cli("open-account", "ops", account=None))
    assert ch.sub_account_count(admin) == 1
    assert ch.sub_account_count(trader) == 0


def test_open_account__long_name__one_line_error(cli, ch, trader):
    line = failed(cli("open-account", "n" * 40))
    assert "shorten it to 32" in line
    assert ch.sub_account_count(trader) == 0


def test_account__table_shows_every_sub_account(cli, sdk, h, protocol, admin, wallet):
    main = sdk.open_account("basis")
    sdk.open_account("hedge", portfolio=True)
    sdk.deposit(main, Decimal("10000"))
    protocol.admin.set_vault(admin, sender=admin)
    protocol.admin.vault_deposit(h.fund(admin, 1_000_000), sender=admin)
    h.trade(sdk.signer, main, "BTC", "0.1")
    m = sdk.margin(main)
    balance = sdk.balances(main)["USDC"]
    assert balance < 10_000  # paid the taker fee

    out = ok(cli("account"))
    rows = {n: line for line in out.splitlines() for n in ("basis", "hedge") if f" {n} " in line}
    basis, hedge = rows["basis"], rows["hedge"]
    assert basis.split()[:4] == ["0", short_id(main), "basis", "isolated"]
    assert hedge.split()[:4] == ["1", short_id(main + 1), "hedge", "portfolio"]
    assert f"{fmt_amount(balance)} USDC" in basis
    assert basis.split()[-4:] == [
        fmt_usd(m.equity),
        fmt_usd(m.initial),
        fmt_usd(m.maintenance),
        f"{m.health:.2f}×",
    ]
    assert hedge.split()[-7:] == ["0.00", "USDC", "$0.00", "$0.00", "$0.00", "no", "positions"]


def test_account__narrow_terminal__one_block_per_account(cli, sdk, wallet):
    sdk.deposit(sdk.open_account("basis"), Decimal("1234.5"))
    out = ok(cli("account", columns=60))
    assert "#0 'basis' isolated 0x7099…0000" in out
    assert "balance 1,234.50 USDC  equity $1,234.50" in out
    assert "initial $0.00  maint. $0.00  health no positions" in out


def test_account__full_ids(cli, sdk, trader):
    acct = sdk.open_account("basis")
    assert f"{acct:#x}" in ok(cli("account", "--full-ids"))


def test_account__other_owner(cli, sdk, stranger, trader):
    sdk.open_account("basis")
    out = ok(cli("account", "--owner", trader.address, account="test:7"))
    assert "basis" in out and trader.address in out
    assert "has no sub-account yet" in ok(cli("account", account="test:7"))


# --- deposit, withdraw, transfer --------------------------------------------------------------


def test_deposit__credits_sub_account(cli, ch, sdk, token, trader, wallet):
    sdk.open_account("main")
    out = ok(cli("deposit", "250.5"))
    acct = sdk.account_id(trader, 0)
    assert ch.balance_of(acct, 0) == 250_500_000 * 10**12
    assert token.balanceOf(trader) == 10_000 * USDC - 250_500_000
    assert "deposited 250.50 USDC" in out and "balance 250.50 USDC" in out


def test_deposit__into_a_chosen_sub_account(cli, ch, sdk, trader, wallet):
    sdk.open_account("main")
    second = sdk.open_account("hedge")
    ok(cli("deposit", "40", "--sub", "1"))
    assert ch.balance_of(second, 0) == 40 * WAD


def test_deposit__into_another_owners_account_by_id(cli, ch, sdk, token, hedger):
    acct = sdk.open_account("main")
    token.mint(hedger, 75 * USDC, sender=hedger)
    ok(cli("deposit", "75", "--account-id", f"{acct:#x}", account="test:2"))
    assert ch.balance_of(acct, 0) == 75 * WAD


def test_deposit__without_sub_account__says_open_one(cli, wallet):
    assert "`perpdex open-account NAME`" in failed(cli("deposit", "10"))


def test_deposit__more_than_wallet__one_line_hint(cli, sdk, wallet):
    sdk.open_account("main")
    line = failed(cli("deposit", "10000.01"))
    assert "deposit failed: erc20: transfer amount exceeds balance" in line
    assert "fund the wallet first" in line


def test_withdraw__pays_the_wallet(cli, ch, sdk, token, trader, wallet):
    acct = sdk.open_account("main")
    sdk.deposit(acct, 1000)
    out = ok(cli("withdraw", "400"))
    assert ch.balance_of(acct, 0) == 600 * WAD
    assert token.balanceOf(trader) == 9_400 * USDC
    assert "withdrew 400.00 USDC" in out and "free margin $600.00" in out


def test_withdraw__more_than_balance__one_line_hint(cli, ch, sdk, wallet):
    acct = sdk.open_account("main")
    sdk.deposit(acct, 100)
    line = failed(cli("withdraw", "100.01"))
    assert line == (
        "error: withdraw failed: clearinghouse: insufficient balance. deposit more or "
        "withdraw less; `perpdex account` shows the balances"
    )
    assert ch.balance_of(acct, 0) == 100 * WAD


def test_withdraw__not_owner__tells_which_account_to_use(cli, sdk, wallet):
    acct = sdk.open_account("main")
    sdk.deposit(acct, 100)
    line = failed(cli("withdraw", "1", "--account-id", str(acct), account="test:7"))
    assert "clearinghouse: not account owner" in line
    assert "--account <owner alias>" in line


def test_transfer__between_sub_accounts(cli, sdk, wallet):
    a = sdk.open_account("main")
    b = sdk.open_account("hedge")
    sdk.deposit(a, 1000)
    out = ok(cli("transfer", "250.25", "--from-sub", "0", "--to-sub", "1"))
    assert sdk.balances(a)["USDC"] == Decimal("749.75")
    assert sdk.balances(b)["USDC"] == Decimal("250.25")
    assert "749.75 / 250.25 USDC" in out


def test_transfer__unknown_sub_account__lists_the_range(cli, sdk):
    sdk.open_account("main")
    sdk.open_account("hedge")
    line = failed(cli("transfer", "1", "--from-sub", "0", "--to-sub", "5"))
    assert "has sub-accounts 0..1, not 5" in line


def test_transfer__same_sub_account__hint(cli, sdk, wallet):
    sdk.deposit(sdk.open_account("main"), 10)
    line = failed(cli("transfer", "1", "--from-sub", "0", "--to-sub", "0"))
    assert "clearinghouse: same account. pick two different sub-accounts" in line


# --- options and usage errors -----------------------------------------------------------------


def test_bad_amount__usage_error(cli):
    result = cli("deposit", "ten")
    assert result.exit_code == 2
    assert "not a number" in result.output


def test_sub_and_account_id_together__usage_error(cli, sdk):
    sdk.open_account("main")
    result = cli("deposit", "1", "--sub", "0", "--account-id", "0x1")
    assert result.exit_code == 2
    assert "not both" in result.output


def test_missing_manifest__one_line_error(cli, tmp_path):
    line = failed(cli("account", deployment=tmp_path / "none.json"))
    assert "deploy first" in line


def test_unknown_account_alias__one_line_error(cli):
    line = failed(cli("account", account="nobody-here"))
    assert "no ape account named 'nobody-here'" in line


def test_unknown_test_account__one_line_error(cli):
    line = failed(cli("account", account="test:99"))
    assert "there is no test account test:99" in line and "test:0 to test:" in line


def test_account_json__every_sub_account(cli, sdk, trader, wallet):
    acct = sdk.open_account("basis")
    sdk.deposit(acct, 1_000)
    sdk.open_account("hedge", portfolio=True)
    result = cli("account", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["owner"] == trader.address
    first, second = doc["accounts"]
    assert first["id"] == f"{acct:#x}" and first["name"] == "basis"
    assert first["balances"] == {"USDC": "1000"} and first["health"] is None
    assert (first["mode"], second["mode"]) == ("isolated", "portfolio")


def test_account_json__no_sub_account__empty_list(cli, trader):
    result = cli("account", "--json")
    assert json.loads(result.stdout) == {
        "owner": trader.address,
        "network": "local",
        "accounts": [],
    }


def test_cli__keeps_the_test_provider_connected(cli, networks):
    provider = networks.active_provider
    ok(cli("account"))
    assert networks.active_provider is provider
    assert provider.is_connected
