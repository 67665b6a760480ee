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


# issue 10 item 1: modules/treasury.vy owns every write to the pool word and the treasury
# word (`state._pool`, `state._treasury`); everyone else calls its functions. An assignment
# or augmented assignment to either, through `state.` or (inside state.vy) `self.`, in any
# other contract file fails. Declarations (`_pool: uint256`) and reads are not writes;
# `_pool_sums` is another word (position aggregates, moved by settlement).
CASH_WORD_OWNER = "modules/treasury.vy"
_CASH_WORD_WRITE = re.compile(
    r"\b(?:state|self)\.(?:_pool|_treasury)\b\s*(?:\*\*|//|<<|>>|[-+*/%|&^])?=(?!=)"
)


def _cash_word_writes(root: Path = CONTRACTS) -> list[str]:
    """`file:line: code` of every write to the pool or treasury word under `root`."""
    hits = []
    for path in sorted(root.rglob("*.vy")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if _CASH_WORD_WRITE.search(line.split("#", 1)[0]):
                hits.append(f"{path.relative_to(root).as_posix()}:{n}: {line.strip()}")
    return hits


def test_only_the_treasury_module_writes_the_pool_and_treasury_words() -> None:
    writes = _cash_word_writes()
    outside = [w for w in writes if not w.startswith(f"{CASH_WORD_OWNER}:")]
    assert outside == [], (
        "the pool and treasury words are written only in modules/treasury.vy (issue 10 "
        "item 1); call one of its functions (_book_fill, _move_pool_cash, _credit_treasury, "
        "_cover_bad_debt, _sweep_fees) or add one "
        "there:\n" + "\n".join(outside)
    )
    # the scan sees the owner's own writes, so an empty `outside` is not a blind scan
    owned = {w.split(":", 1)[0] for w in writes}
    assert owned == {CASH_WORD_OWNER}
    assert any("state._pool =" in w for w in writes)
    assert any("state._treasury =" in w for w in writes)


def test_the_cash_word_check_sees_every_form_of_write(tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "x.vy").write_text(
        "_pool: uint256\n"  # 1 declaration
        "_treasury: uint256\n"  # 2 declaration
        "    state._pool = packing._pool_add(state._pool, 1, 0)\n"  # 3 write
        "    state._treasury += penalty\n"  # 4 write
        "    self._pool -= 1\n"  # 5 write
        "    state._treasury<<=2\n"  # 6 write
        "    x: uint256 = state._pool\n"  # 7 read
        "    assert state._treasury == 0\n"  # 8 comparison
        "    state._pool_sums[m] = 0\n"  # 9 another word
        "    # state._pool = 0 (a comment)\n"  # 10 comment
        "    state._treasury = tw - cover  # trailing\n"  # 11 write
    )
    found = [w.split(":")[1] for w in _cash_word_writes(tmp_path)]
    assert found == ["3", "4", "5", "6", "11"]
