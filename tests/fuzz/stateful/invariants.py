"""The invariants of the stateful fuzz, one method per invariant of docs/invariants.md
(`_inv_<name>`, numbered as there), and `_check_world`, the list of those a world read
can show, run after every transaction.

Part of the split of the system machine (tests/fuzz/stateful/): `Invariants` is a mixin
of `SystemMachine` (machine.py), which calls `_check_world` from `_tx` and the per-action
checks (`_inv_healthy_after_risk`, `_inv_oracle_safety`, `_inv_price_quorum`,
`_inv_liquidation_only_when_due`) from its rules. The checks read `World`s (world.py),
value them with the ledger's valuations (ledger.py) and price with the oracle model
(oracle_model.py). Every method only asserts (and keeps the figures the teardown note
reports); none sends a transaction.

Invariants checked elsewhere: 7 (oracle safety) and 12 (liquidation only when due) also
through every predicted outcome in machine.py (a risk-adding action or a liquidation step
the model refuses must revert with the model's reason); 9's reentrancy locks by
`test_reentrancy_locks_are_transient` (test_system.py); 10 (solvency) is 1 and 2 together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from perpdex.constants import BPS, WAD
from perpdex.sdk import math as pm

from ..conftest import RpcError, TxResult
from .ledger import equity_settlement, seized_value, vault_equity
from .oracle_model import DEGRADED, ORACLE_REASONS
from .world import POOL, World, WorldView, healthy


def price_lt(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Share price a < b, prices as (assets + 1, supply + virtual shares)."""
    return a[0] * b[1] < b[0] * a[1]


class Invariants(WorldView):
    """The invariant checks, mixed into `SystemMachine`, whose `__init__` sets these."""

    now: int
    donated: dict[str, int]
    tx_count: int
    max_slack: int
    zero_sum_gap: list[int]
    provisions: dict[int, int]
    last_explained: int
    offset: int

    def _check_world(
        self,
        before: World,
        after: World,
        tx: TxResult | None,
        touched: set[int],
        kind: str,
        what: str,
    ) -> None:
        """Every invariant a world read shows, after `tx` (None: the state the machine
        starts from, with nothing to compare against). `touched`: the accounts the
        action names; `kind`: "action", "risk", "lp", "donation", "liquidation",
        "market"; `what`: the step, for failure messages."""
        self._inv_conservation(after, what)  # 1
        self._inv_bad_debt_provision(after, tx, what)  # 4b
        self._inv_open_interest(after, what)  # 3
        self._inv_no_silent_negative_equity(after, what)  # 4
        if tx is not None:
            self._inv_isolation(before, after, touched, what)  # 9
            self._inv_healthy_after_action(before, after, tx, touched, what)  # 5
            self._inv_share_price(before, after, tx, kind, what)  # 6
            self._inv_once_only(before, after, tx, what)  # 8
        self._inv_zero_sum(after, what)  # 2

    # --- 1. conservation (with 2: 10. solvency) ---------------------------------------------------

    def _inv_conservation(self, w: World, what: str) -> None:
        """1. Settlement tokens held (x scale, less donations) cover the accounts'
        balances, pool cash, insurance and protocol fees, with at most one wei of slack
        per transaction; WETH held equals balances plus what the pool bought;
        `collateral_held` matches; the vault holds only donations and leaves no
        allowance; the lens's vault equity and totalAssets match the mirror's."""
        fs = self.fs
        claims = sum(s.bal[0] for s in w.accts.values()) + w.pool_cash + w.insurance
        claims += w.protocol_fees
        assets = (w.token_ch - self.donated["ch"]) * fs.scale
        slack = assets - claims
        assert slack >= 0, f"{what}: Clearinghouse short of tokens by {-slack} wei (USD WAD)"
        assert slack <= self.tx_count, f"{what}: {slack} wei unaccounted after {self.tx_count} txs"
        self.max_slack = max(self.max_slack, slack)
        assert w.held[0] == w.token_ch - self.donated["ch"], f"{what}: collateral_held[0]"
        weth_claims = sum(s.bal[1] for s in w.accts.values()) + w.seized
        assert w.weth_ch - self.donated["weth"] == weth_claims == w.held[1], f"{what}: WETH"
        assert w.token_vault == self.donated["vault"], f"{what}: vault holds stray tokens"
        assert w.vault_allowance == 0, f"{what}: vault left an allowance to the Clearinghouse"
        vault_eq = vault_equity(fs, w)
        assert vault_eq == w.vault_equity, f"{what}: lens vault equity {w.vault_equity}"
        assert w.total_assets == max(vault_eq, 0) // fs.scale, f"{what}: totalAssets"

    # --- 2. zero sum ----------------------------------------------------------------------------

    def _inv_zero_sum(self, w: World, what: str) -> None:
        """2. Zero-sum: trader PnL + vault PnL + fees sum to zero, and funding paid equals
        funding received, every rounding kept by the protocol. Per market, the vault's
        view (ClearinghouseLens.vault_equity, from the pool's running sums) against the
        sum of every account's own view (the mirror of the engine's scan):

        (a) the traders' unrealised PnL the vault books (skew x mark - cost sum) is at
            least what the accounts themselves show (each rounded down);
        (b) the funding the vault books as receivable (skew x index - funding sum) is at
            most what the accounts owe (each rounded up).

        Then overall: every claim (accounts, vault, insurance, protocol fees) is covered
        by the tokens held, the surplus (rounding kept) growing by at most a few wei per
        position and one per transaction."""
        fs = self.fs
        for m in range(len(fs.params)):
            lo, sh = w.oi[m]
            sc, sf = w.sums[m]
            mk = w.marks[m]
            pnl = owed = 0
            for s in w.accts.values():
                p = s.pos[m]
                if p.size:
                    pnl += pm.value_pnl(p.size, p.cost, mk.price)
                    owed += pm.funding_owed(p.size, pm.funding_delta(p.snapshot, mk.index))
            if lo == sh == sc == sf == 0:
                continue
            vault_pnl = pm.vdiv((lo - sh) * mk.price, WAD) - sc
            vault_owed = pm.div_floor((lo - sh) * mk.index, 10**12) - sf
            assert vault_pnl >= pnl, (
                f"{what}: market {m}: the vault books traders' PnL {vault_pnl}, below the "
                f"{pnl} the accounts show: it overvalues itself"
            )
            assert vault_owed <= owed, (
                f"{what}: market {m}: the vault books {vault_owed} wei of funding receivable, "
                f"the accounts owe {owed} (OI {w.oi[m]}, pool funding sum {sf}): funding "
                "received would exceed funding paid (pool_sums rounding)"
            )
        assets = (w.token_ch - self.donated["ch"]) * fs.scale
        # vault equity counts the WETH the pool bought at bad-debt settlement (at the mark
        # less the haircut): those are WETH tokens, not settlement tokens
        assets += seized_value(fs, w)
        eq_sum = sum(equity_settlement(w, a) for a in w.accts)
        # the lens takes the provisioned bad debt off vault equity; eq_sum already counts
        # those accounts' negative equity, so add it back to count the deficit once
        pool = w.vault_equity + max(w.provision - w.insurance, 0)
        gap = assets - (eq_sum + pool + w.insurance + w.protocol_fees)
        self.zero_sum_gap.append(gap)
        n_pos = sum(1 for s in w.accts.values() for p in s.pos if p.size)
        assert gap >= 0, f"{what}: claims exceed the tokens held by {-gap} wei"
        assert gap <= 3 * n_pos + self.tx_count, f"{what}: {gap} wei of PnL unaccounted"

    # --- 3. open interest ----------------------------------------------------------------------

    def _inv_open_interest(self, w: World, what: str) -> None:
        """3. Per market, long and short OI equal the sums over every position, within
        the cap; the pool's cost sum equals the positions' costs."""
        fs = self.fs
        n_m = len(fs.params)
        for m in range(n_m):
            lo = sum(s.pos[m].size for s in w.accts.values() if s.pos[m].size > 0)
            sh = sum(-s.pos[m].size for s in w.accts.values() if s.pos[m].size < 0)
            assert w.oi[m] == (lo, sh), f"{what}: market {m} OI {w.oi[m]} != positions {lo, sh}"
            cap = fs.params[m].max_oi
            assert lo <= cap and sh <= cap, f"{what}: market {m} OI {w.oi[m]} above cap {cap}"
            cost = sum(s.pos[m].cost for s in w.accts.values())
            assert w.sums[m][0] == cost, f"{what}: market {m} pool cost sum"

    # --- 4. no silent negative equity ------------------------------------------------------------

    def _inv_bad_debt_provision(self, w: World, tx: TxResult | None, what: str) -> None:
        """4b. Bad-debt provision: only an account under liquidation carries one; each
        liquidation step records its deficit, max(0, -equity) at the step's fresh marks."""
        fs = self.fs
        last: dict[int, int] = {}
        for e in tx.events("BadDebtProvisioned") if tx is not None else []:
            last[int(e["account"])] = int(e["provision"])
            self.provisions[int(e["account"])] = int(e["provision"])
            assert int(e["total"]) == sum(self.provisions.values()), f"{what}: provision total"
        assert w.provision == sum(self.provisions.values()), f"{what}: provision {w.provision}"
        for acct, amount in self.provisions.items():
            s = w.accts[acct]
            assert amount == 0 or s.in_liquidation, f"{what}: provision left after liquidation"
            if acct in last and s.in_liquidation:
                assert amount == max(-s.margin.equity, 0), (
                    f"{what}: {fs.label(acct)} provision {amount}, equity {s.margin.equity}"
                )

    def _inv_no_silent_negative_equity(self, w: World, what: str) -> None:
        """4. An account without positions never has negative equity (no liquidation
        could ever settle it); one with positions and negative equity can be put under
        liquidation now; the auction and the Clearinghouse agree on every lock."""
        fs = self.fs
        for acct, s in w.accts.items():
            assert s.in_liquidation == s.auction[0], (
                f"{what}: {fs.label(acct)} lock {s.in_liquidation} but auction {s.auction}"
            )
            if not s.has_positions and not s.in_liquidation:
                assert s.margin.equity >= 0, (
                    f"{what}: {fs.label(acct)} has no positions and equity "
                    f"{s.margin.equity}: bad debt that no liquidation can ever settle"
                )
            if s.has_positions and s.margin.equity < 0 and not s.in_liquidation:
                self._must_be_liquidatable(acct, what)

    def _must_be_liquidatable(self, acct: int, what: str) -> None:
        """An account with positions and negative equity can be put under liquidation now
        (dry run of `start`); only the time-weighted guard or a missing price may delay it."""
        fs = self.fs
        keeper = fs.actors["liquidator"]
        k_acct = fs.keeper_account[keeper]
        if k_acct == acct:
            keeper = fs.actors["keeper"]
            k_acct = fs.keeper_account[keeper]
        try:
            fs.chain.call(fs.h["auction"], "start", acct, k_acct, sender=keeper)
        except RpcError as e:
            ok = ["healthy at the time-weighted price", *ORACLE_REASONS]
            # `start` re-reads the oracle: at prices the cached marks have not caught up
            # with, the account may really be healthy (its negative equity was at stale
            # marks, not a debt)
            w, now = self.world, self.now + 1
            held = [m for m, p in enumerate(w.accts[acct].pos) if p.size]
            if any(self.oracle.read(m, now)[0] != w.marks[m].price for m in held):
                ok.append("auction: account is healthy")
            assert any(r in str(e) for r in ok), (
                f"{what}: {fs.label(acct)} has negative equity and cannot be liquidated: {e}"
            )

    # --- 5. healthy after action -----------------------------------------------------------------

    def _inv_healthy_after_action(
        self, before: World, w: World, tx: TxResult, touched: set[int], what: str
    ) -> None:
        """5. No action but a liquidation takes a healthy account below maintenance,
        compared at the same (new) marks so that price moves are set apart."""
        fs = self.fs
        liquidated = {int(a["account"]) for a in tx.events("LiquidationTransfer")}
        for acct in touched:
            b, s = before.accts[acct], w.accts[acct]
            if (b.bal, b.pos, b.header) == (s.bal, s.pos, s.header) or acct in liquidated:
                continue
            at_new_marks = pm.scan(
                replace(self._snap(before, acct, w.ts), markets=self._markets_of(w))
            )
            if healthy(at_new_marks) and not healthy(s.margin):
                raise AssertionError(
                    f"{what}: {fs.label(acct)} healthy before ({at_new_marks}) and unhealthy "
                    f"after ({s.margin}) at the same marks, without liquidation"
                )

    def _inv_healthy_after_risk(self, acct: int, what: str) -> None:
        """5. A risk-adding action leaves its account at or above initial margin, and 7.
        every market it holds had a valid price."""
        s = self.world.accts[acct]
        assert s.margin.equity >= s.margin.initial, (
            f"{what}: {self.fs.label(acct)} below initial margin after it: {s.margin}"
        )
        # a margin switch without positions changes no requirement: no price involved
        if s.has_positions or (s.bal[1] and what != "margin mode switch"):
            held = [
                m
                for m in range(len(self.fs.params))
                if (pm.positions_bitmap(s.header) >> m) & 1 or (m == 1 and s.bal[1])
            ]
            self._inv_oracle_safety(held, self.now, f"{what} succeeded")

    # --- 6. share price -----------------------------------------------------------------------

    def _inv_share_price(self, before: World, w: World, tx: TxResult, kind: str, what: str) -> None:
        """6. Donations never move vault equity, totalAssets, supply or pool cash; LP
        actions never lower the share price; otherwise the price moves only as
        `_share_price_explained` allows."""
        p_before = (before.total_assets + 1, before.supply + self.offset)
        p_after = (w.total_assets + 1, w.supply + self.offset)
        if kind == "donation":
            assert (w.vault_equity, w.total_assets, w.supply, w.pool_cash) == (
                before.vault_equity,
                before.total_assets,
                before.supply,
                before.pool_cash,
            ), f"{what}: a donation moved the vault"
        if kind == "lp":
            assert not price_lt(p_after, p_before), f"{what}: an LP action lowered share price"
        if kind != "donation":
            self._share_price_explained(before, w, tx, what)

    def _explained_equity(self, before: World, after: World, tx: TxResult) -> int:
        """Vault equity (USD WAD) after `tx` as trader PnL, funding and fees explain it:
        the book as it was before, valued at the marks after (price moves and funding
        accrued), plus what each fill against the pool moved from the trader to the
        vault at that mark (skew premium, liquidation discount: size x (price - mark))
        and the vault's share of its fee. Rounded down by a few wei per fill."""
        fs = self.fs
        ref = vault_equity(fs, replace(before, marks=after.marks))
        keep = BPS - fs.system.insurance_bps - fs.system.protocol_bps
        for f in tx.events("Fill"):
            if f["counterparty"] != POOL:
                continue  # account to account: the pool's books net to zero
            mark = after.marks[f["market"]].price
            ref += pm.div_floor(f["size_delta"] * (f["price"] - mark), WAD) - 2
            ref += f["fee"] * keep // BPS - 2
        return ref

    def _share_price_explained(self, before: World, w: World, tx: TxResult, what: str) -> None:
        """6. The share price moves only with trader PnL against the vault, fees and
        funding (`_explained_equity`), and falls beyond that only in a step that
        socialised a loss: by at most what it socialised (BadDebtSettled) plus what a
        liquidation step newly provisioned beyond insurance (BadDebtProvisioned). Per
        share, so LP deposits and redemptions (shares priced at the fresh marks) are held
        to it too. Rounding: a few wei per fill and market."""
        fs = self.fs
        ref = self._explained_equity(before, w, tx)
        self.last_explained = ref - vault_equity(fs, before)
        allowed = 0
        if tx.events("BadDebtSettled") or tx.events("BadDebtProvisioned"):
            uncovered_before = max(before.provision - before.insurance, 0)
            uncovered_after = max(w.provision - w.insurance, 0)
            allowed = sum(e["socialized"] for e in tx.events("BadDebtSettled"))
            allowed += max(uncovered_after - uncovered_before, 0)
        tol = 2 * len(fs.params) + 2
        floor = ref - allowed - tol
        p_ref = (max(floor, 0) // fs.scale + 1, before.supply + self.offset)
        p_after = (w.total_assets + 1, w.supply + self.offset)
        if w.supply == before.supply:
            # same shares: compare equity to the wei, not only the token-unit share price
            assert w.vault_equity >= floor, (
                f"{what}: vault equity {w.vault_equity} fell {floor - w.vault_equity} wei "
                f"below what trader PnL, funding and fees explain ({ref}; socialised or "
                f"provisioned {allowed})"
            )
        assert not price_lt(p_after, p_ref), (
            f"{what}: share price {p_after} below {p_ref}, what trader PnL, funding and "
            f"fees explain (socialised or provisioned {allowed})"
        )

    # --- 7. oracle safety, 11. price quorum ------------------------------------------------------

    def _inv_oracle_safety(self, markets: Iterable[int], at: int, what: str) -> None:
        """7. Every market a risk-adding action priced had a valid price in the oracle
        model at `at`: quorum, sequencer up past its grace period (no flag)."""
        for m in markets:
            flags = self.oracle.read(m, at)[1]
            assert flags == 0, f"{what} with market {m} priced at flags {flags}"

    def _inv_price_quorum(self, tx: TxResult) -> None:
        """11. A mark is cached and a fill (market order, close, liquidation transfer)
        happens only where the oracle model has quorum at the transaction; a market
        without one is frozen (MarketFrozen), and resumes only with it back."""
        ch = self.fs.h["ch"].address
        for lg in tx.logs:
            if lg.address != ch:
                continue
            if lg.name in ("Fill", "MarkUpdated", "MarketFrozen", "MarketResumed"):
                m = int(lg.args["market"])
                quorum = self.oracle.read(m, tx.timestamp)[1] & DEGRADED == 0
                assert quorum == (lg.name != "MarketFrozen"), (
                    f"{lg.name} in market {m} with oracle quorum {quorum}"
                )

    # --- 8. once only -------------------------------------------------------------------------

    def _inv_once_only(self, before: World, w: World, tx: TxResult, what: str) -> None:
        """8. One reward per tranche, capped by `keeper_cap`, the account's equity and its
        share of the maintenance the tranche frees; tranches numbered in order; a loss
        cap fires once, shrinks every position toward zero, its fee at most
        `loss_cap_fee`."""
        fs = self.fs
        opened = tx.events("TrancheOpened")
        rewards = tx.events("LiquidationBegun") + tx.events("LiquidationRewardPaid")
        assert len(opened) == len(rewards), (
            f"{what}: {len(opened)} tranches, {len(rewards)} rewards"
        )
        for t, r in zip(opened, rewards, strict=True):
            assert (t["account"], t["reward"]) == (r["account"], r["reward"]), f"{what}: reward"
            assert t["reward"] <= fs.liquidation["keeper_cap"], f"{what}: reward above cap"
            assert t["reward"] <= max(t["equity"], 0), f"{what}: reward above equity"
            assert (
                t["reward"] <= t["maintenance"] * t["fraction"] // WAD * pm.LIQ_REWARD_SHARE // WAD
            ), f"{what}: reward above its share of the maintenance the tranche frees"
            prev = before.accts[t["account"]].auction
            want_step = 1 if not prev[0] else prev[4] + 1
            assert t["step"] == want_step, f"{what}: tranche {t['step']} after {prev}"
        for e in tx.events("LossCapTriggered"):
            acct = int(e["account"])
            # every position shrinks toward zero (the window may leave part of it open)
            b_pos, a_pos = before.accts[acct].pos, w.accts[acct].pos
            assert before.accts[acct].has_positions, f"{what}: loss cap without positions"
            assert all(
                abs(x.size) <= abs(y.size) and x.size * y.size >= 0
                for x, y in zip(a_pos, b_pos, strict=True)
            ), f"{what}: loss cap added risk"
            assert any(x.size != y.size for x, y in zip(a_pos, b_pos, strict=True))
            assert e["fee"] <= fs.config.loss_cap_fee, f"{what}: loss-cap fee above the fee"

    # --- 9. isolation -------------------------------------------------------------------------

    def _inv_isolation(self, before: World, w: World, touched: set[int], what: str) -> None:
        """9. A transaction changes only the accounts it names (the owner's transfers
        name both). The locks: `test_reentrancy_locks_are_transient`."""
        fs = self.fs
        for acct, s in w.accts.items():
            b = before.accts[acct]
            if acct not in touched:
                assert (s.header, s.bal, s.pos, s.loss_cap) == (
                    b.header,
                    b.bal,
                    b.pos,
                    b.loss_cap,
                ), f"{what}: {fs.label(acct)} changed though the action does not name it"

    # --- 12. liquidation only when due ------------------------------------------------------------

    def _inv_liquidation_only_when_due(self, tx: TxResult, acct: int) -> None:
        """12. After a take or backstop, the account stays locked only while it is still
        due (unhealthy); a finished liquidation leaves it unlocked and healthy. (That
        each step started only when due is the predicted outcome of every step.)"""
        s = self.world.accts[acct]
        if tx.events("LiquidationFinished"):
            assert not s.in_liquidation, "finished but still locked"
            assert s.healthy(), "finished but still unhealthy"
        else:
            assert not s.healthy(), "a take left a healthy account locked (Clipper)"
        if not tx.events("LiquidationFinished") and s.auction[2] == 0:
            assert s.auction[0] and s.auction[1] == tx.timestamp, f"tranche sold: {s.auction}"
            assert not s.healthy(), "a healthy account left locked after its tranche"
