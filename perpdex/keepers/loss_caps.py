"""The loss-cap keeper: triggers every sub-account whose equity fell below its loss cap.

A loss cap (`accounts.set_loss_cap`) is an owner's strategy stop: below the floor anyone
may call `trading.trigger_loss_cap(account)`, which closes the positions reduce-only at
the oracle price (a bounded size per market per 60 s window) and pays the caller
`loss_cap_fee`. Without a bot nobody calls it; this is the bot.

One tick = observe -> plan -> execute, like the liquidation keeper (keepers/liquidator.py):

    observe  scan `LossCapSet` logs since the cursor for accounts that ever had a cap,
             then read each one at the head block in one JSON-RPC batch: its floor
             (`loss_cap`), header (positions? in liquidation?) and `account_margin`
             (equity at the cached marks)
    plan     candidates: a floor set, positions open, not in liquidation, and equity at
             the cached marks below floor x (1 + near) (the trigger re-reads every mark:
             an account just above the floor at old marks may be below it at fresh ones)
    execute  each candidate's `trigger_loss_cap` is first run as an eth_call (the chain
             decides: "equity above loss cap", "loss-cap window used up", a price without
             quorum...), skipped and logged if it would revert, else sent with
             `perpdex.sdk.gas.send`. A revert at send (another keeper was faster) is
             logged; the tick goes on.

Everything but the account list is re-read every tick, so the keeper is idempotent and
restartable: a triggered account has no positions left (or a used-up window) and is not
triggered again. `KeeperState` keeps the account list and the log cursor in a JSON file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils import keccak

from perpdex.constants import ACCOUNT_IN_LIQUIDATION
from perpdex.keepers.liquidator import _logs, _topic_int, preflight
from perpdex.keepers.loop import TickingKeeper, usd
from perpdex.keepers.scan import BatchLimits, batch_call
from perpdex.keepers.state import KeeperState
from perpdex.sdk import gas
from perpdex.sdk import math as pm

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = ["CapRead", "LossCapConfig", "LossCapKeeper", "LossCapReport", "TriggerOutcome"]

log = logging.getLogger("perpdex.keepers.loss_caps")

LOSS_CAP_SET = "0x" + keccak(text="LossCapSet(uint256,uint256,uint256)").hex()


@dataclass(frozen=True)
class CapRead:
    """One capped account at one block (USD WAD)."""

    account: int
    floor: int
    header: int
    equity: int  # at the cached marks
    settlement: int = 0  # settlement-token balance (USD WAD): the fee is paid from it

    @property
    def has_positions(self) -> bool:
        return pm.position_count(self.header) != 0

    @property
    def in_liquidation(self) -> bool:
        return self.header & ACCOUNT_IN_LIQUIDATION != 0

    @property
    def below(self) -> bool:
        """Below the floor at the cached marks (the trigger's own test, gates._below_loss_cap)."""
        return self.floor != 0 and self.equity < self.floor


@dataclass
class TriggerOutcome:
    account: int
    ok: bool
    why: str  # what the keeper saw
    tx_hash: str = ""
    gas_used: int = 0
    fee: int = 0  # USD WAD earned (LossCapTriggered.fee)
    error: str = ""
    stage: str = ""  # "preflight" (eth_call refused it, no gas) or "send"


@dataclass
class LossCapReport:
    block: int
    discovered: int
    capped: int  # accounts with a floor set and positions open
    below: int  # of those, below the floor at the cached marks
    outcomes: list[TriggerOutcome] = field(default_factory=list)


@dataclass
class LossCapConfig:
    near: Decimal = Decimal("0.02")  # preflight accounts within this share above the floor
    start_block: int = 0  # first block to scan when there is no state yet
    log_chunk: int = 5_000  # blocks per eth_getLogs
    rpc_max_calls: int = 1_000
    rpc_max_bytes: int = 1_048_576
    rpc_parallel: int = 2


def plan(reads: Sequence[CapRead], near: Decimal) -> list[CapRead]:
    """Accounts worth an eth_call of `trigger_loss_cap`: a floor, positions, not in
    liquidation, a settlement balance to pay the fee from (the contract pays
    min(loss_cap_fee, balance): an account holding only other collateral is a bait that
    earns $0 for the gas, review finding K1), equity at the cached marks below
    floor x (1 + near)."""
    out = []
    for r in reads:
        if r.floor == 0 or not r.has_positions or r.in_liquidation or r.settlement <= 0:
            continue
        if Decimal(r.equity) < Decimal(r.floor) * (1 + near):
            out.append(r)
    return out


class LossCapKeeper(TickingKeeper[TriggerOutcome, LossCapReport]):
    """One signer triggering loss caps on one deployment; the fee goes to the signer."""

    interval = 5.0

    def __init__(
        self,
        protocol: Protocol,
        signer: Any,
        config: LossCapConfig | None = None,
        state_path: Path | None = None,
        name: str = "loss-caps",
    ) -> None:
        from ape import chain

        self.p = protocol
        self.ch = protocol.clearinghouse
        self.ops = protocol.ops
        self.signer = signer
        self.cfg = config or LossCapConfig()
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.state = KeeperState.load(
            state_path, chain.chain_id, str(self.ch.address), self.cfg.start_block
        )
        self.history: list[TriggerOutcome] = []

    def discover(self, head: int) -> int:
        """Scan `LossCapSet` logs up to `head`; returns how many accounts were new."""
        start = self.state.cursor + 1
        if start > head:
            return 0
        new = 0
        for x in _logs(self.p, [LOSS_CAP_SET], start, head, self.cfg.log_chunk):
            a = _topic_int(x["topics"][1])
            if a not in self.state.accounts:
                self.state.accounts.add(a)
                new += 1
        self.state.cursor = head
        if new:
            self.log.info("discovered %d capped account(s) in blocks %d..%d", new, start, head)
        return new

    def read(self, accounts: Sequence[int]) -> list[CapRead]:
        """Floor, header, equity and settlement balance of each account (one batch at the
        latest block)."""
        if not accounts:
            return []
        ch = self.ch
        calls: list[tuple[Any, tuple[Any, ...]]] = []
        for a in accounts:
            calls += [
                (ch.loss_cap, (a,)),
                (ch.account_header, (a,)),
                (ch.account_margin, (a,)),
                (ch.balance_of, (a, 0)),
            ]
        limits = BatchLimits(self.cfg.rpc_max_calls, self.cfg.rpc_max_bytes, self.cfg.rpc_parallel)
        out = batch_call(calls, limits)
        reads = []
        for i, a in enumerate(accounts):
            floor, header, margin, settlement = out[4 * i : 4 * i + 4]
            equity = margin[0] if isinstance(margin, list | tuple) else margin.equity
            reads.append(CapRead(a, int(floor), int(header), int(equity), int(settlement)))
        return reads

    def tick(self) -> LossCapReport:
        """Observe, plan, execute, save. Never raises for a refused transaction."""
        from ape import chain

        head = int(chain.blocks.head.number)
        discovered = self.discover(head)
        reads = self.read(sorted(self.state.accounts))
        capped = [r for r in reads if r.floor and r.has_positions]
        report = LossCapReport(
            block=head,
            discovered=discovered,
            capped=len(capped),
            below=sum(1 for r in capped if r.below),
        )
        for r in plan(reads, self.cfg.near):
            report.outcomes.append(self.trigger(r))
        self.state.save()
        return report

    def trigger(self, r: CapRead) -> TriggerOutcome:
        """Preflight `trigger_loss_cap` as an eth_call, then send it."""
        from ape.exceptions import ApeException

        label = f"trigger {r.account:#x}"
        why = f"equity ${usd(r.equity)} vs floor ${usd(r.floor)} at the cached marks"
        method = self.ops.trigger_loss_cap
        reason = preflight(method, (r.account,), self.signer.address)
        if reason is not None:
            self.log.info("skip %s: %s (%s)", label, reason, why)
            return self._done(
                TriggerOutcome(r.account, False, why, error=reason, stage="preflight")
            )
        try:
            tx = gas.send(label, method, r.account, sender=self.signer)
        except (ApeException, gas.OutOfGas) as e:
            msg = str(getattr(e, "revert_message", None) or e).strip().splitlines()[0]
            self.log.warning("%s reverted: %s (another keeper was faster?)", label, msg)
            return self._done(TriggerOutcome(r.account, False, why, error=msg, stage="send"))
        fees = [int(x.fee) for x in tx.decode_logs(self.ops.LossCapTriggered)]
        out = TriggerOutcome(
            r.account, True, why, str(tx.txn_hash), int(tx.gas_used), fee=sum(fees)
        )
        self.state.count("trigger")
        self.log.info("%s ok: %s; fee $%s, gas %d", label, why, usd(out.fee), out.gas_used)
        return self._done(out)
