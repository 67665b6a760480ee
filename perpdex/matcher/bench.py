"""Load benchmark of the matcher: `python -m perpdex.matcher.bench` (run by `make bench`).

A real matcher (the same app and server as `perpdex matcher serve`: `api.serve`, uvicorn
on uvloop, the start-up heap frozen out of the GC; fake settler) runs in a subprocess on
loopback; a client places pre-signed orders (signed before the clock starts)
over keep-alive HTTP connections, `--concurrency` requests in flight, bounded by `--orders`
and `--seconds`. An order counts when its 201 arrived, i.e. after the matcher committed it
to the database. Prints orders/s and p50/p99 latency for SQLite and for PostgreSQL (a
throwaway server with its default durability), and merges `matcher_orders_per_s`,
`matcher_p99_ms` (SQLite) and `matcher_orders_per_s_postgres` into docs/perf.json.

The order flow crosses: about half the orders rest, half fill against them, so the
figures include matching, fills and their persistence, not just inserts.

Under the table: the CPU time (user + system) spent over the timed window per
acknowledged order, by the matcher process (all its threads, from /proc; its fake
settler's chain simulation included) and by this client: it tells which side a run was
bound by. On the 2-core development machine the client costs about a tenth of the
server per order (0.04-0.06 ms against 0.45-0.65 ms) while the server runs at about
one core (one event loop; its writer and settler threads share its GIL), so the server
is the bottleneck, not the client.

Settlement into a chain (`python -m perpdex.devtools.devnet bench-settle`, which `make
bench` runs: a fresh anvil without step tracing, then `ape run bench_settle` calling
`settle_main` here): the suite is deployed, four maker and four taker accounts funded,
and the matcher (SQLite, `ChainSettler` over JSON-RPC, 32 fills a batch) is given
PERPDEX_BENCH_FILLS (default 640) matched pairs of pre-signed orders. The clock runs
from the first batch's preparation to the last receipt recorded: fills/s settled into
anvil through the matcher's settlement path (simulate, sign, record pending, broadcast,
receipt, commit), merged into docs/perf.json as `settle_fills_per_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey
from rich.console import Console
from rich.table import Table

from perpdex.matcher import sigs
from perpdex.sdk import orders as o

CHAIN_ID = 31337
CH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
WAD = 10**18
N_KEYS = 16


def presign(n: int, seed: int = 1) -> list[bytes]:
    """n HTTP requests (bytes) carrying orders signed with coincurve (low-s, as eth_account)."""
    rng = random.Random(seed)
    keys = [PrivateKey(bytes([i + 1]) * 32) for i in range(N_KEYS)]
    owners = [sigs.keccak(k.public_key.format(compressed=False)[1:])[12:] for k in keys]
    cache = sigs.DigestCache(CHAIN_ID, CH)
    expiry = int(time.time()) + 86_400
    out = []
    for i in range(n):
        k = rng.randrange(N_KEYS)
        buy = rng.random() < 0.5
        # prices around 2,000 with a 10-tick spread: many orders cross, many rest
        price = (2_000 + rng.randint(-5, 5) + (1 if buy else -1) * rng.randint(0, 3)) * WAD
        size = rng.randint(1, 20) * WAD // 10
        order = o.Order(
            account=(int.from_bytes(owners[k], "big") << 96) | 1,
            market=rng.randrange(2),
            size=size if buy else -size,
            limit_price=price,
            expiry=expiry,
            nonce=i,
            flags=o.FLAG_IOC if rng.random() < 0.1 else 0,
        )
        rs_v = keys[k].sign_recoverable(cache.digest(order), hasher=None)
        sig = rs_v[:64] + bytes([rs_v[64] + 27])
        body = {f: str(v) for f, v in order.__dict__.items()}
        body["signature"] = "0x" + sig.hex()
        raw = json.dumps(body, separators=(",", ":")).encode()
        out.append(
            b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


@dataclass
class Result:
    orders: int
    seconds: float
    latencies: list[float]
    errors: int
    server_cpu: float = float("nan")  # CPU seconds of the matcher over the timed window
    client_cpu: float = float("nan")  # ... and of this client

    def cpu_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.orders if self.orders else float("nan")

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


async def load(port: int, requests: list[bytes], concurrency: int, seconds: float) -> Result:
    it = iter(requests)
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for req in it:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                writer.write(req)
                status = await _read_response(reader)
                if status == 201:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(len(lat), time.perf_counter() - t0, lat, errors)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(db: str, port: int) -> None:
    """The matcher process (`--serve`)."""
    from perpdex.matcher.api import create_app
    from perpdex.matcher.api import serve as serve_app
    from perpdex.matcher.core import Matcher, MatcherConfig
    from perpdex.matcher.settler import FakeChain, FakeSettler
    from perpdex.matcher.store import Store

    config = MatcherConfig(
        CHAIN_ID, CH, frozenset({0, 1}), batch_size=o.MAX_FILLS_PER_BATCH, settle_interval=0.5
    )
    chain = FakeChain(CHAIN_ID, CH, now=int(time.time()))
    serve_app(create_app(Matcher(config, Store(db), FakeSettler(chain))), "127.0.0.1", port)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all threads (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_backend(db: str, requests: list[bytes], concurrency: int, seconds: float) -> Result:
    port = _free_port()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpdex.matcher.bench", "--serve", db, "--port", str(port)],
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the matcher did not start: see its output above") from None
                time.sleep(0.1)
        warm = min(200, len(requests) // 10)
        asyncio.run(load(port, requests[:warm], 8, seconds))
        server, client = _cpu_seconds(proc.pid), time.process_time()
        r = asyncio.run(load(port, requests[warm:], concurrency, seconds))
        r.server_cpu = _cpu_seconds(proc.pid) - server
        r.client_cpu = time.process_time() - client
        return r
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SETTLE_FILLS = int(os.environ.get("PERPDEX_BENCH_FILLS", "640"))
SETTLE_PAIRS = 4
SETTLE_SIZE = WAD // 100  # 0.01 BTC a fill (~$1,000)


@dataclass
class SettleResult:
    fills: int
    batches: int
    seconds: float
    gas: int

    @property
    def rate(self) -> float:
        return self.fills / self.seconds if self.seconds else 0.0


def settle_run(
    rpc_url: str, clearinghouse: str, settler_key: str, orders: list[tuple[o.Order, bytes]], db: str
) -> SettleResult:
    """Places `orders` (maker, taker, maker, taker, ...) into a matcher, then times
    settling every fill into the chain at `rpc_url`."""
    from perpdex.matcher.core import Matcher, MatcherConfig
    from perpdex.matcher.settler import ChainSettler
    from perpdex.matcher.store import Store

    settler = ChainSettler(rpc_url, clearinghouse, settler_key)
    config = MatcherConfig(
        settler.chain_id,
        clearinghouse,
        frozenset({0}),
        batch_size=o.MAX_FILLS_PER_BATCH,
        settle_interval=0.0,
        resend_after=5.0,
    )
    m = Matcher(config, Store(db), settler)
    m.start()
    for order, sig in orders:
        m.place(order, sig)
    fills = len(m.queued)
    t0 = time.perf_counter()
    batches = 0
    while m.queued or m.pending:
        while m.queued:
            m.settle_now()
            batches += 1
        m.confirm_now()
    seconds = time.perf_counter() - t0
    settled = m.store.fills_in_state("settled")
    if len(settled) != fills:
        raise RuntimeError(f"only {len(settled)} of {fills} fills settled: see the log above")
    from sqlalchemy import select

    from perpdex.matcher.store import batches_t

    with m.store.engine.connect() as conn:
        tx_ids = [str(r.tx_id) for r in conn.execute(select(batches_t.c.tx_id)).all()]
    gas = sum(int(settler.rpc("eth_getTransactionReceipt", t)["gasUsed"], 16) for t in tx_ids)
    m.store.close()
    return SettleResult(fills, batches, seconds, gas)


def settle_main() -> None:
    """`ape run bench_settle`: on the connected (fresh, local) chain."""
    from ape import accounts, chain
    from eth_account import Account

    from perpdex.deploy import deploy_system

    console = Console()
    admin = accounts.test_accounts[0]
    t = time.perf_counter()
    p = deploy_system(admin, key="local", manifest=None)
    traders = [accounts.test_accounts[i] for i in range(1, 1 + 2 * SETTLE_PAIRS)]
    unit = 10**p.system.settlement_decimals
    ids = []
    for who in traders:
        acct = int(p.clearinghouse.open_account("bench", False, sender=who).return_value)
        p.token.mint(who, 1_000_000 * unit, sender=who)
        p.token.approve(p.clearinghouse, 2**256 - 1, sender=who)
        p.ops.deposit(acct, p.token, 1_000_000 * unit, sender=who)
        ids.append(acct)
    settler = Account.create()
    admin.transfer(settler.address, 10**19)
    console.print(
        f"set-up (deploy, {len(traders)} funded accounts): {time.perf_counter() - t:.0f} s"
    )
    ch = str(p.clearinghouse.address)
    price = int(p.oracle.latest(p.market_id("BTC"))[0])
    expiry = int(chain.pending_timestamp) + 3_600
    cache = sigs.DigestCache(int(chain.chain_id), ch)
    keys = [PrivateKey(bytes.fromhex(str(who.private_key).removeprefix("0x"))) for who in traders]

    def sign(k: int, size: int, nonce: int) -> tuple[o.Order, bytes]:
        order = o.Order(ids[k], 0, size, price, expiry, nonce)
        rs_v = keys[k].sign_recoverable(cache.digest(order), hasher=None)
        return order, rs_v[:64] + bytes([rs_v[64] + 27])

    orders = []
    for i in range(SETTLE_FILLS):
        pair = i % SETTLE_PAIRS
        orders.append(sign(pair, -SETTLE_SIZE, i))  # maker: sells, rests
        orders.append(sign(SETTLE_PAIRS + pair, SETTLE_SIZE, i))  # taker: buys it
    with tempfile.TemporaryDirectory(prefix="perpdex-settle-bench-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        r = settle_run(str(chain.provider.uri), ch, settler.key.hex(), orders, db)
    table = Table(title="matcher settlement into anvil (ChainSettler, SQLite, automine)")
    for col in ("fills", "batches", "seconds", "fills/s", "gas/fill"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{r.fills:,}",
        f"{r.batches:,}",
        f"{r.seconds:.1f}",
        f"{r.rate:,.0f}",
        f"{r.gas // max(r.fills, 1):,}",
    )
    console.print(table)
    if os.environ.get("PERPDEX_BENCH_NO_RECORD"):
        return
    from perpdex.devtools.perf import record

    values: dict[str, float] = {"settle_fills_per_s": round(r.rate)}
    record(values)
    console.print(f"recorded {values} (docs/perf.json)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perpdex.matcher.bench", description=__doc__)
    ap.add_argument("--orders", type=int, default=20_000, help="at most this many orders")
    ap.add_argument("--seconds", type=float, default=15.0, help="and at most this long")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--no-record", action="store_true", help="do not write docs/perf.json")
    ap.add_argument("--serve", metavar="DB_URL", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    console = Console()
    t = time.perf_counter()
    requests = presign(args.orders + 200)
    console.print(f"signed {len(requests):,} orders in {time.perf_counter() - t:.1f} s (untimed)")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="perpdex-matcher-bench-") as tmp:
        if args.backend in ("sqlite", "both"):
            db = f"sqlite:///{Path(tmp) / 'bench.db'}"
            results["sqlite"] = run_backend(db, requests, args.concurrency, args.seconds)
        if args.backend in ("postgresql", "both"):
            from perpdex.matcher.pg import NoPostgres, TempPostgres

            try:
                with TempPostgres(durable=True) as pg:
                    db = pg.new_database("bench")
                    results["postgresql"] = run_backend(
                        db, requests, args.concurrency, args.seconds
                    )
            except NoPostgres as e:
                console.print(f"[bold red]PostgreSQL skipped: {e}[/]")
    table = Table(
        title=f"matcher on loopback: {args.concurrency} requests in flight, ack after commit"
    )
    for col in ("backend", "orders", "seconds", "orders/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r.orders:,}",
            f"{r.seconds:.1f}",
            f"{r.rate:,.0f}",
            f"{r.pct(0.50):.1f}",
            f"{r.pct(0.99):.1f}",
            f"{r.errors:,}",
        )
    console.print(table)
    for name, r in results.items():
        console.print(
            f"{name}: CPU per order {r.cpu_ms(r.server_cpu):.2f} ms matcher, "
            f"{r.cpu_ms(r.client_cpu):.2f} ms client (matcher at "
            f"{r.server_cpu / r.seconds if r.seconds else float('nan'):.2f} cores)"
        )
    console.print("targets (SQLite): >= 2,000 orders/s, p99 < 25 ms")
    if not args.no_record and results:
        from perpdex.devtools.perf import record

        values: dict[str, float] = {}
        if "sqlite" in results:
            values["matcher_orders_per_s"] = round(results["sqlite"].rate)
            values["matcher_p99_ms"] = round(results["sqlite"].pct(0.99), 1)
        if "postgresql" in results:
            values["matcher_orders_per_s_postgres"] = round(results["postgresql"].rate)
        record(values)
        console.print(f"recorded {values} (docs/perf.json)")
    return 0 if all(r.errors == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
