"""First end-to-end path: an LP funds the vault, a trader deposits, opens and closes a
BTC position against the vault and withdraws; every dollar is accounted for."""

from __future__ import annotations

import pytest

from perpdex.units import WAD


@pytest.mark.fork
def test_open_trade_close(protocol, ch, token, h, trader, lp):
    units = h.fund(lp, 1_000_000)
    token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    assert protocol.vault.totalAssets() == units
    acct = h.funded_account(trader, 10_000)
    assert ch.balance_of(acct, 0) == 10_000 * WAD

    tx = h.trade(trader, acct, "BTC", "0.1")
    fill = tx.return_value
    size, cost, _ = ch.position(acct, 0)
    assert size == WAD // 10
    assert cost == -(-size * fill // WAD)  # cost basis rounds up against the trader
    assert fill > h.price("BTC")  # a buy on a flat skew pays the premium

    h.trade(trader, acct, "BTC", "-0.1")
    assert ch.position(acct, 0)[0] == 0
    balance = ch.balance_of(acct, 0)
    assert balance < 10_000 * WAD  # fees and premium paid

    # conservation: what the clearinghouse holds covers every claim on it
    held = token.balanceOf(ch) * 10**12
    claims = balance + ch.pool_cash() + ch.insurance_fund() + ch.protocol_fees()
    assert held >= claims and held - claims < 10**12

    out = balance // 10**12
    protocol.ops.withdraw(acct, token, out, trader, sender=trader)
    assert token.balanceOf(trader) == out
