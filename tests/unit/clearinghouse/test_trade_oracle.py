"""trade and withdraw under oracle trouble: stale, no price quorum, sequencer down or in
grace, bad answers.

Nothing trades, closes or withdraws against positions without a price quorum (two valid
sources that agree; one outlier of three is dropped): the market is frozen. Risk-increasing
actions (adding to a position, taking margin out of an account with positions) also need
the sequencer up past its grace period; risk-reducing trades go through a sequencer outage.
"""

import ape
import pytest
from ape import chain

from .helpers import BTC, FEED_USD, WAD

pytestmark = pytest.mark.usefixtures("vault_cash")

MAX_AGE = 3_600  # config/markets.yaml: oracle.max_age of every market
GRACE = 3_600  # config/networks.yaml: sequencer_grace (local)


@pytest.fixture(scope="module")
def long_acct(vault_cash, h, trader):
    """$10,000 and a 0.05 BTC long."""
    a = h.funded_account(trader, 10_000)
    h.trade(trader, a, "BTC", "0.05")
    return a


@pytest.fixture
def btc_feeds(protocol):
    return protocol.feeds["BTC"]


def _size(ch, long_acct):
    return ch.position(long_acct, BTC)[0]


def _split(btc_feeds, admin):
    """90,000 / 110,000 / 100,000: no two sources within 2% of each other: no quorum."""
    btc_feeds[0].set_answer(110_000 * FEED_USD, sender=admin)
    btc_feeds[1].set_answer(90_000 * FEED_USD, sender=admin)


def test_trade__stale_price__reverts(ch, h, long_acct, trader):
    chain.pending_timestamp += MAX_AGE + 1
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "0.01")
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.01")
    assert _size(ch, long_acct) == 5 * 10**16


def test_trade__price_just_inside_max_age(ch, h, long_acct, trader, btc_feeds):
    """At the second-newest feed's last update + MAX_AGE two feeds are still fresh: the
    quorum (the newest feed's time alone could leave one fresh source, a session-order
    flake seen once)."""
    last = sorted(f.latestRoundData()[3] for f in btc_feeds)[-2]
    chain.pending_timestamp = last + MAX_AGE
    h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 6 * 10**16


def test_trade__one_stale_feed_of_three_is_ignored(ch, h, long_acct, trader, admin, btc_feeds):
    chain.pending_timestamp += MAX_AGE + 1
    for f in btc_feeds[:2]:
        f.set_answer(100_000 * FEED_USD, sender=admin)
    h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 6 * 10**16


def test_withdraw__stale_price_blocks_margin_check__reverts(ch, ops, token, h, long_acct, trader):
    chain.pending_timestamp += MAX_AGE + 1
    with ape.reverts("clearinghouse: no price quorum"):
        ops.withdraw(long_acct, token, h.usd(1), trader, sender=trader)
    assert ch.balance_of(long_acct, 0) > 9_000 * WAD


def test_trade__one_outlier_of_three_is_dropped(ch, h, long_acct, trader, admin, btc_feeds):
    btc_feeds[0].set_answer(110_000 * FEED_USD, sender=admin)  # 10% off, max deviation 2%
    h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 6 * 10**16
    assert ch.mark(BTC)[0] == 100_000 * WAD  # the agreeing pair, not the median of three


def test_trade__no_quorum_increase__reverts(ch, h, long_acct, trader, admin, btc_feeds):
    _split(btc_feeds, admin)
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "0.01")
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, h.funded_account(trader, 1_000, name="flat"), "BTC", "-0.01")
    assert _size(ch, long_acct) == 5 * 10**16


def test_trade__no_quorum_reduce__reverts(ch, h, long_acct, trader, admin, btc_feeds):
    """Changed rule (issue 9): a reduce-only close used to fill at the degraded price."""
    _split(btc_feeds, admin)
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.02")
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.05")
    assert _size(ch, long_acct) == 5 * 10**16


def test_trade__no_quorum_flip__reverts(ch, h, long_acct, trader, admin, btc_feeds):
    _split(btc_feeds, admin)
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.06")


def test_trade__frozen_market_does_not_block_others(ch, h, long_acct, trader, admin, btc_feeds):
    _split(btc_feeds, admin)
    h.trade(trader, long_acct, "ETH", "1")
    assert ch.position(long_acct, 1)[0] == WAD


def test_trade__sequencer_down_increase__reverts(ch, protocol, h, long_acct, trader, admin):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(1, now - 2 * GRACE, now, sender=admin)
    with ape.reverts("clearinghouse: sequencer down"):
        h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 5 * 10**16


def test_trade__sequencer_down_reduce(ch, protocol, h, long_acct, trader, admin):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(1, now - 2 * GRACE, now, sender=admin)
    h.trade(trader, long_acct, "BTC", "-0.05")
    assert _size(ch, long_acct) == 0


def test_trade__sequencer_grace_increase__reverts(ch, protocol, h, long_acct, trader, admin):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(0, now - 10, now, sender=admin)  # back up 10 s ago
    with ape.reverts("clearinghouse: sequencer grace period"):
        h.trade(trader, long_acct, "BTC", "0.01")


def test_trade__sequencer_grace_reduce(ch, protocol, h, long_acct, trader, admin):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(0, now - 10, now, sender=admin)
    h.trade(trader, long_acct, "BTC", "-0.01")
    assert _size(ch, long_acct) == 4 * 10**16


def test_trade__after_sequencer_grace(ch, protocol, h, long_acct, trader, admin, btc_feeds):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(0, now - 10, now, sender=admin)
    chain.pending_timestamp = now + GRACE
    for f in btc_feeds:
        f.set_answer(100_000 * FEED_USD, sender=admin)
    h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 6 * 10**16


@pytest.mark.parametrize("answer", [0, -1, -100_000 * FEED_USD])
def test_trade__non_positive_answers__reverts(ch, h, long_acct, trader, admin, btc_feeds, answer):
    for f in btc_feeds:
        f.set_answer(answer, sender=admin)
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "0.01")
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.01")


def test_trade__one_zero_answer_of_three_is_ignored(ch, h, long_acct, trader, admin, btc_feeds):
    btc_feeds[0].set_answer(0, sender=admin)
    h.trade(trader, long_acct, "BTC", "0.01")
    assert _size(ch, long_acct) == 6 * 10**16


def test_trade__two_zero_answers_of_three_freeze(ch, h, long_acct, trader, admin, btc_feeds):
    # one valid source: a lone source never prices anything, not even a close
    btc_feeds[0].set_answer(0, sender=admin)
    btc_feeds[1].set_answer(-5, sender=admin)
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "0.01")
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "-0.01")
    assert _size(ch, long_acct) == 5 * 10**16


def test_trade__answers_out_of_range__reverts(ch, h, long_acct, trader, admin, btc_feeds):
    for f in btc_feeds:
        f.set_answer(100 * FEED_USD, sender=admin)  # below min_price 1,000
    with ape.reverts("clearinghouse: no price quorum"):
        h.trade(trader, long_acct, "BTC", "0.01")


def test_withdraw__with_positions_on_degraded_price__reverts(
    ch, ops, token, h, long_acct, trader, admin, btc_feeds
):
    """Taking margin out is risk-increasing: it needs the same clean price as a trade."""
    chain.pending_timestamp += 61  # past max_mark_age: the check re-reads the oracle
    _split(btc_feeds, admin)
    with ape.reverts("clearinghouse: no price quorum"):
        ops.withdraw(long_acct, token, h.usd(100), trader, sender=trader)


@pytest.mark.parametrize(
    "answer,since,reason",
    [
        (1, 2 * GRACE, "clearinghouse: sequencer down"),
        (0, 10, "clearinghouse: sequencer grace period"),
    ],
)
def test_withdraw__with_positions_sequencer_flagged__reverts(
    ch, ops, protocol, token, h, long_acct, trader, admin, answer, since, reason
):
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(answer, now - since, now, sender=admin)
    chain.pending_timestamp += 61  # past max_mark_age: the check re-reads the oracle
    with ape.reverts(reason):
        ops.withdraw(long_acct, token, h.usd(100), trader, sender=trader)


def test_withdraw__without_positions_needs_no_price(
    ch, ops, token, h, trader, admin, btc_feeds, protocol
):
    acct = h.funded_account(trader, 100, name="cash")
    now = chain.pending_timestamp
    protocol.sequencer.set_round_data(1, now - 2 * GRACE, now, sender=admin)
    btc_feeds[0].set_answer(110_000 * FEED_USD, sender=admin)
    ops.withdraw(acct, token, h.usd(100), trader, sender=trader)
    assert ch.balance_of(acct, 0) == 0
