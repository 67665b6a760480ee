"""Review 4: adversarial tests of delayed vault orders (modules/delayed.vy) and of
multi-leg orders (ClearinghouseRisk.trade_multi) against the delayed-mode gating.

Findings were `xfail(strict=True)` tests asserting the invariant the attack breaks (the
figures measured are in their docstrings); a fixed finding's test passes, and refused
attacks are passing tests. R4-2 (the owner refusing a settlement price it saw) is fixed
by the pending-order freeze (`guards._require_idle`); one test per path it closes, and
per path it leaves open (liquidations, loss-cap close-outs, deposits, cancels), follows
it. Helpers and fixtures are those of test_delayed_orders.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest
from test_delayed_orders import (
    ANY_PRICE,
    KEEPER_FEE,
    MAX_AGE,
    MIN_DELAY,
    _delayed,
    _push,
    _wad,
)

from perpdex.sdk import math as pm
from perpdex.sdk import orders as o
from perpdex.sdk.math import pending_count, pending_until
from perpdex.sdk.snapshot import Snapshot
from perpdex.units import WAD

BIG_FLOOR = 10**12 * WAD
PENDING = "clearinghouse: delayed order pending"


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


def test_r4_2__owner_blocks_settlement_after_seeing_the_price(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """delayed.vy's security note: 'The owner cannot cancel once a settling price may
    exist, so the settlement price cannot be seen first and then refused.' The owner
    did not need `cancel_delayed_order`: once the first reading after the delay was
    known (on chain, or in flight, the very edge delayed orders exist to remove), an
    owner that disliked it made the order unfillable: `set_loss_cap` with a floor above
    its equity (an adding fill must leave equity at the floor), or a withdrawal or a
    `transfer_collateral` to a sibling account that left too little margin. Every
    keeper's `settle_order` then reverted, the order expired after max_age, and the
    floor was reset to 0 at no cost. A favourable reading was left to settle.
    Measured before the fix (mode 1, 2 BTC buy committed at $100,000, the reading after
    the delay $99,500): settle_order reverted with 'below loss cap, reduce only'; the
    $1,000 loss the fill would have booked was avoided: a free option on every update,
    paid by the LPs.
    Fixed (Synthetix v3's freeze): while an order of the account may settle, what its
    owner or operators start or signed is refused (`guards._require_idle`: loss cap,
    margin mode, withdrawals, transfers out, trades and fills anywhere); the tests
    below take each path. The same attempt now fails and the keeper fills the order."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="r4-2 optionist")
    risk.commit_order(acct, btc, _wad("2"), ANY_PRICE, sender=trader)
    _push(h, 99_500, keeper, after=MIN_DELAY)  # the reading the owner does not like
    try:
        protocol.ops.set_loss_cap(acct, BIG_FLOOR, sender=trader)
        raised = "accepted"
    except ape.exceptions.ContractLogicError as e:
        raised = str(e)
    refused = _try_settle(risk, acct, btc, keeper)
    print(f"set_loss_cap after the owner saw $99,500: {raised}")
    print(f"settle_order after the owner saw $99,500: {refused or 'settled'}")
    assert raised == PENDING
    assert int(protocol.ops.loss_cap(acct)) == 0
    # the invariant: once the window opens, a keeper settles the order
    assert refused is None, f"the owner refused the settlement price: {refused}"
    assert ch.position(acct, btc)[0] == _wad("2")


# --- R4-2: the freeze, path by path ------------------------------------------------------


def _frozen(h: Any, risk: Any, admin: Any, trader: Any, btc: int, name: str) -> int:
    """A funded account (1 ETH long, ETH immediate) with a 0.5 BTC buy committed in BTC
    (mode 1): frozen for its owner and operators."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name=name)
    h.trade(trader, acct, "ETH", "1")
    risk.commit_order(acct, btc, _wad("0.5"), ANY_PRICE, sender=trader)
    return acct


def _settle(h: Any, risk: Any, acct: int, btc: int, keeper: Any) -> None:
    """A keeper settles the account's BTC order at the first reading after the delay."""
    _push(h, 100_000, keeper, after=MIN_DELAY)
    risk.settle_order(acct, btc, sender=keeper)


def _cancel(risk: Any, acct: int, btc: int, trader: Any) -> None:
    """The owner takes the order back before its settlement window opens."""
    risk.cancel_delayed_order(acct, btc, sender=trader)


def test_r4_2_freeze__header_counts_orders_until_the_last_is_gone(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """commit_order sets the header's pending count and expiry (packing.vy bits 56-103,
    read by the SDK's `pending_count` / `pending_until`); a second order in another
    market counts too (commits are not frozen); the account is free again only when
    both are gone."""
    eth = protocol.market_id("ETH")
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 header")
    committed = (int(protocol.ops.delayed_order(acct, btc)) >> 192) & (2**40 - 1)
    hdr = int(ch.account_header(acct))
    assert (pending_count(hdr), pending_until(hdr)) == (1, committed + MAX_AGE)
    _delayed(risk, admin, eth, 1)
    risk.commit_order(acct, eth, _wad("-0.5"), 0, sender=trader)
    assert pending_count(int(ch.account_header(acct))) == 2
    _settle(h, risk, acct, btc, keeper)
    assert pending_count(int(ch.account_header(acct))) == 1
    with ape.reverts(PENDING):
        h.trade(trader, acct, "SOL", "1")
    h.set_price("ETH", 3_000, keeper)  # observed after the ETH order's delay
    risk.settle_order(acct, eth, sender=keeper)
    hdr = int(ch.account_header(acct))
    assert (pending_count(hdr), pending_until(hdr)) == (0, 0)
    assert ch.position(acct, eth)[0] == _wad("0.5")
    h.trade(trader, acct, "SOL", "1")


def test_r4_2_freeze__withdraw_refused_until_settled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 withdraw")
    token, units = protocol.token, h.usd(1_000)
    with ape.reverts(PENDING):
        protocol.ops.withdraw(acct, token, units, trader, sender=trader)
    # deposits still come in, from anyone
    protocol.ops.deposit(acct, token, h.fund(keeper, 500), sender=keeper)
    _settle(h, risk, acct, btc, keeper)
    protocol.ops.withdraw(acct, token, units, trader, sender=trader)


def test_r4_2_freeze__transfer_out_refused_in_accepted_until_cancelled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 transfer")
    sibling = h.funded_account(trader, 10_000, name="r4-2 sibling")
    token, units = protocol.token, h.usd(1_000)
    with ape.reverts(PENDING):
        protocol.ops.transfer_collateral(acct, sibling, token, units, sender=trader)
    before = int(ch.balance_of(acct, 0))
    protocol.ops.transfer_collateral(sibling, acct, token, units, sender=trader)  # in: yes
    assert int(ch.balance_of(acct, 0)) == before + 1_000 * WAD
    _cancel(risk, acct, btc, trader)
    protocol.ops.transfer_collateral(acct, sibling, token, units, sender=trader)


def test_r4_2_freeze__loss_cap_refused_either_way_until_settled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="r4-2 cap")
    protocol.ops.set_loss_cap(acct, 50_000 * WAD, sender=trader)
    risk.commit_order(acct, btc, _wad("0.5"), ANY_PRICE, sender=trader)
    for floor in (BIG_FLOOR, 0):  # raising it fails the fill; lowering it is frozen too
        with ape.reverts(PENDING):
            protocol.ops.set_loss_cap(acct, floor, sender=trader)
    _settle(h, risk, acct, btc, keeper)
    protocol.ops.set_loss_cap(acct, 0, sender=trader)
    assert int(protocol.ops.loss_cap(acct)) == 0


def test_r4_2_freeze__margin_mode_refused_until_cancelled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 mode")
    with ape.reverts(PENDING):
        protocol.ops.set_margin_mode(acct, True, sender=trader)
    _cancel(risk, acct, btc, trader)
    tx = protocol.ops.set_margin_mode(acct, True, sender=trader)
    assert tx.decode_logs(protocol.ops.MarginModeChanged)[0].portfolio  # the Admin half logs it


def test_r4_2_freeze__trades_elsewhere_refused_owner_and_operator_until_settled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper, stranger
):
    """`trade` in another market (and a reduce in the order's own), by the owner or an
    operator, and `close_with_adl` (the same `_require_trader`)."""
    eth = protocol.market_id("ETH")
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 trade")
    protocol.ops.set_operator(acct, stranger, True, sender=trader)  # not frozen
    for who in (trader, stranger):
        with ape.reverts(PENDING):
            h.trade(who, acct, "ETH", "1")
        with ape.reverts(PENDING):
            h.trade(who, acct, "ETH", "-1")
    # the SDK's mirror (perpdex/sdk/math/trading.py) refuses it the same way
    with pytest.raises(pm.Revert, match=PENDING):
        pm.simulate_trade(Snapshot.load(protocol, acct, "pending"), eth, WAD)
    other = h.funded_account(keeper, 10_000, name="r4-2 adl")
    with ape.reverts(PENDING):
        risk.close_with_adl(acct, eth, -_wad("1"), 0, other, sender=trader)
    _settle(h, risk, acct, btc, keeper)
    pm.simulate_trade(Snapshot.load(protocol, acct, "pending"), eth, WAD)
    h.trade(stranger, acct, "ETH", "1")
    h.trade(trader, acct, "BTC", "-0.5")  # mode 1: an immediate reduce
    assert ch.position(acct, eth)[0] == _wad("2")


def test_r4_2_freeze__trade_multi_refused_until_cancelled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    eth, sol = protocol.market_id("ETH"), protocol.market_id("SOL")
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 multi")
    legs = [(eth, _wad("-1"), 0), (sol, _wad("1"), ANY_PRICE)]
    with ape.reverts(PENDING):
        risk.trade_multi(acct, legs, sender=trader)
    _cancel(risk, acct, btc, trader)
    risk.trade_multi(acct, legs, sender=trader)
    assert ch.position(acct, sol)[0] == _wad("1")


def _signed(
    protocol: Any, who: Any, acct: int, market: int, size: str, price: int, nonce: int
) -> o.SignedOrder:
    order = o.Order(
        account=acct,
        market=market,
        size=_wad(size),
        limit_price=price,
        expiry=ape.chain.pending_timestamp + 3_600,
        nonce=nonce,
    )
    sig = o.sign_order(order, who.private_key, ape.chain.chain_id, protocol.clearinghouse.address)
    return o.SignedOrder(order, sig)


def test_r4_2_freeze__signed_fill_refused_either_side_until_settled(
    protocol, ch, h, pool, btc, risk, admin, trader, hedger, keeper
):
    """`settle` refuses a fill of an order of the frozen account, as maker and as taker
    (both its owner's signature): a resting order could otherwise be filled, by a
    matcher the owner runs, to eat the margin the order needs."""
    eth = protocol.market_id("ETH")
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 signed")
    other = h.funded_account(hedger, 100_000, name="r4-2 counterparty")
    px = int(protocol.oracle.latest(eth)[0])

    def fill(maker: tuple[int, Any], taker: tuple[int, Any], n: int) -> Any:
        mk = _signed(protocol, maker[1], maker[0], eth, "-1", px, n)
        tk = _signed(protocol, taker[1], taker[0], eth, "1", px, n)
        batch = o.encode_fill_batch([o.MatchedFill(mk, tk, WAD)])
        return protocol.orders.settle(batch, sender=keeper)

    with ape.reverts(PENDING):
        fill((acct, trader), (other, hedger), 0)
    with ape.reverts(PENDING):
        fill((other, hedger), (acct, trader), 1)
    _settle(h, risk, acct, btc, keeper)
    h.set_price("ETH", 3_000, keeper)
    px = int(protocol.oracle.latest(eth)[0])
    fill((other, hedger), (acct, trader), 2)
    assert ch.position(acct, eth)[0] == _wad("2")


def test_r4_2_freeze__conditional_order_refused_until_settled(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """A triggered stop of the frozen account does not fire (any keeper may execute it,
    the owner included, at a time it picks); it fires once the order is settled."""
    eth = protocol.market_id("ETH")
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 stop")
    px = int(protocol.oracle.latest(eth)[0])
    stop = o.stop_loss(
        acct, eth, -_wad("1"), px, expiry=ape.chain.pending_timestamp + 3_600, nonce=2**32
    )
    sig = o.sign_order(stop, trader.private_key, ape.chain.chain_id, ch.address)
    args = o.execute_args(o.SignedOrder(stop, sig))
    with ape.reverts(PENDING):
        protocol.orders.execute_order(*args, sender=keeper)
    _settle(h, risk, acct, btc, keeper)
    h.set_price("ETH", 3_000, keeper)
    protocol.orders.execute_order(*args, sender=keeper)
    assert ch.position(acct, eth)[0] == 0


def test_r4_2_freeze__cancels_of_signed_orders_still_work(
    protocol, ch, h, pool, btc, risk, admin, trader
):
    """Cancelling signed orders takes nothing out of the account: not frozen."""
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 cancels")
    signed = _signed(protocol, trader, acct, btc, "1", 100_000 * WAD, 5)
    protocol.orders.cancel_order(o.order_tuple(signed.order), sender=trader)
    protocol.orders.cancel_below(acct, 10, sender=trader)


def test_r4_2_freeze__expiry_frees_the_account_without_a_cancel(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """An order nobody settled stops freezing the account once it expired; anyone may
    still cancel it (the header's count drops to 0)."""
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 expiry")
    ape.chain.pending_timestamp += MAX_AGE + 1
    h.trade(trader, acct, "ETH", "1")
    with ape.reverts("clearinghouse: delayed order expired"):
        risk.settle_order(acct, btc, sender=keeper)
    risk.cancel_delayed_order(acct, btc, sender=keeper)
    assert int(ch.account_header(acct)) >> 56 & (2**48 - 1) == 0


def test_r4_2_freeze__raised_max_age_does_not_outlast_the_freeze(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """Governance raising max_age after a commit: the order still expires when the
    freeze set at commit ends, so its owner is never free while it may settle."""
    acct = _frozen(h, risk, admin, trader, btc, "r4-2 max age")
    risk.set_delayed_params(btc, 1, MIN_DELAY, 3_600, KEEPER_FEE, sender=admin)
    _push(h, 100_000, keeper, after=MAX_AGE + 1)
    h.trade(trader, acct, "ETH", "1")  # free: the freeze (commit + 300 s) is over
    with ape.reverts("clearinghouse: delayed order expired"):
        risk.settle_order(acct, btc, sender=keeper)


def test_r4_2_freeze__liquidation_goes_on_and_frozen_takers_are_refused(
    protocol, ch, h, pool, btc, risk, admin, trader
):
    """Liquidations do not pass the freeze: an account with an order pending is started
    and taken; a keeper account with an order pending cannot take (a take is its
    owner's choice and adds risk)."""
    from liquidation_helpers import LiqWorld

    keeper = admin
    liq = LiqWorld(protocol, ape.chain, keeper)
    keeper_acct = liq.account(keeper, 200_000, name="keeper")
    frozen_keeper = liq.account(keeper, 200_000, name="frozen keeper")
    victim = liq.btc_long(trader, 12_000)
    risk.set_delayed_params(btc, 1, MIN_DELAY, 3_600, KEEPER_FEE, sender=admin)
    risk.commit_order(victim.account, btc, -WAD // 2, 0, sender=trader)
    risk.commit_order(frozen_keeper, btc, WAD // 10, ANY_PRICE, sender=keeper)
    liq.hold({"BTC": liq.price_for_health(victim.account, Decimal("0.9"))})
    liq.auction.start(victim.account, keeper_acct, sender=keeper)
    with ape.reverts(PENDING):
        liq.auction.take(victim.account, frozen_keeper, WAD, sender=keeper)
    liq.auction.take(victim.account, keeper_acct, WAD, sender=keeper)
    assert ch.position(keeper_acct, btc)[0] > 0


def test_r4_2_freeze__loss_cap_close_out_goes_on(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """A loss-cap close-out is not the owner's: it closes a frozen account below its
    floor."""
    eth = protocol.market_id("ETH")
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 20_000, name="r4-2 capped")
    h.trade(trader, acct, "ETH", "5")
    protocol.ops.set_loss_cap(acct, 19_000 * WAD, sender=trader)
    risk.commit_order(acct, btc, _wad("0.1"), ANY_PRICE, sender=trader)
    h.set_price("ETH", 2_700, keeper)  # -$1,500 on 5 ETH: below the floor
    protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert abs(int(ch.position(acct, eth)[0])) < _wad("5")
    h.set_price("ETH", 3_000, keeper)


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
