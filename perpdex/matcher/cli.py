"""`perpdex matcher`: run an order matcher (HTTP + websocket API, see perpdex/matcher/).

    perpdex matcher serve [--db URL] [--host H] [--port N] [--settler chain|fake]
                          [--chain-id N --clearinghouse ADDR --markets N]
                          [--rpc URL --key-env VAR] [--batch-size N] [--settle-interval S]

The chain id, Clearinghouse address and market count come from the deployment manifest
(`--deployment`, default deployments/local.json) unless given. The settling key is read
from an environment variable (never from the command line).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from perpdex.cli import say, session

app = typer.Typer(
    name="matcher",
    help="Run an off-chain order matcher: signed limit orders, price-time priority, batch "
    "settlement on chain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _group() -> None:
    """Run an off-chain order matcher: signed limit orders, price-time priority, batch
    settlement on chain."""


@app.command()
def serve(
    ctx: typer.Context,
    db: Annotated[
        str, typer.Option(help="sqlite:///PATH (default) or postgresql+psycopg://USER@HOST/DB")
    ] = "sqlite:///matcher.db",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    settler: Annotated[
        str, typer.Option(help="chain (settle through --rpc) or fake (in memory, testing)")
    ] = "chain",
    chain_id: Annotated[int | None, typer.Option(help="override the manifest's chain id")] = None,
    clearinghouse: Annotated[
        str | None, typer.Option(help="override the manifest's Clearinghouse address")
    ] = None,
    markets: Annotated[
        int | None, typer.Option(help="markets 0..N-1 are traded (default: the manifest's)")
    ] = None,
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL for --settler chain")] = (
        "http://127.0.0.1:8545"
    ),
    key_env: Annotated[
        str, typer.Option(help="environment variable holding the settling private key")
    ] = "PERPDEX_MATCHER_KEY",
    batch_size: Annotated[int, typer.Option(min=1, max=500)] = 20,
    settle_interval: Annotated[float, typer.Option(min=0.01)] = 2.0,
) -> None:
    """Serve the matcher API until Ctrl-C."""
    import uvicorn

    from perpdex.errors import PerpdexError
    from perpdex.matcher.api import create_app
    from perpdex.matcher.core import Matcher, MatcherConfig
    from perpdex.matcher.settler import (
        ChainSettler,
        FakeChain,
        FakeSettler,
        Settler,
        SettlerUnavailable,
    )
    from perpdex.matcher.store import Store

    if chain_id is None or clearinghouse is None or markets is None:
        from perpdex.sdk.manifest import Deployment, resolve_manifest

        d = Deployment.load(resolve_manifest(session(ctx).deployment or "local"))
        chain_id = d.chain_id if chain_id is None else chain_id
        clearinghouse = d.clearinghouse if clearinghouse is None else clearinghouse
        markets = len(d.markets) if markets is None else markets
    s: Settler
    if settler == "fake":
        s = FakeSettler(FakeChain(chain_id, clearinghouse))
    elif settler == "chain":
        key = os.environ.get(key_env)
        if not key:
            raise PerpdexError(f"set {key_env} to the settling account's private key")
        try:
            s = ChainSettler(rpc, clearinghouse, key)
        except SettlerUnavailable as e:
            raise PerpdexError(str(e)) from e
    else:
        raise typer.BadParameter("--settler must be chain or fake")
    config = MatcherConfig(
        chain_id,
        clearinghouse,
        frozenset(range(markets)),
        batch_size=batch_size,
        settle_interval=settle_interval,
    )
    try:
        store = Store(db)
    except ValueError as e:
        raise PerpdexError(str(e)) from e
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    say(f"matcher on http://{host}:{port} (db {db.split('@')[-1]}, {markets} markets)")
    uvicorn.run(
        create_app(Matcher(config, store, s)),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
