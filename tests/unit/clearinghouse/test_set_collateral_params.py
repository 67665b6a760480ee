"""set_collateral_params: risk role, non-settlement tokens only, bounded, logs old/new."""

import ape
import pytest

from .helpers import BTC, ETH, MISSING_ROLE, WAD, collateral_index, expect_event

pytestmark = pytest.mark.usefixtures("granted_roles")

CAP = 2**256 - 1


def test_set_collateral_params__risk_role(ch, gov, listed_weth, risk_manager):
    i = collateral_index(ch, listed_weth)
    tx = gov.set_collateral_params(i, WAD // 4, BTC, 7 * WAD, sender=risk_manager)
    assert (ch.collateral_haircut(i), ch.collateral_market(i), ch.collateral_cap(i)) == (
        WAD // 4,
        BTC,
        7 * WAD,
    )
    expect_event(
        tx,
        gov.CollateralParamsUpdated,
        ch,
        index=i,
        old_haircut=WAD // 10,
        new_haircut=WAD // 4,
        old_price_market=ETH,
        new_price_market=BTC,
        old_cap=CAP,
        new_cap=7 * WAD,
    )


def test_set_collateral_params__zero_cap_stops_deposits(
    ch, ops, gov, listed_weth, give, h, trader, admin
):
    i = collateral_index(ch, listed_weth)
    gov.set_collateral_params(i, WAD // 10, ETH, 0, sender=admin)
    acct = h.open(trader)
    give(listed_weth, trader, WAD)
    with ape.reverts("clearinghouse: deposit cap reached"):
        ops.deposit(acct, listed_weth, WAD, sender=trader)


@pytest.mark.parametrize("who", ["stranger", "guardian", "trader"])
def test_set_collateral_params__without_risk_role__reverts(ch, gov, listed_weth, request, who):
    i = collateral_index(ch, listed_weth)
    with ape.reverts(MISSING_ROLE):
        gov.set_collateral_params(i, 0, ETH, CAP, sender=request.getfixturevalue(who))
    assert ch.collateral_haircut(i) == WAD // 10


def test_set_collateral_params__settlement_token__reverts(ch, gov, listed_weth, admin):
    with ape.reverts("clearinghouse: unknown token"):
        gov.set_collateral_params(0, WAD // 10, ETH, 1, sender=admin)
    assert ch.collateral_cap(0) == CAP


def test_set_collateral_params__unlisted_index__reverts(ch, gov, listed_weth, admin):
    with ape.reverts("clearinghouse: unknown token"):
        gov.set_collateral_params(ch.collateral_count(), 0, ETH, CAP, sender=admin)


def test_set_collateral_params__haircut_100pct__reverts(ch, gov, listed_weth, admin):
    with ape.reverts("clearinghouse: haircut must be below 100%"):
        gov.set_collateral_params(collateral_index(ch, listed_weth), WAD, ETH, CAP, sender=admin)


def test_set_collateral_params__unknown_market__reverts(ch, gov, listed_weth, admin):
    with ape.reverts("clearinghouse: unknown market"):
        gov.set_collateral_params(
            collateral_index(ch, listed_weth), 0, ch.market_count(), CAP, sender=admin
        )
