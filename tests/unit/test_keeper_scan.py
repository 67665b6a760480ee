"""The keeper's account scan (perpdex/keepers/scan.py) against fake JSON-RPC transports:
chunking at the call and byte limits, a provider refusing big batches (split, with a
warning) or every batch (one call per request, with a warning), the word decoder against
eth-abi, and the two-phase read. No chain: tests/integration/test_keepers.py compares the
scan with ape's own calls on real accounts."""

from __future__ import annotations

import json
import logging
import random
from decimal import Decimal
from typing import Any

import pytest
from eth_abi import decode, encode

from perpdex.keepers.scan import (
    IN_LIQUIDATION,
    AccountScanner,
    BatchLimits,
    BatchRefused,
    RpcBatcher,
    decode_words,
    selector,
)

TO = "0x" + "11" * 20


def calls(n: int) -> list[tuple[str, str]]:
    return [(TO, "0x" + f"{i:064x}") for i in range(n)]


class Echo:
    """Answers each eth_call with its calldata; records every body it was sent."""

    def __init__(self, refuse_above: int | None = None, batches: bool = True) -> None:
        self.bodies: list[bytes] = []
        self.refuse_above = refuse_above
        self.batches = batches

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": req["id"], "result": req["params"][0]["data"]}

    def __call__(self, body: bytes) -> Any:
        self.bodies.append(body)
        req = json.loads(body)
        if not isinstance(req, list):
            return self.answer(req)
        if not self.batches:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "no"}}
        if self.refuse_above is not None and len(req) > self.refuse_above:
            raise BatchRefused(f"HTTP 413: more than {self.refuse_above} calls")
        return [self.answer(r) for r in reversed(req)]  # any order: matched by id


def sizes(t: Echo) -> list[int]:
    return [len(json.loads(b)) for b in t.bodies]


def test_chunks__cut_at_max_calls():
    t = Echo()
    b = RpcBatcher(t, BatchLimits(max_calls=1_000, parallel=1))
    out = b.call(calls(2_500))
    assert sizes(t) == [1_000, 1_000, 500]
    assert out == [d for _, d in calls(2_500)]
    assert b.chunks == 3 and b.fallbacks == 0


def test_chunks__cut_at_max_bytes_and_as_full_as_allowed():
    t = Echo()
    limit = 20_000
    b = RpcBatcher(t, BatchLimits(max_calls=10_000, max_bytes=limit, parallel=1))
    out = b.call(calls(1_000))
    assert out == [d for _, d in calls(1_000)]
    assert all(len(body) <= limit for body in t.bodies)
    one = len(json.dumps(json.loads(t.bodies[0])[0], separators=(",", ":")))
    # every chunk but the last is full: one more call would pass the limit
    assert all(len(body) + one + 1 > limit for body in t.bodies[:-1])
    assert len(t.bodies) > 1


def test_parallel_chunks__same_results_as_sequential():
    seq, par = Echo(), Echo()
    a = RpcBatcher(seq, BatchLimits(max_calls=100, parallel=1)).call(calls(1_050))
    b = RpcBatcher(par, BatchLimits(max_calls=100, parallel=4)).call(calls(1_050))
    assert a == b and len(par.bodies) == 11


def test_provider_refusing_big_batches__splits_and_warns(caplog):
    t = Echo(refuse_above=300)
    b = RpcBatcher(t, BatchLimits(max_calls=1_000, parallel=1))
    with caplog.at_level(logging.WARNING, logger="perpdex.keepers.scan"):
        out = b.call(calls(2_000))
    assert out == [d for _, d in calls(2_000)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "refused a batch of 1000 calls" in warnings[0]
    assert "HTTP 413" in warnings[0]
    assert b.refusals >= 2 and b.fallbacks == 0
    assert max(s for s in sizes(t) if s <= 300) == 250
    # the next scan starts at the size that worked: nothing refused, nothing logged
    caplog.clear()
    t.bodies.clear()
    with caplog.at_level(logging.WARNING, logger="perpdex.keepers.scan"):
        b.call(calls(1_000))
    assert sizes(t) == [250] * 4 and not caplog.records


def test_provider_without_batches__one_call_each_with_a_warning(caplog):
    t = Echo(batches=False)
    b = RpcBatcher(t, BatchLimits(max_calls=8, parallel=1))
    with caplog.at_level(logging.WARNING, logger="perpdex.keepers.scan"):
        out = b.call(calls(20))
    assert out == [d for _, d in calls(20)]
    assert b.fallbacks == 20
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "falling back to one request per call" in text


def test_failed_call__none_and_the_rest_answer():
    class OneFails(Echo):
        def answer(self, req: dict[str, Any]) -> dict[str, Any]:
            if req["id"] == 3:
                return {"jsonrpc": "2.0", "id": 3, "error": {"code": 3, "message": "reverted"}}
            return super().answer(req)

    b = RpcBatcher(OneFails(), BatchLimits(parallel=1))
    out = b.call(calls(6))
    assert out[3] is None and all(out[i] for i in (0, 1, 2, 4, 5))
    assert "reverted" in b.last_error


def test_limits__invalid_values_refused():
    with pytest.raises(ValueError, match="keeper config"):
        BatchLimits(max_calls=0)


def test_decode_words__equals_eth_abi():
    rng = random.Random(7)
    types = ["int256", "uint256", "uint256", "int256", "bool"]
    signed = [t == "int256" for t in types]
    for _ in range(200):
        values = [
            rng.randint(-(2**255), 2**255 - 1)
            if t == "int256"
            else (rng.random() < 0.5 if t == "bool" else rng.randint(0, 2**256 - 1))
            for t in types
        ]
        raw = "0x" + encode(types, values).hex()
        assert decode_words(raw, signed) == [int(v) for v in decode(types, bytes.fromhex(raw[2:]))]
    assert decode_words("0x", [False]) is None  # a view this contract does not have


# --- the two-phase scan ---------------------------------------------------------------------

CH, AUCTION = "0x" + "aa" * 20, "0x" + "bb" * 20


class FakeChain(Echo):
    """Clearinghouse and auction views of a few accounts, by selector."""

    def __init__(self, accounts: dict[int, dict[str, Any]]) -> None:
        super().__init__()
        self.accounts = accounts
        self.seen: list[str] = []
        self.views = {
            selector("account_header(uint256)"): ("header", ["uint256"]),
            selector("account_margin(uint256)"): ("margin", ["int256"] + ["uint256"] * 4),
            selector("margin_at_twap(uint256)"): ("twap", ["int256"] + ["uint256"] * 4),
            selector("auction(uint256)"): ("auction", ["bool"] + ["uint256"] * 5),
            selector("deadline(uint256)"): ("deadline", ["uint256"]),
        }

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        data = req["params"][0]["data"]
        name, types = self.views[data[:10]]
        a = int(data[10:], 16)
        self.seen.append(name)
        acct = self.accounts[a]
        if acct.get("revert") == name:
            return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": 3, "message": "boom"}}
        v = acct[name]
        values = v if isinstance(v, tuple) else (v,)
        return {"jsonrpc": "2.0", "id": req["id"], "result": "0x" + encode(types, values).hex()}


def scan_of(**kw: int) -> tuple[int, int, int, int, int]:
    return (kw["equity"], 2 * kw["maintenance"], kw["maintenance"], 0, kw.get("notional", 0))


NONE = (False, 0, 0, 0, 0, 0)


def test_scan__only_candidates_get_the_expensive_reads(caplog):
    accounts = {
        1: {"header": 1, "margin": scan_of(equity=500, maintenance=100)},  # healthy
        2: {  # near: 1.02
            "header": 1,
            "margin": scan_of(equity=102, maintenance=100, notional=1_000),
            "twap": scan_of(equity=90, maintenance=100),
            "auction": NONE,
            "deadline": 0,
        },
        3: {  # in liquidation, healthy again at the marks
            "header": 1 | IN_LIQUIDATION,
            "margin": scan_of(equity=200, maintenance=100),
            "twap": scan_of(equity=200, maintenance=100),
            "auction": (True, 1_000, 5 * 10**17, 900, 1, 10**15),
            "deadline": 1_600,
        },
        4: {"header": 1, "margin": scan_of(equity=-5, maintenance=0)},  # debt, no positions
        5: {"header": 1, "margin": scan_of(equity=0, maintenance=0), "revert": "margin"},
    }
    for k in (4,):
        accounts[k].update(twap=scan_of(equity=-5, maintenance=0), auction=NONE, deadline=0)
    t = FakeChain(accounts)
    s = AccountScanner(CH, AUCTION, RpcBatcher(t, BatchLimits(parallel=1)), Decimal("0.05"))
    with caplog.at_level(logging.WARNING, logger="perpdex.keepers.scan"):
        reads = {r.account: r for r in s.scan([1, 2, 3, 4, 5], 77)}
    assert sorted(reads) == [1, 2, 3, 4]  # 5 failed: left out, and said so
    assert "1 of 5 account read(s)" in caplog.text and "boom" in caplog.text
    assert t.seen.count("twap") == 3 and t.seen.count("auction") == 3
    assert not reads[1].detailed and reads[1].twap_equity == 500
    assert reads[2].detailed and reads[2].twap_equity == 90 and reads[2].notional == 1_000
    r3 = reads[3]
    assert (r3.active, r3.started, r3.lot, r3.kick, r3.step, r3.discount, r3.deadline) == (
        True,
        1_000,
        5 * 10**17,
        900,
        1,
        10**15,
        1_600,
    )
    assert reads[4].detailed and reads[4].equity == -5
    assert all('"0x4d"' in json.dumps(json.loads(b)) for b in t.bodies)  # pinned to block 77
    assert s.stats.accounts == 5 and s.stats.detailed == 3 and s.stats.failed == 1


# --- configuration ------------------------------------------------------------------------


def test_rpc_limits__options_beat_networks_yaml_beat_defaults(monkeypatch):
    import perpdex.config
    from perpdex.cli.keeper import rpc_limits
    from perpdex.errors import PerpdexError

    nets = {"l2": {"keeper_rpc": {"max_calls": 500, "parallel": 4}}, "bare": {}}
    monkeypatch.setattr(perpdex.config, "load_networks", lambda: nets)
    given = {"max_calls": None, "max_bytes": 65_536, "parallel": None}
    assert rpc_limits("l2", given) == {
        "rpc_max_calls": 500,
        "rpc_max_bytes": 65_536,
        "rpc_parallel": 4,
    }
    assert rpc_limits("bare", given) == {"rpc_max_bytes": 65_536}
    nets["l2"]["keeper_rpc"]["max_call"] = 1
    with pytest.raises(PerpdexError, match="unknown key"):
        rpc_limits("l2", given)


def test_fill_accounts__both_sides_of_a_vault_fill_and_of_a_matched_pair():
    from eth_utils import keccak

    from perpdex.keepers import liquidator as lq
    from perpdex.sdk.lite.abi import load

    # the topic the keepers filter on is the shipped ABI's event
    ev = next(
        e for e in load("Clearinghouse") if e["type"] == "event" and e["name"] == "OrdersMatched"
    )
    sig = f"OrdersMatched({','.join(i['type'] for i in ev['inputs'])})"
    assert "0x" + keccak(text=sig).hex() == lq.ORDERS_MATCHED

    def word(n: int) -> bytes:
        return n.to_bytes(32, "big")

    fill = {"topics": [bytes.fromhex(lq.FILL[2:]), word(5), word(0), word(9)]}
    matched = {"topics": [bytes.fromhex(lq.ORDERS_MATCHED[2:]), word(7), word(8)]}
    assert lq.fill_accounts(fill) == [5, 9]  # account, counterparty (market in topic 2)
    assert lq.fill_accounts(matched) == [7, 8]  # maker, taker
