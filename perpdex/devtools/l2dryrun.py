"""Dry run of the L2 testnet deploy (`make test-fork`):
`python -m perpdex.devtools.devnet l2-dry-run`.

For Arbitrum, Base and Optimism Sepolia in turn, an anvil imitates the testnet closely
enough that the real entry point cannot tell the difference:
- the chain's id (ape checks it against `<eco>:sepolia`), block gas limit, block time
  (interval mining: a transaction waits for its block) and base fee; OP-stack chains run
  anvil's `--network optimism` mode;
- no unlocked or pre-funded accounts (`--accounts 0`): the deployer is an ape keyfile
  account made for the run (a fresh key encrypted with eth-account, the format `ape
  accounts import` writes) in a throwaway APE_DATA_FOLDER, funded by `anvil_setBalance`
  like a faucet would.
Then `ape run deploy --network <eco>:sepolia` runs in a subprocess with what a user exports
(the chain's RPC URL variable, PERPDEX_DEPLOYER, APE_ACCOUNTS_<alias>_PASSPHRASE) and no
terminal, the manifest going to a throwaway PERPDEX_DEPLOYMENTS_DIR. Checked: the run
succeeds; every transaction comes from the keyfile account with a padded gas estimate
(limit >= gas used + perpdex.sdk.gas.GAS_HEADROOM, and nowhere near the block gas limit,
which ape's local-network path would use); the manifest names this chain and deployer and
each address in it has code; a second run sends nothing. A table per chain gives the
figures. Nothing here touches ~/.ape or deployments/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from perpdex.config import ROOT
from perpdex.devtools.devnet import (
    ANVIL,
    APE,
    LOG_DIR,
    Anvil,
    DevnetError,
    _die_with_parent,
    console,
    free_port,
)
from perpdex.sdk import gas

ALIAS = "perpdex_l2_dry_run"
FUND_WEI = 5 * 10**17  # 0.5 ETH: a faucet-sized balance
GWEI = 10**9
MAX_PROBLEMS_SHOWN = 8


@dataclass(frozen=True)
class L2:
    """What the imitation copies from one public testnet. The gas limits, block times and
    base fees are about the public values when this was written; what matters is their
    order of magnitude (a transaction sent with Arbitrum's block gas limit would need
    ~10^5 ETH at its base fee)."""

    ecosystem: str  # ape ecosystem; the network is `<ecosystem>:sepolia`
    chain_id: int
    rpc_env: str  # the variable ape-config.yaml reads the RPC URL from
    block_gas_limit: int
    block_time: float  # seconds
    base_fee: int  # wei
    op_stack: bool

    @property
    def key(self) -> str:
        return f"{self.ecosystem}-sepolia"


CHAINS: dict[str, L2] = {
    c.ecosystem: c
    for c in (
        # Arbitrum reports a 2^50 block gas limit (its real per-transaction cap is lower)
        L2("arbitrum", 421_614, "ARBITRUM_SEPOLIA_RPC_URL", 2**50, 0.25, GWEI // 10, False),
        # OP-stack: 2 s blocks; run at 1 s to keep `make test-fork` short
        L2("base", 84_532, "BASE_SEPOLIA_RPC_URL", 60_000_000, 1.0, GWEI // 1000, True),
        L2("optimism", 11_155_420, "OPTIMISM_SEPOLIA_RPC_URL", 60_000_000, 1.0, GWEI // 1000, True),
    )
}
# Variables a user's shell might carry that would redirect the run: dropped from the
# subprocess's environment before the run's own are set.
_SCRUB = ("PERPDEX_NETWORK", "PERPDEX_DEPLOYER", "PERPDEX_DEPLOYMENTS_DIR", "APE_DATA_FOLDER")


@dataclass
class L2Anvil(Anvil):
    """An anvil imitating one L2 testnet: its chain id, no dev accounts, interval mining."""

    l2: L2 | None = None

    def command(self) -> list[str]:
        assert self.l2 is not None
        c = self.l2
        cmd = [
            str(ANVIL),
            "--port", str(self.port),
            "--chain-id", str(c.chain_id),
            "--accounts", "0",
            "--gas-limit", str(c.block_gas_limit),
            "--block-time", str(c.block_time),
            "--block-base-fee-per-gas", str(c.base_fee),
            "--steps-tracing",
            "--silent",
        ]  # fmt: skip
        if c.op_stack:
            cmd += ["--network", "optimism"]
        return cmd + self.extra_args


@dataclass
class Run:
    rc: int
    seconds: float
    output: str
    reported: int | None  # "N transaction(s) sent" as the script printed it


@dataclass
class Outcome:
    l2: L2
    deployer: str = ""
    first: Run | None = None
    second: Run | None = None
    txs: list[dict[str, Any]] = field(default_factory=list)  # tx + receipt fields
    contracts: int = 0
    problems: list[str] = field(default_factory=list)


def write_keyfile(data_folder: Path, alias: str, passphrase: str) -> str:
    """A fresh key as ape's keyfile account `alias` (the JSON `ape accounts import`
    writes: eth-account's encrypted keystore); returns its address."""
    from eth_account import Account

    acct = Account.create()
    folder = data_folder / "accounts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{alias}.json"
    path.write_text(json.dumps(Account.encrypt(acct.key, passphrase)))
    path.chmod(0o600)
    return str(acct.address)


def run_deploy(l2: L2, url: str, data_folder: Path, manifests: Path, passphrase: str) -> Run:
    """`ape run deploy --network <eco>:sepolia` as a user would run it: their environment
    plus the RPC URL variable, the deployer alias and its passphrase; no terminal."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        {
            l2.rpc_env: url,
            "PERPDEX_DEPLOYER": ALIAS,
            f"APE_ACCOUNTS_{ALIAS}_PASSPHRASE": passphrase,
            # throwaway: never ~/.ape nor deployments/
            "APE_DATA_FOLDER": str(data_folder),
            "PERPDEX_DEPLOYMENTS_DIR": str(manifests),
            "PYTHONWARNINGS": "ignore::UserWarning",
        }
    )
    cmd = [str(APE), "run", "deploy", "--network", f"{l2.ecosystem}:sepolia"]
    console.print(f"[bold]$ {l2.rpc_env}={url} PERPDEX_DEPLOYER={ALIAS} {' '.join(cmd)}[/]")
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        preexec_fn=_die_with_parent,
    )
    seconds = time.monotonic() - t0
    m = re.search(r"(\d+) transaction\(s\) sent", proc.stdout)
    if m is None and "nothing changed (0 transactions)" in proc.stdout:
        reported: int | None = 0
    else:
        reported = int(m.group(1)) if m else None
    return Run(proc.returncode, seconds, proc.stdout, reported)


def _chain_txs(node: Anvil) -> list[dict[str, Any]]:
    """Every transaction on the chain with its receipt's gas figures."""
    out = []
    head = int(node.rpc("eth_blockNumber"), 16)
    for n in range(head + 1):
        block = node.rpc("eth_getBlockByNumber", hex(n), True)
        for tx in block["transactions"]:
            r = node.rpc("eth_getTransactionReceipt", tx["hash"])
            out.append(
                {
                    "hash": tx["hash"],
                    "from": tx["from"],
                    "to": tx.get("to"),
                    "type": int(tx.get("type") or "0x0", 16),
                    "limit": int(tx["gas"], 16),
                    "used": int(r["gasUsed"], 16),
                    "fee": int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16),
                    "status": int(r["status"], 16),
                    "block_limit": int(block["gasLimit"], 16),
                }
            )
    return out


def _manifest_addresses(data: dict[str, Any]) -> list[str]:
    addrs: list[str] = []
    for value in data.get("contracts", {}).values():
        if isinstance(value, str):
            addrs.append(value)
        elif isinstance(value, dict):  # feeds: {symbol: [addresses]}
            for group in value.values():
                addrs.extend(group)
    return addrs


def check_chain(l2: L2, node: Anvil, work: Path) -> Outcome:
    """Keyfile deployer -> deploy -> checks -> deploy again; problems in Outcome.problems."""
    out = Outcome(l2)
    data_folder, manifests = work / "ape", work / "deployments"
    passphrase = secrets.token_hex(16)
    out.deployer = write_keyfile(data_folder, ALIAS, passphrase)
    node.rpc("anvil_setBalance", out.deployer, hex(FUND_WEI))
    if accounts := node.rpc("eth_accounts"):
        out.problems.append(f"the node has unlocked accounts {accounts}; a testnet has none")

    out.first = run_deploy(l2, node.url, data_folder, manifests, passphrase)
    if out.first.rc != 0:
        out.problems.append(f"`ape run deploy` failed (exit code {out.first.rc})")
        return out
    out.txs = _chain_txs(node)
    nonce = int(node.rpc("eth_getTransactionCount", out.deployer, "latest"), 16)
    if not out.txs:
        out.problems.append("the deploy sent no transaction")
    if out.first.reported != len(out.txs) or nonce != len(out.txs):
        out.problems.append(
            f"the deploy reported {out.first.reported} transaction(s); the chain has "
            f"{len(out.txs)}, the deployer's nonce is {nonce}"
        )
    for tx in out.txs:
        if tx["from"].lower() != out.deployer.lower():
            out.problems.append(f"{tx['hash']} was sent by {tx['from']}, not the keyfile deployer")
        if tx["status"] != 1:
            out.problems.append(f"{tx['hash']} failed on chain")
        # padded: gas.send and deploy's _deploy send estimate x multiplier + headroom, and
        # an estimate is at least the gas used; ape's bare estimate (or exact gas) is not
        if tx["limit"] < tx["used"] + gas.GAS_HEADROOM:
            out.problems.append(
                f"{tx['hash']} (to {tx['to'] or 'a new contract'}) had a gas limit of "
                f"{tx['limit']:,} for {tx['used']:,} used: not a padded estimate"
            )
        # an estimate of this transaction, not the block limit: the gas used before refunds
        # (at most 5/4 of what the receipt says), padded
        if tx["limit"] > gas.padded_gas(tx["used"] * 5 // 4 + 1) + 1:
            out.problems.append(
                f"{tx['hash']} had a gas limit of {tx['limit']:,} for {tx['used']:,} used "
                f"(block limit {tx['block_limit']:,}): not an estimate"
            )

    path = manifests / f"{l2.key}.json"
    if not path.exists():
        out.problems.append(f"no manifest at {path}")
        return out
    data = json.loads(path.read_text())
    if data.get("chain_id") != l2.chain_id or data.get("network") != l2.key:
        out.problems.append(
            f"the manifest says network {data.get('network')!r}, chain {data.get('chain_id')}"
        )
    if str(data.get("deployer", "")).lower() != out.deployer.lower():
        out.problems.append(f"the manifest's deployer is {data.get('deployer')}")
    addrs = _manifest_addresses(data)
    out.contracts = len(addrs)
    for a in addrs:
        if node.rpc("eth_getCode", a, "latest") in ("0x", ""):
            out.problems.append(f"no code at {a} (recorded in the manifest)")

    out.second = run_deploy(l2, node.url, data_folder, manifests, passphrase)
    after = int(node.rpc("eth_getTransactionCount", out.deployer, "latest"), 16)
    if out.second.rc != 0:
        out.problems.append(f"the second `ape run deploy` failed (exit code {out.second.rc})")
    elif out.second.reported != 0 or after != nonce:
        out.problems.append(
            f"the second run is not idempotent: it reported {out.second.reported} "
            f"transaction(s), the deployer's nonce went {nonce} -> {after}"
        )
    return out


def _table(o: Outcome) -> Table:
    l2 = o.l2
    ok = not o.problems
    t = Table(
        title=f"{l2.ecosystem}:sepolia dry run: " + ("[green]passed[/]" if ok else "[red]FAILED[/]")
    )
    t.add_column("")
    t.add_column("value", justify="right")
    mode = "optimism" if l2.op_stack else "ethereum"
    t.add_row("chain id", f"{l2.chain_id} (anvil --network {mode})")
    t.add_row("deployer (keyfile)", o.deployer)
    if o.txs:
        used = sum(tx["used"] for tx in o.txs)
        top = max(o.txs, key=lambda tx: tx["limit"])
        block_limit = top["block_limit"]
        types = sorted({tx["type"] for tx in o.txs})
        t.add_row("transactions", f"{len(o.txs)} (type {', '.join(map(str, types))})")
        t.add_row("contracts in the manifest", str(o.contracts))
        t.add_row("total gas used", f"{used:,}")
        ratio = top["limit"] / block_limit
        t.add_row(
            "max gas limit / block limit",
            f"{top['limit']:,} / {block_limit:,} ({ratio:.1%})"
            if ratio >= 0.001
            else f"{top['limit']:,} / {block_limit:,} (<0.1%)",
        )
        slack = min(tx["limit"] - tx["used"] for tx in o.txs)
        t.add_row("least limit - gas used", f"{slack:,}")
        t.add_row("fees (anvil gas price)", f"{sum(tx['fee'] for tx in o.txs) / 10**18:.6f} ETH")
    if o.first:
        t.add_row("deploy s", f"{o.first.seconds:.1f}")
    if o.second:
        sent = "?" if o.second.reported is None else str(o.second.reported)
        t.add_row("re-run s (transactions)", f"{o.second.seconds:.1f} ({sent})")
    return t


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="perpdex-l2-dry-run-") as d:
        yield Path(d)


def l2_dry_run(names: Sequence[str] = tuple(CHAINS)) -> int:
    """The dry run for each chain in `names`; returns an exit code (1 if any failed)."""
    unknown = [n for n in names if n not in CHAINS]
    if unknown:
        raise DevnetError(f"unknown chain(s) {unknown}; pick from {', '.join(CHAINS)}")
    failed = []
    for name in names:
        l2 = CHAINS[name]
        console.rule(f"L2 dry run: {name}:sepolia (chain {l2.chain_id})")
        node = L2Anvil(f"l2-{name}", free_port(), l2=l2)
        with node.running(), _workdir() as work:
            o = check_chain(l2, node, work)
            if o.problems:
                for run in (o.first, o.second):
                    if run is not None and run.rc != 0:
                        console.print(run.output[-4000:], markup=False, highlight=False)
                log = LOG_DIR / f"l2-{name}-deploy.log"
                log.write_text("\n".join(r.output for r in (o.first, o.second) if r))
                console.print(f"(ape output: {log})")
        console.print(_table(o))
        for p in o.problems[:MAX_PROBLEMS_SHOWN]:
            console.print(f"[red]✗[/] {p}")
        if len(o.problems) > MAX_PROBLEMS_SHOWN:
            console.print(f"[red]✗[/] … and {len(o.problems) - MAX_PROBLEMS_SHOWN} more")
        if o.problems:
            failed.append(name)
    if failed:
        console.print(f"[red]L2 dry run failed on {', '.join(failed)}[/]")
        return 1
    console.print(
        f"[green]L2 dry run passed on {', '.join(names)}[/]: the real `ape run deploy` "
        "deployed from a keyfile account with padded gas estimates, and a re-run sent nothing"
    )
    return 0
