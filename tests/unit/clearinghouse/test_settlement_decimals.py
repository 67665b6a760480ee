"""An 18-decimal settlement token: a fresh Clearinghouse on the session oracle.

Money is USD WAD inside whatever the token's decimals; with 18 decimals token units and
WAD coincide, so the accounting must balance to the wei.
"""

import ape
import pytest

from perpdex.config import load_risk
from perpdex.sdk import riskbook

from .helpers import BTC, MAX_UINT256, WAD, expect_event, first_fill


@pytest.fixture(scope="module")
def dai_system(deploy_trio, deploy_token, protocol, admin):
    """(core, ops, gov, dai): markets and risk book as configured, admin as the vault,
    $1,000,000 of pool cash."""
    dai = deploy_token(18, "DAI")
    core, ops, gov = deploy_trio(dai)
    for m in protocol.system.markets:
        gov.add_market(m.params(), sender=admin)
    gov.set_risk_book(
        riskbook.encode(riskbook.from_config(load_risk(), protocol.symbols)), sender=admin
    )
    gov.set_fee_split(protocol.system.insurance_bps, protocol.system.protocol_bps, sender=admin)
    gov.set_vault(admin, sender=admin)
    dai.mint(admin, 1_000_000 * WAD, sender=admin)
    dai.approve(core, MAX_UINT256, sender=admin)
    gov.vault_deposit(1_000_000 * WAD, sender=admin)
    return core, ops, gov, dai


@pytest.fixture(scope="module")
def dai_acct(dai_system, trader):
    core, ops, _, dai = dai_system
    acct = core.open_account("main", False, sender=trader).return_value
    dai.mint(trader, 10_000 * WAD, sender=trader)
    dai.approve(core, MAX_UINT256, sender=trader)
    ops.deposit(acct, dai, 10_000 * WAD, sender=trader)
    return acct


def _conserved(core, dai, accounts):
    """Tokens held == pool cash + account balances + insurance + protocol fees, to the wei."""
    total = core.pool_cash() + sum(core.balance_of(a, 0) for a in accounts)
    total += core.insurance_fund() + core.protocol_fees()
    return dai.balanceOf(core) == core.collateral_held(0) == total


def test_settlement_18__scale_is_one(dai_system):
    core, _, _, dai = dai_system
    assert core.SETTLEMENT_SCALE() == 1
    assert core.collateral_scale(0) == 1
    assert core.settlement_token() == dai.address


def test_settlement_18__deposit_credits_exact_units(dai_system, trader):
    core, ops, _, dai = dai_system
    acct = core.open_account("odd", False, sender=trader).return_value
    amount = 1_234_567_890_123_456_789
    dai.mint(trader, amount, sender=trader)
    dai.approve(core, MAX_UINT256, sender=trader)
    tx = ops.deposit(acct, dai, amount, sender=trader)
    assert core.balance_of(acct, 0) == amount
    expect_event(
        tx,
        ops.Deposit,
        core,
        account=acct,
        token=dai,
        sender=trader,
        amount=amount,
        credited=amount,
    )


def test_settlement_18__trade_matches_reference(dai_system, dai_acct, protocol, h, trader):
    core = dai_system[0]
    m = protocol.system.market("BTC")
    fill, fee = first_fill(h.price("BTC"), WAD // 10, m.skew_scale, m.taker_fee)
    tx = core.trade(dai_acct, BTC, WAD // 10, MAX_UINT256, sender=trader)
    assert tx.return_value == fill
    assert core.Fill.from_receipt(tx)[0].fee == fee
    assert core.balance_of(dai_acct, 0) == 10_000 * WAD - fee


def test_settlement_18__round_trip_conserves_tokens(dai_system, dai_acct, h, trader, admin):
    core, ops, _, dai = dai_system
    core.trade(dai_acct, BTC, WAD // 10, MAX_UINT256, sender=trader)
    h.set_price("BTC", 101_000, admin)
    core.trade(dai_acct, BTC, -WAD // 10, 0, sender=trader)
    assert _conserved(core, dai, [dai_acct])
    bal = core.balance_of(dai_acct, 0)
    tx = ops.withdraw(dai_acct, dai, bal, trader, sender=trader)
    assert core.balance_of(dai_acct, 0) == 0
    assert dai.balanceOf(trader) == bal
    expect_event(tx, ops.Withdraw, core, account=dai_acct, token=dai, receiver=trader, amount=bal)
    assert _conserved(core, dai, [dai_acct])


def test_settlement_18__protocol_fees_paid_without_dust(dai_system, dai_acct, trader, admin, lp):
    core, _ops, gov, dai = dai_system
    gov.set_fee_split(1_000, 2_000, sender=admin)
    core.trade(dai_acct, BTC, WAD // 10, MAX_UINT256, sender=trader)
    fees = core.protocol_fees()
    assert fees > 0
    tx = gov.withdraw_protocol_fees(lp, sender=admin)
    assert dai.balanceOf(lp) == fees
    assert core.protocol_fees() == 0
    expect_event(tx, gov.ProtocolFeesWithdrawn, core, receiver=lp, amount=fees)
    assert _conserved(core, dai, [dai_acct])


def test_settlement_18__withdraw_below_initial_margin__reverts(dai_system, dai_acct, trader):
    core, ops, _, dai = dai_system
    core.trade(dai_acct, BTC, WAD // 2, MAX_UINT256, sender=trader)  # ~$5,000 initial
    m = core.account_margin(dai_acct)
    free = m.equity - m.initial
    # a withdrawal re-reads the oracle and accrues a second or two of funding first, so
    # the boundary is checked to within 0.001 DAI rather than to the wei
    slack = 10**15
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(dai_acct, dai, free + slack, trader, sender=trader)
    ops.withdraw(dai_acct, dai, free - slack, trader, sender=trader)
    assert dai.balanceOf(trader) == free - slack


def test_settlement_18__independent_of_the_session_system(dai_system, dai_acct, ch, trader):
    core = dai_system[0]
    assert core.address != ch.address
    assert ch.sub_account_count(trader) == 0
    assert core.sub_account_count(trader) == 1
