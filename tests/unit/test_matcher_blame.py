"""perpdex/matcher/blame.py on a scripted chain: for each revert reason `settle` gives,
the order at fault is the one whose state, signature or flags explain it; a margin-like
refusal is pinned on the side whose raised balance makes the fill pass; a refusal no
order explains (quorum, band, caps) is blamed on nobody."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from matcher_support import CH, CHAIN_ID, KEYS, NOW, WAD, signed

from perpdex.matcher import sigs
from perpdex.matcher.blame import blame
from perpdex.matcher.settler import MatchedFill
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs
from perpdex.sdk.math import with_pending

CACHE = sigs.DigestCache(CHAIN_ID, CH)


def digest(order: o.Order) -> str:
    return "0x" + CACHE.digest(order).hex()


def fill(
    seq: int, maker: tuple[o.Order, bytes], taker: tuple[o.Order, bytes], size: int
) -> MatchedFill:
    return MatchedFill(seq, digest(maker[0]), *maker, digest(taker[0]), *taker, size)


@dataclass
class Chain:
    """What a ChainProbe reads, scripted."""

    headers: dict[int, int] = field(default_factory=dict)
    words: dict[int, int] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    now: int = NOW
    passes_when_rich: set[frozenset[int]] = field(default_factory=set)

    def simulate(self, fills: Sequence[MatchedFill], rich: Sequence[int] = ()) -> str | None:
        return None if frozenset(rich) in self.passes_when_rich else "clearinghouse: x"

    def header(self, account: int) -> int:
        return self.headers.get(account, cs.ACCOUNT_EXISTS)

    def storage(self, slot: int) -> int:
        return self.words.get(slot, 0)

    def position(self, account: int, market: int) -> int:
        return self.positions.get(account, 0)

    def timestamp(self) -> int:
        return self.now


def put_state(chain: Chain, order: o.Order, state: int) -> None:
    """Scripts `order`'s replay bits where the chain keeps them: the header's window or
    the nonce's order_bits word (settlement.replay_location, review 8)."""
    header = chain.header(order.account)
    slot, at = cs.replay_location(order.account, header, order.nonce)
    if slot is None:
        chain.headers[order.account] = header | state << at
    else:
        chain.words[slot] = chain.words.get(slot, 0) | state << at


def pair(**taker_kw: int) -> MatchedFill:
    return fill(1, signed(0, -1, 100), signed(1, 1, 100, **taker_kw), WAD)


def test_order_state_reasons_blame_the_order_in_that_state() -> None:
    f = pair()
    chain = Chain()
    # done: the maker's nonce bits on chain
    put_state(chain, f.maker, cs.ORDER_DONE)
    assert blame(chain, f, "clearinghouse: order done", []) == (f.maker_digest,)
    # cancelled below a nonce: the taker's header
    chain = Chain(headers={f.taker.account: cs.ACCOUNT_EXISTS | (10**6 << cs.MIN_NONCE_SHIFT)})
    assert blame(chain, f, "clearinghouse: order nonce cancelled", []) == (f.taker_digest,)
    chain = Chain(headers={f.maker.account: cs.ACCOUNT_EXISTS | cs.ACCOUNT_IN_LIQUIDATION})
    assert blame(chain, f, "clearinghouse: account in liquidation", []) == (f.maker_digest,)
    late = fill(1, signed(0, -1, 100, expiry=NOW - 1), signed(1, 1, 100), WAD)
    assert blame(Chain(), late, "clearinghouse: order expired", []) == (late.maker_digest,)
    # R4-2: the side whose header has a delayed order pending at the chain's time
    pending = "clearinghouse: delayed order pending"
    frozen = Chain(headers={f.taker.account: with_pending(cs.ACCOUNT_EXISTS, 1, NOW)})
    assert blame(frozen, f, pending, []) == (f.taker_digest,)
    thawed = Chain(headers={f.taker.account: with_pending(cs.ACCOUNT_EXISTS, 1, NOW - 1)})
    assert blame(thawed, f, pending, []) == ()  # expired: nobody's (retried)


def test_overfilled_counts_the_partial_fill_on_chain_and_the_fills_kept_before() -> None:
    maker = signed(0, -2, 100)
    first = fill(1, maker, signed(1, 1, 100), WAD)
    second = fill(2, maker, signed(2, 1, 100), WAD)
    chain = Chain()
    m = maker[0]
    put_state(chain, m, cs.ORDER_PARTIAL)
    chain.words[cs.order_filled_slot(first.maker_digest)] = WAD // 2
    # 0.5 filled elsewhere + 1 kept in this batch + 1 = 2.5 > 2: the maker
    assert blame(chain, second, "clearinghouse: order overfilled", [first]) == (first.maker_digest,)
    assert blame(chain, second, "clearinghouse: order overfilled", []) == ()  # 1.5 fits


def test_signature_and_flag_reasons() -> None:
    f = pair()
    forged = MatchedFill(
        1,
        f.maker_digest,
        f.maker,
        f.maker_sig,
        f.taker_digest,
        f.taker,
        o.sign_order(f.taker, KEYS[3], CHAIN_ID, CH),
        WAD,
    )
    assert blame(Chain(), forged, "clearinghouse: signer not authorized", []) == (f.taker_digest,)
    # R3-1: the operator-signed side (KEYS[3] signs account 1's order) filled off-oracle
    reason = "clearinghouse: operator fill worse than oracle"
    assert blame(Chain(), forged, reason, []) == (f.taker_digest,)
    # R4-3: an operator-signed side in a market with delayed orders on
    reason = "clearinghouse: operator order in delayed market"
    assert blame(Chain(), forged, reason, []) == (f.taker_digest,)
    reduce = fill(1, signed(0, -1, 100), signed(1, 1, 100, flags=o.FLAG_REDUCE_ONLY), WAD)
    chain = Chain(positions={reduce.taker.account: 0})
    assert blame(chain, reduce, "clearinghouse: not reduce-only", []) == (reduce.taker_digest,)
    chain = Chain(positions={reduce.taker.account: -2 * WAD})  # a short: buying reduces it
    assert blame(chain, reduce, "clearinghouse: not reduce-only", []) == ()
    assert blame(Chain(), f, "clearinghouse: post-only as taker", []) == (f.taker_digest,)
    assert blame(Chain(), f, "clearinghouse: IOC order as maker", []) == (f.maker_digest,)
    assert blame(Chain(), f, "clearinghouse: self-trade", []) == f.pair
    small = fill(1, signed(0, -1, 100), signed(1, 0.5, 100), WAD // 2)
    # the taker's long of 0.5 at $100 is $50, under the $100 minimum; the maker closes to 0
    chain = Chain(positions={small.maker.account: WAD // 2})
    assert blame(chain, small, "clearinghouse: min position size", []) == (small.taker_digest,)


def test_margin_like_refusals_are_pinned_by_raising_one_balance() -> None:
    f = pair()
    maker, taker = f.maker.account, f.taker.account
    chain = Chain(passes_when_rich={frozenset({maker}), frozenset({maker, taker})})
    assert blame(chain, f, "clearinghouse: below initial margin", []) == (f.maker_digest,)
    chain = Chain(passes_when_rich={frozenset({taker}), frozenset({maker, taker})})
    assert blame(chain, f, "clearinghouse: below loss cap, reduce only", []) == (f.taker_digest,)
    chain = Chain(passes_when_rich={frozenset({maker, taker})})  # both fail on their own
    assert blame(chain, f, "clearinghouse: below initial margin", []) == f.pair
    # no balance helps: no order's fault (retried later)
    assert blame(Chain(), f, "clearinghouse: no price quorum", []) == ()
    assert blame(Chain(), f, "clearinghouse: price off oracle band", []) == ()
