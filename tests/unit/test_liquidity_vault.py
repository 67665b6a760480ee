"""LiquidityVault: every refusal with its reason, the fee setter, and the dust exit
(shares worth less than one token unit are burnt for nothing, so an LP can always leave
with everything it holds). Share pricing and round trips are checked by the stateful fuzz
(tests/fuzz); the vault's pool accounting by tests/unit/clearinghouse/test_treasury.py."""

from __future__ import annotations

import re
from typing import Any

import ape
import pytest

from perpdex.config import LP_EXIT_HEADROOM_BPS, ROOT

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def vault(protocol: Any) -> Any:
    return protocol.vault


@pytest.fixture
def lp_shares(actors: dict[str, Any], vault: Any, h: Any, lp: Any) -> int:
    """The LP deposits $10,000; returns its shares."""
    units = h.fund(lp, 10_000)
    h.p.token.approve(vault, units, sender=lp)
    vault.deposit(units, lp, sender=lp)
    return int(vault.balanceOf(lp))


def test_deposit__zero_amount__reverts(vault: Any, lp: Any) -> None:
    with ape.reverts("vault: zero amount"):
        vault.deposit(0, lp, sender=lp)


def test_mint__zero_amount__reverts(vault: Any, lp: Any) -> None:
    with ape.reverts("vault: zero amount"):
        vault.mint(0, lp, sender=lp)


def test_deposit__zero_receiver__reverts(vault: Any, h: Any, lp: Any) -> None:
    units = h.fund(lp, 100)
    h.p.token.approve(vault, units, sender=lp)
    with ape.reverts("vault: zero receiver"):
        vault.deposit(units, ZERO, sender=lp)


def test_withdraw__zero_amount__reverts(vault: Any, lp_shares: int, lp: Any) -> None:
    with ape.reverts("vault: zero amount"):
        vault.withdraw(0, lp, lp, sender=lp)


def test_redeem__zero_shares__reverts(vault: Any, lp_shares: int, lp: Any) -> None:
    with ape.reverts("vault: zero amount"):
        vault.redeem(0, lp, lp, sender=lp)


def test_redeem__zero_receiver__reverts(vault: Any, lp_shares: int, lp: Any) -> None:
    with ape.reverts("vault: zero receiver"):
        vault.redeem(lp_shares, ZERO, lp, sender=lp)


def test_redeem__someone_elses_shares_without_allowance__reverts(
    vault: Any, lp_shares: int, lp: Any, stranger: Any
) -> None:
    with ape.reverts("erc20: insufficient allowance"):
        vault.redeem(lp_shares, stranger, lp, sender=stranger)
    assert int(vault.balanceOf(lp)) == lp_shares


def test_redeem__with_allowance__spends_it(
    vault: Any, lp_shares: int, lp: Any, stranger: Any
) -> None:
    vault.approve(stranger, lp_shares, sender=lp)
    vault.redeem(lp_shares // 2, stranger, lp, sender=stranger)
    assert int(vault.allowance(lp, stranger)) == lp_shares - lp_shares // 2
    assert int(vault.balanceOf(lp)) == lp_shares - lp_shares // 2


def test_redeem__dust_shares__burnt_for_nothing(
    vault: Any, ch: Any, token: Any, lp_shares: int, lp: Any
) -> None:
    """One share is worth far less than one token unit (shares carry the decimals
    offset): redeeming it pays 0 and burns it; the pool's cash does not move."""
    dust = 1
    assert int(vault.previewRedeem(dust)) == 0
    cash, wallet = int(ch.pool_cash()), int(token.balanceOf(lp))
    tx = vault.redeem(dust, lp, lp, sender=lp)
    assert tx.return_value == 0
    assert int(vault.balanceOf(lp)) == lp_shares - dust
    assert (int(ch.pool_cash()), int(token.balanceOf(lp))) == (cash, wallet)
    (ev,) = list(tx.decode_logs(vault.Withdraw))
    assert (ev.assets, ev.shares) == (0, dust)


def test_redeem__everything__leaves_no_shares(
    vault: Any, lp_shares: int, lp: Any, token: Any
) -> None:
    wallet = int(token.balanceOf(lp))
    paid = vault.redeem(lp_shares, lp, lp, sender=lp).return_value
    assert int(vault.balanceOf(lp)) == 0
    assert int(token.balanceOf(lp)) == wallet + paid > wallet


def test_set_withdraw_fee__owner__emits(vault: Any, admin: Any) -> None:
    old = int(vault.withdraw_fee_bps())
    tx = vault.set_withdraw_fee(150, sender=admin)
    assert int(vault.withdraw_fee_bps()) == 150
    (ev,) = list(tx.decode_logs(vault.WithdrawFeeUpdated))
    assert (ev.old_fee_bps, ev.new_fee_bps) == (old, 150)


def test_set_withdraw_fee__below_exposure_bound__reverts(vault: Any, admin: Any) -> None:
    floor = int(vault.min_withdraw_fee_bps())
    with ape.reverts("vault: fee below the exposure bound"):
        vault.set_withdraw_fee(floor - 1, sender=admin)
    vault.set_withdraw_fee(floor, sender=admin)
    assert int(vault.withdraw_fee_bps()) == floor


def test_set_withdraw_fee__too_high__reverts(vault: Any, admin: Any) -> None:
    with ape.reverts("vault: fee too high"):
        vault.set_withdraw_fee(201, sender=admin)


def test_set_withdraw_fee__not_owner__reverts(vault: Any, stranger: Any) -> None:
    with ape.reverts("ownable: caller is not the owner"):
        vault.set_withdraw_fee(100, sender=stranger)


def test_constructor__fee_too_high__reverts(project: Any, protocol: Any, admin: Any) -> None:
    with ape.reverts("vault: fee too high"):
        project.LiquidityVault.deploy(protocol.lens, 3, 201, 70, sender=admin)


def test_constructor__fee_below_exposure_bound__reverts(
    project: Any, protocol: Any, admin: Any
) -> None:
    with ape.reverts("vault: fee below the exposure bound"):
        project.LiquidityVault.deploy(protocol.lens, 3, 69, 70, sender=admin)


def test_withdraw_fee__covers_one_update_across_every_market(vault: Any, protocol: Any) -> None:
    """The deployed floor and fee cover feed deviation x the sum of the markets'
    exposure caps (a correlated oracle round moves every market at once) x the headroom
    LP exits may use above the caps, read from the deployed markets and the treasury
    module's constant, not from the config alone."""
    from perpdex.units import WAD

    headroom = re.search(
        r"LP_EXIT_HEADROOM_BPS: constant\(uint256\) = ([0-9_]+)",
        (ROOT / "contracts" / "modules" / "treasury.vy").read_text(),
    )
    assert headroom is not None and int(headroom[1]) == LP_EXIT_HEADROOM_BPS

    system = protocol.system
    ch = protocol.clearinghouse
    caps = sum(int(ch.market_params(m).max_vault_exposure) for m in range(int(ch.market_count())))
    bound = -(-system.vault_feed_deviation_bps * caps * LP_EXIT_HEADROOM_BPS // (WAD * 10_000))
    assert bound == 75  # 0.5% x (0.4 + 0.35 + 0.25) x 1.5
    assert int(vault.min_withdraw_fee_bps()) == bound
    assert int(vault.withdraw_fee_bps()) >= bound
