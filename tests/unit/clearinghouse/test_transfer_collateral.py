"""transfer_collateral: between two sub-accounts of one owner (by the owner, or an operator
of both), one call, margin-checked."""

import ape
import pytest

from .helpers import WAD, collateral_index, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash")


@pytest.fixture(scope="module")
def own_accts(vault_cash, h, trader):
    """(funded with $1,000, empty) sub-accounts of the trader."""
    return h.funded_account(trader, 1_000), h.open(trader, "spare")


def test_transfer_collateral__between_own_accounts(ch, ops, token, h, own_accts, trader):
    a, b = own_accts
    held = ch.collateral_held(0)
    tx = ops.transfer_collateral(a, b, token, h.usd(300), sender=trader)
    assert ch.balance_of(a, 0) == 700 * WAD
    assert ch.balance_of(b, 0) == 300 * WAD
    assert ch.collateral_held(0) == held
    assert token.balanceOf(trader) == 0
    expect_event(
        tx,
        ops.CollateralTransferred,
        ch,
        from_account=a,
        to_account=b,
        token=token,
        amount=h.usd(300),
    )


def test_transfer_collateral__whole_balance_and_back(ch, ops, token, h, own_accts, trader):
    a, b = own_accts
    ops.transfer_collateral(a, b, token, h.usd(1_000), sender=trader)
    ops.transfer_collateral(b, a, token, h.usd(1_000), sender=trader)
    assert ch.balance_of(a, 0) == 1_000 * WAD
    assert ch.balance_of(b, 0) == 0


def test_transfer_collateral__non_settlement_token(ch, ops, listed_weth, give, own_accts, trader):
    a, b = own_accts
    i = collateral_index(ch, listed_weth)
    ops.deposit(a, listed_weth, give(listed_weth, trader, 2 * WAD), sender=trader)
    ops.refresh([ch.collateral_market(i)], sender=trader)
    tx = ops.transfer_collateral(a, b, listed_weth, 2 * WAD, sender=trader)
    assert ch.balance_of(a, i) == 0
    assert ch.balance_of(b, i) == 2 * WAD
    # the receiving account's equity now counts the token, the sender's no longer does
    assert ch.account_margin(b).equity == 2 * 3_000 * 9 * WAD // 10
    assert ch.account_margin(a).equity == 1_000 * WAD
    expect_event(
        tx,
        ops.CollateralTransferred,
        ch,
        from_account=a,
        to_account=b,
        token=listed_weth,
        amount=2 * WAD,
    )


def test_transfer_collateral__sender_kept_above_initial_margin(
    ch, ops, token, h, own_accts, trader
):
    a, b = own_accts
    h.trade(trader, a, "BTC", "0.05")
    m = ch.account_margin(a)
    free = (m.equity - m.initial) * h.unit // WAD
    ops.transfer_collateral(a, b, token, free, sender=trader)
    assert ch.balance_of(b, 0) == free * 10**12


def test_transfer_collateral__sender_below_initial_margin__reverts(
    ch, ops, token, h, own_accts, trader
):
    a, b = own_accts
    h.trade(trader, a, "BTC", "0.05")
    m = ch.account_margin(a)
    free = (m.equity - m.initial) * h.unit // WAD
    before = ch.balance_of(a, 0)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.transfer_collateral(a, b, token, free + 1, sender=trader)
    assert ch.balance_of(a, 0) == before
    assert ch.balance_of(b, 0) == 0


def test_transfer_collateral__to_another_owners_account__reverts(
    ch, ops, token, h, own_accts, trader, hedger
):
    a, _ = own_accts
    theirs = h.open(hedger)
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(a, theirs, token, h.usd(1), sender=trader)
    assert ch.balance_of(a, 0) == 1_000 * WAD
    assert ch.balance_of(theirs, 0) == 0


def test_transfer_collateral__from_another_owners_account__reverts(
    ch, ops, token, h, own_accts, trader, hedger
):
    a, _ = own_accts
    mine = h.open(hedger)
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(a, mine, token, h.usd(1), sender=hedger)
    assert ch.balance_of(a, 0) == 1_000 * WAD


def test_transfer_collateral__operator_of_both__moves_between_them(
    ch, ops, token, h, own_accts, trader, keeper
):
    """An operator of both accounts of one owner moves collateral between them (issue 13:
    the rebalancing bot tops up a strategy from its reserve; the collateral stays with the
    owner). An operator of only one of them, or after revocation, is refused."""
    a, b = own_accts
    ops.set_operator(a, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(a, b, token, h.usd(1), sender=keeper)  # b not operated
    ops.set_operator(b, keeper, True, sender=trader)
    ops.transfer_collateral(a, b, token, h.usd(250), sender=keeper)
    assert ch.balance_of(a, 0) == 750 * WAD
    assert ch.balance_of(b, 0) == 250 * WAD
    assert token.balanceOf(keeper) == 0
    ops.set_operator(a, keeper, False, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(b, a, token, h.usd(1), sender=keeper)


def test_transfer_collateral__operator_of_both_owners__reverts(
    ch, ops, token, h, own_accts, trader, hedger, keeper
):
    """Operating two accounts of different owners moves nothing between them."""
    a, _ = own_accts
    theirs = h.open(hedger, "theirs")
    ops.set_operator(a, keeper, True, sender=trader)
    ops.set_operator(theirs, keeper, True, sender=hedger)
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(a, theirs, token, h.usd(1), sender=keeper)
    assert ch.balance_of(a, 0) == 1_000 * WAD


def test_transfer_collateral__same_account__reverts(ch, ops, token, h, own_accts, trader):
    a, _ = own_accts
    with ape.reverts("clearinghouse: same account"):
        ops.transfer_collateral(a, a, token, h.usd(1), sender=trader)
    assert ch.balance_of(a, 0) == 1_000 * WAD


def test_transfer_collateral__zero_amount__reverts(ops, token, own_accts, trader):
    a, b = own_accts
    with ape.reverts("clearinghouse: zero amount"):
        ops.transfer_collateral(a, b, token, 0, sender=trader)


def test_transfer_collateral__unknown_token__reverts(ops, deploy_token, own_accts, trader):
    a, b = own_accts
    with ape.reverts("clearinghouse: unknown token"):
        ops.transfer_collateral(a, b, deploy_token(18, "XYZ"), 1, sender=trader)


def test_transfer_collateral__unknown_account__reverts(ch, ops, token, h, own_accts, trader):
    a, _ = own_accts
    unopened = ch.account_id(trader, 9)
    with ape.reverts("clearinghouse: unknown account"):
        ops.transfer_collateral(a, unopened, token, h.usd(1), sender=trader)
    with ape.reverts("clearinghouse: unknown account"):
        ops.transfer_collateral(unopened, a, token, h.usd(1), sender=trader)


def test_transfer_collateral__more_than_balance__reverts(ch, ops, token, h, own_accts, trader):
    a, b = own_accts
    with ape.reverts("clearinghouse: insufficient balance"):
        ops.transfer_collateral(a, b, token, h.usd(1_000) + 1, sender=trader)
    assert ch.balance_of(a, 0) == 1_000 * WAD
