"""Which order of a refused fill is at fault (simulate-and-drop, ChainSettler.prepare).

`settle` is atomic: one bad fill reverts the batch. The settler simulates the batch; when
it reverts, it rebuilds it fill by fill (each fill simulated after the ones kept), drops
each fill that reverts and asks `blame` whose fault it is, from the revert reason and the
chain's state:

  order state        unknown account, account in liquidation, a delayed order pending
                     (R4-2), expired, nonce cancelled (`cancel_below`), done (filled
                     or `cancel_order`), overfilled: read from the account header and
                     the order's replay bits (storage, perpdex/sdk/settlement.py),
                     counting the fills kept before it
  signature          the side whose signature does not recover its account's owner
  operator price     an operator-signed side filled worse than the oracle (R3-1), or
                     in a market with delayed orders on (R4-3)
  order flags        reduce-only that would add risk, post-only as taker, IOC as maker
  minimum size       the side left with a position under the minimum notional
  anything else      (margin, loss cap, negative equity on close, ...) the fill is
                     simulated again with one side's settlement balance raised to far
                     more than any margin needs (an eth_call state override): the side
                     whose raise makes it pass is at fault
Nothing found (oracle quorum, price band, open-interest caps, pause, a reason nobody
owns): the fill is blamed on no order and retried later (core.Matcher gives up on it
after `max_attempts`). A blamed order is rejected by the matcher; the other order of the
fill keeps its place and the amount goes back to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from perpdex.constants import MIN_POSITION_NOTIONAL, WAD
from perpdex.matcher import sigs
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs
from perpdex.sdk.math.packing import is_frozen

if TYPE_CHECKING:
    from perpdex.matcher.settler import MatchedFill

PREFIX = "clearinghouse: "
# a settlement balance no margin or loss-cap check can refuse (1e12 USD, WAD)
RICH = 10**30

SIGNATURE_REASONS = frozenset(
    {"bad signature", "signer not authorized", "high-s signature", "bad wallet signature"}
)
# the matcher never builds these (both orders are blamed: they cannot be settled together)
STRUCTURE_REASONS = frozenset(
    {
        "malformed batch",
        "market mismatch",
        "unknown market",
        "same side",
        "self-trade",
        "zero fill",
        "limit not crossed",
    }
)


class ChainProbe(Protocol):
    """The reads `blame` needs (ChainSettler implements them over JSON-RPC)."""

    def simulate(
        self, fills: Sequence[MatchedFill], rich: Sequence[int] = ()
    ) -> str | None: ...  # revert reason, None if it passes; `rich`: accounts to raise

    def header(self, account: int) -> int: ...

    def storage(self, slot: int) -> int: ...

    def position(self, account: int, market: int) -> int: ...

    def timestamp(self) -> int: ...


class _Side:
    def __init__(self, digest: str, order: o.Order, sig: bytes, delta: int) -> None:
        self.digest, self.order, self.sig, self.delta = digest, order, sig, delta


def _sides(f: MatchedFill) -> tuple[_Side, _Side]:
    delta = f.size if f.taker.is_buy else -f.size  # the taker's position change
    return (
        _Side(f.maker_digest, f.maker, f.maker_sig, -delta),
        _Side(f.taker_digest, f.taker, f.taker_sig, delta),
    )


def _booked(digest: str, kept: Sequence[MatchedFill]) -> int:
    return sum(g.size for g in kept if digest in g.pair)


def _position(probe: ChainProbe, s: _Side, kept: Sequence[MatchedFill]) -> int:
    """The side's position before this fill: the chain's plus the fills kept before it."""
    size = probe.position(s.order.account, s.order.market)
    for g in kept:
        if g.maker.market != s.order.market:
            continue
        d = g.size if g.taker.is_buy else -g.size
        if g.taker.account == s.order.account:
            size += d
        if g.maker.account == s.order.account:
            size -= d
    return size


def _order_at_fault(
    probe: ChainProbe, reason: str, s: _Side, f: MatchedFill, kept: Sequence[MatchedFill]
) -> bool:
    acct, order = s.order.account, s.order
    if reason == "unknown account":
        return not probe.header(acct) & cs.ACCOUNT_EXISTS
    if reason == "account in liquidation":
        return bool(probe.header(acct) & cs.ACCOUNT_IN_LIQUIDATION)
    if reason == "delayed order pending":
        return is_frozen(probe.header(acct), probe.timestamp())
    if reason == "order nonce cancelled":
        return order.nonce < cs.min_nonce(probe.header(acct))
    if reason == "order expired":
        return order.expiry < probe.timestamp()
    if reason in ("order done", "order overfilled"):
        st = cs.order_state(acct, probe.header(acct), order.nonce, probe.storage)
        if st & cs.ORDER_DONE:
            return True
        filled = probe.storage(cs.order_filled_slot(s.digest)) if st & cs.ORDER_PARTIAL else 0
        return filled + _booked(s.digest, kept) + f.size > abs(order.size)
    if reason in ("operator fill worse than oracle", "operator order in delayed market"):
        # review 3, R3-1: an operator-signed order fills only at the oracle or better;
        # review 4, R4-3: not at all in a delayed market. The operator's side (signer
        # other than the owner) is at fault
        try:
            digest = bytes.fromhex(s.digest.removeprefix("0x"))
            return sigs.recover(digest, s.sig) != sigs.owner_of(acct)
        except (sigs.SignatureError, ValueError):
            return True
    if reason in SIGNATURE_REASONS:
        try:
            digest = bytes.fromhex(s.digest.removeprefix("0x"))
            return sigs.recover(digest, s.sig) != sigs.owner_of(acct)
        except (sigs.SignatureError, ValueError):
            return True
    if reason == "not reduce-only":
        if not order.flags & o.FLAG_REDUCE_ONLY:
            return False
        size = _position(probe, s, kept)
        return size == 0 or (size > 0) == (s.delta > 0) or abs(s.delta) > abs(size)
    if reason == "min position size":
        left = _position(probe, s, kept) + s.delta
        # the contract values it at the oracle price; the fill price is within 2% of it
        return left != 0 and abs(left) * f.maker.limit_price < MIN_POSITION_NOTIONAL * WAD
    return False


def blame(
    probe: ChainProbe, f: MatchedFill, reason: str, kept: Sequence[MatchedFill]
) -> tuple[str, ...]:
    """Digests of the orders of `f` at fault for `reason` (its revert reason when
    simulated after the fills `kept`); () when no order can be blamed."""
    r = reason.removeprefix(PREFIX).strip()
    maker, taker = _sides(f)
    if r in STRUCTURE_REASONS:
        return f.pair
    if r == "post-only as taker":
        return (taker.digest,)
    if r == "IOC order as maker":
        return (maker.digest,)
    found = tuple(s.digest for s in (maker, taker) if _order_at_fault(probe, r, s, f, kept))
    if found:
        return found
    # an account-level refusal (margin, loss cap, equity): whose balance fixes it?
    batch = [*kept, f]
    at_fault = tuple(
        s.digest for s in (maker, taker) if probe.simulate(batch, (s.order.account,)) is None
    )
    if len(at_fault) == 1:
        return at_fault
    if not at_fault and probe.simulate(batch, (maker.order.account, taker.order.account)) is None:
        return f.pair  # each side fails on its own
    return ()
