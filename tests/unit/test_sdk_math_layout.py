"""perpdex/sdk/math/ is laid out like the contracts, imports without cycles, and is the only
copy of the rules it mirrors (no chain).

* every module of the package is named after a contract file (contracts/X.vy or
  contracts/modules/X.vy, CamelCase as snake_case) or is an off-chain helper listed in
  OFF_CHAIN with the reason, and its docstring names the file it mirrors;
* every module imports alone in a fresh interpreter, and perpdex.sdk's import graph
  (function-level imports included) has no cycle;
* the liquidation keeper plans with the mirror's auction rules and holds no copy of them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import perpdex.sdk.math as pm
from perpdex.keepers import liquidator
from perpdex.keepers.liquidator import AccountRead, LiquidatorConfig, plan

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "perpdex" / "sdk" / "math"
SDK = ROOT / "perpdex" / "sdk"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

# modules with no contract file of their own, and why
OFF_CHAIN = {
    "vyper": "Vyper's built-in semantics (signed // and %, convert, two's complement)",
}


def _contract_file(module: str) -> Path | None:
    camel = "".join(part.capitalize() for part in module.split("_"))
    for path in (
        ROOT / "contracts" / f"{camel}.vy",
        ROOT / "contracts" / "modules" / f"{module}.vy",
    ):
        if path.exists():
            return path
    return None


def test_package_has_the_modules_it_is_meant_to():
    # a guard against an empty glob making every parametrized test below vacuous
    assert {
        "gates",
        "marks",
        "margin",
        "packing",
        "clearinghouse_lens",
        "liquidation_auction",
    } <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_is_named_after_a_contract_file_or_is_a_listed_helper(module):
    found = _contract_file(module)
    assert found is not None or module in OFF_CHAIN, (
        f"perpdex/sdk/math/{module}.py matches no contracts/*.vy or contracts/modules/*.vy; "
        "name it after the contract file it mirrors, or list it in OFF_CHAIN with a reason"
    )
    assert not (found is not None and module in OFF_CHAIN), f"{module} has a contract file"


@pytest.mark.parametrize("module", MODULES)
def test_module_header_names_the_file_it_mirrors(module):
    doc = ast.get_docstring(ast.parse((PACKAGE / f"{module}.py").read_text())) or ""
    head = doc.split("\n\n")[0]
    assert 2 <= len(head.splitlines()) <= 4, f"{module}: header of 2-4 lines, not {head!r}"
    found = _contract_file(module)
    if found is not None:
        assert str(found.relative_to(ROOT)) in head.replace("\n", " "), (
            f"{module}'s header should name {found.relative_to(ROOT)}"
        )


@pytest.mark.parametrize(
    "module",
    [f"perpdex.sdk.math.{m}" for m in MODULES]
    + ["perpdex.sdk.math", "perpdex.sdk.snapshot", "perpdex.sdk.riskbook"],
)
def test_module_imports_alone_in_a_fresh_interpreter(module):
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def _imports(path: Path, package: str) -> set[str]:
    """Modules of perpdex.sdk that `path` imports anywhere (function bodies included),
    except under `if TYPE_CHECKING:` and in a module-level `__getattr__` (PEP 562 lazy
    names): neither runs when the module is imported."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for top in tree.body:
        lazy = isinstance(top, ast.FunctionDef) and top.name == "__getattr__"
        typing_only = (
            isinstance(top, ast.If)
            and isinstance(top.test, ast.Name)
            and top.test.id == "TYPE_CHECKING"
        )
        if lazy or typing_only:
            skipped.update(id(n) for n in ast.walk(top))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}"
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("perpdex.sdk")}


def _sdk_graph() -> dict[str, set[str]]:
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in SDK.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for m in _imports(path, package):
            # importing a.b.c runs a.b's __init__ first (except the importer's own packages,
            # already being imported)
            parts = m.split(".")
            for i in range(2, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_sdk_import_graph_has_no_cycle():
    graph = _sdk_graph()
    assert "perpdex.sdk.math.gates" in graph["perpdex.sdk.math"]  # the graph sees imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# --- the keeper plans with the mirror ------------------------------------------------------

W = 10**18


class _Params:
    cooldown = 60
    duration = 600
    cusp = W // 10
    max_discount = W // 10
    penalty = W // 100


def _running(kick: int) -> AccountRead:
    # in an auction, unhealthy, lot of half the book: lot value 500k USD
    return AccountRead(
        account=7,
        equity=90 * W,
        maintenance=100 * W,
        notional=1_000_000 * W,
        twap_equity=90 * W,
        twap_maintenance=100 * W,
        active=True,
        started=1_000,
        lot=W // 2,
        kick=kick,
        discount=W // 20,
        deadline=1_600,
    )


def _plan(read: AccountRead) -> list[str]:
    cfg = LiquidatorConfig(keeper_account=1)
    return [a.kind for a in plan([read], _Params(), 1_100, cfg, Decimal(1))]


def test_keeper_redo_is_the_mirrors_cusp_test(monkeypatch):
    unmoved = _running(kick=500_000 * W)
    moved = _running(kick=400_000 * W)  # 20% from the 500k lot value: past the 10% cusp
    assert pm.liq_moved(unmoved.kick, unmoved.lot_notional, _Params.cusp) is False
    assert pm.liq_moved(moved.kick, moved.lot_notional, _Params.cusp) is True
    assert "redo" not in _plan(unmoved) and "redo" in _plan(moved)
    # the keeper asks the mirror: flip the mirror's answer and the plan follows it
    monkeypatch.setattr(pm, "liq_moved", lambda old, new, cusp: old == 500_000 * W)
    assert "redo" in _plan(unmoved) and "redo" not in _plan(moved)


def test_keeper_health_and_lot_value_are_the_mirrors(monkeypatch):
    r = _running(kick=500_000 * W)
    assert r.lot_notional == pm.liq_lot_value(r.lot, r.notional) == 500_000 * W
    assert r.healthy is False
    monkeypatch.setattr(pm, "liq_healthy", lambda equity, maintenance: True)
    assert r.healthy is True and _plan(r) == ["finish"]


# the auction's rules, by their contract names and their mirror names
RULES = {"_moved", "_critical", "_tranche", "_scale", "_need", "_discount", "_reward"} | {
    n for n in pm.__all__ if n.startswith("liq_")
}


def test_keeper_defines_none_of_the_auction_rules():
    tree = ast.parse(Path(liquidator.__file__).read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert not defined & RULES, f"liquidator.py re-implements {defined & RULES}; call pm.liq_*"
    # nor the cusp arithmetic inline
    assert not re.search(r"cusp\s*\*", Path(liquidator.__file__).read_text())
