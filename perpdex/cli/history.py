"""`perpdex history`: P&L history of sub-accounts from the Clearinghouse's events.

    perpdex history [--sub N | --account-id ID | --all [--owner ADDR]] [--from-block B]
                    [--chunk N] [--json]

Events (fills with realised P&L, funding and fee; deposits, withdrawals, transfers,
liquidation and loss-cap charges) come from `PerpdexClient.history` (perpdex/sdk/history.py),
read with eth_getLogs in block chunks; the tables are in perpdex/cli/portfolio_all.py.
Mounted lazily by main.py (`RootGroup.lazy`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from perpdex.cli import AccountId, Sub, jsonout, session
from perpdex.cli.jsonout import Json
from perpdex.errors import PerpdexError
from perpdex.sdk.history import LOG_CHUNK

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


@app.command("history")
def history(
    ctx: typer.Context,
    sub: Sub = None,
    account_id: AccountId = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every sub-account of the owner (you, or --owner).")
    ] = False,
    owner: Annotated[
        str | None,
        typer.Option("--owner", metavar="ADDR", help="Whose sub-accounts, with --all."),
    ] = None,
    from_block: Annotated[
        int,
        typer.Option(
            "--from-block", min=0, metavar="B", help="First block to read (default 0: all)."
        ),
    ] = 0,
    chunk: Annotated[
        int,
        typer.Option(
            "--chunk", min=1, metavar="N", help=f"Blocks per log request (default {LOG_CHUNK})."
        ),
    ] = LOG_CHUNK,
    json_out: Json = False,
) -> None:
    """P&L history from the chain's events: fills (realised P&L, funding, fee), deposits,
    withdrawals, transfers and liquidation charges, with the cumulative P&L series.

    One sub-account (--sub N, default 0, or --account-id ID) or every one of an owner
    (--all); the last point of the series adds the open positions' unrealised P&L and
    unsettled funding at the head block.
    """
    if all_ and (sub is not None or account_id is not None):
        raise typer.BadParameter("give --all or --sub / --account-id, not both")
    if owner is not None and not all_:
        raise typer.BadParameter("--owner goes with --all; for one account use --account-id")
    s = session(ctx)
    client = s.reader()
    if all_:
        who = owner if owner is not None else s.address(required=False)
        if who is None:
            raise PerpdexError(
                f"whose sub-accounts? on {s.where} give --owner ADDRESS or --account <alias>"
            )
        ids = [i.id for i in client.accounts(who)]
        if not ids:
            raise PerpdexError(
                f"{who} has no sub-account yet; open one with `perpdex open-account NAME`"
            )
    else:
        ids = [s.resolve_account(client, sub, account_id)]
    found = client.history(ids, from_block, chunk=chunk)
    if json_out:
        jsonout.emit(jsonout.histories(client.deployment.network, found))
        return
    from perpdex.cli.portfolio_all import print_histories

    print_histories(found)
