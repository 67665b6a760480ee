"""pause / unpause: the guardian stops new risk at once, only the admin resumes it.

While paused: deposits, withdrawals and risk-reducing trades go on; risk-increasing trades
revert with "clearinghouse: paused".
"""

import ape
import pytest

from .helpers import BTC, MISSING_ROLE, WAD, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash", "granted_roles")


@pytest.fixture(scope="module")
def long_acct(vault_cash, granted_roles, h, trader):
    """$10,000 and a 0.05 BTC long."""
    a = h.funded_account(trader, 10_000)
    h.trade(trader, a, "BTC", "0.05")
    return a


def test_grant_role__guardian(ch, gov, admin, stranger):
    role = ch.GUARDIAN_ROLE()
    tx = gov.grantRole(role, stranger, sender=admin)
    assert ch.hasRole(role, stranger)
    expect_event(tx, gov.RoleGranted, ch, role=role, account=stranger, sender=admin)


def test_grant_role__stranger__reverts(ch, gov, stranger):
    with ape.reverts(MISSING_ROLE):
        gov.grantRole(ch.GUARDIAN_ROLE(), stranger, sender=stranger)


def test_pause__guardian(ch, gov, guardian):
    tx = gov.pause(sender=guardian)
    assert ch.paused()
    expect_event(tx, gov.Paused, ch, account=guardian)


def test_pause__admin(ch, gov, admin):
    gov.pause(sender=admin)
    assert ch.paused()


@pytest.mark.parametrize("who", ["stranger", "risk_manager", "trader"])
def test_pause__without_guardian_role__reverts(ch, gov, request, who):
    with ape.reverts(MISSING_ROLE):
        gov.pause(sender=request.getfixturevalue(who))
    assert not ch.paused()


def test_pause__twice__reverts(gov, guardian):
    gov.pause(sender=guardian)
    with ape.reverts("pausable: contract is paused"):
        gov.pause(sender=guardian)


def test_pause__revoked_guardian__reverts(ch, gov, admin, guardian):
    gov.revokeRole(ch.GUARDIAN_ROLE(), guardian, sender=admin)
    with ape.reverts(MISSING_ROLE):
        gov.pause(sender=guardian)


def test_unpause__admin(ch, gov, admin, guardian):
    gov.pause(sender=guardian)
    tx = gov.unpause(sender=admin)
    assert not ch.paused()
    expect_event(tx, gov.Unpaused, ch, account=admin)


@pytest.mark.parametrize("who", ["guardian", "risk_manager", "stranger"])
def test_unpause__not_admin__reverts(ch, gov, guardian, request, who):
    gov.pause(sender=guardian)
    with ape.reverts(MISSING_ROLE):
        gov.unpause(sender=request.getfixturevalue(who))
    assert ch.paused()


def test_unpause__not_paused__reverts(gov, admin):
    with ape.reverts("pausable: contract is not paused"):
        gov.unpause(sender=admin)


def test_pause__increase__reverts(ch, gov, h, long_acct, trader, guardian):
    gov.pause(sender=guardian)
    with ape.reverts("clearinghouse: paused"):
        h.trade(trader, long_acct, "BTC", "0.01")
    assert ch.position(long_acct, BTC)[0] == 5 * 10**16


def test_pause__new_position__reverts(gov, h, long_acct, trader, guardian):
    gov.pause(sender=guardian)
    with ape.reverts("clearinghouse: paused"):
        h.trade(trader, long_acct, "ETH", "-1")


def test_pause__flip__reverts(gov, h, long_acct, trader, guardian):
    gov.pause(sender=guardian)
    with ape.reverts("clearinghouse: paused"):
        h.trade(trader, long_acct, "BTC", "-0.06")


def test_pause__reduce_and_close(ch, gov, h, long_acct, trader, guardian):
    gov.pause(sender=guardian)
    h.trade(trader, long_acct, "BTC", "-0.02")
    assert ch.position(long_acct, BTC)[0] == 3 * 10**16
    h.trade(trader, long_acct, "BTC", "-0.03")
    assert ch.position(long_acct, BTC)[0] == 0


def test_pause__deposit_and_withdraw(ch, ops, gov, token, h, long_acct, trader, guardian):
    gov.pause(sender=guardian)
    ops.deposit(long_acct, token, h.fund(trader, 500), sender=trader)
    before = ch.balance_of(long_acct, 0)
    ops.withdraw(long_acct, token, h.usd(100), trader, sender=trader)
    assert ch.balance_of(long_acct, 0) == before - 100 * WAD


def test_unpause__trading_resumes(ch, gov, h, long_acct, trader, guardian, admin):
    gov.pause(sender=guardian)
    gov.unpause(sender=admin)
    h.trade(trader, long_acct, "BTC", "0.01")
    assert ch.position(long_acct, BTC)[0] == 6 * 10**16
