"""JSON-RPC and ABI plumbing of the standalone client: no ape, no web3 provider.

`Rpc` posts JSON-RPC over HTTP (stdlib urllib: web3's import alone costs more than the
whole read command's budget) and turns every failure into a perpdex error: `RpcError`
(the node is unreachable or refused the request) or `TransactionRejected` (an `eth_call`
reverted, with the contract's reason and its hint). `Contract` encodes calls and decodes
results and events with eth-abi from the ABIs shipped in perpdex/abi/.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from typing import Any

from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk.hints import hint_for
from perpdex.sdk.lite.abi import load

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ERROR_SELECTOR = "08c379a0"  # Error(string)


class RpcError(PerpdexError):
    """The node did not answer, or answered a JSON-RPC error that is not a revert."""


class Reverted(PerpdexError):
    """An `eth_call` reverted (internal: the client raises `TransactionRejected`)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Rpc:
    """One node's JSON-RPC endpoint."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._id = 0

    def __call__(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        return self._result(method, self._post(body, method))

    def batch(self, requests: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Several requests in one JSON-RPC batch: each one's result in order, or in its
        place the `Reverted` of a call that reverted; any other error raises `RpcError`.
        (A node that refuses batches answers with one error object: that raises too.)"""
        if not requests:
            return []
        first = self._id + 1
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": p}
            for i, (m, p) in enumerate(requests)
        ]
        self._id += len(requests)
        what = f"a batch of {len(requests)} ({requests[0][0]}, ...)"
        replies = self._post(body, what)
        if not isinstance(replies, list):
            raise RpcError(
                f"{self.url} refused {what}: {replies.get('error', replies)}; use a node that "
                "takes JSON-RPC batches"
            )
        by_id = {r.get("id"): r for r in replies}
        out: list[Any] = []
        for i, (method, _) in enumerate(requests):
            reply = by_id.get(first + i)
            if reply is None:
                raise RpcError(f"{self.url} left {method} of {what} unanswered; retry")
            try:
                out.append(self._result(method, reply))
            except Reverted as r:
                out.append(r)
        return out

    def _post(self, body: Any, what: str) -> Any:
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with _NO_PROXY.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError) as e:  # URLError, timeouts, refused, bad JSON
            raise RpcError(
                f"no JSON-RPC answer from {self.url} to {what} ({e}); check the URL "
                "(--rpc / PERPDEX_RPC_URL) and that the node is up (`perpdex devnet up`)"
            ) from None

    def _result(self, method: str, reply: dict[str, Any]) -> Any:
        if "error" in reply:
            err = reply["error"]
            reason = revert_reason(err)
            if reason is not None:
                raise Reverted(reason)
            raise RpcError(
                f"{method} on {self.url} failed: {err.get('message', err)}; check the node "
                "and the request"
            )
        return reply["result"]


def poll_receipt(fetch: Callable[[], Any], timeout: float, longest: float = 0.05) -> Any | None:
    """Calls `fetch` (an `eth_getTransactionReceipt`) until it returns a receipt, or
    None after `timeout` seconds. The pause between tries starts at 1 ms and doubles up
    to `longest`: a node that mines at once (anvil's automine) has the receipt a
    millisecond or two after the send, so a fixed 50 ms pause cost most transactions of
    the test suite 50 ms each; a real chain's block time is reached after a few tries."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        receipt = fetch()
        if receipt is not None or time.monotonic() >= deadline:
            return receipt
        time.sleep(pause)
        pause = min(2 * pause, longest)


def revert_reason(err: dict[str, Any]) -> str | None:
    """The revert string of a JSON-RPC error, or None when the error is not a revert."""
    message = str(err.get("message", ""))
    data = err.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.removeprefix("0x").startswith(ERROR_SELECTOR):
        from eth_abi import decode

        raw = bytes.fromhex(data.removeprefix("0x")[8:])
        return str(decode(["string"], raw)[0]).strip() or "reverted without a reason"
    if "revert" not in message.lower():
        return None
    text = message.removeprefix("execution reverted").removeprefix(":").strip()
    return text or "reverted without a reason"


def _type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return f"({','.join(_type(c) for c in param['components'])}){kind.removeprefix('tuple')}"
    return kind


def _named(param: dict[str, Any], value: Any) -> Any:
    """A decoded value with its struct fields as attributes (what results.py reads) and
    addresses checksummed (as ape returns them)."""
    kind = str(param["type"])
    if kind == "address":
        from eth_utils import to_checksum_address

        return to_checksum_address(value)
    if kind.startswith("address["):
        return [_named({**param, "type": kind[: kind.rindex("[")]}, v) for v in value]
    if kind.startswith("tuple") and kind.endswith("]"):  # an array of structs
        element = {**param, "type": kind[: kind.rindex("[")]}
        return [_named(element, v) for v in value]
    if kind == "tuple":
        return SimpleNamespace(
            **{c["name"]: _named(c, v) for c, v in zip(param["components"], value, strict=True)}
        )
    return value


@dataclass(frozen=True)
class Function:
    name: str
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]

    @cached_property
    def signature(self) -> str:
        return f"{self.name}({','.join(_type(p) for p in self.inputs)})"

    @cached_property
    def selector(self) -> bytes:
        from eth_utils import keccak

        return keccak(text=self.signature)[:4]

    def encode(self, *args: Any) -> str:
        from eth_abi import encode

        return "0x" + (self.selector + encode([_type(p) for p in self.inputs], args)).hex()

    def decode(self, data: str) -> Any:
        """One output as itself, several as a tuple; structs as attribute namespaces."""
        from eth_abi import decode

        raw = bytes.fromhex(data.removeprefix("0x"))
        if not raw and self.outputs:
            raise RpcError(
                f"{self.name} returned no data: no contract with that function at the "
                "address; check the deployment manifest against the chain (--deployment)"
            )
        values = decode([_type(p) for p in self.outputs], raw)
        named = tuple(_named(p, v) for p, v in zip(self.outputs, values, strict=True))
        return named[0] if len(named) == 1 else named


@dataclass(frozen=True)
class Event:
    name: str
    inputs: tuple[dict[str, Any], ...]

    @cached_property
    def topic(self) -> str:
        from eth_utils import keccak

        sig = f"{self.name}({','.join(_type(p) for p in self.inputs)})"
        return "0x" + keccak(text=sig).hex()

    def decode(self, log: dict[str, Any]) -> SimpleNamespace:
        from eth_abi import decode

        indexed = [p for p in self.inputs if p.get("indexed")]
        plain = [p for p in self.inputs if not p.get("indexed")]
        topics = [bytes.fromhex(t.removeprefix("0x")) for t in log["topics"][1:]]
        values = {p["name"]: decode([_type(p)], t)[0] for p, t in zip(indexed, topics, strict=True)}
        data = decode([_type(p) for p in plain], bytes.fromhex(log["data"].removeprefix("0x")))
        values.update({p["name"]: _named(p, v) for p, v in zip(plain, data, strict=True)})
        return SimpleNamespace(**values)


class Contract:
    """A contract at `address` with a shipped ABI; `call` reads through `eth_call`."""

    def __init__(self, rpc: Rpc, abi_name: str, address: str) -> None:
        self.rpc = rpc
        self.address = address
        self.functions: dict[str, Function] = {}
        self.events: dict[str, Event] = {}
        for entry in load(abi_name):
            if entry["type"] == "function":
                self.functions.setdefault(
                    entry["name"],
                    Function(entry["name"], tuple(entry["inputs"]), tuple(entry["outputs"])),
                )
            elif entry["type"] == "event":
                self.events.setdefault(entry["name"], Event(entry["name"], tuple(entry["inputs"])))

    def __getattr__(self, name: str) -> BoundFunction | BoundEvent:
        """`contract.name(*args)` reads like an ape contract handle (and `contract.Event`
        names an event for `Receipt.decode_logs`), so `PerpdexClient`'s code written
        against handles runs on this one."""
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self.__dict__.get("functions", {}):
            return BoundFunction(self, self.functions[name])
        if name in self.__dict__.get("events", {}):
            return BoundEvent(self, self.events[name])
        raise AttributeError(name)

    def fn(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise PerpdexError(f"{name} is not in the shipped ABI of {self.address}") from None

    def call(
        self, name: str, *args: Any, block: int | str = "latest", sender: str | None = None
    ) -> Any:
        """`name(*args)` by eth_call; a revert raises `TransactionRejected`."""
        f = self.fn(name)
        tx: dict[str, Any] = {"to": self.address, "data": f.encode(*args)}
        if sender is not None:
            tx["from"] = sender
        tag = hex(block) if isinstance(block, int) else block
        try:
            return f.decode(self.rpc("eth_call", tx, tag))
        except Reverted as r:
            raise TransactionRejected(name, r.reason, hint_for(r.reason)) from None

    def logs(self, name: str, receipt: dict[str, Any]) -> list[SimpleNamespace]:
        """The receipt's `name` events emitted by this contract, decoded."""
        ev = self.events[name]
        return [
            ev.decode(log)
            for log in receipt.get("logs", ())
            if log["address"].lower() == self.address.lower()
            and log["topics"]
            and log["topics"][0] == ev.topic
        ]


@dataclass(frozen=True)
class BoundFunction:
    """One function of a `Contract`, callable by eth_call (ape's handle interface)."""

    contract: Contract
    function: Function

    def __call__(self, *args: Any, block_id: int | str = "latest") -> Any:
        return self.contract.call(self.function.name, *args, block=block_id)

    def encode_input(self, *args: Any) -> str:
        return self.function.encode(*args)


@dataclass(frozen=True)
class BoundEvent:
    """One event of a `Contract` (ape's event handle, for `Receipt.decode_logs`)."""

    contract: Contract
    event: Event

    @property
    def name(self) -> str:
        return self.event.name
