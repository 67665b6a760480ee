"""Signed orders and batch settlement (issue 12, items 1-2): `settle` (permissionless)
executes only what both signers signed, once, at the maker's price, with a market
order's checks; every bad input of the issue is refused with a clear reason and nothing
settles (a batch is atomic).

Orders are signed here with perpdex/sdk/orders.py and settled through its
`encode_fill_batch`, so the contract and the SDK cannot drift apart.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from perpdex.constants import WAD
from perpdex.sdk import orders as o

BTC = 0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class World:
    """Two funded traders (maker, taker), a stranger who submits batches, and helpers."""

    def __init__(self, protocol: Any, chain: Any, h: Any, admin: Any, actors: dict[str, Any]):
        self.p, self.chain, self.h, self.admin = protocol, chain, h, admin
        self.ch, self.orders = protocol.clearinghouse, protocol.orders
        self.maker_owner, self.taker_owner = actors["trader"], actors["hedger"]
        self.submitter = actors["keeper"]
        self.maker = h.funded_account(self.maker_owner, 100_000, name="maker")
        self.taker = h.funded_account(self.taker_owner, 100_000, name="taker")
        self.nonces: dict[int, int] = {}

    def refresh(self) -> None:
        """Feeds re-published at the current price (they stay fresh while time passes)."""
        for sym in ("BTC", "ETH", "SOL"):
            self.h.set_price(sym, self.p.system.market(sym).price, self.admin)

    @property
    def btc(self) -> int:
        return int(self.p.oracle.latest(BTC)[0])

    def order(self, account: int, size: float | int, **kw: int) -> o.Order:
        nonce = kw.pop("nonce", None)
        if nonce is None:
            nonce = self.nonces.get(account, 0)
            self.nonces[account] = nonce + 1
        fields: dict[str, int] = dict(
            account=account,
            market=BTC,
            size=int(size * WAD),
            limit_price=self.btc,
            expiry=self.chain.pending_timestamp + 3_600,
            nonce=nonce,
        )
        fields.update(kw)
        return o.Order(**fields)  # type: ignore[arg-type]

    def sign(
        self, order: o.Order, who: Any, chain_id: int | None = None, contract: str | None = None
    ) -> o.SignedOrder:
        sig = o.sign_order(
            order,
            who.private_key,
            self.chain.chain_id if chain_id is None else chain_id,
            contract or self.ch.address,
        )
        return o.SignedOrder(order, sig)

    def pair(self, size: float = 1.0, **kw: Any) -> o.MatchedFill:
        """The maker sells `size` BTC at the oracle price to the taker."""
        mk = self.sign(self.order(self.maker, -size), self.maker_owner)
        tk = self.sign(self.order(self.taker, size, limit_price=self.btc), self.taker_owner)
        return o.MatchedFill(mk, tk, int(kw.get("fill", size) * WAD))

    def settle(self, *fills: o.MatchedFill, sender: Any = None) -> Any:
        self.refresh()
        return self.orders.settle(o.encode_fill_batch(list(fills)), sender=sender or self.submitter)

    def size(self, account: int) -> int:
        return int(self.ch.position(account, BTC)[0])

    def claims(self, accounts: list[int]) -> int:
        """USD WAD owed by the clearinghouse: these accounts' settlement balances, pool
        cash, insurance and protocol fees (fees not yet split included)."""
        ch = self.ch
        bal = sum(int(ch.balance_of(a, 0)) for a in accounts)
        return bal + int(ch.pool_cash()) + int(ch.insurance_fund()) + int(ch.protocol_fees())

    def digest(self, order: o.Order) -> bytes:
        return o.order_digest(order, self.chain.chain_id, self.ch.address)


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


# --- the fill itself ---------------------------------------------------------------------


def test_settle__fills_at_maker_price_with_fees_and_conserves(w: World) -> None:
    fill = w.pair(1.0)
    params = w.ch.market_params(BTC)
    price = fill.maker.order.limit_price
    before = {a: int(w.ch.balance_of(a, 0)) for a in (w.maker, w.taker)}
    held = int(w.p.token.balanceOf(w.ch))
    claims = w.claims([w.maker, w.taker])

    tx = w.settle(fill)

    assert (w.size(w.maker), w.size(w.taker)) == (-WAD, WAD)
    # one event carries both sides of the fill (no `Fill` per side)
    assert list(w.ch.Fill.from_receipt(tx)) == []
    (m,) = w.orders.OrdersMatched.from_receipt(tx)
    assert (int(m.maker), int(m.taker), int(m.market)) == (w.maker, w.taker, BTC)
    assert (m.size_delta, m.price) == (WAD, price)  # the taker's delta; the maker's is -WAD
    fee_t = -(-params.taker_fee * price // WAD)  # rounds up, base size 1
    fee_m = -(-params.maker_fee * price // WAD)
    assert (m.taker_fee, m.maker_fee) == (fee_t, fee_m)
    assert (m.maker_size, m.taker_size) == (-WAD, WAD)
    # fresh positions: nothing realised, no funding
    assert (m.maker_realized_pnl, m.taker_realized_pnl) == (0, 0)
    assert (m.maker_funding_paid, m.taker_funding_paid) == (0, 0)
    assert int(w.ch.balance_of(w.taker, 0)) == before[w.taker] - fee_t
    assert int(w.ch.balance_of(w.maker, 0)) == before[w.maker] - fee_m
    assert bytes(m.maker_order) == w.digest(fill.maker.order)
    assert bytes(m.taker_order) == w.digest(fill.taker.order)
    # conservation: no token moved, and what the clearinghouse owes did not change
    assert int(w.p.token.balanceOf(w.ch)) == held
    assert w.claims([w.maker, w.taker]) == claims
    assert held * w.p.clearinghouse.SETTLEMENT_SCALE() >= claims


def test_settle__replay_after_fill__refused(w: World) -> None:
    fill = w.pair(0.5)
    w.settle(fill)
    with ape.reverts("clearinghouse: order done"):
        w.settle(fill)


def test_settle__partial_fills_then_overfill(w: World) -> None:
    maker = w.sign(w.order(w.maker, -2.0), w.maker_owner)

    def taker(size: float) -> o.SignedOrder:
        return w.sign(w.order(w.taker, size), w.taker_owner)

    start = w.size(w.taker)
    w.settle(o.MatchedFill(maker, taker(0.5), WAD // 2))
    # one batch, the same maker order twice (a taker sweeping it)
    w.settle(
        o.MatchedFill(maker, taker(0.5), WAD // 2),
        o.MatchedFill(maker, taker(0.25), WAD // 4),
    )
    assert w.size(w.taker) - start == WAD + WAD // 4
    with ape.reverts("clearinghouse: order overfilled"):
        w.settle(o.MatchedFill(maker, taker(1.0), WAD))  # 0.75 left
    w.settle(o.MatchedFill(maker, taker(0.75), 3 * WAD // 4))
    with ape.reverts("clearinghouse: order done"):
        w.settle(o.MatchedFill(maker, taker(0.5), WAD // 2))


def test_settle__fill_above_signed_size__refused(w: World) -> None:
    fill = w.pair(1.0, fill=1.5)
    with ape.reverts("clearinghouse: order overfilled"):
        w.settle(fill)


def test_settle__batch_is_atomic(w: World) -> None:
    good = w.pair(0.5)
    bad = w.pair(0.5, fill=0.75)
    size = w.size(w.taker)
    with ape.reverts("clearinghouse: order overfilled"):
        w.settle(good, bad)
    assert w.size(w.taker) == size
    w.settle(good)  # the good fill was not consumed


# --- signatures --------------------------------------------------------------------------


def test_settle__wrong_signer__refused(w: World, stranger: Any) -> None:
    fill = w.pair(0.5)
    forged = w.sign(fill.maker.order, stranger)
    with ape.reverts("clearinghouse: signer not authorized"):
        w.settle(replace(fill, maker=forged))


@pytest.mark.parametrize("where", ["chain", "contract"])
def test_settle__signed_for_another_domain__refused(w: World, where: str) -> None:
    fill = w.pair(0.5)
    other = (
        w.sign(fill.taker.order, w.taker_owner, chain_id=1)
        if where == "chain"
        else w.sign(fill.taker.order, w.taker_owner, contract=w.p.oracle.address)
    )
    with ape.reverts("clearinghouse: signer not authorized"):
        w.settle(replace(fill, taker=other))


def test_settle__malformed_signature__refused(w: World) -> None:
    fill = w.pair(0.5)
    sig = fill.maker.signature
    zero_r = bytes(32) + sig[32:]
    with ape.reverts("clearinghouse: bad signature"):
        w.settle(replace(fill, maker=o.SignedOrder(fill.maker.order, zero_r)))
    with pytest.raises(o.OrderError, match="65 bytes"):
        o.encode_fill_batch([replace(fill, maker=o.SignedOrder(fill.maker.order, sig[:40]))])


def test_settle__high_s_twin_of_a_valid_signature__refused(w: World) -> None:
    fill = w.pair(0.5)
    sig = fill.maker.signature
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    # the twin is a valid ECDSA signature of the same digest (malleability) ...
    assert (
        Account._recover_hash(w.digest(fill.maker.order), signature=twin) == w.maker_owner.address
    )
    # ... which the contract refuses
    with ape.reverts("clearinghouse: high-s signature"):
        w.settle(replace(fill, maker=o.SignedOrder(fill.maker.order, twin)))


def test_settle__operator_signs__accepted_until_revoked(w: World, stranger: Any) -> None:
    w.p.ops.set_operator(w.taker, stranger, True, sender=w.taker_owner)
    tk = w.sign(w.order(w.taker, 0.5), stranger)
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    w.settle(o.MatchedFill(mk, tk, WAD // 2))
    w.p.ops.set_operator(w.taker, stranger, False, sender=w.taker_owner)
    tk = w.sign(w.order(w.taker, 0.5), stranger)
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    with ape.reverts("clearinghouse: signer not authorized"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__contract_wallet_signs_by_eip1271(
    w: World, project: Any, stranger: Any, h: Any
) -> None:
    owner = stranger
    wallet = project.MockWallet.deploy(sender=owner)
    ch, token = w.ch, w.p.token
    wallet.execute(ch, ch.open_account.encode_input("wallet", False), sender=owner)
    acct = int(ch.account_id(wallet, 0))
    units = h.usd(50_000)
    token.mint(wallet, units, sender=owner)
    wallet.execute(token, token.approve.encode_input(ch, units), sender=owner)
    wallet.execute(ch, w.p.ops.deposit.encode_input(acct, token, units), sender=owner)

    order = w.order(acct, 0.5)
    sig_bytes = bytes(range(1, 65))  # whatever the wallet wants; it must arrive intact
    contract_sig = o.SignedOrder(order, sig_bytes)
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    with ape.reverts("clearinghouse: bad wallet signature"):
        w.settle(o.MatchedFill(mk, contract_sig, WAD // 2))
    wallet.approve_hash(w.digest(order), "0x" + keccak(bytes(64)).hex(), sender=owner)
    with ape.reverts("clearinghouse: bad wallet signature"):  # other bytes
        w.settle(o.MatchedFill(mk, contract_sig, WAD // 2))
    wallet.approve_hash(w.digest(order), "0x" + keccak(sig_bytes).hex(), sender=owner)
    w.settle(o.MatchedFill(mk, contract_sig, WAD // 2))
    assert w.size(acct) == WAD // 2


# --- the orders' terms ------------------------------------------------------------------


def test_settle__expired__refused(w: World) -> None:
    mk = w.sign(w.order(w.maker, -0.5, expiry=w.chain.pending_timestamp - 1), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5), w.taker_owner)
    with ape.reverts("clearinghouse: order expired"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__taker_limit_not_crossed__refused(w: World) -> None:
    price = w.btc
    mk = w.sign(w.order(w.maker, -0.5, limit_price=price + 10 * WAD), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5, limit_price=price), w.taker_owner)
    with ape.reverts("clearinghouse: limit not crossed"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))
    # a selling taker: the maker's bid must be at least its floor
    mk = w.sign(w.order(w.maker, 0.5, limit_price=price - 10 * WAD), w.maker_owner)
    tk = w.sign(w.order(w.taker, -0.5, limit_price=price), w.taker_owner)
    with ape.reverts("clearinghouse: limit not crossed"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__price_outside_oracle_band__refused(w: World) -> None:
    price = w.btc * 103 // 100  # both sign it, 3% above the oracle
    mk = w.sign(w.order(w.maker, -0.5, limit_price=price), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5, limit_price=price), w.taker_owner)
    with ape.reverts("clearinghouse: price off oracle band"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__reduce_only_that_adds__refused(w: World) -> None:
    flat = w.h.funded_account(w.taker_owner, 10_000, name="flat")
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    tk = w.sign(w.order(flat, 0.5, flags=o.FLAG_REDUCE_ONLY), w.taker_owner)
    with ape.reverts("clearinghouse: not reduce-only"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__reduce_only_that_reduces__fills(w: World) -> None:
    w.settle(w.pair(1.0))  # taker long
    long_ = w.size(w.taker)
    mk = w.sign(w.order(w.maker, 0.5), w.maker_owner)
    tk = w.sign(w.order(w.taker, -0.5, flags=o.FLAG_REDUCE_ONLY), w.taker_owner)
    w.settle(o.MatchedFill(mk, tk, WAD // 2))
    assert w.size(w.taker) == long_ - WAD // 2


def test_settle__unknown_market__refused(w: World) -> None:
    mk = w.sign(w.order(w.maker, -0.5, market=31), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5, market=31), w.taker_owner)
    with ape.reverts("clearinghouse: unknown market"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__post_only_taker_and_ioc_maker__refused(w: World) -> None:
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5, flags=o.FLAG_POST_ONLY), w.taker_owner)
    with ape.reverts("clearinghouse: post-only as taker"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))
    mk = w.sign(w.order(w.maker, -0.5, flags=o.FLAG_IOC), w.maker_owner)
    tk = w.sign(w.order(w.taker, 0.5), w.taker_owner)
    with ape.reverts("clearinghouse: IOC order as maker"):
        w.settle(o.MatchedFill(mk, tk, WAD // 2))


def test_settle__self_trade_same_side_and_two_markets__refused(w: World) -> None:
    mk = w.sign(w.order(w.maker, -0.5), w.maker_owner)
    own = w.sign(w.order(w.maker, 0.5), w.maker_owner)
    with ape.reverts("clearinghouse: self-trade"):
        w.settle(o.MatchedFill(mk, own, WAD // 2))
    # the encoder refuses the other two on their face: build the words by hand
    tk = w.sign(w.order(w.taker, -0.5), w.taker_owner)
    words = o._order_words(mk, 0) + o._order_words(tk, WAD // 2)
    w.refresh()
    with ape.reverts("clearinghouse: same side"):
        w.orders.settle(words, sender=w.submitter)
    tk = w.sign(w.order(w.taker, 0.5, market=1), w.taker_owner)
    words = o._order_words(mk, 0) + o._order_words(tk, WAD // 2)
    with ape.reverts("clearinghouse: market mismatch"):
        w.orders.settle(words, sender=w.submitter)


def test_settle__malformed_batch__refused(w: World) -> None:
    with ape.reverts("clearinghouse: malformed batch"):
        w.orders.settle([], sender=w.submitter)
    with ape.reverts("clearinghouse: malformed batch"):
        w.orders.settle([1] * 9, sender=w.submitter)


def test_settle__adding_fill_below_initial_margin__refused(w: World) -> None:
    poor = w.h.funded_account(w.taker_owner, 1_000, name="poor")
    mk = w.sign(w.order(w.maker, -1.0), w.maker_owner)  # ~$100k of BTC on $1k
    tk = w.sign(w.order(poor, 1.0), w.taker_owner)
    with ape.reverts("clearinghouse: below initial margin"):
        w.settle(o.MatchedFill(mk, tk, WAD))


def test_settle__inline_margin_check_agrees_with_the_scan_at_the_boundary(w: World) -> None:
    """`_after` checks an adding fill of an isolated one-market account without a loss cap
    inline (review 8); with a loss cap (1 wei: it never binds here) the same fill takes
    the engine's `_check_after_trade`. Two such twins take the same growing fills across
    the initial-margin boundary: both must pass or both be refused, at every size."""
    inline = w.h.funded_account(w.taker_owner, 1_000, name="inline")
    scanned = w.h.funded_account(w.taker_owner, 1_000, name="scanned")
    w.p.ops.set_loss_cap(scanned, 1, sender=w.taker_owner)
    passed = refused = 0
    for step in range(12):
        size = 0.01 + 0.004 * step
        outcome = []
        for acct in (inline, scanned):
            mk = w.sign(w.order(w.maker, -size), w.maker_owner)
            tk = w.sign(w.order(acct, size), w.taker_owner)
            try:
                w.settle(o.MatchedFill(mk, tk, int(size * WAD)))
                outcome.append("filled")
            except ape.exceptions.ContractLogicError as e:
                outcome.append(str(e))
        assert outcome[0] == outcome[1], (size, outcome)
        passed += outcome[0] == "filled"
        refused += outcome[0] == "clearinghouse: below initial margin"
        assert w.size(inline) == w.size(scanned)
    assert passed and refused


# --- cancels -----------------------------------------------------------------------------


def test_cancel_order__then_fill__refused(w: World, stranger: Any) -> None:
    fill = w.pair(0.5)
    with ape.reverts("clearinghouse: not authorized"):
        w.orders.cancel_order(fill.maker.order.as_message(), sender=stranger)
    tx = w.orders.cancel_order(fill.maker.order.as_message(), sender=w.maker_owner)
    (e,) = w.orders.OrderCancelled.from_receipt(tx)
    assert bytes(e.order) == w.digest(fill.maker.order)
    assert (e.account, e.nonce) == (w.maker, fill.maker.order.nonce)
    with ape.reverts("clearinghouse: order done"):
        w.settle(fill)


def test_cancel_order__after_partial_fill__rest_refused(w: World) -> None:
    maker = w.sign(w.order(w.maker, -1.0), w.maker_owner)
    w.settle(o.MatchedFill(maker, w.sign(w.order(w.taker, 0.5), w.taker_owner), WAD // 2))
    w.orders.cancel_order(maker.order.as_message(), sender=w.maker_owner)
    with ape.reverts("clearinghouse: order done"):
        w.settle(o.MatchedFill(maker, w.sign(w.order(w.taker, 0.5), w.taker_owner), WAD // 2))


def test_cancel_below__cancels_lower_nonces_only(w: World) -> None:
    base = w.nonces.get(w.maker, 0) + 10
    low = w.sign(w.order(w.maker, -0.5, nonce=base - 1), w.maker_owner)
    at = w.sign(w.order(w.maker, -0.5, nonce=base), w.maker_owner)
    tx = w.orders.cancel_below(w.maker, base, sender=w.maker_owner)
    assert [int(e.min_nonce) for e in w.orders.NoncesCancelled.from_receipt(tx)] == [base]
    assert int(w.ch.account_header(w.maker)) >> 192 == base
    with ape.reverts("clearinghouse: order nonce cancelled"):
        w.settle(o.MatchedFill(low, w.sign(w.order(w.taker, 0.5), w.taker_owner), WAD // 2))
    w.settle(o.MatchedFill(at, w.sign(w.order(w.taker, 0.5), w.taker_owner), WAD // 2))
    with ape.reverts("clearinghouse: min nonce only rises"):
        w.orders.cancel_below(w.maker, base, sender=w.maker_owner)
    w.nonces[w.maker] = base + 1


def test_batch_encoding__round_trips(w: World) -> None:
    fills = [w.pair(0.5), w.pair(0.25, fill=0.125)]
    words = o.encode_fill_batch(fills)
    assert len(words) == 2 * o.WORDS_PER_FILL
    decoded = o.decode_fill_batch(words)
    for f, (mk, tk, size) in zip(fills, decoded, strict=True):
        assert (mk, tk, size) == (f.maker.order, f.taker.order, f.size)
