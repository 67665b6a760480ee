"""Issue 12, item 6: vault fills at a price the trader could not know.

The attack (main at a5d64ae): `trade` fills against the vault at the oracle's latest
on-chain price. Whoever knows the next feed update before the chain does (the report in
flight, a faster venue that moved first) buys before an update up, or sells before one
down, and closes right after it: 2 BTC ahead of a +0.5% update at $100k earn about $1,000
less ~$200 of fees and premium, paid by the vault's LPs.

The defence (modules/delayed.vy, next commit): per market, `set_delayed_params` makes adding vault
trades (mode 1) or every vault trade (mode 2) go through `commit_order` and a later
`settle_order`, which anyone may call once the oracle's reading of the market was
observed at least `min_delay` seconds after the commit (OracleRouter.price_time): the
update the trader knew lands too early to fill the order, which fills at the first price
observed after the delay, which at commit nobody knew. The same round trip then only pays
fees. Mode 1 leaves immediate reduces: a holder who knows the next update can still close
ahead of it (the residual edge, shown below); mode 2 takes it away too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.units import WAD

MIN_DELAY = 30
MAX_AGE = 300
KEEPER_FEE = 2 * WAD
ANY_PRICE = 2**256 - 1


@pytest.fixture(scope="module")
def pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 2_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture
def btc(protocol: Any) -> int:
    return protocol.market_id("BTC")


@pytest.fixture
def risk(protocol: Any) -> Any:
    return protocol.risk


def _delayed(risk: Any, admin: Any, m: int, mode: int, fee: int = KEEPER_FEE) -> Any:
    return risk.set_delayed_params(m, mode, MIN_DELAY, MAX_AGE, fee, sender=admin)


def _push(h: Any, usd: int | str | Decimal, who: Any, after: int = 0) -> None:
    """Every BTC feed observes `usd`, `after` seconds from now."""
    if after:
        ape.chain.pending_timestamp += after
    h.set_price("BTC", usd, who)


def _wad(size: str) -> int:
    return int(Decimal(size) * WAD)


def _round_trip_gain(ch: Any, acct: int, start: int) -> int:
    return int(ch.balance_of(acct, 0)) - start


# --- the attack ----------------------------------------------------------------------------


def test_attack__immediate_trade_ahead_of_a_known_update_profits(
    protocol, ch, h, pool, btc, trader, keeper
):
    """Mode 0 (the default, immediate): the vault pays whoever knows the next price."""
    acct = h.funded_account(trader, 100_000, name="front-runner")
    start = int(ch.balance_of(acct, 0))
    h.trade(trader, acct, "BTC", "2")  # at $100,000 (+ premium, + fee)
    _push(h, 100_500, keeper)  # the update the trader saw coming
    h.trade(trader, acct, "BTC", "-2")  # closes at $100,500
    assert ch.position(acct, btc)[0] == 0
    gain = _round_trip_gain(ch, acct, start)
    assert gain > 700 * WAD, f"front-running a +0.5% update made only {gain / WAD}"
