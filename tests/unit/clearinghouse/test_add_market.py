"""add_market: risk role, listed in the oracle first, validated, packed, logged."""

import ape
import pytest

from perpdex.config import MarketRisk
from perpdex.sdk import riskbook

from .helpers import (
    BAD_MARKET_PARAMS,
    FEED_USD,
    MAX_UINT256,
    MISSING_ROLE,
    WAD,
    expect_event,
)

pytestmark = pytest.mark.usefixtures("granted_roles")

NEW_PRICE = 50  # USD


@pytest.fixture(scope="module")
def oracle_market(all_actors, granted_roles, project, protocol, admin):
    """Lists a 4th market (two mock feeds at $50: a price needs a quorum of two) in the
    oracle router; returns its id."""
    feeds = [project.MockAggregator.deploy(8, NEW_PRICE * FEED_USD, sender=admin) for _ in "ab"]
    tx = protocol.oracle.add_market(
        feeds, [3_600] * 2, WAD, 10_000 * WAD, 200, 2, 600, sender=admin
    )
    # room under the total exposure cap (the configured markets use all of 1.0)
    limits = (int(protocol.ops.max_pnl_factor()), int(protocol.ops.adl_target_factor()))
    protocol.risk.set_vault_limits(2 * WAD, *limits, sender=admin)
    return tx.return_value


@pytest.fixture
def new_params(protocol):
    p = protocol.system.market("SOL").params()
    p["taker_fee"] = 10**15
    return p


def test_add_market__risk_role(ch, gov, oracle_market, new_params, risk_manager):
    n = ch.market_count()
    assert oracle_market == n
    tx = gov.add_market(new_params, sender=risk_manager)
    assert ch.market_count() == n + 1
    assert dict(ch.market_params(n).items()) == new_params
    listed = gov.MarketListed.from_receipt(tx)[0].params
    expect_event(tx, gov.MarketListed, ch, market=n, params=listed)
    # the logged word is the stored one: the next update logs it as the old value
    tx = gov.set_market_params(n, new_params, sender=risk_manager)
    assert gov.MarketParamsUpdated.from_receipt(tx)[0].old_params == listed


def test_add_market__forces_listed(ch, gov, oracle_market, new_params, admin):
    new_params["listed"] = False
    gov.add_market(new_params, sender=admin)
    assert ch.market_params(oracle_market).listed


@pytest.mark.parametrize("rate", [WAD, 4 * WAD])
def test_add_market__max_funding_rate_up_to_4_per_day(
    ch, gov, oracle_market, new_params, admin, rate
):
    """governance allows up to 4 per day, which the packed field holds."""
    new_params["max_funding_rate"] = rate
    gov.add_market(new_params, sender=admin)
    assert ch.market_params(oracle_market).max_funding_rate == rate


def test_add_market__taker_fee_of_exactly_1pct(ch, gov, oracle_market, new_params, admin):
    new_params["taker_fee"] = 10**16
    gov.add_market(new_params, sender=admin)
    assert ch.market_params(oracle_market).taker_fee == 10**16


@pytest.mark.parametrize("who", ["stranger", "guardian", "trader"])
def test_add_market__without_risk_role__reverts(ch, gov, oracle_market, new_params, request, who):
    n = ch.market_count()
    with ape.reverts(MISSING_ROLE):
        gov.add_market(new_params, sender=request.getfixturevalue(who))
    assert ch.market_count() == n


def test_add_market__unknown_to_oracle__reverts(
    ch, gov, protocol, oracle_market, new_params, admin
):
    gov.add_market(new_params, sender=admin)
    assert ch.market_count() == protocol.oracle.market_count()
    with ape.reverts("clearinghouse: market unknown to oracle"):
        gov.add_market(new_params, sender=admin)
    assert ch.market_count() == oracle_market + 1


@pytest.mark.parametrize("case", sorted(BAD_MARKET_PARAMS))
def test_add_market__bad_params__reverts(ch, gov, oracle_market, new_params, admin, case):
    changes, reason = BAD_MARKET_PARAMS[case]
    new_params.update(changes)
    with ape.reverts(reason):
        gov.add_market(new_params, sender=admin)
    assert ch.market_count() == oracle_market


def test_add_market__untradable_until_risk_book_covers_it(
    ch, gov, protocol, h, oracle_market, new_params, trader, admin, vault_cash
):
    gov.add_market(new_params, sender=admin)
    acct = h.funded_account(trader, 10_000)
    with ape.reverts("clearinghouse: market not in risk book"):
        ch.trade(acct, oracle_market, 3 * WAD, MAX_UINT256, sender=trader)
    symbols = [*protocol.symbols, "NEW"]
    risk = protocol_risk_with_new_market()
    gov.set_risk_book(riskbook.encode(riskbook.from_config(risk, symbols)), sender=admin)
    ch.trade(acct, oracle_market, 3 * WAD, MAX_UINT256, sender=trader)
    assert ch.position(acct, oracle_market)[0] == 3 * WAD


def protocol_risk_with_new_market():
    from perpdex.config import load_risk

    return load_risk().with_market(
        "NEW",
        MarketRisk(imr_min_bps=1_500, imr_slope_bps=1_000, margin_scale=10**6 * WAD),
        {"crypto-crash": -2_000, "crypto-rally": 2_000},
    )


def test_add_market__too_many_markets__reverts(ch, gov, protocol, oracle_market, new_params, admin):
    feeds = protocol.oracle.sources(oracle_market)
    new_params["max_vault_exposure"] = 10**16  # 1%: 29 more fit under the total cap
    gov.add_market(new_params, sender=admin)
    while ch.market_count() < 32:
        protocol.oracle.add_market(feeds, [3_600] * 2, WAD, 10_000 * WAD, 200, 2, 600, sender=admin)
        gov.add_market(new_params, sender=admin)
    with ape.reverts("clearinghouse: too many markets"):
        gov.add_market(new_params, sender=admin)
