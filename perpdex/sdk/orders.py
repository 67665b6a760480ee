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
                or an operator the owner authorised
  market        market index
  size          signed base size: positive buys, negative sells (never 0)
  limit_price   worst price accepted: a ceiling for buys, a floor for sells
  trigger_price 0 for a plain order; otherwise the oracle price (with quorum) that arms
                a conditional order (stop-market, stop-limit, take-profit)
  keeper_fee    settlement-token WAD paid by the order's account to whoever executes a
                triggered order (0 for a plain order)
  expiry        unix seconds after which the order cannot fill
  nonce         per-account; cancel one order by its hash or every order below a nonce
  flags         FLAG_* bits below
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

DOMAIN_NAME = "perpdex"
DOMAIN_VERSION = "1"

FLAG_REDUCE_ONLY = 1
FLAG_POST_ONLY = 2
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
        values = asdict(self)
        return {n: values[p] for p, n, _ in ORDER_FIELDS}


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
