"""Leaving cleanly and knowing the answer before sending (issue 11 items 6 and 7).

`withdraw_all` takes everything the rules allow, `lp_redeemable_shares` says how much of an
LP's stake the vault releases now and why not the rest, and `check_order` says whether an
order would pass and the largest one that would. Each figure is checked against the chain:
the largest order passes and a slightly larger one is refused; after `withdraw_all`
nothing more can leave.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from perpdex.errors import PerpdexError
from perpdex.sdk.client import PerpdexClient
from perpdex.units import to_wad

USDC = 10**6


@pytest.fixture
def pool(vault_pool: Any) -> Any:
    return vault_pool


@pytest.fixture
def client(protocol: Any, trader: Any) -> PerpdexClient:
    protocol.token.mint(trader, 100_000 * USDC, sender=trader)
    return PerpdexClient.from_protocol(protocol, trader)


def test_check_order__largest_passes_and_a_larger_one_does_not(client, pool, protocol, trader):
    acct = client.open_account("check")
    client.deposit(acct, 10_000)
    small = client.check_order(acct, "ETH", "1")
    assert small.accepted and small.reason is None
    big = client.check_order(acct, "ETH", "100")
    assert not big.accepted
    assert "margin" in (big.reason or "")
    assert Decimal(0) < big.max_size < Decimal(1000)
    assert big.max_leverage is not None and big.max_leverage > 1
    m = protocol.market_id("ETH")
    over = to_wad(big.max_size * Decimal("1.001"))
    assert client._call_reason(
        protocol.clearinghouse.trade, (acct, m, over, 2**88 - 1), trader.address
    )
    fill = client.trade(acct, "ETH", big.max_size, max_slippage=Decimal("0.05"))
    assert fill.size_after == big.max_size


def test_check_order__sells_search_downwards(client, pool):
    acct = client.open_account("short")
    client.deposit(acct, 5_000)
    c = client.check_order(acct, "BTC", "-5")
    assert not c.accepted and c.max_size < 0


def test_withdraw_all__flat_account_ends_at_zero(client, pool, protocol, trader):
    acct = client.open_account("flat")
    client.deposit(acct, "1234.567891")
    client.trade(acct, "ETH", "1")
    client.close(acct, "ETH")
    before = int(protocol.token.balanceOf(trader))
    _, units = client.withdraw_all(acct)
    assert int(protocol.token.balanceOf(trader)) == before + units
    assert int(protocol.clearinghouse.balance_of(acct, 0)) == 0
    with pytest.raises(PerpdexError, match="holds no USDC"):
        client.withdraw_all(acct)


def test_withdraw_all__with_positions_leaves_only_the_margin(client, pool, protocol, trader):
    acct = client.open_account("open")
    client.deposit(acct, 20_000)
    client.trade(acct, "BTC", "0.5")
    _, units = client.withdraw_all(acct)
    assert units > 0
    assert client.withdrawable_units(acct) <= 1
    col = protocol.token.address
    assert client._call_reason(protocol.ops.withdraw, (acct, col, 10, trader), trader.address)


def test_lp_redeemable__caps_hold_part_back_and_say_why(protocol, admin, trader, accounts):
    lp = accounts[5]
    units = 400_000 * USDC
    protocol.token.mint(lp, units, sender=lp)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    c = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    acct = c.open_account("big")
    c.deposit(acct, 200_000)
    for sym in ("BTC", "ETH", "SOL"):
        chk = c.check_order(acct, sym, "1000000")
        if chk.max_size > 0:
            size = (chk.max_size * Decimal("0.98")).quantize(Decimal("0.0001"))
            c.trade(acct, sym, size, max_slippage=Decimal("0.05"))
    lp_client = PerpdexClient.from_protocol(protocol, lp)
    held, ok, why = lp_client.lp_redeemable_shares()
    assert held == int(protocol.vault.balanceOf(lp))
    assert 0 < ok < held
    assert why
    lp_client.lp_redeem_all()
    left = int(protocol.vault.balanceOf(lp))
    assert left == held - ok
    step = max(1, held // 1_000)
    assert lp_client._call_reason(protocol.vault.redeem, (step, lp, lp), lp.address)


def test_withdraw_all__dust_below_one_unit_goes_to_fees(client, pool, protocol, trader, keeper):
    """PnL is kept in WAD, USDC pays out in 1e-6: a flat account's rest below one unit
    cannot be paid, so the withdrawal moves it to protocol fees (DustSwept) and the
    account ends at exactly zero."""
    acct = client.open_account("dust")
    client.deposit(acct, 5_000)
    client.trade(acct, "ETH", "1.2345")
    for feed in protocol.feeds["ETH"]:
        feed.set_answer(int(feed.latestRoundData()[1]) * 1_000_003 // 1_000_000, sender=keeper)
    client.close(acct, "ETH")
    rest = int(protocol.clearinghouse.balance_of(acct, 0)) % 10**12
    assert rest != 0, "no dust to sweep: change the prices"
    fees_before = int(protocol.clearinghouse.protocol_fees())
    receipt, _ = client.withdraw_all(acct)
    swept = list(receipt.decode_logs(protocol.ops.DustSwept))
    assert [int(e.amount) for e in swept] == [rest]
    assert int(protocol.clearinghouse.balance_of(acct, 0)) == 0
    assert int(protocol.clearinghouse.protocol_fees()) == fees_before + rest


def test_withdraw__dust_stays_while_positions_are_open(client, pool, protocol):
    acct = client.open_account("open-dust")
    client.deposit(acct, 5_000)
    client.trade(acct, "ETH", "1.2345")
    receipt = client.withdraw(acct, 10)
    assert not list(receipt.decode_logs(protocol.ops.DustSwept))
