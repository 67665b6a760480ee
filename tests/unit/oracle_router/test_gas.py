"""Gas budget of `observe` (the clearinghouse calls it on every trade), measured in-EVM.

GasProbe reports the gas of the call itself (including the cold access to the router,
2,600), without the 21,000 intrinsic cost. Steady state: the market was observed before,
so the EMA word is rewritten (non-zero to non-zero), and every slot is cold again in the
new transaction. Run with `-s` to see the figures.
"""

import ape
import pytest

from .helpers import GRACE_PERIOD, Params

# Budgets from the OracleRouter spec (execution gas, no intrinsic).
# A market has at least two sources (a price needs a quorum of two).
OBSERVE_BUDGET = {2: 35_000, 3: 45_000}


@pytest.fixture(scope="module")
def probe(project, admin):
    return project.GasProbe.deploy(sender=admin)


def _observe_gas(router, probe, market, keeper, chain) -> int:
    chain.pending_timestamp += 12
    tx = probe.measure(router, router.observe.encode_input(market), sender=keeper)
    gas = tx.return_value
    assert probe.Measured.from_receipt(tx)[0].gas_used == gas
    return gas


@pytest.mark.parametrize("count", [2, 3])
def test_observe__gas_within_budget(router, probe, feeds, add_market, keeper, chain, count):
    market = add_market(feeds[:count], Params(max_deviation_bps=500))
    first = _observe_gas(router, probe, market, keeper, chain)

    steady = _observe_gas(router, probe, market, keeper, chain)
    view = probe.measure_view(router, router.latest.encode_input(market))

    print(f"\n[gas] observe {count} source(s): steady {steady:,}, first {first:,}; latest {view:,}")
    assert steady <= OBSERVE_BUDGET[count]


@pytest.mark.parametrize("count", [2, 3])
def test_observe__gas_with_sequencer_feed(
    router, probe, feeds, add_market, keeper, chain, admin, sequencer_feed, set_round, count
):
    set_round(sequencer_feed, 0, 1, started_at=1)
    router.set_sequencer_feed(sequencer_feed, GRACE_PERIOD, sender=admin)
    market = add_market(feeds[:count], Params(max_deviation_bps=500))
    _observe_gas(router, probe, market, keeper, chain)

    steady = _observe_gas(router, probe, market, keeper, chain)

    # Informational: an uptime feed adds one cold `SLOAD` and one feed call.
    print(f"\n[gas] observe {count} source(s) + sequencer feed: steady {steady:,}")
    assert steady <= OBSERVE_BUDGET[count] + 10_000


def test_measure_view__bubbles_revert(router, probe):
    with ape.reverts("oracle: unknown market"):
        probe.measure_view(router, router.latest.encode_input(0))
