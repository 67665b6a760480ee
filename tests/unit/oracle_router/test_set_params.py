"""`set_params`: validation, effect on readings, `ParamsUpdated` with old and new values."""

import ape
import pytest

from perpdex.constants import FLAG_DEGRADED, FLAG_SEQUENCER_DOWN

from .helpers import BAD_PARAM_CASES, DEFAULT_PARAMS, EDGE_PARAMS, GRACE_PERIOD, WAD, Params

MISSING_ROLE = "access_control: account is missing role"


@pytest.fixture
def market(add_market, feeds):
    """A two-source market (2,000 / 2,010) with the default parameters."""
    return add_market(feeds[:2])


def _params_of(router, market) -> tuple[int, int, int, int, int]:
    config = router.market_config(market)
    return (
        config.min_price,
        config.max_price,
        config.max_deviation_bps,
        config.min_fresh,
        config.twap_window,
    )


def test_set_params__stores_new_params(router, market, admin):
    router.set_params(market, *EDGE_PARAMS.args(), sender=admin)

    assert _params_of(router, market) == EDGE_PARAMS.args()


def test_set_params__emits_old_and_new(router, market, admin):
    new = Params(
        min_price=WAD, max_price=10_000 * WAD, max_deviation_bps=50, min_fresh=2, twap_window=60
    )

    tx = router.set_params(market, *new.args(), sender=admin)

    events = router.ParamsUpdated.from_receipt(tx)
    assert len(events) == 1
    event = events[0]
    assert event.market == market
    assert event.sender == admin.address
    old = DEFAULT_PARAMS
    assert (event.old_min_price, event.new_min_price) == (old.min_price, new.min_price)
    assert (event.old_max_price, event.new_max_price) == (old.max_price, new.max_price)
    assert (event.old_max_deviation_bps, event.new_max_deviation_bps) == (
        old.max_deviation_bps,
        new.max_deviation_bps,
    )
    assert (event.old_min_fresh, event.new_min_fresh) == (old.min_fresh, new.min_fresh)
    assert (event.old_twap_window, event.new_twap_window) == (old.twap_window, new.twap_window)


def test_set_params__tighter_deviation_sets_degraded(router, market, admin):
    assert router.latest(market) == (2_005 * WAD, 0)

    router.set_params(market, *Params(max_deviation_bps=10).args(), sender=admin)

    # 10 apart is 0.5% > 0.1%: no quorum (no observation yet: price 0)
    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_set_params__price_bounds_apply(router, market, admin):
    router.set_params(market, *Params(min_price=2_005 * WAD).args(), sender=admin)

    # 2,000 is now out of range: one valid source is no quorum
    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_set_params__keeps_sources_and_sequencer(
    router, market, feeds, admin, sequencer_feed, set_round
):
    set_round(sequencer_feed, 1, 1, started_at=1)
    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)

    router.set_params(market, *Params(min_fresh=2).args(), sender=admin)

    assert router.sources(market) == [f.address for f in feeds[:2]]
    assert router.latest(market) == (2_005 * WAD, FLAG_SEQUENCER_DOWN)


def test_set_params__risk_manager_may_set(router, market, risk_manager):
    router.set_params(market, *EDGE_PARAMS.args(), sender=risk_manager)

    assert _params_of(router, market) == EDGE_PARAMS.args()


def test_set_params__stranger_reverts(router, market, stranger):
    with ape.reverts(MISSING_ROLE):
        router.set_params(market, *DEFAULT_PARAMS.args(), sender=stranger)


def test_set_params__unknown_market_reverts(router, market, admin):
    with ape.reverts("oracle: unknown market"):
        router.set_params.call(market + 1, *DEFAULT_PARAMS.args(), sender=admin, skip_trace=True)


@pytest.mark.parametrize("case", list(BAD_PARAM_CASES))
def test_set_params__bad_params_revert(router, market, admin, case):
    params, message = BAD_PARAM_CASES[case]

    with ape.reverts(message):
        router.set_params.call(market, *params.args(), sender=admin, skip_trace=True)
