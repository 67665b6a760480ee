"""Local anvil devnets for `make demo` and `make test-fork`.

    python -m perpdex.devtools.devnet demo [--port 8545]
        start anvil, `ape run deploy`, `ape run demo`, stop anvil.
    python -m perpdex.devtools.devnet ape-test [--name N] -- PYTEST ARGS
        one `ape test` session on its own anvil (`make test` runs two at a time): the
        anvil is started here, retried on a new port if it dies or does not answer, and
        ape attaches to it. ape's own start-up (one try, 20 s) once failed in CI with two
        sessions sharing 2 cores.
    python -m perpdex.devtools.devnet ape-run [--name N] -- SCRIPT [ARGS]
        `ape run SCRIPT` likewise (`make bench` runs bench_gas so).
    python -m perpdex.devtools.devnet bench-keeper [--port N]
        `ape run bench_keeper` on an anvil without step tracing (`make bench`).
    python -m perpdex.devtools.devnet bench-settle [--port N]
        `ape run bench_settle` (the matcher's settlement rate) likewise (`make bench`).
    python -m perpdex.devtools.devnet fork-test [--port-a N] [--port-b N] [-- PYTEST ARGS]
        anvil A plays an L2 testnet whose token, price feeds and sequencer feed already
        exist at the fixed addresses of config/networks.yaml[testnet-sim]; anvil B forks A
        (`--fork-url`, reading A's state lazily) and `ape test tests/integration -m fork`
        runs against B with PERPDEX_NETWORK=testnet-sim.
    python -m perpdex.devtools.devnet l2-dry-run [--chain arbitrum|base|optimism ...]
        the real `ape run deploy --network <eco>:sepolia` against anvils imitating the L2
        testnets (chain id, no unlocked accounts, a keyfile deployer); perpdex/devtools/l2dryrun.py.

Every anvil started here is stopped on exit, also on Ctrl-C, SIGTERM or an exception (it
runs in its own process group, which is signalled as a whole: the npm `anvil` is a node
wrapper around the real binary). Anvil logs go to .anvil/<name>-<port>.log.

Disk: anvil keeps its last 500 block states in memory and writes up to 3,600 older ones
to disk (~1.5-1.9 GB for one test session), by default under ~/.foundry/anvil/tmp, which
it never deletes when it is signalled. A CI run once died of a full disk that way (91
leaked directories, 73 GB). Every anvil here writes them under .anvil/state/<owner>/
instead; `stop()` deletes that directory, and each start deletes those of owners that
are no longer alive (a run killed with SIGKILL).

How ape reaches these nodes (any port, whatever ape-config.yaml's `node:` section says):
- scripts: `ape run <script> --network ethereum:local:node --provider-settings
  '{"ethereum": {"local": {"uri": "http://127.0.0.1:<port>", "chain_id": 31337}}}'`.
  The chain id matters: ape's node provider signs for its configured chain id (1337 unless
  configured), which anvil's 31337 rejects ("invalid chain id for signer").
- tests: `ape test --network ethereum:local:foundry` with APE_FOUNDRY_HOST=<anvil url>, so
  ape-foundry attaches to the running anvil instead of starting one. (The node provider
  cannot revert snapshots on anvil, which ape's per-test isolation needs.)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from perpdex.config import ROOT, load_networks, load_system
from perpdex.errors import ConfigError, PerpdexError

ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
APE = Path(sys.executable).parent / "ape"
LOG_DIR = ROOT / ".anvil"
STATE_DIR = LOG_DIR / "state"  # anvil's on-disk block states (--cache-path), one per node
DEMO_DEPLOYMENTS = ROOT / ".demo" / "deployments"
CHAIN_ID = 31337
START_TIMEOUT = 30.0  # seconds for anvil to answer eth_chainId
SESSION_START_TIMEOUT = 60.0  # the same for a test session's anvil on a loaded machine
SESSION_START_ATTEMPTS = 3
# ape-foundry's own anvil flags that the devnet's command does not already give: no gas
# fee, so tests see exactly the balances ape's managed anvil would give them.
APE_TEST_ANVIL_ARGS = ["--block-base-fee-per-gas", "0", "--gas-price", "0"]
SIM_KEY = "testnet-sim"
FEED_DECIMALS = 8
# The sequencer feed of the simulated testnet reports "up" since this long before the
# deployment, far beyond any sequencer grace period.
SEQUENCER_UP_FOR = 86_400

console = Console()


class DevnetError(PerpdexError):
    """A local devnet could not be started, set up or checked."""


# --------------------------------------------------------------------------------------
# anvil processes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApeTestAccounts:
    """ape's test-account settings; anvil funds the same accounts."""

    mnemonic: str
    hd_path: str
    count: int


def _keep_keyboard_interrupt() -> None:
    """Importing ape replaces the SIGINT handler with sys.exit(130); restore Ctrl-C's
    KeyboardInterrupt so `main` reports it (cleanup runs either way)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def ape_test_accounts() -> ApeTestAccounts:
    """ape's test mnemonic (ape-config.yaml `test:` section, else ape's defaults)."""
    from ape.utils.testing import (
        DEFAULT_NUMBER_OF_TEST_ACCOUNTS,
        DEFAULT_TEST_HD_PATH,
        DEFAULT_TEST_MNEMONIC,
    )

    _keep_keyboard_interrupt()

    cfg: dict[str, Any] = {}
    path = ROOT / "ape-config.yaml"
    if path.exists():
        cfg = (yaml.safe_load(path.read_text()) or {}).get("test") or {}
    return ApeTestAccounts(
        mnemonic=str(cfg.get("mnemonic", DEFAULT_TEST_MNEMONIC)),
        hd_path=str(cfg.get("hd_path", DEFAULT_TEST_HD_PATH)),
        count=int(cfg.get("number_of_accounts", DEFAULT_NUMBER_OF_TEST_ACCOUNTS)),
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# local nodes only: never route through an HTTP(S)_PROXY from the environment
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 10.0) -> Any:
    """One JSON-RPC call; raises DevnetError on an RPC error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with _NO_PROXY.open(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise DevnetError(f"{method} on {url} failed: {reply['error']}")
    return reply["result"]


def _die_with_parent() -> None:
    """Child-side: get SIGTERM if this Python process dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Anvil:
    """One anvil process on 127.0.0.1:`port`; use `with anvil.running():`."""

    name: str
    port: int
    fork_url: str | None = None
    fork_block: int | None = None
    extra_args: list[str] = field(default_factory=list)
    start_timeout: float = START_TIMEOUT
    steps_tracing: bool = True  # ape's call traces; off for benchmarks (a node's speed)
    detach: bool = False  # `devnet up`: keep running after this process exits
    quiet: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"{self.name}-{self.port}.log"

    @property
    def state_path(self) -> Path:
        """anvil's --cache-path. Named after the process that owns the node (this one, or
        `up` for a detached devnet, reused on its port) so a later start can tell a leak
        from a node still running."""
        owner = "up" if self.detach else str(os.getpid())
        return STATE_DIR / f"{owner}-{self.name}-{self.port}"

    def command(self) -> list[str]:
        acc = ape_test_accounts()
        cmd = [
            str(ANVIL),
            "--port", str(self.port),
            "--mnemonic", acc.mnemonic,
            "--derivation-path", acc.hd_path,
            "--accounts", str(acc.count),
            *(["--steps-tracing"] if self.steps_tracing else []),
            "--cache-path", str(self.state_path),
            "--silent",
        ]  # fmt: skip
        if self.fork_url:
            # the chain id comes from the forked chain; no on-disk RPC cache, so every
            # state read really goes to the upstream
            cmd += ["--fork-url", self.fork_url, "--no-storage-caching"]
            if self.fork_block is not None:
                cmd += ["--fork-block-number", str(self.fork_block)]
        else:
            cmd += ["--chain-id", str(CHAIN_ID)]
        return cmd + self.extra_args

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc(self.url, method, params)

    def start(self, busy_hint: str) -> None:
        if not ANVIL.exists():
            raise DevnetError(f"{ANVIL} is missing; run `make setup` (npm ci) first")
        if not port_is_free(self.port):
            raise DevnetError(f"port {self.port} is already in use (another anvil?). {busy_hint}")
        LOG_DIR.mkdir(exist_ok=True)
        sweep_leaked_states()
        shutil.rmtree(self.state_path, ignore_errors=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() signals the whole group (node wrapper + anvil)
            preexec_fn=None if self.detach else _die_with_parent,
            cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise DevnetError(
                    f"anvil {self.name} exited with code {self.proc.returncode}:\n{tail}\n"
                    f"(full log: {self.log_path})"
                )
            try:
                chain_id = int(self.rpc("eth_chainId"), 16)
                break
            except (OSError, urllib.error.URLError, DevnetError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise DevnetError(
                        f"anvil {self.name} did not answer eth_chainId on {self.url} within "
                        f"{self.start_timeout:.0f}s; see {self.log_path}"
                    ) from None
                time.sleep(0.1)
        what = f"fork of {self.fork_url}" if self.fork_url else "fresh chain"
        if self.quiet:
            return
        console.print(
            f"[green]anvil {self.name}[/] up on {self.url} (chain id {chain_id}, {what}, "
            f"pid {self.proc.pid})"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(self.state_path, ignore_errors=True)
        if not self.quiet:
            console.print(f"anvil {self.name} on port {self.port} stopped")

    @contextlib.contextmanager
    def running(self, busy_hint: str = "Stop it or choose another port.") -> Iterator[Anvil]:
        try:
            self.start(busy_hint)
            yield self
        finally:
            self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leaked_states() -> list[Path]:
    """Delete the on-disk block states of anvils whose owning process is gone (a run
    killed with SIGKILL never reaches `stop()`); returns what it deleted."""
    gone = []
    for d in STATE_DIR.glob("*-*") if STATE_DIR.is_dir() else ():
        owner = d.name.split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _sigterm_to_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_ape(args: list[str], env: dict[str, str]) -> int:
    """Run the venv's ape with `args`; returns its exit code."""
    cmd = [str(APE), *args]
    console.print(f"[bold]$ {' '.join(cmd)}[/]")
    env = {**os.environ, **env}
    return subprocess.run(
        cmd, env=env, cwd=ROOT, check=False, preexec_fn=_die_with_parent
    ).returncode


NODE_NETWORK = "ethereum:local:node"
TEST_NETWORK = "ethereum:local:foundry"


def node_settings(url: str) -> dict[str, Any]:
    """ape node-provider settings for the anvil at `url` (`--provider-settings`)."""
    return {"ethereum": {"local": {"uri": url, "chain_id": CHAIN_ID}}}


def node_args(url: str) -> list[str]:
    """`ape run` options that connect to the anvil at `url` through the node provider."""
    return ["--network", NODE_NETWORK, "--provider-settings", json.dumps(node_settings(url))]


# --------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------


def demo(port: int, t0: float | None = None) -> int:
    """Fresh anvil on `port` -> deploy -> demo -> stop. Returns an exit code. On success
    records `demo_s` in docs/perf.json: seconds since `t0` (`make demo` passes the time it
    started, set-up and compile included), else since this call."""
    start = time.time() if t0 is None else t0
    node = Anvil("demo", port)
    hint = f"Stop it, or run the demo on another port: make demo DEMO_PORT={port + 10}"
    with node.running(busy_hint=hint):
        # quieter ape (no per-transaction INFO lines); the scripts print their own progress
        # the demo's chain dies with it: its manifest goes to its own folder, never over
        # deployments/local.json that a user's devnet relies on
        env = {
            "PERPDEX_NETWORK": "local",
            "PERPDEX_DEPLOYMENTS_DIR": str(DEMO_DEPLOYMENTS),
            "PYTHONWARNINGS": "ignore::UserWarning",
        }
        for script in ("deploy", "demo"):
            rc = run_ape(["run", script, *node_args(node.url), "-v", "WARNING"], env)
            if rc != 0:
                console.print(f"[red]`ape run {script}` failed (exit code {rc})[/]")
                return rc
    seconds = time.time() - start
    from perpdex.devtools.perf import record

    record({"demo_s": round(seconds)})
    console.print(f"[green]demo finished[/] in {seconds:,.0f} s (demo_s in docs/perf.json)")
    return 0


def bench_keeper(port: int | None, script: str = "bench_keeper") -> int:
    """Fresh anvil without step tracing (ape's tracing slows every eth_call several-fold;
    a keeper's node has none) -> `ape run <script>` -> stop. Returns an exit code."""
    node = Anvil(script.replace("_", "-"), port or free_port(), steps_tracing=False)
    with node.running():
        env = {
            "PERPDEX_NETWORK": "local",
            "PERPDEX_DEPLOYMENTS_DIR": str(DEMO_DEPLOYMENTS),
            "PYTHONWARNINGS": "ignore::UserWarning",
        }
        rc = run_ape(["run", script, *node_args(node.url), "-v", "WARNING"], env)
        if rc != 0:
            console.print(f"[red]`ape run {script}` failed (exit code {rc})[/]")
        return rc


# --------------------------------------------------------------------------------------
# fork mode
# --------------------------------------------------------------------------------------


def expected_sim_addresses() -> dict[str, Any]:
    """token / feeds / sequencer_feed of config/networks.yaml[testnet-sim]."""
    net = load_networks().get(SIM_KEY)
    if not net:
        raise ConfigError(f"config/networks.yaml has no {SIM_KEY!r} section; restore it from git")
    try:
        return {
            "token": net["token"],
            "feeds": {str(k).upper(): list(v) for k, v in net["feeds"].items()},
            "sequencer_feed": net["sequencer_feed"],
        }
    except KeyError as e:
        raise ConfigError(
            f"config/networks.yaml[{SIM_KEY}] lacks {e}; run `python -m perpdex.devtools.devnet "
            "fork-test` once and copy the addresses it prints"
        ) from e


def deploy_testnet_sim(url: str) -> dict[str, Any]:
    """Deploy the simulated testnet's pre-existing contracts on the anvil at `url`.

    Deployer: test account `deployer_index` (9) of ape's mnemonic, from nonce 0, in a fixed
    order - settlement token; each market's feeds in config/markets.yaml order; sequencer
    feed - so the addresses only depend on that order. Then one more transaction (no
    contract) backdates the sequencer feed's "up since" time.
    """
    from ape import accounts, chain, networks, project

    _keep_keyboard_interrupt()
    system = load_system()
    index = int(load_networks().get(SIM_KEY, {}).get("deployer_index", 9))
    with networks.parse_network_choice(NODE_NETWORK, provider_settings=node_settings(url)):
        deployer = accounts.test_accounts[index]
        if deployer.nonce != 0:
            raise DevnetError(
                f"testnet-sim deployer {deployer.address} already sent {deployer.nonce} "
                f"transaction(s) on {url}; the fixed addresses need a fresh anvil"
            )
        token = deployer.deploy(
            project.MockERC20,
            f"Test {system.settlement_symbol}",
            system.settlement_symbol,
            system.settlement_decimals,
        )
        feeds: dict[str, list[str]] = {}
        for m in system.markets:
            answer = int(m.price * 10**FEED_DECIMALS)
            feeds[m.symbol] = [
                deployer.deploy(project.MockAggregator, FEED_DECIMALS, answer).address
                for _ in range(m.oracle.sources)
            ]
        sequencer = deployer.deploy(project.MockAggregator, 0, 0)
        now = chain.blocks.head.timestamp
        sequencer.set_round_data(0, now - SEQUENCER_UP_FOR, now, sender=deployer)
        return {
            "deployer": deployer.address,
            "token": token.address,
            "feeds": feeds,
            "sequencer_feed": sequencer.address,
        }


def check_sim_addresses(got: dict[str, Any]) -> None:
    """Fail unless the deployed addresses equal config/networks.yaml[testnet-sim]."""
    want = expected_sim_addresses()
    table = Table(title=f"A: pre-existing contracts vs config/networks.yaml[{SIM_KEY}]")
    table.add_column("contract")
    table.add_column("deployed on A", style="cyan", no_wrap=True, min_width=42)
    table.add_column("networks.yaml")
    rows: list[tuple[str, str, str]] = [("token", got["token"], want["token"])]
    for sym, addrs in got["feeds"].items():
        conf = want["feeds"].get(sym, [])
        for i in range(max(len(addrs), len(conf))):
            rows.append(
                (
                    f"{sym} feed {i}",
                    addrs[i] if i < len(addrs) else "-",
                    conf[i] if i < len(conf) else "-",
                )
            )
    rows.append(("sequencer feed", got["sequencer_feed"], want["sequencer_feed"]))
    bad = 0
    for name, a, b in rows:
        ok = a.lower() == str(b).lower()
        bad += not ok
        table.add_row(name, a, "[green]same[/]" if ok else f"[red]differs: {b}[/]")
    console.print(table)
    if bad:
        raise DevnetError(
            f"{bad} simulated-testnet address(es) differ from config/networks.yaml[{SIM_KEY}]: "
            "the deploy order in perpdex/devtools/devnet.py or the market list changed. Put the "
            "'deployed on A' addresses into config/networks.yaml and re-run."
        )


def _short(h: str) -> str:
    return f"{h[:10]}…{h[-6:]}"


def _code_id(code: str) -> str:
    from eth_utils import keccak

    raw = bytes.fromhex(code.removeprefix("0x"))
    return f"{len(raw)} B, keccak {keccak(raw).hex()[:8]}" if raw else "no code"


def fork_proof(a: Anvil, b: Anvil, head: dict[str, Any], token: str) -> None:
    """Show that B is a fork of A which reads A's state on demand; fail otherwise."""
    fork = b.rpc("anvil_nodeInfo").get("forkConfig") or {}
    n = int(head["number"], 16)
    b_fork_block = b.rpc("eth_getBlockByNumber", hex(n), False)
    b_head = int(b.rpc("eth_blockNumber"), 16)
    code_a = a.rpc("eth_getCode", token, "latest")
    code_b = b.rpc("eth_getCode", token, "latest")
    table = Table(title="B = anvil --fork-url A")
    table.add_column("")
    table.add_column("A (testnet-sim)", no_wrap=True)
    table.add_column("B (fork)", no_wrap=True)
    table.add_row("url", a.url, b.url)
    table.add_row(
        "chain id", str(int(a.rpc("eth_chainId"), 16)), str(int(b.rpc("eth_chainId"), 16))
    )
    table.add_row("forks", "-", f"{fork.get('forkUrl')} @ {fork.get('forkBlockNumber')}")
    table.add_row("head block", str(n), str(b_head))
    table.add_row(f"block {n} hash", _short(head["hash"]), _short(b_fork_block["hash"]))
    table.add_row(f"code at {_short(token)}", _code_id(code_a), _code_id(code_b))
    console.print(table)
    problems = []
    if (fork.get("forkUrl") or "").rstrip("/") != a.url:
        problems.append(f"B's fork url is {fork.get('forkUrl')!r}, not {a.url}")
    if b_fork_block["hash"] != head["hash"]:
        problems.append(f"block {n} differs between A and B")
    if b_head != n:
        problems.append(f"B's head is {b_head}, expected the fork block {n}")
    if not code_b or code_b == "0x" or code_a != code_b:
        problems.append("B does not see A's token code")
    if problems:
        raise DevnetError("B is not a fork of A: " + "; ".join(problems))
    console.print(
        f"[green]B forks A at block {n}[/] (same block hash). B was started empty, has mined "
        "no block and received no transaction (no on-disk RPC cache either), so the token "
        f"code it returns for {token} was read from A on demand."
    )


def fork_test(port_a: int | None, port_b: int | None, pytest_args: Sequence[str]) -> int:
    """Simulated testnet on A, fork B, integration tests (-m fork) on B."""
    a = Anvil("testnet-sim-A", port_a or free_port())
    with a.running(busy_hint="Pick another one with --port-a."):
        console.rule(f"A: deploy the simulated testnet's token and feeds ({SIM_KEY})")
        got = deploy_testnet_sim(a.url)
        check_sim_addresses(got)
        head = a.rpc("eth_getBlockByNumber", "latest", False)
        n = int(head["number"], 16)
        b = Anvil("fork-B", port_b or free_port(), fork_url=a.url, fork_block=n)
        with b.running(busy_hint="Pick another one with --port-b."):
            console.rule("B: fork of A")
            fork_proof(a, b, head, got["token"])
            console.rule("integration tests (-m fork) on B")
            rc = run_ape(
                [
                    "test", "tests/integration", "-m", "fork",
                    "--network", TEST_NETWORK,
                    "-p", "no:cacheprovider",
                    *pytest_args,
                ],
                {"APE_FOUNDRY_HOST": b.url, "PERPDEX_NETWORK": SIM_KEY},
            )  # fmt: skip
            a_after = int(a.rpc("eth_blockNumber"), 16)
            console.print(
                f"after the tests: A's head is still block {a_after}: the tests' transactions "
                "went to B only (ape reverts its snapshots at the end)."
            )
    if rc == 0:
        console.print("[green]fork tests passed[/]")
    else:
        console.print(f"[red]fork tests failed (exit code {rc})[/]")
    return rc


# --------------------------------------------------------------------------------------
# a devnet for humans: `perpdex devnet up | down`, `perpdex faucet`
# --------------------------------------------------------------------------------------

USDC_UNITS = 10**6
DEVNET_POOL_USDC = 2_000_000  # the vault's first LP deposit (test account 0)
DEVNET_WALLET_USDC = 100_000  # each funded test wallet
DEVNET_WALLETS = 5  # test accounts 1..5
FAUCET_ETH = 10 * 10**18


def _pid_path(port: int) -> Path:
    return LOG_DIR / f"devnet-{port}.pid"


def _selector(signature: str) -> str:
    from eth_utils import keccak

    return keccak(text=signature)[:4].hex()


def _send_as(
    url: str, sender: str, to: str, signature: str, types: list[str], args: list[Any]
) -> str:
    """eth_sendTransaction from an account the dev node unlocked (anvil's test accounts);
    waits for the receipt and raises if it failed."""
    from eth_abi import encode

    from perpdex.sdk.lite.rpc import poll_receipt

    data = "0x" + _selector(signature) + encode(types, args).hex()
    tx_hash = rpc(url, "eth_sendTransaction", [{"from": sender, "to": to, "data": data}])
    receipt = poll_receipt(lambda: rpc(url, "eth_getTransactionReceipt", [tx_hash]), 5)
    if receipt is not None:
        if int(receipt["status"], 16) != 1:
            raise DevnetError(f"{signature} from {sender} failed on {url} ({tx_hash})")
        return str(tx_hash)
    raise DevnetError(f"{signature} ({tx_hash}) was not mined on {url}; is the node mining?")


def _manifest_token_vault(manifest: Path) -> tuple[str, str | None, str | None]:
    if not manifest.exists():
        raise DevnetError(
            f"no deployment manifest at {manifest}; start a devnet first (`perpdex devnet up`)"
        )
    data = json.loads(manifest.read_text())
    c = data.get("contracts", {})
    return str(c["token"]), c.get("vault"), data.get("genesis")


def _require_dev_chain(url: str, genesis: str | None, manifest: Path) -> None:
    try:
        client = str(rpc(url, "web3_clientVersion")).lower()
    except (OSError, urllib.error.URLError) as e:
        raise DevnetError(
            f"no node answers on {url} ({e}); start one with `perpdex devnet up`"
        ) from None
    if "anvil" not in client:
        raise DevnetError(
            f"{url} is not a local anvil ({client}); the faucet only mints on a devnet"
        )
    head = rpc(url, "eth_getBlockByNumber", ["0x0", False])["hash"]
    if genesis and head.removeprefix("0x") != genesis.removeprefix("0x"):
        raise DevnetError(
            f"{manifest} was deployed on another chain than the one on {url} (the node was "
            "restarted?); run `perpdex devnet up` again"
        )


def faucet(url: str, manifest: Path, to: str, usdc: int, eth: int = FAUCET_ETH) -> None:
    """Mint `usdc` mock USDC (whole dollars) to `to` and set its ETH balance to `eth` wei,
    on a local anvil devnet only."""
    from eth_utils import is_address, to_checksum_address

    if not is_address(to):
        raise DevnetError(f"{to!r} is not an address; pass 0x followed by 40 hex digits")
    if usdc < 0:
        raise DevnetError(f"the faucet amount must be zero or more dollars, got {usdc}")
    token, _vault, genesis = _manifest_token_vault(manifest)
    _require_dev_chain(url, genesis, manifest)
    who = to_checksum_address(to)
    sender = rpc(url, "eth_accounts")[0]
    if usdc:
        _send_as(
            url,
            sender,
            token,
            "mint(address,uint256)",
            ["address", "uint256"],
            [who, usdc * USDC_UNITS],
        )
    rpc(url, "anvil_setBalance", [who, hex(eth)])


def fund_devnet(url: str, manifest: Path) -> list[str]:
    """The vault's first LP (test account 0 deposits DEVNET_POOL_USDC, so trades have a
    counterparty from the first block) and DEVNET_WALLETS funded test wallets. Returns
    the funded wallets."""
    token, vault, _genesis = _manifest_token_vault(manifest)
    wallets = [str(a) for a in rpc(url, "eth_accounts")]
    lp = wallets[0]
    if vault:
        units = DEVNET_POOL_USDC * USDC_UNITS
        _send_as(url, lp, token, "mint(address,uint256)", ["address", "uint256"], [lp, units])
        _send_as(url, lp, token, "approve(address,uint256)", ["address", "uint256"], [vault, units])
        _send_as(url, lp, vault, "deposit(uint256,address)", ["uint256", "address"], [units, lp])
    funded = wallets[1 : 1 + DEVNET_WALLETS]
    for w in funded:
        units = DEVNET_WALLET_USDC * USDC_UNITS
        _send_as(url, lp, token, "mint(address,uint256)", ["address", "uint256"], [w, units])
    return funded


def devnet_up(port: int) -> int:
    """Start an anvil that outlives this command, deploy to it (deployments/local.json,
    an older one of another chain is kept as a .bak.json), fund the vault and five
    test wallets, and print how to use it."""
    node = Anvil("devnet", port, detach=True)
    node.start(busy_hint=f"Stop it (`perpdex devnet down --port {port}`) or pick --port.")
    assert node.proc is not None
    _pid_path(port).write_text(str(node.proc.pid))
    env = {"PERPDEX_NETWORK": "local", "PYTHONWARNINGS": "ignore::UserWarning"}
    try:
        rc = run_ape(["run", "deploy", *node_args(node.url), "-v", "WARNING"], env)
        if rc != 0:
            raise DevnetError(f"`ape run deploy` failed (exit code {rc})")
        from perpdex.deploy import manifest_path

        manifest = manifest_path("local")
        funded = fund_devnet(node.url, manifest)
    except BaseException:
        node.stop()
        _pid_path(port).unlink(missing_ok=True)
        raise
    t = Table(title=f"devnet on {node.url} (anvil pid {node.proc.pid}, chain id {CHAIN_ID})")
    t.add_column("what")
    t.add_column("value")
    t.add_row("manifest", str(manifest))
    t.add_row("vault", f"{DEVNET_POOL_USDC:,} USDC from test:0 (the first LP)")
    for i, w in enumerate(funded, start=1):
        t.add_row(f"test:{i}", f"{w}  {DEVNET_WALLET_USDC:,} USDC")
    console.print(t)
    console.print(
        f"use it:  export PERPDEX_RPC_URL={node.url}   (or pass --rpc {node.url})\n"
        "         perpdex -a test:1 open-account main && perpdex -a test:1 deposit 10000\n"
        "         perpdex faucet 0xYOUR_ADDRESS --amount 50000\n"
        f"stop it: perpdex devnet down --port {port}"
    )
    return 0


def devnet_down(port: int) -> int:
    """Stop the anvil `devnet up` left on `port`."""
    pid_file = _pid_path(port)
    if not pid_file.exists():
        console.print(f"no devnet recorded on port {port} ({pid_file} is missing)")
        return 1
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    pid_file.unlink()
    for _ in range(50):  # anvil still writes its states while it shuts down
        if not _alive(pid):
            break
        time.sleep(0.1)
    shutil.rmtree(Anvil("devnet", port, detach=True).state_path, ignore_errors=True)
    console.print(f"devnet on port {port} (pid {pid}) stopped")
    return 0


# --------------------------------------------------------------------------------------
# one test session
# --------------------------------------------------------------------------------------


def start_session_anvil(name: str) -> Anvil:
    """A started anvil for one `ape test` session: a free port, up to
    SESSION_START_ATTEMPTS tries (a new port each time) of SESSION_START_TIMEOUT s."""
    errors: list[str] = []
    for _ in range(SESSION_START_ATTEMPTS):
        node = Anvil(
            name,
            free_port(),
            extra_args=list(APE_TEST_ANVIL_ARGS),
            start_timeout=SESSION_START_TIMEOUT,
            quiet=True,
        )
        try:
            node.start(busy_hint="Retrying on another port.")
            return node
        except DevnetError as e:
            errors.append(str(e))
            console.print(f"[yellow]anvil {name} did not start, retrying:[/] {e}")
    raise DevnetError(
        f"anvil {name} failed {SESSION_START_ATTEMPTS} times; last error: {errors[-1]}. "
        "Is the machine out of memory or processes? See the logs under .anvil/."
    )


def ape_test_session(name: str, pytest_args: Sequence[str]) -> int:
    """`ape test PYTEST_ARGS` attached to an anvil started (and always stopped) here."""
    return ape_on_session_anvil(name, ["test", *pytest_args, "--network", TEST_NETWORK])


def ape_on_session_anvil(name: str, ape_args: Sequence[str]) -> int:
    """`ape APE_ARGS` whose foundry provider attaches to an anvil started (and always
    stopped) here: ape-foundry's own anvil cannot be given --cache-path, so its block
    states would stay behind in ~/.foundry/anvil/tmp."""
    node = start_session_anvil(name)
    try:
        cmd = [str(APE), *ape_args]
        env = {**os.environ, "APE_FOUNDRY_HOST": node.url}
        return subprocess.run(
            cmd, env=env, cwd=ROOT, check=False, preexec_fn=_die_with_parent
        ).returncode
    finally:
        node.stop()


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m perpdex.devtools.devnet", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="anvil + `ape run deploy` + `ape run demo`")
    d.add_argument("--port", type=int, default=8545, help="anvil port (default 8545)")
    d.add_argument(
        "--t0", type=float, default=None, help="epoch seconds the run started (`make demo`)"
    )
    up = sub.add_parser("up", help="anvil left running + deploy + funded vault and wallets")
    up.add_argument("--port", type=int, default=8545, help="anvil port (default 8545)")
    down = sub.add_parser("down", help="stop the anvil `up` started")
    down.add_argument("--port", type=int, default=8545)
    fc = sub.add_parser("faucet", help="mint mock USDC and set ETH for an address (devnet only)")
    fc.add_argument("address")
    fc.add_argument("--amount", type=int, default=10_000, help="USDC (whole dollars)")
    fc.add_argument("--rpc", default=os.environ.get("PERPDEX_RPC_URL", "http://127.0.0.1:8545"))
    t = sub.add_parser(
        "ape-test",
        help="one `ape test` session on its own anvil (retried start-up)",
        description="Arguments after `--` go to `ape test` (e.g. -- tests/unit -q).",
    )
    t.add_argument("--name", default="tests", help="names the anvil log under .anvil/")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    r = sub.add_parser(
        "ape-run",
        help="one `ape run SCRIPT` on its own anvil (ape-foundry attaches to it)",
        description="Arguments after `--` go to `ape run` (e.g. -- bench_gas).",
    )
    r.add_argument("--name", default="run", help="names the anvil log under .anvil/")
    r.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="script_args")
    b = sub.add_parser("bench-keeper", help="anvil without step tracing + `ape run bench_keeper`")
    b.add_argument("--port", type=int, default=None, help="anvil port (default: free)")
    bs = sub.add_parser("bench-settle", help="anvil without step tracing + `ape run bench_settle`")
    bs.add_argument("--port", type=int, default=None, help="anvil port (default: free)")
    f = sub.add_parser(
        "fork-test",
        help="integration tests against a fork of a simulated L2 testnet",
        description="Extra arguments after `--` go to `ape test` (e.g. -- -k smoke -x).",
    )
    f.add_argument("--port-a", type=int, default=None, help="simulated testnet (default: free)")
    f.add_argument("--port-b", type=int, default=None, help="the fork (default: free)")
    f.add_argument("pytest_args", nargs=argparse.REMAINDER)
    # L2 testnet deploy dry run: perpdex/devtools/l2dryrun.py
    dr = sub.add_parser(
        "l2-dry-run",
        help="`ape run deploy` against anvils imitating Arbitrum/Base/Optimism Sepolia",
    )
    dr.add_argument(
        "--chain",
        action="append",
        choices=["arbitrum", "base", "optimism"],
        help="only this chain (repeatable; default: all three)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm_to_exit)
    try:
        if args.cmd == "demo":
            return demo(args.port, args.t0)
        if args.cmd == "up":
            return devnet_up(args.port)
        if args.cmd == "down":
            return devnet_down(args.port)
        if args.cmd == "faucet":
            from perpdex.deploy import manifest_path

            faucet(args.rpc, manifest_path("local"), args.address, args.amount)
            console.print(f"[green]✓[/] {args.amount:,} USDC and 10 ETH to {args.address}")
            return 0
        if args.cmd == "bench-keeper":
            return bench_keeper(args.port)
        if args.cmd == "bench-settle":
            return bench_keeper(args.port, "bench_settle")
        if args.cmd == "l2-dry-run":
            from perpdex.devtools.l2dryrun import CHAINS, l2_dry_run

            return l2_dry_run(args.chain or list(CHAINS))
        extra = [x for x in args.pytest_args if x != "--"]
        if args.cmd == "ape-test":
            return ape_test_session(args.name, extra)
        if args.cmd == "ape-run":
            return ape_on_session_anvil(args.name, ["run", *extra])
        return fork_test(args.port_a, args.port_b, extra)
    except PerpdexError as e:
        console.print(f"[red]error:[/] {e}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; anvil stopped[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
