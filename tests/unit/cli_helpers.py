"""Assertions on `perpdex` command results, shared by the CLI tests."""

from __future__ import annotations

from typer.testing import Result


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def failed(result: Result) -> str:
    """The one-line error of a failed command."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]
