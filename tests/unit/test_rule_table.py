"""docs/architecture.md "Where each rule lives" stays true (no chain).

* every function a row names is defined in that row's file and in no other contract file
  (`def name(` in contracts/**/*.vy), so a rule cannot drift into a second copy;
* every module under contracts/modules/ has a row;
* the pure-math modules declare no `uses:` (they read and write no storage).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
CONTRACTS = ROOT / "contracts"
PURE = ("constants", "fixed_point", "pricing", "funding", "positions", "margin", "packing")


def _rows(text: str) -> list[tuple[str, str, list[str]]]:
    """(rule, file, functions) of the table under "### Where each rule lives"."""
    section = text.split("### Where each rule lives", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("rule", "---") or set(cells[0]) <= {"-"}:
            continue
        file = cells[1].strip("`")
        rows.append((cells[0], file, re.findall(r"`(\w+)`", cells[2])))
    return rows


def _definitions(name: str, root: Path = CONTRACTS) -> list[Path]:
    pattern = re.compile(rf"^def {re.escape(name)}\(", re.M)
    return sorted(p for p in root.rglob("*.vy") if pattern.search(p.read_text()))


ROWS = _rows(DOC.read_text())
CASES = [(file, fn) for _rule, file, fns in ROWS for fn in fns]


def test_the_table_was_found_and_names_functions() -> None:
    # guards against a renamed heading making every case below vacuous
    assert len(ROWS) >= 20 and len(CASES) >= 60


@pytest.mark.parametrize(("file", "function"), CASES, ids=[f"{f}:{n}" for f, n in CASES])
def test_each_listed_function_lives_only_in_its_file(file: str, function: str) -> None:
    where = [str(p.relative_to(CONTRACTS)) for p in _definitions(function)]
    assert where == [file], (
        f"`{function}` is listed under {file} in docs/architecture.md but defined in "
        f"{where or 'no file'}; move it back, or update the table if the rule moved"
    )


def test_every_module_has_a_row() -> None:
    listed = {file for _rule, file, _fns in ROWS}
    modules = {f"modules/{p.name}" for p in (CONTRACTS / "modules").glob("*.vy")}
    assert modules <= listed, f"modules without a row: {sorted(modules - listed)}"
    assert all((CONTRACTS / f).exists() for f in listed), "a row names a missing file"


@pytest.mark.parametrize("module", PURE)
def test_pure_math_modules_use_no_state(module: str) -> None:
    source = (CONTRACTS / "modules" / f"{module}.vy").read_text()
    assert not re.search(r"^(uses|initializes):", source, re.M), (
        f"modules/{module}.vy is listed as pure math but declares uses/initializes"
    )


def test_the_checker_sees_a_second_definition(tmp_path: Path) -> None:
    # the same search over a tree where a rule was copied finds both files, and not a
    # function whose name only starts the same
    (tmp_path / "modules").mkdir()
    (tmp_path / "a.vy").write_text("@internal\ndef _scan(x: uint256):\n    pass\n")
    (tmp_path / "modules" / "b.vy").write_text("@internal\ndef _scan(x: uint256):\n    pass\n")
    (tmp_path / "c.vy").write_text("@internal\ndef _scan_more(x: uint256):\n    pass\n")
    found = _definitions("_scan", tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.vy", "modules/b.vy"]
