"""A typed client for one perpdex deployment: accounts, collateral and margin figures.

The client reads the contract addresses from a deployment manifest
(`deployments/<network>.json`, written by `perpdex.deploy.deploy_system`) or from a
`Protocol` (the test fixture), and talks to them through ape, so it must be used inside an
active ape network context (`ape console`, `ape test`, `networks.parse_network_choice`).

Amounts go in and come out as `Decimal` token amounts or dollars; the client converts to
token units (e.g. 6 decimals for USDC) and from the chain's USD WAD (1e18). A transaction
the contracts refuse raises `TransactionRejected` whose `hint` comes from `REVERT_HINTS`,
the one table of known revert strings, shared with the CLI.

    with networks.parse_network_choice("ethereum:local:node"):
        client = PerpdexClient.from_manifest("local", signer=accounts.test_accounts[1])
        acct = client.open_account("basis")
        client.deposit(acct, Decimal("1000"))
        print(client.summary(acct).margin.equity)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.config import ROOT
from perpdex.errors import DeploymentNotFound, PerpdexError, TransactionRejected
from perpdex.units import from_wad, to_units

if TYPE_CHECKING:
    from ape.api import AccountAPI, ReceiptAPI

    from perpdex.deploy import Protocol

__all__ = [
    "REVERT_HINTS",
    "AccountInfo",
    "AccountSummary",
    "Collateral",
    "Deployment",
    "Margin",
    "PerpdexClient",
    "UnknownAccount",
    "hint_for",
    "rejected",
]

# Account header flags (contracts/modules/constants.vy, low byte of the header word).
ACCOUNT_EXISTS = 1
ACCOUNT_PORTFOLIO = 2
ACCOUNT_IN_LIQUIDATION = 4
INDEX_BITS = 96
MAX_NAME_BYTES = 32

# --- revert strings -> what to do next ---------------------------------------------------

#: Every revert string a user can meet, mapped to the next step. The SDK puts the hint on
#: `TransactionRejected`; the CLI prints it. Keys match the contracts exactly
#: (tests/integration/test_sdk_client.py checks each key still exists in contracts/).
REVERT_HINTS: dict[str, str] = {
    # accounts and collateral
    "clearinghouse: insufficient balance": (
        "deposit more or withdraw less; `perpdex account` shows the balances"
    ),
    "clearinghouse: below initial margin": (
        "reduce positions or deposit first; `perpdex account` shows the initial margin"
    ),
    "clearinghouse: not account owner": (
        "only the owner of the account can do this; sign as the owner "
        "(CLI: --account <owner alias>)"
    ),
    "clearinghouse: not authorized": (
        "only the owner or an operator it approved can trade this account; sign as the "
        "owner (CLI: --account <owner alias>) or have the owner call set_operator"
    ),
    "clearinghouse: unknown account": (
        "open the sub-account first (`perpdex open-account NAME`) or check the id with "
        "`perpdex account`"
    ),
    "clearinghouse: zero amount": "give an amount above zero",
    "clearinghouse: same account": "pick two different sub-accounts",
    "clearinghouse: unknown token": (
        "use a listed collateral token; `perpdex account` shows the balances by token"
    ),
    "clearinghouse: zero receiver": "give the receiver's address",
    "clearinghouse: zero operator": "give the operator's address",
    "clearinghouse: account in liquidation": (
        "the account is frozen until its liquidation auction settles; wait for it"
    ),
    "clearinghouse: deposit cap reached": (
        "this token's deposit cap is full; deposit less or use the settlement token"
    ),
    "clearinghouse: nothing received": (
        "the token moved nothing; check the token address and your wallet balance"
    ),
    "clearinghouse: transfer failed": (
        "the token refused the transfer; check your wallet balance and allowance"
    ),
    "clearinghouse: mode unchanged": "the account already uses that margin mode",
    "clearinghouse: mode switch leaves account under-margined": (
        "reduce positions or deposit before switching margin mode"
    ),
    # trading
    "clearinghouse: paused": (
        "the exchange is paused by its guardian; only risk-reducing orders work until it resumes"
    ),
    "clearinghouse: market paused": "this market is paused; trade another market or wait",
    "clearinghouse: unknown market": "use a listed market; `perpdex quote` lists them",
    "clearinghouse: zero size": "give a size above zero",
    "clearinghouse: not reduce-only": "only orders that shrink the position are allowed here",
    "clearinghouse: too many positions": (
        "close a position first, or trade from another sub-account"
    ),
    "clearinghouse: price worse than acceptable": (
        "the price moved past your limit; quote again and retry, or widen the limit"
    ),
    "clearinghouse: open interest cap reached": (
        "the market's open-interest cap is full; trade smaller or wait for it to free up"
    ),
    "clearinghouse: vault exposure cap reached": (
        "the vault cannot take more of this side; trade smaller or take the other side"
    ),
    "clearinghouse: insufficient pool cash": (
        "the liquidity vault is short of cash; trade smaller or wait for LP deposits"
    ),
    "pricing: price impact too large": "trade smaller; this order would move the price too far",
    "clearinghouse: sequencer down": "the L2 sequencer is down; wait until it is back up",
    "clearinghouse: sequencer grace period": (
        "the sequencer restarted recently; wait until its grace period has passed"
    ),
    "clearinghouse: oracle degraded": (
        "too few price sources agree right now; retry after the next price update"
    ),
    "oracle: stale price": "the price feeds are stale; retry after the next price update",
    # loss caps
    "clearinghouse: no loss cap": "the account has no loss cap; set one with set_loss_cap",
    "clearinghouse: equity above loss cap": (
        "the account is still above its loss cap; there is nothing to trigger"
    ),
    # the settlement token (snekmate's erc20 and the mocks)
    "erc20: transfer amount exceeds balance": (
        "your wallet holds less of this token; deposit less or fund the wallet first"
    ),
    "erc20: insufficient allowance": (
        "approve the clearinghouse for this token first (PerpdexClient.deposit does it)"
    ),
    "mock: transfer amount exceeds balance": (
        "your wallet holds less of this token; deposit less or fund the wallet first"
    ),
    "mock: insufficient allowance": (
        "approve the clearinghouse for this token first (PerpdexClient.deposit does it)"
    ),
    # roles
    "access_control: account is missing role": (
        "this needs a governance role; sign with the admin, risk or guardian account"
    ),
    "pausable: contract is paused": "the exchange is paused; wait until the guardian resumes it",
}

UNKNOWN_REVERT_HINT = (
    "the contract gave no known reason; check the account with `perpdex account` and that "
    "--network and --deployment point at the right chain"
)


def hint_for(reason: str) -> str:
    """What to do next after the contracts refused a transaction with `reason`."""
    return REVERT_HINTS.get(reason.strip(), UNKNOWN_REVERT_HINT)


def rejected(action: str, err: Exception) -> TransactionRejected:
    """`TransactionRejected` for an ape `ContractLogicError` raised while doing `action`."""
    reason = str(getattr(err, "revert_message", None) or err).strip() or "reverted"
    return TransactionRejected(action, reason, hint_for(reason))


class UnknownAccount(PerpdexError):
    """The account id names no opened sub-account."""


# --- manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """The addresses of one deployment, as recorded in `deployments/<network>.json`."""

    network: str
    chain_id: int
    token: str
    oracle: str
    clearinghouse: str
    clearinghouse_ops: str
    clearinghouse_admin: str
    markets: tuple[str, ...]
    settlement_decimals: int
    feeds: dict[str, list[str]] = field(default_factory=dict)
    sequencer_feed: str | None = None
    path: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a manifest file."""
        if not path.exists():
            raise DeploymentNotFound(
                f"no deployment manifest at {path}; deploy first (`ape run deploy --network "
                "<choice>`) or pass --deployment <manifest path>"
            )
        try:
            data = json.loads(path.read_text())
            c = data["contracts"]
            return cls(
                network=str(data.get("network", path.stem)),
                chain_id=int(data["chain_id"]),
                token=str(c["token"]),
                oracle=str(c["oracle"]),
                clearinghouse=str(c["clearinghouse"]),
                clearinghouse_ops=str(c["clearinghouse_ops"]),
                clearinghouse_admin=str(c["clearinghouse_admin"]),
                markets=tuple(str(s) for s in data["markets"]),
                settlement_decimals=int(data["settlement_decimals"]),
                feeds={str(k): [str(a) for a in v] for k, v in c.get("feeds", {}).items()},
                sequencer_feed=c.get("sequencer_feed"),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DeploymentNotFound(
                f"{path} is incomplete (missing or bad field {e}); re-run the deploy to "
                "finish it (`ape run deploy --network <choice>`)"
            ) from e

    @classmethod
    def from_protocol(cls, protocol: Protocol) -> Deployment:
        """The manifest of a deployment held as a `Protocol` (tests, scripts)."""
        from ape import chain

        ops_half = str(protocol.clearinghouse.OPS())
        return cls(
            network=protocol.network,
            chain_id=chain.chain_id,
            token=str(protocol.token.address),
            oracle=str(protocol.oracle.address),
            clearinghouse=str(protocol.clearinghouse.address),
            clearinghouse_ops=ops_half,
            # read on the Ops half itself: values do not come back through the proxy
            clearinghouse_admin=str(_at("ClearinghouseOps", ops_half).ADMIN()),
            markets=tuple(protocol.symbols),
            settlement_decimals=protocol.system.settlement_decimals,
            feeds={s: [str(f.address) for f in fs] for s, fs in protocol.feeds.items()},
            sequencer_feed=str(protocol.sequencer.address) if protocol.sequencer else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest layout `deploy_system` writes."""
        return {
            "network": self.network,
            "chain_id": self.chain_id,
            "contracts": {
                "token": self.token,
                "oracle": self.oracle,
                "clearinghouse": self.clearinghouse,
                "clearinghouse_ops": self.clearinghouse_ops,
                "clearinghouse_admin": self.clearinghouse_admin,
                "feeds": self.feeds,
                "sequencer_feed": self.sequencer_feed,
            },
            "markets": list(self.markets),
            "settlement_decimals": self.settlement_decimals,
        }

    def write(self, path: Path) -> Path:
        """Save as a manifest file (creates the folder)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def resolve_manifest(spec: str | Path | None = None) -> Path:
    """Manifest path for a path, a network key (`local`, `arbitrum-sepolia`) or, with None,
    the connected ape network."""
    from perpdex.deploy import manifest_path, network_key

    if spec is None:
        return manifest_path(network_key())
    text = str(spec)
    if isinstance(spec, Path) or text.endswith(".json") or "/" in text or "\\" in text:
        return Path(text).expanduser()
    return manifest_path(text)


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collateral:
    """A listed collateral token (index 0 is the settlement token)."""

    index: int
    symbol: str
    address: str
    decimals: int


@dataclass(frozen=True)
class AccountInfo:
    """One sub-account: its id is `owner << 96 | index`."""

    id: int
    owner: str
    index: int
    name: str
    portfolio: bool
    in_liquidation: bool

    @property
    def mode(self) -> str:
        """`portfolio` (scenario margin) or `isolated`."""
        return "portfolio" if self.portfolio else "isolated"


@dataclass(frozen=True)
class Margin:
    """The `account_margin` view at the cached marks, in dollars."""

    equity: Decimal
    initial: Decimal
    maintenance: Decimal
    isolated: Decimal
    notional: Decimal

    @property
    def free(self) -> Decimal:
        """Equity above the initial requirement: what can still be withdrawn or risked."""
        return self.equity - self.initial

    @property
    def health(self) -> Decimal | None:
        """Equity over maintenance requirement (below 1: liquidatable); None without risk."""
        if self.maintenance == 0:
            return None
        return self.equity / self.maintenance


@dataclass(frozen=True)
class AccountSummary:
    """Everything `perpdex account` shows for one sub-account."""

    info: AccountInfo
    balances: dict[str, Decimal]
    margin: Margin


# --- the client -------------------------------------------------------------------------------


@cache
def _contract_type(name: str) -> Any:
    from ape import Project, project

    proj = project if Path(project.path).resolve() == ROOT else Project(ROOT)
    return getattr(proj, name).contract_type


def _at(name: str, address: str) -> Any:
    from ape import Contract

    return Contract(address, contract_type=_contract_type(name))


def _address(who: Any) -> str:
    from eth_utils import is_address, to_checksum_address

    text = str(getattr(who, "address", who))
    if not is_address(text):
        raise PerpdexError(f"{text!r} is not an address; give a 0x-prefixed 20-byte address")
    return str(to_checksum_address(text))


class PerpdexClient:
    """Accounts, collateral and margin on one perpdex deployment.

    Build it with `from_manifest` (scripts, CLI) or `from_protocol` (tests) inside an
    active ape network context. `signer` is the ape account that sends transactions; a
    client without one can only read. With `preflight` (the default) every transaction is
    first run as an `eth_call`: one that would revert raises `TransactionRejected` before
    anything is signed, and ape prints no revert call trace.
    """

    def __init__(
        self, deployment: Deployment, signer: AccountAPI | None = None, *, preflight: bool = True
    ) -> None:
        from ape import chain

        if chain.chain_id != deployment.chain_id:
            where = deployment.path or deployment.network
            raise DeploymentNotFound(
                f"{where} is for chain {deployment.chain_id} but the connected network is "
                f"chain {chain.chain_id}; pick the matching --network or --deployment"
            )
        if not chain.provider.get_code(deployment.clearinghouse):
            where = deployment.path or deployment.network
            raise DeploymentNotFound(
                f"no Clearinghouse code at {deployment.clearinghouse} ({where}); the chain was "
                "reset since the deploy: redeploy (`ape run deploy --network <choice>`)"
            )
        self.deployment = deployment
        self.signer = signer
        self.preflight = preflight
        self.clearinghouse = _at("Clearinghouse", deployment.clearinghouse)
        self.ops = _at("ClearinghouseOps", deployment.clearinghouse)
        self._collaterals: dict[int, Collateral] = {}

    @classmethod
    def from_manifest(
        cls,
        manifest: str | Path | None = None,
        signer: AccountAPI | None = None,
        *,
        preflight: bool = True,
    ) -> PerpdexClient:
        """Client for the manifest at a path, of a network key, or (None) of the connected
        network."""
        return cls(Deployment.load(resolve_manifest(manifest)), signer, preflight=preflight)

    @classmethod
    def from_protocol(
        cls, protocol: Protocol, signer: AccountAPI | None = None, *, preflight: bool = True
    ) -> PerpdexClient:
        """Client for a deployment held as a `Protocol` (the `protocol` test fixture)."""
        return cls(Deployment.from_protocol(protocol), signer, preflight=preflight)

    def with_signer(self, signer: AccountAPI | None) -> PerpdexClient:
        """The same deployment, signing as another account."""
        return type(self)(self.deployment, signer, preflight=self.preflight)

    # --- accounts ------------------------------------------------------------------------

    def account_id(self, owner: Any, index: int) -> int:
        """Id of `owner`'s sub-account number `index` (`owner << 96 | index`)."""
        if not 0 <= index < 2**INDEX_BITS:
            raise PerpdexError(
                f"sub-account index {index} is out of range; use 0 to 2**{INDEX_BITS} - 1"
            )
        return (int(_address(owner), 16) << INDEX_BITS) | index

    def sub_account_count(self, owner: Any) -> int:
        """How many sub-accounts `owner` has opened (their indices are 0 .. count - 1)."""
        return int(self.clearinghouse.sub_account_count(_address(owner)))

    def account(self, account: int) -> AccountInfo:
        """Owner, index, name and mode of an opened sub-account."""
        hdr = int(self.clearinghouse.account_header(account))
        if not hdr & ACCOUNT_EXISTS:
            raise UnknownAccount(
                f"account {account:#x} is not open; open one with `perpdex open-account NAME` "
                "or list yours with `perpdex account`"
            )
        return AccountInfo(
            id=account,
            owner=_address(f"{account >> INDEX_BITS:#042x}"),
            index=account & (2**INDEX_BITS - 1),
            name=str(self.clearinghouse.account_name(account)),
            portfolio=bool(hdr & ACCOUNT_PORTFOLIO),
            in_liquidation=bool(hdr & ACCOUNT_IN_LIQUIDATION),
        )

    def accounts(self, owner: Any = None) -> list[AccountInfo]:
        """Every sub-account of `owner` (default: the signer), in index order."""
        who = _address(owner if owner is not None else self._require_signer("list accounts"))
        return [self.account(self.account_id(who, i)) for i in range(self.sub_account_count(who))]

    def open_account(self, name: str, portfolio: bool = False) -> int:
        """Open the signer's next sub-account; returns its id.

        `portfolio=True` selects portfolio (scenario) margin, otherwise isolated margin.
        """
        if len(name.encode()) > MAX_NAME_BYTES:
            raise PerpdexError(
                f"account name {name!r} is {len(name.encode())} bytes; "
                f"shorten it to {MAX_NAME_BYTES}"
            )
        receipt = self._send("open account", self.clearinghouse.open_account, name, portfolio)
        opened = receipt.decode_logs(self.clearinghouse.AccountOpened)
        return int(opened[0].account)

    def set_operator(self, account: int, operator: Any, allowed: bool) -> ReceiptAPI:
        """Allow (or forbid) `operator` to trade `account`. Operators never withdraw."""
        return self._send(
            "set operator", self.ops.set_operator, account, _address(operator), allowed
        )

    def is_operator(self, account: int, operator: Any) -> bool:
        """Whether `operator` may trade `account`."""
        return bool(self.clearinghouse.is_operator(account, _address(operator)))

    # --- collateral ------------------------------------------------------------------------

    def collaterals(self) -> list[Collateral]:
        """Listed collateral tokens in index order (index 0: the settlement token)."""
        count = int(self.clearinghouse.collateral_count())
        for i in range(count):
            if i not in self._collaterals:
                address = str(self.clearinghouse.collateral_token(i))
                token = _at("MockERC20", address)  # any ERC-20: only symbol/decimals are read
                self._collaterals[i] = Collateral(
                    index=i,
                    symbol=str(token.symbol()),
                    address=address,
                    decimals=int(token.decimals()),
                )
        return [self._collaterals[i] for i in range(count)]

    def collateral(self, token: str = "USDC") -> Collateral:
        """A listed collateral token by symbol (any case) or address."""
        listed = self.collaterals()
        for c in listed:
            if token.upper() == c.symbol.upper() or token.lower() == c.address.lower():
                return c
        names = ", ".join(c.symbol for c in listed)
        raise PerpdexError(f"{token!r} is not a listed collateral token; use one of: {names}")

    def deposit(self, account: int, amount: Decimal | int | str, token: str = "USDC") -> ReceiptAPI:
        """Deposit `amount` of `token` (e.g. Decimal("250.5") USDC) into any open account.

        Approves the clearinghouse for the amount first if the allowance is short.
        """
        col = self.collateral(token)
        units = self._units(amount, col)
        signer = self._require_signer("deposit")
        erc20 = _at("MockERC20", col.address)
        if int(erc20.allowance(signer.address, self.clearinghouse.address)) < units:
            self._send("approve", erc20.approve, self.clearinghouse.address, units)
        return self._send("deposit", self.ops.deposit, account, col.address, units)

    def withdraw(
        self,
        account: int,
        amount: Decimal | int | str,
        token: str = "USDC",
        receiver: Any = None,
    ) -> ReceiptAPI:
        """Withdraw `amount` of `token` to `receiver` (default: the signer). Owner only; the
        account must stay above initial margin."""
        col = self.collateral(token)
        units = self._units(amount, col)
        signer = self._require_signer("withdraw")
        to = _address(receiver if receiver is not None else signer)
        return self._send("withdraw", self.ops.withdraw, account, col.address, units, to)

    def transfer(
        self,
        from_account: int,
        to_account: int,
        amount: Decimal | int | str,
        token: str = "USDC",
    ) -> ReceiptAPI:
        """Move `amount` of `token` between two of the signer's sub-accounts."""
        col = self.collateral(token)
        units = self._units(amount, col)
        return self._send(
            "transfer",
            self.ops.transfer_collateral,
            from_account,
            to_account,
            col.address,
            units,
        )

    def balances(self, account: int) -> dict[str, Decimal]:
        """Collateral balances by token symbol, in token amounts (USDC: dollars)."""
        return {
            c.symbol: from_wad(int(self.clearinghouse.balance_of(account, c.index)))
            for c in self.collaterals()
        }

    def margin(self, account: int) -> Margin:
        """Equity and requirements at the cached marks (`account_margin` view), in dollars."""
        s = self.clearinghouse.account_margin(account)
        return Margin(
            equity=from_wad(int(s.equity)),
            initial=from_wad(int(s.initial)),
            maintenance=from_wad(int(s.maintenance)),
            isolated=from_wad(int(s.isolated)),
            notional=from_wad(int(s.notional)),
        )

    def summary(self, account: int) -> AccountSummary:
        """Info, balances and margin of one sub-account."""
        return AccountSummary(
            info=self.account(account),
            balances=self.balances(account),
            margin=self.margin(account),
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _require_signer(self, action: str) -> AccountAPI:
        if self.signer is None:
            raise PerpdexError(
                f"{action} needs a signer; build the client with signer=<ape account> "
                "(CLI: --account <alias>)"
            )
        return self.signer

    def _units(self, amount: Decimal | int | str, col: Collateral) -> int:
        try:
            value = Decimal(str(amount))
        except ArithmeticError as e:
            raise PerpdexError(f"{amount!r} is not a number; write it like 250 or 99.5") from e
        if not value.is_finite() or value <= 0:
            raise PerpdexError(f"amount must be above zero, got {amount}")
        scaled = value.scaleb(col.decimals)
        if scaled != scaled.to_integral_value():
            raise PerpdexError(
                f"{amount} {col.symbol} is finer than the token's {col.decimals} decimals; "
                f"round it to {col.decimals} places"
            )
        return to_units(value, col.decimals)

    def _send(self, action: str, method: Any, *args: Any) -> ReceiptAPI:
        from ape.exceptions import ContractLogicError

        signer = self._require_signer(action)
        if self.preflight:
            self._simulate(action, method, args, signer)
        try:
            return method(*args, sender=signer)
        except ContractLogicError as err:
            raise rejected(action, err) from err

    def _simulate(self, action: str, method: Any, args: tuple[Any, ...], signer: Any) -> None:
        """Run the transaction as an eth_call; raise `TransactionRejected` if it reverts."""
        from ape import networks
        from web3.exceptions import ContractLogicError as CallReverted

        web3 = getattr(networks.provider, "web3", None)
        if web3 is None:  # not a JSON-RPC provider: the send itself will tell
            return
        call = {
            "from": signer.address,
            "to": method.contract.address,
            "data": method.encode_input(*args),
        }
        try:
            web3.eth.call(call)
        except CallReverted as err:
            reason = _call_revert_reason(err)
            raise TransactionRejected(action, reason, hint_for(reason)) from err


def _call_revert_reason(err: Exception) -> str:
    """The revert string of a web3 `ContractLogicError` ("execution reverted: <reason>")."""
    text = str(getattr(err, "message", None) or err).strip()
    reason = text.removeprefix("execution reverted").removeprefix(":").strip()
    return reason or "reverted without a reason"
