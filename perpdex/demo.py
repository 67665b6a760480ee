"""The end-to-end demo behind `ape run demo` (and `make demo`), as small steps.

Each step takes and returns plain values so later steps (trading, liquidation, ...) can be
appended in `run()` and tested on their own. Needs a connected ape provider and a
deployment manifest written by `ape run deploy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex.deploy import Protocol, load_protocol
from perpdex.units import WAD, to_units

# Protocol fields that later issues add -> contract name (loaded when the manifest has them;
# add the auction here when deploy_system records it).
# Trader name -> (ape test account index, USDC deposited).
TRADERS: dict[str, tuple[int, Decimal]] = {
    "alice": (1, Decimal(25_000)),
    "bob": (2, Decimal(40_000)),
}


@dataclass
class Trader:
    name: str
    wallet: Any  # ape account
    deposit: Decimal  # settlement-token amount to deposit
    account_id: int | None = None
    deposited_units: int = 0


@dataclass
class DemoState:
    protocol: Protocol
    traders: list[Trader] = field(default_factory=list)


# --- loading --------------------------------------------------------------------------


def account_label(account_id: int) -> str:
    """Short form of an account id (`owner << 96 | index`): 0x7099…79C8/0."""
    from eth_utils import to_checksum_address

    owner = to_checksum_address((account_id >> 96).to_bytes(20, "big"))
    return f"{owner[:6]}…{owner[-4:]}/{account_id & (2**96 - 1)}"


# --- steps ------------------------------------------------------------------------------


def create_traders(
    accounts: Any, traders: dict[str, tuple[int, Decimal]] = TRADERS
) -> list[Trader]:
    """Traders backed by ape test accounts (`accounts` = ape's `accounts.test_accounts`)."""
    return [Trader(name, accounts[i], amount) for name, (i, amount) in traders.items()]


def fund_traders(p: Protocol, traders: list[Trader]) -> None:
    """Mint test USDC to each wallet and approve the clearinghouse."""
    decimals = p.system.settlement_decimals
    for t in traders:
        units = to_units(t.deposit, decimals)
        p.token.mint(t.wallet, units, sender=t.wallet)
        p.token.approve(p.clearinghouse, units, sender=t.wallet)


def open_accounts(p: Protocol, traders: list[Trader]) -> None:
    """One isolated-margin sub-account per trader."""
    for t in traders:
        tx = p.clearinghouse.open_account("main", False, sender=t.wallet)
        t.account_id = int(tx.return_value)


def deposit(p: Protocol, traders: list[Trader]) -> None:
    decimals = p.system.settlement_decimals
    for t in traders:
        assert t.account_id is not None, "open_accounts() first"
        units = to_units(t.deposit, decimals)
        p.ops.deposit(t.account_id, p.token, units, sender=t.wallet)
        t.deposited_units += units


# --- tables -----------------------------------------------------------------------------


def deployment_table(p: Protocol, title: str | None = None) -> Table:
    table = Table(title=title or f"perpdex deployment ({p.network})")
    table.add_column("contract")
    table.add_column("address", style="cyan", no_wrap=True, min_width=42)
    rows: list[tuple[str, Any]] = [
        ("Clearinghouse (+Ops, Admin)", p.clearinghouse),
        ("OracleRouter", p.oracle),
        (f"token ({p.system.settlement_symbol})", p.token),
    ]
    for sym, feeds in p.feeds.items():
        rows += [(f"{sym} feed {i}", f) for i, f in enumerate(feeds)]
    if p.sequencer is not None:
        rows.append(("sequencer feed", p.sequencer))
    for name in ("vault", "auction", "lens"):
        if (c := getattr(p, name)) is not None:
            rows.append((name, c))
    for name, c in rows:
        table.add_row(name, str(c.address))
    return table


def balance_table(p: Protocol, traders: list[Trader]) -> Table:
    sym = p.system.settlement_symbol
    unit = Decimal(10) ** p.system.settlement_decimals
    table = Table(title="trader balances")
    table.add_column("trader")
    table.add_column("account id (owner/index)", style="cyan", no_wrap=True)
    table.add_column(f"deposited ({sym})", justify="right")
    table.add_column("balance (USD)", justify="right")
    for t in traders:
        bal = "-" if t.account_id is None else p.clearinghouse.balance_of(t.account_id, 0)
        table.add_row(
            t.name,
            "-" if t.account_id is None else account_label(t.account_id),
            f"{Decimal(t.deposited_units) / unit:,.2f}",
            "-" if bal == "-" else f"{Decimal(int(bal)) / WAD:,.2f}",
        )
    return table


# --- the demo ---------------------------------------------------------------------------


def run(console: Console | None = None, key: str | None = None) -> DemoState:
    """Deployment summary -> traders -> mint -> sub-accounts -> deposits -> balances."""
    from ape import accounts

    console = console or Console()
    p = load_protocol(key)
    console.print(deployment_table(p))
    state = DemoState(p, create_traders(accounts.test_accounts))
    console.print(f"minting test {p.system.settlement_symbol} for the traders")
    fund_traders(p, state.traders)
    open_accounts(p, state.traders)
    opened = ", ".join(f"{t.name} {account_label(t.account_id or 0)}" for t in state.traders)
    console.print(f"opened isolated-margin sub-accounts: {opened}")
    console.print(f"depositing {p.system.settlement_symbol}")
    deposit(p, state.traders)
    console.print(balance_table(p, state.traders))
    return state
