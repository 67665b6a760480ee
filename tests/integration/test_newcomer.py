"""The newcomer's walkthrough (issue 11's acceptance test), through the real CLI.

Everything a new trader does, each step a `perpdex` subprocess as a shell would run it,
against `perpdex devnet up` on a non-default port (its own anvil and manifest folder, so
nothing of the user's is touched): faucet, deposit, LP, trades in three markets, a mode
switch, a loss cap hit by a crash and closed by the keeper, withdraw everything to zero.
At the end every transaction on the chain is checked to have been
sent with a gas limit from an estimate, never the block gas limit (what live networks do).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from perpdex.devtools.devnet import free_port, rpc

BIN = Path(sys.executable).parent
TRADER = "test:6"  # not funded by `devnet up`: the faucet pays for everything
LP = "test:1"  # funded with 100,000 USDC by `devnet up`
TRADER_ADDRESS = "0x976EA74026E726554dB657fA54763abd0C3a0aa9"  # ape/anvil test account 6


class Devnet:
    """The newcomer's shell: `perpdex` against one devnet. APE_DATA_FOLDER: an ape data
    folder of its own, empty as a newcomer's (no keyfile accounts are used: test
    accounts come from the mnemonic). In the machine's shared one, every ape command
    compared its node with each entry ape's ended sessions leave in processes/nodes.json
    (130 here), ~1.2 s of the ~5.5 s of CPU of each of the walkthrough's ~13 commands
    that send a transaction."""

    def __init__(self, port: int, folder: Path, ape_data: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.env = {
            **os.environ,
            "PERPDEX_RPC_URL": self.url,
            "PERPDEX_DEPLOYMENTS_DIR": str(folder),
            "APE_DATA_FOLDER": str(ape_data),
            "COLUMNS": "200",
        }

    def run(self, *args: str, ok: bool = True) -> str:
        proc = subprocess.run(
            [str(BIN / "perpdex"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        out = proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, f"perpdex {' '.join(args)} failed:\n{out}"
        return out

    def as_trader(self, *args: str, ok: bool = True) -> str:
        return self.run("-a", TRADER, *args, ok=ok)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    d = Devnet(free_port(), tmp_path_factory.mktemp("deployments"), tmp_path_factory.mktemp("ape"))
    d.run("devnet", "up", "--port", str(d.port))
    try:
        yield d
    finally:
        d.run("devnet", "down", "--port", str(d.port), ok=False)


def test_newcomer_walkthrough(devnet: Devnet, tmp_path: Path) -> None:
    d = devnet
    assert "60,000 USDC" in d.run("faucet", TRADER_ADDRESS, "--amount", "60000")
    d.as_trader("open-account", "main")
    d.as_trader("deposit", "50000")
    d.run("-a", LP, "lp", "deposit", "50000")
    for symbol, size in (("BTC", "0.2"), ("ETH", "-3"), ("SOL", "50")):
        assert "would be accepted" in d.as_trader("quote", symbol, size)
        d.as_trader("trade", symbol, size)
    assert "portfolio" in d.as_trader("mode", "portfolio")
    book = json.loads(d.as_trader("portfolio", "--json"))
    sizes = {p["symbol"]: float(p["size"]) for p in book["positions"]}
    assert sizes == {"BTC": 0.2, "ETH": -3.0, "SOL": 50.0}

    # a strategy stop: a loss cap just under today's equity, then SOL crashes 40%
    equity = float(book["margin"]["equity"])
    d.as_trader("loss-cap", "set", f"{equity - 500:.0f}")
    crash = tmp_path / "crash.csv"
    crash.write_text("t,BTC,ETH,SOL\n0,100000,3000,90\n")
    d.run("keeper", "prices", "--path", str(crash), "--steps", "1", "--warp")
    assert "triggered" in d.run("-a", LP, "keeper", "loss-caps", "--once").lower()
    after = json.loads(d.as_trader("portfolio", "--json"))
    assert after["positions"] == []

    # below its floor nothing may leave the account until the owner lowers the cap
    refused = d.as_trader("withdraw", "--all", ok=False)
    assert "loss cap" in refused and "loss-cap clear" in refused, refused
    d.as_trader("loss-cap", "clear")
    d.as_trader("withdraw", "--all")
    left = json.loads(d.as_trader("account", "--json"))
    balances = left["accounts"][0]["balances"]
    # exactly zero: the rest below one USDC unit (PnL is kept in WAD) goes to fees
    assert all(v in ("0", None) or Decimal(v) == 0 for v in balances.values()), balances

    # every transaction sent with an estimate-based limit, none with the block gas limit
    head = int(rpc(d.url, "eth_blockNumber"), 16)
    sent = 0
    for n in range(1, head + 1):
        block = rpc(d.url, "eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            sent += 1
            limit = int(tx["gas"], 16)
            used = int(rpc(d.url, "eth_getTransactionReceipt", [tx["hash"]])["gasUsed"], 16)
            # an estimate padded x1.3 + 30k (perpdex.sdk.gas), never the block gas limit
            assert limit < int(block["gasLimit"], 16) // 2, tx["hash"]
            assert used <= limit <= used * 2 + 100_000, (tx["hash"], used, limit)
    assert sent > 20
