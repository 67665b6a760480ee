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
is a `ReadClient` that also signs (locally, eth-account) and sends. Results are the ape
client's own types (`perpdex.sdk.results`), built by the same helpers (`_quote_view`,
`_market_info`, ...), and validation reuses `perpdex.sdk.client`'s functions, so the two
clients agree to the wei (tests/integration/test_lite_client.py). Every failure is a
`PerpdexError`: `TransactionRejected` (reason + hint) for a revert, `RpcError` for the
node; no web3 or ape exception type leaks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from perpdex.constants import ACCOUNT_EXISTS, ACCOUNT_IN_LIQUIDATION, ACCOUNT_PORTFOLIO
from perpdex.errors import DeploymentNotFound, PerpdexError, TransactionRejected
from perpdex.sdk import gas
from perpdex.sdk.client import (
    INDEX_BITS,
    MAX_NAME_BYTES,
    PerpdexClient,
    UnknownAccount,
    _size_wad,
    prepare_order,
)
from perpdex.sdk.handles import _address
from perpdex.sdk.hints import hint_for
from perpdex.sdk.lite.rpc import Contract, Reverted, Rpc, RpcError
from perpdex.sdk.manifest import Deployment
from perpdex.sdk.results import (
    DEFAULT_MAX_SLIPPAGE,
    AccountInfo,
    AccountSummary,
    Collateral,
    Fill,
    Margin,
    MarketInfo,
    OrderCheck,
    Quote,
    _fill,
    _margin,
    _market_info,
    _quote_view,
)
from perpdex.units import from_wad

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


class ReadClient:
    """Reads one deployment through the JSON-RPC node at `rpc_url`; signs nothing.

    Refuses a manifest of another chain (chain id, genesis) or one whose Clearinghouse has
    no code, with what to do next."""

    def __init__(self, rpc_url: str, deployment: Deployment, *, check: bool = True) -> None:
        self.rpc = Rpc(rpc_url)
        self.deployment = deployment
        if check:
            self._check_chain()
        self.clearinghouse = Contract(self.rpc, "Clearinghouse", deployment.clearinghouse)
        self.oracle = Contract(self.rpc, "OracleRouter", deployment.oracle)
        self.lens = (
            Contract(self.rpc, "ClearinghouseLens", deployment.lens) if deployment.lens else None
        )
        self._collaterals: dict[int, Collateral] = {}

    def _check_chain(self) -> None:
        dep = self.deployment
        where = dep.path or dep.network
        chain_id = int(self.rpc("eth_chainId"), 16)
        if chain_id != dep.chain_id:
            raise DeploymentNotFound(
                f"{where} is for chain {dep.chain_id} but {self.rpc.url} is chain {chain_id}; "
                "pick the matching --rpc or --deployment"
            )
        if dep.genesis is not None:
            here = str(self.rpc("eth_getBlockByNumber", "0x0", False)["hash"])
            if here.removeprefix("0x") != dep.genesis.removeprefix("0x"):
                raise DeploymentNotFound(
                    f"{where} belongs to another chain (genesis {dep.genesis[:12]}..., this "
                    f"node {here[:12]}...): redeploy (`perpdex devnet up`, `ape run deploy`) "
                    "or pass --deployment"
                )
        if self.rpc("eth_getCode", dep.clearinghouse, "latest") in ("0x", "0x0", None):
            raise DeploymentNotFound(
                f"no Clearinghouse code at {dep.clearinghouse} ({where}); the chain was reset "
                "since the deploy: redeploy (`ape run deploy --network <choice>`)"
            )

    # --- accounts ------------------------------------------------------------------------

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def account_id(self, owner: Any, index: int) -> int:
        """Id of `owner`'s sub-account number `index` (`owner << 96 | index`)."""
        return PerpdexClient.account_id(cast(Any, self), owner, index)

    def sub_account_count(self, owner: Any) -> int:
        return int(self.clearinghouse.call("sub_account_count", _address(owner)))

    def account(self, account: int) -> AccountInfo:
        """Owner, index, name and mode of an opened sub-account."""
        hdr = int(self.clearinghouse.call("account_header", account))
        if not hdr & ACCOUNT_EXISTS:
            raise UnknownAccount(
                f"account {account:#x} is not open; open one with `perpdex open-account NAME` "
                "or list yours with `perpdex account`"
            )
        return AccountInfo(
            id=account,
            owner=_address(f"{account >> INDEX_BITS:#042x}"),
            index=account & (2**INDEX_BITS - 1),
            name=str(self.clearinghouse.call("account_name", account)),
            portfolio=bool(hdr & ACCOUNT_PORTFOLIO),
            in_liquidation=bool(hdr & ACCOUNT_IN_LIQUIDATION),
        )

    def accounts(self, owner: Any) -> list[AccountInfo]:
        who = _address(owner)
        return [self.account(self.account_id(who, i)) for i in range(self.sub_account_count(who))]

    # --- collateral and margin -------------------------------------------------------------

    def collaterals(self) -> list[Collateral]:
        """Listed collateral tokens in index order (index 0: the settlement token)."""
        count = int(self.clearinghouse.call("collateral_count"))
        for i in range(count):
            if i not in self._collaterals:
                address = _address(self.clearinghouse.call("collateral_token", i))
                token = Contract(self.rpc, "MockERC20", address)  # only the ERC-20 part
                self._collaterals[i] = Collateral(
                    index=i,
                    symbol=str(token.call("symbol")),
                    address=address,
                    decimals=int(token.call("decimals")),
                )
        return [self._collaterals[i] for i in range(count)]

    def collateral(self, token: str = "USDC") -> Collateral:
        return PerpdexClient.collateral(cast(Any, self), token)

    def balances(self, account: int) -> dict[str, Decimal]:
        """Collateral balances by token symbol, in token amounts (USDC: dollars)."""
        return {
            c.symbol: from_wad(int(self.clearinghouse.call("balance_of", account, c.index)))
            for c in self.collaterals()
        }

    def margin(self, account: int) -> Margin:
        return _margin(self.clearinghouse.call("account_margin", account))

    def loss_cap(self, account: int) -> Decimal:
        return from_wad(int(self.clearinghouse.call("loss_cap", account)))

    def summary(self, account: int) -> AccountSummary:
        """Info, balances, margin and loss cap of one sub-account."""
        return AccountSummary(
            info=self.account(account),
            balances=self.balances(account),
            margin=self.margin(account),
            loss_cap=self.loss_cap(account),
        )

    def position_size(self, account: int, market: str | int) -> Decimal:
        m = self.market_id(market)
        return from_wad(int(self.clearinghouse.call("position", account, m)[0]))

    # --- markets and quotes ------------------------------------------------------------------

    def market_id(self, market: str | int) -> int:
        return PerpdexClient.market_id(cast(Any, self), market)

    def markets(self) -> list[MarketInfo]:
        """Every listed market with its oracle price, mark, funding and open interest."""
        out = []
        for m, symbol in enumerate(self.deployment.markets):
            try:
                oracle = self.oracle.call("latest", m)
            except TransactionRejected:
                oracle = None
            out.append(
                _market_info(
                    m,
                    symbol,
                    self.clearinghouse.call("mark", m),
                    self.clearinghouse.call("open_interest", m),
                    self.clearinghouse.call("market_params", m),
                    oracle,
                )
            )
        return out

    def quote(
        self,
        account: int,
        market: str | int,
        size: Decimal | int | str,
        *,
        block: int | str = "latest",
    ) -> Quote:
        """What a market order of `size` (signed base units) would do now
        (`ClearinghouseLens.quote`). Signs nothing."""
        lens = self._require_lens()
        m = self.market_id(market)
        delta = _size_wad(size)
        try:
            raw = lens.call("quote", account, m, delta, block=block)
        except TransactionRejected as r:
            raise TransactionRejected("quote", r.reason, r.hint) from None
        number = block if isinstance(block, int) else None
        return Quote(
            account, m, self.deployment.markets[m], from_wad(delta), _quote_view(raw), number
        )

    def check_order(
        self,
        account: int,
        market: str | int,
        size: Decimal | int | str,
        *,
        max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE,
    ) -> OrderCheck:
        """Would this market order be accepted in the next block, and if not why; and the
        largest one in the same direction that would be: `PerpdexClient.check_order`
        itself, run on this client's handles (eth_call simulations; signs nothing)."""
        return PerpdexClient.check_order(
            cast(Any, self), account, market, size, max_slippage=max_slippage
        )

    def _call_reason(self, method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        """None if `method(*args)` from `sender` would succeed in the next block, else the
        revert reason (an eth_call; nothing is sent)."""
        call = {"from": sender, "to": method.contract.address, "data": method.encode_input(*args)}
        try:
            self.rpc("eth_call", call, "pending")
        except Reverted as r:
            return r.reason
        return None

    def _require_lens(self) -> Contract:
        if self.lens is None:
            where = self.deployment.path or self.deployment.network
            raise DeploymentNotFound(
                f"{where} records no lens contract; finish the deployment "
                "(`ape run deploy --network <choice>`) and retry"
            )
        return self.lens


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

    # --- accounts and collateral --------------------------------------------------------------

    def open_account(self, name: str, portfolio: bool = False) -> int:
        """Open the signer's next sub-account; returns its id."""
        if len(name.encode()) > MAX_NAME_BYTES:
            raise PerpdexError(
                f"account name {name!r} is {len(name.encode())} bytes; "
                f"shorten it to {MAX_NAME_BYTES}"
            )
        receipt = self._send("open account", self.clearinghouse, "open_account", name, portfolio)
        return int(self.clearinghouse.logs("AccountOpened", receipt.raw)[0].account)

    def deposit(self, account: int, amount: Decimal | int | str, token: str = "USDC") -> Receipt:
        """Deposit `amount` of `token` into any open account; approves first if needed."""
        col = self.collateral(token)
        units = PerpdexClient._units(cast(Any, self), amount, col)
        erc20 = Contract(self.rpc, "MockERC20", col.address)
        ch = self.clearinghouse.address
        if int(erc20.call("allowance", self.address, ch)) < units:
            self._send("approve", erc20, "approve", ch, units)
        return self._send("deposit", self.clearinghouse, "deposit", account, col.address, units)

    def withdraw(
        self, account: int, amount: Decimal | int | str, token: str = "USDC", receiver: Any = None
    ) -> Receipt:
        """Withdraw `amount` of `token` to `receiver` (default: the signer). Owner only."""
        col = self.collateral(token)
        units = PerpdexClient._units(cast(Any, self), amount, col)
        to = _address(receiver if receiver is not None else self.address)
        return self._send(
            "withdraw", self.clearinghouse, "withdraw", account, col.address, units, to
        )

    # --- trading ------------------------------------------------------------------------------

    def trade(
        self,
        account: int,
        market: str | int,
        size: Decimal | int | str,
        *,
        max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE,
        acceptable_price: Decimal | int | str | None = None,
        quote: Quote | None = None,
    ) -> Fill:
        """Market order of `size` (signed base units: positive buys) against the vault,
        bounded by `acceptable_price` (dollars) or the quote moved `max_slippage`."""
        m, delta, quote, bound = prepare_order(
            self, account, market, size, max_slippage, acceptable_price, quote
        )
        receipt = self._send("trade", self.clearinghouse, "trade", account, m, delta, bound)
        fills = [
            f
            for f in self.clearinghouse.logs("Fill", receipt.raw)
            if int(f.account) == account and int(f.market) == m
        ]
        if not fills:
            raise PerpdexError(
                f"trade {receipt.tx_hash} emitted no Fill for this account; check the "
                "transaction in a block explorer"
            )
        return _fill(fills[-1], quote, bound, receipt.tx_hash, receipt.block_number)

    def close(
        self, account: int, market: str | int, *, max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE
    ) -> Fill:
        """Close the whole position on `market`; the Fill carries the realised PnL."""
        m = self.market_id(market)
        size = self.position_size(account, m)
        if size == 0:
            raise PerpdexError(
                f"account {account:#x} has no {self.deployment.markets[m]} position to close; "
                "`perpdex portfolio` lists its positions"
            )
        return self.trade(account, m, size.copy_negate(), max_slippage=max_slippage)

    def _require_min_position(self, account: int, m: int, delta: int, quote: Quote) -> None:
        from perpdex.sdk import math as pm

        size = int(self.clearinghouse.call("position", account, m)[0])
        try:
            pm.require_min_position(size + delta, quote.view.oracle_price)
        except pm.Revert as err:
            raise TransactionRejected("trade", str(err), hint_for(str(err))) from err

    # --- plumbing -----------------------------------------------------------------------------

    def _send(self, action: str, contract: Contract, name: str, *args: Any) -> Receipt:
        """Preflight, sign, send and wait for `contract.name(*args)`."""
        call = {
            "from": self.address,
            "to": contract.address,
            "data": contract.fn(name).encode(*args),
        }
        try:
            self.rpc("eth_call", call, "latest")  # a revert: refused before signing
            estimate = int(self.rpc("eth_estimateGas", call), 16)
        except Reverted as r:
            raise TransactionRejected(action, r.reason, hint_for(r.reason)) from None
        limit = gas.padded_gas(estimate)
        tx: dict[str, Any] = {
            "chainId": self._chain_id,
            "nonce": self._next_nonce(),
            "to": contract.address,
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
        deadline = time.monotonic() + RECEIPT_TIMEOUT_S
        while time.monotonic() < deadline:
            receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return cast(dict[str, Any], receipt)
            time.sleep(RECEIPT_POLL_S)
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
