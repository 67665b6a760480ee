"""Start-up time of the `perpdex` command: `make bench` (after the gas benchmark).

    python -m perpdex.devtools.bench_startup [--runs N] [--no-record]

Times whole processes, as a user meets them, and prints min / median / max per command:
- `perpdex --help`: no chain, no ape (the command groups are imported on dispatch);
- `perpdex --version`;
- `perpdex --rpc URL quote`: a read that needs the chain, against an anvil started here
  with a fresh deployment (manifest in a temporary folder, so deployments/local.json is
  left alone), through the standalone client (perpdex.sdk.lite: no ape);
- `perpdex --rpc URL account`: test:0's sub-accounts (one opened here), the same way: the
  account resolved without ape (perpdex/sdk/lite/keys.py) and a summary per sub-account;
- `perpdex --network URL quote`: the same read through ape (plugins, provider, contract
  types: the floor of every command that signs).
It records the medians as `cli_help_s`, `cli_read_s` (the --rpc quote),
`cli_read_account_s` (the --rpc account) and `cli_read_ape_s` in docs/perf.json
(perpdex.devtools.perf.record), unless --no-record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from perpdex.config import ROOT
from perpdex.devtools.devnet import NODE_NETWORK, Anvil, free_port, node_settings
from perpdex.devtools.perf import record

# the console script a user runs (pyproject's `perpdex` entry point); PYTHONPATH=ROOT below
# makes it load this tree
_SCRIPT = Path(sys.executable).parent / "perpdex"
PERPDEX = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "perpdex.cli.main"]


def time_runs(cmd: Sequence[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of `runs` runs of `cmd` (after one unrecorded warm-up run, which fills
    the OS file cache and Python's bytecode cache); fails on a non-zero exit."""
    out: list[float] = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        if i:
            out.append(wall)
    return out


def deploy(url: str, manifest: Path) -> None:
    """A fresh perpdex deployment on the anvil at `url`, its manifest at `manifest`, and a
    sub-account of test:0 for `perpdex account` to show."""
    import warnings

    warnings.filterwarnings("ignore", module=r"pydantic_settings\..*")  # ape's plugin load
    from ape import accounts, networks
    from ape.logging import logger

    from perpdex.deploy import deploy_system
    from perpdex.sdk.client import PerpdexClient

    logger.set_level("WARNING")
    with networks.parse_network_choice(NODE_NETWORK, provider_settings=node_settings(url)):
        owner = accounts.test_accounts[0]
        deploy_system(owner, key="local", manifest=manifest, log=lambda _: None)
        PerpdexClient.from_manifest(manifest, owner).open_account("bench")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perpdex.devtools.bench_startup")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (default 7)")
    ap.add_argument("--no-record", action="store_true", help="do not write docs/perf.json")
    args = ap.parse_args(argv)
    console = Console()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    env.pop("COLUMNS", None)
    rows: list[tuple[str, list[float]]] = []
    rows.append(("perpdex --help", time_runs([*PERPDEX, "--help"], args.runs, env)))
    rows.append(("perpdex --version", time_runs([*PERPDEX, "--version"], args.runs, env)))
    node = Anvil("bench-cli", free_port(), quiet=True)
    with node.running(), tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "local.json"
        console.print(f"deploying on {node.url} for the read command ...")
        deploy(node.url, manifest)
        lite = [*PERPDEX, "--rpc", node.url, "--deployment", str(manifest)]
        rows.append(
            ("perpdex --rpc URL quote (no ape)", time_runs([*lite, "quote"], args.runs, env))
        )
        account = time_runs([*lite, "account"], args.runs, env)
        rows.append(("perpdex --rpc URL account (no ape)", account))
        read = [*PERPDEX, "--network", node.url, "--deployment", str(manifest), "quote"]
        rows.append(("perpdex quote through ape", time_runs(read, args.runs, env)))
    table = Table(title=f"perpdex start-up, whole process, {args.runs} runs each (seconds)")
    table.add_column("command")
    for name in ("min", "median", "max"):
        table.add_column(name, justify="right")
    for name, times in rows:
        table.add_row(
            name, f"{min(times):.3f}", f"{statistics.median(times):.3f}", f"{max(times):.3f}"
        )
    console.print(table)
    figures = {
        "cli_help_s": statistics.median(rows[0][1]),
        "cli_read_s": statistics.median(rows[2][1]),
        "cli_read_account_s": statistics.median(rows[3][1]),
        "cli_read_ape_s": statistics.median(rows[4][1]),
    }
    text = ", ".join(f"{k}={v:.3f}" for k, v in figures.items())
    if not args.no_record:
        record({k: round(v, 3) for k, v in figures.items()})
        console.print(f"recorded {text} (docs/perf.json)")
    else:
        console.print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
