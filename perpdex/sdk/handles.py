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
    return getattr(proj, name).contract_type


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
