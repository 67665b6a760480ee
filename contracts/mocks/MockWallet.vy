# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Smart-contract wallet for EIP-1271 tests (test double)
@custom:contract-name MockWallet
@license MIT
@notice Owns Clearinghouse accounts like a Safe would: its owner makes it call anything
        (`execute`) and approves an order digest with the signature bytes it will be
        presented with (`approve_hash`); `isValidSignature` accepts exactly those.
@custom:security Test tooling only.
"""

MAGIC: constant(bytes4) = 0x1626BA7E

owner: public(address)
# digest => keccak256 of the signature bytes accepted with it (0: none)
approved: public(HashMap[bytes32, bytes32])


@deploy
def __init__():
    self.owner = msg.sender


@external
def execute(target: address, data: Bytes[1_024]) -> Bytes[256]:
    assert msg.sender == self.owner, "wallet: not owner"
    return raw_call(target, data, max_outsize=256)


@external
def approve_hash(digest: bytes32, signature_hash: bytes32):
    assert msg.sender == self.owner, "wallet: not owner"
    self.approved[digest] = signature_hash


@external
@view
def isValidSignature(digest: bytes32, signature: Bytes[65]) -> bytes4:
    accepted: bytes32 = self.approved[digest]
    if accepted != empty(bytes32) and accepted == keccak256(signature):
        return MAGIC
    return 0xFFFFFFFF
