"""Issue 9, item 7: the loss-cap close-out cannot be sandwiched for profit.

Attack on main at e9e2063: `trigger_loss_cap` closed the whole book with market orders at
the skew premium, at a time the caller chooses. An attacker sold S BTC, triggered the
close-out of a victim's L BTC long (pushing the skew down by L), and bought S back
cheaper: it gains S x P x L / skew_scale and pays about (maker + taker) x S x P in fees.
With L = 20 at $100k (skew_scale 10,000) the round trip gains 20 bp of S x P against at
most 7 bp of fees: +$1.3k for S = 10, +$3.9k for S = 30, growing with S (the issue's
figure: +$650 against the $5 trigger fee).

The rule now (modules/trading.vy `_forced_limit`): the forced fill is at the oracle
price, and per market per 60 s window it closes at most 2 x min(maker, taker) x
skew_scale (4 BTC here), so the premium a round trip captures, S x P x L / skew_scale,
never exceeds the 2 x maker x S x P it pays in fees. The rest closes in later windows.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.sdk import math as pm
from perpdex.units import WAD

BTC_SCALE = 10_000 * WAD
LIMIT = 2 * min(2 * 10**14, 5 * 10**14) * BTC_SCALE // WAD  # 4 BTC


@pytest.fixture(scope="module")
def sandwich_pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 5_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture(scope="module")
def victim(sandwich_pool: None, protocol: Any, ch: Any, h: Any, trader: Any) -> int:
    """A 20 BTC long whose owner set a floor just above its equity."""
    acct = h.funded_account(trader, 400_000, name="victim")
    h.trade(trader, acct, "BTC", "20")
    equity = int(ch.account_margin(acct).equity)
    protocol.ops.set_loss_cap(acct, equity + 1_000 * WAD, sender=trader)
    return acct


def _attacker(h: Any, hedger: Any) -> int:
    return h.funded_account(hedger, 1_000_000, name="sandwich")


@pytest.mark.parametrize("s", ["1", "10", "30"])
def test_loss_cap__sandwich_does_not_pay(protocol, ch, h, victim, hedger, s):
    btc = protocol.market_id("BTC")
    attacker = _attacker(h, hedger)
    start = int(ch.balance_of(attacker, 0))
    h.trade(hedger, attacker, "BTC", f"-{s}")  # push the skew down first
    protocol.ops.trigger_loss_cap(victim, sender=hedger)
    h.trade(hedger, attacker, "BTC", s)  # unwind after the forced sell
    assert ch.position(attacker, btc)[0] == 0
    gain = int(ch.balance_of(attacker, 0)) - start
    assert gain < 0, f"sandwich of {s} BTC around a loss-cap close-out made {gain / WAD}"


def test_loss_cap__fills_at_oracle_within_the_window(protocol, ch, h, victim, keeper):
    btc = protocol.market_id("BTC")
    oracle = h.price("BTC")
    long_oi, short_oi = (int(x) for x in ch.open_interest(btc))
    tx = protocol.ops.trigger_loss_cap(victim, sender=keeper)
    fills = [f for f in tx.decode_logs(ch.Fill) if f.account == victim]
    assert len(fills) == 1
    assert fills[0].price == oracle  # no skew premium
    assert fills[0].size_delta == -LIMIT
    assert ch.position(victim, btc)[0] == 20 * WAD - LIMIT
    fee = pm.fee(oracle, long_oi - short_oi, -LIMIT, 2 * 10**14, 5 * 10**14)
    assert int(ch.pending_fees()) >= fee
    window = int(ch.loss_cap_window(btc))
    assert window & (2**128 - 1) == LIMIT
    # the window is used up: nothing more closes until it rolls over
    with ape.reverts("clearinghouse: loss-cap window used up"):
        protocol.ops.trigger_loss_cap(victim, sender=keeper)
    ape.chain.pending_timestamp += 61
    protocol.ops.trigger_loss_cap(victim, sender=keeper)
    assert ch.position(victim, btc)[0] == 20 * WAD - 2 * LIMIT
    for _ in range(3):  # the rest, one window at a time
        ape.chain.pending_timestamp += 61
        protocol.ops.trigger_loss_cap(victim, sender=keeper)
    assert ch.position(victim, btc)[0] == 0
    assert ch.account_header(victim) >> 48 & 0xFF == 0
