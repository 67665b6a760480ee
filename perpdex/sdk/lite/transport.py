"""`RpcTransport`: the chain of a `PerpdexClient` through raw JSON-RPC, no ape (see
perpdex/sdk/transport.py for the interface and the ape transport)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perpdex.errors import TransactionRejected
from perpdex.sdk.hints import hint_for
from perpdex.sdk.lite.rpc import BoundFunction, Contract, Reverted, Rpc
from perpdex.sdk.transport import Log

# compiled contract -> the shipped ABI that holds it (perpdex/sdk/lite/abi.py: the
# Clearinghouse's file merges its Ops, Admin, Orders and Risk halves, which answer at its
# address)
_SHIPPED = {
    "ClearinghouseOps": "Clearinghouse",
    "ClearinghouseAdmin": "Clearinghouse",
    "ClearinghouseOrders": "Clearinghouse",
    "ClearinghouseRisk": "Clearinghouse",
    "ClearinghouseTreasury": "Clearinghouse",
}


def _hex(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


class RpcTransport:
    """One node's JSON-RPC endpoint as a `perpdex.sdk.transport.Transport`."""

    option = "--rpc"
    revert_errors: tuple[type[Exception], ...] = (TransactionRejected,)

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    def at(self, name: str, address: str) -> Contract:
        return Contract(self.rpc, _SHIPPED.get(name, name), address)

    def describe(self) -> str:
        return self.rpc.url

    def chain_id(self) -> int:
        return int(self.rpc("eth_chainId"), 16)

    def genesis(self) -> str:
        return str(self.rpc("eth_getBlockByNumber", "0x0", False)["hash"]).removeprefix("0x")

    def block(self, block_id: int | str) -> tuple[int | None, int]:
        blk = self.rpc("eth_getBlockByNumber", _hex(block_id), False)
        number = blk.get("number")
        return (int(number, 16) if number else None), int(blk["timestamp"], 16)

    def code(self, address: str, block: int | str = "latest") -> bytes:
        return bytes.fromhex(str(self.rpc("eth_getCode", address, _hex(block)))[2:])

    def calls(self, calls: Sequence[tuple[Any, tuple[Any, ...]]], block: int | str) -> list[Any]:
        """One JSON-RPC batch of eth_calls."""
        fns: list[BoundFunction] = [method for method, _ in calls]
        replies = self.rpc.batch(
            [
                (
                    "eth_call",
                    ({"to": f.contract.address, "data": f.encode_input(*args)}, _hex(block)),
                )
                for f, (_, args) in zip(fns, calls, strict=True)
            ]
        )
        out: list[Any] = []
        for f, reply in zip(fns, replies, strict=True):
            if isinstance(reply, Reverted):
                out.append(
                    TransactionRejected(f.function.name, reply.reason, hint_for(reply.reason))
                )
            else:
                out.append(f.function.decode(reply))
        return out

    def logs(
        self, addresses: Sequence[str], topics: Sequence[Any], from_block: int, to_block: int
    ) -> list[Log]:
        found = self.rpc(
            "eth_getLogs",
            {
                "address": list(addresses),
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
                "topics": list(topics),
            },
        )
        return [
            Log(
                address=str(log["address"]),
                block_number=int(log["blockNumber"], 16),
                log_index=int(log["logIndex"], 16),
                topics=tuple(bytes.fromhex(t[2:]) for t in log["topics"]),
                data=bytes.fromhex(str(log["data"])[2:]),
                tx_hash=str(log["transactionHash"]),
            )
            for log in found
        ]

    def call_reason(self, to: str, data: Any, sender: str) -> str | None:
        try:
            self.rpc("eth_call", {"from": sender, "to": to, "data": data}, "pending")
        except Reverted as r:
            return r.reason
        return None
