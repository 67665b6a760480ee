"""`set_sources`: validation, re-cached decimals, shrinking and growing, `SourcesUpdated`."""

import ape
import pytest

from .helpers import BAD_SOURCE_CASES, MAX_AGE, USD, WAD, Params

MISSING_ROLE = "access_control: account is missing role"


@pytest.fixture(scope="module")
def no_code(accounts):
    return accounts[9].address


@pytest.fixture(scope="module")
def feed_37_decimals(deploy_feed):
    return deploy_feed(37, 2_000 * 10**37)


@pytest.fixture
def market(add_market, feeds):
    """A three-source market (2,000 / 2,010 / 2,020) with min_fresh 2."""
    return add_market(feeds, Params(max_deviation_bps=500))


def test_set_sources__replaces_sources_and_caches_decimals(router, market, deploy_feed, admin):
    wad_feed = deploy_feed(18, 3_000 * WAD)
    usd_feed = deploy_feed(8, 3_000 * USD)

    router.set_sources(market, [wad_feed, usd_feed], [60, 90], sender=admin)

    config = router.market_config(market)
    assert config.sources == [wad_feed.address, usd_feed.address]
    assert config.max_ages == [60, 90]
    assert config.decimals == [18, 8]
    assert router.latest(market) == (3_000 * WAD, 0)


def test_set_sources__shrink_then_grow_keeps_only_new_sources(
    router, market, feeds, deploy_feed, admin
):
    router.set_sources(market, feeds[1:], [MAX_AGE] * 2, sender=admin)
    assert router.sources(market) == [feeds[1].address, feeds[2].address]
    assert router.latest(market) == (2_015 * WAD, 0)
    extra = deploy_feed(8, 2_030 * USD)

    router.set_sources(market, [extra, feeds[0], feeds[2]], [MAX_AGE, 60, 90], sender=admin)

    config = router.market_config(market)
    assert config.sources == [extra.address, feeds[0].address, feeds[2].address]
    assert config.max_ages == [MAX_AGE, 60, 90]
    assert router.latest(market) == (2_020 * WAD, 0)


def test_set_sources__emits_old_and_new(router, market, feeds, deploy_feed, admin):
    extra = deploy_feed(8, 2_030 * USD)

    tx = router.set_sources(market, [extra, feeds[1]], [120, 60], sender=admin)

    events = router.SourcesUpdated.from_receipt(tx)
    assert len(events) == 1
    event = events[0]
    assert event.market == market
    assert event.sender == admin.address
    assert event.old_sources == [f.address for f in feeds]
    assert event.new_sources == [extra.address, feeds[1].address]
    assert event.old_max_ages == [MAX_AGE] * 3
    assert event.new_max_ages == [120, 60]


def test_set_sources__keeps_ema_state(router, market, feeds, keeper, admin):
    router.observe(market, sender=keeper)
    before = router.observation(market)

    router.set_sources(market, feeds[:2], [MAX_AGE] * 2, sender=admin)

    assert router.observation(market) == before


def test_set_sources__risk_manager_may_set(router, market, feeds, risk_manager):
    router.set_sources(market, feeds[:2], [MAX_AGE] * 2, sender=risk_manager)

    assert router.sources(market) == [feeds[0].address, feeds[1].address]


def test_set_sources__stranger_reverts(router, market, feeds, stranger):
    with ape.reverts(MISSING_ROLE):
        router.set_sources(market, feeds[:2], [MAX_AGE] * 2, sender=stranger)


def test_set_sources__unknown_market_reverts(router, market, feeds, admin):
    with ape.reverts("oracle: unknown market"):
        router.set_sources.call(market + 1, feeds[:2], [MAX_AGE] * 2, sender=admin, skip_trace=True)


def test_set_sources__below_min_fresh_reverts(router, add_market, feeds, admin):
    market = add_market(feeds, Params(min_fresh=3))

    with ape.reverts("oracle: bad min fresh"):
        router.set_sources.call(market, feeds[:2], [MAX_AGE] * 2, sender=admin, skip_trace=True)


@pytest.mark.parametrize("case", list(BAD_SOURCE_CASES))
def test_set_sources__bad_sources_revert(
    router, market, feeds, no_code, feed_37_decimals, admin, case
):
    build, message = BAD_SOURCE_CASES[case]
    sources, max_ages = build(feeds, no_code, feed_37_decimals)

    with ape.reverts(message):
        router.set_sources.call(market, sources, max_ages, sender=admin, skip_trace=True)
