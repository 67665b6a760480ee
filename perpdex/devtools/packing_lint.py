"""Packing lint: storage-word layouts live in contracts/modules/packing.vy, nowhere else.

Issue 10 item 2. The clearinghouse packs its hot storage into words (position, mark, open
interest, pool, treasury, account header, ...; packing.vy's docstring has every layout).
A module or contract that shifts or masks such a word itself depends on a private layout:
the next change to the layout breaks it silently. This lint reads the Vyper sources (with
vyper's own parser, so comments, docstrings and strings never count) and reports:

  shift  any `<<` / `>>` (also `<<=` / `>>=`) and any call of `shift(`
  mask   any `&`, `|` or `^` (also `&=`, `|=`, `^=`) with an operand that is
           - a numeric literal or an expression of literals only (`65_535`, `0xff`, `1`,
             `2**32 - 1`, `~(2**40 - 1)`),
           - a name of the form MASK_* or *_MASK, leading underscores ignored
             (`MASK_64`, `_MASK_64`, `c.MASK_8`), or
           - a constant of the same file whose value is all ones (2**n - 1, n >= 2) or
             such a name (`_LOW: constant(uint256) = packing.MASK_40`).

Allowed: tests of named flags (`flags & c.FLAG_EXISTS`, `a & ACTIVE_BIT`: the constant's
own definition is where a shift would be reported), and the files whose job is packing
(ALLOWED below). Mocks (contracts/mocks/) are test fixtures and are not read.

Usage: python -m perpdex.devtools.packing_lint [--count] [--baseline FILE] [PATH ...]
Prints `file:line: source line` per finding and exits 1 if there is any (0 if none).
PATH defaults to contracts/ (a directory is read recursively for *.vy).

`make lint` runs it with `--baseline perpdex/devtools/packing_baseline.txt`: the hot-path
functions that still unpack by hand, each with its count of finding lines and the reason
(gas or bytes: Vyper 0.4.3 does not inline internal calls). A function not listed, or one
with more findings than listed, fails the lint; one with fewer fails too, until the
baseline is lowered to match (so the list only shrinks and always says what is left).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
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


def _mask_constants(module: Any) -> set[str]:
    """Names of this file's constants whose value is all ones (2**n - 1, n >= 2)."""
    import vyper.ast.nodes as n

    names: set[str] = set()
    for decl in module.get_children(n.VariableDecl):
        if not decl.is_constant or decl.value is None:
            continue
        value = _literal_value(decl.value)
        if (value is not None and _is_all_ones(value)) or _is_mask_name(decl.value):
            names.add(decl.target.id)
    return names


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


def _is_mask_operand(node: Any, local_masks: set[str]) -> bool:
    import vyper.ast.nodes as n

    if isinstance(node, n.UnaryOp) and isinstance(node.op, n.Invert):
        return _is_mask_operand(node.operand, local_masks)
    if _literal_value(node) is not None:
        return True
    if isinstance(node, n.Name) and node.id in local_masks:
        return True
    return _is_mask_name(node)


def lint_source(source: str, path: str) -> list[Finding]:
    """Findings in one Vyper source (`path` is only used to label them)."""
    import vyper.ast.nodes as n
    from vyper.ast import parse_to_ast

    module = parse_to_ast(source)
    lines = source.splitlines()
    local_masks = _mask_constants(module)
    shifts = (n.LShift, n.RShift)
    bitwise = (n.BitAnd, n.BitOr, n.BitXor)
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
            if _is_mask_operand(left, local_masks) or _is_mask_operand(right, local_masks):
                add(node, "mask")
    for call in module.get_descendants(n.Call):
        if isinstance(call.func, n.Name) and call.func.id == "shift":
            add(call, "shift")
    spans = [(f.lineno, f.end_lineno, f.name) for f in module.get_children(n.FunctionDef)]

    def owner(line: int) -> str:
        return next((name for lo, hi, name in spans if lo <= line <= hi), "<module>")

    return [
        Finding(path, line, "+".join(sorted(kinds)), lines[line - 1].strip(), owner(line))
        for line, kinds in sorted(found.items())
    ]


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


def read_baseline(path: Path) -> dict[tuple[str, str], int]:
    """`path function count reason...` lines (blank lines and `#` comments skipped)."""
    out: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) < 4 or not parts[2].isdigit():
            raise ValueError(f"{path}:{i}: expected `path function count reason`, got {raw!r}")
        key = (parts[0], parts[1])
        if key in out:
            raise ValueError(f"{path}:{i}: {parts[0]} {parts[1]} is listed twice")
        out[key] = int(parts[2])
    return out


def against_baseline(findings: list[Finding], allowed: dict[tuple[str, str], int]) -> list[str]:
    """What breaks the baseline: functions over (or missing from) it, and stale entries."""
    counts = Counter((f.path, f.function) for f in findings)
    problems: list[str] = []
    for key, k in sorted(counts.items()):
        limit = allowed.get(key, 0)
        if k > limit:
            where = [str(f) for f in findings if (f.path, f.function) == key]
            problems.append(
                f"{key[0]} {key[1]}: {k} finding line(s), baseline {limit}:\n  "
                + "\n  ".join(where)
            )
    for key, limit in sorted(allowed.items()):
        if counts.get(key, 0) < limit:
            problems.append(
                f"{key[0]} {key[1]}: {counts.get(key, 0)} finding line(s) but the baseline "
                f"allows {limit}: lower it in {_relative(BASELINE)} (the list only shrinks)"
            )
    return problems


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
    args = ap.parse_args(argv)
    paths: list[Path] = args.paths or [ROOT / "contracts"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"packing_lint: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = lint_paths(paths)
    if args.baseline is not None:
        try:
            problems = against_baseline(findings, read_baseline(args.baseline))
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
        listed = sum(read_baseline(args.baseline).values())
        print(f"packing_lint: clean against the baseline ({listed} hot-path line(s) listed)")
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
