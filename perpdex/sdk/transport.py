"""How a `PerpdexClient` reaches the chain. Read this before adding a chain access to the
client or to `Snapshot.load`.

The client's logic (perpdex/sdk/client.py) and the snapshot reading (perpdex/sdk/snapshot.py)
are written once, against contract handles (`transport.at(name, address)`: `handle.fn(*args,
block_id=...)`, `handle.fn.encode_input(*args)`) and the few chain accesses below. Two
transports implement them:

* `ApeTransport` (here): ape's connected provider and compiled contract types; the default,
  used inside an ape network context (scripts, tests, the CLI's write commands);
* `perpdex.sdk.lite.transport.RpcTransport`: raw JSON-RPC over HTTP with the ABIs shipped in
  perpdex/abi/, no ape imported (`ReadClient`, `TradeClient`, the CLI's read commands with
  `--rpc`); `calls` sends one JSON-RPC batch.

Both return the same values (checksummed addresses, ints, structs with named fields), so a
result built by `perpdex.sdk.results` is the same to the wei whichever transport read it
(tests/integration/test_lite_client.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Log:
    """One event log, transport-neutral."""

    address: str
    block_number: int
    log_index: int
    topics: tuple[bytes, ...]
    data: bytes
    tx_hash: str


class Transport(Protocol):
    """The chain accesses a `PerpdexClient` needs besides contract calls."""

    @property
    def revert_errors(self) -> tuple[type[Exception], ...]:
        """What a reverted call through this transport's handles raises."""
        ...

    @property
    def option(self) -> str:
        """The CLI option that picks the node, for error messages (`--network`, `--rpc`)."""
        ...

    def at(self, name: str, address: str) -> Any:
        """A handle on contract `name` (Clearinghouse, ClearinghouseOps, ...) at `address`."""
        ...

    def describe(self) -> str:
        """The node, for error messages: `the connected network`, a URL."""
        ...

    def chain_id(self) -> int: ...

    def genesis(self) -> str:
        """Hash of block 0, hex without 0x."""
        ...

    def block(self, block_id: int | str) -> tuple[int | None, int]:
        """(number, timestamp) of a block: a number, "latest" or "pending" (number None
        when the node gives none)."""
        ...

    def code(self, address: str, block: int | str = "latest") -> bytes: ...

    def calls(self, calls: Sequence[tuple[Any, tuple[Any, ...]]], block: int | str) -> list[Any]:
        """`handle_method(*args)` for each pair, all at `block`: the decoded results in order;
        a call that reverts gives its exception (one of `revert_errors`) in its place."""
        ...

    def logs(
        self, addresses: Sequence[str], topics: Sequence[Any], from_block: int, to_block: int
    ) -> list[Log]:
        """`eth_getLogs` over blocks [from_block, to_block]."""
        ...

    def call_reason(self, to: str, data: Any, sender: str) -> str | None:
        """None if the call of `data` (the handle's `encode_input`: hex text or bytes)
        from `sender` would succeed in the next block, else the revert reason (an eth_call
        on "pending"; nothing is sent)."""
        ...


class ApeTransport:
    """The chain through ape's connected provider (imports ape on first use)."""

    option = "--network"

    @property
    def revert_errors(self) -> tuple[type[Exception], ...]:
        from ape.exceptions import ContractLogicError

        return (ContractLogicError,)

    def at(self, name: str, address: str) -> Any:
        from perpdex.sdk.handles import _at

        return _at(name, address)

    def describe(self) -> str:
        return "the connected network"

    def chain_id(self) -> int:
        from ape import chain

        return int(chain.chain_id)

    def genesis(self) -> str:
        from ape import chain

        return str(chain.blocks[0].hash.hex()).removeprefix("0x")

    def block(self, block_id: int | str) -> tuple[int | None, int]:
        from ape import chain

        blk = chain.provider.get_block(block_id)
        return (int(blk.number) if blk.number is not None else None), int(blk.timestamp)

    def code(self, address: str, block: int | str = "latest") -> bytes:
        from ape import chain

        return bytes(chain.provider.get_code(address, block_id=block))

    def calls(self, calls: Sequence[tuple[Any, tuple[Any, ...]]], block: int | str) -> list[Any]:
        # one chunked JSON-RPC batch (perpdex.keepers.scan.batch_call: ~15 ms a snapshot
        # against ~300 ms one ape call at a time); a failed call is re-run through ape for
        # its real exception
        from perpdex.keepers.scan import batch_call

        errors = self.revert_errors
        out: list[Any] = []
        for (method, args), value in zip(
            calls, batch_call(calls, block=block, strict=False), strict=True
        ):
            if value is None:
                try:
                    value = method(*args, block_id=block)
                except errors as e:
                    value = e
            out.append(value)
        return out

    def logs(
        self, addresses: Sequence[str], topics: Sequence[Any], from_block: int, to_block: int
    ) -> list[Log]:
        from ape import chain

        found = chain.provider.web3.eth.get_logs(
            {
                "address": list(addresses),
                "fromBlock": from_block,
                "toBlock": to_block,
                "topics": list(topics),
            }
        )
        return [
            Log(
                address=str(log["address"]),
                block_number=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
                topics=tuple(bytes(t) for t in log["topics"]),
                data=bytes(log["data"]),
                tx_hash="0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"),
            )
            for log in found
        ]

    def call_reason(self, to: str, data: Any, sender: str) -> str | None:
        from ape import networks
        from web3.exceptions import ContractLogicError as CallReverted

        from perpdex.sdk.hints import _call_revert_reason

        try:
            networks.provider.web3.eth.call({"from": sender, "to": to, "data": data}, "pending")
        except CallReverted as err:
            return _call_revert_reason(err)
        return None
