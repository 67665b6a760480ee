"""perpdex.devtools.perf: the end-of-run table `make test` prints and the figure it records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from perpdex.devtools import perf


def _junit(path: Path, cases: list[tuple[str, float]]) -> None:
    rows = "".join(f'<testcase classname="tests.x" name="{name}" time="{t}"/>' for name, t in cases)
    path.write_text(f'<testsuites><testsuite name="s">{rows}</testsuite></testsuites>')


@pytest.fixture
def stamps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(perf, "STAMPS", tmp_path)
    monkeypatch.setattr(perf, "T0", tmp_path / "test_t0")
    monkeypatch.setattr(perf, "PERF_JSON", tmp_path / "perf.json")
    return tmp_path


def test_report__slowest_across_sessions_and_wall_time(stamps: Path) -> None:
    _junit(stamps / "junit-a.xml", [("fast", 0.5), ("slowest", 90.0)])
    _junit(stamps / "junit-b.xml", [(f"t{i}", float(i)) for i in range(20)])
    (stamps / "test_t0").write_text(str(int(time.time()) - 100))
    console = Console(record=True, width=120)
    wall = perf.report(console)
    text = console.export_text()
    assert wall is not None and 99 <= wall <= 110
    assert "slowest 15 of 22 tests" in text
    lines = [ln for ln in text.splitlines() if "tests.x::" in ln]
    assert len(lines) == 15 and "slowest" in lines[0]
    assert "fast" not in text  # 0.5 s is not among the 15 slowest


def test_main__record_merges_into_perf_json(stamps: Path) -> None:
    (stamps / "perf.json").write_text(json.dumps({"other": 1}))
    (stamps / "test_t0").write_text(str(int(time.time()) - 42))
    assert perf.main(["perf", "report"]) == 0
    assert json.loads((stamps / "perf.json").read_text()) == {"other": 1}  # no --record
    assert perf.main(["perf", "report", "--record"]) == 0
    got = json.loads((stamps / "perf.json").read_text())
    assert got["other"] == 1 and 42 <= got["test_suite_s"] <= 50


def test_main__bad_arguments() -> None:
    assert perf.main(["perf"]) == 2
    assert perf.main(["perf", "report", "--oops"]) == 2
