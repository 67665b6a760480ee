"""The world of the stateful fuzz: the deployment as the machine reads it after every
transaction (`World`, `read_world`: one batched read of every balance, position, mark,
bucket and wallet), and its actors (who trades, keeps, provides liquidity).

The deployment itself (contracts, fuzz market parameters, funded roles and sub-accounts)
is prepared once per settlement decimals by tests/fuzz/conftest.py (`FuzzSystem`). Here:
what the machine (`machine.py`) compares before and after a transaction, what the ledger
(`ledger.py`) must equal, what the invariants (`invariants.py`) are checked on, and
`WorldView`, the mixin that picks actors and builds SDK snapshots from a `World` at the
oracle model's prices (`oracle_model.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpdex.sdk import math as pm
from perpdex.sdk.snapshot import CollateralInfo, MarketState, Snapshot

from ..conftest import FuzzAccount, FuzzSystem
from .oracle_model import OracleModel

POOL = 0  # the vault's pool account in fills and transfers


@dataclass(frozen=True)
class AcctState:
    header: int
    bal: tuple[int, int]  # USD WAD, per collateral index
    pos: tuple[pm.Position, ...]  # per market
    margin: pm.MarginScan
    loss_cap: int
    auction: tuple[bool, int, int, int, int]  # active, started, lot, kick, step
    deadline: int = 0  # of the open tranche, fixed when it opened (0: none open)

    @property
    def in_liquidation(self) -> bool:
        return self.header & pm.ACCOUNT_IN_LIQUIDATION != 0

    @property
    def has_positions(self) -> bool:
        return pm.positions_bitmap(self.header) != 0

    def healthy(self) -> bool:
        return healthy(self.margin)


def healthy(s: pm.MarginScan) -> bool:
    """The auction's rule at `s` (`pm.liq_healthy`): no requirement, or equity >=
    maintenance."""
    return pm.liq_healthy(s.equity, s.maintenance)


@dataclass(frozen=True)
class World:
    block: int
    ts: int
    token_ch: int
    token_vault: int
    vault_allowance: int
    weth_ch: int
    held: tuple[int, int]
    pool_cash: int
    pending: int
    insurance: int
    protocol_fees: int
    seized: int
    supply: int
    total_assets: int
    vault_equity: int
    paused: bool
    provision: int
    marks: tuple[pm.Mark, ...]
    oi: tuple[tuple[int, int], ...]
    sums: tuple[tuple[int, int], ...]
    obs: tuple[tuple[int, int, int], ...]
    accts: dict[int, AcctState]
    tokens: dict[str, int]
    weths: dict[str, int]
    shares: dict[str, int]

    def comparable(self) -> tuple[Any, ...]:
        """Everything but the block and the clock (a reverted transaction still mines)."""
        return tuple(v for k, v in self.__dict__.items() if k not in ("block", "ts"))


def read_world(fs: FuzzSystem) -> World:
    h = fs.h
    ch, n_m = h["ch"], len(fs.params)
    calls: list[tuple[Any, str, tuple[Any, ...]]] = [
        (h["token"], "balanceOf", (ch.address,)),
        (h["token"], "balanceOf", (h["vault"].address,)),
        (h["token"], "allowance", (h["vault"].address, ch.address)),
        (h["weth"], "balanceOf", (ch.address,)),
        (ch, "collateral_held", (0,)),
        (ch, "collateral_held", (1,)),
        (ch, "pool_cash", ()),
        (ch, "pending_fees", ()),
        (ch, "insurance_fund", ()),
        (ch, "protocol_fees", ()),
        (ch, "seized_collateral", (1,)),
        (h["vault"], "totalSupply", ()),
        (h["vault"], "totalAssets", ()),
        (h["lens"], "vault_equity", ()),
        (ch, "paused", ()),
        (ch, "bad_debt_provision", ()),
    ]
    for m in range(n_m):
        calls += [
            (ch, "mark", (m,)),
            (ch, "open_interest", (m,)),
            (ch, "pool_sums", (m,)),
            (h["oracle"], "observation", (m,)),
        ]
    for a in fs.accounts:
        calls += [(ch, "account_header", (a.id,)), (ch, "balance_of", (a.id, 0))]
        calls += [(ch, "balance_of", (a.id, 1)), (ch, "account_margin", (a.id,))]
        calls += [(ch, "loss_cap", (a.id,)), (h["auction"], "auction", (a.id,))]
        calls += [(h["auction"], "deadline", (a.id,))]
        calls += [(ch, "position", (a.id, m)) for m in range(n_m)]
    actors = list(fs.actors.values())
    calls += [(h["token"], "balanceOf", (x,)) for x in actors]
    calls += [(h["weth"], "balanceOf", (x,)) for x in actors]
    calls += [(h["vault"], "balanceOf", (x,)) for x in actors]
    (number, ts), results = fs.chain.read_at_head(calls)
    r = iter(results)
    g = [next(r) for _ in range(16)]
    marks, oi, sums, obs = [], [], [], []
    for _ in range(n_m):
        mk, o, s, ob = next(r), next(r), next(r), next(r)
        marks.append(pm.Mark(*(int(x) for x in mk)))
        oi.append((int(o[0]), int(o[1])))
        sums.append((int(s[0]), int(s[1])))
        obs.append((int(ob[0]), int(ob[1]), int(ob[2])))
    accts: dict[int, AcctState] = {}
    for a in fs.accounts:
        hdr, b0, b1, mg, cap, auc, dl = (next(r) for _ in range(7))
        pos = tuple(pm.Position(*(int(x) for x in next(r))) for _ in range(n_m))
        accts[a.id] = AcctState(
            header=int(hdr),
            bal=(int(b0), int(b1)),
            pos=pos,
            margin=pm.MarginScan(*(int(x) for x in mg)),
            loss_cap=int(cap),
            auction=(bool(auc[0]), int(auc[1]), int(auc[2]), int(auc[3]), int(auc[4])),
            deadline=int(dl),
        )
    tokens = {x: int(next(r)) for x in actors}
    weths = {x: int(next(r)) for x in actors}
    shares = {x: int(next(r)) for x in actors}
    return World(
        block=number,
        ts=ts,
        token_ch=int(g[0]),
        token_vault=int(g[1]),
        vault_allowance=int(g[2]),
        weth_ch=int(g[3]),
        held=(int(g[4]), int(g[5])),
        pool_cash=int(g[6]),
        pending=int(g[7]),
        insurance=int(g[8]),
        protocol_fees=int(g[9]),
        seized=int(g[10]),
        supply=int(g[11]),
        total_assets=int(g[12]),
        vault_equity=int(g[13]),
        paused=bool(g[14]),
        provision=int(g[15]),
        marks=tuple(marks),
        oi=tuple(oi),
        sums=tuple(sums),
        obs=tuple(obs),
        accts=accts,
        tokens=tokens,
        weths=weths,
        shares=shares,
    )


def world_diff(a: World, b: World) -> str:
    """What differs between two reads, clock aside (for a reverted transaction)."""
    out = []
    for k in a.__dict__:
        if k in ("block", "ts"):
            continue
        va, vb = getattr(a, k), getattr(b, k)
        if va != vb:
            if isinstance(va, dict):
                keys = [x for x in va if va.get(x) != vb.get(x)]
                out.append(f"{k}: {[(x, va.get(x), vb.get(x)) for x in keys][:3]}")
            else:
                out.append(f"{k}: {va} -> {vb}")
    return "; ".join(out)


class WorldView:
    """The actors and the SDK's view of a `World`, for the machine and its invariants.
    Attributes are set by `SystemMachine.__init__` (machine.py)."""

    fs: FuzzSystem
    world: World
    oracle: OracleModel
    collaterals: dict[int, CollateralInfo]

    @property
    def accounts(self) -> tuple[FuzzAccount, ...]:
        return self.fs.accounts

    # --- the actors (roles and sub-accounts: conftest.ACCOUNT_PLAN) -------------------------

    def _pick(self, pick: int, pool: list[FuzzAccount] | tuple[FuzzAccount, ...]) -> FuzzAccount:
        return pool[pick % len(pool)]

    def _lp(self, pick: int) -> str:
        return self.fs.actors["lp" if pick == 0 else "lp2"]

    def _keeper(self, k: int) -> tuple[str, int]:
        addr = self.fs.actors["liquidator" if k == 0 else "keeper"]
        return addr, self.fs.keeper_account[addr]

    def _liquidatable(self) -> list[FuzzAccount]:
        return [a for a in self.accounts if self.world.accts[a.id].has_positions]

    def _in_auction(self) -> list[FuzzAccount]:
        return [a for a in self.accounts if self.world.accts[a.id].auction[0]]

    def _other_keeper(self, acct: int) -> int:
        """A keeper whose account is neither `acct` nor locked."""
        for k in (0, 1):
            k_acct = self._keeper(k)[1]
            if k_acct != acct and not self.world.accts[k_acct].in_liquidation:
                return k
        return 0 if self._keeper(0)[1] != acct else 1

    # --- the SDK's view -----------------------------------------------------------------------

    def _snap(self, w: World, acct: int, now: int) -> Snapshot:
        """The SDK snapshot of an account at `now`, oracle prices from the model."""
        fs = self.fs
        markets = []
        for m in range(len(fs.params)):
            r = self.oracle.try_read(m, now)
            price, flags = r if isinstance(r, tuple) else (None, None)
            lo, sh = w.oi[m]
            markets.append(
                MarketState(m, fs.params[m], w.marks[m], lo, sh, price, flags, w.sums[m][0])
            )
        s = w.accts[acct]
        bitmap = pm.positions_bitmap(s.header)
        return Snapshot(
            account=acct,
            block_number=w.block,
            timestamp=now,
            header=s.header,
            market_count=len(fs.params),
            balances={0: s.bal[0], 1: s.bal[1]},
            collaterals=self.collaterals,
            positions={m: s.pos[m] for m in range(len(fs.params)) if (bitmap >> m) & 1},
            markets=tuple(markets),
            book=fs.book,
            system=fs.system,
            pool_cash=w.pool_cash,
            pending_fees=w.pending,
            paused=w.paused,
            loss_cap=s.loss_cap,
        )

    def _markets_of(self, w: World) -> tuple[MarketState, ...]:
        """Every market at the cached marks, no oracle reading."""
        fs = self.fs
        return tuple(
            MarketState(m, fs.params[m], w.marks[m], w.oi[m][0], w.oi[m][1], None, None)
            for m in range(len(fs.params))
        )
