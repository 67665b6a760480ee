"""Multi-collateral margin: a second token counts at its price market's mark less haircut."""

import ape
import pytest

from .helpers import BTC, ETH, FEED_USD, WAD, collateral_index

pytestmark = pytest.mark.usefixtures("vault_cash")

HAIRCUT = WAD // 10  # the `listed_weth` fixture's


def _worth(units, price, haircut=HAIRCUT):
    """Python reference of gates._collateral_value for one token (rounded down)."""
    return units * price * (WAD - haircut) // (WAD * WAD)


@pytest.fixture(scope="module")
def weth_acct(vault_cash, listed_weth, h, give, ops, trader):
    """An account holding 2 WETH and nothing else."""
    a = h.open(trader)
    ops.deposit(a, listed_weth, give(listed_weth, trader, 2 * WAD), sender=trader)
    return a


def test_account_margin__weth_at_mark_less_haircut(ch, ops, weth_acct, trader):
    ops.refresh([ETH], sender=trader)
    price = ch.mark(ETH)[0]
    assert price == 3_000 * WAD
    m = ch.account_margin(weth_acct)
    assert m.equity == _worth(2 * WAD, price) == 5_400 * WAD
    assert (m.initial, m.maintenance, m.notional) == (0, 0, 0)


def test_account_margin__adds_settlement_balance(ch, ops, token, h, weth_acct, trader):
    ops.deposit(weth_acct, token, h.fund(trader, 250), sender=trader)
    ops.refresh([ETH], sender=trader)
    assert ch.account_margin(weth_acct).equity == 250 * WAD + 5_400 * WAD


def test_account_margin__odd_amounts_round_down(ch, ops, listed_weth, give, h, trader):
    a = h.open(trader, "odd")
    units = 123_456_789_123_456_789
    ops.deposit(a, listed_weth, give(listed_weth, trader, units), sender=trader)
    h.set_price("ETH", "3141.59265", trader)
    ops.refresh([ETH], sender=trader)
    price = ch.mark(ETH)[0]
    assert ch.account_margin(a).equity == _worth(units, price)


def test_account_margin__follows_the_mark(ch, ops, h, weth_acct, trader, admin):
    h.set_price("ETH", 2_500, admin)
    ops.refresh([ETH], sender=trader)
    assert ch.account_margin(weth_acct).equity == 4_500 * WAD


def test_account_margin__follows_the_haircut(ch, ops, gov, listed_weth, weth_acct, trader, admin):
    gov.set_collateral_params(
        collateral_index(ch, listed_weth), WAD // 2, ETH, 2**256 - 1, sender=admin
    )
    ops.refresh([ETH], sender=trader)
    assert ch.account_margin(weth_acct).equity == 3_000 * WAD


def test_account_margin__two_tokens(
    ch, ops, gov, listed_weth, deploy_token, give, weth_acct, trader, admin
):
    wbtc = deploy_token(8, "WBTC")
    gov.add_collateral(wbtc, WAD // 5, BTC, 2**256 - 1, sender=admin)
    ops.deposit(weth_acct, wbtc, give(wbtc, trader, 10**7), sender=trader)  # 0.1 WBTC
    ops.refresh([BTC, ETH], sender=trader)
    assert ch.account_margin(weth_acct).equity == 5_400 * WAD + 8_000 * WAD


def test_trade__backed_by_weth_only(ch, h, weth_acct, trader):
    h.trade(trader, weth_acct, "BTC", "0.2")  # $20,000 notional, ~$2,000 initial margin
    m = ch.account_margin(weth_acct)
    assert ch.balance_of(weth_acct, 0) < 0  # the fee was charged to the settlement balance
    assert m.equity >= m.initial > 0


def test_trade__margin_check_refreshes_the_collateral_mark(ch, h, weth_acct, trader):
    assert ch.mark(ETH)[1] == 0  # nobody touched ETH yet
    h.trade(trader, weth_acct, "BTC", "0.1")
    assert ch.mark(ETH)[0] == 3_000 * WAD


def test_trade__too_large_for_weth__reverts(ch, h, weth_acct, trader):
    # $5,400 of margin does not carry 0.6 BTC ($60,000 notional, ~$6,000+ initial)
    with ape.reverts("clearinghouse: below initial margin"):
        h.trade(trader, weth_acct, "BTC", "0.6")


def test_withdraw__weth_above_initial_margin(ch, ops, listed_weth, h, weth_acct, trader):
    h.trade(trader, weth_acct, "BTC", "0.2")
    m = ch.account_margin(weth_acct)
    free = (m.equity - m.initial) * WAD * WAD // (ch.mark(ETH)[0] * (WAD - HAIRCUT))
    ops.withdraw(weth_acct, listed_weth, free * 9 // 10, trader, sender=trader)
    assert listed_weth.balanceOf(trader) == free * 9 // 10


def test_withdraw__weth_below_initial_margin__reverts(ch, ops, listed_weth, h, weth_acct, trader):
    h.trade(trader, weth_acct, "BTC", "0.2")
    m = ch.account_margin(weth_acct)
    free = (m.equity - m.initial) * WAD * WAD // (ch.mark(ETH)[0] * (WAD - HAIRCUT))
    i = collateral_index(ch, listed_weth)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(weth_acct, listed_weth, free * 11 // 10, trader, sender=trader)
    assert ch.balance_of(weth_acct, i) == 2 * WAD
    assert listed_weth.balanceOf(trader) == 0


def test_withdraw__all_weth_with_negative_settlement_balance__reverts(
    ch, ops, listed_weth, h, weth_acct, trader
):
    # open and close: fees leave the settlement balance negative, WETH is the only asset
    h.trade(trader, weth_acct, "BTC", "0.1")
    h.trade(trader, weth_acct, "BTC", "-0.1")
    assert ch.balance_of(weth_acct, 0) < 0
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(weth_acct, listed_weth, 2 * WAD, trader, sender=trader)
    ops.withdraw(weth_acct, listed_weth, WAD, trader, sender=trader)


def test_withdraw__collateral_price_drop_refused_at_fresh_mark(
    ch, ops, listed_weth, h, weth_acct, trader, admin
):
    from ape import chain

    h.trade(trader, weth_acct, "BTC", "0.2")
    # ETH halves; the cached ETH mark is stale by the time of the withdrawal
    chain.pending_timestamp += ch.system_params().max_mark_age + 1
    for f in h.p.feeds["ETH"]:
        f.set_answer(1_500 * FEED_USD, sender=admin)
    for f in h.p.feeds["BTC"]:
        f.set_answer(100_000 * FEED_USD, sender=admin)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(weth_acct, listed_weth, WAD, trader, sender=trader)
