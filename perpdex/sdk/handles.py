"""Contract handles for the SDK: the project's compiled types at given addresses, built
without ape's contract cache (one second of every CLI start-up), and address checks.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.config import ROOT
from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    pass


@cache
def _contract_type(name: str) -> Any:
    from ape import Project, project

    proj = project if Path(project.path).resolve() == ROOT else Project(ROOT)
    return contract_type(proj, name)


# signed-order functions compiled into ClearinghouseAdmin (for the other halves' bytecode
# room); the Orders and Risk handles carry them too
ORDERS_ON_ADMIN = frozenset({"cancel_below"})
# the last half (contracts/ClearinghouseTreasury.vy) took, for bytecode room, the
# treasury's calls off Admin and the vault-limit and delayed-order parameters off Risk:
# those handles carry its functions and events, so `admin.fund_insurance(...)` and
# `risk.set_delayed_params(...)` keep working on the Clearinghouse address
ON_TREASURY = ("ClearinghouseAdmin", "ClearinghouseRisk")
# account settings compiled into ClearinghouseAdmin (for Ops' bytecode room: the margin
# mode when the delayed-order freeze, review 4 R4-2, landed; the operator switch when
# position_markets did; the loss cap setting and the keepers' `refresh` when the
# treasury module took every pool and treasury write, issue 10 item 1): the Ops handle
# carries these functions and events, so `ops.set_margin_mode(...)`,
# `ops.set_operator(...)`, `ops.set_loss_cap(...)` and `ops.refresh(...)` keep working
# on the Clearinghouse address
OPS_ON_ADMIN = frozenset(
    {
        "set_margin_mode",
        "MarginModeChanged",
        "set_operator",
        "OperatorSet",
        "set_loss_cap",
        "LossCapSet",
        "refresh",
    }
)


def contract_type(proj: Any, name: str) -> Any:
    """`proj`'s compiled type of `name`; for the Clearinghouse, with the view functions of
    its Ops half added: cold getters live there for the hot half's bytecode room, and the
    Clearinghouse's `__default__` returns their data (contracts/ClearinghouseOps.vy), so
    `clearinghouse.loss_cap_fee()` keeps working on the one address. For
    ClearinghouseOrders, with the functions and events of ClearinghouseRisk added: the
    orders' cancels (`cancel_order`, `cancel_below`) live there for the Orders half's
    bytecode room, and Orders forwards every selector it lacks to Risk, so
    `orders.cancel_order(...)` keeps working on the Clearinghouse address; `cancel_below`
    is compiled into Admin and added to the Orders and Risk types. Admin and Risk carry
    the Treasury half's functions and events (ON_TREASURY); Ops carries the Admin
    half's OPS_ON_ADMIN."""
    ct = getattr(proj, name).contract_type
    if name not in ("Clearinghouse", "ClearinghouseOps", "ClearinghouseOrders", *ON_TREASURY):
        return ct
    from ethpm_types import ContractType

    have = {a.selector for a in ct.abi if a.type in ("function", "event")}
    extra: list[Any] = []
    if name == "Clearinghouse":
        extra = [
            a
            for a in proj.ClearinghouseOps.contract_type.abi
            if a.type == "function"
            and a.stateMutability in ("view", "pure")
            and a.selector not in have
        ]
    elif name == "ClearinghouseOps":
        extra = [
            a
            for a in proj.ClearinghouseAdmin.contract_type.abi
            if a.type in ("function", "event") and a.selector not in have and a.name in OPS_ON_ADMIN
        ]
    elif name in ("ClearinghouseOrders", "ClearinghouseRisk"):
        # the signed orders' functions off Orders: cancel_order on Risk, cancel_below on
        # Admin (bytecode room); both answer at the Clearinghouse's address
        extra = [
            a
            for half in ("ClearinghouseRisk", "ClearinghouseAdmin")
            for a in getattr(proj, half).contract_type.abi
            if a.type in ("function", "event")
            and a.selector not in have
            and (half == "ClearinghouseRisk" or a.name in ORDERS_ON_ADMIN)
        ]
        if name == "ClearinghouseRisk":
            extra = [a for a in extra if a.type == "function" and a.name in ORDERS_ON_ADMIN]
    if name in ON_TREASURY:
        extra += [
            a
            for a in proj.ClearinghouseTreasury.contract_type.abi
            if a.type in ("function", "event")
            and a.selector not in have
            and getattr(a, "name", "") != "extension_config"
        ]
    extra = list({a.selector: a for a in extra}.values())
    data = ct.model_dump(by_alias=True, mode="json")
    data["abi"] = [a.model_dump(by_alias=True, mode="json") for a in [*ct.abi, *extra]]
    return ContractType.model_validate(data)


def _at(name: str, address: str) -> Any:
    """A handle on the contract at `address` with the project's compiled type.

    Built directly, not with `ape.Contract(...)`: that first looks the address up in ape's
    contract cache and merges ABIs (the Clearinghouse and its Ops share an address), about
    one second of every CLI command's start-up (perpdex/devtools/bench_startup.py)."""
    from ape.contracts import ContractInstance
    from eth_utils import to_checksum_address

    return ContractInstance(to_checksum_address(address), _contract_type(name))


def _address(who: Any) -> str:
    from eth_utils import is_address, to_checksum_address

    text = str(getattr(who, "address", who))
    if not is_address(text):
        raise PerpdexError(f"{text!r} is not an address; give a 0x-prefixed 20-byte address")
    return str(to_checksum_address(text))
