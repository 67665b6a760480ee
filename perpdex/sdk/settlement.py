"""What the chain records about signed orders: the settlement events and each order's
replay state (contracts/ClearinghouseOrders.vy). Read with perpdex/sdk/orders.py.

Events (emitted at the Clearinghouse address; decoded from the shipped ABI,
perpdex/abi/Clearinghouse.json, so a changed event fails the decoder's unit test):
  OrdersMatched(maker indexed, taker indexed, maker_order, taker_order, market,
                size_delta, price, ...both sides' fees, PnL, funding, sizes)  -> FillEvent
  OrderCancelled(account indexed, nonce, order indexed)                 -> CancelEvent
  NoncesCancelled(account indexed, min_nonce)                           -> NonceCancelEvent
Digests are 0x + 64 lower-case hex digits, as `orders.order_digest(...).hex()` with 0x.

Replay state, for a matcher that must tell which order of a refused fill is at fault
(the contract has no view for it; these are its storage slots, which
tests/unit/test_settlement_events.py holds to the compiler's layout):
  header[account]              bit 0 exists, bit 2 in liquidation, top 64 bits: the
                               minimum nonce `min` (`cancel_below`); bits 104-191: the
                               replay window, 2 bits per nonce n in min .. min + 43 at
                               bit 104 + 2 * (n - min); the `account_header` view
  order_bits[account][n >> 7]  2 bits per other nonce n at bit 2 * (n & 127)
  (both: 1 partly filled, 2 done: filled completely or cancelled; `replay_location`
  says which holds a nonce, `order_state` reads it)
  order_filled[digest]         filled amount of a partly filled order
  balance[account][0]          settlement balance (int256 WAD): a simulation that
                               overrides it tells whether an account's margin refused a fill
Vyper places HashMap[k] of a map at slot p at keccak256(p ++ k) (32-byte words).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_utils import keccak

# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FillEvent:
    """`OrdersMatched`: the taker order traded `size` (|size_delta|: what each order filled)
    against the maker order at `price`."""

    maker: str
    taker: str
    size: int
    price: int


@dataclass(frozen=True)
class CancelEvent:
    """`OrderCancelled`: the order `digest` is cancelled; its nonce is consumed, so every
    order of `account` with `nonce` is dead too (None: not known, e.g. a test's fake)."""

    digest: str
    account: int | None = None
    nonce: int | None = None


@dataclass(frozen=True)
class NonceCancelEvent:
    account: int
    nonce: int  # every order of `account` with a nonce below this is cancelled


ChainEvent = FillEvent | CancelEvent | NonceCancelEvent

EVENT_NAMES = ("OrdersMatched", "OrderCancelled", "NoncesCancelled")


@cache
def _events() -> dict[str, Any]:
    """topic0 (0x hex) -> the lite ABI event, for the three settlement events."""
    from perpdex.sdk.lite.abi import load
    from perpdex.sdk.lite.rpc import Event

    found = {
        e["name"]: Event(e["name"], tuple(e["inputs"]))
        for e in load("Clearinghouse")
        if e["type"] == "event" and e["name"] in EVENT_NAMES
    }
    missing = [n for n in EVENT_NAMES if n not in found]
    if missing:
        raise RuntimeError(
            f"perpdex/abi/Clearinghouse.json has no {', '.join(missing)} event; regenerate "
            "it (`ape compile --force && python -m perpdex.sdk.lite.abi --write`)"
        )
    return {ev.topic: ev for ev in found.values()}


def settlement_topics() -> list[str]:
    """topic0 of each settlement event (an eth_getLogs filter: `topics: [these]`)."""
    return sorted(_events())


def _hex(v: Any) -> str:
    if isinstance(v, bytes | bytearray):  # HexBytes is a bytes
        return "0x" + bytes(v).hex()
    return str(v).lower() if str(v).startswith("0x") else "0x" + str(v).lower()


def _digest(v: Any) -> str:
    return "0x" + bytes(v).hex()


def decode_settlement_logs(
    logs: Iterable[Mapping[str, Any]], address: str | None = None
) -> list[ChainEvent]:
    """The settlement events among `logs`, in order. A log is a JSON-RPC log object
    (hex strings) or web3's (HexBytes); other events, removed (re-orged) logs and, with
    `address`, logs of other contracts are skipped."""
    events = _events()
    want = address.lower() if address else None
    out: list[ChainEvent] = []
    for log in logs:
        if log.get("removed"):
            continue
        if want is not None and str(log.get("address", "")).lower() != want:
            continue
        topics = [_hex(t) for t in log.get("topics", ())]
        ev = events.get(topics[0]) if topics else None
        if ev is None:
            continue
        v = ev.decode({"topics": topics, "data": _hex(log.get("data", "0x"))})
        if ev.name == "OrdersMatched":
            out.append(
                FillEvent(
                    _digest(v.maker_order),
                    _digest(v.taker_order),
                    abs(int(v.size_delta)),
                    int(v.price),
                )
            )
        elif ev.name == "OrderCancelled":
            out.append(CancelEvent(_digest(v.order), int(v.account), int(v.nonce)))
        else:
            out.append(NonceCancelEvent(int(v.account), int(v.min_nonce)))
    return out


# --- replay state (storage) --------------------------------------------------------------

HEADER_SLOT = 3
BALANCE_SLOT = 8
ORDER_BITS_SLOT = 195
ORDER_FILLED_SLOT = 196
ORDER_PARTIAL = 1
ORDER_DONE = 2
MIN_NONCE_SHIFT = 192
# the header's replay window (contracts/modules/packing.vy NONCE_WINDOW, review 8)
NONCE_WINDOW = 44
NONCE_WINDOW_SHIFT = 104
ACCOUNT_EXISTS = 1
ACCOUNT_IN_LIQUIDATION = 4


def _word(k: int | bytes) -> bytes:
    return k.rjust(32, b"\0") if isinstance(k, bytes) else k.to_bytes(32, "big")


def map_slot(base: int, *keys: int | bytes) -> int:
    """The storage slot of `map[keys[0]][keys[1]]...` for a Vyper HashMap at `base`."""
    slot = base
    for k in keys:
        slot = int.from_bytes(keccak(_word(slot) + _word(k)), "big")
    return slot


def order_bits_slot(account: int, nonce: int) -> int:
    return map_slot(ORDER_BITS_SLOT, account, nonce >> 7)


def order_filled_slot(digest: bytes | str) -> int:
    d = bytes.fromhex(digest.removeprefix("0x")) if isinstance(digest, str) else digest
    return map_slot(ORDER_FILLED_SLOT, d)


def balance_slot(account: int, token_index: int = 0) -> int:
    return map_slot(BALANCE_SLOT, account, token_index)


def nonce_state(bits_word: int, nonce: int) -> int:
    """The 2 replay bits of `nonce` in its order_bits word (ORDER_PARTIAL | ORDER_DONE)."""
    return (bits_word >> ((nonce & 127) << 1)) & 3


def min_nonce(header: int) -> int:
    return header >> MIN_NONCE_SHIFT


def replay_location(account: int, header: int, nonce: int) -> tuple[int | None, int]:
    """Where `nonce`'s 2 replay bits are (order_hash._replay_word): (None, bit) in the
    account's header when min <= nonce < min + NONCE_WINDOW, else (slot, bit) of its
    order_bits word. Below the minimum the order is cancelled whatever its bits say."""
    rel = nonce - min_nonce(header)
    if 0 <= rel < NONCE_WINDOW:
        return None, NONCE_WINDOW_SHIFT + 2 * rel
    return order_bits_slot(account, nonce), (nonce & 127) << 1


def order_state(account: int, header: int, nonce: int, storage: Callable[[int], int]) -> int:
    """The 2 replay bits of the account's `nonce` (ORDER_PARTIAL | ORDER_DONE), given
    its header word and a reader of storage slots (called only for a nonce outside the
    header's window)."""
    slot, at = replay_location(account, header, nonce)
    word = header if slot is None else storage(slot)
    return (word >> at) & 3
