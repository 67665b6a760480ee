"""`perpdex withdraw --all`, `lp withdraw --all`, the quote's verdict, and displayed
amounts that never round up (issue 11 items 6 and 7)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cli_helpers import failed, ok

from perpdex.cli import fmt_amount
from perpdex.cli.lp import fmt_shares
from perpdex.sdk.client import PerpdexClient

USDC = 10**6


@pytest.fixture
def client(protocol: Any, trader: Any, cli_pool: None) -> PerpdexClient:
    protocol.token.mint(trader, 100_000 * USDC, sender=trader)
    return PerpdexClient.from_protocol(protocol, trader)


def test_amounts_are_cut_never_rounded_up():
    assert fmt_amount(Decimal("9854.8073779")) == "9,854.807377"
    assert fmt_amount(Decimal("-1.0000009")) == "-1.000000"
    assert fmt_shares(Decimal("1.9999999")) == "1.999999"


def test_withdraw_all__empties_a_flat_account(cli, protocol, client):
    acct = client.open_account("main")
    client.deposit(acct, "1234.567891")
    out = ok(cli("withdraw", "--all"))
    assert "withdrew 1,234.567891 USDC" in out
    assert int(protocol.clearinghouse.balance_of(acct, 0)) == 0


def test_withdraw__amount_and_all_together_refused(cli, client):
    client.open_account("main")
    result = cli("withdraw", "5", "--all")
    assert result.exit_code != 0
    assert "AMOUNT or --all" in result.output


def test_withdraw_all__nothing_free_says_why(cli, client):
    client.open_account("main")
    line = failed(cli("withdraw", "--all"))
    assert "holds no USDC" in line


def test_quote__says_accepted_and_the_largest_order(cli, client):
    acct = client.open_account("main")
    client.deposit(acct, 10_000)
    out = ok(cli("quote", "ETH", "1"))
    assert "would be accepted" in out
    assert "largest ETH order that would pass now" in out


def test_quote__refused_order_does_not_suggest_itself(cli, client):
    acct = client.open_account("main")
    client.deposit(acct, 10_000)
    out = ok(cli("quote", "ETH", "100"))
    assert "would be refused" in out
    assert "trade it:" not in out
    data = json.loads(ok(cli("quote", "ETH", "100", "--json")))
    assert data["accepted"] is False and data["refusal"]
    assert Decimal(0) < Decimal(data["max_size"]) < Decimal(100)


@pytest.mark.parametrize("kind", ["liquidate", "loss-caps", "adl"])
def test_keeper__second_one_on_a_state_file_is_refused(cli, client, tmp_path, kind):
    """Every keeper command locks its state file for the whole run (`_locked_state`)."""
    from perpdex.keepers.state import StateLock

    client.open_account("keeper")  # `liquidate` resolves the keeper's sub-account first
    state = tmp_path / f"{kind}.json"
    with StateLock(state):
        line = failed(cli("keeper", kind, "--once", "--state", str(state)))
    assert "is running on" in line


def test_keeper_adl__once_prints_every_market_and_sends_nothing(cli, tmp_path):
    out = ok(cli("keeper", "adl", "--once", "--state", str(tmp_path / "adl.json")))
    assert "vault limits by market" in out
    assert all(sym in out for sym in ("BTC", "ETH", "SOL")) and "within" in out
    assert "auto-deleverage transactions" not in out
