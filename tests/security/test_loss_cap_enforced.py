"""Issue 11, item 5: a loss cap is a strategy stop, not a suggestion.

Attack on main at 55e1ef5: an account's owner (or its operator bot) set a floor, the
equity fell below it, and the account kept trading: it could add to the losing position
or open new ones until someone triggered the close-out (and no bot ever did). Withdrawals
and transfers out crossed the floor silently.

The rule now (modules/gates.vy `_check_after_trade`, modules/accounts.vy
`_check_value_out`, modules/liquidation_hooks.vy `liquidation_transfer`):
  - an order that opens, grows or flips a position must leave equity >= the floor,
    "clearinghouse: below loss cap, reduce only" (reduces are always accepted);
  - `withdraw` and `transfer_collateral` must leave equity >= the floor,
    "clearinghouse: would cross loss cap";
  - the SDK predicts both (`math.simulate_trade`, `math.withdrawable`) and refuses, before
    sending, a floor above the equity unless confirmed.
Equity is `account_margin`'s figure, the one `trigger_loss_cap` compares.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.errors import TransactionRejected
from perpdex.sdk import math as pm
from perpdex.sdk.client import LossCapAboveEquity, PerpdexClient
from perpdex.sdk.losscap import BELOW_LOSS_CAP, WOULD_CROSS_LOSS_CAP, trigger_equity
from perpdex.sdk.snapshot import Snapshot
from perpdex.units import WAD

POOL_UNITS = 5_000_000
FLOOR = 19_000 * WAD


@pytest.fixture(scope="module")
def cap_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, POOL_UNITS)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


def _move(protocol: Any, h: Any, who: Any, symbol: str, usd: int) -> None:
    h.set_price(symbol, usd, who)
    protocol.ops.refresh([protocol.market_id(symbol)], sender=who)


@pytest.fixture
def below(cap_pool: None, protocol: Any, ch: Any, h: Any, trader: Any, admin: Any) -> int:
    """$20k long 1 BTC with a $19k floor, then BTC -1.5%: equity ~$18.5k, below the floor
    and far above initial margin (only the cap stands in the way)."""
    acct = h.funded_account(trader, 20_000, name="capped")
    h.trade(trader, acct, "BTC", "1")
    protocol.ops.set_loss_cap(acct, FLOOR, sender=trader)
    _move(protocol, h, admin, "BTC", int(h.price("BTC")) * 985 // 1000 // WAD)
    m = ch.account_margin(acct)
    assert m.initial < m.equity < FLOOR
    return acct


def _size(ch: Any, acct: int, market: int) -> int:
    return int(ch.position(acct, market)[0])


# --- trades --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "symbol,size",
    [("BTC", "0.1"), ("ETH", "1"), ("BTC", "-1.5")],
    ids=["grow", "open-another", "flip"],
)
def test_below_floor__owner_order_that_adds__refused(protocol, ch, h, below, trader, symbol, size):
    btc = protocol.market_id("BTC")
    before = _size(ch, below, btc)
    with ape.reverts(BELOW_LOSS_CAP):
        h.trade(trader, below, symbol, size)
    assert _size(ch, below, btc) == before


def test_below_floor__operator_order_that_adds__refused(protocol, ch, h, below, trader, hedger):
    protocol.ops.set_operator(below, hedger, True, sender=trader)
    with ape.reverts(BELOW_LOSS_CAP):
        h.trade(hedger, below, "BTC", "0.1")
    h.trade(hedger, below, "BTC", "-0.1")  # the operator may still reduce
    assert _size(ch, below, protocol.market_id("BTC")) == 9 * WAD // 10


def test_below_floor__reduce_and_close__accepted(protocol, ch, h, below, trader):
    btc = protocol.market_id("BTC")
    h.trade(trader, below, "BTC", "-0.5")
    assert _size(ch, below, btc) == WAD // 2
    h.trade(trader, below, "BTC", "-0.5")
    assert _size(ch, below, btc) == 0


def test_below_floor__sdk_mirror_predicts_the_refusal(protocol, ch, below):
    ape.chain.pending_timestamp += 1
    snap = Snapshot.load(protocol, below, "pending")
    assert snap.loss_cap == FLOOR
    btc = protocol.market_id("BTC")
    with pytest.raises(pm.Revert, match=BELOW_LOSS_CAP):
        pm.simulate_trade(snap, btc, WAD // 10)
    res = pm.simulate_trade(snap, btc, -(WAD // 10))
    assert not res.adds


def test_above_floor__adding_accepted_until_it_would_end_below(protocol, ch, h, cap_pool, trader):
    """The floor binds on the equity the trade leaves: fees count."""
    acct = h.funded_account(trader, 20_000, name="near-floor")
    h.trade(trader, acct, "BTC", "0.1")
    equity = int(ch.account_margin(acct).equity)
    protocol.ops.set_loss_cap(acct, equity - WAD, sender=trader)  # $1 of headroom
    with ape.reverts(BELOW_LOSS_CAP):
        h.trade(trader, acct, "BTC", "0.1")  # ~$5 taker fee: ends below the floor
    protocol.ops.set_loss_cap(acct, equity - 100 * WAD, sender=trader)
    h.trade(trader, acct, "BTC", "0.1")
    assert _size(ch, acct, protocol.market_id("BTC")) == WAD // 5


def test_below_floor__close_out_still_works(protocol, ch, h, below, keeper):
    protocol.ops.trigger_loss_cap(below, sender=keeper)
    assert _size(ch, below, protocol.market_id("BTC")) == 0


# --- value out -----------------------------------------------------------------------------


@pytest.fixture
def capped(cap_pool: None, protocol: Any, ch: Any, h: Any, trader: Any) -> int:
    """$20k long 1 BTC, floor $15k: the margin gate alone would let ~$9.9k out, the cap
    only ~$5k."""
    acct = h.funded_account(trader, 20_000, name="capped")
    h.trade(trader, acct, "BTC", "1")
    protocol.ops.set_loss_cap(acct, 15_000 * WAD, sender=trader)
    return acct


def _limit(protocol: Any, trader: Any, acct: int) -> int:
    """The SDK's withdrawable figure for the next block (its time pinned)."""
    ape.chain.pending_timestamp += 5
    return PerpdexClient.from_protocol(protocol, trader).withdrawable_units(acct)


def test_withdraw__crossing_the_floor__refused(protocol, ch, h, capped, trader):
    with ape.reverts(WOULD_CROSS_LOSS_CAP):
        protocol.ops.withdraw(capped, protocol.token, h.usd(6_000), trader, sender=trader)
    assert int(ch.account_margin(capped).equity) > 19_000 * WAD


def test_withdraw__staying_above__accepted_to_the_unit_the_sdk_reports(
    protocol, ch, h, capped, trader
):
    limit = _limit(protocol, trader, capped)
    equity = int(ch.account_margin(capped).equity)
    assert abs(limit - (equity - 15_000 * WAD) // 10**12) < h.usd(5)  # the cap binds
    with ape.reverts(WOULD_CROSS_LOSS_CAP):
        protocol.ops.withdraw(capped, protocol.token, limit + 1, trader, sender=trader)
    protocol.ops.withdraw(capped, protocol.token, limit, trader, sender=trader)
    assert 0 <= int(ch.account_margin(capped).equity) - 15_000 * WAD < 10**12


def test_transfer__crossing_the_floor__refused_staying_above__accepted(
    protocol, ch, h, capped, trader
):
    other = h.open(trader, "other")
    with ape.reverts(WOULD_CROSS_LOSS_CAP):
        protocol.ops.transfer_collateral(capped, other, protocol.token, h.usd(6_000), sender=trader)
    protocol.ops.transfer_collateral(capped, other, protocol.token, h.usd(4_000), sender=trader)
    assert int(ch.balance_of(other, 0)) == 4_000 * WAD
    assert int(ch.account_margin(capped).equity) >= 15_000 * WAD


def test_withdraw__flat_account_below_its_floor__refused_until_the_cap_is_lowered(
    protocol, ch, h, cap_pool, trader
):
    acct = h.funded_account(trader, 1_000, name="flat")
    protocol.ops.set_loss_cap(acct, 5_000 * WAD, sender=trader)
    with ape.reverts(WOULD_CROSS_LOSS_CAP):
        protocol.ops.withdraw(acct, protocol.token, 1, trader, sender=trader)
    protocol.ops.set_loss_cap(acct, 0, sender=trader)  # the owner's explicit decision
    protocol.ops.withdraw(acct, protocol.token, h.usd(1_000), trader, sender=trader)


def test_withdraw__no_cap__unchanged(protocol, ch, h, cap_pool, trader):
    acct = h.funded_account(trader, 20_000, name="uncapped")
    h.trade(trader, acct, "BTC", "1")
    protocol.ops.withdraw(acct, protocol.token, h.usd(9_000), trader, sender=trader)


# --- the SDK's confirmation ----------------------------------------------------------------


def test_sdk_set_loss_cap__above_equity__refused_before_sending(protocol, ch, h, cap_pool, trader):
    acct = h.funded_account(trader, 1_000, name="confirm")
    client = PerpdexClient.from_protocol(protocol, trader)
    nonce = trader.nonce
    with pytest.raises(LossCapAboveEquity, match="--yes-above-equity") as e:
        client.set_loss_cap(acct, 1_001)
    assert e.value.equity == 1_000 and e.value.floor == 1_001
    assert trader.nonce == nonce and int(ch.loss_cap(acct)) == 0
    client.set_loss_cap(acct, 1_000)  # at the equity: not above it
    assert int(ch.loss_cap(acct)) == 1_000 * WAD
    client.set_loss_cap(acct, 1_001, confirm_above_equity=True)
    assert int(ch.loss_cap(acct)) == 1_001 * WAD


def test_sdk_set_loss_cap__uses_the_equity_the_trigger_reads(protocol, ch, h, below, trader):
    """Below the floor already: the equity the refusal quotes is the trigger's."""
    client = PerpdexClient.from_protocol(protocol, trader)
    ape.chain.pending_timestamp += 1
    want = trigger_equity(Snapshot.load(protocol, below, "pending"))
    with pytest.raises(LossCapAboveEquity) as e:
        client.set_loss_cap(below, FLOOR // WAD)
    assert e.value.equity * WAD == want


def test_sdk_trade_below_floor__rejected_with_a_hint(protocol, h, below, trader):
    client = PerpdexClient.from_protocol(protocol, trader)
    with pytest.raises(TransactionRejected) as e:
        client.trade(below, "BTC", "0.1")
    assert e.value.reason == BELOW_LOSS_CAP
    assert "reduce" in e.value.hint


# --- gas (figures for the report, printed; nothing asserted on them) ------------------------


def test_gas__trade_and_withdraw(protocol, ch, h, cap_pool, trader, capsys):
    figures = {}
    for capped_ in (False, True):
        acct = h.funded_account(trader, 20_000, name="gas")
        if capped_:
            protocol.ops.set_loss_cap(acct, 1_000 * WAD, sender=trader)
        h.trade(trader, acct, "BTC", "0.1")
        figures[f"trade (open), cap={capped_}"] = h.trade(trader, acct, "BTC", "0.1").gas_used
        tx = protocol.ops.withdraw(acct, protocol.token, h.usd(100), trader, sender=trader)
        figures[f"withdraw, cap={capped_}"] = tx.gas_used
    with capsys.disabled():
        for k, v in figures.items():
            print(f"\nGAS {k}: {v:,}")
