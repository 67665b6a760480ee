"""The SDK's typed results: accounts, margin, quotes, fills, portfolios, the vault, and the
order check, in dollars and base units (`Decimal`), each keeping the lens's raw integers
where exact comparisons need them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from perpdex.constants import (
    WAD,
)
from perpdex.errors import PerpdexError
from perpdex.sdk.math import (
    NO_RISK_HEALTH,
    AccountView,
    MarginScan,
    PoolFill,
    PositionView,
    QuoteView,
    health,
)
from perpdex.units import from_wad, to_wad

if TYPE_CHECKING:
    pass


#: Default worst fill accepted by `trade` and `close`: the quoted fill price moved 0.5%
#: against the order.
DEFAULT_MAX_SLIPPAGE = Decimal("0.005")


@dataclass(frozen=True)
class OrderCheck:
    """`PerpdexClient.check_order`: the order's fate in the next block, and the largest
    order in its direction that would pass (signed base units; 0 when none would)."""

    quote: Quote
    accepted: bool
    reason: str | None
    hint: str | None
    max_size: Decimal
    max_leverage: Decimal | None  # position notional / equity after the largest order


@dataclass(frozen=True)
class ConditionalStatus:
    """`PerpdexClient.order_status`: a conditional order against the chain now (dollars)."""

    digest: bytes  # the order's EIP-712 digest: its id in events
    oracle_price: Decimal
    quorum: bool  # the oracle has a price quorum (no trigger fires without one)
    triggered: bool  # the oracle price has crossed the trigger (`orders.is_triggered`)
    state: str  # `orders.order_state`: executable, waiting, done, cancelled, ...
    reason: str | None  # execute_order's refusal (None: it would execute now)
    expected_fee: Decimal  # keeper fee at the current settlement balance

    @property
    def executable(self) -> bool:
        return self.reason is None


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
class LegQuote:
    """One leg of a multi-leg order as `PerpdexClient.quote_multi` predicts it, in dollars;
    `view` keeps the mirror's integers (WAD), which the chain's fill matches to the wei."""

    market: int
    symbol: str
    size: Decimal  # signed base units: positive buys
    view: PoolFill

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
        return (self.fill_price - self.oracle_price) / self.oracle_price

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
        """Funding the existing position settles with this leg (positive: it pays)."""
        return from_wad(self.view.funding_paid)

    @property
    def size_after(self) -> Decimal:
        return from_wad(self.view.size_after)

    def acceptable_price(self, max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE) -> int:
        """Worst fill price (WAD) for this leg: see `acceptable_price`."""
        return acceptable_price(self.view.fill_price, self.size > 0, max_slippage)


@dataclass(frozen=True)
class MultiQuote:
    """What a multi-leg order would do in the next block (`PerpdexClient.quote_multi`,
    the SDK's mirror of `trade_multi` over the pending block's state): each leg's fill and
    the account's margin after the whole order. `refusal` is the contract's reason when
    the final margin check would refuse the order (None: accepted), with its `hint`."""

    account: int
    legs: tuple[LegQuote, ...]
    margin_after: MarginScan
    timestamp: int  # the block time quoted (the pending block's)
    refusal: str | None = None
    hint: str | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None

    @property
    def fee(self) -> Decimal:
        return sum((leg.fee for leg in self.legs), Decimal(0))

    @property
    def notional(self) -> Decimal:
        return sum((leg.notional for leg in self.legs), Decimal(0))

    @property
    def equity_after(self) -> Decimal:
        return from_wad(self.margin_after.equity)

    @property
    def initial_after(self) -> Decimal:
        return from_wad(self.margin_after.initial)

    @property
    def maintenance_after(self) -> Decimal:
        return from_wad(self.margin_after.maintenance)

    @property
    def health_after(self) -> Decimal | None:
        """Equity over maintenance after the order; None when nothing is at risk."""
        return _health(health(self.margin_after.equity, self.margin_after.maintenance))

    def acceptable_prices(
        self, max_slippage: Decimal | str = DEFAULT_MAX_SLIPPAGE
    ) -> tuple[int, ...]:
        """Each leg's worst fill price (WAD), in leg order."""
        return tuple(leg.acceptable_price(max_slippage) for leg in self.legs)


@dataclass(frozen=True)
class LegFill:
    """One leg of a multi-leg order as the Clearinghouse filled it (its `Fill` event)."""

    account: int
    market: int
    symbol: str
    size_delta: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    funding_paid: Decimal  # settled by the position before the fill (positive: paid)
    size_after: Decimal
    acceptable_price: Decimal  # the bound the leg carried
    quote: LegQuote  # the prediction the bound was computed from
    tx_hash: str
    block_number: int | None

    @property
    def cash_flow(self) -> Decimal:
        """Change in the settlement balance: realised PnL minus funding and fee."""
        return self.realized_pnl - self.funding_paid - self.fee


@dataclass(frozen=True)
class MultiFill:
    """A multi-leg order as the Clearinghouse filled it: one `LegFill` per leg, in order,
    from one transaction."""

    account: int
    legs: tuple[LegFill, ...]
    quote: MultiQuote
    tx_hash: str
    block_number: int | None

    @property
    def fee(self) -> Decimal:
        return sum((leg.fee for leg in self.legs), Decimal(0))

    @property
    def cash_flow(self) -> Decimal:
        """Change in the settlement balance over every leg."""
        return sum((leg.cash_flow for leg in self.legs), Decimal(0))


@dataclass(frozen=True)
class PendingOrder:
    """A committed delayed vault order (`delayed_order(account, market)`,
    contracts/modules/delayed.vy), in dollars. It fills at the first oracle price observed
    at or after `settle_from`, if settled by `expires`."""

    account: int
    market: int
    symbol: str
    size: Decimal  # signed base units: positive buys
    acceptable_price: Decimal | None  # None: no bound (a buy at any price)
    commit_time: int
    settle_from: int  # commit time + min_delay: the earliest price observation that fills it
    expires: int  # commit time + max_age: the last second it may settle
    keeper_fee: Decimal  # paid by the account to whoever settles it

    def status(self, now: int, price_time: int) -> str:
        """ "waiting" (no price observed after `settle_from` yet), "ready" (settle_order
        may fill it now, the fill's own checks aside) or "expired" (anyone may cancel it).
        `price_time`: the oracle's `price_time(market)`."""
        if now > self.expires:
            return "expired"
        return "ready" if price_time >= self.settle_from else "waiting"


@dataclass(frozen=True)
class DelayedCommit:
    """`PerpdexClient.commit_trade`: the order as committed and the quote its bound came
    from (the fill, later, is at the price observed after the delay)."""

    order: PendingOrder
    quote: Quote
    tx_hash: str
    block_number: int | None


@dataclass(frozen=True)
class DelayedFill:
    """A delayed order as `settle_order` filled it (its `Fill` and `DelayedOrderSettled`
    events), in dollars."""

    account: int
    market: int
    symbol: str
    size_delta: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    funding_paid: Decimal
    size_after: Decimal
    keeper: str  # who settled it and earned the keeper fee
    keeper_fee: Decimal
    price_time: int  # when the oracle's reading it filled at was observed
    tx_hash: str
    block_number: int | None

    @property
    def cash_flow(self) -> Decimal:
        """Change in the settlement balance: realised PnL minus funding, fee and keeper fee."""
        return self.realized_pnl - self.funding_paid - self.fee - self.keeper_fee


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
class Liquidation:
    """An account's liquidation state: its header and margin at the cached marks, and
    its auction (`LiquidationAuction.auction`, `current_discount`, `deadline`)."""

    info: AccountInfo
    margin: Margin
    auction_active: bool  # a tranche's auction clock is running
    clock_start: int  # block timestamp the open tranche's clock started (0: none)
    lot_left: Decimal  # fraction of the book still for sale in the open tranche
    lot_notional: Decimal  # the lot's notional at the clock start, dollars
    tranche: int  # tranche number (1: the start)
    discount: Decimal  # what a take gets now (the schedule's, scaled to the budget)
    deadline: int  # when `backstop` may be called (0: no tranche open)

    @property
    def in_liquidation(self) -> bool:
        return self.info.in_liquidation


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
    cap: Decimal  # max_vault_exposure x (raw pool cash + its unrealised loss in the market)
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
    # token units the pool's cash may pay LPs now: every market within 1.5x its cap
    exit_room: Decimal = Decimal(0)


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


def _market_info(
    market: int, symbol: str, mark: Any, open_interest: Any, params: Any, oracle: Any | None
) -> MarketInfo:
    """A `MarketInfo` from the Clearinghouse's `mark`, `open_interest` and `market_params`
    and the OracleRouter's `latest` (None when it reverted): shared by the ape client and
    the standalone one (perpdex.sdk.lite) so both report the same figures."""
    from perpdex.constants import FLAG_DEGRADED
    from perpdex.sdk.math import PICO_PER_USD

    price, ts, index, rate = mark
    long_oi, short_oi = open_interest
    oracle_price: Decimal | None = None
    if oracle is not None:
        o_price, o_flags = oracle
        # no price quorum (the router's DEGRADED flag): the market is frozen
        oracle_price = None if int(o_flags) & FLAG_DEGRADED else from_wad(int(o_price))
    return MarketInfo(
        id=market,
        symbol=symbol,
        oracle_price=oracle_price,
        mark_price=from_wad(int(price)),
        mark_time=int(ts),
        funding_rate=from_wad(int(rate)),
        funding_index=Decimal(int(index)) / PICO_PER_USD,
        long_oi=from_wad(int(long_oi)),
        short_oi=from_wad(int(short_oi)),
        max_oi=from_wad(int(params.max_oi)),
        skew_scale=from_wad(int(params.skew_scale)),
        maker_fee=from_wad(int(params.maker_fee)),
        taker_fee=from_wad(int(params.taker_fee)),
        max_vault_exposure=from_wad(int(params.max_vault_exposure)),
        paused=bool(params.paused),
    )


def _margin(raw: Any) -> Margin:
    """The Clearinghouse's `account_margin` struct in dollars."""
    return Margin(
        equity=from_wad(int(raw.equity)),
        initial=from_wad(int(raw.initial)),
        maintenance=from_wad(int(raw.maintenance)),
        isolated=from_wad(int(raw.isolated)),
        notional=from_wad(int(raw.notional)),
    )


def _fill(ev: Any, quote: Quote, bound: int, tx_hash: str, block_number: int | None) -> Fill:
    """A `Fill` from the Clearinghouse's Fill event and the quote its bound came from."""
    return Fill(
        account=quote.account,
        market=quote.market,
        symbol=quote.symbol,
        size_delta=from_wad(int(ev.size_delta)),
        price=from_wad(int(ev.price)),
        fee=from_wad(int(ev.fee)),
        realized_pnl=from_wad(int(ev.realized_pnl)),
        funding_paid=from_wad(int(ev.funding_paid)),
        size_after=from_wad(int(ev.size)),
        acceptable_price=from_wad(bound),
        quote=quote,
        tx_hash=tx_hash,
        block_number=block_number,
    )


def _leg_fill(
    ev: Any, quote: LegQuote, bound: int, tx_hash: str, block_number: int | None
) -> LegFill:
    """A `LegFill` from the Clearinghouse's Fill event of one leg and its prediction."""
    return LegFill(
        account=int(ev.account),
        market=quote.market,
        symbol=quote.symbol,
        size_delta=from_wad(int(ev.size_delta)),
        price=from_wad(int(ev.price)),
        fee=from_wad(int(ev.fee)),
        realized_pnl=from_wad(int(ev.realized_pnl)),
        funding_paid=from_wad(int(ev.funding_paid)),
        size_after=from_wad(int(ev.size)),
        acceptable_price=from_wad(bound),
        quote=quote,
        tx_hash=tx_hash,
        block_number=block_number,
    )


def _delayed_fill(
    fill: Any, settled: Any, symbol: str, tx_hash: str, block_number: int | None
) -> DelayedFill:
    """A `DelayedFill` from the settlement's `Fill` and `DelayedOrderSettled` events (ape's
    decoded logs or the shipped ABI's field dicts)."""

    def get(ev: Any, name: str) -> Any:
        return ev[name] if isinstance(ev, dict) else getattr(ev, name)

    keeper = get(settled, "keeper")
    if isinstance(keeper, int):  # an indexed address decoded as a topic word
        keeper = f"{keeper:#042x}"
    return DelayedFill(
        account=int(get(settled, "account")),
        market=int(get(settled, "market")),
        symbol=symbol,
        size_delta=from_wad(int(get(fill, "size_delta"))),
        price=from_wad(int(get(fill, "price"))),
        fee=from_wad(int(get(fill, "fee"))),
        realized_pnl=from_wad(int(get(fill, "realized_pnl"))),
        funding_paid=from_wad(int(get(fill, "funding_paid"))),
        size_after=from_wad(int(get(fill, "size"))),
        keeper=_checksum(str(keeper)),
        keeper_fee=from_wad(int(get(settled, "keeper_fee"))),
        price_time=int(get(settled, "price_time")),
        tx_hash=tx_hash,
        block_number=block_number,
    )


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(address))
