"""Mirror of contracts/modules/packing.vy: the packed words (mark, position, market params,
pool, account header, system) and their readers and packers, with the unpacked records
(`Mark`, `Position`, `MarketParams`, `System`) the views return.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from perpdex.constants import MAX_ABS_I128, MAX_POSITIONS, MAX_PRICE
from perpdex.sdk.math.vyper import Revert, _signed, _u, vdiv

# field masks
MASK_128 = 2**128 - 1
MASK_96 = 2**96 - 1
MASK_88 = 2**88 - 1
MASK_64 = 2**64 - 1
MASK_40 = 2**40 - 1
MASK_34 = 2**34 - 1
MASK_32 = 2**32 - 1
MASK_16 = 2**16 - 1
MASK_8 = 2**8 - 1
# packing.vy's units and field bounds (PICO_PER_USD is positions.vy's too)
PICO_PER_USD = 10**12
FEMTO_PER_WAD = 1_000
MAX_I96 = 2**95 - 1
MAX_I72 = 2**71 - 1
MAX_I56 = 2**55 - 1
# market params flags
MARKET_LISTED = 1
MARKET_PAUSED = 2


def lo_i128(w: int) -> int:
    """packing._lo_i128: the low half as a signed 128-bit integer."""
    return _signed(w, 128)


def hi_i128(w: int) -> int:
    """packing._hi_i128: the high half as a signed 128-bit integer."""
    return _signed(w >> 128, 128)


def pack_i128(lo: int, hi: int) -> int:
    """packing._pack_i128."""
    if not (-MAX_ABS_I128 <= lo <= MAX_ABS_I128 and -MAX_ABS_I128 <= hi <= MAX_ABS_I128):
        raise Revert("clearinghouse: value too large")
    return ((_u(hi) << 128) % 2**256) | (_u(lo) & MASK_128)


def pack_u128(lo: int, hi: int) -> int:
    """packing._pack_u128."""
    if lo > MASK_128 or hi > MASK_128:
        raise Revert("clearinghouse: value too large")
    return (hi << 128) | lo


def mark_price(w: int) -> int:
    """packing._mark_price: oracle price cached at the last touch (WAD)."""
    return w & MASK_88


def mark_time(w: int) -> int:
    """packing._mark_time: timestamp of the last touch (34 bits; the 6 above it hold the
    block tag, block.number mod 64, that lets a trade reuse a mark of its own block)."""
    return (w >> 88) & MASK_34


def mark_index(w: int) -> int:
    """packing._mark_index: funding index, pico-USD per unit (signed 72 bits at 128)."""
    return _signed(w >> 128, 72)


def mark_rate(w: int) -> int:
    """packing._mark_rate: funding rate in WAD per day (signed 56 bits of 1e-15 at 200)."""
    return _signed(w >> 200, 56) * FEMTO_PER_WAD


def pack_mark(price: int, ts: int, index: int, rate: int) -> int:
    """packing._pack_mark: `rate` is truncated toward zero to the 1e-15 grid; `ts` is the
    40-bit touch stamp (timestamp | block tag << 34)."""
    if price > MAX_PRICE:
        raise Revert("clearinghouse: price too large")
    if not -MAX_I72 <= index <= MAX_I72:
        raise Revert("clearinghouse: funding index too large")
    femto = vdiv(rate, FEMTO_PER_WAD)
    if not -MAX_I56 <= femto <= MAX_I56:
        raise Revert("clearinghouse: funding rate too large")
    return (
        ((_u(femto) << 200) % 2**256)
        | ((_u(index) & (2**72 - 1)) << 128)
        | ((ts & MASK_40) << 88)
        | price
    )


def pos_size(w: int) -> int:
    """packing._pos_size: signed size (low 96 bits)."""
    return _signed(w, 96)


def pos_cost(w: int) -> int:
    """packing._pos_cost: signed cost basis (96 bits at bit 96)."""
    return _signed(w >> 96, 96)


def pos_snapshot(w: int) -> int:
    """The low 64 bits of the funding index at the last settlement (views.position)."""
    return w >> 192


def pos_funding_delta(w: int, index: int) -> int:
    """packing._pos_funding_delta: index - snapshot, from the low 64 bits (wrapping
    difference modulo 2**64, sign-extended)."""
    diff = (_u(index) - (w >> 192)) % 2**256 & MASK_64
    return _signed(diff, 64)


def funding_delta(snapshot: int, index: int) -> int:
    """pos_funding_delta for the snapshot `views.position` returns (the lens's
    `packing._pos_funding_delta(snap << 192, index)`)."""
    return pos_funding_delta((snapshot << 192) % 2**256, index)


def pack_pos(size: int, cost: int, index: int) -> int:
    """packing._pack_pos."""
    if not (-MAX_I96 <= size <= MAX_I96 and -MAX_I96 <= cost <= MAX_I96):
        raise Revert("clearinghouse: position too large")
    return ((_u(index) & MASK_64) << 192) | ((_u(cost) & MASK_96) << 96) | (_u(size) & MASK_96)


@dataclass(frozen=True)
class MarketParams:
    """packing.MarketParams (as `views.market_params` returns it): fees and funding
    parameters in WAD, skew scale and max OI in base WAD."""

    skew_scale: int
    maker_fee: int
    taker_fee: int
    max_funding_velocity: int
    max_funding_rate: int
    listed: bool
    paused: bool
    max_oi: int
    max_vault_exposure: int


PARAM_UNIT = 10**18  # skew scale and max OI in whole base units
FEE_UNIT = 10**10  # maker / taker fee in 1e-8
VELOCITY_UNIT = 10**12  # max funding velocity in 1e-6 per day per day
RATE_UNIT = 10**9  # max funding rate in 1e-9 per day
EXPOSURE_UNIT = 10**12  # max vault exposure in 1e-6 of pool cash
MASK_24 = 2**24 - 1
MASK_48 = 2**48 - 1


def unpack_params(a: int) -> MarketParams:
    """packing._unpack_params: skew_scale u48 | maker_fee u24 | taker_fee u24 |
    max_funding_velocity u32 | max_funding_rate u32 | flags u8 | max_oi u64 |
    max_vault_exposure u24, each on its grid."""
    flags = (a >> 160) & MASK_8
    return MarketParams(
        skew_scale=(a & MASK_48) * PARAM_UNIT,
        maker_fee=((a >> 48) & MASK_24) * FEE_UNIT,
        taker_fee=((a >> 72) & MASK_24) * FEE_UNIT,
        max_funding_velocity=((a >> 96) & MASK_32) * VELOCITY_UNIT,
        max_funding_rate=((a >> 128) & MASK_32) * RATE_UNIT,
        listed=flags & MARKET_LISTED != 0,
        paused=flags & MARKET_PAUSED != 0,
        max_oi=((a >> 168) & MASK_64) * PARAM_UNIT,
        max_vault_exposure=((a >> 232) & MASK_24) * EXPOSURE_UNIT,
    )


def _grid(x: int, unit: int, mask: int) -> int:
    """packing._grid: a WAD value in its packed unit (exactly on the grid, in range)."""
    if x % unit != 0:
        raise Revert("clearinghouse: parameter off its grid")
    n = x // unit
    if n > mask:
        raise Revert("clearinghouse: parameter too large")
    return n


def pack_params(p: MarketParams) -> int:
    """packing._pack_params -> the params word."""
    flags = (MARKET_LISTED if p.listed else 0) | (MARKET_PAUSED if p.paused else 0)
    return (
        _grid(p.skew_scale, PARAM_UNIT, MASK_48)
        | (_grid(p.maker_fee, FEE_UNIT, MASK_24) << 48)
        | (_grid(p.taker_fee, FEE_UNIT, MASK_24) << 72)
        | (_grid(p.max_funding_velocity, VELOCITY_UNIT, MASK_32) << 96)
        | (_grid(p.max_funding_rate, RATE_UNIT, MASK_32) << 128)
        | (flags << 160)
        | (_grid(p.max_oi, PARAM_UNIT, MASK_64) << 168)
        | (_grid(p.max_vault_exposure, EXPOSURE_UNIT, MASK_24) << 232)
    )


def unpack_pool(w: int) -> tuple[int, int]:
    """The pool word: (cash int128, fees pending the next sweep uint128), USD WAD."""
    return lo_i128(w), w >> 128


def pack_pool(cash: int, pending_fees: int) -> int:
    """packing._pack_pool."""
    if not -MAX_ABS_I128 <= cash <= MAX_ABS_I128:
        raise Revert("clearinghouse: value too large")
    if pending_fees > MASK_128:
        raise Revert("clearinghouse: fees too large")
    return (pending_fees << 128) | (_u(cash) & MASK_128)


def positions_bitmap(h: int) -> int:
    """packing._positions_bitmap of an account header."""
    return (h >> 8) & MASK_32


def collateral_bitmap(h: int) -> int:
    """packing._collateral_bitmap of an account header."""
    return (h >> 40) & MASK_8


def set_bits(bitmap: int, stop: int, start: int = 0) -> Iterator[int]:
    """The indexes `start <= i < stop` whose bit is set in `bitmap`, in order: the
    contracts' bitmap loops (stop at the first index with no higher bit set)."""
    for i in range(start, stop):
        if bitmap >> i == 0:
            return
        if (bitmap >> i) & 1:
            yield i


def position_count(h: int) -> int:
    """packing._position_count of an account header."""
    return (h >> 48) & MASK_8


def pending_count(h: int) -> int:
    """packing._pending_count: the account's stored delayed orders (bits 56-63)."""
    return (h >> 56) & MASK_8


def pending_until(h: int) -> int:
    """packing._pending_until: the last second a stored delayed order of the account may
    settle, 0 with none (bits 64-103); its owner and operators are frozen until then."""
    return (h >> 64) & MASK_40


def is_frozen(h: int, now: int) -> bool:
    """guards._require_idle refuses the owner's and operators' trades, fills, value out
    and loss-cap or margin-mode changes at block time `now` (review 4, R4-2)."""
    return pending_until(h) >= now


def with_pending(h: int, n: int, until: int) -> int:
    """packing._with_pending: the header with `n` delayed orders stored, until `until`."""
    if n > MASK_8 or until > MASK_40:
        raise Revert("clearinghouse: value too large")
    return (h & ~(MASK_48 << 56)) | (n << 56) | (until << 64)


def with_position(h: int, market: int, is_open: bool) -> int:
    """packing._with_position: sets or clears a market's bit and keeps the count."""
    bit = 1 << (8 + market)
    n = (h >> 48) & MASK_8
    if is_open and h & bit == 0:
        if n >= MAX_POSITIONS:
            raise Revert("clearinghouse: too many positions")
        return ((h | bit) & ~(MASK_8 << 48)) | ((n + 1) << 48)
    if not is_open and h & bit != 0:
        return ((h & ~bit) & ~(MASK_8 << 48)) | ((n - 1) << 48)
    return h


@dataclass(frozen=True)
class System:
    """packing.System (`views.system_params`): the risk book's address and the header
    fields every margin check needs, the fee split (bp) and the max mark age (s)."""

    book: int  # address as an integer (0: no book)
    n_scenarios: int
    floor_bps: int
    mmr_bps: int
    insurance_bps: int
    protocol_bps: int
    max_mark_age: int


def unpack_system(w: int) -> System:
    """packing._system."""
    return System(
        book=w & (2**160 - 1),
        n_scenarios=(w >> 160) & MASK_8,
        floor_bps=(w >> 168) & MASK_16,
        mmr_bps=(w >> 184) & MASK_16,
        insurance_bps=(w >> 200) & MASK_16,
        protocol_bps=(w >> 216) & MASK_16,
        max_mark_age=(w >> 232) & MASK_16,
    )


def pack_system(x: System) -> int:
    """packing._pack_system."""
    if x.n_scenarios > MASK_8 or x.max_mark_age > MASK_16:
        raise Revert("clearinghouse: value too large")
    if x.floor_bps > MASK_16 or x.mmr_bps > MASK_16:
        raise Revert("clearinghouse: value too large")
    if x.insurance_bps > MASK_16 or x.protocol_bps > MASK_16:
        raise Revert("clearinghouse: value too large")
    return (
        x.book
        | (x.n_scenarios << 160)
        | (x.floor_bps << 168)
        | (x.mmr_bps << 184)
        | (x.insurance_bps << 200)
        | (x.protocol_bps << 216)
        | (x.max_mark_age << 232)
    )


@dataclass(frozen=True)
class Mark:
    """A market's cached mark (`views.mark`): price WAD, time of the last touch, funding
    index in pico-USD per unit, funding rate in WAD per day (on the 1e-15 grid)."""

    price: int
    touched_at: int
    index: int
    rate: int

    @property
    def word(self) -> int:
        """The packed mark word (packing._pack_mark)."""
        return pack_mark(self.price, self.touched_at, self.index, self.rate)


def unpack_mark(w: int) -> Mark:
    """A mark word -> Mark (views.mark)."""
    return Mark(mark_price(w), mark_time(w), mark_index(w), mark_rate(w))


@dataclass(frozen=True)
class Position:
    """A position (`views.position`): size base WAD, cost basis USD WAD, and the low 64
    bits of the funding index at its last settlement."""

    size: int = 0
    cost: int = 0
    snapshot: int = 0

    @property
    def word(self) -> int:
        """The packed position word (the snapshot is already the low 64 bits)."""
        return pack_pos(self.size, self.cost, self.snapshot)
