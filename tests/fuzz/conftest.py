"""Fixtures and plumbing of the stateful fuzz tests (tests/fuzz/stateful/).

Hypothesis profiles (pick one with PERPDEX_FUZZ_PROFILE; `quick` when unset):

    quick   local runs: a few short sequences, a first look in about a minute
    ci      what `make test` runs (the Makefile sets PERPDEX_FUZZ_PROFILE=ci unless it is
            set): derandomised, so every CI run replays the same sequences and a failure
            reproduces; 50 sequences of 50 steps per settlement decimals (the floor
            issue 10 sets). `make test` runs it beside the other sessions; its time is
            in the slowest-tests table printed at the end of every run
    deep    nightly: many long sequences (~1 hour); failures go to the local example
            database (.hypothesis/) so a re-run replays them first

Speed: ape's transaction path costs ~80 ms a call (signing, receipt decoding, and a call
trace for every revert), and the state machine sends thousands of transactions and reads
~150 views after each. So after deployment everything goes through `Chain`: raw JSON-RPC
to ape's anvil (its dev accounts are unlocked), views read in one HTTP batch, receipts
polled, revert reasons taken from anvil's call tracer, events decoded here with
eth-abi. A transaction then costs ~15 ms and a full read of the system ~20 ms.

Time: every transaction is mined at a timestamp the machine chooses
(`evm_setNextBlockTimestamp`), so a sequence replays to the same state whatever the wall
clock, as Hypothesis needs to shrink a failure.

Fixture names: every fixture here starts with `fuzz_` (ape orders fixtures by name across
the session, so names must not collide with fixtures of other scopes).
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, Phase, settings

from perpdex.config import MarketConfig, SystemConfig, load_system
from perpdex.deploy import Protocol, deploy_system
from perpdex.devtools.loopback import KeptConnection
from perpdex.sdk.handles import contract_type
from perpdex.sdk.math import Book, MarketParams, System

from .strategies import FUZZ_MARKETS, WAD

# --- Hypothesis profiles -------------------------------------------------------------------

_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,
}
settings.register_profile("quick", max_examples=6, stateful_step_count=30, **_COMMON)
settings.register_profile(
    "ci",
    max_examples=50,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    # no shrinking in CI: a failure prints its blob; replay it locally to shrink
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    **_COMMON,
)
settings.register_profile("deep", max_examples=600, stateful_step_count=80, **_COMMON)

PROFILE_ENV = "PERPDEX_FUZZ_PROFILE"


def fuzz_profile() -> str:
    """The profile named by PERPDEX_FUZZ_PROFILE, else `quick`."""
    name = os.environ.get(PROFILE_ENV, "quick")
    if name not in ("quick", "ci", "deep"):
        raise pytest.UsageError(f"{PROFILE_ENV}={name!r}: use quick, ci or deep")
    return name


# --- raw JSON-RPC ----------------------------------------------------------------------------


class RpcError(Exception):
    """The node refused a request; the message is the node's."""


class Rpc:
    """JSON-RPC over one keep-alive HTTP connection to a loopback node.

    Plain `http.client`, not `requests`: per request, requests prepared the request,
    merged the environment's proxy settings and went through urllib3's pool (~0.66 ms of
    CPU a request against ~0.1 ms here; ~40% of the machine's own CPU); a keep-alive
    connection to the node needs none of it. A connection the node closed (or one broken
    mid-request) is reopened and the request sent once more, unless it could already
    have reached the node: a transaction is never sent twice (a kept connection the node
    has closed meanwhile is seen before sending, as urllib3 did)."""

    HEADERS: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}
    # safe to send again after a dropped connection: reads
    RESENDABLE: ClassVar[frozenset[str]] = frozenset(
        {"eth_call", "eth_getBlockByNumber", "eth_getTransactionReceipt", "eth_getCode"}
    )

    def __init__(self, uri: str) -> None:
        self.uri = uri
        parts = urlsplit(uri)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"fuzz RPC needs an http:// node address, got {uri!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.kept = KeptConnection(self.host, self.port, timeout=120)
        self._id = 0

    def _post(self, body: Any, resendable: bool) -> Any:
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            conn = self.kept.open()
            try:
                conn.request("POST", self.path, data, self.HEADERS)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.kept.close()
                if attempt or not resendable:
                    raise
                continue
            if response.status != 200:
                raise RpcError(f"HTTP {response.status} from {self.uri}: {raw[:200]!r}")
            if response.will_close:
                self.kept.close()
            return json.loads(raw)
        raise AssertionError("unreachable")

    def __call__(self, method: str, *params: Any) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        out = self._post(body, method in self.RESENDABLE)
        if "error" in out:
            raise RpcError(f"{method}: {out['error']}")
        return out["result"]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Results in request order; an error entry becomes an RpcError instance."""
        if not calls:
            return []
        base = self._id + 1
        self._id += len(calls)
        body = [
            {"jsonrpc": "2.0", "id": base + i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls)
        ]
        out = self._post(body, all(m in self.RESENDABLE for m, _ in calls))
        by_id = {r["id"]: r for r in out}
        res: list[Any] = []
        for i in range(len(calls)):
            r = by_id[base + i]
            res.append(RpcError(str(r["error"])) if "error" in r else r["result"])
        return res


# --- ABI ------------------------------------------------------------------------------------


# results decoded without eth_abi (most views): one uint256 or int256 word
_ONE_WORD = frozenset({("uint256",), ("int256",)})


@dataclass(frozen=True)
class Fn:
    """One external function: selector and canonical input/output types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def calldata(self, args: Sequence[Any]) -> str:
        return "0x" + (self.selector + abi_encode(list(self.inputs), list(args))).hex()

    def decode(self, hexdata: str) -> Any:
        if self.outputs in _ONE_WORD and len(hexdata) == 66:  # one word: as eth_abi reads it
            word = int(hexdata, 16)
            return word - (word >> 255 << 256) if self.outputs[0] == "int256" else word
        out = abi_decode(list(self.outputs), bytes.fromhex(hexdata[2:]))
        return out[0] if len(out) == 1 else tuple(out)


@dataclass(frozen=True)
class Ev:
    """One event: topic0 and the names and types of its indexed and data fields."""

    name: str
    topic0: bytes
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]

    def decode(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(self.indexed, topics[1:], strict=True):
            args[name] = abi_decode([typ], bytes.fromhex(topic[2:]))[0]
        values = abi_decode([t for _, t in self.data], bytes.fromhex(data[2:]))
        for (name, _), v in zip(self.data, values, strict=True):
            args[name] = v
        return args


@dataclass
class Handle:
    """A deployed contract for `Chain`: lower-case address and its functions by name."""

    name: str
    address: str
    fns: dict[str, Fn]

    def __getitem__(self, fn: str) -> Fn:
        try:
            return self.fns[fn]
        except KeyError:
            raise AttributeError(f"{self.name} has no function {fn}") from None


def _abi_parts(contract_type: Any) -> tuple[dict[str, Fn], list[Ev]]:
    fns: dict[str, Fn] = {}
    evs: list[Ev] = []
    for a in contract_type.abi:
        if a.type == "function":
            fns[a.name] = Fn(
                a.name,
                keccak(text=a.selector)[:4],
                tuple(i.canonical_type for i in a.inputs),
                tuple(o.canonical_type for o in a.outputs),
            )
        elif a.type == "event":
            evs.append(
                Ev(
                    a.name,
                    keccak(text=a.selector),
                    tuple((i.name, i.canonical_type) for i in a.inputs if i.indexed),
                    tuple((i.name, i.canonical_type) for i in a.inputs if not i.indexed),
                )
            )
    return fns, evs


# --- the chain driver ------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    """A decoded event: emitter (lower case), event name and arguments."""

    address: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class TxResult:
    ok: bool
    reason: str | None  # revert reason ("" = reverted without one); None when ok
    logs: tuple[Log, ...]
    timestamp: int
    block: int
    gas_used: int

    def events(self, name: str, address: str | None = None) -> list[dict[str, Any]]:
        return [
            lg.args
            for lg in self.logs
            if lg.name == name and (address is None or lg.address == address)
        ]


def _revert_reason(output: str | None) -> str:
    data = bytes.fromhex((output or "0x")[2:])
    if data[:4] == bytes.fromhex("08c379a0"):
        return str(abi_decode(["string"], data[4:])[0])
    if data[:4] == bytes.fromhex("4e487b71"):
        return f"panic 0x{abi_decode(['uint256'], data[4:])[0]:x}"
    return data.hex()


class Chain:
    """Sends transactions and reads views without ape's per-call overhead (module doc)."""

    GAS = 12_000_000

    def __init__(self, rpc: Rpc, contract_types: Sequence[Any]) -> None:
        self.rpc = rpc
        # calldata by (address, handle, function, arguments): arguments are ints, strings
        self._views: dict[tuple[str, str, str, tuple[Any, ...]], tuple[str, list[Any]]] = {}
        self.events: dict[bytes, Ev] = {}
        for ct in contract_types:
            for ev in _abi_parts(ct)[1]:
                self.events.setdefault(ev.topic0, ev)

    def handle(self, name: str, address: str, contract_type: Any) -> Handle:
        return Handle(name, str(address).lower(), _abi_parts(contract_type)[0])

    def call(self, h: Handle, fn: str, *args: Any, sender: str | None = None) -> Any:
        """One view, or a dry run of a transaction; raises RpcError on a revert."""
        f = h[fn]
        tx: dict[str, Any] = {"to": h.address, "data": f.calldata(args)}
        if sender:
            tx["from"] = sender
        return f.decode(self.rpc("eth_call", tx, "latest"))

    def read(self, calls: Sequence[tuple[Handle, str, tuple[Any, ...]]]) -> list[Any]:
        """Many views in one HTTP batch, all at the latest block."""
        return self.read_at_head(calls)[1]

    def read_at_head(
        self, calls: Sequence[tuple[Handle, str, tuple[Any, ...]]]
    ) -> tuple[tuple[int, int], list[Any]]:
        """`head()` and `read(calls)` in one HTTP batch: nothing is mined between the two
        (the machine sends every transaction itself and waits for its receipt)."""
        reqs: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
        for h, fn, args in calls:
            key = (h.address, h.name, fn, args)  # the same views after every step
            if (req := self._views.get(key)) is None:
                req = ("eth_call", [{"to": h.address, "data": h[fn].calldata(args)}, "latest"])
                self._views[key] = req
            reqs.append(req)
        block, *results = self.rpc.batch(reqs)
        if isinstance(block, RpcError):
            raise RpcError(f"latest block: {block}")
        out = []
        for (h, fn, args), r in zip(calls, results, strict=True):
            if isinstance(r, RpcError):
                raise RpcError(f"{h.name}.{fn}{args}: {r}")
            out.append(h[fn].decode(r))
        return (int(block["number"], 16), int(block["timestamp"], 16)), out

    def balance_calls(self, token: Handle, holders: Sequence[str]) -> list[Any]:
        return [(token, "balanceOf", (a,)) for a in holders]

    def send(
        self, sender: str, h: Handle, fn: str, *args: Any, timestamp: int | None = None
    ) -> TxResult:
        """Mines one transaction (at `timestamp` when given) and returns its outcome."""
        if timestamp is not None:
            self.rpc("evm_setNextBlockTimestamp", hex(timestamp))
        txh = self.rpc(
            "eth_sendTransaction",
            {"from": sender, "to": h.address, "data": h[fn].calldata(args), "gas": hex(self.GAS)},
        )
        receipt = None
        deadline = time.monotonic() + 30
        while receipt is None:
            receipt = self.rpc("eth_getTransactionReceipt", txh)
            if receipt is None and time.monotonic() > deadline:
                raise RpcError(f"no receipt for {h.name}.{fn} after 30 s")
        # anvil's receipts carry their block's timestamp; another node's block is read
        stamp = receipt.get("blockTimestamp")
        if stamp is None:
            stamp = self.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)["timestamp"]
        ok = int(receipt["status"], 16) == 1
        reason = None
        if not ok:
            trace = self.rpc("debug_traceTransaction", txh, {"tracer": "callTracer"})
            reason = _revert_reason(trace.get("output"))
        logs = []
        for lg in receipt["logs"]:
            ev = self.events.get(bytes.fromhex(lg["topics"][0][2:])) if lg["topics"] else None
            if ev is not None and len(lg["topics"]) == 1 + len(ev.indexed):
                logs.append(
                    Log(lg["address"].lower(), ev.name, ev.decode(lg["topics"], lg["data"]))
                )
        return TxResult(
            ok=ok,
            reason=reason,
            logs=tuple(logs),
            timestamp=stamp if isinstance(stamp, int) else int(stamp, 16),
            block=int(receipt["blockNumber"], 16),
            gas_used=int(receipt["gasUsed"], 16),
        )

    def must(
        self, sender: str, h: Handle, fn: str, *args: Any, timestamp: int | None = None
    ) -> TxResult:
        """`send` for set-up steps that cannot fail."""
        r = self.send(sender, h, fn, *args, timestamp=timestamp)
        if not r.ok:
            raise AssertionError(f"set-up step {h.name}.{fn}{args} reverted: {r.reason!r}")
        return r

    def head(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        b = self.rpc("eth_getBlockByNumber", "latest", False)
        return int(b["number"], 16), int(b["timestamp"], 16)


# --- the systems under test ------------------------------------------------------------------


@dataclass(frozen=True)
class FuzzAccount:
    """A sub-account the machine drives."""

    id: int
    owner: str
    label: str
    portfolio: bool
    keeper: bool = False


# WETH is collateral index 1, priced by market 1 (ETH) with a 10% haircut
WETH_MARKET = 1
WETH_HAIRCUT = WAD // 10


@dataclass
class FuzzSystem:
    """One deployment prepared for the state machine (see `_prepare`)."""

    decimals: int
    scale: int  # 10 ** (18 - decimals): token units -> USD WAD
    unit: int  # one dollar in token units
    chain: Chain
    protocol: Protocol
    config: SystemConfig  # with the fuzz market parameters
    params: tuple[MarketParams, ...]  # as stored on chain (mirror form)
    book: Book
    book_address: int
    h: dict[str, Handle]  # token, weth, ch, ops, admin, vault, lens, auction, oracle, seq
    feeds: tuple[tuple[Handle, ...], ...]  # by market id
    actors: dict[str, str]  # role -> address (lower case)
    accounts: tuple[FuzzAccount, ...]
    keeper_account: dict[str, int]  # keeper address -> its account
    liquidation: dict[str, int]
    grace: int
    system: System  # the system word (fee split, mark age, risk-book header fields)
    base_time: int  # a sequence's first transaction comes after this timestamp
    initial_lp_units: dict[str, int] = field(default_factory=dict)
    # WETH (collateral index 1): the market that prices it and its haircut (WAD)
    collateral_market: int = WETH_MARKET
    haircut: int = WETH_HAIRCUT

    def owner_of(self, account: int) -> str:
        return "0x" + format(account >> 96, "040x")

    def label(self, account: int) -> str:
        if account == 0:
            return "pool"
        for a in self.accounts:
            if a.id == account:
                return a.label
        return f"account {account:#x}"

    def role_of(self, address: str) -> str:
        for role, addr in self.actors.items():
            if addr == address.lower():
                return role
        return address


# token units minted to each role at set-up (dollars / WETH)
MINT_USD = {"trader": 3_000_000, "hedger": 3_000_000, "lp": 6_000_000, "lp2": 2_000_000}
MINT_USD |= {"liquidator": 2_000_000, "keeper": 2_000_000, "admin": 2_000_000}
MINT_USD |= {"stranger": 2_000_000}
MINT_WETH = {"trader": 60, "hedger": 60, "stranger": 10}
LP_DEPOSIT_USD = {"lp": 1_600_000, "lp2": 400_000}
INSURANCE_USD = 20_000
# (owner role, label, portfolio, dollars, WETH): the trading sub-accounts, then keepers
ACCOUNT_PLAN: tuple[tuple[str, str, bool, int, int], ...] = (
    ("trader", "iso", False, 40_000, 0),
    ("trader", "pm", True, 60_000, 0),
    ("trader", "alt", False, 12_000, 4),
    ("hedger", "pm", True, 80_000, 2),
    ("hedger", "iso", False, 25_000, 0),
    ("liquidator", "keeper", False, 400_000, 0),
    ("keeper", "keeper", False, 400_000, 0),
)


def _fuzz_config(base: SystemConfig, decimals: int) -> SystemConfig:
    markets: list[MarketConfig] = []
    for m in base.markets:
        f = FUZZ_MARKETS[m.symbol]
        markets.append(
            replace(
                m,
                skew_scale=f.skew_scale * WAD,
                max_oi=f.max_oi * WAD,
                max_funding_velocity=f.velocity_nano * 10**9,
                max_funding_rate=f.max_rate_nano * 10**9,
            )
        )
    return replace(base, settlement_decimals=decimals, markets=tuple(markets))


def _prepare(
    protocol: Protocol, config: SystemConfig, accounts: Any, project: Any, decimals: int
) -> FuzzSystem:
    """WETH listed as collateral index 1 (ETH-priced, 10% haircut); the fuzz market
    parameters (strategies.FUZZ_MARKETS: smaller skew scales and caps, faster funding, so
    premiums, funding and caps bite at the machine's sizes); every actor funded and
    approved; LPs in the vault; insurance funded; the sub-accounts opened and funded."""
    from ape import chain as ape_chain

    rpc = Rpc(ape_chain.provider.web3.provider.endpoint_uri)
    types = [
        project.MockERC20.contract_type,
        contract_type(project, "Clearinghouse"),
        contract_type(project, "ClearinghouseOps"),
        contract_type(project, "ClearinghouseAdmin"),
        contract_type(project, "ClearinghouseRisk"),
        project.ClearinghouseOrders.contract_type,
        project.LiquidityVault.contract_type,
        project.ClearinghouseLens.contract_type,
        project.LiquidationAuction.contract_type,
        project.OracleRouter.contract_type,
        project.MockAggregator.contract_type,
    ]
    ch = Chain(rpc, types)
    p = protocol
    admin_acct = accounts[0]
    weth = project.MockERC20.deploy("Mock WETH", "WETH", 18, sender=admin_acct)
    h = {
        "token": ch.handle("token", p.token.address, project.MockERC20.contract_type),
        "weth": ch.handle("weth", weth.address, project.MockERC20.contract_type),
        "ch": ch.handle("ch", p.clearinghouse.address, contract_type(project, "Clearinghouse")),
        "ops": ch.handle(
            "ops", p.clearinghouse.address, contract_type(project, "ClearinghouseOps")
        ),
        "admin": ch.handle(
            "admin", p.clearinghouse.address, contract_type(project, "ClearinghouseAdmin")
        ),
        "risk": ch.handle(
            "risk", p.clearinghouse.address, contract_type(project, "ClearinghouseRisk")
        ),
        "vault": ch.handle("vault", p.vault.address, project.LiquidityVault.contract_type),
        "lens": ch.handle("lens", p.lens.address, project.ClearinghouseLens.contract_type),
        "auction": ch.handle(
            "auction", p.auction.address, project.LiquidationAuction.contract_type
        ),
        "oracle": ch.handle("oracle", p.oracle.address, project.OracleRouter.contract_type),
        "seq": ch.handle("seq", p.sequencer.address, project.MockAggregator.contract_type),
    }
    feeds = tuple(
        tuple(
            ch.handle(f"feed_{m.symbol}_{i}", f.address, project.MockAggregator.contract_type)
            for i, f in enumerate(p.feeds[m.symbol])
        )
        for m in config.markets
    )
    roles = {
        "admin": 0,
        "trader": 1,
        "hedger": 2,
        "lp": 3,
        "liquidator": 4,
        "keeper": 5,
        "stranger": 7,
        "lp2": 8,
    }
    actors = {r: str(accounts[i].address).lower() for r, i in roles.items()}
    admin = actors["admin"]
    unit = 10**decimals
    max_u = 2**256 - 1

    ch.must(admin, h["admin"], "add_collateral", weth.address, WETH_HAIRCUT, WETH_MARKET, max_u)
    params: list[MarketParams] = []
    for i, m in enumerate(config.markets):
        ch.must(admin, h["admin"], "set_market_params", i, tuple(m.params().values()))
        params.append(MarketParams(**{k: int(v) for k, v in m.params().items()}))  # type: ignore[arg-type]
    for role, addr in actors.items():
        ch.must(addr, h["token"], "mint", addr, MINT_USD.get(role, 0) * unit)
        ch.must(addr, h["token"], "approve", h["ch"].address, max_u)
        ch.must(addr, h["token"], "approve", h["vault"].address, max_u)
        if MINT_WETH.get(role):
            ch.must(addr, h["weth"], "mint", addr, MINT_WETH[role] * WAD)
            ch.must(addr, h["weth"], "approve", h["ch"].address, max_u)
    for role, usd in LP_DEPOSIT_USD.items():
        ch.must(actors[role], h["vault"], "deposit", usd * unit, actors[role])
    ch.must(admin, h["admin"], "fund_insurance", INSURANCE_USD * unit)
    accts: list[FuzzAccount] = []
    keeper_account: dict[str, int] = {}
    for role, label, portfolio, usd, weth_n in ACCOUNT_PLAN:
        owner = actors[role]
        r = ch.must(owner, h["ch"], "open_account", label, portfolio)
        acct = int(r.events("AccountOpened")[0]["account"])
        ch.must(owner, h["ops"], "deposit", acct, h["token"].address, usd * unit)
        if weth_n:
            ch.must(owner, h["ops"], "deposit", acct, h["weth"].address, weth_n * WAD)
        keeper = role in ("liquidator", "keeper")
        accts.append(FuzzAccount(acct, owner, f"{role}/{label}", portfolio, keeper))
        if keeper:
            keeper_account[owner] = acct
    names = list(config.liquidation.params()) if config.liquidation else []
    values = ch.call(h["auction"], "params")
    liq = dict(zip(names, (int(v) for v in values), strict=True))
    # a clock of our own from here on: every feed posted, the sequencer up past its grace
    # period and every mark touched at known times, so a sequence replays exactly
    grace = int(ch.call(h["oracle"], "sequencer_config")[1])
    t = ch.head()[1] + 4_000
    for m, fl in enumerate(feeds):
        answer = int(config.markets[m].price * 10**8)
        for f in fl:
            t += 1
            ch.must(admin, f, "set_answer", answer, timestamp=t)
    t += 1
    ch.must(admin, h["seq"], "set_round_data", 0, t - grace - 100, t, timestamp=t)
    t += 1
    ch.must(admin, h["ops"], "refresh", list(range(len(feeds))), timestamp=t)
    sp = ch.call(h["ch"], "system_params")
    system = System(int(sp[0], 16), *(int(x) for x in sp[1:]))
    book_address = int(ch.call(h["ch"], "risk_book"), 16)
    code = bytes.fromhex(
        rpc("eth_getCode", to_checksum_address(hex(book_address)[2:].zfill(40)), "latest")[2:]
    )
    return FuzzSystem(
        decimals=decimals,
        scale=10 ** (18 - decimals),
        unit=unit,
        chain=ch,
        protocol=p,
        config=config,
        params=tuple(params),
        book=Book.from_code(code),
        book_address=book_address,
        h=h,
        feeds=feeds,
        actors=actors,
        accounts=tuple(accts),
        keeper_account=keeper_account,
        liquidation=liq,
        grace=grace,
        system=system,
        base_time=t,
        initial_lp_units={r: u * unit for r, u in LP_DEPOSIT_USD.items()},
    )


@pytest.fixture(scope="module", params=[6, 18], ids=["usdc6", "dai18"])
def fuzz_system(
    actors: dict[str, Any],
    request: pytest.FixtureRequest,
    protocol: Protocol,
    accounts: Any,
    project: Any,
    admin: Any,
) -> Iterator[FuzzSystem]:
    """The session deployment (6-decimal USDC) or a second full deployment on an 18-decimal
    MockERC20, each prepared by `_prepare`. Module scope: ape reverts it after the module."""
    decimals = int(request.param)
    base = load_system()
    config = _fuzz_config(base, decimals)
    if decimals == base.settlement_decimals:
        p = protocol
    else:
        p = deploy_system(
            admin, key="local", system=replace(base, settlement_decimals=decimals), manifest=None
        )
    yield _prepare(p, config, accounts, project, decimals)
