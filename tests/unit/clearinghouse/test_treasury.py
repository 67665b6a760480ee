"""Pool cash, insurance and protocol fees: who may move them and the input checks."""

import ape
import pytest

from .helpers import MISSING_ROLE, POOL_USD, WAD, ZERO_ADDRESS, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash")


def test_vault_deposit__vault(ch, gov, h, admin):
    cash = ch.pool_cash()
    units = h.fund(admin, 500)
    tx = gov.vault_deposit(units, sender=admin)
    assert ch.pool_cash() == cash + 500 * WAD
    expect_event(
        tx, gov.VaultCashMoved, ch, receiver=admin, amount=500 * WAD, pool_cash=cash + 500 * WAD
    )


def test_vault_deposit__not_the_vault__reverts(ch, gov, h, stranger):
    units = h.fund(stranger, 500)
    with ape.reverts("clearinghouse: caller is not the vault"):
        gov.vault_deposit(units, sender=stranger)
    assert h.p.token.balanceOf(stranger) == units


def test_vault_deposit__zero_amount__reverts(gov, admin):
    with ape.reverts("clearinghouse: zero amount"):
        gov.vault_deposit(0, sender=admin)


def test_vault_withdraw__vault(ch, gov, token, h, admin, lp):
    tx = gov.vault_withdraw(h.usd(1_000), lp, sender=admin)
    assert token.balanceOf(lp) == h.usd(1_000)
    assert ch.pool_cash() == (POOL_USD - 1_000) * WAD
    expect_event(
        tx,
        gov.VaultCashMoved,
        ch,
        receiver=lp,
        amount=-1_000 * WAD,
        pool_cash=(POOL_USD - 1_000) * WAD,
    )


def test_vault_withdraw__more_than_pool_cash__reverts(ch, gov, h, admin):
    with ape.reverts("clearinghouse: insufficient pool cash"):
        gov.vault_withdraw(h.usd(POOL_USD) + 1, admin, sender=admin)
    assert ch.pool_cash() == POOL_USD * WAD


def test_vault_withdraw__exposure_cap__reverts(ch, gov, h, trader, admin):
    acct = h.funded_account(trader, 100_000)
    # the pool is short $200,000; traders' cap 40% of cash, LP exits may go to 1.5x that
    # (60%): cash may fall to $333,334
    h.trade(trader, acct, "BTC", "2")
    with ape.reverts("clearinghouse: vault exposure cap reached"):
        gov.vault_withdraw(h.usd(670_000), admin, sender=admin)
    gov.vault_withdraw(h.usd(660_000), admin, sender=admin)


def test_vault_withdraw__not_the_vault__reverts(gov, h, stranger):
    with ape.reverts("clearinghouse: caller is not the vault"):
        gov.vault_withdraw(h.usd(1), stranger, sender=stranger)


def test_fund_insurance__anyone(ch, gov, h, stranger):
    before = ch.insurance_fund()
    units = h.fund(stranger, 250)
    tx = gov.fund_insurance(units, sender=stranger)
    assert ch.insurance_fund() == before + 250 * WAD
    expect_event(
        tx, gov.InsuranceFunded, ch, sender=stranger, amount=250 * WAD, insurance=before + 250 * WAD
    )


def test_fund_insurance__zero_amount__reverts(gov, stranger):
    with ape.reverts("clearinghouse: zero amount"):
        gov.fund_insurance(0, sender=stranger)


def test_withdraw_protocol_fees__admin(ch, gov, token, h, trader, admin, lp):
    gov.set_fee_split(0, 10_000, sender=admin)
    acct = h.funded_account(trader, 10_000)
    fee = ch.Fill.from_receipt(h.trade(trader, acct, "BTC", "0.1"))[0].fee
    units = fee // 10**12
    tx = gov.withdraw_protocol_fees(lp, sender=admin)
    assert token.balanceOf(lp) == units
    assert ch.protocol_fees() == fee - units * 10**12  # dust below one token unit stays
    expect_event(tx, gov.ProtocolFeesWithdrawn, ch, receiver=lp, amount=units * 10**12)


def test_withdraw_protocol_fees__nothing_accrued__reverts(gov, admin):
    with ape.reverts("clearinghouse: zero amount"):
        gov.withdraw_protocol_fees(admin, sender=admin)


def test_withdraw_protocol_fees__zero_receiver__reverts(gov, admin):
    with ape.reverts("clearinghouse: zero receiver"):
        gov.withdraw_protocol_fees(ZERO_ADDRESS, sender=admin)


@pytest.mark.parametrize("who", ["risk_manager", "guardian", "stranger"])
def test_withdraw_protocol_fees__not_admin__reverts(gov, granted_roles, request, who):
    actor = request.getfixturevalue(who)
    with ape.reverts(MISSING_ROLE):
        gov.withdraw_protocol_fees(actor, sender=actor)


def test_refresh__touches_each_market(ch, ops, stranger):
    tx = ops.refresh([0, 2], sender=stranger)
    assert [e.market for e in ch.MarkUpdated.from_receipt(tx)] == [0, 2]
    assert ch.mark(2)[0] == 150 * WAD


def test_refresh__no_markets__reverts(ops, stranger):
    with ape.reverts("clearinghouse: no markets"):
        ops.refresh([], sender=stranger)


def test_refresh__unknown_market__reverts(ch, ops, stranger):
    with ape.reverts("clearinghouse: unknown market"):
        ops.refresh([0, ch.market_count()], sender=stranger)
