"""`set_sequencer_feed`: validation, per-market bookkeeping, `SequencerFeedUpdated`."""

import ape
import pytest

from perpdex.constants import FLAG_SEQUENCER_DOWN

from .helpers import GRACE_PERIOD, WAD, ZERO_ADDRESS

MISSING_ROLE = "access_control: account is missing role"
MAX_GRACE_PERIOD = 86_400


@pytest.fixture
def down_feed(sequencer_feed, set_round):
    set_round(sequencer_feed, 1, 1, started_at=1)
    return sequencer_feed


def test_set_sequencer_feed__stores_feed_and_grace(router, sequencer_feed, admin):
    assert router.sequencer_config() == (ZERO_ADDRESS, 0)

    router.set_sequencer_feed(sequencer_feed, MAX_GRACE_PERIOD, sender=admin)

    assert router.sequencer_config() == (sequencer_feed.address, MAX_GRACE_PERIOD)


def test_set_sequencer_feed__emits_old_and_new(router, sequencer_feed, deploy_feed, admin):
    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)
    other = deploy_feed(0, 0)

    tx = router.set_sequencer_feed(other, 60, sender=admin)

    assert tx.events == [
        router.SequencerFeedUpdated(
            sender=admin.address,
            old_feed=sequencer_feed.address,
            new_feed=other.address,
            old_grace_period=GRACE_PERIOD,
            new_grace_period=60,
        )
    ]


def test_set_sequencer_feed__applies_to_existing_and_new_markets(
    router, down_feed, feeds, add_market, admin
):
    before = add_market(feeds[:2])

    router.set_sequencer_feed(down_feed, GRACE_PERIOD, sender=admin)
    after = add_market(feeds[1:])

    assert router.latest(before) == (2_005 * WAD, FLAG_SEQUENCER_DOWN)
    assert router.latest(after) == (2_015 * WAD, FLAG_SEQUENCER_DOWN)


def test_set_sequencer_feed__switching_feeds_keeps_markets_flagged(
    router, down_feed, deploy_feed, feeds, add_market, admin
):
    market = add_market(feeds[:2])
    router.set_sequencer_feed(deploy_feed(0, 0), GRACE_PERIOD, sender=admin)

    router.set_sequencer_feed(down_feed, GRACE_PERIOD, sender=admin)

    assert router.latest(market)[1] == FLAG_SEQUENCER_DOWN


def test_set_sequencer_feed__zero_address_removes_feed(router, down_feed, feeds, add_market, admin):
    router.set_sequencer_feed(down_feed, GRACE_PERIOD, sender=admin)
    market = add_market(feeds[:2])

    tx = router.set_sequencer_feed(ZERO_ADDRESS, 0, sender=admin)

    event = router.SequencerFeedUpdated.from_receipt(tx)[0]
    assert (event.old_feed, event.new_feed) == (down_feed.address, ZERO_ADDRESS)
    assert (event.old_grace_period, event.new_grace_period) == (GRACE_PERIOD, 0)
    assert router.sequencer_config() == (ZERO_ADDRESS, 0)
    assert router.sequencer_flags() == 0
    assert router.latest(market) == (2_005 * WAD, 0)


def test_set_sequencer_feed__keeps_market_count(router, sequencer_feed, feeds, add_market, admin):
    add_market(feeds[:2])
    add_market(feeds[1:])

    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)
    router.set_sequencer_feed(ZERO_ADDRESS, 0, sender=admin)

    assert router.market_count() == 2


def test_set_sequencer_feed__risk_manager_may_set(router, sequencer_feed, risk_manager):
    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=risk_manager)

    assert router.sequencer_config() == (sequencer_feed.address, GRACE_PERIOD)


def test_set_sequencer_feed__stranger_reverts(router, sequencer_feed, stranger):
    with ape.reverts(MISSING_ROLE):
        router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=stranger)


def test_set_sequencer_feed__grace_period_too_long_reverts(router, sequencer_feed, admin):
    with ape.reverts("oracle: grace period too long"):
        router.set_sequencer_feed.call(
            sequencer_feed, MAX_GRACE_PERIOD + 1, sender=admin, skip_trace=True
        )


def test_set_sequencer_feed__no_code_reverts(router, stranger, admin):
    with ape.reverts("oracle: feed has no code"):
        router.set_sequencer_feed.call(stranger, GRACE_PERIOD, sender=admin, skip_trace=True)
