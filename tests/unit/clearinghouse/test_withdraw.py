"""withdraw: owner only, input checks, the initial-margin gate, nothing lost on a revert."""

import ape
import pytest

from .helpers import BTC, WAD, ZERO_ADDRESS, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash")


@pytest.fixture(scope="module")
def withdraw_acct(vault_cash, h, trader):
    return h.funded_account(trader, 1_000)


def _free_units(ch, h, withdraw_acct):
    """Largest withdrawal (token units) that keeps equity >= initial margin."""
    m = ch.account_margin(withdraw_acct)
    return (m.equity - m.initial) * h.unit // WAD


def test_withdraw__to_owner(ch, ops, token, h, withdraw_acct, trader):
    tx = ops.withdraw(withdraw_acct, token, h.usd(400), trader, sender=trader)
    assert ch.balance_of(withdraw_acct, 0) == 600 * WAD
    assert token.balanceOf(trader) == h.usd(400)
    assert ch.collateral_held(0) == h.usd(600) + h.usd(1_000_000)
    expect_event(
        tx, ops.Withdraw, ch, account=withdraw_acct, token=token, receiver=trader, amount=h.usd(400)
    )


def test_withdraw__to_other_receiver(ch, ops, token, h, withdraw_acct, trader, stranger):
    tx = ops.withdraw(withdraw_acct, token, h.usd(1_000), stranger, sender=trader)
    assert ch.balance_of(withdraw_acct, 0) == 0
    assert token.balanceOf(stranger) == h.usd(1_000)
    expect_event(
        tx,
        ops.Withdraw,
        ch,
        account=withdraw_acct,
        token=token,
        receiver=stranger,
        amount=h.usd(1_000),
    )


def test_withdraw__zero_amount__reverts(ch, ops, token, withdraw_acct, trader):
    with ape.reverts("clearinghouse: zero amount"):
        ops.withdraw(withdraw_acct, token, 0, trader, sender=trader)


def test_withdraw__zero_receiver__reverts(ch, ops, token, h, withdraw_acct, trader):
    with ape.reverts("clearinghouse: zero receiver"):
        ops.withdraw(withdraw_acct, token, h.usd(1), ZERO_ADDRESS, sender=trader)
    assert ch.balance_of(withdraw_acct, 0) == 1_000 * WAD


def test_withdraw__unknown_token__reverts(ch, ops, deploy_token, withdraw_acct, trader):
    other = deploy_token(6, "XYZ")
    with ape.reverts("clearinghouse: unknown token"):
        ops.withdraw(withdraw_acct, other, 1, trader, sender=trader)


def test_withdraw__unknown_account__reverts(ch, ops, token, trader):
    with ape.reverts("clearinghouse: unknown account"):
        ops.withdraw(ch.account_id(trader, 7), token, 1, trader, sender=trader)


def test_withdraw__stranger__reverts(ch, ops, token, h, withdraw_acct, stranger):
    with ape.reverts("clearinghouse: not account owner"):
        ops.withdraw(withdraw_acct, token, h.usd(1), stranger, sender=stranger)
    assert ch.balance_of(withdraw_acct, 0) == 1_000 * WAD
    assert token.balanceOf(stranger) == 0


def test_withdraw__operator__reverts(ch, ops, token, h, withdraw_acct, trader, keeper):
    ops.set_operator(withdraw_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.withdraw(withdraw_acct, token, h.usd(1), keeper, sender=keeper)
    with ape.reverts("clearinghouse: not account owner"):
        ops.withdraw(withdraw_acct, token, h.usd(1), trader, sender=keeper)
    assert ch.balance_of(withdraw_acct, 0) == 1_000 * WAD


def test_withdraw__more_than_balance__reverts(ch, ops, token, h, withdraw_acct, trader):
    with ape.reverts("clearinghouse: insufficient balance"):
        ops.withdraw(withdraw_acct, token, h.usd(1_000) + 1, trader, sender=trader)
    assert ch.balance_of(withdraw_acct, 0) == 1_000 * WAD
    assert token.balanceOf(trader) == 0


def test_withdraw__token_not_held__reverts(ch, ops, listed_weth, withdraw_acct, trader):
    with ape.reverts("clearinghouse: insufficient balance"):
        ops.withdraw(withdraw_acct, listed_weth, 1, trader, sender=trader)


def test_withdraw__other_accounts_money__reverts(ch, ops, token, h, withdraw_acct, trader):
    # the owner's other sub-account holds nothing, whatever the first one holds
    empty = h.open(trader, "empty")
    with ape.reverts("clearinghouse: insufficient balance"):
        ops.withdraw(empty, token, 1, trader, sender=trader)


def test_withdraw__with_position_above_initial_margin(ch, ops, token, h, withdraw_acct, trader):
    h.trade(trader, withdraw_acct, "BTC", "0.05")
    free = _free_units(ch, h, withdraw_acct)
    assert free > 0
    tx = ops.withdraw(withdraw_acct, token, free, trader, sender=trader)
    m = ch.account_margin(withdraw_acct)
    assert m.equity >= m.initial
    assert ch.position(withdraw_acct, BTC)[0] == 5 * 10**16
    expect_event(
        tx, ops.Withdraw, ch, account=withdraw_acct, token=token, receiver=trader, amount=free
    )


def test_withdraw__with_position_below_initial_margin__reverts(
    ch, ops, token, h, withdraw_acct, trader
):
    h.trade(trader, withdraw_acct, "BTC", "0.05")
    free = _free_units(ch, h, withdraw_acct)
    before = ch.balance_of(withdraw_acct, 0)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(withdraw_acct, token, free + 1, trader, sender=trader)
    assert ch.balance_of(withdraw_acct, 0) == before
    assert token.balanceOf(trader) == 0


def test_withdraw__after_closing_everything(ch, ops, token, h, withdraw_acct, trader):
    h.trade(trader, withdraw_acct, "BTC", "0.05")
    h.trade(trader, withdraw_acct, "BTC", "-0.05")
    bal = ch.balance_of(withdraw_acct, 0)
    assert 0 < bal < 1_000 * WAD  # fees and the spread were paid
    units = bal * h.unit // WAD
    ops.withdraw(withdraw_acct, token, units, trader, sender=trader)
    assert token.balanceOf(trader) == units


def test_withdraw__refreshes_stale_marks_before_the_check(
    ch, ops, token, h, withdraw_acct, trader, admin
):
    from ape import chain

    h.trade(trader, withdraw_acct, "BTC", "0.05")
    free = _free_units(ch, h, withdraw_acct)
    # BTC falls 1% without anyone touching the market: the cached mark is stale
    chain.pending_timestamp += ch.system_params().max_mark_age + 1
    h.set_price("BTC", 99_000, admin)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(withdraw_acct, token, free, trader, sender=trader)
