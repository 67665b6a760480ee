"""First end-to-end path: deposit, trade against the vault, close, withdraw."""

from __future__ import annotations

import pytest

from perpdex.units import WAD


@pytest.mark.fork
def test_open_trade_close(protocol, ch, token, h, trader, lp, admin):
    units = h.fund(lp, 1_000_000)
    token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    assert protocol.vault.totalAssets() == units
    acct = h.funded_account(trader, 10_000)
    assert ch.balance_of(acct, 0) == 10_000 * WAD
    tx = h.trade(trader, acct, "BTC", "0.1")
    print("open gas", tx.gas_used)
    size, cost, _ = ch.position(acct, 0)
    assert size == WAD // 10
    tx = h.trade(trader, acct, "BTC", "-0.1")
    print("close gas", tx.gas_used)
    assert ch.position(acct, 0)[0] == 0
