"""deposit: input checks, crediting by the measured balance change, caps, top-ups."""

import ape
import pytest

from .helpers import ETH, MAX_UINT256, WAD, collateral_index, expect_event

FEE_BPS = 100  # the fee-on-transfer token burns 1%

pytestmark = pytest.mark.usefixtures("listed_weth", "fee_token")


@pytest.fixture(scope="module")
def empty_acct(all_actors, h, trader):
    return h.open(trader)


@pytest.fixture(scope="module")
def fee_token(all_actors, project, gov, admin):
    """A 1%-fee-on-transfer 18-decimal token listed as collateral (index 1)."""
    t = project.MockFeeToken.deploy("Fee Token", "FEE", 18, FEE_BPS, sender=admin)
    gov.add_collateral(t, WAD // 5, ETH, MAX_UINT256, sender=admin)
    return t


def test_deposit__settlement_token(ch, ops, token, h, empty_acct, trader):
    units = h.fund(trader, 250)
    tx = ops.deposit(empty_acct, token, units, sender=trader)
    assert ch.balance_of(empty_acct, 0) == 250 * WAD
    assert token.balanceOf(trader) == 0
    assert token.balanceOf(ch) == units
    assert ch.collateral_held(0) == units
    expect_event(
        tx,
        ops.Deposit,
        ch,
        account=empty_acct,
        token=token,
        sender=trader,
        amount=units,
        credited=250 * WAD,
    )


def test_deposit__adds_up(ch, ops, token, h, empty_acct, trader):
    h.fund(trader, 300)
    ops.deposit(empty_acct, token, h.usd(100), sender=trader)
    ops.deposit(empty_acct, token, h.usd("0.000001"), sender=trader)
    assert ch.balance_of(empty_acct, 0) == 100 * WAD + 10**12


def test_deposit__anyone_may_top_up_any_account(ch, ops, token, h, empty_acct, trader, stranger):
    units = h.fund(stranger, 40)
    tx = ops.deposit(empty_acct, token, units, sender=stranger)
    assert ch.balance_of(empty_acct, 0) == 40 * WAD
    assert token.balanceOf(stranger) == 0
    expect_event(
        tx,
        ops.Deposit,
        ch,
        account=empty_acct,
        token=token,
        sender=stranger,
        amount=units,
        credited=40 * WAD,
    )
    # the depositor gains no rights over the account
    with ape.reverts("clearinghouse: not account owner"):
        ops.withdraw(empty_acct, token, units, stranger, sender=stranger)


def test_deposit__works_while_paused(ch, ops, gov, token, h, empty_acct, trader, admin):
    gov.pause(sender=admin)
    ops.deposit(empty_acct, token, h.fund(trader, 10), sender=trader)
    assert ch.balance_of(empty_acct, 0) == 10 * WAD


def test_deposit__fee_on_transfer_credits_amount_received(
    ch, ops, fee_token, give, empty_acct, trader
):
    sent = give(fee_token, trader, 100 * WAD)
    received = sent - sent * FEE_BPS // 10_000
    tx = ops.deposit(empty_acct, fee_token, sent, sender=trader)
    i = collateral_index(ch, fee_token)
    assert fee_token.balanceOf(ch) == received
    assert ch.balance_of(empty_acct, i) == received
    assert ch.collateral_held(i) == received
    expect_event(
        tx,
        ops.Deposit,
        ch,
        account=empty_acct,
        token=fee_token,
        sender=trader,
        amount=received,
        credited=received,
    )


def test_deposit__fee_on_transfer_then_withdraw_everything(
    ch, ops, fee_token, give, empty_acct, trader
):
    sent = give(fee_token, trader, 100 * WAD)
    ops.deposit(empty_acct, fee_token, sent, sender=trader)
    i = collateral_index(ch, fee_token)
    held = ch.balance_of(empty_acct, i)
    ops.withdraw(empty_acct, fee_token, held, trader, sender=trader)
    assert ch.balance_of(empty_acct, i) == 0
    assert ch.collateral_held(i) == 0
    assert fee_token.balanceOf(ch) == 0


def test_deposit__fee_token_that_burns_everything__reverts(
    all_actors, project, ch, ops, gov, give, empty_acct, trader, admin
):
    t = project.MockFeeToken.deploy("Burn", "BURN", 18, 10_000, sender=admin)
    gov.add_collateral(t, 0, ETH, MAX_UINT256, sender=admin)
    give(t, trader, WAD)
    with ape.reverts("clearinghouse: nothing received"):
        ops.deposit(empty_acct, t, WAD, sender=trader)
    assert t.balanceOf(trader) == WAD


def test_deposit__non_settlement_token_scaled_to_wad(
    ch, ops, gov, deploy_token, give, empty_acct, trader, admin
):
    wbtc = deploy_token(8, "WBTC")
    gov.add_collateral(wbtc, WAD // 10, 0, MAX_UINT256, sender=admin)
    units = give(wbtc, trader, 3 * 10**8)
    tx = ops.deposit(empty_acct, wbtc, units, sender=trader)
    i = collateral_index(ch, wbtc)
    assert ch.collateral_scale(i) == 10**10
    assert ch.balance_of(empty_acct, i) == 3 * WAD
    expect_event(
        tx,
        ops.Deposit,
        ch,
        account=empty_acct,
        token=wbtc,
        sender=trader,
        amount=units,
        credited=3 * WAD,
    )


def test_deposit__up_to_cap(ch, ops, gov, listed_weth, give, h, empty_acct, trader, hedger, admin):
    gov.set_collateral_params(
        collateral_index(ch, listed_weth), WAD // 10, ETH, 10 * WAD, sender=admin
    )
    give(listed_weth, trader, 6 * WAD)
    give(listed_weth, hedger, 4 * WAD)
    ops.deposit(empty_acct, listed_weth, 6 * WAD, sender=trader)
    ops.deposit(h.open(hedger), listed_weth, 4 * WAD, sender=hedger)
    assert ch.collateral_held(collateral_index(ch, listed_weth)) == 10 * WAD


def test_deposit__above_cap__reverts(ch, ops, gov, listed_weth, give, empty_acct, trader, admin):
    gov.set_collateral_params(
        collateral_index(ch, listed_weth), WAD // 10, ETH, 10 * WAD, sender=admin
    )
    give(listed_weth, trader, 11 * WAD)
    ops.deposit(empty_acct, listed_weth, 10 * WAD, sender=trader)
    with ape.reverts("clearinghouse: deposit cap reached"):
        ops.deposit(empty_acct, listed_weth, 1, sender=trader)
    assert ch.balance_of(empty_acct, collateral_index(ch, listed_weth)) == 10 * WAD
    assert listed_weth.balanceOf(trader) == WAD


def test_deposit__cap_counts_amount_received(
    ch, ops, gov, fee_token, give, empty_acct, trader, admin
):
    # 101 sent -> 99.99 received: under a cap of 100 although the request is above it
    i = collateral_index(ch, fee_token)
    gov.set_collateral_params(i, WAD // 5, ETH, 100 * WAD, sender=admin)
    sent = give(fee_token, trader, 101 * WAD)
    ops.deposit(empty_acct, fee_token, sent, sender=trader)
    assert ch.collateral_held(i) == sent - sent // 100


def test_deposit__cap_lowered_below_holdings__reverts(
    ch, ops, gov, listed_weth, give, empty_acct, trader, admin
):
    give(listed_weth, trader, 5 * WAD)
    ops.deposit(empty_acct, listed_weth, 4 * WAD, sender=trader)
    i = collateral_index(ch, listed_weth)
    gov.set_collateral_params(i, WAD // 10, ETH, 2 * WAD, sender=admin)
    with ape.reverts("clearinghouse: deposit cap reached"):
        ops.deposit(empty_acct, listed_weth, 1, sender=trader)
    # withdrawals are not capped
    ops.withdraw(empty_acct, listed_weth, 3 * WAD, trader, sender=trader)
    assert ch.collateral_held(i) == WAD


def test_deposit__zero_amount__reverts(ch, ops, token, h, empty_acct, trader):
    h.fund(trader, 1)
    with ape.reverts("clearinghouse: zero amount"):
        ops.deposit(empty_acct, token, 0, sender=trader)


def test_deposit__unknown_token__reverts(ch, ops, deploy_token, give, empty_acct, trader):
    other = deploy_token(18, "XYZ")
    give(other, trader, WAD)
    with ape.reverts("clearinghouse: unknown token"):
        ops.deposit(empty_acct, other, WAD, sender=trader)
    assert other.balanceOf(trader) == WAD
    assert other.balanceOf(ch) == 0


def test_deposit__unknown_account__reverts(ch, ops, token, h, trader):
    units = h.fund(trader, 10)
    unopened = ch.account_id(trader, ch.sub_account_count(trader))
    with ape.reverts("clearinghouse: unknown account"):
        ops.deposit(unopened, token, units, sender=trader)
    assert token.balanceOf(trader) == units
    assert ch.balance_of(unopened, 0) == 0


def test_deposit__without_allowance__reverts_and_loses_nothing(
    ch, ops, token, h, empty_acct, stranger
):
    units = h.usd(10)
    token.mint(stranger, units, sender=stranger)
    with ape.reverts():
        ops.deposit(empty_acct, token, units, sender=stranger)
    assert token.balanceOf(stranger) == units
    assert ch.balance_of(empty_acct, 0) == 0
    assert ch.collateral_held(0) == 0


def test_deposit__more_than_owned__reverts_and_loses_nothing(ch, ops, token, h, empty_acct, trader):
    units = h.fund(trader, 10)
    with ape.reverts():
        ops.deposit(empty_acct, token, units + 1, sender=trader)
    assert token.balanceOf(trader) == units
    assert ch.balance_of(empty_acct, 0) == 0
