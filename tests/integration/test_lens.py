"""The lens agrees with the Clearinghouse: its account summary equals the margin scan, and a
quote predicts the trade it quotes (fill price, fee, resulting equity and requirement) to
the wei when nothing else changes in between."""

from __future__ import annotations

import pytest

from perpdex.units import WAD

pytestmark = pytest.mark.fork


@pytest.fixture
def book(protocol, h, trader, lp, token, chain):
    units = h.fund(lp, 2_000_000)
    token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    acct = h.funded_account(trader, 100_000, portfolio=True)
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-20")
    h.trade(trader, acct, "SOL", "300")
    chain.pending_timestamp += 3600
    h.set_price("BTC", 101_000, trader)
    h.set_price("ETH", 2_990, trader)
    h.set_price("SOL", 151, trader)
    protocol.ops.refresh([0, 1, 2], sender=trader)
    return acct


def test_account_summary__equals_clearinghouse_scan(protocol, ch, book):
    scan = ch.account_margin(book)
    v = protocol.lens.account_summary(book)
    assert (v.equity, v.initial, v.maintenance, v.isolated_initial) == (
        scan.equity,
        scan.initial,
        scan.maintenance,
        scan.isolated,
    )
    assert v.portfolio
    assert len(v.positions) == 3
    assert sum(p.unrealized_pnl for p in v.positions) == v.unrealized_pnl
    assert v.health == v.equity * WAD // v.maintenance
    # the binding scenario is the largest loss, and it (or the floor) sets the requirement
    assert v.scenario_losses[v.binding_scenario] == max(v.scenario_losses)


def test_account_summary__liquidation_prices_bracket_the_mark(protocol, book):
    v = protocol.lens.account_summary(book)
    for p in v.positions:
        if p.liquidation_price == 0:
            continue
        if p.size > 0:
            assert p.liquidation_price < p.mark_price
        else:
            assert p.liquidation_price > p.mark_price


@pytest.mark.parametrize("symbol,size", [("BTC", "0.5"), ("ETH", "5"), ("SOL", "-300")])
def test_quote__predicts_the_trade(protocol, ch, h, trader, book, chain, symbol, size):
    m = protocol.market_id(symbol)
    delta = int(float(size) * WAD)
    # quote against the pending block, whose timestamp the trade will carry (funding
    # accrues per second, so a quote one second early differs by that second's funding);
    # pin that timestamp so wall-clock time cannot move it in between
    chain.pending_timestamp = chain.pending_timestamp + 1
    q = protocol.lens.quote(book, m, delta, block_id="pending")
    tx = h.trade(trader, book, symbol, size)
    assert tx.return_value == q.fill_price
    after = ch.account_margin(book)
    assert (after.equity, after.initial, after.maintenance) == (
        q.equity_after,
        q.initial_after,
        q.maintenance_after,
    )
