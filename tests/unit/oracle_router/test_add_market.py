"""`add_market`: ids, validation, cached decimals, the 32-market cap, `MarketAdded`."""

import ape
import pytest

from .helpers import (
    BAD_PARAM_CASES,
    BAD_SOURCE_CASES,
    DEFAULT_PARAMS,
    EDGE_PARAMS,
    MAX_AGE,
    MAX_AGE_LIMIT,
    Params,
)

MISSING_ROLE = "access_control: account is missing role"


@pytest.fixture(scope="module")
def no_code(accounts):
    """An address without code."""
    return accounts[9].address


@pytest.fixture(scope="module")
def feed_37_decimals(deploy_feed):
    return deploy_feed(37, 2_000 * 10**37)


def test_add_market__returns_sequential_ids(router, feeds, admin):
    for expected in range(3):
        tx = router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=admin)
        assert tx.return_value == expected

    assert router.market_count() == 3


def test_add_market__stores_config_and_decimals(router, feeds, deploy_feed, admin):
    wad_feed = deploy_feed(18, 2_000 * 10**18)
    sources = [feeds[0], wad_feed, feeds[1]]
    params = Params(min_fresh=2, max_deviation_bps=150, twap_window=900)

    router.add_market(sources, [60, 120, MAX_AGE_LIMIT], *params.args(), sender=admin)

    config = router.market_config(0)
    assert config.sources == [s.address for s in sources]
    assert config.max_ages == [60, 120, MAX_AGE_LIMIT]
    assert config.decimals == [8, 18, 8]
    assert (
        config.min_price,
        config.max_price,
        config.max_deviation_bps,
        config.min_fresh,
        config.twap_window,
    ) == params.args()
    assert router.sources(0) == [s.address for s in sources]
    assert router.observation(0) == (0, 0, 0)


def test_add_market__emits_market_added(router, feeds, admin):
    params = Params(min_fresh=2)

    tx = router.add_market(feeds[:2], [MAX_AGE, 60], *params.args(), sender=admin)

    events = router.MarketAdded.from_receipt(tx)
    assert len(events) == 1
    event = events[0]
    assert event.market == 0
    assert event.sender == admin.address
    assert event.sources == [f.address for f in feeds[:2]]
    assert event.max_ages == [MAX_AGE, 60]
    assert (
        event.min_price,
        event.max_price,
        event.max_deviation_bps,
        event.min_fresh,
        event.twap_window,
    ) == params.args()


def test_add_market__accepts_edge_params(router, feeds, admin):
    router.add_market(feeds[:2], [1, MAX_AGE_LIMIT], *EDGE_PARAMS.args(), sender=admin)

    config = router.market_config(0)
    assert (
        config.min_price,
        config.max_price,
        config.max_deviation_bps,
        config.min_fresh,
        config.twap_window,
    ) == EDGE_PARAMS.args()


def test_add_market__risk_manager_may_add(router, feeds, risk_manager):
    tx = router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=risk_manager)

    assert tx.return_value == 0


def test_add_market__stranger_reverts(router, feeds, stranger):
    with ape.reverts(MISSING_ROLE):
        router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=stranger)


@pytest.mark.parametrize("case", list(BAD_SOURCE_CASES))
def test_add_market__bad_sources_revert(router, feeds, no_code, feed_37_decimals, admin, case):
    build, message = BAD_SOURCE_CASES[case]
    sources, max_ages = build(feeds, no_code, feed_37_decimals)

    with ape.reverts(message):
        router.add_market.call(
            sources, max_ages, *DEFAULT_PARAMS.args(), sender=admin, skip_trace=True
        )


@pytest.mark.parametrize("case", list(BAD_PARAM_CASES))
def test_add_market__bad_params_revert(router, feeds, admin, case):
    params, message = BAD_PARAM_CASES[case]

    with ape.reverts(message):
        router.add_market.call(
            feeds[:2], [MAX_AGE] * 2, *params.args(), sender=admin, skip_trace=True
        )


def test_add_market__33rd_market_reverts(router, feeds, admin):
    for _ in range(32):
        router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=admin)
    assert router.market_count() == 32

    with ape.reverts("oracle: too many markets"):
        router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=admin)


def test_market_views__unknown_market_reverts(router, feeds, add_market):
    add_market(feeds[:2])

    for view in (router.market_config, router.sources, router.observation):
        with ape.reverts("oracle: unknown market"):
            view(1, skip_trace=True)
