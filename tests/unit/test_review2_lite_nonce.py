"""Review 2: the standalone client's nonce after a transaction that never got mined.

Finding N1 -- one dropped transaction wedges every later one. `TradeClient._send` sets
the local nonce to n + 1 as soon as the node accepts a transaction, and `_next_nonce`
takes max(node's pending count, local). If that transaction leaves the mempool unmined
(its maxFeePerGas = 2 x base fee is outbid when fees spike -- exactly when a trader is
closing -- or the node restarts), `_wait` times out and the node's pending count stays
at n, but every later order is signed with n + 1, n + 2...: a nonce gap the node queues
forever. Each times out after 120 s; only a new client recovers. A trader cannot close.
Suggested fix (one line): forget the local nonce when `_wait` times out
(`self._nonce = None` before raising), so the next send asks the node again; a
transaction still pending is in the node's pending count anyway.
"""

from __future__ import annotations

from typing import Any

import pytest

from perpdex.sdk.lite import client as lite
from perpdex.sdk.lite.rpc import RpcError
from perpdex.sdk.manifest import Deployment

KEY = "0x" + "11" * 32
ADDR = "0x" + "22" * 20
PENDING = 5


class DroppingNode:
    """A node whose mempool drops the first transaction: never mined, pending count
    unchanged; later transactions are recorded."""

    def __init__(self) -> None:
        self.url = "http://fake"
        self.sent = 0

    def __call__(self, method: str, *params: Any) -> Any:
        if method == "eth_call":
            return "0x"
        if method == "eth_estimateGas":
            return hex(100_000)
        if method == "eth_getTransactionCount":
            return hex(PENDING)
        if method == "eth_getBlockByNumber":
            return {"baseFeePerGas": hex(10**9)}
        if method == "eth_maxPriorityFeePerGas":
            return hex(10**8)
        if method == "eth_sendRawTransaction":
            self.sent += 1
            return "0x" + f"{self.sent:064x}"
        if method == "eth_getTransactionReceipt":
            return None  # dropped: never mined
        raise AssertionError(f"unexpected {method}")


def _client() -> lite.TradeClient:
    dep = Deployment(
        network="fake",
        chain_id=1337,
        token=ADDR,
        oracle=ADDR,
        clearinghouse=ADDR,
        clearinghouse_ops=ADDR,
        clearinghouse_admin=ADDR,
        markets=("BTC",),
        settlement_decimals=6,
    )
    return lite.TradeClient("http://fake", dep, KEY, check=False)


def test_send__after_a_dropped_transaction__the_next_one_uses_the_nodes_nonce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lite, "RECEIPT_TIMEOUT_S", 0.01)
    c = _client()
    c.rpc = DroppingNode()  # type: ignore[assignment]
    nonces: list[int] = []
    sign = c._account.sign_transaction

    def spy(tx: dict[str, Any]) -> Any:
        nonces.append(int(tx["nonce"]))
        return sign(tx)

    monkeypatch.setattr(c, "_account", type("A", (), {"sign_transaction": staticmethod(spy)}))
    for _ in range(2):
        with pytest.raises(RpcError, match="not mined"):
            c._send("refresh", c.ops.refresh, [0])
    assert nonces[0] == PENDING
    assert nonces[1] == PENDING, (
        f"second order signed with nonce {nonces[1]} while the node is at {PENDING}: a gap"
    )
