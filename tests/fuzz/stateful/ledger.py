"""The ledger of the stateful fuzz: the off-chain expected state. `Ledger` rebuilds every
balance, position, open interest, pool sum and bucket from the events alone and must
equal the chain after each transaction; the functions below value a `World` as the
engine and ClearinghouseLens do (account equity in settlement terms, the pool's seized
WETH, vault equity).

Part of the split of the system machine (tests/fuzz/stateful/): `machine.py` feeds every
successful transaction to `Ledger.apply` and calls `Ledger.compare`; the invariants
(`invariants.py`) and the LP rules use the valuations; the mark each MarkUpdated event
must carry comes from the oracle model (`oracle_model.py`); `World` is `world.py`'s.
"""

from __future__ import annotations

from typing import Any

from perpdex.constants import WAD
from perpdex.sdk import math as pm

from ..conftest import FuzzSystem, TxResult
from .oracle_model import OracleModel
from .world import World


class Ledger:
    """Every balance, position and bucket, rebuilt from events alone (module doc)."""

    def __init__(self, fs: FuzzSystem, w: World) -> None:
        self.fs = fs
        sysw = fs.system
        ins, proto, vault_part = pm.fee_split(w.pending, sysw)
        self.bal = {a: list(s.bal) for a, s in w.accts.items()}
        self.pos = {a: list(s.pos) for a, s in w.accts.items()}
        self.oi = [list(x) for x in w.oi]
        self.sums = [list(x) for x in w.sums]
        self.marks = list(w.marks)
        self.raw_cash = w.pool_cash - vault_part
        self.pending = w.pending
        self.insurance = w.insurance - ins
        self.protocol = w.protocol_fees - proto
        self.seized = w.seized
        self.held = list(w.held)
        # per account: settlement cash from trading and liquidation (not deposits,
        # withdrawals or transfers), USD WAD
        self.flows: dict[int, int] = dict.fromkeys(w.accts, 0)
        self.socialized = 0
        self.bad_debt = 0
        self.vault_net = 0  # LP cash into the pool less LP cash out (USD WAD)
        self.fills = 0  # fills replayed (each may leave the pool < 1 wei of funding dust)

    def _idx(self, token: str) -> int:
        t = token.lower()
        if t == self.fs.h["token"].address:
            return 0
        assert t == self.fs.h["weth"].address, f"event for unknown token {token}"
        return 1

    def _scale(self, idx: int) -> int:
        return self.fs.scale if idx == 0 else 1

    def _cash(self, acct: int, amount: int) -> None:
        self.bal[acct][0] += amount
        self.flows[acct] += amount

    def apply(self, tx: TxResult, oracle: OracleModel) -> list[str]:
        """Replays the transaction's events; returns what it saw (for the step log). Each
        MarkUpdated must carry the oracle model's price (that the market had quorum at
        all is invariant 11, `Invariants._inv_price_quorum`, checked before this)."""
        fs = self.fs
        ch = fs.h["ch"].address
        seen: list[str] = []
        for lg in tx.logs:
            a = lg.args
            if lg.address != ch:
                continue
            name = lg.name
            seen.append(name)
            if name == "MarkUpdated":
                m = int(a["market"])
                model = oracle.read(m, tx.timestamp)[0]
                assert a["price"] == model, f"mark of {m} = {a['price']}, oracle model {model}"
                skew = self.oi[m][0] - self.oi[m][1]
                want = pm.touch(self.marks[m], fs.params[m], skew, model, tx.timestamp)
                # the event carries the rate before the mark word truncates it to 1e-15
                # per day (marks._touch_with logs `rate`, stores pack_mark(rate))
                rate = int(a["funding_rate"])
                stored = pm.vdiv(rate, pm.FEMTO_PER_WAD) * pm.FEMTO_PER_WAD
                got = pm.Mark(int(a["price"]), tx.timestamp, int(a["funding_index"]), stored)
                assert got == want, f"market {m} mark {got} != funding mirror {want}"
                self.marks[m] = got
            elif name == "Fill":
                self._fill(a)
            elif name == "Deposit":
                i = self._idx(a["token"])
                assert a["credited"] == a["amount"] * self._scale(i), f"deposit credit {a}"
                self.bal[a["account"]][i] += a["credited"]
                self.held[i] += a["amount"]
            elif name == "Withdraw":
                i = self._idx(a["token"])
                self.bal[a["account"]][i] -= a["amount"] * self._scale(i)
                self.held[i] -= a["amount"]
            elif name == "CollateralTransferred":
                i = self._idx(a["token"])
                self.bal[a["from_account"]][i] -= a["amount"] * self._scale(i)
                self.bal[a["to_account"]][i] += a["amount"] * self._scale(i)
            elif name == "FeesSwept":
                assert a["amount"] == self.pending, f"swept {a['amount']}, pending {self.pending}"
                ins, proto, vault_part = pm.fee_split(self.pending, fs.system)
                got = (a["to_insurance"], a["to_protocol"], a["to_vault"])
                assert got == (ins, proto, vault_part), f"fee split {got}"
                self.insurance += ins
                self.protocol += proto
                self.raw_cash += vault_part
                self.pending = 0
            elif name == "VaultCashMoved":
                self.raw_cash += a["amount"]
                self.vault_net += a["amount"]
                self.held[0] += a["amount"] // fs.scale
                assert a["pool_cash"] == self.raw_cash, f"VaultCashMoved {a} vs {self.raw_cash}"
            elif name == "InsuranceFunded":
                self.insurance += a["amount"]
                self.held[0] += a["amount"] // fs.scale
                assert a["insurance"] == self.insurance, f"InsuranceFunded {a}"
            elif name == "ProtocolFeesWithdrawn":
                self.protocol -= a["amount"]
                self.held[0] -= a["amount"] // fs.scale
                assert self.protocol >= 0
            elif name in ("LiquidationBegun", "LiquidationRewardPaid"):
                if a["reward"]:
                    self._cash(a["account"], -a["reward"])
                    self._cash(a["keeper_account"], a["reward"])
            elif name == "LiquidationTransfer":
                self._cash(a["account"], -a["penalty"])
                self.insurance += a["penalty"]
            elif name == "DustSwept":  # after its Withdraw: the sub-unit rest of a flat account
                acct = a["account"]
                assert 0 < a["amount"] < fs.scale and self.bal[acct][0] == a["amount"], a
                self._cash(acct, -a["amount"])
                self.protocol += a["amount"]
            elif name == "LossCapTriggered":
                fee = a["fee"]
                self._cash(a["account"], -fee)
                units = fee // fs.scale
                self.protocol += fee - units * fs.scale
                self.held[0] -= units
            elif name == "CollateralSeized":
                # the pool buys just enough at the mark less the haircut (rounded down)
                i, acct = int(a["token_index"]), a["account"]
                held = self.bal[acct][i]
                assert 0 < a["amount"] <= held and self.bal[acct][0] < 0, f"seized {a}"
                m = self.fs.collateral_market
                unit = self.marks[m].price * (WAD - self.fs.haircut) // WAD
                assert a["price"] == unit and a["credit"] == a["amount"] * unit // WAD, a
                debt = -self.bal[acct][0]
                if a["amount"] < held:  # part of it: the least that covers the debt
                    assert a["credit"] >= debt > (a["amount"] - 1) * unit // WAD, a
                self.bal[acct][i] -= a["amount"]
                self.seized += a["amount"]
                self._cash(acct, a["credit"])
                self.raw_cash -= a["credit"]
            elif name == "SeizedCollateralSold":
                m = self.fs.collateral_market
                unit = -(-self.marks[m].price * (2 * WAD - self.fs.haircut) // (2 * WAD))
                units = -(-a["amount"] * unit // (WAD * fs.scale))
                assert (a["price"], a["paid"]) == (unit, units * fs.scale), f"sale {a}"
                assert a["amount"] <= self.seized, f"sold {a}, pool holds {self.seized}"
                self.seized -= a["amount"]
                self.held[1] -= a["amount"]
                self.held[0] += units
                self.raw_cash += a["paid"]
            elif name == "BadDebtSettled":
                acct = a["account"]
                deficit = -self.bal[acct][0]
                assert deficit > 0 and a["deficit"] == deficit, f"bad debt {a}, balance -{deficit}"
                cover = min(deficit, self.insurance)
                assert (a["from_insurance"], a["socialized"]) == (cover, deficit - cover), (
                    f"bad debt split {a}: insurance {self.insurance}"
                )
                self.insurance -= cover
                self.raw_cash -= deficit - cover
                self._cash(acct, deficit)
                self.socialized += deficit - cover
                self.bad_debt += deficit
        return seen

    def _fill(self, a: dict[str, Any]) -> None:
        acct, m = int(a["account"]), int(a["market"])
        self.fills += 1
        old = self.pos[acct][m]
        index = self.marks[m].index
        paid = 0
        old_snap = index
        if old.size != 0:
            d = pm.funding_delta(old.snapshot, index)
            old_snap = index - d
            paid = pm.funding_owed(old.size, d)
        new_size, new_cost, realized = pm.apply_fill(
            old.size, old.cost, a["size_delta"], a["price"]
        )
        got = (a["realized_pnl"], a["funding_paid"], a["size"])
        assert got == (realized, paid, new_size), (
            f"fill {a} on {old}: mirror realised {realized}, funding {paid}, size {new_size}"
        )
        self._cash(acct, realized - paid - a["fee"])
        self.raw_cash -= realized - paid
        self.pending += a["fee"]
        s = self.sums[m]
        s[0] += new_cost - old.cost
        s[1] += pm.div_ceil(new_size * index - old.size * old_snap, 10**12)
        oi = self.oi[m]
        if old.size > 0:
            oi[0] -= old.size
        else:
            oi[1] += old.size
        if new_size > 0:
            oi[0] += new_size
        else:
            oi[1] -= new_size
        self.pos[acct][m] = (
            pm.Position()
            if new_size == 0
            else pm.Position(
                new_size, new_cost, pm.pos_snapshot(pm.pack_pos(new_size, new_cost, index))
            )
        )

    def compare(self, w: World) -> None:
        """The ledger equals the chain: every balance, position, sum and bucket."""
        for acct, sa in w.accts.items():
            assert tuple(self.bal[acct]) == sa.bal, (
                f"{self.fs.label(acct)} balances {sa.bal}, events say {tuple(self.bal[acct])}"
            )
            assert tuple(self.pos[acct]) == sa.pos, (
                f"{self.fs.label(acct)} positions {sa.pos}, events say {tuple(self.pos[acct])}"
            )
        assert tuple(tuple(x) for x in self.oi) == w.oi, f"open interest {w.oi} vs {self.oi}"
        assert tuple(tuple(x) for x in self.sums) == w.sums, f"pool sums {w.sums} vs {self.sums}"
        assert tuple(self.marks) == w.marks, f"marks {w.marks} vs {self.marks}"
        ins, proto, vault_part = pm.fee_split(self.pending, self.fs.system)
        assert w.pending == self.pending, f"pending fees {w.pending} vs {self.pending}"
        assert w.pool_cash == self.raw_cash + vault_part, f"pool cash {w.pool_cash}"
        assert w.insurance == self.insurance + ins, f"insurance {w.insurance} vs {self.insurance}"
        assert w.protocol_fees == self.protocol + proto, f"protocol fees {w.protocol_fees}"
        assert w.seized == self.seized, f"seized {w.seized} vs {self.seized}"
        assert w.held == tuple(self.held), f"collateral_held {w.held} vs {self.held}"


# --- expectations ------------------------------------------------------------------------------

# --- valuations -------------------------------------------------------------------------------


def equity_settlement(w: World, acct: int) -> int:
    """Settlement balance + unrealised PnL - funding owed, at the cached marks."""
    s = w.accts[acct]
    eq = s.bal[0]
    for m, p in enumerate(s.pos):
        if p.size:
            mk = w.marks[m]
            eq += pm.value_pnl(p.size, p.cost, mk.price)
            eq -= pm.funding_owed(p.size, pm.funding_delta(p.snapshot, mk.index))
    return eq


def seized_value(fs: FuzzSystem, w: World) -> int:
    """The WETH the pool took over, at the mark less the haircut (rounded down)."""
    unit = w.marks[fs.collateral_market].price * (WAD - fs.haircut) // WAD
    return w.seized * unit // WAD


def vault_equity(fs: FuzzSystem, w: World) -> int:
    """ClearinghouseLens.vault_equity."""
    eq = w.pool_cash + seized_value(fs, w)
    for m in range(len(fs.params)):
        lo, sh = w.oi[m]
        sc, sf = w.sums[m]
        if lo == sh == sc == sf == 0:
            continue
        skew = lo - sh
        mk = w.marks[m]
        trader_pnl = pm.vdiv(skew * mk.price, WAD) - sc
        owed = pm.div_floor(skew * mk.index, 10**12) - sf
        eq += owed - trader_pnl
    # bad debt provisioned at liquidation steps, less what insurance will cover
    return eq - max(w.provision - w.insurance, 0)
