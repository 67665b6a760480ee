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
           - a name of the form MASK_* or *_MASK (`MASK_64`, `c.MASK_8`), or
           - a constant of the same file whose value is all ones (2**n - 1, n >= 2).

Allowed: tests of named flags (`flags & c.FLAG_EXISTS`, `a & ACTIVE_BIT`: the constant's
own definition is where a shift would be reported), and the files whose job is packing
(ALLOWED below). Mocks (contracts/mocks/) are test fixtures and are not read.

Usage: python -m perpdex.devtools.packing_lint [--count] [PATH ...]
Prints `file:line: source line` per finding and exits 1 if there is any (0 if none).
PATH defaults to contracts/ (a directory is read recursively for *.vy).
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
        if value is not None and _is_all_ones(value):
            names.add(decl.target.id)
    return names


def _is_mask_operand(node: Any, local_masks: set[str]) -> bool:
    import vyper.ast.nodes as n

    if isinstance(node, n.UnaryOp) and isinstance(node.op, n.Invert):
        return _is_mask_operand(node.operand, local_masks)
    if _literal_value(node) is not None:
        return True
    name = None
    if isinstance(node, n.Name):
        name = node.id
        if name in local_masks:
            return True
    elif isinstance(node, n.Attribute):
        name = node.attr
    return name is not None and (name.startswith("MASK_") or name.endswith("_MASK"))


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
    return [
        Finding(path, line, "+".join(sorted(kinds)), lines[line - 1].strip())
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m perpdex.devtools.packing_lint",
        description="Report shifts and masks of storage words outside packing.vy.",
    )
    ap.add_argument("paths", nargs="*", type=Path, help="files or directories (contracts/)")
    ap.add_argument("--count", action="store_true", help="print findings per file only")
    args = ap.parse_args(argv)
    paths: list[Path] = args.paths or [ROOT / "contracts"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"packing_lint: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    findings = lint_paths(paths)
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
