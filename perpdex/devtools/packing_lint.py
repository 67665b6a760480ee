"""Packing lint: storage-word layouts live in contracts/modules/packing.vy, nowhere else.

Issue 10 item 2. The clearinghouse packs its hot storage into words (position, mark, open
interest, pool, treasury, account header, ...; packing.vy's docstring has every layout).
A module or contract that shifts or masks such a word itself depends on a private layout:
the next change to the layout breaks it silently. This lint reads the Vyper sources (with
vyper's own parser, so comments, docstrings and strings never count) and reports:

  shift  any `<<` / `>>` (also `<<=` / `>>=`) and any call of `shift(`
         and arithmetic that does the same: `//`, `%`, `*` or `/` by a power of two
         from 2**8 up, `unsafe_div` / `unsafe_mul` by one, a `slice` of
         `convert(w, bytes32)` (review 9a, R9a-1)
  mask   any `&`, `|` or `^` (also `&=`, `|=`, `^=`) with an operand that is
           - a numeric literal or an expression of literals only (`65_535`, `0xff`, `1`,
             `2**32 - 1`, `~(2**40 - 1)`),
           - a name of the form MASK_* or *_MASK, leading underscores ignored
             (`MASK_64`, `_MASK_64`, `c.MASK_8`), or
           - a constant of the same file whose value is all ones (2**n - 1, n >= 2) or
             such a name (`_LOW: constant(uint256) = packing.MASK_40`),
           - another file's all-ones constant (`c.MAX_PRICE`), or a local variable
             assigned an all-ones literal (review 9a, R9a-2).

Allowed: tests of named flags (`flags & c.FLAG_EXISTS`, `a & ACTIVE_BIT`: the constant's
own definition is where a shift would be reported), and the files whose job is packing
(ALLOWED below). Mocks (contracts/mocks/) are test fixtures and are not read.

Usage: python -m perpdex.devtools.packing_lint [--count] [--baseline FILE]
       [--not-words FILE] [--print-baseline | --print-not-words] [PATH ...]
Prints `file:line: source line` per finding and exits 1 if there is any (0 if none).
PATH defaults to contracts/ (a directory is read recursively for *.vy).

`make lint` runs it with `--baseline perpdex/devtools/packing_baseline.txt`: the hot-path
functions that still unpack by hand, each with its count of finding lines and the reason
(gas or bytes: Vyper 0.4.3 does not inline internal calls). A function not listed, or one
with more findings than listed, fails the lint; one with fewer fails too, until the
baseline is lowered to match (so the list only shrinks and always says what is left).

Not every finding is a storage word: a few lines shift or mask an encoding the EVM or RLP
defines (a CREATE address's RLP, SSTORE2 init-code length bytes) or test an operand's
range. They are listed apart, in perpdex/devtools/packing_not_words.txt (`--not-words`;
the same format, fingerprinted and held to the same rules), each with what it encodes;
so the baseline lists only packed words unpacked by hand, and each list says what it is.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpdex.config import ROOT

# Files whose job is packing: repository-relative posix paths.
ALLOWED: frozenset[str] = frozenset({"contracts/modules/packing.vy"})
# Directories that are not read (test fixtures, not deployed).
SKIPPED_DIRS: frozenset[str] = frozenset({"contracts/mocks"})


@dataclass(frozen=True, order=True)
class Finding:
    """One source line that shifts or masks; `kind` is "shift", "mask" or "mask+shift"."""

    path: str
    line: int
    kind: str
    text: str
    function: str = "<module>"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def _is_all_ones(value: int) -> bool:
    return value >= 3 and (value & (value + 1)) == 0


def _literal_value(node: Any) -> int | None:
    """The value of an expression made of integer literals only, else None."""
    import vyper.ast.nodes as n  # type: ignore[import-untyped]

    if isinstance(node, (n.Int, n.Hex)):
        v = node.value
        return int(v, 16) if isinstance(v, str) else int(v)
    if isinstance(node, n.UnaryOp):
        inner = _literal_value(node.operand)
        if inner is None:
            return None
        if isinstance(node.op, n.Invert):
            return ~inner
        if isinstance(node.op, n.USub):
            return -inner
        return None
    if isinstance(node, n.BinOp):
        left, right = _literal_value(node.left), _literal_value(node.right)
        if left is None or right is None:
            return None
        ops = {
            n.Pow: lambda a, b: a**b,
            n.Sub: lambda a, b: a - b,
            n.Add: lambda a, b: a + b,
            n.Mult: lambda a, b: a * b,
            n.LShift: lambda a, b: a << b,
            n.BitOr: lambda a, b: a | b,
            n.BitAnd: lambda a, b: a & b,
        }
        for op_type, fn in ops.items():
            if isinstance(node.op, op_type):
                return int(fn(left, right))
        return None
    return None


def _mask_constants(module: Any, shared: frozenset[str] = frozenset()) -> set[str]:
    """Names in this file that hold a mask: constants whose value is all ones (2**n - 1,
    n >= 2), a mask name or another module's all-ones constant (`shared`: `c.MAX_PRICE`),
    and local variables assigned an all-ones literal (`m: uint256 = 2**40 - 1`)."""
    import vyper.ast.nodes as n

    names: set[str] = set()

    def is_mask_value(value: Any) -> bool:
        v = _literal_value(value)
        if v is not None and _is_all_ones(v):
            return True
        if isinstance(value, n.Attribute) and value.attr in shared:
            return True
        return _is_mask_name(value)

    for decl in module.get_children(n.VariableDecl):
        if decl.is_constant and decl.value is not None and is_mask_value(decl.value):
            names.add(decl.target.id)
    for local in module.get_descendants((n.AnnAssign, n.Assign)):
        if (
            isinstance(local.target, n.Name)
            and local.value is not None
            and is_mask_value(local.value)
        ):
            names.add(local.target.id)
    return names


def _all_ones_constants(paths: list[Path]) -> frozenset[str]:
    """Names of the constants whose value is all ones in any of these files (what
    `alias.NAME` may refer to: `c.MAX_PRICE` is 2**88 - 1)."""
    import vyper.ast.nodes as n
    from vyper.ast import parse_to_ast

    names: set[str] = set()
    for path in paths:
        for decl in parse_to_ast(path.read_text()).get_children(n.VariableDecl):
            if decl.is_constant and decl.value is not None:
                v = _literal_value(decl.value)
                if v is not None and _is_all_ones(v):
                    names.add(decl.target.id)
    return frozenset(names)


# arithmetic that moves or cuts bit fields like a shift or a mask: x // 2**k, x % 2**k,
# x * 2**k, unsafe_div / unsafe_mul by 2**k (k >= 8: halving and doubling are not fields)
_POWER_OF_TWO_MIN = 2**8


def _is_field_power(node: Any) -> bool:
    v = _literal_value(node)
    return v is not None and v >= _POWER_OF_TWO_MIN and v & (v - 1) == 0


def _is_mask_name(node: Any) -> bool:
    """`MASK_64`, `_MASK_64`, `packing.MASK_64`, `OBS_MASK` (leading underscores ignored)."""
    import vyper.ast.nodes as n

    if isinstance(node, n.Name):
        name = node.id
    elif isinstance(node, n.Attribute):
        name = node.attr
    else:
        return False
    name = name.lstrip("_")
    return name.startswith("MASK_") or name.endswith("_MASK")


def _is_mask_operand(node: Any, local_masks: set[str], shared: frozenset[str]) -> bool:
    import vyper.ast.nodes as n

    if isinstance(node, n.UnaryOp) and isinstance(node.op, n.Invert):
        return _is_mask_operand(node.operand, local_masks, shared)
    if _literal_value(node) is not None:
        return True
    if isinstance(node, n.Name) and node.id in local_masks:
        return True
    if isinstance(node, n.Attribute) and node.attr in shared:
        return True
    return _is_mask_name(node)


def lint_source(source: str, path: str, shared: frozenset[str] | None = None) -> list[Finding]:
    """Findings in one Vyper source (`path` is only used to label them). `shared`: the
    all-ones constant names of other modules (default: every file under contracts/)."""
    import vyper.ast.nodes as n
    from vyper.ast import parse_to_ast

    if shared is None:
        shared = _shared_masks()
    module = parse_to_ast(source)
    lines = source.splitlines()
    local_masks = _mask_constants(module, shared)
    shifts = (n.LShift, n.RShift)
    bitwise = (n.BitAnd, n.BitOr, n.BitXor)
    arithmetic = (n.FloorDiv, n.Mod, n.Mult, n.Div)
    found: dict[int, set[str]] = {}

    def add(node: Any, kind: str) -> None:
        found.setdefault(node.lineno, set()).add(kind)

    for node in module.get_descendants((n.BinOp, n.AugAssign)):
        if isinstance(node.op, shifts):
            add(node, "shift")
        elif isinstance(node.op, bitwise):
            if isinstance(node, n.BinOp):
                left, right = node.left, node.right
            else:
                left, right = node.target, node.value
            if _is_mask_operand(left, local_masks, shared) or _is_mask_operand(
                right, local_masks, shared
            ):
                add(node, "mask")
        elif isinstance(node.op, arithmetic):
            if isinstance(node, n.BinOp):
                left, right = node.left, node.right
            else:
                left, right = node.target, node.value
            if _is_field_power(left) or _is_field_power(right):
                add(node, "shift")
    for call in module.get_descendants(n.Call):
        if not isinstance(call.func, n.Name):
            continue
        name = call.func.id
        by_power = name in ("unsafe_div", "unsafe_mul") and any(map(_is_field_power, call.args))
        if name == "shift" or by_power:
            add(call, "shift")
        elif name == "slice" and call.args:
            # bytes of a word cut out of it: `slice(convert(w, bytes32), 8, 24)`
            first = call.args[0]
            if (
                isinstance(first, n.Call)
                and isinstance(first.func, n.Name)
                and first.func.id == "convert"
                and len(first.args) == 2
                and isinstance(first.args[1], n.Name)
                and first.args[1].id == "bytes32"
            ):
                add(call, "shift")
    spans = [(f.lineno, f.end_lineno, f.name) for f in module.get_children(n.FunctionDef)]

    def owner(line: int) -> str:
        return next((name for lo, hi, name in spans if lo <= line <= hi), "<module>")

    return [
        Finding(path, line, "+".join(sorted(kinds)), lines[line - 1].strip(), owner(line))
        for line, kinds in sorted(found.items())
    ]


_SHARED: frozenset[str] | None = None


def _shared_masks() -> frozenset[str]:
    global _SHARED
    if _SHARED is None:
        _SHARED = _all_ones_constants(sorted((ROOT / "contracts").rglob("*.vy")))
    return _SHARED


def _relative(p: Path) -> str:
    try:
        return p.resolve().relative_to(ROOT.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def sources(paths: list[Path]) -> list[Path]:
    """The *.vy files under `paths`, less mocks and the allowed packing files."""
    out: list[Path] = []
    for p in paths:
        files = sorted(p.rglob("*.vy")) if p.is_dir() else [p]
        for f in files:
            rel = _relative(f)
            if rel in ALLOWED or any(rel.startswith(d + "/") for d in SKIPPED_DIRS):
                continue
            out.append(f)
    return out


def lint_paths(paths: list[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for f in sources(paths):
        findings += lint_source(f.read_text(), _relative(f))
    return findings


BASELINE = ROOT / "perpdex" / "devtools" / "packing_baseline.txt"
# reviewed findings that are not storage words (encodings, operand range tests)
NOT_WORDS = ROOT / "perpdex" / "devtools" / "packing_not_words.txt"


@dataclass(frozen=True)
class Entry:
    """A baseline entry: how many finding lines a function may have and, when given, the
    fingerprint of their text (review 9a, R9a-3: a count alone let a listed function swap
    a line for a new unpack, or pile more shifts onto a line)."""

    count: int
    fingerprint: str | None = None


def fingerprint(findings: list[Finding]) -> str:
    """12 hex digits of the sha256 of the finding lines' text (whitespace collapsed)."""
    import hashlib

    text = "\n".join(sorted(" ".join(f.text.split()) for f in findings))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def baseline_entries(findings: list[Finding]) -> dict[tuple[str, str], Entry]:
    """What the baseline would say of these findings, per (path, function)."""
    by: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by.setdefault((f.path, f.function), []).append(f)
    return {k: Entry(len(v), fingerprint(v)) for k, v in sorted(by.items())}


def read_baseline(path: Path) -> dict[tuple[str, str], Entry]:
    """`path function count fingerprint reason...` lines (blank lines and `#` comments
    skipped)."""
    out: dict[tuple[str, str], Entry] = {}
    for i, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 4)
        if len(parts) < 5 or not parts[2].isdigit() or len(parts[3]) != 12:
            raise ValueError(
                f"{path}:{i}: expected `path function count fingerprint reason`, got {raw!r}"
            )
        key = (parts[0], parts[1])
        if key in out:
            raise ValueError(f"{path}:{i}: {parts[0]} {parts[1]} is listed twice")
        out[key] = Entry(int(parts[2]), parts[3])
    return out


def against_baseline(
    findings: list[Finding],
    allowed: Mapping[tuple[str, str], Entry | int],
    not_words: Mapping[tuple[str, str], Entry | int] | None = None,
    lists: tuple[Path, Path] = (BASELINE, NOT_WORDS),
) -> list[str]:
    """What breaks the baseline: functions over (or missing from) it, stale entries, and
    listed functions whose hand-unpacked lines changed (their fingerprint). `not_words`:
    the reviewed findings that are not storage words (NOT_WORDS), held to the same rules;
    a function may be in one list only. `lists`: the two files, to name in messages."""
    not_words = not_words or {}
    both = sorted(set(allowed) & set(not_words))
    problems: list[str] = [
        f"{path} {fn}: listed in both {_relative(lists[0])} and {_relative(lists[1])}: "
        "keep it in one (packed words in the first, other encodings in the second)"
        for path, fn in both
    ]
    entries = {
        k: v if isinstance(v, Entry) else Entry(v)
        for k, v in list(allowed.items()) + list(not_words.items())
    }
    now = baseline_entries(findings)
    for key, got in now.items():
        limit = entries.get(key, Entry(0))
        where = [str(f) for f in findings if (f.path, f.function) == key]
        if got.count > limit.count:
            problems.append(
                f"{key[0]} {key[1]}: {got.count} finding line(s), baseline {limit.count}:\n  "
                + "\n  ".join(where)
            )
        elif (
            got.count == limit.count
            and limit.fingerprint is not None
            and got.fingerprint != limit.fingerprint
        ):
            problems.append(
                f"{key[0]} {key[1]}: its hand-unpacked lines changed (fingerprint "
                f"{got.fingerprint}, baseline {limit.fingerprint}): use packing.vy's "
                "accessors, or review the lines and update the entry "
                "(python -m perpdex.devtools.packing_lint --print-baseline):\n  "
                + "\n  ".join(where)
            )
    for key, limit in sorted(entries.items()):
        have = now.get(key, Entry(0)).count
        if have < limit.count:
            listed_in = lists[1] if key in not_words else lists[0]
            problems.append(
                f"{key[0]} {key[1]}: {have} finding line(s) but the baseline "
                f"allows {limit.count}: lower it in {_relative(listed_in)} (the list only "
                "shrinks; --print-baseline / --print-not-words print the entries as they "
                "are now)"
            )
    return problems


def print_baseline(
    findings: list[Finding],
    old: dict[tuple[str, str], str],
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> None:
    """The baseline's entries as the code is now, with the reasons of `old` (new ones:
    `REASON?`, to be written by hand); the functions in `skip` (the other list) left out."""
    for (path, fn), e in baseline_entries(findings).items():
        if (path, fn) not in skip:
            print(f"{path}  {fn}  {e.count}  {e.fingerprint}  {old.get((path, fn), 'REASON?')}")


def _reasons(path: Path) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for raw in path.read_text().splitlines():
        parts = raw.split(None, 4)
        if len(parts) == 5 and not raw.lstrip().startswith("#"):
            out[(parts[0], parts[1])] = parts[4]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m perpdex.devtools.packing_lint",
        description="Report shifts and masks of storage words outside packing.vy.",
    )
    ap.add_argument("paths", nargs="*", type=Path, help="files or directories (contracts/)")
    ap.add_argument("--count", action="store_true", help="print findings per file only")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="fail only on findings beyond this list of hot-path functions (make lint)",
    )
    ap.add_argument(
        "--not-words",
        type=Path,
        help="with --baseline: the reviewed findings that are not storage words "
        f"(default with the repository's baseline: {_relative(NOT_WORDS)})",
    )
    ap.add_argument(
        "--print-baseline",
        action="store_true",
        help="print the baseline entries for the code as it is (reasons kept from --baseline)",
    )
    ap.add_argument(
        "--print-not-words",
        action="store_true",
        help="print the --not-words entries for the code as it is (reasons kept)",
    )
    args = ap.parse_args(argv)
    paths: list[Path] = args.paths or [ROOT / "contracts"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"packing_lint: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = lint_paths(paths)
    # the repository's baseline goes with the repository's not-words list; another
    # baseline (a test's) has none unless given
    not_words_path: Path | None = args.not_words
    repo_baseline = args.baseline is None or args.baseline.resolve() == BASELINE.resolve()
    if not_words_path is None and repo_baseline and NOT_WORDS.exists():
        not_words_path = NOT_WORDS
    if args.print_baseline or args.print_not_words:
        nw = _reasons(not_words_path) if not_words_path is not None else {}
        if args.print_not_words:
            keep = frozenset(baseline_entries(findings)) - frozenset(nw)
            print_baseline(findings, nw, skip=keep)
        else:
            print_baseline(findings, _reasons(args.baseline or BASELINE), skip=frozenset(nw))
        return 0
    if args.baseline is not None:
        try:
            not_words = read_baseline(not_words_path) if not_words_path is not None else {}
            problems = against_baseline(
                findings,
                read_baseline(args.baseline),
                not_words,
                (args.baseline, not_words_path or NOT_WORDS),
            )
        except (OSError, ValueError) as e:
            print(f"packing_lint: cannot read the baseline: {e}", file=sys.stderr)
            return 2
        for p in problems:
            print(p)
        if problems:
            print(
                "packing_lint: a shift or mask of a packed word outside packing.vy: add a "
                "pack/unpack pair or a field accessor to contracts/modules/packing.vy and "
                "call it (a hot path that cannot afford the call goes in the baseline, with "
                "its reason)",
                file=sys.stderr,
            )
            return 1
        listed = sum(e.count for e in read_baseline(args.baseline).values())
        other = sum(e.count for e in not_words.values())
        print(
            f"packing_lint: clean against the baseline ({listed} hot-path line(s) listed; "
            f"{other} reviewed line(s) that are not storage words)"
        )
        return 0
    if args.count:
        for path, k in sorted(Counter(f.path for f in findings).items(), key=lambda x: -x[1]):
            print(f"{k:5d}  {path}")
    else:
        for f in findings:
            print(f)
    if findings:
        print(
            f"packing_lint: {len(findings)} line(s) shift or mask a word outside packing.vy: "
            "add a pack/unpack pair (or a field accessor) to contracts/modules/packing.vy "
            "and call it instead",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
