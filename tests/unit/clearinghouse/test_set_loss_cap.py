"""set_loss_cap: owner only, logged with old and new floor."""

import ape

from .helpers import WAD, expect_event


def test_set_loss_cap__owner(ch, ops, h, trader):
    acct = h.open(trader)
    tx = ops.set_loss_cap(acct, 500 * WAD, sender=trader)
    assert ch.loss_cap(acct) == 500 * WAD
    expect_event(tx, ops.LossCapSet, ch, account=acct, old_floor=0, new_floor=500 * WAD)
    tx = ops.set_loss_cap(acct, 0, sender=trader)
    assert ch.loss_cap(acct) == 0
    expect_event(tx, ops.LossCapSet, ch, account=acct, old_floor=500 * WAD, new_floor=0)


def test_set_loss_cap__not_owner__reverts(ch, ops, h, trader, stranger):
    acct = h.open(trader)
    with ape.reverts("clearinghouse: not account owner"):
        ops.set_loss_cap(acct, WAD, sender=stranger)
    assert ch.loss_cap(acct) == 0


def test_set_loss_cap__unknown_account__reverts(ch, ops, trader):
    with ape.reverts("clearinghouse: unknown account"):
        ops.set_loss_cap(ch.account_id(trader, 99), WAD, sender=trader)
