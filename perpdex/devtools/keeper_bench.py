"""Keeper scan benchmark: how many accounts per second the liquidation keeper reads.

Run with `ape run bench_keeper` (`make bench` runs it after the gas benchmark). On a
fresh local deployment, the AccountFarm mock opens N accounts (default 10,000;
PERPDEX_BENCH_ACCOUNTS overrides) in a few dozen transactions, each funded with one
0.01 BTC position, longs and shorts alternating; then the BTC price drops 7% so the
most leveraged longs come near liquidation (the scan's second phase reads them in
full). Each configuration below scans every account (`Liquidator.read`, pinned to one
block) a few times; the table shows the median. The default configuration's rate is
written to docs/perf.json as `keeper_scan_accounts_per_s`.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex.constants import WAD
from perpdex.deploy import Protocol, deploy_system
from perpdex.keepers.liquidator import Liquidator, LiquidatorConfig
from perpdex.keepers.scan import BatchRefused, RpcBatcher

ACCOUNTS = int(os.environ.get("PERPDEX_BENCH_ACCOUNTS", "10000"))
PER_TX = 80  # accounts the farm opens per transaction (a multiple of the deposit cycle)
REPEAT = 3
POSITION = WAD // 100  # 0.01 BTC, ~$1,000 notional
DEPOSITS_USD = (1_000, 400, 250, 160, 140, 130, 119, 500)  # cycled; even k long
PRICE_DROP = Decimal("0.07")  # the $119 longs (1 in 8) end near health 1


@dataclass
class Result:
    name: str
    accounts: int
    chunks: int
    detailed: int
    refusals: int
    fallbacks: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.accounts / self.seconds if self.seconds else 0.0


def set_price(p: Protocol, sym: str, price: Decimal, admin: Any) -> None:
    for f in p.feeds[sym]:
        f.set_answer(int(price * 10**8), sender=admin)
    p.ops.refresh([p.market_id(sym)], sender=admin)


def farm_accounts(p: Protocol, chain: Any, project: Any, admin: Any, lp: Any, n: int) -> int:
    """Opens `n` funded accounts with one BTC position each; returns the first block."""
    unit = 10**p.system.settlement_decimals
    assert p.vault is not None
    pool = 50_000_000 * unit
    p.token.mint(lp, pool, sender=lp)
    p.token.approve(p.vault, pool, sender=lp)
    p.vault.deposit(pool, lp, sender=lp)
    first = int(chain.blocks.head.number) + 1
    farm = admin.deploy(project.AccountFarm, p.clearinghouse)
    deposits = [d * unit for d in DEPOSITS_USD]
    p.token.mint(farm, (n // len(deposits) + 1) * sum(deposits), sender=admin)
    btc = p.market_id("BTC")
    done = 0
    while done < n:
        k = min(PER_TX, n - done)
        # keep the deposit cycle aligned across transactions (k is a multiple of its length)
        farm.open_many(k, p.token, deposits, btc, POSITION, sender=admin, gas_limit=29_000_000)
        done += k
        if done % 2_000 == 0 or done == n:
            print(f"  {done:,} accounts open")
    return first


def measure(name: str, keeper: Liquidator, accounts: list[int], block: int) -> Result:
    times, stats, refusals, fallbacks = [], None, 0, 0
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        reads = keeper.read(accounts, block)
        times.append(time.perf_counter() - t0)
        stats = keeper.scanner.stats
        refusals, fallbacks = max(refusals, stats.refusals), max(fallbacks, stats.fallbacks)
        if len(reads) != len(accounts):
            raise RuntimeError(f"{name}: {len(accounts) - len(reads)} account read(s) failed")
    assert stats is not None
    return Result(
        name,
        len(accounts),
        stats.chunks,
        stats.detailed,
        refusals,
        fallbacks,
        statistics.median(times),
    )


class RefuseAbove:
    """A transport that refuses batches above `limit` calls, as a stricter provider."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __call__(self, body: bytes) -> Any:
        if body.startswith(b"[") and body.count(b'"jsonrpc"') > self.limit:
            raise BatchRefused(f"HTTP 413: batch larger than {self.limit} calls")
        return self.inner(body)


def main() -> None:
    from ape import accounts, chain, project

    console = Console(width=130)
    admin, lp = accounts.test_accounts[0], accounts.test_accounts[3]
    console.print(f"[bold]keeper scan benchmark[/bold]: {ACCOUNTS:,} accounts on a fresh chain")
    t0 = time.perf_counter()
    p = deploy_system(admin, key="local", manifest=None)
    console.print(f"deploy: {time.perf_counter() - t0:,.0f} s")
    t0 = time.perf_counter()
    first = farm_accounts(p, chain, project, admin, lp, ACCOUNTS)
    console.print(f"set-up: {ACCOUNTS:,} accounts in {time.perf_counter() - t0:,.0f} s")
    btc = p.system.market("BTC").price
    set_price(p, "BTC", Decimal(btc) * (1 - PRICE_DROP), admin)
    keeper_acct = int(p.clearinghouse.open_account("keeper", False, sender=admin).return_value)
    base = LiquidatorConfig(keeper_account=keeper_acct, start_block=first)
    keeper = Liquidator(p, admin, base)
    head = int(chain.blocks.head.number)
    keeper.discover(head)
    accounts_ = sorted(keeper.state.accounts - {keeper_acct})
    console.print(f"discovered {len(accounts_):,} accounts from logs")
    reads = keeper.read(accounts_, head)
    healths = sorted(float(r.health) for r in reads if r.health is not None)
    q = [healths[int(f * (len(healths) - 1))] for f in (0, 0.05, 0.25, 0.5)]
    console.print(
        "health after the drop: min {:.2f}, 5% {:.2f}, 25% {:.2f}, median {:.2f}".format(*q)
    )

    def with_cfg(**kw: Any) -> Liquidator:
        return Liquidator(p, admin, replace(base, **kw))

    results = [
        measure("default (1,000 calls, 1 MiB, 2 in flight)", keeper, accounts_, head),
        measure("1 in flight", with_cfg(rpc_parallel=1), accounts_, head),
        measure("4 in flight", with_cfg(rpc_parallel=4), accounts_, head),
        measure("250 calls per batch", with_cfg(rpc_max_calls=250), accounts_, head),
        measure(
            "all read in full (near = 1,000)",
            with_cfg(near=Decimal(1000)),
            accounts_,
            head,
        ),
    ]
    strict = with_cfg()
    batcher = strict.scanner.batcher
    strict.scanner.batcher = RpcBatcher(RefuseAbove(batcher.transport, 400), batcher.limits)
    results.append(measure("provider refusing > 400 calls", strict, accounts_, head))

    t = Table(title=f"keeper account scan on local anvil ({ACCOUNTS:,} accounts, median of 3)")
    for col in ("configuration", "accounts", "chunks", "read in full", "seconds", "accounts/s"):
        t.add_column(col, justify="left" if col == "configuration" else "right")
    t.add_column("refused batches", justify="right")
    t.add_column("single-call fallbacks", justify="right")
    for r in results:
        t.add_row(
            r.name,
            f"{r.accounts:,}",
            f"{r.chunks:,}",
            f"{r.detailed:,}",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            f"{r.refusals:,}",
            f"{r.fallbacks:,}",
        )
    console.print(t)
    from perpdex.devtools.perf import PERF_JSON, record

    if ACCOUNTS == 10_000:
        record({"keeper_scan_accounts_per_s": round(results[0].rate)})
        console.print(f"wrote keeper_scan_accounts_per_s = {results[0].rate:,.0f} to {PERF_JSON}")
    else:
        console.print("(not recorded: docs/perf.json holds the 10,000-account figure)")
