"""The demo's strategy story: a fund runs three strategies through a crash, keepers on.

    story_step(protocol, console, out_dir) -> Story

The fund (ape test account 4) deposits capital into a reserve (sub-account 0) and three
portfolio-margin strategies, each opened with ONE multi-leg order (`trade_multi`):

  * btc-trend    (sub 1) long BTC, a little ETH short; managed by the rebalancer
                 (`perpdex keeper rebalance`, top-ups from the reserve), with a resting
                 limit buy (signed, settled by `settle`) and a stop-loss on part of the BTC
                 (`perpdex keeper orders` fires it);
  * eth-sol-pair (sub 2) long ETH, short SOL (ETH beats SOL); a loss cap
                 (`perpdex keeper loss-caps`);
  * sol-hedge    (sub 3) long SOL, short some BTC; unmanaged: nothing protects it.

The margin each saves against isolated margin is printed; funding accrues over eight
hours; then a crash led by ETH (BTC -12%, ETH -25%, SOL -15% in 30-second steps) runs with every
keeper ticking after every price step, in the order a fund would want: the orders keeper,
the rebalancer, the loss-cap keeper, the liquidation keeper (ladder, then Dutch auction).
Each keeper is the production class and its own `tick()` (perpdex/keepers/); nothing of
their logic is copied here. The end: final tables and a chart of the strategies' health
(story.png) in `out_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex import chaintime
from perpdex.cli.portfolio import fmt_price, fmt_size, fmt_usd, new_table, pnl
from perpdex.constants import WAD
from perpdex.deploy import Protocol
from perpdex.keepers.liquidator import Liquidator, LiquidatorConfig
from perpdex.keepers.loss_caps import LossCapKeeper
from perpdex.keepers.orders import OrdersConfig, OrdersKeeper
from perpdex.keepers.price_pusher import PricePusher
from perpdex.keepers.rebalance import Rebalancer
from perpdex.keepers.rebalance_rules import parse_rules
from perpdex.sdk import order_store as store
from perpdex.sdk import orders as so
from perpdex.sdk.client import PerpdexClient

# ape test account indices
FUND, BOT, MAKER, KEEPER, ADMIN = 4, 5, 6, 7, 0
RESERVE_USD = 150_000
KEEPER_USD = 1_000_000
MAKER_USD = 200_000


@dataclass(frozen=True)
class Strategy:
    name: str
    sub: int
    deposit: int  # USD
    legs: dict[str, str]  # symbol -> signed size
    role: str  # who protects it


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("btc-trend", 1, 40_000, {"BTC": "1.5", "ETH": "-4"}, "rebalancer + stop-loss"),
    Strategy("eth-sol-pair", 2, 25_000, {"ETH": "10", "SOL": "-160"}, "loss cap"),
    Strategy("sol-hedge", 3, 14_000, {"SOL": "500", "BTC": "-0.2"}, "unmanaged"),
)
LIMIT_BUY_BTC = Decimal("0.5")  # btc-trend's resting limit buy, 0.5% under the market
LIMIT_DIP = Decimal("0.995")
STOP_BTC = Decimal("0.5")  # the stop-loss sells this much at -4%
STOP_AT = Decimal("0.96")
LOSS_CAP_BELOW = Decimal(3_000)  # the pair's floor: equity at the start minus this
FUNDING_HOURS = 8
CRASH: dict[str, Decimal] = {"BTC": Decimal("0.88"), "ETH": Decimal("0.75"), "SOL": Decimal("0.85")}
CRASH_STEPS = 10
STEP_SECONDS = 30
TAIL_TICKS = 30  # at the bottom, until the liquidation keeper has nothing left to do


@dataclass(frozen=True)
class Event:
    t: int  # seconds since the crash began
    keeper: str
    strategy: str
    what: str
    tx: str = ""


@dataclass
class Story:
    accounts: dict[str, int] = field(default_factory=dict)  # strategy name -> account id
    reserve: int = 0
    opened: dict[str, Any] = field(default_factory=dict)  # name -> MultiFill
    limit_fill: Any = None  # FillEvent-like: the settle receipt
    limit_filled: Decimal = Decimal(0)  # BTC bought by the resting limit order
    stop_fired: int = 0
    rebalancer_actions: int = 0
    loss_caps_fired: int = 0
    tranches: int = 0  # liquidation ladder steps (TrancheOpened) on sol-hedge
    auction_takes: int = 0  # Dutch-auction takes (AuctionTake) of sol-hedge
    backstops: int = 0
    events: list[Event] = field(default_factory=list)
    health: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    prices: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    chart: Path | None = None

    def name_of(self, account: int) -> str:
        return next((n for n, a in self.accounts.items() if a == account), f"{account:#x}")


class _NoSource:
    def next(self, current: dict[str, Decimal]) -> dict[str, Decimal] | None:
        return None


def _fund(p: Protocol, who: Any, dollars: int) -> int:
    units = dollars * 10**p.system.settlement_decimals
    p.token.mint(who, units, sender=who)
    p.token.approve(p.clearinghouse, 2**256 - 1, sender=who)
    return units


def _open(p: Protocol, who: Any, dollars: int, portfolio: bool, name: str) -> int:
    acct = int(p.clearinghouse.open_account(name, portfolio, sender=who).return_value)
    p.ops.deposit(acct, p.token, _fund(p, who, dollars), sender=who)
    return acct


def _wad(x: Decimal) -> int:
    return int(x * WAD)


# --- steps --------------------------------------------------------------------------------


def open_strategies(p: Protocol, fund: Any, story: Story) -> Table:
    """Capital in (reserve + one portfolio sub-account per strategy), then each strategy's
    legs in ONE `trade_multi` (one margin check on the final book)."""
    story.reserve = _open(p, fund, RESERVE_USD, False, "reserve")
    client = PerpdexClient.from_protocol(p, fund)
    t = new_table("strategies opened (one multi-leg order each, portfolio margin)")
    for name in ("strategy", "legs", "fee", "isolated req.", "portfolio req.", "saved"):
        t.add_column(name, justify="left" if name in ("strategy", "legs") else "right")
    for s in STRATEGIES:
        acct = _open(p, fund, s.deposit, True, s.name)
        assert acct & (2**96 - 1) == s.sub, f"{s.name}: expected sub-account {s.sub}"
        story.accounts[s.name] = acct
        fill = client.trade_multi(acct, list(s.legs.items()))
        story.opened[s.name] = fill
        pf = client.portfolio(acct)
        legs = ", ".join(f"{fmt_size(leg.size_delta)} {leg.symbol}" for leg in fill.legs)
        t.add_row(
            s.name,
            legs,
            fmt_usd(fill.fee),
            fmt_usd(pf.isolated_initial),
            fmt_usd(pf.portfolio_initial),
            f"[green]{fmt_usd(pf.margin_saved)}[/]",
        )
    return t


def resting_limit_order(
    p: Protocol, fund: Any, maker: Any, keeper: Any, pusher: PricePusher, story: Story
) -> Table:
    """btc-trend rests a signed limit buy 0.5% under the market; BTC dips to it, a market
    maker's signed sell crosses it and `settle` fills both (at the resting order's price)."""
    from ape import chain

    assert p.orders is not None, "the deployment has no ClearinghouseOrders"
    ch = str(p.clearinghouse.address)
    btc = p.market_id("BTC")
    start = pusher.current()
    limit = (start["BTC"] * LIMIT_DIP).quantize(Decimal(1))
    expiry = int(chain.pending_timestamp) + 86_400
    trend = story.accounts["btc-trend"]
    resting = so.Order(trend, btc, _wad(LIMIT_BUY_BTC), _wad(limit), expiry, 1)
    mk = so.SignedOrder(resting, so.sign_order(resting, fund.private_key, chain.chain_id, ch))
    pusher.push({**start, "BTC": limit})  # the dip
    maker_acct = _open(p, maker, MAKER_USD, False, "market maker")
    crossing = so.Order(maker_acct, btc, -_wad(LIMIT_BUY_BTC), _wad(limit), expiry, 1)
    tk = so.SignedOrder(crossing, so.sign_order(crossing, maker.private_key, chain.chain_id, ch))
    before = int(p.clearinghouse.position(trend, btc)[0])
    tx = p.orders.settle(
        so.encode_fill_batch([so.MatchedFill(mk, tk, _wad(LIMIT_BUY_BTC))]), sender=keeper
    )
    story.limit_fill = tx
    story.limit_filled = Decimal(int(p.clearinghouse.position(trend, btc)[0]) - before) / WAD
    pusher.push(start)  # the dip passes
    t = new_table("resting limit order filled by `settle`")
    for name in ("order", "side", "size", "limit", "filled", "tx"):
        t.add_column(name, justify="left" if name in ("order", "side", "tx") else "right")
    t.add_row(
        "btc-trend (maker, resting)", "buy", fmt_size(LIMIT_BUY_BTC), fmt_price(limit),
        fmt_size(story.limit_filled), str(tx.txn_hash)[:12] + "…",
    )  # fmt: skip
    t.add_row("market maker (taker)", "sell", fmt_size(LIMIT_BUY_BTC), fmt_price(limit), "", "")
    return t


def place_stop(p: Protocol, fund: Any, story: Story, orders_file: Path, btc_price: Decimal) -> str:
    """A signed stop-loss on part of btc-trend's BTC, stored where the orders keeper reads."""
    from ape import chain

    ch = str(p.clearinghouse.address)
    trigger = (btc_price * STOP_AT).quantize(Decimal(1))
    order = so.stop_loss(
        story.accounts["btc-trend"],
        p.market_id("BTC"),
        -_wad(STOP_BTC),
        _wad(trigger),
        expiry=int(chain.pending_timestamp) + 7 * 86_400,
        nonce=store.NONCE_BASE,
        keeper_fee=3 * WAD,
        slippage_bps=500,
    )
    sig = so.sign_order(order, fund.private_key, chain.chain_id, ch)
    orders_file.parent.mkdir(parents=True, exist_ok=True)
    if orders_file.exists():
        orders_file.unlink()  # a previous run's orders belong to a dead chain
    store.append(
        orders_file, store.StoredOrder(so.SignedOrder(order, sig), chain.chain_id, ch, "BTC")
    )
    return (
        f"stop-loss: btc-trend sells {STOP_BTC} BTC if BTC trades at or below {fmt_price(trigger)}"
    )


def funding_table(p: Protocol, fund: Any, story: Story, hours: int) -> Table:
    client = PerpdexClient.from_protocol(p, fund)
    t = new_table(f"after {hours} hours: funding accrued by the strategies")
    for name in ("strategy", "mkt", "size", "mark", "uPnL", "funding"):
        t.add_column(name, justify="left" if name in ("strategy", "mkt") else "right")
    for name, acct in story.accounts.items():
        for pos in client.portfolio(acct).positions:
            t.add_row(
                name, pos.symbol, fmt_size(pos.size), fmt_price(pos.mark_price),
                pnl(pos.unrealized_pnl), pnl(pos.funding_pnl),
            )  # fmt: skip
    return t


def _rules(p: Protocol, fund: Any, bot: Any, story: Story) -> Any:
    """The rebalancer's rules for btc-trend: a band around its health now (the crash drives
    it below the low edge), top-ups from the reserve preferred."""
    client = PerpdexClient.from_protocol(p, bot)
    h0 = client.portfolio(story.accounts["btc-trend"]).health
    assert h0 is not None
    doc = {
        "owner": str(fund.address),
        "bot": str(bot.address),
        "strategies": {
            "btc-trend": {
                "sub": 1,
                "reserve": 0,
                "health": {"low": f"{h0 * Decimal('0.95'):.3f}", "high": f"{h0 * 2:.3f}"},
                "prefer": "top-up",
                "max_top_up": 100_000,
            }
        },
    }
    return client, parse_rules(doc, client.deployment.markets)


def _health(p: Protocol, story: Story, t: int) -> None:
    for name, acct in story.accounts.items():
        m = p.clearinghouse.account_margin(acct)
        maint = int(m.maintenance)
        h = None if maint == 0 else int(m.equity) / maint
        story.health.setdefault(name, []).append((t, h))


def crash(
    p: Protocol,
    story: Story,
    pusher: PricePusher,
    keepers: dict[str, Any],
    console: Console,
) -> None:
    start = pusher.current()
    first = {s: start[s] for s in CRASH}
    _health(p, story, 0)
    story.prices.append((0, {s: float(v) for s, v in first.items()}))
    t = 0
    console.print(
        f"crash led by ETH: BTC -12%, ETH -25%, SOL -15% in {CRASH_STEPS} steps of "
        f"{STEP_SECONDS} s; "
        "after every step: orders keeper, rebalancer, loss-cap keeper, liquidation keeper"
    )
    steps = [
        {s: first[s] * (1 + (CRASH[s] - 1) * Decimal(i) / CRASH_STEPS) for s in CRASH}
        for i in range(1, CRASH_STEPS + 1)
    ]
    for i in range(CRASH_STEPS + TAIL_TICKS):
        prices = steps[min(i, CRASH_STEPS - 1)]
        chaintime.advance(STEP_SECONDS)
        t += STEP_SECONDS
        pusher.push(prices)
        busy = _tick_all(p, story, keepers, t)
        _health(p, story, t)
        story.prices.append((t, {s: float(v) for s, v in prices.items()}))
        if i >= CRASH_STEPS and not busy:
            break


def _tick_all(p: Protocol, story: Story, keepers: dict[str, Any], t: int) -> bool:
    """One tick of each keeper; True while the liquidation keeper still has work."""
    r_orders = keepers["orders"].tick()
    for o in r_orders.outcomes:
        if o.ok:
            story.stop_fired += 1
            story.events.append(
                Event(t, "orders", story.name_of(o.account),
                      f"stop-loss fired at {fmt_price(Decimal(o.price) / WAD)}", o.tx_hash)
            )  # fmt: skip
    for o in keepers["rebalance"].tick().outcomes:
        if o.ok:
            story.rebalancer_actions += 1
            story.events.append(Event(t, "rebalancer", o.strategy, o.plan, o.tx_hash))
    for o in keepers["loss-caps"].tick().outcomes:
        if o.ok:
            story.loss_caps_fired += 1
            story.events.append(
                Event(t, "loss caps", story.name_of(o.account), "loss cap: closed", o.tx_hash)
            )
    r = keepers["liquidator"].tick()
    for o in r.outcomes:
        if not o.ok:
            continue
        who = story.name_of(o.action.account)
        ev = o.events
        for x in ev.get("TrancheOpened", []):
            story.tranches += 1
            story.events.append(
                Event(t, "liquidator", who, f"ladder step {int(x['step'])}", o.tx_hash)
            )
        for x in ev.get("AuctionTake", []):
            story.auction_takes += 1
            story.events.append(
                Event(t, "liquidator", who,
                      f"auction take at {int(x['discount']) / WAD:.2%} discount", o.tx_hash)
            )  # fmt: skip
        for _x in ev.get("AuctionBackstop", []):
            story.backstops += 1
            story.events.append(Event(t, "liquidator", who, "auction backstop", o.tx_hash))
    return bool(r.outcomes) or r.in_liquidation > 0 or r.unhealthy > 0


def events_table(story: Story) -> Table:
    t = new_table("the crash: what each keeper did")
    for name in ("t (s)", "keeper", "strategy", "action", "tx"):
        t.add_column(name, justify="right" if name == "t (s)" else "left", no_wrap=True)
    for e in story.events:
        t.add_row(str(e.t), e.keeper, e.strategy, e.what, e.tx[:12] + "…" if e.tx else "")
    return t


def final_table(p: Protocol, fund: Any, story: Story) -> Table:
    client = PerpdexClient.from_protocol(p, fund)
    t = new_table("strategies after the crash")
    for name in ("strategy", "protected by", "deposited", "equity", "positions", "health"):
        t.add_column(
            name, justify="left" if name in ("strategy", "protected by", "positions") else "right"
        )
    for s in STRATEGIES:
        pf = client.portfolio(story.accounts[s.name])
        legs = ", ".join(f"{fmt_size(x.size)} {x.symbol}" for x in pf.positions) or "flat"
        h = pf.health
        t.add_row(
            s.name, s.role, fmt_usd(Decimal(s.deposit)), fmt_usd(pf.equity), legs,
            "-" if h is None else f"{h:,.2f}",
        )  # fmt: skip
    reserve = Decimal(int(p.clearinghouse.balance_of(story.reserve, 0))) / WAD
    t.add_row(
        "reserve", "(tops up btc-trend)", fmt_usd(Decimal(RESERVE_USD)), fmt_usd(reserve), "", ""
    )
    return t


def write_chart(story: Story, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for sym in CRASH:
        xs = [t for t, _ in story.prices]
        base = story.prices[0][1][sym]
        a1.plot(xs, [100 * px[sym] / base for _, px in story.prices], label=sym)
    a1.set_ylabel("price (% of start)")
    a1.set_title("the crash")
    a1.legend()
    for name, series in story.health.items():
        pts = [(t, h) for t, h in series if h is not None]
        a2.plot([t for t, _ in pts], [min(h, 10.0) for _, h in pts], marker=".", label=name)
    a2.axhline(1.0, color="red", linestyle="--", linewidth=1, label="liquidatable")
    for e in story.events:
        a2.axvline(e.t, color="grey", alpha=0.15)
    a2.set_ylabel("health (equity / maintenance)")
    a2.set_xlabel("seconds since the crash began")
    a2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- the step --------------------------------------------------------------------------------


def story_step(protocol: Protocol, console: Console, out_dir: Path) -> Story:
    """The whole story (module docstring); chart and orders file under `out_dir`."""
    from ape import accounts, chain

    p = protocol
    w = accounts.test_accounts
    fund, bot, maker, keeper, admin = w[FUND], w[BOT], w[MAKER], w[KEEPER], w[ADMIN]
    story = Story()
    first_block = int(chain.blocks.head.number) + 1
    pusher = PricePusher(p, admin, _NoSource())
    pusher.push(pusher.current())  # fresh feeds after the price path

    console.rule("[bold]the fund's strategies")
    console.print(f"capital in: ${RESERVE_USD:,} reserve + " + ", ".join(
        f"{s.name} ${s.deposit:,}" for s in STRATEGIES))  # fmt: skip
    console.print(open_strategies(p, fund, story))
    console.print(resting_limit_order(p, fund, maker, keeper, pusher, story))
    orders_file = out_dir / "orders" / "fund.jsonl"
    console.print(place_stop(p, fund, story, orders_file, pusher.current()["BTC"]))

    chaintime.advance(FUNDING_HOURS * 3600)
    pusher.push(pusher.current())  # re-posted: `refresh` accrues the funding
    console.print(funding_table(p, fund, story, FUNDING_HOURS))

    # protections: the bot becomes an operator of btc-trend and the reserve; a loss cap
    client, rules = _rules(p, fund, bot, story)
    for acct in (story.reserve, story.accounts["btc-trend"]):
        p.ops.set_operator(acct, bot, True, sender=fund)
    pair = story.accounts["eth-sol-pair"]
    floor = Decimal(int(p.clearinghouse.account_margin(pair).equity)) / WAD - LOSS_CAP_BELOW
    p.ops.set_loss_cap(pair, _wad(floor), sender=fund)
    console.print(
        f"protections: rebalancer bot {bot.address} on btc-trend (band "
        f"{rules.strategies[0].band.low}-{rules.strategies[0].band.high}, top-ups from the "
        f"reserve); loss cap on eth-sol-pair at {fmt_usd(floor)} equity; sol-hedge: none"
    )
    keeper_acct = _open(p, keeper, KEEPER_USD, False, "liquidation keeper")
    keepers = {
        "orders": OrdersKeeper(p, keeper, OrdersConfig(orders=orders_file)),
        "rebalance": Rebalancer(client, rules),
        "loss-caps": LossCapKeeper(p, keeper),
        "liquidator": Liquidator(
            p,
            keeper,
            LiquidatorConfig(
                keeper_account=keeper_acct,
                min_profit=Decimal(1),
                gas_price=10**8,
                hedge=True,
                start_block=first_block,
            ),
            name="liquidator",
        ),
    }
    crash(p, story, pusher, keepers, console)
    console.print(events_table(story))
    console.print(final_table(p, fund, story))
    story.chart = write_chart(story, out_dir / "story.png")
    console.print(f"chart: {story.chart}")
    return story
