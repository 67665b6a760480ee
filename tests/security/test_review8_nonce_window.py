"""Review 8: replay attacks on the signed orders' replay window in the account header.

The replay bits of the nonces min .. min + 43 (min: the account's minimum nonce) live in
the account header, every other nonce's in its order_bits word, and `cancel_below` moves
the window up (contracts/modules/order_hash.vy `_raise_min_nonce`). Each test replays a
filled, partly filled or cancelled order across the places its bits can be in, and
across a move of the window: a done order must never fill again, a partly filled one
never beyond its size, a nonce below the minimum never, and the header's other fields
must survive. The World helper is the one of test_signed_orders.py.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from test_signed_orders import World

from perpdex.constants import WAD
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs

LOT = 0.02  # BTC per fill: small, so the taker's position stays well margined
DONE = "clearinghouse: order done"
OVERFILLED = "clearinghouse: order overfilled"
CANCELLED = "clearinghouse: order nonce cancelled"
LOW_104 = 2**104 - 1


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


def _maker(w: World, nonce: int, lots: int = 1) -> o.SignedOrder:
    """A maker sell order of `lots` lots with `nonce`."""
    return w.sign(w.order(w.maker, -LOT * lots, nonce=nonce), w.maker_owner)


def _fill(w: World, maker: o.SignedOrder, lots: int = 1) -> o.MatchedFill:
    """The taker (its next nonce) buys `lots` lots of `maker`."""
    taker = w.sign(w.order(w.taker, LOT * lots), w.taker_owner)
    return o.MatchedFill(maker, taker, int(LOT * lots * WAD))


def _header(w: World, account: int) -> int:
    return int(w.ch.account_header(account))


def _min(w: World) -> int:
    return cs.min_nonce(_header(w, w.maker))


def _in_header(w: World, nonce: int) -> bool:
    return cs.replay_location(w.maker, _header(w, w.maker), nonce)[0] is None


def test_window_edges__each_nonce_fills_once(w: World) -> None:
    """The window's first and last nonce and the two just above it (their words) fill
    once; a replay of each is refused, before and after the others filled."""
    base = _min(w)
    nonces = [base, base + cs.NONCE_WINDOW - 1, base + cs.NONCE_WINDOW, base + 200]
    assert [_in_header(w, n) for n in nonces] == [True, True, False, False]
    orders = [_maker(w, n) for n in nonces]
    for mk in orders:
        w.settle(_fill(w, mk))
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))
    for mk in orders:
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))


def test_same_accounts_twice_in_one_batch__both_orders_done(w: World) -> None:
    """Two fills of one batch between the same two accounts: the second fill's header
    write must keep the first fill's bits (no stale header), for both sides."""
    base = _min(w)
    a, b = _maker(w, base + 3), _maker(w, base + 4)
    fa, fb = _fill(w, a), _fill(w, b)
    w.settle(fa, fb)
    for f in (fa, fb):
        with ape.reverts(DONE):
            w.settle(f)  # the maker's order
        with ape.reverts(DONE):
            w.settle(o.MatchedFill(_maker(w, base + 30), f.taker, f.size))  # the taker's


def test_partial_fill_in_the_window__then_overfill_and_replay(w: World) -> None:
    base = _min(w)
    mk = _maker(w, base + 5, lots=3)
    w.settle(_fill(w, mk))
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, mk, lots=3))
    w.settle(_fill(w, mk, lots=2))
    with ape.reverts(DONE):
        w.settle(_fill(w, mk))


def test_window_moves_a_little__states_kept(w: World) -> None:
    """cancel_below by fewer than 44: the nonces that stay in the window keep their
    bits (partly filled, done, cancelled), the ones below the new minimum are dead."""
    base = _min(w)
    partial, done, cancelled = _maker(w, base + 8, 3), _maker(w, base + 9), _maker(w, base + 10)
    below = _maker(w, base + 2)
    w.settle(_fill(w, partial))
    w.settle(_fill(w, done))
    w.orders.cancel_order(cancelled.order.as_message(), sender=w.maker_owner)
    w.orders.cancel_below(w.maker, base + 3, sender=w.maker_owner)
    assert all(_in_header(w, n) for n in (base + 8, base + 9, base + 10))
    with ape.reverts(CANCELLED):
        w.settle(_fill(w, below))
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, partial, lots=3))
    with ape.reverts(DONE):
        w.settle(_fill(w, done))
    with ape.reverts(DONE):
        w.settle(_fill(w, cancelled))
    w.settle(_fill(w, partial, lots=2))
    with ape.reverts(DONE):
        w.settle(_fill(w, partial))


@pytest.mark.parametrize("step", [20, 43, 44, 100])
def test_window_moves_over_word_nonces__their_states_come_along(w: World, step: int) -> None:
    """Orders above the window (bits in their words) partly filled, filled and cancelled;
    cancel_below moves the window over them (by less than, exactly and more than its
    width): each keeps its state, and the window's own former nonces are dead."""
    base = _min(w)
    top = base + step + cs.NONCE_WINDOW - 1  # the new window's last nonce
    n_partial, n_done, n_cancelled, n_live = top, top - 1, top - 2, top - 3
    assert not any(_in_header(w, n) for n in (n_partial, n_done, n_cancelled, n_live))
    partial, done = _maker(w, n_partial, 3), _maker(w, n_done)
    cancelled, live = _maker(w, n_cancelled), _maker(w, n_live)
    in_window = _maker(w, base + 1)
    w.settle(_fill(w, partial))
    w.settle(_fill(w, done))
    w.orders.cancel_order(cancelled.order.as_message(), sender=w.maker_owner)
    low = _header(w, w.maker) & LOW_104
    w.orders.cancel_below(w.maker, base + step, sender=w.maker_owner)
    assert _header(w, w.maker) & LOW_104 == low  # flags, bitmaps, pending: untouched
    assert _min(w) == base + step
    assert all(_in_header(w, n) for n in (n_partial, n_done, n_cancelled, n_live))
    with ape.reverts(CANCELLED):
        w.settle(_fill(w, in_window))
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, partial, lots=3))
    for mk in (done, cancelled):
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))
    w.settle(_fill(w, partial, lots=2))
    w.settle(_fill(w, live))
    for mk in (partial, live):
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))


def test_ioc_taker_in_the_window__remainder_dead(w: World) -> None:
    """An IOC taker (its nonce in the header's window) fills part of its size in one
    batch; its remainder never fills later (R3-3, with the window's bits)."""
    base = _min(w)
    mk = _maker(w, base + 12, lots=4)
    # the taker's next nonce starts its window (its earlier ones are all used)
    nonce = w.nonces[w.taker]
    if nonce > cs.min_nonce(_header(w, w.taker)):
        w.orders.cancel_below(w.taker, nonce, sender=w.taker_owner)
    w.nonces[w.taker] = nonce + cs.NONCE_WINDOW
    ioc = w.sign(w.order(w.taker, LOT * 2, nonce=nonce + 40, flags=o.FLAG_IOC), w.taker_owner)
    assert cs.replay_location(w.taker, _header(w, w.taker), nonce + 40)[0] is None
    w.settle(o.MatchedFill(mk, ioc, int(LOT * WAD)))
    with ape.reverts(DONE):
        w.settle(o.MatchedFill(mk, ioc, int(LOT * WAD)))


def test_fill_in_the_window__other_header_fields_kept(w: World) -> None:
    """A fill that leaves the positions as they were changes only the window's bits."""
    base = _min(w)
    w.settle(_fill(w, _maker(w, base + 20)))  # both open a position
    before_m, before_t = _header(w, w.maker), _header(w, w.taker)
    assert int(w.ch.position(w.maker, 0)[0]) != 0 and int(w.ch.position(w.taker, 0)[0]) != 0
    f = _fill(w, _maker(w, base + 13))
    w.settle(f)
    after_m, after_t = _header(w, w.maker), _header(w, w.taker)
    assert after_m & LOW_104 == before_m & LOW_104 and after_m >> 192 == before_m >> 192
    assert after_t & LOW_104 == before_t & LOW_104 and after_t >> 192 == before_t >> 192
    at = cs.replay_location(w.maker, after_m, base + 13)[1]
    assert (after_m ^ before_m) == cs.ORDER_DONE << at
