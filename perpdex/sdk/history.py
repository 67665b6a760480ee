"""P&L history of sub-accounts from the Clearinghouse's events, and the strategy views built
on it (`perpdex history`, `perpdex portfolio --all`; `PerpdexClient.history`,
`PerpdexClient.strategies`).

Read this first if you touch the history:
- The client reads the logs (in block chunks, like perpdex/keepers/liquidator.py) and
  decodes them with the contracts' ABIs into `{field: value}`; `account_events` here is
  pure and turns one decoded log into the `AccountEvent`s of the accounts asked for.
- Events read (contracts/modules/state.vy): Fill (realised PnL, funding settled, fee; one
  per side, so a liquidation taker sees its own), OrdersMatched (a matched pair of signed
  orders: both sides' fill figures in one event, read as a "fill" of each), Deposit, Withdraw,
  CollateralTransferred (both ends), LossCapTriggered (the trigger fee the account pays),
  DustSwept (a flat account's balance below one token unit, taken with a withdrawal),
  LiquidationBegun / LiquidationRewardPaid (the keeper's reward: paid by the account,
  received by the keeper's account), LiquidationTransfer (the penalty) and
  BadDebtSettled (the deficit written off). Not listed: CollateralSeized (secondary
  collateral sold for settlement tokens in a liquidation; neither P&L nor a flow in or out).
- P&L of an event = realised + funding - fee + other (`AccountEvent.pnl`); with the
  deposits and withdrawals it reconciles the settlement balance. `AccountHistory.series`
  is the cumulative P&L after each event plus a last point "now" that adds the open
  positions' unrealised P&L and unsettled funding at the history's last block.
- `correlate` aligns several series on the union of their blocks and takes the Pearson
  correlation of their P&L changes per step (Decimal, 28 digits); below `MIN_POINTS`
  steps there is not enough history and the matrix is None.
- Markets: `PerpdexClient.mark_history` reads the cached mark after each `MarkUpdated`
  (`MarkPoint`); `returns_correlation` aligns the markets on the blocks where a mark moved
  and correlates their returns the same way (`perpdex dashboard`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from perpdex.units import from_wad

if TYPE_CHECKING:
    from perpdex.sdk.results import AccountInfo, Portfolio

__all__ = [
    "EVENT_NAMES",
    "LOG_CHUNK",
    "MIN_POINTS",
    "AccountEvent",
    "AccountHistory",
    "MarkPoint",
    "PnlCorrelation",
    "PnlPoint",
    "ReturnsCorrelation",
    "StrategyBook",
    "StrategyLine",
    "account_events",
    "correlate",
    "pearson",
    "returns_correlation",
]

ZERO = Decimal(0)
#: Blocks per eth_getLogs request.
LOG_CHUNK = 5_000
#: Fewest aligned P&L steps a correlation is computed from.
MIN_POINTS = 3
#: The events read, and the indexed field that can name a second account (besides the
#: first indexed field, the account itself).
EVENT_NAMES = (
    "Fill",
    "OrdersMatched",
    "Deposit",
    "Withdraw",
    "CollateralTransferred",
    "LossCapTriggered",
    "DustSwept",
    "LiquidationBegun",
    "LiquidationRewardPaid",
    "LiquidationTransfer",
    "BadDebtSettled",
)
SECOND_ACCOUNT = {
    "OrdersMatched": "taker",
    "CollateralTransferred": "to_account",
    "LiquidationBegun": "keeper_account",
    "LiquidationRewardPaid": "keeper_account",
}


@dataclass(frozen=True)
class AccountEvent:
    """One event of one account, in dollars (flows in token amounts of `token`)."""

    account: int
    kind: str  # fill, deposit, withdraw, transfer in/out, loss-cap fee, liquidation ...
    block_number: int
    log_index: int
    tx_hash: str
    market: int | None = None
    symbol: str | None = None
    size_delta: Decimal | None = None
    price: Decimal | None = None
    size_after: Decimal | None = None
    realized_pnl: Decimal = ZERO
    funding: Decimal = ZERO  # funding settled, as P&L (positive: received)
    fee: Decimal = ZERO  # trading fee, loss-cap fee, liquidation penalty or reward paid
    other: Decimal = ZERO  # bad debt written off, liquidation reward received
    token: str | None = None
    amount: Decimal = ZERO  # collateral in (+) or out (-), in `token` amounts
    counterparty: int | None = None  # the other account (None: the vault, or nobody)

    @property
    def pnl(self) -> Decimal:
        """What the event adds to the account's P&L."""
        return self.realized_pnl + self.funding - self.fee + self.other


def _pick(fields: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in fields:
            return fields[n]
    raise KeyError(names[0])


def _matched_events(
    fields: Mapping[str, Any],
    accounts: set[int],
    symbols: Sequence[str],
    new: Callable[..., AccountEvent],
) -> list[AccountEvent]:
    """The two "fill" events of a matched pair of signed orders (`OrdersMatched` carries
    both sides, in place of a `Fill` per side): the maker's, then the taker's, each with
    the other as counterparty."""
    m = int(fields["market"])
    delta = int(fields["size_delta"])  # the taker's; the maker's is -delta
    return [
        _fill(new, int(fields[side]), m, symbols, fields, f"{side}_", sign * delta, fields[other])
        for side, sign, other in (("maker", -1, "taker"), ("taker", 1, "maker"))
        if int(fields[side]) in accounts
    ]


def _fill(
    new: Callable[..., AccountEvent],
    account: int,
    m: int,
    symbols: Sequence[str],
    fields: Mapping[str, Any],
    key: str,
    size_delta: int,
    counterparty: Any,
) -> AccountEvent:
    """One "fill" event of `account`: from a `Fill` (`key` "") or from one side of an
    `OrdersMatched` (`key` "maker_" or "taker_", the side's own fields)."""
    return new(
        account,
        "fill",
        market=m,
        symbol=symbols[m] if m < len(symbols) else str(m),
        size_delta=from_wad(size_delta),
        price=from_wad(int(fields["price"])),
        size_after=from_wad(int(fields[f"{key}size"])),
        realized_pnl=from_wad(int(fields[f"{key}realized_pnl"])),
        funding=-from_wad(int(fields[f"{key}funding_paid"])),
        fee=from_wad(int(fields[f"{key}fee"])),
        counterparty=int(counterparty) or None,
    )


def account_events(
    name: str,
    fields: Mapping[str, Any],
    *,
    accounts: set[int],
    block_number: int,
    log_index: int,
    tx_hash: str,
    symbols: Sequence[str] = (),
    tokens: Mapping[str, tuple[str, int]] | None = None,
) -> list[AccountEvent]:
    """The `AccountEvent`s of `accounts` in one decoded log `name` with `fields` (ints
    as the chain has them; addresses as checksummed strings). `tokens`: address (lower
    case) -> (symbol, decimals)."""
    tokens = tokens or {}

    def new(account: int, kind: str, **kw: Any) -> AccountEvent:
        return AccountEvent(account, kind, block_number, log_index, tx_hash, **kw)

    if name == "OrdersMatched":
        return _matched_events(fields, accounts, symbols, new)
    first = int(_pick(fields, "account", "from_account"))
    out: list[AccountEvent] = []

    def token(address: str) -> tuple[str, int]:
        return tokens.get(str(address).lower(), (str(address), 18))

    if name == "Fill":
        if first in accounts:
            m, delta = int(fields["market"]), int(fields["size_delta"])
            out.append(_fill(new, first, m, symbols, fields, "", delta, fields["counterparty"]))
    elif name in ("Deposit", "Withdraw"):
        symbol, decimals = token(fields["token"])
        amount = Decimal(int(fields["amount"])).scaleb(-decimals)
        if first in accounts:
            sign = 1 if name == "Deposit" else -1
            kind = name.lower()
            out.append(new(first, kind, token=symbol, amount=sign * amount))
    elif name == "CollateralTransferred":
        symbol, decimals = token(fields["token"])
        amount = Decimal(int(fields["amount"])).scaleb(-decimals)
        to = int(fields["to_account"])
        if first in accounts:
            out.append(new(first, "transfer out", token=symbol, amount=-amount, counterparty=to))
        if to in accounts:
            out.append(new(to, "transfer in", token=symbol, amount=amount, counterparty=first))
    elif name == "LossCapTriggered" and first in accounts:
        out.append(new(first, "loss-cap fee", fee=from_wad(int(fields["fee"]))))
    elif name == "DustSwept" and first in accounts:  # below one token unit, to fees
        out.append(new(first, "dust swept", fee=from_wad(int(fields["amount"]))))
    elif name in ("LiquidationBegun", "LiquidationRewardPaid"):
        reward = from_wad(int(fields["reward"]))
        keeper = int(fields["keeper_account"])
        if first in accounts:
            out.append(new(first, "liquidation reward paid", fee=reward, counterparty=keeper))
        if keeper in accounts:
            out.append(new(keeper, "liquidation reward", other=reward, counterparty=first))
    elif name == "LiquidationTransfer":
        if first in accounts:
            taker = int(fields["taker"])
            out.append(
                new(
                    first,
                    "liquidation penalty",
                    fee=from_wad(int(fields["penalty"])),
                    counterparty=taker or None,
                )
            )
    elif name == "BadDebtSettled" and first in accounts:
        deficit = from_wad(int(fields["deficit"]))
        out.append(new(first, "bad debt written off", other=deficit))
    return out


@dataclass(frozen=True)
class PnlPoint:
    """Cumulative P&L of an account after the events of a block (or "now")."""

    block_number: int
    pnl: Decimal
    label: str  # the event kind(s), or "now" for the mark-to-market point


@dataclass(frozen=True)
class AccountHistory:
    """An account's events in blocks [from_block, to_block] and its open P&L at to_block."""

    info: AccountInfo
    from_block: int
    to_block: int
    events: tuple[AccountEvent, ...]
    unrealized_pnl: Decimal = ZERO  # open positions at the cached marks, at to_block
    funding_accrued: Decimal = ZERO  # unsettled funding as P&L (positive: receives)

    @property
    def account(self) -> int:
        return self.info.id

    @property
    def realized_pnl(self) -> Decimal:
        return sum((e.realized_pnl for e in self.events), ZERO)

    @property
    def funding_settled(self) -> Decimal:
        return sum((e.funding for e in self.events), ZERO)

    @property
    def funding(self) -> Decimal:
        """Funding settled by fills plus funding accrued on the open positions."""
        return self.funding_settled + self.funding_accrued

    @property
    def fees(self) -> Decimal:
        return sum((e.fee for e in self.events), ZERO)

    @property
    def other(self) -> Decimal:
        return sum((e.other for e in self.events), ZERO)

    @property
    def cash_pnl(self) -> Decimal:
        """P&L settled into the balance: realised + funding settled - fees + other."""
        return sum((e.pnl for e in self.events), ZERO)

    @property
    def total_pnl(self) -> Decimal:
        """Settled P&L plus the open positions' unrealised P&L and unsettled funding."""
        return self.cash_pnl + self.unrealized_pnl + self.funding_accrued

    @property
    def flows(self) -> dict[str, Decimal]:
        """Net collateral moved in (deposits, transfers in) less out, by token."""
        out: dict[str, Decimal] = {}
        for e in self.events:
            if e.token is not None:
                out[e.token] = out.get(e.token, ZERO) + e.amount
        return out

    @property
    def series(self) -> tuple[PnlPoint, ...]:
        """Cumulative P&L after each block with a P&L event (fills included even at
        zero), then "now": the total with the open positions at to_block."""
        points: list[PnlPoint] = []
        total = ZERO
        for e in self.events:
            if e.kind != "fill" and e.pnl == 0:
                continue
            total += e.pnl
            if points and points[-1].block_number == e.block_number:
                kinds = points[-1].label.split(", ")
                label = ", ".join(kinds if e.kind in kinds else [*kinds, e.kind])
                points[-1] = PnlPoint(e.block_number, total, label)
            else:
                points.append(PnlPoint(e.block_number, total, e.kind))
        points.append(PnlPoint(self.to_block, self.total_pnl, "now"))
        return tuple(points)


@dataclass(frozen=True)
class PnlCorrelation:
    """Pearson correlation of several accounts' P&L changes, aligned on `blocks`."""

    accounts: tuple[int, ...]
    blocks: tuple[int, ...]
    changes: tuple[tuple[Decimal, ...], ...]  # [account][step]: P&L change at blocks[step]
    matrix: tuple[tuple[Decimal | None, ...], ...] | None  # None: not enough history

    @property
    def points(self) -> int:
        return len(self.blocks)

    @property
    def enough(self) -> bool:
        return self.matrix is not None


def pearson(x: Sequence[Decimal], y: Sequence[Decimal]) -> Decimal | None:
    """Pearson's r of two equally long series (28 significant digits); None when either
    does not vary (r is undefined)."""
    if len(x) != len(y):
        raise ValueError(f"series of {len(x)} and {len(y)} points cannot be correlated")
    n = len(x)
    if n < 2:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        mx = sum(x, ZERO) / n
        my = sum(y, ZERO) / n
        dx = [a - mx for a in x]
        dy = [b - my for b in y]
        sxx = sum((a * a for a in dx), ZERO)
        syy = sum((b * b for b in dy), ZERO)
        if sxx == 0 or syy == 0:
            return None
        sxy = sum((a * b for a, b in zip(dx, dy, strict=True)), ZERO)
        r = sxy / (sxx * syy).sqrt()
    with localcontext() as ctx:
        ctx.prec = 28
        return max(Decimal(-1), min(Decimal(1), +r))


def correlate(series: Mapping[int, Sequence[PnlPoint]]) -> PnlCorrelation:
    """Align the cumulative P&L series of several accounts on the union of their blocks
    (a series holds its last value between its points and is 0 before its first) and
    correlate their P&L changes per step. Not enough history (matrix None) below
    `MIN_POINTS` steps."""
    accounts = tuple(series)
    blocks = tuple(sorted({p.block_number for pts in series.values() for p in pts}))
    changes: list[tuple[Decimal, ...]] = []
    for a in accounts:
        level: dict[int, Decimal] = {}
        for p in series[a]:  # the last point of a block wins
            level[p.block_number] = p.pnl
        row: list[Decimal] = []
        prev = cur = ZERO
        for b in blocks:
            cur = level.get(b, cur)
            row.append(cur - prev)
            prev = cur
        changes.append(tuple(row))
    matrix = None
    if len(blocks) >= MIN_POINTS:
        matrix = tuple(tuple(pearson(ci, cj) for cj in changes) for ci in changes)
    return PnlCorrelation(accounts, blocks, tuple(changes), matrix)


@dataclass(frozen=True)
class MarkPoint:
    """A market's cached mark after a `MarkUpdated` event (the last one of its block)."""

    market: int
    block_number: int
    log_index: int
    price: Decimal
    funding_rate: Decimal  # fraction of the price per day; positive: longs pay shorts


@dataclass(frozen=True)
class ReturnsCorrelation:
    """Pearson correlation of several markets' mark returns, aligned on `blocks`."""

    markets: tuple[int, ...]
    symbols: tuple[str, ...]
    blocks: tuple[int, ...]  # the steps: blocks where a mark moved, every market priced
    returns: tuple[tuple[Decimal, ...], ...]  # [market][step]: price / previous - 1
    matrix: tuple[tuple[Decimal | None, ...], ...] | None  # None: not enough history

    @property
    def points(self) -> int:
        return len(self.blocks)

    @property
    def enough(self) -> bool:
        return self.matrix is not None


def returns_correlation(
    marks: Mapping[int, Sequence[MarkPoint]], symbols: Sequence[str] = ()
) -> ReturnsCorrelation:
    """Align the marks of several markets on the blocks where at least one of them moved
    (a market holds its last mark between its points; the last point of a block wins) and
    correlate their simple returns per step, counted from the first block where every
    market has a mark. Not enough history (matrix None) below `MIN_POINTS` steps."""
    markets = tuple(marks)
    level: dict[int, dict[int, Decimal]] = {m: {} for m in markets}
    for m in markets:
        for p in sorted(marks[m], key=lambda q: (q.block_number, q.log_index)):
            level[m][p.block_number] = p.price
    all_blocks = sorted({b for m in markets for b in level[m]})
    prev: dict[int, Decimal] = {}
    steps: list[int] = []
    rows: dict[int, list[Decimal]] = {m: [] for m in markets}
    with localcontext() as ctx:
        ctx.prec = 28
        for b in all_blocks:
            cur = {**prev, **{m: level[m][b] for m in markets if b in level[m]}}
            ready = len(prev) == len(markets) and all(prev.values())
            if ready and any(cur[m] != prev[m] for m in markets):
                steps.append(b)
                for m in markets:
                    rows[m].append(cur[m] / prev[m] - 1)
            prev = cur
    returns = tuple(tuple(rows[m]) for m in markets)
    matrix = None
    if len(steps) >= MIN_POINTS:
        matrix = tuple(tuple(pearson(ri, rj) for rj in returns) for ri in returns)
    names = tuple(symbols[m] if m < len(symbols) else str(m) for m in markets)
    return ReturnsCorrelation(markets, names, tuple(steps), returns, matrix)


@dataclass(frozen=True)
class StrategyLine:
    """One sub-account of `perpdex portfolio --all`: margin now and P&L since from_block."""

    portfolio: Portfolio
    history: AccountHistory

    @property
    def info(self) -> AccountInfo:
        return self.portfolio.info

    @property
    def equity(self) -> Decimal:
        return self.portfolio.equity

    @property
    def margin_used(self) -> Decimal:
        """The initial requirement in the account's own mode."""
        return self.portfolio.initial

    @property
    def maintenance(self) -> Decimal:
        return self.portfolio.maintenance

    @property
    def free(self) -> Decimal:
        return self.portfolio.free

    @property
    def health(self) -> Decimal | None:
        return self.portfolio.health

    @property
    def realized_pnl(self) -> Decimal:
        return self.history.realized_pnl

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.history.unrealized_pnl

    @property
    def funding(self) -> Decimal:
        return self.history.funding

    @property
    def fees(self) -> Decimal:
        """Fees paid less liquidation rewards and write-offs received (`other`)."""
        return self.history.fees - self.history.other

    @property
    def total_pnl(self) -> Decimal:
        return self.history.total_pnl


@dataclass(frozen=True)
class StrategyBook:
    """Every sub-account of one owner with totals and the correlation of their P&L."""

    owner: str
    block_number: int
    from_block: int
    lines: tuple[StrategyLine, ...]
    correlation: PnlCorrelation

    def _sum(self, attr: str) -> Decimal:
        return sum((getattr(line, attr) for line in self.lines), ZERO)

    @property
    def equity(self) -> Decimal:
        return self._sum("equity")

    @property
    def margin_used(self) -> Decimal:
        return self._sum("margin_used")

    @property
    def maintenance(self) -> Decimal:
        return self._sum("maintenance")

    @property
    def free(self) -> Decimal:
        return self._sum("free")

    @property
    def health(self) -> Decimal | None:
        """Total equity over total maintenance (each account is margined on its own:
        this is a summary, not a liquidation test)."""
        m = self.maintenance
        return None if m == 0 else self.equity / m

    @property
    def realized_pnl(self) -> Decimal:
        return self._sum("realized_pnl")

    @property
    def unrealized_pnl(self) -> Decimal:
        return self._sum("unrealized_pnl")

    @property
    def funding(self) -> Decimal:
        return self._sum("funding")

    @property
    def fees(self) -> Decimal:
        return self._sum("fees")

    @property
    def total_pnl(self) -> Decimal:
        return self._sum("total_pnl")
