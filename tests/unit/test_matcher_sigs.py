"""The matcher's fast signature path equals perpdex.sdk.orders and refuses every bad
signature: wrong signer, wrong chain, wrong contract, malformed, high-s."""

from __future__ import annotations

import pytest
from matcher_support import ADDRS, CH, CHAIN_ID, KEYS, account, signed

from perpdex.matcher import sigs
from perpdex.matcher.core import Unauthorized
from perpdex.sdk import orders as o


def _verify(order: o.Order, sig: bytes) -> str:
    cache = sigs.DigestCache(CHAIN_ID, CH)
    signer = sigs.recover(cache.digest(order), sig)
    if signer != sigs.owner_of(order.account):
        raise Unauthorized(signer)
    return signer


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"size": -(2**255) + 1, "flags": o.FLAG_REDUCE_ONLY},
        {"size": 2**255 - 1, "expiry": 2**64 - 1, "nonce": 2**64 - 1, "limit_price": 2**256 - 1},
        {"trigger_price": 5, "keeper_fee": 3, "flags": o.FLAG_TRIGGER_ABOVE},
    ],
)
def test_fast_digest_equals_sdk(kw: dict[str, int]) -> None:
    base = dict(account=account(0, 3), market=1, size=10**18, limit_price=7, expiry=9, nonce=1)
    order = o.Order(**{**base, **kw})  # type: ignore[arg-type]
    order.validate()
    assert sigs.DigestCache(CHAIN_ID, CH).digest(order) == o.order_digest(order, CHAIN_ID, CH)


def test_good_signature_recovers_owner() -> None:
    order, sig = signed(0, 1, 100)
    assert _verify(order, sig) == ADDRS[0].lower()
    assert sigs.owner_of(order.account) == ADDRS[0].lower()


def test_wrong_signer_chain_or_contract_refused() -> None:
    order, sig = signed(0, 1, 100, key=KEYS[1])
    with pytest.raises(Unauthorized):
        _verify(order, sig)
    order, sig = signed(0, 1, 100, chain_id=1)
    with pytest.raises(Unauthorized):
        _verify(order, sig)
    order, sig = signed(0, 1, 100, contract="0x" + "22" * 20)
    with pytest.raises(Unauthorized):
        _verify(order, sig)


def test_malformed_and_high_s_refused() -> None:
    order, sig = signed(0, 1, 100)
    digest = sigs.DigestCache(CHAIN_ID, CH).digest(order)
    with pytest.raises(sigs.SignatureError, match="65 bytes"):
        sigs.recover(digest, sig[:64])
    with pytest.raises(sigs.SignatureError, match="v must be"):
        sigs.recover(digest, sig[:64] + b"\x05")
    with pytest.raises(sigs.SignatureError, match="zero"):
        sigs.recover(digest, b"\x00" * 32 + sig[32:])
    s = int.from_bytes(sig[32:64], "big")
    v = 55 - sig[64]  # 27 <-> 28: the twin signature (n - s) recovers the same key
    twin = sig[:32] + (sigs.SECP256K1_N - s).to_bytes(32, "big") + bytes([v])
    with pytest.raises(sigs.SignatureError, match="high-s"):
        sigs.recover(digest, twin)


def test_cancel_signature_round_trip() -> None:
    d = "0x" + "ab" * 32
    sig = sigs.sign_cancel(d, KEYS[2])
    assert sigs.recover(sigs.cancel_message_hash(d), sig) == ADDRS[2].lower()
    assert sigs.recover(sigs.cancel_message_hash("0x" + "cd" * 32), sig) != ADDRS[2].lower()
