"""`perpdex keeper adl` (perpdex/keepers/adl.py) against the test chain.

The PnL cap is built as tests/security/test_vault_limits.py builds it: the cap lowered to
10% (target 5%) of pool equity, two BTC longs and a short, BTC +70%: traders' net profit
~11.7% of equity. One keeper round must bring BTC back to the target with AutoDeleveraged
events, the most leveraged winner first; a second round (and a restarted keeper) sends
nothing; a round on healthy markets sends nothing; a candidate that reverts is logged and
skipped, and the next one takes its place.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.keepers.adl import AdlKeeper, market_status
from perpdex.sdk.math import vault_limits as vl
from perpdex.units import WAD


@pytest.fixture(scope="module")
def adl_pool(actors: dict[str, Any], protocol: Any, h: Any) -> int:
    """$1M of LP cash, as in test_vault_limits."""
    lp = actors["lp"]
    units = h.fund(lp, 1_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    return units


def _limits(protocol: Any, admin: Any, factor_bps: int, target_bps: int) -> None:
    protocol.risk.set_vault_limits(
        int(protocol.ops.max_total_exposure()),
        factor_bps * WAD // 10_000,
        target_bps * WAD // 10_000,
        sender=admin,
    )


def _pnl_capped_btc(protocol: Any, h: Any, trader: Any, hedger: Any, admin: Any, keeper: Any):
    """(levered winner, calm winner, loser) with BTC over a 10% PnL cap."""
    _limits(protocol, admin, 1_000, 500)
    btc = protocol.market_id("BTC")
    levered = h.funded_account(trader, 60_000, name="levered")
    calm = h.funded_account(hedger, 200_000, name="calm")
    loser = h.funded_account(hedger, 100_000, name="loser")
    h.trade(trader, levered, "BTC", "1.5")
    h.trade(hedger, calm, "BTC", "1")
    h.trade(hedger, loser, "BTC", "-1")
    h.set_price("BTC", 170_000, admin)
    protocol.ops.refresh([btc], sender=keeper)
    return levered, calm, loser


def _btc(k: AdlKeeper, protocol: Any) -> Any:
    return market_status(k.read_pool(), protocol.market_id("BTC"))


def test_round__brings_the_market_to_target_once(
    protocol, ch, h, adl_pool, trader, hedger, admin, keeper, tmp_path, caplog
):
    levered, calm, loser = _pnl_capped_btc(protocol, h, trader, hedger, admin, keeper)
    btc = protocol.market_id("BTC")
    state = tmp_path / "adl.json"
    k = AdlKeeper(protocol, keeper, state_path=state)
    before = _btc(k, protocol)
    assert before.pnl_capped and before.ratio > Decimal("0.10")
    caplog.set_level(logging.INFO, logger="perpdex.keepers.adl")
    size0 = int(ch.position(levered, btc)[0])

    r1 = k.tick()
    assert {levered, calm, loser} <= k.state.accounts
    assert [o.market for o in r1.outcomes] == [btc]  # ETH and SOL are healthy: untouched
    (o,) = r1.outcomes
    # the most leveraged winner first; the loser never
    assert o.ok and o.account == levered and o.reason == vl.REASON_PNL and o.gas_used > 0
    # the event's fill, which the mirror predicted at the cached mark (a second of funding
    # apart), closes part of the position, not all of it
    assert o.size_delta < 0 and -o.size_delta < size0
    assert o.expected_delta is not None
    assert abs(o.size_delta - o.expected_delta) * 1_000 <= abs(o.size_delta)
    assert int(ch.position(levered, btc)[0]) == size0 + o.size_delta
    after = _btc(k, protocol)
    print(f"ADL keeper: BTC profit/equity {before.ratio:.4%} -> {after.ratio:.4%}")
    assert not after.open and after.ratio <= Decimal("0.05")
    assert after.ratio >= Decimal("0.049")  # back to the target, not far below it
    with ape.reverts("clearinghouse: vault within its limits"):
        protocol.risk.auto_deleverage(calm, btc, sender=keeper)
    assert any(f"adl {levered:#x} market {btc} ok" in m for m in caplog.messages)
    assert any("back within its limits" in m for m in caplog.messages)

    nonce = keeper.nonce
    r2 = k.tick()  # within its limits now: nothing to do
    assert r2.outcomes == [] and keeper.nonce == nonce
    again = AdlKeeper(protocol, keeper, state_path=state)  # restart from the file
    assert again.state.cursor == k.state.cursor and again.state.accounts == k.state.accounts
    assert again.state.counts == {"adl": 1}
    assert again.tick().outcomes == [] and keeper.nonce == nonce


def test_round__healthy_markets__nothing_sent(
    protocol, ch, h, adl_pool, trader, hedger, admin, keeper
):
    acct = h.funded_account(trader, 100_000, name="healthy")
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "-5")
    h.set_price("BTC", 110_000, admin)  # +10% on 1 BTC: far under the 45% default cap
    protocol.ops.refresh([protocol.market_id("BTC")], sender=keeper)
    k = AdlKeeper(protocol, keeper)
    nonce = keeper.nonce
    r = k.tick()
    assert acct in k.state.accounts
    assert r.outcomes == [] and keeper.nonce == nonce
    assert len(r.markets) == int(ch.market_count())
    assert not any(st.open or st.near for st in r.markets)


def test_round__reverting_candidate_is_logged_and_skipped(
    protocol, ch, h, adl_pool, trader, hedger, admin, keeper, monkeypatch, caplog
):
    """The top of the queue refuses at the eth_call (e.g. a portfolio account the ADL would
    leave liquidatable, which the keeper cannot see from its reads): logged, skipped,
    and the next winner brings the market back."""
    from perpdex.keepers import adl

    levered, calm, _ = _pnl_capped_btc(protocol, h, trader, hedger, admin, keeper)
    btc = protocol.market_id("BTC")
    real = adl.preflight
    refusal = "clearinghouse: adl would leave the account liquidatable"

    def refusing(method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        return refusal if args[0] == levered else real(method, args, sender)

    monkeypatch.setattr(adl, "preflight", refusing)
    caplog.set_level(logging.INFO, logger="perpdex.keepers.adl")
    k = AdlKeeper(protocol, keeper)
    r = k.tick()
    skipped, done = r.outcomes
    assert (skipped.account, skipped.ok, skipped.stage, skipped.error) == (
        levered,
        False,
        "preflight",
        refusal,
    )
    assert any(f"skip adl {levered:#x}" in m and refusal in m for m in caplog.messages)
    assert done.ok and done.account == calm and done.size_delta < 0
    assert int(ch.position(levered, btc)[0]) == 3 * WAD // 2  # untouched
    assert not _btc(k, protocol).open


def test_round__send_revert_is_an_outcome_not_a_crash(
    protocol, ch, h, adl_pool, trader, hedger, admin, keeper, monkeypatch
):
    """Another keeper deleverages between the eth_call and the send: the send reverts,
    is recorded, and the market's next candidate sees it within its limits."""
    from perpdex.keepers import adl

    levered, calm, _ = _pnl_capped_btc(protocol, h, trader, hedger, admin, keeper)
    btc = protocol.market_id("BTC")
    real = adl.preflight

    def racing(method: Any, args: tuple[Any, ...], sender: str) -> str | None:
        ok = real(method, args, sender)
        if ok is None and args[0] == levered:
            protocol.risk.auto_deleverage(levered, btc, sender=admin)  # the rival is faster
        return ok

    monkeypatch.setattr(adl, "preflight", racing)
    k = AdlKeeper(protocol, keeper)
    r = k.tick()
    lost, nothing = r.outcomes
    assert (lost.account, lost.ok, lost.stage) == (levered, False, "send")
    assert "within its limits" in lost.error
    assert (nothing.account, nothing.stage) == (calm, "preflight")
    assert not _btc(k, protocol).open
