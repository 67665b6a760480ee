"""The packing lint (perpdex/devtools/packing_lint.py) on small samples and on the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpdex.config import ROOT
from perpdex.devtools import packing_lint

HEADER = '# pragma version ~=0.4.3\n"""\n@notice a docstring with w >> 8 & 255 in it\n"""\n'


def _lint(body: str) -> list[packing_lint.Finding]:
    return packing_lint.lint_source(HEADER + body, "sample.vy")


def test_shift_is_a_finding() -> None:
    found = _lint("@internal\n@pure\ndef _f(w: uint256) -> uint256:\n    return (w >> 8) & 255\n")
    assert [(f.line, f.kind) for f in found] == [(8, "mask+shift")]
    assert str(found[0]) == "sample.vy:8: return (w >> 8) & 255"


@pytest.mark.parametrize(
    "expr",
    [
        "w & 65_535",
        "w & (2**32 - 1)",
        "w & ~(2**40 - 1)",
        "0xff & w",
        "w & MASK_64",
        "w & packing.MASK_128",
        "w & LOW",
        "w | 1",
    ],
)
def test_mask_with_literal_or_mask_name_is_a_finding(expr: str) -> None:
    found = _lint(
        "LOW: constant(uint256) = 2**40 - 1\n"
        "MASK_64: constant(uint256) = 2**64 - 1\n"
        f"@internal\n@pure\ndef _f(w: uint256) -> uint256:\n    return {expr}\n"
    )
    assert [(f.line, f.kind) for f in found] == [(10, "mask")]


def test_aliased_masks_are_findings() -> None:
    # a local alias of a packing mask (OracleRouter's `_MASK_96 = packing.MASK_96`)
    found = _lint(
        "_LOW: constant(uint256) = packing.MASK_40\n"
        "@internal\n@pure\ndef _f(w: uint256) -> uint256:\n"
        "    return (w & _LOW) + (w & _MASK_96)\n"
    )
    assert [(f.line, f.kind, f.function) for f in found] == [(9, "mask", "_f")]


def test_findings_name_their_function() -> None:
    found = _lint(
        "X: constant(uint256) = 1 << 8\n"
        "@internal\n@pure\ndef _a(w: uint256) -> uint256:\n    return w >> 3\n"
        "@internal\n@pure\ndef _b(w: uint256) -> uint256:\n    return w + 1\n"
    )
    assert [(f.line, f.function) for f in found] == [(5, "<module>"), (9, "_a")]


def _baseline(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "baseline.txt"
    p.write_text(text)
    return p


SAMPLE = HEADER + (
    "@internal\n@pure\ndef _hot(w: uint256) -> uint256:\n"
    "    a: uint256 = w >> 8\n    return a & 255\n"
    "@internal\n@pure\ndef _cold(w: uint256) -> uint256:\n    return w + 1\n"
)


def test_baseline_passes_listed_hot_paths_and_fails_new_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "hot.vy"
    src.write_text(SAMPLE)
    rel = packing_lint._relative(src)
    fp = packing_lint.fingerprint(packing_lint.lint_source(SAMPLE, rel))
    ok = _baseline(tmp_path, f"# comment\n\n{rel}  _hot  2  {fp}  per-trade path (gas)\n")
    assert packing_lint.main([str(src), "--baseline", str(ok)]) == 0
    assert "clean against the baseline (2 hot-path" in capsys.readouterr().out
    # one more finding in a listed function, or any in an unlisted one, fails
    src.write_text(SAMPLE.replace("return w + 1", "return w << 1"))
    assert packing_lint.main([str(src), "--baseline", str(ok)]) == 1
    assert "_cold: 1 finding line(s), baseline 0" in capsys.readouterr().out
    src.write_text(SAMPLE.replace("return a & 255", "return a   &   255\n    # x"))
    # the same two lines, spaced otherwise: still clean
    assert packing_lint.main([str(src), "--baseline", str(ok)]) == 0
    capsys.readouterr()
    # a listed line that now unpacks something else: the fingerprint differs (R9a-3)
    src.write_text(SAMPLE.replace("return a & 255", "return (a >> 3) & 255"))
    assert packing_lint.main([str(src), "--baseline", str(ok)]) == 1
    assert "hand-unpacked lines changed" in capsys.readouterr().out
    src.write_text(SAMPLE.replace("a: uint256 = w >> 8", "a: uint256 = w >> 8\n    a = a << 1"))
    assert packing_lint.main([str(src), "--baseline", str(ok)]) == 1
    assert "_hot: 3 finding line(s), baseline 2" in capsys.readouterr().out


def test_baseline_must_shrink_with_the_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "hot.vy"
    src.write_text(SAMPLE.replace("return a & 255", "return a + 255"))
    rel = packing_lint._relative(src)
    stale = _baseline(tmp_path, f"{rel} _hot 2 0123456789ab per-trade path (gas)\n")
    assert packing_lint.main([str(src), "--baseline", str(stale)]) == 1
    assert "lower it in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text",
    [
        "contracts/x.vy _f two 0123456789ab reasons\n",
        "contracts/x.vy _f 2 0123456789ab\n",
        "contracts/x.vy _f 2 short reason\n",
        "a _f 1 0123456789ab r\na _f 1 0123456789ab r\n",
    ],
)
def test_malformed_baseline_is_refused(tmp_path: Path, text: str) -> None:
    src = tmp_path / "hot.vy"
    src.write_text(SAMPLE)
    assert packing_lint.main([str(src), "--baseline", str(_baseline(tmp_path, text))]) == 2


def test_repo_is_clean_against_its_baseline() -> None:
    """What `make lint` runs: every finding left is a listed hot path or a reviewed
    encoding that is not a storage word, and the lists are exact
    (perpdex/devtools/packing_baseline.txt, packing_not_words.txt, each entry with its
    reason)."""
    allowed = packing_lint.read_baseline(packing_lint.BASELINE)
    not_words = packing_lint.read_baseline(packing_lint.NOT_WORDS)
    problems = packing_lint.against_baseline(
        packing_lint.lint_paths([ROOT / "contracts"]), allowed, not_words
    )
    assert problems == [], "\n".join(problems)


def test_not_words_list_is_apart_and_held_to_the_same_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An encoding that is not a storage word is listed in the not-words file, not the
    baseline: fingerprinted, counted, never in both (packing11)."""
    src = tmp_path / "hot.vy"
    src.write_text(SAMPLE.replace("return w + 1", "return w << 8"))
    rel = packing_lint._relative(src)
    hot = packing_lint.lint_source(SAMPLE, rel)
    fp_hot = packing_lint.fingerprint(hot)
    cold = [f for f in packing_lint.lint_source(src.read_text(), rel) if f.function == "_cold"]
    fp_cold = packing_lint.fingerprint(cold)
    base = _baseline(tmp_path, f"{rel}  _hot  2  {fp_hot}  per-trade path (gas)\n")
    words = tmp_path / "not_words.txt"
    words.write_text(f"{rel}  _cold  1  {fp_cold}  an RLP length byte\n")
    args = [str(src), "--baseline", str(base), "--not-words", str(words)]
    assert packing_lint.main(args) == 0
    assert "2 hot-path line(s) listed; 1 reviewed line(s)" in capsys.readouterr().out
    # without the list the same finding fails: the baseline does not hold it
    assert packing_lint.main([str(src), "--baseline", str(base)]) == 1
    assert "_cold: 1 finding line(s), baseline 0" in capsys.readouterr().out
    # each list prints only its own entries
    assert packing_lint.main([*args, "--print-baseline"]) == 0
    out = capsys.readouterr().out
    assert "_hot  2" in out and "_cold" not in out
    assert packing_lint.main([*args, "--print-not-words"]) == 0
    out = capsys.readouterr().out
    assert "_cold  1" in out and "an RLP length byte" in out and "_hot" not in out
    # a changed line fails (fingerprint), a stale entry names the not-words file
    src.write_text(SAMPLE.replace("return w + 1", "return w << 9"))
    assert packing_lint.main(args) == 1
    assert "hand-unpacked lines changed" in capsys.readouterr().out
    src.write_text(SAMPLE)
    assert packing_lint.main(args) == 1
    assert f"lower it in {packing_lint._relative(words)}" in capsys.readouterr().out
    # a function in both lists fails
    src.write_text(SAMPLE.replace("return w + 1", "return w << 8"))
    words.write_text(
        f"{rel}  _cold  1  {fp_cold}  an RLP length byte\n{rel}  _hot  2  {fp_hot}  x\n"
    )
    assert packing_lint.main(args) == 1
    assert "_hot: listed in both" in capsys.readouterr().out


def test_augmented_assignments_are_findings() -> None:
    found = _lint(
        "@internal\n@pure\ndef _f(w: uint256) -> uint256:\n"
        "    x: uint256 = w\n    x >>= 3\n    x &= 255\n    x |= c.FLAG_EXISTS\n    return x\n"
    )
    assert [(f.line, f.kind) for f in found] == [(9, "shift"), (10, "mask")]


def test_shift_builtin_is_a_finding() -> None:
    found = _lint("@internal\n@pure\ndef _f(w: uint256) -> uint256:\n    return shift(w, 3)\n")
    assert [(f.line, f.kind) for f in found] == [(8, "shift")]


def test_clean_file_and_named_flag_tests_are_allowed() -> None:
    found = _lint(
        "from .modules import constants as c\n"
        "FLAG_SEQ: constant(uint256) = c.FLAG_A | c.FLAG_B\n"
        "ONE: constant(uint256) = 1\n"
        "@internal\n@pure\ndef _f(flags: uint256, a: uint256, b: bool) -> bool:\n"
        "    # a comment: flags >> 3 & 7\n"
        "    s: String[20] = 'x >> 1 & 255'\n"
        "    return flags & c.FLAG_EXISTS != 0 and a & FLAG_SEQ == 0 and (b or a > 2**32 - 1)\n"
    )
    assert found == []


def test_packing_files_and_mocks_are_not_read(tmp_path: Path) -> None:
    files = packing_lint.sources([ROOT / "contracts"])
    rel = {p.resolve().relative_to(ROOT.resolve()).as_posix() for p in files}
    assert "contracts/modules/gates.vy" in rel
    assert "contracts/modules/packing.vy" not in rel
    assert not any(r.startswith("contracts/mocks/") for r in rel)


def test_main_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.vy"
    bad.write_text(HEADER + "@internal\n@pure\ndef _f(w: uint256) -> uint256:\n    return w << 2\n")
    good = tmp_path / "good.vy"
    good.write_text(HEADER + "@internal\n@pure\ndef _f(w: uint256) -> uint256:\n    return w + 2\n")
    assert packing_lint.main([str(good)]) == 0
    assert packing_lint.main([str(bad), str(good)]) == 1
    out = capsys.readouterr()
    assert out.out.strip().endswith("bad.vy:8: return w << 2")
    assert "packing.vy" in out.err
    assert packing_lint.main([str(tmp_path / "missing.vy")]) == 2


# Files with no finding left (issue 10 item 2, first pass): they stay clean until the lint
# is wired into `make lint` (the remaining files are the gas helpers' and the full halves').
CLEAN = (
    "contracts/Clearinghouse.vy",
    "contracts/ClearinghouseAdmin.vy",
    "contracts/ClearinghouseLens.vy",
    "contracts/ClearinghouseRisk.vy",
    "contracts/ClearinghouseTreasury.vy",
    "contracts/LiquidationAuction.vy",
    "contracts/LiquidityVault.vy",
    "contracts/Timelock.vy",
    "contracts/modules/accounts.vy",
    "contracts/modules/delayed.vy",
    "contracts/modules/liquidation_hooks.vy",
    "contracts/modules/margin.vy",
    "contracts/modules/settlement.vy",
    "contracts/modules/state.vy",
    "contracts/modules/treasury.vy",
    "contracts/modules/vault_limits.vy",
    "contracts/modules/views.vy",
)


@pytest.mark.parametrize("path", CLEAN)
def test_cleaned_files_stay_clean(path: str) -> None:
    found = packing_lint.lint_paths([ROOT / path])
    assert found == [], "\n".join(map(str, found))
