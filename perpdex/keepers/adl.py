"""The auto-deleveraging (ADL) keeper: keeps every market inside the vault's limits.

`ClearinghouseRisk.auto_deleverage(account, market)` (contracts/modules/vault_limits.vy)
is permissionless and does nothing unless the vault is outside its limits in `market`:

    PnL cap        traders' net unrealised profit > max_pnl_factor x pool equity: a
                   profitable position closes at the oracle price, just enough to bring
                   the profit down to adl_target_factor x equity (reason 1)
    exposure cap   |skew| x price > max_vault_exposure x pool equity, or above the
                   trade path's rule that LP exits use too (after a price move, an LP
                   exit, a backstop take or a loss-cap close-out, which no cap refuses):
                   a position on the skew's side closes down to the cap (reason 2)

Nobody calls it without a bot; this is the bot. One round = observe -> plan -> execute:

    observe  scan `Fill` / `OrdersMatched` logs since the cursor for accounts (both sides
             of a fill), then
             read the pool in one JSON-RPC batch (keepers/scan.py's batcher): cash,
             pending fees, provision, insurance, the PnL factors and every market's open
             interest, pool sums, mark and exposure cap
    plan     per market, with the SDK mirror (perpdex/sdk/math/vault_limits.py, the
             contract's arithmetic at the cached marks): is ADL open (or within `near`
             of opening: the contract re-reads the oracle price)? If not the market is
             skipped. If so, one more batch reads every known account's position in it
             and its header and margin; candidates (not in liquidation; profitable for the
             PnL cap, on the skew's side for the exposure cap) are ranked like an
             exchange's ADL queue: unrealised PnL as a share of the entry notional times
             the account's leverage (notional / equity), highest first
    execute  each candidate in turn is run as an eth_call (the chain decides), skipped and
             logged if it would revert, else sent; after each success the pool is read
             again and the market stops as soon as it is back within its limits. A
             market-wide refusal ("vault within its limits", no price quorum) ends the
             market for this round; a revert at send (another keeper was faster) is
             logged and the round goes on.

Everything but the account list is re-read every round, so the keeper is idempotent and
restartable: a market back under its target is left alone. `KeeperState` keeps the
account list and the log cursor in a JSON file (`perpdex keeper adl --state`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.constants import ACCOUNT_IN_LIQUIDATION, WAD
from perpdex.keepers.liquidator import (
    FILL,
    ORDERS_MATCHED,
    POOL,
    _logs,
    batch_call,
    fill_accounts,
    preflight,
)
from perpdex.keepers.loop import TickingKeeper, usd
from perpdex.keepers.scan import BatchLimits
from perpdex.keepers.state import KeeperState
from perpdex.sdk import gas
from perpdex.sdk.math import vault_limits as vl
from perpdex.sdk.math.positions import funding_owed
from perpdex.sdk.math.vyper import Revert, vdiv

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = [
    "AdlCandidate",
    "AdlConfig",
    "AdlKeeper",
    "AdlOutcome",
    "AdlReport",
    "MarketStatus",
    "PoolRead",
    "market_status",
    "rank",
]

log = logging.getLogger("perpdex.keepers.adl")

# refusals that hold for every position of the market: stop trying its candidates
MARKET_WIDE = ("vault within its limits", "no price quorum", "unknown market", "paused")


@dataclass
class AdlConfig:
    near: Decimal = Decimal("0.02")  # also preflight a market this close below a limit
    max_per_market: int = 25  # ADL transactions per market per round, at most
    start_block: int = 0  # first block to scan when there is no state yet
    log_chunk: int = 5_000  # blocks per eth_getLogs
    rpc_max_calls: int = 1_000
    rpc_max_bytes: int = 1_048_576
    rpc_parallel: int = 2

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(self.rpc_max_calls, self.rpc_max_bytes, self.rpc_parallel)


@dataclass(frozen=True)
class PoolRead:
    """The pool as `auto_deleverage` sees it, at the cached marks (USD WAD)."""

    cash: int  # raw pool cash (pool_cash() less the vault's share of unswept fees)
    provision: int
    insurance: int
    max_pnl_factor: int
    target_factor: int
    markets: list[vl.PoolMarket]

    @property
    def equity(self) -> int:
        return vl.pool_equity(self.cash, self.markets, self.provision, self.insurance)


@dataclass(frozen=True)
class MarketStatus:
    market: int
    pnl: int  # traders' net unrealised profit
    equity: int  # pool equity
    exposure: int  # |skew| x price
    cap: int  # exposure cap: the lower of pool equity's and the trade path's rule
    pnl_capped: bool  # ADL open under the PnL cap
    over_cap: bool  # ADL open under the exposure cap
    near: bool  # within `near` below a limit: worth an eth_call at the oracle price

    @property
    def open(self) -> bool:
        return self.pnl_capped or self.over_cap

    @property
    def ratio(self) -> Decimal:
        """Traders' profit / pool equity."""
        return Decimal(self.pnl) / Decimal(self.equity) if self.equity > 0 else Decimal(0)

    @property
    def why(self) -> str:
        return (
            f"traders' profit {self.ratio:.2%} of pool equity ${usd(self.equity)}; "
            f"exposure ${usd(self.exposure)} vs cap ${usd(self.cap)}"
        )


def market_status(pool: PoolRead, m: int, near: Decimal = Decimal(0)) -> MarketStatus:
    """The contract's tests for market `m` (vault_limits.vy `auto_deleverage`)."""
    mk = pool.markets[m]
    equity = pool.equity
    pnl = vl.trader_pnl(mk)
    exposure = vl.exposure(mk)
    # ADL opens above the cap against pool equity or the trade path's rule (LP exits')
    cap = min(vl.exposure_cap(mk, equity), vl.exposure_limit(mk, pool.cash))
    capped = vl.pnl_capped(pnl, equity, pool.max_pnl_factor)
    over = exposure > cap
    limit = Decimal(pool.max_pnl_factor) * max(equity, 0) / WAD
    close = (pool.max_pnl_factor != 0 and Decimal(pnl) > limit * (1 - near)) or Decimal(
        exposure
    ) > Decimal(cap) * (1 - near)
    return MarketStatus(m, pnl, equity, exposure, cap, capped, over, close and near > 0)


@dataclass(frozen=True)
class AdlCandidate:
    """One position of a market that ADL could close."""

    account: int
    market: int
    size: int
    cost: int
    index_delta: int  # funding index at the cached mark minus the position's snapshot
    price: int  # the cached mark
    equity: int  # the account's equity at the cached marks
    notional: int  # the account's gross notional

    @property
    def owed(self) -> int:
        """Funding the position owes at the cached index (+) or earns (-)."""
        return funding_owed(self.size, self.index_delta)

    @property
    def pnl(self) -> int:
        """Unrealised PnL at the mark, net of the funding owed."""
        return vdiv(self.size * self.price, WAD) - self.cost - self.owed

    @property
    def leverage(self) -> Decimal:
        if self.equity <= 0:
            return Decimal(10**9)  # no equity: first in line (it is liquidatable anyway)
        return Decimal(self.notional) / Decimal(self.equity)

    @property
    def score(self) -> Decimal:
        """The ADL queue's rank: PnL / entry notional x leverage (exchanges' ADL ranking)."""
        entry = abs(self.cost) or 1
        return Decimal(self.pnl) / Decimal(entry) * self.leverage


def rank(cands: Sequence[AdlCandidate], status: MarketStatus, skew: int) -> list[AdlCandidate]:
    """The positions `auto_deleverage` may close in this state, best first: under the PnL
    cap the profitable ones, under the exposure cap those on the skew's side (both when
    both are open; a market only near a limit gets the PnL cap's set)."""
    out = []
    for c in cands:
        price_pnl = vdiv(c.size * c.price, WAD) - c.cost
        profitable = price_pnl > c.owed and price_pnl > 0
        skew_side = skew != 0 and (c.size > 0) == (skew > 0)
        pnl_side = status.pnl_capped or (status.near and not status.over_cap)
        if (pnl_side and profitable) or (status.over_cap and skew_side):
            out.append(c)
    return sorted(out, key=lambda c: (c.score, c.pnl, c.account), reverse=True)


@dataclass
class AdlOutcome:
    account: int
    market: int
    ok: bool
    why: str  # what the keeper saw
    expected_delta: int | None = None  # the mirror's fill at the cached mark (None: refused)
    size_delta: int = 0  # what AutoDeleveraged reported
    reason: int = 0  # AutoDeleveraged.reason: 1 PnL cap, 2 exposure cap
    tx_hash: str = ""
    gas_used: int = 0
    error: str = ""
    stage: str = ""  # "preflight" (eth_call refused it, no gas) or "send"


@dataclass
class AdlReport:
    block: int
    discovered: int
    markets: list[MarketStatus] = field(default_factory=list)  # as read at the start
    outcomes: list[AdlOutcome] = field(default_factory=list)
    after: dict[int, MarketStatus] = field(default_factory=dict)  # markets acted on, after

    @property
    def done(self) -> list[AdlOutcome]:
        return [o for o in self.outcomes if o.ok]


class AdlKeeper(TickingKeeper[AdlOutcome, AdlReport]):
    """One signer auto-deleveraging on one deployment (the transactions earn nothing; the
    signer pays the gas)."""

    interval = 5.0

    def __init__(
        self,
        protocol: Protocol,
        signer: Any,
        config: AdlConfig | None = None,
        state_path: Path | None = None,
        name: str = "adl",
    ) -> None:
        from ape import chain

        self.p = protocol
        self.ch = protocol.clearinghouse
        self.ops = protocol.ops
        self.risk = protocol.risk
        self.signer = signer
        self.cfg = config or AdlConfig()
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.state = KeeperState.load(
            state_path, chain.chain_id, str(self.ch.address), self.cfg.start_block
        )
        self.history: list[AdlOutcome] = []

    # --- observe -------------------------------------------------------------------------

    def discover(self, head: int) -> int:
        """Scan `Fill` and `OrdersMatched` logs up to `head` for accounts (both sides);
        returns how many were new."""
        start = self.state.cursor + 1
        if start > head:
            return 0
        new = 0
        for x in _logs(self.p, [[FILL, ORDERS_MATCHED]], start, head, self.cfg.log_chunk):
            for a in fill_accounts(x):
                if a != POOL and a not in self.state.accounts:
                    self.state.accounts.add(a)
                    new += 1
        self.state.cursor = head
        if new:
            self.log.info("discovered %d account(s) in blocks %d..%d", new, start, head)
        return new

    def read_pool(self) -> PoolRead:
        """Pool and markets in one batch, as the contract reads them."""
        ch, ops = self.ch, self.ops
        n = int(ch.market_count())
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (ch.pool_cash, ()),
            (ops.pending_fees, ()),
            (ch.system_params, ()),
            (ch.bad_debt_provision, ()),
            (ch.insurance_fund, ()),
            (ops.max_pnl_factor, ()),
            (ops.adl_target_factor, ()),
        ]
        k = len(vl.POOL_MARKET_VIEWS)
        for m in range(n):
            calls += [(getattr(ch, view), (m,)) for view in vl.POOL_MARKET_VIEWS]
        out = batch_call(calls, self.cfg.limits)
        cash, pending, sys, provision, insurance, factor, target = out[:7]
        # pool_cash() adds the vault's share of unswept fees; the contract's word does not
        to_vault = vl.fees_to_vault(int(pending), int(sys[4]), int(sys[5]))
        # insurance_fund() adds insurance's share of unswept fees; the contract's word,
        # which auto_deleverage reads without sweeping, does not (review 6, R6-2)
        insurance = int(insurance) - int(pending) * int(sys[4]) // vl.BPS
        markets = [vl.pool_market(*out[7 + k * m : 7 + k * (m + 1)]) for m in range(n)]
        return PoolRead(
            int(cash) - to_vault, int(provision), int(insurance), int(factor), int(target), markets
        )

    def candidates(self, m: int, pool: PoolRead) -> list[AdlCandidate]:
        """Every known account's position in market `m` (one batch), not in liquidation."""
        accounts = sorted(self.state.accounts)
        if not accounts:
            return []
        ch = self.ch
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for a in accounts:
            calls += [(ch.position, (a, m)), (ch.account_header, (a,)), (ch.account_margin, (a,))]
        out = batch_call(calls, self.cfg.limits)
        mk = pool.markets[m]
        cands = []
        for i, a in enumerate(accounts):
            pos, header, margin = out[3 * i : 3 * i + 3]
            size, cost, snap = int(pos[0]), int(pos[1]), int(pos[2])
            if size == 0 or int(header) & ACCOUNT_IN_LIQUIDATION:
                continue
            delta = (mk.index - snap) % 2**64  # the contract's wrapped 64-bit index
            if delta >= 2**63:
                delta -= 2**64
            cands.append(
                AdlCandidate(
                    a,
                    m,
                    size,
                    cost,
                    delta,
                    mk.price,
                    int(margin[0]),
                    int(margin[4]),
                )
            )
        return cands

    # --- one round -----------------------------------------------------------------------

    def tick(self) -> AdlReport:
        """Observe, plan, execute, save. Never raises for a refused transaction."""
        from ape import chain

        head = int(chain.blocks.head.number)
        report = AdlReport(block=head, discovered=self.discover(head))
        pool = self.read_pool()
        for m in range(len(pool.markets)):
            st = market_status(pool, m, self.cfg.near)
            report.markets.append(st)
            if not (st.open or st.near):
                self.log.debug("market %d within its limits: %s", m, st.why)
                continue
            pool = self._market(m, pool, st, report)
        self.state.save()
        return report

    def _market(self, m: int, pool: PoolRead, st: MarketStatus, report: AdlReport) -> PoolRead:
        """Deleverage market `m` until it is within its limits; returns the pool as last read."""
        what = "PnL cap" if st.pnl_capped else "exposure cap" if st.over_cap else "near a limit"
        queue = rank(self.candidates(m, pool), st, pool.markets[m].skew)
        self.log.info("market %d: ADL open (%s): %s; %d candidate(s)", m, what, st.why, len(queue))
        sent = 0
        while queue:
            if sent >= self.cfg.max_per_market:
                self.log.warning(
                    "market %d: %d ADLs this round, the most allowed; next round goes on", m, sent
                )
                break
            c = queue.pop(0)
            out = self.deleverage(c, pool, st)
            report.outcomes.append(out)
            if out.ok:
                sent += 1
                pool = self.read_pool()
                st = market_status(pool, m)
                report.after[m] = st
                if not st.open:
                    self.log.info("market %d back within its limits: %s", m, st.why)
                    break
                # still open (a position smaller than the excess, or the other limit):
                # the untried positions, ranked for what is open now
                queue = rank(queue, st, pool.markets[m].skew)
            elif out.stage == "preflight" and any(w in out.error for w in MARKET_WIDE):
                break
        return pool

    def deleverage(self, c: AdlCandidate, pool: PoolRead, st: MarketStatus) -> AdlOutcome:
        """Preflight `auto_deleverage(c.account, c.market)` as an eth_call, then send it."""
        from ape.exceptions import ApeException

        label = f"adl {c.account:#x} market {c.market}"
        expected: int | None
        try:
            _, amount = vl.adl_amount(
                pool.markets[c.market],
                c.size,
                c.cost,
                c.index_delta,
                pool.equity,
                pool.max_pnl_factor,
                pool.target_factor,
                cash=pool.cash,
            )
            expected = vl.deleverage_delta(c.size, amount, c.price)
        except Revert:
            expected = None  # refused at the cached mark; the oracle price may differ
        why = (
            f"size {_base(c.size)}, PnL ${usd(c.pnl)}, leverage {c.leverage:.2f}x, "
            f"rank {c.score:.4f}; {st.why}"
        )
        method = self.risk.auto_deleverage
        reason = preflight(method, (c.account, c.market), self.signer.address)
        if reason is not None:
            self.log.info("skip %s: %s (%s)", label, reason, why)
            return self._done(
                AdlOutcome(
                    c.account, c.market, False, why, expected, error=reason, stage="preflight"
                )
            )
        try:
            tx = gas.send(label, method, c.account, c.market, sender=self.signer)
        except (ApeException, gas.OutOfGas) as e:
            msg = str(getattr(e, "revert_message", None) or e).strip().splitlines()[0]
            self.log.warning("%s reverted: %s (another keeper was faster?)", label, msg)
            return self._done(
                AdlOutcome(c.account, c.market, False, why, expected, error=msg, stage="send")
            )
        evs = tx.decode_logs(self.risk.AutoDeleveraged)
        out = AdlOutcome(
            c.account,
            c.market,
            True,
            why,
            expected,
            size_delta=sum(int(e.size_delta) for e in evs),
            reason=int(evs[0].reason) if evs else 0,
            tx_hash=str(tx.txn_hash),
            gas_used=int(tx.gas_used),
        )
        self.state.count("adl")
        self.log.info(
            "%s ok: closed %s (%s), gas %d; %s",
            label,
            _base(-out.size_delta),
            {vl.REASON_PNL: "PnL cap", vl.REASON_EXPOSURE: "exposure cap"}.get(out.reason, "?"),
            out.gas_used,
            why,
        )
        return self._done(out)


def _base(wad: int) -> str:
    return f"{Decimal(wad) / WAD:.4f}"
