"""Shared fixtures: actors by role and one `protocol` fixture that deploys everything.

ape isolates every test with a chain snapshot, so the session-scoped deployment is paid
once and each test starts from it.

Every revert in the suite carries a reason string, and tests match those strings only. ape
would also print a call trace and map each revert (transaction or eth_call) to a source
traceback, about a second per revert (ape-vyper asks for the revert's dev message, which
walks the whole source AST): `pytest_configure` turns that off for the whole suite.
After every transaction to a contract ape also fetched the transaction's call trace to
print the contract's debug logs (vyper `print`, which no contract here uses: a trace
request and its decoding per transaction, and a code check). That is off too.
PERPDEX_SHOW_REVERT_TRACES=1 keeps both, for debugging a failing test.

ape waits for each receipt through web3's `wait_for_transaction_receipt`, which polls
every 100 ms; anvil (automine) answers a millisecond or two after the send, so a poll
that misses costs the transaction 100 ms. `pytest_configure` polls every 2 ms instead.

ape sent ~14 requests per transaction, most asking the node what it had already said:
`_NodeFacts` remembers per node the chain id, the automine flag, contract code, the block
gas limit and a zero base fee, forgetting each on the requests that can change it (its
docstring says which, and why nothing else does). And after a receipt ape asked for the
sender's nonce again to see it increase, which a mined receipt already proves: that
request is skipped when the receipt has a block.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import os
import threading
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import ape_ethereum.provider
import pytest
import requests
from ape.api.transactions import ReceiptAPI
from ape.exceptions import TransactionError
from ape.logging import logger as ape_logger
from ape_ethereum.trace import Trace
from web3.eth import Eth

from perpdex.deploy import Protocol, deploy_system, network_key
from perpdex.devtools.loopback import KeptConnection
from perpdex.units import WAD

RECEIPT_POLL_S = 0.002


class _NodeFacts:
    """What a node answers the same way until a known request changes it, remembered per
    node address below web3: every HTTP request of ape and web3 to the node passes
    `request`, which forgets a fact before sending any request that can change it (so
    every change is seen), and remembers the answers to the requests below:

    - `eth_chainId` (web3 validates each call and gas estimate against it): forgotten on
      `anvil_setChainId` and on a reset or state load (`RESETS`, which forget everything).
    - `anvil_getAutomine` (ape's isolation asks once per stateful fixture of every test):
      forgotten on `*_setAutomine`, `*_setIntervalMining` and RESETS.
    - `eth_getCode` at the latest block, when non-empty (ape checks that a contract has
      code before every call and transaction it sends to it, and after each transaction):
      since EIP-6780 (Cancun; anvil runs a later fork) no transaction removes the code of
      a contract created in an earlier one, so only three things change it: `*_setCode`
      (forgets all), RESETS, and `*_revert` to a snapshot taken before the code was read
      (forgets those read after the snapshot, or all for a snapshot it did not see
      taken). An EIP-7702 delegation (code 0xef0100...) can be replaced by a
      transaction, so it is never remembered.
    - the block gas limit (ape's "max" gas limit, read from the latest block for every
      transaction and call it builds): forgotten on `*_setBlockGasLimit`, RESETS, and on
      `*_revert` once one of those was sent to the node (before that, every snapshot has
      the gas limit the node started with).
    - the base fee when it is 0: anvil keeps a base fee started at 0 constant (it treats
      it as set deliberately), until `*_setNextBlockBaseFeePerGas` or RESETS.

    The last two are ape provider properties, remembered only for a provider whose
    transport is web3's `HTTPProvider` (the one whose requests `request` sees). Together
    ~8% of the unit session's CPU for the automine flag and gas limit, and most of ape's
    ~14 requests per transaction for the rest.
    """

    RESETS: ClassVar[frozenset[str]] = frozenset(
        {"anvil_reset", "hardhat_reset", "anvil_loadState", "anvil_setChainId"}
    )
    SET_CODE: ClassVar[frozenset[str]] = frozenset({"anvil_setCode", "hardhat_setCode"})
    SET_BASE_FEE: ClassVar[frozenset[str]] = frozenset(
        {"anvil_setNextBlockBaseFeePerGas", "hardhat_setNextBlockBaseFeePerGas"}
    )
    SET_AUTOMINE: ClassVar[frozenset[str]] = frozenset(
        {"evm_setAutomine", "anvil_setAutomine", "evm_setIntervalMining", "anvil_setIntervalMining"}
    )
    SET_GAS_LIMIT: ClassVar[frozenset[str]] = frozenset(
        {"evm_setBlockGasLimit", "anvil_setBlockGasLimit"}
    )
    SNAPSHOT: ClassVar[frozenset[str]] = frozenset({"evm_snapshot", "anvil_snapshot"})
    REVERT: ClassVar[frozenset[str]] = frozenset({"evm_revert", "anvil_revert"})
    REMEMBERED: ClassVar[frozenset[str]] = frozenset({"eth_chainId", "anvil_getAutomine"})
    DELEGATION = "0xef0100"

    def __init__(self) -> None:
        self.clock = itertools.count()
        self.answers: dict[str, dict[str, Any]] = {}  # node -> method -> result (REMEMBERED)
        self.code: dict[str, dict[str, tuple[int, Any]]] = {}  # node -> address -> (t, code)
        self.snapshots: dict[str, dict[int, int]] = {}  # node -> snapshot id -> t taken
        self.gas_limit: dict[str, int] = {}
        self.gas_limit_set: set[str] = set()  # nodes sent SET_GAS_LIMIT or RESETS
        self.zero_base_fee: set[str] = set()

    def forget_all(self, node: str) -> None:
        self.answers.pop(node, None)
        self.code.pop(node, None)
        self.snapshots.pop(node, None)
        self.gas_limit.pop(node, None)
        self.zero_base_fee.discard(node)

    @staticmethod
    def _snapshot_id(value: Any) -> int | None:
        try:
            return int(value, 16) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            return None

    def reverted(self, node: str, snapshot: Any) -> None:
        sid = self._snapshot_id(snapshot)  # anvil's first snapshot is 0x0
        taken = None if sid is None else self.snapshots.get(node, {}).get(sid)
        if taken is None:
            self.code.pop(node, None)
            return
        code = self.code.get(node, {})
        for address in [a for a, (t, _) in code.items() if t > taken]:
            del code[address]

    @staticmethod
    def _answer(result: Any) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": 0, "result": result}

    def _forget_before(self, node: str, method: str) -> None:
        """Drops what `method` may change, before it is sent."""
        if method in self.RESETS:
            self.forget_all(node)
            self.gas_limit_set.add(node)
        elif method in self.SET_CODE:
            self.code.pop(node, None)
        elif method in self.SET_BASE_FEE:
            self.zero_base_fee.discard(node)
        elif method in self.SET_AUTOMINE:
            self.answers.get(node, {}).pop("anvil_getAutomine", None)
        elif method in self.SET_GAS_LIMIT:
            self.gas_limit.pop(node, None)
            self.gas_limit_set.add(node)
        elif method in self.REVERT and node in self.gas_limit_set:
            self.gas_limit.pop(node, None)

    def request(self, provider: Any, method: str, params: Any, send: Any) -> Any:
        node = str(provider.endpoint_uri)
        if method in self.REMEMBERED and method in (known := self.answers.get(node, {})):
            return self._answer(known[method])
        at_latest = method == "eth_getCode" and (len(params) < 2 or params[1] in (None, "latest"))
        if at_latest:
            code = self.code.get(node, {}).get(str(params[0]).lower())
            if code is not None:
                return self._answer(code[1])
        self._forget_before(node, method)
        t = next(self.clock)  # before the request: a read racing a revert counts as older
        response = send()
        result = response.get("result") if isinstance(response, dict) else None
        if result is None:
            return response
        if method in self.REMEMBERED:
            self.answers.setdefault(node, {})[method] = result
        elif at_latest:
            if (
                isinstance(result, str)
                and result not in ("", "0x")
                and not (result.lower().startswith(self.DELEGATION))
            ):
                self.code.setdefault(node, {})[str(params[0]).lower()] = (t, result)
        elif method in self.SNAPSHOT:
            if (sid := self._snapshot_id(result)) is not None:
                self.snapshots.setdefault(node, {})[sid] = next(self.clock)
        elif method in self.REVERT:
            self.reverted(node, params[0] if params else None)
        return response

    def install(self) -> None:
        from ape_ethereum.provider import Web3Provider
        from web3.providers.rpc.rpc import HTTPProvider

        facts = self
        make_request = HTTPProvider.make_request
        base_fee = Web3Provider.base_fee.fget  # type: ignore[attr-defined]
        max_gas = Web3Provider.max_gas.fget  # type: ignore[attr-defined]

        def make_request_remembering(self: Any, method: str, params: Any) -> Any:
            return facts.request(self, method, params, lambda: make_request(self, method, params))

        def node_of(provider: Any) -> str | None:
            """The node address of an ape provider whose requests `request` sees."""
            try:
                transport = provider.web3.provider
            except Exception:  # not connected
                return None
            return str(transport.endpoint_uri) if isinstance(transport, HTTPProvider) else None

        def base_fee_remembered(self: Any) -> int:
            node = node_of(self)
            if node is not None and node in facts.zero_base_fee:
                return 0
            fee = int(base_fee(self))
            if fee == 0 and node is not None:
                facts.zero_base_fee.add(node)
            return fee

        def max_gas_remembered(self: Any) -> int:
            node = node_of(self)
            if node is None:
                return int(max_gas(self))
            if (limit := facts.gas_limit.get(node)) is None:
                limit = facts.gas_limit[node] = int(max_gas(self))
            return limit

        HTTPProvider.make_request = make_request_remembering  # type: ignore[method-assign]
        Web3Provider.base_fee = property(base_fee_remembered)  # type: ignore[assignment,method-assign]
        Web3Provider.max_gas = property(max_gas_remembered)  # type: ignore[assignment,method-assign]


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _direct_to_loopback() -> None:
    """requests looks up proxy settings in the environment for every request
    (`trust_env`: ~0.14 ms of CPU each, ~15% of a request); a local node is never reached
    through a proxy (the devnet's own RPC client does not use one either), so web3's
    sessions to loopback nodes skip the look-up. And web3's POSTs to a loopback node
    (every JSON-RPC request ape sends) skip requests altogether (`_LoopbackPost`)."""
    from web3._utils.http_session_manager import HTTPSessionManager

    session_for = HTTPSessionManager.cache_and_return_session

    def session_direct(self: Any, endpoint_uri: Any, *args: Any, **kwargs: Any) -> Any:
        session = session_for(self, endpoint_uri, *args, **kwargs)
        if urlsplit(str(endpoint_uri)).hostname in LOOPBACK:
            session.trust_env = False
        return session

    HTTPSessionManager.cache_and_return_session = session_direct  # type: ignore[method-assign]
    _LoopbackPost().install()


class _LoopbackPost:
    """web3's POST to a loopback http:// node through one kept `http.client` connection
    per node and thread, instead of requests: requests prepares each request, merges
    settings and goes through urllib3's pool, ~0.5 ms of CPU a request where this takes
    ~0.1 ms (ape sends several requests per transaction). What web3 sees is the same: the
    response body, `requests.HTTPError` for a status that is not 2xx (raise_for_status)
    and `requests.ConnectionError` / `requests.Timeout` when the node cannot be reached
    (web3's retry rules match those). As with urllib3, a kept connection the node closed
    is noticed before sending and replaced; a request is never sent twice. Streamed
    requests and other hosts go to web3's own code."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, int, str] | None] = {}  # endpoint -> host, port, path
        self.conns: dict[tuple[int, str, int], KeptConnection] = {}

    def _node(self, endpoint: str) -> tuple[str, int, str] | None:
        if endpoint not in self.nodes:
            parts = urlsplit(endpoint)
            loopback = parts.scheme == "http" and parts.hostname in LOOPBACK
            self.nodes[endpoint] = (
                (str(parts.hostname), parts.port or 80, parts.path or "/") if loopback else None
            )
        return self.nodes[endpoint]

    def _connection(self, host: str, port: int, timeout: float) -> KeptConnection:
        key = (threading.get_ident(), host, port)
        if key not in self.conns:
            self.conns[key] = KeptConnection(host, port, timeout)
        return self.conns[key]

    def post(self, endpoint: str, data: bytes, kwargs: dict[str, Any]) -> bytes | None:
        """The response body, or None when web3's own code must send this request."""
        node = self._node(endpoint)
        if node is None or kwargs.get("stream") or not isinstance(data, bytes):
            return None
        host, port, path = node
        timeout = kwargs.get("timeout") or 30
        timeout = float(max(timeout) if isinstance(timeout, tuple) else timeout)
        kept = self._connection(host, port, timeout)
        try:
            conn = kept.open()
            conn.request("POST", path, data, dict(kwargs.get("headers") or {}))
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            kept.close()
            if isinstance(e, TimeoutError):
                raise requests.Timeout(f"{endpoint}: {e}") from e
            raise requests.ConnectionError(f"{endpoint}: {e}") from e
        if response.will_close:
            kept.close()
        if not 200 <= response.status < 300:
            raise requests.HTTPError(f"{response.status} {response.reason} for url: {endpoint}")
        return body

    def install(self) -> None:
        from web3._utils.http_session_manager import HTTPSessionManager

        posts = self
        make_post_request = HTTPSessionManager.make_post_request

        def post_direct(self: Any, endpoint_uri: Any, data: Any, **kwargs: Any) -> bytes:
            body = posts.post(str(endpoint_uri), data, kwargs)
            if body is None:
                return make_post_request(self, endpoint_uri, data, **kwargs)
            return body

        HTTPSessionManager.make_post_request = post_direct  # type: ignore[method-assign]


def _forget_node_once() -> None:
    """At the end of a session ape drops the provider from its list of running nodes
    (~/.ape/processes/nodes.json, shared by every session on the machine, where entries
    of sessions that ended accumulate: 120 here) by comparing the provider's IPC path,
    HTTP and WS addresses with each entry, reading them again per entry (each read
    rebuilds the provider's settings from the config: ~3 s of CPU per session here). The
    same comparison, with the provider's three values read once."""
    from ape.managers.networks import NodeProcessMap

    def remove_provider(self: Any, provider: Any) -> None:
        choice = f"{provider.network.choice}:{provider.name}"
        mine: dict[str, Any] = {}  # read when first compared, as ape did

        def same(data: Any, attr: str) -> bool:
            if attr not in mine:
                mine[attr] = getattr(provider, attr, None)
            return bool(mine[attr] == getattr(data, attr, None))

        drop = {
            pid
            for pid, data in self.nodes.items()
            if data.network_choice == choice
            and all(same(data, a) for a in ("ipc_path", "http_uri", "ws_uri"))
        }
        self.nodes = {pid: node for pid, node in self.nodes.items() if pid not in drop}
        self.model_dump_file()

    NodeProcessMap.remove_provider = remove_provider  # type: ignore[method-assign]


def _log_sent(tx: Any, receipt: ReceiptAPI) -> None:
    """ape's post-send step without its contract debug logs (see the module docstring)."""
    ape_logger.info(f"Confirmed {receipt.txn_hash} (total fees paid = {receipt.total_fees_paid})")


def pytest_configure(config: pytest.Config) -> None:
    """Polls receipts every 2 ms; remembers what the node answers alike (`_NodeFacts`); skips
    ape's revert traces and source tracebacks (see the module docstring)."""
    wait = Eth.wait_for_transaction_receipt

    def wait_fast(self: Eth, tx_hash: Any, timeout: float = 120, poll_latency: float = 0.1) -> Any:
        return wait(self, tx_hash, timeout, min(poll_latency, RECEIPT_POLL_S))

    Eth.wait_for_transaction_receipt = wait_fast  # type: ignore[method-assign]
    _NodeFacts().install()
    _direct_to_loopback()
    _forget_node_once()
    await_nonce = ReceiptAPI._await_sender_nonce_increment

    def await_nonce_unless_mined(self: ReceiptAPI) -> None:
        if not (isinstance(self.block_number, int) and self.block_number >= 0):
            await_nonce(self)

    ReceiptAPI._await_sender_nonce_increment = await_nonce_unless_mined  # type: ignore[method-assign]
    if os.environ.get("PERPDEX_SHOW_REVERT_TRACES"):
        return
    ape_ethereum.provider._post_send_transaction = _log_sent
    Trace.show = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    TransactionError.source_traceback = property(  # type: ignore[assignment,method-assign]
        lambda self: None, lambda self, value: None
    )


@pytest.fixture(autouse=True)
def _keeper_logs_propagate() -> None:
    """A `perpdex keeper` command run in-process (CLI tests) gives the keepers' logger its
    own handler and stops propagation, for the whole process; reset it so a later test's
    caplog sees the keepers' lines whatever ran before."""
    lg = logging.getLogger("perpdex.keepers")
    lg.handlers = []
    lg.propagate = True


@pytest.fixture(scope="session")
def admin(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="session")
def trader(accounts: Any) -> Any:
    return accounts[1]


@pytest.fixture(scope="session")
def hedger(accounts: Any) -> Any:
    return accounts[2]


@pytest.fixture(scope="session")
def lp(accounts: Any) -> Any:
    return accounts[3]


@pytest.fixture(scope="session")
def liquidator(accounts: Any) -> Any:
    return accounts[4]


@pytest.fixture(scope="session")
def keeper(accounts: Any) -> Any:
    return accounts[5]


@pytest.fixture(scope="session")
def guardian(accounts: Any) -> Any:
    return accounts[6]


@pytest.fixture(scope="session")
def stranger(accounts: Any) -> Any:
    return accounts[7]


@pytest.fixture(scope="session")
def actors(
    admin: Any,
    trader: Any,
    hedger: Any,
    lp: Any,
    liquidator: Any,
    keeper: Any,
    guardian: Any,
    stranger: Any,
    protocol: Protocol,
    h: Helpers,
) -> dict[str, Any]:
    """Every session actor, the deployment and the helpers, by role. A module-scoped
    fixture that sends transactions requests this first: ape snapshots the chain per
    fixture scope, and the session fixtures must exist before the module's state."""
    return {
        "admin": admin,
        "trader": trader,
        "hedger": hedger,
        "lp": lp,
        "liquidator": liquidator,
        "keeper": keeper,
        "guardian": guardian,
        "stranger": stranger,
    }


@pytest.fixture(scope="session")
def protocol(admin: Any) -> Protocol:
    # local anvil, or the simulated testnet when `make test-fork` runs the suite on a fork
    return deploy_system(admin, key=network_key(), manifest=None)


@pytest.fixture
def vault_pool(protocol: Protocol, admin: Any) -> Any:
    """$2M in the vault from the admin (its first LP), so market orders have a counterparty."""
    units = 2_000_000 * 10**protocol.system.settlement_decimals
    protocol.token.mint(admin, units, sender=admin)
    protocol.token.approve(protocol.vault, units, sender=admin)
    protocol.vault.deposit(units, admin, sender=admin)
    return protocol.vault


@pytest.fixture(scope="session")
def ch(protocol: Protocol) -> Any:
    return protocol.clearinghouse


@pytest.fixture(scope="session")
def token(protocol: Protocol) -> Any:
    return protocol.token


class Helpers:
    """Small actions most tests need, named for what a trader does."""

    def __init__(self, p: Protocol) -> None:
        self.p = p
        self.unit = 10**p.system.settlement_decimals

    def usd(self, amount: int | str | Decimal) -> int:
        """Token units of `amount` dollars."""
        return int(Decimal(str(amount)) * self.unit)

    def fund(self, who: Any, dollars: int | str | Decimal) -> int:
        units = self.usd(dollars)
        self.p.token.mint(who, units, sender=who)
        self.p.token.approve(self.p.clearinghouse, 2**256 - 1, sender=who)
        return units

    def open(self, who: Any, name: str = "main", portfolio: bool = False) -> int:
        tx = self.p.clearinghouse.open_account(name, portfolio, sender=who)
        return int(tx.return_value)

    def funded_account(
        self, who: Any, dollars: int | str | Decimal, portfolio: bool = False, name: str = "main"
    ) -> int:
        acct = self.open(who, name, portfolio)
        units = self.fund(who, dollars)
        self.p.ops.deposit(acct, self.p.token, units, sender=who)
        return acct

    def price(self, symbol: str) -> int:
        """Current oracle median (WAD)."""
        return int(self.p.oracle.latest(self.p.market_id(symbol))[0])

    def set_price(self, symbol: str, usd: int | str | Decimal, who: Any) -> None:
        """Moves every mock feed of the market to `usd`."""
        answer = int(Decimal(str(usd)) * 10**8)
        for f in self.p.feeds[symbol]:
            f.set_answer(answer, sender=who)

    def trade(self, who: Any, acct: int, symbol: str, size: str | Decimal | int) -> Any:
        s = int(Decimal(str(size)) * WAD)
        bound = 2**256 - 1 if s > 0 else 0
        return self.p.clearinghouse.trade(acct, self.p.market_id(symbol), s, bound, sender=who)


@pytest.fixture(scope="session")
def h(protocol: Protocol) -> Helpers:
    return Helpers(protocol)
