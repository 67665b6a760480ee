"""Review 8 (outside reviewer): attacks on the gas cuts of `settle` (wip/batch).

Covers the four commits after eb5fa63: the replay window in the account header
(ef4cf1b), `settle` routed to the Orders half directly (b9ae0dd), the inline margin
check of one-market isolated fills (18296cc) and one pool/OI update per matched fill
(63c2622). Each test is an attack; it passes when the attack fails. The replay-window
basics (edges, window moves, IOC, header fields) are in test_review8_nonce_window.py;
this file adds operators, shared nonces, other header writers, a differential test of
the inline margin check against the full gate, and conservation across mixed sides.
The World helper is the one of test_signed_orders.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ape
import pytest
from eth_utils import keccak
from test_signed_orders import BTC, World

from perpdex.constants import WAD
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs

LOT = 0.02
DONE = "clearinghouse: order done"
OVERFILLED = "clearinghouse: order overfilled"
CANCELLED = "clearinghouse: order nonce cancelled"
STEP = WAD // 10**6  # 1e-6 BTC: the differential search's resolution


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


@pytest.fixture(scope="module")
def op(actors: dict[str, Any]) -> Any:
    """An operator of the maker account (signs orders and cancels for it)."""
    return actors["stranger"]


@pytest.fixture(scope="module")
def full(w: World) -> Any:
    """The Clearinghouse address with the union ABI of all its halves."""
    abi = json.loads((Path(__file__).parents[2] / "perpdex/abi/Clearinghouse.json").read_text())
    return ape.Contract(w.ch.address, abi=abi)


def _hdr(w: World, account: int) -> int:
    return int(w.ch.account_header(account))


def _mk(w: World, nonce: int, lots: int = 1, signer: Any = None) -> o.SignedOrder:
    return w.sign(w.order(w.maker, -LOT * lots, nonce=nonce), signer or w.maker_owner)


def _fill(w: World, maker: o.SignedOrder, lots: int = 1) -> o.MatchedFill:
    taker = w.sign(w.order(w.taker, LOT * lots), w.taker_owner)
    return o.MatchedFill(maker, taker, int(LOT * lots * WAD))


def _base(w: World) -> int:
    return cs.min_nonce(_hdr(w, w.maker))


def _fresh(w: World, account: int) -> None:
    """The World's next automatic nonce of `account` at or above its minimum nonce."""
    low = cs.min_nonce(_hdr(w, account))
    w.nonces[account] = max(w.nonces.get(account, 0), low)


# --- 1. replay window (ef4cf1b) ---------------------------------------------------------


def test_operator_order_consumes_the_owners_nonce(w: World, op: Any, full: Any) -> None:
    """An operator's order and the owner's order with the same window nonce: once one
    is done the other never fills (one nonce, one state, whoever signed)."""
    full.set_operator(w.maker, op, True, sender=w.maker_owner)
    base = _base(w)
    by_op = _mk(w, base + 7, signer=op)
    by_owner = _mk(w, base + 7, lots=2)
    assert w.digest(by_op.order) != w.digest(by_owner.order)
    w.settle(_fill(w, by_op))
    with ape.reverts(DONE):
        w.settle(_fill(w, by_owner))
    # and an operator's cancel_below kills the owner's window and word orders
    live_w, live_hi = _mk(w, base + 8), _mk(w, base + 300)
    w.orders.cancel_below(w.maker, base + 301, sender=op)
    for mk in (live_w, live_hi):
        with ape.reverts(CANCELLED):
            w.settle(_fill(w, mk))


def test_two_orders_one_nonce__partial_then_other_completes(w: World) -> None:
    """Order X (3 lots) partly filled; order Y with the same nonce fills completely:
    the nonce is done, X's remainder is dead (no fill beyond what was signed for the
    nonce's first completion)."""
    base = _base(w)
    x, y = _mk(w, base + 15, lots=3), _mk(w, base + 15, lots=1)
    w.settle(_fill(w, x))
    w.settle(_fill(w, y))
    for mk in (x, y):
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))


def test_partial_order_enters_window__fills_to_size_only(w: World) -> None:
    """A word nonce partly filled, then the window moves over it (cancel_below), then
    moves again so that it sits at the window's first slot: its filled amount counts."""
    base = _base(w)
    n = base + 3 * cs.NONCE_WINDOW
    mk = _mk(w, n, lots=3)
    w.settle(_fill(w, mk))
    w.orders.cancel_below(w.maker, n - 10, sender=w.maker_owner)
    w.settle(_fill(w, mk))
    w.orders.cancel_below(w.maker, n, sender=w.maker_owner)
    assert cs.replay_location(w.maker, _hdr(w, w.maker), n) == (None, cs.NONCE_WINDOW_SHIFT)
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, mk, lots=2))
    w.settle(_fill(w, mk))
    with ape.reverts(DONE):
        w.settle(_fill(w, mk))


def test_other_header_writers_keep_the_window(w: World, h: Any, full: Any) -> None:
    """Partly filled, done and cancelled window nonces survive the other header writers
    (deposit, set_loss_cap on and off, margin-mode switch, set_operator): every replay
    is still refused afterwards."""
    base = _base(w)
    partial, done, cancelled = _mk(w, base + 20, 3), _mk(w, base + 21), _mk(w, base + 22)
    w.settle(_fill(w, partial))
    w.settle(_fill(w, done))
    w.orders.cancel_order(cancelled.order.as_message(), sender=w.maker_owner)
    window = _hdr(w, w.maker) >> cs.NONCE_WINDOW_SHIFT
    units = h.fund(w.maker_owner, 10)
    w.p.ops.deposit(w.maker, w.p.token, units, sender=w.maker_owner)
    full.set_loss_cap(w.maker, WAD, sender=w.maker_owner)
    full.set_loss_cap(w.maker, 0, sender=w.maker_owner)
    full.set_margin_mode(w.maker, True, sender=w.maker_owner)
    full.set_margin_mode(w.maker, False, sender=w.maker_owner)
    assert _hdr(w, w.maker) >> cs.NONCE_WINDOW_SHIFT == window
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, partial, lots=3))
    for mk in (done, cancelled):
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))


def test_cancel_order_below_min_does_not_revive_anything(w: World) -> None:
    """cancel_order of a nonce below the minimum writes a dead word bit; the nonce stays
    cancelled and the header's window is unchanged."""
    base = _base(w)
    w.orders.cancel_below(w.maker, base + 5, sender=w.maker_owner)
    before = _hdr(w, w.maker)
    dead = _mk(w, base + 1)
    w.orders.cancel_order(dead.order.as_message(), sender=w.maker_owner)
    assert _hdr(w, w.maker) == before
    with ape.reverts(CANCELLED):
        w.settle(_fill(w, dead))


def test_eip1271_wallet_orders__replay_refused_while_wallet_still_approves(
    w: World, project: Any, h: Any, actors: dict[str, Any], full: Any
) -> None:
    """A contract-wallet owner (EIP-1271) that approves its orders forever: a filled
    window order, a partly filled word order carried into the window by the wallet's own
    cancel_below, and an order below the new minimum never fill beyond their size."""
    owner = actors["guardian"]
    wallet = project.MockWallet.deploy(sender=owner)
    ch, token = w.ch, w.p.token
    wallet.execute(ch, ch.open_account.encode_input("r8-wallet", False), sender=owner)
    acct = int(ch.account_id(wallet, 0))
    units = h.usd(50_000)
    token.mint(wallet, units, sender=owner)
    wallet.execute(token, token.approve.encode_input(ch, units), sender=owner)
    wallet.execute(ch, full.deposit.encode_input(acct, token, units), sender=owner)
    sig = bytes(range(1, 65))

    def signed(nonce: int, lots: int) -> o.SignedOrder:
        order = w.order(acct, LOT * lots, nonce=nonce)
        wallet.approve_hash(w.digest(order), "0x" + keccak(sig).hex(), sender=owner)
        return o.SignedOrder(order, sig)

    _fresh(w, w.maker)

    def fill(tk: o.SignedOrder, lots: int = 1) -> o.MatchedFill:
        mk = w.sign(w.order(w.maker, -LOT * lots), w.maker_owner)
        return o.MatchedFill(mk, tk, int(LOT * lots * WAD))

    in_window, above, below = signed(2, 1), signed(100, 3), signed(5, 1)
    w.settle(fill(in_window))
    with ape.reverts(DONE):
        w.settle(fill(in_window))
    w.settle(fill(above))
    wallet.execute(ch, full.cancel_below.encode_input(acct, 90), sender=owner)
    assert cs.replay_location(acct, _hdr(w, acct), 100)[0] is None
    with ape.reverts(OVERFILLED):
        w.settle(fill(above, lots=3))
    with ape.reverts(CANCELLED):
        w.settle(fill(below))
    w.settle(fill(above, lots=2))
    with ape.reverts(DONE):
        w.settle(fill(above))


# --- 2. routing (b9ae0dd) ----------------------------------------------------------------


def test_engine_check_fill_is_self_only_through_the_proxy(w: World, op: Any, full: Any) -> None:
    """The new direct route to Treasury's `engine_check_fill` is not callable from
    outside (it would let anyone run margin checks is harmless, but a missing
    `_only_self` would show that the route skips the guard)."""
    with ape.reverts():
        full.engine_check_fill(w.maker, BTC, 0, True, False, 1, sender=op)


def test_settle_paused__adding_fill_refused(w: World, full: Any) -> None:
    """The direct route keeps the pause: a global pause refuses an adding fill."""
    full.pause(sender=w.admin)
    try:
        with ape.reverts("clearinghouse: paused"):
            w.settle(_fill(w, _mk(w, _base(w) + 40)))
    finally:
        full.unpause(sender=w.admin)


def test_short_calldata_takes_the_chain_route__same_guards(w: World, op: Any) -> None:
    """f33a069: calls under 196 bytes skip the direct routes and go Ops -> Admin -> Orders
    (-> Risk -> Treasury). A short `settle` (an empty batch) still reaches `settle`'s
    checks, and a truncated `engine_check_fill` still meets `_only_self`."""
    web3 = w.chain.provider.web3
    settle_sel = bytes.fromhex("9b2db373")
    empty_batch = settle_sel + (32).to_bytes(32, "big") + (0).to_bytes(32, "big")
    assert len(empty_batch) < 196
    with pytest.raises(Exception, match="malformed batch"):
        web3.eth.call({"from": op.address, "to": w.ch.address, "data": "0x" + empty_batch.hex()})
    check_sel = bytes.fromhex("4be1d39d")
    short = check_sel + w.maker.to_bytes(32, "big") + (0).to_bytes(32, "big")
    with pytest.raises(Exception):  # noqa: B017 (any revert: self-only or bad calldata)
        web3.eth.call({"from": op.address, "to": w.ch.address, "data": "0x" + short.hex()})


# --- 3. inline margin check (18296cc) -------------------------------------------------------


def _max_fill(w: World, account: int, owner: Any, nonce: int) -> int:
    """The largest buy (multiple of STEP) `account` can take from the maker, by eth_call."""

    maker_nonce = _base(w) + 10_000  # a word nonce no test uses: eth_call only

    def why(size: int) -> str:
        """The revert reason of the fill, "" when it settles."""
        mk = w.sign(
            o.Order(
                account=w.maker,
                market=BTC,
                size=-size,
                limit_price=w.btc,
                expiry=w.chain.pending_timestamp + 3_600,
                nonce=maker_nonce,
            ),
            w.maker_owner,
        )
        tk = w.sign(
            o.Order(
                account=account,
                market=BTC,
                size=size,
                limit_price=w.btc,
                expiry=w.chain.pending_timestamp + 3_600,
                nonce=nonce,
            ),
            owner,
        )
        try:
            w.orders.settle.call(o.encode_fill_batch([o.MatchedFill(mk, tk, size)]))
            return ""
        except ape.exceptions.ContractLogicError as e:
            return str(e) or "revert"

    def ok(size: int) -> bool:
        return why(size) == ""

    lo, hi = WAD // 100, 1_000 * WAD  # lo: above the minimum position size
    assert ok(lo) and not ok(hi)
    while hi - lo > STEP:
        mid = (lo + hi) // 2 // STEP * STEP
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    # the search stopped at the margin boundary, not at a cap or another refusal
    assert "below initial margin" in why(lo + STEP), why(lo + STEP)
    return lo


def test_inline_margin_check_equals_full_gate(
    w: World, h: Any, actors: dict[str, Any], full: Any
) -> None:
    """Two isolated accounts with the same equity: A takes the inline path, B (a loss
    cap of 1 wei, far below its equity) the full gate. Both accept the same largest
    fill; A's state after it is at or above initial margin by the lens."""
    owner = actors["lp"]
    a = h.funded_account(owner, 2_000, name="r8-inline")
    b = h.funded_account(owner, 2_000, name="r8-full")
    full.set_loss_cap(b, 1, sender=owner)
    w.refresh()
    assert int(full.account_margin(a)[0]) == int(full.account_margin(b)[0])
    nonce = 1_000
    max_a, max_b = _max_fill(w, a, owner, nonce), _max_fill(w, b, owner, nonce)
    assert max_a == max_b
    mk = w.sign(w.order(w.maker, -10.0, nonce=_base(w) + 43), w.maker_owner)
    tk = w.sign(
        o.Order(
            account=a,
            market=BTC,
            size=max_a,
            limit_price=w.btc,
            expiry=w.chain.pending_timestamp + 3_600,
            nonce=nonce,
        ),
        owner,
    )
    w.settle(o.MatchedFill(mk, tk, max_a))
    s = full.account_margin(a)
    assert int(s[0]) >= int(s[1])


def test_inline_margin_check__existing_position_grows_to_the_same_limit(
    w: World, h: Any, actors: dict[str, Any], full: Any
) -> None:
    """The inline path on an account that already holds the position (cost basis and
    funding owed after time passes): the same limit as the full gate's."""
    owner = actors["lp"]
    a = h.funded_account(owner, 3_000, name="r8-inline2")
    b = h.funded_account(owner, 3_000, name="r8-full2")
    full.set_loss_cap(b, 1, sender=owner)
    _fresh(w, w.maker)
    for acct, nonce in ((a, 2_000), (b, 2_000)):
        mk = w.sign(w.order(w.maker, -LOT), w.maker_owner)
        tk = w.sign(
            o.Order(
                account=acct,
                market=BTC,
                size=int(LOT * WAD),
                limit_price=w.btc,
                expiry=w.chain.pending_timestamp + 3_600,
                nonce=nonce,
            ),
            owner,
        )
        w.settle(o.MatchedFill(mk, tk, int(LOT * WAD)))
    w.chain.mine(timestamp=w.chain.pending_timestamp + 3 * 3_600)
    w.refresh()
    ea, eb = int(full.account_margin(a)[0]), int(full.account_margin(b)[0])
    assert ea == eb
    assert _max_fill(w, a, owner, 2_001) == _max_fill(w, b, owner, 2_001)


# --- 4. one pool / OI update per fill (63c2622) --------------------------------------------


def _oi(full: Any) -> tuple[int, int]:
    lo, sh = full.open_interest(BTC)
    return int(lo), int(sh)


def _sizes(w: World, accts: list[int]) -> tuple[int, int]:
    sizes = [int(w.ch.position(a, BTC)[0]) for a in accts]
    return sum(max(s, 0) for s in sizes), sum(max(-s, 0) for s in sizes)


def _costs(w: World, accts: list[int]) -> int:
    return sum(int(w.ch.position(a, BTC)[1]) for a in accts)


@pytest.mark.parametrize(
    "case", ["open_vs_close", "flip_vs_open", "maker_side_closes", "two_subaccounts"]
)
def test_mixed_sides__claims_oi_and_pool_sums_conserved(
    w: World, h: Any, actors: dict[str, Any], full: Any, case: str
) -> None:
    """Fills whose two sides are in different states (one closes while the other opens,
    one flips), with funding accrued, and a self-trade between two sub-accounts of one
    owner: the claims on the clearinghouse do not change, open interest moves exactly
    by the sides' sizes and the pool's cost sum by their cost bases."""
    owner = actors["lp"] if case != "two_subaccounts" else w.taker_owner
    c = h.funded_account(owner, 50_000, name=f"r8-{case}")
    accts = [w.maker, w.taker, c]
    _fresh(w, w.maker)
    # the maker goes short 3 lots against the taker
    w.settle(_fill(w, w.sign(w.order(w.maker, -LOT * 3), w.maker_owner), lots=3))
    w.chain.mine(timestamp=w.chain.pending_timestamp + 7_200)  # funding accrues
    w.refresh()
    short_lots = -int(w.ch.position(w.maker, BTC)[0]) // int(LOT * WAD)
    assert short_lots >= 3
    # the maker's buy: closes part of its short, or flips it long by 2 lots
    size = {
        "open_vs_close": 2,
        "flip_vs_open": short_lots + 2,
        "maker_side_closes": 2,
        "two_subaccounts": 4,
    }[case]
    if case == "maker_side_closes":
        # the order-book maker reduces its long (the taker's account sells) while c opens
        seller, s_owner, buyer, b_owner = w.taker, w.taker_owner, c, owner
    elif case == "two_subaccounts":
        # the taker's owner trades its own two sub-accounts: c sells to the taker
        seller, s_owner, buyer, b_owner = c, owner, w.taker, w.taker_owner
    else:
        # c sells to the maker: the maker closes (or flips), c opens short
        seller, s_owner, buyer, b_owner = c, owner, w.maker, w.maker_owner
    mk = w.sign(w.order(seller, -LOT * size), s_owner)
    tk = w.sign(w.order(buyer, LOT * size), b_owner)
    before = (w.claims(accts), _oi(full), _sizes(w, accts), int(full.pool_sums(BTC)[0]))
    cost_before = _costs(w, accts)
    w.settle(o.MatchedFill(mk, tk, int(LOT * size * WAD)))
    claims, oi, sides, sums = (
        w.claims(accts),
        _oi(full),
        _sizes(w, accts),
        int(full.pool_sums(BTC)[0]),
    )
    assert claims == before[0]
    assert oi[0] - before[1][0] == sides[0] - before[2][0]
    assert oi[1] - before[1][1] == sides[1] - before[2][1]
    assert sums - before[3] == _costs(w, accts) - cost_before
