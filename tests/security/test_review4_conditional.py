"""Review 4: adversarial tests of conditional orders (modules/conditional.vy
`execute_order`) and of the operator's powers around them.

Findings are `xfail(strict=True)` tests asserting the invariant the attack breaks (the
figures measured are in their docstrings); refused attacks are passing tests. The CW
helper (funded vault, signing, executing) is the one of test_conditional_orders.py.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from liquidation_helpers import funded_world
from test_conditional_orders import BTC, CW, P0

from perpdex.constants import WAD
from perpdex.sdk import orders as so


@pytest.fixture(scope="module")
def cw(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> CW:
    return CW(funded_world(protocol, chain, admin, lp, 10_000), chain, actors["keeper"])


def _equity(cw: CW, acct: int) -> int:
    return int(cw.ch.account_margin(acct)[0])


# --- findings ----------------------------------------------------------------------------


def test_r4_1__operator_drains_account_through_its_own_keeper_fee(
    cw: CW, trader: Any, stranger: Any
) -> None:
    """docs/security.md and accounts.vy: an operator 'trades, never withdraws', and R3-1
    stopped it moving value out through signed-order prices. `execute_order` accepts a
    conditional order signed by an operator (`oh._verify`'s by_operator result is
    ignored) and pays the order's keeper fee, which the signer chooses freely, to
    whoever executes it. The operator signs a $100 stop entry (trigger = the current
    price, so it is armed at once) carrying a keeper fee of $49,000, executes it itself
    and receives the fee in tokens: the withdrawal gate only checks the account stays
    above initial margin, which a $100 position barely uses.
    Measured (victim $50,000, BTC $100,000): the operator's wallet gains $49,000 in one
    transaction; the victim's equity goes from $50,000 to about $1,000. Further orders
    can take the rest down to the margin the position needs (not run here). With
    `transfer_collateral` (the rebalancer's right) the operator first gathers every
    sub-account of the owner it operates into the one it drains.
    Fixed: `execute_order` refuses an operator-signed order with a non-zero keeper fee
    ("operator order with keeper fee"); only the owner promises keeper fees."""
    victim = cw.account(trader, 50_000, name="r4-1 victim")
    cw.p.ops.set_operator(victim, stranger, True, sender=trader)
    start_eq, start_tok = _equity(cw, victim), cw.token(stranger)
    order = cw.order(
        so.stop, victim, "0.001", P0, reduce_only=False, keeper_fee=49_000, limit_price=P0 * 2
    )
    with ape.reverts("clearinghouse: operator order with keeper fee"):
        cw.execute(cw.sign(order, stranger), sender=stranger)
    gained = cw.token(stranger) - start_tok
    lost = start_eq - _equity(cw, victim)
    # the invariant: an operator cannot move the account's value to itself beyond fees
    assert gained <= cw.w.usd(10)
    assert lost < 100 * WAD


# --- refused attacks ---------------------------------------------------------------------


def test_r4_conditional__fires_once_even_when_the_position_comes_back(cw: CW, trader: Any) -> None:
    """Firing twice: a reduce-only stop is consumed by its fill; the trader reopening the
    position does not re-arm it (order done), and the clipped fill closed only what was
    held (never flips)."""
    acct = cw.account(trader, 50_000, name="r4 twice")
    cw.w.trade(trader, acct, BTC, "0.5")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-2", 99_000), trader)
    cw.move(98_000)
    tx = cw.execute(signed)
    assert int(cw.executed(tx).size_delta) == -WAD // 2
    assert cw.size(acct) == 0
    cw.w.trade(trader, acct, BTC, "0.5")
    with ape.reverts("clearinghouse: order done"):
        cw.execute(signed)
    cw.move(P0)


def test_r4_conditional__keeper_fee_cannot_take_unrealised_profit(cw: CW, trader: Any) -> None:
    """Keeper-fee extraction by the owner itself (self-keeper): a take-profit's fee is
    paid through the withdrawal gate, so a fee larger than what the account could
    withdraw is not paid at all (the order still fills)."""
    acct = cw.account(trader, 10_000, name="r4 selfkeeper")
    cw.w.trade(trader, acct, BTC, "0.5")  # $50k long on $10k
    signed = cw.sign(cw.order(so.take_profit, acct, "-0.1", 101_000, keeper_fee=9_900), trader)
    cw.move(101_000)
    before = cw.token(trader)
    tx = cw.execute(signed, sender=trader)
    assert int(cw.executed(tx).keeper_fee) == 0
    assert cw.token(trader) == before
    cw.move(P0)


def test_r4_conditional__cancel_wins_the_race(cw: CW, trader: Any, stranger: Any) -> None:
    """Cancel race: a cancel mined before the execution stops it; an operator's cancel
    too."""
    acct = cw.account(trader, 20_000, name="r4 cancel")
    cw.w.trade(trader, acct, BTC, "0.1")
    cw.p.ops.set_operator(acct, stranger, True, sender=trader)
    signed = cw.sign(cw.order(so.stop_loss, acct, "-0.1", 99_000), trader)
    cw.move(98_500)
    cw.orders.cancel_order(so.order_tuple(signed.order), sender=stranger)
    with ape.reverts("clearinghouse: order done"):
        cw.execute(signed)
    assert cw.size(acct) == WAD // 10
    cw.move(P0)
