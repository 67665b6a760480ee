"""The standalone client (perpdex.sdk.lite) against the `protocol` fixture: every figure
equals the ape client's (`PerpdexClient`) to the wei, a trade signed with the trader's key
records the Fill the chain emitted, and refusals are `TransactionRejected` with a hint.

The lite client talks raw JSON-RPC to the same anvil as ape, so its transactions are part
of each test's chain snapshot and reverted with it.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from perpdex.errors import DeploymentNotFound, TransactionRejected
from perpdex.sdk.client import REVERT_HINTS, Deployment, PerpdexClient
from perpdex.sdk.lite import ReadClient, RpcError, TradeClient
from perpdex.units import from_wad

USDC = 10**6
POOL_USD = 2_000_000


@pytest.fixture
def rpc_url(chain: Any) -> str:
    return str(chain.provider.uri)


@pytest.fixture
def deployment(protocol: Any) -> Deployment:
    return Deployment.from_protocol(protocol)


@pytest.fixture
def ape_client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def acct(ape_client: PerpdexClient, protocol: Any, trader: Any, admin: Any) -> int:
    """A seeded pool, and the trader's sub-account 0 holding $50,000 and long 0.5 BTC."""
    units = POOL_USD * USDC
    protocol.token.mint(admin, units, sender=admin)
    protocol.token.approve(protocol.vault, units, sender=admin)
    protocol.vault.deposit(units, admin, sender=admin)
    protocol.token.mint(trader, 60_000 * USDC, sender=trader)
    a = ape_client.open_account("main")
    ape_client.deposit(a, 50_000)
    ape_client.trade(a, "BTC", Decimal("0.5"))
    return a


@pytest.fixture
def reader(rpc_url: str, deployment: Deployment) -> ReadClient:
    return ReadClient(rpc_url, deployment)


@pytest.fixture
def lite_trader(rpc_url: str, deployment: Deployment, trader: Any) -> TradeClient:
    return TradeClient(rpc_url, deployment, trader.private_key)


def test_markets__equal_the_ape_client(reader, ape_client, acct):
    lite = reader.markets()
    assert lite == ape_client.markets()
    assert any(m.long_oi > 0 for m in lite)  # the comparison covers a non-zero figure


def test_account_figures__equal_the_ape_client(reader, ape_client, acct, trader):
    assert reader.summary(acct) == ape_client.summary(acct)
    assert reader.balances(acct) == ape_client.balances(acct)
    assert reader.margin(acct).initial > 0
    assert reader.accounts(trader) == ape_client.accounts(trader)
    assert reader.collaterals() == ape_client.collaterals()
    assert reader.position_size(acct, "BTC") == ape_client.position_size(acct, "BTC")


@pytest.mark.parametrize("size", ["0.25", "-1.5"])
def test_quote__equals_the_ape_client_in_the_same_block(reader, ape_client, acct, chain, size):
    block = chain.blocks.head.number
    lite = reader.quote(acct, "BTC", Decimal(size), block_id=block)
    ape = ape_client.quote(acct, "BTC", Decimal(size), block_id=block)
    assert lite == ape
    assert lite.view.fee > 0
    assert lite.acceptable_price() == ape.acceptable_price()


def test_call_refused_by_the_lens__raises_with_reason_and_hint(reader, acct):
    # market 99 passes no client-side check: the lens itself refuses it
    with pytest.raises(TransactionRejected) as info:
        reader.lens.call("quote", acct, 99, 10**18)
    assert info.value.reason == "lens: unknown market"
    assert info.value.hint == REVERT_HINTS["lens: unknown market"]


def test_trade__records_the_fill_the_chain_emitted(lite_trader, ape_client, protocol, acct, chain):
    fill = lite_trader.trade(acct, "BTC", Decimal("0.3"))
    receipt = chain.provider.get_receipt(fill.tx_hash)
    [ev] = [e for e in receipt.decode_logs(protocol.clearinghouse.Fill) if e.account == acct]
    assert fill.size_delta == from_wad(int(ev.size_delta)) == Decimal("0.3")
    assert fill.price == from_wad(int(ev.price))
    assert fill.fee == from_wad(int(ev.fee)) > 0
    assert fill.realized_pnl == from_wad(int(ev.realized_pnl))
    assert fill.funding_paid == from_wad(int(ev.funding_paid))
    assert fill.size_after == from_wad(int(ev.size)) == Decimal("0.8")
    assert fill.block_number == receipt.block_number
    assert fill.acceptable_price == from_wad(fill.quote.acceptable_price())
    assert ape_client.position_size(acct, "BTC") == Decimal("0.8")


def test_close__flattens_and_reports_the_realised_pnl(lite_trader, ape_client, acct):
    fill = lite_trader.close(acct, "BTC")
    assert fill.size_delta == Decimal("-0.5") and fill.size_after == 0
    assert ape_client.position_size(acct, "BTC") == 0


def test_deposit_and_withdraw__move_the_balance(lite_trader, ape_client, acct, protocol, trader):
    before = ape_client.balances(acct)["USDC"]
    lite_trader.deposit(acct, Decimal("250.5"))
    assert ape_client.balances(acct)["USDC"] == before + Decimal("250.5")
    wallet = int(protocol.token.balanceOf(trader))
    lite_trader.withdraw(acct, Decimal("100"))
    assert int(protocol.token.balanceOf(trader)) == wallet + 100 * USDC
    assert ape_client.balances(acct)["USDC"] == before + Decimal("150.5")


def test_open_account__returns_the_next_id(lite_trader, ape_client, trader, acct):
    new = lite_trader.open_account("second", portfolio=True)
    assert new == ape_client.account_id(trader, 1)
    assert ape_client.account(new).portfolio


def test_trade__refused__raises_transaction_rejected_with_reason_and_hint(
    lite_trader, ape_client, acct, chain
):
    nonce = chain.provider.get_nonce(lite_trader.address)
    with pytest.raises(TransactionRejected) as info:
        lite_trader.trade(acct, "BTC", Decimal("0.1"), acceptable_price=Decimal(1))
    assert info.value.reason == "clearinghouse: price worse than acceptable"
    assert info.value.hint == REVERT_HINTS[info.value.reason]
    assert chain.provider.get_nonce(lite_trader.address) == nonce  # refused before signing
    with pytest.raises(TransactionRejected) as info:
        lite_trader.withdraw(acct, Decimal("1000000"))
    assert info.value.reason == "clearinghouse: insufficient balance"
    assert ape_client.position_size(acct, "BTC") == Decimal("0.5")


def test_results_are_the_ape_clients_types(reader, ape_client, acct):
    for lite, ape in ((reader.quote(acct, "BTC", 1), ape_client.quote(acct, "BTC", 1)),):
        assert type(lite) is type(ape)
        assert {f.name for f in dataclasses.fields(lite)} == {
            f.name for f in dataclasses.fields(ape)
        }


def test_other_chain__refused(rpc_url, deployment):
    with pytest.raises(DeploymentNotFound, match="is for chain"):
        ReadClient(rpc_url, dataclasses.replace(deployment, chain_id=deployment.chain_id + 1))


def test_unreachable_node__raises_rpc_error(deployment):
    with pytest.raises(RpcError, match="no JSON-RPC answer"):
        ReadClient("http://127.0.0.1:9", deployment)


def test_check_order__equals_the_ape_client(reader, ape_client, acct):
    for size in (Decimal("0.2"), Decimal("-40")):
        assert reader.check_order(acct, "BTC", size) == ape_client.check_order(acct, "BTC", size)


# --- the CLI's fast path -----------------------------------------------------------------------

_RUN_CLI = """
import sys
from perpdex.cli.main import app
try:
    app(sys.argv[1:], prog_name="perpdex")
except SystemExit as e:
    code = e.code
ape = sorted(m for m in sys.modules if m == "ape" or m.startswith(("ape.", "ape_", "web3")))
print("IMPORTED:" + ",".join(ape), file=sys.stderr)
sys.exit(code)
"""


def _cli(*args: str) -> tuple[Any, list[str]]:
    import os
    import subprocess
    import sys

    from perpdex.config import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    env.pop("PERPDEX_RPC_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTED:")][-1]
    imported = [m for m in line.removeprefix("IMPORTED:").split(",") if m]
    return proc, imported


def test_cli_rpc_quote__reads_without_importing_ape(
    rpc_url, deployment, ape_client, acct, tmp_path, chain
):
    import json

    from perpdex.cli import jsonout

    manifest = deployment.write(tmp_path / "local.json")
    proc, imported = _cli("--rpc", rpc_url, "--deployment", str(manifest), "quote", "--json")
    assert imported == []
    expected = json.loads(json.dumps(jsonout.markets(deployment.network, ape_client.markets())))
    assert json.loads(proc.stdout) == expected

    proc, imported = _cli(
        "--rpc", rpc_url, "--deployment", str(manifest),
        "quote", "BTC", "-0.25", "--account-id", hex(acct), "--json",
    )  # fmt: skip
    assert imported == []
    out = json.loads(proc.stdout)
    check = ape_client.check_order(acct, "BTC", Decimal("-0.25"))
    assert Decimal(out["fill_price"]) == check.quote.fill_price
    assert out["accepted"] is True
    assert Decimal(out["max_size"]) == check.max_size
