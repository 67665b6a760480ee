"""Local fixtures for the Clearinghouse unit tests.

The session `protocol` (tests/conftest.py) deploys the system with an empty pool. Modules
that trade mark themselves `pytestmark = pytest.mark.usefixtures("vault_cash")`, so the pool
holds cash for every test of the module whatever the order. Module fixtures request every
session actor first so that ape's snapshot isolation sees the session fixtures before the
module ones. Events of the Ops and Admin halves are decoded with their ABIs, always from
the Clearinghouse address.

Fixture names: every stateful fixture here has a name no other fixture in the session
uses with another scope. ape 0.8 places a test's fixtures around its isolation snapshots
by *every* scope any fixture of that name has anywhere in the session, so a function
fixture that shares its name with a module fixture elsewhere runs before the function
snapshot and its transactions leak into the following tests (seen with `acct`).

Speed: for every reverted transaction ape-foundry prints the call trace (about 0.4 s, most
of it deriving dev-account keys to label addresses) and ape maps the revert to a Vyper
source traceback (up to 3 s for a trade: it streams the whole struct-log trace). This suite
checks a few hundred reverts by their message only, so both are switched off here; set
PERPDEX_SHOW_REVERT_TRACES=1 to get them back when debugging a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .helpers import ETH, POOL_USD, WAD


@pytest.fixture(scope="session")
def risk_manager(accounts: Any) -> Any:
    """Granted RISK_ROLE only (by the `granted_roles` fixture)."""
    return accounts[8]


@pytest.fixture(scope="session")
def ops(protocol: Any) -> Any:
    return protocol.ops


@pytest.fixture(scope="session")
def gov(protocol: Any) -> Any:
    """The governance ABI (ClearinghouseAdmin) at the Clearinghouse address."""
    return protocol.admin


@pytest.fixture(scope="module")
def all_actors(
    actors: dict[str, Any],
    protocol: Any,
    ch: Any,
    token: Any,
    h: Any,
    risk_manager: Any,
    ops: Any,
    gov: Any,
) -> None:
    """Requests every session fixture (see the module docstring)."""


@pytest.fixture(scope="module")
def vault_cash(all_actors: None, protocol: Any, h: Any, admin: Any) -> int:
    """Admin stands in for the vault and seeds the pool with POOL_USD."""
    protocol.admin.set_vault(admin, sender=admin)
    units = h.fund(admin, POOL_USD)
    protocol.admin.vault_deposit(units, sender=admin)
    return units


@pytest.fixture(scope="module")
def granted_roles(
    all_actors: None, ch: Any, gov: Any, admin: Any, guardian: Any, risk_manager: Any
) -> None:
    """guardian: GUARDIAN_ROLE only; risk_manager: RISK_ROLE only."""
    gov.grantRole(ch.GUARDIAN_ROLE(), guardian, sender=admin)
    gov.grantRole(ch.RISK_ROLE(), risk_manager, sender=admin)


@pytest.fixture(scope="module")
def deploy_token(all_actors: None, project: Any, admin: Any) -> Callable[..., Any]:
    """`deploy_token(decimals=18, symbol="WETH")` -> a fresh MockERC20."""

    def _deploy(decimals: int = 18, symbol: str = "WETH") -> Any:
        return project.MockERC20.deploy(f"Mock {symbol}", symbol, decimals, sender=admin)

    return _deploy


WETH_HAIRCUT = WAD // 10  # 10%


@pytest.fixture(scope="module")
def listed_weth(deploy_token: Callable[..., Any], gov: Any, admin: Any) -> Any:
    """An 18-decimal token listed as the next collateral index, priced by ETH less 10%,
    no cap (look its index up with helpers.collateral_index)."""
    token = deploy_token(18, "WETH")
    gov.add_collateral(token, WETH_HAIRCUT, ETH, 2**256 - 1, sender=admin)
    return token


@pytest.fixture(scope="module")
def give(ch: Any) -> Callable[[Any, Any, int], int]:
    """`give(token, who, units)`: mint and approve the Clearinghouse; returns units."""

    def _give(token: Any, who: Any, units: int) -> int:
        token.mint(who, units, sender=who)
        token.approve(ch, 2**256 - 1, sender=who)
        return units

    return _give


@pytest.fixture(scope="module")
def deploy_trio(all_actors: None, project: Any, protocol: Any, admin: Any) -> Callable[..., Any]:
    """`deploy_trio(token, owner=admin)`: a fresh Clearinghouse (admin half, ops half, core)
    on the session oracle, deployed by `admin` with `owner` holding the roles; returns
    (core, ops ABI, admin ABI), all at the core's address."""
    from ape import Contract

    from perpdex.sdk.handles import contract_type

    def _deploy(token: Any, owner: Any = None) -> tuple[Any, Any, Any]:
        oracle = protocol.oracle
        treasury_half = project.ClearinghouseTreasury.deploy(oracle, token, sender=admin)
        risk_half = project.ClearinghouseRisk.deploy(oracle, token, treasury_half, sender=admin)
        orders_half = project.ClearinghouseOrders.deploy(oracle, token, risk_half, sender=admin)
        admin_half = project.ClearinghouseAdmin.deploy(oracle, token, orders_half, sender=admin)
        ops_half = project.ClearinghouseOps.deploy(oracle, token, admin_half, sender=admin)
        core = project.Clearinghouse.deploy(oracle, token, owner or admin, ops_half, sender=admin)
        return (
            Contract(core.address, contract_type=contract_type(project, "Clearinghouse")),
            Contract(core.address, contract_type=contract_type(project, "ClearinghouseOps")),
            Contract(core.address, contract_type=contract_type(project, "ClearinghouseAdmin")),
        )

    return _deploy
