"""The system state machine of the stateful fuzz: `SystemMachine`, its rules (the
actions), the predicted outcome of each, and the teardown. test_system.py runs it at 6
and 18 settlement decimals; what must hold is docs/invariants.md.

The machine drives traders (isolated and portfolio sub-accounts, USDC and WETH collateral)
trading all three markets (opens, adds, reductions, closes, flips), LPs in the vault
(deposit / mint / withdraw / redeem / round trips / a sandwich round an oracle jump or a
liquidation), the mock feeds (walks, jumps, one source diverging, feeds going stale as
time passes), the sequencer (outages and its grace period), time, loss caps, the
liquidation auction (start and take by two keepers, backstop, step, finish, redo),
insurance funding, protocol-fee withdrawals and token donations to the Clearinghouse
and the vault. Each Hypothesis example starts from a chain snapshot of one prepared
deployment (tests/fuzz/conftest.py) and ends by closing and withdrawing everything: the
oracle healed, liquidations driven to their end, every position closed, every balance
and share withdrawn; what stays is insurance, protocol fees, the vault's last withdrawal
fee and dust below one token unit per account, and no user got out more than deposits
plus realised PnL.

Every transaction goes through `_tx`, which:

* checks its outcome against a prediction: every trade, withdrawal, transfer, margin
  switch, refresh and liquidation step is predicted with perpdex.sdk.math
  (`simulate_trade`, `touch`, `scan`, the liquidation rules) over the oracle model
  (oracle_model.py): the chain must fill it exactly as predicted (fill price, fee,
  realised PnL, funding, the position, the mark, the margin after) or refuse it with the
  predicted reason; a reverted action must leave every figure the machine reads (a
  `World`, world.py) as it was;
* replays its events in the ledger (ledger.py), which must then equal the chain;
* runs every invariant (invariants.py, `Invariants._check_world`, a mixin of the machine).

Hypothesis's `ci` profile is derandomised: its seed comes from the class name
(`SystemMachine{decimals}`, made in test_system.py) and the rule names below, so renaming
either changes the sequences CI explores.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from perpdex.constants import BPS, VAULT_CAP_REACHED, WAD
from perpdex.sdk import math as pm
from perpdex.sdk.snapshot import CollateralInfo, Snapshot

from .. import strategies as fst
from ..conftest import FuzzAccount, FuzzSystem, TxResult
from .invariants import Invariants
from .ledger import Ledger, vault_equity
from .oracle_model import (
    DEGRADED,
    DOWN,
    FEED_SCALE,
    GRACE,
    NO_QUORUM,
    ORACLE_REASONS,
    SEQ_GRACE,
    Feed,
    OracleModel,
    gate_reason,
)
from .world import POOL, World, healthy, read_world, world_diff

MAX_U = 2**256 - 1
# transaction outcomes across a test's examples (PERPDEX_FUZZ_STATS)
STATS: dict[str, int] = {}


class Predicted(Exception):
    """An action's predicted revert; args[0] = reason."""


@dataclass(frozen=True)
class Expect:
    """What a transaction may do: a predicted outcome (`reason` None = it succeeds) or,
    when not predicted, the reasons it may revert with (success is then also fine)."""

    reason: str | None = None
    predicted: bool = True
    allowed: frozenset[str] = frozenset()


OK = Expect()


def exact(reason: str | None) -> Expect:
    return Expect(reason=reason)


def loose(*reasons: str | frozenset[str]) -> Expect:
    out: set[str] = set()
    for r in reasons:
        out |= {r} if isinstance(r, str) else set(r)
    return Expect(predicted=False, allowed=frozenset(out))


class SystemMachine(Invariants, RuleBasedStateMachine):
    """See the module docstring. `fs` is set by the test (one prepared deployment)."""

    fs: FuzzSystem

    def __init__(self) -> None:
        super().__init__()
        from ape import chain as ape_chain

        fs = self.fs
        self.snapshot_id = ape_chain.snapshot()
        self.now = fs.base_time
        cfgs = tuple(m.oracle for m in fs.config.markets)
        self.price = [int(m.price * 10**8) for m in fs.config.markets]
        self.oracle = OracleModel(
            cfg=cfgs,
            feeds=[[Feed(self.price[m], 0) for _ in fs.feeds[m]] for m in range(len(fs.feeds))],
            seq_answer=0,
            seq_started=0,
            grace=fs.grace,
            twap_windows=tuple(c.twap_window for c in cfgs),
        )
        # the feeds as the fixture left them (read once: answers and update times)
        for m, fl in enumerate(fs.feeds):
            for i, f in enumerate(fl):
                rd = fs.chain.call(f, "latestRoundData")
                self.oracle.feeds[m][i] = Feed(int(rd[1]), int(rd[3]))
        rd = fs.chain.call(fs.h["seq"], "latestRoundData")
        self.oracle.seq_answer, self.oracle.seq_started = int(rd[1]), int(rd[2])
        self.world = read_world(fs)
        self.start = self.world
        self.ledger = Ledger(fs, self.world)
        self.donated = {"ch": 0, "vault": 0, "weth": 0}
        self.minted: dict[str, int] = {}
        self.tx_count = 0
        self.max_slack = 0
        self.zero_sum_gap: list[int] = []
        self.provisions: dict[int, int] = {}  # account -> its BadDebtProvisioned amount
        self.lp_fee_last = 0
        self.lp_virtual_last = 0
        self.last_explained = 0  # the last step's explained vault-equity change (WAD)
        self.dirty = False
        self.collaterals = {
            0: CollateralInfo(0, fs.h["token"].address, 0, 0),
            1: CollateralInfo(1, fs.h["weth"].address, 1, WAD // 10),
        }
        self.offset = 10**fs.config.vault_decimals_offset
        self._check_world(self.world, self.world, None, set(), "init", "init")

    # --- plumbing ---------------------------------------------------------------------------

    def _plain(self, sender: str, h: Any, fn: str, *args: Any) -> None:
        """A transaction outside the Clearinghouse (feeds, mints): must succeed."""
        self.now += 1
        self.fs.chain.must(sender, h, fn, *args, timestamp=self.now)
        self.dirty = True

    def _sync(self) -> None:
        if self.dirty:
            self.world = read_world(self.fs)
            self.dirty = False

    def _tx(
        self,
        what: str,
        sender: str,
        handle: str,
        fn: str,
        *args: Any,
        expect: Expect = OK,
        touched: set[int] | frozenset[int] = frozenset(),
        kind: str = "action",
    ) -> TxResult:
        """Sends one transaction at the next second, checks its outcome against `expect`,
        replays its events and checks every invariant (module doc)."""
        self._sync()
        before = self.world
        self.now += 1
        tx = self.fs.chain.send(sender, self.fs.h[handle], fn, *args, timestamp=self.now)
        assert tx.timestamp == self.now, "the block was not mined at the machine's clock"
        self.tx_count += 1
        outcome = f"{fn}: {tx.reason if not tx.ok else 'ok'}"
        event(outcome)
        STATS[outcome] = STATS.get(outcome, 0) + 1
        if not tx.ok:
            note(f"  {what}: reverted {tx.reason!r}")
            if expect.predicted:
                assert tx.reason == expect.reason, (
                    f"{what}: reverted with {tx.reason!r}; the model predicted "
                    f"{expect.reason or 'success'!r}"
                )
            else:
                assert tx.reason in expect.allowed, (
                    f"{what}: reverted with {tx.reason!r}, not a reason this action may fail "
                    f"with ({sorted(expect.allowed)})"
                )
            after = read_world(self.fs)
            assert after.comparable() == before.comparable(), (
                f"{what}: reverted but changed state: {world_diff(before, after)}"
            )
            self.world = after
            return tx
        note(f"  {what}: ok")
        assert not (expect.predicted and expect.reason is not None), (
            f"{what}: succeeded; the model predicted a revert with {expect.reason!r}"
        )
        self._inv_price_quorum(tx)
        self.ledger.apply(tx, self.oracle)
        after = read_world(self.fs)
        self.ledger.compare(after)
        self._check_world(before, after, tx, set(touched), kind, what)
        self.world = after
        return tx

    def _translate(self, e: pm.Revert, now: int) -> str:
        """The mirror's 'no valid price' -> the router's reason from the oracle model."""
        msg = str(e)
        if msg.startswith("oracle: market ") and "had no valid price" in msg:
            m = int(msg.split()[2])
            r = self.oracle.try_read(m, now)
            assert isinstance(r, str), f"mirror says market {m} has no price, model says {r}"
            return r
        return msg

    def _touch(self, snap: Snapshot, m: int, now: int, require_valid: bool) -> Snapshot:
        """marks._touch_quorum (+ _require_valid_price when asked) on a snapshot."""
        r = self.oracle.try_read(m, now)
        if isinstance(r, str):
            raise Predicted(r)
        if r[1] & DEGRADED:
            raise Predicted(NO_QUORUM)
        if require_valid and (reason := gate_reason(r[1])):
            raise Predicted(reason)
        return pm._touch_market(snap, m, now)

    def _gate(self, snap: Snapshot, now: int, reason: str, value_out: bool = False) -> None:
        """engine_check_initial(strict=True) on a snapshot; raises Predicted. `value_out`
        (withdrawals, transfers out: accounts._check_value_out) then also needs equity at
        or above the loss cap and equity less positive unrealised PnL to cover the
        initial requirement."""
        hdr = snap.header
        if pm.position_count(hdr) == 0 and pm.collateral_bitmap(hdr) == 0:
            if snap.balance(0) < 0:
                raise Predicted(reason)
            if value_out and snap.balance(0) < snap.loss_cap:
                raise Predicted("clearinghouse: would cross loss cap")
            return
        for m in range(len(self.fs.params)):
            if (pm.positions_bitmap(hdr) >> m) & 1:
                snap = self._touch(snap, m, now, True)
        if pm.collateral_bitmap(hdr) & 2:
            snap = self._touch(snap, 1, now, True)
        s = pm.scan(snap)
        if s.equity < s.initial:
            raise Predicted(reason)
        if value_out and s.equity < snap.loss_cap:
            raise Predicted("clearinghouse: would cross loss cap")
        if value_out and s.equity - pm.unrealized_profit(snap) < s.initial:
            raise Predicted("clearinghouse: unrealised profit is not withdrawable")

    def _refreshed(self, acct: int, now: int) -> Snapshot:
        """engine_refresh_account(account, False): every position market touched, then
        the collateral's market if stale."""
        snap = self._snap(self.world, acct, now)
        for m in range(len(self.fs.params)):
            if (pm.positions_bitmap(snap.header) >> m) & 1:
                snap = self._touch(snap, m, now, False)
        stale = snap.mark(1).touched_at + self.fs.system.max_mark_age < now
        if pm.collateral_bitmap(snap.header) & 2 and stale:
            snap = self._touch(snap, 1, now, False)
        return snap

    # --- rules: collateral -------------------------------------------------------------------

    def _mint(self, who: str, units: int) -> None:
        if self.world.tokens[who] < units:
            self._plain(who, self.fs.h["token"], "mint", who, units)
            self.minted[who] = self.minted.get(who, 0) + units

    @rule(
        pick=fst.account_picks,
        usd=fst.deposit_usd,
        weth=st.booleans(),
        milli=fst.deposit_weth_milli,
    )
    def deposit(self, pick: int, usd: int, weth: bool, milli: int) -> None:
        a = self._pick(pick, self.accounts)
        if weth and self.world.weths.get(a.owner, 0) >= milli * 10**15:
            self._tx(
                f"deposit {milli / 1000} WETH into {a.label}",
                a.owner,
                "ops",
                "deposit",
                a.id,
                self.fs.h["weth"].address,
                milli * 10**15,
                touched={a.id},
            )
            return
        units = usd * self.fs.unit
        self._mint(a.owner, units)
        self._tx(
            f"deposit ${usd} into {a.label}",
            a.owner,
            "ops",
            "deposit",
            a.id,
            self.fs.h["token"].address,
            units,
            touched={a.id},
        )

    def _withdraw_expect(self, acct: int, idx: int, units: int, now: int) -> Expect:
        s = self.world.accts[acct]
        try:
            if units == 0:
                raise Predicted("clearinghouse: zero amount")
            if s.in_liquidation:
                raise Predicted("clearinghouse: account in liquidation")
            wad = units * (self.fs.scale if idx == 0 else 1)
            if s.bal[idx] < wad:
                raise Predicted("clearinghouse: insufficient balance")
            snap = self._snap(self.world, acct, now)
            bal = dict(snap.balances)
            bal[idx] -= wad
            hdr = snap.header
            if idx == 1 and s.bal[1] == wad:
                hdr &= ~(1 << 41)
            self._gate(
                replace(snap, balances=bal, header=hdr),
                now,
                "clearinghouse: below initial margin",
                value_out=True,
            )
        except Predicted as e:
            return exact(str(e.args[0]))
        except pm.Revert as e:
            return exact(self._translate(e, now))
        return OK

    @rule(
        pick=fst.account_picks, weth=st.booleans(), from_balance=st.booleans(), bps=fst.withdraw_bps
    )
    def withdraw(self, pick: int, weth: bool, from_balance: bool, bps: int) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        s = self.world.accts[a.id]
        idx = 1 if weth else 0
        scale = 1 if weth else self.fs.scale
        if from_balance or weth:
            value = max(s.bal[idx], 0)
        else:
            value = max(s.margin.equity - s.margin.initial, 0)
            value = min(value, max(s.bal[0], 0)) if bps <= BPS else value
        units = value * bps // BPS // scale
        token = self.fs.h["weth" if weth else "token"].address
        expect = self._withdraw_expect(a.id, idx, units, self.now + 1)
        tx = self._tx(
            f"withdraw {units} units of {'WETH' if weth else 'USD'} from {a.label}",
            a.owner,
            "ops",
            "withdraw",
            a.id,
            token,
            units,
            a.owner,
            expect=expect,
            touched={a.id},
            kind="risk",
        )
        if tx.ok:
            self._inv_healthy_after_risk(a.id, "withdraw")

    @rule(
        pick=fst.account_picks, to_pick=fst.account_picks, weth=st.booleans(), bps=fst.withdraw_bps
    )
    def transfer(self, pick: int, to_pick: int, weth: bool, bps: int) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        mine = [x for x in self.accounts if x.owner == a.owner]
        b = self._pick(to_pick, mine)
        s = self.world.accts[a.id]
        idx = 1 if weth else 0
        scale = 1 if weth else self.fs.scale
        units = max(s.bal[idx], 0) * bps // BPS // scale
        now = self.now + 1
        if units == 0:
            expect = exact("clearinghouse: zero amount")
        elif a.id == b.id:
            expect = exact("clearinghouse: same account")
        else:
            expect = self._withdraw_expect(a.id, idx, units, now)
        token = self.fs.h["weth" if weth else "token"].address
        tx = self._tx(
            f"transfer {units} units from {a.label} to {b.label}",
            a.owner,
            "ops",
            "transfer_collateral",
            a.id,
            b.id,
            token,
            units,
            expect=expect,
            touched={a.id, b.id},
            kind="risk",
        )
        if tx.ok:
            self._inv_healthy_after_risk(a.id, "transfer")

    @rule(pick=fst.account_picks)
    def switch_margin_mode(self, pick: int) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        s = self.world.accts[a.id]
        portfolio = s.header & pm.ACCOUNT_PORTFOLIO == 0
        now = self.now + 1
        reason = "clearinghouse: mode switch leaves account under-margined"
        try:
            if s.in_liquidation:
                raise Predicted("clearinghouse: account in liquidation")
            snap = self._snap(self.world, a.id, now)
            snap = replace(snap, header=snap.header ^ pm.ACCOUNT_PORTFOLIO)
            if pm.position_count(snap.header) > 0:
                self._gate(snap, now, reason)
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        tx = self._tx(
            f"{a.label} to {'portfolio' if portfolio else 'isolated'} margin",
            a.owner,
            "ops",
            "set_margin_mode",
            a.id,
            portfolio,
            expect=expect,
            touched={a.id},
            kind="risk",
        )
        if tx.ok:
            self._inv_healthy_after_risk(a.id, "margin mode switch")

    def _simulate(
        self, snap: Snapshot, m: int, delta: int, now: int, bound: int | None
    ) -> pm.TradeResult | str:
        try:
            return pm.simulate_trade(snap, m, delta, now=now, acceptable_price=bound)
        except pm.Revert as e:
            return self._translate(e, now)

    @rule(
        pick=fst.account_picks,
        market=fst.markets,
        kind=fst.trade_kinds,
        lev=fst.leverage_bps,
        red=fst.reduce_bps,
        dust=fst.size_dust,
        long=st.booleans(),
        slip=fst.slippage_bps,
    )
    def trade(
        self,
        pick: int,
        market: int,
        kind: str,
        lev: int,
        red: int,
        dust: int,
        long: bool,
        slip: int | None,
    ) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        w = self.world
        s = w.accts[a.id]
        size = s.pos[market].size
        now = self.now + 1
        r = self.oracle.try_read(market, now)
        price = r[0] if isinstance(r, tuple) and r[0] else w.marks[market].price
        base = max(s.margin.equity, 1_000 * WAD) * lev // BPS * WAD // price + dust
        if kind == "open" or size == 0:
            delta = base if long else -base
        elif kind == "add":
            delta = base if size > 0 else -base
        elif kind == "reduce":
            delta = -(pm.vdiv(size * red, BPS) or size)
        elif kind == "close":
            delta = -size
        else:
            delta = -size - (base if size > 0 else -base)
        snap = self._snap(w, a.id, now)
        bound = MAX_U if delta > 0 else 0
        pred = self._simulate(snap, market, delta, now, None)
        if slip is not None and isinstance(pred, pm.TradeResult):
            bound = pred.fill_price * (BPS + slip if delta > 0 else BPS - slip) // BPS
            pred = self._simulate(snap, market, delta, now, bound)
        expect = exact(pred if isinstance(pred, str) else None)
        tx = self._tx(
            f"{a.label} trades {delta / WAD:+.6f} of market {market} ({kind})",
            a.owner,
            "ch",
            "trade",
            a.id,
            market,
            delta,
            bound,
            expect=expect,
            touched={a.id},
            kind="risk" if not isinstance(pred, str) and pred.adds else "action",
        )
        if not tx.ok:
            return
        assert isinstance(pred, pm.TradeResult)
        self._check_fill(tx, a.id, market, delta, pred)

    def _check_fill(
        self, tx: TxResult, acct: int, market: int, delta: int, pred: pm.TradeResult
    ) -> None:
        """The trade against the Python reference: fill, fee, PnL, funding, the position,
        the marks, the open interest and the margin after (perpdex.sdk.math)."""
        fs, w = self.fs, self.world
        fills = [f for f in tx.events("Fill") if f["account"] == acct]
        assert len(fills) == 1, f"one fill expected, got {fills}"
        f = fills[0]
        want = (pred.fill_price, pred.fee, pred.realized_pnl, pred.funding_paid, delta)
        got = (f["price"], f["fee"], f["realized_pnl"], f["funding_paid"], f["size_delta"])
        assert got == want, f"fill {got} != reference {want}"
        s = w.accts[acct]
        after = pred.after
        assert s.header == after.header, f"header {s.header:#x} != reference {after.header:#x}"
        assert s.bal == (after.balance(0), after.balance(1)), f"balances {s.bal}"
        for m in range(len(fs.params)):
            assert s.pos[m] == after.position(m), f"position {m}: {s.pos[m]} != {after.position(m)}"
            if m == market or m in pred.refreshed:
                assert w.marks[m] == after.mark(m), f"mark {m}: {w.marks[m]} != {after.mark(m)}"
        assert w.oi[market] == after.open_interest(market), f"OI {w.oi[market]}"
        assert s.margin == pred.margin_after, f"margin {s.margin} != reference {pred.margin_after}"
        if pred.adds:
            # 5. at or above initial margin; 7. every price it used was valid
            assert s.margin.equity >= s.margin.initial, (
                f"risk added below initial margin: {s.margin}"
            )
            self._inv_oracle_safety(
                {market, *pred.refreshed}, tx.timestamp, f"risk added in market {market}"
            )

    # --- rules: loss caps ------------------------------------------------------------------------

    def set_loss_cap(self, pick: int, bps: int) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        floor = max(self.world.accts[a.id].margin.equity, 0) * bps // BPS
        self._tx(
            f"{a.label} sets a loss cap at {floor / WAD:.2f}",
            a.owner,
            "ops",
            "set_loss_cap",
            a.id,
            floor,
            touched={a.id},
        )

    def trigger_loss_cap(self, pick: int) -> None:
        self._sync()
        a = self._pick(pick, self.accounts)
        s = self.world.accts[a.id]
        now = self.now + 1
        try:
            if s.loss_cap == 0:
                raise Predicted("clearinghouse: no loss cap")
            if s.in_liquidation:
                raise Predicted("clearinghouse: account in liquidation")
            if not s.has_positions:
                raise Predicted("clearinghouse: no positions")
            snap = self._refreshed(a.id, now)
            if pm.scan(snap).equity >= s.loss_cap:
                raise Predicted("clearinghouse: equity above loss cap")
            # trading._force_close per market: at the oracle, within the loss-cap window
            closed = False
            for m in range(len(self.fs.params)):
                if snap.position(m).size:
                    window = int(
                        self.fs.chain.read([(self.fs.h["ch"], "loss_cap_window", (m,))])[0]
                    )
                    res, _ = pm.force_close(snap, m, window, now)
                    if res is not None:
                        snap, closed = res.after, True
            if not closed:
                raise Predicted("clearinghouse: loss-cap window used up")
            if pm.position_count(snap.header) == 0 and snap.balance(0) < 0:
                pm.check_initial(snap, now, "clearinghouse: close leaves negative equity")
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        self._tx(
            f"stranger triggers {a.label}'s loss cap",
            self.fs.actors["stranger"],
            "ops",
            "trigger_loss_cap",
            a.id,
            expect=expect,
            touched={a.id},
        )

    # --- rules: the vault ----------------------------------------------------------------------

    def _sync_marks_first(self) -> str:
        """A keeper refresh before an LP action, so the vault's own `sync_marks` has
        nothing to move and the share price can be compared across the action. Returns
        the kind of the LP transaction: "lp" (price checks apply), or "action" when the
        refresh failed (the vault may then move marks itself)."""
        return "lp" if self._refresh(list(range(len(self.fs.params)))).ok else "action"

    def _vault_price(self) -> tuple[int, int]:
        return (self.world.total_assets + 1, self.world.supply + self.offset)

    VAULT_REASONS = frozenset(
        {
            "vault: zero amount",
            "clearinghouse: vault exposure cap reached",
            "clearinghouse: insufficient pool cash",
            "vault: pool is insolvent",
            *ORACLE_REASONS,
        }
    )

    def lp_deposit(self, pick: int, usd: int, by_shares: bool) -> None:
        lp = self._lp(pick)
        units = usd * self.fs.unit
        self._mint(lp, units)
        kind = self._sync_marks_first()
        ta, sup = self.world.total_assets, self.world.supply
        if by_shares:
            shares = units * (sup + self.offset) // (ta + 1)
            tx = self._tx(
                f"LP mints {shares} shares",
                lp,
                "vault",
                "mint",
                shares,
                lp,
                expect=loose(self.VAULT_REASONS),
                kind=kind,
            )
        else:
            tx = self._tx(
                f"LP deposits ${usd}",
                lp,
                "vault",
                "deposit",
                units,
                lp,
                expect=loose(self.VAULT_REASONS),
                kind=kind,
            )
        if not tx.ok or kind != "lp":
            return
        (ev,) = [e for e in tx.events("Deposit") if "shares" in e]
        want = (ev["assets"] * (sup + self.offset) // (ta + 1)) if not by_shares else ev["shares"]
        if by_shares:
            # assets rounded up: ceil(shares * (A + 1) / (S + v))
            assert ev["assets"] == -(-ev["shares"] * (ta + 1) // (sup + self.offset))
        assert ev["shares"] == want, f"minted {ev['shares']} shares, ERC-4626 formula {want}"
        # a deposit is worth what was paid, less at most one unit
        worth = ev["shares"] * (self.world.total_assets + 1) // (self.world.supply + self.offset)
        assert ev["assets"] - 1 <= worth <= ev["assets"], f"deposit of {ev['assets']} worth {worth}"

    def lp_redeem(self, pick: int, bps: int, by_assets: bool) -> None:
        lp = self._lp(pick)
        kind = self._sync_marks_first()
        shares = self.world.shares[lp] * bps // BPS
        ta, sup = self.world.total_assets, self.world.supply
        fee_bps = self.fs.config.vault_withdraw_fee_bps
        if by_assets:
            gross = shares * (ta + 1) // (sup + self.offset)
            assets = gross * (BPS - fee_bps) // BPS
            tx = self._tx(
                f"LP withdraws {assets} units",
                lp,
                "vault",
                "withdraw",
                assets,
                lp,
                lp,
                expect=loose(self.VAULT_REASONS),
                kind=kind,
            )
        else:
            tx = self._tx(
                f"LP redeems {shares} shares",
                lp,
                "vault",
                "redeem",
                shares,
                lp,
                lp,
                expect=loose(self.VAULT_REASONS),
                kind=kind,
            )
        if not tx.ok or kind != "lp":
            return
        (ev,) = [e for e in tx.events("Withdraw") if "shares" in e]
        if by_assets:
            g = -(-ev["assets"] * BPS // (BPS - fee_bps))
            want = -(-g * (sup + self.offset) // (ta + 1))
            assert ev["shares"] == want, f"burnt {ev['shares']} shares, formula {want}"
        else:
            want = ev["shares"] * (ta + 1) // (sup + self.offset) * (BPS - fee_bps) // BPS
            assert ev["assets"] == want, f"paid {ev['assets']}, formula {want}"
        self.lp_fee_last = ev["shares"] * (ta + 1) // (sup + self.offset) - ev["assets"]
        # the virtual shares' claim (ERC-4626 offset) stays in the pool with the fee
        self.lp_virtual_last = (ta + 1) * self.offset // (sup + self.offset) + 1

    def lp_round_trip(self, pick: int, usd: int) -> None:
        """6. ERC-4626 round trips never profit."""
        lp = self._lp(pick)
        units = usd * self.fs.unit
        self._mint(lp, units)
        kind = self._sync_marks_first()
        wallet = self.world.tokens[lp]
        tx = self._tx(
            f"LP deposits ${usd}",
            lp,
            "vault",
            "deposit",
            units,
            lp,
            expect=loose(self.VAULT_REASONS),
            kind=kind,
        )
        if not tx.ok:
            return
        (ev,) = [e for e in tx.events("Deposit") if "shares" in e]
        tx = self._tx(
            f"LP redeems the {ev['shares']} shares",
            lp,
            "vault",
            "redeem",
            ev["shares"],
            lp,
            lp,
            expect=loose(self.VAULT_REASONS),
            kind=kind,
        )
        if tx.ok:
            assert self.world.tokens[lp] <= wallet, "an ERC-4626 round trip made a profit"

    @rule(
        pick=fst.lps,
        usd=fst.lp_usd,
        around=st.sampled_from(["jump", "jump", "start", "settle"]),
        market=fst.markets,
        bps=fst.jump_bps,
        k=fst.keepers,
        acct_pick=fst.account_picks,
    )
    def lp_sandwich(
        self, pick: int, usd: int, around: str, market: int, bps: int, k: int, acct_pick: int
    ) -> None:
        """6. An adversarial LP deposits right before an oracle jump (feeds posted, marks
        not refreshed: the vault's own sync on redeem moves them), a liquidation start
        (which provisions the account's deficit) or a backstop that may settle bad debt,
        and redeems its shares right after. It gets at most its share of what the vault
        went through in between, valued net of provisioned bad debt: no profit from a
        stale mark, no escape from a provisioned loss. Every step is also held to the
        strict share-price rule (`_share_price_explained`)."""
        lp = self._lp(pick)
        units = usd * self.fs.unit
        self._mint(lp, units)
        tx = self._tx(
            f"LP deposits ${usd} before a {around}",
            lp,
            "vault",
            "deposit",
            units,
            lp,
            expect=loose(self.VAULT_REASONS),
        )
        if not tx.ok:
            return
        (dep,) = [e for e in tx.events("Deposit") if "shares" in e]
        e1, s1 = self.world.vault_equity, self.world.supply
        if around == "jump":
            self.price[market] = self._clamp(market, self.price[market] * (BPS + bps) // BPS)
            self._post(market)
        elif around == "start":
            self._sync()
            pool = self._liquidatable()
            pool = [a for a in pool if not self.world.accts[a.id].healthy()] or pool
            if pool:
                self._start(self._pick(acct_pick, pool), k)
        else:
            self._sync()
            pool = self._in_auction()
            if pool:
                a = self._pick(acct_pick, pool)
                self.now = max(self.now, self.world.accts[a.id].deadline)
                for m in range(len(self.fs.feeds)):
                    self._post(m)
                self._backstop(a)
        self._sync()
        before = self.world
        tx = self._tx(
            f"LP redeems the {dep['shares']} shares after the {around}",
            lp,
            "vault",
            "redeem",
            dep["shares"],
            lp,
            lp,
            expect=loose(self.VAULT_REASONS),
        )
        if not tx.ok:
            return
        (out,) = [e for e in tx.events("Withdraw") if "shares" in e]
        w, scale = self.world, self.fs.scale
        # the equity the redeem priced shares at: the book before it at the marks it
        # synced, less provisioned bad debt insurance does not cover (the lens's rule)
        priced = vault_equity(self.fs, replace(before, marks=w.marks))
        cap = dep["shares"] * (max(priced, 0) // scale + 1) // (before.supply + self.offset)
        assert out["assets"] <= cap, (
            f"LP paid {out['assets']} for {dep['shares']} shares, above {cap}: its share of "
            f"equity net of the provision ({before.provision} provisioned, insurance "
            f"{before.insurance})"
        )
        # profit at most its share of how the vault's equity moved while it held
        moved = max(priced - e1, 0)
        share = -(-dep["shares"] * moved // (s1 + self.offset)) // scale + 1
        assert out["assets"] - dep["assets"] <= share, (
            f"LP made {out['assets'] - dep['assets']} units round a {around}; its share of "
            f"the vault's gain was {share}"
        )

    # --- rules: market data and time ---------------------------------------------------------

    def _post(self, m: int, answers: list[int] | None = None) -> None:
        keeper = self.fs.actors["keeper"]
        for i, f in enumerate(self.fs.feeds[m]):
            ans = self.price[m] if answers is None else answers[i]
            self._plain(keeper, f, "set_answer", ans)
            self.oracle.feeds[m][i] = Feed(ans, self.now)

    def _clamp(self, m: int, answer: int) -> int:
        c = self.fs.config.markets[m].oracle
        lo, hi = c.min_price // FEED_SCALE, c.max_price // FEED_SCALE
        return max(lo, min(hi, answer))

    def _refresh(self, markets: list[int]) -> TxResult:
        now = self.now + 1
        reason = None
        for m in markets:
            r = self.oracle.try_read(m, now)
            if isinstance(r, str):
                reason = r
                break
        return self._tx(
            f"keeper refreshes {markets}",
            self.fs.actors["keeper"],
            "ops",
            "refresh",
            markets,
            expect=exact(reason),
            kind="market",
        )

    @rule(market=fst.markets, bps=fst.walk_bps, refresh=st.booleans())
    def price_walk(self, market: int, bps: int, refresh: bool) -> None:
        self.price[market] = self._clamp(market, self.price[market] * (BPS + bps) // BPS)
        self._post(market)
        if refresh:
            self._refresh([market])

    @rule(market=fst.markets, bps=fst.jump_bps, refresh=st.booleans())
    def price_jump(self, market: int, bps: int, refresh: bool) -> None:
        self.price[market] = self._clamp(market, self.price[market] * (BPS + bps) // BPS)
        self._post(market)
        if refresh:
            self._refresh([market])

    def feed_diverges(self, market: int, feed: int, bps: int) -> None:
        """One source leaves the others: with three, the agreeing pair holds the price;
        with two (or one of three stale), the market loses its quorum and freezes."""
        answers = [self.price[market]] * len(self.fs.feeds[market])
        i = feed % len(answers)
        answers[i] = self._clamp(market, answers[i] * (BPS + bps) // BPS)
        self._post(market, answers)

    def feed_goes_stale(self, market: int, feed: int) -> None:
        """One source stops updating: it is older than max_age from now on (with a
        second one gone too, or one lying, the market has no quorum and freezes)."""
        i = feed % len(self.fs.feeds[market])
        old = max(self.now - self.fs.config.markets[market].oracle.max_age - 1, 1)
        ans = self.oracle.feeds[market][i].answer
        self._plain(
            self.fs.actors["keeper"], self.fs.feeds[market][i], "set_round_data", ans, old, old
        )
        self.oracle.feeds[market][i] = Feed(ans, old)

    @rule(seconds=fst.time_steps, repost=fst.reposts)
    def time_passes(self, seconds: int, repost: bool) -> None:
        """Time without updates lets feeds go stale (max age 3,600 s); `repost` models the
        feeds' heartbeats."""
        self.now += seconds
        if repost:
            for m in range(len(self.fs.feeds)):
                self._post(m)

    def sequencer(self, down: bool) -> None:
        """The L2 sequencer goes down, or comes back (grace period starts now)."""
        self._plain(
            self.fs.actors["keeper"],
            self.fs.h["seq"],
            "set_round_data",
            int(down),
            self.now + 1,
            self.now + 1,
        )
        self.oracle.seq_answer, self.oracle.seq_started = int(down), self.now

    @rule(mask=st.integers(1, 7))
    def refresh_marks(self, mask: int) -> None:
        self._refresh([m for m in range(len(self.fs.params)) if mask >> m & 1])

    # --- rules: treasury and donations -----------------------------------------------------------

    def fund_insurance(self, usd: int) -> None:
        admin = self.fs.actors["admin"]
        self._mint(admin, usd * self.fs.unit)
        self._tx(
            f"admin funds insurance with ${usd}",
            admin,
            "admin",
            "fund_insurance",
            usd * self.fs.unit,
        )

    def withdraw_protocol_fees(self) -> None:
        self._sync()
        reason = None if self.world.protocol_fees >= self.fs.scale else "clearinghouse: zero amount"
        admin = self.fs.actors["admin"]
        self._tx(
            "admin withdraws protocol fees",
            admin,
            "admin",
            "withdraw_protocol_fees",
            admin,
            expect=exact(reason),
        )

    def donate(self, to_vault: bool, weth: bool, usd: int) -> None:
        """Tokens sent straight to the Clearinghouse or the vault belong to nobody: no
        account, bucket or share price may move."""
        who = self.fs.actors["stranger"]
        if weth and not to_vault and self.world.weths[who] > 0:
            amount = min(self.world.weths[who], usd * 10**14)
            self.donated["weth"] += amount
            self._tx(
                f"stranger sends {amount} WETH wei to the Clearinghouse",
                who,
                "weth",
                "transfer",
                self.fs.h["ch"].address,
                amount,
                kind="donation",
            )
            return
        units = usd * self.fs.unit
        self._mint(who, units)
        target = self.fs.h["vault" if to_vault else "ch"].address
        self.donated["vault" if to_vault else "ch"] += units
        self._tx(
            f"stranger sends ${usd} to the {'vault' if to_vault else 'Clearinghouse'}",
            who,
            "token",
            "transfer",
            target,
            units,
            kind="donation",
        )

    # --- grouped rules (fewer, so trades and prices get most of the steps) ---------------------

    @rule(
        action=st.sampled_from(["deposit", "mint", "withdraw", "redeem", "round_trip"]),
        pick=fst.lps,
        usd=fst.lp_usd,
        bps=fst.lp_bps,
    )
    def vault(self, action: str, pick: int, usd: int, bps: int) -> None:
        if action in ("deposit", "mint"):
            self.lp_deposit(pick, usd, action == "mint")
        elif action in ("withdraw", "redeem"):
            self.lp_redeem(pick, bps, action == "withdraw")
        else:
            self.lp_round_trip(pick, usd)

    @rule(trigger=st.booleans(), pick=fst.account_picks, bps=fst.loss_cap_bps)
    def loss_cap(self, trigger: bool, pick: int, bps: int) -> None:
        if trigger:
            self.trigger_loss_cap(pick)
        else:
            self.set_loss_cap(pick, bps)

    @rule(
        action=st.sampled_from(
            ["diverge"] * 6
            + ["stale"] * 2
            + ["spike"] * 2
            + ["heal"] * 3
            + ["sequencer_down"] * 2
            + ["sequencer_up"] * 3
        ),
        market=fst.markets,
        feed=fst.feed_picks,
        bps=fst.diverge_bps,
    )
    def oracle_event(self, action: str, market: int, feed: int, bps: int) -> None:
        if action == "diverge":
            self.feed_diverges(market, feed, bps)
        elif action == "stale":
            self.feed_goes_stale(market, feed)
        elif action == "spike":
            self.feed_diverges(market, feed, 9 * BPS)  # one feed reports 10x
        elif action == "heal":
            self._post(market)  # every feed back at the price: quorum returns
            self._refresh([market])
        else:
            self.sequencer(action == "sequencer_down")

    @rule(
        action=st.sampled_from(["insurance", "fees", "donate"]),
        usd=fst.donation_usd,
        to_vault=st.booleans(),
        weth=st.booleans(),
    )
    def treasury(self, action: str, usd: int, to_vault: bool, weth: bool) -> None:
        if action == "insurance":
            self.fund_insurance(usd)
        elif action == "fees":
            self.withdraw_protocol_fees()
        else:
            self.donate(to_vault, weth, usd)

    # trades and price walks are the bulk of a sequence: the same rules under more names
    trade_2 = trade
    trade_3 = trade
    trade_4 = trade
    trade_5 = trade
    price_walk_2 = price_walk

    # --- rules: liquidation ----------------------------------------------------------------------

    def _twap_scan(self, snap: Snapshot, touched: set[int], now: int) -> pm.MarginScan:
        """margin_at_twap right after the refresh: the EMA folded with each touched
        market's new reading (OracleRouter.observe), carried forward for the others."""
        fs = self.fs
        markets = list(snap.markets)
        for m in range(len(fs.params)):
            last, ema, ts = self.world.obs[m]
            window = self.oracle.twap_windows[m]
            if m in touched:
                twap = (
                    snap.mark(m).price if ts == 0 else self.oracle.ema(last, ema, now - ts, window)
                )
            else:
                twap = self.oracle.ema(last, ema, now - ts, window)
            markets[m] = replace(markets[m], mark=replace(markets[m].mark, price=twap))
        return pm.scan(replace(snap, markets=tuple(markets)))

    def _tranche(self, s: pm.MarginScan, critical: bool) -> int:
        """LiquidationAuction._tranche (no window caps are set)."""
        return pm.liq_tranche(s.equity, s.maintenance, s.notional, self.fs.liquidation, critical)

    def _critical(self, s: pm.MarginScan) -> bool:
        """LiquidationAuction._critical at `s` (the mirror's rule, this system's params)."""
        return pm.liq_critical(s.equity, s.maintenance, self.fs.liquidation["critical_health"])

    def _refresh_touched(self, acct: int, now: int) -> set[int]:
        s = self.world.accts[acct]
        out = {m for m in range(len(self.fs.params)) if (pm.positions_bitmap(s.header) >> m) & 1}
        stale = self.world.marks[1].touched_at + self.fs.system.max_mark_age < now
        if pm.collateral_bitmap(s.header) & 2 and 1 not in out and stale:
            out.add(1)
        return out

    def _open_tranche(self, acct: int, k_acct: int, sc: pm.MarginScan, now: int) -> tuple[int, int]:
        """(fraction, reward) of a tranche opened at `sc`; raises Predicted."""
        p = self.fs.liquidation
        critical = self._critical(sc)
        if self.oracle.seq_flags(now) & (DOWN | GRACE) and not critical:
            raise Predicted(SEQ_GRACE)
        q = self._tranche(sc, critical)
        value = pm.liq_lot_value(q, sc.notional)
        reward = pm.liq_reward(value, q, sc.equity, sc.maintenance, p)
        if reward and k_acct == acct:
            raise Predicted("clearinghouse: keeper account is the account")
        return q, reward

    @precondition(lambda self: any(s.has_positions for s in self.world.accts.values()))
    @rule(pick=fst.account_picks, k=fst.keepers, unhealthy_first=st.booleans())
    def liquidation_start(self, pick: int, k: int, unhealthy_first: bool) -> None:
        self._sync()
        pool = self._liquidatable()
        if unhealthy_first:
            pool = [a for a in pool if not self.world.accts[a.id].healthy()] or pool
        if pool:
            self._start(self._pick(pick, pool), k)

    @precondition(lambda self: any(s.has_positions for s in self.world.accts.values()))
    @rule(
        pick=fst.account_picks,
        bps=fst.adverse_bps,
        wait=fst.adverse_waits,
        k=fst.keepers,
    )
    def adverse_move(self, pick: int, bps: int, wait: int, k: int) -> None:
        """Every market one account holds moves against it by `bps`, the feeds keep
        posting for `wait` seconds (the time-weighted price catches up part of the way),
        the marks refresh, and a keeper tries to start its liquidation: without this,
        random walks rarely take an account under maintenance at both prices."""
        self._sync()
        pool = [
            a
            for a in self.accounts
            if self.world.accts[a.id].has_positions and not self.world.accts[a.id].auction[0]
        ]
        if not pool:
            return
        a = self._pick(pick, pool)
        s = self.world.accts[a.id]
        for m, p in enumerate(s.pos):
            if p.size != 0:
                move = -bps if p.size > 0 else bps
                self.price[m] = self._clamp(m, self.price[m] * (BPS + move) // BPS)
                self._post(m)
        self.time_passes(wait, True)
        self._refresh(list(range(len(self.fs.params))))
        self._start(a, k)

    def _start(self, a: FuzzAccount, k: int) -> TxResult:
        keeper, k_acct = self._keeper(k)
        now = self.now + 1
        s = self.world.accts[a.id]
        sc = tw = None
        q = reward = 0
        try:
            if s.auction[0]:
                raise Predicted("auction: already in liquidation")
            snap = self._refreshed(a.id, now)
            sc = pm.scan(snap)
            if sc.maintenance == 0:
                raise Predicted("auction: no positions")
            if sc.equity >= sc.maintenance:
                raise Predicted("auction: account is healthy")
            tw = self._twap_scan(snap, self._refresh_touched(a.id, now), now)
            if tw.equity >= tw.maintenance:
                raise Predicted("auction: healthy at the time-weighted price")
            q, reward = self._open_tranche(a.id, k_acct, sc, now)
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        tx = self._tx(
            f"keeper {k} starts liquidating {a.label}",
            keeper,
            "auction",
            "start",
            a.id,
            k_acct,
            expect=expect,
            touched={a.id, k_acct},
            kind="liquidation",
        )
        if tx.ok:
            assert sc is not None and tw is not None
            (t,) = tx.events("TrancheOpened")
            got = (t["fraction"], t["reward"], t["equity"], t["maintenance"], t["twap_equity"])
            want = (q, reward, sc.equity, sc.maintenance, tw.equity)
            assert got == want, f"tranche {got} != reference {want}"
        return tx

    def _check_transfer(
        self,
        tx: TxResult,
        acct: int,
        before: World,
        fraction: int,
        discount: int,
        taker: int,
        penalty_rate: int,
    ) -> None:
        """Each leg moved at the refreshed mark worsened by the discount, the same fraction
        of every position (toward zero; a leg whose rest would be under the minimum notional
        whole), the scaled penalty on the notional moved."""
        marks = self.world.marks
        want, notional = [], 0
        for m, pos in enumerate(before.accts[acct].pos):
            if pos.size == 0:
                continue
            mark = marks[m].price
            part = pm.liq_leg_part(pos.size, fraction, mark)
            if part == 0:
                continue
            assert marks[m].touched_at == tx.timestamp, "a leg moved at a mark not refreshed"
            if pos.size > 0:
                price = pm.mul_div(mark, WAD - discount, WAD, False)
            else:
                price = pm.mul_div(mark, WAD + discount, WAD, True)
            want.append((m, -part, price, taker))
            notional += pm.mul_div(abs(part), mark, WAD, False)
        got = [
            (f["market"], f["size_delta"], f["price"], f["counterparty"])
            for f in tx.events("Fill")
            if f["account"] == acct
        ]
        assert got == want, f"liquidation fills {got} != reference {want}"
        (lt,) = tx.events("LiquidationTransfer")
        penalty = pm.mul_div(notional, penalty_rate, WAD, True)
        assert (lt["notional"], lt["penalty"], lt["fraction"], lt["discount"]) == (
            notional,
            penalty,
            fraction,
            discount,
        ), f"transfer {lt} != reference notional {notional}, penalty {penalty}"
        self._inv_liquidation_only_when_due(tx, acct)

    def _seq_gate(self, snap: Snapshot, now: int) -> None:
        if self.oracle.seq_flags(now) & (DOWN | GRACE) and not self._critical(pm.scan(snap)):
            raise Predicted(SEQ_GRACE)

    @precondition(lambda self: any(s.auction[0] for s in self.world.accts.values()))
    @rule(pick=fst.account_picks, k=fst.keepers, fraction=fst.fractions_wad)
    def liquidation_take(self, pick: int, k: int, fraction: int) -> None:
        self._sync()
        pool = self._in_auction()
        if pool:
            self._take(self._pick(pick, pool), k, fraction)

    def _take(self, a: FuzzAccount, k: int, fraction: int) -> None:
        keeper, k_acct = self._keeper(k)
        now = self.now + 1
        st = self.world.accts[a.id]
        _, started, lot, _, _ = st.auction
        part = discount = rate = 0
        finishes = False
        p = self.fs.liquidation
        try:
            if k_acct == a.id:
                raise Predicted("auction: cannot take into the liquidated account")
            if lot == 0:
                raise Predicted("auction: nothing to take")
            if now > st.deadline:
                raise Predicted("auction: expired, call backstop")
            snap = self._refreshed(a.id, now)
            sc = pm.scan(snap)
            if healthy(sc):
                finishes = True  # due no more: the liquidation ends, nothing moves
            else:
                self._seq_gate(snap, now)
                f = pm.liq_scale(sc.maintenance, sc.notional, p["max_discount"], p["penalty"])
                discount = pm.liq_discount(now - started, p, f)
                rate = pm.liq_scaled(p["penalty"], f)
                asked = lot if fraction == WAD else lot * fraction // WAD
                if asked == 0:
                    raise Predicted("auction: fraction too small")
                part = pm.liq_sell_part(
                    lot, asked, sc.equity, sc.maintenance, sc.notional, discount, rate, p
                )
                if self.world.accts[k_acct].in_liquidation:
                    raise Predicted("clearinghouse: taker in liquidation")
                for m, pos in enumerate(st.pos):
                    mark = snap.mark(m).price
                    leg = pm.liq_leg_part(pos.size, part, mark) if pos.size else 0
                    taker_size = self.world.accts[k_acct].pos[m].size
                    if not pm.liq_taker_leg_ok(pos.size, leg, taker_size, mark):
                        raise Predicted("clearinghouse: min position size")
            expect = (
                OK
                if finishes
                else loose(
                    "clearinghouse: taker below initial margin",
                    "clearinghouse: taker below loss cap",
                )
            )
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        before = self.world
        tx = self._tx(
            f"keeper {k} takes {fraction / WAD:.4f} of {a.label}'s lot",
            keeper,
            "auction",
            "take",
            a.id,
            k_acct,
            fraction,
            expect=expect,
            touched={a.id, k_acct},
            kind="liquidation",
        )
        if not tx.ok:
            return
        if finishes:
            assert not tx.events("LiquidationTransfer"), "a healthy account was taken"
            assert tx.events("LiquidationFinished"), "a healthy account was not released"
            return
        (ev,) = tx.events("AuctionTake")
        left = (lot - part) * WAD // (WAD - part) if part < lot else 0
        assert (ev["fraction"], ev["discount"], ev["lot_left"]) == (part, discount, left), (
            f"take {ev} != reference part {part}, discount {discount}, left {left}"
        )
        self._check_transfer(tx, a.id, before, part, discount, k_acct, rate)
        # the taker adds risk: at or above initial margin (5)
        t = self.world.accts[k_acct].margin
        assert t.equity >= t.initial, f"taker below initial margin after the take: {t}"

    @precondition(lambda self: any(s.auction[0] for s in self.world.accts.values()))
    @rule(pick=fst.account_picks)
    def liquidation_backstop(self, pick: int) -> None:
        self._sync()
        pool = self._in_auction()
        if pool:
            self._backstop(self._pick(pick, pool))

    def _backstop(self, a: FuzzAccount) -> None:
        now = self.now + 1
        st = self.world.accts[a.id]
        lot = st.auction[2]
        part = discount = rate = 0
        finishes = False
        p = self.fs.liquidation
        try:
            if lot == 0:
                raise Predicted("auction: nothing to take")
            if now <= st.deadline:
                raise Predicted("auction: still running")
            snap = self._refreshed(a.id, now)
            sc = pm.scan(snap)
            if healthy(sc):
                finishes = True
            else:
                self._seq_gate(snap, now)
                f = pm.liq_scale(sc.maintenance, sc.notional, p["max_discount"], p["penalty"])
                discount = pm.liq_scaled(p["max_discount"], f)
                rate = pm.liq_scaled(p["penalty"], f)
                part = pm.liq_sell_part(
                    lot, lot, sc.equity, sc.maintenance, sc.notional, discount, rate, p
                )
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        before = self.world
        tx = self._tx(
            f"backstop of {a.label}",
            self.fs.actors["stranger"],
            "auction",
            "backstop",
            a.id,
            expect=expect,
            touched={a.id},
            kind="liquidation",
        )
        if not tx.ok:
            return
        if finishes:
            assert not tx.events("LiquidationTransfer"), "a healthy account was backstopped"
            assert tx.events("LiquidationFinished"), "a healthy account was not released"
            return
        (ev,) = tx.events("AuctionBackstop")
        assert (ev["fraction"], ev["discount"]) == (part, discount), f"backstop {ev}"
        self._check_transfer(tx, a.id, before, part, discount, POOL, rate)

    @precondition(lambda self: any(s.auction[0] for s in self.world.accts.values()))
    @rule(pick=fst.account_picks, k=fst.keepers)
    def liquidation_step(self, pick: int, k: int) -> None:
        self._sync()
        pool = self._in_auction()
        if pool:
            self._step(self._pick(pick, pool), k)

    def _step(self, a: FuzzAccount, k: int) -> None:
        keeper, k_acct = self._keeper(k)
        now = self.now + 1
        _, started, lot, _, step = self.world.accts[a.id].auction
        finishes = False
        q = reward = 0
        try:
            if lot != 0:
                raise Predicted("auction: tranche still open")
            if now < started + self.fs.liquidation["cooldown"]:
                raise Predicted("auction: cooldown")
            snap = self._refreshed(a.id, now)
            sc = pm.scan(snap)
            if healthy(sc):
                finishes = True
            else:
                q, reward = self._open_tranche(a.id, k_acct, sc, now)
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        tx = self._tx(
            f"keeper {k} steps {a.label}'s liquidation",
            keeper,
            "auction",
            "step",
            a.id,
            k_acct,
            expect=expect,
            touched={a.id, k_acct},
            kind="liquidation",
        )
        if tx.ok:
            if finishes:
                assert tx.events("LiquidationFinished"), "a healthy account was not released"
            else:
                (t,) = tx.events("TrancheOpened")
                assert (t["step"], t["fraction"], t["reward"]) == (step + 1, q, reward), f"{t}"

    @precondition(lambda self: any(s.auction[0] for s in self.world.accts.values()))
    @rule(pick=fst.account_picks)
    def liquidation_finish(self, pick: int) -> None:
        self._sync()
        pool = self._in_auction()
        if pool:
            self._finish(self._pick(pick, pool))

    def _finish(self, a: FuzzAccount) -> None:
        now = self.now + 1
        try:
            if not healthy(pm.scan(self._refreshed(a.id, now))):
                raise Predicted("auction: account still unhealthy")
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        self._tx(
            f"finish {a.label}'s liquidation",
            self.fs.actors["stranger"],
            "auction",
            "finish",
            a.id,
            expect=expect,
            touched={a.id},
            kind="liquidation",
        )

    @precondition(lambda self: any(s.auction[0] for s in self.world.accts.values()))
    @rule(pick=fst.account_picks)
    def liquidation_redo(self, pick: int) -> None:
        self._sync()
        pool = self._in_auction()
        if pool:
            self._redo(self._pick(pick, pool))

    def _redo(self, a: FuzzAccount) -> None:
        now = self.now + 1
        st = self.world.accts[a.id]
        _, _, lot, kick, _ = st.auction
        finishes = False
        try:
            if lot == 0:
                raise Predicted("auction: nothing to reset")
            if now > st.deadline:
                raise Predicted("auction: expired, call backstop")
            sc = pm.scan(self._refreshed(a.id, now))
            if healthy(sc):
                finishes = True
            else:
                new = pm.liq_lot_value(lot, sc.notional)
                if not pm.liq_moved(kick, new, self.fs.liquidation["cusp"]):
                    raise Predicted("auction: prices have not moved past the cusp")
            expect = OK
        except Predicted as e:
            expect = exact(str(e.args[0]))
        except pm.Revert as e:
            expect = exact(self._translate(e, now))
        tx = self._tx(
            f"redo {a.label}'s auction",
            self.fs.actors["stranger"],
            "auction",
            "redo",
            a.id,
            expect=expect,
            touched={a.id},
            kind="liquidation",
        )
        if tx.ok and finishes:
            assert tx.events("LiquidationFinished"), "a healthy account was not released"
        elif tx.ok:
            # the discount clock restarts; the deadline stays where the tranche opened it
            assert self.world.accts[a.id].deadline == st.deadline, "redo moved the deadline"

    # --- teardown: close everything, withdraw everything ----------------------------------------

    # liquidations need an account under maintenance at both prices: weight the move
    adverse_move_2 = adverse_move
    adverse_move_3 = adverse_move

    def teardown(self) -> None:
        from ape import chain as ape_chain

        try:
            # a rule failed: leave its error alone, just restore the chain
            if sys.exc_info()[0] is None:
                self._wind_down()
        finally:
            ape_chain.restore(self.snapshot_id)

    def _heal_oracle(self) -> None:
        """Sequencer up past its grace period, every feed fresh at its market's price."""
        seq_started = self.now - self.fs.grace - 1
        self._plain(
            self.fs.actors["keeper"],
            self.fs.h["seq"],
            "set_round_data",
            0,
            seq_started,
            self.now + 1,
        )
        self.oracle.seq_answer, self.oracle.seq_started = 0, seq_started
        for m in range(len(self.fs.feeds)):
            self._post(m)
        self._refresh(list(range(len(self.fs.params))))

    def _wait(self, seconds: int) -> None:
        self.now += seconds
        self._heal_oracle()

    def _drive_liquidations(self) -> None:
        """Every running liquidation to its end: keepers take whole lots (the backstop
        when they cannot), steps after each cooldown."""
        p = self.fs.liquidation
        for _ in range(40):
            self._sync()
            pool = self._in_auction()
            if not pool:
                return
            a = pool[0]
            _, started, lot, _, _ = self.world.accts[a.id].auction
            if lot == 0:
                if self.now + 1 < started + p["cooldown"]:
                    self._wait(p["cooldown"])
                self._step(a, self._other_keeper(a.id))
                continue
            if self.now + 1 > self.world.accts[a.id].deadline:
                self._backstop(a)
                continue
            before = self.world.accts[a.id].auction
            self._take(a, self._other_keeper(a.id), WAD)
            if self.world.accts[a.id].auction == before:  # the keeper could not take it
                self._wait(p["duration"] + 1)
        raise AssertionError("teardown: liquidations did not end in 40 steps")

    def _close_plan(self, a: FuzzAccount) -> list[tuple[int, int, pm.TradeResult]] | None:
        """An order of closes the model accepts that leaves the account solvent, or None."""
        s = self.world.accts[a.id]
        legs = [m for m in range(len(self.fs.params)) if s.pos[m].size]
        for order in itertools.permutations(legs):
            snap = self._snap(self.world, a.id, self.now + 1)
            plan = []
            for i, m in enumerate(order):
                size = snap.position(m).size
                res = self._simulate(snap, m, -size, self.now + 1 + i, None)
                if isinstance(res, str):
                    break
                plan.append((m, -size, res))
                snap = replace(res.after, timestamp=self.now + 2 + i)
            else:
                if pm.scan(snap).equity >= 0:
                    return plan
        return None

    def _close_with_adl(self, a: FuzzAccount) -> bool:
        """A leg whose plain close the model refuses only by the vault exposure cap (two
        accounts on opposite sides, each close raising |skew|: neither closes alone) goes
        through `close_with_adl` (modules/vault_limits.vy, finding F2), paired with an
        account on the new skew's side, as a real owner would. True when a leg closed."""
        s = self.world.accts[a.id]
        now = self.now + 1
        for m in range(len(self.fs.params)):
            size = s.pos[m].size
            if not size:
                continue
            pred = self._simulate(self._snap(self.world, a.id, now), m, -size, now, None)
            if pred != VAULT_CAP_REACHED:
                continue
            lo, sh = self.world.oi[m]
            new_skew = lo - sh - size
            sides = [
                b
                for b in self.accounts
                if b.id != a.id
                and not self.world.accts[b.id].in_liquidation
                and (self.world.accts[b.id].pos[m].size > 0) == (new_skew > 0)
                and self.world.accts[b.id].pos[m].size != 0
            ]
            sides.sort(key=lambda b: -abs(self.world.accts[b.id].pos[m].size))
            for b in sides:
                b_size = self.world.accts[b.id].pos[m].size
                tx = self._tx(
                    f"teardown: {a.label} closes market {m} with the ADL of {b.label}",
                    a.owner,
                    "risk",
                    "close_with_adl",
                    a.id,
                    m,
                    -size,
                    0 if size > 0 else MAX_U,
                    b.id,
                    # a portfolio target the ADL would leave liquidatable is refused
                    expect=loose("clearinghouse: adl would leave the account liquidatable"),
                    touched={a.id, b.id},
                )
                if not tx.ok:
                    continue
                adl = tx.events("AutoDeleveraged")
                assert len(adl) == 1, f"one paired ADL expected, got {adl}"
                ev = adl[0]
                assert (ev["account"], ev["market"], ev["reason"]) == (b.id, m, 3), ev
                d = ev["size_delta"]
                assert d != 0 and (d > 0) != (b_size > 0) and abs(d) <= abs(b_size), (
                    f"paired ADL of {d} against a position of {b_size}"
                )
                assert self.world.accts[b.id].pos[m].size == b_size + d, "ADL target size"
                fills = [f for f in tx.events("Fill") if f["account"] == a.id]
                assert len(fills) == 1 and fills[0]["size_delta"] == -size, fills
                assert self.world.accts[a.id].pos[m].size == 0, "close_with_adl left a rest"
                return True
        return False

    def _close_positions(self) -> bool:
        """Owners close what they can without leaving a deficit; the rest is put under
        liquidation. True when a liquidation must wait for the time-weighted price."""
        wait = False
        for a in self.accounts:
            self._sync()
            s = self.world.accts[a.id]
            if not s.has_positions or s.in_liquidation:
                continue
            plan = self._close_plan(a)
            if plan is None and self._close_with_adl(a):
                continue  # one leg closed; the next round plans the rest
            if plan is None:
                tx = self._start(a, self._other_keeper(a.id))
                if not tx.ok:
                    wait = True
                continue
            for m, delta, _ in plan:
                now = self.now + 1
                pred = self._simulate(self._snap(self.world, a.id, now), m, delta, now, None)
                assert not isinstance(pred, str), f"teardown close refused: {pred}"
                tx = self._tx(
                    f"teardown: {a.label} closes market {m}",
                    a.owner,
                    "ch",
                    "trade",
                    a.id,
                    m,
                    delta,
                    0 if delta < 0 else MAX_U,
                    touched={a.id},
                )
                self._check_fill(tx, a.id, m, delta, pred)
        return wait

    def _wind_down(self) -> None:
        fs = self.fs
        self._heal_oracle()
        for _ in range(10):
            self._drive_liquidations()
            wait = self._close_positions()
            self._sync()
            if not any(s.has_positions or s.in_liquidation for s in self.world.accts.values()):
                break
            if wait:  # the time-weighted price catches up with the feeds
                self._wait(max(self.oracle.twap_windows) + 1)
        else:
            raise AssertionError("teardown: positions left after ten rounds of closing")
        # withdraw every balance
        for a in self.accounts:
            s = self.world.accts[a.id]
            if s.loss_cap:  # a floor keeps value in (accounts._check_value_out): clear it
                self._tx(
                    f"teardown: {a.label} clears its loss cap",
                    a.owner,
                    "ops",
                    "set_loss_cap",
                    a.id,
                    0,
                    touched={a.id},
                )
                s = self.world.accts[a.id]
            if s.bal[0] < 0:  # a settlement debt the WETH backs: the owner repays it first
                repay = -(s.bal[0] // fs.scale)  # rounded up to whole token units
                self._mint(a.owner, repay)
                self._tx(
                    f"teardown: {a.label} repays {repay} units",
                    a.owner,
                    "ops",
                    "deposit",
                    a.id,
                    fs.h["token"].address,
                    repay,
                    touched={a.id},
                )
                s = self.world.accts[a.id]
            if s.bal[1]:
                self._tx(
                    f"teardown: {a.label} withdraws WETH",
                    a.owner,
                    "ops",
                    "withdraw",
                    a.id,
                    fs.h["weth"].address,
                    s.bal[1],
                    a.owner,
                    touched={a.id},
                )
            units = s.bal[0] // fs.scale
            if units > 0:
                self._tx(
                    f"teardown: {a.label} withdraws {units} units",
                    a.owner,
                    "ops",
                    "withdraw",
                    a.id,
                    fs.h["token"].address,
                    units,
                    a.owner,
                    touched={a.id},
                )
        if self.world.seized:
            # nothing is stuck: the WETH the pool bought at bad-debt settlement is sold
            # (at the mark less half the haircut), so the LPs can leave in cash
            buyer, amount = self.fs.actors["stranger"], self.world.seized
            price = self.world.marks[fs.collateral_market].price
            unit = -(-price * (2 * WAD - fs.haircut) // (2 * WAD))
            units = -(-amount * unit // (WAD * fs.scale))
            self._mint(buyer, units)
            self._tx(
                f"teardown: stranger buys the pool's {amount} WETH",
                buyer,
                "admin",
                "buy_collateral",
                1,
                amount,
                MAX_U,
            )
        for pick in (0, 1):
            lp = self._lp(pick)
            if self.world.shares[lp]:
                self.lp_redeem(pick, BPS, False)
        if self.world.protocol_fees >= fs.scale:
            self.withdraw_protocol_fees()
        self._final_checks()

    def _final_checks(self) -> None:
        fs, w, w0, led = self.fs, self.world, self.start, self.ledger
        for a in self.accounts:
            s = w.accts[a.id]
            assert not s.has_positions and s.bal[1] == 0, f"teardown: {a.label} not emptied"
            assert 0 <= s.bal[0] < fs.scale, f"teardown: {a.label} keeps {s.bal[0]} wei"
        assert w.supply == 0, "teardown: LP shares left"
        assert w.oi == ((0, 0),) * len(fs.params), "teardown: open interest left"
        assert all(sc == 0 for sc, _ in w.sums), "teardown: a cost sum left"
        # what stays: insurance, fees, the last LP's withdrawal fee, seized WETH and dust
        dust = sum(s.bal[0] for s in w.accts.values())
        assert w.pool_cash >= 0, "teardown: the pool ends in debt"
        # the funding-snapshot sums round up at every fill, so with no position left they
        # hold the rounding the vault never booked as receivable: < 1 wei per fill, kept
        funding_dust = sum(sf for _, sf in w.sums)
        assert 0 <= funding_dust <= led.fills, (
            f"teardown: funding sums left {funding_dust} wei after {led.fills} fills"
        )
        allowed = (self.lp_fee_last + self.lp_virtual_last + 1) * fs.scale + funding_dust
        assert w.pool_cash <= allowed, (
            f"teardown: the pool keeps {w.pool_cash} wei with no LP left (last fee "
            f"{self.lp_fee_last} units, virtual shares' claim {self.lp_virtual_last} units, "
            f"funding dust {funding_dust} wei)"
        )
        held = (w.token_ch - self.donated["ch"]) * fs.scale
        assert held == dust + w.pool_cash + w.insurance + w.protocol_fees, "teardown: tokens"
        assert w.protocol_fees < fs.scale
        # no user got out more than deposits plus realised PnL
        for role in ("trader", "hedger", "liquidator", "keeper"):
            who = fs.actors[role]
            got = (w.tokens[who] - w0.tokens[who] - self.minted.get(who, 0)) * fs.scale
            got_back_in = sum(w0.accts[a.id].bal[0] for a in self.accounts if a.owner == who)
            realised = sum(led.flows[a.id] for a in self.accounts if a.owner == who)
            left = sum(w.accts[a.id].bal[0] for a in self.accounts if a.owner == who)
            assert got == got_back_in + realised - left, f"teardown: {role} token flows"
            assert got <= got_back_in + realised, f"teardown: {role} got out more than it made"
        # the LPs' wallets moved exactly as the pool's cash did through the vault
        lps = [fs.actors["lp"], fs.actors["lp2"]]
        lp_got = sum(w.tokens[x] - w0.tokens[x] - self.minted.get(x, 0) for x in lps) * fs.scale
        assert lp_got == -led.vault_net, (
            f"teardown: LPs got {lp_got}, the pool paid {-led.vault_net}"
        )
        note(
            f"teardown: {self.tx_count} txs, insurance {w.insurance / WAD:.2f}, pool left "
            f"{w.pool_cash / WAD:.6f}, dust {dust} wei, bad debt {led.bad_debt / WAD:.2f} "
            f"(socialised {led.socialized / WAD:.2f}), max conservation slack {self.max_slack}, "
            f"zero-sum gap max {max(self.zero_sum_gap)} wei"
        )


# --- the tests ------------------------------------------------------------------------------------
