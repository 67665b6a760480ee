"""Live networks send transactions with estimated gas, not the block gas limit.

ape's local test network gives every transaction the block gas limit, so a path whose
estimate runs short would never fail here; on Arbitrum, Base or Optimism it reverts and
the gas is paid. These tests send with `eth_estimateGas` figures as a live node would
and show (1) what an unpadded estimate does on our contracts, (2) that every SDK write
path, which pads its estimate (perpdex.sdk.gas), goes through.
"""

from __future__ import annotations

from typing import Any

import pytest

from perpdex.sdk.client import PerpdexClient
from perpdex.sdk.gas import padded_gas

USDC = 10**6


@pytest.fixture
def pool(vault_pool: Any) -> Any:
    return vault_pool


def _push_prices(p: Any, who: Any, moves: dict[str, float]) -> None:
    for symbol, factor in moves.items():
        for feed in p.feeds[symbol]:
            answer = int(feed.latestRoundData()[1])
            feed.set_answer(int(answer * factor), sender=who)


def test_padding__covers_the_estimate_plus_headroom():
    assert padded_gas(100_000) >= 125_000
    assert padded_gas(1_000_000) >= 1_250_000


def test_sdk_write_paths__succeed_with_estimated_gas(protocol, trader, keeper, pool, chain):
    """The newcomer's path, every transaction with the SDK's padded estimate: the
    receipts' gas limits are far below the block gas limit, so no 'max' hides a short
    estimate."""
    c = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    receipts: list[Any] = []
    acct = c.open_account("gas")
    receipts.append(c.deposit(acct, 150_000))
    for sym, size in (("BTC", "0.5"), ("ETH", "-10"), ("SOL", "200")):
        fill = c.trade(acct, sym, size)
        receipts.append(chain.provider.get_receipt(fill.tx_hash))
    receipts.append(c.set_margin_mode(acct, True))
    _push_prices(protocol, keeper, {"BTC": 1.01, "ETH": 0.99, "SOL": 1.02})
    fill = c.trade(acct, "BTC", "0.1")  # marks refresh in this block: the costly path
    receipts.append(chain.provider.get_receipt(fill.tx_hash))
    receipts.append(c.set_loss_cap(acct, 1_000))
    side = c.open_account("side")
    receipts.append(c.transfer(acct, side, 1_000))
    for sym in ("BTC", "ETH", "SOL"):
        closed = c.close(acct, sym)
        receipts.append(chain.provider.get_receipt(closed.tx_hash))
    receipts.append(c.withdraw(acct, 10_000))
    block_limit = chain.blocks.head.gas_limit
    for r in receipts:
        assert not r.failed
        assert r.gas_limit < block_limit // 10, "sent with the block gas limit, not an estimate"
        assert r.gas_used <= r.gas_limit


def test_estimate__runs_short_when_prices_move_before_inclusion(
    protocol, trader, keeper, pool, chain
):
    """The live hazard: the wallet estimates, then a keeper's price update lands first,
    so the trade's block must refresh the marks the estimate found fresh. Sent with the
    bare estimate (a live network's default) it can run out of gas; with the SDK's
    padding (perpdex.sdk.gas) every one goes through. Each trade is tried both ways from
    the same snapshot."""
    c = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    acct = c.open_account("raw")
    c.deposit(acct, 150_000)
    ch = protocol.clearinghouse
    short: list[str] = []
    for i, (sym, size) in enumerate((("BTC", 0.5), ("ETH", -10), ("SOL", 200), ("BTC", 0.1))):
        m = protocol.market_id(sym)
        delta = int(size * 10**18)
        bound = 2**88 - 1 if delta > 0 else 1
        est = int(ch.trade.estimate_gas_cost(acct, m, delta, bound, sender=trader))
        moves = {"BTC": 1.001 + i / 1000, "ETH": 0.999, "SOL": 1.002}
        snap = chain.snapshot()
        _push_prices(protocol, keeper, moves)
        r = ch.trade(acct, m, delta, bound, sender=trader, gas_limit=est, raise_on_revert=False)
        if r.failed:
            short.append(f"{sym} {size}: estimate {est:,}, needed more")
        chain.restore(snap)
        _push_prices(protocol, keeper, moves)
        r = ch.trade(
            acct, m, delta, bound, sender=trader, gas_limit=padded_gas(est), raise_on_revert=False
        )
        assert not r.failed, f"{sym} {size} failed with the padded estimate {padded_gas(est):,}"
    print("bare estimates that ran short:", short or "none")


def test_estimate__taken_on_a_mark_refreshed_in_its_block_still_covers_the_oracle_path(
    protocol, trader, keeper, pool, chain
):
    """A trade reuses a quorum-checked mark refreshed in its own block and skips the
    oracle (marks._touch_with, about 60k gas less). An estimate taken right after a
    keeper's `refresh` sees that cheap path; the trade is included a block later, where
    the mark is stale, and pays the whole oracle path. The bare estimate runs short; the
    SDK's padded one (perpdex.sdk.gas) must not."""
    c = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 200_000 * USDC, sender=trader)
    acct = c.open_account("reuse")
    c.deposit(acct, 150_000)
    c.trade(acct, "BTC", "0.5")
    ch = protocol.clearinghouse
    m = protocol.market_id("BTC")
    delta, bound = 10**17, 2**88 - 1
    _push_prices(protocol, keeper, {"BTC": 1.001})
    protocol.ops.refresh([m], sender=keeper)
    est = int(ch.trade.estimate_gas_cost(acct, m, delta, bound, sender=trader))
    chain.mine(1, deltatime=2)  # the trade lands in a later block: the mark is stale
    snap = chain.snapshot()
    bare = ch.trade(acct, m, delta, bound, sender=trader, gas_limit=est, raise_on_revert=False)
    chain.restore(snap)
    r = ch.trade(
        acct, m, delta, bound, sender=trader, gas_limit=padded_gas(est), raise_on_revert=False
    )
    print(f"estimate {est:,}; bare estimate failed: {bare.failed}; used {r.gas_used:,}")
    assert not r.failed, f"padded estimate {padded_gas(est):,} ran short: used {r.gas_used:,}"


def test_out_of_gas__is_reported_as_such(protocol, trader, pool):
    """A limit that cannot cover the call ends in OutOfGas with what to do, not a VM
    error (the node refuses it before mining, or it is mined and fails)."""
    from perpdex.sdk import gas

    c = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 20_000 * USDC, sender=trader)
    acct = c.open_account("oog")
    c.deposit(acct, 20_000)
    with pytest.raises(gas.OutOfGas, match="PERPDEX_GAS_MULTIPLIER"):
        gas.send(
            "trade",
            protocol.clearinghouse.trade,
            acct,
            0,
            10**17,
            2**88 - 1,
            sender=trader,
            gas_limit=60_000,
        )


def test_multiplier__env_override_is_checked(monkeypatch):
    from perpdex.errors import PerpdexError
    from perpdex.sdk import gas

    monkeypatch.setenv("PERPDEX_GAS_MULTIPLIER", "2")
    assert padded_gas(100_000) == 200_000 + gas.GAS_HEADROOM
    monkeypatch.setenv("PERPDEX_GAS_MULTIPLIER", "0.5")
    with pytest.raises(PerpdexError, match="between 1 and 10"):
        padded_gas(100_000)
