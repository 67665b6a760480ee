"""engine_*: the self-only entry points the code halves call back; nobody else may."""

import ape
import pytest

from .helpers import BTC, MAX_UINT256, WAD

pytestmark = pytest.mark.usefixtures("vault_cash")

REASON = "clearinghouse: internal entry point"


@pytest.fixture(scope="module")
def engine_acct(vault_cash, h, trader):
    return h.funded_account(trader, 1_000)


@pytest.mark.parametrize("who", ["trader", "stranger", "admin"])
def test_engine_pool_trade__outside_caller__reverts(ch, engine_acct, request, who):
    # would skip the authorisation, pause and price-bound checks of `trade`
    with ape.reverts(REASON):
        ch.engine_pool_trade(
            engine_acct, BTC, WAD, MAX_UINT256, 0, sender=request.getfixturevalue(who)
        )
    assert ch.position(engine_acct, BTC)[0] == 0


def test_engine_touch__outside_caller__reverts(ch, stranger):
    with ape.reverts(REASON):
        ch.engine_touch(BTC, sender=stranger)


def test_engine_refresh_account__outside_caller__reverts(ch, engine_acct, stranger):
    with ape.reverts(REASON):
        ch.engine_refresh_account(engine_acct, False, sender=stranger)


def test_engine_check_initial__outside_caller__reverts(ch, engine_acct, stranger):
    with ape.reverts(REASON):
        ch.engine_check_initial(engine_acct, "x", True, sender=stranger)


def test_engine_check_fill__outside_caller__reverts(protocol, engine_acct, stranger):
    # a signed fill's margin check (compiled into the Treasury half, whose functions the
    # Risk handle carries): reached only from settle
    with ape.reverts(REASON):
        protocol.risk.engine_check_fill(engine_acct, BTC, 0, True, True, 0, sender=stranger)
