"""`ape run deploy [--network ...]`: deploy, resume or verify the perpdex suite.

Network key: perpdex.deploy.network_key() (PERPDEX_NETWORK overrides), which selects the
config/networks.yaml entry and the manifest deployments/<key>.json. Re-running on a
complete deployment sends no transaction and says so.

Deployer: PERPDEX_DEPLOYER (an ape account alias) if set; otherwise ape test account 0 on
local networks and forks; otherwise networks.yaml[<key>].deployer. A keyfile account is
unlocked without a prompt from APE_ACCOUNTS_<alias>_PASSPHRASE (ape's own variable), e.g.
    APE_ACCOUNTS_perpdex_deployer_PASSPHRASE=... ape run deploy --network arbitrum:sepolia
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from ape.cli import ConnectedProviderCommand
from rich.console import Console

from perpdex.config import exit_if_rpc_unset, load_networks
from perpdex.deploy import deploy_system, manifest_path, network_key
from perpdex.errors import ConfigError, PerpdexError
from perpdex.showcase.demo import deployment_table

# ape runs a script that defines `cli` at discovery, before it connects to --network: a
# network whose RPC URL variable is unset ends here in one line, not in ape's
# "Invalid uri: $VAR" (or a traceback)
exit_if_rpc_unset(sys.argv)


def pick_deployer(key: str) -> Any:
    from ape import accounts, networks

    net = networks.provider.network
    alias = os.environ.get("PERPDEX_DEPLOYER")
    if not alias and net.is_dev:
        return accounts.test_accounts[0]
    alias = alias or load_networks().get(key, {}).get("deployer")
    if not alias:
        raise ConfigError(
            f"no deployer for {key!r}: set PERPDEX_DEPLOYER=<ape account alias> or `deployer:` "
            f"in config/networks.yaml[{key}] (create one: `ape accounts import <alias>`)"
        )
    if alias not in accounts.aliases:
        raise ConfigError(
            f"ape has no account {alias!r}; create it with `ape accounts import {alias}` "
            "(or `ape accounts generate`), or set PERPDEX_DEPLOYER to an existing alias"
        )
    acct = accounts.load(alias)
    var = f"APE_ACCOUNTS_{alias}_PASSPHRASE"
    if var not in os.environ and not sys.stdin.isatty():
        raise ConfigError(
            f"cannot unlock {alias!r} without a terminal: set its passphrase in the "
            f"environment, e.g. `env {var}=... ape run deploy --network {net.choice}`"
        )
    acct.set_autosign(True)  # reads APE_ACCOUNTS_<alias>_PASSPHRASE, else prompts once
    if acct.balance == 0:
        raise ConfigError(
            f"deployer {alias} ({acct.address}) has no gas money on {net.choice}; fund it "
            "from the network's faucet"
        )
    return acct


def main() -> None:
    from ape import chain

    console = Console()
    try:
        key = network_key()
        deployer = pick_deployer(key)
        path = manifest_path(key)
        console.print(
            f"deploying perpdex to [bold]{key}[/] (chain {chain.chain_id}) from "
            f"{deployer.address}; manifest {path}"
        )
        p = deploy_system(deployer, key=key, manifest=path, log=console.print)
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
    console.print(deployment_table(p))
    sent = int(p.extra.get("transactions", 0))
    if sent:
        console.print(f"[green]{sent} transaction(s) sent; manifest saved to {path}[/]")
    else:
        console.print("[green]already deployed and configured: nothing changed (0 transactions)[/]")


@click.command(
    cls=ConnectedProviderCommand, short_help="Deploy, resume or verify the perpdex suite."
)
def cli() -> None:
    main()
