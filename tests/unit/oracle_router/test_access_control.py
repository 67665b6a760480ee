"""Roles (snekmate `access_control`), ERC-165 and the exported constants."""

import ape
from eth_utils import keccak

from perpdex.constants import FLAG_DEGRADED, FLAG_SEQUENCER_DOWN, FLAG_SEQUENCER_GRACE

from .helpers import DEFAULT_PARAMS, MAX_AGE, MAX_AGE_LIMIT, MAX_PRICE

DEFAULT_ADMIN_ROLE = b"\x00" * 32
RISK_ROLE = keccak(text="RISK_ROLE")
MISSING_ROLE = "access_control: account is missing role"


def test_constructor__grants_deployer_admin_and_risk_roles(router, admin, stranger):
    assert router.DEFAULT_ADMIN_ROLE() == DEFAULT_ADMIN_ROLE
    assert router.RISK_ROLE() == RISK_ROLE
    assert router.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert router.hasRole(RISK_ROLE, admin)
    assert not router.hasRole(RISK_ROLE, stranger)
    assert router.getRoleAdmin(RISK_ROLE) == DEFAULT_ADMIN_ROLE
    assert router.market_count() == 0


def test_constants__exported(router):
    assert router.FLAG_DEGRADED() == FLAG_DEGRADED
    assert router.FLAG_SEQUENCER_DOWN() == FLAG_SEQUENCER_DOWN
    assert router.FLAG_SEQUENCER_GRACE() == FLAG_SEQUENCER_GRACE
    assert router.MAX_MARKETS() == 32
    assert router.MAX_SOURCES() == 3
    assert router.MAX_PRICE() == MAX_PRICE
    assert router.MAX_AGE_LIMIT() == MAX_AGE_LIMIT


def test_supportsInterface__erc165_and_access_control(router):
    assert router.supportsInterface(bytes.fromhex("01ffc9a7"))
    assert router.supportsInterface(bytes.fromhex("7965db0b"))
    assert not router.supportsInterface(bytes.fromhex("ffffffff"))


def test_revokeRole__risk_manager_loses_setters(router, feeds, admin, risk_manager):
    router.revokeRole(RISK_ROLE, risk_manager, sender=admin)

    with ape.reverts(MISSING_ROLE):
        router.add_market(feeds[:2], [MAX_AGE] * 2, *DEFAULT_PARAMS.args(), sender=risk_manager)


def test_grantRole__stranger_reverts(router, stranger):
    with ape.reverts(MISSING_ROLE):
        router.grantRole(RISK_ROLE, stranger, sender=stranger)


def test_grantRole__risk_manager_cannot_grant(router, risk_manager, stranger):
    with ape.reverts(MISSING_ROLE):
        router.grantRole(RISK_ROLE, stranger, sender=risk_manager)


def test_renounceRole__only_for_itself(router, admin, risk_manager):
    with ape.reverts("access_control: can only renounce roles for itself"):
        router.renounceRole(RISK_ROLE, risk_manager, sender=admin)

    router.renounceRole(RISK_ROLE, risk_manager, sender=risk_manager)

    assert not router.hasRole(RISK_ROLE, risk_manager)


def test_set_role_admin__not_exported(router):
    assert not hasattr(router, "set_role_admin")
