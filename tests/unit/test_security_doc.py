"""docs/security.md names every state-changing external function of every deployable,
so a new entry point cannot ship without its caller and checks written down."""

from __future__ import annotations

import re
from typing import Any

import pytest

from perpdex.config import ROOT
from perpdex.sdk.manifest import CODE_HALVES

DEPLOYABLES = (
    *CODE_HALVES,
    "OracleRouter",
    "LiquidityVault",
    "LiquidationAuction",
    "Timelock",
)


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_security_doc__names_every_state_changing_function(project: Any, name: str) -> None:
    doc = (ROOT / "docs" / "security.md").read_text()
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", doc))
    abi = getattr(project, name).contract_type.abi
    mutating = {
        f.name for f in abi if f.type == "function" and f.stateMutability not in ("view", "pure")
    }
    missing = sorted(mutating - named)
    assert not missing, f"docs/security.md does not name {name}'s {missing}"
