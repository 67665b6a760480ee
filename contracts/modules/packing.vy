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
                        insurance, protocol and vault (`treasury._sweep_fees`): a trade
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
# only by marks._touch_with; not part of MarketParams, kept by set_market_params)
FROZEN_BIT: constant(uint256) = 4 << 160
# sequencer flagged (down or in grace) at the market's last quorum touch: a mark written
# then is not reused by a trade in the same block (set and cleared only by
# marks._touch_with, kept by set_market_params like FROZEN_BIT)
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
         40-bit touch stamp: the timestamp, plus the block tag << 34 (marks._touch_with).
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
def _pos_mark_funding_delta(w: uint256, mw: uint256) -> int256:
    """
    @dev `_pos_funding_delta(w, _mark_index(mw))` in one call, for the margin scan's
         per-position loop: the low 64 bits of the difference depend only on the low 64
         bits of the mark's index (bits 128..191 of `mw`), so no sign extension first.
    """
    diff: uint256 = unsafe_sub(mw >> 128, w >> 192) & MASK_64
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
    # Cannot overflow: every field is at most 64 bits and every unit at most 10**18.
    return MarketParams(
        skew_scale=unsafe_mul(a & MASK_48, UNIT),
        maker_fee=unsafe_mul((a >> 48) & MASK_24, FEE_UNIT),
        taker_fee=unsafe_mul((a >> 72) & MASK_24, FEE_UNIT),
        max_funding_velocity=unsafe_mul((a >> 96) & MASK_32, VELOCITY_UNIT),
        max_funding_rate=unsafe_mul((a >> 128) & MASK_32, RATE_UNIT),
        listed=flags & MARKET_LISTED != 0,
        paused=flags & MARKET_PAUSED != 0,
        max_oi=unsafe_mul((a >> 168) & MASK_64, UNIT),
        max_vault_exposure=unsafe_mul((a >> 232) & MASK_24, EXPOSURE_UNIT),
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
def _holdings_bitmap(h: uint256) -> uint256:
    """
    @dev The positions bitmap (bits 0-31) and the collateral bitmap (bits 32-39) as one
         field (header bits 8-47, adjacent): an account whose only holding is a
         position in market m reads 1 << m.
    """
    return (h >> 8) & MASK_40


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


# market risk word (state._risk[m], one per market): the risk book's market word 0 of
# market m (bits 0-159: imr_min_bps u16 | imr_slope_bps u16 | margin_scale u128; 0 when
# the book does not cover m), with the system word's pause bit at the same bit 248. Written
# only by governance (set_risk_book, pause, unpause, add_market), so that a trade's
# can-add-risk check reads one storage word instead of the system word and the book's
# code: with the pause bit clear the word is the book's word 0, as it is


@internal
@pure
def _risk_word(w0: uint256, system: uint256) -> uint256:
    """
    @dev A market's risk word: its book word 0 `w0` with the pause bit of the system word
         `system`.
    """
    return w0 | (system & SYSTEM_PAUSED_BIT)


@internal
@pure
def _risk_word_paused(w: uint256, paused: bool) -> uint256:
    """
    @dev The risk word `w` with its pause bit set to `paused`.
    """
    if paused:
        return w | SYSTEM_PAUSED_BIT
    return w & ~SYSTEM_PAUSED_BIT


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


# --- struct-typed pairs (issue 10 item 2) --------------------------------------------------
# One struct per packed word with an unpack/pack pair, and single-field accessors where a
# caller needs one field (a whole struct copies every field to memory). Callers outside
# this file never shift or mask a word (perpdex/devtools/packing_lint.py checks it).


struct Position:
    size: int256
    cost: int256
    funding_snapshot: uint256


@internal
@pure
def _pos_snapshot(w: uint256) -> uint256:
    """
    @dev The low 64 bits of the funding index at the position's last settlement.
    """
    return w >> 192


@internal
@pure
def _unpack_pos(w: uint256) -> Position:
    return Position(size=self._pos_size(w), cost=self._pos_cost(w), funding_snapshot=w >> 192)


@internal
@pure
def _pack_position(p: Position) -> uint256:
    assert p.funding_snapshot <= MASK_64, "clearinghouse: value too large"
    return self._pack_pos(p.size, p.cost, convert(p.funding_snapshot, int256))


@internal
@pure
def _snapshot_funding_delta(snapshot: uint256, index: int256) -> int256:
    """
    @dev `_pos_funding_delta` from a position's funding snapshot (the `position` view's
         third value) instead of its word.
    """
    return self._pos_funding_delta(snapshot << 192, index)


struct Mark:
    price: uint256
    touched_at: uint256
    block_tag: uint256
    funding_index: int256
    funding_rate: int256


@internal
@pure
def _unpack_mark(w: uint256) -> Mark:
    return Mark(
        price=w & MASK_88,
        touched_at=(w >> 88) & MASK_34,
        block_tag=(w >> 122) & 63,
        funding_index=self._mark_index(w),
        funding_rate=self._mark_rate(w),
    )


@internal
@pure
def _pack_mark_word(m: Mark) -> uint256:
    assert m.touched_at <= MASK_34 and m.block_tag < 64, "clearinghouse: value too large"
    return self._pack_mark(
        m.price, m.touched_at | (m.block_tag << 34), m.funding_index, m.funding_rate
    )


struct OpenInterest:
    long_oi: uint256
    short_oi: uint256


@internal
@pure
def _unpack_oi(w: uint256) -> OpenInterest:
    return OpenInterest(long_oi=w & MASK_128, short_oi=w >> 128)


@internal
@pure
def _pack_oi(x: OpenInterest) -> uint256:
    return self._pack_u128(x.long_oi, x.short_oi)


@internal
@pure
def _oi_skew(w: uint256) -> int256:
    """
    @dev Long minus short open interest (base WAD).
    """
    return convert(w & MASK_128, int256) - convert(w >> 128, int256)


@internal
@pure
def _oi_sides(w: uint256) -> (uint256, uint256):
    """
    @dev (long, short) open interest (base WAD).
    """
    return w & MASK_128, w >> 128


@internal
@pure
def _oi_moved(w: uint256, size: int256, new_size: int256) -> uint256:
    """
    @dev The oi word after one position of the market went from `size` to `new_size`
         (base WAD, signed): the old position leaves its side, the new one joins its
         side (settlement._settle_side; one call for the whole update).
    """
    long_oi: int256 = convert(w & MASK_128, int256)
    short_oi: int256 = convert(w >> 128, int256)
    if size > 0:
        long_oi -= size
    else:
        short_oi += size
    if new_size > 0:
        long_oi += new_size
    else:
        short_oi -= new_size
    # `_pack_u128` inline: a nested call here cost ~40 gas per settled side
    lo: uint256 = convert(long_oi, uint256)
    hi: uint256 = convert(short_oi, uint256)
    assert lo <= MASK_128 and hi <= MASK_128, "clearinghouse: value too large"
    return (hi << 128) | lo


struct PoolSums:
    sum_cost: int256
    sum_funding: int256


@internal
@pure
def _unpack_pool_sums(w: uint256) -> PoolSums:
    return PoolSums(sum_cost=self._lo_i128(w), sum_funding=self._hi_i128(w))


@internal
@pure
def _pack_pool_sums(x: PoolSums) -> uint256:
    return self._pack_i128(x.sum_cost, x.sum_funding)


struct Pool:
    cash: int256
    pending_fees: uint256


@internal
@pure
def _unpack_pool(w: uint256) -> Pool:
    return Pool(cash=self._lo_i128(w), pending_fees=w >> 128)


@internal
@pure
def _pack_pool_word(x: Pool) -> uint256:
    return self._pack_pool(x.cash, x.pending_fees)


@internal
@pure
def _pool_cash(w: uint256) -> int256:
    return self._lo_i128(w)


@internal
@pure
def _pool_pending_fees(w: uint256) -> uint256:
    return w >> 128


@internal
@pure
def _pool_add(w: uint256, cash: int256, fees: uint256) -> uint256:
    """
    @dev The pool word `w` with `cash` added to its cash (negative: paid out) and `fees`
         to its pending fees, bounds checked as `_pack_pool` checks them (one call for a
         fill's whole pool update: modules/treasury.vy; `w` = 0 packs (cash, 0)). The
         contracts write the pool word only through it (`_pack_pool` is its inline twin
         for the harness and the SDK's tests).
    """
    new_cash: int256 = (convert(convert(w << 128, bytes32), int256) >> 128) + cash
    assert new_cash <= c.MAX_ABS_I128 and new_cash >= -c.MAX_ABS_I128, (
        "clearinghouse: pool cash too large"
    )
    pending: uint256 = (w >> 128) + fees
    assert pending <= MASK_128, "clearinghouse: fees too large"
    return (pending << 128) | (convert(convert(new_cash, bytes32), uint256) & MASK_128)


struct Treasury:
    insurance_fund: uint256
    protocol_fees: uint256


@internal
@pure
def _unpack_treasury(w: uint256) -> Treasury:
    return Treasury(insurance_fund=w & MASK_128, protocol_fees=w >> 128)


@internal
@pure
def _pack_treasury(x: Treasury) -> uint256:
    return self._pack_u128(x.insurance_fund, x.protocol_fees)


@internal
@pure
def _treasury_insurance(w: uint256) -> uint256:
    return w & MASK_128


@internal
@pure
def _treasury_protocol(w: uint256) -> uint256:
    return w >> 128


@internal
@pure
def _add_protocol_fees(w: uint256, amount: uint256) -> uint256:
    return self._pack_u128(w & MASK_128, (w >> 128) + amount)


@internal
@pure
def _treasury_add(w: uint256, insurance: uint256, protocol: uint256) -> uint256:
    """
    @dev The treasury word with `insurance` added to the insurance fund and `protocol`
         to the protocol fees (both halves bounds checked).
    """
    return self._pack_u128((w & MASK_128) + insurance, (w >> 128) + protocol)


@internal
@pure
def _treasury_take(w: uint256, insurance: uint256, protocol: uint256) -> uint256:
    """
    @dev The treasury word with `insurance` taken from the insurance fund and
         `protocol` from the protocol fees (checked: each at most what the word holds).
    """
    return self._pack_u128((w & MASK_128) - insurance, (w >> 128) - protocol)


@internal
@pure
def _params_max_vault_exposure(a: uint256) -> uint256:
    """
    @dev One field of the params word (WAD), without unpacking the others.
    """
    return ((a >> 232) & MASK_24) * EXPOSURE_UNIT


# the system word's value at deployment: 10% of fees to insurance, marks valid 60 s, no
# risk book yet
@internal
@pure
def _initial_system() -> uint256:
    return self._pack_system(
        System(
            book=empty(address),
            n_scenarios=0,
            floor_bps=0,
            mmr_bps=0,
            insurance_bps=1_000,
            protocol_bps=0,
            max_mark_age=60,
        )
    )


struct AccountHeader:
    flags: uint256
    positions: uint256
    collaterals: uint256
    position_count: uint256
    pending_count: uint256
    pending_until: uint256
    min_nonce: uint256


# bits 192-255 of the header (`cancel_below`, order_hash.MIN_NONCE_SHIFT)
HEADER_NONCE_SHIFT: constant(uint256) = 192


@internal
@pure
def _header_flags(h: uint256) -> uint256:
    return h & MASK_8


@internal
@pure
def _min_nonce(h: uint256) -> uint256:
    """
    @dev Signed orders with a nonce below this are cancelled (`cancel_below`).
    """
    return h >> HEADER_NONCE_SHIFT


@internal
@pure
def _with_min_nonce(h: uint256, n: uint256) -> uint256:
    assert n <= MASK_64, "clearinghouse: value too large"
    return (h & ((1 << HEADER_NONCE_SHIFT) - 1)) | (n << HEADER_NONCE_SHIFT)


@internal
@pure
def _unpack_header(h: uint256) -> AccountHeader:
    return AccountHeader(
        flags=h & MASK_8,
        positions=(h >> 8) & MASK_32,
        collaterals=(h >> 40) & MASK_8,
        position_count=(h >> 48) & MASK_8,
        pending_count=(h >> 56) & MASK_8,
        pending_until=(h >> 64) & MASK_40,
        min_nonce=h >> HEADER_NONCE_SHIFT,
    )


@internal
@pure
def _pack_header(x: AccountHeader) -> uint256:
    assert (
        x.flags <= MASK_8
        and x.positions <= MASK_32
        and x.collaterals <= MASK_8
        and x.position_count <= MASK_8
        and x.pending_count <= MASK_8
        and x.pending_until <= MASK_40
        and x.min_nonce <= MASK_64
    ), "clearinghouse: value too large"
    return (
        x.flags
        | (x.positions << 8)
        | (x.collaterals << 40)
        | (x.position_count << 48)
        | (x.pending_count << 56)
        | (x.pending_until << 64)
        | (x.min_nonce << HEADER_NONCE_SHIFT)
    )


# --- bitmaps (positions, collaterals, markets seen) and account ids --------------------------


@internal
@pure
def _has_bit(bits: uint256, i: uint256) -> bool:
    return (bits >> i) & 1 != 0


@internal
@pure
def _no_bits_from(bits: uint256, i: uint256) -> bool:
    """
    @dev No bit at i or above: a bitmap walk ends here.
    """
    return bits >> i == 0


@internal
@pure
def _with_bit(bits: uint256, i: uint256) -> uint256:
    return bits | (1 << i)


@internal
@pure
def _without_bit(bits: uint256, i: uint256) -> uint256:
    return bits & ~(1 << i)


@internal
@pure
def _low_bits(n: uint256) -> uint256:
    """
    @dev A bitmap with bits 0 .. n - 1 set.
    """
    return (1 << n) - 1


@internal
@pure
def _account_id(owner: address, index: uint256) -> uint256:
    """
    @dev Sub-account id: owner << 96 | index (the owner is read back from the id).
    """
    return (convert(owner, uint256) << 96) | index


@internal
@pure
def _account_owner(account: uint256) -> address:
    return convert(account >> 96, address)


# signed-order state: 2 bits per nonce (order_hash.ORDER_PARTIAL / ORDER_DONE), 128 nonces
# per word of `state._order_bits[account]`


@internal
@pure
def _order_word(nonce: uint256) -> uint256:
    return nonce >> 7


@internal
@pure
def _order_state_bits(state_: uint256, nonce: uint256) -> uint256:
    """
    @dev `state_` (2 bits) placed at the nonce's position in its word.
    """
    return state_ << ((nonce & 127) << 1)


@internal
@pure
def _order_bit_at(nonce: uint256) -> uint256:
    """
    @dev The bit position of a nonce's two replay bits in its state._order_bits word.
    """
    return (nonce & 127) << 1


@internal
@pure
def _replay_bits(word: uint256, at: uint256) -> uint256:
    """
    @dev The two replay bits (ORDER_PARTIAL | ORDER_DONE) at bit `at` of a header or an
         order-bits word.
    """
    return (word >> at) & 3


@internal
@pure
def _with_replay_bits(word: uint256, at: uint256, bits: uint256) -> uint256:
    """
    @dev `word` with `bits` (two bits) ORed in at bit `at`.
    """
    return word | (bits << at)


@internal
@pure
def _header_window_from(h: uint256, step: uint256) -> uint256:
    """
    @dev The header's replay window (2 bits per nonce, nonce min + k at bits 2k) from
         nonce min + `step` on: the bits of the nonces a window that moves up by `step`
         keeps, at their new places.
    """
    return ((h >> NONCE_WINDOW_SHIFT) & MASK_88) >> (step << 1)


@internal
@pure
def _with_window(h: uint256, window: uint256, min_nonce: uint256) -> uint256:
    """
    @dev The header with a new replay window and minimum nonce (`cancel_below`); the bits
         below the window (flags, bitmaps, counts, pending orders) kept.
    """
    assert window <= MASK_88 and min_nonce <= MASK_64, "clearinghouse: value too large"
    return (h & MASK_104) | (window << NONCE_WINDOW_SHIFT) | (min_nonce << HEADER_NONCE_SHIFT)


# --- delayed orders (modules/delayed.vy) ------------------------------------------------------
#   config word (per market)  min_delay u32 | max_age u32 | keeper_fee u128 (USD WAD) |
#                             mode u8 (bits 192-199)
#   order word (per account and market)  size_delta int96 | acceptable_price u96 (all
#                             ones, NO_PRICE_LIMIT: no limit) | commit_time u40 |
#                             keeper_fee u24 (units of delayed.KEEPER_FEE_UNIT, 1e-4 USD)

# an order word's acceptable price when the order has no price limit
NO_PRICE_LIMIT: constant(uint256) = MASK_96


struct DelayedConfig:
    min_delay: uint256
    max_age: uint256
    keeper_fee: uint256
    mode: uint256


struct DelayedOrder:
    size_delta: int256
    acceptable_price: uint256
    commit_time: uint256
    keeper_fee_units: uint256


@internal
@pure
def _unpack_delayed_config(w: uint256) -> DelayedConfig:
    return DelayedConfig(
        min_delay=w & MASK_32,
        max_age=(w >> 32) & MASK_32,
        keeper_fee=(w >> 64) & MASK_128,
        mode=w >> 192,
    )


@internal
@pure
def _pack_delayed_config(x: DelayedConfig) -> uint256:
    assert (
        x.min_delay <= MASK_32
        and x.max_age <= MASK_32
        and x.keeper_fee <= MASK_128
        and x.mode <= MASK_8
    ), "clearinghouse: value too large"
    return x.min_delay | (x.max_age << 32) | (x.keeper_fee << 64) | (x.mode << 192)


@internal
@pure
def _delayed_min_delay(cfg: uint256) -> uint256:
    return cfg & MASK_32


@internal
@pure
def _delayed_max_age(cfg: uint256) -> uint256:
    return (cfg >> 32) & MASK_32


@internal
@pure
def _delayed_keeper_fee(cfg: uint256) -> uint256:
    return (cfg >> 64) & MASK_128


@internal
@pure
def _delayed_acceptable_price(w: uint256) -> uint256:
    return (w >> 96) & MASK_96


@internal
@pure
def _delayed_commit_time(w: uint256) -> uint256:
    return (w >> 192) & MASK_40


@internal
@pure
def _delayed_keeper_fee_units(w: uint256) -> uint256:
    return w >> 232


@internal
@pure
def _unpack_delayed_order(w: uint256) -> DelayedOrder:
    return DelayedOrder(
        size_delta=self._pos_size(w),
        acceptable_price=(w >> 96) & MASK_96,
        commit_time=(w >> 192) & MASK_40,
        keeper_fee_units=w >> 232,
    )


@internal
@pure
def _pack_delayed_order(x: DelayedOrder) -> uint256:
    return self._pack_delayed_fields(
        x.size_delta, x.acceptable_price, x.commit_time, x.keeper_fee_units
    )


@internal
@pure
def _pack_delayed_fields(
    size_delta: int256, acceptable_price: uint256, commit_time: uint256, keeper_fee_units: uint256
) -> uint256:
    """
    @dev `_pack_delayed_order` without the struct (commit_order's bytecode). An
         `acceptable_price` above the field is stored as NO_PRICE_LIMIT. The caller keeps
         |size_delta| <= MAX_I96 and the keeper fee within 24 bits (commit_order checks
         both: delayed.MAX_KEEPER_FEE); the commit time is block.timestamp.
    """
    return (
        (convert(convert(size_delta, bytes32), uint256) & MASK_96)
        | (min(acceptable_price, MASK_96) << 96)
        | (commit_time << 192)
        | (keeper_fee_units << 232)
    )


# --- liquidation auction (LiquidationAuction.vy's own storage) ------------------------------
#   auction word (per account)  started_at u40 (discount clock) | lot u64 (WAD fraction of
#                  the current book) | kick_notional u96 (USD WAD of the lot when its clock
#                  started) | until u32 (deadline - started_at, s) | step u16 |
#                  active bit 248 | critical bit 249
#   window word (per market)    start u40 | used u216 (USD WAD)
#   params words (4)            0: target_health u64 | critical_health u64 | min_step u64 |
#                                  max_step u64 (WAD)
#                               1: start_discount u64 | max_discount u64 | cusp u64 |
#                                  penalty u64 (WAD)
#                               2: keeper_tip u128 | keeper_cap u128 (USD WAD)
#                               3: small_account u96 (USD WAD) | keeper_fee u64 (WAD) |
#                                  cooldown u32 | duration u32 | window u32 (s)

struct Auction:
    started_at: uint256
    lot: uint256
    kick_notional: uint256
    until: uint256
    step: uint256
    active: bool
    critical: bool


struct LiquidationWindow:
    start: uint256
    used: uint256


struct AuctionParams:
    keeper_tip: uint256
    keeper_fee: uint256
    keeper_cap: uint256
    penalty: uint256
    target_health: uint256
    critical_health: uint256
    min_step: uint256
    max_step: uint256
    small_account: uint256
    cooldown: uint256
    start_discount: uint256
    max_discount: uint256
    duration: uint256
    cusp: uint256
    window: uint256


AUCTION_ACTIVE_BIT: constant(uint256) = 1 << 248
AUCTION_CRITICAL_BIT: constant(uint256) = 1 << 249
# the most a lot's notional field holds (USD WAD)
MAX_KICK_NOTIONAL: constant(uint256) = MASK_96


@internal
@pure
def _unpack_auction(w: uint256) -> Auction:
    return Auction(
        started_at=w & MASK_40,
        lot=(w >> 40) & MASK_64,
        kick_notional=(w >> 104) & MASK_96,
        until=(w >> 200) & MASK_32,
        step=(w >> 232) & MASK_16,
        active=w & AUCTION_ACTIVE_BIT != 0,
        critical=w & AUCTION_CRITICAL_BIT != 0,
    )


@internal
@pure
def _pack_auction(x: Auction) -> uint256:
    # every field is bounded by construction in LiquidationAuction.vy (lot <= 1e18, notional
    # clamped to MAX_KICK_NOTIONAL, until <= duration <= 1 day): an invariant, no reason
    # string (this module's reasons read "clearinghouse: ")
    assert (
        x.started_at <= MASK_40
        and x.lot <= MASK_64
        and x.kick_notional <= MASK_96
        and x.until <= MASK_32
        and x.step <= MASK_16
    )
    w: uint256 = (
        x.started_at | (x.lot << 40) | (x.kick_notional << 104) | (x.until << 200) | (x.step << 232)
    )
    if x.active:
        w |= AUCTION_ACTIVE_BIT
    if x.critical:
        w |= AUCTION_CRITICAL_BIT
    return w


@internal
@pure
def _unpack_window(w: uint256) -> LiquidationWindow:
    return LiquidationWindow(start=w & MASK_40, used=w >> 40)


@internal
@pure
def _pack_window(x: LiquidationWindow) -> uint256:
    assert x.start <= MASK_40 and x.used < 2**216  # an invariant, as in _pack_auction
    return x.start | (x.used << 40)


@internal
@pure
def _unpack_auction_params(w: uint256[4]) -> AuctionParams:
    return AuctionParams(
        keeper_tip=w[2] & MASK_128,
        keeper_fee=(w[3] >> 96) & MASK_64,
        keeper_cap=w[2] >> 128,
        penalty=w[1] >> 192,
        target_health=w[0] & MASK_64,
        critical_health=(w[0] >> 64) & MASK_64,
        min_step=(w[0] >> 128) & MASK_64,
        max_step=w[0] >> 192,
        small_account=w[3] & MASK_96,
        cooldown=(w[3] >> 160) & MASK_32,
        start_discount=w[1] & MASK_64,
        max_discount=(w[1] >> 64) & MASK_64,
        duration=(w[3] >> 192) & MASK_32,
        cusp=(w[1] >> 128) & MASK_64,
        window=w[3] >> 224,
    )


@internal
@pure
def _auction_params_fit(p: AuctionParams) -> bool:
    """
    @dev Whether every field fits its place in the four words (the auction checks this,
         with its own reason, before `_pack_auction_params`).
    """
    return (
        p.target_health <= MASK_64
        and p.critical_health <= MASK_64
        and p.min_step <= MASK_64
        and p.max_step <= MASK_64
        and p.start_discount <= MASK_64
        and p.max_discount <= MASK_64
        and p.cusp <= MASK_64
        and p.penalty <= MASK_64
        and p.keeper_tip <= MASK_128
        and p.keeper_cap <= MASK_128
        and p.small_account <= MASK_96
        and p.keeper_fee <= MASK_64
        and p.cooldown <= MASK_32
        and p.duration <= MASK_32
        and p.window <= MASK_32
    )


@internal
@pure
def _pack_auction_params(p: AuctionParams) -> uint256[4]:
    """
    @dev Fields that do not fit (`_auction_params_fit`) would spill into their neighbours.
    """
    return [
        p.target_health | (p.critical_health << 64) | (p.min_step << 128) | (p.max_step << 192),
        p.start_discount | (p.max_discount << 64) | (p.cusp << 128) | (p.penalty << 192),
        p.keeper_tip | (p.keeper_cap << 128),
        p.small_account
        | (p.keeper_fee << 96)
        | (p.cooldown << 160)
        | (p.duration << 192)
        | (p.window << 224),
    ]


# --- risk book (contract code, modules/margin.vy has the byte layout) ----------------------
#   header word     n_markets u8 | n_scenarios u8 | floor_bps u16 | mmr_bps u16
#   market word 0   imr_min_bps u16 | imr_slope_bps u16 | margin_scale u128 (base WAD)
#   market word 1   16 shocks, int16 bp each, scenario k at bits 16k


struct BookHeader:
    n_markets: uint256
    n_scenarios: uint256
    floor_bps: uint256
    mmr_bps: uint256


@internal
@pure
def _book_header(w: uint256) -> BookHeader:
    return BookHeader(
        n_markets=w & MASK_8,
        n_scenarios=(w >> 8) & MASK_8,
        floor_bps=(w >> 16) & MASK_16,
        mmr_bps=(w >> 32) & MASK_16,
    )


@internal
@pure
def _pack_book_header(h: BookHeader) -> uint256:
    assert (
        h.n_markets <= MASK_8
        and h.n_scenarios <= MASK_8
        and h.floor_bps <= MASK_16
        and h.mmr_bps <= MASK_16
    ), "clearinghouse: value too large"
    return h.n_markets | (h.n_scenarios << 8) | (h.floor_bps << 16) | (h.mmr_bps << 32)


@internal
@pure
def _book_imr_min_bps(w0: uint256) -> uint256:
    return w0 & MASK_16


@internal
@pure
def _book_imr_slope_bps(w0: uint256) -> uint256:
    return (w0 >> 16) & MASK_16


@internal
@pure
def _book_margin_scale(w0: uint256) -> uint256:
    return (w0 >> 32) & MASK_128


@internal
@pure
def _book_word0_fits(w0: uint256) -> bool:
    """
    @dev A market's word 0 has no bit above its fields (160-255 clear): set_risk_book
         copies it into the market's risk word, where bit 248 is the pause (review 11b).
    """
    return w0 >> 160 == 0


@internal
@pure
def _book_shock(w1: uint256, k: uint256) -> int256:
    """
    @dev Shock of scenario k in basis points (signed).
    """
    # move field k to the top, then shift back arithmetically to sign-extend it
    return convert(convert(w1 << (240 - 16 * k), bytes32), int256) >> 240


# --- oracle router words (OracleRouter.vy's own storage) -------------------------------------
#   config word (per market)    min_price u96 | max_price u96 (WAD) | max_deviation_bps u16 |
#                               twap_window u24 (s) | min_fresh u8 | source count u8 |
#                               bit 248: a sequencer feed is set (a copy of the globals')
#   source word (per source)    feed u160 | feed decimals u8 | factor u64 (10**|18 -
#                               decimals|) | max_age u24 (s)
#   observation word (market)   last_price u96 | ema u96 (WAD) | last_ts u40 | snapshot
#                               CREATE nonce u24 (0: no such market)
#   globals word                sequencer feed u160 | grace_period u64 (s) | market count u8
#                               | next CREATE nonce u24
# Every field is bounded by construction in OracleRouter.vy before it is packed (prices <=
# MAX_PRICE < 2**96, deviation <= 10,000 bps, twap_window <= 86,400 s, at most 3 sources,
# decimals <= 36, factor <= 10**18, max_age <= MAX_AGE_LIMIT, grace <= MAX_GRACE_PERIOD,
# market count <= MAX_MARKETS, nonce < ORACLE_MAX_NONCE: asserted in `_publish`), so the
# pack functions carry no revert of their own (a reason string here would be compiled
# into the router, whose prefix differs from the clearinghouse's). The router's per-trade
# path (`_observe`, `_quorum`, `_sequencer_flags`) shifts by these names inline:
# perpdex/devtools/packing_baseline.txt lists it and says why.
ORACLE_CFG_MAX_PRICE: constant(uint256) = 96
ORACLE_CFG_DEVIATION: constant(uint256) = 192
ORACLE_CFG_WINDOW: constant(uint256) = 208
ORACLE_CFG_MIN_FRESH: constant(uint256) = 232
ORACLE_CFG_COUNT: constant(uint256) = 240
ORACLE_CFG_HAS_SEQUENCER: constant(uint256) = 1 << 248
ORACLE_SRC_DECIMALS: constant(uint256) = 160
ORACLE_SRC_FACTOR: constant(uint256) = 168
ORACLE_SRC_MAX_AGE: constant(uint256) = 232
ORACLE_OBS_EMA: constant(uint256) = 96
ORACLE_OBS_TS: constant(uint256) = 192
ORACLE_OBS_SNAPSHOT: constant(uint256) = 232
ORACLE_GLB_GRACE: constant(uint256) = 160
ORACLE_GLB_COUNT: constant(uint256) = 224
ORACLE_GLB_NONCE: constant(uint256) = 232
MASK_160: constant(uint256) = 2**160 - 1
# the largest snapshot CREATE nonce a 24-bit field holds
ORACLE_MAX_NONCE: constant(uint256) = MASK_24


struct OracleConfig:
    min_price: uint256
    max_price: uint256
    max_deviation_bps: uint256
    twap_window: uint256
    min_fresh: uint256
    count: uint256
    has_sequencer: bool


@internal
@pure
def _unpack_oracle_config(w: uint256) -> OracleConfig:
    return OracleConfig(
        min_price=w & MASK_96,
        max_price=(w >> ORACLE_CFG_MAX_PRICE) & MASK_96,
        max_deviation_bps=(w >> ORACLE_CFG_DEVIATION) & MASK_16,
        twap_window=(w >> ORACLE_CFG_WINDOW) & MASK_24,
        min_fresh=(w >> ORACLE_CFG_MIN_FRESH) & MASK_8,
        count=(w >> ORACLE_CFG_COUNT) & MASK_8,
        has_sequencer=w & ORACLE_CFG_HAS_SEQUENCER != 0,
    )


@internal
@pure
def _pack_oracle_config(x: OracleConfig) -> uint256:
    w: uint256 = (
        x.min_price
        | (x.max_price << ORACLE_CFG_MAX_PRICE)
        | (x.max_deviation_bps << ORACLE_CFG_DEVIATION)
        | (x.twap_window << ORACLE_CFG_WINDOW)
        | (x.min_fresh << ORACLE_CFG_MIN_FRESH)
        | (x.count << ORACLE_CFG_COUNT)
    )
    if x.has_sequencer:
        w |= ORACLE_CFG_HAS_SEQUENCER
    return w


@internal
@pure
def _oracle_source_count(w: uint256) -> uint256:
    """
    @dev The number of sources in a config word.
    """
    return (w >> ORACLE_CFG_COUNT) & MASK_8


@internal
@pure
def _oracle_config_with_sequencer(w: uint256, has_sequencer: bool) -> uint256:
    """
    @dev A config word with its "a sequencer feed is set" bit as given.
    """
    if has_sequencer:
        return w | ORACLE_CFG_HAS_SEQUENCER
    return w & ~ORACLE_CFG_HAS_SEQUENCER


struct OracleSource:
    feed: address
    decimals: uint256
    factor: uint256
    max_age: uint256


@internal
@pure
def _unpack_oracle_source(w: uint256) -> OracleSource:
    return OracleSource(
        feed=self._low_address(w),
        decimals=(w >> ORACLE_SRC_DECIMALS) & MASK_8,
        factor=(w >> ORACLE_SRC_FACTOR) & MASK_64,
        max_age=w >> ORACLE_SRC_MAX_AGE,
    )


@internal
@pure
def _pack_oracle_source(x: OracleSource) -> uint256:
    return (
        convert(convert(x.feed, uint160), uint256)
        | (x.decimals << ORACLE_SRC_DECIMALS)
        | (x.factor << ORACLE_SRC_FACTOR)
        | (x.max_age << ORACLE_SRC_MAX_AGE)
    )


@internal
@pure
def _low_address(w: uint256) -> address:
    """
    @dev The address in the low 160 bits of a word: a source word's feed, the globals
         word's sequencer feed.
    """
    return convert(convert(w & MASK_160, uint160), address)


struct Observation:
    last_price: uint256
    ema: uint256
    last_ts: uint256
    snapshot_nonce: uint256


@internal
@pure
def _unpack_observation(w: uint256) -> Observation:
    return Observation(
        last_price=w & MASK_96,
        ema=(w >> ORACLE_OBS_EMA) & MASK_96,
        last_ts=(w >> ORACLE_OBS_TS) & MASK_40,
        snapshot_nonce=w >> ORACLE_OBS_SNAPSHOT,
    )


@internal
@pure
def _pack_observation(x: Observation) -> uint256:
    return (
        x.last_price
        | (x.ema << ORACLE_OBS_EMA)
        | (x.last_ts << ORACLE_OBS_TS)
        | (x.snapshot_nonce << ORACLE_OBS_SNAPSHOT)
    )


@internal
@pure
def _observation_ema(w: uint256) -> uint256:
    return (w >> ORACLE_OBS_EMA) & MASK_96


@internal
@pure
def _observation_last_price(w: uint256) -> uint256:
    return w & MASK_96


struct OracleGlobals:
    sequencer_feed: address
    grace_period: uint256
    market_count: uint256
    next_nonce: uint256


@internal
@pure
def _unpack_oracle_globals(w: uint256) -> OracleGlobals:
    return OracleGlobals(
        sequencer_feed=self._low_address(w),
        grace_period=(w >> ORACLE_GLB_GRACE) & MASK_64,
        market_count=(w >> ORACLE_GLB_COUNT) & MASK_8,
        next_nonce=w >> ORACLE_GLB_NONCE,
    )


@internal
@pure
def _pack_oracle_globals(x: OracleGlobals) -> uint256:
    return (
        convert(convert(x.sequencer_feed, uint160), uint256)
        | (x.grace_period << ORACLE_GLB_GRACE)
        | (x.market_count << ORACLE_GLB_COUNT)
        | (x.next_nonce << ORACLE_GLB_NONCE)
    )


@internal
@pure
def _oracle_market_count(w: uint256) -> uint256:
    return (w >> ORACLE_GLB_COUNT) & MASK_8


@internal
@pure
def _oracle_sequencer_word(w: uint256) -> uint256:
    """
    @dev The globals word's sequencer feed and grace period alone (a market snapshot's
         last word): `_low_address` and the grace period read it like the globals word.
    """
    return w & (MASK_64 << ORACLE_GLB_GRACE | MASK_160)


# --- loss-cap window word (state.loss_cap_window[m]; packing11) ------------------------
# start u128 (the window's first second) << 128 | used u128 (base WAD force-closed in the
# window by `trading._force_close`); the SDK reads it the same way
# (perpdex/sdk/math/trading.py)


@internal
@pure
def _loss_window_start(w: uint256) -> uint256:
    return w >> 128


@internal
@pure
def _loss_window_used(w: uint256) -> uint256:
    return w & MASK_128


@internal
@pure
def _pack_loss_window(start: uint256, used: uint256) -> uint256:
    assert start <= MASK_128 and used <= MASK_128, "clearinghouse: value too large"
    return (start << 128) | used
