"""Chain access for the matcher, behind one small protocol (`Settler`).

The matcher settles matched pairs in batches through the Clearinghouse's permissionless
`settle(...)` and reconciles its database with the chain's fill and cancel events. All of
that goes through `Settler`:

  prepare(fills)   simulate, drop the fills the chain would refuse (saying which order is
                   at fault, when it can tell), encode and sign one settlement transaction
                   for the rest; returns its id and bytes (recorded `pending` in the
                   database *before* broadcast) and the dropped fills
  broadcast(p)     send it (idempotent: re-sending the same signed bytes cannot settle twice)
  receipt(tx_id)   None while unknown/unmined; else which pairs the chain settled (ok False:
                   it reverted or can never be mined, so nothing settled)
  events(cursor)   fill / cancel / cancel-below-nonce events after `cursor`, new cursor

Two implementations:
  FakeChain + FakeSettler   in memory, for tests and the benchmark: a miniature of the
                            contract's rules (signatures, expiry, price, per-order filled
                            amount, cancels) so a double settlement would be visible
  ChainSettler              JSON-RPC to a node and a local key: the calldata comes from
                            `perpdex.sdk.orders.encode_fill_batch`, the events from
                            `perpdex.sdk.orders.decode_settlement_logs`, and a fill the
                            contract would refuse is found by simulation and blamed by
                            perpdex/matcher/blame.py (a batch is atomic on chain: one bad
                            fill would revert all of them)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from eth_utils import keccak
from pydantic_core import to_json

from perpdex.matcher import sigs
from perpdex.sdk import orders as o
from perpdex.sdk.settlement import CancelEvent, ChainEvent, FillEvent, NonceCancelEvent

__all__ = [
    "CancelEvent",
    "ChainEvent",
    "ChainSettler",
    "Dropped",
    "FakeChain",
    "FakeSettler",
    "FillEvent",
    "MatchedFill",
    "NonceCancelEvent",
    "Prepared",
    "Receipt",
    "Settler",
    "SettlerUnavailable",
    "SimulatedCrash",
]


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
class Dropped:
    """A fill `prepare` left out because the chain would refuse it now."""

    seq: int
    reason: str  # the contract's revert reason
    # digests of the orders at fault: they are rejected. Empty: nobody's fault that can be
    # told (quorum, price band, caps, pause): the fill is retried later
    blame: tuple[str, ...]


@dataclass(frozen=True)
class Prepared:
    tx_id: str  # "" when every fill was dropped: nothing to send
    payload: bytes
    dropped: tuple[Dropped, ...] = ()

    @property
    def sends(self) -> bool:
        return bool(self.payload)


@dataclass(frozen=True)
class Receipt:
    ok: bool  # the transaction executed (False: it reverted, nothing settled)
    settled: frozenset[tuple[str, str]]  # (maker digest, taker digest) pairs it settled


class Settler(Protocol):
    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared: ...

    def broadcast(self, prepared: Prepared) -> None: ...

    def receipt(self, tx_id: str) -> Receipt | None: ...

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]: ...


# ---- in-memory fake ----------------------------------------------------------------------

_order_fields = attrgetter(*(name for name, _, _ in o.ORDER_FIELDS))


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
    # a refusal that is no order's fault (lost price quorum, pause): every fill is refused
    # with this reason and blamed on nobody
    halted: str | None = None

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

    def _fillable(
        self, digest: str, order: o.Order, sig: bytes, size: int, filled: dict[str, int]
    ) -> bool:
        if not self._signed_by_owner(digest, order, sig):
            return False
        if digest in self.cancelled or order.nonce < self.nonce_floor.get(order.account, 0):
            return False
        if order.expiry <= self.now:
            return False
        return filled.get(digest, 0) + size <= abs(order.size)

    def _signed_by_owner(self, digest: str, order: o.Order, sig: bytes) -> bool:
        """`digest` is the order's and `sig` its owner's signature of it. Remembered: the
        answer never changes, and the screen, the execution and every fill of an order ask
        again (four ecrecovers a fill, which made this fake the matcher bench's largest
        cost). Keyed by plain values, not the Order: the memo adds nothing for the garbage
        collector to walk (it held the bench server's largest young heap)."""
        memo: dict[tuple[object, ...], bool] = self.__dict__.setdefault("_sig_memo", {})
        key = (digest, sig, *_order_fields(order))
        ok = memo.get(key)
        if ok is None:
            d = self._digests().digest(order)
            try:
                signer = sigs.recover(d, sig)
            except sigs.SignatureError:
                signer = None
            ok = d.hex() == digest.removeprefix("0x") and signer == sigs.owner_of(order.account)
            if len(memo) >= 100_000:
                memo.clear()
            memo[key] = ok
        return ok

    def refusal(
        self,
        f: MatchedFill,
        filled: dict[str, int],
        ioc_done: set[str] | None = None,
        sweep: str | None = None,
    ) -> Dropped | None:
        """Why the contract would refuse `f` after the fills booked in `filled` (and the
        IOC takers done in `ioc_done`; `sweep` is the IOC taker of the fill just before),
        and the orders at fault; None if it would settle."""
        if self.halted:
            return Dropped(f.seq, self.halted, ())
        done = self.ioc_done if ioc_done is None else ioc_done
        if f.taker.flags & o.FLAG_IOC and f.taker_digest in done and f.taker_digest != sweep:
            return Dropped(f.seq, "clearinghouse: order done", (f.taker_digest,))
        price = f.maker.limit_price
        crosses = f.taker.is_buy != f.maker.is_buy and (
            price <= f.taker.limit_price if f.taker.is_buy else price >= f.taker.limit_price
        )
        if not crosses or f.maker.market != f.taker.market:
            return Dropped(f.seq, "clearinghouse: limit not crossed", f.pair)
        bad = tuple(
            d
            for d, order, sig in (
                (f.maker_digest, f.maker, f.maker_sig),
                (f.taker_digest, f.taker, f.taker_sig),
            )
            if not self._fillable(d, order, sig, f.size, filled)
        )
        return Dropped(f.seq, "clearinghouse: order not fillable", bad) if bad else None

    def screen(self, fills: Sequence[MatchedFill]) -> tuple[list[MatchedFill], list[Dropped]]:
        """Simulate-and-drop, as ChainSettler does against the contract: the fills that
        would settle, in order, and the others."""
        scratch = dict(self.filled)
        ioc = set(self.ioc_done)
        sweep: str | None = None
        good: list[MatchedFill] = []
        dropped: list[Dropped] = []
        for f in fills:
            why = self.refusal(f, scratch, ioc, sweep)
            if why is not None:
                dropped.append(why)
                continue
            for d in f.pair:
                scratch[d] = scratch.get(d, 0) + f.size
            sweep = f.taker_digest if f.taker.flags & o.FLAG_IOC else None
            if sweep:
                ioc.add(sweep)
            good.append(f)
        return good, dropped

    def execute(self, fills: Sequence[MatchedFill]) -> Receipt:
        """Settles each fill the contract would accept; skips the others."""
        done = set()
        sweep: str | None = None  # the IOC taker of the previous fill
        for f in fills:
            ioc = bool(f.taker.flags & o.FLAG_IOC)
            if self.refusal(f, self.filled, self.ioc_done, sweep) is not None:
                sweep = None
                continue
            sweep = f.taker_digest if ioc else None
            self.filled[f.maker_digest] = self.filled.get(f.maker_digest, 0) + f.size
            self.filled[f.taker_digest] = self.filled.get(f.taker_digest, 0) + f.size
            if ioc:
                self.ioc_done.add(f.taker_digest)
            self.settlements.append((f.maker_digest, f.taker_digest, f.size))
            self.log.append(FillEvent(f.maker_digest, f.taker_digest, f.size, f.maker.limit_price))
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
    return to_json(rows)


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
    never saw the receipt); `lose` drops broadcasts on the floor (a lost transaction);
    `revert` makes the chain revert them (the state moved after the simulation)."""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.crash: str | None = None
        self.lose = False
        self.revert = False
        self._nonce = 0
        # what prepare() encoded, by transaction id: broadcast() runs it without decoding
        # the bytes back (a settler restarted with pending batches decodes them)
        self._prepared: dict[str, list[MatchedFill]] = {}

    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared:
        good, dropped = self.chain.screen(fills)
        if not good:
            return Prepared("", b"", tuple(dropped))
        payload = _encode_fake(good)
        # the sender's next nonce: every transaction the chain ran used one (a restarted
        # settler starts from the chain's count, as a real one does)
        self._nonce = max(self._nonce, len(self.chain.receipts)) + 1
        # the signed transaction's hash: its bytes and the sender's nonce
        tx_id = "0x" + keccak(payload + self._nonce.to_bytes(8, "big")).hex()
        if len(self._prepared) >= 1_000:  # prepared, never broadcast (dropped batches)
            self._prepared.clear()
        self._prepared[tx_id] = list(good)
        return Prepared(tx_id, payload, tuple(dropped))

    def broadcast(self, prepared: Prepared) -> None:
        if not prepared.sends:
            return
        if self.crash == "before":
            self.crash = None
            raise SimulatedCrash("matcher died before broadcasting")
        self.chain.broadcasts += 1
        if self.lose:
            return
        fills = self._prepared.pop(prepared.tx_id, None)
        if prepared.tx_id not in self.chain.receipts:  # a known transaction is not re-run
            self.chain.receipts[prepared.tx_id] = (
                Receipt(ok=False, settled=frozenset())
                if self.revert
                else self.chain.execute(fills or _decode_fake(prepared.payload))
            )
        if self.crash == "after":
            self.crash = None
            raise SimulatedCrash("matcher died after broadcasting, before the receipt")

    def receipt(self, tx_id: str) -> Receipt | None:
        return self.chain.receipts.get(tx_id)

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]:
        start = int(cursor or 0)
        return list(self.chain.log[start:]), str(len(self.chain.log))


# ---- the real chain ------------------------------------------------------------------------


def settle_calldata(fills: Sequence[MatchedFill]) -> bytes:
    """Calldata of the Clearinghouse's `settle(uint256[])` for these matched pairs."""
    from eth_abi import encode

    words = o.encode_fill_batch(
        [
            o.MatchedFill(
                o.SignedOrder(f.maker, f.maker_sig), o.SignedOrder(f.taker, f.taker_sig), f.size
            )
            for f in fills
        ]
    )
    return SETTLE_SELECTOR + encode(["uint256[]"], [words])


SETTLE_SELECTOR = keccak(text="settle(uint256[])")[:4]
HEADER_SELECTOR = keccak(text="account_header(uint256)")[:4]
POSITION_SELECTOR = keccak(text="position(uint256,uint256)")[:4]
# node answers to a re-sent transaction that is (or was) already in: not an error
_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")
_NONCE_TOO_LOW = ("nonce too low", "nonce is too low", "oldnonce", "transaction already finalized")


def _tx_nonce(raw: bytes) -> int:
    """The nonce of a signed transaction's bytes (typed: rlp after the type byte)."""
    import rlp  # type: ignore[import-untyped]

    fields = rlp.decode(raw[1:]) if raw[0] < 0x80 else rlp.decode(raw)
    return int.from_bytes(fields[1] if raw[0] < 0x80 else fields[0], "big")


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


class ChainSettler:
    """Settles through the Clearinghouse over JSON-RPC with a local key.

    prepare   one JSON-RPC batch (nonce, fees, gas estimate = the batch's simulation);
              when the estimate reverts, simulate-and-drop (perpdex/matcher/blame.py)
    broadcast eth_sendRawTransaction; "already known" and, for a mined transaction,
              "nonce too low" are fine (the same bytes never execute twice). A transaction
              whose nonce another transaction took can never be mined: once that has
              held for `dead_after` seconds its receipt reads ok=False (nothing settled),
              so the matcher queues its fills again
    events    eth_getLogs of the three settlement events at the Clearinghouse, by block
              range (the cursor is the next block to read; a fresh matcher starts at the
              head, having no orders the past could touch)

    The constructor checks the node (chain id, the Clearinghouse's code, the key's gas
    money) and raises SettlerUnavailable with what to do next."""

    def __init__(
        self,
        rpc_url: str,
        clearinghouse: str,
        private_key: str,
        *,
        chain_id: int | None = None,
        confirmations: int = 0,
        max_log_range: int = 2_000,
        gas_margin_bps: int = 2_000,
        dead_after: float = 30.0,
        require_funds: bool = True,
    ) -> None:
        from eth_account import Account
        from eth_utils import to_checksum_address

        from perpdex.sdk.lite.rpc import Rpc, RpcError

        try:
            self.account = Account.from_key(private_key)
        except Exception as e:
            raise SettlerUnavailable(
                f"the settling key is not a private key ({type(e).__name__}): give 0x and 64 "
                "hex digits, the key of an account holding gas money on this chain"
            ) from None
        try:
            self.clearinghouse = to_checksum_address(clearinghouse)
        except ValueError:
            raise SettlerUnavailable(
                f"{clearinghouse!r} is not an address: pass --clearinghouse 0x... or the "
                "deployment's manifest (--deployment)"
            ) from None
        self.rpc = Rpc(rpc_url)
        self.sender = str(self.account.address)
        self.confirmations = confirmations
        self.max_log_range = max_log_range
        self.gas_margin_bps = gas_margin_bps
        self._next_nonce = 0  # one past the highest nonce this process sent
        self._nonces: dict[str, int] = {}  # tx id -> nonce, of the transactions sent here
        self._suspect: dict[str, float] = {}  # tx id -> since when its nonce looks taken
        self.dead_after = dead_after
        try:
            here, code, balance = self.rpc.batch(
                [
                    ("eth_chainId", ()),
                    ("eth_getCode", (self.clearinghouse, "latest")),
                    ("eth_getBalance", (self.sender, "latest")),
                ]
            )
        except RpcError as e:
            raise SettlerUnavailable(str(e)) from None
        self.chain_id = _int(here)
        if chain_id is not None and chain_id != self.chain_id:
            raise SettlerUnavailable(
                f"the node at {rpc_url} is chain {self.chain_id}, the deployment is chain "
                f"{chain_id}: pass --rpc of the deployment's chain, or --deployment of this one"
            )
        if str(code) in ("0x", "0x0", ""):
            raise SettlerUnavailable(
                f"no contract at {self.clearinghouse} on {rpc_url}: the chain was reset or "
                "never deployed to; deploy (`perpdex devnet up`, `ape run deploy`) or pass "
                "the right --deployment / --clearinghouse"
            )
        if require_funds and _int(balance) == 0:
            raise SettlerUnavailable(
                f"the settling account {self.sender} has no ETH on chain {self.chain_id}: "
                "fund it (it pays every batch's gas; on a devnet `python -m "
                "perpdex.devtools.devnet faucet ADDRESS`) or use another key"
            )

    # ---- prepare ----------------------------------------------------------------------------

    def _call_params(self, data: bytes) -> dict[str, str]:
        return {"from": self.sender, "to": self.clearinghouse, "data": "0x" + data.hex()}

    def prepare(self, fills: Sequence[MatchedFill]) -> Prepared:
        from perpdex.sdk.lite.rpc import Reverted, RpcError

        good: list[MatchedFill] = list(fills)
        dropped: list[Dropped] = []
        screened = False
        while True:
            data = settle_calldata(good)
            nonce, block, tip, gas = self.rpc.batch(
                [
                    ("eth_getTransactionCount", (self.sender, "pending")),
                    ("eth_getBlockByNumber", ("latest", False)),
                    ("eth_maxPriorityFeePerGas", ()),
                    ("eth_estimateGas", (self._call_params(data), "pending")),
                ]
            )
            if not isinstance(gas, Reverted):
                break
            if screened:  # the chain moved under us: the matcher retries at its next tick
                raise RpcError(f"settle simulation reverted again ({gas.reason}); retrying")
            screened = True
            good, dropped = self.screen(good)
            if not good:
                return Prepared("", b"", tuple(dropped))
        tx: dict[str, Any] = {
            "to": self.clearinghouse,
            "data": data,
            "nonce": max(_int(nonce), self._next_nonce),
            "chainId": self.chain_id,
            "gas": _int(gas) * (10_000 + self.gas_margin_bps) // 10_000 + 20_000,
        }
        base = block.get("baseFeePerGas")
        if base is None:  # no EIP-1559 on this chain
            tx["gasPrice"] = _int(self.rpc("eth_gasPrice"))
        else:
            tx["maxPriorityFeePerGas"] = _int(tip)
            tx["maxFeePerGas"] = 2 * _int(base) + _int(tip)
        signed = self.account.sign_transaction(tx)
        return Prepared(
            "0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction), tuple(dropped)
        )

    def screen(self, fills: Sequence[MatchedFill]) -> tuple[list[MatchedFill], list[Dropped]]:
        """Simulate-and-drop: each fill simulated after the ones kept; a fill that reverts
        is dropped with its reason and the orders to blame (perpdex/matcher/blame.py)."""
        from perpdex.matcher.blame import blame

        good: list[MatchedFill] = []
        dropped: list[Dropped] = []
        for f in fills:
            reason = self.simulate([*good, f])
            if reason is None:
                good.append(f)
                continue
            dropped.append(Dropped(f.seq, reason, blame(self, f, reason, good)))
        return good, dropped

    # ---- the reads blame.py needs (blame.ChainProbe) ------------------------------------------

    def simulate(self, fills: Sequence[MatchedFill], rich: Sequence[int] = ()) -> str | None:
        """The revert reason of `settle(fills)` as the next block would run it (None: it
        passes); `rich` accounts get a huge settlement balance for the call."""
        from perpdex.matcher.blame import RICH
        from perpdex.sdk.lite.rpc import Reverted
        from perpdex.sdk.settlement import balance_slot

        params: list[Any] = [self._call_params(settle_calldata(fills)), "pending"]
        if rich:
            diff = {hex(balance_slot(a)): "0x" + RICH.to_bytes(32, "big").hex() for a in rich}
            params.append({self.clearinghouse: {"stateDiff": diff}})
        try:
            self.rpc("eth_call", *params)
        except Reverted as r:
            return r.reason
        return None

    def _view(self, selector: bytes, *args: int) -> bytes:
        data = selector + b"".join(a.to_bytes(32, "big") for a in args)
        out = self.rpc("eth_call", self._call_params(data), "pending")
        return bytes.fromhex(str(out).removeprefix("0x"))

    def header(self, account: int) -> int:
        return int.from_bytes(self._view(HEADER_SELECTOR, account)[:32], "big")

    def position(self, account: int, market: int) -> int:
        return int.from_bytes(
            self._view(POSITION_SELECTOR, account, market)[:32], "big", signed=True
        )

    def storage(self, slot: int) -> int:
        return _int(self.rpc("eth_getStorageAt", self.clearinghouse, hex(slot), "pending"))

    def timestamp(self) -> int:
        return _int(self.rpc("eth_getBlockByNumber", "pending", False)["timestamp"])

    # ---- broadcast and receipts ---------------------------------------------------------------

    def broadcast(self, prepared: Prepared) -> None:
        from perpdex.sdk.lite.rpc import RpcError

        if not prepared.sends:
            return
        nonce = _tx_nonce(prepared.payload)
        self._nonces[prepared.tx_id] = nonce
        try:
            self.rpc("eth_sendRawTransaction", "0x" + prepared.payload.hex())
        except RpcError as e:
            text = str(e).lower()
            # "nonce too low": mined already (fine), or another transaction took its nonce
            # and it can never be mined: `receipt` tells which
            if not any(k in text for k in (*_KNOWN, *_NONCE_TOO_LOW)):
                raise
        self._next_nonce = max(self._next_nonce, nonce + 1)

    def _dead(self, tx_id: str) -> bool:
        """Whether a transaction sent here can never be mined: its nonce is used, the node
        does not know it, and that stayed so for `dead_after` seconds (a node may count
        a nonce before it serves the receipt of the transaction that used it)."""
        nonce = self._nonces.get(tx_id)
        if nonce is None:
            return False
        mined = _int(self.rpc("eth_getTransactionCount", self.sender, "latest"))
        if mined <= nonce or self.rpc("eth_getTransactionByHash", tx_id) is not None:
            self._suspect.pop(tx_id, None)
            return False
        first = self._suspect.setdefault(tx_id, time.monotonic())
        return time.monotonic() - first >= self.dead_after

    def receipt(self, tx_id: str) -> Receipt | None:
        r = self.rpc("eth_getTransactionReceipt", tx_id)
        if r is None:
            if self._dead(tx_id) and self.rpc("eth_getTransactionReceipt", tx_id) is None:
                self._suspect.pop(tx_id, None)
                return Receipt(ok=False, settled=frozenset())
            return None
        events = o.decode_settlement_logs(r["logs"], self.clearinghouse)
        pairs = frozenset((e.maker, e.taker) for e in events if isinstance(e, FillEvent))
        return Receipt(ok=_int(r["status"]) == 1, settled=pairs)

    # ---- events -------------------------------------------------------------------------------

    def events(self, cursor: str | None) -> tuple[list[ChainEvent], str]:
        from perpdex.sdk.settlement import settlement_topics

        head = _int(self.rpc("eth_blockNumber")) - self.confirmations
        start = head if cursor is None else int(cursor)
        if head < start:
            return [], str(start)
        end = min(head, start + self.max_log_range - 1)
        logs = self.rpc(
            "eth_getLogs",
            {
                "address": self.clearinghouse,
                "fromBlock": hex(start),
                "toBlock": hex(end),
                "topics": [settlement_topics()],
            },
        )
        return o.decode_settlement_logs(logs, self.clearinghouse), str(end + 1)
