"""open_account: numbered sub-accounts, ids, names, margin modes and the event."""

import ape
import pytest

from perpdex.constants import ACCOUNT_EXISTS, ACCOUNT_PORTFOLIO

from .helpers import expect_event


def test_open_account__first_is_index_zero(ch, trader):
    tx = ch.open_account("main", False, sender=trader)
    expected = int(trader.address, 16) << 96
    assert tx.return_value == expected
    assert ch.account_id(trader, 0) == expected
    assert ch.account_owner(expected) == trader.address
    assert ch.sub_account_count(trader) == 1
    assert ch.account_name(expected) == "main"
    assert ch.account_header(expected) == ACCOUNT_EXISTS
    expect_event(
        tx, ch.AccountOpened, ch, account=expected, owner=trader, name="main", portfolio=False
    )


def test_open_account__numbers_sub_accounts_per_owner(ch, trader, hedger):
    ids = [ch.open_account(f"s{i}", False, sender=trader).return_value for i in range(3)]
    other = ch.open_account("h", False, sender=hedger).return_value
    assert ids == [ch.account_id(trader, i) for i in range(3)]
    assert ids == [(int(trader.address, 16) << 96) | i for i in range(3)]
    assert other == ch.account_id(hedger, 0)
    assert ch.sub_account_count(trader) == 3
    assert ch.sub_account_count(hedger) == 1
    assert [ch.account_name(a) for a in ids] == ["s0", "s1", "s2"]
    assert all(ch.account_owner(a) == trader.address for a in ids)


def test_open_account__portfolio_mode(ch, trader):
    tx = ch.open_account("hedged", True, sender=trader)
    acct = tx.return_value
    assert ch.account_header(acct) == ACCOUNT_EXISTS | ACCOUNT_PORTFOLIO
    expect_event(
        tx, ch.AccountOpened, ch, account=acct, owner=trader, name="hedged", portfolio=True
    )


@pytest.mark.parametrize("name", ["", "x" * 32, "basis-trade ✓"])
def test_open_account__any_name_up_to_32_bytes(ch, trader, name):
    acct = ch.open_account(name, False, sender=trader).return_value
    assert ch.account_name(acct) == name


def test_open_account__same_name_twice_gives_two_accounts(ch, trader):
    a = ch.open_account("main", False, sender=trader).return_value
    b = ch.open_account("main", False, sender=trader).return_value
    assert a != b
    assert ch.account_name(a) == ch.account_name(b) == "main"


def test_open_account__name_above_32_bytes__reverts(ch, trader):
    with ape.reverts():
        ch.open_account("x" * 33, False, sender=trader)
    assert ch.sub_account_count(trader) == 0


def test_open_account__unopened_id_is_unknown(ch, trader):
    acct = ch.account_id(trader, 0)
    assert ch.account_header(acct) == 0
    assert ch.account_owner(acct) == trader.address
