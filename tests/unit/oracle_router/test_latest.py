"""`latest`: the price quorum (two or more valid sources that agree), normalisation, source
validity and DEGRADED ("no quorum", with the last quorum price for display)."""

from itertools import permutations

import ape
import pytest

from perpdex.constants import FLAG_DEGRADED

from .helpers import BPS, MAX_AGE, MAX_PRICE, USD, WAD, Params


def test_latest__two_sources_return_floor_of_mean(router, deploy_feed, add_market):
    low = deploy_feed(18, 2_000 * WAD)
    high = deploy_feed(18, 2_000 * WAD + 1)
    market = add_market([low, high])

    # (2a + 1) / 2 floors to a.
    assert router.latest(market) == (2_000 * WAD, 0)


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_latest__three_agreeing_sources_return_median(router, feeds, add_market, order):
    market = add_market([feeds[i] for i in order], Params(max_deviation_bps=BPS))

    assert router.latest(market) == (2_010 * WAD, 0)


@pytest.mark.parametrize(
    ("decimals", "answer"),
    [
        (0, 2_000),
        (6, 2_000 * 10**6),
        (8, 2_000 * 10**8),
        (18, 2_000 * 10**18),
        (20, 2_000 * 10**20),
        (36, 2_000 * 10**36),
    ],
)
def test_latest__normalises_any_decimals_to_wad(router, deploy_twin, add_market, decimals, answer):
    market = add_market(deploy_twin(decimals, answer))

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__above_18_decimals_truncates(router, deploy_twin, add_market):
    # 2,000.000000000000000001999 with 21 decimals -> the last three digits are dropped.
    market = add_market(deploy_twin(21, 2_000 * 10**21 + 1_999))

    assert router.latest(market) == (2_000 * WAD + 1, 0)


def test_latest__eight_and_eighteen_decimal_feeds_agree(router, deploy_feed, add_market):
    market = add_market([deploy_feed(8, 2_000 * USD), deploy_feed(18, 2_000 * WAD)])

    assert router.latest(market) == (2_000 * WAD, 0)


# --- quorum: every case of the rule ------------------------------------------------------


def test_latest__stale_source_among_three_uses_other_two(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE - 1)  # stale at `now`
    set_round(feeds[1], 2_010 * USD, now)
    set_round(feeds[2], 2_020 * USD, now)
    market = add_market(feeds, Params(min_fresh=2))
    warp(now)

    assert router.latest(market) == (2_015 * WAD, 0)


def test_latest__two_disagreeing_sources_have_no_quorum(
    router, deploy_feed, add_market, keeper, admin
):
    # the attack: one of two feeds misreports 10x; never their mean (11,000)
    good = deploy_feed(8, 2_000 * USD)
    bad = deploy_feed(8, 2_000 * USD)
    market = add_market([good, bad])
    router.observe(market, sender=keeper)  # last quorum price 2,000
    bad.set_answer(20_000 * USD, sender=admin)

    assert router.latest(market) == (2_000 * WAD, FLAG_DEGRADED)


def test_latest__no_quorum_before_any_observation_returns_zero(router, deploy_feed, add_market):
    market = add_market([deploy_feed(8, 2_000 * USD), deploy_feed(8, 20_000 * USD)])

    assert router.latest(market) == (0, FLAG_DEGRADED)


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_latest__one_outlier_among_three_is_dropped(router, deploy_feed, add_market, order):
    prices = [2_000, 2_010, 20_000]  # 20,000 is the outlier; 2,000 and 2,010 agree
    sources = [deploy_feed(8, prices[i] * USD) for i in order]
    market = add_market(sources, Params(max_deviation_bps=200))

    # the mean of the agreeing pair, not the median of all three (2,010)
    assert router.latest(market) == (2_005 * WAD, 0)


def test_latest__low_outlier_among_three_is_dropped(router, deploy_feed, add_market):
    sources = [deploy_feed(8, p * USD) for p in (200, 2_000, 2_020)]
    market = add_market(sources, Params(max_deviation_bps=200))

    assert router.latest(market) == (2_010 * WAD, 0)


def test_latest__three_spread_without_agreeing_pair_has_no_quorum(router, deploy_feed, add_market):
    sources = [deploy_feed(8, p * USD) for p in (1_000, 2_000, 4_000)]
    market = add_market(sources, Params(max_deviation_bps=200))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__three_where_both_pairs_agree_but_ends_do_not_has_no_quorum(
    router, deploy_feed, add_market
):
    # 1,970 ~ 2,000 and 2,000 ~ 2,030 (1.5%), but 1,970 vs 2,030 is 3% > 2%: which one is
    # the outlier is undecidable, so there is no quorum
    sources = [deploy_feed(8, p * USD) for p in (1_970, 2_000, 2_030)]
    market = add_market(sources, Params(max_deviation_bps=200))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__one_valid_of_two_has_no_quorum(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now)
    set_round(feeds[1], 2_000 * USD, now - MAX_AGE - 1)  # stale
    market = add_market(feeds[:2])
    warp(now)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__lone_source_among_three_has_no_quorum(
    router, feeds, add_market, set_round, warp, head_time
):
    # two of BTC's three feeds stale: the remaining one must not price anything
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE - 1)
    set_round(feeds[1], 2_010 * USD, now - MAX_AGE - 1)
    set_round(feeds[2], 2_020 * USD, now)
    market = add_market(feeds)
    warp(now)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__stale_source_below_min_fresh_sets_degraded(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE - 1)
    set_round(feeds[1], 2_010 * USD, now)
    set_round(feeds[2], 2_020 * USD, now)
    market = add_market(feeds, Params(min_fresh=3))
    warp(now)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__age_equal_to_max_age_is_fresh(
    router, deploy_twin, add_market, set_round, warp, head_time
):
    twin = deploy_twin()
    now = head_time() + 10
    set_round(twin, 2_000 * USD, now - MAX_AGE)
    market = add_market(twin)
    warp(now)

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__all_sources_stale_has_no_quorum(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    for feed in feeds:
        set_round(feed, 2_000 * USD, now - MAX_AGE - 1)
    market = add_market(feeds)
    warp(now)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__updated_at_in_future_is_invalid(
    router, deploy_twin, add_market, set_round, warp, head_time
):
    twin = deploy_twin()
    now = head_time() + 10
    set_round(twin.feeds[0], 2_000 * USD, now + 1)
    market = add_market(twin)
    warp(now)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__updated_at_zero_is_invalid(router, deploy_twin, add_market, set_round):
    twin = deploy_twin()
    set_round(twin.feeds[0], 2_000 * USD, 0)
    market = add_market(twin)

    assert router.latest(market) == (0, FLAG_DEGRADED)


@pytest.mark.parametrize("answer", [0, -1])
def test_latest__non_positive_answer_is_invalid(router, deploy_twin, add_market, admin, answer):
    twin = deploy_twin()
    twin.feeds[0].set_answer(answer, sender=admin)
    market = add_market(twin)

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__zero_answer_among_three_is_skipped(router, feeds, add_market, admin):
    feeds[1].set_answer(0, sender=admin)
    market = add_market(feeds, Params(min_fresh=2))

    assert router.latest(market) == (2_010 * WAD, 0)


@pytest.mark.parametrize(
    "answer",
    [
        WAD // 100 - 1,  # min_price is 0.01 USD: one wei below
        1_000_000 * WAD + 1,  # max_price is 1e6 USD: one wei above
    ],
)
def test_latest__answer_out_of_range_is_invalid(router, deploy_twin, add_market, answer):
    market = add_market(deploy_twin(18, answer))

    assert router.latest(market) == (0, FLAG_DEGRADED)


@pytest.mark.parametrize("answer", [WAD // 100, 1_000_000 * WAD])
def test_latest__answer_on_range_bound_is_valid(router, deploy_twin, add_market, answer):
    market = add_market(deploy_twin(18, answer))

    assert router.latest(market) == (answer, 0)


@pytest.mark.parametrize("decimals", [0, 36])
def test_latest__huge_answer_is_out_of_range_not_overflow(
    router, deploy_twin, add_market, decimals
):
    market = add_market(deploy_twin(decimals, 2**255 - 1), Params(max_price=MAX_PRICE, min_price=1))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__reverting_source_is_skipped(router, project, feeds, add_market, admin):
    # A token has `decimals()` but no `latestRoundData()`: the call fails.
    broken = project.MockERC20.deploy("Broken", "BRK", 8, sender=admin)
    market = add_market([broken, feeds[0], feeds[1]], Params(min_fresh=2))

    assert router.latest(market) == (2_005 * WAD, 0)


def test_latest__reverting_source_leaves_lone_source_without_quorum(
    router, project, feeds, add_market, admin
):
    broken = project.MockERC20.deploy("Broken", "BRK", 8, sender=admin)
    market = add_market([broken, feeds[0]], Params(min_fresh=2))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__deviation_at_bound_agrees(router, deploy_feed, add_market):
    # spread * 10_000 == max_deviation_bps * mean exactly: 2% of 2,000 is 40.
    low = deploy_feed(8, 1_980 * USD)
    high = deploy_feed(8, 2_020 * USD)
    market = add_market([low, high], Params(max_deviation_bps=200))

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__deviation_above_bound_has_no_quorum(router, deploy_feed, add_market):
    low = deploy_feed(8, 1_980 * USD)
    high = deploy_feed(8, 2_020 * USD + 2)
    market = add_market([low, high], Params(max_deviation_bps=200))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__three_at_bound_agree(router, deploy_feed, add_market):
    # spread 40 == 2% of the median 2,000: all three agree, the median prices
    sources = [deploy_feed(8, p * USD) for p in (1_980, 2_000, 2_020)]
    market = add_market(sources, Params(max_deviation_bps=200))

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__no_market_yet_reverts(router):
    with ape.reverts("oracle: unknown market"):
        router.latest(0, skip_trace=True)


@pytest.mark.parametrize("market", [1, 32, 2**256 - 1])
def test_latest__unknown_market_reverts(router, feeds, add_market, market):
    add_market(feeds[:2])  # only market 0 exists

    with ape.reverts("oracle: unknown market"):
        router.latest(market, skip_trace=True)
