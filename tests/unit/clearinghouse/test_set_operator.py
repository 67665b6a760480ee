"""set_operator: owner-only, immediate revocation; operators trade but never move money."""

import ape
import pytest

from .helpers import BTC, ZERO_ADDRESS, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash")


@pytest.fixture(scope="module")
def operated_acct(vault_cash, h, trader):
    return h.funded_account(trader, 10_000)


def test_set_operator__owner_grants(ch, ops, operated_acct, trader, keeper):
    tx = ops.set_operator(operated_acct, keeper, True, sender=trader)
    assert ch.is_operator(operated_acct, keeper)
    expect_event(tx, ops.OperatorSet, ch, account=operated_acct, operator=keeper, allowed=True)


def test_set_operator__owner_revokes(ch, ops, operated_acct, trader, keeper):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    tx = ops.set_operator(operated_acct, keeper, False, sender=trader)
    assert not ch.is_operator(operated_acct, keeper)
    expect_event(tx, ops.OperatorSet, ch, account=operated_acct, operator=keeper, allowed=False)


def test_set_operator__is_per_account(ch, ops, h, operated_acct, trader, keeper):
    other = h.open(trader, "other")
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    assert not ch.is_operator(other, keeper)
    with ape.reverts("clearinghouse: not authorized"):
        h.trade(keeper, other, "BTC", "0.01")


def test_set_operator__operator_can_trade(ch, ops, h, operated_acct, trader, keeper):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    tx = h.trade(keeper, operated_acct, "BTC", "0.01")
    fill = ch.Fill.from_receipt(tx)[0]
    assert fill.account == operated_acct
    assert ch.position(operated_acct, BTC)[0] == 10**16
    h.trade(keeper, operated_acct, "BTC", "-0.01")
    assert ch.position(operated_acct, BTC)[0] == 0


def test_set_operator__revoke_takes_effect_at_once(ch, ops, h, operated_acct, trader, keeper):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    h.trade(keeper, operated_acct, "BTC", "0.01")
    ops.set_operator(operated_acct, keeper, False, sender=trader)
    with ape.reverts("clearinghouse: not authorized"):
        h.trade(keeper, operated_acct, "BTC", "-0.01")
    assert ch.position(operated_acct, BTC)[0] == 10**16


def test_set_operator__operator_cannot_withdraw__reverts(
    ops, token, h, operated_acct, trader, keeper
):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.withdraw(operated_acct, token, h.usd(1), keeper, sender=keeper)


def test_set_operator__operator_cannot_transfer__reverts(
    ops, token, h, operated_acct, trader, keeper
):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    other = h.open(trader, "other")
    with ape.reverts("clearinghouse: not account owner"):
        ops.transfer_collateral(operated_acct, other, token, h.usd(1), sender=keeper)


def test_set_operator__operator_cannot_set_operator__reverts(
    ch, ops, operated_acct, trader, keeper, stranger
):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_operator(operated_acct, stranger, True, sender=keeper)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_operator(operated_acct, keeper, False, sender=keeper)
    assert ch.is_operator(operated_acct, keeper)


def test_set_operator__operator_cannot_change_mode_or_loss_cap__reverts(
    ops, operated_acct, trader, keeper
):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_margin_mode(operated_acct, True, sender=keeper)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_loss_cap(operated_acct, 10**18, sender=keeper)


def test_set_operator__stranger__reverts(ch, ops, operated_acct, stranger):
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_operator(operated_acct, stranger, True, sender=stranger)
    assert not ch.is_operator(operated_acct, stranger)


def test_set_operator__zero_operator__reverts(ops, operated_acct, trader):
    with ape.reverts("clearinghouse: zero operator"):
        ops.set_operator(operated_acct, ZERO_ADDRESS, True, sender=trader)


def test_set_operator__unknown_account__reverts(ch, ops, trader, keeper):
    with ape.reverts("clearinghouse: unknown account"):
        ops.set_operator(ch.account_id(trader, 5), keeper, True, sender=trader)


def test_trade__stranger__reverts(ch, h, operated_acct, stranger):
    with ape.reverts("clearinghouse: not authorized"):
        h.trade(stranger, operated_acct, "BTC", "0.01")
    assert ch.position(operated_acct, BTC)[0] == 0


# --- revoke_operator: the owner's one-transaction kill switch -----------------------------


def test_revoke_operator__every_listed_account_in_one_transaction(
    ch, ops, gov, h, operated_acct, trader, keeper
):
    other = h.open(trader, "bot's second")
    untouched = h.open(trader, "never operated")
    for acct in (operated_acct, other):
        ops.set_operator(acct, keeper, True, sender=trader)
    tx = gov.revoke_operator(keeper, [operated_acct, other, untouched], sender=trader)
    assert not ch.is_operator(operated_acct, keeper) and not ch.is_operator(other, keeper)
    logs = list(tx.decode_logs(ops.OperatorSet))
    # one event per revoked account; the one it never operated is left alone
    assert [(int(e.account), e.allowed) for e in logs] == [(operated_acct, False), (other, False)]
    with ape.reverts("clearinghouse: not authorized"):
        h.trade(keeper, other, "BTC", "0.01")


def test_revoke_operator__no_accounts__reverts(gov, trader, keeper):
    with ape.reverts("clearinghouse: no accounts"):
        gov.revoke_operator(keeper, [], sender=trader)


def test_revoke_operator__an_account_of_another_owner__reverts_whole(
    ch, ops, gov, h, operated_acct, trader, keeper, lp
):
    foreign = h.open(lp, "someone else's")
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        gov.revoke_operator(keeper, [operated_acct, foreign], sender=trader)
    assert ch.is_operator(operated_acct, keeper)  # nothing half-done


def test_revoke_operator__unknown_account__reverts(gov, trader, keeper):
    with ape.reverts("clearinghouse: unknown account"):
        gov.revoke_operator(keeper, [(int(trader.address, 16) << 96) | 999], sender=trader)


def test_revoke_operator__the_operator_itself__cannot(gov, operated_acct, ops, trader, keeper):
    ops.set_operator(operated_acct, keeper, True, sender=trader)
    with ape.reverts("clearinghouse: not account owner"):
        gov.revoke_operator(keeper, [operated_acct], sender=keeper)
