"""perpdex/constants.py mirrors contracts/modules/constants.vy: same names, same values.

The contract module is parsed as text (no compiler): every `NAME: constant(type) = value`
line, the value an integer expression evaluated over a whitelist of operators, or a string
literal for a `String[N]` constant (a revert reason shared across modules).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from pathlib import Path

import pytest

import perpdex.constants as constants

CONSTANTS_VY = Path(__file__).resolve().parents[2] / "contracts" / "modules" / "constants.vy"

_DECL = re.compile(r"^([A-Z][A-Z0-9_]*)\s*:\s*constant\(\s*(\w+)\s*\)\s*=\s*(.+?)\s*(#.*)?$")
_STR = re.compile(r'^([A-Z][A-Z0-9_]*)\s*:\s*constant\(\s*String\[(\d+)\]\s*\)\s*=\s*"([^"]*)"')

_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
}


def _eval(node: ast.AST, known: dict[str, int]) -> int:
    """An integer expression: literals, + - * // ** << | &, unary minus, earlier names."""
    if isinstance(node, ast.Expression):
        return _eval(node.body, known)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, known), _eval(node.right, known))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, known)
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    raise ValueError(f"unsupported expression in constants.vy: {ast.dump(node)}")


def parse_constants(text: str) -> dict[str, tuple[str, int | str]]:
    """`{name: (vyper type, value)}` for every constant declaration of a Vyper source."""
    out: dict[str, tuple[str, int | str]] = {}
    values: dict[str, int] = {}
    for line in text.splitlines():
        sm = _STR.match(line)
        if sm is not None:
            size, literal = int(sm.group(2)), sm.group(3)
            if len(literal) > size:
                raise ValueError(f"{sm.group(1)}: {len(literal)} characters in a String[{size}]")
            out[sm.group(1)] = ("String", literal)
            continue
        m = _DECL.match(line)
        if m is None:
            continue
        name, typ, expr = m.group(1), m.group(2), m.group(3)
        value = _eval(ast.parse(expr, mode="eval"), values)
        out[name] = (typ, value)
        values[name] = value
    return out


@pytest.fixture(scope="module")
def contract() -> dict[str, tuple[str, int | str]]:
    return parse_constants(CONSTANTS_VY.read_text())


def mirrored() -> dict[str, int | str]:
    return {k: v for k, v in vars(constants).items() if k.isupper() and isinstance(v, (int, str))}


def test_parser_reads_every_declaration(contract):
    declared = [line for line in CONSTANTS_VY.read_text().splitlines() if ": constant(" in line]
    assert len(contract) == len(declared) > 0


def test_shared_revert_reasons_have_hints(contract):
    """A String constant is a revert reason several modules raise (close_with_adl matches
    the cap's refusal by it): the SDK must explain it like the literal ones."""
    from perpdex.sdk.hints import REVERT_HINTS

    reasons = [v for t, v in contract.values() if t == "String"]
    assert reasons and all(r in REVERT_HINTS for r in reasons)


def test_parser_evaluates_expressions():
    src = "A: constant(uint256) = 2**96 - 1\nB: constant(int256) = -(A + 1) // 2  # note\n"
    assert parse_constants(src) == {"A": ("uint256", 2**96 - 1), "B": ("int256", -(2**95))}
    with pytest.raises(ValueError):
        parse_constants("C: constant(uint256) = len(x)\n")


def test_python_values_match_the_contract(contract):
    wrong = {
        name: (value, contract[name][1] if name in contract else "missing")
        for name, value in mirrored().items()
        if contract.get(name, (None, None))[1] != value
    }
    assert not wrong, f"perpdex/constants.py vs constants.vy (python, contract): {wrong}"


def test_every_contract_constant_is_mirrored(contract):
    missing = sorted(set(contract) - set(mirrored()))
    assert not missing, f"add {missing} to perpdex/constants.py (values in constants.vy)"


def test_values_fit_their_vyper_type(contract):
    for name, (typ, value) in contract.items():
        if typ == "String":  # its length is checked by the parser
            continue
        assert isinstance(value, int)
        m = re.fullmatch(r"(u?)int(\d+)", typ)
        assert m is not None, f"{name}: {typ} is not an integer type"
        bits = int(m.group(2))
        lo, hi = (0, 2**bits - 1) if m.group(1) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        assert lo <= value <= hi, f"{name} = {value} does not fit {typ}"


def test_constants_module_imports_nothing_from_perpdex():
    """So perpdex.sdk.math, perpdex.sdk.snapshot and the rest import it without a cycle."""
    tree = ast.parse(Path(constants.__file__).read_text())
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "perpdex"]
