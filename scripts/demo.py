"""`ape run demo [--network ...]`: the end-to-end demo (body in perpdex/showcase/demo.py).

Needs a deployment on the same network (`ape run deploy`); `make demo` does both.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

from perpdex.errors import PerpdexError
from perpdex.showcase.demo import run


def main() -> None:
    # rich falls back to 80 columns when stdout is not a terminal (`make demo | tee`, CI);
    # the demo's tables are wider than that, so give logs 120 unless COLUMNS says otherwise
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(width=120 if wide else None)
    try:
        run(console)
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
