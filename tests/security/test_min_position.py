"""Issue 9, task A: no fill leaves a position worth less than MIN_POSITION_NOTIONAL.

Dust positions cost the protocol more than they are worth: every margin scan, funding
settlement and liquidation step pays for them, a liquidation of a $5 leg cannot pay its
keeper, and a trader can spread an account over many dust legs. Before, only liquidation
respected the $100 minimum (modules/liquidation_hooks.vy moved a leg whole when its rest
would be smaller).

The rule now (one constant, modules/constants.vy MIN_POSITION_NOTIONAL, used by the
engine, the liquidation hooks and the auction):
  market orders   (trading._pool_trade) refuse to leave 0 < |size| x oracle price < $100,
                  "clearinghouse: min position size"; closing to zero is always
                  allowed, so is any order leaving at least $100;
  loss-cap close  (trading._force_close) closes the whole leg when the window's part would
                  leave less than $100 (overshooting the window by under $100 of base);
  liquidation     the liquidated leg moves whole when its rest would be under $100 (as
                  before); where only part of a leg moves, the taker account's leg must
                  end at zero or at least $100 (the outside review found a keeper could
                  open a $10 leg by taking a sliver); a whole leg moves as it is, so the
                  minimum never blocks a take (tests/security/test_liquidation_due.py).
The SDK mirrors the market-order rule (math.simulate_trade, client.trade refuses before
sending).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.sdk import math as pm
from perpdex.units import WAD

MIN = 100 * WAD
REASON = "clearinghouse: min position size"
BTC_SCALE = 10_000 * WAD
LIMIT = 2 * min(2 * 10**14, 5 * 10**14) * BTC_SCALE // WAD  # loss-cap window: 4 BTC


def _min_size(price: int) -> int:
    """The smallest size (WAD) worth at least MIN at `price`."""
    return (MIN * WAD + price - 1) // price


def _trade(ch: Any, who: Any, acct: int, m: int, size: int) -> Any:
    return ch.trade(acct, m, size, 2**256 - 1 if size > 0 else 0, sender=who)


@pytest.fixture(scope="module")
def pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 5_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture
def acct(pool: None, h: Any, trader: Any) -> int:
    return h.funded_account(trader, 100_000, name="dust")


def test_constant__one_value_everywhere(protocol):
    assert int(protocol.auction.MIN_POSITION_NOTIONAL()) == MIN
    assert pm.MIN_POSITION_NOTIONAL == MIN == pm.LIQ_MIN_POSITION_NOTIONAL


def test_open__below_minimum__reverts(protocol, ch, h, trader, acct):
    btc = protocol.market_id("BTC")
    least = _min_size(h.price("BTC"))
    with ape.reverts(REASON):
        _trade(ch, trader, acct, btc, least - 1)
    with ape.reverts(REASON):
        _trade(ch, trader, acct, btc, -(least - 1))
    _trade(ch, trader, acct, btc, least)  # exactly the minimum is allowed
    assert int(ch.position(acct, btc)[0]) == least


def test_reduce__leaving_dust__reverts__full_close_allowed(protocol, ch, h, trader, acct):
    btc = protocol.market_id("BTC")
    least = _min_size(h.price("BTC"))
    _trade(ch, trader, acct, btc, WAD)
    with ape.reverts(REASON):
        _trade(ch, trader, acct, btc, -(WAD - least + 1))
    _trade(ch, trader, acct, btc, -(WAD - least))  # leaves exactly the minimum
    _trade(ch, trader, acct, btc, -least)  # closing whole is always allowed
    assert int(ch.position(acct, btc)[0]) == 0


def test_flip__to_dust__reverts(protocol, ch, h, trader, acct):
    btc = protocol.market_id("BTC")
    least = _min_size(h.price("BTC"))
    _trade(ch, trader, acct, btc, WAD)
    with ape.reverts(REASON):
        _trade(ch, trader, acct, btc, -(WAD + least - 1))
    _trade(ch, trader, acct, btc, -(WAD + least))
    assert int(ch.position(acct, btc)[0]) == -least


def test_position_worth_less_after_a_fall__close_whole_or_grow_it(
    protocol, ch, h, trader, admin, acct
):
    """A position the price made small: a partial reduce that leaves dust is refused;
    closing it whole and growing it past the minimum are not."""
    eth = protocol.market_id("ETH")
    price = h.price("ETH")
    size = 120 * WAD * WAD // price  # $120
    _trade(ch, trader, acct, eth, size)
    h.set_price("ETH", Decimal(price) / WAD / 2, admin)  # now $60
    protocol.ops.refresh([eth], sender=admin)
    with ape.reverts(REASON):
        _trade(ch, trader, acct, eth, -(size // 3))
    with ape.reverts(REASON):
        _trade(ch, trader, acct, eth, size // 3)  # still under $100 after
    _trade(ch, trader, acct, eth, size)  # $120 after: allowed
    _trade(ch, trader, acct, eth, -2 * size)  # whole close
    assert int(ch.position(acct, eth)[0]) == 0


def test_loss_cap__rest_below_minimum_closes_with_the_window(protocol, ch, h, keeper, trader):
    """The window would close 4 BTC of 4 BTC + $50: the $50 goes with it."""
    btc = protocol.market_id("BTC")
    dust = _min_size(h.price("BTC")) // 2
    victim = h.funded_account(trader, 100_000, name="capped")
    _trade(ch, trader, victim, btc, LIMIT + dust)
    equity = int(ch.account_margin(victim).equity)
    protocol.ops.set_loss_cap(victim, equity + 1_000 * WAD, sender=trader)
    tx = protocol.ops.trigger_loss_cap(victim, sender=keeper)
    fills = [f for f in tx.decode_logs(ch.Fill) if f.account == victim]
    assert [int(f.size_delta) for f in fills] == [-(LIMIT + dust)]
    assert int(ch.position(victim, btc)[0]) == 0
    assert int(ch.loss_cap_window(btc)) & (2**128 - 1) == LIMIT + dust


def test_loss_cap__rest_above_minimum_keeps_the_window(protocol, ch, h, keeper, trader):
    btc = protocol.market_id("BTC")
    rest = _min_size(h.price("BTC"))
    victim = h.funded_account(trader, 100_000, name="capped")
    _trade(ch, trader, victim, btc, -(LIMIT + rest))
    equity = int(ch.account_margin(victim).equity)
    protocol.ops.set_loss_cap(victim, equity + 1_000 * WAD, sender=trader)
    protocol.ops.trigger_loss_cap(victim, sender=keeper)
    assert int(ch.position(victim, btc)[0]) == -rest


def test_sdk__simulate_trade_predicts_the_revert(protocol, ch, h, trader, acct):
    from perpdex.sdk.snapshot import Snapshot

    btc = protocol.market_id("BTC")
    least = _min_size(h.price("BTC"))
    snap = Snapshot.load(protocol, acct)
    with pytest.raises(pm.Revert, match=REASON):
        pm.simulate_trade(snap, btc, least - 1)
    assert pm.simulate_trade(snap, btc, least).after.position(btc).size == least


def test_sdk__client_refuses_before_sending(protocol, ch, h, trader, acct):
    from perpdex.errors import TransactionRejected
    from perpdex.sdk.client import PerpdexClient

    btc = protocol.market_id("BTC")
    least = _min_size(h.price("BTC"))
    client = PerpdexClient.from_protocol(protocol, trader, preflight=False)
    nonce = trader.nonce
    with pytest.raises(TransactionRejected) as e:
        client.trade(acct, "BTC", Decimal(least - 1) / WAD)
    assert e.value.reason == REASON
    assert "100" in e.value.hint
    assert trader.nonce == nonce  # nothing was sent
    assert int(ch.position(acct, btc)[0]) == 0
