"""set_margin_mode: owner only, must change, refused when it leaves the account under-margined."""

import ape
import pytest

from perpdex.constants import ACCOUNT_PORTFOLIO

from .helpers import expect_event

pytestmark = pytest.mark.usefixtures("vault_cash")


@pytest.fixture(scope="module")
def hedged_acct(vault_cash, h, trader):
    """A portfolio account with a BTC long hedged by an ETH short, funded between its
    portfolio and its isolated requirement."""
    acct = h.open(trader, "hedged", portfolio=True)
    h.fund(trader, 1_800)
    h.p.ops.deposit(acct, h.p.token, h.usd(1_800), sender=trader)
    h.trade(trader, acct, "BTC", "0.1")
    h.trade(trader, acct, "ETH", "-3")
    return acct


def test_set_margin_mode__isolated_to_portfolio(ch, ops, h, trader):
    acct = h.funded_account(trader, 100)
    tx = ops.set_margin_mode(acct, True, sender=trader)
    assert ch.account_header(acct) & ACCOUNT_PORTFOLIO
    expect_event(tx, ops.MarginModeChanged, ch, account=acct, portfolio=True)


def test_set_margin_mode__portfolio_to_isolated_without_positions(ch, ops, h, trader):
    acct = h.open(trader, "p", portfolio=True)
    tx = ops.set_margin_mode(acct, False, sender=trader)
    assert not ch.account_header(acct) & ACCOUNT_PORTFOLIO
    expect_event(tx, ops.MarginModeChanged, ch, account=acct, portfolio=False)


def test_set_margin_mode__hedge_needs_less_in_portfolio_mode(ch, hedged_acct):
    m = ch.account_margin(hedged_acct)
    assert m.initial < m.equity < m.isolated


def test_set_margin_mode__to_isolated_under_margined__reverts(ch, ops, hedged_acct, trader):
    with ape.reverts("clearinghouse: mode switch leaves account under-margined"):
        ops.set_margin_mode(hedged_acct, False, sender=trader)
    assert ch.account_header(hedged_acct) & ACCOUNT_PORTFOLIO


def test_set_margin_mode__to_isolated_with_enough_margin(ch, ops, h, hedged_acct, trader):
    ops.deposit(hedged_acct, h.p.token, h.fund(trader, 1_000), sender=trader)
    ops.set_margin_mode(hedged_acct, False, sender=trader)
    m = ch.account_margin(hedged_acct)
    assert m.initial == m.isolated <= m.equity


def test_set_margin_mode__unchanged__reverts(ops, h, trader):
    acct = h.open(trader)
    with ape.reverts("clearinghouse: mode unchanged"):
        ops.set_margin_mode(acct, False, sender=trader)


def test_set_margin_mode__not_owner__reverts(ops, h, trader, stranger):
    acct = h.open(trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_margin_mode(acct, True, sender=stranger)


def test_set_margin_mode__unknown_account__reverts(ch, ops, trader):
    with ape.reverts("clearinghouse: unknown account"):
        ops.set_margin_mode(ch.account_id(trader, 99), True, sender=trader)
