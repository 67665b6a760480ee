"""The standalone client: a deployment read and traded from a JSON-RPC URL (and a private
key), without ape's network context; for bots and the CLI's fast read path.

    from perpdex.sdk.lite import ReadClient, TradeClient
    from perpdex.sdk.manifest import Deployment

    dep = Deployment.load(Path("deployments/local.json"))
    reader = ReadClient("http://127.0.0.1:8545", dep)
    print(reader.markets()[0].mark_price, reader.quote(acct, "BTC", Decimal("0.5")).fill_price)
    trader = TradeClient("http://127.0.0.1:8545", dep, private_key)
    fill = trader.trade(acct, "BTC", Decimal("0.5"))   # bound: quote +/- max_slippage

Read and trading clients are split (as in dYdX's and Hyperliquid's SDKs): `TradeClient`
is a `ReadClient` that also signs (locally, eth-account) and sends. Both are
`PerpdexClient` itself over `RpcTransport` (perpdex/sdk/transport.py): every read and
write method, result type and validation is the ape client's own code, so the two agree
to the wei (tests/integration/test_lite_client.py); only signing and sending
(`TradeClient._send`) is this module's. Every failure is a `PerpdexError`:
`TransactionRejected` (reason + hint) for a revert, `RpcError` for the node; no web3 or
ape exception type leaks. (Methods that need ape's own receipts or provider, e.g. the
keepers', stay on the ape client.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk import gas
from perpdex.sdk.client import PerpdexClient
from perpdex.sdk.hints import hint_for
from perpdex.sdk.lite.rpc import (
    BoundEvent,
    BoundFunction,
    Reverted,
    Rpc,
    RpcError,
    poll_receipt,
)
from perpdex.sdk.lite.transport import RpcTransport
from perpdex.sdk.manifest import Deployment

RECEIPT_TIMEOUT_S = 120.0
RECEIPT_POLL_S = 0.05


@dataclass(frozen=True)
class Receipt:
    """A mined transaction the chain accepted."""

    tx_hash: str
    block_number: int
    gas_used: int
    gas_limit: int
    raw: dict[str, Any]

    @property
    def txn_hash(self) -> str:
        """ape's name for `tx_hash` (the shared client code reads receipts by it)."""
        return self.tx_hash

    def decode_logs(self, event: BoundEvent) -> list[Any]:
        """The receipt's `event` logs emitted by its contract, decoded."""
        return event.contract.logs(event.event.name, self.raw)


class ReadClient(PerpdexClient):
    """`PerpdexClient` over the JSON-RPC node at `rpc_url` (`RpcTransport`: no ape); signs
    nothing. Every read method is the ape client's own code.

    Refuses a manifest of another chain (chain id, genesis) or one whose Clearinghouse has
    no code, with what to do next."""

    def __init__(self, rpc_url: str, deployment: Deployment, *, check: bool = True) -> None:
        self.rpc = Rpc(rpc_url)
        super().__init__(
            deployment, None, preflight=False, transport=RpcTransport(self.rpc), check=check
        )

    def block_number(self) -> int:
        return self._head()

    def _require_signer(self, action: str) -> Any:
        raise PerpdexError(
            f"{action} needs a signer: a ReadClient signs nothing; build a TradeClient with "
            "the private key (or the ape PerpdexClient with a signer)"
        )


class TradeClient(ReadClient):
    """A `ReadClient` that signs with `private_key` (locally) and sends transactions.

    Each transaction is first run as an `eth_call` (a revert raises `TransactionRejected`
    before anything is signed), sent with a padded gas estimate (`gas.padded_gas`), and
    waited for; the nonce is tracked locally from the node's pending count."""

    def __init__(
        self, rpc_url: str, deployment: Deployment, private_key: str, *, check: bool = True
    ) -> None:
        super().__init__(rpc_url, deployment, check=check)
        from eth_account import Account

        self._account = Account.from_key(private_key)
        self.address: str = str(self._account.address)
        self._nonce: int | None = None
        self._chain_id = deployment.chain_id

    # --- plumbing -----------------------------------------------------------------------------

    def _require_signer(self, action: str) -> Any:
        return self._account

    def _send(self, action: str, method: Any, *args: Any, oracle_reads: int = 1) -> Any:
        """Preflight, sign, send and wait for `method(*args)` (a handle's function, as in
        `PerpdexClient._send`: every write method of the shared client sends through this);
        returns a `Receipt`. `oracle_reads` as in `gas.padded_gas`."""
        fn = cast(BoundFunction, method)
        call = {
            "from": self.address,
            "to": fn.contract.address,
            "data": fn.encode_input(*args),
        }
        try:
            self.rpc("eth_call", call, "latest")  # a revert: refused before signing
            estimate = int(self.rpc("eth_estimateGas", call), 16)
        except Reverted as r:
            raise TransactionRejected(action, r.reason, hint_for(r.reason)) from None
        limit = gas.padded_gas(estimate, oracle_reads)
        tx: dict[str, Any] = {
            "chainId": self._chain_id,
            "nonce": self._next_nonce(),
            "to": fn.contract.address,
            "data": call["data"],
            "value": 0,
            "gas": limit,
            **self._fees(),
        }
        signed = self._account.sign_transaction(tx)
        raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
        try:
            tx_hash = str(self.rpc("eth_sendRawTransaction", "0x" + bytes(raw).hex()))
        except (Reverted, RpcError):
            self._nonce = None  # re-read from the node next time
            raise
        self._nonce = int(tx["nonce"]) + 1
        receipt = self._wait(tx_hash)
        if int(receipt["status"], 16) != 1:
            self._refused(action, call, receipt, limit)
        return Receipt(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"], 16),
            gas_used=int(receipt["gasUsed"], 16),
            gas_limit=limit,
            raw=receipt,
        )

    def _next_nonce(self) -> int:
        pending = int(self.rpc("eth_getTransactionCount", self.address, "pending"), 16)
        return pending if self._nonce is None else max(pending, self._nonce)

    def _fees(self) -> dict[str, int]:
        head = self.rpc("eth_getBlockByNumber", "latest", False)
        base = head.get("baseFeePerGas")
        if base is None:  # a pre-London chain: legacy pricing
            return {"gasPrice": int(self.rpc("eth_gasPrice"), 16)}
        try:
            tip = int(self.rpc("eth_maxPriorityFeePerGas"), 16)
        except RpcError:
            tip = 0
        return {"maxFeePerGas": 2 * int(base, 16) + tip, "maxPriorityFeePerGas": tip}

    def _wait(self, tx_hash: str) -> dict[str, Any]:
        receipt = poll_receipt(
            lambda: self.rpc("eth_getTransactionReceipt", tx_hash),
            RECEIPT_TIMEOUT_S,
            RECEIPT_POLL_S,
        )
        if receipt is not None:
            return cast(dict[str, Any], receipt)
        # the transaction may have been dropped (outbid, node restart): ask the node for
        # the nonce next time instead of counting on from this one (review finding N1)
        self._nonce = None
        raise RpcError(
            f"transaction {tx_hash} was not mined within {RECEIPT_TIMEOUT_S:.0f} s; check it "
            "in a block explorer before sending it again"
        )

    def _refused(
        self, action: str, call: dict[str, Any], receipt: dict[str, Any], limit: int
    ) -> None:
        """A mined transaction that failed: the revert reason (replayed on the block before
        it), or out of gas when it used its whole limit and would pass with more."""
        block = int(receipt["blockNumber"], 16)
        try:
            self.rpc("eth_call", call, hex(block - 1))
        except Reverted as r:
            raise TransactionRejected(action, r.reason, hint_for(r.reason)) from None
        used = int(receipt["gasUsed"], 16)
        if used * 64 >= limit * 63:
            raise gas.OutOfGas(
                f"{action} ran out of gas: sent with a limit of {limit:,} and used {used:,}. "
                "Nothing changed but the fee was paid. Retry; if it recurs, set "
                "PERPDEX_GAS_MULTIPLIER=2 and report it"
            )
        raise TransactionRejected(action, "reverted", hint_for("reverted"))
