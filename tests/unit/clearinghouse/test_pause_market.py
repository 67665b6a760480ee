"""pause_market: the guardian stops new risk in one market, only the admin resumes it."""

import ape
import pytest

from .helpers import BTC, ETH, MISSING_ROLE, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash", "granted_roles")


@pytest.fixture(scope="module")
def long_acct(vault_cash, granted_roles, h, trader):
    """$10,000 and a 0.05 BTC long."""
    a = h.funded_account(trader, 10_000)
    h.trade(trader, a, "BTC", "0.05")
    return a


def test_pause_market__guardian(ch, gov, guardian):
    tx = gov.pause_market(BTC, True, sender=guardian)
    assert ch.market_params(BTC).paused
    assert not ch.market_params(ETH).paused
    assert not ch.paused()
    expect_event(tx, gov.MarketPaused, ch, market=BTC, paused=True)


def test_pause_market__keeps_other_params(ch, gov, guardian):
    before = dict(ch.market_params(BTC).items())
    gov.pause_market(BTC, True, sender=guardian)
    after = dict(ch.market_params(BTC).items())
    assert after.pop("paused") and not before.pop("paused")
    assert after == before


def test_pause_market__stranger__reverts(ch, gov, stranger, risk_manager):
    for who in (stranger, risk_manager):
        with ape.reverts(MISSING_ROLE):
            gov.pause_market(BTC, True, sender=who)
    assert not ch.market_params(BTC).paused


def test_pause_market__unknown_market__reverts(ch, gov, guardian, admin):
    with ape.reverts("clearinghouse: unknown market"):
        gov.pause_market(ch.market_count(), True, sender=guardian)
    with ape.reverts("clearinghouse: unknown market"):
        gov.pause_market(ch.market_count(), False, sender=admin)


def test_pause_market__unpause_by_admin(ch, gov, guardian, admin):
    gov.pause_market(BTC, True, sender=guardian)
    tx = gov.pause_market(BTC, False, sender=admin)
    assert not ch.market_params(BTC).paused
    expect_event(tx, gov.MarketPaused, ch, market=BTC, paused=False)


def test_pause_market__unpause_by_guardian__reverts(ch, gov, guardian, risk_manager):
    gov.pause_market(BTC, True, sender=guardian)
    for who in (guardian, risk_manager):
        with ape.reverts(MISSING_ROLE):
            gov.pause_market(BTC, False, sender=who)
    assert ch.market_params(BTC).paused


def test_pause_market__increase__reverts(ch, gov, h, long_acct, trader, guardian):
    gov.pause_market(BTC, True, sender=guardian)
    with ape.reverts("clearinghouse: market paused"):
        h.trade(trader, long_acct, "BTC", "0.01")
    with ape.reverts("clearinghouse: market paused"):
        h.trade(trader, long_acct, "BTC", "-0.06")
    assert ch.position(long_acct, BTC)[0] == 5 * 10**16


def test_pause_market__reduce(ch, gov, h, long_acct, trader, guardian):
    gov.pause_market(BTC, True, sender=guardian)
    h.trade(trader, long_acct, "BTC", "-0.05")
    assert ch.position(long_acct, BTC)[0] == 0


def test_pause_market__other_markets_trade(ch, gov, h, long_acct, trader, guardian):
    gov.pause_market(BTC, True, sender=guardian)
    h.trade(trader, long_acct, "ETH", "1")
    assert ch.position(long_acct, ETH)[0] == 10**18


def test_pause_market__resumed_market_trades(ch, gov, h, long_acct, trader, guardian, admin):
    gov.pause_market(BTC, True, sender=guardian)
    gov.pause_market(BTC, False, sender=admin)
    h.trade(trader, long_acct, "BTC", "0.01")
    assert ch.position(long_acct, BTC)[0] == 6 * 10**16


def test_set_market_params__keeps_guardian_pause(ch, gov, protocol, guardian, risk_manager):
    """A risk-role parameter update must not lift a pause only the admin may lift."""
    gov.pause_market(BTC, True, sender=guardian)
    params = protocol.system.market("BTC").params()  # paused: False
    params["taker_fee"] = 6 * 10**14
    gov.set_market_params(BTC, params, sender=risk_manager)
    assert ch.market_params(BTC).taker_fee == 6 * 10**14
    assert ch.market_params(BTC).paused


def test_set_market_params__cannot_pause(ch, gov, protocol, risk_manager):
    """Pausing is the guardian's power, not a parameter the risk role can set."""
    params = protocol.system.market("BTC").params()
    params["paused"] = True
    gov.set_market_params(BTC, params, sender=risk_manager)
    assert not ch.market_params(BTC).paused
