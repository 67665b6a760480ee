"""Review 3: adversarial tests of the signed-order half (ClearinghouseOrders.settle).

Findings are `xfail(strict=True)` tests that assert the invariant the attack breaks (they
fail on the current code, with the figures in the docstring); the rest show an attack
refused. The World helper (funded maker/taker, signing, settling) is the one of
test_signed_orders.py.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from test_signed_orders import World

from perpdex.constants import WAD
from perpdex.sdk import orders as o

BTC = 0


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


def _equity(w: World, account: int) -> int:
    return int(w.ch.account_margin(account)[0])


def _fill_at(
    w: World, maker: tuple[int, Any], taker: tuple[int, Any], size: float, price: int
) -> o.MatchedFill:
    """`taker` trades `size` (signed, base) with `maker` at `price`; each pair is
    (account, signer)."""
    mk = w.sign(w.order(maker[0], -size, limit_price=price), maker[1])
    tk = w.sign(w.order(taker[0], size, limit_price=price), taker[1])
    return o.MatchedFill(mk, tk, int(abs(size) * WAD))


# --- findings ----------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="finding R3-1: an operator moves the account's collateral to its own account "
    "through off-oracle fills (2% band, reduces unchecked)",
)
def test_r3_1__operator_drains_account_through_band_priced_wash_fills(
    w: World, stranger: Any
) -> None:
    """docs/security.md: an operator may 'trade, sign and cancel orders for the account'
    and 'never withdraws or moves collateral'. With `settle` the operator signs the
    victim's orders against an account of its own: the victim buys at oracle + 2% and
    sells back at oracle - 2%, 4% of the notional per round trip straight into the
    operator's account (realised, so withdrawable). Only the adding leg is margin-checked.
    Measured (victim $100k, BTC $100k, each leg as large as initial margin allows): six
    round trips take $90,815 of the victim's $100k; the operator's account gains $87,714
    (the rest is fees) and withdraws it. The victim's owner loses it; with a larger
    last leg the victim can be left below zero (see R3-2)."""
    victim, attacker = w.maker, w.h.funded_account(stranger, 100_000, name="operator's")
    w.p.ops.set_operator(victim, stranger, True, sender=w.maker_owner)
    start_v, start_a = _equity(w, victim), _equity(w, attacker)
    for _ in range(6):
        p = w.btc
        # as large as the victim's initial margin allows (10% + the slope, + the 2% paid)
        size = round(_equity(w, victim) / (p * 0.125), 2)
        # the victim (taker, operator-signed) buys from the attacker at +2% ...
        w.settle(_fill_at(w, (attacker, stranger), (victim, stranger), size, p * 102 // 100))
        # ... and sells back at -2%
        w.settle(_fill_at(w, (attacker, stranger), (victim, stranger), -size, p * 98 // 100))
    lost, gained = start_v - _equity(w, victim), _equity(w, attacker) - start_a
    print(f"victim lost ${lost / WAD:,.0f}; operator's account gained ${gained / WAD:,.0f}")
    bal = int(w.ch.balance_of(attacker, 0))
    w.p.ops.withdraw(attacker, w.p.token, bal // 10**12, stranger, sender=stranger)
    # the invariant: an operator cannot move value out of the account beyond fees and
    # the price impact a market order pays (well under 1% of $100k here)
    assert lost < 1_000 * WAD


@pytest.mark.xfail(
    strict=True,
    reason="finding R3-2: a reducing fill at the band edge leaves the account underwater "
    "(bad debt) while a second account of the owner books the difference",
)
def test_r3_2__band_priced_reduce_leaves_bad_debt(w: World, h: Any) -> None:
    """A 10 BTC long ($110k collateral, opened at $100k) after BTC falls to $90k holds
    $9,500 of equity: liquidatable, not yet in an auction. Its owner sells 9.99 BTC at
    oracle - 2% ($88,200) to its second account: a reducing fill, which `settle` checks
    for nothing but the min position size. Measured: the first account goes from $9,500
    to -$8,923 of equity (bad debt the insurance fund / LPs absorb when it is
    liquidated); the second books the $17,982 the first gave up (9.99 BTC x $1,800
    under the oracle). The comment on FILL_BAND_BPS says the band prevents exactly this;
    it only does while equity is above 2% of the notional, and maintenance is 5% here,
    so any account already below maintenance (a gap, a slow keeper) can be dumped."""
    owner = w.maker_owner
    dumped = h.funded_account(owner, 110_000, name="dumped")
    sink = h.funded_account(owner, 200_000, name="sink")
    w.settle(_fill_at(w, (sink, owner), (dumped, owner), 10.0, w.btc))  # long 10 at $100k
    h.set_price("BTC", 90_000, w.admin)
    w.p.ops.refresh([BTC], sender=w.submitter)
    before = _equity(w, dumped)
    assert before > 0
    p = w.btc
    fill = _fill_at(w, (sink, owner), (dumped, owner), -9.99, p * 98 // 100)
    # not w.settle: its refresh re-publishes the configured price
    w.orders.settle(o.encode_fill_batch([fill]), sender=w.submitter)
    after = _equity(w, dumped)
    print(f"dumped account equity ${before / WAD:,.0f} -> ${after / WAD:,.0f}")
    assert after >= 0, "a reducing signed-order fill left the account with bad debt"


@pytest.mark.xfail(
    strict=True,
    reason="finding R3-3: an IOC order's unfilled remainder stays fillable on chain",
)
def test_r3_3__ioc_taker_remainder_fills_in_a_later_batch(w: World) -> None:
    """An immediate-or-cancel taker order (perpdex/matcher/engine.py cancels its
    remainder off chain) signs 2 BTC; a batch fills 0.5. `settle` is permissionless and
    the signature is public once the first batch lands, so anyone may fill the other
    1.5 BTC later (e.g. after the price moved against the signer, at any maker price
    inside the IOC's limit). Nothing on chain marks an IOC order done after its fill."""
    tk = w.sign(w.order(w.taker, 2.0, flags=o.FLAG_IOC), w.taker_owner)
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    w.settle(o.MatchedFill(mk, tk, WAD // 2))
    size = w.size(w.taker)
    mk2 = w.sign(w.order(w.maker, -1.5), w.maker_owner)
    with ape.reverts():  # what should happen: the remainder was cancelled
        w.settle(o.MatchedFill(mk2, tk, 3 * WAD // 2))
    assert w.size(w.taker) == size


# --- attacks refused ---------------------------------------------------------------------


def test_refused__unsigned_spare_bits_do_not_make_a_fresh_order(w: World) -> None:
    """w2 bits 155-159 (and the maker's fill bits) are not in the digest: flipping them
    yields the same digest and the same nonce bits, so a replay stays refused."""
    fill = w.pair(0.5)
    w.settle(fill)
    words = o.encode_fill_batch([fill])
    words[2] |= 0b11111 << 155 | 7 << 160  # maker: spare bits and a 'fill size'
    words[7] |= 0b11111 << 155
    w.refresh()
    with ape.reverts("clearinghouse: order done"):
        w.orders.settle(words, sender=w.submitter)


def test_refused__eip1271_flag_on_an_eoa_owner(w: World) -> None:
    fill = w.pair(0.5)
    words = o.encode_fill_batch([fill])
    words[7] |= 1 << 154  # the taker's owner is an EOA
    w.refresh()
    with ape.reverts("clearinghouse: bad wallet signature"):
        w.orders.settle(words, sender=w.submitter)


def test_refused__nonce_bits_do_not_collide(w: World) -> None:
    """Nonces n, n + 128 (same bit, next word) and 2**64 - 1 are independent."""
    nonces = [1_000, 1_128, 1_001, 2**64 - 1]
    for n in nonces:
        mk = w.sign(w.order(w.maker, -0.25, nonce=n), w.maker_owner)
        w.settle(o.MatchedFill(mk, w.sign(w.order(w.taker, 0.25), w.taker_owner), WAD // 4))
    for n in nonces:
        mk = w.sign(w.order(w.maker, -0.25, nonce=n), w.maker_owner)
        with ape.reverts("clearinghouse: order done"):
            w.settle(o.MatchedFill(mk, w.sign(w.order(w.taker, 0.25), w.taker_owner), WAD // 4))


def test_refused__zero_and_huge_fill_sizes(w: World) -> None:
    fill = w.pair(0.5)
    words = o.encode_fill_batch([fill])
    w.refresh()
    words[7] &= (1 << 160) - 1  # fill size 0
    with ape.reverts("clearinghouse: zero fill"):
        w.orders.settle(words, sender=w.submitter)
    words[7] |= (2**96 - 1) << 160
    with ape.reverts("clearinghouse: order overfilled"):
        w.orders.settle(words, sender=w.submitter)


def test_refused__reduce_only_reused_in_one_batch_to_flip(w: World) -> None:
    """A reduce-only order swept twice in one batch: the second fill would flip the
    position (the reduce-only test reads the size after the first)."""
    w.settle(w.pair(1.0))  # taker long 1
    held = w.size(w.taker)
    ro = w.sign(w.order(w.taker, -(held / WAD + 1), flags=o.FLAG_REDUCE_ONLY), w.taker_owner)
    mk1 = w.sign(w.order(w.maker, held / WAD), w.maker_owner)
    mk2 = w.sign(w.order(w.maker, 1.0), w.maker_owner)
    with ape.reverts("clearinghouse: not reduce-only"):
        w.settle(o.MatchedFill(mk1, ro, held), o.MatchedFill(mk2, ro, WAD))


def test_refused__same_owner_two_accounts_cannot_beat_the_oi_cap(w: World, h: Any) -> None:
    """Wash fills between two accounts of one owner still meet the open-interest cap."""
    owner = w.maker_owner
    a = h.funded_account(owner, 20_000_000, name="wash a")
    b = h.funded_account(owner, 20_000_000, name="wash b")
    max_oi = int(w.ch.market_params(BTC).max_oi)
    long_oi = int(w.ch.open_interest(BTC)[0])
    size = (max_oi - long_oi) / WAD + 1
    with ape.reverts("clearinghouse: open interest cap reached"):
        w.settle(_fill_at(w, (b, owner), (a, owner), size, w.btc))


def test_refused__below_its_loss_cap_an_account_cannot_add_through_settle(w: World, h: Any) -> None:
    """A signed order that grows a position of an account below its loss cap is refused
    as a market order is (the floor is read at fresh marks)."""
    w.settle(w.pair(0.5))  # taker long 0.5 BTC
    floor = _equity(w, w.taker) - 500 * WAD
    w.p.ops.set_loss_cap(w.taker, floor, sender=w.taker_owner)
    h.set_price("BTC", w.btc * 98 // 100 / WAD, w.admin)  # the long loses ~$1k
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5), w.taker_owner)
    with ape.reverts("clearinghouse: below loss cap, reduce only"):
        w.orders.settle(o.encode_fill_batch([o.MatchedFill(mk, tk, WAD // 2)]), sender=w.submitter)
