"""The six Clearinghouse code halves share one storage; every deployable fits EIP-170.

The halves run at one address (Clearinghouse delegates to ClearinghouseOps, then on to
ClearinghouseAdmin, ClearinghouseOrders, ClearinghouseRisk and ClearinghouseTreasury), so
a slot that means one thing in one half and another thing in the next would corrupt state. Each half
initialises access_control, pausable and state first, then only modules without storage; this
test holds the compiler to it. The
size limit is checked on ape's compiled runtime code and on the code actually deployed
(runtime plus immutables).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perpdex.devtools import vyper_frontend
from perpdex.sdk.manifest import CODE_HALVES

ROOT = Path(__file__).resolve().parents[2]
VYPER = Path(sys.executable).with_name("vyper")
HALVES = CODE_HALVES
MAX_CODE_SIZE = 24_576  # EIP-170


def _layout(name: str) -> dict[str, Any]:
    """The compiler's layout of a half (vyper's front end, in-process: about 1 s each)."""
    return vyper_frontend.layout(f"contracts/{name}.vy")


def test_storage_layout__compiler_is_the_venvs():
    version = subprocess.run([str(VYPER), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("0.4.3")


@pytest.mark.parametrize("name", HALVES[1:])
def test_storage_layout__identical_across_halves(name):
    core = _layout("Clearinghouse")["storage_layout"]
    assert core, "empty storage layout"
    assert _layout(name)["storage_layout"] == core


@pytest.mark.parametrize("name", HALVES[1:])
def test_storage_layout__transient_identical_across_halves(name):
    # the @nonreentrant lock must be the same slot in every half
    core = _layout("Clearinghouse").get("transient_storage_layout")
    assert _layout(name).get("transient_storage_layout") == core


def test_storage_layout__state_module_holds_the_accounts():
    layout = _layout("Clearinghouse")["storage_layout"]
    assert {"access_control", "pausable", "state"} <= set(layout)
    slots = [v["slot"] for module in layout.values() for v in module.values()]
    assert len(slots) == len(set(slots)), "two variables share a slot"


def _deployables(project: Any) -> list[Any]:
    """CamelCase contracts at the top of contracts/ (mocks/ and modules/ excluded)."""
    return [
        ct for ct in project.contracts.values() if Path(ct.source_id).parent == Path("contracts")
    ]


def test_code_size__deployables_found(project):
    names = {ct.name for ct in _deployables(project)}
    assert set(HALVES) | {"OracleRouter"} <= names


def test_code_size__compiled_runtime_under_limit(project):
    sizes = {ct.name: len(ct.runtime_bytecode.to_bytes()) for ct in _deployables(project)}
    over = {n: s for n, s in sizes.items() if s >= MAX_CODE_SIZE}
    assert not over, f"runtime code at or above {MAX_CODE_SIZE} bytes: {over}"


def test_code_size__deployed_code_under_limit(protocol, project, chain, Contract):
    ch = protocol.clearinghouse
    # views of the halves return nothing through the proxy: ask the Ops half itself
    ops_half = Contract(ch.OPS(), contract_type=project.ClearinghouseOps.contract_type)
    risk = Contract(
        Contract(ops_half.ADMIN(), contract_type=project.ClearinghouseAdmin.contract_type).ORDERS(),
        contract_type=project.ClearinghouseOrders.contract_type,
    ).RISK()
    addresses = {
        "Clearinghouse": ch.address,
        "ClearinghouseOps": ops_half.address,
        "ClearinghouseAdmin": ops_half.ADMIN(),
        "ClearinghouseOrders": Contract(
            ops_half.ADMIN(), contract_type=project.ClearinghouseAdmin.contract_type
        ).ORDERS(),
        "ClearinghouseRisk": risk,
        "ClearinghouseTreasury": Contract(
            risk, contract_type=project.ClearinghouseRisk.contract_type
        ).TREASURY(),
        "OracleRouter": protocol.oracle.address,
    }
    for name in ("vault", "lens"):
        if (c := getattr(protocol, name, None)) is not None:
            addresses[name] = c.address
    sizes = {n: len(chain.provider.get_code(a)) for n, a in addresses.items()}
    assert all(s > 0 for s in sizes.values()), sizes
    over = {n: s for n, s in sizes.items() if s >= MAX_CODE_SIZE}
    assert not over, f"deployed code at or above {MAX_CODE_SIZE} bytes: {over}"
