"""Shared fixtures: actors by role and one `protocol` fixture that deploys everything.

ape isolates every test with a chain snapshot, so the session-scoped deployment is paid
once and each test starts from it.

Every revert in the suite carries a reason string, and tests match those strings only. ape
would also print a call trace and map each revert (transaction or eth_call) to a source
traceback, about a second per revert (ape-vyper asks for the revert's dev message, which
walks the whole source AST): `pytest_configure` turns that off for the whole suite.
PERPDEX_SHOW_REVERT_TRACES=1 keeps it, for debugging a failing test.

ape waits for each receipt through web3's `wait_for_transaction_receipt`, which polls
every 100 ms; anvil (automine) answers a millisecond or two after the send, so a poll
that misses costs the transaction 100 ms. `pytest_configure` polls every 2 ms instead.

Two node settings ape asks anvil for again and again are remembered (`_NodeSettings`):
whether it automines (ape's isolation asks once per stateful fixture of every test) and
the block gas limit (ape's "max" gas limit, asked for every transaction and call it
builds): ~8% of the unit session's CPU. A request that changes either (`*_setAutomine`,
`*_setIntervalMining`, `*_setBlockGasLimit`, or `evm_revert`, which can restore another
gas limit) through ape's provider forgets the remembered value.
"""

from __future__ import annotations

import logging
import os
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from ape.exceptions import TransactionError
from ape_ethereum.trace import Trace
from web3.eth import Eth

from perpdex.deploy import Protocol, deploy_system, network_key
from perpdex.units import WAD

RECEIPT_POLL_S = 0.002


class _NodeSettings:
    """The node's automine flag and block gas limit as last read, per provider object and
    node address (a provider object may be reconnected elsewhere).

    Every request ape's provider sends passes `forget` first: one that can change a value
    drops that provider's copy, so the next read asks the node again."""

    AUTOMINE = "anvil_getAutomine"
    MAX_GAS = "max_gas"
    CHANGES: ClassVar[dict[str, str]] = {
        "evm_setAutomine": AUTOMINE,
        "anvil_setAutomine": AUTOMINE,
        "evm_setIntervalMining": AUTOMINE,
        "anvil_setIntervalMining": AUTOMINE,
        "evm_setBlockGasLimit": MAX_GAS,
        "anvil_setBlockGasLimit": MAX_GAS,
        "evm_revert": MAX_GAS,
    }

    def __init__(self) -> None:
        self.values: dict[tuple[int, str, str], Any] = {}

    @staticmethod
    def _key(provider: Any, what: str) -> tuple[int, str, str]:
        try:
            where = str(provider.uri)
        except Exception:  # no address: not connected, or not an RPC node
            where = ""
        return id(provider), where, what

    def forget(self, provider: Any, rpc: str) -> None:
        if (what := self.CHANGES.get(rpc)) is not None:
            for key in [k for k in self.values if k[0] == id(provider) and k[2] == what]:
                del self.values[key]

    def remember(self, provider: Any, what: str, read: Any) -> Any:
        key = self._key(provider, what)
        if key not in self.values:
            self.values[key] = read()
        return self.values[key]

    def install(self) -> None:
        from ape_ethereum.provider import Web3Provider

        settings = self
        make_request = Web3Provider.make_request
        max_gas = Web3Provider.max_gas.fget  # type: ignore[attr-defined]

        def make_request_remembering(self: Any, rpc: str, parameters: Any = None) -> Any:
            if rpc == settings.AUTOMINE:
                return settings.remember(self, rpc, lambda: make_request(self, rpc, parameters))
            settings.forget(self, rpc)
            return make_request(self, rpc, parameters)

        def max_gas_remembered(self: Any) -> int:
            return int(settings.remember(self, settings.MAX_GAS, lambda: max_gas(self)))

        Web3Provider.make_request = make_request_remembering  # type: ignore[method-assign]
        Web3Provider.max_gas = property(max_gas_remembered)  # type: ignore[assignment,method-assign]


def pytest_configure(config: pytest.Config) -> None:
    """Polls receipts every 2 ms; remembers the node's automine flag and gas limit; skips
    ape's revert traces and source tracebacks (see the module docstring)."""
    wait = Eth.wait_for_transaction_receipt

    def wait_fast(self: Eth, tx_hash: Any, timeout: float = 120, poll_latency: float = 0.1) -> Any:
        return wait(self, tx_hash, timeout, min(poll_latency, RECEIPT_POLL_S))

    Eth.wait_for_transaction_receipt = wait_fast  # type: ignore[method-assign]
    _NodeSettings().install()
    if os.environ.get("PERPDEX_SHOW_REVERT_TRACES"):
        return
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
