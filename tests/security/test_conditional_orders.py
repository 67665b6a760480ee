"""Conditional orders (issue 12, item 4): stop-market, stop-limit and take-profit orders
fire against the vault through `execute_order` (contracts/modules/conditional.vy) exactly
when the oracle price (with quorum) has crossed their trigger, never before, never twice;
the executor earns the keeper fee the order carries, as a withdrawal would pay it; a
reduce-only stop never flips a position and does nothing once the position is gone; a
cancelled order never fires; and every bad input is refused with its reason.

Orders are built and signed with perpdex/sdk/orders.py (`stop_loss`, `take_profit`,
`stop`, `execute_args`), so the contract and the SDK cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import ape
import pytest
from eth_utils import keccak
from liquidation_helpers import LiqWorld, funded_world

from perpdex.constants import WAD
from perpdex.sdk import orders as so

BTC, ETH = 0, 1
P0 = 100_000  # BTC's configured price (config/markets.yaml)
NOT_TRIGGERED = "clearinghouse: not triggered"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class CW:
    """A funded vault, traders with BTC positions, signed conditional orders, a keeper."""

    def __init__(self, w: LiqWorld, chain: Any, keeper: Any) -> None:
        self.w, self.chain, self.keeper = w, chain, keeper
        self.p, self.ch = w.p, w.ch
        assert self.p.orders is not None
        self.orders = self.p.orders
        self.nonce = 2**32  # the SDK's default range for conditional orders

    def account(self, who: Any, dollars: int = 50_000, name: str = "stops") -> int:
        return self.w.account(who, dollars, name=name)

    def move(self, usd: int | str | Decimal) -> None:
        """Every BTC feed to `usd`; the marks refreshed."""
        self.w.post({"BTC": usd})

    def order(
        self, build: Callable[..., so.Order], acct: int, size: str, trigger: int | str, **kw: Any
    ) -> so.Order:
        kw.setdefault("expiry", self.chain.pending_timestamp + 7 * 86_400)
        if "nonce" not in kw:
            kw["nonce"] = self.nonce
            self.nonce += 1
        for name in ("limit_price", "keeper_fee"):  # dollars
            if name in kw:
                kw[name] = int(Decimal(str(kw[name])) * WAD)
        size_wad = int(Decimal(size) * WAD)
        return build(acct, BTC, size_wad, int(Decimal(str(trigger)) * WAD), **kw)

    def sign(self, order: so.Order, who: Any) -> so.SignedOrder:
        sig = so.sign_order(order, who.private_key, self.chain.chain_id, self.ch.address)
        return so.SignedOrder(order, sig)

    def execute(self, signed: so.SignedOrder, sender: Any = None) -> Any:
        return self.orders.execute_order(*so.execute_args(signed), sender=sender or self.keeper)

    def raw_execute(self, order: so.Order, v: int, r: int, s: int, sender: Any = None) -> Any:
        """`execute_order` without the SDK's checks (for inputs the SDK refuses)."""
        return self.orders.execute_order(
            so.order_tuple(order), v, r, s, sender=sender or self.keeper
        )

    def size(self, acct: int) -> int:
        return int(self.ch.position(acct, BTC)[0])

    def executed(self, tx: Any) -> Any:
        (e,) = self.orders.ConditionalOrderExecuted.from_receipt(tx)
        return e

    def digest(self, order: so.Order) -> bytes:
        return so.order_digest(order, self.chain.chain_id, self.ch.address)

    def token(self, who: Any) -> int:
        return int(self.p.token.balanceOf(who))


@pytest.fixture(scope="module")
def cw(actors: dict[str, Any], protocol: Any, chain: Any, admin: Any, lp: Any) -> CW:
    return CW(funded_world(protocol, chain, admin, lp, 10_000), chain, actors["keeper"])


# --- each kind fires exactly when the price crosses, never before, never twice -------------

# (name, builder, position to hold first, order size, trigger, prices that must not fire,
#  price that fires, kwargs)
KINDS: list[tuple[str, Callable[..., so.Order], str, str, int, list[int], int, dict[str, Any]]] = [
    ("stop-loss of a long", so.stop_loss, "1", "-1", 95_000, [99_000, 95_001], 95_000, {}),
    ("take-profit of a long", so.take_profit, "1", "-1", 105_000, [101_000, 104_999], 105_000, {}),
    ("stop-loss of a short", so.stop_loss, "-1", "1", 105_000, [101_000, 104_999], 106_000, {}),
    ("take-profit of a short", so.take_profit, "-1", "1", 95_000, [99_000, 95_001], 94_000, {}),
    (
        "stop entry above (not reduce-only)",
        so.stop,
        "0",
        "1",
        103_000,
        [100_500, 102_999],
        103_000,
        {"reduce_only": False},
    ),
    (
        "stop-limit sell",
        so.stop_loss,
        "1",
        "-1",
        95_000,
        [95_100],
        94_800,
        {"limit_price": 94_500},
    ),
]


@pytest.mark.parametrize(
    ("build", "hold", "size", "trigger", "quiet", "fire", "kw"),
    [k[1:] for k in KINDS],
    ids=[k[0] for k in KINDS],
)
def test_kind__fires_when_the_price_crosses_not_before_not_twice(
    cw: CW,
    trader: Any,
    build: Callable[..., so.Order],
    hold: str,
    size: str,
    trigger: int,
    quiet: list[int],
    fire: int,
    kw: dict[str, Any],
) -> None:
    acct = cw.account(trader)
    if hold != "0":
        cw.w.trade(trader, acct, BTC, hold)
    before = cw.size(acct)
    signed = cw.sign(cw.order(build, acct, size, trigger, **kw), trader)
    assert so.kind(signed.order) == ("take-profit" if build is so.take_profit else "stop")

    with ape.reverts(NOT_TRIGGERED):
        cw.execute(signed)
    for price in quiet:
        cw.move(price)
        assert not so.is_triggered(signed.order, int(cw.p.oracle.latest(BTC)[0]))
        with ape.reverts(NOT_TRIGGERED):
            cw.execute(signed)
    assert cw.size(acct) == before

    cw.move(fire)
    assert so.is_triggered(signed.order, int(cw.p.oracle.latest(BTC)[0]))
    tx = cw.execute(signed)

    delta = int(Decimal(size) * WAD)
    assert cw.size(acct) == before + delta
    e = cw.executed(tx)
    assert (int(e.account), bytes(e.order), e.keeper) == (acct, cw.digest(signed.order), cw.keeper)
    assert (int(e.size_delta), int(e.oracle_price)) == (delta, fire * WAD)
    (fill,) = [f for f in cw.ch.Fill.from_receipt(tx) if int(f.account) == acct]
    assert int(fill.size_delta) == delta and int(fill.price) == int(e.price)
    # the limit bounds the fill: a ceiling for buys, a floor for sells
    limit = signed.order.limit_price
    assert int(e.price) <= limit if delta > 0 else int(e.price) >= limit

    with ape.reverts("clearinghouse: order done"):
        cw.execute(signed)
    cw.move(trigger)  # still triggered, later: still done
    with ape.reverts("clearinghouse: order done"):
        cw.execute(signed)
    assert cw.size(acct) == before + delta


def test_stop_limit__waits_out_a_gap_then_fires_within_its_limit(cw: CW, trader: Any) -> None:
    """A stop-limit sell (trigger 95k, floor 94.5k): the price gaps to 90k, past the
    trigger and below the floor: refused, nothing filled, the order stays live; when the
    price comes back within the floor (and still past the trigger) it fires."""
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000, limit_price=94_500), trader)
    cw.move(90_000)
    with ape.reverts("clearinghouse: price worse than acceptable"):
        cw.execute(signed)
    assert cw.size(acct) == WAD
    cw.move(94_900)
    cw.execute(signed)
    assert cw.size(acct) == 0


def test_stop_market__default_limit_is_five_percent_past_the_trigger(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    order = cw.order(so.stop_loss, acct, "-1", 95_000)
    assert order.limit_price == 90_250 * WAD
    assert order.flags == so.FLAG_REDUCE_ONLY  # a sell stop arms below: no TRIGGER_ABOVE
    cw.move(91_000)  # a 9% gap: a stop-market still fills
    cw.execute(cw.sign(order, trader))
    assert cw.size(acct) == 0


# --- reduce-only ---------------------------------------------------------------------------


def test_reduce_only__clipped_to_the_position_never_flips(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "0.5")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-2", 95_000), trader)
    cw.move(94_000)
    tx = cw.execute(signed)
    assert cw.size(acct) == 0
    assert int(cw.executed(tx).size_delta) == -WAD // 2


def test_reduce_only__position_closed_by_hand__does_nothing_and_stays_live(
    cw: CW, trader: Any
) -> None:
    """The trader closes the long the stop protected: the stop, triggered, refuses ("nothing
    to reduce"), pays nobody, opens nothing (not even when the account has turned short,
    which the sell would add to); it fires again only for a long."""
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000, keeper_fee=10), trader)
    cw.w.trade(trader, acct, BTC, "-1")
    cw.move(94_000)
    balance = int(cw.ch.balance_of(acct, 0))
    keeper = cw.token(cw.keeper)
    with ape.reverts("clearinghouse: nothing to reduce"):
        cw.execute(signed)
    cw.w.trade(trader, acct, BTC, "-0.5")  # now short: a sell would add
    with ape.reverts("clearinghouse: nothing to reduce"):
        cw.execute(signed)
    assert cw.size(acct) == -WAD // 2
    assert int(cw.ch.balance_of(acct, 0)) < balance  # the short's fee, nothing else
    assert cw.token(cw.keeper) == keeper
    cw.w.trade(trader, acct, BTC, "1")  # long 0.5 again: the stop protects it
    cw.execute(signed)
    assert cw.size(acct) == 0


# --- keeper fee ------------------------------------------------------------------------------


def test_keeper_fee__paid_to_the_executor_from_the_balance(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000, keeper_fee=7), trader)
    cw.move(95_000)
    cw.w.assert_conserved()
    keeper, held = cw.token(cw.keeper), cw.token(cw.ch)

    tx = cw.execute(signed)

    e = cw.executed(tx)
    assert int(e.keeper_fee) == 7 * WAD
    assert cw.token(cw.keeper) - keeper == cw.w.usd(7)
    assert held - cw.token(cw.ch) == cw.w.usd(7)
    cw.w.assert_conserved()


def test_keeper_fee__capped_at_the_settlement_balance(cw: CW, trader: Any) -> None:
    """A fee above everything the account holds: the executor gets the settlement balance
    left after the fill (the account is flat, so a withdrawal could take it all), in whole
    token units."""
    acct = cw.account(trader, 20_000)
    cw.w.trade(trader, acct, BTC, "0.1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-0.1", 95_000, keeper_fee=1_000_000), trader)
    cw.move(95_000)
    keeper = cw.token(cw.keeper)
    tx = cw.execute(signed)
    fee = int(cw.executed(tx).keeper_fee)
    assert 0 < fee < 20_000 * WAD and fee % cw.w.scale == 0
    assert cw.token(cw.keeper) - keeper == fee // cw.w.scale
    assert 0 <= int(cw.ch.balance_of(acct, 0)) < cw.w.scale
    cw.w.assert_conserved()


def test_keeper_fee__refused_by_margin__order_still_fills(cw: CW, trader: Any) -> None:
    """A partial stop of a leveraged long, with a $5k fee: after the fill the account
    could not withdraw $5k (below initial margin), so it pays nothing and the stop still
    fills (a stop must not fail for its fee)."""
    acct = cw.account(trader, 12_000)
    cw.w.trade(trader, acct, BTC, "1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-0.5", 96_000, keeper_fee=5_000), trader)
    cw.move(96_000)
    keeper = cw.token(cw.keeper)
    tx = cw.execute(signed)
    assert int(cw.executed(tx).keeper_fee) == 0
    assert cw.token(cw.keeper) == keeper
    assert cw.size(acct) == WAD // 2
    m = cw.ch.account_margin(acct)
    assert int(m.equity) < int(m.initial) + 5_000 * WAD  # the $5k could not have left


def test_keeper_fee__owner_executing_its_own_order_takes_no_unrealised_profit(
    cw: CW, trader: Any
) -> None:
    """The owner as its own keeper, with a fee as large as its paper profit: a stop entry
    on ETH fires while its BTC long shows $10k of unrealised profit. Equity would cover
    the fee at initial margin, but the withdrawal gate counts no unrealised profit: the
    fee is refused (the Mango pattern cannot run through a keeper fee)."""
    acct = cw.account(trader, 20_000)
    cw.w.trade(trader, acct, BTC, "1")
    cw.move(110_000)
    order = so.stop(
        acct,
        ETH,
        WAD,
        2_900 * WAD,
        reduce_only=False,
        keeper_fee=12_000 * WAD,
        expiry=cw.chain.pending_timestamp + 3_600,
        nonce=7,
    )
    assert order.flags == so.FLAG_TRIGGER_ABOVE  # a buy stop arms above
    cw.w.post({"ETH": 2_950})
    m = cw.ch.account_margin(acct)
    assert int(m.equity) - 12_000 * WAD > int(m.initial) + 3_000 * WAD  # initial would pass
    before = cw.token(trader)
    tx = cw.execute(cw.sign(order, trader), sender=trader)
    assert int(cw.executed(tx).keeper_fee) == 0
    assert cw.token(trader) == before
    assert int(cw.ch.position(acct, ETH)[0]) == WAD


# --- cancels -------------------------------------------------------------------------------


def test_cancelled_order__never_fires(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    one = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000), trader)
    two = cw.sign(cw.order(so.take_profit, acct, "-1", 99_000), trader)
    tx = cw.orders.cancel_order(so.order_tuple(one.order), sender=trader)
    (c,) = cw.orders.OrderCancelled.from_receipt(tx)
    assert bytes(c.order) == cw.digest(one.order)
    cw.move(94_000)
    with ape.reverts("clearinghouse: order done"):
        cw.execute(one)
    cw.orders.cancel_below(acct, two.order.nonce + 1, sender=trader)
    cw.move(101_000)
    with ape.reverts("clearinghouse: order nonce cancelled"):
        cw.execute(two)
    assert cw.size(acct) == WAD


def test_window_nonces__fire_once_and_cancels_hold_as_the_window_moves(cw: CW, trader: Any) -> None:
    """Review 8: stops whose nonces are in the account header's replay window (min ..
    min + 43) and above it (their order_bits words) fire once and stay done, and a
    cancelled one never fires, also after `cancel_below` moved the window over them."""
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")

    def stop(nonce: int) -> so.SignedOrder:
        return cw.sign(cw.order(so.stop_loss, acct, "-0.2", 95_000, nonce=nonce), trader)

    low, low_cancelled, high, high_cancelled = stop(1), stop(2), stop(60), stop(61)
    for c in (low_cancelled, high_cancelled):
        cw.orders.cancel_order(so.order_tuple(c.order), sender=trader)
    cw.move(94_000)
    for s in (low, high):
        cw.execute(s)
        with ape.reverts("clearinghouse: order done"):
            cw.execute(s)
    with ape.reverts("clearinghouse: order done"):
        cw.execute(low_cancelled)
    cw.orders.cancel_below(acct, 30, sender=trader)  # 60 and 61 enter the window
    for s in (high, high_cancelled):
        with ape.reverts("clearinghouse: order done"):
            cw.execute(s)
    with ape.reverts("clearinghouse: order nonce cancelled"):
        cw.execute(low)
    assert cw.size(acct) == WAD - 2 * (WAD // 5)


# --- refusals --------------------------------------------------------------------------------


def test_refused__expired(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    expiry = cw.chain.pending_timestamp + 600
    signed = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000, expiry=expiry), trader)
    cw.chain.pending_timestamp = expiry + 1
    cw.move(94_000)
    with ape.reverts("clearinghouse: order expired"):
        cw.execute(signed)


def test_refused__bad_signatures(cw: CW, trader: Any, stranger: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    order = cw.order(so.stop_loss, acct, "-1", 95_000)
    cw.move(94_000)
    with ape.reverts("clearinghouse: signer not authorized"):
        cw.execute(cw.sign(order, stranger))
    good = cw.sign(order, trader)
    v, r, s = so.split_signature(good.signature)
    with ape.reverts("clearinghouse: bad signature"):
        cw.raw_execute(order, 29, r, s)
    with ape.reverts("clearinghouse: bad signature"):
        cw.raw_execute(order, v, 0, s)
    with ape.reverts("clearinghouse: high-s signature"):
        cw.raw_execute(order, 55 - v, r, SECP256K1_N - s)
    # signed terms cannot be changed: another trigger recovers another signer
    with ape.reverts("clearinghouse: signer not authorized"):
        cw.execute(replace(good, order=replace(order, trigger_price=99_000 * WAD)))
    # an EOA owner cannot pass as a contract wallet (v 0)
    with ape.reverts("clearinghouse: bad wallet signature"):
        cw.raw_execute(order, 0, r, s)
    cw.execute(good)
    assert cw.size(acct) == 0


def test_refused__no_price_quorum(cw: CW, trader: Any) -> None:
    """The BTC feeds disagree (no two within 2%): no trigger is read, nothing fires, even
    where every feed is past the trigger."""
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    signed = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000), trader)
    for feed, usd in zip(cw.p.feeds["BTC"], (80_000, 85_000, 90_000), strict=True):
        feed.set_answer(usd * 10**8, sender=cw.w.who)
    with ape.reverts("clearinghouse: no price quorum"):
        cw.execute(signed)
    cw.move(91_000)  # quorum again (within the stop-market's 5% floor, $90,250)
    cw.execute(signed)
    assert cw.size(acct) == 0


def test_refused__not_a_conditional_order_and_post_only(cw: CW, trader: Any) -> None:
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    plain = replace(cw.order(so.stop_loss, acct, "-1", 95_000), trigger_price=0, flags=0)
    with pytest.raises(so.OrderError, match="not a conditional order"):
        so.execute_args(cw.sign(plain, trader))
    sig = so.split_signature(cw.sign(plain, trader).signature)
    cw.move(94_000)
    with ape.reverts("clearinghouse: not a conditional order"):
        cw.raw_execute(plain, *sig)
    post = replace(cw.order(so.stop_loss, acct, "-1", 95_000), flags=3)
    with ape.reverts("clearinghouse: post-only conditional order"):
        cw.raw_execute(post, *so.split_signature(cw.sign(post, trader).signature))


def test_refused__conditional_order_cannot_be_matched_by_settle(
    cw: CW, trader: Any, hedger: Any
) -> None:
    """`settle` rebuilds orders with trigger 0 and no keeper fee: a conditional order's
    signature recovers another address there, so a matcher cannot fill a stop before (or
    instead of) its trigger. The SDK refuses to encode one at all."""
    taker = cw.account(trader)
    maker = cw.account(hedger)
    price = int(cw.p.oracle.latest(BTC)[0])
    stop = cw.order(so.stop, taker, "1", 101_000, reduce_only=False, limit_price=101_000)
    signed = cw.sign(stop, trader)
    sell = so.Order(maker, BTC, -WAD, price, stop.expiry, 1)
    mk = cw.sign(sell, hedger)
    with pytest.raises(so.OrderError, match="conditional"):
        so.encode_fill_batch([so.MatchedFill(mk, signed, WAD)])
    plain = replace(stop, trigger_price=0, keeper_fee=0, flags=0)
    batch = so.encode_fill_batch([so.MatchedFill(mk, so.SignedOrder(plain, signed.signature), WAD)])
    with ape.reverts("clearinghouse: signer not authorized"):
        cw.orders.settle(batch, sender=cw.keeper)
    assert cw.size(taker) == 0


def test_operator_and_contract_wallet_orders_execute(
    cw: CW, trader: Any, stranger: Any, project: Any
) -> None:
    # an operator signs a stop for the account (operators may trade against the vault)
    acct = cw.account(trader)
    cw.w.trade(trader, acct, BTC, "1")
    cw.p.ops.set_operator(acct, stranger, True, sender=trader)
    by_operator = cw.sign(cw.order(so.stop_loss, acct, "-1", 95_000), stranger)
    # a contract-wallet owner approves its order's digest with 64 signature bytes
    wallet = project.MockWallet.deploy(sender=stranger)
    ch, token = cw.ch, cw.p.token
    wallet.execute(ch, ch.open_account.encode_input("wallet", False), sender=stranger)
    wacct = int(ch.account_id(wallet, 0))
    units = cw.w.usd(50_000)
    token.mint(wallet, units, sender=stranger)
    wallet.execute(token, token.approve.encode_input(ch, units), sender=stranger)
    wallet.execute(ch, cw.p.ops.deposit.encode_input(wacct, token, units), sender=stranger)
    wallet.execute(ch, ch.trade.encode_input(wacct, BTC, WAD, 2**256 - 1), sender=stranger)
    worder = cw.order(so.stop_loss, wacct, "-1", 95_000)
    wsig = so.SignedOrder(worder, bytes(range(1, 65)))
    assert so.split_signature(wsig.signature)[0] == so.EIP1271_V
    cw.move(94_000)
    with ape.reverts("clearinghouse: bad wallet signature"):
        cw.execute(wsig)
    wallet.approve_hash(cw.digest(worder), "0x" + keccak(wsig.signature).hex(), sender=stranger)
    cw.execute(wsig)
    cw.execute(by_operator)
    assert cw.size(acct) == cw.size(wacct) == 0
