"""The SDK's math (perpdex/sdk/math.py over perpdex/sdk/snapshot.py) equals the chain to
the wei on random books.

Each hypothesis example builds a book from scratch on a chain snapshot (restored after the
example): 2-3 markets with randomised parameters (skew scale, fees, funding velocity and
cap, so the funding clamp is reached), 1-3 isolated or portfolio accounts with long and
short legs at random leverage, optional WETH collateral priced by a random market at a
random haircut, then random price moves and time jumps (so funding accrues) and a second
round of trades (close, reduce, increase, flip). At every checkpoint, at one block:

* `math.scan(snap)` == `ch.account_margin(acct)`;
* `math.account_summary(snap)` == `lens.account_summary(acct)` field by field, every
  position's liquidation price and every scenario loss included;
* `math.quote(snap, ...)` == `lens.quote(...)` for closes, flips, reductions, increases
  and new legs (or both revert);
* `math.touch` predicts the mark each refresh writes (funding rate and index);
* every trade is first simulated (`math.simulate_trade` at the pending block) and quoted
  (`math.quote` == `lens.quote(..., block_id="pending")`): the chain refuses it with the
  simulation's reason, or fills it at the predicted price and leaves exactly the
  simulated state (header, balances, positions, marks, open interest, pool cash) and
  margin; the quote's margin-after equals the chain's to the wei (the lens re-reads the
  stale marks and collateral prices the trade re-reads);
* the SDK finds the largest order an account can add by bisection over
  `simulate_trade`; 2% more is refused, that size fills.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import pytest
from ape.exceptions import ContractLogicError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from perpdex.constants import WAD
from perpdex.keepers.price_pusher import send_raw
from perpdex.keepers.scan import batch_call
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.snapshot import Snapshot

USDC = 10**6
FEED = 10**8  # one dollar in an 8-decimal mock feed
MAX_UINT256 = 2**256 - 1
POOL_USD = 30_000_000
DAY = 86_400


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def world(protocol: Any, accounts: Any, project: Any) -> dict[str, Any]:
    """A funded pool and WETH listed as collateral index 1 (haircut and price market are
    re-drawn per example)."""
    admin, lp = accounts[0], accounts[3]
    p = protocol
    units = POOL_USD * USDC
    p.token.mint(lp, units, sender=lp)
    p.token.approve(p.vault, units, sender=lp)
    p.vault.deposit(units, lp, sender=lp)
    weth = project.MockERC20.deploy("Mock WETH", "WETH", 18, sender=admin)
    p.admin.add_collateral(weth, WAD // 10, 1, MAX_UINT256, sender=admin)
    return {
        "admin": admin,
        "keeper": accounts[5],
        "traders": [accounts[1], accounts[2], accounts[7]],
        "weth": weth,
    }


# --- plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamsPlan:
    skew_div: int  # skew scale divided by this
    max_rate_nano: int  # max funding rate, 1e-9 per day (0: keep config)
    velocity_nano: int  # max funding velocity, 1e-9 per day per day (0: keep config)
    maker_nano: int
    taker_extra_nano: int


@dataclass(frozen=True)
class AccountPlan:
    portfolio: bool
    usd: int  # settlement deposit, dollars
    weth_milli: int  # WETH deposit in 1e-3 WETH (0: none)
    legs: tuple[tuple[int, int, int], ...]  # (market slot, usage bp of the IM budget, jitter)
    actions: tuple[tuple[int, str, int], ...]  # round 2: (market slot, kind, fraction bp)
    quotes: tuple[tuple[int, str, int], ...]  # (market slot, kind, fraction bp)


@dataclass(frozen=True)
class Plan:
    markets: tuple[int, ...]
    params: tuple[ParamsPlan | None, ...]  # per chosen market
    haircut_bp: int
    weth_market: int
    accounts: tuple[AccountPlan, ...]
    moves: tuple[tuple[int, tuple[int, ...], tuple[bool, ...]], ...]  # (dt, bp per market, refresh)
    refresh_round2: bool  # refresh every mark before the second round
    stress: bool  # the last move goes against the maxed-out account


KINDS = ("close", "flip", "reduce", "increase", "open", "lever")


@st.composite
def params_plans(draw: Any) -> ParamsPlan | None:
    if not draw(st.booleans()):
        return None
    # every value on its packed grid (packing.vy): fees 1e-8, velocity 1e-6, rate 1e-9
    return ParamsPlan(
        skew_div=draw(st.sampled_from([1, 2, 5, 10])),
        max_rate_nano=draw(st.sampled_from([0, 10_000, 100_000, 1_000_000, 50_000_000])),
        velocity_nano=draw(st.sampled_from([0, 100_000_000, 10_000_000_000, 50_000_000_000])),
        maker_nano=draw(st.integers(0, 50_000)) * 10,  # up to 0.05%
        taker_extra_nano=draw(st.integers(0, 100_000)) * 10,
    )


@st.composite
def account_plans(draw: Any, n_markets: int) -> AccountPlan:
    slots = st.integers(0, n_markets - 1)
    leg_slots = draw(st.lists(slots, min_size=1, max_size=n_markets, unique=True))
    # bp of the collateral posted as initial margin; 9,900 is often refused (fees)
    budget = draw(st.sampled_from([50, 2_000, 5_000, 8_000, 9_900]))
    legs = []
    for s in leg_slots:
        usage = draw(st.integers(1, budget // len(leg_slots)))
        sign = draw(st.sampled_from([1, -1]))
        legs.append((s, sign * usage, draw(st.integers(0, 10**12))))
    action = st.tuples(slots, st.sampled_from(KINDS), st.integers(1, 15_000))
    return AccountPlan(
        portfolio=draw(st.booleans()),
        usd=draw(st.integers(1_000, 100_000)),
        weth_milli=draw(st.sampled_from([0, 0, 1, 1_500, 20_000])),
        legs=tuple(legs),
        actions=tuple(draw(st.lists(action, max_size=3))),
        quotes=tuple(draw(st.lists(action, min_size=1, max_size=3))),
    )


@st.composite
def plans(draw: Any) -> Plan:
    markets = tuple(sorted(draw(st.lists(st.integers(0, 2), min_size=2, max_size=3, unique=True))))
    n = len(markets)
    move = st.tuples(
        st.sampled_from([0, 1, 59, 3_600, 20_000, DAY, 3 * DAY]),
        st.tuples(*[st.integers(-2_500, 2_500) for _ in range(3)]),
        st.tuples(*[st.booleans() for _ in range(3)]),
    )
    return Plan(
        markets=markets,
        params=tuple(draw(params_plans()) for _ in range(n)),
        haircut_bp=draw(st.integers(0, 5_000)),
        weth_market=draw(st.integers(0, 2)),
        accounts=tuple(draw(st.lists(account_plans(n), min_size=1, max_size=3))),
        moves=(draw(move), draw(move)),
        refresh_round2=draw(st.booleans()),
        stress=draw(st.booleans()),
    )


# --- comparisons ---------------------------------------------------------------------------


def _chain_account_view(v: Any) -> pm.AccountView:
    names = [f.name for f in dataclasses.fields(pm.AccountView)]
    kw = {n: getattr(v, n) for n in names if n not in ("scenario_losses", "positions")}
    kw = {k: (bool(x) if k == "portfolio" else int(x)) for k, x in kw.items()}
    pos_names = [f.name for f in dataclasses.fields(pm.PositionView)]
    return pm.AccountView(
        **kw,
        scenario_losses=tuple(int(x) for x in v.scenario_losses),
        positions=tuple(
            pm.PositionView(**{n: int(getattr(p, n)) for n in pos_names}) for p in v.positions
        ),
    )


def _chain_quote(q: Any) -> pm.QuoteView:
    return pm.QuoteView(
        **{f.name: int(getattr(q, f.name)) for f in dataclasses.fields(pm.QuoteView)}
    )


def _chain_scan(s: Any) -> pm.MarginScan:
    return pm.MarginScan(*(int(x) for x in s))


class Runner:
    """Builds one example's book step by step and checks the SDK at every step."""

    def __init__(self, protocol: Any, world: dict[str, Any], chain: Any, plan: Plan) -> None:
        self.p = protocol
        self.ch = protocol.clearinghouse
        self.lens = protocol.lens
        self.w = world
        self.chain = chain
        self.plan = plan
        self.symbols = protocol.symbols
        self.accts: list[tuple[Any, int, AccountPlan]] = []
        self.maxed: tuple[int, int] | None = None  # (market, side) of `max_out`

    # --- actions ---------------------------------------------------------------------------

    def set_params(self) -> None:
        admin = self.w["admin"]
        for m, pp in zip(self.plan.markets, self.plan.params, strict=True):
            if pp is None:
                continue
            cfg = self.p.system.markets[m]
            params = cfg.params()
            params["skew_scale"] = cfg.skew_scale // pp.skew_div
            if pp.max_rate_nano:
                params["max_funding_rate"] = pp.max_rate_nano * 10**9
            if pp.velocity_nano:
                params["max_funding_velocity"] = pp.velocity_nano * 10**9
            params["maker_fee"] = pp.maker_nano * 10**9
            params["taker_fee"] = (pp.maker_nano + pp.taker_extra_nano) * 10**9
            self.p.admin.set_market_params(m, params, sender=admin)
        haircut = self.plan.haircut_bp * WAD // 10_000
        self.p.admin.set_collateral_params(
            1, haircut, self.plan.weth_market, MAX_UINT256, sender=admin
        )

    def open_accounts(self) -> None:
        traders = self.w["traders"]
        weth = self.w["weth"]
        for i, ap in enumerate(self.plan.accounts):
            who = traders[i]
            acct = int(self.ch.open_account(f"fuzz{i}", ap.portfolio, sender=who).return_value)
            units = ap.usd * USDC
            self.p.token.mint(who, units, sender=who)
            self.p.token.approve(self.ch, MAX_UINT256, sender=who)
            self.p.ops.deposit(acct, self.p.token, units, sender=who)
            if ap.weth_milli:
                amount = ap.weth_milli * 10**15
                weth.mint(who, amount, sender=who)
                weth.approve(self.ch, MAX_UINT256, sender=who)
                self.p.ops.deposit(acct, weth, amount, sender=who)
            self.accts.append((who, acct, ap))

    def oracle_price(self, m: int) -> int:
        return int(self.p.oracle.latest(m)[0])

    def first_round(self) -> None:
        book = riskbook.from_config(_risk(), self.symbols)
        for who, acct, ap in self.accts:
            for slot, usage, jitter in ap.legs:
                m = self.plan.markets[slot]
                imr = book.markets[m].imr_min_bps
                size = abs(usage) * ap.usd * WAD * WAD // (imr * self.oracle_price(m)) + jitter
                self.trade(who, acct, m, size if usage > 0 else -size)

    def trade(self, who: Any, acct: int, m: int, delta: int) -> None:
        """A market order, first simulated by the SDK at the pending block: the chain must
        refuse it with the SDK's reason, or fill it at the SDK's price and leave exactly
        the SDK's state (balances, position, marks, open interest, margin). The lens's
        quote (and the SDK's mirror of it) must agree with the fill, and with the margin
        after it whenever nothing the lens values at cached marks moved."""
        head = self.chain.blocks.head
        pending = int(head.timestamp) + 2
        snap = Snapshot.load(self.p, acct, int(head.number))
        self.chain.pending_timestamp = pending
        sim: pm.TradeResult | None = None
        reason = ""
        try:
            sim = pm.simulate_trade(snap, m, delta, now=pending)
        except pm.Revert as err:
            reason = str(err)
        try:
            q: pm.QuoteView | None = pm.quote(snap, m, delta, now=pending)
        except pm.Revert:
            q = None
        if q is not None:  # the lens at the pending block (same timestamp) agrees
            assert _chain_quote(self.lens.quote(acct, m, delta, block_id="pending")) == q
        else:
            with pytest.raises(ContractLogicError):
                self.lens.quote(acct, m, delta, block_id="pending")
        bound = MAX_UINT256 if delta > 0 else 0
        try:
            tx = self.ch.trade(acct, m, delta, bound, sender=who)
        except ContractLogicError as err:
            assert sim is None, f"SDK predicted a fill; the chain refused: {err}"
            assert reason in str(err)
            event("trade refused as predicted")
            return
        assert sim is not None, f"SDK predicted a revert ({reason}); the chain filled"
        event("trade filled as predicted")
        if sim.refreshed:
            event("trade re-read stale marks")
        assert int(self.chain.blocks.head.timestamp) == pending
        assert int(tx.return_value) == sim.fill_price
        after = _chain_scan(self.ch.account_margin(acct))
        assert after == sim.margin_after
        post = Snapshot.load(self.p, acct)
        for name in ("header", "balances", "positions", "markets", "pool_cash", "pending_fees"):
            assert getattr(post, name) == getattr(sim.after, name), name
        assert q is not None
        assert (q.fill_price, q.fee, q.realized_pnl, q.funding_paid) == (
            sim.fill_price,
            sim.fee,
            sim.realized_pnl,
            sim.funding_paid,
        )
        # the quote re-reads what the trade re-reads (stale marks, collateral priced by the
        # traded market), so its margin-after is the chain's to the wei in every case
        assert (after.equity, after.initial, after.maintenance) == (
            q.equity_after,
            q.initial_after,
            q.maintenance_after,
        )
        view = pm.account_summary(post)
        assert view.health == q.health_after
        if q.liquidation_price_after:
            (leg,) = [v for v in view.positions if v.market == m]
            assert leg.liquidation_price == q.liquidation_price_after

    def move(self, step: int) -> None:
        dt, bps, refresh = self.plan.moves[step]
        if step == 1 and self.plan.stress and self.maxed is not None:
            # move the maxed-out account's market against it, and refresh it
            m, sign = self.maxed
            bps = tuple(-sign * max(abs(b), 800) if i == m else b for i, b in enumerate(bps))
            refresh = tuple(r or i == m for i, r in enumerate(refresh))
        # read the prices before the jump: after it, the feeds are stale until updated
        latest = batch_call([(self.p.oracle.latest, (m,)) for m in range(len(self.symbols))])
        answers = [int(o[0]) * (10_000 + bps[m]) // 10_000 // 10**10 for m, o in enumerate(latest)]
        if dt:
            self.chain.pending_timestamp = int(self.chain.blocks.head.timestamp) + dt
        # one block per feed, as ape would send them, over raw JSON-RPC
        sends = [
            (f"{sym} price", f.set_answer, (answer,))
            for sym, answer in zip(self.symbols, answers, strict=True)
            for f in self.p.feeds[sym]
        ]
        send_raw(self.w["keeper"].address, sends)
        markets = [m for m in range(len(self.symbols)) if refresh[m]]
        if markets:
            self.refresh(markets)

    def refresh(self, markets: list[int]) -> None:
        """Refreshes marks and checks `math.touch` predicted each new mark."""
        head = self.chain.blocks.head
        before = Snapshot.load(self.p, self.accts[0][1], int(head.number))
        self.p.ops.refresh(markets, sender=self.w["keeper"])
        now = int(self.chain.blocks.head.timestamp)
        for m in markets:
            ms = before.market(m)
            assert ms.oracle_price is not None
            want = pm.touch(ms.mark, ms.params, ms.skew, ms.oracle_price, now)
            assert pm.Mark(*(int(x) for x in self.ch.mark(m))) == want
            if want.index != ms.mark.index:
                event("funding index moved on a refresh")
            if abs(want.rate) == ms.params.max_funding_rate // 1_000 * 1_000:
                event("funding rate at its clamp")

    def second_round(self) -> None:
        if self.plan.refresh_round2:
            self.refresh(list(range(len(self.symbols))))
        for who, acct, ap in self.accts:
            for slot, kind, frac in ap.actions:
                m = self.plan.markets[slot]
                size = int(self.ch.position(acct, m)[0])
                delta = self.delta(kind, frac, size, ap, m)
                if delta:
                    self.trade(who, acct, m, delta)

    def max_out(self) -> None:
        """The SDK finds the largest order the first account can add on its first leg's
        market (bisection over `simulate_trade`); one 2% larger is refused, that one fills.
        It leaves an account at its initial margin, so the last price move often takes it
        below maintenance."""
        who, acct, ap = self.accts[0]
        slot, usage, _jitter = ap.legs[0]
        m = self.plan.markets[slot]
        head = self.chain.blocks.head
        pending = int(head.timestamp) + 2
        snap = Snapshot.load(self.p, acct, int(head.number))
        sign = 1 if usage > 0 else -1

        def fits(d: int) -> bool:
            try:
                pm.simulate_trade(snap, m, sign * d, now=pending)
            except pm.Revert:
                return False
            return True

        lo, hi = 0, 20 * ap.usd * WAD * WAD // snap.oracle_price(m)
        if not fits(1) or fits(hi):
            return
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        self.trade(who, acct, m, sign * (lo + lo // 50 + 1))  # refused
        self.trade(who, acct, m, sign * lo)  # fills
        self.maxed = (m, sign)

    def delta(self, kind: str, frac: int, size: int, ap: AccountPlan, m: int) -> int:
        if kind == "lever":  # up to 12x the deposit more, on the position's side
            d = ap.usd * WAD * WAD // self.oracle_price(m) * frac * 12 // 15_000 + 1
            return -d if (size < 0 or (size == 0 and frac % 2)) else d
        if size == 0 or kind == "open":
            base = ap.usd * WAD * WAD // self.oracle_price(m)  # 1x the deposit
            d = base * frac // 30_000 + 1
            return -d if frac % 2 else d
        if kind == "close":
            return -size
        if kind == "flip":
            return -size - (size * frac // 10_000 or (1 if size > 0 else -1))
        if kind == "reduce":
            return -(size * min(frac, 9_999) // 10_000) or -size
        return size * frac // 20_000 or size  # increase

    # --- checkpoint ------------------------------------------------------------------------

    def checkpoint(self) -> None:
        block = int(self.chain.blocks.head.number)
        for _who, acct, ap in self.accts:
            snap = Snapshot.load(self.p, acct, block)
            assert snap.timestamp == int(self.chain.blocks[block].timestamp)
            assert _chain_scan(self.ch.account_margin(acct, block_id=block)) == pm.scan(snap)
            mine = pm.account_summary(snap)
            theirs = _chain_account_view(self.lens.account_summary(acct, block_id=block))
            assert theirs == mine
            for v in mine.positions:
                if v.liquidation_price == v.mark_price:
                    event("liquidation price: at or below maintenance (= mark)")
                elif v.liquidation_price == 0:
                    event("liquidation price: none in range (0)")
                else:
                    event("liquidation price: found by bisection")
                if v.funding_owed:
                    event("position owes or earns funding")
            if mine.portfolio and mine.binding_scenario != pm.NO_SCENARIO:
                event("portfolio account with a binding scenario")
            if snap.balance(1):
                event("account holds WETH")
            for slot, kind, frac in ap.quotes:
                m = self.plan.markets[slot]
                delta = self.delta(kind, frac, snap.position(m).size, ap, m)
                self.compare_quote(snap, acct, m, delta, block)
        # refused quotes: both sides refuse
        _who, acct, _ap = self.accts[0]
        snap = Snapshot.load(self.p, acct, block)
        self.compare_quote(snap, acct, 0, 0, block)
        self.compare_quote(snap, acct, snap.market_count, WAD, block)

    def compare_quote(self, snap: Snapshot, acct: int, m: int, delta: int, block: int) -> None:
        try:
            mine: pm.QuoteView | None = pm.quote(snap, m, delta)
        except pm.Revert:
            mine = None
        try:
            theirs: pm.QuoteView | None = _chain_quote(
                self.lens.quote(acct, m, delta, block_id=block)
            )
        except ContractLogicError:
            theirs = None
        assert theirs == mine
        event("quote compared" if mine else "quote reverted on both sides")


def _risk() -> Any:
    from perpdex.config import load_risk

    return load_risk()


# --- the property ----------------------------------------------------------------------------


@settings(
    max_examples=int(os.environ.get("PERPDEX_SDK_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(plan=plans())
def test_sdk_math__equals_chain_on_random_books(protocol, world, chain, plan):
    snapshot_id = chain.snapshot()
    try:
        r = Runner(protocol, world, chain, plan)
        r.set_params()
        r.open_accounts()
        r.refresh(list(range(len(r.symbols))))
        r.first_round()
        r.checkpoint()
        r.move(0)
        r.checkpoint()
        r.second_round()
        r.max_out()
        r.move(1)
        r.checkpoint()
    finally:
        chain.restore(snapshot_id)


def test_snapshot__reads_one_block(protocol, world, chain, accounts):
    """A snapshot pinned to an older block sees that block's state and timestamp, the
    decoded book is the one config/risk.yaml describes, and a pending-block snapshot
    quotes the trade mined next."""
    who = accounts[1]
    acct = int(protocol.clearinghouse.open_account("s", True, sender=who).return_value)
    protocol.token.mint(who, 50_000 * USDC, sender=who)
    protocol.token.approve(protocol.clearinghouse, MAX_UINT256, sender=who)
    protocol.ops.deposit(acct, protocol.token, 50_000 * USDC, sender=who)
    protocol.clearinghouse.trade(acct, 0, WAD // 10, MAX_UINT256, sender=who)
    old = int(chain.blocks.head.number)
    chain.pending_timestamp = int(chain.blocks.head.timestamp) + 7_200
    for f in protocol.feeds["BTC"]:
        f.set_answer(90_000 * FEED, sender=who)
    protocol.ops.refresh([0], sender=who)
    then, now = Snapshot.load(protocol, acct, old), Snapshot.load(protocol, acct)
    assert then.block_number == old and now.block_number > old
    assert then.timestamp == int(chain.blocks[old].timestamp)
    assert now.timestamp >= then.timestamp + 7_200
    assert then.mark(0).price != now.mark(0).price
    assert now.mark(0).price == 90_000 * WAD
    assert then.risk_book == riskbook.from_config(_risk(), protocol.symbols)
    assert then.positions[0].size == WAD // 10
    # the scans of both blocks match the chain's at those blocks
    ch = protocol.clearinghouse
    assert pm.scan(then) == _chain_scan(ch.account_margin(acct, block_id=old))
    assert pm.scan(now) == _chain_scan(ch.account_margin(acct))
    assert pm.account_summary(then) == _chain_account_view(
        protocol.lens.account_summary(acct, block_id=old)
    )
    # a Clearinghouse handle alone is enough (the oracle is found through it)
    assert Snapshot.load(ch, acct, old) == then
    # the pending block: its timestamp is the next block's, so a quote there accrues
    # funding to it, like the lens at "pending" and like the trade mined next
    pending = int(chain.blocks.head.timestamp) + 30
    chain.pending_timestamp = pending
    pend = Snapshot.load(protocol, acct, "pending")
    assert pend.timestamp == pending
    q = pm.quote(pend, 0, WAD // 20)
    assert q == _chain_quote(protocol.lens.quote(acct, 0, WAD // 20, block_id="pending"))
    assert q == pm.quote(now, 0, WAD // 20, now=pending)
    tx = ch.trade(acct, 0, WAD // 20, MAX_UINT256, sender=who)
    assert int(tx.return_value) == q.fill_price
    assert (q.equity_after, q.initial_after) == tuple(ch.account_margin(acct))[:2]
