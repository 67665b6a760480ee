"""contracts/interfaces/IClearinghouse.vyi, the Clearinghouse's one ABI, against its six
code halves.

The Clearinghouse address answers the union of what its halves export (each half's
`__default__` delegatecalls the next, contracts/Clearinghouse.vy). The interface other
contracts import must be exactly that union: every function with the same argument and
return types and mutability, every event the halves log with the same fields, nothing
more; and no selector may be exported by two halves (the first one would shadow the
other). The halves and the interface are compiled with vyper's Python API (front end
only, no code generation: a few seconds each), so no `ape compile` is needed.

When a test here fails after a contract change, edit IClearinghouse.vyi to match the
halves (`vyper -p contracts -f interface contracts/<Half>.vy` prints a half's functions).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from perpdex.devtools import vyper_frontend
from perpdex.sdk.lite import abi as lite_abi
from perpdex.sdk.manifest import CODE_HALVES

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = "contracts/interfaces/IClearinghouse.vyi"
ENGINE_INTERFACE = "contracts/interfaces/IClearinghouseEngine.vyi"
#: each extension half's deployment check (the half before it reads it); at the
#: Clearinghouse address the first half that exports it, Ops, answers
SHARED = frozenset({"extension_config()"})
#: contracts that call the Clearinghouse: they import the interface, none declares its own
CALLERS = ("ClearinghouseLens", "LiquidationAuction", "LiquidityVault")

Entry = dict[str, Any]


def _compiled_abi(path: str) -> tuple[Entry, ...]:
    """The ABI vyper's `-f abi` gives `path` (relative to the repository), without the
    code generation `-f abi` runs for gas estimates."""
    return vyper_frontend.abi(path)


def _halves() -> dict[str, tuple[Entry, ...]]:
    return {h: _compiled_abi(f"contracts/{h}.vy") for h in CODE_HALVES}


def _canonical(param: Entry) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


def signature(entry: Entry) -> str:
    """`name(types)`: a function's selector preimage, an event's topic preimage."""
    return f"{entry['name']}({','.join(_canonical(i) for i in entry['inputs'])})"


def _param(param: Entry, wildcard: bool) -> Entry:
    # a public getter's keys are `arg0`, `arg1`... in the compiled ABI; the interface
    # names them (a name is not part of the selector)
    name = param.get("name", "")
    out: Entry = {"name": None if wildcard and re.fullmatch(r"arg\d+", name) else name}
    out["type"] = param["type"]
    if "indexed" in param:
        out["indexed"] = param["indexed"]
    if "components" in param:
        out["components"] = [_param(c, False) for c in param["components"]]
    return out


def _shape(entry: Entry, wildcard: bool = False) -> Entry:
    """What must agree between the interface and a half (names, types, mutability,
    indexed fields)."""
    shape: Entry = {"inputs": [_param(i, wildcard) for i in entry["inputs"]]}
    if entry["type"] == "function":
        shape["outputs"] = [_param(o, False) for o in entry["outputs"]]
        shape["stateMutability"] = entry["stateMutability"]
    else:
        shape["anonymous"] = entry.get("anonymous", False)
    return shape


def _same(interface_entry: Entry, half_entry: Entry) -> bool:
    want = _shape(half_entry, wildcard=True)
    got = _shape(interface_entry)
    for w, g in zip(want["inputs"], got["inputs"], strict=False):
        if w["name"] is None:
            w["name"] = g["name"]
    return want == got


def union(halves: dict[str, tuple[Entry, ...]]) -> dict[tuple[str, str], list[tuple[str, Entry]]]:
    """(kind, signature) -> [(half, entry)] for every function and event of the halves."""
    out: dict[tuple[str, str], list[tuple[str, Entry]]] = {}
    for half, entries in halves.items():
        for e in entries:
            if e["type"] in ("function", "event"):
                out.setdefault((e["type"], signature(e)), []).append((half, e))
    return out


def drift(interface: tuple[Entry, ...], halves: dict[str, tuple[Entry, ...]]) -> list[str]:
    """Every way `interface` differs from the union of `halves`, one line each."""
    problems: list[str] = []
    everything = union(halves)
    declared: dict[tuple[str, str], Entry] = {}
    for e in interface:
        if e["type"] not in ("function", "event"):
            problems.append(f"the interface declares a {e['type']}")
            continue
        key = (e["type"], signature(e))
        if key in declared:
            problems.append(f"{key[0]} {key[1]} declared twice")
        declared[key] = e
    for key, found in sorted(everything.items()):
        if key not in declared:
            by = ", ".join(h for h, _ in found)
            problems.append(f"{key[0]} {key[1]} ({by}) is missing from the interface")
            continue
        for half, entry in found:
            if not _same(declared[key], entry):
                problems.append(
                    f"{key[0]} {key[1]} differs from {half}'s: interface "
                    f"{_shape(declared[key])} != {_shape(entry)}"
                )
    for key in sorted(declared.keys() - everything.keys()):
        problems.append(f"{key[0]} {key[1]} is in the interface but no half exports it")
    return problems


def shared_selectors(halves: dict[str, tuple[Entry, ...]]) -> dict[str, list[str]]:
    """Function signatures exported by more than one half -> those halves."""
    return {
        sig: [h for h, _ in found]
        for (kind, sig), found in union(halves).items()
        if kind == "function" and len(found) > 1
    }


# --- the interface is the union ------------------------------------------------------------


def test_interface__equals_the_union_of_the_halves():
    assert drift(_compiled_abi(INTERFACE), _halves()) == []


def test_halves__export_each_selector_once():
    shared = shared_selectors(_halves())
    assert set(shared) == SHARED, f"exported by several halves: {shared}"
    # the extension check is every half's but the hot one's, the same everywhere
    assert shared["extension_config()"] == list(CODE_HALVES[1:])


def test_halves__log_each_event_with_one_shape():
    for (kind, sig), found in union(_halves()).items():
        if kind == "event":
            shapes = {json.dumps(_shape(e), sort_keys=True) for _, e in found}
            assert len(shapes) == 1, f"{sig} differs between {[h for h, _ in found]}"


def test_interface__covers_every_half_and_all_its_exports():
    by_half = {h: 0 for h in CODE_HALVES}
    for found in union(_halves()).values():
        for half, _ in found:
            by_half[half] += 1
    assert all(by_half.values()), f"a half exports nothing: {by_half}"
    functions = [e for e in _compiled_abi(INTERFACE) if e["type"] == "function"]
    assert len(functions) >= 100  # 120 when written; catches a half compiled empty


# --- the check can fail ------------------------------------------------------------------


def _interface_with(change: str) -> tuple[Entry, ...]:
    entries = [json.loads(json.dumps(e)) for e in _compiled_abi(INTERFACE)]
    if change == "drop":
        entries = [e for e in entries if e.get("name") != "trade_multi"]
    elif change == "mutability":
        for e in entries:
            if e.get("name") == "account_margin":
                e["stateMutability"] = "nonpayable"
    elif change == "indexed":
        for e in entries:
            if e.get("name") == "OrdersMatched":
                e["inputs"][0]["indexed"] = not e["inputs"][0]["indexed"]
    elif change == "extra":
        added = {"type": "function", "name": "added", "inputs": [], "outputs": []}
        entries.append(added | {"stateMutability": "view"})
    elif change == "struct":
        for e in entries:
            if e.get("name") == "market_params":
                e["outputs"][0]["components"].pop()
    return tuple(entries)


def test_drift__reports_each_kind_of_difference():
    halves = _halves()
    expected = {
        "drop": "trade_multi(uint256,(uint256,int256,uint256)[]) (ClearinghouseRisk) is missing",
        "mutability": "differs from Clearinghouse's",
        "indexed": "event OrdersMatched(",
        "extra": "added() is in the interface but no half exports it",
        "struct": "market_params(uint256) differs from Clearinghouse's",
    }
    for change, text in expected.items():
        problems = drift(_interface_with(change), halves)
        assert len(problems) == 1 and text in problems[0], (change, problems)


def test_shared_selectors__finds_a_selector_in_two_halves():
    halves = dict(_halves())
    trade = next(e for e in halves["Clearinghouse"] if e.get("name") == "trade")
    halves["ClearinghouseTreasury"] = (*halves["ClearinghouseTreasury"], trade)
    shared = shared_selectors(halves)
    assert shared["trade(uint256,uint256,int256,uint256)"] == [
        "Clearinghouse",
        "ClearinghouseTreasury",
    ]


# --- what uses it ------------------------------------------------------------------------


def _flat(outputs: list[Entry]) -> list[str]:
    # a static struct returned encodes as its fields returned as a tuple
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        outputs = outputs[0]["components"]
    return [_canonical(o) for o in outputs]


def test_engine_interface__agrees_with_the_one_abi():
    # the halves' self-calls (contracts/interfaces/IClearinghouseEngine.vyi) name a subset
    # of the same functions; `account_margin` there returns the struct's fields as a tuple
    one = {signature(e): e for e in _compiled_abi(INTERFACE) if e["type"] == "function"}
    engine = [e for e in _compiled_abi(ENGINE_INTERFACE) if e["type"] == "function"]
    assert engine
    for e in engine:
        sig = signature(e)
        assert sig in one, f"{sig} of IClearinghouseEngine is not in IClearinghouse"
        assert e["stateMutability"] == one[sig]["stateMutability"], sig
        assert _flat(e["outputs"]) == _flat(one[sig]["outputs"]), sig


def test_shipped_clearinghouse_abi__is_the_interface():
    # perpdex/abi/Clearinghouse.json (the standalone client's) merges the compiled halves;
    # its functions and events are the interface's
    shipped = {
        (e["type"], signature(e)): _shape(e)
        for e in lite_abi.load("Clearinghouse")
        if e["type"] in ("function", "event")
    }
    one = {(e["type"], signature(e)): e for e in _compiled_abi(INTERFACE)}
    assert shipped.keys() == one.keys(), (
        "perpdex/abi/Clearinghouse.json differs from IClearinghouse.vyi: run `ape compile "
        "--force` and `python -m perpdex.sdk.lite.abi --write`"
    )


def test_callers__import_the_interface():
    for name in CALLERS:
        src = (ROOT / "contracts" / f"{name}.vy").read_text()
        assert "from .interfaces import IClearinghouse\n" in src, name
        assert "interface IClearinghouse:" not in src, f"{name} declares its own IClearinghouse"


# --- one revert prefix ---------------------------------------------------------------------


def test_revert_strings__one_prefix_at_the_clearinghouse_address():
    # every reason string the halves can revert with (theirs and their modules') starts
    # with "clearinghouse: "; snekmate's access_control and pausable keep their own
    sources = [ROOT / "contracts" / f"{h}.vy" for h in CODE_HALVES]
    sources += sorted((ROOT / "contracts" / "modules").glob("*.vy"))
    reasons = [
        (path.name, m.group(0))
        for path in sources
        for m in re.finditer(r'"[a-z_0-9]+: [^"\n]*"', path.read_text())
    ]
    assert len(reasons) > 200  # 240 when written
    other = [(name, r) for name, r in reasons if not r.startswith('"clearinghouse: ')]
    assert other == []
