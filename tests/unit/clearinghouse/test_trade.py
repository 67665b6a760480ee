"""trade: input checks, the price bound, authorisation, the Fill event."""

import ape
import pytest

from .helpers import BTC, ETH, MAX_UINT256, WAD, expect_event, first_fill

pytestmark = pytest.mark.usefixtures("vault_cash")


@pytest.fixture(scope="module")
def funded_acct(vault_cash, h, trader):
    return h.funded_account(trader, 10_000)


def test_trade__buy_fills_at_oracle_plus_premium(ch, protocol, h, funded_acct, trader):
    m = protocol.system.market("BTC")
    size = WAD // 10
    price = h.price("BTC")
    fill, fee = first_fill(price, size, m.skew_scale, m.taker_fee)
    tx = ch.trade(funded_acct, BTC, size, MAX_UINT256, sender=trader)
    assert tx.return_value == fill
    assert ch.position(funded_acct, BTC)[:2] == (size, -(-size * fill // WAD))
    assert ch.open_interest(BTC) == (size, 0)
    assert ch.balance_of(funded_acct, 0) == 10_000 * WAD - fee
    expect_event(
        tx,
        ch.Fill,
        ch,
        account=funded_acct,
        market=BTC,
        counterparty=0,
        size_delta=size,
        price=fill,
        fee=fee,
        realized_pnl=0,
        funding_paid=0,
        size=size,
    )


def test_trade__sell_fills_at_oracle_minus_premium(ch, protocol, h, funded_acct, trader):
    m = protocol.system.market("ETH")
    size = -2 * WAD
    fill, fee = first_fill(h.price("ETH"), size, m.skew_scale, m.taker_fee)
    tx = ch.trade(funded_acct, ETH, size, 0, sender=trader)
    assert tx.return_value == fill < h.price("ETH")
    assert ch.position(funded_acct, ETH)[0] == size
    assert ch.open_interest(ETH) == (0, 2 * WAD)
    expect_event(
        tx,
        ch.Fill,
        ch,
        account=funded_acct,
        market=ETH,
        counterparty=0,
        size_delta=size,
        price=fill,
        fee=fee,
        realized_pnl=0,
        funding_paid=0,
        size=size,
    )


def test_trade__buy_at_exact_acceptable_price(ch, funded_acct, trader):
    fill = ch.trade.call(funded_acct, BTC, WAD // 10, MAX_UINT256, sender=trader)
    tx = ch.trade(funded_acct, BTC, WAD // 10, fill, sender=trader)
    assert tx.return_value == fill


def test_trade__buy_above_acceptable_price__reverts(ch, funded_acct, trader):
    fill = ch.trade.call(funded_acct, BTC, WAD // 10, MAX_UINT256, sender=trader)
    before = ch.balance_of(funded_acct, 0)
    with ape.reverts("clearinghouse: price worse than acceptable"):
        ch.trade(funded_acct, BTC, WAD // 10, fill - 1, sender=trader)
    assert ch.position(funded_acct, BTC)[0] == 0
    assert ch.balance_of(funded_acct, 0) == before


def test_trade__sell_at_exact_acceptable_price(ch, funded_acct, trader):
    fill = ch.trade.call(funded_acct, BTC, -WAD // 10, 0, sender=trader)
    tx = ch.trade(funded_acct, BTC, -WAD // 10, fill, sender=trader)
    assert tx.return_value == fill


def test_trade__sell_below_acceptable_price__reverts(ch, funded_acct, trader):
    fill = ch.trade.call(funded_acct, BTC, -WAD // 10, 0, sender=trader)
    with ape.reverts("clearinghouse: price worse than acceptable"):
        ch.trade(funded_acct, BTC, -WAD // 10, fill + 1, sender=trader)
    assert ch.position(funded_acct, BTC)[0] == 0


def test_trade__closing_trade_also_bounded__reverts(ch, h, funded_acct, trader):
    h.trade(trader, funded_acct, "BTC", "0.1")
    with ape.reverts("clearinghouse: price worse than acceptable"):
        ch.trade(funded_acct, BTC, -WAD // 10, MAX_UINT256, sender=trader)
    assert ch.position(funded_acct, BTC)[0] == WAD // 10


def test_trade__close_realizes_pnl(ch, h, funded_acct, trader, admin):
    h.trade(trader, funded_acct, "BTC", "0.1")
    size, cost, _ = ch.position(funded_acct, BTC)
    h.set_price("BTC", 101_000, admin)
    tx = h.trade(trader, funded_acct, "BTC", "-0.1")
    fill = tx.return_value
    ev = ch.Fill.from_receipt(tx)[0]
    assert ev.size == 0
    assert ev.realized_pnl == size * fill // WAD - cost
    assert ev.realized_pnl > 0
    assert ch.position(funded_acct, BTC)[:2] == (0, 0)
    assert ch.open_interest(BTC) == (0, 0)


def test_trade__position_markets_follows_the_positions(ch, h, funded_acct, trader):
    # the bitmap the liquidation auction walks (views.position_markets), not the header
    assert ch.position_markets(funded_acct) == 0
    h.trade(trader, funded_acct, "ETH", "-1")
    assert ch.position_markets(funded_acct) == 1 << ETH
    h.trade(trader, funded_acct, "BTC", "0.1")
    assert ch.position_markets(funded_acct) == 1 << ETH | 1 << BTC
    h.trade(trader, funded_acct, "ETH", "1")
    assert ch.position_markets(funded_acct) == 1 << BTC
    assert ch.position_markets(funded_acct + 1) == 0


def test_trade__zero_size__reverts(ch, funded_acct, trader):
    with ape.reverts("clearinghouse: zero size"):
        ch.trade(funded_acct, BTC, 0, MAX_UINT256, sender=trader)


def test_trade__unknown_market__reverts(ch, funded_acct, trader):
    n = ch.market_count()
    with ape.reverts("clearinghouse: unknown market"):
        ch.trade(funded_acct, n, WAD, MAX_UINT256, sender=trader)
    with ape.reverts("clearinghouse: unknown market"):
        ch.trade(funded_acct, 2**255, WAD, MAX_UINT256, sender=trader)


def test_trade__unknown_account__reverts(ch, trader):
    with ape.reverts("clearinghouse: unknown account"):
        ch.trade(ch.account_id(trader, 50), BTC, WAD, MAX_UINT256, sender=trader)


def test_trade__stranger__reverts(ch, funded_acct, stranger):
    with ape.reverts("clearinghouse: not authorized"):
        ch.trade(funded_acct, BTC, WAD // 100, MAX_UINT256, sender=stranger)
    assert ch.position(funded_acct, BTC)[0] == 0


def test_trade__other_owner__reverts(ch, h, funded_acct, hedger):
    h.funded_account(hedger, 10_000)
    with ape.reverts("clearinghouse: not authorized"):
        ch.trade(funded_acct, BTC, WAD // 100, MAX_UINT256, sender=hedger)


def test_trade__below_initial_margin__reverts(ch, h, trader):
    small = h.funded_account(trader, 100, name="small")
    # 0.01 BTC = $1,000 notional needs ~$100 initial margin plus the fee
    with ape.reverts("clearinghouse: below initial margin"):
        h.trade(trader, small, "BTC", "0.01")
    assert ch.balance_of(small, 0) == 100 * WAD


def test_trade__reduce_allowed_below_initial_margin(ch, ops, h, trader, admin):
    small = h.funded_account(trader, 120, name="small")
    h.trade(trader, small, "BTC", "0.01")
    h.set_price("BTC", 97_000, admin)
    ops.refresh([BTC], sender=admin)
    m = ch.account_margin(small)
    assert m.equity < m.initial
    h.trade(trader, small, "BTC", "-0.005")
    assert ch.position(small, BTC)[0] == WAD // 200


def test_trade__without_pool_cash__reverts(ch, gov, h, funded_acct, trader, admin):
    # the pool takes the other side: no cash, no exposure allowed
    gov.vault_withdraw(h.usd(1_000_000), admin, sender=admin)
    with ape.reverts("clearinghouse: vault exposure cap reached"):
        h.trade(trader, funded_acct, "BTC", "0.01")


def test_trade__closing_the_last_position_into_a_debt__reverts(ch, protocol, h, trader, admin):
    """An underwater account keeps its position for liquidation: closing it would leave a
    debt with no position a liquidation could act on. A partial reduce is allowed; once
    the owner deposits enough to cover the loss, the close goes through."""
    acct = h.funded_account(trader, 1_000, name="underwater")
    ch.trade(acct, BTC, 9 * WAD // 100, MAX_UINT256, sender=trader)  # $9,000 long
    h.set_price("BTC", 85_000, admin)  # -15%: about $1,350 lost on $1,000
    size = ch.position(acct, BTC)[0]
    with ape.reverts("clearinghouse: close leaves negative equity"):
        ch.trade(acct, BTC, -size, 0, sender=trader)
    assert ch.position(acct, BTC)[0] == size
    ch.trade(acct, BTC, -size // 2, 0, sender=trader)  # positions remain: allowed
    assert int(ch.account_margin(acct)[0]) < 0  # still underwater, still liquidatable
    rest = ch.position(acct, BTC)[0]
    protocol.ops.deposit(acct, protocol.token, h.fund(trader, 1_000), sender=trader)
    ch.trade(acct, BTC, -rest, 0, sender=trader)
    assert ch.position(acct, BTC)[0] == 0
    assert int(ch.balance_of(acct, 0)) >= 0


def test_trade__one_position_check_agrees_with_the_scan_at_the_boundary(ch, ops, h, trader):
    """An adding trade of an isolated account without a loss cap whose only holding is
    one position takes `gates._lone_isolated_margin`; with a loss cap (1 wei: it never
    binds here) the same trades take the margin scan. From one chain state, the same
    growing trades run once each way: both must fill or be refused alike, at every size,
    across the initial-margin boundary."""
    acct = h.funded_account(trader, 1_000, name="twin")
    start = ape.chain.snapshot()
    outcomes = []
    for cap in (0, 1):
        ape.chain.restore(start)
        start = ape.chain.snapshot()
        ops.set_loss_cap(acct, cap, sender=trader)
        seen = []
        for _ in range(12):
            try:
                h.trade(trader, acct, "BTC", "0.01")
                seen.append("filled")
            except ape.exceptions.ContractLogicError as e:
                seen.append(str(e))
            seen.append(ch.position(acct, BTC)[0])
        outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert "filled" in outcomes[0] and "clearinghouse: below initial margin" in outcomes[0]
