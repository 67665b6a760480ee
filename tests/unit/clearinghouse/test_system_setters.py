"""Fee split, max mark age, loss-cap fee, vault and risk-book limits: role, bounds, events."""

import ape
import pytest

from .helpers import MISSING_ROLE, WAD, ZERO_ADDRESS, expect_event

pytestmark = pytest.mark.usefixtures("vault_cash", "granted_roles")

RISK_ONLY = ["stranger", "guardian", "trader"]
ADMIN_ONLY = ["stranger", "guardian", "risk_manager"]


# --- set_fee_split ---------------------------------------------------------------------


def _split(ch):
    p = ch.system_params()
    return p.insurance_bps, p.protocol_bps


def test_set_fee_split__risk_role(ch, gov, risk_manager):
    old_ins, old_prot = _split(ch)
    before = dict(ch.system_params().items())
    tx = gov.set_fee_split(3_000, 2_000, sender=risk_manager)
    after = dict(ch.system_params().items())
    assert _split(ch) == (3_000, 2_000)
    # the rest of the system word is untouched
    for k in ("insurance_bps", "protocol_bps"):
        before.pop(k), after.pop(k)
    assert after == before
    expect_event(
        tx,
        gov.FeeSplitUpdated,
        ch,
        old_insurance_share=old_ins,
        new_insurance_share=3_000,
        old_protocol_share=old_prot,
        new_protocol_share=2_000,
    )


@pytest.mark.parametrize("shares", [(10_000, 0), (0, 10_000), (5_000, 5_000), (0, 0)])
def test_set_fee_split__bounds(ch, gov, admin, shares):
    gov.set_fee_split(*shares, sender=admin)
    assert _split(ch) == shares


def test_set_fee_split__routes_the_next_fee(ch, gov, h, trader, admin):
    gov.set_fee_split(2_500, 5_000, sender=admin)
    acct = h.funded_account(trader, 10_000)
    ins0, prot0, cash0 = ch.insurance_fund(), ch.protocol_fees(), ch.pool_cash()
    fee = ch.Fill.from_receipt(h.trade(trader, acct, "BTC", "0.1"))[0].fee
    assert ch.insurance_fund() - ins0 == fee * 2_500 // 10_000
    assert ch.protocol_fees() - prot0 == fee * 5_000 // 10_000
    assert ch.pool_cash() - cash0 == fee - fee * 2_500 // 10_000 - fee * 5_000 // 10_000


@pytest.mark.parametrize("shares", [(10_000, 1), (5_001, 5_000), (20_000, 0)])
def test_set_fee_split__above_100pct__reverts(ch, gov, admin, shares):
    before = _split(ch)
    with ape.reverts("clearinghouse: shares above 100%"):
        gov.set_fee_split(*shares, sender=admin)
    assert _split(ch) == before


@pytest.mark.parametrize("who", RISK_ONLY)
def test_set_fee_split__without_risk_role__reverts(gov, request, who):
    with ape.reverts(MISSING_ROLE):
        gov.set_fee_split(0, 0, sender=request.getfixturevalue(who))


# --- set_max_mark_age --------------------------------------------------------------------


def test_set_max_mark_age__risk_role(ch, gov, risk_manager):
    before = dict(ch.system_params().items())
    tx = gov.set_max_mark_age(300, sender=risk_manager)
    after = dict(ch.system_params().items())
    assert after.pop("max_mark_age") == 300
    old = before.pop("max_mark_age")
    assert after == before
    expect_event(tx, gov.MaxMarkAgeUpdated, ch, old_age=old, new_age=300)


@pytest.mark.parametrize("age", [1, 3_600])
def test_set_max_mark_age__bounds(ch, gov, admin, age):
    gov.set_max_mark_age(age, sender=admin)
    assert ch.system_params().max_mark_age == age


@pytest.mark.parametrize("age", [0, 3_601])
def test_set_max_mark_age__out_of_range__reverts(ch, gov, admin, age):
    with ape.reverts("clearinghouse: mark age out of range"):
        gov.set_max_mark_age(age, sender=admin)
    assert ch.system_params().max_mark_age == 60


@pytest.mark.parametrize("who", RISK_ONLY)
def test_set_max_mark_age__without_risk_role__reverts(gov, request, who):
    with ape.reverts(MISSING_ROLE):
        gov.set_max_mark_age(120, sender=request.getfixturevalue(who))


# --- set_loss_cap_fee ---------------------------------------------------------------------


def test_set_loss_cap_fee__risk_role(ch, gov, risk_manager):
    old = ch.loss_cap_fee()
    tx = gov.set_loss_cap_fee(7 * WAD, sender=risk_manager)
    assert ch.loss_cap_fee() == 7 * WAD
    expect_event(tx, gov.LossCapParamsUpdated, ch, old_fee=old, new_fee=7 * WAD)


@pytest.mark.parametrize("fee", [0, 1_000 * WAD])
def test_set_loss_cap_fee__bounds(ch, gov, admin, fee):
    gov.set_loss_cap_fee(fee, sender=admin)
    assert ch.loss_cap_fee() == fee


def test_set_loss_cap_fee__too_large__reverts(ch, gov, admin):
    with ape.reverts("clearinghouse: fee too large"):
        gov.set_loss_cap_fee(1_000 * WAD + 1, sender=admin)
    assert ch.loss_cap_fee() == 5 * WAD


@pytest.mark.parametrize("who", RISK_ONLY)
def test_set_loss_cap_fee__without_risk_role__reverts(gov, request, who):
    with ape.reverts(MISSING_ROLE):
        gov.set_loss_cap_fee(WAD, sender=request.getfixturevalue(who))


# --- set_vault -------------------------------------------------------------------------------


def test_set_vault__admin(ch, gov, admin, lp):
    old = ch.vault()
    tx = gov.set_vault(lp, sender=admin)
    assert ch.vault() == lp.address
    expect_event(tx, gov.VaultSet, ch, old_vault=old, new_vault=lp)


def test_set_vault__old_vault_loses_access(ch, ops, gov, h, admin, lp):
    gov.set_vault(lp, sender=admin)
    with ape.reverts("clearinghouse: caller is not the vault"):
        gov.vault_withdraw(h.usd(1), admin, sender=admin)


def test_set_vault__zero__reverts(ch, gov, admin):
    with ape.reverts("clearinghouse: zero vault"):
        gov.set_vault(ZERO_ADDRESS, sender=admin)
    assert ch.vault() == admin.address


@pytest.mark.parametrize("who", ADMIN_ONLY)
def test_set_vault__not_admin__reverts(ch, gov, request, who):
    actor = request.getfixturevalue(who)
    with ape.reverts(MISSING_ROLE):
        gov.set_vault(actor, sender=actor)


# --- set_risk_book_limits ------------------------------------------------------------------


def test_set_risk_book_limits__admin(ch, gov, admin):
    old = (ch.max_shock_step_bps(), ch.max_ratio_step_bps())
    tx = gov.set_risk_book_limits(500, 100, sender=admin)
    assert (ch.max_shock_step_bps(), ch.max_ratio_step_bps()) == (500, 100)
    expect_event(
        tx,
        gov.RiskBookLimitsUpdated,
        ch,
        old_shock_step_bps=old[0],
        new_shock_step_bps=500,
        old_ratio_step_bps=old[1],
        new_ratio_step_bps=100,
    )


@pytest.mark.parametrize("steps", [(0, 100), (100, 0), (0, 0)])
def test_set_risk_book_limits__zero_step__reverts(ch, gov, admin, steps):
    with ape.reverts("clearinghouse: zero step"):
        gov.set_risk_book_limits(*steps, sender=admin)
    assert (ch.max_shock_step_bps(), ch.max_ratio_step_bps()) == (1_000, 200)


@pytest.mark.parametrize("who", ADMIN_ONLY)
def test_set_risk_book_limits__not_admin__reverts(gov, request, who):
    with ape.reverts(MISSING_ROLE):
        gov.set_risk_book_limits(1, 1, sender=request.getfixturevalue(who))
