"""Deployment of the six code halves: roles, shared oracle and token, input checks."""

import ape
import pytest

from .helpers import ZERO_ADDRESS


def _risk_half(project, oracle, token, admin):
    """A ClearinghouseRisk over a fresh Treasury half (the deploy order)."""
    treasury = project.ClearinghouseTreasury.deploy(oracle, token, sender=admin)
    return project.ClearinghouseRisk.deploy(oracle, token, treasury, sender=admin)


def _admin_half(project, oracle, token, admin):
    """A ClearinghouseAdmin over fresh Orders, Risk and Treasury halves (the deploy order)."""
    risk = _risk_half(project, oracle, token, admin)
    orders = project.ClearinghouseOrders.deploy(oracle, token, risk, sender=admin)
    return project.ClearinghouseAdmin.deploy(oracle, token, orders, sender=admin)


@pytest.fixture(scope="module")
def token18(deploy_token):
    return deploy_token(18, "DAI")


def test_constructor__roles_go_to_admin(deploy_trio, token18, admin, lp):
    core, _, _ = deploy_trio(token18, owner=lp)
    for role in (core.DEFAULT_ADMIN_ROLE(), core.RISK_ROLE(), core.GUARDIAN_ROLE()):
        assert core.hasRole(role, lp)
        assert not core.hasRole(role, admin)  # the deployer keeps nothing
    assert not core.hasRole(core.LIQUIDATOR_ROLE(), lp)


def test_constructor__initial_state(deploy_trio, protocol, token18, admin):
    core, _, _ = deploy_trio(token18)
    assert core.ORACLE() == protocol.oracle.address
    assert core.settlement_token() == token18.address
    assert core.SETTLEMENT_SCALE() == 1
    assert (core.collateral_count(), core.collateral_token(0), core.collateral_scale(0)) == (
        1,
        token18.address,
        1,
    )
    assert core.collateral_cap(0) == 2**256 - 1
    assert core.market_count() == 0
    assert core.risk_book() == ZERO_ADDRESS
    assert not core.paused()
    p = core.system_params()
    assert (p.max_mark_age, p.insurance_bps, p.protocol_bps) == (60, 1_000, 0)
    assert (core.max_shock_step_bps(), core.max_ratio_step_bps()) == (1_000, 200)
    assert core.loss_cap_fee() == 5 * 10**18


def test_constructor__risk_half_for_another_token__reverts(
    project, protocol, token, token18, admin
):
    risk = _risk_half(project, protocol.oracle, token, admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.ClearinghouseOrders.deploy(protocol.oracle, token18, risk, sender=admin)


def test_constructor__six_decimals_scale(ch, token):
    assert ch.SETTLEMENT_SCALE() == 10**12
    assert ch.collateral_scale(0) == 10**12


def test_constructor__zero_admin__reverts(project, protocol, token18, admin):
    a = _admin_half(project, protocol.oracle, token18, admin)
    o = project.ClearinghouseOps.deploy(protocol.oracle, token18, a, sender=admin)
    with ape.reverts("clearinghouse: zero admin"):
        project.Clearinghouse.deploy(protocol.oracle, token18, ZERO_ADDRESS, o, sender=admin)


def test_constructor__zero_extension__reverts(project, protocol, token18, admin):
    with ape.reverts("clearinghouse: zero extension"):
        project.Clearinghouse.deploy(protocol.oracle, token18, admin, ZERO_ADDRESS, sender=admin)


def test_constructor__ops_for_another_token__reverts(project, protocol, token, token18, admin):
    a = _admin_half(project, protocol.oracle, token, admin)
    o = project.ClearinghouseOps.deploy(protocol.oracle, token, a, sender=admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.Clearinghouse.deploy(protocol.oracle, token18, admin, o, sender=admin)


def test_constructor__ops_for_another_oracle__reverts(project, protocol, token18, admin):
    other = project.OracleRouter.deploy(sender=admin)
    a = _admin_half(project, other, token18, admin)
    o = project.ClearinghouseOps.deploy(other, token18, a, sender=admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.Clearinghouse.deploy(protocol.oracle, token18, admin, o, sender=admin)


def test_constructor__admin_half_for_another_token__reverts(
    project, protocol, token, token18, admin
):
    a = _admin_half(project, protocol.oracle, token, admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.ClearinghouseOps.deploy(protocol.oracle, token18, a, sender=admin)


def test_constructor__orders_half_for_another_token__reverts(
    project, protocol, token, token18, admin
):
    risk = _risk_half(project, protocol.oracle, token, admin)
    o = project.ClearinghouseOrders.deploy(protocol.oracle, token, risk, sender=admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.ClearinghouseAdmin.deploy(protocol.oracle, token18, o, sender=admin)


def test_constructor__token_above_18_decimals__reverts(project, protocol, deploy_token, admin):
    with ape.reverts("clearinghouse: token decimals above 18"):
        project.ClearinghouseTreasury.deploy(protocol.oracle, deploy_token(19, "X19"), sender=admin)


def test_constructor__zero_oracle__reverts(project, token18, admin):
    with ape.reverts("clearinghouse: zero oracle"):
        project.ClearinghouseTreasury.deploy(ZERO_ADDRESS, token18, sender=admin)


def test_constructor__zero_token__reverts(project, protocol, admin):
    with ape.reverts("clearinghouse: zero token"):
        project.ClearinghouseTreasury.deploy(protocol.oracle, ZERO_ADDRESS, sender=admin)


def test_constructor__treasury_half_for_another_token__reverts(
    project, protocol, token, token18, admin
):
    treasury = project.ClearinghouseTreasury.deploy(protocol.oracle, token, sender=admin)
    with ape.reverts("clearinghouse: extension mismatch"):
        project.ClearinghouseRisk.deploy(protocol.oracle, token18, treasury, sender=admin)
