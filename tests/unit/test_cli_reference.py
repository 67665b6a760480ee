"""docs/cli.md lists every `perpdex` command with its current arguments and options."""

from __future__ import annotations

from pathlib import Path

from perpdex.cli.reference import BEGIN, END, commands, markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_command_is_in_the_tree():
    paths = {c.path for c in commands()}
    # the groups the README and docs describe, and a sample of their leaves
    for p in ("trade", "portfolio", "lp status", "risk check", "risk push", "keeper prices"):
        assert p in paths, p
    check = next(c for c in commands() if c.path == "risk check")
    assert {"--quantile", "--against", "--strict", "--fail/--no-fail"} <= set(check.options)


def test_docs_cli_md_reference_matches_the_cli():
    """A command or option added, renamed or removed without docs/cli.md following fails
    here: regenerate the table with `python -m perpdex.cli.reference`."""
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "reference markers missing"
    section = text[text.index(BEGIN) : text.index(END) + len(END)]
    want = markdown()
    missing = [c.path for c in commands() if f"| `perpdex {c.path}` |" not in section]
    assert not missing, f"docs/cli.md lacks commands {missing}"
    assert section == want, "docs/cli.md's command reference is stale"


def test_every_command_is_mentioned_outside_the_table_too():
    """Each top-level group appears in docs/cli.md's prose or README's tables as well."""
    readme = (DOC.parents[1] / "README.md").read_text()
    for c in commands():
        group = c.path.split()[0]
        assert f"perpdex {group}" in readme, group
