"""A typed client for one perpdex deployment: accounts, collateral, margin, trading and
the liquidity vault.

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
        q = client.quote(acct, "BTC", Decimal("0.5"))      # lens.quote, nothing signed
        fill = client.trade(acct, "BTC", Decimal("0.5"))   # bound: quote +/- max_slippage
        print(client.portfolio(acct).margin_saved)         # lens.account_summary + names
        client.close(acct, "BTC")                          # realised PnL on the Fill
        client.lp_deposit(Decimal("10000")); print(client.lp_status().share_price)

Trading figures come from the ClearinghouseLens (`quote`, `account_summary`,
`vault_equity`), so the client shows exactly what the contracts compute; sizes are signed
base units (positive buys), prices and money dollars.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.config import ROOT
from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    BPS,
    FLAG_DEGRADED,
    WAD,
)
from perpdex.errors import DeploymentNotFound, PerpdexError, TransactionRejected
from perpdex.sdk import gas, riskbook
from perpdex.sdk.math import (
    NO_RISK_HEALTH,
    NO_SCENARIO,
    PICO_PER_USD,
    AccountView,
    PositionView,
    QuoteView,
)
from perpdex.units import EXACT, from_wad, to_units, to_wad

if TYPE_CHECKING:
    from ape.api import AccountAPI, ReceiptAPI

    from perpdex.deploy import Protocol

__all__ = [
    "DEFAULT_MAX_SLIPPAGE",
    "REVERT_HINTS",
    "AccountInfo",
    "AccountSummary",
    "Collateral",
    "Deployment",
    "Fill",
    "LossCapAboveEquity",
    "LpMove",
    "LpStatus",
    "Margin",
    "MarketInfo",
    "MarketUse",
    "PerpdexClient",
    "Portfolio",
    "PositionLine",
    "Quote",
    "ScenarioLoss",
    "UnknownAccount",
    "acceptable_price",
    "hint_for",
    "rejected",
]

INDEX_BITS = 96
MAX_NAME_BYTES = 32

#: Default worst fill accepted by `trade` and `close`: the quoted fill price moved 0.5%
#: against the order.
DEFAULT_MAX_SLIPPAGE = Decimal("0.005")

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
    "clearinghouse: unrealised profit is not withdrawable": (
        "open profit is withdrawable once realised: close or reduce the position first, or "
        "withdraw less; `perpdex withdraw` reports what is withdrawable now"
    ),
    "clearinghouse: below loss cap, reduce only": (
        "the account's equity is below its loss cap: only orders that reduce positions "
        "are accepted; deposit, or lower the cap (`perpdex loss-cap set` / `clear`)"
    ),
    "clearinghouse: would cross loss cap": (
        "this would leave equity below the account's loss cap; move less (`perpdex "
        "withdraw` reports what is withdrawable now) or lower the cap first"
    ),
    "clearinghouse: taker below loss cap": (
        "the taking account would end below its loss cap; take into another account or "
        "lower its cap"
    ),
    "clearinghouse: loss-cap window used up": (
        "forced closes in these markets reached their per-window size; try again in a minute"
    ),
    "clearinghouse: not account owner": (
        "only the owner of the account can do this; sign as the owner "
        "(CLI: --account <owner alias>)"
    ),
    "clearinghouse: not authorized": (
        "only the owner or an operator it approved can trade this account; sign as the "
        "owner (CLI: --account <owner alias>) or have the owner approve you "
        "(`perpdex operator add ADDRESS`)"
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
    "clearinghouse: mode unchanged": (
        "the account already uses that margin mode; `perpdex account` shows each mode"
    ),
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
    "clearinghouse: min position size": (
        "an order must leave the position closed or worth at least $100 at the oracle "
        "price; close it whole (`perpdex close SYMBOL`) or trade a larger size"
    ),
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
    "clearinghouse: no price quorum": (
        "fewer than two price sources agree right now, so the market is frozen (closes "
        "and liquidations too); it resumes by itself at the next update they agree on"
    ),
    "clearinghouse: no markets": "name at least one market to refresh",
    # quotes (ClearinghouseLens)
    "lens: zero size": "give a size other than zero, e.g. 0.5 to buy or -0.5 to sell",
    "lens: unknown market": "use a listed market; `perpdex quote` lists them",
    "lens: no price quorum": (
        "fewer than two price sources agree right now, so the market is frozen; "
        "quote again after the next update they agree on"
    ),
    # the liquidity vault
    "vault: zero amount": (
        "the amount is worth less than one share (or one token unit); give a larger amount"
    ),
    "vault: zero receiver": "give the receiver's address",
    "vault: pool is insolvent": (
        "the pool's equity is not positive, so deposits are closed until it recovers"
    ),
    "erc20: burn amount exceeds balance": (
        "you hold fewer LP shares than that; `perpdex lp status` shows what you can withdraw"
    ),
    # loss caps
    "clearinghouse: no loss cap": (
        "the account has no loss cap; its owner sets one with `perpdex loss-cap set USD`"
    ),
    "clearinghouse: equity above loss cap": (
        "the account's equity is not below its loss cap, so there is nothing to trigger; "
        "`perpdex loss-cap show --account-id ID` compares the two"
    ),
    "clearinghouse: close leaves negative equity": (
        "the account's losses exceed its collateral, so closing its last position would "
        "leave a debt; deposit to cover it, or leave the position to liquidation"
    ),
    "clearinghouse: no positions": (
        "the account has no open positions, so a loss cap has nothing to close"
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


class LossCapAboveEquity(PerpdexError):
    """`set_loss_cap` refused before sending: the floor is above the account's equity, so
    anyone could close its positions at once. Pass `confirm_above_equity=True` to set it
    anyway (CLI: `--yes-above-equity`)."""

    def __init__(self, account: int, floor: Decimal, equity: Decimal) -> None:
        self.account = account
        self.floor = floor
        self.equity = equity
        super().__init__(
            f"loss cap ${floor:,.2f} is above the account's equity ${equity:,.2f}: once set, "
            "anyone may close every position at once and the account may only reduce; set a floor "
            "at or below the equity, or confirm (SDK: confirm_above_equity=True, CLI: "
            "--yes-above-equity)"
        )


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
    vault: str | None = None
    lens: str | None = None
    auction: str | None = None
    path: Path | None = None
    genesis: str | None = None

    def check_chain(self) -> None:
        """Refuses a manifest written on another chain than the connected one: a restarted
        anvil keeps chain id 31337 and even the addresses, so the genesis block decides."""
        from ape import chain

        where = self.path or self.network
        if chain.chain_id != self.chain_id:
            raise DeploymentNotFound(
                f"{where} belongs to chain id {self.chain_id}, but the node is chain id "
                f"{chain.chain_id}; pick that network (--network) or another manifest "
                "(--deployment)"
            )
        if self.genesis is None:
            return
        here = chain.blocks[0].hash.hex()
        if here.removeprefix("0x") != self.genesis.removeprefix("0x"):
            raise DeploymentNotFound(
                f"{where} belongs to another chain (genesis {self.genesis[:12]}..., this node "
                f"{here[:12]}...): the node was restarted or is a different chain. Redeploy "
                "(`make demo`, `perpdex devnet up` or `ape run deploy`) or pass --deployment"
            )

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
                vault=_optional(c.get("vault")),
                lens=_optional(c.get("lens")),
                auction=_optional(c.get("auction")),
                path=path,
                genesis=_optional(data.get("genesis")),
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
            vault=str(protocol.vault.address) if protocol.vault is not None else None,
            lens=str(protocol.lens.address) if protocol.lens is not None else None,
            auction=str(protocol.auction.address) if protocol.auction is not None else None,
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
                **{
                    k: v
                    for k, v in (
                        ("vault", self.vault),
                        ("lens", self.lens),
                        ("auction", self.auction),
                    )
                    if v is not None
                },
            },
            "markets": list(self.markets),
            "settlement_decimals": self.settlement_decimals,
            **({"genesis": self.genesis} if self.genesis else {}),
        }

    def write(self, path: Path) -> Path:
        """Save as a manifest file (creates the folder)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def _optional(value: Any) -> str | None:
    return str(value) if value else None


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
    loss_cap: Decimal = Decimal(0)  # equity floor in dollars; 0: no cap


@dataclass(frozen=True)
class MarketInfo:
    """One listed market: the oracle, the cached mark and funding, open interest."""

    id: int
    symbol: str
    oracle_price: Decimal | None  # None: no price quorum right now (the market is frozen)
    mark_price: Decimal
    mark_time: int  # block timestamp of the last touch
    funding_rate: Decimal  # fraction of the price per day; positive: longs pay shorts
    funding_index: Decimal  # cumulative funding, dollars per unit of base
    long_oi: Decimal
    short_oi: Decimal
    max_oi: Decimal  # per side
    skew_scale: Decimal
    maker_fee: Decimal
    taker_fee: Decimal
    max_vault_exposure: Decimal  # fraction of pool cash
    paused: bool

    @property
    def skew(self) -> Decimal:
        """Long minus short open interest: the vault holds the other side."""
        return self.long_oi - self.short_oi


@dataclass(frozen=True)
class Quote:
    """What a market order would do now (`ClearinghouseLens.quote`), in dollars.

    `view` keeps the lens's integers (WAD) for exact comparisons and for the slippage bound.
    """

    account: int
    market: int
    symbol: str
    size: Decimal  # signed base units: positive buys
    view: QuoteView
    block_number: int | None = None

    @property
    def is_buy(self) -> bool:
        return self.size > 0

    @property
    def oracle_price(self) -> Decimal:
        return from_wad(self.view.oracle_price)

    @property
    def fill_price(self) -> Decimal:
        return from_wad(self.view.fill_price)

    @property
    def price_impact(self) -> Decimal:
        """(fill - oracle) / oracle, signed."""
        return from_wad(self.view.price_impact)

    @property
    def notional(self) -> Decimal:
        return abs(self.size) * self.fill_price

    @property
    def fee(self) -> Decimal:
        return from_wad(self.view.fee)

    @property
    def realized_pnl(self) -> Decimal:
        return from_wad(self.view.realized_pnl)

    @property
    def funding_paid(self) -> Decimal:
        """Funding the existing position settles with this order (positive: it pays)."""
        return from_wad(self.view.funding_paid)

    @property
    def equity_after(self) -> Decimal:
        return from_wad(self.view.equity_after)

    @property
    def initial_after(self) -> Decimal:
        return from_wad(self.view.initial_after)

    @property
    def maintenance_after(self) -> Decimal:
        return from_wad(self.view.maintenance_after)

    @property
    def health_after(self) -> Decimal | None:
        """Equity over maintenance after the order; None when nothing is at risk."""
        return _health(self.view.health_after)

    @property
    def liquidation_price_after(self) -> Decimal | None:
        """The market's liquidation price after the order; None if it closes the position
        or none exists within the lens's search range."""
        return _price_or_none(self.view.liquidation_price_after)

    def acceptable_price(self, max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE) -> int:
        """Worst fill price (WAD) for this order: see `acceptable_price`."""
        return acceptable_price(self.view.fill_price, self.size > 0, max_slippage)


@dataclass(frozen=True)
class Fill:
    """A market order as the Clearinghouse filled it (its `Fill` event), in dollars."""

    account: int
    market: int
    symbol: str
    size_delta: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    funding_paid: Decimal  # settled by the position before the fill (positive: paid)
    size_after: Decimal
    acceptable_price: Decimal  # the bound the order carried
    quote: Quote  # the quote the bound was computed from
    tx_hash: str
    block_number: int | None

    @property
    def cash_flow(self) -> Decimal:
        """Change in the settlement balance: realised PnL minus funding and fee."""
        return self.realized_pnl - self.funding_paid - self.fee


@dataclass(frozen=True)
class PositionLine:
    """One position of `Portfolio`, at the cached mark."""

    market: int
    symbol: str
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    notional: Decimal
    unrealized_pnl: Decimal
    funding_owed: Decimal  # accrued and not yet settled; positive: the position pays
    isolated_initial: Decimal  # this position's requirement in isolated mode
    liquidation_price: Decimal | None  # None: none within the lens's search range

    @property
    def side(self) -> str:
        return "long" if self.size > 0 else "short"

    @property
    def funding_pnl(self) -> Decimal:
        """Accrued funding as PnL: positive when the position receives."""
        return -self.funding_owed

    @property
    def liquidation_distance(self) -> Decimal | None:
        """How far the mark may move against the position before liquidation (fraction)."""
        if self.liquidation_price is None or self.mark_price == 0:
            return None
        return abs(self.liquidation_price - self.mark_price) / self.mark_price


@dataclass(frozen=True)
class ScenarioLoss:
    """The account's loss under one stress scenario of the risk book."""

    index: int
    name: str
    loss: Decimal  # positive: the account loses
    binding: bool  # the largest loss (what portfolio margin is set from)


@dataclass(frozen=True)
class Portfolio:
    """`ClearinghouseLens.account_summary` with names, in dollars.

    Portfolio (scenario) margin: initial = min(isolated, max(worst scenario loss, floor) +
    add-on); `portfolio_initial` computes that from the lens's figures for either mode, so
    an isolated account sees what switching would save.
    """

    info: AccountInfo
    view: AccountView
    positions: tuple[PositionLine, ...]
    scenarios: tuple[ScenarioLoss, ...]
    block_number: int | None = None

    @property
    def portfolio_mode(self) -> bool:
        return self.view.portfolio

    @property
    def collateral_value(self) -> Decimal:
        return from_wad(self.view.collateral_value)

    @property
    def unrealized_pnl(self) -> Decimal:
        return from_wad(self.view.unrealized_pnl)

    @property
    def funding_owed(self) -> Decimal:
        return from_wad(self.view.funding_owed)

    @property
    def equity(self) -> Decimal:
        return from_wad(self.view.equity)

    @property
    def initial(self) -> Decimal:
        """The requirement in the account's own mode."""
        return from_wad(self.view.initial)

    @property
    def maintenance(self) -> Decimal:
        return from_wad(self.view.maintenance)

    @property
    def free(self) -> Decimal:
        return self.equity - self.initial

    @property
    def health(self) -> Decimal | None:
        return _health(self.view.health)

    @property
    def isolated_initial(self) -> Decimal:
        """Sum of the positions' isolated requirements."""
        return from_wad(self.view.isolated_initial)

    @property
    def floor(self) -> Decimal:
        """The floor: a fraction of gross notional no portfolio can go below."""
        return from_wad(self.view.floor)

    @property
    def addon(self) -> Decimal:
        """The size add-on (the size-scaled part of the isolated requirements)."""
        return from_wad(self.view.addon)

    @property
    def worst_loss(self) -> Decimal:
        return max((s.loss for s in self.scenarios), default=Decimal(0)).max(Decimal(0))

    @property
    def binding_scenario(self) -> ScenarioLoss | None:
        return next((s for s in self.scenarios if s.binding), None)

    @property
    def stress_requirement(self) -> Decimal:
        """max(worst scenario loss, floor) + add-on."""
        return max(self.worst_loss, self.floor) + self.addon

    @property
    def portfolio_initial(self) -> Decimal:
        """The initial requirement in portfolio mode (margin._combine)."""
        return min(self.isolated_initial, self.stress_requirement)

    @property
    def margin_saved(self) -> Decimal:
        """Isolated requirement minus the portfolio-mode requirement (never negative)."""
        return self.isolated_initial - self.portfolio_initial

    @property
    def binds(self) -> str:
        """What sets the portfolio requirement: `isolated`, `floor`, a scenario name, or
        `none` without positions."""
        if not self.positions:
            return "none"
        if self.isolated_initial <= self.stress_requirement:
            return "isolated"
        scenario = self.binding_scenario
        if scenario is None or self.floor > self.worst_loss:
            return "floor"
        return scenario.name


@dataclass(frozen=True)
class LpMove:
    """One vault deposit or withdrawal, from its ERC-4626 event."""

    owner: str
    assets: Decimal  # tokens in (deposit) or paid out after the fee (withdrawal)
    shares: Decimal  # shares minted or burnt
    tx_hash: str


@dataclass(frozen=True)
class MarketUse:
    """How much of the vault's exposure cap one market uses."""

    market: int
    symbol: str
    long_oi: Decimal
    short_oi: Decimal
    mark_price: Decimal
    funding_rate: Decimal
    exposure: Decimal  # |skew| x mark: the vault's position value, dollars
    cap: Decimal  # pool cash x max_vault_exposure
    utilisation: Decimal | None  # exposure / cap; None when the cap is zero

    @property
    def vault_side(self) -> str:
        skew = self.long_oi - self.short_oi
        return "flat" if skew == 0 else ("short" if skew > 0 else "long")


@dataclass(frozen=True)
class LpStatus:
    """An LP's shares and the pool behind them."""

    owner: str
    shares: Decimal
    assets: Decimal  # shares at the current price, before the withdrawal fee
    redeemable: Decimal  # what redeeming every share pays now, after the fee
    share_price: Decimal  # assets per share
    total_shares: Decimal
    total_assets: Decimal  # vault.totalAssets (the pool's equity, token units rounded down)
    pool_equity: Decimal  # lens.vault_equity: cash - traders' PnL + funding owed to it
    pool_cash: Decimal
    insurance: Decimal
    protocol_fees: Decimal
    withdraw_fee: Decimal  # fraction of the assets redeemed
    markets: tuple[MarketUse, ...]


def acceptable_price(fill_price_wad: int, buy: bool, max_slippage: Decimal | str) -> int:
    """The worst fill price (WAD) an order accepts: `fill_price_wad` moved `max_slippage`
    (a fraction, e.g. 0.005) against it, rounded in the order's favour of filling: up for a
    buy, down for a sell."""
    slip = Decimal(str(max_slippage))
    if not slip.is_finite() or not 0 <= slip < 1:
        raise PerpdexError(
            f"max slippage {max_slippage} must be a fraction from 0 up to 1, e.g. 0.005 for 0.5%"
        )
    s = to_wad(slip)
    if buy:
        return (fill_price_wad * (WAD + s) + WAD - 1) // WAD
    return fill_price_wad * (WAD - s) // WAD


def _health(raw: int) -> Decimal | None:
    return None if raw == NO_RISK_HEALTH else from_wad(raw)


def _price_or_none(raw: int) -> Decimal | None:
    return None if raw == 0 else from_wad(raw)


def _quote_view(raw: Any) -> QuoteView:
    """The lens's QuoteView struct as ints."""
    return QuoteView(**{f.name: int(getattr(raw, f.name)) for f in fields(QuoteView)})


def _account_view(raw: Any) -> AccountView:
    """The lens's AccountView struct as ints."""
    skip = ("portfolio", "scenario_losses", "positions")
    kw: dict[str, Any] = {
        f.name: int(getattr(raw, f.name)) for f in fields(AccountView) if f.name not in skip
    }
    return AccountView(
        portfolio=bool(raw.portfolio),
        scenario_losses=tuple(int(x) for x in raw.scenario_losses),
        positions=tuple(
            PositionView(**{f.name: int(getattr(p, f.name)) for f in fields(PositionView)})
            for p in raw.positions
        ),
        **kw,
    )


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
        self.oracle = _at("OracleRouter", deployment.oracle)
        self.lens = _at("ClearinghouseLens", deployment.lens) if deployment.lens else None
        self.vault = _at("LiquidityVault", deployment.vault) if deployment.vault else None
        self._collaterals: dict[int, Collateral] = {}
        self._books: dict[str, riskbook.RiskBook] = {}

    @classmethod
    def from_manifest(
        cls,
        manifest: str | Path | None = None,
        signer: AccountAPI | None = None,
        *,
        preflight: bool = True,
    ) -> PerpdexClient:
        """Client for the manifest at a path, of a network key, or (None) of the connected
        network. Refuses a manifest of another chain (`Deployment.check_chain`)."""
        deployment = Deployment.load(resolve_manifest(manifest))
        deployment.check_chain()
        return cls(deployment, signer, preflight=preflight)

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

    def set_margin_mode(self, account: int, portfolio: bool) -> ReceiptAPI:
        """Switch `account` to portfolio (scenario) margin or back to isolated margin. Owner
        only; refused if the account would fall below initial margin in the new mode."""
        return self._send("set margin mode", self.ops.set_margin_mode, account, portfolio)

    def is_operator(self, account: int, operator: Any) -> bool:
        """Whether `operator` may trade `account`."""
        return bool(self.clearinghouse.is_operator(account, _address(operator)))

    def set_loss_cap(
        self,
        account: int,
        equity_floor: Decimal | int | str,
        confirm_above_equity: bool = False,
    ) -> ReceiptAPI:
        """Set `account`'s loss cap: once its equity is below `equity_floor` dollars, anyone
        may close every position of it (`trigger_loss_cap`) for `loss_cap_fee`, its own
        trades may only reduce, and withdrawals and transfers out may not cross it. 0
        clears the cap. Owner only.

        A floor above the equity the trigger would read now (`losscap.trigger_equity`) is
        refused before anything is sent (`LossCapAboveEquity`) unless
        `confirm_above_equity`."""
        floor = _usd_wad(equity_floor, "loss cap")
        signer = getattr(self.signer, "address", None)
        owner = signer is not None and int(str(signer), 16) == account >> INDEX_BITS
        # (a non-owner is refused by the chain: no question to ask first)
        if floor and owner and not confirm_above_equity:
            equity = self.loss_cap_equity(account)
            if floor > equity:
                raise LossCapAboveEquity(account, from_wad(floor), from_wad(equity))
        return self._send("set loss cap", self.ops.set_loss_cap, account, floor)

    def loss_cap_equity(self, account: int) -> int:
        """USD WAD equity `trigger_loss_cap` would compare with the floor in the next block
        (every mark of the account re-read)."""
        from perpdex.sdk.losscap import trigger_equity
        from perpdex.sdk.snapshot import Snapshot

        return trigger_equity(Snapshot.load(self, account, "pending"))

    def loss_cap(self, account: int) -> Decimal:
        """`account`'s equity floor in dollars (0: no loss cap)."""
        return from_wad(int(self.clearinghouse.loss_cap(account)))

    def loss_cap_fee(self) -> Decimal:
        """Dollars (paid in settlement tokens) that triggering a loss cap earns the caller,
        at most the account's remaining settlement balance."""
        return from_wad(int(self.clearinghouse.loss_cap_fee()))

    def trigger_loss_cap(self, account: int) -> ReceiptAPI:
        """Close the positions of `account`, whose equity is below its loss cap,
        reduce-only against the vault at the oracle price; per market at most
        2 x min(maker, taker) x skew_scale per 60 s window closes (the rest in later
        calls). The signer (anyone) earns `loss_cap_fee`. The receipt holds the
        `LossCapTriggered` event (equity, floor, fee) and a `Fill` per (partly) closed
        position."""
        return self._send("trigger loss cap", self.ops.trigger_loss_cap, account)

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
        account must stay above initial margin counting unrealised PnL only when negative
        (`withdrawable` gives the most it accepts)."""
        col = self.collateral(token)
        units = self._units(amount, col)
        signer = self._require_signer("withdraw")
        to = _address(receiver if receiver is not None else signer)
        return self._send("withdraw", self.ops.withdraw, account, col.address, units, to)

    def withdrawable_units(self, account: int, token: str = "USDC") -> int:
        """Largest `withdraw` (or transfer out) of `token` the chain accepts in the next
        block, in token units: the balance, limited by equity less positive unrealised PnL
        less the initial requirement at freshly read marks (`math.withdrawable`)."""
        from perpdex.sdk import math as pm
        from perpdex.sdk.snapshot import Snapshot

        col = self.collateral(token)
        snap = Snapshot.load(self, account, "pending")
        scale = int(self.clearinghouse.collateral_scale(col.index))
        return pm.withdrawable(snap, col.index, scale)

    def withdrawable(self, account: int, token: str = "USDC") -> Decimal:
        """`withdrawable_units` in token amounts (USDC: dollars). Unrealised profit is not
        withdrawable until a fill realises it."""
        col = self.collateral(token)
        return Decimal(self.withdrawable_units(account, token)).scaleb(-col.decimals)

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
        """Info, balances, margin and loss cap of one sub-account."""
        return AccountSummary(
            info=self.account(account),
            balances=self.balances(account),
            margin=self.margin(account),
            loss_cap=self.loss_cap(account),
        )

    # --- markets and quotes ------------------------------------------------------------------

    def market_id(self, market: str | int) -> int:
        """Market id of a symbol (any case, `BTC` or `BTC-PERP`) or of an id."""
        symbols = self.deployment.markets
        if isinstance(market, int):
            if 0 <= market < len(symbols):
                return market
        else:
            text = market.strip().upper().removesuffix("-PERP").removesuffix("-USD")
            if text in symbols:
                return symbols.index(text)
            if text.isdigit() and int(text) < len(symbols):
                return int(text)
        raise PerpdexError(f"{market!r} is not a listed market; use one of: {', '.join(symbols)}")

    def symbol(self, market: int) -> str:
        """Symbol of a market id."""
        return self.deployment.markets[self.market_id(market)]

    def markets(self) -> list[MarketInfo]:
        """Every listed market with its oracle price, mark, funding and open interest."""
        from ape.exceptions import ContractLogicError

        out = []
        for m, symbol in enumerate(self.deployment.markets):
            price, ts, index, rate = self.clearinghouse.mark(m)
            long_oi, short_oi = self.clearinghouse.open_interest(m)
            p = self.clearinghouse.market_params(m)
            try:
                o_price, o_flags = self.oracle.latest(m)
                # no price quorum (the router's DEGRADED flag): the market is frozen
                oracle: Decimal | None = (
                    None if int(o_flags) & FLAG_DEGRADED else from_wad(int(o_price))
                )
            except ContractLogicError:
                oracle = None
            out.append(
                MarketInfo(
                    id=m,
                    symbol=symbol,
                    oracle_price=oracle,
                    mark_price=from_wad(int(price)),
                    mark_time=int(ts),
                    funding_rate=from_wad(int(rate)),
                    funding_index=Decimal(int(index)) / PICO_PER_USD,
                    long_oi=from_wad(int(long_oi)),
                    short_oi=from_wad(int(short_oi)),
                    max_oi=from_wad(int(p.max_oi)),
                    skew_scale=from_wad(int(p.skew_scale)),
                    maker_fee=from_wad(int(p.maker_fee)),
                    taker_fee=from_wad(int(p.taker_fee)),
                    max_vault_exposure=from_wad(int(p.max_vault_exposure)),
                    paused=bool(p.paused),
                )
            )
        return out

    def quote(
        self,
        account: int,
        market: str | int,
        size: Decimal | int | str,
        *,
        block_id: int | str | None = None,
    ) -> Quote:
        """What a market order of `size` (signed base units: positive buys) would do now:
        `ClearinghouseLens.quote` (fill price, impact, fee, realised PnL, funding, and the
        account's margin and liquidation price afterwards). Signs nothing.

        `block_id` ("pending", a number) quotes against another block than the head; a
        quote and a trade in the same block agree to the wei.
        """
        from ape.exceptions import ContractLogicError

        lens = self._require("lens", self.lens)
        m = self.market_id(market)
        delta = _size_wad(size)
        kwargs: dict[str, Any] = {} if block_id is None else {"block_id": block_id}
        try:
            raw = lens.quote(account, m, delta, **kwargs)
        except ContractLogicError as err:
            raise rejected("quote", err) from err
        number = block_id if isinstance(block_id, int) else None
        return Quote(
            account, m, self.deployment.markets[m], from_wad(delta), _quote_view(raw), number
        )

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
        """Market order of `size` (signed base units: positive buys) against the vault.

        The order carries a worst acceptable fill price: `acceptable_price` if given (in
        dollars), else the quoted fill price moved `max_slippage` (a fraction) against the
        order. `quote` (from `quote()` earlier, e.g. the one a user confirmed) sets that
        bound; without it the client quotes now. Refused with the contract's reason and a
        hint when the fill would be worse, or margin, caps or the oracle say no.
        """
        m = self.market_id(market)
        delta = _size_wad(size)
        if quote is None:
            quote = self.quote(account, m, from_wad(delta))
        elif (quote.account, quote.market, to_wad(quote.size)) != (account, m, delta):
            raise PerpdexError(
                f"the quote is for {quote.size} {quote.symbol} on account {quote.account:#x}, "
                "not this order; quote this order first"
            )
        if acceptable_price is not None:
            bound = to_wad(_positive(acceptable_price, "acceptable price"))
        else:
            bound = quote.acceptable_price(max_slippage)
        self._require_min_position(account, m, delta, quote)
        receipt = self._send("trade", self.clearinghouse.trade, account, m, delta, bound)
        fills = [
            f
            for f in receipt.decode_logs(self.clearinghouse.Fill)
            if int(f.account) == account and int(f.market) == m
        ]
        if not fills:
            raise PerpdexError(
                f"trade {receipt.txn_hash} emitted no Fill for this account; check the "
                "transaction in a block explorer"
            )
        ev = fills[-1]
        return Fill(
            account=account,
            market=m,
            symbol=self.deployment.markets[m],
            size_delta=from_wad(int(ev.size_delta)),
            price=from_wad(int(ev.price)),
            fee=from_wad(int(ev.fee)),
            realized_pnl=from_wad(int(ev.realized_pnl)),
            funding_paid=from_wad(int(ev.funding_paid)),
            size_after=from_wad(int(ev.size)),
            acceptable_price=from_wad(bound),
            quote=quote,
            tx_hash=str(receipt.txn_hash),
            block_number=receipt.block_number,
        )

    def _require_min_position(self, account: int, m: int, delta: int, quote: Quote) -> None:
        """Refuses, before sending, an order the Clearinghouse refuses for leaving a
        position worth less than MIN_POSITION_NOTIONAL (pm.require_min_position)."""
        from perpdex.sdk import math as pm

        size = int(self.clearinghouse.position(account, m)[0])
        try:
            pm.require_min_position(size + delta, quote.view.oracle_price)
        except pm.Revert as err:
            raise TransactionRejected("trade", str(err), hint_for(str(err))) from err

    def position_size(self, account: int, market: str | int) -> Decimal:
        """Signed size of the account's position (0 when flat)."""
        return from_wad(int(self.clearinghouse.position(account, self.market_id(market))[0]))

    def close(
        self,
        account: int,
        market: str | int,
        *,
        max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE,
    ) -> Fill:
        """Close the whole position on `market`; the Fill carries the realised PnL."""
        m = self.market_id(market)
        size = self.position_size(account, m)
        if size == 0:
            raise PerpdexError(
                f"account {account:#x} has no {self.deployment.markets[m]} position to close; "
                "`perpdex portfolio` lists its positions"
            )
        # copy_negate: exact (unary minus would round to the context's 28 digits)
        return self.trade(account, m, size.copy_negate(), max_slippage=max_slippage)

    def refresh(self, markets: Sequence[str | int] | None = None) -> ReceiptAPI:
        """Re-read the oracle and accrue funding on `markets` (default: all). Anyone can."""
        ids = (
            [self.market_id(x) for x in markets]
            if markets
            else list(range(len(self.deployment.markets)))
        )
        return self._send("refresh", self.ops.refresh, ids)

    # --- portfolio ---------------------------------------------------------------------------

    def scenario_names(self) -> tuple[str, ...]:
        """Names of the risk book's stress scenarios, in book order."""
        return self.risk_book().names

    def risk_book(self) -> riskbook.RiskBook:
        """The risk book the Clearinghouse uses now (decoded from its code)."""
        from ape import chain

        address = str(self.clearinghouse.risk_book())
        if int(address, 16) == 0:
            raise PerpdexError(
                "no risk book is published on this deployment; publish one with `perpdex risk push`"
            )
        if address not in self._books:
            code = bytes(chain.provider.get_code(address))
            self._books[address] = riskbook.decode(code[1:])  # skip the leading STOP byte
        return self._books[address]

    def portfolio(self, account: int) -> Portfolio:
        """Positions, PnL, funding, margin, health, liquidation prices and the loss under
        every stress scenario (`ClearinghouseLens.account_summary`), at the cached marks."""
        from ape import chain

        lens = self._require("lens", self.lens)
        info = self.account(account)
        block = int(chain.blocks.head.number or 0)
        view = _account_view(lens.account_summary(account, block_id=block))
        names = self.scenario_names()
        symbols = self.deployment.markets
        positions = tuple(
            PositionLine(
                market=p.market,
                symbol=symbols[p.market] if p.market < len(symbols) else str(p.market),
                size=from_wad(p.size),
                entry_price=from_wad(p.entry_price),
                mark_price=from_wad(p.mark_price),
                notional=from_wad(p.notional),
                unrealized_pnl=from_wad(p.unrealized_pnl),
                funding_owed=from_wad(p.funding_owed),
                isolated_initial=from_wad(p.isolated_initial),
                liquidation_price=_price_or_none(p.liquidation_price),
            )
            for p in view.positions
        )
        scenarios = tuple(
            ScenarioLoss(
                index=k,
                name=names[k] if k < len(names) else f"scenario {k}",
                loss=from_wad(loss),
                binding=k == view.binding_scenario and view.binding_scenario != NO_SCENARIO,
            )
            for k, loss in enumerate(view.scenario_losses)
        )
        return Portfolio(info, view, positions, scenarios, block)

    # --- liquidity vault ---------------------------------------------------------------------

    def lp_deposit(self, amount: Decimal | int | str, receiver: Any = None) -> LpMove:
        """Deposit `amount` settlement tokens into the liquidity vault for shares (to
        `receiver`, default the signer). Approves the vault first if needed."""
        vault = self._require("vault", self.vault)
        col = self.collaterals()[0]
        units = self._units(amount, col)
        signer = self._require_signer("LP deposit")
        to = _address(receiver if receiver is not None else signer)
        erc20 = _at("MockERC20", col.address)
        if int(erc20.allowance(signer.address, vault.address)) < units:
            self._send("approve", erc20.approve, vault.address, units)
        receipt = self._send("LP deposit", vault.deposit, units, to)
        return self._lp_move(receipt, vault.Deposit)

    def lp_withdraw(self, amount: Decimal | int | str, receiver: Any = None) -> LpMove:
        """Withdraw exactly `amount` settlement tokens (after the withdrawal fee) from the
        vault, burning the shares that cost."""
        vault = self._require("vault", self.vault)
        units = self._units(amount, self.collaterals()[0])
        signer = self._require_signer("LP withdraw")
        to = _address(receiver if receiver is not None else signer)
        receipt = self._send("LP withdraw", vault.withdraw, units, to, signer.address)
        return self._lp_move(receipt, vault.Withdraw)

    def lp_redeem(self, shares: Decimal | int | str | None = None, receiver: Any = None) -> LpMove:
        """Redeem `shares` (default: all the signer holds) for settlement tokens, less the
        withdrawal fee."""
        vault = self._require("vault", self.vault)
        signer = self._require_signer("LP redeem")
        decimals = int(vault.decimals())
        if shares is None:
            units = int(vault.balanceOf(signer.address))
            if units == 0:
                raise PerpdexError(
                    f"{signer.address} holds no LP shares; deposit first (`perpdex lp deposit "
                    "AMOUNT`)"
                )
        else:
            units = self._units(shares, Collateral(-1, "shares", str(vault.address), decimals))
        to = _address(receiver if receiver is not None else signer)
        receipt = self._send("LP redeem", vault.redeem, units, to, signer.address)
        return self._lp_move(receipt, vault.Withdraw)

    def lp_status(self, owner: Any = None) -> LpStatus:
        """Shares, their value and the pool (equity, cash, insurance, per-market use of the
        vault's exposure cap) for `owner` (default: the signer)."""
        vault = self._require("vault", self.vault)
        lens = self._require("lens", self.lens)
        who = _address(owner if owner is not None else self._require_signer("LP status"))
        asset_unit = Decimal(10) ** self.deployment.settlement_decimals
        share_decimals = int(vault.decimals())
        share_unit = Decimal(10) ** share_decimals
        offset = share_decimals - self.deployment.settlement_decimals
        shares = int(vault.balanceOf(who))
        supply = int(vault.totalSupply())
        total_assets = int(vault.totalAssets())
        cash = int(self.clearinghouse.pool_cash())
        uses = []
        for mk in self.markets():
            exposure = abs(mk.skew) * mk.mark_price
            cap = max(from_wad(cash), Decimal(0)) * mk.max_vault_exposure
            uses.append(
                MarketUse(
                    market=mk.id,
                    symbol=mk.symbol,
                    long_oi=mk.long_oi,
                    short_oi=mk.short_oi,
                    mark_price=mk.mark_price,
                    funding_rate=mk.funding_rate,
                    exposure=exposure,
                    cap=cap,
                    utilisation=exposure / cap if cap > 0 else None,
                )
            )
        return LpStatus(
            owner=who,
            shares=Decimal(shares) / share_unit,
            assets=Decimal(int(vault.convertToAssets(shares))) / asset_unit,
            redeemable=Decimal(int(vault.previewRedeem(shares))) / asset_unit,
            # the vault's own conversion with its virtual shares and assets, per whole share
            share_price=Decimal(total_assets + 1) * 10**offset / Decimal(supply + 10**offset),
            total_shares=Decimal(supply) / share_unit,
            total_assets=Decimal(total_assets) / asset_unit,
            pool_equity=from_wad(int(lens.vault_equity())),
            pool_cash=from_wad(cash),
            insurance=from_wad(int(self.clearinghouse.insurance_fund())),
            protocol_fees=from_wad(int(self.clearinghouse.protocol_fees())),
            withdraw_fee=Decimal(int(vault.withdraw_fee_bps())) / BPS,
            markets=tuple(uses),
        )

    def _lp_move(self, receipt: ReceiptAPI, event: Any) -> LpMove:
        logs = list(receipt.decode_logs(event))
        if not logs:
            raise PerpdexError(
                f"vault transaction {receipt.txn_hash} emitted no {event.name} event; check "
                "it in a block explorer"
            )
        ev = logs[-1]
        share_unit = Decimal(10) ** int(self._require("vault", self.vault).decimals())
        return LpMove(
            owner=str(ev.owner),
            assets=Decimal(int(ev.assets)) / Decimal(10) ** self.deployment.settlement_decimals,
            shares=Decimal(int(ev.shares)) / share_unit,
            tx_hash=str(receipt.txn_hash),
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _require(self, name: str, contract: Any) -> Any:
        if contract is None:
            where = self.deployment.path or self.deployment.network
            raise DeploymentNotFound(
                f"{where} records no {name} contract; finish the deployment "
                "(`ape run deploy --network <choice>`) and retry"
            )
        return contract

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
            return gas.send(action, method, *args, sender=signer)
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


def _size_wad(size: Decimal | int | str) -> int:
    """Signed base units -> WAD; refuses zero and sizes finer than 18 decimals."""
    try:
        value = Decimal(str(size))
    except ArithmeticError as e:
        raise PerpdexError(f"{size!r} is not a size; write it like 0.5 (buy) or -0.5 (sell)") from e
    if not value.is_finite() or value == 0:
        raise PerpdexError(
            f"size must be a number other than zero (0.5 buys, -0.5 sells), got {size}"
        )
    wad = EXACT.scaleb(value, 18)  # exact: the default context would round past 28 digits
    if wad != wad.to_integral_value():
        raise PerpdexError(f"size {size} is finer than 18 decimals; round it")
    return int(wad)


def _positive(value: Decimal | int | str, what: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except ArithmeticError as e:
        raise PerpdexError(f"{what} {value!r} is not a number; write it like 101500.5") from e
    if not d.is_finite() or d <= 0:
        raise PerpdexError(f"{what} must be above zero, got {value}")
    return d


def _usd_wad(value: Decimal | int | str, what: str) -> int:
    """Dollars (zero or more, at most 18 decimals) -> USD WAD."""
    try:
        d = Decimal(str(value))
    except ArithmeticError as e:
        raise PerpdexError(f"{what} {value!r} is not a number; write it like 19000 or 0") from e
    if not d.is_finite() or d < 0:
        raise PerpdexError(f"{what} must be zero or more dollars, got {value}")
    wad = d.scaleb(18)
    if wad != wad.to_integral_value():
        raise PerpdexError(f"{what} {value} is finer than 18 decimals; round it")
    return int(wad)


def _call_revert_reason(err: Exception) -> str:
    """The revert string of a web3 `ContractLogicError` ("execution reverted: <reason>")."""
    text = str(getattr(err, "message", None) or err).strip()
    reason = text.removeprefix("execution reverted").removeprefix(":").strip()
    return reason or "reverted without a reason"
