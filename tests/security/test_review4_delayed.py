"""Review 4: adversarial tests of delayed vault orders (modules/delayed.vy) and of
multi-leg orders (ClearinghouseRisk.trade_multi) against the delayed-mode gating.

Findings are `xfail(strict=True)` tests asserting the invariant the attack breaks (the
figures measured are in their docstrings); refused attacks are passing tests. Helpers
and fixtures are those of test_delayed_orders.py.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from test_delayed_orders import (
    ANY_PRICE,
    MAX_AGE,
    MIN_DELAY,
    _delayed,
    _push,
    _wad,
)

from perpdex.units import WAD

BIG_FLOOR = 10**12 * WAD


@pytest.fixture(scope="module")
def pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 2_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture
def btc(protocol: Any) -> int:
    return protocol.market_id("BTC")


@pytest.fixture
def risk(protocol: Any) -> Any:
    return protocol.risk


def _try_settle(risk: Any, acct: int, m: int, keeper: Any) -> str | None:
    """None when the order settled, else the revert reason."""
    try:
        risk.settle_order(acct, m, sender=keeper)
    except ape.exceptions.ContractLogicError as e:
        return str(e)
    return None


# --- findings ----------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="R4-2: the owner refuses a settlement price it saw")
def test_r4_2__owner_blocks_settlement_after_seeing_the_price(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """delayed.vy's security note: 'The owner cannot cancel once a settling price may
    exist, so the settlement price cannot be seen first and then refused.' The owner
    does not need `cancel_delayed_order`: once the first reading after the delay is
    known (on chain, or in flight, the very edge delayed orders exist to remove), an
    owner that dislikes it makes the order unfillable: `set_loss_cap` with a floor above
    its equity (an adding fill must leave equity at the floor), or a withdrawal or a
    `transfer_collateral` to a sibling account that leaves too little margin. Every
    keeper's `settle_order` then reverts, the order expires after max_age, and the
    floor is reset to 0 at no cost. A favourable reading is left to settle.
    Measured (mode 1, 2 BTC buy committed at $100,000, the reading after the delay
    $99,500): settle_order reverts with 'below loss cap, reduce only'; the $1,000 loss
    the fill would have booked is avoided, while the same commit before a +$500 reading
    is left to fill (about +$1,000 less fees, test_delayed_orders' attack figure): a
    free option on every update, paid by the LPs.
    Fix: once the window opens the order fills regardless of the account's later
    changes to loss cap / collateral (e.g. check the loss cap and margin as of commit,
    or snapshot and refuse loss-cap raises and collateral moves while an adding order is
    pending), or charge a fee the order forfeits when it cannot settle."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="r4-2 optionist")
    risk.commit_order(acct, btc, _wad("2"), ANY_PRICE, sender=trader)
    _push(h, 99_500, keeper, after=MIN_DELAY)  # the reading the owner does not like
    protocol.ops.set_loss_cap(acct, BIG_FLOOR, sender=trader)
    refused = _try_settle(risk, acct, btc, keeper)
    # the owner lets the order expire and resets the floor
    ape.chain.pending_timestamp += MAX_AGE + 1
    ape.chain.mine()
    protocol.ops.set_loss_cap(acct, 0, sender=trader)
    print(f"settle_order after the owner saw $99,500: {refused or 'settled'}")
    assert ch.position(acct, btc)[0] == 0  # nothing filled
    # the invariant: once the window opens, a keeper settles the order
    assert refused is None, f"the owner refused the settlement price: {refused}"


# --- refused attacks ---------------------------------------------------------------------


def test_r4_delayed__cancel_after_seeing_the_price_is_refused(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """Cancelling once the settling price exists is refused (owner and operator), and
    re-committing over a pending order too."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="r4 cancel")
    risk.commit_order(acct, btc, _wad("1"), ANY_PRICE, sender=trader)
    _push(h, 99_500, keeper, after=MIN_DELAY)
    with ape.reverts("clearinghouse: settlement window open"):
        risk.cancel_delayed_order(acct, btc, sender=trader)
    with ape.reverts("clearinghouse: delayed order pending"):
        risk.commit_order(acct, btc, _wad("-1"), 0, sender=trader)
    assert _try_settle(risk, acct, btc, keeper) is None
    assert ch.position(acct, btc)[0] == _wad("1")
    _push(h, 100_000, keeper)


def test_r4_trade_multi__cannot_bypass_delayed_mode(
    protocol, ch, h, pool, btc, risk, admin, trader
):
    """trade_multi's legs go through the same `_pool_trade` gate: an adding BTC leg in a
    delayed market is refused even when an ETH leg comes first and the final book is
    checked once."""
    _delayed(risk, admin, btc, 1)
    eth = protocol.market_id("ETH")
    acct = h.funded_account(trader, 100_000, name="r4 multi")
    legs = [(eth, _wad("1"), ANY_PRICE), (btc, _wad("0.5"), ANY_PRICE)]
    with ape.reverts("clearinghouse: use commit_order"):
        risk.trade_multi(acct, legs, sender=trader)
    _delayed(risk, admin, btc, 0)


def test_r4_trade_multi__leg_order_does_not_skip_the_loss_cap(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """A loss-capped account below its floor cannot add through trade_multi by putting a
    reducing leg first: the final check refuses any order with an adding leg."""
    _delayed(risk, admin, btc, 0)
    eth = protocol.market_id("ETH")
    acct = h.funded_account(trader, 20_000, name="r4 multi cap")
    h.trade(trader, acct, "ETH", "5")
    protocol.ops.set_loss_cap(acct, 19_999 * WAD, sender=trader)
    _push(h, 99_000, keeper)  # no BTC position: equity unchanged; fees put it under
    legs = [(eth, _wad("-1"), 0), (btc, _wad("0.1"), ANY_PRICE)]
    with ape.reverts("clearinghouse: below loss cap, reduce only"):
        risk.trade_multi(acct, legs, sender=trader)
    _push(h, 100_000, keeper)
