"""Signed orders: the EIP-712 types every order tool shares (read this first).

One definition of an order for the contracts' settlement half, the matcher service, the
SDK, the CLI and the keepers. The on-chain verifier hashes the same struct; a test signs
here and checks the contract recovers the signer, so the two cannot drift.

Domain: EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
with name "perpdex", version "1", the chain id, and the Clearinghouse address (orders are
settled by the clearinghouse, so an order signed for one deployment or chain can never
fill on another).

Order fields (all amounts WAD, 1e18):
  account       the sub-account id (owner << 96 | index); the signer must be its owner
                or an operator the owner authorised. An operator's order fills only at
                the oracle price or better for the account (a buy at or below it, a sell
                at or above it); the owner's within the 2% band, and a fill worse than
                the oracle must leave the account above maintenance
  market        market index
  size          signed base size: positive buys, negative sells (never 0)
  limit_price   worst price accepted: a ceiling for buys, a floor for sells
  trigger_price 0 for a plain order; otherwise the oracle price (with quorum) that arms
                a conditional order (stop-market, stop-limit, take-profit)
  keeper_fee    settlement-token WAD paid by the order's account to whoever executes a
                triggered order (0 for a plain order)
  expiry        unix seconds after which the order cannot fill
  nonce         per-account, distinct among the account's live orders: an order that
                fills completely or is cancelled consumes its nonce (no other order of
                the account with that nonce can fill afterwards); `cancel_below`
                cancels every order below a nonce
  flags         FLAG_* bits below

Conditional orders (a trigger price; `stop`, `stop_loss`, `take_profit` below build them)
are never matched: anyone (a keeper, `perpdex keeper orders`) executes one against the
vault with `execute_order` (contracts/modules/conditional.vy) once the oracle price has
crossed its trigger, and earns its keeper fee.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

# the chain's side of settlement (events, replay state): perpdex/sdk/settlement.py
from perpdex.sdk.settlement import ChainEvent as ChainEvent
from perpdex.sdk.settlement import decode_settlement_logs as decode_settlement_logs

DOMAIN_NAME = "perpdex"
DOMAIN_VERSION = "1"

FLAG_REDUCE_ONLY = 1
FLAG_POST_ONLY = 2
# Immediate-or-cancel, taker only: done after the batch of its first fill (its fills
# there one after another); the remainder is cancelled on chain.
FLAG_IOC = 4
# With a trigger price: arm when the oracle price is >= trigger (else when <= trigger).
FLAG_TRIGGER_ABOVE = 8
FLAGS_ALL = FLAG_REDUCE_ONLY | FLAG_POST_ONLY | FLAG_IOC | FLAG_TRIGGER_ABOVE

ORDER_FIELDS: tuple[tuple[str, str, str], ...] = (
    # (python name, EIP-712 name, EIP-712 type)
    ("account", "account", "uint256"),
    ("market", "market", "uint256"),
    ("size", "size", "int256"),
    ("limit_price", "limitPrice", "uint256"),
    ("trigger_price", "triggerPrice", "uint256"),
    ("keeper_fee", "keeperFee", "uint256"),
    ("expiry", "expiry", "uint64"),
    ("nonce", "nonce", "uint64"),
    ("flags", "flags", "uint8"),
)
ORDER_TYPE = "Order(" + ",".join(f"{t} {n}" for _, n, t in ORDER_FIELDS) + ")"
ORDER_TYPEHASH = keccak(text=ORDER_TYPE)
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
DOMAIN_TYPEHASH = keccak(text=DOMAIN_TYPE)


class OrderError(ValueError):
    """An order that no verifier would accept; the message says which field to fix."""


@dataclass(frozen=True)
class Order:
    account: int
    market: int
    size: int
    limit_price: int
    expiry: int
    nonce: int
    flags: int = 0
    trigger_price: int = 0
    keeper_fee: int = 0

    @property
    def is_buy(self) -> bool:
        return self.size > 0

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price != 0

    def validate(self) -> None:
        """Refuses what the contract would refuse on its face (not margin or state)."""
        if self.size == 0:
            raise OrderError("order size is 0: pass a positive size to buy, negative to sell")
        if not -(2**255) < self.size < 2**255:
            raise OrderError("order size does not fit int256")
        if self.limit_price <= 0:
            raise OrderError("limit price must be > 0 (WAD)")
        for name in ("account", "market", "limit_price", "trigger_price", "keeper_fee"):
            if not 0 <= getattr(self, name) < 2**256:
                raise OrderError(f"{name} does not fit uint256")
        for name in ("expiry", "nonce"):
            if not 0 <= getattr(self, name) < 2**64:
                raise OrderError(f"{name} does not fit uint64")
        if self.flags & ~FLAGS_ALL:
            raise OrderError(f"unknown flag bits {self.flags & ~FLAGS_ALL:#x}")
        if self.flags & FLAG_TRIGGER_ABOVE and not self.trigger_price:
            raise OrderError("FLAG_TRIGGER_ABOVE needs a trigger price")
        if self.keeper_fee and not self.trigger_price:
            raise OrderError("a keeper fee is only paid by a conditional (triggered) order")
        if self.flags & FLAG_POST_ONLY and self.flags & FLAG_IOC:
            raise OrderError("an order cannot be both post-only and immediate-or-cancel")

    def as_message(self) -> dict[str, int]:
        """The EIP-712 message (camelCase names)."""
        return {n: getattr(self, p) for p, n, _ in ORDER_FIELDS}


def domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                DOMAIN_TYPEHASH,
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                verifying_contract,
            ],
        )
    )


def struct_hash(order: Order) -> bytes:
    values = asdict(order)
    return keccak(
        encode(
            ["bytes32"] + [t for _, _, t in ORDER_FIELDS],
            [ORDER_TYPEHASH] + [values[p] for p, _, _ in ORDER_FIELDS],
        )
    )


def order_digest(order: Order, chain_id: int, verifying_contract: str) -> bytes:
    """The 32-byte digest a signer signs (and the order's id on chain)."""
    return keccak(b"\x19\x01" + domain_separator(chain_id, verifying_contract) + struct_hash(order))


def typed_data(order: Order, chain_id: int, verifying_contract: str) -> dict[str, object]:
    """The full EIP-712 document (for wallets that sign typed data, e.g. eth_signTypedData_v4)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Order": [{"name": n, "type": t} for _, n, t in ORDER_FIELDS],
        },
        "primaryType": "Order",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": order.as_message(),
    }


def sign_order(
    order: Order, private_key: str | bytes, chain_id: int, verifying_contract: str
) -> bytes:
    """65-byte signature r || s || v (v = 27/28, low s) over the order's digest."""
    order.validate()
    signed = Account.sign_message(
        encode_typed_data(full_message=typed_data(order, chain_id, verifying_contract)),
        private_key,
    )
    return bytes(signed.signature)


def recover_signer(order: Order, signature: bytes, chain_id: int, verifying_contract: str) -> str:
    return str(
        Account.recover_message(
            encode_typed_data(full_message=typed_data(order, chain_id, verifying_contract)),
            signature=signature,
        )
    )


# --- batch settlement calldata (ClearinghouseOrders.settle) ------------------------------
#
# `settle(batch: uint256[])` takes 10 words per fill: the maker order, then the taker
# order, 5 words each (ABI-encoding two 9-word orders and two `bytes` signatures costs
# about three times the calldata):
#   w0  account
#   w1  limit_price << 128 | abs(size)
#   w2  nonce | expiry << 64 | flags << 128 | market << 136 | sell << 152 |
#       (v - 27) << 153 | eip1271 << 154 | fill size << 160 (taker order only)
#   w3  r      w4  s       (an EIP-1271 signature: its 64 bytes)
# The contract rebuilds the Order struct from these words, so the digest it checks is the
# one the signer signed; trigger_price and keeper_fee must be 0 in this encoding.

MAX_FILLS_PER_BATCH = 32  # ClearinghouseOrders.MAX_FILLS
WORDS_PER_ORDER = 5
WORDS_PER_FILL = 2 * WORDS_PER_ORDER
FILL_BAND_BPS = 200  # ClearinghouseOrders.FILL_BAND_BPS: fill price within 2% of the oracle
# 64-byte signatures of contract wallets (EIP-1271) are flagged in w2, not by a `v`.
EIP1271_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class SignedOrder:
    order: Order
    # 65 bytes r || s || v (v 27/28) from `sign_order`, or 64 bytes for an EIP-1271
    # contract-wallet owner (passed to its isValidSignature as they are)
    signature: bytes

    @property
    def is_contract_signature(self) -> bool:
        return len(self.signature) == EIP1271_SIGNATURE_BYTES


@dataclass(frozen=True)
class MatchedFill:
    """The taker trades `size` (base WAD, > 0) of its order at the maker's limit price."""

    maker: SignedOrder
    taker: SignedOrder
    size: int


def _order_words(s: SignedOrder, fill_size: int) -> list[int]:
    o = s.order
    o.validate()
    if o.trigger_price or o.keeper_fee:
        raise OrderError("conditional orders are not settled by `settle` yet (trigger_price 0)")
    if abs(o.size) >= 2**128 or o.limit_price >= 2**128:
        raise OrderError("size and limit price must be below 2**128 to settle")
    if o.market >= 2**16:
        raise OrderError("market id must be below 2**16 to settle")
    sig = bytes(s.signature)
    if len(sig) == 65:
        v = sig[64]
        if v not in (27, 28):
            raise OrderError(f"signature v must be 27 or 28, got {v}")
        v_bit, eip1271 = v - 27, 0
    elif len(sig) == EIP1271_SIGNATURE_BYTES:
        v_bit, eip1271 = 0, 1
    else:
        raise OrderError(
            f"signature must be 65 bytes (ECDSA) or 64 (EIP-1271 wallet), got {len(sig)}"
        )
    w2 = (
        o.nonce
        | o.expiry << 64
        | o.flags << 128
        | o.market << 136
        | int(o.size < 0) << 152
        | v_bit << 153
        | eip1271 << 154
        | fill_size << 160
    )
    return [
        o.account,
        o.limit_price << 128 | abs(o.size),
        w2,
        int.from_bytes(sig[:32], "big"),
        int.from_bytes(sig[32:64], "big"),
    ]


def encode_fill_batch(fills: list[MatchedFill]) -> list[int]:
    """The `batch` argument of `settle` (ClearinghouseOrders.vy) for these fills, in
    order. Checks what the contract checks on the orders' face; state (nonces, filled
    amounts, margin) only the chain knows: simulate the call first."""
    if not 0 < len(fills) <= MAX_FILLS_PER_BATCH:
        raise OrderError(f"a batch holds 1 to {MAX_FILLS_PER_BATCH} fills, got {len(fills)}")
    words: list[int] = []
    for n, f in enumerate(fills):
        m, t = f.maker.order, f.taker.order
        if not 0 < f.size < 2**96:
            raise OrderError(f"fill {n}: size must be > 0 (base WAD, below 2**96)")
        if m.market != t.market:
            raise OrderError(f"fill {n}: maker and taker orders are for different markets")
        if (m.size > 0) == (t.size > 0):
            raise OrderError(f"fill {n}: maker and taker orders are on the same side")
        words += _order_words(f.maker, 0) + _order_words(f.taker, f.size)
    return words


def decode_fill_batch(words: list[int]) -> list[tuple[Order, Order, int]]:
    """(maker order, taker order, fill size) of each fill of a `settle` batch: what a
    matcher reconciling pending transactions needs (signatures are dropped)."""
    if not words or len(words) % WORDS_PER_FILL:
        raise OrderError(f"a batch is a positive multiple of {WORDS_PER_FILL} words")

    def order(w: list[int]) -> Order:
        size = w[1] & (2**128 - 1)
        return Order(
            account=w[0],
            market=(w[2] >> 136) & 0xFFFF,
            size=-size if (w[2] >> 152) & 1 else size,
            limit_price=w[1] >> 128,
            expiry=(w[2] >> 64) & (2**64 - 1),
            nonce=w[2] & (2**64 - 1),
            flags=(w[2] >> 128) & 0xFF,
        )

    out = []
    for i in range(0, len(words), WORDS_PER_FILL):
        w = words[i : i + WORDS_PER_FILL]
        out.append((order(w[:5]), order(w[5:]), w[7] >> 160))
    return out


# --- conditional orders (contracts/modules/conditional.vy `execute_order`) ----------------
#
# One mechanism: the order fires against the vault, whole (a reduce-only order clipped to
# the position), once the oracle price (with quorum) has crossed the trigger: at or above
# it with FLAG_TRIGGER_ABOVE, at or below it without. Its limit price is the fill's
# acceptable price: a stop-limit sets it near the trigger (in a gap it waits until the
# price is back within it), a stop-market far (`DEFAULT_STOP_SLIPPAGE_BPS` beyond the
# trigger), so only an extreme gap keeps it from filling.
#
#   kind                        size   trigger                  builder
#   stop-loss of a long         sell   below the price          stop_loss(size < 0)
#   take-profit of a long       sell   above (TRIGGER_ABOVE)    take_profit(size < 0)
#   stop-loss of a short        buy    above (TRIGGER_ABOVE)    stop_loss(size > 0)
#   take-profit of a short      buy    below                    take_profit(size > 0)
#   stop entry (breakout)       buy above / sell below          stop(reduce_only=False)

# A stop-market order's limit: this far beyond the trigger (5%), against the order.
DEFAULT_STOP_SLIPPAGE_BPS = 500
BPS = 10_000
# `execute_order`'s v for a contract wallet's (EIP-1271) 64-byte signature
EIP1271_V = 0


def limit_from_trigger(trigger_price: int, is_buy: bool, slippage_bps: int) -> int:
    """A stop-market order's limit: the trigger moved `slippage_bps` against the order (a
    ceiling above it for a buy, a floor below it for a sell), rounded to the tighter side."""
    if not 0 <= slippage_bps < BPS:
        raise OrderError(f"slippage must be 0 to {BPS - 1} bp, got {slippage_bps}")
    if is_buy:
        return trigger_price * (BPS + slippage_bps) // BPS
    return max(-(-trigger_price * (BPS - slippage_bps) // BPS), 1)


def conditional(
    account: int,
    market: int,
    size: int,
    trigger_price: int,
    *,
    trigger_above: bool,
    expiry: int,
    nonce: int,
    limit_price: int | None = None,
    slippage_bps: int = DEFAULT_STOP_SLIPPAGE_BPS,
    keeper_fee: int = 0,
    reduce_only: bool = True,
) -> Order:
    """A conditional order (all amounts WAD). Without `limit_price` it is a stop-market
    order: limit `slippage_bps` beyond the trigger (`limit_from_trigger`)."""
    if trigger_price <= 0:
        raise OrderError("a conditional order needs a trigger price above 0 (WAD)")
    if size == 0:
        raise OrderError("order size is 0: pass a positive size to buy, negative to sell")
    if limit_price is None:
        limit_price = limit_from_trigger(trigger_price, size > 0, slippage_bps)
    elif (size > 0 and limit_price < trigger_price) or (size < 0 and limit_price > trigger_price):
        side = "buy's ceiling below" if size > 0 else "sell's floor above"
        raise OrderError(
            f"limit {limit_price} is a {side} the trigger {trigger_price}: it could never "
            "fill when the trigger fires; give a limit beyond the trigger"
        )
    flags = (FLAG_REDUCE_ONLY if reduce_only else 0) | (FLAG_TRIGGER_ABOVE if trigger_above else 0)
    order = Order(
        account=account,
        market=market,
        size=size,
        limit_price=limit_price,
        expiry=expiry,
        nonce=nonce,
        flags=flags,
        trigger_price=trigger_price,
        keeper_fee=keeper_fee,
    )
    validate_conditional(order)
    return order


def stop(account: int, market: int, size: int, trigger_price: int, **kw: Any) -> Order:
    """A stop order (stop-market, or stop-limit with `limit_price`): a sell arms when the
    price falls to the trigger, a buy when it rises to it. Reduce-only unless
    `reduce_only=False` (a breakout entry)."""
    return conditional(account, market, size, trigger_price, trigger_above=size > 0, **kw)


def stop_loss(account: int, market: int, size: int, trigger_price: int, **kw: Any) -> Order:
    """A reduce-only stop closing a position: `size` < 0 (sell) for a long, the trigger
    below the price; `size` > 0 (buy) for a short, the trigger above."""
    kw.setdefault("reduce_only", True)
    return stop(account, market, size, trigger_price, **kw)


def take_profit(account: int, market: int, size: int, trigger_price: int, **kw: Any) -> Order:
    """A reduce-only order taking a position's profit: `size` < 0 (sell) for a long arms
    when the price rises to the trigger, `size` > 0 (buy) for a short when it falls to it."""
    kw.setdefault("reduce_only", True)
    return conditional(account, market, size, trigger_price, trigger_above=size < 0, **kw)


def validate_conditional(order: Order) -> None:
    """What `execute_order` refuses on the order's face."""
    order.validate()
    if not order.trigger_price:
        raise OrderError("not a conditional order: its trigger price is 0")
    if order.flags & FLAG_POST_ONLY:
        raise OrderError("a conditional order fills against the vault: it cannot be post-only")


def kind(order: Order) -> str:
    """`stop` or `take-profit` (a reduce-only stop is a stop-loss) of a conditional
    order, from its side and trigger direction: a stop buys above / sells below."""
    above = bool(order.flags & FLAG_TRIGGER_ABOVE)
    return "stop" if above == order.is_buy else "take-profit"


def is_triggered(order: Order, oracle_price: int) -> bool:
    """Whether the oracle price (WAD, with quorum) has crossed the order's trigger:
    `execute_order`'s own test."""
    if order.flags & FLAG_TRIGGER_ABOVE:
        return oracle_price >= order.trigger_price
    return oracle_price <= order.trigger_price


def expected_keeper_fee(order: Order, settlement_balance: int, settlement_scale: int) -> int:
    """The most `execute_order` pays the executor (USD WAD): the order's fee, at most the
    account's settlement balance after the fill (pass the balance now for an estimate),
    in whole token units. It pays 0 when the withdrawal gate refuses the fee (the
    account short of initial margin without its unrealised profit): not modelled here."""
    fee = min(order.keeper_fee, max(settlement_balance, 0))
    return fee - fee % settlement_scale


def split_signature(signature: bytes) -> tuple[int, int, int]:
    """`execute_order`'s (v, r, s): a 65-byte ECDSA signature's own (v 27/28), or v 0 and
    the two words of a contract wallet's 64-byte EIP-1271 signature."""
    sig = bytes(signature)
    if len(sig) == 65:
        v = sig[64] + 27 if sig[64] in (0, 1) else sig[64]
        if v not in (27, 28):
            raise OrderError(f"signature v must be 27 or 28, got {sig[64]}")
    elif len(sig) == EIP1271_SIGNATURE_BYTES:
        v = EIP1271_V
    else:
        raise OrderError(
            f"signature must be 65 bytes (ECDSA) or 64 (EIP-1271 wallet), got {len(sig)}"
        )
    return v, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")


def order_tuple(order: Order) -> tuple[int, ...]:
    """The Order struct as an ABI tuple (field order of ORDER_FIELDS)."""
    values = asdict(order)
    return tuple(int(values[p]) for p, _, _ in ORDER_FIELDS)


def execute_args(signed: SignedOrder) -> tuple[Any, ...]:
    """The arguments of `execute_order(order, v, r, s)` for a signed conditional order."""
    validate_conditional(signed.order)
    return (order_tuple(signed.order), *split_signature(signed.signature))


def signed_to_json(signed: SignedOrder) -> dict[str, Any]:
    """A signed order as JSON (integers as decimal strings: WAD values overflow doubles)."""
    values = asdict(signed.order)
    return {
        "order": {p: str(values[p]) for p, _, _ in ORDER_FIELDS},
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def signed_from_json(data: dict[str, Any]) -> SignedOrder:
    """The inverse of `signed_to_json`; refuses a malformed record with OrderError."""
    try:
        fields = {p: int(str(data["order"][p]), 0) for p, _, _ in ORDER_FIELDS}
        sig = bytes.fromhex(str(data["signature"]).removeprefix("0x"))
    except (KeyError, TypeError, ValueError) as e:
        raise OrderError(f"malformed signed order ({type(e).__name__}: {e})") from e
    order = Order(**fields)
    order.validate()
    return SignedOrder(order, sig)


# What `execute_order`'s refusal says about a conditional order: final states never change
# (the keeper stops trying), the others may pass later.
ORDER_STATES: dict[str, str] = {
    "clearinghouse: not triggered": "waiting",
    "clearinghouse: order done": "done",
    "clearinghouse: order nonce cancelled": "cancelled",
    "clearinghouse: order expired": "expired",
    "clearinghouse: not a conditional order": "invalid",
    "clearinghouse: post-only conditional order": "invalid",
    "clearinghouse: bad signature": "invalid",
    "clearinghouse: bad wallet signature": "invalid",
    "clearinghouse: high-s signature": "invalid",
    "clearinghouse: signer not authorized": "invalid",
    "clearinghouse: unknown account": "invalid",
    "clearinghouse: unknown market": "invalid",
}
FINAL_STATES = frozenset({"done", "cancelled", "expired", "invalid"})
# a signer may be made an operator later: not final for the keeper, final for a reader
RETRYABLE_INVALID = frozenset({"clearinghouse: signer not authorized"})


def order_state(reason: str | None) -> str:
    """`executable` (the eth_call of `execute_order` passed), `waiting` (not triggered),
    `done` (executed, filled by `settle` or cancelled by nonce), `cancelled` (below the
    account's minimum nonce), `expired`, `invalid` (never executable: signature, kind),
    else `blocked` (triggered but refused for now: no price quorum, nothing to reduce,
    the limit, margin, caps, a pause)."""
    if reason is None:
        return "executable"
    return ORDER_STATES.get(reason.strip(), "blocked")
