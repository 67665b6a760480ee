"""The shared order type: our own digest equals eth-account's EIP-712 encoding, signatures
recover, and the domain binds chain and contract (pure Python, no chain)."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from perpdex.sdk import orders as o

KEY = "0x" + "11" * 32
CH = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def _order(**kw: int) -> o.Order:
    base = dict(
        account=(0xAB << 96) | 1,
        market=2,
        size=-3 * 10**18,
        limit_price=2_000 * 10**18,
        expiry=1_900_000_000,
        nonce=7,
    )
    base.update(kw)
    return o.Order(**base)  # type: ignore[arg-type]


def test_digest_matches_eth_account_encoding() -> None:
    order = _order(flags=o.FLAG_REDUCE_ONLY | o.FLAG_TRIGGER_ABOVE, trigger_price=5, keeper_fee=9)
    msg = encode_typed_data(full_message=o.typed_data(order, 31337, CH))
    expected = b"\x19" + msg.version + msg.header + msg.body
    from eth_utils import keccak

    assert o.order_digest(order, 31337, CH) == keccak(expected)


def test_signature_recovers_and_binds_domain() -> None:
    order = _order()
    sig = o.sign_order(order, KEY, 31337, CH)
    assert len(sig) == 65
    signer = Account.from_key(KEY).address
    assert o.recover_signer(order, sig, 31337, CH) == signer
    assert o.recover_signer(order, sig, 1, CH) != signer
    other = "0x" + "22" * 20
    assert o.recover_signer(order, sig, 31337, other) != signer
    assert o.recover_signer(_order(nonce=8), sig, 31337, CH) != signer


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"size": 0}, "size is 0"),
        ({"limit_price": 0}, "limit price"),
        ({"expiry": 2**64}, "expiry"),
        ({"flags": 16}, "unknown flag"),
        ({"flags": o.FLAG_TRIGGER_ABOVE}, "trigger price"),
        ({"keeper_fee": 1}, "keeper fee"),
        ({"flags": o.FLAG_POST_ONLY | o.FLAG_IOC}, "post-only"),
    ],
)
def test_bad_orders_are_refused(kw: dict[str, int], match: str) -> None:
    with pytest.raises(o.OrderError, match=match):
        _order(**kw).validate()
