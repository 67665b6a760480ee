"""Conditional orders in the SDK without a chain: the builders' flags and limits, the
trigger test, the signature split `execute_order` takes, refusal states, and the orders
file (round trip, bad lines skipped, other deployments filtered, nonces)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perpdex.sdk import order_store as store
from perpdex.sdk import orders as so

WAD = 10**18
KEY = "0x" + "11" * 32
CH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ACCT = (0xAB << 96) | 1


def _build(build, size: int, trigger: int, **kw) -> so.Order:  # type: ignore[no-untyped-def]
    kw.setdefault("expiry", 1_900_000_000)
    kw.setdefault("nonce", store.NONCE_BASE)
    return build(ACCT, 0, size * WAD, trigger * WAD, **kw)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("build", "size", "above", "kind", "limit"),
    [
        (so.stop_loss, -1, False, "stop", 95_000 * 9_500 // 10_000),  # long's stop: sell below
        (so.stop_loss, 1, True, "stop", 95_000 * 10_500 // 10_000),  # short's stop: buy above
        (so.take_profit, -1, True, "take-profit", 95_000 * 9_500 // 10_000),
        (so.take_profit, 1, False, "take-profit", 95_000 * 10_500 // 10_000),
    ],
)
def test_builders__direction_flags_and_stop_market_limit(build, size, above, kind, limit):  # type: ignore[no-untyped-def]
    o = _build(build, size, 95_000)
    assert bool(o.flags & so.FLAG_TRIGGER_ABOVE) == above
    assert o.flags & so.FLAG_REDUCE_ONLY and so.kind(o) == kind
    assert o.limit_price == limit * WAD
    assert so.is_triggered(o, 95_000 * WAD)  # equality fires
    assert so.is_triggered(o, 96_000 * WAD) == above
    assert so.is_triggered(o, 94_000 * WAD) == (not above)


def test_builders__entry_stop_limit_and_refusals():
    entry = _build(so.stop, 2, 103_000, reduce_only=False, limit_price=103_500 * WAD)
    assert entry.flags == so.FLAG_TRIGGER_ABOVE and entry.limit_price == 103_500 * WAD
    with pytest.raises(so.OrderError, match="could never fill"):
        _build(so.stop, -1, 95_000, limit_price=96_000 * WAD)  # a sell's floor above
    with pytest.raises(so.OrderError, match="trigger price above 0"):
        _build(so.stop, -1, 0)
    with pytest.raises(so.OrderError, match="slippage"):
        _build(so.stop, -1, 95_000, slippage_bps=10_000)
    post = so.Order(ACCT, 0, -WAD, WAD, 1, 1, flags=so.FLAG_POST_ONLY, trigger_price=WAD)
    with pytest.raises(so.OrderError, match="post-only"):
        so.validate_conditional(post)


def test_split_signature__ecdsa_and_eip1271():
    o = _build(so.stop_loss, -1, 95_000)
    sig = so.sign_order(o, KEY, 31337, CH)
    v, r, s = so.split_signature(sig)
    assert v in (27, 28) and r.to_bytes(32, "big") + s.to_bytes(32, "big") == sig[:64]
    assert so.split_signature(sig[:64] + bytes([sig[64] - 27]))[0] == v  # 0/1 alias
    assert so.split_signature(bytes(range(64))) == (
        so.EIP1271_V,
        int.from_bytes(bytes(range(32)), "big"),
        int.from_bytes(bytes(range(32, 64)), "big"),
    )
    with pytest.raises(so.OrderError, match="65 bytes"):
        so.split_signature(b"\x01" * 63)
    args = so.execute_args(so.SignedOrder(o, sig))
    assert args[0] == so.order_tuple(o) and len(args[0]) == len(so.ORDER_FIELDS)


def test_order_state__final_and_retryable():
    assert so.order_state(None) == "executable"
    assert so.order_state("clearinghouse: not triggered") == "waiting"
    for reason, state in [
        ("clearinghouse: order done", "done"),
        ("clearinghouse: order nonce cancelled", "cancelled"),
        ("clearinghouse: order expired", "expired"),
        ("clearinghouse: bad signature", "invalid"),
    ]:
        assert so.order_state(reason) == state and state in so.FINAL_STATES
    for reason in ("clearinghouse: nothing to reduce", "clearinghouse: no price quorum"):
        assert so.order_state(reason) == "blocked"


def test_expected_keeper_fee__capped_and_whole_units():
    o = _build(so.stop_loss, -1, 95_000, keeper_fee=5 * WAD + 123)
    assert so.expected_keeper_fee(o, 100 * WAD, 10**12) == 5 * WAD
    assert so.expected_keeper_fee(o, 2 * WAD + 10**12 - 1, 10**12) == 2 * WAD
    assert so.expected_keeper_fee(o, -WAD, 10**12) == 0


def test_store__round_trip_bad_lines_other_deployments_and_nonces(tmp_path: Path):
    def stored(nonce: int, chain_id: int = 31337) -> store.StoredOrder:
        o = _build(so.stop_loss, -1, 95_000, nonce=nonce)
        sig = so.sign_order(o, KEY, chain_id, CH)
        return store.StoredOrder(so.SignedOrder(o, sig), chain_id, CH, symbol="BTC")

    a, b = stored(store.NONCE_BASE), stored(store.NONCE_BASE + 7)
    path = tmp_path / "orders" / "local.jsonl"
    for s in (a, b, a, stored(3, chain_id=1)):
        store.append(path, s)
    with path.open("a") as f:
        f.write('{"version": 1, "order": {"account": "1"}}\n{not json\n')
    line = json.loads(path.read_text().splitlines()[0])
    assert line["digest"] == a.id and line["order"]["size"] == str(-WAD)
    tampered = dict(line, order=dict(line["order"], size=str(-2 * WAD)))
    with path.open("a") as f:
        f.write(json.dumps(tampered) + "\n")

    found, problems = store.load(path.parent, 31337, CH.lower())
    assert [s.id for s in found] == [a.id, b.id]  # deduplicated, chain 1 filtered
    assert found[0].signed == a.signed and found[0].created > 0 and found[0].symbol == "BTC"
    assert len(problems) == 3 and any("digest does not match" in p for p in problems)
    assert store.next_nonce(found, ACCT) == store.NONCE_BASE + 8
    assert store.next_nonce(found, ACCT + 1) == store.NONCE_BASE
    assert store.next_nonce([], ACCT, min_nonce=2**40) == 2**40
    assert store.load(tmp_path / "missing.jsonl") == ([], [])
