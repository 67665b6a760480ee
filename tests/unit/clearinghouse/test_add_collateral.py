"""add_collateral: risk role, one listing per token, bounded count, haircut and decimals."""

import ape
import pytest

from .helpers import BTC, ETH, MAX_UINT256, MISSING_ROLE, WAD, ZERO_ADDRESS, expect_event

pytestmark = pytest.mark.usefixtures("granted_roles")


def test_add_collateral__risk_role(ch, gov, deploy_token, risk_manager):
    t = deploy_token(8, "WBTC")
    i = ch.collateral_count()
    tx = gov.add_collateral(t, WAD // 5, BTC, 50 * 10**8, sender=risk_manager)
    assert ch.collateral_count() == i + 1
    assert ch.collateral_token(i) == t.address
    assert ch.collateral_scale(i) == 10**10
    assert ch.collateral_haircut(i) == WAD // 5
    assert ch.collateral_market(i) == BTC
    assert ch.collateral_cap(i) == 50 * 10**8
    assert ch.collateral_held(i) == 0
    expect_event(tx, gov.CollateralListed, ch, index=i, token=t, decimals=8)
    expect_event(
        tx,
        gov.CollateralParamsUpdated,
        ch,
        index=i,
        old_haircut=0,
        new_haircut=WAD // 5,
        old_price_market=0,
        new_price_market=BTC,
        old_cap=0,
        new_cap=50 * 10**8,
    )


@pytest.mark.parametrize("decimals", [0, 18])
def test_add_collateral__decimals_bounds(ch, gov, deploy_token, admin, decimals):
    t = deploy_token(decimals, "T")
    gov.add_collateral(t, 0, ETH, MAX_UINT256, sender=admin)
    assert ch.collateral_scale(ch.collateral_count() - 1) == 10 ** (18 - decimals)


def test_add_collateral__haircut_just_below_100pct(ch, gov, deploy_token, admin):
    gov.add_collateral(deploy_token(), WAD - 1, ETH, MAX_UINT256, sender=admin)
    assert ch.collateral_haircut(ch.collateral_count() - 1) == WAD - 1


@pytest.mark.parametrize("who", ["stranger", "guardian", "trader"])
def test_add_collateral__without_risk_role__reverts(ch, gov, deploy_token, request, who):
    t = deploy_token()
    with ape.reverts(MISSING_ROLE):
        gov.add_collateral(t, 0, ETH, MAX_UINT256, sender=request.getfixturevalue(who))
    assert ch.collateral_count() == 1


def test_add_collateral__zero_token__reverts(gov, admin):
    with ape.reverts("clearinghouse: zero token"):
        gov.add_collateral(ZERO_ADDRESS, 0, ETH, MAX_UINT256, sender=admin)


def test_add_collateral__settlement_token__reverts(gov, token, admin):
    with ape.reverts("clearinghouse: token already listed"):
        gov.add_collateral(token, 0, ETH, MAX_UINT256, sender=admin)


def test_add_collateral__twice__reverts(ch, gov, deploy_token, admin):
    t = deploy_token()
    gov.add_collateral(t, 0, ETH, MAX_UINT256, sender=admin)
    with ape.reverts("clearinghouse: token already listed"):
        gov.add_collateral(t, WAD // 2, BTC, 1, sender=admin)
    assert ch.collateral_count() == 2


def test_add_collateral__too_many__reverts(ch, gov, deploy_token, admin):
    while ch.collateral_count() < 8:  # MAX_COLLATERALS
        gov.add_collateral(deploy_token(), 0, ETH, MAX_UINT256, sender=admin)
    with ape.reverts("clearinghouse: too many collateral tokens"):
        gov.add_collateral(deploy_token(), 0, ETH, MAX_UINT256, sender=admin)


def test_add_collateral__haircut_100pct__reverts(gov, deploy_token, admin):
    with ape.reverts("clearinghouse: haircut must be below 100%"):
        gov.add_collateral(deploy_token(), WAD, ETH, MAX_UINT256, sender=admin)


def test_add_collateral__unknown_market__reverts(ch, gov, deploy_token, admin):
    with ape.reverts("clearinghouse: unknown market"):
        gov.add_collateral(deploy_token(), 0, ch.market_count(), MAX_UINT256, sender=admin)


def test_add_collateral__decimals_above_18__reverts(gov, deploy_token, admin):
    with ape.reverts("clearinghouse: token decimals above 18"):
        gov.add_collateral(deploy_token(19, "X19"), 0, ETH, MAX_UINT256, sender=admin)


def test_add_collateral__not_a_token__reverts(ch, gov, admin, stranger):
    with ape.reverts():
        gov.add_collateral(stranger, 0, ETH, MAX_UINT256, sender=admin)
    assert ch.collateral_count() == 1
