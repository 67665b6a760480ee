"""Strategies as sub-accounts: names, per-strategy loss caps, margin-mode switches and
collateral moves between one owner's sub-accounts, and isolation between sub-accounts.

The module turns funding off (every market's max funding velocity set to 0, so the rate
stays 0): an account's equity then depends only on prices and fills, and every expected
figure is exact: the mirror (perpdex/sdk/math.py) predicts the loss-cap close-outs fill by
fill, boundaries are probed to the token unit (or the wei) on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import ape
import ape.exceptions
import pytest

from perpdex.sdk import math as pm
from perpdex.sdk.snapshot import Snapshot
from perpdex.units import WAD

POOL_USD = 5_000_000
POOL_ACCOUNT = 0  # state.POOL: the vault's side of every market order
BTC, ETH, SOL = 0, 1, 2
UNIT = 10**12  # one USDC unit (6 decimals) in USD WAD
USD = WAD
PORTFOLIO_FLAG = 2

pytestmark = pytest.mark.usefixtures("strategies_world")


@pytest.fixture(scope="module")
def strategies_world(
    actors: dict[str, Any], protocol: Any, token: Any, h: Any, admin: Any, lp: Any
) -> None:
    """Pool cash from the LP, and no funding (max funding velocity 0 on every market)."""
    units = h.fund(lp, POOL_USD)
    token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    for m, cfg in enumerate(protocol.system.markets):
        params = cfg.params()
        params["max_funding_velocity"] = 0
        protocol.admin.set_market_params(m, params, sender=admin)


# --- helpers -------------------------------------------------------------------------------


def logs(tx: Any, event: Any, ch: Any) -> list[dict[str, Any]]:
    """Decoded arguments of every `event` the receipt holds from the Clearinghouse."""
    address = ch.address.lower()
    return [
        dict(log.event_arguments)
        for log in event.from_receipt(tx)
        if str(log.contract_address).lower() == address
    ]


@dataclass(frozen=True)
class AccountState:
    """Everything an action on another sub-account must leave alone."""

    header: int
    name: str
    loss_cap: int
    balance: int
    positions: tuple[tuple[int, int], ...]  # (size, cost) per market


def state_of(ch: Any, acct: int) -> AccountState:
    return AccountState(
        header=int(ch.account_header(acct)),
        name=str(ch.account_name(acct)),
        loss_cap=int(ch.loss_cap(acct)),
        balance=int(ch.balance_of(acct, 0)),
        positions=tuple(tuple(int(x) for x in ch.position(acct, m)[:2]) for m in range(3)),
    )


def sizes(ch: Any, acct: int) -> list[int]:
    return [int(ch.position(acct, m)[0]) for m in range(3)]


def move_price(protocol: Any, h: Any, who: Any, symbol: str, usd: int | str) -> None:
    """New oracle price on every feed of the market, and the marks re-read."""
    h.set_price(symbol, usd, who)
    protocol.ops.refresh([0, 1, 2], sender=who)


def margin(ch: Any, acct: int) -> Any:
    return ch.account_margin(acct)


def predict_loss_cap_close(protocol: Any, acct: int) -> tuple[int, int]:
    """(equity the trigger sees, settlement balance after its closes, before the fee),
    from the mirror: every mark of the account re-read, then per market in order a
    forced close at the oracle price within the market's loss-cap window
    (`pm.force_close`), each on the state the previous one left. The books here are small
    enough to close in one window. Pins the next block's time (the trigger comes next)."""
    ape.chain.pending_timestamp += 1
    snap = pm.strict_refresh(Snapshot.load(protocol, acct, "pending"))
    equity = pm.scan(snap).equity
    ch = protocol.clearinghouse
    for m in sorted(snap.positions):
        res, _ = pm.force_close(snap, m, int(ch.loss_cap_window(m)))
        assert res is not None
        snap = res.after
    assert not snap.positions
    return equity, snap.balance(0)


# --- names ---------------------------------------------------------------------------------


def test_strategies__each_sub_account_carries_its_name(ch, h, trader, hedger):
    first = int(ch.sub_account_count(trader))
    plan = [("btc-trend", False), ("eth-sol-pair", True), ("x" * 32, False)]
    for i, (name, portfolio) in enumerate(plan):
        tx = ch.open_account(name, portfolio, sender=trader)
        acct = int(tx.return_value)
        assert (
            acct
            == int(ch.account_id(trader, first + i))
            == (int(trader.address, 16) << 96 | (first + i))
        )
        assert ch.account_name(acct) == name
        assert bool(int(ch.account_header(acct)) & PORTFOLIO_FLAG) == portfolio
        assert logs(tx, ch.AccountOpened, ch) == [
            {"account": acct, "owner": trader.address, "name": name, "portfolio": portfolio}
        ]
    assert ch.sub_account_count(trader) == first + len(plan)
    # a name is a label, not a key: another owner may use it, and ids stay distinct
    other = h.open(hedger, "btc-trend")
    assert ch.account_name(other) == "btc-trend"
    assert ch.account_owner(other) == hedger.address
    assert other not in {int(ch.account_id(trader, i)) for i in range(first + len(plan))}


# --- loss caps -----------------------------------------------------------------------------


def test_loss_cap__set_logs_old_and_new_floor(ch, protocol, h, trader, stranger):
    acct = h.funded_account(trader, 1_000, name="capped")
    tx = protocol.ops.set_loss_cap(acct, 900 * USD, sender=trader)
    assert logs(tx, protocol.ops.LossCapSet, ch) == [
        {"account": acct, "old_floor": 0, "new_floor": 900 * USD}
    ]
    tx = protocol.ops.set_loss_cap(acct, 800 * USD, sender=trader)
    assert logs(tx, protocol.ops.LossCapSet, ch) == [
        {"account": acct, "old_floor": 900 * USD, "new_floor": 800 * USD}
    ]
    assert ch.loss_cap(acct) == 800 * USD
    with ape.reverts("clearinghouse: not account owner"):
        protocol.ops.set_loss_cap(acct, 0, sender=stranger)
    assert ch.loss_cap(acct) == 800 * USD


def _losing_book(protocol, h, trader, dollars=20_000, name="losing"):
    """An isolated account long 1 BTC, short 10 ETH, long 100 SOL, then BTC -1.5%."""
    acct = h.funded_account(trader, dollars, name=name)
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-10")
    h.trade(trader, acct, "SOL", "100")
    move_price(protocol, h, trader, "BTC", 98_500)
    return acct


def test_loss_cap__anyone_triggers_below_the_floor_and_every_position_closes(
    ch, protocol, token, h, trader, keeper
):
    acct = _losing_book(protocol, h, trader)
    floor = 19_000 * USD
    protocol.ops.set_loss_cap(acct, floor, sender=trader)
    equity, balance_after_closes = predict_loss_cap_close(protocol, acct)
    assert equity == margin(ch, acct).equity < floor
    assert equity > margin(ch, acct).maintenance  # healthy: only the cap can act here
    oi_before = [tuple(int(x) for x in ch.open_interest(m)) for m in range(3)]
    before = sizes(ch, acct)
    fee = min(int(ch.loss_cap_fee()), max(balance_after_closes, 0))
    assert fee == 5 * USD  # config/markets.yaml loss_cap_fee; the balance covers it
    wallet = int(token.balanceOf(keeper))

    tx = protocol.ops.trigger_loss_cap(acct, sender=keeper)  # keeper: not owner, not operator

    assert sizes(ch, acct) == [0, 0, 0]
    assert (int(ch.account_header(acct)) >> 48) & 0xFF == 0  # position count
    assert int(ch.balance_of(acct, 0)) == balance_after_closes - fee
    assert int(token.balanceOf(keeper)) == wallet + fee // UNIT
    for m, (long_oi, short_oi) in enumerate(oi_before):
        s = before[m]
        assert tuple(int(x) for x in ch.open_interest(m)) == (
            long_oi - max(s, 0),
            short_oi - max(-s, 0),
        )
    fills = logs(tx, ch.Fill, ch)
    assert [(f["account"], f["market"], f["counterparty"], f["size_delta"]) for f in fills] == [
        (acct, m, POOL_ACCOUNT, -s) for m, s in enumerate(before)
    ]
    assert all(f["size"] == 0 for f in fills)
    assert logs(tx, protocol.ops.LossCapTriggered, ch) == [
        {
            "account": acct,
            "keeper": keeper.address,
            "equity": equity,
            "equity_floor": floor,
            "fee": fee,
        }
    ]
    # the cap stays set; with nothing left to close, a second trigger is refused
    assert ch.loss_cap(acct) == floor
    with ape.reverts("clearinghouse: no positions"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)


def test_loss_cap__equity_at_the_floor_is_not_below_it(ch, protocol, h, trader, keeper):
    """The boundary, to the wei: equity == floor is refused, floor one wei higher closes."""
    acct = _losing_book(protocol, h, trader)
    equity = margin(ch, acct).equity
    protocol.ops.set_loss_cap(acct, equity, sender=trader)
    with ape.reverts("clearinghouse: equity above loss cap"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert sizes(ch, acct) != [0, 0, 0]
    protocol.ops.set_loss_cap(acct, equity + 1, sender=trader)
    protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert sizes(ch, acct) == [0, 0, 0]


def test_loss_cap__healthy_account__reverts(ch, protocol, h, trader, keeper):
    acct = h.funded_account(trader, 20_000, name="healthy")
    h.trade(trader, acct, "BTC", "1")
    protocol.ops.set_loss_cap(acct, 15_000 * USD, sender=trader)
    before = state_of(ch, acct)
    with ape.reverts("clearinghouse: equity above loss cap"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert state_of(ch, acct) == before


def test_loss_cap__no_cap__reverts(ch, protocol, h, trader, keeper):
    acct = _losing_book(protocol, h, trader)
    with ape.reverts("clearinghouse: no loss cap"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)
    protocol.ops.set_loss_cap(acct, 19_000 * USD, sender=trader)
    protocol.ops.set_loss_cap(acct, 0, sender=trader)  # removed again
    with ape.reverts("clearinghouse: no loss cap"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert sizes(ch, acct) != [0, 0, 0]


def test_loss_cap__no_positions__reverts(ch, protocol, h, trader, keeper):
    acct = h.funded_account(trader, 1_000, name="flat")
    protocol.ops.set_loss_cap(acct, 5_000 * USD, sender=trader)  # equity 1,000 < floor
    with ape.reverts("clearinghouse: no positions"):
        protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert int(ch.balance_of(acct, 0)) == 1_000 * USD


def test_loss_cap__fee_is_capped_by_the_remaining_balance(
    ch, protocol, token, h, admin, trader, keeper
):
    protocol.admin.set_loss_cap_fee(1_000 * USD, sender=admin)  # the governance maximum
    acct = h.funded_account(trader, 1_500, name="small")
    h.trade(trader, acct, "BTC", "0.1")
    move_price(protocol, h, trader, "BTC", 95_000)  # -500 on 0.1 BTC
    protocol.ops.set_loss_cap(acct, 1_400 * USD, sender=trader)
    equity, left = predict_loss_cap_close(protocol, acct)
    assert 0 < left < 1_000 * USD  # less than the fee is left after the close
    wallet = int(token.balanceOf(keeper))
    tx = protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert int(ch.balance_of(acct, 0)) == 0
    assert int(token.balanceOf(keeper)) == wallet + left // UNIT  # sub-unit dust stays
    (ev,) = logs(tx, protocol.ops.LossCapTriggered, ch)
    assert ev["fee"] == left and ev["equity"] == equity


def _unhedging_book(protocol, h, trader):
    """A portfolio account short 0.5 BTC, long 40 ETH, short 200 SOL on $14,000. The book
    needs ~12,200 (its worst scenario, ETH falling alone); ETH and SOL without the BTC
    short need ~16,500 (the equal crash), more than the account's equity, so closing the
    BTC leg first leaves it under initial margin. (Under the single-market rule a two-leg
    pair can no longer need less than one of its legs alone: each leg's own move is a
    scenario.)"""
    acct = h.funded_account(trader, 14_000, portfolio=True, name="unhedging")
    h.trade(trader, acct, "BTC", "-0.5")
    h.trade(trader, acct, "SOL", "-200")
    h.trade(trader, acct, "ETH", "40")
    return acct


def test_loss_cap__portfolio_pair_is_closed_even_when_one_leg_alone_needs_more(
    ch, protocol, h, trader, keeper
):
    """Closing in market order closes the BTC leg first and leaves ETH and SOL, needing
    more than the account's equity: the trader's own reduce-only order is refused there,
    the loss-cap close-out is not (it would otherwise fail exactly when needed)."""
    acct = _unhedging_book(protocol, h, trader)
    m = margin(ch, acct)
    assert m.maintenance < m.initial <= m.equity < 16_500 * USD
    snap = Snapshot.load(protocol, acct)
    with pytest.raises(pm.Revert, match="clearinghouse: below initial margin"):
        pm.simulate_trade(snap, BTC, -snap.position(BTC).size)
    with ape.reverts("clearinghouse: below initial margin"):
        h.trade(trader, acct, "BTC", "0.5")
    protocol.ops.set_loss_cap(acct, m.equity + 1, sender=trader)
    equity, left = predict_loss_cap_close(protocol, acct)
    tx = protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert sizes(ch, acct) == [0, 0, 0]
    assert int(ch.balance_of(acct, 0)) == left - 5 * USD
    assert [f["market"] for f in logs(tx, ch.Fill, ch)] == [BTC, ETH, SOL]
    (ev,) = logs(tx, protocol.ops.LossCapTriggered, ch)
    assert ev["equity"] == equity == m.equity


def test_loss_cap__portfolio_account_closes_when_no_leg_unhedges(ch, protocol, h, trader, keeper):
    """A portfolio book whose closes in market order only lower the requirement (BTC long
    hedged by an ETH short: closing BTC first leaves the small leg) is closed normally."""
    acct = h.funded_account(trader, 20_000, portfolio=True, name="btc-eth")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-10")
    move_price(protocol, h, trader, "BTC", 98_500)
    protocol.ops.set_loss_cap(acct, 19_000 * USD, sender=trader)
    equity, left = predict_loss_cap_close(protocol, acct)
    protocol.ops.trigger_loss_cap(acct, sender=keeper)
    assert sizes(ch, acct) == [0, 0, 0]
    assert int(ch.balance_of(acct, 0)) == left - 5 * USD
    assert equity < 19_000 * USD


# --- margin mode ---------------------------------------------------------------------------


def _hedged(protocol, h, trader, dollars, portfolio):
    """Long 1 BTC hedged by short 20 ETH: isolated ~16,016, portfolio ~15,586 (the
    fat-tailed book charges this pair almost in full)."""
    acct = h.funded_account(trader, dollars, portfolio=portfolio, name="hedged")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-20")
    return acct


def test_mode_switch__both_ways_changes_only_the_requirement(ch, protocol, h, trader):
    acct = _hedged(protocol, h, trader, 20_000, portfolio=False)
    iso = margin(ch, acct)
    assert iso.initial == iso.isolated
    snap = Snapshot.load(protocol, acct)
    expected_port = pm.scan(replace(snap, header=snap.header | PORTFOLIO_FLAG)).initial
    held = (state_of(ch, acct).balance, state_of(ch, acct).positions)

    tx = protocol.ops.set_margin_mode(acct, True, sender=trader)
    assert logs(tx, protocol.ops.MarginModeChanged, ch) == [{"account": acct, "portfolio": True}]
    port = margin(ch, acct)
    assert port.initial == expected_port < iso.initial
    assert port.isolated == iso.isolated and port.equity == iso.equity

    tx = protocol.ops.set_margin_mode(acct, False, sender=trader)
    assert logs(tx, protocol.ops.MarginModeChanged, ch) == [{"account": acct, "portfolio": False}]
    assert margin(ch, acct) == iso
    assert (state_of(ch, acct).balance, state_of(ch, acct).positions) == held


def test_mode_switch__to_isolated_under_margined__reverts(ch, protocol, h, trader):
    acct = _hedged(protocol, h, trader, 15_800, portfolio=True)
    m = margin(ch, acct)
    assert m.initial <= m.equity < m.isolated
    before = state_of(ch, acct)
    with ape.reverts("clearinghouse: mode switch leaves account under-margined"):
        protocol.ops.set_margin_mode(acct, False, sender=trader)
    assert state_of(ch, acct) == before
    assert int(ch.account_header(acct)) & PORTFOLIO_FLAG


def test_mode_switch__to_isolated_at_the_boundary(ch, protocol, h, trader):
    """To the token unit: one unit short of the isolated requirement is refused, enough
    for it switches."""
    acct = _hedged(protocol, h, trader, 15_800, portfolio=True)
    m = margin(ch, acct)
    short = m.isolated - m.equity
    need = -(-short // UNIT)  # units that lift equity to the isolated requirement
    if need > 1:
        protocol.ops.deposit(
            acct, protocol.token, h.fund(trader, Decimal(need - 1) / 10**6), sender=trader
        )
    with ape.reverts("clearinghouse: mode switch leaves account under-margined"):
        protocol.ops.set_margin_mode(acct, False, sender=trader)
    protocol.ops.deposit(acct, protocol.token, h.fund(trader, Decimal(1) / 10**6), sender=trader)
    protocol.ops.set_margin_mode(acct, False, sender=trader)
    m = margin(ch, acct)
    assert 0 <= m.equity - m.initial < UNIT and m.initial == m.isolated


def test_mode_switch__unchanged__reverts(ch, protocol, h, trader):
    for portfolio in (False, True):
        acct = h.open(trader, "same", portfolio)
        with ape.reverts("clearinghouse: mode unchanged"):
            protocol.ops.set_margin_mode(acct, portfolio, sender=trader)


def test_mode_switch__only_the_owner(ch, protocol, h, trader, hedger):
    acct = h.funded_account(trader, 1_000, name="op")
    protocol.ops.set_operator(acct, hedger, True, sender=trader)
    h.trade(hedger, acct, "BTC", "0.01")  # an operator trades...
    with ape.reverts("clearinghouse: not account owner"):  # ...but never switches
        protocol.ops.set_margin_mode(acct, True, sender=hedger)


# --- collateral moves ----------------------------------------------------------------------


def test_transfer__between_own_sub_accounts_in_one_call(ch, protocol, token, h, trader):
    src = h.funded_account(trader, 5_000, name="treasury")
    dst = h.open(trader, "btc-trend")
    held = int(token.balanceOf(ch))
    units = h.usd(2_000)
    # the empty account cannot open 0.1 BTC ($10k needs $1,001)...
    with ape.reverts("clearinghouse: below initial margin"):
        h.trade(trader, dst, "BTC", "0.1")
    tx = protocol.ops.transfer_collateral(src, dst, token, units, sender=trader)
    assert int(ch.balance_of(src, 0)) == 3_000 * USD
    assert int(ch.balance_of(dst, 0)) == 2_000 * USD
    assert int(token.balanceOf(ch)) == held  # no token moves
    assert logs(tx, protocol.ops.CollateralTransferred, ch) == [
        {"from_account": src, "to_account": dst, "token": token.address, "amount": units}
    ]
    h.trade(trader, dst, "BTC", "0.1")  # ...and can once the move landed


def test_transfer__sender_must_stay_above_initial_margin(ch, protocol, token, h, trader):
    """To the token unit: the most the sender can spare moves, one unit more does not."""
    src = _hedged(protocol, h, trader, 20_000, portfolio=True)
    dst = h.open(trader, "dst")
    m = margin(ch, src)
    spare = (m.equity - m.initial) // UNIT
    before = (state_of(ch, src), state_of(ch, dst))
    with ape.reverts("clearinghouse: below initial margin"):
        protocol.ops.transfer_collateral(src, dst, token, spare + 1, sender=trader)
    assert (state_of(ch, src), state_of(ch, dst)) == before
    protocol.ops.transfer_collateral(src, dst, token, spare, sender=trader)
    m = margin(ch, src)
    assert 0 <= m.equity - m.initial < UNIT
    assert int(ch.balance_of(dst, 0)) == spare * UNIT


def test_transfer__to_or_from_another_owners_account__reverts(
    ch, protocol, token, h, trader, hedger
):
    mine = h.funded_account(trader, 1_000, name="mine")
    theirs = h.funded_account(hedger, 1_000, name="theirs")
    protocol.ops.set_operator(mine, hedger, True, sender=trader)
    before = (state_of(ch, mine), state_of(ch, theirs))
    with ape.reverts("clearinghouse: not account owner"):
        protocol.ops.transfer_collateral(mine, theirs, token, h.usd(1), sender=trader)
    with ape.reverts("clearinghouse: not account owner"):  # pulling from someone else's
        protocol.ops.transfer_collateral(theirs, mine, token, h.usd(1), sender=trader)
    with ape.reverts("clearinghouse: not account owner"):  # an operator cannot move money
        protocol.ops.transfer_collateral(mine, theirs, token, h.usd(1), sender=hedger)
    assert (state_of(ch, mine), state_of(ch, theirs)) == before


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("same", "clearinghouse: same account"),
        ("zero", "clearinghouse: zero amount"),
        ("too_much", "clearinghouse: insufficient balance"),
        ("unknown", "clearinghouse: unknown account"),
    ],
)
def test_transfer__bad_requests__revert(ch, protocol, token, h, trader, case, reason):
    src = h.funded_account(trader, 1_000, name="src")
    dst = h.open(trader, "dst")
    to, units = dst, h.usd(10)
    if case == "same":
        to = src
    elif case == "zero":
        units = 0
    elif case == "too_much":
        units = h.usd("1000.000001")
    elif case == "unknown":
        to = int(ch.account_id(trader, 10_000))
    with ape.reverts(reason):
        protocol.ops.transfer_collateral(src, to, token, units, sender=trader)
    assert int(ch.balance_of(src, 0)) == 1_000 * USD


# --- isolation -----------------------------------------------------------------------------


def test_isolation__acting_on_one_sub_account_never_touches_another(
    ch, protocol, token, h, trader, hedger, keeper
):
    """Invariant 9: every action on sub-account `a` (and a transfer a -> b) leaves the
    owner's other sub-account and another owner's account exactly as they were."""
    a = h.funded_account(trader, 20_000, name="a")
    b = h.open(trader, "b", portfolio=True)
    bystander = h.funded_account(trader, 5_000, portfolio=True, name="bystander")
    h.trade(trader, bystander, "ETH", "5")
    protocol.ops.set_loss_cap(bystander, 1_000 * USD, sender=trader)
    other = h.funded_account(hedger, 5_000, name="other")
    h.trade(hedger, other, "SOL", "-50")
    watched = (bystander, other)

    def check(action: Any, touches: tuple[int, ...] = ()) -> None:
        before = {x: state_of(ch, x) for x in (*watched, a, b)}
        action()
        for x in watched:
            assert state_of(ch, x) == before[x]
        if b not in touches:
            assert state_of(ch, b) == before[b]

    check(lambda: protocol.ops.deposit(a, token, h.fund(trader, 1_000), sender=trader))
    check(lambda: h.trade(trader, a, "BTC", "1"))
    check(lambda: h.trade(trader, a, "ETH", "-10"))
    check(lambda: protocol.ops.set_margin_mode(a, True, sender=trader))
    check(lambda: protocol.ops.set_loss_cap(a, 19_500 * USD, sender=trader))
    check(
        lambda: protocol.ops.transfer_collateral(a, b, token, h.usd(500), sender=trader),
        touches=(b,),
    )
    check(lambda: protocol.ops.withdraw(b, token, h.usd(100), trader, sender=trader), touches=(b,))
    assert int(ch.balance_of(b, 0)) == 400 * USD
    check(lambda: h.trade(trader, b, "SOL", "-10"), touches=(b,))
    move_price(protocol, h, trader, "BTC", 98_500)  # takes `a` below its loss cap
    check(lambda: protocol.ops.trigger_loss_cap(a, sender=keeper))
    assert sizes(ch, a) == [0, 0, 0]
