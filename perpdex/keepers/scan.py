"""The liquidation keeper's read path: every account, every tick, within providers' limits.

Read this before changing `Liquidator.read`. Two layers:

`RpcBatcher` sends raw `eth_call`s as JSON-RPC batches over HTTP keep-alive (no ape, no
web3 middleware): the calls are cut into chunks of at most `max_calls` calls and
`max_bytes` request bytes (hosted providers refuse bigger batches: Alchemy and Infura
take about 1,000 calls, anvil 2 MiB of body), and `parallel` chunks are in flight at once.
A refused chunk is split in two and retried, and later chunks use the smaller size; a
provider that refuses even a batch of one gets one plain request per call. Every such
step down is logged at WARNING with the reason and the count (`fallbacks` counts the
calls sent singly). A call that reverts or errors yields None: the caller skips that
account this tick, it never stops the keeper.

`AccountScanner` reads accounts in two phases, all pinned to one block:

    1. every account: `account_header` (is it in liquidation?) and `account_margin`
       (equity, maintenance, notional at the cached marks): two small views;
    2. only accounts that could need an action (in liquidation, below
       (1 + near) x maintenance, or collateral debt without positions): the
       time-weighted margin, the auction and its deadline.

`batch_call` runs ape contract views (`(contract.view, args)`) through an `RpcBatcher`
at one block and decodes them as ape does (structs keep their field names): the SDK's
`Snapshot.load`, the crash replay and the loss-cap keeper read through it instead of
paying ape's ~18 ms per `eth_call`.

Accounts that skip phase 2 come back with `detailed=False` and their time-weighted
figures equal to the cached-mark ones (`plan` ignores them for such accounts). Payloads
are built from precomputed selectors and results decoded word by word (static types
only; tests/unit/test_keeper_scan.py checks the decoder against eth-abi).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from eth_utils import keccak

__all__ = [
    "AccountScanner",
    "BatchLimits",
    "BatchRefused",
    "HttpTransport",
    "RpcBatcher",
    "ScanStats",
    "ape_transport",
    "batch_call",
    "decode_words",
    "rpc_request",
    "selector",
]

log = logging.getLogger("perpdex.keepers.scan")

IN_LIQUIDATION = 4  # account header flag (contracts/modules/constants.vy)


class BatchRefused(Exception):
    """The provider refused a request as a whole (too large, batches not supported...)."""


# A transport posts one JSON-RPC body and returns the parsed reply (a list for a batch,
# an object for a single request); it raises BatchRefused when the provider refuses the
# request as a whole (HTTP 413/400, or an error object instead of a batch reply).
Transport = Callable[[bytes], Any]


@dataclass(frozen=True)
class BatchLimits:
    """What one JSON-RPC request may carry, and how many are in flight at once."""

    max_calls: int = 1_000
    max_bytes: int = 1_048_576
    parallel: int = 2

    def __post_init__(self) -> None:
        if self.max_calls < 1 or self.max_bytes < 256 or self.parallel < 1:
            raise ValueError(
                f"batch limits must be positive (max_calls {self.max_calls}, max_bytes "
                f"{self.max_bytes} >= 256, parallel {self.parallel}); fix the keeper config"
            )


@dataclass
class ScanStats:
    """What the last scan cost: requests sent, calls sent singly, accounts per phase."""

    accounts: int = 0
    detailed: int = 0
    failed: int = 0
    chunks: int = 0
    refusals: int = 0
    fallbacks: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.accounts / self.seconds if self.seconds else 0.0


class HttpTransport:
    """POSTs to a JSON-RPC endpoint with one keep-alive session per thread."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> Any:
        import requests

        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["Content-Type"] = "application/json"
            self._local.session = s
        return s

    def __call__(self, body: bytes) -> Any:
        r = self._session().post(self.url, data=body, timeout=self.timeout)
        if r.status_code != 200:
            raise BatchRefused(f"HTTP {r.status_code}: {r.text[:200].strip()}")
        try:
            return r.json()
        except ValueError as e:
            raise BatchRefused(f"reply is not JSON: {r.text[:200].strip()}") from e


class Web3Transport:
    """Any web3 provider (IPC, websocket, ...) when the endpoint is not plain HTTP."""

    def __init__(self, w3: Any) -> None:
        self.w3 = w3

    def __call__(self, body: bytes) -> Any:
        req = json.loads(body)
        p = self.w3.provider
        try:
            if not isinstance(req, list):
                return {**p.make_request(req["method"], req["params"]), "id": req["id"]}
            replies = p.make_batch_request([(r["method"], r["params"]) for r in req])
        except (AttributeError, NotImplementedError, TypeError, ValueError) as e:
            raise BatchRefused(f"{type(e).__name__}: {e}") from e
        if not isinstance(replies, list) or len(replies) != len(req):
            return replies
        # web3 numbers the requests itself: give back ours, in the order it sent them
        ordered = sorted(replies, key=lambda r: int(r.get("id", 0)))
        return [{**r, "id": q["id"]} for q, r in zip(req, ordered, strict=True)]


def transport_for(w3: Any, uri: str | None = None) -> Transport:
    """Raw HTTP to `uri` or the web3 provider's http(s) endpoint, else through web3."""
    uri = uri or str(getattr(w3.provider, "endpoint_uri", "") or "")
    if uri.startswith(("http://", "https://")):
        return HttpTransport(uri)
    return Web3Transport(w3)


_HTTP: dict[str, HttpTransport] = {}


def ape_transport() -> Transport:
    """Raw keep-alive HTTP to the node ape is connected to (through web3 otherwise); one
    transport per URL, so repeated batches reuse their connection."""
    from ape import chain

    uri = getattr(chain.provider, "http_uri", None)
    if isinstance(uri, str) and uri.startswith(("http://", "https://")):
        return _HTTP.setdefault(uri, HttpTransport(uri))
    return transport_for(chain.provider.web3)


def rpc_request(transport: Transport, method: str, *params: Any) -> Any:
    """One JSON-RPC request through `transport`; its result, or BatchRefused with the
    node's error (message and revert data)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": method, "params": params})
    reply = transport(body.encode())
    if not isinstance(reply, dict) or "error" in reply:
        err = reply.get("error", reply) if isinstance(reply, dict) else reply
        raise BatchRefused(f"{method}: {err}")
    return reply.get("result")


def batch_call(
    calls: Sequence[tuple[Any, tuple[Any, ...]]],
    limits: BatchLimits | None = None,
    *,
    block: int | str = "latest",
    strict: bool = True,
) -> list[Any]:
    """Run ape view calls `(contract.view, args)` at `block` as chunked JSON-RPC batches
    (see `RpcBatcher`); the outputs in order, decoded as ape decodes them (one output
    unwrapped, structs with field names). A call that failed is re-run through ape, which
    raises its real error; with `strict=False` it yields None instead."""
    if not calls:
        return []
    from ape import chain
    from hexbytes import HexBytes

    tag = hex(block) if isinstance(block, int) else block
    batcher = RpcBatcher(ape_transport(), limits or BatchLimits())
    raw = batcher.call([(str(m.contract.address), _hex(m.encode_input(*a))) for m, a in calls], tag)
    ecosystem = chain.provider.network.ecosystem
    out: list[Any] = []
    for (m, a), r in zip(calls, raw, strict=True):
        if r is None or len(r) <= 2:
            out.append(m(*a, block_id=block) if strict else None)  # ape raises the real error
            continue
        abi = next((x for x in m.abis if len(x.inputs) == len(a)), m.abis[0])
        value = ecosystem.decode_returndata(abi, HexBytes(r))
        if isinstance(value, list | tuple) and len(value) < 2:  # as ape's ContractCall
            value = value[0] if value else None
        out.append(value)
    return out


def _hex(data: Any) -> str:
    return data if isinstance(data, str) else "0x" + bytes(data).hex()


def _request(i: int, to: str, data: str, block: str) -> str:
    return (
        f'{{"jsonrpc":"2.0","id":{i},"method":"eth_call",'
        f'"params":[{{"to":"{to}","data":"{data}"}},"{block}"]}}'
    )


@dataclass
class RpcBatcher:
    """Chunked, parallel batches of eth_call; see the module docstring."""

    transport: Transport
    limits: BatchLimits = field(default_factory=BatchLimits)
    chunks: int = 0  # requests sent since creation
    refusals: int = 0  # batches the provider refused (then split) since creation
    last_error: str = ""  # the last per-call error the provider returned
    fallbacks: int = 0  # calls sent one request each since creation
    _max_calls: int = 0  # the working chunk size (shrinks when a provider refuses)
    _single: bool = False  # the provider refused a batch of one: plain requests only
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._max_calls = self.limits.max_calls

    def chunk(self, requests: Sequence[str]) -> list[list[int]]:
        """Indices of `requests` cut at the call and byte limits (2 bytes of brackets,
        1 comma per extra call)."""
        out: list[list[int]] = []
        cur: list[int] = []
        size = 2
        for i, r in enumerate(requests):
            n = len(r) + (1 if cur else 0)
            if cur and (len(cur) >= self._max_calls or size + n > self.limits.max_bytes):
                out.append(cur)
                cur, size, n = [], 2, len(r)
            cur.append(i)
            size += n
        if cur:
            out.append(cur)
        return out

    def call(self, calls: Sequence[tuple[str, str]], block: str = "latest") -> list[str | None]:
        """Runs (to, calldata hex) eth_calls at `block`; the result hex of each, None for
        a call that reverted or failed."""
        requests = [_request(i, to, data, block) for i, (to, data) in enumerate(calls)]
        out: list[str | None] = [None] * len(requests)
        chunks = self.chunk(requests)
        if self.limits.parallel > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(self.limits.parallel) as pool:
                for _ in pool.map(lambda c: self._run(requests, c, out), chunks):
                    pass
        else:
            for c in chunks:
                self._run(requests, c, out)
        return out

    def _run(self, requests: Sequence[str], idx: list[int], out: list[str | None]) -> None:
        if self._single:
            self._singly(requests, idx, out, "")
            return
        step = self._max_calls
        if len(idx) > step:  # a refusal shrank the chunk size since this one was cut
            for lo in range(0, len(idx), step):
                self._run(requests, idx[lo : lo + step], out)
            return
        body = ("[" + ",".join(requests[i] for i in idx) + "]").encode()
        with self._lock:
            self.chunks += 1
        try:
            replies = self.transport(body)
            if not isinstance(replies, list) or len(replies) != len(idx):
                shape = (
                    f"{len(replies)} replies" if isinstance(replies, list) else repr(replies)[:200]
                )
                raise BatchRefused(f"unexpected batch reply ({shape})")
        except BatchRefused as e:
            self._refused(requests, idx, out, len(body), str(e))
            return
        for r in replies:
            if isinstance(r, dict) and "id" in r:
                i = int(r["id"])
                res = r.get("result")
                if "error" not in r and isinstance(res, str) and 0 <= i < len(out):
                    out[i] = res
                else:
                    self.last_error = str(r.get("error", r))[:200]

    def _refused(
        self, requests: Sequence[str], idx: list[int], out: list[str | None], size: int, why: str
    ) -> None:
        if len(idx) > 1:
            half = (len(idx) + 1) // 2
            with self._lock:
                self.refusals += 1
                shrunk = half < self._max_calls
                self._max_calls = min(self._max_calls, half)
            log.warning(
                "provider refused a batch of %d calls (%d bytes): %s; retrying as two of "
                "%d at most%s",
                len(idx),
                size,
                why,
                half,
                " (later chunks too: lower max_calls/max_bytes in the keeper config)"
                if shrunk
                else "",
            )
            self._run(requests, idx[:half], out)
            self._run(requests, idx[half:], out)
            return
        self._singly(requests, idx, out, why)

    def _singly(
        self, requests: Sequence[str], idx: list[int], out: list[str | None], why: str
    ) -> None:
        with self._lock:
            first = not self._single
            self._single = True
            self.fallbacks += len(idx)
            self.chunks += len(idx)
        if first:
            log.warning(
                "provider refused even a batch of one call (%s): falling back to one "
                "request per call, which is slow; use a provider with JSON-RPC batches",
                why,
            )
        for i in idx:
            try:
                r = self.transport(requests[i].encode())
            except BatchRefused as e:
                log.warning("eth_call %d refused (%s); its account is skipped this tick", i, e)
                continue
            res = r.get("result") if isinstance(r, dict) else None
            if isinstance(r, dict) and "error" not in r and isinstance(res, str):
                out[i] = res
            else:
                self.last_error = str(r.get("error", r) if isinstance(r, dict) else r)[:200]


# --- encoding and decoding ----------------------------------------------------------------


def selector(signature: str) -> str:
    """`0x` + the 4-byte selector of a function signature like `auction(uint256)`."""
    return "0x" + keccak(text=signature)[:4].hex()


_SIGN = 1 << 255


def decode_words(result: str, signed: Sequence[bool]) -> list[int] | None:
    """The first len(signed) 32-byte words of a call result as ints (two's complement for
    the signed ones; bools come back as 0/1). None when the result is shorter (a view
    missing on this contract answers 0x)."""
    h = result[2:] if result.startswith("0x") else result
    n = len(signed)
    if len(h) < 64 * n:
        return None
    out = []
    for k in range(n):
        v = int(h[64 * k : 64 * k + 64], 16)
        if signed[k] and v >= _SIGN:
            v -= 1 << 256
        out.append(v)
    return out


_HEADER = (False,)
_SCAN = (True, False, False, False, False)  # MarginScan: equity, initial, maintenance, ...
_AUCTION = (False,) * 6
_DEADLINE = (False,)


class AccountScanner:
    """Reads accounts for `plan` in two phases (see the module docstring)."""

    def __init__(
        self,
        clearinghouse: str,
        auction: str,
        batcher: RpcBatcher,
        near: Decimal = Decimal("0.05"),
    ) -> None:
        self.ch = clearinghouse
        self.auction = auction
        self.batcher = batcher
        self.near = near
        self._header = selector("account_header(uint256)")
        self._margin = selector("account_margin(uint256)")
        self._twap = selector("margin_at_twap(uint256)")
        self._auction = selector("auction(uint256)")
        self._deadline = selector("deadline(uint256)")
        self.stats = ScanStats()

    def candidate(self, header: int, equity: int, maintenance: int) -> bool:
        """Could `plan` act on this account? (in liquidation, near or below maintenance,
        or settlement debt without positions)"""
        if header & IN_LIQUIDATION:
            return True
        if maintenance == 0:
            return equity < 0
        return Decimal(equity) < Decimal(maintenance) * (1 + self.near)

    def scan(self, accounts: Sequence[int], block: int | str = "latest") -> list[Any]:
        """AccountReads of the accounts that answered, in order; the failed ones are
        logged at WARNING and left out (the next tick tries again)."""
        import time

        from perpdex.keepers.liquidator import AccountRead

        t0 = time.perf_counter()
        tag = block if isinstance(block, str) else hex(block)
        b = self.batcher
        chunks0, refusals0, singles0 = b.chunks, b.refusals, b.fallbacks
        words = [f"{a:064x}" for a in accounts]
        ch = self.ch
        calls: list[tuple[str, str]] = []
        for w in words:
            calls.append((ch, self._header + w))
            calls.append((ch, self._margin + w))
        res = self.batcher.call(calls, tag)
        first: list[tuple[int, int, list[int]] | None] = []
        need: list[int] = []
        for k in range(len(accounts)):
            h, m = res[2 * k], res[2 * k + 1]
            hw = decode_words(h, _HEADER) if h is not None else None
            mw = decode_words(m, _SCAN) if m is not None else None
            if hw is None or mw is None:
                first.append(None)
                continue
            first.append((k, hw[0], mw))
            if self.candidate(hw[0], mw[0], mw[2]):
                need.append(k)
        detail: dict[int, tuple[list[int], list[int], int]] = {}
        if need:
            calls = []
            for k in need:
                w = words[k]
                calls += [
                    (ch, self._twap + w),
                    (self.auction, self._auction + w),
                    (self.auction, self._deadline + w),
                ]
            res2 = self.batcher.call(calls, tag)
            for j, k in enumerate(need):
                t, au, dl = res2[3 * j : 3 * j + 3]
                tw = decode_words(t, _SCAN) if t is not None else None
                aw = decode_words(au, _AUCTION) if au is not None else None
                dw = decode_words(dl, _DEADLINE) if dl is not None else None
                if tw is not None and aw is not None and dw is not None:
                    detail[k] = (tw, aw, dw[0])
        reads = []
        failed = 0
        for k, a in enumerate(accounts):
            f = first[k]
            if f is None or (k in need and k not in detail):
                failed += 1
                continue
            _, _, mw = f
            if k in detail:
                tw, aw, end = detail[k]
                reads.append(
                    AccountRead(
                        account=a,
                        equity=mw[0],
                        maintenance=mw[2],
                        notional=mw[4],
                        twap_equity=tw[0],
                        twap_maintenance=tw[2],
                        active=bool(aw[0]),
                        started=aw[1],
                        lot=aw[2],
                        kick=aw[3],
                        step=aw[4],
                        discount=aw[5],
                        deadline=end,
                    )
                )
            else:
                reads.append(
                    AccountRead(
                        account=a,
                        equity=mw[0],
                        maintenance=mw[2],
                        notional=mw[4],
                        twap_equity=mw[0],
                        twap_maintenance=mw[2],
                        detailed=False,
                    )
                )
        if failed:
            log.warning(
                "%d of %d account read(s) reverted or failed at block %s (last error: %s); "
                "skipped this tick",
                failed,
                len(accounts),
                tag,
                b.last_error or "-",
            )
        self.stats = ScanStats(
            accounts=len(accounts),
            detailed=len(detail),
            failed=failed,
            chunks=b.chunks - chunks0,
            refusals=b.refusals - refusals0,
            fallbacks=b.fallbacks - singles0,
            seconds=time.perf_counter() - t0,
        )
        return reads
