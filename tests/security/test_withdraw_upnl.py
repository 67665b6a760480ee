"""Issue 9, item 6: positive unrealised PnL is not withdrawable (the Mango pattern).

Attack on main at e9e2063: an account with $20k and a 1 BTC long could withdraw $9.9k;
after a mark pump it could withdraw $19.9k, the pump's paper profit included, paid out of
LP cash before anything was realised. The rule now: withdrawals and transfers out are
checked with equity counting each position's unrealised PnL (funding included) only
when negative, min(pnl, 0); a profit becomes withdrawable once realised (closed). The
SDK's `withdrawable` figure equals the largest amount the chain accepts, to the token unit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.sdk import math as pm
from perpdex.sdk.client import PerpdexClient
from perpdex.sdk.snapshot import Snapshot
from perpdex.units import WAD

REASON = "clearinghouse: unrealised profit is not withdrawable"
POOL_UNITS = 5_000_000


@pytest.fixture(scope="module")
def upnl_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, POOL_UNITS)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture(scope="module")
def upnl_acct(upnl_pool: None, h: Any, trader: Any) -> int:
    acct = h.funded_account(trader, 20_000, name="upnl")
    h.trade(trader, acct, "BTC", "1")
    return acct


def _profit(ch: Any, acct: int) -> int:
    """Sum over positions of max(pnl, 0) at the cached marks (funding included)."""
    total = 0
    hdr = int(ch.account_header(acct))
    for m in range(32):
        if not (pm.positions_bitmap(hdr) >> m) & 1:
            continue
        size, cost, snap = (int(x) for x in ch.position(acct, m))
        price, _, index, _ = (int(x) for x in ch.mark(m))
        pnl = pm.value_pnl(size, cost, price) - pm.funding_owed(size, pm.funding_delta(snap, index))
        total += max(pnl, 0)
    return total


def _limit(protocol: Any, trader: Any, acct: int) -> int:
    """The SDK's withdrawable figure for the next block (its time pinned, so the funding
    the withdrawal's own oracle re-read accrues is the one the figure includes)."""
    ape.chain.pending_timestamp += 5
    return PerpdexClient.from_protocol(protocol, trader).withdrawable_units(acct)


def _free_units(ch: Any, h: Any, acct: int, count_profit: bool) -> int:
    m = ch.account_margin(acct)
    profit = _profit(ch, acct) if count_profit else 0
    return (int(m.equity) - profit - int(m.initial)) * h.unit // WAD


def test_withdraw__mark_pump__profit_not_withdrawable(ch, protocol, h, upnl_acct, trader, admin):
    ops = protocol.ops
    before = _free_units(ch, h, upnl_acct, True)
    assert 9_000 * h.unit < before < 10_000 * h.unit  # ~$9.9k before the pump
    h.set_price("BTC", 110_000, admin)
    ops.refresh([protocol.market_id("BTC")], sender=trader)
    naive = _free_units(ch, h, upnl_acct, False)
    assert naive > 18_000 * h.unit  # what main let out: the paper profit counted
    # the attack: take the pump's paper profit out
    with ape.reverts(REASON):
        ops.withdraw(upnl_acct, protocol.token, before + h.usd(1_000), trader, sender=trader)
    # what is left is the pre-pump allowance less the higher requirement, to the unit
    strict = _limit(protocol, trader, upnl_acct)
    assert strict <= before
    with ape.reverts(REASON):
        ops.withdraw(upnl_acct, protocol.token, strict + 1, trader, sender=trader)
    ops.withdraw(upnl_acct, protocol.token, strict, trader, sender=trader)


def test_transfer__mark_pump__profit_not_transferable(ch, protocol, h, upnl_acct, trader, admin):
    ops = protocol.ops
    other = h.open(trader, "sink")
    before = _free_units(ch, h, upnl_acct, True)
    h.set_price("BTC", 110_000, admin)
    ops.refresh([protocol.market_id("BTC")], sender=trader)
    with ape.reverts(REASON):
        ops.transfer_collateral(upnl_acct, other, protocol.token, before + h.usd(1), sender=trader)
    strict = _limit(protocol, trader, upnl_acct)
    ops.transfer_collateral(upnl_acct, other, protocol.token, strict, sender=trader)
    assert ch.balance_of(other, 0) == strict * (WAD // h.unit)


def test_withdraw__realised_profit_is_withdrawable(ch, protocol, h, upnl_acct, trader, admin):
    h.set_price("BTC", 110_000, admin)
    h.trade(trader, upnl_acct, "BTC", "-1")
    bal = int(ch.balance_of(upnl_acct, 0))
    assert bal > 29_000 * WAD  # $20k plus ~$10k realised
    units = bal * h.unit // WAD
    protocol.ops.withdraw(upnl_acct, protocol.token, units, trader, sender=trader)
    assert protocol.token.balanceOf(trader) >= units


def test_withdraw__loss_still_counts(ch, protocol, h, upnl_acct, trader, admin):
    h.set_price("BTC", 95_000, admin)
    protocol.ops.refresh([protocol.market_id("BTC")], sender=trader)
    assert _profit(ch, upnl_acct) == 0
    free = _limit(protocol, trader, upnl_acct)
    assert abs(free - _free_units(ch, h, upnl_acct, True)) <= h.usd("0.01")
    with ape.reverts("clearinghouse: below initial margin"):
        protocol.ops.withdraw(upnl_acct, protocol.token, free + 1, trader, sender=trader)
    protocol.ops.withdraw(upnl_acct, protocol.token, free, trader, sender=trader)


def test_withdraw__hedge_profit_does_not_offset_loss(ch, protocol, h, trader, admin, upnl_pool):
    """Per position: a pumped leg's profit does not pay for the other leg's loss."""
    acct = h.funded_account(trader, 40_000, portfolio=True, name="hedged")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-20")
    h.set_price("ETH", 3_300, admin)  # the short loses ~$6k
    protocol.ops.refresh([protocol.market_id("ETH")], sender=trader)
    free_before = _free_units(ch, h, acct, True)
    h.set_price("BTC", 106_000, admin)  # the long gains ~$6k: net flat
    protocol.ops.refresh([protocol.market_id("BTC")], sender=trader)
    assert _profit(ch, acct) > 5_000 * WAD
    assert _free_units(ch, h, acct, False) > free_before + 5_000 * h.unit
    strict = _limit(protocol, trader, acct)
    assert strict <= free_before
    with ape.reverts(REASON):
        protocol.ops.withdraw(acct, protocol.token, strict + 1, trader, sender=trader)
    protocol.ops.withdraw(acct, protocol.token, strict, trader, sender=trader)


def test_sdk_withdrawable__matches_chain_to_the_unit(ch, protocol, h, upnl_acct, trader, admin):
    client = PerpdexClient.from_protocol(protocol, trader)
    h.set_price("BTC", 112_345, admin)  # the mark stays stale: the withdrawal re-reads it
    ape.chain.mine(1, deltatime=30)
    ape.chain.pending_timestamp += 30
    units = client.withdrawable_units(upnl_acct)
    snap = Snapshot.load(protocol, upnl_acct, "pending")
    assert pm.withdrawable(snap, 0, WAD // h.unit) == units
    assert client.withdrawable(upnl_acct) == Decimal(units) / h.unit
    with ape.reverts(REASON):
        protocol.ops.withdraw(upnl_acct, protocol.token, units + 1, trader, sender=trader)
    protocol.ops.withdraw(upnl_acct, protocol.token, units, trader, sender=trader)
