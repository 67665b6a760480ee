"""set_market_params: risk role, validated like add_market, accrues funding first, logs old/new."""

import ape
import pytest
from ape import chain

from .helpers import BAD_MARKET_PARAMS, BTC, MISSING_ROLE, SOL, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash", "granted_roles")


@pytest.fixture
def btc_params(protocol):
    return protocol.system.market("BTC").params()


def test_set_market_params__risk_role(ch, gov, btc_params, risk_manager):
    btc_params.update(skew_scale=20_000 * 10**18, taker_fee=7 * 10**14, max_oi=500 * 10**18)
    tx = gov.set_market_params(BTC, btc_params, sender=risk_manager)
    assert dict(ch.market_params(BTC).items()) == btc_params
    ev = gov.MarketParamsUpdated.from_receipt(tx)[0]
    assert ev.old_params != ev.new_params
    expect_event(
        tx,
        gov.MarketParamsUpdated,
        ch,
        market=BTC,
        old_params=ev.old_params,
        new_params=ev.new_params,
    )
    # old and new chain: the next update logs this one's new word as its old word
    btc_params["taker_fee"] = 8 * 10**14
    tx = gov.set_market_params(BTC, btc_params, sender=risk_manager)
    nxt = gov.MarketParamsUpdated.from_receipt(tx)[0]
    assert nxt.old_params == ev.new_params != nxt.new_params


def test_set_market_params__same_values(ch, gov, btc_params, admin):
    tx = gov.set_market_params(BTC, btc_params, sender=admin)
    ev = gov.MarketParamsUpdated.from_receipt(tx)[0]
    assert ev.old_params == ev.new_params
    expect_event(
        tx,
        gov.MarketParamsUpdated,
        ch,
        market=BTC,
        old_params=ev.old_params,
        new_params=ev.new_params,
    )


@pytest.mark.parametrize("who", ["stranger", "guardian", "trader"])
def test_set_market_params__without_risk_role__reverts(ch, gov, btc_params, request, who):
    btc_params["taker_fee"] = 10**15
    with ape.reverts(MISSING_ROLE):
        gov.set_market_params(BTC, btc_params, sender=request.getfixturevalue(who))
    assert ch.market_params(BTC).taker_fee == 5 * 10**14


def test_set_market_params__unknown_market__reverts(ch, gov, btc_params, admin):
    with ape.reverts("clearinghouse: unknown market"):
        gov.set_market_params(ch.market_count(), btc_params, sender=admin)


@pytest.mark.parametrize("case", sorted(BAD_MARKET_PARAMS))
def test_set_market_params__bad_params__reverts(ch, gov, btc_params, admin, case):
    before = dict(ch.market_params(BTC).items())
    changes, reason = BAD_MARKET_PARAMS[case]
    btc_params.update(changes)
    with ape.reverts(reason):
        gov.set_market_params(BTC, btc_params, sender=admin)
    assert dict(ch.market_params(BTC).items()) == before


def test_set_market_params__accrues_funding_under_old_params(ch, gov, h, btc_params, trader, admin):
    acct = h.funded_account(trader, 100_000)
    h.trade(trader, acct, "BTC", "3")  # skew: longs pay, the rate drifts up
    _, t0, index0, _ = ch.mark(BTC)
    chain.pending_timestamp += 3_600
    for f in h.p.feeds["BTC"]:
        f.set_answer(100_000 * 10**8, sender=admin)
    btc_params["max_funding_velocity"] = 0
    tx = gov.set_market_params(BTC, btc_params, sender=admin)
    _, t1, index1, _ = ch.mark(BTC)
    assert t1 > t0
    assert index1 > index0  # an hour of funding at the old velocity
    ev = ch.MarkUpdated.from_receipt(tx)
    assert len(ev) == 1 and ev[0].market == BTC and ev[0].funding_index == index1


def test_set_market_params__untouched_market_not_touched(ch, gov, protocol, admin):
    assert ch.mark(SOL)[1] == 0
    tx = gov.set_market_params(SOL, protocol.system.market("SOL").params(), sender=admin)
    assert ch.MarkUpdated.from_receipt(tx) == []
    assert ch.mark(SOL)[1] == 0
