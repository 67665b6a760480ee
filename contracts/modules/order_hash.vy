# pragma version ~=0.4.3
"""
@title EIP-712 signed orders: the type, its digest, its signature and the replay bits
@custom:contract-name order_hash
@license MIT
@notice No storage of its own, shared by the halves that read signed orders:
        ClearinghouseOrders (`settle`), ClearinghouseRisk (`cancel_order`, and
        `execute_order` of modules/conditional.vy) and ClearinghouseAdmin
        (`cancel_below`), so the replay state every path reads, the digest a
        fill checks, the one a cancel logs and the signature check of a matched fill and
        of a conditional order are one piece of code. The struct is the one of
        perpdex/sdk/orders.py; the domain is ("perpdex", "1", chain id, `self`: the
        Clearinghouse, since both halves run by delegatecall). A contract wallet's
        (EIP-1271) signature is checked by `order_wallet_check`, compiled into
        ClearinghouseAdmin and reached by a static call to the Clearinghouse.
"""

from snekmate.utils import ecdsa
from snekmate.utils import signature_checker
from . import state
from . import packing

uses: state

# replay state, two bits per nonce: "partly filled" (its filled amount is in
# state._order_filled[digest]) and "done" (filled completely, cancelled, or an IOC order
# after its first batch). Where they live (review 8): the nonces min .. min +
# packing.NONCE_WINDOW - 1 (min: the header's minimum nonce) in the account header's
# window, so a fill reads and writes only the header it loads anyway; every other nonce
# in state._order_bits (128 per word). A nonce moves only upwards through the three
# places (word, then window, then below the minimum: cancelled), and only in
# `_raise_min_nonce`, which carries the bits of the nonces entering the window over from
# their words: at any time one place holds a nonce's state (`_replay_word`).
ORDER_PARTIAL: constant(uint256) = 1
ORDER_DONE: constant(uint256) = 2
# order flags (perpdex/sdk/orders.py FLAG_*)
FLAG_REDUCE_ONLY: constant(uint256) = 1
FLAG_POST_ONLY: constant(uint256) = 2
FLAG_IOC: constant(uint256) = 4
# a conditional order arms when the oracle price is >= its trigger (else <= it)
FLAG_TRIGGER_ABOVE: constant(uint256) = 8
# the header's top 64 bits: orders with a lower nonce are cancelled (`cancel_below`)
MIN_NONCE_SHIFT: constant(uint256) = 192
# `_verify`'s `sig` bits: the ECDSA v - 27, and an EIP-1271 (contract wallet) signature
SIG_V: constant(uint256) = 1
SIG_WALLET: constant(uint256) = 2

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
def _replay_word(account: uint256, hdr: uint256, nonce: uint256) -> (uint256, uint256, bool):
    """
    @dev Where `nonce`'s two replay bits live: (word, bit position, in the header). In the
         header's window (`hdr`, the account's header as stored, is the word: no read)
         when min <= nonce < min + NONCE_WINDOW; else its state._order_bits word (a nonce
         below the minimum is cancelled whatever its bits say: callers check that).
    """
    base: uint256 = packing._min_nonce(hdr)
    if nonce >= base and nonce - base < packing.NONCE_WINDOW:
        return hdr, packing.NONCE_WINDOW_SHIFT + ((nonce - base) << 1), True
    return state._order_bits[account][packing._order_word(nonce)], packing._order_bit_at(
        nonce
    ), False


@internal
def _store_replay_word(account: uint256, nonce: uint256, word: uint256, in_header: bool):
    """
    @dev Writes back a word `_replay_word` returned, changed only in the nonce's bits
         (the header: read in this call frame with nothing in between that writes it).
    """
    if in_header:
        state._header[account] = word
    else:
        state._order_bits[account][packing._order_word(nonce)] = word


@internal
def _set_replay_bits(account: uint256, nonce: uint256, bits: uint256):
    """
    @dev ORs `bits` (ORDER_*) into the replay state of `nonce` (cancel_order, a fired
         conditional order), the header read fresh.
    """
    word: uint256 = 0
    at: uint256 = 0
    in_header: bool = False
    word, at, in_header = self._replay_word(account, state._header[account], nonce)
    self._store_replay_word(account, nonce, packing._with_replay_bits(word, at, bits), in_header)


@internal
def _raise_min_nonce(account: uint256, hdr: uint256, new_min: uint256):
    """
    @dev `cancel_below`: the account's minimum nonce rises to `new_min` (above the
         current one, a uint64), cancelling every lower nonce, and the header's window
         moves with it: the nonces that stay in it keep their bits (shifted down), those
         that enter it bring theirs from their state._order_bits words (at most 44
         nonces, at most two words). `hdr`: the header as stored.
    """
    base: uint256 = packing._min_nonce(hdr)
    assert new_min > base, "clearinghouse: min nonce only rises"
    step: uint256 = new_min - base
    window: uint256 = 0
    if step < packing.NONCE_WINDOW:
        # the nonces that stay keep their bits, `step` places lower
        window = packing._header_window_from(hdr, step)
    # the nonces entering the window: max(new_min, base + NONCE_WINDOW) .. new_min + 43
    first: uint256 = max(new_min, base + packing.NONCE_WINDOW)
    for i: uint256 in range(packing.NONCE_WINDOW):
        n: uint256 = first + i
        if n >= new_min + packing.NONCE_WINDOW:
            break
        bits: uint256 = packing._replay_bits(
            state._order_bits[account][packing._order_word(n)], packing._order_bit_at(n)
        )
        window = packing._with_replay_bits(window, 2 * (n - new_min), bits)
    state._header[account] = packing._with_window(hdr, window, new_min)


@internal
@view
def _domain() -> bytes32:
    return keccak256(abi_encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@internal
@pure
def _digest(domain: bytes32, o: Order) -> bytes32:
    return self._digest_words(
        domain,
        o.account,
        o.market,
        o.size,
        o.limitPrice,
        o.triggerPrice,
        o.keeperFee,
        convert(o.expiry, uint256),
        convert(o.nonce, uint256),
        convert(o.flags, uint256),
    )


@internal
@pure
def _digest_words(
    domain: bytes32,
    account: uint256,
    market: uint256,
    size: int256,
    limit_price: uint256,
    trigger_price: uint256,
    keeper_fee: uint256,
    expiry: uint256,
    nonce: uint256,
    flags: uint256,
) -> bytes32:
    """
    @dev The EIP-712 digest of an order given as words (no struct copy: `settle`'s hot
         loop). `expiry` and `nonce` below 2**64 and `flags` below 2**8, as the struct's
         types hold them: each encodes as the same 32-byte word either way.
    """
    struct_hash: bytes32 = keccak256(
        abi_encode(
            ORDER_TYPEHASH,
            account,
            market,
            size,
            limit_price,
            trigger_price,
            keeper_fee,
            expiry,
            nonce,
            flags,
        )
    )
    return keccak256(concat(b"\x19\x01", domain, struct_hash))


@internal
@view
def _verify(account: uint256, digest: bytes32, sig: uint256, r: uint256, s: uint256) -> bool:
    """
    @dev The order was signed by the account's owner or one of its operators (ECDSA,
         low s), or the owner is a contract wallet that accepts it (EIP-1271; only the
         owner signs that way). `sig`: bit 0 = ECDSA v - 27, bit 1 = an EIP-1271
         signature (its 64 bytes are r, s). Returns whether an operator (not the owner)
         signed.
    """
    owner: address = packing._account_owner(account)
    if sig & SIG_WALLET != 0:
        # `order_wallet_check` below, on the Clearinghouse (compiled into
        # ClearinghouseAdmin: the wallet call is cold code, and the Orders half has no
        # bytecode room); reverts, with its reason, unless the wallet accepts the order
        raw_call(
            self,
            abi_encode(
                owner,
                digest,
                r,
                s,
                method_id=method_id("order_wallet_check(address,bytes32,uint256,uint256)"),
            ),
            is_static_call=True,
        )
        return False
    # snekmate's bound: one valid signature per order (EIP-2 low s)
    assert s <= ecdsa._MALLEABILITY_THRESHOLD, "clearinghouse: high-s signature"
    signer: address = ecrecover(digest, 27 + (sig & SIG_V), r, s)
    assert signer != empty(address), "clearinghouse: bad signature"
    if signer == owner:
        return False
    assert state.is_operator[account][signer], "clearinghouse: signer not authorized"
    return True


@external
@view
def order_wallet_check(owner: address, digest: bytes32, r: uint256, s: uint256):
    """
    @notice Self-only (`_verify`, by static call; exported by ClearinghouseAdmin): reverts
            unless the contract wallet `owner` accepts the 64-byte signature (r, s) of
            the order `digest` (EIP-1271).
    """
    assert msg.sender == self, "clearinghouse: internal entry point"
    assert signature_checker._is_valid_ERC1271_signature_now(
        owner, digest, concat(convert(r, bytes32), convert(s, bytes32))
    ), "clearinghouse: bad wallet signature"
