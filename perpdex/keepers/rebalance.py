"""The rebalancer: keeps each managed strategy (a sub-account of one owner) inside the band
its rule sets (perpdex/keepers/rebalance_rules.py), topping it up from its reserve
sub-account or reducing it with one multi-leg reduce-only order.

The bot is an *operator* of every managed sub-account (strategies and reserves: the owner
runs `perpdex operator add BOT --sub N` for each) and signs with its own key: it may trade
them and move collateral between them (`transfer_collateral` by an operator of both),
never withdraw. One tick = observe -> decide -> act, per strategy:

    observe  the strategy's snapshot at the pending block (`Snapshot.load`), every mark
             re-read at the oracle (`math.strict_refresh`): equity, maintenance, notional,
             positions; its loss cap; what its reserve may send now (`withdrawable`)
    decide   `rebalance_rules.decide`, sizing a reduce through the SDK's mirror of
             `trade_multi` on that snapshot (`SnapshotModel`)
    act      the first plan the chain accepts: a top-up (`PerpdexClient.transfer`,
             preflighted as an eth_call) or a reduce (`quote_multi`: an order the quote
             says the chain refuses is never sent; then `trade_multi` with that quote).
             A refusal or a revert is an outcome, logged with its reason; the next plan is
             tried; the tick goes on.

Manual override, in the state file (`.keeper/rebalance-<network>.json`, the file
`perpdex dashboard` shows): `mode` is "active", "paused" (the bot observes and logs what
it would do, sends nothing) or "killed" (the owner revoked its operator rights on chain:
`kill`). `set_mode` changes it under a short lock of its own (`<state>.edit.lock`), so a
running bot (which holds `<state>.lock` for its whole run, like the other keepers) sees
it at its next tick and never writes it back.

Restart-safe: everything but the mode and the counters is re-read from the chain each
tick, so an action done is not repeated (the strategy is back in its band). Before a
transaction the bot records it as `pending` with its nonce; a restarted bot that finds the
transaction still in the node's pool waits for it instead of sending another.

Every action (and every refusal, pause, resume, kill) is one JSON line in
`<state>.actions.jsonl` next to the state file, and one log line with its reason.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.errors import PerpdexError
from perpdex.keepers.loop import run_ticks
from perpdex.keepers.rebalance_rules import (
    Decision,
    Leg,
    MarginAfter,
    Plan,
    Rule,
    Rules,
    StrategyState,
    decide,
)
from perpdex.keepers.state import StateMismatch
from perpdex.units import from_wad

if TYPE_CHECKING:
    from perpdex.sdk.client import PerpdexClient
    from perpdex.sdk.math.views import Snapshot

__all__ = [
    "MODES",
    "STATE_VERSION",
    "Outcome",
    "Rebalancer",
    "StrategyReport",
    "TickReport",
    "actions_path",
    "append_action",
    "default_state_path",
    "kill",
    "read_state",
    "set_mode",
]

log = logging.getLogger("perpdex.keepers.rebalance")

STATE_VERSION = 1
MODES = ("active", "paused", "killed")
#: The state file's fields, in the order written: `perpdex dashboard` shows the first 12.
FIELD_ORDER = (
    "mode",
    "mode_since",
    "bot",
    "owner",
    "rules",
    "block",
    "strategies",
    "last_action",
    "counts",
    "pending",
    "action_log",
    "network",
    "version",
    "chain_id",
    "clearinghouse",
    "accounts",
    "mode_by",
    "note",
    "last",
)
#: Fields only `set_mode` writes: a running bot keeps the file's.
CONTROL_FIELDS = ("mode", "mode_since", "mode_by", "note")


# --- the state file -------------------------------------------------------------------------


def default_state_path(network: str) -> Path:
    """`.keeper/rebalance-<network>.json`: where the bot writes and `perpdex dashboard`
    reads (`<network>`: the deployment manifest's network key, e.g. local)."""
    return Path(".keeper") / f"rebalance-{network}.json"


def actions_path(state: Path) -> Path:
    """The JSON-lines action log next to a state file: rebalance-local.actions.jsonl."""
    return state.with_name(f"{state.stem}.actions.jsonl")


@contextmanager
def _edit_lock(state: Path) -> Iterator[None]:
    """A short exclusive lock for one read-modify-write of the state file."""
    lock = state.with_name(state.name + ".edit.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_state(path: Path) -> dict[str, Any]:
    """The state file's fields ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PerpdexError(
            f"cannot read the rebalancer state {path} ({e}); fix or delete it (the bot "
            "re-reads everything but the pause/kill mode from the chain)"
        ) from e
    if not isinstance(data, dict):
        raise PerpdexError(f"{path} is not a rebalancer state file (not a JSON object)")
    return data


def _ordered(data: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: data[k] for k in FIELD_ORDER if k in data}
    out.update({k: v for k, v in data.items() if k not in out})
    return out


def _write_state(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically (temporary file + rename): a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_ordered(data), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append_action(state: Path, record: Mapping[str, Any]) -> None:
    """One line of the action log (flushed to disk before returning)."""
    path = actions_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": _now_iso(), **record}, default=str)
    with path.open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def set_mode(path: Path, mode: str, by: str, note: str = "", **extra: Any) -> dict[str, Any]:
    """Switch the bot to `mode` (active, paused, killed) in its state file, creating the
    file if the bot never ran; logged to the action log. Returns the new fields."""
    if mode not in MODES:
        raise PerpdexError(f"unknown rebalancer mode {mode!r}; use one of {', '.join(MODES)}")
    with _edit_lock(path):
        data = read_state(path)
        before = data.get("mode", "active")
        data.update(mode=mode, mode_since=_now_iso(), mode_by=by, note=note, version=STATE_VERSION)
        data.setdefault("action_log", str(actions_path(path)))
        data.update(extra)
        _write_state(path, data)
    append_action(path, {"kind": by, "mode": mode, "was": before, "note": note, **extra})
    log.info("rebalancer %s: mode %s -> %s%s", by, before, mode, f" ({note})" if note else "")
    return data


# --- figures from the chain -------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotModel:
    """The figures after a reduce, by the SDK's mirror of `trade_multi` over the strategy's
    pending snapshot (`math.fill_multi` / `check_multi`), valued at marks re-read at the
    oracle; `refusal` is the chain's reason when it would refuse the order."""

    snap: Snapshot
    symbols: tuple[str, ...]

    def __call__(self, sizes: Mapping[str, Decimal]) -> MarginAfter:
        from perpdex.sdk import math as pm

        legs: list[tuple[int, int, int | None]] = []
        for symbol, size in sizes.items():
            m = self.symbols.index(symbol)
            delta = _wad(size) - self.snap.position(m).size
            if delta:
                legs.append((m, delta, None))
        if not legs:
            return _margin_after(self.snap)
        try:
            filled = pm.fill_multi(self.snap, legs)
        except pm.Revert as e:
            return MarginAfter(Decimal(0), Decimal(0), Decimal(0), refusal=str(e))
        refusal = None
        try:
            after = pm.check_multi(filled, self.snap.loss_cap).after
        except pm.Revert as e:
            refusal, after = str(e), filled.after
        out = _margin_after(after)
        return (
            out
            if refusal is None
            else MarginAfter(out.equity, out.maintenance, out.notional, refusal)
        )


def _wad(size: Decimal) -> int:
    from perpdex.units import to_wad

    return to_wad(size)


def _fresh(snap: Snapshot) -> Snapshot:
    """Every mark of the account re-read at the oracle (the cached ones where the oracle
    refuses a price now)."""
    from perpdex.sdk import math as pm

    try:
        return pm.strict_refresh(snap)
    except pm.Revert:
        return snap


def _margin_after(snap: Snapshot) -> MarginAfter:
    from perpdex.sdk import math as pm

    s = pm.scan(_fresh(snap))
    return MarginAfter(from_wad(s.equity), from_wad(s.maintenance), from_wad(s.notional))


# --- reports ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One attempted action."""

    strategy: str
    account: int
    kind: str  # "top-up" or "reduce"
    ok: bool
    why: str  # the breach(es)
    plan: str  # what was tried (e.g. "top-up $1,200.00")
    stage: str = ""  # "quote" / "refused" (nothing sent) or "reverted" (sent, gas paid)
    error: str = ""
    tx_hash: str = ""
    gas_used: int = 0
    block: int = 0
    health_after: Decimal | None = None

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "strategy": self.strategy,
            "account": f"{self.account:#x}",
            "ok": self.ok,
            "reason": self.why,
            "action": self.plan,
            "stage": self.stage or None,
            "error": self.error or None,
            "tx": self.tx_hash or None,
            "gas_used": self.gas_used or None,
            "block": self.block or None,
            "health_after": None if self.health_after is None else f"{self.health_after:.4f}",
        }


@dataclass
class StrategyReport:
    rule: Rule
    account: int
    state: StrategyState | None
    decision: Decision | None
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""  # the strategy could not be read

    def summary(self) -> str:
        if self.error:
            return f"unreadable: {self.error}"
        assert self.state is not None and self.decision is not None
        s, r = self.state, self.rule
        parts = [f"health {_fmt(s.health, 3)} (band {r.band.low}-{r.band.high})"]
        if r.max_leverage is not None:
            parts.append(f"leverage {_fmt(s.leverage, 2)}x (max {r.max_leverage})")
        if r.hedge is not None:
            parts.append(f"hedge {_fmt(s.hedge_ratio(r.hedge), 3)} ({r.hedge.ratio})")
        text = ", ".join(parts) + f": {self.decision.reason or 'ok'}"
        done = [o for o in self.outcomes if o.ok]
        if done:
            text += f" -> {done[-1].plan}"
        elif self.outcomes:
            text += f" -> {self.outcomes[-1].plan} refused"
        return text


def _fmt(value: Decimal | None, places: int) -> str:
    if value is None:
        return "-"
    return "inf" if not value.is_finite() else f"{value:.{places}f}"


@dataclass
class TickReport:
    block: int
    mode: str
    strategies: list[StrategyReport] = field(default_factory=list)
    waiting: str = ""  # a transaction of an earlier run still in flight

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for s in self.strategies for o in s.outcomes]


# --- the bot --------------------------------------------------------------------------------


class Rebalancer:
    """One bot (the `client`'s signer, an operator of the managed sub-accounts) keeping
    `rules` on one deployment. `state_path` None: an in-memory bot (no file, no override)."""

    def __init__(
        self,
        client: PerpdexClient,
        rules: Rules,
        state_path: Path | None = None,
        max_slippage: Decimal = Decimal("0.005"),
        name: str = "rebalance",
    ) -> None:
        if client.signer is None:
            raise PerpdexError("the rebalancer needs a signer (the bot's key: --account)")
        self.client = client
        self.rules = rules
        self.path = state_path
        self.max_slippage = max_slippage
        self.bot = str(client.signer.address)
        self.log = logging.LoggerAdapter(log, {"keeper": name})
        self.symbols = tuple(client.deployment.markets)
        self.ids = {r.name: client.account_id(rules.owner, r.sub) for r in rules.strategies}
        self.reserves = {
            r.name: client.account_id(rules.owner, r.reserve) for r in rules.strategies
        }
        chain_id = int(client.deployment.chain_id)
        ch = str(client.deployment.clearinghouse)
        self.data: dict[str, Any] = {}
        if state_path is not None:
            data = read_state(state_path)
            if "chain_id" in data and (
                int(data["chain_id"]) != chain_id
                or str(data.get("clearinghouse", "")).lower() != ch.lower()
            ):
                raise StateMismatch(
                    f"{state_path} was written for clearinghouse {data.get('clearinghouse')} "
                    f"on chain {data['chain_id']}, not {ch} on chain {chain_id}; pass another "
                    "--state file or delete this one (a restarted anvil needs a fresh state)"
                )
            if data.get("version", STATE_VERSION) != STATE_VERSION:
                raise PerpdexError(
                    f"{state_path} has state version {data.get('version')!r}, this bot writes "
                    f"{STATE_VERSION}; delete it"
                )
            self.data = data
        self.data.setdefault("mode", "active")
        self.data.update(
            bot=self.bot,
            owner=rules.owner,
            rules=str(rules.path) if rules.path else None,
            network=client.deployment.network,
            version=STATE_VERSION,
            chain_id=chain_id,
            clearinghouse=ch,
            accounts=[f"{client.account_id(rules.owner, i):#x}" for i in rules.managed_subs()],
        )
        self.data.setdefault("counts", {})
        self.data.setdefault("last", {})
        self.data.setdefault("pending", None)
        if state_path is not None:
            self.data["action_log"] = str(actions_path(state_path))
        self.history: list[Outcome] = []
        self._said: dict[str, str] = {}  # last blocked / paused line per strategy

    # --- state ------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return str(self.data.get("mode", "active"))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.data.get("counts", {}))

    def _sync_control(self) -> None:
        """Adopt the file's mode (a `pause`, `resume` or `kill` written meanwhile)."""
        if self.path is None:
            return
        with _edit_lock(self.path):
            on_disk = read_state(self.path)
        was = self.mode
        for k in CONTROL_FIELDS:
            if k in on_disk:
                self.data[k] = on_disk[k]
        if self.mode != was:
            self.log.info("mode %s -> %s (%s)", was, self.mode, self.data.get("mode_by", "file"))

    def save(self) -> None:
        """Write the state, keeping the mode fields the file holds now (atomic)."""
        if self.path is None:
            return
        with _edit_lock(self.path):
            on_disk = read_state(self.path)
            for k in CONTROL_FIELDS:
                if k in on_disk:
                    self.data[k] = on_disk[k]
            _write_state(self.path, self.data)

    def _record(self, record: Mapping[str, Any]) -> None:
        if self.path is not None:
            append_action(self.path, record)

    # --- one tick -------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Observe, decide, act (unless paused or killed), save. Never raises for a
        refused or reverted transaction."""
        self._sync_control()
        head = self.client._head()
        report = TickReport(block=head, mode=self.mode)
        report.waiting = self._in_flight()
        for rule in self.rules.strategies:
            report.strategies.append(self._strategy(rule, report))
        self.data["block"] = head
        self.data["strategies"] = {s.rule.name: s.summary() for s in report.strategies}
        self.save()
        return report

    def _strategy(self, rule: Rule, report: TickReport) -> StrategyReport:
        acct = self.ids[rule.name]
        try:
            state, snap = self.read(rule)
            decision = decide(rule, state, SnapshotModel(snap, self.symbols))
        except Exception as e:  # a node hiccup on one strategy must not stop the others
            msg = _one_line(e)
            self.log.error("%s: cannot read %s (%s)", rule.name, f"{acct:#x}", msg)
            return StrategyReport(rule, acct, None, None, error=msg)
        out = StrategyReport(rule, acct, state, decision)
        if not decision.breaches:
            self._said.pop(rule.name, None)
            return out
        if self.mode != "active":
            planned = decision.plans[0].describe() if decision.plans else "nothing possible"
            self._say_once(
                rule.name,
                f"{rule.name}: {self.mode}, no action; would {planned}: {decision.reason}",
                {
                    "kind": "skip",
                    "strategy": rule.name,
                    "mode": self.mode,
                    "reason": decision.reason,
                    "action": planned,
                },
            )
            return out
        if report.waiting:
            self._say_once(rule.name, f"{rule.name}: {report.waiting}; no new action", None)
            return out
        for plan in decision.plans:
            outcome = self.execute(rule, plan, decision)
            out.outcomes.append(outcome)
            if outcome.ok:
                self._said.pop(rule.name, None)
                break
        else:
            why = (
                "; ".join([*decision.blocked, *(f"{o.plan}: {o.error}" for o in out.outcomes)])
                or "no action possible"
            )
            self._say_once(
                rule.name,
                f"{rule.name}: {decision.reason}; no action possible ({why})",
                {
                    "kind": "blocked",
                    "strategy": rule.name,
                    "reason": decision.reason,
                    "detail": why,
                },
                level=logging.WARNING,
            )
        return out

    def _say_once(
        self, key: str, line: str, record: Mapping[str, Any] | None, level: int = logging.INFO
    ) -> None:
        """Log (and record) a standing condition once, not on every tick."""
        if self._said.get(key) == line:
            return
        self._said[key] = line
        self.log.log(level, "%s", line)
        if record is not None:
            self._record(record)

    def read(self, rule: Rule) -> tuple[StrategyState, Snapshot]:
        """The strategy's figures at the pending block, marks re-read at the oracle."""
        from perpdex.sdk import math as pm
        from perpdex.sdk.snapshot import Snapshot

        acct = self.ids[rule.name]
        snap = Snapshot.load(self.client, acct, "pending")
        fresh = _fresh(snap)
        s = pm.scan(fresh)
        legs = tuple(
            Leg(self.symbols[m], from_wad(p.size), from_wad(fresh.mark(m).price))
            for m, p in sorted(fresh.positions.items())
            if p.size != 0 and m < len(self.symbols)
        )
        available = self.client.withdrawable(self.reserves[rule.name])
        state = StrategyState(
            equity=from_wad(s.equity),
            maintenance=from_wad(s.maintenance),
            positions=legs,
            notional=from_wad(s.notional),
            loss_cap=from_wad(snap.loss_cap),
            in_liquidation=snap.in_liquidation,
            reserve_available=available,
        )
        return state, snap

    def execute(self, rule: Rule, plan: Plan, decision: Decision) -> Outcome:
        """Try one plan; every refusal or revert is returned, never raised."""
        acct = self.ids[rule.name]
        out = Outcome(rule.name, acct, plan.kind, False, decision.reason, plan.describe())
        nonce = self._nonce("latest")
        try:
            if plan.kind == "top-up":
                receipt = self._send(
                    rule,
                    plan,
                    nonce,
                    lambda: self.client.transfer(self.reserves[rule.name], acct, plan.amount),
                )
            else:
                legs: dict[str | int, Decimal | int | str] = {
                    sym: str(d) for sym, d in plan.legs.items()
                }
                q = self.client.quote_multi(acct, legs)
                if not q.accepted:
                    out.stage, out.error = "quote", str(q.refusal)
                    return self._done(out)
                fill = self._send(
                    rule,
                    plan,
                    nonce,
                    lambda: self.client.trade_multi(
                        acct, legs, quote=q, max_slippage=self.max_slippage
                    ),
                )
                receipt = fill
        except Exception as e:  # a refused or reverted transaction is an outcome
            self.data["pending"] = None
            if self._nonce("latest") > nonce:
                out.stage = "reverted"  # sent and mined: the gas is paid
            else:
                out.stage = "quote" if _is_quote_error(e) else "refused"
            out.error = _reason(e)
            return self._done(out)
        out.ok = True
        out.tx_hash = str(getattr(receipt, "txn_hash", None) or getattr(receipt, "tx_hash", ""))
        out.block = int(getattr(receipt, "block_number", 0) or 0)
        out.gas_used = self._gas_used(out.tx_hash, receipt)
        try:
            after, _snap = self.read(rule)
            out.health_after = after.health
        except Exception:  # the figure is for the log only
            out.health_after = None
        counts = self.data.setdefault("counts", {})
        counts[plan.kind] = int(counts.get(plan.kind, 0)) + 1
        self.data["last"][rule.name] = {
            "kind": plan.kind,
            "block": out.block,
            "tx": out.tx_hash,
            "at": _now_iso(),
        }
        return self._done(out)

    def _send(self, rule: Rule, plan: Plan, nonce: int, send: Callable[[], Any]) -> Any:
        """Record the transaction as pending (with the bot's nonce), send it, clear it."""
        self.data["pending"] = {
            "strategy": rule.name,
            "kind": plan.kind,
            "action": plan.describe(),
            "nonce": nonce,
            "at": _now_iso(),
        }
        self.save()
        result = send()
        self.data["pending"] = None
        return result

    def _done(self, out: Outcome) -> Outcome:
        self.history.append(out)
        text = f"{out.plan} for {out.strategy} ({out.account:#x}): {out.why}"
        if out.ok:
            after = "" if out.health_after is None else f"; health now {out.health_after:.3f}"
            self.log.info("%s: ok, tx %s, gas %s%s", text, out.tx_hash, f"{out.gas_used:,}", after)
            self.data["last_action"] = f"{out.plan} for {out.strategy} ({out.why}): ok"
        else:
            self.log.warning("%s: %s: %s%s", text, out.stage, out.error, _hint(out.error))
            self.data["last_action"] = (
                f"{out.plan} for {out.strategy} ({out.why}): {out.stage}: {out.error}"
            )
            counts = self.data.setdefault("counts", {})
            counts["refused"] = int(counts.get("refused", 0)) + 1
        self._record(out.record())
        self.save()
        return out

    def _in_flight(self) -> str:
        """'' or why the bot waits: an earlier run's transaction still in the pool."""
        pending = self.data.get("pending")
        if not pending:
            return ""
        latest, queued = self._nonce("latest"), self._nonce("pending")
        if queued > latest and int(pending.get("nonce", -1)) >= latest:
            return (
                f"waiting for the earlier {pending.get('action', 'transaction')} "
                f"(nonce {pending.get('nonce')}) still in the node's pool"
            )
        mined = latest > int(pending.get("nonce", -1))
        self.log.info(
            "the earlier %s (nonce %s) %s; the chain's figures decide what is left to do",
            pending.get("action", "transaction"),
            pending.get("nonce"),
            "was mined" if mined else "was never mined",
        )
        self._record({"kind": "pending-cleared", "mined": mined, **pending})
        self.data["pending"] = None
        return ""

    def _nonce(self, block: str) -> int:
        from ape import networks

        web3 = getattr(networks.provider, "web3", None)
        if web3 is not None:
            return int(web3.eth.get_transaction_count(self.bot, block))
        return int(networks.provider.get_nonce(self.bot))

    def _gas_used(self, tx_hash: str, receipt: Any) -> int:
        used = getattr(receipt, "gas_used", None)
        if used is not None:
            return int(used)
        try:
            from ape import networks

            return int(networks.provider.get_receipt(tx_hash).gas_used)
        except Exception:
            return 0

    def run(
        self,
        interval: float = 10.0,
        ticks: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> int:
        """Tick every `interval` seconds until `stop` is set or `ticks` ran; a tick that
        fails outside a transaction (node unreachable...) is logged and retried."""
        return run_ticks(self.tick, self.save, self.log, interval, ticks, stop, on_tick)


def _hint(error: str) -> str:
    if "not authorized" in error or "not account owner" in error:
        return (
            " (the bot is no operator of the strategy or its reserve: revoked by `kill`, or "
            "never granted; the owner grants it with `perpdex operator add BOT --sub N`)"
        )
    return ""


def _is_quote_error(err: BaseException) -> bool:
    return getattr(err, "action", None) == "quote"


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "revert_message", None)
    return str(reason).strip() if reason else _one_line(err)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:199] + "…"


# --- the kill switch --------------------------------------------------------------------------


@dataclass
class Revocation:
    account: int
    was_operator: bool
    ok: bool
    tx_hash: str = ""
    error: str = ""


def kill(
    client: PerpdexClient,
    accounts: Sequence[int],
    bot: str,
    state_path: Path | None,
    note: str = "",
) -> list[Revocation]:
    """Revoke `bot`'s operator rights on every account in `accounts` in ONE transaction
    signed by the owner (`revoke_operator(bot, accounts)`: every account the bot still
    operates; none sent when it operates none), and set the state file's mode to killed.

    The mode is set first, so a bot on this state file stops at its next tick even before
    the revocation lands; the revocation stops any bot, wherever it runs. Should the
    batch be refused (an account that is not the owner's), each operated account is
    revoked on its own so one refusal does not keep the others operated."""
    if state_path is not None:
        set_mode(state_path, "killed", "kill", note, bot=bot)
    was: dict[int, bool | str] = {}
    for acct in accounts:
        try:
            was[acct] = client.is_operator(acct, bot)
        except Exception as e:
            was[acct] = _reason(e)
    operated = [a for a in accounts if was[a] is True]
    sent: dict[int, Revocation] = {}
    if operated:
        try:
            receipt = client.revoke_operator(bot, operated)
            sent = {a: Revocation(a, True, True, str(receipt.txn_hash)) for a in operated}
        except Exception:
            for acct in operated:  # one refusal must not keep the other accounts operated
                try:
                    receipt = client.set_operator(acct, bot, False)
                    sent[acct] = Revocation(acct, True, True, str(receipt.txn_hash))
                except Exception as e:
                    sent[acct] = Revocation(acct, True, False, error=_reason(e))
    out: list[Revocation] = []
    for acct in accounts:
        w = was[acct]
        if isinstance(w, str):
            out.append(Revocation(acct, False, False, error=w))
        elif not w:
            out.append(Revocation(acct, False, True))
        else:
            out.append(sent[acct])
    for r in out:
        if state_path is not None:
            append_action(
                state_path,
                {
                    "kind": "revoke",
                    "account": f"{r.account:#x}",
                    "bot": bot,
                    "was_operator": r.was_operator,
                    "ok": r.ok,
                    "tx": r.tx_hash or None,
                    "error": r.error or None,
                },
            )
        level = logging.INFO if r.ok else logging.ERROR
        log.log(
            level,
            "kill: %s on %#x: %s",
            "revoked" if r.was_operator else "not an operator",
            r.account,
            r.tx_hash or r.error or "nothing to do",
        )
    if state_path is not None:
        with _edit_lock(state_path):
            data = read_state(state_path)
            data["revoked"] = {
                f"{r.account:#x}": r.tx_hash or ("not an operator" if r.ok else r.error)
                for r in out
            }
            _write_state(state_path, data)
    return out
