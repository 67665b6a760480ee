"""L1 data fees of an L2 transaction: OP-stack Ecotone and Fjord, and Arbitrum (Nitro).

Read this first if you touch the fee model:
- Every formula takes the *signed* transaction as the chain serialises it (EIP-2718:
  type byte || RLP; `signed_tx` builds one with eth-account), because that is what the
  sequencer posts to L1 and what the node prices. All amounts are integers in wei.
- Ecotone (op-geth core/types/rollup_cost.go, newL1CostFuncEcotone):
      calldata_gas = 4 x zero bytes + 16 x non-zero bytes
      fee = calldata_gas x (16 x base_fee_scalar x l1_base_fee
                            + blob_base_fee_scalar x blob_base_fee) / 16e6
- Fjord (NewL1CostFuncFjord): the FastLZ-compressed size through a linear regression,
      estimated_size = max(100e6, -42_585_600 + 836_500 x fastlz_size)   (scaled by 1e6)
      fee = estimated_size x (16 x base_fee_scalar x l1_base_fee
                              + blob_base_fee_scalar x blob_base_fee) / 1e12
  Scalars are the integers the chain stores (Base-like 1368 = 0.001368).
- FastLZ level 1 (`flz_compress`, `flz_decompress`; `flz_compress_len` is op-geth's
  FlzCompressLen, which the node uses). tests/unit/test_l1fee.py checks op-geth's published
  vectors (empty input 0, 1,000 ones 21, 1,000 zeros 21, its empty tx 31, an Optimism
  mainnet contract call 202) and its fee vectors.
- Arbitrum (Nitro arbos/l1pricing, getPosterUnitsWithoutCache): units = 16 x the brotli-
  compressed size of the signed tx at the chain's compression level (ArbOS >= 20: 1;
  earlier: 0); fee = units x the L1 price per unit (ArbGasInfo.getL1BaseFeeEstimate).
  The fee is charged as extra L2 gas (fee / L2 base fee); the wei are what counts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- FastLZ level 1 ---------------------------------------------------------------------------

_HASH_MASK = 0x1FFF
_MAX_DISTANCE = 8192
_MAX_LEN = 262  # match bytes per 3-byte token run


def _hash(v: int) -> int:
    return ((2654435769 * v) >> 19) & _HASH_MASK


def _u24(b: bytes, i: int) -> int:
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16)


def _scan(data: bytes, out: bytearray | None) -> int:
    """FastLZ level-1 compression of `data`: appends to `out` when given; returns the size.
    The structure (hash of 3 bytes, 13-bit table, matches within 8 KiB, at most 32 literals
    per run, 262 match bytes per long token) is FastLZ 0.5's fastlz1_compress, and the size
    arithmetic is op-geth's FlzCompressLen."""
    n = 0
    ht = [0] * (_HASH_MASK + 1)
    size = len(data)
    ip_limit = size - 13 if size >= 13 else 0

    def literals(run: int, start: int) -> None:
        nonlocal n
        while run >= 32:
            if out is not None:
                out.append(31)
                out.extend(data[start : start + 32])
            n += 33
            start += 32
            run -= 32
        if run:
            if out is not None:
                out.append(run - 1)
                out.extend(data[start : start + run])
            n += run + 1

    def match(length: int, distance: int) -> None:
        nonlocal n
        d = distance - 1
        while length > _MAX_LEN:
            if out is not None:
                out.extend((224 + (d >> 8), 253, d & 255))
            n += 3
            length -= _MAX_LEN
        if length < 7:
            if out is not None:
                out.extend(((length << 5) + (d >> 8), d & 255))
            n += 2
        else:
            if out is not None:
                out.extend((224 + (d >> 8), length - 7, d & 255))
            n += 3

    anchor = 0
    ip = 2
    while ip < ip_limit:
        while True:
            seq = _u24(data, ip)
            h = _hash(seq)
            ref = ht[h]
            ht[h] = ip
            distance = ip - ref
            if ip >= ip_limit:
                break
            ip += 1
            if distance < _MAX_DISTANCE and seq == _u24(data, ref):
                break
        if ip >= ip_limit:
            break
        ip -= 1
        if ip > anchor:
            literals(ip - anchor, anchor)
        # bytes equal beyond the first three, plus the first unequal one (FastLZ's flz_cmp)
        p, q, end = ref + 3, ip + 3, ip_limit + 9
        length = 0
        limit = end - q
        while length < limit:
            if data[p + length] != data[q + length]:
                limit = 0
            length += 1
        match(length, distance)
        ip += length
        ht[_hash(_u24(data, ip))] = ip
        ip += 1
        ht[_hash(_u24(data, ip))] = ip
        ip += 1
        anchor = ip
    literals(size - anchor, anchor)
    return n


def flz_compress(data: bytes) -> bytes:
    """FastLZ level-1 compressed bytes of `data` (what `flz_decompress` reverses)."""
    out = bytearray()
    _scan(bytes(data), out)
    return bytes(out)


def flz_compress_len(data: bytes) -> int:
    """op-geth's FlzCompressLen: the size `flz_compress` would produce."""
    return _scan(bytes(data), None)


def flz_decompress(data: bytes) -> bytes:
    """FastLZ level-1 decompression (fastlz1_decompress)."""
    if not data:
        return b""
    out = bytearray()
    ip = 0
    ctrl = data[ip] & 31
    ip += 1
    while True:
        if ctrl >= 32:
            length = (ctrl >> 5) - 1
            ref = len(out) - ((ctrl & 31) << 8) - 1
            if length == 6:
                length += data[ip]
                ip += 1
            ref -= data[ip]
            ip += 1
            length += 3
            if ref < 0:
                raise ValueError("FastLZ: match before the start of the output")
            for i in range(length):
                out.append(out[ref + i])
        else:
            run = ctrl + 1
            out += data[ip : ip + run]
            ip += run
        if ip >= len(data):
            break
        ctrl = data[ip]
        ip += 1
    return bytes(out)


# --- the fee formulas -------------------------------------------------------------------------

ECOTONE_DIVISOR = 16 * 10**6
FJORD_DIVISOR = 10**12
FJORD_INTERCEPT = -42_585_600
FJORD_FASTLZ_COEF = 836_500
FJORD_MIN_SIZE_SCALED = 100 * 10**6  # minTransactionSize 100 bytes, scaled by 1e6
ARB_UNITS_PER_BYTE = 16  # params.TxDataNonZeroGasEIP2028
ARB_BROTLI_LEVEL = 1  # ArbOS 20 and later


@dataclass(frozen=True)
class OpPrices:
    """OP-stack L1 fee parameters (GasPriceOracle): wei, and integer scalars (x 1e-6)."""

    l1_base_fee: int
    blob_base_fee: int
    base_fee_scalar: int
    blob_base_fee_scalar: int

    @property
    def scaled(self) -> int:
        return (
            16 * self.base_fee_scalar * self.l1_base_fee
            + self.blob_base_fee_scalar * self.blob_base_fee
        )


def calldata_gas(tx: bytes) -> int:
    """4 per zero byte, 16 per non-zero byte (EIP-2028)."""
    zeros = tx.count(0)
    return 4 * zeros + 16 * (len(tx) - zeros)


def ecotone_fee(tx: bytes, prices: OpPrices) -> int:
    return calldata_gas(tx) * prices.scaled // ECOTONE_DIVISOR


def fjord_estimated_size(fastlz_size: int) -> int:
    """The regression's size estimate, scaled by 1e6 (at least 100 bytes)."""
    return max(FJORD_MIN_SIZE_SCALED, FJORD_INTERCEPT + FJORD_FASTLZ_COEF * fastlz_size)


def fjord_fee_for_size(fastlz_size: int, prices: OpPrices) -> int:
    return fjord_estimated_size(fastlz_size) * prices.scaled // FJORD_DIVISOR


def fjord_fee(tx: bytes, prices: OpPrices) -> int:
    return fjord_fee_for_size(flz_compress_len(tx), prices)


def brotli_size(tx: bytes, level: int = ARB_BROTLI_LEVEL) -> int:
    """Size of `tx` brotli-compressed at `level` (generic mode, 22-bit window: Nitro's)."""
    import brotli

    return len(brotli.compress(bytes(tx), quality=level, lgwin=22))


def arbitrum_units(tx: bytes, level: int = ARB_BROTLI_LEVEL) -> int:
    return ARB_UNITS_PER_BYTE * brotli_size(tx, level)


def arbitrum_fee(tx: bytes, price_per_unit: int, level: int = ARB_BROTLI_LEVEL) -> int:
    """Poster fee in wei: units x the L1 price per unit."""
    return arbitrum_units(tx, level) * price_per_unit


# --- a signed transaction ---------------------------------------------------------------------

# A throwaway key that signs the modelled transactions (never funded, never used on chain):
# the signature's r and s are 64 incompressible bytes, as in any real transaction.
MODEL_KEY = "0x" + "6a" * 31 + "01"


def signed_tx(
    to: str,
    data: bytes,
    *,
    chain_id: int,
    gas: int,
    nonce: int = 1_000,
    max_fee_per_gas: int = 10**8,
    max_priority_fee_per_gas: int = 10**6,
    key: str = MODEL_KEY,
) -> bytes:
    """The EIP-1559 (type 2) transaction calling `to` with `data`, signed: the bytes the
    node prices (type byte || RLP list, signature included)."""
    from eth_account import Account

    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": max_priority_fee_per_gas,
        "gas": gas,
        "to": to,
        "value": 0,
        "data": bytes(data),
    }
    signed = Account.sign_transaction(tx, key)
    return bytes(signed.raw_transaction)
