"""Fixture-scope lint: within one ape test session a fixture name has one scope.

Why: ape 0.8 takes an isolation snapshot of the chain per fixture scope and orders
fixtures by name across the whole session. When one name is defined at two scopes in
two modules of the same session (say `book` at module scope in one file and at function
scope in another), the snapshots are taken and restored in the wrong order and chain
state leaks from one module into the next: tests fail only when their directories run
together (found in issue 9, cause pinned down in issue 10).

The sessions are read from the Makefile (`$(APE_TEST) tests/... tests/...`: the
directories collected together); tests/conftest.py counts in every session, and so do
ape's own fixtures (`accounts`, `chain`, ... at session scope). Pure AST: no chain, no
imports of the test modules. A clash is fixed by renaming one side (e.g. `designed` ->
`designed_book`), never by changing the session layout.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCOPE = "function"
# `$(APE_TEST) tests/unit ...`: the directories of one session
_SESSION = re.compile(r"\$\(APE_TEST\)((?:\s+tests/[\w/.-]+)+)")

Definitions = dict[str, dict[str, list[str]]]  # name -> scope -> ["file:line", ...]


def sessions(makefile: Path) -> list[tuple[str, ...]]:
    """The sets of test directories `$(APE_TEST)` lines collect together."""
    text = makefile.read_text().replace("\\\n", " ")
    found = {tuple(m.group(1).split()) for m in _SESSION.finditer(text)}
    # a session collecting part of another's tests (the quick loop's shards of tests/unit)
    # has no clash the bigger one lacks
    return sorted(s for s in found if not any(s != o and _within(s, o) for o in found))


def _within(part: tuple[str, ...], whole: tuple[str, ...]) -> bool:
    """Every path of `part` is one of `whole`'s paths or lies under one of them."""
    return all(any(p == w or p.startswith(w.rstrip("/") + "/") for w in whole) for p in part)


def _fixture_scope(decorator: ast.expr) -> str | None:
    """The scope a decorator gives its function, None when it is not a fixture."""
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
    if name != "fixture":
        return None
    for kw in call.keywords if call else ():
        if kw.arg == "scope":
            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                return kw.value.value
            return f"<computed: {ast.unparse(kw.value)}>"
    return DEFAULT_SCOPE


def _fixture_name(decorator: ast.expr, func: str) -> str:
    if isinstance(decorator, ast.Call):
        for kw in decorator.keywords:
            if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                return str(kw.value.value)
    return func


def fixtures_in(path: Path, label: str | None = None) -> Definitions:
    """Every fixture a Python file defines (module level and in classes)."""
    out: Definitions = defaultdict(lambda: defaultdict(list))
    tree = ast.parse(path.read_text(), filename=str(path))
    where = label or str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            scope = _fixture_scope(dec)
            if scope is not None:
                out[_fixture_name(dec, node.name)][scope].append(f"{where}:{node.lineno}")
    return out


def _merge(into: Definitions, more: Definitions) -> None:
    for name, scopes in more.items():
        for scope, places in scopes.items():
            into.setdefault(name, {}).setdefault(scope, []).extend(places)


def ape_fixtures() -> Definitions:
    """ape's own fixtures (read from its source, not imported)."""
    spec = importlib.util.find_spec("ape")
    assert spec and spec.submodule_search_locations, "ape is not installed in this venv"
    path = Path(next(iter(spec.submodule_search_locations))) / "pytest" / "fixtures.py"
    return fixtures_in(path, "ape/pytest/fixtures.py") if path.exists() else {}


def clashes(root: Path, dirs: tuple[str, ...], base: Definitions) -> list[str]:
    """`name: scope at file:line, other scope at file:line` for every name defined at more
    than one scope in the session collecting `dirs` (plus `base` and tests/conftest.py)."""
    defs: Definitions = {}
    _merge(defs, base)
    files = {root / "tests" / "conftest.py"} if (root / "tests" / "conftest.py").exists() else set()
    for d in dirs:
        files |= set((root / d).rglob("*.py"))
    for f in sorted(files):
        _merge(defs, fixtures_in(f))
    return [
        f"{name}: " + "; ".join(f"{scope} at {', '.join(where)}" for scope, where in scopes.items())
        for name, scopes in sorted(defs.items())
        if len(scopes) > 1
    ]


def test_makefile_names_the_sessions() -> None:
    found = sessions(ROOT / "Makefile")
    assert found == [
        ("tests/fuzz",),
        ("tests/integration",),
        ("tests/security",),
        ("tests/unit",),
    ], found


def test_each_fixture_name_has_one_scope_per_session() -> None:
    base = ape_fixtures()
    problems = [
        f"session {' + '.join(dirs)}: {c}"
        for dirs in sessions(ROOT / "Makefile")
        for c in clashes(ROOT, dirs, base)
    ]
    assert not problems, (
        "fixture names defined at two scopes in one ape session (ape's isolation snapshots "
        "then leak chain state between modules); rename one side:\n  " + "\n  ".join(problems)
    )


def test_lint_finds_a_clash_across_directories_and_with_ape(tmp_path: Path) -> None:
    """The checker itself: a module-scoped `book` in one directory and a function-scoped
    one in the other clash in their shared session, not in a session of one of them; a
    module-scoped `chain` clashes with ape's session-scoped one."""
    (tmp_path / "tests" / "a").mkdir(parents=True)
    (tmp_path / "tests" / "b").mkdir(parents=True)
    (tmp_path / "tests" / "a" / "test_x.py").write_text(
        "import pytest\n\n@pytest.fixture(scope='module')\ndef book(): ...\n"
    )
    (tmp_path / "tests" / "b" / "test_y.py").write_text(
        "from pytest import fixture\n\n@fixture\ndef book(): ...\n\n"
        "@fixture(name='chain', scope='module')\ndef my_chain(): ...\n"
    )
    base = ape_fixtures()
    assert set(base["chain"]) == {"session"}
    both = clashes(tmp_path, ("tests/a", "tests/b"), {})
    assert len(both) == 1 and both[0].startswith("book: module at ") and "function at" in both[0]
    assert clashes(tmp_path, ("tests/a",), {}) == []
    with_ape = clashes(tmp_path, ("tests/b",), base)
    assert [c.split(":")[0] for c in with_ape] == ["chain"]


def test_sessions_fold_a_shard_into_the_session_it_is_part_of(tmp_path: Path) -> None:
    """A session over paths under another session's (a quick-loop shard of tests/unit)
    is not a session of its own; a sibling whose name only starts the same is."""
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "a:\n\t$(APE_TEST) tests/unit $(ARGS)\n"
        "b:\n\t$(APE_TEST) tests/unit/clearinghouse \\\n\t  tests/unit/test_cli.py $(ARGS)\n"
        "c:\n\t$(APE_TEST) tests/unitx $(ARGS)\n"
        "d:\n\t$(APE_TEST) tests/unit/clearinghouse tests/unitx/y $(ARGS)\n"
    )
    assert sessions(makefile) == [
        ("tests/unit",),
        ("tests/unit/clearinghouse", "tests/unitx/y"),
        ("tests/unitx",),
    ]
