"""`perpdex keeper loss-caps` (perpdex/keepers/loss_caps.py) against the test chain: it
finds capped accounts from `LossCapSet` logs, triggers the one below its floor exactly
once (a second tick and a restarted keeper do nothing), skips a healthy one, and logs an
eth_call refusal instead of sending it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from perpdex.keepers.loss_caps import LossCapKeeper, plan
from perpdex.units import WAD

POOL_UNITS = 5_000_000


@pytest.fixture(scope="module")
def lck_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, POOL_UNITS)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


def _btc_long(protocol: Any, h: Any, trader: Any, floor: int, name: str) -> int:
    acct = h.funded_account(trader, 20_000, name=name)
    h.trade(trader, acct, "BTC", "1")
    protocol.ops.set_loss_cap(acct, floor * WAD, sender=trader)
    return acct


def _drop_btc(protocol: Any, h: Any, who: Any) -> None:
    """BTC -1.5%: a 1-BTC long on $20k ends at ~$18.5k equity."""
    h.set_price("BTC", int(h.price("BTC")) * 985 // 1000 // WAD, who)
    protocol.ops.refresh([protocol.market_id("BTC")], sender=who)


def _outcomes(k: LossCapKeeper, acct: int) -> list[Any]:
    return [o for o in k.history if o.account == acct]


def test_keeper__triggers_once_skips_healthy_and_survives_restart(
    protocol, ch, token, h, lck_pool, trader, hedger, keeper, admin, tmp_path, caplog
):
    capped = _btc_long(protocol, h, trader, 19_000, "capped")
    healthy = _btc_long(protocol, h, hedger, 10_000, "healthy")
    uncapped = h.funded_account(hedger, 20_000, name="uncapped")
    h.trade(hedger, uncapped, "BTC", "1")
    _drop_btc(protocol, h, admin)
    assert int(ch.account_margin(capped).equity) < 19_000 * WAD
    wallet = int(token.balanceOf(keeper))
    state = tmp_path / "loss-caps.json"

    k = LossCapKeeper(protocol, keeper, state_path=state)
    caplog.set_level(logging.INFO, logger="perpdex.keepers.loss_caps")
    r1 = k.tick()
    assert {capped, healthy} <= k.state.accounts and uncapped not in k.state.accounts
    (done,) = _outcomes(k, capped)
    assert done.ok and done.gas_used > 0 and done.fee == int(ch.loss_cap_fee())
    assert int(ch.position(capped, protocol.market_id("BTC"))[0]) == 0
    assert int(ch.position(healthy, protocol.market_id("BTC"))[0]) == WAD  # not touched
    assert _outcomes(k, healthy) == []  # far above its floor: not even preflighted
    assert int(token.balanceOf(keeper)) - wallet == done.fee // 10**12
    assert r1.below >= 1 and any(f"trigger {capped:#x} ok" in m for m in caplog.messages)

    nonce = keeper.nonce
    r2 = k.tick()  # the account has nothing left to close: nothing to do
    assert [o for o in r2.outcomes if o.account in (capped, healthy)] == []
    assert keeper.nonce == nonce

    again = LossCapKeeper(protocol, keeper, state_path=state)  # restart from the file
    assert again.state.cursor == k.state.cursor and again.state.accounts == k.state.accounts
    assert again.state.counts.get("trigger", 0) == k.state.counts["trigger"]
    again.tick()
    assert _outcomes(again, capped) == [] and keeper.nonce == nonce


def test_keeper__near_the_floor__preflight_refusal_is_logged_not_sent(
    protocol, ch, h, lck_pool, trader, keeper, caplog
):
    acct = _btc_long(protocol, h, trader, 1, "near")
    equity = int(ch.account_margin(acct).equity)
    protocol.ops.set_loss_cap(acct, equity - WAD, sender=trader)  # $1 above: within `near`
    k = LossCapKeeper(protocol, keeper)
    caplog.set_level(logging.INFO, logger="perpdex.keepers.loss_caps")
    nonce = keeper.nonce
    k.tick()
    (o,) = _outcomes(k, acct)
    assert not o.ok and o.stage == "preflight"
    assert o.error == "clearinghouse: equity above loss cap"
    assert keeper.nonce == nonce
    assert any("skip trigger" in m and "equity above loss cap" in m for m in caplog.messages)


def test_keeper__send_revert_is_an_outcome_not_a_crash(
    protocol, ch, h, lck_pool, trader, keeper, admin, monkeypatch
):
    """Another keeper wins between the eth_call and the send: logged, the tick goes on."""
    from perpdex.keepers import loss_caps

    acct = _btc_long(protocol, h, trader, 19_000, "raced")
    _drop_btc(protocol, h, admin)
    k = LossCapKeeper(protocol, keeper)
    real = loss_caps.preflight

    def racing(method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        ok = real(method, args, sender)
        if ok is None and args[0] == acct:
            protocol.ops.trigger_loss_cap(acct, sender=admin)  # the rival is faster
        return ok

    monkeypatch.setattr(loss_caps, "preflight", racing)
    k.tick()
    (o,) = _outcomes(k, acct)
    assert not o.ok and o.stage == "send" and "no positions" in o.error


def test_plan__only_capped_open_unlocked_accounts_near_or_below():
    from perpdex.keepers.loss_caps import CapRead

    pos = 1 << 48
    reads = [
        CapRead(1, 100 * WAD, pos | 1, 99 * WAD, 50 * WAD),  # below
        CapRead(2, 100 * WAD, pos | 1, 101 * WAD, 50 * WAD),  # within 2%
        CapRead(3, 100 * WAD, pos | 1, 103 * WAD, 50 * WAD),  # above
        CapRead(4, 0, pos | 1, -5 * WAD, 50 * WAD),  # no cap
        CapRead(5, 100 * WAD, 1, 0, 50 * WAD),  # no positions
        CapRead(6, 100 * WAD, pos | 1 | 4, 0, 50 * WAD),  # in liquidation
        CapRead(7, 100 * WAD, pos | 1, 50 * WAD, 0),  # no settlement balance: no fee
    ]
    from decimal import Decimal

    assert [r.account for r in plan(reads, Decimal("0.02"))] == [1, 2]
