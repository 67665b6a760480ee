"""Shared pieces of the liquidation, keeper and crash-replay tests.

`LiqWorld` wraps the `protocol` fixture with the few actions these tests repeat: hold a
price long enough for the oracle's time-weighted price to follow, build an account at a
chosen health, decode the auction's and the Clearinghouse's liquidation events with the
right ABI, and check conservation of the settlement token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpdex.deploy import Protocol
from perpdex.keepers.liquidator import accounts_opened, conservation_gap
from perpdex.keepers.price_pusher import send_raw
from perpdex.keepers.scan import batch_call
from perpdex.sdk import math as pm
from perpdex.units import WAD

__all__ = [
    "WAD",
    "LiqWorld",
    "Victim",
]

BTC = 0
TWAP_WINDOW = 600  # config/markets.yaml oracle.twap_window of every market


@dataclass
class Victim:
    account: int
    owner: Any
    size: int  # signed WAD


class LiqWorld:
    """Actions on one deployment; `who` signs the permissionless ones (feeds, refresh)."""

    def __init__(self, p: Protocol, chain: Any, who: Any) -> None:
        self.p = p
        self.ch = p.clearinghouse
        self.chain = chain
        self.who = who
        self.scale = 10 ** (18 - p.system.settlement_decimals)
        self.unit = 10**p.system.settlement_decimals
        assert p.auction is not None and p.vault is not None and p.lens is not None
        self.auction = p.auction
        self.vault = p.vault
        self.params = self.auction.params()

    # --- money ---------------------------------------------------------------------------

    def usd(self, dollars: int | str | Decimal) -> int:
        return int(Decimal(str(dollars)) * self.unit)

    def fund(self, who: Any, dollars: int | str | Decimal) -> int:
        units = self.usd(dollars)
        self.p.token.mint(who, units, sender=who)
        self.p.token.approve(self.ch, 2**256 - 1, sender=who)
        return units

    def account(
        self, who: Any, dollars: int | str | Decimal, portfolio: bool = False, name: str = "main"
    ) -> int:
        acct = int(self.ch.open_account(name, portfolio, sender=who).return_value)
        if Decimal(str(dollars)) > 0:
            self.p.ops.deposit(acct, self.p.token, self.fund(who, dollars), sender=who)
        return acct

    def lp_deposit(self, lp: Any, dollars: int) -> None:
        units = self.usd(dollars)
        self.p.token.mint(lp, units, sender=lp)
        self.p.token.approve(self.vault, units, sender=lp)
        self.vault.deposit(units, lp, sender=lp)

    def fund_insurance(self, who: Any, dollars: int | str | Decimal) -> None:
        units = self.usd(dollars)
        self.p.token.mint(who, units, sender=who)
        self.p.token.approve(self.ch, units, sender=who)
        self.p.admin.fund_insurance(units, sender=who)

    def trade(self, who: Any, acct: int, market: int, size: str | Decimal) -> Any:
        s = int(Decimal(str(size)) * WAD)
        bound = 2**256 - 1 if s > 0 else 0
        return self.ch.trade(acct, market, s, bound, sender=who)

    # --- prices ----------------------------------------------------------------------------

    def feed_price(self, symbol: str) -> Decimal:
        return Decimal(int(self.p.feeds[symbol][0].latestRoundData()[1])) / 10**8

    def post(self, prices: dict[str, Decimal | int | str] | None = None) -> None:
        """Posts `prices` to every feed of those markets and re-posts the others' last
        answers (so nothing goes stale), then refreshes every market: one block each, as
        ape would, but over raw JSON-RPC (perpdex.keepers.price_pusher.send_raw)."""
        prices = prices or {}
        others = [sym for sym in self.p.feeds if sym not in prices]
        last = batch_call([(self.p.feeds[sym][0].latestRoundData, ()) for sym in others])
        answers = {sym: int(r[1]) for sym, r in zip(others, last, strict=True)}
        answers |= {sym: int(Decimal(str(v)) * 10**8) for sym, v in prices.items()}
        sends = [
            (f"{sym} price", f.set_answer, (answers[sym],))
            for sym, feeds in self.p.feeds.items()
            for f in feeds
        ]
        sends.append(("refresh", self.p.ops.refresh, (list(range(len(self.p.feeds))),)))
        send_raw(self.who.address, sends)

    def hold(
        self, prices: dict[str, Decimal | int | str], seconds: int = 600, step: int = 600
    ) -> None:
        """Moves the feeds to `prices` and keeps them there for `seconds`, refreshing every
        `step` seconds. The oracle's EMA weighs the last observed price by min(dt, window)
        / window (window 600 s): an observation a whole window after the price changed
        sets the EMA to it exactly, shorter steps approach it geometrically."""
        self.post(prices)
        waited = 0
        while waited < seconds:
            self.chain.pending_timestamp += step
            waited += step
            self.post(prices)

    def sleep(self, seconds: int) -> None:
        """Time passes; the feeds are re-posted (same answers) and marks refreshed."""
        self.chain.pending_timestamp += seconds
        self.post()

    def set_sequencer(self, up: bool, since: int | None = None) -> None:
        now = self.chain.pending_timestamp
        started = now if since is None else since
        assert self.p.sequencer is not None
        self.p.sequencer.set_round_data(0 if up else 1, started, now, sender=self.who)

    # --- reads -----------------------------------------------------------------------------

    def margin(self, acct: int) -> Any:
        return self.ch.account_margin(acct)

    def health(self, acct: int) -> Decimal:
        s = self.ch.account_margin(acct)
        return Decimal(s.equity) / Decimal(s.maintenance) if s.maintenance else Decimal("inf")

    def state(self, acct: int) -> tuple[bool, int, int, int, int, int]:
        a = self.auction.auction(acct)
        return tuple(int(x) for x in a)  # type: ignore[return-value]

    def share_price(self) -> int:
        """Assets (token units) of 10**18 vault shares."""
        return int(self.vault.convertToAssets(10**18))

    def balances(self) -> dict[str, int]:
        ch = self.ch
        return {
            "insurance": int(ch.insurance_fund()),
            "pool_cash": int(ch.pool_cash()),
            "protocol_fees": int(ch.protocol_fees()),
            "vault_equity": int(self.p.lens.vault_equity()),
            "provision": int(ch.bad_debt_provision()),
        }

    def all_accounts(self) -> list[int]:
        return accounts_opened(self.p, 0, self.chain.blocks.head.number)

    def conservation(self, accounts: Iterable[int] | None = None) -> int:
        """Token held by the Clearinghouse (WAD) - (Σ settlement balances + pool cash +
        insurance + protocol fees). Never negative; zero up to rounding dust."""
        return conservation_gap(self.p, self.all_accounts() if accounts is None else accounts)

    def assert_conserved(self, dust: int = 10**12) -> int:
        gap = self.conservation()
        assert 0 <= gap <= dust, f"conservation broken: token - claims = {gap} WAD"
        return gap

    # --- accounts at a chosen health ---------------------------------------------------

    def btc_long(self, who: Any, deposit: int, size: str = "1", portfolio: bool = False) -> Victim:
        acct = self.account(who, deposit, portfolio, name="victim")
        self.trade(who, acct, BTC, size)
        return Victim(acct, who, int(Decimal(size) * WAD))

    def price_for_health(self, acct: int, target: Decimal, market: int = BTC) -> Decimal:
        """The BTC price (USD, 2 decimals) at which a one-market account has `target`
        health, from its balance, position and the current maintenance ratio (health is
        linear in price for one position: maintenance is proportional to the mark)."""
        size, cost, _ = self.ch.position(acct, market)
        mark = int(self.ch.mark(market)[0])
        s = self.ch.account_margin(acct)
        bal = int(self.ch.balance_of(acct, 0))
        # equity(P) = bal + size*P - cost (funding ignored: tests run at a flat rate);
        # maintenance(P) = ratio * |size| * P
        ratio = Decimal(s.maintenance) / (abs(Decimal(size)) * mark / WAD)
        num = Decimal(cost) - Decimal(bal)
        den = Decimal(size) - target * ratio * abs(Decimal(size))
        return (num / den).quantize(Decimal("0.01"))


# --- independent mirrors of the auction's formulas (LiquidationAuction.vy header) ----------


def params_dict(p: Any) -> dict[str, int]:
    """The auction's Params struct as a dict (for perpdex.sdk.math's liq_* mirrors)."""
    if isinstance(p, dict):
        return p
    names = [
        "keeper_tip",
        "keeper_fee",
        "keeper_cap",
        "penalty",
        "target_health",
        "critical_health",
        "min_step",
        "max_step",
        "small_account",
        "cooldown",
        "start_discount",
        "max_discount",
        "duration",
        "cusp",
        "window",
    ]
    return {n: int(getattr(p, n)) for n in names}


def expected_scale(maintenance: int, notional: int, p: Any) -> int:
    """f = min(1, 0.8 M / (N (d_max + penalty))): discounts and penalty are scaled by it."""
    return pm.liq_scale(maintenance, notional, int(p.max_discount), int(p.penalty))


def expected_tranche(equity: int, maintenance: int, notional: int, p: Any, critical: bool) -> int:
    """q = (t*M - E) / (t*M - c), c = N*(d_max + penalty)*f + 0.1 M, rounded up, within
    [min_step, max_step]; the whole book below critical health or under `small_account`."""
    return pm.liq_tranche(equity, maintenance, notional, params_dict(p), critical)


def expected_reward(value: int, equity: int, p: Any, maintenance: int, q: int) -> int:
    return pm.liq_reward(value, q, equity, maintenance, params_dict(p))


def expected_discount(elapsed: int, p: Any, scale: int = WAD) -> int:
    return pm.liq_discount(elapsed, params_dict(p), scale)


def fill_price(mark: int, discount: int, long: bool) -> int:
    """Longs sell below the mark (rounded down), shorts buy back above it (rounded up)."""
    if long:
        return mark * (WAD - discount) // WAD
    return -((-mark * (WAD + discount)) // WAD)


def part_of(size: int, fraction: int) -> int:
    """size x fraction, truncated toward zero (never more than held)."""
    if fraction >= WAD:
        return size
    q = abs(size) * fraction // WAD
    return q if size > 0 else -q


def funded_world(p: Protocol, chain: Any, admin: Any, lp: Any, insurance: int) -> LiqWorld:
    """A LiqWorld whose vault holds 2M USDC of LP money and whose insurance fund holds
    `insurance` USDC."""
    w = LiqWorld(p, chain, admin)
    w.lp_deposit(lp, 2_000_000)
    w.fund_insurance(admin, insurance)
    return w
