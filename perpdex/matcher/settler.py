"""Chain access for the matcher, behind one small protocol (`Settler`).

The matcher settles matched pairs in batches through the Clearinghouse's permissionless
`settle(...)` and reconciles its database with the chain's fill and cancel events. All of
that goes through `Settler`:

  prepare(fills)   encode and sign one settlement transaction; returns its id and bytes
                   (recorded `pending` in the database *before* broadcast)
  broadcast(p)     send it (idempotent: re-sending the same signed bytes cannot settle twice)
  receipt(tx_id)   None while unknown/unmined; else which pairs the chain settled
  events(cursor)   fill / cancel / cancel-below-nonce events after `cursor`, new cursor

Two implementations:
  FakeChain + FakeSettler   in memory, for tests and the benchmark: a miniature of the
                            contract's rules (signatures, expiry, price, per-order filled
                            amount, cancels) so a double settlement would be visible
  ChainSettler              a web3 adapter for the real contract. WIRED AT MERGE: the
                            calldata comes from `perpdex.sdk.orders.encode_fill_batch` and the
                            events from `perpdex.sdk.orders.decode_settlement_logs`, both
                            written with the contract's settlement half; until they exist it
                            refuses to start with a message saying so (no ABI invented here)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_utils import keccak

from perpdex.matcher import sigs
from perpdex.sdk import orders as o


class SettlerUnavailable(RuntimeError):
    """The settler cannot work here; the message says what is missing."""


class SimulatedCrash(RuntimeError):
    """Raised by FakeSettler to stand for the matcher process dying at that point."""


@dataclass(frozen=True)
class MatchedFill:
    """One matched pair, as the contract takes it: both signed orders and the fill size
    (unsigned base amount); the price is the maker's limit price."""

    seq: int
    maker_digest: str
    maker: o.Order
    maker_sig: bytes
    taker_digest: str
    taker: o.Order
    taker_sig: bytes
    size: int

    @property
    def pair(self) -> tuple[str, str]:
        return (self.maker_digest, self.taker_digest)


@dataclass(frozen=True)
class Prepared:
    tx_id: str
    payload: bytes


@dataclass(frozen=True)
class Receipt:
    ok: bool  # the transaction executed (False: it reverted, nothing settled)
    settled: frozenset[tuple[str, str]]  # (maker digest, taker digest) pairs it settled


@dataclass(frozen=True)
class FillEvent:
    maker: str
    taker: str
    size: int
    price: int


@dataclass(frozen=True)
class CancelEvent:
    digest: str


@dataclass(frozen=True)
class NonceCancelEvent:
    account: int
    nonce: int  # every order of `account` with a nonce below this is cancelled


ChainEvent = FillEvent | CancelEvent | NonceCancelEvent


class Settler(Protocol):
    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared: ...

    def broadcast(self, prepared: Prepared) -> None: ...

    def receipt(self, tx_id: str) -> Receipt | None: ...

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]: ...


# ---- in-memory fake ----------------------------------------------------------------------


@dataclass
class FakeChain:
    """What the chain remembers across matcher restarts: per-order filled amounts,
    cancels, IOC orders done, applied transactions and the event log."""

    chain_id: int
    verifying_contract: str
    now: int = 0
    filled: dict[str, int] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    nonce_floor: dict[int, int] = field(default_factory=dict)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    log: list[ChainEvent] = field(default_factory=list)
    settlements: list[tuple[str, str, int]] = field(default_factory=list)
    broadcasts: int = 0
    # IOC takers that filled: like the contract (R3-3), an IOC order fills only in the
    # batch of its first fill, in fills one after another (a sweep)
    ioc_done: set[str] = field(default_factory=set)

    def _digests(self) -> sigs.DigestCache:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = self.__dict__["_cache"] = sigs.DigestCache(
                self.chain_id, self.verifying_contract
            )
        return cache

    def cancel(self, digest: str) -> None:
        self.cancelled.add(digest)
        self.log.append(CancelEvent(digest))

    def cancel_below(self, account: int, nonce: int) -> None:
        self.nonce_floor[account] = max(self.nonce_floor.get(account, 0), nonce)
        self.log.append(NonceCancelEvent(account, nonce))

    def _fillable(self, digest: str, order: o.Order, sig: bytes, size: int) -> bool:
        cache = self._digests()
        if cache.digest(order).hex() != digest.removeprefix("0x"):
            return False
        try:
            if sigs.recover(cache.digest(order), sig) != sigs.owner_of(order.account):
                return False
        except sigs.SignatureError:
            return False
        if digest in self.cancelled or order.nonce < self.nonce_floor.get(order.account, 0):
            return False
        if order.expiry <= self.now:
            return False
        return self.filled.get(digest, 0) + size <= abs(order.size)

    def execute(self, fills: Sequence[MatchedFill]) -> Receipt:
        """Settles each fill the contract would accept; skips the others."""
        done = set()
        sweep: str | None = None  # the IOC taker of the previous fill
        for f in fills:
            ioc = bool(f.taker.flags & o.FLAG_IOC)
            if ioc and f.taker_digest in self.ioc_done and f.taker_digest != sweep:
                sweep = None
                continue
            sweep = f.taker_digest if ioc else None
            price = f.maker.limit_price
            crosses = f.taker.is_buy != f.maker.is_buy and (
                price <= f.taker.limit_price if f.taker.is_buy else price >= f.taker.limit_price
            )
            if not (
                crosses
                and f.maker.market == f.taker.market
                and self._fillable(f.maker_digest, f.maker, f.maker_sig, f.size)
                and self._fillable(f.taker_digest, f.taker, f.taker_sig, f.size)
            ):
                continue
            self.filled[f.maker_digest] = self.filled.get(f.maker_digest, 0) + f.size
            self.filled[f.taker_digest] = self.filled.get(f.taker_digest, 0) + f.size
            if ioc:
                self.ioc_done.add(f.taker_digest)
            self.settlements.append((f.maker_digest, f.taker_digest, f.size))
            self.log.append(FillEvent(f.maker_digest, f.taker_digest, f.size, price))
            done.add(f.pair)
        return Receipt(ok=True, settled=frozenset(done))


def _encode_fake(fills: Sequence[MatchedFill]) -> bytes:
    rows = [
        (
            *(f.seq, f.maker_digest, f.maker.as_message(), f.maker_sig.hex()),
            *(f.taker_digest, f.taker.as_message(), f.taker_sig.hex(), str(f.size)),
        )
        for f in fills
    ]
    return json.dumps(rows).encode()


def _decode_fake(payload: bytes) -> list[MatchedFill]:
    def order(m: dict[str, int]) -> o.Order:
        names = {n: p for p, n, _ in o.ORDER_FIELDS}
        return o.Order(**{names[k]: int(v) for k, v in m.items()})

    return [
        MatchedFill(
            int(r[0]),
            r[1],
            order(r[2]),
            bytes.fromhex(r[3]),
            r[4],
            order(r[5]),
            bytes.fromhex(r[6]),
            int(r[7]),
        )
        for r in json.loads(payload)
    ]


class FakeSettler:
    """A Settler over a FakeChain. `crash` makes the next broadcast stop the "process":
    "before" (recorded pending, never sent), "after" (the chain executed it, the matcher
    never saw the receipt); `lose` drops broadcasts on the floor (a lost transaction)."""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.crash: str | None = None
        self.lose = False
        self._nonce = 0

    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared:
        payload = _encode_fake(fills)
        self._nonce += 1
        # the signed transaction's hash: its bytes and the sender's nonce
        return Prepared("0x" + keccak(payload + self._nonce.to_bytes(8, "big")).hex(), payload)

    def broadcast(self, prepared: Prepared) -> None:
        if self.crash == "before":
            self.crash = None
            raise SimulatedCrash("matcher died before broadcasting")
        self.chain.broadcasts += 1
        if self.lose:
            return
        if prepared.tx_id not in self.chain.receipts:  # a known transaction is not re-run
            self.chain.receipts[prepared.tx_id] = self.chain.execute(_decode_fake(prepared.payload))
        if self.crash == "after":
            self.crash = None
            raise SimulatedCrash("matcher died after broadcasting, before the receipt")

    def receipt(self, tx_id: str) -> Receipt | None:
        return self.chain.receipts.get(tx_id)

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]:
        start = int(cursor or 0)
        return list(self.chain.log[start:]), str(len(self.chain.log))


# ---- the real chain (wired at merge) -------------------------------------------------------


def settle_calldata(fills: Sequence[MatchedFill]) -> bytes:
    """Calldata of the Clearinghouse's `settle(uint256[])` for these matched pairs."""
    from eth_abi import encode
    from eth_utils import keccak

    words = o.encode_fill_batch(
        [
            o.MatchedFill(
                o.SignedOrder(f.maker, f.maker_sig), o.SignedOrder(f.taker, f.taker_sig), f.size
            )
            for f in fills
        ]
    )
    return keccak(text="settle(uint256[])")[:4] + encode(["uint256[]"], [words])


class ChainSettler:
    """Settles through the Clearinghouse with a local key over JSON-RPC (web3).

    WIRED AT MERGE: needs `orders.encode_fill_batch(fills) -> bytes` (calldata for the
    Clearinghouse's settle) and `orders.decode_settlement_logs(logs) -> list[ChainEvent]`
    from the contract's settlement half. Everything else (nonce, fees, signing, idempotent
    re-broadcast, receipts) is here."""

    def __init__(self, rpc_url: str, clearinghouse: str, private_key: str) -> None:
        missing = [
            name for name in ("encode_fill_batch", "decode_settlement_logs") if not hasattr(o, name)
        ]
        if missing:
            raise SettlerUnavailable(
                f"perpdex.sdk.orders has no {', '.join(missing)} yet: the on-chain settlement "
                "half is wired at merge. Run the matcher with --settler fake meanwhile"
            )
        from eth_account import Account
        from web3 import Web3

        self.w3 = Web3(Web3.HTTPProvider(rpc_url))
        self.account = Account.from_key(private_key)
        self.clearinghouse = Web3.to_checksum_address(clearinghouse)

    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared:
        data = settle_calldata(fills)
        tx: dict[str, Any] = {
            "to": self.clearinghouse,
            "data": data,
            "from": self.account.address,
            "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
            "chainId": self.w3.eth.chain_id,
        }
        tx["gas"] = int(self.w3.eth.estimate_gas(tx) * 12 // 10)  # type: ignore[arg-type]
        base = self.w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tx["maxPriorityFeePerGas"] = self.w3.eth.max_priority_fee
        tx["maxFeePerGas"] = 2 * int(base) + int(tx["maxPriorityFeePerGas"])
        del tx["from"]
        signed = self.account.sign_transaction(tx)
        return Prepared("0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction))

    def broadcast(self, prepared: Prepared) -> None:
        try:
            self.w3.eth.send_raw_transaction(prepared.payload)
        except ValueError as e:  # "already known" / "nonce too low": it is (or was) in
            if "known" not in str(e) and "nonce too low" not in str(e):
                raise

    def receipt(self, tx_id: str) -> Receipt | None:
        from web3.exceptions import TransactionNotFound

        try:
            r = self.w3.eth.get_transaction_receipt(tx_id)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        events = o.decode_settlement_logs(r["logs"])  # type: ignore[attr-defined]
        pairs = frozenset((e.maker, e.taker) for e in events if isinstance(e, FillEvent))
        return Receipt(ok=r["status"] == 1, settled=pairs)

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]:
        start = int(cursor or 0)
        head = int(self.w3.eth.block_number)
        if head < start:
            return [], str(start)
        logs = self.w3.eth.get_logs(
            {"address": self.clearinghouse, "fromBlock": start, "toBlock": head}
        )
        return list(o.decode_settlement_logs(logs)), str(head + 1)  # type: ignore[attr-defined]
