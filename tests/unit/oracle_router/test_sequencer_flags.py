"""`sequencer_flags` and the sequencer bits of `latest` / `observe`."""

import ape
import pytest

from perpdex.constants import FLAG_DEGRADED, FLAG_SEQUENCER_DOWN, FLAG_SEQUENCER_GRACE

from .helpers import GRACE_PERIOD, USD, WAD, Params

UP = 0
DOWN = 1


@pytest.fixture
def with_sequencer(router, admin, sequencer_feed):
    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)
    return sequencer_feed


def test_sequencer_flags__no_feed_is_zero(router, feeds, add_market):
    market = add_market(feeds[:2])

    assert router.sequencer_flags() == 0
    assert router.latest(market) == (2_005 * WAD, 0)


def test_sequencer_flags__up_past_grace_is_zero(with_sequencer, router, set_round, warp, head_time):
    now = head_time() + 10
    set_round(with_sequencer, UP, now - GRACE_PERIOD, started_at=now - GRACE_PERIOD)
    warp(now)

    assert router.sequencer_flags() == 0


def test_sequencer_flags__down(with_sequencer, router, set_round, head_time):
    set_round(with_sequencer, DOWN, head_time())

    assert router.sequencer_flags() == FLAG_SEQUENCER_DOWN


@pytest.mark.parametrize("since", [0, 1, GRACE_PERIOD - 1])
def test_sequencer_flags__in_grace(with_sequencer, router, set_round, warp, head_time, since):
    now = head_time() + 10
    set_round(with_sequencer, UP, now - since, started_at=now - since)
    warp(now)

    assert router.sequencer_flags() == FLAG_SEQUENCER_GRACE


def test_sequencer_flags__started_at_zero_is_down(with_sequencer, router, set_round, head_time):
    set_round(with_sequencer, UP, head_time(), started_at=0)

    assert router.sequencer_flags() == FLAG_SEQUENCER_DOWN


def test_sequencer_flags__started_at_in_future_is_grace(
    with_sequencer, router, set_round, warp, head_time
):
    now = head_time() + 10
    set_round(with_sequencer, UP, now, started_at=now + 1)
    warp(now)

    assert router.sequencer_flags() == FLAG_SEQUENCER_GRACE


def test_sequencer_flags__unknown_answer_is_down(with_sequencer, router, set_round, head_time):
    set_round(with_sequencer, 2, head_time(), started_at=1)

    assert router.sequencer_flags() == FLAG_SEQUENCER_DOWN


def test_sequencer_flags__unreadable_feed_is_down(router, project, admin):
    # Has code but no `latestRoundData()`: fail closed.
    broken = project.MockERC20.deploy("Broken", "BRK", 0, sender=admin)
    router.set_sequencer_feed(broken, GRACE_PERIOD, sender=admin)

    assert router.sequencer_flags() == FLAG_SEQUENCER_DOWN


def test_sequencer_flags__zero_grace_period_ends_at_restart(
    router, admin, sequencer_feed, set_round, warp, head_time
):
    router.set_sequencer_feed(sequencer_feed, 0, sender=admin)
    now = head_time() + 10
    set_round(sequencer_feed, UP, now, started_at=now)
    warp(now)

    assert router.sequencer_flags() == 0


def test_latest__carries_sequencer_down(with_sequencer, router, feeds, add_market, set_round):
    market = add_market(feeds[:2])
    set_round(with_sequencer, DOWN, 1, started_at=1)

    assert router.latest(market) == (2_005 * WAD, FLAG_SEQUENCER_DOWN)


def test_latest__carries_grace_and_degraded(
    with_sequencer, router, deploy_feed, add_market, set_round, warp, head_time
):
    market = add_market(
        [deploy_feed(8, 1_000 * USD), deploy_feed(8, 2_000 * USD)], Params(max_deviation_bps=100)
    )
    now = head_time() + 10
    set_round(with_sequencer, UP, now, started_at=now)
    warp(now)

    # no quorum: the last quorum price (none yet) with DEGRADED, and the grace flag
    assert router.latest(market) == (0, FLAG_SEQUENCER_GRACE | FLAG_DEGRADED)


def test_latest__sequencer_set_after_market_is_read(
    router, admin, feeds, add_market, sequencer_feed, set_round
):
    market = add_market(feeds[:2])
    set_round(sequencer_feed, DOWN, 1, started_at=1)

    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)

    assert router.latest(market)[1] == FLAG_SEQUENCER_DOWN


def test_latest__sequencer_removed_is_ignored(
    with_sequencer, router, admin, feeds, add_market, set_round
):
    market = add_market(feeds[:2])
    set_round(with_sequencer, DOWN, 1, started_at=1)
    assert router.latest(market)[1] == FLAG_SEQUENCER_DOWN

    router.set_sequencer_feed(ape.utils.ZERO_ADDRESS, 0, sender=admin)

    assert router.latest(market)[1] == 0
    assert router.sequencer_flags() == 0


def test_observe__carries_sequencer_down(
    with_sequencer, router, feeds, add_market, set_round, keeper
):
    market = add_market(feeds[:2])
    set_round(with_sequencer, DOWN, 1, started_at=1)

    tx = router.observe(market, sender=keeper)

    assert tx.return_value == (2_005 * WAD, FLAG_SEQUENCER_DOWN)
