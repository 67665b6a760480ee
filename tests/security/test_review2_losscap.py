"""Review 2 (outside attack on the loss-cap stop, 490a569..18a6515): failing tests.

Finding L1 -- a stale mark lets an account below its floor keep adding risk.
`gates._check_after_trade` tests the floor at the *cached* marks: `_refresh_stale` only
re-reads a market whose mark is older than `max_mark_age` (60 s). An account (or its
operator bot) holding BTC and ETH whose BTC oracle price just fell -- equity at the
current prices below the floor -- can add to ETH as long as nobody refreshed BTC: the ETH
trade touches ETH only, and the BTC mark is still the pre-drop one. The trigger
(`trigger_loss_cap`) re-reads every mark and does find the account below its floor, so
the reduce-only rule and the trigger disagree for up to `max_mark_age`.
Suggested fix: when `state.loss_cap[account] != 0` and the trade adds, refresh every
mark of the account (`engine_refresh_account(account, False)`, what the trigger and the
value-out gate do) before the floor test; accounts without a cap pay nothing more.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.sdk.losscap import BELOW_LOSS_CAP, trigger_equity
from perpdex.sdk.snapshot import Snapshot
from perpdex.units import WAD

POOL_UNITS = 5_000_000


@pytest.fixture(scope="module")
def r2_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, POOL_UNITS)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


def test_stale_mark__adding_while_below_floor_at_current_prices__refused(
    protocol, ch, h, r2_pool, trader, admin
):
    acct = h.funded_account(trader, 20_000, name="stale")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "1")
    equity = int(ch.account_margin(acct).equity)
    floor = equity - 500 * WAD  # $500 of room
    protocol.ops.set_loss_cap(acct, floor, sender=trader)
    # BTC -1.5% at the oracle (~$1.5k on 1 BTC); nobody refreshes the BTC mark
    h.set_price("BTC", int(h.price("BTC")) * 985 // 1000 // WAD, admin)
    fresh = trigger_equity(Snapshot.load(protocol, acct, "pending"))
    assert fresh < floor, "precondition: below the floor at the current oracle prices"
    assert int(ch.account_margin(acct).equity) >= floor  # ... but not at the cached mark

    # the account may only reduce: growing ETH must be refused
    with ape.reverts(BELOW_LOSS_CAP):
        h.trade(trader, acct, "ETH", "1")


# --- the keeper --------------------------------------------------------------------------
# Finding K1 -- `perpdex keeper loss-caps` sends triggers that pay it nothing.
# `trigger_loss_cap` pays min(loss_cap_fee, the account's settlement balance); an account
# backed by another collateral (WETH) has a settlement balance <= 0 once it paid a fee,
# so the trigger pays 0 and the keeper still sends it (its plan reads the floor, header
# and equity, never the settlement balance nor the gas). Anyone can set such an account
# up with a floor above its equity; a position larger than one window's
# `_forced_limit` makes the keeper pay one such transaction per window.
# Suggested fix: read `balance_of(account, 0)` in the batch, estimate the fee it would
# earn (min(loss_cap_fee, balance)) and skip (or deprioritise) a trigger whose fee is
# below the gas it would pay (estimate x gas price), logging why.


def test_keeper__does_not_pay_gas_for_a_trigger_that_pays_no_fee(
    protocol, ch, h, r2_pool, project, trader, keeper, admin, tmp_path
):
    from perpdex.keepers.loss_caps import LossCapKeeper

    weth = project.MockERC20.deploy("Mock WETH", "WETH", 18, sender=admin)
    protocol.admin.add_collateral(
        weth, WAD // 10, protocol.market_id("ETH"), 2**256 - 1, sender=admin
    )
    acct = int(ch.open_account("weth-only", False, sender=trader).return_value)
    weth.mint(trader, 10 * WAD, sender=trader)
    weth.approve(ch, 2**256 - 1, sender=trader)
    protocol.ops.deposit(acct, weth, 10 * WAD, sender=trader)
    h.trade(trader, acct, "BTC", "0.05")  # the fee leaves the USDC balance negative
    assert int(ch.balance_of(acct, 0)) <= 0
    equity = int(ch.account_margin(acct).equity)
    protocol.ops.set_loss_cap(acct, equity + 1_000 * WAD, sender=trader)  # a bait

    k = LossCapKeeper(protocol, keeper, state_path=tmp_path / "lc.json")
    k.tick()
    sent = [o for o in k.history if o.account == acct and o.stage != "preflight"]
    paid_nothing = [o for o in sent if o.ok and o.fee == 0]
    assert not paid_nothing, (
        f"the keeper paid {paid_nothing[0].gas_used:,} gas for a trigger that earned $0"
    )


# --- the SDK -----------------------------------------------------------------------------
# Finding W1 -- `withdraw_all` blames positions a flat account does not have. With a
# loss cap above its equity (the chain accepts one; or equity fell below it), a flat
# account can withdraw nothing, and `withdraw_all` says its USDC "backs the open
# positions' initial margin; close or reduce positions first" -- there are none; what
# frees it is lowering the cap (`perpdex strategies loss-cap ... 0`).
# Suggested fix: when `snap.loss_cap` binds (equity - floor < the margin-free value),
# say so and name the command that lowers it.


def test_withdraw_all__flat_account_held_by_its_loss_cap__says_so(protocol, ch, h, r2_pool, trader):
    from perpdex.errors import PerpdexError
    from perpdex.sdk.client import PerpdexClient

    acct = h.funded_account(trader, 1_000, name="flat-capped")
    protocol.ops.set_loss_cap(acct, 2_000 * WAD, sender=trader)
    client = PerpdexClient.from_protocol(protocol, trader)
    with pytest.raises(PerpdexError) as err:
        client.withdraw_all(acct)
    assert "loss cap" in str(err.value), str(err.value)
