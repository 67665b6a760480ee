"""The ABIs shipped in perpdex/abi/ (the standalone client's) against the compiled build:
run after `make compile`, which regenerates them (`python -m perpdex.sdk.lite.abi --write`)."""

from __future__ import annotations

import json
from pathlib import Path

from perpdex.sdk.lite import abi


def test_shipped_abis__equal_the_compiled_ones():
    assert abi.stale() == [], "run `python -m perpdex.sdk.lite.abi --write` and commit"


def test_stale__detects_a_changed_build(tmp_path: Path):
    build = json.loads(abi.BUILD.read_text())
    build["contractTypes"]["ClearinghouseLens"]["abi"].append(
        {
            "type": "function",
            "name": "added",
            "inputs": [],
            "outputs": [],
            "stateMutability": "view",
        }
    )
    changed = tmp_path / "__local__.json"
    changed.write_text(json.dumps(build))
    assert abi.stale(changed) == ["ClearinghouseLens"]


def test_clearinghouse_abi__merges_the_ops_and_admin_halves():
    names = {e.get("name") for e in abi.load("Clearinghouse")}
    build = json.loads(abi.BUILD.read_text())["contractTypes"]
    for half in ("ClearinghouseOps", "ClearinghouseAdmin", "ClearinghouseOrders"):
        half_names = {e.get("name") for e in build[half]["abi"] if e["type"] == "function"}
        assert half_names <= names, f"{half} functions missing from Clearinghouse.json"
    constructors = [e for e in abi.load("Clearinghouse") if e["type"] == "constructor"]
    assert len(constructors) == 1  # the main contract's only
