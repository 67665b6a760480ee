"""Crash replay: a March-2020-style crash on a population of accounts, keepers running.

    run(protocol, signers, console, out_dir) -> CrashReport

Set-up: the vault holds LP money, the insurance fund a little, two keepers a large
collateral each; a seeded population of isolated and portfolio accounts opens longs and
shorts on BTC, ETH and SOL at 2-9x leverage. Then the price pusher walks every market down
(BTC -40%, ETH -45%, SOL -50% with noise) over `crash_minutes`, and holds the bottom for
`tail_minutes`; after every price step both keepers tick (in alternating order, so they
race for the same auctions). Every step records the health of every account, the auctions'
discounts, the insurance fund, the socialised loss and the vault's share price.

At the end the replay checks, and raises `CrashInvariantError` if any fails:
  * every account is healthy or fully liquidated (no position left) and none is locked;
  * no account has negative settlement balance or negative equity (no silent bad debt);
  * the bad debt recorded equals insurance used + loss socialised, event by event;
  * insurance: end = start + penalties + its share of trading fees - bad debt it covered;
  * conservation: tokens held by the Clearinghouse = Σ balances + pool cash + insurance +
    protocol fees, to within rounding dust, after every step.

`CrashReport.table()` is the rich summary; `write_chart(path)` the PNG (docs/operations.md
explains how to read it).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from perpdex import chaintime
from perpdex.constants import WAD
from perpdex.errors import PerpdexError
from perpdex.keepers.liquidator import (
    Liquidator,
    LiquidatorConfig,
    TickReport,
    accounts_opened,
    conservation_gap,
)
from perpdex.keepers.price_pusher import PricePusher

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = ["CrashConfig", "CrashInvariantError", "CrashReport", "run", "write_chart"]

DUST = 10**12  # USD WAD: one micro-dollar per account is more than rounding ever leaves


class CrashInvariantError(PerpdexError):
    """The crash replay ended in a state the protocol promises never to reach."""


@dataclass
class CrashConfig:
    accounts: int = 30
    seed: int = 2020
    drops: dict[str, float] = field(default_factory=lambda: {"BTC": 0.40, "ETH": 0.45, "SOL": 0.50})
    crash_minutes: int = 10
    crash_step: int = 30  # seconds per price step during the crash
    tail_minutes: int = 25  # at the bottom: auctions run out, the EMA catches up
    tail_step: int = 60
    noise: float = 0.004  # per-step noise around the path
    lp_usd: int = 5_000_000
    insurance_usd: int = 5_000
    keeper_usd: int = 2_000_000
    max_settle_ticks: int = 40  # extra keeper ticks after the tail to wind everything down


@dataclass
class StepRecord:
    t: int  # seconds since the crash began
    prices: dict[str, float]
    health: dict[int, float]  # account -> health (only accounts with positions)
    discounts: dict[int, float]  # account -> current discount of its running auction
    insurance: float
    socialized: float  # cumulative
    share_price: float
    gap: int  # conservation gap, WAD


@dataclass
class TakeRecord:
    t: int
    account: int
    keeper: str
    discount: float
    notional: float  # USD moved


@dataclass
class CrashReport:
    config: CrashConfig
    population: dict[int, str]  # account -> label ("isolated long BTC 5x", ...)
    steps: list[StepRecord] = field(default_factory=list)
    takes: list[TakeRecord] = field(default_factory=list)
    backstops: list[TakeRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rewards: float = 0.0
    penalties: float = 0.0
    bad_debt: float = 0.0
    from_insurance: float = 0.0
    socialized: float = 0.0
    insurance_start: float = 0.0
    insurance_end: float = 0.0
    share_start: float = 0.0
    share_end: float = 0.0
    fully_liquidated: list[int] = field(default_factory=list)
    partially_liquidated: list[int] = field(default_factory=list)
    untouched: list[int] = field(default_factory=list)
    max_gap: int = 0
    chart: Path | None = None
    # equity (USD) at the start of each account's current liquidation
    started_equity: dict[int, float] = field(default_factory=dict)
    # liquidations that started with positive equity and still ended in bad debt:
    # (account, equity at start, deficit), USD. Liquidation pays for itself (the auction's
    # budget is inside maintenance margin), so only a price move faster than the auction
    # can put one here.
    positive_then_bad_debt: list[tuple[int, float, float]] = field(default_factory=list)

    def table(self) -> Table:
        t = Table(title="crash replay: what happened")
        t.add_column("measure")
        t.add_column("value", justify="right")
        drops = ", ".join(f"{s} -{d:.0%}" for s, d in self.config.drops.items())
        rows = [
            ("crash", f"{drops} over {self.config.crash_minutes} min"),
            ("accounts", f"{len(self.population)}"),
            ("  fully liquidated", f"{len(self.fully_liquidated)}"),
            ("  partly liquidated, healthy again", f"{len(self.partially_liquidated)}"),
            ("  never liquidated", f"{len(self.untouched)}"),
            ("tranches opened (start + step)", f"{self.counts.get('tranches', 0)}"),
            ("takes by keepers", f"{len(self.takes)}"),
            ("  won by keeper A / B", self._by_keeper()),
            ("  races lost (reverted or refused)", f"{self.counts.get('lost', 0)}"),
            ("vault backstops", f"{len(self.backstops)}"),
            ("mean take discount", self._mean_discount()),
            ("keeper rewards paid", f"${self.rewards:,.2f}"),
            ("penalties to insurance", f"${self.penalties:,.2f}"),
            ("bad debt", f"${self.bad_debt:,.2f}"),
            ("  liquidations that started with positive equity and still ended in bad debt",
             f"{len(self.positive_then_bad_debt)}"),
            ("  covered by insurance", f"${self.from_insurance:,.2f}"),
            ("  socialised (vault haircut)", f"${self.socialized:,.2f}"),
            ("insurance fund start -> end",
             f"${self.insurance_start:,.2f} -> ${self.insurance_end:,.2f}"),
            ("vault share price start -> end", f"{self.share_start:.6f} -> {self.share_end:.6f}"),
            ("worst conservation gap", f"{self.max_gap} wei (USD WAD)"),
        ]  # fmt: skip
        for k, v in rows:
            t.add_row(k, v)
        return t

    def _by_keeper(self) -> str:
        a = sum(1 for x in self.takes if x.keeper == "A")
        return f"{a} / {len(self.takes) - a}"

    def _mean_discount(self) -> str:
        if not self.takes:
            return "-"
        total = sum(x.notional for x in self.takes)
        mean = sum(x.discount * x.notional for x in self.takes) / total if total else 0.0
        return f"{mean:.2%} (notional-weighted)"

    def write_chart(self, path: Path) -> Path:
        write_chart(self, path)
        self.chart = path
        return path


# --- chain helpers ------------------------------------------------------------------------------


def _usd(x: int) -> float:
    return x / WAD


def _fund(p: Protocol, who: Any, dollars: int) -> int:
    units = dollars * 10**p.system.settlement_decimals
    p.token.mint(who, units, sender=who)
    p.token.approve(p.clearinghouse, 2**256 - 1, sender=who)
    return units


def _open(p: Protocol, who: Any, dollars: int, portfolio: bool, name: str) -> int:
    ch = p.clearinghouse
    acct = int(ch.open_account(name, portfolio, sender=who).return_value)
    p.ops.deposit(acct, p.token, _fund(p, who, dollars), sender=who)
    return acct


# --- the population ---------------------------------------------------------------------------


def build_population(p: Protocol, owners: list[Any], n: int, rng: random.Random) -> dict[int, str]:
    """n accounts (about a third portfolio), about 70% net long, 2-9x leverage."""
    ch = p.clearinghouse
    symbols = p.symbols
    out: dict[int, str] = {}
    for i in range(n):
        who = owners[i % len(owners)]
        portfolio = i % 3 == 2
        long = rng.random() < 0.7
        deposit = rng.choice([2_000, 5_000, 8_000, 12_000, 20_000])
        if portfolio:
            legs = rng.sample(symbols, 2 if rng.random() < 0.5 else 3)
        else:
            legs = [rng.choice(symbols)]
        # below each market's isolated initial margin (SOL 15%, BTC and ETH 10%)
        lev = rng.choice([2, 3, 4, 5, 6] if "SOL" in legs else [2, 3, 4, 5, 6, 7, 8, 9])
        acct = _open(p, who, deposit, portfolio, f"crash-{i}")
        notional = Decimal(deposit * lev)
        desc = []
        for j, sym in enumerate(legs):
            m = p.market_id(sym)
            price = Decimal(int(ch.mark(m)[0])) / WAD
            share = notional / len(legs)
            # portfolio books: the second leg hedges a little of the first
            sign = 1 if long else -1
            if portfolio and j == 1:
                sign = -sign
                share /= 3
            size = int(share / price * WAD) * sign
            bound = 2**256 - 1 if size > 0 else 0
            ch.trade(acct, m, size, bound, sender=who)
            desc.append(f"{'+' if size > 0 else '-'}{sym}")
        mode = "portfolio" if portfolio else "isolated"
        out[acct] = f"{mode} {lev}x {' '.join(desc)}"
    return out


def crash_path(
    cfg: CrashConfig, start: dict[str, Decimal], rng: random.Random
) -> list[tuple[int, dict[str, Decimal]]]:
    """(seconds, prices): an accelerating fall to the bottom, then a flat tail."""
    rows = []
    steps = cfg.crash_minutes * 60 // cfg.crash_step
    for k in range(1, steps + 1):
        x = k / steps
        shape = (1 - math.cos(math.pi * x)) / 2  # slow start, fast middle, slow end
        prices = {}
        for sym, p0 in start.items():
            drop = cfg.drops.get(sym, 0.0) * shape
            noise = rng.gauss(0, cfg.noise) if k < steps else 0.0
            prices[sym] = (p0 * Decimal(repr((1 - drop) * (1 + noise)))).quantize(Decimal("0.01"))
        rows.append((k * cfg.crash_step, prices))
    bottom = rows[-1][1]
    t = rows[-1][0]
    for _ in range(cfg.tail_minutes * 60 // cfg.tail_step):
        t += cfg.tail_step
        rows.append((t, dict(bottom)))
    return rows


# --- the replay -------------------------------------------------------------------------------


def run(
    protocol: Protocol,
    signers: list[Any],
    console: Console | None = None,
    out_dir: Path | None = None,
    config: CrashConfig | None = None,
) -> CrashReport:
    """Replay the crash; returns the report (chart written when `out_dir` is given)."""
    from ape import chain

    cfg = config or CrashConfig()
    console = console or Console()
    p = protocol
    ch = p.clearinghouse
    if p.auction is None or p.vault is None:
        raise PerpdexError("the deployment has no auction or vault; redeploy with `ape run deploy`")
    if len(signers) < 6:
        raise PerpdexError("the crash replay needs at least 6 funded signers (test accounts)")
    rng = random.Random(cfg.seed)
    admin, lp, keeper_a, keeper_b = signers[0], signers[1], signers[-2], signers[-1]
    owners = list(signers[2:-2])
    first_block = int(chain.blocks.head.number) + 1

    # --- set-up: LP money, insurance, keepers, feeds fresh, population --------------------
    console.print(f"[bold]crash replay[/]: setting up {cfg.accounts} accounts (seed {cfg.seed})")
    pusher = PricePusher(p, admin, _NoSource())
    start_prices = pusher.current()
    pusher.push(start_prices)
    units = cfg.lp_usd * 10**p.system.settlement_decimals
    p.token.mint(lp, units, sender=lp)
    p.token.approve(p.vault, units, sender=lp)
    p.vault.deposit(units, lp, sender=lp)
    p.admin.fund_insurance(_fund(p, admin, cfg.insurance_usd), sender=admin)
    ka = _open(p, keeper_a, cfg.keeper_usd, False, "keeper A")
    kb = _open(p, keeper_b, cfg.keeper_usd, False, "keeper B")
    population = build_population(p, owners, cfg.accounts, rng)
    keepers = {
        "A": Liquidator(p, keeper_a, _keeper_cfg(ka, first_block), name="A"),
        "B": Liquidator(p, keeper_b, _keeper_cfg(kb, first_block), name="B"),
    }
    report = CrashReport(cfg, population)
    report.insurance_start = _usd(int(ch.insurance_fund()))
    report.share_start = _share_price(p)
    all_accounts = accounts_opened(p, 0, int(chain.blocks.head.number))
    t0 = int(chain.blocks.head.timestamp)

    # --- the crash --------------------------------------------------------------------------
    path = crash_path(cfg, start_prices, rng)
    console.print(
        f"crash: {len(path)} price steps over {path[-1][0] // 60} minutes; keepers A and B tick "
        "after every step"
    )
    last_t = 0
    for i, (t, prices) in enumerate(path):
        chaintime.advance(t - last_t)
        last_t = t
        pusher.push(prices)
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        for name in order:
            _absorb(report, name, keepers[name].tick(), t)
        report.steps.append(_record(p, population, all_accounts, t, report))
    # --- wind down: keep ticking (prices flat) until nothing is left to do ---------------------
    for _ in range(cfg.max_settle_ticks):
        chaintime.advance(cfg.tail_step)
        last_t += cfg.tail_step
        pusher.push(path[-1][1])
        busy = False
        for name in ("A", "B"):
            r = keepers[name].tick()
            busy |= bool(r.outcomes) or r.in_liquidation > 0 or r.unhealthy > 0
            _absorb(report, name, r, last_t)
        report.steps.append(_record(p, population, all_accounts, last_t, report))
        if not busy:
            break
    report.insurance_end = _usd(int(ch.insurance_fund()))
    report.share_end = _share_price(p)
    _check(p, report, keepers, all_accounts, t0)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        report.write_chart(out_dir / "crash_replay.png")
    console.print(report.table())
    if report.chart:
        console.print(f"chart: {report.chart}")
    return report


class _NoSource:
    def next(self, current: dict[str, Decimal]) -> dict[str, Decimal] | None:
        return None


def _keeper_cfg(acct: int, first_block: int) -> LiquidatorConfig:
    return LiquidatorConfig(
        keeper_account=acct,
        min_profit=Decimal(5),
        gas_price=10**8,  # 0.1 gwei: an L2
        hedge=True,
        start_block=first_block,
    )


def _share_price(p: Protocol) -> float:
    assert p.vault is not None
    decimals = int(p.vault.decimals())
    return int(p.vault.convertToAssets(10**decimals)) / 10**p.system.settlement_decimals


def _absorb(report: CrashReport, keeper: str, r: TickReport, t: int) -> None:
    for o in r.outcomes:
        if not o.ok:
            report.counts["lost"] = report.counts.get("lost", 0) + 1
            continue
        ev = o.events
        for x in ev.get("TrancheOpened", []):
            report.counts["tranches"] = report.counts.get("tranches", 0) + 1
            report.rewards += _usd(int(x["reward"]))
            if int(x["step"]) == 1:
                report.started_equity[int(x["account"])] = _usd(int(x["equity"]))
        for x in ev.get("AuctionTake", []):
            report.takes.append(
                TakeRecord(t, int(x["account"]), keeper, int(x["discount"]) / WAD, 0.0)
            )
        for x in ev.get("AuctionBackstop", []):
            report.backstops.append(
                TakeRecord(t, int(x["account"]), keeper, int(x["discount"]) / WAD, 0.0)
            )
        for x in ev.get("LiquidationTransfer", []):
            report.penalties += _usd(int(x["penalty"]))
            target = report.takes if int(x["taker"]) != 0 else report.backstops
            if target:
                target[-1].notional = _usd(int(x["notional"]))
        for x in ev.get("BadDebtSettled", []):
            report.bad_debt += _usd(int(x["deficit"]))
            start = report.started_equity.get(int(x["account"]), 0.0)
            if start > 0:
                report.positive_then_bad_debt.append(
                    (int(x["account"]), start, _usd(int(x["deficit"])))
                )
            report.from_insurance += _usd(int(x["from_insurance"]))
            report.socialized += _usd(int(x["socialized"]))


def _record(
    p: Protocol, population: dict[int, str], accounts: list[int], t: int, report: CrashReport
) -> StepRecord:
    from perpdex.keepers.scan import batch_call

    assert p.auction is not None
    ch, auction = p.clearinghouse, p.auction
    ids = list(population)
    calls: list[tuple[Any, tuple[Any, ...]]] = []
    for a in ids:
        calls += [(ch.account_margin, (a,)), (auction.auction, (a,))]
    n = len(calls)
    calls += [(ch.mark, (p.market_id(s),)) for s in p.symbols]
    calls.append((ch.insurance_fund, ()))
    res = batch_call(calls)
    marks, insurance = res[n:-1], res[-1]
    health, discounts = {}, {}
    for i, a in enumerate(ids):
        s, au = res[2 * i], res[2 * i + 1]
        if int(s[2]):
            health[a] = int(s[0]) / int(s[2])
        if au[0] and int(au[2]):
            discounts[a] = int(au[5]) / WAD
    gap = conservation_gap(p, accounts)
    report.max_gap = max(report.max_gap, abs(gap))
    if not 0 <= gap <= DUST:
        raise CrashInvariantError(
            f"conservation broken at t={t}s: tokens held minus claims = {gap} wei; "
            "report this with the seed"
        )
    return StepRecord(
        t=t,
        prices={s: int(m[0]) / WAD for s, m in zip(p.symbols, marks, strict=True)},
        health=health,
        discounts=discounts,
        insurance=_usd(int(insurance)),
        socialized=report.socialized,
        share_price=_share_price(p),
        gap=gap,
    )


def _check(
    p: Protocol,
    report: CrashReport,
    keepers: dict[str, Liquidator],
    accounts_before: list[int],
    t0: int,
) -> None:
    from ape import chain

    ch = p.clearinghouse
    assert p.auction is not None
    accounts = accounts_opened(p, 0, int(chain.blocks.head.number))
    problems = []
    ever = {x.account for x in report.takes + report.backstops}
    for a in report.population:
        s = ch.account_margin(a)
        bal = int(ch.balance_of(a, 0))
        active = bool(p.auction.auction(a)[0])
        flat = int(s.maintenance) == 0
        if active or int(ch.account_header(a)) & 4:
            problems.append(f"{a:#x} is still in liquidation")
        if not flat and int(s.equity) < int(s.maintenance):
            problems.append(f"{a:#x} ends unhealthy (equity {_usd(int(s.equity)):,.2f})")
        if bal < 0 or int(s.equity) < 0:
            problems.append(f"{a:#x} ends with negative money ({_usd(bal):,.2f}) and no event")
        if flat and a in ever:
            report.fully_liquidated.append(a)
        elif a in ever:
            report.partially_liquidated.append(a)
        else:
            report.untouched.append(a)
    # keepers must not end unhealthy either
    for k in keepers.values():
        s = ch.account_margin(k.cfg.keeper_account)
        if int(s.maintenance) and int(s.equity) < int(s.maintenance):
            problems.append(f"keeper {k.name} ends unhealthy")
    if abs(report.bad_debt - report.from_insurance - report.socialized) > 1e-6:
        problems.append("bad debt != insurance used + socialised")
    gap = conservation_gap(p, accounts)
    if not 0 <= gap <= DUST:
        problems.append(f"conservation gap {gap} wei at the end")
    fee_share = (
        report.insurance_end - report.insurance_start - report.penalties + (report.from_insurance)
    )
    report.counts["insurance_fee_share_cents"] = round(fee_share * 100)
    if fee_share < -1e-6:
        problems.append(f"insurance lost ${-fee_share:,.2f} not explained by bad debt")
    if problems:
        raise CrashInvariantError("; ".join(problems))


# --- chart ------------------------------------------------------------------------------------


def write_chart(report: CrashReport, path: Path) -> Path:
    """Four panels over time (minutes since the crash began): prices; every account's
    health with the median and the 1.0 / 0.5 lines; auction discounts (running auctions
    as dots, takes sized by notional, backstops as crosses); insurance, socialised loss
    and the vault's share price."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report.steps
    mins = [s.t / 60 for s in steps]
    fig, ax = plt.subplots(4, 1, figsize=(11, 13), sharex=True)
    # 1. prices, as % of the start
    for sym in steps[0].prices if steps else []:
        base = steps[0].prices[sym]
        ax[0].plot(mins, [100 * s.prices[sym] / base for s in steps], label=sym)
    ax[0].set_ylabel("price, % of start")
    ax[0].legend(loc="lower left")
    ax[0].set_title("crash replay: prices, health, auctions, losses")
    # 2. health of every account (clipped), median, thresholds
    for a in report.population:
        xs = [m for m, s in zip(mins, steps, strict=True) if a in s.health]
        ys = [max(min(s.health[a], 4.0), -1.0) for s in steps if a in s.health]
        ax[1].plot(xs, ys, color="grey", alpha=0.35, linewidth=0.8)
    med = [
        max(min(statistics.median(s.health.values()), 4.0), -1.0) if s.health else math.nan
        for s in steps
    ]
    ax[1].plot(mins, med, color="black", linewidth=2, label="median")
    ax[1].axhline(1.0, color="orange", linestyle="--", label="liquidatable (1.0)")
    ax[1].axhline(0.5, color="red", linestyle="--", label="critical (0.5)")
    ax[1].set_ylabel("health = equity / maintenance")
    ax[1].set_ylim(-1.05, 4.05)
    ax[1].legend(loc="upper right")
    # 3. auctions
    xs = [m for m, s in zip(mins, steps, strict=True) for _ in s.discounts]
    ys = [100 * d for s in steps for d in s.discounts.values()]
    ax[2].scatter(xs, ys, s=6, color="grey", alpha=0.5, label="running auctions")
    if report.takes:
        ax[2].scatter(
            [x.t / 60 for x in report.takes],
            [100 * x.discount for x in report.takes],
            s=[max(10.0, x.notional / 500) for x in report.takes],
            color="tab:blue",
            alpha=0.7,
            label="keeper takes (size ~ notional)",
        )
    if report.backstops:
        ax[2].scatter(
            [x.t / 60 for x in report.backstops],
            [100 * x.discount for x in report.backstops],
            marker="x",
            color="red",
            label="vault backstops",
        )
    ax[2].set_ylabel("auction discount, %")
    ax[2].legend(loc="upper right")
    # 4. insurance, socialised loss, share price
    ax[3].plot(mins, [s.insurance for s in steps], label="insurance fund (USD)")
    ax[3].plot(mins, [s.socialized for s in steps], label="socialised loss, cumulative (USD)")
    ax[3].set_ylabel("USD")
    ax[3].set_xlabel("minutes since the crash began")
    ax[3].legend(loc="upper left")
    twin = ax[3].twinx()
    twin.plot(mins, [s.share_price for s in steps], color="tab:green", label="vault share price")
    twin.set_ylabel("vault share price (USDC per share)")
    twin.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def crash_replay_step(
    protocol: Protocol, console: Console, out_dir: Path | None = None
) -> CrashReport:
    """The demo's crash replay on the demo chain, chart written to `out_dir` (the demo's
    folder), else PERPDEX_CRASH_OUT (default build/crash)."""
    import os

    from ape import accounts

    out = out_dir or Path(os.environ.get("PERPDEX_CRASH_OUT", "build/crash"))
    return run(protocol, list(accounts.test_accounts)[:10], console, out, CrashConfig())
