"""The market risk word (state._risk[m], modules/packing.vy "market risk word").

A trade's can-add-risk check (trading._require_can_add_risk) reads one word per market:
the risk book's market word 0 with a copy of the pause bit, kept in step by governance
(set_risk_book, pause, unpause, add_market). These tests hold the copy to the book's code
and to `paused()` through every writer, read from raw storage, and show a market listed
while paused refuses risk like the others.
"""

from typing import Any

import ape
import pytest

from perpdex.devtools import vyper_frontend
from perpdex.sdk import riskbook

from .helpers import FEED_USD, MAX_UINT256, WAD
from .test_add_market import NEW_PRICE, protocol_risk_with_new_market

pytestmark = pytest.mark.usefixtures("granted_roles")

PAUSED_BIT = 1 << 248
HEADER_BYTES = 32
MARKET_BYTES = 64


@pytest.fixture(scope="module")
def risk_slot() -> int:
    return int(
        vyper_frontend.layout("contracts/Clearinghouse.vy")["storage_layout"]["state"]["_risk"][
            "slot"
        ]
    )


def _risk_word(ch: Any, slot: int, m: int) -> int:
    chain = ape.chain
    return int.from_bytes(bytes(chain.provider.get_storage(ch.address, slot + m)), "big")


def _book_word0(ch: Any, m: int) -> int:
    code = bytes(ape.chain.provider.get_code(ch.risk_book()))
    off = 1 + HEADER_BYTES + MARKET_BYTES * m
    return int.from_bytes(code[off : off + 32], "big")


def _book_markets(ch: Any) -> int:
    code = bytes(ape.chain.provider.get_code(ch.risk_book()))
    return int.from_bytes(code[1:33], "big") & 0xFF


def _assert_in_step(ch: Any, slot: int) -> None:
    paused = PAUSED_BIT if ch.paused() else 0
    n = max(int(ch.market_count()), _book_markets(ch))
    for m in range(32):
        word = _risk_word(ch, slot, m)
        if m < n:
            assert word == _book_word0(ch, m) | paused, m
        else:
            assert word == 0, m


def test_risk_word__book_word_0_of_every_market(ch, risk_slot):
    assert int(ch.market_count()) >= 1
    for m in range(int(ch.market_count())):
        assert _book_word0(ch, m) != 0
    _assert_in_step(ch, risk_slot)


def test_risk_word__pause_and_unpause_copy_the_bit(ch, gov, admin, guardian, risk_slot):
    gov.pause(sender=guardian)
    for m in range(int(ch.market_count())):
        assert _risk_word(ch, risk_slot, m) & PAUSED_BIT
    _assert_in_step(ch, risk_slot)
    gov.unpause(sender=admin)
    for m in range(int(ch.market_count())):
        assert not _risk_word(ch, risk_slot, m) & PAUSED_BIT
    _assert_in_step(ch, risk_slot)


def test_risk_word__set_risk_book_while_paused_keeps_the_pause(
    ch, gov, protocol, admin, guardian, risk_slot
):
    gov.pause(sender=guardian)
    book = riskbook.encode(
        riskbook.from_config(protocol_risk_with_new_market(), [*protocol.symbols, "NEW"])
    )
    gov.set_risk_book(book, sender=admin)
    assert _book_markets(ch) == int(ch.market_count()) + 1
    _assert_in_step(ch, risk_slot)
    gov.unpause(sender=admin)
    _assert_in_step(ch, risk_slot)


@pytest.fixture
def new_market(project, protocol, admin) -> int:
    """A market listed in the oracle router (two mock feeds at $50), not yet in the
    clearinghouse; returns its id."""
    feeds = [project.MockAggregator.deploy(8, NEW_PRICE * FEED_USD, sender=admin) for _ in "ab"]
    tx = protocol.oracle.add_market(
        feeds, [3_600] * 2, WAD, 10_000 * WAD, 200, 2, 600, sender=admin
    )
    limits = (int(protocol.ops.max_pnl_factor()), int(protocol.ops.adl_target_factor()))
    protocol.risk.set_vault_limits(2 * WAD, *limits, sender=admin)
    return int(tx.return_value)


@pytest.mark.parametrize("book_first", [True, False])
def test_risk_word__market_listed_while_paused_is_paused(
    ch, gov, protocol, h, new_market, trader, admin, guardian, vault_cash, risk_slot, book_first
):
    params = protocol.system.market("SOL").params()
    book = riskbook.encode(
        riskbook.from_config(protocol_risk_with_new_market(), [*protocol.symbols, "NEW"])
    )
    acct = h.funded_account(trader, 10_000)
    if book_first:
        # the book covers the market before it is listed, then the pause
        gov.set_risk_book(book, sender=admin)
        gov.pause(sender=guardian)
        gov.add_market(params, sender=admin)
    else:
        # paused first, then listed, then covered by a book
        gov.pause(sender=guardian)
        gov.add_market(params, sender=admin)
        gov.set_risk_book(book, sender=admin)
    _assert_in_step(ch, risk_slot)
    with ape.reverts("clearinghouse: paused"):
        ch.trade(acct, new_market, 3 * WAD, MAX_UINT256, sender=trader)
    gov.unpause(sender=admin)
    _assert_in_step(ch, risk_slot)
    ch.trade(acct, new_market, 3 * WAD, MAX_UINT256, sender=trader)
    assert ch.position(acct, new_market)[0] == 3 * WAD
