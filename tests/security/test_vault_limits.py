"""Issue 9, item 4 (part): vault exposure caps hold on reduces; traders cannot freeze LPs.

Attack on main at e9e2063: a long on one account and a hedging short on another, then the
short closed: the reduce skipped `_check_caps`, leaving the vault 1.8x over its exposure
cap (BTC: 50% of pool cash), and from then on every LP withdrawal reverted
(`vault_withdraw` checks the cap). Now every fill that moves |skew| up is held to the cap
(reduces included), and LP withdrawals may take the exposure to 1.5x the cap, so with
traders at the cap a third of the pool's cash can still leave.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.units import WAD

CAP = "clearinghouse: vault exposure cap reached"


@pytest.fixture(scope="module")
def limits_pool(actors: dict[str, Any], protocol: Any, h: Any) -> int:
    """$1M of LP cash: the BTC cap is $500k of vault exposure (5 BTC at $100k)."""
    lp = actors["lp"]
    units = h.fund(lp, 1_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    return units


def _exposure(ch: Any, m: int) -> tuple[int, int]:
    long_oi, short_oi = (int(x) for x in ch.open_interest(m))
    price = int(ch.mark(m)[0])
    cash = int(ch.pool_cash())
    return abs(long_oi - short_oi) * price // WAD, cash


def test_hedge_close__cannot_lift_exposure_over_the_cap(
    protocol, ch, h, trader, hedger, limits_pool
):
    btc = protocol.market_id("BTC")
    cap = int(protocol.clearinghouse.market_params(btc).max_vault_exposure)
    longs = h.funded_account(trader, 300_000, name="long leg")
    shorts = h.funded_account(hedger, 300_000, name="short leg")
    h.trade(trader, longs, "BTC", "4.9")  # at the cap: the vault is short ~$490k
    h.trade(hedger, shorts, "BTC", "-4")
    h.trade(trader, longs, "BTC", "4")  # skew back to 4.9
    # the attack: close the hedge, leaving the vault short 8.9 BTC (1.8x the cap)
    with ape.reverts(CAP):
        h.trade(hedger, shorts, "BTC", "4")
    exposure, cash = _exposure(ch, btc)
    assert exposure <= cash * cap // WAD
    # closing part of the hedge is fine while the skew stays under the cap
    h.trade(hedger, shorts, "BTC", "0.05")
    exposure, cash = _exposure(ch, btc)
    assert exposure <= cash * cap // WAD


def test_lp_exit__not_frozen_by_traders_at_the_cap(protocol, ch, h, trader, lp, limits_pool):
    btc = protocol.market_id("BTC")
    acct = h.funded_account(trader, 300_000, name="at cap")
    h.trade(trader, acct, "BTC", "4.9")
    exposure, cash = _exposure(ch, btc)
    cap = int(protocol.clearinghouse.market_params(btc).max_vault_exposure)
    assert exposure > cash * cap // WAD * 9 // 10  # traders at (about) the cap
    shares = int(protocol.vault.balanceOf(lp))
    protocol.vault.redeem(shares // 4, lp, lp, sender=lp)  # a quarter of the pool leaves
    exposure, cash = _exposure(ch, btc)
    assert exposure * 10_000 <= cash * cap // WAD * 15_000
    # and no further than 1.5x the cap
    with ape.reverts():
        protocol.vault.redeem(shares // 2, lp, lp, sender=lp)
