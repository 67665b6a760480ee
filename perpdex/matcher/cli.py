"""`perpdex matcher`: run an order matcher (HTTP + websocket API, see perpdex/matcher/).

    perpdex matcher serve [--db URL] [--host H] [--port N] [--settler chain|fake]
                          [--chain-id N --clearinghouse ADDR --markets N]
                          [--rpc URL --key-env VAR] [--batch-size N] [--settle-interval S]

The chain id, Clearinghouse address and market count come from the deployment manifest
(`--deployment`, default deployments/local.json) unless given. With `--settler chain`
(the default) the matcher settles its batches into that Clearinghouse through `--rpc`
(default: the global --rpc / PERPDEX_RPC_URL, else http://127.0.0.1:8545), paying gas
from the key in the environment variable `--key-env` (never from the command line). It
checks the node first (chain id against the manifest, the Clearinghouse's code, the
key's gas money) and says what to fix.

    perpdex devnet up                                  # a local chain, deployed
    perpdex faucet 0xSETTLER                           # gas money for the settling key
    PERPDEX_MATCHER_KEY=0x... perpdex matcher serve
"""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from perpdex.cli import say, session

DEFAULT_RPC = "http://127.0.0.1:8545"

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
    rpc: Annotated[
        str | None,
        typer.Option(
            help="JSON-RPC URL for --settler chain (default: the global --rpc / "
            f"PERPDEX_RPC_URL, else {DEFAULT_RPC})"
        ),
    ] = None,
    key_env: Annotated[
        str, typer.Option(help="environment variable holding the settling private key")
    ] = "PERPDEX_MATCHER_KEY",
    batch_size: Annotated[
        int, typer.Option(min=1, help="fills per settle transaction (at most 32)")
    ] = 20,
    settle_interval: Annotated[float, typer.Option(min=0.01)] = 2.0,
) -> None:
    """Serve the matcher API until Ctrl-C."""
    from perpdex.errors import PerpdexError
    from perpdex.matcher.api import create_app
    from perpdex.matcher.api import serve as serve_app
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
        key = os.environ.get(key_env, "").strip()
        if not key:
            raise PerpdexError(
                f"--settler chain pays each batch's gas from a key: `export {key_env}=0x...` "
                f"(the private key of an account with ETH on chain {chain_id}; on a devnet "
                "fund any address with `perpdex faucet ADDRESS`), or try the matcher "
                "without a chain: --settler fake"
            )
        url = rpc or session(ctx).rpc or DEFAULT_RPC
        try:
            s = ChainSettler(url, clearinghouse, key, chain_id=chain_id)
        except SettlerUnavailable as e:
            raise PerpdexError(f"--settler chain: {e}") from None
        say(f"settling into {clearinghouse} on chain {chain_id} via {url}, gas from {s.sender}")
    else:
        raise typer.BadParameter("--settler must be chain or fake")
    try:
        config = MatcherConfig(
            chain_id,
            clearinghouse,
            frozenset(range(markets)),
            batch_size=batch_size,
            settle_interval=settle_interval,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--batch-size") from None
    try:
        store = Store(db)
    except ValueError as e:
        raise PerpdexError(str(e)) from e
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    say(f"matcher on http://{host}:{port} (db {db.split('@')[-1]}, {markets} markets)")
    serve_app(create_app(Matcher(config, store, s)), host, port)
