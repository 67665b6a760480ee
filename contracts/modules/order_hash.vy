# pragma version ~=0.4.3
"""
@title EIP-712 signed orders: the type, its digest and the replay-state bits
@custom:contract-name order_hash
@license MIT
@notice Stateless, shared by the two halves that read signed orders: ClearinghouseOrders
        (`settle`) and ClearinghouseRisk (`cancel_order`, `cancel_below`), so the digest
        a fill checks and the one a cancel logs are computed by one piece of code. The
        struct is the one of perpdex/sdk/orders.py; the domain is ("perpdex", "1",
        chain id, `self`: the Clearinghouse, since both halves run by delegatecall).
"""

# replay state (state._order_bits), two bits per nonce: "partly filled" (its filled
# amount is in state._order_filled[digest]) and "done" (filled completely, cancelled, or
# an IOC order after its first batch)
ORDER_PARTIAL: constant(uint256) = 1
ORDER_DONE: constant(uint256) = 2
# the header's top 64 bits: orders with a lower nonce are cancelled (`cancel_below`)
MIN_NONCE_SHIFT: constant(uint256) = 192

ORDER_TYPEHASH: constant(bytes32) = keccak256(
    "Order(uint256 account,uint256 market,int256 size,uint256 limitPrice,uint256 triggerPrice,uint256 keeperFee,uint64 expiry,uint64 nonce,uint8 flags)"
)
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NAME_HASH: constant(bytes32) = keccak256("perpdex")
VERSION_HASH: constant(bytes32) = keccak256("1")


# @notice The EIP-712 order (perpdex/sdk/orders.py), as `cancel_order` takes it.
struct Order:
    account: uint256
    market: uint256
    size: int256
    limitPrice: uint256
    triggerPrice: uint256
    keeperFee: uint256
    expiry: uint64
    nonce: uint64
    flags: uint8


@internal
@view
def _domain() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@pure
def _digest(domain: bytes32, o: Order) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(
            ORDER_TYPEHASH,
            o.account,
            o.market,
            o.size,
            o.limitPrice,
            o.triggerPrice,
            o.keeperFee,
            o.expiry,
            o.nonce,
            o.flags,
        )
    )
    return keccak256(concat(b"\x19\x01", domain, struct_hash))
