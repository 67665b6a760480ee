"""`ape run crash [--network ...]`: the crash replay (body in perpdex/showcase/crash.py).

Replays a March-2020-style crash (BTC -40%, ETH -45%, SOL -50% over ten minutes) on a
seeded population of accounts with two liquidation keepers running, prints the summary
table and writes the chart to PERPDEX_CRASH_OUT (default build/crash/crash_replay.png).
Needs a deployment on the same network with mock feeds (`ape run deploy`); `make demo`
runs it after the demo. PERPDEX_CRASH_ACCOUNTS (default 30) and PERPDEX_CRASH_SEED
(default 2020) change the population.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from perpdex.deploy import load_protocol
from perpdex.errors import PerpdexError
from perpdex.showcase.crash import CrashConfig, CrashInvariantError, run


def main() -> None:
    from ape import accounts

    console = Console()
    cfg = CrashConfig(
        accounts=int(os.environ.get("PERPDEX_CRASH_ACCOUNTS", "30")),
        seed=int(os.environ.get("PERPDEX_CRASH_SEED", "2020")),
    )
    out = Path(os.environ.get("PERPDEX_CRASH_OUT", "build/crash"))
    try:
        run(load_protocol(), list(accounts.test_accounts), console, out, cfg)
    except CrashInvariantError as e:
        console.print(f"[bold red]crash replay broke an invariant:[/] {e}")
        sys.exit(2)
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
