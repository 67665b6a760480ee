# pragma version ~=0.4.3
"""
@title Storage word layouts
@custom:contract-name packing
@license MIT
@notice The hot storage of the clearinghouse is packed so that a margin check reads as
        few words as possible (a cold SLOAD costs 2,100 gas; an L2 venue lives on that
        budget). Every layout is defined here, low bits first:

        position word   size int96 | cost int96 | funding_snapshot uint64
                        cost = signed cost basis in USD WAD (size * entry price);
                        the snapshot keeps only the low 64 bits of the funding index
                        at the last settlement: funding owed uses the wrapped
                        difference (index - snapshot) mod 2**64, exact while less than
                        2**63 pico-USD (9.2 million USD) per unit accrues between two
                        settlements of one position (TCP-sequence-number arithmetic)
        mark word       price uint88 | touched_at uint34 | block_tag uint6 |
                        funding_index int72 | funding_rate int56
                        index in pico-USD (1e-12) per unit of base; rate in 1e-15 per
                        day; price, index and rate are refreshed together, so one
                        timestamp serves all three (34 bits: until the year 2514);
                        block_tag = block.number mod 64 at the touch, so a trade
                        reuses a mark only in the block that wrote it, not in a
                        later block of the same second
        oi word         long_oi uint128 | short_oi uint128            (base WAD)
        pool sums word  sum_cost int128 | sum_funding int128         (USD WAD)
                        sums over all trader positions in the market, for the vault
        params word     skew_scale u48 (whole base units) | maker_fee u24 (1e-8) |
                        taker_fee u24 (1e-8) | max_funding_velocity u32 (1e-6 per
                        day per day) | max_funding_rate u32 (1e-9 per day) |
                        flags u8 (bit 0 listed, bit 1 paused, bit 2 frozen: no
                        price quorum, bit 3 sequencer flagged at the last quorum
                        touch, bits 4-5 delayed orders: modules/delayed.vy) |
                        max_oi u64 (whole
                        base units) | max_vault_exposure u24 (1e-6 of pool cash)
                        one read per trade; the API takes WAD values on these grids
        pool word       cash int128 | pending_fees uint128              (USD WAD)
                        the vault's cash and the fees not yet split between
                        insurance, protocol and vault (`state._sweep_fees`): a trade
                        writes one word for both
        account header  flags uint8 (bit 0 exists, 1 portfolio, 2 in
                        liquidation, 3 liquidation reward paid, 4 has a
                        loss cap: constants.vy) | positions bitmap uint32 |
                        collateral bitmap uint8 | position count uint8 |
                        pending delayed orders uint8 (bits 56-63) | pending
                        until uint40 (bits 64-103: the latest expiry, commit
                        time + max_age, of those orders; 0 with none; the
                        account is frozen for its owner and operators while
                        now <= it, modules/delayed.vy, review 4 R4-2) |
                        nonce window 44 x 2 bits (bits 104-191: the signed-order
                        replay state of nonces min .. min + 43, modules/order_hash.vy,
                        review 8) | min order nonce uint64 (bits 192-255,
                        `cancel_below` in ClearinghouseAdmin.vy)
        treasury word   insurance_fund uint128 | protocol_fees uint128    (USD WAD)
        system word     risk_book address | n_scenarios u8 | floor_bps u16 |
                        mmr_bps u16 | fee_insurance_bps u16 | fee_protocol_bps u16 |
                        max_mark_age u16 (s) | paused u8 (bit 248: a copy of
                        pausable.paused, kept by governance's pause/unpause)
                        what every trade and margin check needs, in one read
"""

from . import constants as c

MASK_128: constant(uint256) = 2**128 - 1
MASK_88: constant(uint256) = 2**88 - 1
MASK_40: constant(uint256) = 2**40 - 1
MASK_34: constant(uint256) = 2**34 - 1
MASK_32: constant(uint256) = 2**32 - 1
MASK_8: constant(uint256) = 2**8 - 1
MASK_96: constant(uint256) = 2**96 - 1
MASK_16: constant(uint256) = 2**16 - 1
MASK_64: constant(uint256) = 2**64 - 1

# Signed-order replay window of the account header (modules/order_hash.vy, review 8):
# two bits (order_hash.ORDER_PARTIAL | ORDER_DONE) for each of the NONCE_WINDOW nonces
# from the minimum nonce (bits 192-255) up, at bit NONCE_WINDOW_SHIFT + 2 (n - min);
# higher nonces keep theirs in state._order_bits. Bits below the window: MASK_104.
NONCE_WINDOW: constant(uint256) = 44
NONCE_WINDOW_SHIFT: constant(uint256) = 104
MASK_104: constant(uint256) = 2**104 - 1

# Index and rate units of the mark word.
PICO_PER_USD: constant(int256) = 10**12
FEMTO_PER_WAD: constant(int256) = 1_000
MAX_I96: constant(int256) = 2**95 - 1
MAX_I72: constant(int256) = 2**71 - 1
MAX_I56: constant(int256) = 2**55 - 1

MARKET_LISTED: constant(uint256) = 1
MARKET_PAUSED: constant(uint256) = 2
# position of the paused flag in the params word
PAUSED_BIT: constant(uint256) = 2 << 160
# frozen: the oracle had no price quorum at the market's last touch (set and cleared
# only by engine._touch_with; not part of MarketParams, kept by set_market_params)
FROZEN_BIT: constant(uint256) = 4 << 160
# sequencer flagged (down or in grace) at the market's last quorum touch: a mark written
# then is not reused by a trade in the same block (set and cleared only by
# engine._touch_with, kept by set_market_params like FROZEN_BIT)
SEQUENCER_BIT: constant(uint256) = 8 << 160
ORACLE_BITS: constant(uint256) = FROZEN_BIT | SEQUENCER_BIT
# delayed vault orders (modules/delayed.vy): adding vault trades of the market must be
# committed and settled at a later price (bit 4); with bit 5 too, every vault trade
# must, reduces included. Set only by `set_delayed_params`, kept by set_market_params.
DELAYED_ADD_BIT: constant(uint256) = 16 << 160
DELAYED_ALL_BIT: constant(uint256) = 32 << 160
# the params bits governance's set_market_params keeps as they are
KEPT_BITS: constant(uint256) = ORACLE_BITS | DELAYED_ADD_BIT | DELAYED_ALL_BIT
# the two oracle bits are (params >> ORACLE_SHIFT) & 3: 1 frozen, 2 sequencer flagged
ORACLE_SHIFT: constant(uint256) = 162


struct MarketParams:
    skew_scale: uint256
    maker_fee: uint256
    taker_fee: uint256
    max_funding_velocity: uint256
    max_funding_rate: uint256
    listed: bool
    paused: bool
    max_oi: uint256
    max_vault_exposure: uint256


# --- signed 128-bit halves ---------------------------------------------------------


@internal
@pure
def _lo_i128(w: uint256) -> int256:
    # Move the low half to the top and shift back arithmetically to sign-extend it.
    return convert(convert(w << 128, bytes32), int256) >> 128


@internal
@pure
def _hi_i128(w: uint256) -> int256:
    return convert(convert(w, bytes32), int256) >> 128


@internal
@pure
def _pack_i128(lo: int256, hi: int256) -> uint256:
    assert (
        lo <= c.MAX_ABS_I128
        and lo >= -c.MAX_ABS_I128
        and hi <= c.MAX_ABS_I128
        and hi >= -c.MAX_ABS_I128
    ), "clearinghouse: value too large"
    return (convert(convert(hi, bytes32), uint256) << 128) | (
        convert(convert(lo, bytes32), uint256) & MASK_128
    )


@internal
@pure
def _pack_u128(lo: uint256, hi: uint256) -> uint256:
    assert lo <= MASK_128 and hi <= MASK_128, "clearinghouse: value too large"
    return (hi << 128) | lo


# --- mark word -----------------------------------------------------------------------


@internal
@pure
def _mark_price(w: uint256) -> uint256:
    return w & MASK_88


@internal
@pure
def _mark_time(w: uint256) -> uint256:
    return (w >> 88) & MASK_34


@internal
@view
def _mark_is_this_block(w: uint256) -> bool:
    """
    @dev Whether the mark word was written in this block: same timestamp and same
         block_tag (block.number mod 64; 40 bits of the word hold both).
    """
    # bits 88..127, by shifts (small pushes: bytecode)
    return w << 128 >> 216 == block.timestamp | (block.number & 63) << 34


@internal
@pure
def _mark_index(w: uint256) -> int256:
    """
    @dev Funding index, pico-USD per unit (signed 72 bits at bit 128).
    """
    return convert(convert(w << 56, bytes32), int256) >> 184


@internal
@pure
def _mark_rate(w: uint256) -> int256:
    """
    @dev Funding rate in WAD per day (stored as signed 56 bits of 1e-15 at bit 200).
    """
    return (convert(convert(w, bytes32), int256) >> 200) * FEMTO_PER_WAD


@internal
@pure
def _pack_mark(price: uint256, ts: uint256, index: int256, rate: int256) -> uint256:
    """
    @dev `rate` in WAD per day is truncated toward zero to the 1e-15 grid; `ts` is the
         40-bit touch stamp: the timestamp, plus the block tag << 34 (engine._touch_with).
    """
    assert price <= c.MAX_PRICE, "clearinghouse: price too large"
    assert index <= MAX_I72 and index >= -MAX_I72, "clearinghouse: funding index too large"
    femto: int256 = rate // FEMTO_PER_WAD
    assert femto <= MAX_I56 and femto >= -MAX_I56, "clearinghouse: funding rate too large"
    return (
        (convert(convert(femto, bytes32), uint256) << 200)
        | (convert(convert(index, bytes32), uint256) << 184 >> 56)
        | (ts << 216 >> 128)
        | price
    )


# --- position word -------------------------------------------------------------------


@internal
@pure
def _pos_size(w: uint256) -> int256:
    return convert(convert(w << 160, bytes32), int256) >> 160


@internal
@pure
def _pos_cost(w: uint256) -> int256:
    return convert(convert(w << 64, bytes32), int256) >> 160


@internal
@pure
def _pos_funding_delta(w: uint256, index: int256) -> int256:
    """
    @dev index - snapshot, from the low 64 bits (wrapping difference, sign-extended).
    """
    # unsafe_sub wraps modulo 2**256 on purpose; only the low 64 bits are kept.
    diff: uint256 = unsafe_sub(convert(convert(index, bytes32), uint256), w >> 192) & MASK_64
    return convert(convert(diff << 192, bytes32), int256) >> 192


@internal
@pure
def _pack_pos(size: int256, cost: int256, index: int256) -> uint256:
    assert (
        size <= MAX_I96 and size >= -MAX_I96 and cost <= MAX_I96 and cost >= -MAX_I96
    ), "clearinghouse: position too large"
    return (
        ((convert(convert(index, bytes32), uint256) & MASK_64) << 192)
        | ((convert(convert(cost, bytes32), uint256) & MASK_96) << 96)
        | (convert(convert(size, bytes32), uint256) & MASK_96)
    )


# --- market parameters -----------------------------------------------------------------

UNIT: constant(uint256) = 10**18  # whole base units -> WAD
FEE_UNIT: constant(uint256) = 10**10  # 1e-8 -> WAD
VELOCITY_UNIT: constant(uint256) = 10**12  # 1e-6 -> WAD
RATE_UNIT: constant(uint256) = 10**9  # 1e-9 -> WAD
EXPOSURE_UNIT: constant(uint256) = 10**12  # 1e-6 -> WAD
MASK_24: constant(uint256) = 2**24 - 1
MASK_48: constant(uint256) = 2**48 - 1


@internal
@pure
def _unpack_params(a: uint256) -> MarketParams:
    flags: uint256 = (a >> 160) & MASK_8
    return MarketParams(
        skew_scale=(a & MASK_48) * UNIT,
        maker_fee=((a >> 48) & MASK_24) * FEE_UNIT,
        taker_fee=((a >> 72) & MASK_24) * FEE_UNIT,
        max_funding_velocity=((a >> 96) & MASK_32) * VELOCITY_UNIT,
        max_funding_rate=((a >> 128) & MASK_32) * RATE_UNIT,
        listed=flags & MARKET_LISTED != 0,
        paused=flags & MARKET_PAUSED != 0,
        max_oi=((a >> 168) & MASK_64) * UNIT,
        max_vault_exposure=((a >> 232) & MASK_24) * EXPOSURE_UNIT,
    )


@internal
@pure
def _grid(x: uint256, unit: uint256, mask: uint256) -> uint256:
    """
    @dev WAD value to its packed unit; must sit exactly on the grid and fit the field.
    """
    assert x % unit == 0, "clearinghouse: parameter off its grid"
    n: uint256 = x // unit
    assert n <= mask, "clearinghouse: parameter too large"
    return n


@internal
@pure
def _pack_params(p: MarketParams) -> uint256:
    flags: uint256 = 0
    if p.listed:
        flags |= MARKET_LISTED
    if p.paused:
        flags |= MARKET_PAUSED
    return (
        self._grid(p.skew_scale, UNIT, MASK_48)
        | (self._grid(p.maker_fee, FEE_UNIT, MASK_24) << 48)
        | (self._grid(p.taker_fee, FEE_UNIT, MASK_24) << 72)
        | (self._grid(p.max_funding_velocity, VELOCITY_UNIT, MASK_32) << 96)
        | (self._grid(p.max_funding_rate, RATE_UNIT, MASK_32) << 128)
        | (flags << 160)
        | (self._grid(p.max_oi, UNIT, MASK_64) << 168)
        | (self._grid(p.max_vault_exposure, EXPOSURE_UNIT, MASK_24) << 232)
    )


# --- account header --------------------------------------------------------------------


@internal
@pure
def _positions_bitmap(h: uint256) -> uint256:
    return (h >> 8) & MASK_32


@internal
@pure
def _collateral_bitmap(h: uint256) -> uint256:
    return (h >> 40) & MASK_8


@internal
@pure
def _position_count(h: uint256) -> uint256:
    return (h >> 48) & MASK_8


@internal
@pure
def _pending_count(h: uint256) -> uint256:
    """
    @dev How many delayed orders of the account are stored (pending or expired, not yet
         settled, cancelled or replaced).
    """
    return (h >> 56) & MASK_8


@internal
@pure
def _pending_until(h: uint256) -> uint256:
    """
    @dev The last second a stored delayed order of the account may still settle (0 when
         none is stored): the account's owner and operators are frozen until then.
    """
    return (h >> 64) & MASK_40


@internal
@pure
def _with_pending(h: uint256, n: uint256, until: uint256) -> uint256:
    """
    @dev The header with `n` delayed orders stored, pending until `until` (0 when n = 0).
    """
    assert n <= MASK_8 and until <= MASK_40, "clearinghouse: value too large"
    return (h & ~(MASK_48 << 56)) | (n << 56) | (until << 64)


@internal
@pure
def _with_position(h: uint256, market: uint256, is_open: bool) -> uint256:
    """
    @dev Sets or clears a market's bit in the positions bitmap and keeps the count.
    """
    bit: uint256 = 1 << (8 + market)
    n: uint256 = (h >> 48) & MASK_8
    if is_open and h & bit == 0:
        assert n < c.MAX_POSITIONS, "clearinghouse: too many positions"
        return ((h | bit) & ~(MASK_8 << 48)) | ((n + 1) << 48)
    if not is_open and h & bit != 0:
        return ((h & ~bit) & ~(MASK_8 << 48)) | ((n - 1) << 48)
    return h


@internal
@pure
def _with_collateral(h: uint256, token: uint256, held: bool) -> uint256:
    bit: uint256 = 1 << (40 + token)
    if held:
        return h | bit
    return h & ~bit


# --- treasury and system words ---------------------------------------------------------


struct System:
    book: address
    n_scenarios: uint256
    floor_bps: uint256
    mmr_bps: uint256
    insurance_bps: uint256
    protocol_bps: uint256
    max_mark_age: uint256


@internal
@pure
def _system(w: uint256) -> System:
    return System(
        book=convert(w & (2**160 - 1), address),
        n_scenarios=(w >> 160) & MASK_8,
        floor_bps=(w >> 168) & MASK_16,
        mmr_bps=(w >> 184) & MASK_16,
        insurance_bps=(w >> 200) & MASK_16,
        protocol_bps=(w >> 216) & MASK_16,
        max_mark_age=(w >> 232) & MASK_16,
    )


# single fields of the system word, for the hot path (a whole `System` costs ~230 gas)
@internal
@pure
def _system_book(w: uint256) -> address:
    return convert(w & (2**160 - 1), address)


@internal
@pure
def _system_n_scenarios(w: uint256) -> uint256:
    return (w >> 160) & MASK_8


@internal
@pure
def _system_floor_bps(w: uint256) -> uint256:
    return (w >> 168) & MASK_16


@internal
@pure
def _system_mmr_bps(w: uint256) -> uint256:
    return (w >> 184) & MASK_16


@internal
@pure
def _system_max_mark_age(w: uint256) -> uint256:
    return (w >> 232) & MASK_16


# bit 248 of the system word: the protocol is paused (pausable.paused, mirrored by
# governance.pause / unpause so that a trade's pause check reads the word it reads anyway;
# `_pack_system` leaves it clear, governance._write_system keeps it)
SYSTEM_PAUSED_SHIFT: constant(uint256) = 248
SYSTEM_PAUSED_BIT: constant(uint256) = 1 << SYSTEM_PAUSED_SHIFT


@internal
@pure
def _pack_system(x: System) -> uint256:
    assert (
        x.n_scenarios <= MASK_8
        and x.max_mark_age <= MASK_16
        and x.floor_bps <= MASK_16
        and x.mmr_bps <= MASK_16
        and x.insurance_bps <= MASK_16
        and x.protocol_bps <= MASK_16
    ), "clearinghouse: value too large"
    return (
        convert(x.book, uint256)
        | (x.n_scenarios << 160)
        | (x.floor_bps << 168)
        | (x.mmr_bps << 184)
        | (x.insurance_bps << 200)
        | (x.protocol_bps << 216)
        | (x.max_mark_age << 232)
    )


# --- pool word ---------------------------------------------------------------------------


@internal
@pure
def _pack_pool(cash: int256, pending_fees: uint256) -> uint256:
    assert cash <= c.MAX_ABS_I128 and cash >= -c.MAX_ABS_I128, "clearinghouse: pool cash too large"
    assert pending_fees <= MASK_128, "clearinghouse: fees too large"
    return (pending_fees << 128) | (convert(convert(cash, bytes32), uint256) & MASK_128)
