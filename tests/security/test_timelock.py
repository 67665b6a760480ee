"""Timelocked power (issue 9, item 9): after the deploy's hand-over, role grants,
`set_vault`, oracle source changes and risk-book publication take effect only after a
public delay; the guardian's pause stays instant.

The attack this closes: a single compromised admin key could grant itself
LIQUIDATOR_ROLE, point `set_vault` at its own contract or swap an oracle source and
reprice a market, all in one block. Here the deployer (that key) tries each directly and
is refused; the same change scheduled through the Timelock lands only after the delay.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ape
import pytest

from perpdex.deploy import Protocol, deploy_system
from perpdex.risk import governance
from perpdex.sdk import riskbook

DELAY = 86_400
ZERO32 = b"\x00" * 32


@pytest.fixture(scope="module")
def timelock_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("timelock") / "local-timelock.json"


@pytest.fixture(scope="module")
def locked(actors: dict[str, Any], timelock_manifest: Path) -> Protocol:
    """A second deployment on the test chain, handed over to a 24 h Timelock."""
    return deploy_system(actors["admin"], manifest=timelock_manifest, timelock_delay=DELAY)


def _schedule(p: Protocol, target: Any, data: bytes, who: Any, salt: bytes = ZERO32) -> bytes:
    assert p.timelock is not None
    p.timelock.schedule(target, 0, data, ZERO32, salt, DELAY, sender=who)
    return bytes(p.timelock.hash_operation(target, 0, data, ZERO32, salt))


def _execute(p: Protocol, target: Any, data: bytes, who: Any, salt: bytes = ZERO32) -> Any:
    assert p.timelock is not None
    return p.timelock.execute(target, 0, data, ZERO32, salt, sender=who)


def test_hand_over__deployer_keeps_no_dangerous_power(locked: Protocol, admin: Any) -> None:
    ch, oracle, tl = locked.clearinghouse, locked.oracle, locked.timelock
    assert tl is not None and locked.vault is not None and locked.auction is not None
    admin_role = ch.DEFAULT_ADMIN_ROLE()
    assert ch.hasRole(admin_role, tl) and not ch.hasRole(admin_role, admin)
    for role in (oracle.DEFAULT_ADMIN_ROLE(), oracle.RISK_ROLE()):
        assert oracle.hasRole(role, tl) and not oracle.hasRole(role, admin)
    assert locked.vault.owner() == tl.address
    assert locked.auction.pending_owner() == tl.address
    assert ch.risk_book_delay() == DELAY
    assert tl.get_minimum_delay() == DELAY
    # the deployer keeps the bounded, non-custodial roles
    assert ch.hasRole(ch.GUARDIAN_ROLE(), admin) and ch.hasRole(ch.RISK_ROLE(), admin)


def test_direct_grant__reverts(locked: Protocol, admin: Any, stranger: Any) -> None:
    with ape.reverts("access_control: account is missing role"):
        locked.admin.grantRole(locked.clearinghouse.LIQUIDATOR_ROLE(), stranger, sender=admin)


def test_direct_set_vault__reverts(locked: Protocol, admin: Any, stranger: Any) -> None:
    with ape.reverts("access_control: account is missing role"):
        locked.admin.set_vault(stranger, sender=admin)


def test_direct_oracle_source_change__reverts(locked: Protocol, admin: Any) -> None:
    feeds = [f.address for f in locked.feeds["BTC"]]
    with ape.reverts("access_control: account is missing role"):
        locked.oracle.set_sources(0, list(reversed(feeds)), [3600] * len(feeds), sender=admin)


def test_direct_risk_book_delay__reverts(locked: Protocol, admin: Any) -> None:
    with ape.reverts("access_control: account is missing role"):
        locked.admin.set_risk_book_delay(0, sender=admin)


def test_stranger_cannot_schedule(locked: Protocol, stranger: Any) -> None:
    assert locked.timelock is not None
    data = locked.admin.set_vault.encode_input(stranger.address)
    with ape.reverts("access_control: account is missing role"):
        locked.timelock.schedule(
            locked.clearinghouse, 0, data, ZERO32, ZERO32, DELAY, sender=stranger
        )


def test_role_grant__lands_only_after_the_delay(
    locked: Protocol, admin: Any, stranger: Any, chain: Any
) -> None:
    ch = locked.clearinghouse
    role = ch.LIQUIDATOR_ROLE()
    data = locked.admin.grantRole.encode_input(role, stranger.address)
    op = _schedule(locked, ch, data, admin)
    assert locked.timelock is not None and locked.timelock.is_operation_pending(op)
    with ape.reverts("timelock_controller: operation is not ready"):
        _execute(locked, ch, data, stranger)
    chain.pending_timestamp += DELAY - 10
    with ape.reverts("timelock_controller: operation is not ready"):
        _execute(locked, ch, data, stranger)
    chain.pending_timestamp += 10
    # execution is open to anyone once ready
    _execute(locked, ch, data, stranger)
    assert ch.hasRole(role, stranger)
    assert locked.timelock.is_operation_done(op)


def test_set_vault__through_the_timelock(
    locked: Protocol, admin: Any, stranger: Any, chain: Any
) -> None:
    ch = locked.clearinghouse
    data = locked.admin.set_vault.encode_input(stranger.address)
    _schedule(locked, ch, data, admin)
    chain.pending_timestamp += DELAY
    tx = _execute(locked, ch, data, admin)
    assert ch.vault() == stranger.address
    [event] = tx.decode_logs(locked.admin.VaultSet)
    assert event.new_vault == stranger.address


def test_cancelled_operation__never_executes(
    locked: Protocol, admin: Any, stranger: Any, chain: Any
) -> None:
    ch = locked.clearinghouse
    assert locked.timelock is not None
    data = locked.admin.set_vault.encode_input(stranger.address)
    op = _schedule(locked, ch, data, admin, salt=b"\x01" * 32)
    locked.timelock.cancel(op, sender=admin)
    chain.pending_timestamp += DELAY
    with ape.reverts("timelock_controller: operation is not ready"):
        _execute(locked, ch, data, admin, salt=b"\x01" * 32)
    assert ch.vault() == locked.vault.address  # type: ignore[union-attr]


def test_guardian_pause__stays_instant(locked: Protocol, admin: Any) -> None:
    locked.admin.pause(sender=admin)
    assert locked.clearinghouse.paused()


def _book(p: Protocol) -> bytes:
    current = governance.read_book(p.clearinghouse)
    assert current is not None
    return riskbook.encode(current)


def test_risk_book__unproposed_is_refused(locked: Protocol, admin: Any) -> None:
    with ape.reverts("clearinghouse: risk book not proposed"):
        locked.admin.set_risk_book(_book(locked), sender=admin)


def test_risk_book__publishes_once_after_the_delay(
    locked: Protocol, admin: Any, stranger: Any, chain: Any
) -> None:
    ch, data = locked.clearinghouse, _book(locked)
    with ape.reverts("access_control: account is missing role"):
        locked.admin.propose_risk_book(data, sender=stranger)
    tx = locked.admin.propose_risk_book(data, sender=admin)
    [event] = tx.decode_logs(locked.admin.RiskBookProposed)
    proposed_at = chain.blocks.head.timestamp
    assert event.eta == proposed_at + DELAY
    assert bytes(event.data) == data
    with ape.reverts("clearinghouse: risk book timelock not over"):
        locked.admin.set_risk_book(data, sender=admin)
    chain.pending_timestamp = proposed_at + DELAY
    version = ch.risk_book_version()
    locked.admin.set_risk_book(data, sender=admin)
    assert ch.risk_book_version() == version + 1
    # a proposal is used once: publishing it again needs a new proposal and delay
    with ape.reverts("clearinghouse: risk book not proposed"):
        locked.admin.set_risk_book(data, sender=admin)


def test_risk_push__proposes_then_publishes(locked: Protocol, admin: Any, chain: Any) -> None:
    """`perpdex risk push` on a timelocked deployment: the first run proposes and says
    when; a run after the delay publishes."""
    current = governance.read_book(locked.clearinghouse)
    assert current is not None
    # move the first scenario's shocks 1 bp further out: one bounded step
    first = tuple(s + (1 if s >= 0 else -1) for s in current.shocks[0])
    target = dataclasses.replace(current, shocks=(first, *current.shocks[1:]))
    with pytest.raises(governance.BookTimelocked) as waited:
        governance.push(locked, target, admin)
    assert waited.value.eta is not None
    chain.pending_timestamp = waited.value.eta
    receipts = governance.push(locked, target, admin)
    assert len(receipts) == 1
    assert governance.read_book(locked.clearinghouse) == target


def test_auction_ownership__accepted_by_a_rerun_after_the_delay(
    locked: Protocol, admin: Any, timelock_manifest: Path, chain: Any
) -> None:
    assert locked.auction is not None and locked.timelock is not None
    assert locked.auction.owner() == admin.address
    again = deploy_system(admin, manifest=timelock_manifest, timelock_delay=DELAY)
    assert again.auction.owner() == admin.address  # type: ignore[union-attr]
    chain.pending_timestamp += DELAY
    chain.mine()
    again = deploy_system(admin, manifest=timelock_manifest, timelock_delay=DELAY)
    assert again.auction.owner() == locked.timelock.address  # type: ignore[union-attr]


# --- the delay's own setter and the proposal's checks (on the plain test deployment,
# where the deployer still holds the admin role) ---------------------------------------


def test_set_risk_book_delay__logs_old_and_new(protocol: Protocol, admin: Any) -> None:
    tx = protocol.admin.set_risk_book_delay(3_600, sender=admin)
    [event] = tx.decode_logs(protocol.admin.RiskBookDelayUpdated)
    assert (event.old_delay, event.new_delay) == (0, 3_600)
    assert protocol.clearinghouse.risk_book_delay() == 3_600


def test_set_risk_book_delay__too_long__reverts(protocol: Protocol, admin: Any) -> None:
    with ape.reverts("clearinghouse: delay too long"):
        protocol.admin.set_risk_book_delay(30 * 86_400 + 1, sender=admin)


def test_set_risk_book_delay__not_admin__reverts(protocol: Protocol, stranger: Any) -> None:
    with ape.reverts("access_control: account is missing role"):
        protocol.admin.set_risk_book_delay(1, sender=stranger)


def test_propose_risk_book__bad_length__reverts(protocol: Protocol, admin: Any) -> None:
    with ape.reverts("clearinghouse: bad book length"):
        protocol.admin.propose_risk_book(b"\x01" * 64, sender=admin)


def test_no_delay__publishes_at_once(protocol: Protocol, admin: Any) -> None:
    """A deployment without a hand-over (local development) keeps one-step publishing."""
    data = _book(protocol)
    version = protocol.clearinghouse.risk_book_version()
    protocol.admin.set_risk_book(data, sender=admin)
    assert protocol.clearinghouse.risk_book_version() == version + 1
