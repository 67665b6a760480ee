"""A typed client for one perpdex deployment: accounts, collateral, margin, trading and
the liquidity vault.

The client reads the contract addresses from a deployment manifest
(`deployments/<network>.json`, written by `perpdex.deploy.deploy_system`) or from a
`Protocol` (the test fixture), and talks to them through a transport
(perpdex/sdk/transport.py): ape by default, so it must be used inside an active ape network
context (`ape console`, `ape test`, `networks.parse_network_choice`); the standalone
`perpdex.sdk.lite.ReadClient` / `TradeClient` are this class over raw JSON-RPC (no ape).

Amounts go in and come out as `Decimal` token amounts or dollars; the client converts to
token units (e.g. 6 decimals for USDC) and from the chain's USD WAD (1e18). A transaction
the contracts refuse raises `TransactionRejected` whose `hint` comes from `REVERT_HINTS`,
the one table of known revert strings, shared with the CLI.

Layout: this module is the client class; its typed results live in `results.py`, the
manifest (`Deployment`) in `manifest.py`, the revert hints in `hints.py`, contract handles
in `handles.py`, gas padding in `gas.py`; every public name is re-exported here.

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

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    BPS,
    MAX_PRICE,
    WAD,
)
from perpdex.errors import DeploymentNotFound, PerpdexError, TransactionRejected
from perpdex.sdk import gas, riskbook, shock
from perpdex.sdk import history as hist
from perpdex.sdk import orders as so
from perpdex.sdk.handles import _address
from perpdex.sdk.hints import (
    REVERT_HINTS,
    UNKNOWN_REVERT_HINT,
    _call_revert_reason,
    hint_for,
    rejected,
)
from perpdex.sdk.manifest import Deployment, resolve_manifest
from perpdex.sdk.math import (
    NO_SCENARIO,
)
from perpdex.sdk.math import delayed as dm
from perpdex.sdk.math import vault_limits as vl
from perpdex.sdk.results import (
    DEFAULT_MAX_SLIPPAGE,
    AccountInfo,
    AccountSummary,
    Collateral,
    ConditionalStatus,
    DelayedCommit,
    DelayedFill,
    Fill,
    LegFill,
    LegQuote,
    Liquidation,
    LpMove,
    LpStatus,
    Margin,
    MarketInfo,
    MarketUse,
    MultiFill,
    MultiQuote,
    OrderCheck,
    PendingOrder,
    Portfolio,
    PositionLine,
    Quote,
    ScenarioLoss,
    _account_view,
    _delayed_fill,
    _fill,
    _leg_fill,
    _margin,
    _market_info,
    _price_or_none,
    _quote_view,
    acceptable_price,
)
from perpdex.sdk.transport import ApeTransport, Log, Transport
from perpdex.units import EXACT, from_wad, to_units, to_wad

if TYPE_CHECKING:
    from ape.api import AccountAPI, ReceiptAPI

    from perpdex.deploy import Protocol

__all__ = [
    "DEFAULT_MAX_SLIPPAGE",
    "REVERT_HINTS",
    "UNKNOWN_REVERT_HINT",
    "AccountInfo",
    "AccountSummary",
    "Collateral",
    "ConditionalStatus",
    "DelayedCommit",
    "DelayedFill",
    "Deployment",
    "Fill",
    "LegFill",
    "LegQuote",
    "Liquidation",
    "LossCapAboveEquity",
    "LpMove",
    "LpStatus",
    "Margin",
    "MarketInfo",
    "MarketUse",
    "MultiFill",
    "MultiQuote",
    "OrderCheck",
    "PendingOrder",
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
#: `withdraw_all` with open positions takes what is withdrawable now and this many seconds
#: later, so funding accrued before the transaction lands cannot make it fail.
WITHDRAW_ALL_SLACK_S = 60
MAX_NAME_BYTES = 32


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
            "anyone may close every position at once and the account may only reduce; set a "
            "floor at or below the equity, or confirm (SDK: confirm_above_equity=True, CLI: "
            "--yes-above-equity)"
        )


# --- the client -------------------------------------------------------------------------------
class PerpdexClient:
    """Accounts, collateral and margin on one perpdex deployment.

    Build it with `from_manifest` (scripts, CLI) or `from_protocol` (tests) inside an
    active ape network context. `signer` is the ape account that sends transactions; a
    client without one can only read. With `preflight` (the default) every transaction is
    first run as an `eth_call`: one that would revert raises `TransactionRejected` before
    anything is signed, and ape prints no revert call trace.

    `transport` is how it reaches the chain (perpdex/sdk/transport.py): ape's provider by
    default; `perpdex.sdk.lite.ReadClient` is this client over raw JSON-RPC. With `check`
    (the default) it refuses a manifest of another chain (chain id, genesis hash) or one
    whose Clearinghouse has no code, saying what to do next.
    """

    def __init__(
        self,
        deployment: Deployment,
        signer: AccountAPI | None = None,
        *,
        preflight: bool = True,
        transport: Transport | None = None,
        check: bool = True,
    ) -> None:
        self.transport: Transport = transport if transport is not None else ApeTransport()
        self.deployment = deployment
        if check:
            deployment.check_chain(self.transport)
        self.signer = signer
        self.preflight = preflight
        at = self.transport.at
        self.clearinghouse = at("Clearinghouse", deployment.clearinghouse)
        self.ops = at("ClearinghouseOps", deployment.clearinghouse)
        # the governance half's ABI at the same address (the owner's revoke_operator)
        self.admin = at("ClearinghouseAdmin", deployment.clearinghouse)
        # the Risk half's ABI at the same address (multi-leg and delayed orders, ADL)
        self.risk = at("ClearinghouseRisk", deployment.clearinghouse)
        self.oracle = at("OracleRouter", deployment.oracle)
        self.lens = at("ClearinghouseLens", deployment.lens) if deployment.lens else None
        self.vault = at("LiquidityVault", deployment.vault) if deployment.vault else None
        self._collaterals: dict[int, Collateral] = {}
        self._books: dict[str, riskbook.RiskBook] = {}
        self._auction: Any = None  # the LiquidationAuction handle, built on first use
        self._orders: Any = None  # the signed-order halves' handle, built on first use

    @classmethod
    def from_manifest(
        cls,
        manifest: str | Path | None = None,
        signer: AccountAPI | None = None,
        *,
        preflight: bool = True,
    ) -> PerpdexClient:
        """Client for the manifest at a path, of a network key, or (None) of the connected
        network. Refuses a manifest of another chain (chain id, genesis hash)."""
        return cls(Deployment.load(resolve_manifest(manifest)), signer, preflight=preflight)

    @classmethod
    def from_protocol(
        cls, protocol: Protocol, signer: AccountAPI | None = None, *, preflight: bool = True
    ) -> PerpdexClient:
        """Client for a deployment held as a `Protocol` (the `protocol` test fixture)."""
        return cls(Deployment.from_protocol(protocol), signer, preflight=preflight)

    def with_signer(self, signer: AccountAPI | None) -> PerpdexClient:
        """The same deployment, signing as another account."""
        return PerpdexClient(
            self.deployment, signer, preflight=self.preflight, transport=self.transport
        )

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
        return self._infos([account])[0]

    def accounts(self, owner: Any = None) -> list[AccountInfo]:
        """Every sub-account of `owner` (default: the signer), in index order."""
        who = _address(owner if owner is not None else self._require_signer("list accounts"))
        return self._infos([self.account_id(who, i) for i in range(self.sub_account_count(who))])

    def _infos(self, ids: Sequence[int]) -> list[AccountInfo]:
        """`account` of each id, read together (one JSON-RPC batch through the lite
        transport)."""
        ch = self.clearinghouse
        got = self.transport.calls(
            [c for a in ids for c in ((ch.account_header, (a,)), (ch.account_name, (a,)))],
            "latest",
        )
        return [_info(a, got[2 * k], got[2 * k + 1]) for k, a in enumerate(ids)]

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

    def revoke_operator(self, operator: Any, accounts: Sequence[int]) -> ReceiptAPI:
        """Revoke `operator` on every one of `accounts` (all the signer's) in one
        transaction: the kill switch for a bot operating several sub-accounts. Accounts
        it does not operate are left as they are."""
        if not accounts:
            raise PerpdexError("no accounts to revoke the operator on; pass at least one")
        return self._send(
            "revoke operator", self.admin.revoke_operator, _address(operator), list(accounts)
        )

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

    # --- conditional orders (contracts/modules/conditional.vy) ---------------------------

    @property
    def orders(self) -> Any:
        """The signed-order halves (ClearinghouseOrders with ClearinghouseRisk's functions
        and events) at the Clearinghouse address."""
        if self._orders is None:
            self._orders = self.transport.at("ClearinghouseOrders", self.deployment.clearinghouse)
        return self._orders

    def sign_order(self, order: so.Order) -> so.SignedOrder:
        """The signer's EIP-712 signature of `order` for this deployment (ape accounts:
        test accounts and keyfiles; a keyfile may ask to confirm)."""
        from eth_account.messages import encode_typed_data

        signer = self._require_signer("sign an order")
        order.validate()
        doc = so.typed_data(order, self.deployment.chain_id, self.deployment.clearinghouse)
        sig = signer.sign_message(encode_typed_data(full_message=doc))
        if sig is None:
            raise PerpdexError("the order was not signed (signing refused or unsupported)")
        return so.SignedOrder(order, bytes(sig.encode_rsv()))

    def execute_order(self, signed: so.SignedOrder) -> ReceiptAPI:
        """Execute a triggered conditional order against the vault (anyone may); the
        signer earns its keeper fee (`ConditionalOrderExecuted.keeper_fee` in the
        receipt). Refused, before anything is sent, with the contract's reason: `not
        triggered`, `order done`, `order expired`, `price worse than acceptable`..."""
        return self._send("execute order", self.orders.execute_order, *so.execute_args(signed))

    def cancel_order(self, order: so.Order) -> ReceiptAPI:
        """Cancel one signed order on chain (owner or operator): its nonce is consumed."""
        return self._send("cancel order", self.orders.cancel_order, so.order_tuple(order))

    def order_status(self, signed: so.SignedOrder, sender: str | None = None) -> ConditionalStatus:
        """Whether a conditional order is triggered now and what `execute_order` would say:
        the oracle price and its quorum, the order's state (`orders.order_state`: the
        eth_call of `execute_order` from `sender`, default the signer or the account's
        owner) and the keeper fee it would pay at the current balance. Sends nothing."""
        order = signed.order
        so.validate_conditional(order)
        price, flags = (int(x) for x in self.oracle.latest(order.market))
        who = sender or (
            str(self.signer.address)
            if self.signer is not None
            else _address(f"{order.account >> INDEX_BITS:#042x}")
        )
        reason = self._call_reason(self.orders.execute_order, so.execute_args(signed), who)
        balance = int(self.clearinghouse.balance_of(order.account, 0))
        scale = int(self.clearinghouse.SETTLEMENT_SCALE())
        return ConditionalStatus(
            digest=so.order_digest(order, self.deployment.chain_id, self.deployment.clearinghouse),
            oracle_price=from_wad(price),
            quorum=not flags & 1,
            triggered=so.is_triggered(order, price),
            state=so.order_state(reason),
            reason=reason,
            expected_fee=from_wad(so.expected_keeper_fee(order, balance, scale)),
        )

    # --- collateral ------------------------------------------------------------------------

    def collaterals(self) -> list[Collateral]:
        """Listed collateral tokens in index order (index 0: the settlement token)."""
        count = int(self.clearinghouse.collateral_count())
        for i in range(count):
            if i not in self._collaterals:
                address = str(self.clearinghouse.collateral_token(i))
                # any ERC-20: only symbol/decimals are read
                token = self.transport.at("MockERC20", address)
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
        erc20 = self.transport.at("MockERC20", col.address)
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

    def withdraw_all(
        self, account: int, token: str = "USDC", receiver: Any = None
    ) -> tuple[ReceiptAPI, int]:
        """Withdraw everything of `token` the rules allow now (`withdrawable_units`: the
        whole balance when the account is flat). Returns the receipt and the token units
        sent; refuses with the reason when nothing can leave."""
        from perpdex.sdk import math as pm
        from perpdex.sdk.snapshot import Snapshot

        col = self.collateral(token)
        snap = Snapshot.load(self, account, "pending")
        scale = int(self.clearinghouse.collateral_scale(col.index))
        units = pm.withdrawable(snap, col.index, scale)
        if pm.position_count(snap.header):
            # funding accrues until the transaction lands: take what is withdrawable both
            # now and WITHDRAW_ALL_SLACK_S later (equity moves one way in between)
            later = snap.timestamp + WITHDRAW_ALL_SLACK_S
            units = min(units, pm.withdrawable(snap, col.index, scale, later))
        if units <= 0:
            # the snapshot already holds what explains it (`account_margin` = pm.scan)
            floor = snap.loss_cap
            flat = pm.position_count(snap.header) == 0
            if snap.balance(col.index) <= 0:
                why = f"the account holds no {col.symbol}; deposit first"
            elif floor and pm.scan(snap).equity <= floor:
                why = (
                    f"its equity is at or below its loss cap (${from_wad(floor):,.2f}), which "
                    "nothing may cross; lower or clear the cap first (`perpdex loss-cap clear`)"
                )
            elif flat:
                why = "the margin gate refuses it now; check `perpdex account`"
            else:
                why = (
                    f"its {col.symbol} backs the open positions' initial margin; close or "
                    "reduce positions first (`perpdex close SYMBOL`)"
                )
            raise PerpdexError(f"nothing of {col.symbol} can be withdrawn from {account:#x}: {why}")
        signer = self._require_signer("withdraw")
        to = _address(receiver if receiver is not None else signer)
        return self._send("withdraw", self.ops.withdraw, account, col.address, units, to), units

    def transfer(
        self,
        from_account: int,
        to_account: int,
        amount: Decimal | int | str,
        token: str = "USDC",
    ) -> ReceiptAPI:
        """Move `amount` of `token` between two sub-accounts of one owner: the signer's
        own, or (the signer an operator of both) those of the owner it operates."""
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
        return _margin(self.clearinghouse.account_margin(account))

    def summary(self, account: int) -> AccountSummary:
        """Info, balances, margin and loss cap of one sub-account (read together: one
        JSON-RPC batch through the lite transport)."""
        cols = self.collaterals()
        ch = self.clearinghouse
        got = self.transport.calls(
            [
                (ch.account_header, (account,)),
                (ch.account_name, (account,)),
                (ch.account_margin, (account,)),
                (ch.loss_cap, (account,)),
                *((ch.balance_of, (account, c.index)) for c in cols),
            ],
            "latest",
        )
        info = _info(account, got[0], got[1])  # an account not open: UnknownAccount first
        for value in got[2:]:
            if isinstance(value, Exception):
                raise value
        return AccountSummary(
            info=info,
            balances={c.symbol: from_wad(int(v)) for c, v in zip(cols, got[4:], strict=True)},
            margin=_margin(got[2]),
            loss_cap=from_wad(int(got[3])),
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
        """Every listed market with its oracle price, mark, funding and open interest (one
        JSON-RPC batch through the lite transport)."""
        ch = self.clearinghouse
        n = len(self.deployment.markets)
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for m in range(n):
            calls += [(self.oracle.latest, (m,)), (ch.mark, (m,))]
            calls += [(ch.open_interest, (m,)), (ch.market_params, (m,))]
        got = self.transport.calls(calls, "latest")
        revert = self.transport.revert_errors
        out = []
        for m, symbol in enumerate(self.deployment.markets):
            oracle, mark, oi, params = got[4 * m : 4 * m + 4]
            for value in (mark, oi, params):
                if isinstance(value, BaseException):
                    raise value
            out.append(
                _market_info(
                    m, symbol, mark, oi, params, None if isinstance(oracle, revert) else oracle
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
        lens = self._require("lens", self.lens)
        m = self.market_id(market)
        delta = _size_wad(size)
        kwargs: dict[str, Any] = {} if block_id is None else {"block_id": block_id}
        try:
            raw = lens.quote(account, m, delta, **kwargs)
        except self.transport.revert_errors as err:
            raise _rejected("quote", err) from None
        number = block_id if isinstance(block_id, int) else None
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
        largest order in the same direction that would be, with the leverage it leaves.
        Simulates `trade` (eth_call from the account's owner); signs nothing."""
        from perpdex.sdk import math as pm

        m = self.market_id(market)
        delta = _size_wad(size)
        sender = str(self.clearinghouse.account_owner(account))
        quote = self.quote(account, m, from_wad(delta))
        bound = quote.acceptable_price(max_slippage)
        size_now = int(self.clearinghouse.position(account, m)[0])

        def refusal(d: int, b: int) -> str | None:
            try:
                pm.require_min_position(size_now + d, quote.view.oracle_price)
            except pm.Revert as err:
                return str(err)
            return self._call_reason(self.clearinghouse.trade, (account, m, d, b), sender)

        reason = refusal(delta, bound)
        sign = 1 if delta > 0 else -1
        loose = MAX_PRICE if sign > 0 else 1  # the size search ignores slippage
        # upper end: what 100x the account's equity buys at the oracle price
        equity = max(quote.view.equity_after, 0) + abs(delta) * quote.view.oracle_price // WAD
        hi = max(abs(delta), equity * 100 * WAD // max(quote.view.oracle_price, 1)) + 1
        lo = 0
        if refusal(sign * hi, loose) is None:
            lo = hi
        while hi - lo > max(1, hi // 10**6):
            mid = (lo + hi) // 2
            if refusal(sign * mid, loose) is None:
                lo = mid
            else:
                hi = mid
        leverage: Decimal | None = None
        if lo > 0:
            q = self.quote(account, m, from_wad(sign * lo))
            notional = abs(size_now + sign * lo) * q.view.oracle_price // WAD
            if q.view.equity_after > 0:
                leverage = Decimal(notional) / Decimal(q.view.equity_after)
        return OrderCheck(
            quote=quote,
            accepted=reason is None,
            reason=reason,
            hint=hint_for(reason) if reason else None,
            max_size=from_wad(sign * lo),
            max_leverage=leverage,
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
        m, delta, quote, bound = prepare_order(
            self, account, market, size, max_slippage, acceptable_price, quote
        )
        receipt = self._send("trade", self.clearinghouse.trade, account, m, delta, bound)
        fill = _own_events(receipt, self.clearinghouse.Fill, account, m, "trade")[-1]
        return _fill(fill, quote, bound, str(receipt.txn_hash), receipt.block_number)

    def quote_multi(self, account: int, legs: Legs) -> MultiQuote:
        """What a multi-leg order (`trade_multi`) would do in the next block: each leg's
        fill price, fee, realised PnL and funding, and the account's margin after the whole
        order, by the SDK's mirror of the contract (`math.fill_multi` / `check_multi`) over
        the pending block's state, so the fills match the chain's to the wei. `legs`:
        {symbol or id: signed size} or (symbol or id, size) pairs, in fill order. Signs
        nothing.

        A leg the chain would refuse (size, market, price quorum, caps, minimum position
        size) raises `TransactionRejected`; a final margin check that would refuse the
        order is returned as `refusal` (with the figures after it)."""
        return self._quote_multi(account, self._leg_orders(legs))

    def _quote_multi(self, account: int, orders: list[tuple[int, int]]) -> MultiQuote:
        """`quote_multi` of [(market id, size WAD)]."""
        from perpdex.sdk import math as pm
        from perpdex.sdk.snapshot import Snapshot

        snap = Snapshot.load(self, account, "pending")
        try:
            filled = pm.fill_multi(snap, [(m, d, None) for m, d in orders])
        except pm.Revert as err:
            raise TransactionRejected("quote", str(err), hint_for(str(err))) from None
        refusal: str | None = None
        try:
            margin = pm.check_multi(filled, snap.loss_cap).margin_after
        except pm.Revert as err:
            refusal = str(err)
            margin = pm.scan(filled.after)
        symbols = self.deployment.markets
        return MultiQuote(
            account=account,
            legs=tuple(
                LegQuote(f.market, symbols[f.market], from_wad(f.size_delta), f)
                for f in filled.fills
            ),
            margin_after=margin,
            timestamp=filled.now,
            refusal=refusal,
            hint=hint_for(refusal) if refusal else None,
        )

    def trade_multi(
        self,
        account: int,
        legs: Legs,
        *,
        max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE,
        slippage: Decimal | str | None = None,
        acceptable_prices: Mapping[str | int, Decimal | int | str] | None = None,
        quote: MultiQuote | None = None,
    ) -> MultiFill:
        """Several market orders of one sub-account in one transaction
        (`ClearinghouseRisk.trade_multi`), margin-checked once on the final book: a hedged
        book opens with the collateral its final requirement needs, not what each leg
        alone would. `legs`: {symbol or id: signed size} (e.g. {"BTC": "1", "ETH": "-30"})
        or (symbol or id, size) pairs, in fill order; at most 8, each market once.

        Each leg carries a worst acceptable price: `acceptable_prices[leg]` if given (in
        dollars), else its predicted fill (`quote_multi`, or `quote` if given) moved
        `max_slippage` (a fraction; `slippage` is the same) against it. Refused with the
        contract's reason and a hint before anything is signed when the chain would
        refuse it. Returns each leg's fill, in order."""
        orders = self._leg_orders(legs)
        if quote is None:
            quote = self._quote_multi(account, orders)
        elif quote.account != account or [(q.market, to_wad(q.size)) for q in quote.legs] != orders:
            raise PerpdexError(
                f"the quote is for another order ({_legs_text(quote)} on account "
                f"{quote.account:#x}); quote this order first"
            )
        slip = max_slippage if slippage is None else slippage
        given = {
            self.market_id(k): to_wad(_positive(v, "acceptable price"))
            for k, v in (acceptable_prices or {}).items()
        }
        unknown = set(given) - {m for m, _ in orders}
        if unknown:
            names = ", ".join(self.deployment.markets[m] for m in sorted(unknown))
            raise PerpdexError(
                f"acceptable prices given for {names}, which the order does not trade"
            )
        bounds = [given.get(q.market, q.acceptable_price(slip)) for q in quote.legs]
        args = [(m, d, b) for (m, d), b in zip(orders, bounds, strict=True)]
        receipt = self._send("trade", self.risk.trade_multi, account, args, oracle_reads=len(args))
        fills = {
            int(f.market): f
            for f in receipt.decode_logs(self.clearinghouse.Fill)
            if int(f.account) == account
        }
        missing = [q.symbol for q in quote.legs if q.market not in fills]
        if missing:
            raise PerpdexError(
                f"trade {receipt.txn_hash} emitted no Fill for {', '.join(missing)} of this "
                "account; check the transaction in a block explorer"
            )
        tx, block = str(receipt.txn_hash), receipt.block_number
        return MultiFill(
            account=account,
            legs=tuple(
                _leg_fill(fills[q.market], q, b, tx, block)
                for q, b in zip(quote.legs, bounds, strict=True)
            ),
            quote=quote,
            tx_hash=tx,
            block_number=block,
        )

    def _leg_orders(self, legs: Legs) -> list[tuple[int, int]]:
        """[(market id, size WAD)] of a multi-leg order, in the order given."""
        pairs = list(legs.items()) if isinstance(legs, Mapping) else list(legs)
        out: list[tuple[int, int]] = []
        for pair in pairs:
            if len(pair) != 2:
                raise PerpdexError(
                    f"leg {pair!r} is not a (market, size) pair; write legs like "
                    '{"BTC": "1", "ETH": "-30"}'
                )
            market, size = pair
            out.append((self.market_id(market), _size_wad(size)))
        return out

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

    # --- delayed vault orders (contracts/modules/delayed.vy) ----------------------------------

    def delayed_config(self, market: str | int) -> dm.DelayedConfig:
        """The market's delayed-order settings: mode (0 immediate trades allowed, 1 orders
        that add risk only by delayed order, 2 every vault trade), min delay and max age
        (seconds), keeper fee (USD WAD); `enabled` False when it takes none."""
        return dm.unpack_config(int(self.ops.delayed_config(self.market_id(market))))

    def requires_delayed(self, account: int, market: str | int, size: Decimal | int | str) -> bool:
        """Whether `trade` would refuse this order for a delayed one ("clearinghouse: use
        commit_order"): mode 1 and an order that opens, grows or flips the position, or
        mode 2."""
        m = self.market_id(market)
        delta = _size_wad(size)
        held = int(self.clearinghouse.position(account, m)[0])
        adds = held == 0 or (held > 0) == (delta > 0) or abs(delta) > abs(held)
        return self.delayed_config(m).requires_delayed(adds)

    def pending_order(self, account: int, market: str | int) -> PendingOrder | None:
        """The account's committed delayed order in `market`, or None."""
        m = self.market_id(market)
        word, cfg = self.transport.calls(
            [(self.ops.delayed_order, (account, m)), (self.ops.delayed_config, (m,))], "latest"
        )
        for value in (word, cfg):
            if isinstance(value, BaseException):
                raise value
        order = dm.unpack_order(int(word))
        if order is None:
            return None
        return self._pending(account, m, order, dm.unpack_config(int(cfg)))

    def _pending(
        self, account: int, m: int, o: dm.DelayedOrder, cfg: dm.DelayedConfig
    ) -> PendingOrder:
        return PendingOrder(
            account=account,
            market=m,
            symbol=self.deployment.markets[m],
            size=from_wad(o.size),
            acceptable_price=None
            if o.acceptable_price > MAX_PRICE
            else from_wad(o.acceptable_price),
            commit_time=o.commit_time,
            settle_from=o.opens(cfg),
            expires=o.expires(cfg),
            keeper_fee=from_wad(o.keeper_fee),
        )

    def commit_trade(
        self,
        account: int,
        market: str | int,
        size: Decimal | int | str,
        *,
        max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE,
        acceptable_price: Decimal | int | str | None = None,
        quote: Quote | None = None,
    ) -> DelayedCommit:
        """Delayed vault order of `size` (signed base units: positive buys): committed now,
        filled by `settle_order` (anyone's: a keeper's, or `settle_when_ready`) at the first
        oracle price observed at least the market's min delay later, with the checks and
        fees of `trade` and the keeper fee. The worst acceptable price is set as for
        `trade` (quote moved `max_slippage`, or `acceptable_price`), but the fill comes
        later, at a price nobody knows yet: allow for the market's moves over the delay."""
        m, delta, quote, bound = prepare_order(
            self, account, market, size, max_slippage, acceptable_price, quote
        )
        receipt = self._send("commit_order", self.risk.commit_order, account, m, delta, bound)
        ev = _own_events(receipt, self.risk.DelayedOrderCommitted, account, m, "commit_order")[-1]
        order = dm.DelayedOrder(
            size=delta,
            acceptable_price=int(ev.acceptable_price),
            commit_time=int(ev.commit_time),
            keeper_fee=int(ev.keeper_fee),
        )
        pending = self._pending(account, m, order, self.delayed_config(m))
        return DelayedCommit(pending, quote, str(receipt.txn_hash), receipt.block_number)

    def settle_order(self, account: int, market: str | int) -> DelayedFill:
        """Fill the account's committed order in `market` (anyone may; the signer earns its
        keeper fee). Refused until a price observed after its delay is published ("no
        price after commit yet"), and once expired."""
        m = self.market_id(market)
        receipt = self._send("settle_order", self.risk.settle_order, account, m)
        settled = _own_events(receipt, self.risk.DelayedOrderSettled, account, m, "settle_order")
        fills = _own_events(receipt, self.clearinghouse.Fill, account, m, "settle_order")
        return _delayed_fill(
            fills[-1],
            settled[-1],
            self.deployment.markets[m],
            str(receipt.txn_hash),
            receipt.block_number,
        )

    def cancel_delayed_order(self, account: int, market: str | int) -> ReceiptAPI:
        """Remove a committed order unfilled: the owner or an operator before its settlement
        window opens, anyone once it expired."""
        m = self.market_id(market)
        return self._send("cancel_delayed_order", self.risk.cancel_delayed_order, account, m)

    def find_settlement(
        self, account: int, market: str | int, from_block: int, chunk: int = 10_000
    ) -> DelayedFill | None:
        """The latest settlement of the account's delayed order in `market` since
        `from_block` (by whoever settled it), from the chain's logs; None if none."""
        m = self.market_id(market)
        head = self._head()
        for fields, log in reversed(self._logs("DelayedOrderSettled", from_block, head, chunk)):
            if fields["account"] != account or fields["market"] != m:
                continue
            fills = [
                f
                for f, fl in self._logs("Fill", log.block_number, log.block_number, 1)
                if fl.tx_hash == log.tx_hash and f["account"] == account and f["market"] == m
            ]
            if fills:
                return _delayed_fill(
                    fills[-1], fields, self.deployment.markets[m], log.tx_hash, log.block_number
                )
        return None

    def settle_when_ready(
        self,
        account: int,
        market: str | int,
        *,
        from_block: int,
        timeout: float = 300.0,
        poll: float = 1.0,
        settle: bool = True,
    ) -> DelayedFill | None:
        """Wait for the account's order in `market` (committed at or after `from_block`)
        to fill: each `poll` seconds, with `settle` the signer settles it itself once
        `settle_order` would pass (earning its keeper fee back), else it waits for a
        keeper. Returns the fill (whoever settled it), None when it expired or was
        cancelled; raises PerpdexError after `timeout` seconds."""
        import time

        m = self.market_id(market)
        deadline = time.monotonic() + timeout
        while True:
            order = self.pending_order(account, m)
            if order is None:
                return self.find_settlement(account, m, from_block)
            now = self.transport.block("latest")[1]
            if order.status(now, int(self.oracle.price_time(m))) == "expired":
                return None
            signer = self._signer_or_none("settle_order") if settle else None
            if signer is not None:
                sender = str(signer.address)
                if self._call_reason(self.risk.settle_order, (account, m), sender) is None:
                    try:
                        return self.settle_order(account, m)
                    except TransactionRejected:
                        pass  # another keeper was faster: the next poll finds its fill
            if time.monotonic() >= deadline:
                raise PerpdexError(
                    f"the {order.symbol} order of account {account:#x} is still pending "
                    f"after {timeout:.0f} s (no price observed after {order.settle_from} "
                    "yet?); it stays committed: a keeper may still settle it before "
                    f"{order.expires}, or cancel it once expired"
                )
            time.sleep(poll)

    # --- portfolio ---------------------------------------------------------------------------

    def scenario_names(self) -> tuple[str, ...]:
        """Names of the risk book's stress scenarios, in book order."""
        return self.risk_book().names

    def risk_book(self) -> riskbook.RiskBook:
        """The risk book the Clearinghouse uses now (decoded from its code)."""
        address = str(self.clearinghouse.risk_book())
        if int(address, 16) == 0:
            raise PerpdexError(
                "no risk book is published on this deployment; publish one with `perpdex risk push`"
            )
        if address not in self._books:
            code = self.transport.code(address)
            self._books[address] = riskbook.decode(code[1:])  # skip the leading STOP byte
        return self._books[address]

    def portfolio(self, account: int) -> Portfolio:
        """Positions, PnL, funding, margin, health, liquidation prices and the loss under
        every stress scenario (`ClearinghouseLens.account_summary`), at the cached marks."""
        lens = self._require("lens", self.lens)
        info = self.account(account)
        block = self._head()
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
        erc20 = self.transport.at("MockERC20", col.address)
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

    def lp_redeemable_shares(self, owner: Any = None) -> tuple[int, int, str | None]:
        """(held, redeemable now, why not all): the most of `owner`'s shares (default: the
        signer) a `redeem` accepts in the next block, found by simulating redeems (the
        vault's exposure caps may hold part back while traders' positions need the cash),
        and the vault's reason when that is not all of them."""
        vault = self._require("vault", self.vault)
        who = _address(owner if owner is not None else self._require_signer("LP redeem"))
        held = int(vault.balanceOf(who))
        if held == 0:
            return 0, 0, None

        def reason(shares: int) -> str | None:
            return self._call_reason(vault.redeem, (shares, who, who), who)

        full = reason(held)
        if full is None:
            return held, held, None
        lo, hi = 0, held  # lo passes (0 shares: nothing to check), hi fails
        while hi - lo > max(1, held // 1_000_000):
            mid = (lo + hi) // 2
            if reason(mid) is None:
                lo = mid
            else:
                hi = mid
        return held, lo, full

    def lp_redeem_all(self, receiver: Any = None) -> LpMove:
        """Redeem every share the vault accepts now (`lp_redeemable_shares`); says why when
        it holds some back."""
        held, ok, why = self.lp_redeemable_shares()
        if held == 0:
            return self.lp_redeem(None, receiver)  # raises "holds no LP shares"
        if ok == 0:
            raise TransactionRejected("LP redeem", why or "refused", hint_for(why or ""))
        vault = self._require("vault", self.vault)
        signer = self._require_signer("LP redeem")
        to = _address(receiver if receiver is not None else signer)
        receipt = self._send("LP redeem", vault.redeem, ok, to, signer.address)
        return self._lp_move(receipt, vault.Withdraw)

    def lp_status(self, owner: Any = None) -> LpStatus:
        """Shares, their value and the pool (equity, cash, insurance, per-market use of the
        vault's exposure cap, and how much cash LP exits may take now) for `owner`
        (default: the signer). The cap and the exit room are the chain's own rule
        (perpdex/sdk/math/vault_limits.py `exposure_limit`, `max_exit`) at the cached
        marks: a withdrawal of `exit_room` passes and one token unit more is refused, as
        long as the marks do not move (the vault re-reads them first)."""
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
        cash, raw_cash, pool, provision, insurance = self.vault_pool()
        uses = []
        for mk, pm_ in zip(self.markets(), pool, strict=True):
            # the chain's one rule (vault_limits.exposure_limit) at the cached mark
            exposure = vl.exposure(pm_)
            cap = vl.exposure_limit(pm_, raw_cash)
            uses.append(
                MarketUse(
                    market=mk.id,
                    symbol=mk.symbol,
                    long_oi=mk.long_oi,
                    short_oi=mk.short_oi,
                    mark_price=mk.mark_price,
                    funding_rate=mk.funding_rate,
                    exposure=from_wad(exposure),
                    cap=from_wad(cap),
                    utilisation=Decimal(exposure) / Decimal(cap) if cap > 0 else None,
                )
            )
        scale = 10 ** (18 - self.deployment.settlement_decimals)
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
            exit_room=Decimal(
                vl.max_exit(cash, pool, scale, provision=provision, insurance=insurance)
            )
            / asset_unit,
        )

    def vault_pool(self) -> tuple[int, int, list[vl.PoolMarket], int, int]:
        """(views.pool_cash, the raw cash word, every market as the vault's limits read
        it, the bad-debt provision, the insurance fund once the fees are swept:
        views.insurance_fund) in one batch, USD WAD at the cached marks: what
        `perpdex/sdk/math/vault_limits.py` needs to apply the chain's exposure rule
        (`exposure_limit`: a trader fill's cap reads the raw cash; `max_exit`: an LP exit
        sweeps the fees first, so it reads pool_cash and the swept insurance, and
        measures against pool equity too)."""
        ch = self.clearinghouse
        n = len(self.deployment.markets)
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (ch.pool_cash, ()),
            (self.ops.pending_fees, ()),
            (ch.system_params, ()),
            (ch.bad_debt_provision, ()),
            (ch.insurance_fund, ()),
        ]
        k = len(vl.POOL_MARKET_VIEWS)
        for m in range(n):
            calls += [(getattr(ch, view), (m,)) for view in vl.POOL_MARKET_VIEWS]
        got = self.transport.calls(calls, "latest")
        for value in got:
            if isinstance(value, BaseException):
                raise value
        cash, pending, sysp = int(got[0]), int(got[1]), got[2]
        provision, insurance = int(got[3]), int(got[4])
        to_vault = vl.fees_to_vault(pending, int(sysp.insurance_bps), int(sysp.protocol_bps))
        pool = [vl.pool_market(*got[5 + k * m : 5 + k * (m + 1)]) for m in range(n)]
        return cash, cash - to_vault, pool, provision, insurance

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

    # --- P&L history, strategy views, custom stress (perpdex/sdk/history.py, shock.py) ---

    def history(
        self,
        accounts: int | Sequence[int],
        from_block: int = 0,
        *,
        chunk: int = hist.LOG_CHUNK,
        portfolios: Mapping[int, Portfolio] | None = None,
    ) -> list[hist.AccountHistory]:
        """P&L history of each account (in the order given): its events in blocks
        [from_block, head] (eth_getLogs in `chunk`-block requests) and the open positions'
        unrealised P&L and unsettled funding at the head (`portfolio`; pass `portfolios`
        already read to reuse them)."""
        ids = [accounts] if isinstance(accounts, int) else list(dict.fromkeys(accounts))
        if from_block < 0:
            raise PerpdexError(f"from block {from_block} is negative; give 0 or a block number")
        if chunk < 1:
            raise PerpdexError(f"log chunk {chunk} must be at least 1 block")
        if not ids:
            return []
        given = portfolios or {}
        pfs = {a: given[a] if a in given else self.portfolio(a) for a in ids}
        head = min(int(pf.block_number or 0) for pf in pfs.values())
        if from_block > head:
            raise PerpdexError(
                f"from block {from_block} is after the chain's head {head}; give a block "
                "at or before it (0: the whole chain)"
            )
        events = self._account_events(ids, from_block, head, chunk)
        return [
            hist.AccountHistory(
                info=pfs[a].info,
                from_block=from_block,
                to_block=head,
                events=tuple(e for e in events if e.account == a),
                unrealized_pnl=pfs[a].unrealized_pnl,
                funding_accrued=-pfs[a].funding_owed,
            )
            for a in ids
        ]

    def strategies(
        self, owner: Any = None, from_block: int = 0, *, chunk: int = hist.LOG_CHUNK
    ) -> hist.StrategyBook:
        """Every sub-account of `owner` (default: the signer) with equity, margin used,
        free margin, health and P&L (realised, unrealised, funding, fees) since
        `from_block`, and the correlation of their P&L series."""
        who = _address(owner if owner is not None else self._require_signer("list accounts"))
        infos = self.accounts(who)
        pfs = {i.id: self.portfolio(i.id) for i in infos}
        found = self.history(list(pfs), from_block, chunk=chunk, portfolios=pfs)
        lines = tuple(hist.StrategyLine(pfs[h.account], h) for h in found)
        block = found[0].to_block if found else self._head()
        corr = hist.correlate({h.account: h.series for h in found})
        return hist.StrategyBook(who, block, from_block, lines, corr)

    def parse_shocks(self, text: str) -> dict[int, Decimal]:
        """`BTC=-30%,ETH=-25%` -> {market id: move as a fraction} (`shock.parse_shocks`)."""
        return shock.parse_shocks(text, self.deployment.markets)

    def stress(
        self,
        account: int,
        moves: str | Mapping[int, Decimal | int | str] | Mapping[str, Decimal | int | str],
    ) -> shock.StressResult:
        """`account` revalued with each market of `moves` at its oracle price moved by the
        shock (every other market at its cached mark), by the SDK's mirror of the engine's
        margin scan at the head block: equity, requirements and health before and after,
        and whether it would be liquidatable. `moves`: the CLI's text (`BTC=-30%`) or
        {symbol or id: move as a fraction, e.g. Decimal("-0.3")}."""
        from perpdex.sdk.snapshot import Snapshot

        if isinstance(moves, str):
            parsed = self.parse_shocks(moves)
        else:
            parsed = {}
            for key, value in moves.items():
                m = self.market_id(key)
                move = Decimal(str(value))
                if m in parsed or not move.is_finite() or not -1 < move <= shock.MAX_MOVE:
                    raise PerpdexError(
                        f"shock {key!r}: {value!r} must be one move per market above -1 and at "
                        f"most {shock.MAX_MOVE} (a fraction: -0.3 for -30%)"
                    )
                parsed[m] = move
        self.account(account)  # refuses an account that is not open
        snap = Snapshot.load(self, account)
        return shock.stress(snap, parsed, self.deployment.markets)

    def mark_history(
        self, from_block: int = 0, to_block: int | None = None, *, chunk: int = hist.LOG_CHUNK
    ) -> dict[int, tuple[hist.MarkPoint, ...]]:
        """Every listed market's cached mark after each `MarkUpdated` in blocks
        [from_block, to_block] (default: the head), by market id (every market has a key);
        `hist.returns_correlation` correlates their returns."""
        stop = self._head() if to_block is None else to_block
        out: dict[int, list[hist.MarkPoint]] = {m: [] for m in range(len(self.deployment.markets))}
        for fields, log in self._logs("MarkUpdated", from_block, stop, chunk):
            m = int(fields["market"])
            if m in out:
                out[m].append(
                    hist.MarkPoint(
                        market=m,
                        block_number=log.block_number,
                        log_index=log.log_index,
                        price=from_wad(int(fields["price"])),
                        funding_rate=from_wad(int(fields["funding_rate"])),
                    )
                )
        return {m: tuple(points) for m, points in out.items()}

    def liquidation_starts(
        self, from_block: int = 0, to_block: int | None = None, *, chunk: int = hist.LOG_CHUNK
    ) -> tuple[int, ...]:
        """Every account whose liquidation began (`LiquidationBegun`) in blocks
        [from_block, to_block] (default: the head), once each, in order of first start;
        `liquidations` says which are still running."""
        stop = self._head() if to_block is None else to_block
        found = self._logs("LiquidationBegun", from_block, stop, chunk)
        return tuple(dict.fromkeys(int(fields["account"]) for fields, _ in found))

    def liquidations(self, accounts: Sequence[int]) -> list[Liquidation]:
        """The liquidation state of each account (in the order given; one JSON-RPC batch
        through the lite transport): in liquidation or not, its margin at the cached marks,
        and its auction's open tranche, discount now and deadline."""
        ids = list(accounts)
        if not ids:
            return []
        if self._auction is None:
            address = self._require("auction", self.deployment.auction)
            self._auction = self.transport.at("LiquidationAuction", address)
        ch, auction = self.clearinghouse, self._auction
        per = 6
        got = self.transport.calls(
            [
                c
                for a in ids
                for c in (
                    (ch.account_header, (a,)),
                    (ch.account_name, (a,)),
                    (ch.account_margin, (a,)),
                    (auction.auction, (a,)),
                    (auction.current_discount, (a,)),
                    (auction.deadline, (a,)),
                )
            ],
            "latest",
        )
        out = []
        for k, a in enumerate(ids):
            header, name, margin, state, discount, deadline = got[per * k : per * k + per]
            info = _info(a, header, name)
            for value in (margin, state, discount, deadline):
                if isinstance(value, Exception):
                    raise value
            active, started, lot_left, lot_notional, tranche, _ = state
            out.append(
                Liquidation(
                    info=info,
                    margin=_margin(margin),
                    auction_active=bool(active),
                    clock_start=int(started),
                    lot_left=from_wad(int(lot_left)),
                    lot_notional=from_wad(int(lot_notional)),
                    tranche=int(tranche),
                    discount=from_wad(int(discount)),
                    deadline=int(deadline),
                )
            )
        return out

    def _logs(
        self, name: str, start: int, stop: int, chunk: int
    ) -> list[tuple[dict[str, Any], Log]]:
        """The Clearinghouse's `name` events in blocks [start, stop] (eth_getLogs in
        `chunk`-block requests), decoded with the shipped ABI, in chain order."""
        from eth_abi import decode
        from eth_utils import keccak

        from perpdex.sdk.lite.abi import load

        if start < 0:
            raise PerpdexError(f"from block {start} is negative; give 0 or a block number")
        if chunk < 1:
            raise PerpdexError(f"log chunk {chunk} must be at least 1 block")
        [ev] = [e for e in load("Clearinghouse") if e["type"] == "event" and e["name"] == name]
        topic = "0x" + keccak(text=f"{name}({','.join(i['type'] for i in ev['inputs'])})").hex()
        addresses = list(dict.fromkeys([self.clearinghouse.address, self.ops.address]))
        raw: dict[tuple[int, int], Log] = {}
        lo = start
        while lo <= stop:
            hi = min(lo + chunk - 1, stop)
            for log in self.transport.logs(addresses, [topic], lo, hi):
                raw[(log.block_number, log.log_index)] = log
            lo = hi + 1
        indexed = [i for i in ev["inputs"] if i.get("indexed")]
        data = [i for i in ev["inputs"] if not i.get("indexed")]
        out = []
        for _, log in sorted(raw.items()):
            fields: dict[str, Any] = {
                i["name"]: int.from_bytes(t, "big", signed=i["type"].startswith("int"))
                for i, t in zip(indexed, log.topics[1:], strict=True)
            }
            values = decode([i["type"] for i in data], log.data)
            fields.update({i["name"]: v for i, v in zip(data, values, strict=True)})
            out.append((fields, log))
        return out

    def _account_events(
        self, ids: Sequence[int], start: int, stop: int, chunk: int
    ) -> list[hist.AccountEvent]:
        """The history events of `ids` in blocks [start, stop], in chain order (decoded with
        the shipped ABI, perpdex/abi/Clearinghouse.json: the Clearinghouse and its halves)."""
        from eth_abi import decode
        from eth_utils import keccak, to_checksum_address

        from perpdex.sdk.lite.abi import load

        specs: dict[str, dict[str, Any]] = {}
        for ev in load("Clearinghouse"):
            if ev["type"] == "event" and ev["name"] in hist.EVENT_NAMES:
                sig = f"{ev['name']}({','.join(i['type'] for i in ev['inputs'])})"
                specs["0x" + keccak(text=sig).hex()] = ev
        topics = ["0x" + a.to_bytes(32, "big").hex() for a in ids]
        second = [t for t, ev in specs.items() if ev["name"] in hist.SECOND_ACCOUNT]
        addresses = list(dict.fromkeys([self.clearinghouse.address, self.ops.address]))
        raw: dict[tuple[int, int], Log] = {}
        lo = start
        while lo <= stop:
            hi = min(lo + chunk - 1, stop)
            for filt in ([list(specs), topics], [second, None, topics]):
                for log in self.transport.logs(addresses, filt, lo, hi):
                    raw[(log.block_number, log.log_index)] = log
            lo = hi + 1

        def topic_value(typ: str, word: bytes) -> Any:
            if typ == "address":
                return to_checksum_address(word[-20:])
            if typ == "bool":
                return word[-1] != 0
            return int.from_bytes(word, "big", signed=typ.startswith("int"))

        tokens = {c.address.lower(): (c.symbol, c.decimals) for c in self.collaterals()}
        wanted = set(ids)
        out: list[hist.AccountEvent] = []
        for (block, index), log in sorted(raw.items()):
            ev = specs["0x" + log.topics[0].hex()]
            indexed = [i for i in ev["inputs"] if i.get("indexed")]
            data = [i for i in ev["inputs"] if not i.get("indexed")]
            fields = {
                i["name"]: topic_value(i["type"], t)
                for i, t in zip(indexed, log.topics[1:], strict=True)
            }
            values = decode([i["type"] for i in data], log.data)
            fields.update({i["name"]: v for i, v in zip(data, values, strict=True)})
            out += hist.account_events(
                ev["name"],
                fields,
                accounts=wanted,
                block_number=block,
                log_index=index,
                tx_hash=log.tx_hash,
                symbols=self.deployment.markets,
                tokens=tokens,
            )
        return out

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

    def _signer_or_none(self, action: str) -> Any:
        """The signer (the lite TradeClient's key too), or None for a read-only client."""
        try:
            return self._require_signer(action)
        except PerpdexError:
            return None

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

    def _send(self, action: str, method: Any, *args: Any, oracle_reads: int = 1) -> ReceiptAPI:
        """Preflight and send `method(*args)` with a padded gas estimate; `oracle_reads`:
        markets whose oracle read the estimate may skip (`gas.padded_gas`)."""
        from ape.exceptions import ContractLogicError

        signer = self._require_signer(action)
        if self.preflight:
            self._simulate(action, method, args, signer)
        try:
            return gas.send(action, method, *args, sender=signer, oracle_reads=oracle_reads)
        except ContractLogicError as err:
            raise rejected(action, err) from err

    def _call_reason(self, method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        """None if `method(*args)` from `sender` would succeed in the next block, else the
        revert reason (an eth_call; nothing is sent)."""
        return self.transport.call_reason(
            str(method.contract.address), method.encode_input(*args), sender
        )

    def _head(self) -> int:
        """The head block's number."""
        return int(self.transport.block("latest")[0] or 0)

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


def _info(account: int, header: Any, name: Any) -> AccountInfo:
    """`AccountInfo` from the account's header and name (as read); refuses one not open."""
    for value in (header, name):
        if isinstance(value, Exception):
            raise value
    hdr = int(header)
    if not hdr & ACCOUNT_EXISTS:
        raise UnknownAccount(
            f"account {account:#x} is not open; open one with `perpdex open-account NAME` "
            "or list yours with `perpdex account`"
        )
    return AccountInfo(
        id=account,
        owner=_address(f"{account >> INDEX_BITS:#042x}"),
        index=account & (2**INDEX_BITS - 1),
        name=str(name),
        portfolio=bool(hdr & ACCOUNT_PORTFOLIO),
        in_liquidation=bool(hdr & ACCOUNT_IN_LIQUIDATION),
    )


def _rejected(action: str, err: Exception) -> TransactionRejected:
    """`TransactionRejected` for a call refused through either transport (ape's
    `ContractLogicError`, or the lite handles' own `TransactionRejected`)."""
    if isinstance(err, TransactionRejected):
        return TransactionRejected(action, err.reason, err.hint)
    return rejected(action, err)


def prepare_order(
    client: Any,
    account: int,
    market: str | int,
    size: Decimal | int | str,
    max_slippage: Decimal | str,
    acceptable_price: Decimal | int | str | None,
    quote: Quote | None,
) -> tuple[int, int, Quote, int]:
    """(market id, size WAD, quote, worst acceptable price WAD) of a market order, for the
    ape client and the standalone one alike: the quote given (it must be for this order)
    or a fresh one, the bound from `acceptable_price` (dollars) or the quote moved
    `max_slippage`, and the minimum position size checked before anything is signed."""
    m = client.market_id(market)
    delta = _size_wad(size)
    if quote is None:
        quote = client.quote(account, m, from_wad(delta))
    elif (quote.account, quote.market, to_wad(quote.size)) != (account, m, delta):
        raise PerpdexError(
            f"the quote is for {quote.size} {quote.symbol} on account {quote.account:#x}, "
            "not this order; quote this order first"
        )
    if acceptable_price is not None:
        bound = to_wad(_positive(acceptable_price, "acceptable price"))
    else:
        bound = quote.acceptable_price(max_slippage)
    client._require_min_position(account, m, delta, quote)
    return m, delta, quote, bound


#: The legs of a multi-leg order: {symbol or id: signed size} or (symbol or id, size) pairs.
Legs = Mapping[str | int, Decimal | int | str] | Sequence[tuple[str | int, Decimal | int | str]]


def _own_events(
    receipt: ReceiptAPI, event: Any, account: int, market: int, action: str
) -> list[Any]:
    """`receipt`'s `event` logs of `account` in `market` (at least one, else an error
    naming the transaction)."""
    logs = [
        e
        for e in receipt.decode_logs(event)
        if int(e.account) == account and int(e.market) == market
    ]
    if not logs:
        raise PerpdexError(
            f"{action} {receipt.txn_hash} logged no {event.name} of this account; check the "
            "transaction in a block explorer"
        )
    return logs


def _legs_text(q: MultiQuote) -> str:
    return ", ".join(f"{leg.size} {leg.symbol}" for leg in q.legs)


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
