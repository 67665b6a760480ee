"""`perpdex devnet up|down` and `perpdex faucet`: a local chain to learn and test on.

`devnet up` leaves an anvil running with the suite deployed, the vault funded by its first
LP and five test wallets funded (perpdex.devtools.devnet does the work over plain JSON-RPC); point
the other commands at it with `--rpc URL` or PERPDEX_RPC_URL. `faucet` mints mock USDC and
ETH on such a chain only.
"""

from __future__ import annotations

from typing import Annotated

import typer

from perpdex.cli import say
from perpdex.errors import PerpdexError

app = typer.Typer(
    help="A local devnet: anvil with perpdex deployed and funded.", add_completion=False
)
faucet_app = typer.Typer(add_completion=False)

Port = Annotated[int, typer.Option("--port", min=1, max=65_535, help="anvil port.")]


def _exit(rc: int) -> None:
    if rc != 0:
        raise typer.Exit(rc)


@app.command("up")
def up(port: Port = 8545) -> None:
    """Start anvil (left running), deploy, fund the vault and five test wallets."""
    from perpdex.devtools.devnet import DevnetError, devnet_up

    try:
        _exit(devnet_up(port))
    except DevnetError as e:
        raise PerpdexError(str(e)) from None


@app.command("down")
def down(port: Port = 8545) -> None:
    """Stop the anvil `perpdex devnet up` started on --port."""
    from perpdex.devtools.devnet import devnet_down

    _exit(devnet_down(port))


@faucet_app.command("faucet")
def faucet(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="Receiver (0x...).")],
    amount: Annotated[
        int, typer.Option("--amount", min=0, help="Mock USDC to mint (whole dollars).")
    ] = 10_000,
) -> None:
    """Mint mock USDC and 10 ETH to ADDRESS on a local devnet (never on a live network)."""
    from perpdex.deploy import manifest_path
    from perpdex.devtools.devnet import DevnetError
    from perpdex.devtools.devnet import faucet as mint

    rpc = getattr(ctx.obj, "rpc", None) or "http://127.0.0.1:8545"
    try:
        mint(rpc, manifest_path("local"), address, amount)
    except DevnetError as e:
        raise PerpdexError(str(e)) from None
    say(f"[green]✓[/] {amount:,} USDC and 10 ETH to {address} on {rpc}")
