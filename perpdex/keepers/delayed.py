"""The delayed-order keeper: settles every committed delayed vault order as soon as the
oracle publishes a price observed after its delay (contracts/modules/delayed.vy).

Why a keeper: a delayed order fills at the first oracle price observed at least the
market's `min_delay` after its commit, but only when someone calls `settle_order`. Anyone
may, and earns the order's keeper fee; an order left unsettled until it expires fills
never. Settling promptly is also what keeps the owner from choosing the moment (within
the order's max age) of a fill it could otherwise time itself (docs/security.md).

One tick = observe -> plan -> execute, like the other keepers:

    observe  scan `DelayedOrderCommitted` logs since the cursor for (account, market)
             pairs, then read at the head block in one JSON-RPC batch each pair's order
             word (`delayed_order`), each market's config (`delayed_config`) and the
             oracle's observation time (`price_time`), and the head's timestamp
    plan     ready: not expired and a price observed at or after commit + min_delay;
             expired: cancelled too with `cancel_expired` (no reward: housekeeping);
             waiting: nothing yet
    execute  each `settle_order` (or cancel) is first run as an eth_call (the chain decides:
             margin, acceptable price, quorum...), skipped and logged if it would revert,
             else sent. A revert at send (another keeper was faster) is logged; the tick
             goes on.

Restartable and idempotent: everything but the pair list is re-read every tick; a pair
whose order is gone (settled, cancelled) is dropped and comes back with its next commit's
log. `KeeperState` keeps the pairs (as `account << 8 | market`) and the log cursor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils import keccak

from perpdex.constants import WAD
from perpdex.keepers.liquidator import _logs, _topic_int, preflight
from perpdex.keepers.loop import TickingKeeper, usd
from perpdex.keepers.scan import BatchLimits, batch_call
from perpdex.keepers.state import KeeperState
from perpdex.sdk import gas
from perpdex.sdk.math import delayed as dm

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = [
    "COMMITTED",
    "DelayedKeeper",
    "DelayedKeeperConfig",
    "OrderRead",
    "SettleOutcome",
    "SettleReport",
    "pair_key",
    "plan",
]

log = logging.getLogger("perpdex.keepers.delayed")

COMMITTED = (
    "0x"
    + keccak(text="DelayedOrderCommitted(uint256,uint256,int256,uint256,uint256,uint256)").hex()
)
MARKET_BITS = 8  # a pair's key: account << 8 | market (markets are below 32)


def pair_key(account: int, market: int) -> int:
    return account << MARKET_BITS | market


@dataclass(frozen=True)
class OrderRead:
    """One pending order at one block."""

    account: int
    market: int
    order: dm.DelayedOrder
    config: dm.DelayedConfig
    price_time: int  # the oracle's observation time of the market's reading
    now: int  # the block's timestamp

    @property
    def status(self) -> str:
        """ "expired", "ready" or "waiting" (PendingOrder.status)."""
        if self.order.expired(self.config, self.now):
            return "expired"
        return "ready" if self.price_time >= self.order.opens(self.config) else "waiting"


@dataclass
class SettleOutcome:
    account: int
    market: int
    action: str  # "settle" or "cancel"
    ok: bool
    why: str
    tx_hash: str = ""
    gas_used: int = 0
    fee: int = 0  # USD WAD earned (DelayedOrderSettled.keeper_fee)
    price: int = 0  # WAD fill price
    error: str = ""
    stage: str = ""  # "preflight" (eth_call refused it, no gas) or "send"


@dataclass
class SettleReport:
    block: int
    discovered: int
    pending: int
    ready: int
    expired: int
    outcomes: list[SettleOutcome] = field(default_factory=list)


@dataclass
class DelayedKeeperConfig:
    cancel_expired: bool = False  # also clear expired orders (no reward)
    min_fee: Decimal = Decimal(0)  # USD: skip orders paying less (0: settle every order)
    start_block: int = 0  # first block to scan when there is no state yet
    log_chunk: int = 5_000
    rpc_max_calls: int = 1_000
    rpc_max_bytes: int = 1_048_576
    rpc_parallel: int = 2


def plan(reads: Sequence[OrderRead], cfg: DelayedKeeperConfig) -> list[tuple[str, OrderRead]]:
    """What to send: ("settle", r) for every ready order paying at least `min_fee`, then
    ("cancel", r) for every expired one when `cancel_expired`; oldest commits first."""
    min_fee = int(cfg.min_fee * WAD)
    ready = [r for r in reads if r.status == "ready" and r.order.keeper_fee >= min_fee]
    out = [("settle", r) for r in sorted(ready, key=lambda r: r.order.commit_time)]
    if cfg.cancel_expired:
        out += [("cancel", r) for r in reads if r.status == "expired"]
    return out


class DelayedKeeper(TickingKeeper[SettleOutcome, SettleReport]):
    """One signer settling delayed orders on one deployment; fees go to the signer."""

    interval = 1.0

    def __init__(
        self,
        protocol: Protocol,
        signer: Any,
        config: DelayedKeeperConfig | None = None,
        state_path: Path | None = None,
        name: str = "delayed",
    ) -> None:
        from ape import chain

        self.p = protocol
        self.ch = protocol.clearinghouse
        self.ops = protocol.ops
        self.risk = protocol.risk
        self.signer = signer
        self.cfg = config or DelayedKeeperConfig()
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.state = KeeperState.load(
            state_path, chain.chain_id, str(self.ch.address), self.cfg.start_block
        )
        self.history: list[SettleOutcome] = []

    def _limits(self) -> BatchLimits:
        return BatchLimits(self.cfg.rpc_max_calls, self.cfg.rpc_max_bytes, self.cfg.rpc_parallel)

    def discover(self, head: int) -> int:
        """Scan `DelayedOrderCommitted` logs up to `head`; returns how many pairs were new."""
        start = self.state.cursor + 1
        if start > head:
            return 0
        new = 0
        for x in _logs(self.p, [COMMITTED], start, head, self.cfg.log_chunk):
            key = pair_key(_topic_int(x["topics"][1]), _topic_int(x["topics"][2]))
            if key not in self.state.accounts:
                self.state.accounts.add(key)
                new += 1
        self.state.cursor = head
        if new:
            self.log.info("discovered %d order(s) in blocks %d..%d", new, start, head)
        return new

    def read(self, keys: Sequence[int], block: int) -> list[OrderRead]:
        """The pending orders of `keys` at `block` (one batch); drops the keys whose order
        is gone from the state."""
        from ape import chain

        if not keys:
            return []
        pairs = [(k >> MARKET_BITS, k & (2**MARKET_BITS - 1)) for k in keys]
        markets = sorted({m for _, m in pairs})
        calls: list[tuple[Any, tuple[Any, ...]]] = [
            (self.ops.delayed_order, (a, m)) for a, m in pairs
        ]
        calls += [(self.ops.delayed_config, (m,)) for m in markets]
        calls += [(self.p.oracle.price_time, (m,)) for m in markets]
        out = batch_call(calls, self._limits(), block=block)
        n, k = len(pairs), len(markets)
        configs = {
            m: dm.unpack_config(int(w)) for m, w in zip(markets, out[n : n + k], strict=True)
        }
        times = {m: int(t) for m, t in zip(markets, out[n + k :], strict=True)}
        now = int(chain.provider.get_block(block).timestamp)
        reads = []
        for key, (a, m), word in zip(keys, pairs, out[:n], strict=True):
            order = dm.unpack_order(int(word))
            if order is None:
                self.state.accounts.discard(key)
                continue
            reads.append(OrderRead(a, m, order, configs[m], times[m], now))
        return reads

    def tick(self) -> SettleReport:
        """Observe, plan, execute, save. Never raises for a refused transaction."""
        from ape import chain

        head = int(chain.blocks.head.number)
        discovered = self.discover(head)
        reads = self.read(sorted(self.state.accounts), head)
        report = SettleReport(
            block=head,
            discovered=discovered,
            pending=len(reads),
            ready=sum(1 for r in reads if r.status == "ready"),
            expired=sum(1 for r in reads if r.status == "expired"),
        )
        for action, r in plan(reads, self.cfg):
            report.outcomes.append(self.execute(action, r))
        self.state.save()
        return report

    def execute(self, action: str, r: OrderRead) -> SettleOutcome:
        """Preflight `settle_order` (or `cancel_delayed_order`) as an eth_call, then send it."""
        from ape.exceptions import ApeException

        symbol = self.p.symbols[r.market] if r.market < len(self.p.symbols) else str(r.market)
        label = f"{action} {r.account:#x} {symbol}"
        side = "buy" if r.order.size > 0 else "sell"
        why = (
            f"{side} {Decimal(abs(r.order.size)) / WAD:f} {symbol} committed at "
            f"{r.order.commit_time}, price observed at {r.price_time}"
        )
        method = self.risk.settle_order if action == "settle" else self.risk.cancel_delayed_order
        reason = preflight(method, (r.account, r.market), self.signer.address)
        if reason is not None:
            self.log.info("skip %s: %s (%s)", label, reason, why)
            return self._done(
                SettleOutcome(
                    r.account, r.market, action, False, why, error=reason, stage="preflight"
                )
            )
        try:
            tx = gas.send(label, method, r.account, r.market, sender=self.signer)
        except (ApeException, gas.OutOfGas) as e:
            msg = str(getattr(e, "revert_message", None) or e).strip().splitlines()[0]
            self.log.warning("%s reverted: %s (another keeper was faster?)", label, msg)
            return self._done(
                SettleOutcome(r.account, r.market, action, False, why, error=msg, stage="send")
            )
        out = SettleOutcome(
            r.account, r.market, action, True, why, str(tx.txn_hash), int(tx.gas_used)
        )
        if action == "settle":
            for ev in tx.decode_logs(self.risk.DelayedOrderSettled):
                out.fee += int(ev.keeper_fee)
                out.price = int(ev.price)
        self.state.accounts.discard(pair_key(r.account, r.market))
        self.state.count(action)
        self.log.info(
            "%s ok: %s; price %s, fee $%s, gas %d",
            label,
            why,
            usd(out.price),
            usd(out.fee),
            out.gas_used,
        )
        return self._done(out)
