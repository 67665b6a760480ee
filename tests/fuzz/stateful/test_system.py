"""Stateful fuzz of the whole perpdex system: the invariants of docs/invariants.md (the
table there names the method that checks each) after every transaction, at 6 and 18
settlement decimals. Profiles (quick, ci, deep) and the deployment: tests/fuzz/conftest.py.

The machine is split by purpose across this package:

    machine.py       SystemMachine: the rules (actions), their predicted outcomes, teardown
    invariants.py    one `_inv_<name>` method per invariant; `_check_world` runs them
    ledger.py        the expected state, rebuilt from events; equity and vault valuations
    world.py         what the machine reads of the deployment after every transaction, and
                     its actors
    oracle_model.py  the feeds and sequencer as the machine set them; the price and flags
                     the router must derive

This module is only the test entry: pytest collects it, and the class it builds,
`SystemMachine{decimals}`, names the derandomised `ci` profile's seed.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from perpdex.devtools import vyper_frontend

from ..conftest import FuzzSystem, fuzz_profile
from .machine import STATS, SystemMachine


def test_system_invariants(fuzz_system: FuzzSystem) -> None:
    """Random sequences over the whole system; every invariant after every transaction.
    PERPDEX_FUZZ_STATS=1 (with -s) prints how often each transaction succeeded or failed
    with each reason, and the run time."""
    machine = type(f"SystemMachine{fuzz_system.decimals}", (SystemMachine,), {"fs": fuzz_system})
    STATS.clear()
    started = time.monotonic()
    profile = settings.get_profile(fuzz_profile())
    if os.environ.get("PERPDEX_FUZZ_VERBOSE"):
        from hypothesis import Verbosity

        profile = settings(profile, verbosity=Verbosity.debug)
    if os.environ.get("PERPDEX_FUZZ_SHRINK") == "0":  # debugging: report the raw failure
        profile = settings(profile, phases=[p for p in profile.phases if p.name != "shrink"])
    try:
        run_state_machine_as_test(machine, settings=profile)
    finally:
        if os.environ.get("PERPDEX_FUZZ_STATS"):
            took = time.monotonic() - started
            print(
                f"\n{fuzz_system.decimals}-decimal system, profile {fuzz_profile()}: {took:.1f} s"
            )
            for k, v in sorted(STATS.items(), key=lambda kv: -kv[1]):
                print(f"{v:7d}  {k}")


LOCKED = ("LiquidityVault", "LiquidationAuction", "Clearinghouse", "ClearinghouseOps")


@pytest.mark.parametrize("name", LOCKED)
def test_reentrancy_locks_are_transient(name: str) -> None:
    """9. The `@nonreentrant` lock of every deployable with one sits in transient storage
    (EIP-1153), which the EVM clears at the end of each transaction: no lock can stay held
    after a transaction, whatever path it took. (A transient slot cannot be read from
    outside the transaction, so this is checked on the compiler's layout.)"""
    layout = vyper_frontend.layout(f"contracts/{name}.vy")
    transient = layout.get("transient_storage_layout", {})
    assert "$.nonreentrant_key" in transient, f"{name}: no transient reentrancy lock"
    assert not any("nonreentrant" in k for k in layout["storage_layout"]), (
        f"{name}: lock in storage"
    )
