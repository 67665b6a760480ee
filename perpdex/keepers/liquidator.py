"""The liquidation keeper: finds unhealthy accounts and drives their auctions to the end.

One tick = observe -> plan -> execute:

    observe  scan `AccountOpened` / `Fill` / `OrdersMatched` logs since the cursor for new
             accounts, then
             read every known account (keepers/scan.py: chunked JSON-RPC batches, one
             block): its margin at the cached marks, and for accounts in or near
             liquidation its margin at the oracle's time-weighted prices and its auction
    plan     pure function of what was read (see `plan`):
               start     not in liquidation, unhealthy at the cached marks (or within
                         `near` of it) and at the time-weighted price
               take      auction running, profit = discount x lot notional - gas
                         (- the hedge's taker fee) above `min_profit`
               backstop  auction past its deadline (fixed when the tranche opened; the
                         vault takes the rest)
               redo      lot value moved more than `cusp` since its clock started
               step      tranche sold, cooldown over (next tranche, or the end)
               finish    in liquidation and healthy again (owner topped up, prices back)
               hedge     close what a take left in the keeper's own account
    execute  each action is first run as an eth_call (so the oracle guard, races and the
             taker's margin are checked against fresh prices without paying gas), then
             sent. A revert (another keeper won the race, prices moved) is logged and the
             tick goes on; nothing is retried blindly: the next tick re-reads the chain.

Everything but the account list is re-read from the chain every tick, so a keeper is
idempotent and can be stopped and restarted at any time; `KeeperState` keeps the account
list and the log cursor in a JSON file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils import keccak

from perpdex.constants import WAD
from perpdex.errors import PerpdexError
from perpdex.keepers.loop import run_ticks
from perpdex.keepers.scan import (
    AccountScanner,
    BatchLimits,
    RpcBatcher,
    ape_transport,
    batch_call,
)
from perpdex.keepers.state import KeeperState
from perpdex.sdk import gas
from perpdex.sdk import math as pm  # the auction's rules: perpdex/sdk/math/liquidation_auction.py

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

__all__ = [
    "AccountRead",
    "Action",
    "Liquidator",
    "LiquidatorConfig",
    "Outcome",
    "TickReport",
    "accounts_opened",
    "conservation_gap",
    "plan",
]

log = logging.getLogger("perpdex.keepers.liquidator")

ACCOUNT_OPENED = "0x" + keccak(text="AccountOpened(uint256,address,string,bool)").hex()
FILL = (
    "0x"
    + keccak(text="Fill(uint256,uint256,uint256,int256,uint256,uint256,int256,int256,int256)").hex()
)
# a matched pair of signed orders (ClearinghouseOrders.settle): both sides in one event,
# maker in topic 1 and taker in topic 2 (no `Fill` per side)
ORDERS_MATCHED = (
    "0x"
    + keccak(
        text="OrdersMatched(uint256,uint256,bytes32,bytes32,uint256,int256,uint256,uint256,"
        "uint256,int256,int256,int256,int256,int256,int256)"
    ).hex()
)
POOL = 0


# --- chain reads shared with the tests and the crash replay ---------------------------------


def _web3(p: Protocol) -> Any:
    from ape import chain

    return chain.provider.web3


def _logs(p: Protocol, topics: list[Any], start: int, stop: int, chunk: int) -> list[Any]:
    w3 = _web3(p)
    out: list[Any] = []
    lo = max(start, 0)
    while lo <= stop:
        hi = min(lo + chunk - 1, stop)
        out += w3.eth.get_logs(
            {
                "address": p.clearinghouse.address,
                "fromBlock": lo,
                "toBlock": hi,
                "topics": topics,
            }
        )
        lo = hi + 1
    return out


def _topic_int(t: Any) -> int:
    return int.from_bytes(bytes(t), "big")


def fill_accounts(x: Any) -> list[int]:
    """The two accounts a `Fill` (account, counterparty: POOL for the vault) or an
    `OrdersMatched` (maker, taker) log names."""
    t = x["topics"]
    if _topic_int(t[0]) == int(FILL, 16):
        return [_topic_int(t[1]), _topic_int(t[3])]
    return [_topic_int(t[1]), _topic_int(t[2])]


def accounts_opened(p: Protocol, start: int, stop: int, chunk: int = 5_000) -> list[int]:
    """Ids of the accounts opened in blocks [start, stop], in order."""
    return [_topic_int(x["topics"][1]) for x in _logs(p, [ACCOUNT_OPENED], start, stop, chunk)]


def conservation_gap(p: Protocol, accounts: Iterable[int]) -> int:
    """Settlement tokens held by the Clearinghouse (in USD WAD) minus everything owed from
    them: every account's settlement balance (negative ones count negative), the pool's
    cash, the insurance fund and the protocol fees. Never below zero; equal up to dust."""
    from ape import chain

    ch = p.clearinghouse
    scale = 10 ** (18 - p.system.settlement_decimals)
    calls: list[tuple[Any, tuple[Any, ...]]] = [
        (p.token.balanceOf, (str(ch.address),)),
        (ch.pool_cash, ()),
        (ch.insurance_fund, ()),
        (ch.protocol_fees, ()),
    ]
    calls += [(ch.balance_of, (a, 0)) for a in accounts]
    # one batch at one block (the head), so no transaction lands between the reads
    held, *owed = (int(x) for x in batch_call(calls, block=int(chain.blocks.head.number)))
    return held * scale - sum(owed)


# --- what a tick sees, plans and does ---------------------------------------------------------


@dataclass(frozen=True)
class AccountRead:
    """One account as one batch read saw it (USD WAD, WAD fractions, seconds)."""

    account: int
    equity: int
    maintenance: int
    notional: int
    twap_equity: int
    twap_maintenance: int
    active: bool = False
    started: int = 0
    lot: int = 0  # WAD fraction of the book still for sale
    kick: int = 0  # lot notional when its clock started
    step: int = 0
    discount: int = 0  # the schedule's discount now, before the maintenance scaling
    deadline: int = 0  # fixed when the tranche opened (redo does not move it)
    # False: the scan's cheap first phase only (not in liquidation, not near it); the
    # time-weighted figures then repeat the cached-mark ones (keepers/scan.py)
    detailed: bool = True

    @property
    def has_positions(self) -> bool:
        return self.maintenance != 0

    @property
    def healthy(self) -> bool:
        return pm.liq_healthy(self.equity, self.maintenance)

    @property
    def health(self) -> Decimal | None:
        return Decimal(self.equity) / self.maintenance if self.maintenance else None

    @property
    def lot_notional(self) -> int:
        return pm.liq_lot_value(self.lot, self.notional)


@dataclass(frozen=True)
class Action:
    kind: str  # start | take | backstop | redo | step | finish | hedge
    account: int
    fraction: int = 0  # take: WAD share of the lot
    market: int = 0  # hedge: market to flatten
    size: int = 0  # hedge: signed size to trade
    expected_profit: Decimal = Decimal(0)  # take: USD
    why: str = ""


@dataclass
class Outcome:
    action: Action
    ok: bool
    tx_hash: str = ""
    gas_used: int = 0
    error: str = ""
    stage: str = ""  # "preflight" (eth_call refused it, no gas) or "send"
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class TickReport:
    block: int
    timestamp: int
    discovered: int
    watched: int
    unhealthy: int
    in_liquidation: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def done(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


@dataclass
class LiquidatorConfig:
    """Keeper settings (docs/operations.md explains each)."""

    keeper_account: int  # the sub-account rewards go to and takes land in
    min_profit: Decimal = Decimal(1)  # USD after gas, for a take
    max_take: Decimal = Decimal(250_000)  # USD notional per take (bounds inventory risk)
    take_gas: int = 400_000  # gas assumed for a take (start/step/backstop are ~200-300k)
    eth_usd: Decimal | None = None  # None: the ETH market's mark, else 3,000
    gas_price: int | None = None  # wei; None: the node's eth_gasPrice
    near: Decimal = Decimal("0.05")  # preflight `start` for health below 1 + near
    hedge: bool = False  # close taken positions against the vault right after a take
    hedge_slippage: Decimal = Decimal("0.02")
    backstop: bool = True  # call backstop on expired auctions (public service)
    start_block: int = 0  # first block to scan when there is no state yet
    log_chunk: int = 5_000  # blocks per eth_getLogs
    # JSON-RPC batches of the account scan (keepers/scan.py): calls and request bytes per
    # batch (hosted providers refuse more than ~1,000 calls), batches in flight at once
    rpc_max_calls: int = 1_000
    rpc_max_bytes: int = 1_048_576
    rpc_parallel: int = 2


def plan(
    reads: Sequence[AccountRead],
    params: Any,
    now: int,
    cfg: LiquidatorConfig,
    gas_cost_usd: Decimal,
    taker_fee: Decimal = Decimal(0),
    own_positions: Sequence[tuple[int, int]] = (),
) -> list[Action]:
    """The actions worth sending now, from one batch read (no chain access).

    `params` is the auction's `params()`; `now` the timestamp the next block will have at
    least; `gas_cost_usd` the cost of one take; `own_positions` (market, size) of the
    keeper's account, flattened when hedging.
    """
    actions: list[Action] = []
    for r in reads:
        if r.account == cfg.keeper_account:
            continue
        if not r.active:
            if not r.has_positions:
                # a settlement debt its other collateral no longer covers: `start`
                # settles it at once (the pool buys the collateral)
                if r.equity < 0 and r.twap_equity < 0:
                    actions.append(Action("start", r.account, why="uncovered collateral debt"))
                continue
            near = Decimal(r.equity) < Decimal(r.maintenance) * (1 + cfg.near)
            twap_bad = r.twap_equity < r.twap_maintenance
            if near and twap_bad:
                actions.append(Action("start", r.account, why=_why(r)))
            continue
        if r.lot == 0:
            if now >= r.started + int(params.cooldown):
                actions.append(Action("step", r.account, why="tranche sold, cooldown over"))
            elif r.healthy:
                actions.append(Action("finish", r.account, why="healthy again"))
            continue
        if r.healthy:
            actions.append(Action("finish", r.account, why="healthy again during the auction"))
            continue
        deadline = r.deadline or r.started + int(params.duration)
        if now > deadline:
            if cfg.backstop:
                actions.append(Action("backstop", r.account, why="auction expired"))
            continue
        if pm.liq_moved(r.kick, r.lot_notional, int(params.cusp)):
            actions.append(Action("redo", r.account, why="lot value moved past the cusp"))
            continue
        lot_usd = Decimal(r.lot_notional) / WAD
        if lot_usd <= 0:
            continue
        fraction = WAD if lot_usd <= cfg.max_take else int(cfg.max_take / lot_usd * WAD)
        part_usd = lot_usd * fraction / WAD
        # what a take gets: the schedule's discount scaled to the maintenance budget
        # (LiquidationAuction._scale); a take is also cut to what restores target health,
        # so this is an upper bound (the eth_call in `execute` has the real outcome)
        scale = pm.liq_scale(
            r.maintenance, r.notional, int(params.max_discount), int(params.penalty)
        )
        discount = Decimal(pm.liq_scaled(r.discount, scale)) / WAD
        profit = part_usd * discount - gas_cost_usd - (part_usd * taker_fee if cfg.hedge else 0)
        if profit > cfg.min_profit:
            actions.append(
                Action(
                    "take",
                    r.account,
                    fraction=max(fraction, 1),
                    expected_profit=profit.quantize(Decimal("0.01")),
                    why=f"discount {discount:.2%} on ${part_usd:,.0f}",
                )
            )
    if cfg.hedge:
        for market, size in own_positions:
            if size != 0:
                actions.append(
                    Action("hedge", cfg.keeper_account, market=market, size=-size, why="flatten")
                )
    return actions


def _why(r: AccountRead) -> str:
    h = f"{r.health:.3f}" if r.health is not None else "-"
    th = f"{Decimal(r.twap_equity) / r.twap_maintenance:.3f}" if r.twap_maintenance else "-"
    return f"health {h} (time-weighted {th})"


# --- the keeper --------------------------------------------------------------------------------


class Liquidator:
    """One keeper identity (signer + keeper sub-account) on one deployment."""

    def __init__(
        self,
        protocol: Protocol,
        signer: Any,
        config: LiquidatorConfig,
        state_path: Path | None = None,
        name: str = "keeper",
    ) -> None:
        from ape import chain

        if protocol.auction is None:
            raise PerpdexError(
                "this deployment has no LiquidationAuction; redeploy with `ape run deploy`"
            )
        self.p = protocol
        self.ch = protocol.clearinghouse
        self.auction = protocol.auction
        self.signer = signer
        self.cfg = config
        self.name = name
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.state = KeeperState.load(
            state_path, chain.chain_id, str(self.ch.address), config.start_block
        )
        self.history: list[Outcome] = []
        self._params = self.auction.params()
        self._eth_market = self._find_market("ETH")
        self._taker_fee = Decimal(0)
        self._scanner: AccountScanner | None = None
        self._check_keeper_account()

    # --- set-up --------------------------------------------------------------------------

    def _find_market(self, symbol: str) -> int | None:
        try:
            return self.p.market_id(symbol)
        except Exception:  # any lookup failure: no such market
            return None

    def _check_keeper_account(self) -> None:
        acct = self.cfg.keeper_account
        hdr = int(self.ch.account_header(acct))
        if hdr & 1 == 0:
            raise PerpdexError(
                f"keeper account {acct:#x} does not exist; open one and deposit collateral "
                "(`perpdex open-account keeper` then `perpdex deposit AMOUNT --sub N`)"
            )
        owner = int(acct >> 96)
        if owner != int(self.signer.address, 16) and not self.ch.is_operator(
            acct, self.signer.address
        ):
            raise PerpdexError(
                f"{self.signer.address} neither owns nor operates keeper account {acct:#x}; "
                "pick one of the signer's sub-accounts (--keeper-sub) or have its owner "
                "call set_operator"
            )

    # --- observe ---------------------------------------------------------------------------

    def discover(self, head: int) -> int:
        """Scan logs up to `head` for accounts; returns how many were new."""
        start = self.state.cursor + 1
        if start > head:
            return 0
        logs = _logs(
            self.p, [[ACCOUNT_OPENED, FILL, ORDERS_MATCHED]], start, head, self.cfg.log_chunk
        )
        new = 0
        for x in logs:
            opened = _topic_int(x["topics"][0]) == int(ACCOUNT_OPENED, 16)
            ids = [_topic_int(x["topics"][1])] if opened else fill_accounts(x)
            for a in ids:
                if a != POOL and a not in self.state.accounts:
                    self.state.accounts.add(a)
                    new += 1
        self.state.cursor = head
        if new:
            self.log.info("discovered %d account(s) in blocks %d..%d", new, start, head)
        return new

    @property
    def scanner(self) -> AccountScanner:
        """The two-phase account scan over chunked JSON-RPC batches (keepers/scan.py)."""
        if self._scanner is None:
            limits = BatchLimits(
                self.cfg.rpc_max_calls, self.cfg.rpc_max_bytes, self.cfg.rpc_parallel
            )
            batcher = RpcBatcher(ape_transport(), limits)
            self._scanner = AccountScanner(
                str(self.ch.address), str(self.auction.address), batcher, self.cfg.near
            )
        return self._scanner

    def read(self, accounts: Sequence[int], block: int | str = "latest") -> list[AccountRead]:
        """Every account at `block`: margin at the cached marks, and for those in or near
        liquidation the time-weighted margin and the auction (`AccountRead.detailed`).
        An account whose read failed is left out (logged at WARNING)."""
        return self.scanner.scan(accounts, block)

    def gas_cost_usd(self) -> Decimal:
        from ape import chain

        price = self.cfg.gas_price
        if price is None:
            price = int(chain.provider.gas_price)
        eth = self.cfg.eth_usd
        if eth is None:
            eth = (
                Decimal(int(self.ch.mark(self._eth_market)[0])) / WAD
                if self._eth_market is not None
                else Decimal(3000)
            )
        return Decimal(self.cfg.take_gas * price) / WAD * eth

    def own_positions(self) -> list[tuple[int, int]]:
        n = int(self.ch.market_count())
        acct = self.cfg.keeper_account
        got = batch_call([(self.ch.position, (acct, m)) for m in range(n)])
        return [(m, int(pos[0])) for m, pos in enumerate(got) if int(pos[0])]

    # --- one tick --------------------------------------------------------------------------

    def observe(self) -> tuple[int, int, int, list[AccountRead]]:
        from ape import chain

        head = chain.blocks.head
        discovered = self.discover(int(head.number))
        accounts = sorted(self.state.accounts)
        reads = self.read(accounts, int(head.number)) if accounts else []
        return int(head.number), int(head.timestamp), discovered, reads

    def plan(self, reads: Sequence[AccountRead], now: int) -> list[Action]:
        if self.cfg.hedge and not self._taker_fee:
            self._taker_fee = Decimal(0)
            for m in range(int(self.ch.market_count())):
                fee = Decimal(int(self.ch.market_params(m).taker_fee)) / WAD
                self._taker_fee = max(self._taker_fee, fee)
        own = self.own_positions() if self.cfg.hedge else []
        return plan(
            reads, self._params, now + 1, self.cfg, self.gas_cost_usd(), self._taker_fee, own
        )

    def tick(self) -> TickReport:
        """Observe, plan, execute, save. Never raises for a refused transaction."""
        block, ts, discovered, reads = self.observe()
        actions = self.plan(reads, ts)
        report = TickReport(
            block=block,
            timestamp=ts,
            discovered=discovered,
            watched=sum(1 for r in reads if r.has_positions),
            unhealthy=sum(1 for r in reads if r.has_positions and not r.healthy),
            in_liquidation=sum(1 for r in reads if r.active),
        )
        for a in actions:
            report.outcomes.append(self.execute(a))
        self.state.save()
        return report

    def run(
        self,
        interval: float = 2.0,
        ticks: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> int:
        """Tick every `interval` seconds until `stop` is set or `ticks` ran; a tick that
        fails outside a transaction (node unreachable...) is logged and retried."""
        return run_ticks(self.tick, self.state.save, self.log, interval, ticks, stop, on_tick)

    # --- execute ---------------------------------------------------------------------------

    def _call(self, action: Action) -> tuple[Any, tuple[Any, ...]]:
        k, a, ka = action.kind, action.account, self.cfg.keeper_account
        if k == "start":
            return self.auction.start, (a, ka)
        if k == "take":
            return self.auction.take, (a, ka, action.fraction)
        if k == "backstop":
            return self.auction.backstop, (a,)
        if k == "redo":
            return self.auction.redo, (a,)
        if k == "step":
            return self.auction.step, (a, ka)
        if k == "finish":
            return self.auction.finish, (a,)
        if k == "hedge":
            mark = Decimal(int(self.ch.mark(action.market)[0]))
            slip = self.cfg.hedge_slippage
            bound = int(mark * (1 + slip)) if action.size > 0 else int(mark * (1 - slip))
            return self.ch.trade, (ka, action.market, action.size, bound)
        raise ValueError(f"unknown action {k!r}")

    def execute(self, action: Action) -> Outcome:
        """Preflight as eth_call, then send; a revert at either stage is an Outcome."""
        from ape.exceptions import ApeException

        method, args = self._call(action)
        label = f"{action.kind} {action.account:#x}"
        reason = preflight(method, args, self.signer.address)
        if reason is not None:
            if action.kind == "take" and "below initial margin" in reason and action.fraction > 1:
                smaller = Action(**{**action.__dict__, "fraction": action.fraction // 2})
                self.log.info("%s: keeper margin too small for the lot, trying half", label)
                return self.execute(smaller)
            self.log.info("skip %s: %s (%s)", label, reason, action.why)
            out = Outcome(action, False, error=reason, stage="preflight")
            self.history.append(out)
            return out
        try:
            tx = gas.send(label, method, *args, sender=self.signer)
        except (ApeException, gas.OutOfGas) as e:
            msg = str(getattr(e, "revert_message", None) or e).strip().splitlines()[0]
            self.log.warning("%s reverted: %s (another keeper was faster?)", label, msg)
            out = Outcome(action, False, error=msg, stage="send")
            self.history.append(out)
            return out
        out = Outcome(
            action,
            True,
            tx_hash=str(tx.txn_hash),
            gas_used=int(tx.gas_used),
            events=self._events(tx),
        )
        self.state.count(action.kind)
        self.log.info(
            "%s ok: %s gas %d%s",
            label,
            action.why,
            out.gas_used,
            f", expected profit ${action.expected_profit}" if action.kind == "take" else "",
        )
        self.history.append(out)
        return out

    def _events(self, tx: Any) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for name in ("TrancheOpened", "AuctionTake", "AuctionBackstop", "AuctionReset"):
            logs = tx.decode_logs(getattr(self.auction, name))
            if logs:
                out[name] = [dict(x.event_arguments) for x in logs]
        finished = tx.decode_logs(self.auction.LiquidationFinished)
        if finished:
            out["LiquidationFinished"] = [dict(x.event_arguments) for x in finished]
        for name in ("LiquidationTransfer", "BadDebtSettled"):
            logs = tx.decode_logs(getattr(self.p.ops, name))
            if logs:
                out[name] = [dict(x.event_arguments) for x in logs]
        return out


# --- JSON-RPC helpers ----------------------------------------------------------------------


def preflight(method: Any, args: tuple[Any, ...], sender: str) -> str | None:
    """Run a transaction as eth_call from `sender`; None if it would succeed, else the
    revert reason."""
    from ape import chain
    from web3.exceptions import ContractLogicError

    w3 = chain.provider.web3
    call = {"from": sender, "to": method.contract.address, "data": method.encode_input(*args)}
    try:
        w3.eth.call(call)
    except ContractLogicError as e:
        text = str(getattr(e, "message", None) or e).strip()
        return text.removeprefix("execution reverted").removeprefix(":").strip() or "reverted"
    return None
