"""The chain side the matcher reads (perpdex/sdk/settlement.py), against the contract:
`decode_settlement_logs` on the logs real `settle`, `cancel_order` and `cancel_below`
transactions emitted (JSON-RPC's shape and web3's), and the storage slots the matcher's
blame logic reads, against the compiler's layout and against what the chain holds.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from perpdex.constants import WAD
from perpdex.devtools import vyper_frontend
from perpdex.sdk import orders as o
from perpdex.sdk import settlement as cs
from perpdex.sdk.lite.rpc import Rpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from test_signed_orders import World

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


@pytest.fixture
def rpc(chain: Any) -> Rpc:
    return Rpc(str(chain.provider.uri))


def _hex(d: bytes) -> str:
    return "0x" + d.hex()


def test_decode__real_settle_and_cancel_logs(w: World, rpc: Rpc, chain: Any) -> None:
    first = int(chain.blocks.head.number) + 1
    fill = w.pair(0.5)
    tx = w.settle(fill)
    extra = w.sign(w.order(w.maker, -1.0), w.maker_owner)
    cx = w.orders.cancel_order(extra.order.as_message(), sender=w.maker_owner)
    floor = w.nonces[w.taker] + 5
    bx = w.orders.cancel_below(w.taker, floor, sender=w.taker_owner)
    price = fill.maker.order.limit_price

    receipt = rpc("eth_getTransactionReceipt", tx.txn_hash)
    # the receipt also holds the Fill events and the fee transfers: only settlement events
    assert len(receipt["logs"]) > 1
    assert o.decode_settlement_logs(receipt["logs"], w.ch.address) == [
        cs.FillEvent(
            _hex(w.digest(fill.maker.order)), _hex(w.digest(fill.taker.order)), WAD // 2, price
        )
    ]
    assert o.decode_settlement_logs(receipt["logs"], w.p.token.address) == []
    cancel = o.decode_settlement_logs(rpc("eth_getTransactionReceipt", cx.txn_hash)["logs"])
    assert cancel == [cs.CancelEvent(_hex(w.digest(extra.order)), w.maker, extra.order.nonce)]
    below = o.decode_settlement_logs(rpc("eth_getTransactionReceipt", bx.txn_hash)["logs"])
    assert below == [cs.NonceCancelEvent(w.taker, floor)]

    # eth_getLogs with the settlement topics, and web3's HexBytes logs, decode the same
    logs = rpc(
        "eth_getLogs",
        {
            "address": w.ch.address,
            "fromBlock": hex(first),
            "toBlock": "latest",
            "topics": [cs.settlement_topics()],
        },
    )
    assert len(logs) == 3
    events = o.decode_settlement_logs(logs)
    assert [type(e) for e in events] == [cs.FillEvent, cs.CancelEvent, cs.NonceCancelEvent]
    web3 = chain.provider.web3
    by_web3 = o.decode_settlement_logs(web3.eth.get_transaction_receipt(tx.txn_hash)["logs"])
    assert by_web3 == events[:1]
    assert o.decode_settlement_logs([{**logs[0], "removed": True}]) == []


def test_storage_slots__match_the_compiler_layout() -> None:
    state = vyper_frontend.layout("contracts/ClearinghouseOrders.vy")["storage_layout"]["state"]
    assert state["_header"]["slot"] == cs.HEADER_SLOT
    assert state["_balance"]["slot"] == cs.BALANCE_SLOT
    assert state["_order_bits"]["slot"] == cs.ORDER_BITS_SLOT
    assert state["_order_filled"]["slot"] == cs.ORDER_FILLED_SLOT


def test_replay_state__read_from_storage(w: World, rpc: Rpc) -> None:
    def word(slot: int) -> int:
        return int(rpc("eth_getStorageAt", w.ch.address, hex(slot), "latest"), 16)

    maker = w.sign(w.order(w.maker, -1.0), w.maker_owner)
    taker = w.sign(w.order(w.taker, 0.25), w.taker_owner)

    def state(account: int, nonce: int) -> int:
        header = word(cs.map_slot(cs.HEADER_SLOT, account))
        return cs.order_state(account, header, nonce, word)

    w.settle(o.MatchedFill(maker, taker, WAD // 4))
    m, t = maker.order, taker.order
    assert state(w.maker, m.nonce) == cs.ORDER_PARTIAL
    assert word(cs.order_filled_slot(w.digest(m))) == WAD // 4
    assert state(w.taker, t.nonce) == cs.ORDER_DONE
    w.orders.cancel_order(m.as_message(), sender=w.maker_owner)
    assert state(w.maker, m.nonce) & cs.ORDER_DONE
    # a nonce above the header's window: its bits in its order_bits word (review 8)
    far = m.nonce + cs.NONCE_WINDOW + 200
    assert cs.replay_location(w.maker, int(w.ch.account_header(w.maker)), far)[0] is not None
    w.orders.cancel_order(replace(m, nonce=far).as_message(), sender=w.maker_owner)
    assert cs.nonce_state(word(cs.order_bits_slot(w.maker, far)), far) == cs.ORDER_DONE
    w.orders.cancel_below(w.maker, 1_000, sender=w.maker_owner)
    header = int(w.ch.account_header(w.maker))
    assert word(cs.map_slot(cs.HEADER_SLOT, w.maker)) == header
    assert cs.min_nonce(header) == 1_000 and header & cs.ACCOUNT_EXISTS
    balance = word(cs.balance_slot(w.maker))
    assert balance - (2**256 if balance >> 255 else 0) == int(w.ch.balance_of(w.maker, 0))
