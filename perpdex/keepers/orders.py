"""The conditional-order keeper: executes signed stop and take-profit orders once triggered.

A trader signs conditional orders (`perpdex orders stop|take-profit`, perpdex/sdk/orders.py)
into a JSON-lines file (perpdex/sdk/order_store.py); the chain knows nothing of them until
someone calls `execute_order` (contracts/modules/conditional.vy) after the oracle price
has crossed a trigger. This bot is that someone, and earns each order's keeper fee.

One tick = observe -> plan -> execute, like the other keepers:

    observe  re-read the orders file or directory (traders append while the keeper runs),
             keep this deployment's orders, drop those the state file knows finished and
             those expired at the head block's time; read the oracle price of every
             market they trade (`latest`, one JSON-RPC batch)
    plan     candidates: the price has quorum and has crossed the trigger
             (`orders.is_triggered`, the contract's own test) and the order's keeper fee
             is at least `min_fee`
    execute  each candidate's `execute_order` is first run as an eth_call: a refusal is
             classified (`orders.order_state`): final (done, cancelled, expired, invalid)
             is remembered in the state file and never tried again; any other (no quorum,
             nothing to reduce, the fill beyond the order's limit, margin, caps) is logged
             and retried next tick. Then it is sent with `perpdex.sdk.gas.send`; a revert
             at send (another keeper was faster) is logged and classified the same way.

Idempotent and restartable: the chain consumes an executed order's nonce, so it can never
fire twice, whoever runs how many keepers; the state file (`KeeperState.done`) only saves
the eth_calls of finished orders after a restart. A tick never raises for a refused or
reverted transaction, nor for a bad line in the orders file (skipped, logged once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.constants import WAD
from perpdex.keepers.liquidator import preflight
from perpdex.keepers.loop import TickingKeeper, usd
from perpdex.keepers.scan import BatchLimits, batch_call
from perpdex.keepers.state import KeeperState
from perpdex.sdk import gas
from perpdex.sdk import order_store as store
from perpdex.sdk import orders as so

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = ["ExecOutcome", "OrdersConfig", "OrdersKeeper", "OrdersReport"]

log = logging.getLogger("perpdex.keepers.orders")


@dataclass
class ExecOutcome:
    order: str  # digest, 0x hex
    account: int
    market: int
    kind: str  # stop / take-profit
    ok: bool
    why: str  # what the keeper saw
    tx_hash: str = ""
    gas_used: int = 0
    fee: int = 0  # USD WAD earned (ConditionalOrderExecuted.keeper_fee)
    price: int = 0  # fill price, WAD
    error: str = ""
    stage: str = ""  # "preflight" (eth_call refused it, no gas) or "send"
    state: str = ""  # orders.order_state of the refusal


@dataclass
class OrdersReport:
    block: int
    loaded: int  # this deployment's orders in the file(s)
    live: int  # of those, not finished and not expired
    triggered: int  # of those, past their trigger at a price with quorum
    outcomes: list[ExecOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # lines skipped this tick


@dataclass
class OrdersConfig:
    orders: Path = store.DEFAULT_DIR  # a JSON-lines file or a directory of them
    min_fee: int = 0  # USD WAD: leave orders paying less to others
    rpc_max_calls: int = 1_000
    rpc_max_bytes: int = 1_048_576
    rpc_parallel: int = 2


class OrdersKeeper(TickingKeeper[ExecOutcome, OrdersReport]):
    """One signer executing triggered conditional orders on one deployment."""

    interval = 2.0

    def __init__(
        self,
        protocol: Protocol,
        signer: Any,
        config: OrdersConfig | None = None,
        state_path: Path | None = None,
        name: str = "orders",
    ) -> None:
        from ape import chain

        self.p = protocol
        if protocol.orders is None:
            raise ValueError("the deployment has no ClearinghouseOrders handle")
        self.orders = protocol.orders
        self.signer = signer
        self.cfg = config or OrdersConfig()
        self.chain_id = int(chain.chain_id)
        self.clearinghouse = str(protocol.clearinghouse.address)
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.state = KeeperState.load(state_path, self.chain_id, self.clearinghouse)
        self.history: list[ExecOutcome] = []
        self._reported: set[str] = set()  # file problems already logged

    # --- observe ----------------------------------------------------------------------------

    def load(self) -> tuple[list[store.StoredOrder], list[str]]:
        """This deployment's orders in the configured file or directory."""
        orders, problems = store.load(self.cfg.orders, self.chain_id, self.clearinghouse)
        for msg in problems:
            if msg not in self._reported:
                self._reported.add(msg)
                self.log.warning("orders file: %s", msg)
        return orders, problems

    def prices(self, markets: set[int]) -> dict[int, tuple[int, bool]]:
        """(oracle price WAD, quorum) of each market, one batch at the head block; a market
        whose read fails is left out (retried next tick)."""
        ms = sorted(markets)
        limits = BatchLimits(self.cfg.rpc_max_calls, self.cfg.rpc_max_bytes, self.cfg.rpc_parallel)
        got = batch_call([(self.p.oracle.latest, (m,)) for m in ms], limits, strict=False)
        out = {}
        for m, r in zip(ms, got, strict=True):
            if r is not None:
                out[m] = (int(r[0]), not int(r[1]) & 1)
        return out

    def finish(self, stored: store.StoredOrder, state: str) -> None:
        self.state.done[stored.id] = state

    # --- the tick ---------------------------------------------------------------------------

    def tick(self) -> OrdersReport:
        """Observe, plan, execute, save. Never raises for a refused transaction."""
        from ape import chain

        head = chain.blocks.head
        now = int(head.timestamp)
        orders, problems = self.load()
        live = []
        for s in orders:
            if s.id in self.state.done:
                continue
            if s.order.expiry < now:
                self.finish(s, "expired")
                self.log.info("order %s expired; forgotten", s.id[:10])
                continue
            live.append(s)
        prices = self.prices({s.order.market for s in live}) if live else {}
        triggered = []
        for s in live:
            price, quorum = prices.get(s.order.market, (0, False))
            if quorum and so.is_triggered(s.order, price):
                triggered.append((s, price))
        report = OrdersReport(
            block=int(head.number),
            loaded=len(orders),
            live=len(live),
            triggered=len(triggered),
            problems=problems,
        )
        for s, price in triggered:
            if s.order.keeper_fee < self.cfg.min_fee:
                self.log.debug("skip %s: fee below --min-fee", s.id[:10])
                continue
            report.outcomes.append(self.execute(s, price))
        self.state.save()
        return report

    def execute(self, s: store.StoredOrder, price: int) -> ExecOutcome:
        """Preflight `execute_order` as an eth_call, then send it."""
        from ape.exceptions import ApeException

        o = s.order
        kind = so.kind(o)
        label = f"execute {kind} {s.id[:10]}"
        why = (
            f"{kind} {_amount(o.size)} {s.symbol or f'market {o.market}'} for account "
            f"{_short(o.account)}: price ${usd(price)} vs trigger ${usd(o.trigger_price)}"
        )
        out = ExecOutcome(s.id, o.account, o.market, kind, False, why)
        method = self.orders.execute_order
        try:
            args = so.execute_args(s.signed)
        except so.OrderError as e:
            return self._refused(s, out, f"malformed order: {e}", "preflight", "invalid")
        reason = preflight(method, args, self.signer.address)
        if reason is not None:
            return self._refused(s, out, reason, "preflight", so.order_state(reason))
        try:
            tx = gas.send(label, method, *args, sender=self.signer)
        except (ApeException, gas.OutOfGas) as e:
            msg = str(getattr(e, "revert_message", None) or e).strip().splitlines()[0]
            self.log.warning("%s reverted: %s (another keeper was faster?)", label, msg)
            return self._refused(s, out, msg, "send", so.order_state(msg))
        events = list(tx.decode_logs(self.orders.ConditionalOrderExecuted))
        out.ok, out.tx_hash, out.gas_used = True, str(tx.txn_hash), int(tx.gas_used)
        if events:
            out.fee, out.price = int(events[0].keeper_fee), int(events[0].price)
        self.finish(s, "done")
        self.state.count("execute")
        self.log.info(
            "%s ok: %s; filled at $%s, fee $%s, gas %d",
            label,
            why,
            usd(out.price),
            usd(out.fee),
            out.gas_used,
        )
        return self._done(out)

    def _refused(
        self, s: store.StoredOrder, out: ExecOutcome, reason: str, stage: str, state: str
    ) -> ExecOutcome:
        out.error, out.stage, out.state = reason, stage, state
        final = state in so.FINAL_STATES and reason not in so.RETRYABLE_INVALID
        if final:
            self.finish(s, state)
        self.log.info(
            "skip %s: %s (%s)%s", s.id[:10], reason, out.why, "; forgotten" if final else ""
        )
        return self._done(out)


def _amount(wad: int) -> str:
    return f"{Decimal(wad) / WAD:+f}".rstrip("0").rstrip(".")


def _short(account: int) -> str:
    full = f"{account:#066x}"
    return f"{full[:6]}…{full[-4:]}"
