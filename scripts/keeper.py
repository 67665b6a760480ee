"""`ape run keeper [--network ...]`: the liquidation keeper (perpdex/keepers/liquidator.py).

The same loop as `perpdex keeper liquidate`, configured from the environment:

    PERPDEX_KEEPER_ACCOUNT   ape account alias that signs (default: test account 5 on
                             local networks); APE_ACCOUNTS_<alias>_PASSPHRASE unlocks it
    PERPDEX_KEEPER_SUB       the signer's sub-account for rewards and takes (default 0;
                             on local networks one is opened and funded if missing)
    PERPDEX_KEEPER_STATE     state file (default .keeper/liquidator-<network>.json)
    PERPDEX_KEEPER_INTERVAL  seconds between ticks (default 2)
    PERPDEX_KEEPER_TICKS     stop after this many ticks (default: run until Ctrl-C)
    PERPDEX_KEEPER_MIN_PROFIT  USD after gas for a take (default 1)
    PERPDEX_KEEPER_HEDGE     1: close taken positions against the vault
"""

from __future__ import annotations

import logging
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from ape.cli import ConnectedProviderCommand
from rich.console import Console
from rich.logging import RichHandler

from perpdex.config import exit_if_rpc_unset
from perpdex.deploy import load_protocol, network_key
from perpdex.errors import PerpdexError
from perpdex.keepers.liquidator import Liquidator, LiquidatorConfig
from perpdex.keepers.state import StateLock

# ape runs a script that defines `cli` at discovery, before it connects to --network: a
# network whose RPC URL variable is unset ends here in one line, not in ape's
# "Invalid uri: $VAR" (or a traceback)
exit_if_rpc_unset(sys.argv)

LOCAL_KEEPER_INDEX = 5
LOCAL_KEEPER_DEPOSIT = 500_000  # USDC minted and deposited on local networks


def signer() -> Any:
    from ape import accounts, networks

    alias = os.environ.get("PERPDEX_KEEPER_ACCOUNT")
    if alias:
        acct = accounts.load(alias)
        if f"APE_ACCOUNTS_{alias}_PASSPHRASE" in os.environ:
            acct.set_autosign(True)
        return acct
    if networks.provider.network.is_dev:
        return accounts.test_accounts[LOCAL_KEEPER_INDEX]
    raise PerpdexError(
        "set PERPDEX_KEEPER_ACCOUNT=<ape account alias> to sign on this network "
        "(`ape accounts import <alias>`)"
    )


def keeper_account(p: Any, who: Any, sub: int) -> int:
    """The signer's sub-account `sub`; on a development chain it is opened and funded."""
    from ape import networks

    ch = p.clearinghouse
    if int(ch.sub_account_count(who)) > sub:
        return int(ch.account_id(who, sub))
    if not networks.provider.network.is_dev:
        raise PerpdexError(
            f"{who.address} has no sub-account {sub}; open and fund it first "
            "(`perpdex open-account keeper`, `perpdex deposit AMOUNT`)"
        )
    acct = int(ch.open_account("keeper", False, sender=who).return_value)
    units = LOCAL_KEEPER_DEPOSIT * 10**p.system.settlement_decimals
    p.token.mint(who, units, sender=who)
    p.token.approve(ch, units, sender=who)
    p.ops.deposit(acct, p.token, units, sender=who)
    return acct


def main() -> None:
    console = Console()
    log = logging.getLogger("perpdex.keepers")
    log.handlers = [RichHandler(show_path=False, markup=False)]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        p = load_protocol()
        who = signer()
        sub = int(os.environ.get("PERPDEX_KEEPER_SUB", "0"))
        cfg = LiquidatorConfig(
            keeper_account=keeper_account(p, who, sub),
            min_profit=Decimal(os.environ.get("PERPDEX_KEEPER_MIN_PROFIT", "1")),
            hedge=os.environ.get("PERPDEX_KEEPER_HEDGE", "0") == "1",
        )
        state = Path(
            os.environ.get("PERPDEX_KEEPER_STATE", f".keeper/liquidator-{network_key()}.json")
        )
        with StateLock(state):  # a second keeper on this state file stops here
            keeper = Liquidator(p, who, cfg, state_path=state, name=who.address[:10])
            ticks = os.environ.get("PERPDEX_KEEPER_TICKS")
            console.print(
                f"keeper {who.address} on {p.network}, state {state} "
                f"(cursor {keeper.state.cursor}); Ctrl-C stops it"
            )
            n = keeper.run(
                interval=float(os.environ.get("PERPDEX_KEEPER_INTERVAL", "2")),
                ticks=int(ticks) if ticks else None,
            )
        console.print(f"stopped after {n} tick(s); actions: {keeper.state.counts}")
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]stopped; state saved[/]")


@click.command(
    cls=ConnectedProviderCommand,
    short_help="Run the liquidation keeper (settings from PERPDEX_KEEPER_*).",
)
def cli() -> None:
    main()
