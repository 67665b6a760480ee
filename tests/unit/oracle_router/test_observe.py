"""`observe` and `twap`: the per-market EMA against a Python reference."""

import ape
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpdex.constants import FLAG_DEGRADED

from .helpers import MAX_AGE, USD, WAD, Params, ema_step

WINDOW = 600


@pytest.fixture
def market(add_market, deploy_twin):
    """An 18-decimal market of two feeds that answer alike (prices in WAD straight from
    the feeds), driven like one feed."""
    feed = deploy_twin(18, 2_000 * WAD)
    return add_market(feed, Params(twap_window=WINDOW)), feed


def test_observe__first_sets_ema_to_price(router, market, keeper, chain):
    market_id, _ = market

    tx = router.observe(market_id, sender=keeper)

    assert tx.return_value == (2_000 * WAD, 0)
    ts = chain.blocks[tx.block_number].timestamp
    assert router.observation(market_id) == (2_000 * WAD, 2_000 * WAD, ts)
    assert router.twap(market_id) == 2_000 * WAD


def test_observe__emits_price_observed(router, market, keeper):
    market_id, _ = market

    tx = router.observe(market_id, sender=keeper)

    events = router.PriceObserved.from_receipt(tx)
    assert len(events) == 1
    assert events[0].market == market_id
    assert events[0].price == 2_000 * WAD
    assert events[0].twap == 2_000 * WAD
    assert events[0].flags == 0


def test_observe__without_quorum_records_nothing(router, feeds, add_market, keeper, admin, chain):
    market_id = add_market(feeds[:2], Params(min_fresh=2, twap_window=WINDOW))
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)  # price 2,005, ema 2,005
    before = router.observation(market_id)
    feeds[0].set_answer(1_000 * USD, sender=admin)  # 1,000 vs 2,010: no quorum
    chain.pending_timestamp = start + WINDOW // 2

    tx = router.observe(market_id, sender=keeper)

    # the last quorum price and the stored EMA, with DEGRADED; never the mean 1,505
    assert tx.events == [
        router.PriceObserved(market=market_id, price=2_005 * WAD, twap=2_005 * WAD, flags=1)
    ]
    assert tx.return_value == (2_005 * WAD, FLAG_DEGRADED)
    assert router.observation(market_id) == before


def test_observe__quorum_returns_folds_last_quorum_price(
    router, feeds, add_market, keeper, admin, chain
):
    market_id = add_market(feeds[:2], Params(min_fresh=2, twap_window=WINDOW))
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)  # 2,005 at start
    feeds[0].set_answer(20_000 * USD, sender=admin)
    chain.pending_timestamp = start + 100
    router.observe(market_id, sender=keeper)  # no quorum: nothing recorded
    feeds[0].set_answer(2_030 * USD, sender=admin)  # 2,030 vs 2,010: agree, mean 2,020
    chain.pending_timestamp = start + 300

    tx = router.observe(market_id, sender=keeper)

    # the EMA moved toward 2,005 (the last quorum price) over 300 s, never toward 11,005
    ema = ema_step(2_005 * WAD, 2_005 * WAD, 300, WINDOW)
    assert tx.return_value == (2_020 * WAD, 0)
    assert router.observation(market_id) == (2_020 * WAD, ema, start + 300)


def test_observe__moves_ema_toward_last_price(router, market, keeper, admin, chain):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 100
    feed.set_answer(2_600 * WAD, sender=admin)
    chain.pending_timestamp = start + 100
    router.observe(market_id, sender=keeper)  # dt 100 with last_price 2,000: ema stays 2,000
    chain.pending_timestamp = start + 400

    tx = router.observe(market_id, sender=keeper)  # dt 300 at 2,600: ema + 600 * 300 / 600

    assert tx.return_value == (2_600 * WAD, 0)
    assert router.observation(market_id) == (2_600 * WAD, 2_300 * WAD, start + 400)


def test_observe__same_timestamp_keeps_ema_and_takes_newest_price(
    router, market, keeper, admin, chain
):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + WINDOW
    feed.set_answer(3_000 * WAD, sender=admin)
    chain.pending_timestamp = start + WINDOW
    router.observe(market_id, sender=keeper)  # ema -> 2,000 (last_price 2,000 for a window)
    chain.pending_timestamp = start + WINDOW
    feed.set_answer(2_500 * WAD, sender=admin)

    for _ in range(2):
        chain.pending_timestamp = start + WINDOW
        tx = router.observe(market_id, sender=keeper)
        assert chain.blocks[tx.block_number].timestamp == start + WINDOW

    assert router.observation(market_id) == (2_500 * WAD, 2_000 * WAD, start + WINDOW)


def test_observe__gap_longer_than_window_jumps_to_last_price(router, market, keeper, admin, chain):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 1
    feed.set_answer(2_500 * WAD, sender=admin)
    chain.pending_timestamp = start + 1
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 10 * WINDOW
    feed.set_answer(2_400 * WAD, sender=admin)

    tx = router.observe(market_id, sender=keeper)

    assert router.PriceObserved.from_receipt(tx)[0].twap == 2_500 * WAD


def test_observe__invalid_sources_do_not_revert(router, market, keeper, admin):
    market_id, feed = market
    feed.set_answer(0, sender=admin)

    tx = router.observe(market_id, sender=keeper)

    assert tx.return_value == (0, FLAG_DEGRADED)
    assert router.observation(market_id) == (0, 0, 0)


def test_observe__stale_has_no_quorum(router, market, keeper, set_round, chain):
    market_id, feed = market
    router.observe(market_id, sender=keeper)
    before = router.observation(market_id)
    now = chain.pending_timestamp + 10
    set_round(feed, 2_000 * WAD, now - MAX_AGE - 1)
    chain.pending_timestamp = now

    tx = router.observe(market_id, sender=keeper)

    assert tx.return_value == (2_000 * WAD, FLAG_DEGRADED)
    assert router.observation(market_id) == before


@pytest.mark.parametrize("market_id", [1, 2**256 - 1])
def test_observe__unknown_market_reverts(router, keeper, feeds, add_market, market_id):
    add_market(feeds[:2])  # only market 0 exists

    with ape.reverts("oracle: unknown market"):
        router.observe(market_id, sender=keeper)


@pytest.mark.parametrize("market_id", [1, 2**256 - 1])
def test_twap__unknown_market_reverts(router, feeds, add_market, market_id):
    add_market(feeds[:2])  # only market 0 exists

    with ape.reverts("oracle: unknown market"):
        router.twap(market_id, skip_trace=True)


def test_twap__never_observed_reverts(router, market):
    market_id, _ = market

    with ape.reverts("oracle: no observation"):
        router.twap(market_id, skip_trace=True)


def test_twap__carries_ema_forward_without_reading(router, market, keeper, admin, chain, warp):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 1
    feed.set_answer(2_600 * WAD, sender=admin)
    chain.pending_timestamp = start + 1
    router.observe(market_id, sender=keeper)  # last_price 2,600, ema still 2,000
    ema = ema_step(2_000 * WAD, 2_000 * WAD, 1, WINDOW)
    feed.set_answer(1 * WAD, sender=admin)  # not read by `twap`

    warp(start + 1 + 150)

    assert router.twap(market_id) == ema_step(2_600 * WAD, ema, 150, WINDOW)


def test_twap__uses_current_window(router, market, keeper, admin, chain, warp):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    chain.pending_timestamp = start
    router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 1
    feed.set_answer(2_600 * WAD, sender=admin)
    chain.pending_timestamp = start + 1
    router.observe(market_id, sender=keeper)
    ema = ema_step(2_000 * WAD, 2_000 * WAD, 1, WINDOW)
    router.set_params(market_id, *Params(twap_window=1_200).args(), sender=admin)

    warp(start + 1 + 300)

    assert router.twap(market_id) == ema_step(2_600 * WAD, ema, 300, 1_200)


def test_observe__stranger_may_observe(router, market, stranger):
    market_id, _ = market

    tx = router.observe(market_id, sender=stranger)

    assert tx.return_value == (2_000 * WAD, 0)


# Price steps: (seconds since the previous observation, price in WAD). A dt of 0 observes
# again at the same timestamp; dts up to twice the window cover the `min(dt, window)` cap.
_STEPS = st.lists(
    st.tuples(
        st.one_of(st.just(0), st.integers(min_value=1, max_value=2 * WINDOW)),
        st.integers(min_value=WAD // 100, max_value=1_000_000 * WAD),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=_STEPS, tail=st.integers(min_value=0, max_value=2 * WINDOW))
def test_observe__ema_matches_python_reference(
    router, add_market, deploy_twin, keeper, admin, chain, steps, tail
):
    with chain.isolate():
        feed = deploy_twin(18, steps[0][1])
        market_id = add_market(feed, Params(twap_window=WINDOW))
        now = chain.pending_timestamp + 10
        last_price = ema = last_ts = None
        for dt, price in steps:
            now += dt
            chain.pending_timestamp = now
            feed.set_answer(price, sender=admin)
            chain.pending_timestamp = now
            tx = router.observe(market_id, sender=keeper)

            ema = price if last_ts is None else ema_step(last_price, ema, now - last_ts, WINDOW)
            last_price, last_ts = price, now
            event = router.PriceObserved.from_receipt(tx)[0]
            assert (event.price, event.twap) == (price, ema)
            assert router.observation(market_id) == (last_price, ema, last_ts)

        chain.mine(timestamp=now + tail + 1)
        assert router.twap(market_id) == ema_step(last_price, ema, tail + 1, WINDOW)


def test_observe__ema_rounds_toward_zero_both_ways(router, market, keeper, admin, chain):
    market_id, feed = market
    start = chain.pending_timestamp + 10
    for step, price in enumerate((2_000 * WAD, 2_000 * WAD + 1, 2_000 * WAD - 1)):
        chain.pending_timestamp = start + step
        feed.set_answer(price, sender=admin)
        chain.pending_timestamp = start + step
        router.observe(market_id, sender=keeper)
    chain.pending_timestamp = start + 3
    router.observe(market_id, sender=keeper)

    # +1 * 1/600 and -1 * 1/600 both truncate to 0.
    assert router.observation(market_id)[1] == 2_000 * WAD
