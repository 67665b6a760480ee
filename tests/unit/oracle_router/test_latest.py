"""`latest`: median of the valid sources, normalisation, rejection reasons, DEGRADED."""

from itertools import permutations

import ape
import pytest

from .helpers import BPS, FLAG_DEGRADED, MAX_AGE, MAX_PRICE, USD, WAD, Params


def test_latest__one_source_returns_its_price(router, feeds, add_market):
    market = add_market([feeds[0]])

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__two_sources_return_floor_of_mean(router, deploy_feed, add_market):
    low = deploy_feed(18, 2_000 * WAD)
    high = deploy_feed(18, 2_000 * WAD + 1)
    market = add_market([low, high])

    # (2a + 1) / 2 floors to a.
    assert router.latest(market) == (2_000 * WAD, 0)


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_latest__three_sources_return_middle(router, feeds, add_market, order):
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
def test_latest__normalises_any_decimals_to_wad(router, deploy_feed, add_market, decimals, answer):
    market = add_market([deploy_feed(decimals, answer)])

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__above_18_decimals_truncates(router, deploy_feed, add_market):
    # 2,000.000000000000000001999 with 21 decimals -> the last three digits are dropped.
    market = add_market([deploy_feed(21, 2_000 * 10**21 + 1_999)])

    assert router.latest(market) == (2_000 * WAD + 1, 0)


def test_latest__eight_and_eighteen_decimal_feeds_agree(router, deploy_feed, add_market):
    market = add_market([deploy_feed(8, 2_000 * USD), deploy_feed(18, 2_000 * WAD)])

    assert router.latest(market) == (2_000 * WAD, 0)


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


def test_latest__stale_source_below_min_fresh_sets_degraded(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE - 1)
    set_round(feeds[1], 2_010 * USD, now)
    set_round(feeds[2], 2_020 * USD, now)
    market = add_market(feeds, Params(min_fresh=3))
    warp(now)

    assert router.latest(market) == (2_015 * WAD, FLAG_DEGRADED)


def test_latest__age_equal_to_max_age_is_fresh(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE)
    market = add_market([feeds[0]])
    warp(now)

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__all_sources_stale_reverts(router, feeds, add_market, set_round, warp, head_time):
    now = head_time() + 10
    for feed in feeds:
        set_round(feed, 2_000 * USD, now - MAX_AGE - 1)
    market = add_market(feeds)
    warp(now)

    with ape.reverts("oracle: stale price"):
        router.latest(market, skip_trace=True)


def test_latest__updated_at_in_future_reverts(
    router, feeds, add_market, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now + 1)
    market = add_market([feeds[0]])
    warp(now)

    with ape.reverts("oracle: stale price"):
        router.latest(market, skip_trace=True)


def test_latest__updated_at_zero_reverts(router, feeds, add_market, set_round):
    set_round(feeds[0], 2_000 * USD, 0)
    market = add_market([feeds[0]])

    with ape.reverts("oracle: stale price"):
        router.latest(market, skip_trace=True)


@pytest.mark.parametrize("answer", [0, -1])
def test_latest__non_positive_answer_reverts(router, feeds, add_market, admin, answer):
    feeds[0].set_answer(answer, sender=admin)
    market = add_market([feeds[0]])

    with ape.reverts("oracle: non-positive answer"):
        router.latest(market, skip_trace=True)


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
def test_latest__answer_out_of_range_reverts(router, deploy_feed, add_market, answer):
    market = add_market([deploy_feed(18, answer)])

    with ape.reverts("oracle: answer out of range"):
        router.latest(market, skip_trace=True)


@pytest.mark.parametrize("answer", [WAD // 100, 1_000_000 * WAD])
def test_latest__answer_on_range_bound_is_valid(router, deploy_feed, add_market, answer):
    market = add_market([deploy_feed(18, answer)])

    assert router.latest(market) == (answer, 0)


@pytest.mark.parametrize("decimals", [0, 36])
def test_latest__huge_answer_is_out_of_range_not_overflow(
    router, deploy_feed, add_market, decimals
):
    market = add_market(
        [deploy_feed(decimals, 2**255 - 1)], Params(max_price=MAX_PRICE, min_price=1)
    )

    with ape.reverts("oracle: answer out of range"):
        router.latest(market, skip_trace=True)


def test_latest__reverts_with_first_rejected_reason(
    router, feeds, add_market, set_round, admin, warp, head_time
):
    now = head_time() + 10
    set_round(feeds[0], 2_000 * USD, now - MAX_AGE - 1)  # stale
    set_round(feeds[1], 0, now)  # non-positive
    set_round(feeds[2], 10**9 * USD, now)  # out of range
    stale_first = add_market(feeds)
    zero_first = add_market([feeds[1], feeds[2], feeds[0]])
    range_first = add_market([feeds[2], feeds[0], feeds[1]])
    warp(now)

    with ape.reverts("oracle: stale price"):
        router.latest(stale_first, skip_trace=True)
    with ape.reverts("oracle: non-positive answer"):
        router.latest(zero_first, skip_trace=True)
    with ape.reverts("oracle: answer out of range"):
        router.latest(range_first, skip_trace=True)


def test_latest__reverting_source_is_skipped(router, project, feeds, add_market, admin):
    # A token has `decimals()` but no `latestRoundData()`: the call fails.
    broken = project.MockERC20.deploy("Broken", "BRK", 8, sender=admin)
    market = add_market([broken, feeds[0]], Params(min_fresh=2))

    assert router.latest(market) == (2_000 * WAD, FLAG_DEGRADED)


def test_latest__only_reverting_source_reverts(router, project, add_market, admin):
    broken = project.MockERC20.deploy("Broken", "BRK", 8, sender=admin)
    market = add_market([broken])

    with ape.reverts("oracle: source unavailable"):
        router.latest(market, skip_trace=True)


def test_latest__deviation_at_bound_is_not_degraded(router, deploy_feed, add_market):
    # spread * 10_000 == max_deviation_bps * median exactly: 2% of 2,000 is 40.
    low = deploy_feed(8, 1_980 * USD)
    high = deploy_feed(8, 2_020 * USD)
    market = add_market([low, high], Params(max_deviation_bps=200))

    assert router.latest(market) == (2_000 * WAD, 0)


def test_latest__deviation_above_bound_sets_degraded(router, deploy_feed, add_market):
    low = deploy_feed(8, 1_980 * USD)
    high = deploy_feed(8, 2_020 * USD + 2)
    market = add_market([low, high], Params(max_deviation_bps=200))

    price, flags = router.latest(market)

    assert price == 2_000 * WAD + 10**10
    assert flags == FLAG_DEGRADED


def test_latest__three_sources_deviation_uses_min_and_max(router, deploy_feed, add_market):
    # Median 2,000; spread 2,041 - 2,000 = 41 > 2% of 2,000.
    sources = [deploy_feed(8, p * USD) for p in (2_000, 2_000, 2_041)]
    market = add_market(sources, Params(max_deviation_bps=200))

    assert router.latest(market) == (2_000 * WAD, FLAG_DEGRADED)


def test_latest__no_market_yet_reverts(router):
    with ape.reverts("oracle: unknown market"):
        router.latest(0, skip_trace=True)


@pytest.mark.parametrize("market", [1, 32, 2**256 - 1])
def test_latest__unknown_market_reverts(router, feeds, add_market, market):
    add_market([feeds[0]])  # only market 0 exists

    with ape.reverts("oracle: unknown market"):
        router.latest(market, skip_trace=True)
