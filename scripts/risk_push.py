"""`ape run risk_push [--network ...]`: publish a risk book in bounded steps.

The same flow as `perpdex risk push --yes` (body in perpdex/cli/risk.py): reads the
deployment manifest of the connected network (perpdex.deploy.network_key(), or
PERPDEX_NETWORK), plans steps within the contract's step limits, prints the plan and sends.

    PERPDEX_RISK_BOOK     book YAML to publish (default book.yaml; design it with
                          `perpdex risk design --out book.yaml`)
    PERPDEX_RISK_ACCOUNT  ape account alias holding RISK_ROLE (default: test account 0 on
                          local networks); a keyfile account is unlocked without a prompt
                          from APE_ACCOUNTS_<alias>_PASSPHRASE
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from perpdex.cli.risk import load_signer, open_chain, run_push
from perpdex.errors import PerpdexError
from perpdex.risk.scenarios import load_book


def main() -> None:
    from ape import networks

    console = Console()
    book_path = Path(os.environ.get("PERPDEX_RISK_BOOK", "book.yaml"))
    try:
        with ExitStack() as stack:
            c = open_chain(stack, networks.provider.network_choice, None)
            book = load_book(book_path, c.symbols)
            sender = load_signer(os.environ.get("PERPDEX_RISK_ACCOUNT"))
            console.print(
                f"publishing {book_path} to {c.manifest.stem} from {sender.address} "
                f"(clearinghouse {c.ch.address})"
            )
            run_push(console, c.ch, book, sender, c.symbols, yes=True, book_label=str(book_path))
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
