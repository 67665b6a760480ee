"""Review 7, R7-1: a collateral token's transfer hook re-enters a header writer in the
middle of `deposit`, and the deposit's own header write must not undo it.

`deposit` (modules/accounts.vy) calls the token's `transferFrom` and then sets the
token's collateral bit in the account header. Before the fix it wrote back the header
it had read *before* the call, so whatever the owner changed from inside the call was
lost (a loss cap's ACCOUNT_LOSS_CAP bit cleared while the cap stays set, a position bit
dropped, a pending delayed order forgotten by the freeze). The fix reads the header
again after the call.

The attacker here is contracts/mocks/MockHookToken.vy: an ERC-20 listed as collateral
that makes one armed call from inside `transferFrom`. It owns the account under attack
(opened through its `execute`), so its armed call passes the owner checks, as the
owner's own hook contract would. Each test arms one header writer, deposits the token
into the account (from another address: anyone may top up any account) and checks
that the writer's change and the deposit's collateral bit are both in the header.

The writers tested are those `@nonreentrant` does not guard (deposit holds the lock):
set_loss_cap, set_margin_mode, cancel_below (signed orders' minimum nonce),
commit_order (delayed orders' pending count) and trade (a position bit). The guarded
header writers (trigger_loss_cap, settle_order, execute_order, the liquidation and ADL
paths) cannot be re-entered from a deposit at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from perpdex.constants import ACCOUNT_LOSS_CAP, ACCOUNT_PORTFOLIO
from perpdex.sdk.math.packing import collateral_bitmap, pending_count, positions_bitmap
from perpdex.sdk.settlement import MIN_NONCE_SHIFT
from perpdex.units import WAD

HOOK_UNITS = 5 * 10**18  # 5 tokens of 18 decimals
HAIRCUT = WAD // 10
ANY_PRICE = 2**256 - 1


@pytest.fixture
def r7_hook_token(actors: dict[str, Any], protocol: Any, project: Any, admin: Any) -> Any:
    """A MockHookToken (deployer: admin) listed as collateral priced by the ETH market."""
    t = project.MockHookToken.deploy("Hooked ETH", "HETH", 18, sender=admin)
    protocol.admin.add_collateral(t, HAIRCUT, protocol.market_id("ETH"), 2**256 - 1, sender=admin)
    return t


@pytest.fixture
def r7_account(protocol: Any, r7_hook_token: Any, admin: Any) -> int:
    """An isolated-margin account owned by the hook token (its first sub-account)."""
    ch = protocol.clearinghouse
    r7_hook_token.execute(ch, ch.open_account.encode_input("hooked", False), sender=admin)
    acct = int(r7_hook_token.address, 16) << 96
    assert ch.account_owner(acct) == r7_hook_token.address, "the token should own the account"
    return acct


@pytest.fixture
def r7_deposit(
    protocol: Any, r7_hook_token: Any, r7_account: int, admin: Any, trader: Any
) -> Callable[[str, tuple[Any, ...]], Any]:
    """`r7_deposit(writer, args)`: arms the token to call the Clearinghouse's `writer`
    (any of its ABIs) with `args` from inside transferFrom, then deposits the token into
    the account from `trader`; checks the hook fired and the collateral bit is set."""
    ch = protocol.clearinghouse
    abis = (ch, protocol.ops, protocol.admin, protocol.risk)

    def deposit(writer: str, args: tuple[Any, ...]) -> Any:
        handler = next(getattr(abi, writer) for abi in abis if hasattr(abi, writer))
        r7_hook_token.arm(ch, handler.encode_input(*args), sender=admin)
        r7_hook_token.mint(trader, HOOK_UNITS, sender=trader)
        r7_hook_token.approve(ch, HOOK_UNITS, sender=trader)
        fired = int(r7_hook_token.hooks_fired())
        tx = protocol.ops.deposit(r7_account, r7_hook_token, HOOK_UNITS, sender=trader)
        assert int(r7_hook_token.hooks_fired()) == fired + 1, f"the {writer} hook did not run"
        idx = next(
            i for i in range(int(ch.collateral_count())) if ch.collateral_token(i) == r7_hook_token
        )
        hdr = int(ch.account_header(r7_account))
        assert collateral_bitmap(hdr) & (1 << idx), "deposit did not set the collateral bit"
        return tx

    return deposit


def test_r7_1__loss_cap_set_in_the_hook_keeps_its_header_bit(protocol, r7_account, r7_deposit):
    floor = 1_000 * WAD
    assert int(protocol.clearinghouse.account_header(r7_account)) & ACCOUNT_LOSS_CAP == 0
    r7_deposit("set_loss_cap", (r7_account, floor))
    assert int(protocol.clearinghouse.loss_cap(r7_account)) == floor
    hdr = int(protocol.clearinghouse.account_header(r7_account))
    assert hdr & ACCOUNT_LOSS_CAP, "the loss cap is set but its header bit was undone"


def test_r7_1__margin_mode_switched_in_the_hook_stays(protocol, r7_account, r7_deposit):
    assert int(protocol.clearinghouse.account_header(r7_account)) & ACCOUNT_PORTFOLIO == 0
    r7_deposit("set_margin_mode", (r7_account, True))
    hdr = int(protocol.clearinghouse.account_header(r7_account))
    assert hdr & ACCOUNT_PORTFOLIO, "the switch to portfolio margin was undone"


def test_r7_1__nonces_cancelled_in_the_hook_stay_cancelled(protocol, r7_account, r7_deposit):
    r7_deposit("cancel_below", (r7_account, 7))
    hdr = int(protocol.clearinghouse.account_header(r7_account))
    assert hdr >> MIN_NONCE_SHIFT == 7, "signed orders cancelled in the hook came back"


def test_r7_1__delayed_order_committed_in_the_hook_keeps_the_freeze(
    protocol, r7_account, r7_deposit, admin
):
    btc = protocol.market_id("BTC")
    protocol.risk.set_delayed_params(btc, 1, 30, 300, 0, sender=admin)
    r7_deposit("commit_order", (r7_account, btc, WAD // 100, ANY_PRICE))
    assert int(protocol.ops.delayed_order(r7_account, btc)) != 0
    hdr = int(protocol.clearinghouse.account_header(r7_account))
    assert pending_count(hdr) == 1, "the pending delayed order was dropped from the header"


def test_r7_1__position_opened_in_the_hook_keeps_its_bit(
    protocol, h, vault_pool, r7_account, r7_deposit, trader
):
    ch = protocol.clearinghouse
    btc = protocol.market_id("BTC")
    margin = h.fund(trader, 20_000)
    protocol.ops.deposit(r7_account, protocol.token, margin, sender=trader)
    r7_deposit("trade", (r7_account, btc, WAD // 100, ANY_PRICE))
    assert int(ch.position(r7_account, btc)[0]) == WAD // 100
    hdr = int(ch.account_header(r7_account))
    assert positions_bitmap(hdr) & (1 << btc), "the open position's header bit was undone"
