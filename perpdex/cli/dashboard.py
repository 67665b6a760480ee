"""`perpdex dashboard`: a local web page for one owner, updated live from the chain.

    perpdex [--rpc URL] [--deployment PATH|KEY] dashboard [--owner ADDR] [--host H]
            [--port N] [--interval S] [--from-block B] [--rebalance-state PATH]

Reads through the standalone client (perpdex.sdk.lite.ReadClient over JSON-RPC: `--rpc`,
PERPDEX_RPC_URL, else http://127.0.0.1:8545 on the default local network) and signs
nothing. The first read happens before the server listens, so a missing manifest, a
stopped node or an unknown owner stops the command with one line and exit code 1. The
page and its server: perpdex/dashboard/; the figures: perpdex/dashboard/state.py.
Mounted lazily by main.py (`RootGroup.lazy`).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from perpdex.cli import DEFAULT_NETWORK, say, session
from perpdex.errors import PerpdexError
from perpdex.sdk.history import LOG_CHUNK

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)

LOCAL_RPC = "http://127.0.0.1:8545"
DEFAULT_PORT = 8710


def _check_port(host: str, port: int) -> None:
    """Refuse a port already taken before reading anything (uvicorn would only log it)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise PerpdexError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port "
            "(or stop what uses it)"
        ) from None


@app.command("dashboard")
def dashboard(
    ctx: typer.Context,
    owner: Annotated[
        str | None,
        typer.Option("--owner", metavar="ADDR", help="Whose sub-accounts (default: --account)."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="TCP port of the page.")
    ] = DEFAULT_PORT,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.1, help="Seconds between polls of the node's head."),
    ] = 1.0,
    from_block: Annotated[
        int,
        typer.Option(
            "--from-block",
            min=0,
            metavar="B",
            help="First block of the P&L and price history (default 0: all).",
        ),
    ] = 0,
    rebalance_state: Annotated[
        Path | None,
        typer.Option(
            "--rebalance-state",
            metavar="PATH",
            help="State file of `perpdex keeper rebalance` (default "
            ".keeper/rebalance-<network>.json).",
        ),
    ] = None,
) -> None:
    """A local web page for one owner, updated live from the chain: every sub-account with
    equity, margin, health and liquidation prices, P&L per strategy and over time, the
    correlation of strategies and markets, the stress scenarios, liquidations and loss caps.

    Serves http://HOST:PORT until Ctrl-C: the page, /api/state (the figures as JSON, the
    `--json` conventions) and /api/events (server-sent events, pushed when a new block
    changes the figures). Reads the node over JSON-RPC (--rpc, default the local anvil on
    port 8545) and signs nothing.
    """
    s = session(ctx)
    if s.rpc is None:
        if s.network != DEFAULT_NETWORK:
            raise PerpdexError(
                f"the dashboard reads the node over JSON-RPC: give --rpc URL (or "
                f"PERPDEX_RPC_URL) for {s.network}"
            )
        s.rpc = LOCAL_RPC
    _check_port(host, port)
    client = s.reader()  # a missing manifest or a stopped node stops here
    who = owner if owner is not None else s.address(required=False)
    if who is None:
        raise PerpdexError(f"whose dashboard? on {s.where} give --owner ADDRESS")
    from perpdex.sdk.handles import _address

    who = _address(who)
    from perpdex.dashboard.server import Hub, Poller, create_app
    from perpdex.dashboard.state import Tracker

    state_file = rebalance_state or Path(".keeper") / f"rebalance-{client.deployment.network}.json"
    tracker = Tracker(
        client,
        who,
        from_block=from_block,
        rebalance_state=state_file,
        chunk=LOG_CHUNK,
        rpc=s.rpc,
    )
    hub = Hub()
    poller = Poller(tracker, hub, interval)
    last = poller.poll(None)  # the first read, before listening
    if last is None:
        raise PerpdexError(str(hub.status["error"]))
    document = hub.snapshot()
    assert document is not None
    count = len(document["accounts"])
    say(
        f"dashboard of {who} ({count} sub-account{'s' if count != 1 else ''}) on "
        f"http://{host}:{port}/ reading {s.rpc} from block {last}; Ctrl-C stops it"
    )
    import uvicorn

    poller.last = last
    uvicorn.run(
        create_app(hub, poller),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
