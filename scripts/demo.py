"""`ape run demo [--network ...]`: the end-to-end demo (body in perpdex/demo.py).

Needs a deployment on the same network (`ape run deploy`); `make demo` does both.
"""

from __future__ import annotations

import sys

from rich.console import Console

from perpdex.demo import run
from perpdex.errors import PerpdexError


def main() -> None:
    console = Console()
    try:
        run(console)
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
