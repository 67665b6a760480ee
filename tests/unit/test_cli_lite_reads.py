"""Every read command with `--rpc` runs without ape (issue 11: read commands start in
under 1 s) and prints what the ape path prints for the same account.

Each command runs twice on the same chain state: in a subprocess with `--rpc URL`
(the standalone client, perpdex.sdk.lite), reporting which modules it imported, and
in-process through ape (`cli`, the connected provider); their `--json` documents must be
equal and the subprocess must not have imported ape or web3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ok

from perpdex.sdk.client import PerpdexClient

ROOT = Path(__file__).resolve().parents[2]
USDC = 10**6
OPERATOR = "test:2"

# run the CLI in a fresh interpreter; the last stderr line lists the ape/web3 modules loaded
_RUN_CLI = """
import sys
from perpdex.cli.main import app
code = 0
try:
    app(sys.argv[1:], prog_name="perpdex")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m == "ape" or m.startswith(("ape.", "ape_", "web3")))
print("IMPORTED:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def lite_cli(*args: str) -> tuple[str, list[str]]:
    """stdout of `perpdex ARGS` in a subprocess, and the ape/web3 modules it imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "COLUMNS": "220"}
    env.pop("PERPDEX_RPC_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTED:")][-1]
    return proc.stdout, [m for m in line.removeprefix("IMPORTED:").split(",") if m]


@pytest.fixture
def strategies(protocol: Any, trader: Any, accounts: Any, cli_pool: None) -> list[int]:
    """The trader's 'main' (isolated: long BTC, short ETH) and 'hedge' (portfolio: short
    BTC, long SOL, a loss cap), with an operator on 'main'."""
    client = PerpdexClient.from_protocol(protocol, trader)
    protocol.token.mint(trader, 50_000 * USDC, sender=trader)
    main = client.open_account("main")
    hedge = client.open_account("hedge", portfolio=True)
    client.deposit(main, 20_000)
    client.deposit(hedge, 15_000)
    client.trade(main, "BTC", Decimal("0.1"))
    client.trade(main, "ETH", Decimal("-2"))
    client.trade(hedge, "BTC", Decimal("-0.05"))
    client.trade(hedge, "SOL", Decimal("30"))
    client.set_loss_cap(hedge, 5_000)
    client.set_operator(main, accounts[2], True)
    return [main, hedge]


READS = [
    ["account"],
    ["portfolio"],
    ["portfolio", "--sub", "1", "--shock", "BTC=-30%,SOL=+10%"],
    ["portfolio", "--all"],
    ["portfolio", "--all", "--shock", "ETH=+20%"],
    ["history"],
    ["history", "--all"],
    ["loss-cap", "show", "--sub", "1"],
    ["operator", "check", "{operator}"],
    ["quote"],
    ["quote", "BTC", "0.1", "--sub", "1"],
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_read_command__with_rpc__no_ape_and_the_ape_paths_output(
    args, cli, manifest, chain, accounts, strategies
):
    args = [a.format(operator=accounts[2].address) for a in args]
    rpc = ["--rpc", str(chain.provider.uri), "--deployment", str(manifest), "-a", "test:1"]
    out, imported = lite_cli(*rpc, *args, "--json")
    assert imported == []
    assert json.loads(out) == json.loads(ok(cli(*args, "--json")))


def test_lp_status__with_rpc_and_an_address__no_ape_and_the_ape_paths_output(
    cli, manifest, chain, admin, strategies
):
    rpc = ["--rpc", str(chain.provider.uri), "--deployment", str(manifest)]
    out, imported = lite_cli(*rpc, "-a", str(admin.address), "lp", "status", "--json")
    assert imported == []
    doc = json.loads(out)
    assert doc == json.loads(ok(cli("lp", "status", "--owner", str(admin.address), "--json")))
    assert Decimal(doc["shares"]) > 0  # the comparison covers a real position


def test_default_account__with_rpc__is_test_0(cli, manifest, chain, strategies):
    rpc = ["--rpc", str(chain.provider.uri), "--deployment", str(manifest)]
    out, imported = lite_cli(*rpc, "account", "--json")
    assert imported == []
    assert json.loads(out) == json.loads(ok(cli("account", "--json", account="test:0")))
