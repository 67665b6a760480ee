"""Suite timing for `make test`: the slowest tests and the wall time of the whole run.

`make test` stamps its start (`.stamps/test_t0`, set-up included) and runs one ape
session per test directory, each writing a JUnit XML report into `.stamps/`. At the end
`python -m perpdex.devtools.perf report` prints the slowest 15 tests across every session and the
total, and records the run's wall time as `test_suite_s` in docs/perf.json (a flat
`{"key": number}` file that `make bench` also writes to).
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table

from perpdex.config import ROOT

PERF_JSON = ROOT / "docs" / "perf.json"
STAMPS = ROOT / ".stamps"
T0 = STAMPS / "test_t0"
SLOWEST = 15


def record(values: dict[str, float]) -> None:
    """Merges `values` into docs/perf.json, keeping the other keys (sorted, stable)."""
    current: dict[str, float] = {}
    if PERF_JSON.exists():
        current = json.loads(PERF_JSON.read_text())
    current.update(values)
    PERF_JSON.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")


def _cases(reports: list[Path]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for path in reports:
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            out.append((float(case.get("time", "0")), name))
    return out


def report(console: Console) -> float | None:
    """Prints the slowest tests of the last run and its total; returns the wall time
    since `.stamps/test_t0` (None when the run was not started by `make test`)."""
    reports = sorted(STAMPS.glob("junit-*.xml"))
    cases = _cases(reports)
    table = Table(title=f"slowest {SLOWEST} of {len(cases)} tests (all sessions)")
    table.add_column("seconds", justify="right")
    table.add_column("test")
    for seconds, name in sorted(cases, reverse=True)[:SLOWEST]:
        table.add_row(f"{seconds:,.1f}", name)
    console.print(table)
    in_tests = sum(s for s, _ in cases)
    if not T0.exists():
        console.print(f"time in tests: {in_tests:,.0f} s (no start stamp: run `make test`)")
        return None
    wall = time.time() - float(T0.read_text().strip())
    console.print(
        f"this run: {wall:,.0f} s wall clock, set-up, lint and compile included "
        f"({in_tests:,.0f} s of tests, sessions overlapping)"
    )
    return wall


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] != "report" or args[1:] not in ([], ["--record"]):
        print(
            "usage: python -m perpdex.devtools.perf report [--record]   (run by `make test`)",
            file=sys.stderr,
        )
        return 2
    wall = report(Console())
    if wall is not None and args[1:] == ["--record"]:
        record({"test_suite_s": round(wall)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
