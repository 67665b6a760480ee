"""Integer-exact Python mirror of perpdex's on-chain math.

Every function here reproduces one Vyper function (named in its docstring) to the wei:
same operations in the same order, same rounding direction, same Vyper semantics:

* `//` on signed integers truncates toward zero and `%` takes the sign of the dividend
  (`vdiv`, `vmod`); Python's own `//` floors, so it is used only where both operands are
  known non-negative (Vyper `uint256`), where the two agree;
* `convert(x, uint256)` of a negative value and `convert(x, int256)` of a value at or
  above 2**255 revert (`_to_u256`, `_to_i256`);
* snekmate's `math._mul_div(x, y, d, roundup)` is floor or ceil of x * y / d with an
  exact 512-bit intermediate (`mul_div`);
* signed fields of packed words are two's complement (`_signed`), and the wrapped funding
  snapshot difference is taken modulo 2**64 (`pos_funding_delta`).

Where the contract would revert, the mirror raises `Revert` with the contract's reason
string. Checked-arithmetic overflows that the packed widths rule out (e.g. size * price,
both below 2**96) are not re-checked.

There are no floats anywhere: every quantity is an `int` in the contracts' units
(prices and sizes WAD, money USD WAD, funding index pico-USD per unit, rates WAD per
day, shocks and ratios in basis points).

Layers, from the bottom:
  Vyper arithmetic       vdiv, vmod, div_floor, div_ceil, mul_div, smul_div
  word layouts           packing.vy: mark / position / params / header / system words
  risk book              margin.vy: header, per-market words, isolated, combine
  pure trading math      positions.vy, pricing.vy, funding.vy
  engine                 engine.vy: touch (mark transition), collateral_value, scan
  lens                   ClearinghouseLens.vy: account_summary, quote, liquidation_price
  trade                  engine._pool_trade in full: simulate_trade, refresh_stale

The engine, lens and trade layers read a `perpdex.sdk.snapshot.Snapshot` (the raw chain
state at one block); everything below it takes plain integers.

    snap = Snapshot.load(protocol, account)          # one block
    scan(snap)            == ch.account_margin(account)
    account_summary(snap) == lens.account_summary(account)
    quote(snap, m, d)     == lens.quote(account, m, d)            (same block)
    simulate_trade(snap, m, d, now=t)  -> what ch.trade does in a block at time t,
                                          including the account's margin after it

`quote` mirrors the lens, including its one approximation: the figures *after* the trade
value the other positions and secondary collateral at their cached marks, whereas the
trade's margin check first re-reads stale marks and the traded market's mark also prices
any collateral it backs. `simulate_trade` has no such gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    BPS,
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    IWAD,
    MAX_ABS_I128,
    MAX_COLLATERALS,
    MAX_MARKETS,
    MAX_POSITIONS,
    MAX_PRICE,
    MAX_SCENARIOS,
    MIN_POSITION_NOTIONAL,
    SECONDS_PER_DAY,
    WAD,
)
from perpdex.errors import PerpdexError
from perpdex.sdk import riskbook
from perpdex.units import NANO

if TYPE_CHECKING:
    from perpdex.sdk.snapshot import Snapshot

__all__ = [
    "ACCOUNT_EXISTS",
    "ACCOUNT_IN_LIQUIDATION",
    "ACCOUNT_PORTFOLIO",
    "BPS",
    "FEMTO_PER_WAD",
    "FLAG_DEGRADED",
    "FLAG_SEQUENCER_DOWN",
    "FLAG_SEQUENCER_GRACE",
    "IWAD",
    "LIQ_COST_SHARE",
    "LIQ_MAX_KEEPER_REWARD",
    "LIQ_MIN_POSITION_NOTIONAL",
    "LIQ_REWARD_SHARE",
    "LIQ_SEARCH_CEILING",
    "LOSS_CAP_WINDOW",
    "MAX_BISECTION",
    "MAX_COLLATERALS",
    "MAX_MARKETS",
    "MAX_POSITIONS",
    "MAX_PRICE",
    "MAX_SCENARIOS",
    "MIN_POSITION_NOTIONAL",
    "NANO",
    "NO_OVERRIDE",
    "NO_RISK_HEALTH",
    "NO_SCENARIO",
    "PICO_PER_USD",
    "SECONDS_PER_DAY",
    "UINT256_MAX",
    "WAD",
    "AccountView",
    "Book",
    "BookHeader",
    "Ctx",
    "Leg",
    "MarginScan",
    "Mark",
    "MarketParams",
    "Position",
    "PositionView",
    "QuoteView",
    "Revert",
    "System",
    "Totals",
    "TradeResult",
    "account_summary",
    "accrue",
    "add_leg",
    "apply_fill",
    "binding_scenario",
    "book_header",
    "collateral_bitmap",
    "collateral_value",
    "combine",
    "div_ceil",
    "div_floor",
    "fee",
    "fee_split",
    "fill_price",
    "force_close",
    "forced_limit",
    "funding_delta",
    "funding_owed",
    "gap",
    "health",
    "hi_i128",
    "imr_min_bps",
    "imr_slope_bps",
    "initial_requirement",
    "isolated_requirement",
    "lens_ctx",
    "lens_leg",
    "liq_discount",
    "liq_leg_part",
    "liq_need",
    "liq_reward",
    "liq_scale",
    "liq_sell_part",
    "liq_tranche",
    "liquidation_price",
    "lo_i128",
    "load_legs",
    "maker_size",
    "margin_scale",
    "mark_index",
    "mark_price",
    "mark_rate",
    "mark_time",
    "mul_div",
    "pack_i128",
    "pack_mark",
    "pack_params",
    "pack_pos",
    "pack_system",
    "pack_u128",
    "pos_cost",
    "pos_funding_delta",
    "pos_size",
    "pos_snapshot",
    "position_count",
    "positions_bitmap",
    "quote",
    "refresh_stale",
    "require_min_position",
    "scan",
    "shock",
    "simulate_trade",
    "smul_div",
    "strict_refresh",
    "touch",
    "touched_index",
    "unpack_mark",
    "unpack_params",
    "unpack_system",
    "unrealized_profit",
    "value_out_free",
    "value_pnl",
    "vdiv",
    "vmod",
    "with_position",
    "withdrawable",
]

# --- constants (packing.vy, ClearinghouseLens.vy; constants.vy's are in perpdex.constants) --

UINT256_MAX = 2**256 - 1
INT256_MAX = 2**255 - 1
INT256_MIN = -(2**255)

MASK_128 = 2**128 - 1
MASK_96 = 2**96 - 1
MASK_88 = 2**88 - 1
MASK_64 = 2**64 - 1
MASK_40 = 2**40 - 1
MASK_32 = 2**32 - 1
MASK_16 = 2**16 - 1
MASK_8 = 2**8 - 1

PICO_PER_USD = 10**12
FEMTO_PER_WAD = 1_000
MAX_I96 = 2**95 - 1
MAX_I72 = 2**71 - 1
MAX_I56 = 2**55 - 1
MARKET_LISTED = 1
MARKET_PAUSED = 2

# margin.vy (risk book layout)
HEADER_BYTES = 32
MARKET_BYTES = 64
NAME_BYTES = 32

# state.vy: `_scan` override market meaning "no override"
NO_OVERRIDE = MAX_MARKETS

# ClearinghouseLens.vy
MAX_BISECTION = 128
LIQ_SEARCH_CEILING = 100
NO_RISK_HEALTH = UINT256_MAX
NO_SCENARIO = UINT256_MAX


class Revert(PerpdexError):
    """The contract would revert here; the message is its reason string."""


# --- Vyper arithmetic ------------------------------------------------------------------------


def vdiv(x: int, d: int) -> int:
    """Vyper's `x // d`: truncates toward zero (signed), reverts on a zero divisor."""
    if d == 0:
        raise Revert("division by zero")
    q = abs(x) // abs(d)
    return q if (x >= 0) == (d > 0) else -q


def vmod(x: int, d: int) -> int:
    """Vyper's `x % d`: the remainder takes the sign of the dividend."""
    if d == 0:
        raise Revert("modulo by zero")
    r = abs(x) % abs(d)
    return r if x >= 0 else -r


def _to_u256(x: int) -> int:
    """`convert(x, uint256)` of an int256: reverts when negative."""
    if x < 0:
        raise Revert("convert: negative value to uint256")
    return x


def _to_i256(x: int) -> int:
    """`convert(x, int256)` of a uint256: reverts at or above 2**255."""
    if x > INT256_MAX:
        raise Revert("convert: value out of int256 range")
    return x


def _u(x: int) -> int:
    """`convert(convert(x, bytes32), uint256)`: the two's-complement bit pattern."""
    return x % 2**256


def _signed(w: int, bits: int) -> int:
    """The low `bits` of `w` read as a two's-complement signed integer."""
    w &= (1 << bits) - 1
    return w - (1 << bits) if w >> (bits - 1) else w


def div_floor(x: int, d: int) -> int:
    """fixed_point._div_floor: division rounded toward -inf (`d` must be positive)."""
    q = vdiv(x, d)
    if vmod(x, d) != 0 and x < 0:
        q -= 1
    return q


def div_ceil(x: int, d: int) -> int:
    """fixed_point._div_ceil: division rounded toward +inf (`d` must be positive)."""
    q = vdiv(x, d)
    if vmod(x, d) != 0 and x > 0:
        q += 1
    return q


def mul_div(x: int, y: int, d: int, roundup: bool) -> int:
    """fixed_point._mul_div / snekmate `math._mul_div`: floor (or ceil when `roundup`)
    of x * y / d with an exact 512-bit intermediate; reverts on d == 0 or a result at or
    above 2**256."""
    if not (0 <= x <= UINT256_MAX and 0 <= y <= UINT256_MAX and 0 <= d <= UINT256_MAX):
        raise Revert("math: mul_div operand out of uint256 range")
    if d == 0:
        raise Revert("math: mul_div division by zero")
    q, r = divmod(x * y, d)
    if roundup and r != 0:
        q += 1
    if q > UINT256_MAX:
        raise Revert("math: mul_div overflow")
    return q


def smul_div(x: int, y: int, d: int, toward_pos_inf: bool) -> int:
    """fixed_point._smul_div: signed x * y / d (512-bit), toward +inf or toward -inf."""
    if x >= 0:
        return _to_i256(mul_div(x, y, d, toward_pos_inf))
    return -_to_i256(mul_div(-x, y, d, not toward_pos_inf))


# --- packing.vy: word layouts -----------------------------------------------------------


def lo_i128(w: int) -> int:
    """packing._lo_i128: the low half as a signed 128-bit integer."""
    return _signed(w, 128)


def hi_i128(w: int) -> int:
    """packing._hi_i128: the high half as a signed 128-bit integer."""
    return _signed(w >> 128, 128)


def pack_i128(lo: int, hi: int) -> int:
    """packing._pack_i128."""
    if not (-MAX_ABS_I128 <= lo <= MAX_ABS_I128 and -MAX_ABS_I128 <= hi <= MAX_ABS_I128):
        raise Revert("packing: value too large")
    return ((_u(hi) << 128) % 2**256) | (_u(lo) & MASK_128)


def pack_u128(lo: int, hi: int) -> int:
    """packing._pack_u128."""
    if lo > MASK_128 or hi > MASK_128:
        raise Revert("packing: value too large")
    return (hi << 128) | lo


def mark_price(w: int) -> int:
    """packing._mark_price: oracle price cached at the last touch (WAD)."""
    return w & MASK_88


def mark_time(w: int) -> int:
    """packing._mark_time: timestamp of the last touch."""
    return (w >> 88) & MASK_40


def mark_index(w: int) -> int:
    """packing._mark_index: funding index, pico-USD per unit (signed 72 bits at 128)."""
    return _signed(w >> 128, 72)


def mark_rate(w: int) -> int:
    """packing._mark_rate: funding rate in WAD per day (signed 56 bits of 1e-15 at 200)."""
    return _signed(w >> 200, 56) * FEMTO_PER_WAD


def pack_mark(price: int, ts: int, index: int, rate: int) -> int:
    """packing._pack_mark: `rate` is truncated toward zero to the 1e-15 grid."""
    if price > MAX_PRICE:
        raise Revert("packing: price too large")
    if not -MAX_I72 <= index <= MAX_I72:
        raise Revert("packing: funding index too large")
    femto = vdiv(rate, FEMTO_PER_WAD)
    if not -MAX_I56 <= femto <= MAX_I56:
        raise Revert("packing: funding rate too large")
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
        raise Revert("packing: position too large")
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


# params word grids (packing.vy): WAD value = field * unit
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
        raise Revert("packing: parameter off its grid")
    n = x // unit
    if n > mask:
        raise Revert("packing: parameter too large")
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
        raise Revert("packing: value too large")
    if pending_fees > MASK_128:
        raise Revert("packing: fees too large")
    return (pending_fees << 128) | (_u(cash) & MASK_128)


def positions_bitmap(h: int) -> int:
    """packing._positions_bitmap of an account header."""
    return (h >> 8) & MASK_32


def collateral_bitmap(h: int) -> int:
    """packing._collateral_bitmap of an account header."""
    return (h >> 40) & MASK_8


def position_count(h: int) -> int:
    """packing._position_count of an account header."""
    return (h >> 48) & MASK_8


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
        raise Revert("packing: value too large")
    if x.floor_bps > MASK_16 or x.mmr_bps > MASK_16:
        raise Revert("packing: value too large")
    if x.insurance_bps > MASK_16 or x.protocol_bps > MASK_16:
        raise Revert("packing: value too large")
    return (
        x.book
        | (x.n_scenarios << 160)
        | (x.floor_bps << 168)
        | (x.mmr_bps << 184)
        | (x.insurance_bps << 200)
        | (x.protocol_bps << 216)
        | (x.max_mark_age << 232)
    )


def fee_split(pending: int, system: System) -> tuple[int, int, int]:
    """state._sweep_fees (and views._pending_split): (to insurance, to protocol, to the
    vault's cash) of the fees accrued since the last sweep; the two shares round down,
    the vault keeps the dust."""
    to_insurance = pending * system.insurance_bps // BPS
    to_protocol = pending * system.protocol_bps // BPS
    return to_insurance, to_protocol, pending - to_insurance - to_protocol


# --- chain state records (what the Clearinghouse views return) -----------------------------


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


@dataclass(frozen=True)
class MarginScan:
    """state.MarginScan (`views.account_margin`), USD WAD."""

    equity: int = 0
    initial: int = 0
    maintenance: int = 0
    isolated: int = 0
    notional: int = 0


# --- margin.vy: risk book -----------------------------------------------------------------


@dataclass(frozen=True)
class BookHeader:
    """margin.BookHeader."""

    n_markets: int
    n_scenarios: int
    floor_bps: int
    mmr_bps: int


def book_header(w: int) -> BookHeader:
    """margin._header."""
    return BookHeader(
        n_markets=w & MASK_8,
        n_scenarios=(w >> 8) & MASK_8,
        floor_bps=(w >> 16) & MASK_16,
        mmr_bps=(w >> 32) & MASK_16,
    )


def imr_min_bps(w0: int) -> int:
    """margin._imr_min_bps."""
    return w0 & MASK_16


def imr_slope_bps(w0: int) -> int:
    """margin._imr_slope_bps."""
    return (w0 >> 16) & MASK_16


def margin_scale(w0: int) -> int:
    """margin._margin_scale."""
    return (w0 >> 32) & MASK_128


def shock(w1: int, k: int) -> int:
    """margin._shock: scenario k's shock of a market in bp (the int16 field at bit 16k,
    two's complement)."""
    return _signed(w1 >> (16 * k), 16)


@dataclass(frozen=True)
class Book:
    """The risk book as the contracts read it: the code at `risk_book()` without its
    leading STOP byte (layout in contracts/modules/margin.vy)."""

    data: bytes

    @classmethod
    def from_code(cls, code: bytes) -> Book:
        """From the book contract's code (STOP byte first)."""
        return cls(bytes(code[1:]))

    @classmethod
    def from_riskbook(cls, book: riskbook.RiskBook) -> Book:
        """From a decoded (or config-built) RiskBook, as `set_risk_book` would store it."""
        return cls(riskbook.encode(book))

    def word(self, offset: int) -> int:
        """margin._book_word: the 32-byte word `offset` bytes into the data (reverts past
        the end, like Vyper's bounds-checked slice of `book.code`)."""
        if offset < 0 or offset + 32 > len(self.data):
            raise Revert("slice out of bounds")
        return int.from_bytes(self.data[offset : offset + 32], "big")

    @property
    def header(self) -> BookHeader:
        return book_header(self.word(0))

    def market_words(self, m: int) -> tuple[int, int]:
        """(w0, w1) of market m: `slice(book.code, 1 + 32 + 64m, 64)` split in two words."""
        off = HEADER_BYTES + MARKET_BYTES * m
        if off + 64 > len(self.data):
            raise Revert("slice out of bounds")
        return self.word(off), self.word(off + 32)

    def decode(self) -> riskbook.RiskBook:
        """The decoded book (perpdex.sdk.riskbook)."""
        return riskbook.decode(self.data)


def isolated_requirement(notional: int, abs_value: int, abs_size: int, w0: int) -> tuple[int, int]:
    """margin._isolated: (isolated initial margin of one position, its size-scaled part),
    both rounded up; the imr_min part rounds once from `abs_value` = |s| * P (WAD^2)."""
    base = (abs_value * imr_min_bps(w0) + WAD * BPS - 1) // (WAD * BPS)
    scale = BPS * margin_scale(w0)
    if scale == 0:
        raise Revert("integer underflow")  # `scale - 1` on uint256
    slope = (notional * imr_slope_bps(w0) * abs_size + scale - 1) // scale
    return base + slope, slope


def combine(
    isolated: int,
    worst_loss_raw: int,
    gross_raw: int,
    addon: int,
    floor_bps: int,
    portfolio: bool,
) -> int:
    """margin._combine: the initial requirement for the account's mode."""
    if not portfolio:
        return isolated
    worst = 0
    if worst_loss_raw > 0:
        worst = mul_div(_to_u256(worst_loss_raw), 1, WAD * BPS, True)
    floor_req = mul_div(gross_raw, floor_bps, WAD * BPS, True)
    return min(isolated, max(worst, floor_req) + addon)


# --- positions.vy -------------------------------------------------------------------------


def apply_fill(size: int, cost: int, delta: int, price: int) -> tuple[int, int, int]:
    """positions._apply_fill: (new size, new cost basis, realised PnL) of filling `delta`
    at `price`."""
    iprice = _to_i256(price)
    new_size = size + delta
    if size == 0 or (size > 0) == (delta > 0):
        return new_size, cost + div_ceil(delta * iprice, IWAD), 0
    if abs(delta) <= abs(size):
        closed_cost = div_ceil(cost * abs(delta), abs(size))
        return new_size, cost - closed_cost, div_floor(-delta * iprice, IWAD) - closed_cost
    return (
        new_size,
        div_ceil(new_size * iprice, IWAD),
        div_floor(size * iprice, IWAD) - cost,
    )


def funding_owed(size: int, index_delta: int) -> int:
    """positions._funding_owed: funding a position owes (+) or earns (-), USD WAD."""
    if index_delta == 0:
        return 0
    return div_ceil(size * index_delta, PICO_PER_USD)


def value_pnl(size: int, cost: int, price: int) -> int:
    """positions._value_pnl: unrealised PnL at `price`, rounded down."""
    return div_floor(size * _to_i256(price), IWAD) - cost


# --- pricing.vy ---------------------------------------------------------------------------


def fill_price(price: int, skew: int, delta: int, skew_scale: int) -> int:
    """pricing._fill_price: oracle price plus the mean skew premium over the fill,
    rounded against the trader (up for buys, down for sells)."""
    adj = smul_div(2 * skew + delta, price, 2 * skew_scale, delta > 0)
    fill = _to_i256(price) + adj
    if fill <= 0:
        raise Revert("pricing: price impact too large")
    return fill


def maker_size(skew: int, delta: int) -> int:
    """The maker part of pricing._fee: the part of |delta| that reduces |skew|."""
    if (skew > 0 and delta < 0) or (skew < 0 and delta > 0):
        return min(abs(delta), abs(skew))
    return 0


def fee(fill: int, skew: int, delta: int, maker_fee: int, taker_fee: int) -> int:
    """pricing._fee: maker fee on the skew-reducing part, taker fee on the rest, rounded
    up."""
    size = abs(delta)
    maker = maker_size(skew, delta)
    weighted = maker * maker_fee + (size - maker) * taker_fee
    return mul_div(weighted, fill, WAD * WAD, True)


# --- funding.vy ---------------------------------------------------------------------------


def accrue(
    rate: int,
    dt: int,
    skew: int,
    skew_scale: int,
    max_velocity: int,
    max_rate: int,
    price: int,
) -> tuple[int, int]:
    """funding._accrue: (new rate, index increment in pico-USD per unit) over `dt`
    seconds, the rate drifting at the skew's velocity and clamped to +-max_rate."""
    bound = _to_i256(max_rate)
    r0 = max(min(rate, bound), -bound)
    if dt == 0:
        return r0, 0
    prop = vdiv(skew * IWAD, _to_i256(skew_scale))
    prop = max(min(prop, IWAD), -IWAD)
    velocity = vdiv(prop * _to_i256(max_velocity), IWAD)
    t = _to_i256(dt)
    day = SECONDS_PER_DAY
    r1 = r0 + vdiv(velocity * t, day)
    if r1 > bound:
        t_hit = vdiv((bound - r0) * day, velocity)
        area = vdiv((r0 + bound) * t_hit, 2) + bound * (t - t_hit)
        r1 = bound
    elif r1 < -bound:
        t_hit = vdiv((-bound - r0) * day, velocity)
        area = vdiv((r0 - bound) * t_hit, 2) - bound * (t - t_hit)
        r1 = -bound
    else:
        area = vdiv((r0 + r1) * t, 2)
    return r1, vdiv(area * _to_i256(price), day * 10**24)


# --- engine.vy ----------------------------------------------------------------------------


def touch(mark: Mark, params: MarketParams, skew: int, price: int, now: int) -> Mark:
    """engine._touch_with, as a state transition: the mark a touch at `now` with oracle
    price `price` writes (funding accrued at the new price over the time since the last
    touch, rate stored truncated to the 1e-15 grid)."""
    index, rate = mark.index, mark.rate
    if mark.touched_at != 0 and now > mark.touched_at:
        rate, d = accrue(
            rate,
            now - mark.touched_at,
            skew,
            params.skew_scale,
            params.max_funding_velocity,
            params.max_funding_rate,
            price,
        )
        index += d
    return unpack_mark(pack_mark(price, now, index, rate))


def collateral_value(snap: Snapshot) -> int:
    """engine._collateral_value (cached marks) == ClearinghouseLens._collateral_value:
    the settlement balance plus every other held token at its market's mark less its
    haircut, rounded down."""
    value = snap.balance(0)
    cbits = collateral_bitmap(snap.header)
    if cbits == 0:
        return value
    for i in range(1, MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        col = snap.collateral(i)
        price = snap.mark(col.market).price
        worth = mul_div(_to_u256(snap.balance(i)), price * (WAD - col.haircut), WAD * WAD, False)
        value += _to_i256(worth)
    return value


def scan(
    snap: Snapshot,
    *,
    with_equity: bool = True,
    override_market: int = NO_OVERRIDE,
    override_size: int = 0,
) -> MarginScan:
    """engine._scan at the cached marks (`views.account_margin` is `scan(snap)`):
    equity, initial and maintenance requirement, isolated requirement and gross notional.
    Like the engine, it takes the scenario count, floor and maintenance ratio from the
    system word (the lens takes them from the book's header; set_risk_book writes both).
    `override_market`/`override_size` substitute one position's size (requirement only),
    as the reduce-only check does."""
    hdr = snap.header
    equity = 0
    isolated = 0
    notional_sum = 0
    bitmap = positions_bitmap(hdr)
    if override_market < MAX_MARKETS:
        bitmap |= 1 << override_market
    if with_equity:
        equity = collateral_value(snap)
    if bitmap == 0:
        return MarginScan(equity=equity)
    # the engine reads the book's address and header fields from the system word
    sysw = snap.system
    book = snap.require_book()
    n_s = sysw.n_scenarios
    losses = [0] * MAX_SCENARIOS
    gross_raw = 0
    addon = 0
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 0:
            continue
        pos = snap.position(m)
        size = override_size if m == override_market else pos.size
        if size == 0:
            continue
        mark = snap.mark(m)
        price = mark.price
        value = size * price
        abs_value = abs(value)
        abs_size = abs(size)
        notional = (abs_value + WAD - 1) // WAD
        w0, w1 = book.market_words(m)
        iso, slope = isolated_requirement(notional, abs_value, abs_size, w0)
        isolated += iso
        notional_sum += notional
        addon += slope
        gross_raw += abs_value
        for k in range(min(n_s, MAX_SCENARIOS)):
            losses[k] -= value * shock(w1, k)
        if with_equity:
            equity += div_floor(value, IWAD) - pos.cost
            equity -= funding_owed(size, funding_delta(pos.snapshot, mark.index))
    worst = 0
    for k in range(min(n_s, MAX_SCENARIOS)):
        worst = max(worst, losses[k])
    initial = combine(
        isolated, worst, gross_raw, addon, sysw.floor_bps, hdr & ACCOUNT_PORTFOLIO != 0
    )
    return MarginScan(
        equity=equity,
        initial=initial,
        maintenance=mul_div(initial, sysw.mmr_bps, BPS, True),
        isolated=isolated,
        notional=notional_sum,
    )


def unrealized_profit(snap: Snapshot) -> int:
    """accounts._check_value_out's extra pass: the sum over positions of max(pnl, 0),
    pnl = value_pnl at the cached mark less the funding owed against its index (the terms
    `scan` adds to equity), USD WAD."""
    total = 0
    bitmap = positions_bitmap(snap.header)
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 0:
            continue
        pos = snap.position(m)
        mark = snap.mark(m)
        pnl = value_pnl(pos.size, pos.cost, mark.price) - funding_owed(
            pos.size, funding_delta(pos.snapshot, mark.index)
        )
        total += max(pnl, 0)
    return total


def strict_refresh(snap: Snapshot, now: int | None = None) -> Snapshot:
    """engine_check_initial(strict=True): every market the account holds (positions,
    then secondary collateral prices) touched at `now` (default: the snapshot's block
    time) at the oracle median; raises Revert where the oracle refuses a price."""
    now = snap.timestamp if now is None else now
    bitmap = positions_bitmap(snap.header)
    cbits = collateral_bitmap(snap.header)
    if bitmap == 0 and cbits == 0:
        return snap
    touched = [m for m in range(MAX_MARKETS) if (bitmap >> m) & 1]
    for i in range(1, MAX_COLLATERALS):
        if (cbits >> i) & 1 and snap.collateral(i).market not in touched:
            touched.append(snap.collateral(i).market)
    markets = list(snap.markets)
    for m in touched:
        ms = snap.market(m)
        mark = touch(ms.mark, ms.params, ms.skew, snap.oracle_price(m), now)
        markets[m] = replace(ms, mark=mark)
    return replace(snap, markets=tuple(markets))


def value_out_free(snap: Snapshot, now: int | None = None) -> int:
    """Equity a withdrawal or transfer out may take (USD WAD, may be negative): equity
    less positive unrealised PnL less the initial requirement, at the marks the strict
    gate writes at `now`."""
    fresh = strict_refresh(snap, now)
    s = scan(fresh)
    free = s.equity - unrealized_profit(fresh) - s.initial
    if snap.loss_cap:  # the loss cap: equity after the debit stays >= the floor
        free = min(free, s.equity - snap.loss_cap)
    return free


def withdrawable(snap: Snapshot, index: int, scale: int, now: int | None = None) -> int:
    """Largest amount of collateral `index` (token units; `scale` = WAD per unit, the
    token's `collateral_scale`) that `withdraw` or `transfer_collateral` accepts now:
    the balance, limited by the value-out gate (equity - sum max(pnl, 0) >= initial, and
    equity >= the loss cap if one is set)."""
    bal = snap.balance(index)
    if bal <= 0:
        return 0
    units_held = bal // scale
    fresh = strict_refresh(snap, now)
    s = scan(fresh)
    free = s.equity - unrealized_profit(fresh) - s.initial
    if snap.loss_cap:  # the loss cap: equity after the debit stays >= the floor
        free = min(free, s.equity - snap.loss_cap)
    if free < 0:
        return 0
    if index == 0:
        return min(units_held, free // scale)

    def ok(units: int) -> bool:
        balances = dict(fresh.balances)
        balances[index] = bal - units * scale
        after = replace(fresh, balances=balances)
        t = scan(after)
        return t.equity - unrealized_profit(after) >= t.initial and t.equity >= snap.loss_cap

    lo, hi = 0, units_held
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


# --- ClearinghouseLens.vy -----------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """ClearinghouseLens.Ctx: the book header fields and the account's mode."""

    n_s: int
    floor_bps: int
    mmr_bps: int
    portfolio: bool


@dataclass(frozen=True)
class Leg:
    """ClearinghouseLens.Leg: one position as the lens prices it."""

    market: int
    size: int
    cost: int
    funding_owed: int
    price: int
    w0: int
    w1: int


@dataclass(frozen=True)
class Totals:
    """ClearinghouseLens.Totals: running sums of a book of legs (losses raw, WAD^2 * bp)."""

    losses: tuple[int, ...] = (0,) * MAX_SCENARIOS
    gross_raw: int = 0
    isolated: int = 0
    addon: int = 0
    notional: int = 0


@dataclass(frozen=True)
class PositionView:
    """ClearinghouseLens.PositionView."""

    market: int
    size: int
    cost: int
    entry_price: int
    mark_price: int
    notional: int
    unrealized_pnl: int
    funding_owed: int
    isolated_initial: int
    liquidation_price: int


@dataclass(frozen=True)
class AccountView:
    """ClearinghouseLens.AccountView (`lens.account_summary`)."""

    portfolio: bool
    collateral_value: int
    unrealized_pnl: int
    funding_owed: int
    equity: int
    initial: int
    maintenance: int
    isolated_initial: int
    floor: int
    addon: int
    health: int
    binding_scenario: int
    scenario_losses: tuple[int, ...] = ()
    positions: tuple[PositionView, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class QuoteView:
    """ClearinghouseLens.QuoteView (`lens.quote`)."""

    oracle_price: int
    fill_price: int
    price_impact: int
    fee: int
    realized_pnl: int
    funding_paid: int
    equity_after: int
    initial_after: int
    maintenance_after: int
    health_after: int
    liquidation_price_after: int


def lens_ctx(snap: Snapshot) -> Ctx:
    """ClearinghouseLens._ctx."""
    portfolio = snap.header & ACCOUNT_PORTFOLIO != 0
    if snap.book is None:
        return Ctx(n_s=0, floor_bps=0, mmr_bps=0, portfolio=portfolio)
    bh = snap.book.header
    return Ctx(n_s=bh.n_scenarios, floor_bps=bh.floor_bps, mmr_bps=bh.mmr_bps, portfolio=portfolio)


def lens_leg(book: Book | None, market: int, size: int, cost: int, owed: int, price: int) -> Leg:
    """ClearinghouseLens._leg: a leg with its market's risk-book words."""
    if book is None:
        raise Revert("slice out of bounds")  # slicing the empty address's code
    w0, w1 = book.market_words(market)
    return Leg(market=market, size=size, cost=cost, funding_owed=owed, price=price, w0=w0, w1=w1)


def fresh_mark(snap: Snapshot, market: int, now: int) -> tuple[int, int]:
    """ClearinghouseLens._fresh_mark: the (price, funding index) a touch of `market` at
    `now` would write (oracle median, funding accrued at the market's skew)."""
    price = snap.oracle_price(market)
    long_oi, short_oi = snap.open_interest(market)
    return price, touched_index(snap, market, long_oi - short_oi, price, now)


def load_legs(snap: Snapshot, refresh: bool = False, now: int | None = None) -> list[Leg]:
    """ClearinghouseLens._load_legs: every position at its cached mark, with the funding
    it owes against the cached index; with `refresh`, a mark older than max_mark_age at
    `now` is replaced by what a stale-mark refresh would write (as in a quote)."""
    now = snap.timestamp if now is None else now
    age = snap.system.max_mark_age
    legs: list[Leg] = []
    bitmap = positions_bitmap(snap.header)
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 0:
            continue
        pos = snap.position(m)
        mark = snap.mark(m)
        price, index = mark.price, mark.index
        if refresh and mark.touched_at + age < now:
            price, index = fresh_mark(snap, m, now)
        owed = funding_owed(pos.size, funding_delta(pos.snapshot, index))
        legs.append(lens_leg(snap.book, m, pos.size, pos.cost, owed, price))
    return legs


def quote_collateral_value(
    snap: Snapshot, traded: int, traded_price: int, refresh: bool, now: int
) -> int:
    """ClearinghouseLens._collateral_value as a quote calls it: a token priced by the traded
    market at the fresh price, a stale market (with `refresh`) at the oracle's median."""
    value = snap.balance(0)
    cbits = collateral_bitmap(snap.header)
    age = snap.system.max_mark_age
    for i in range(1, MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        col = snap.collateral(i)
        mark = snap.mark(col.market)
        price = mark.price
        if col.market == traded:
            price = traded_price
        elif refresh and mark.touched_at + age < now:
            price = snap.oracle_price(col.market)
        worth = mul_div(_to_u256(snap.balance(i)), price * (WAD - col.haircut), WAD * WAD, False)
        value += _to_i256(worth)
    return value


def add_leg(t: Totals, leg: Leg, price: int, n_s: int) -> Totals:
    """ClearinghouseLens._add: the totals with `leg` valued at `price` added."""
    value = leg.size * price
    abs_value = abs(value)
    abs_size = abs(leg.size)
    notional = (abs_value + WAD - 1) // WAD
    iso, slope = isolated_requirement(notional, abs_value, abs_size, leg.w0)
    losses = list(t.losses)
    for k in range(min(n_s, MAX_SCENARIOS)):
        losses[k] -= value * shock(leg.w1, k)
    return Totals(
        losses=tuple(losses),
        gross_raw=t.gross_raw + abs_value,
        isolated=t.isolated + iso,
        addon=t.addon + slope,
        notional=t.notional + notional,
    )


def initial_requirement(t: Totals, ctx: Ctx) -> int:
    """ClearinghouseLens._initial: worst scenario loss combined for the account's mode."""
    worst = 0
    for k in range(min(ctx.n_s, MAX_SCENARIOS)):
        worst = max(worst, t.losses[k])
    return combine(t.isolated, worst, t.gross_raw, t.addon, ctx.floor_bps, ctx.portfolio)


def health(equity: int, maintenance: int) -> int:
    """ClearinghouseLens._health: equity / maintenance in WAD, rounded down; 0 at or
    below zero equity; NO_RISK_HEALTH (2**256 - 1) without a requirement."""
    if maintenance == 0:
        return NO_RISK_HEALTH
    if equity <= 0:
        return 0
    return mul_div(equity, WAD, maintenance, False)


def binding_scenario(losses: Sequence[int], n_s: int) -> int:
    """The account summary's binding scenario: the first scenario with the largest
    strictly positive raw loss, NO_SCENARIO when none loses."""
    best = NO_SCENARIO
    worst = 0
    for k in range(min(n_s, MAX_SCENARIOS)):
        if losses[k] > worst:
            worst = losses[k]
            best = k
    return best


def gap(base: Totals, leg: Leg, base_equity: int, price: int, ctx: Ctx) -> int:
    """ClearinghouseLens._gap: equity - maintenance with `leg` valued at `price`."""
    t = add_leg(base, leg, price, ctx.n_s)
    mm = mul_div(initial_requirement(t, ctx), ctx.mmr_bps, BPS, True)
    equity = base_equity + value_pnl(leg.size, leg.cost, price) - leg.funding_owed
    return equity - mm


def liquidation_price(legs: Sequence[Leg], j: int, equity: int, ctx: Ctx) -> int:
    """ClearinghouseLens._liquidation_price: the price of leg j's market (every other
    price held) at which equity meets maintenance, by the lens's integer bisection: the
    mark itself when already at or below maintenance; for a long the largest price in
    [0, mark) with gap <= 0 (0 if even price 0 leaves gap > 0); for a short the smallest
    price in (mark, 100 * mark] with gap <= 0 (0 if none)."""
    leg = legs[j]
    base = Totals()
    for i, other in enumerate(legs):
        if i != j:
            base = add_leg(base, other, other.price, ctx.n_s)
    base_equity = equity - value_pnl(leg.size, leg.cost, leg.price) + leg.funding_owed
    if gap(base, leg, base_equity, leg.price, ctx) <= 0:
        return leg.price
    lo = 0
    hi = leg.price
    if leg.size > 0:
        if gap(base, leg, base_equity, 0, ctx) > 0:
            return 0
    else:
        lo = leg.price
        hi = leg.price * LIQ_SEARCH_CEILING
        if gap(base, leg, base_equity, hi, ctx) > 0:
            return 0
    for _ in range(MAX_BISECTION):
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        below = gap(base, leg, base_equity, mid, ctx) <= 0
        if below == (leg.size > 0):
            lo = mid
        else:
            hi = mid
    return lo if leg.size > 0 else hi


def account_summary(snap: Snapshot) -> AccountView:
    """ClearinghouseLens.account_summary: equity, PnL, funding, requirements, health, the
    loss under every scenario (rounded up to USD WAD) and each position with its
    liquidation price, at the cached marks."""
    ctx = lens_ctx(snap)
    legs = load_legs(snap)
    coll = collateral_value(snap)
    t = Totals()
    upnl = 0
    owed = 0
    for leg in legs:
        t = add_leg(t, leg, leg.price, ctx.n_s)
        upnl += value_pnl(leg.size, leg.cost, leg.price)
        owed += leg.funding_owed
    equity = coll + upnl - owed
    initial = initial_requirement(t, ctx)
    maintenance = mul_div(initial, ctx.mmr_bps, BPS, True)
    n_s = min(ctx.n_s, MAX_SCENARIOS)
    losses = tuple(div_ceil(t.losses[k], WAD * BPS) for k in range(n_s))
    views: list[PositionView] = []
    for j, leg in enumerate(legs[:MAX_POSITIONS]):
        abs_size = abs(leg.size)
        notional = (abs_size * leg.price + WAD - 1) // WAD
        iso, _slope = isolated_requirement(notional, abs_size * leg.price, abs_size, leg.w0)
        entry = abs(vdiv(leg.cost * IWAD, leg.size)) if leg.size != 0 else 0
        views.append(
            PositionView(
                market=leg.market,
                size=leg.size,
                cost=leg.cost,
                entry_price=entry,
                mark_price=leg.price,
                notional=notional,
                unrealized_pnl=value_pnl(leg.size, leg.cost, leg.price),
                funding_owed=leg.funding_owed,
                isolated_initial=iso,
                liquidation_price=liquidation_price(legs, j, equity, ctx),
            )
        )
    return AccountView(
        portfolio=ctx.portfolio,
        collateral_value=coll,
        unrealized_pnl=upnl,
        funding_owed=owed,
        equity=equity,
        initial=initial,
        maintenance=maintenance,
        isolated_initial=t.isolated,
        floor=mul_div(t.gross_raw, ctx.floor_bps, WAD * BPS, True),
        addon=t.addon,
        health=health(equity, maintenance),
        binding_scenario=binding_scenario(t.losses, ctx.n_s),
        scenario_losses=losses,
        positions=tuple(views),
    )


def touched_index(snap: Snapshot, market: int, skew: int, price: int, now: int) -> int:
    """ClearinghouseLens._touched_index: the funding index a touch of `market` at `now`
    and oracle price `price` would write."""
    mark = snap.mark(market)
    if mark.touched_at == 0 or now <= mark.touched_at:
        return mark.index
    p = snap.params(market)
    _rate, d = accrue(
        mark.rate,
        now - mark.touched_at,
        skew,
        p.skew_scale,
        p.max_funding_velocity,
        p.max_funding_rate,
        price,
    )
    return mark.index + d


def quote(snap: Snapshot, market: int, size_delta: int, now: int | None = None) -> QuoteView:
    """ClearinghouseLens.quote: what a market order of `size_delta` on `market` would do
    at `now` (default: the snapshot's block timestamp, i.e. the lens called at the same
    block): fill price, price impact, fee, realised PnL and funding settled, and the
    account's equity, requirements, health and the position's liquidation price after.
    Pass the pending block's timestamp to predict a trade in the next block."""
    if size_delta == 0:
        raise Revert("lens: zero size")
    if market >= snap.market_count:
        raise Revert("lens: unknown market")
    now = snap.timestamp if now is None else now
    ctx = lens_ctx(snap)
    price = snap.oracle_price(market)
    if (snap.market(market).oracle_flags or 0) & FLAG_DEGRADED:
        raise Revert("lens: no price quorum")
    p = snap.params(market)
    long_oi, short_oi = snap.open_interest(market)
    skew = long_oi - short_oi
    index = touched_index(snap, market, skew, price, now)
    fill = fill_price(price, skew, size_delta, p.skew_scale)
    impact = vdiv((fill - price) * IWAD, _to_i256(price))
    fee_ = fee(fill, skew, size_delta, p.maker_fee, p.taker_fee)
    pos = snap.position(market)
    funding_paid = 0
    if pos.size != 0:
        funding_paid = funding_owed(pos.size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(pos.size, pos.cost, size_delta, fill)
    size = pos.size
    adds = size == 0 or (size > 0) == (size_delta > 0) or abs(size_delta) > abs(size)
    refresh = adds or ctx.portfolio
    legs = load_legs(snap, refresh, now)
    found = False
    after: list[Leg] = []
    j = 0
    for leg in legs:
        if leg.market == market:
            found = True
            if new_size != 0:
                j = len(after)
                after.append(lens_leg(snap.book, market, new_size, new_cost, 0, price))
        else:
            after.append(leg)
    if not found and new_size != 0:
        j = len(after)
        after.append(lens_leg(snap.book, market, new_size, new_cost, 0, price))
    if len(after) > MAX_POSITIONS:
        raise Revert("array index out of bounds")  # DynArray[Leg, MAX_POSITIONS] append
    equity = (
        quote_collateral_value(snap, market, price, refresh, now) + realized - funding_paid - fee_
    )
    t = Totals()
    for leg in after:
        t = add_leg(t, leg, leg.price, ctx.n_s)
        equity += value_pnl(leg.size, leg.cost, leg.price) - leg.funding_owed
    initial = initial_requirement(t, ctx)
    maintenance = mul_div(initial, ctx.mmr_bps, BPS, True)
    return QuoteView(
        oracle_price=price,
        fill_price=fill,
        price_impact=impact,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        equity_after=equity,
        initial_after=initial,
        maintenance_after=maintenance,
        health_after=health(equity, maintenance),
        liquidation_price_after=liquidation_price(after, j, equity, ctx) if new_size != 0 else 0,
    )


# --- the trade itself (engine._pool_trade), for exact post-trade figures --------------------


@dataclass(frozen=True)
class TradeResult:
    """What `trade(account, market, size_delta, acceptable)` does (engine._pool_trade):
    the fill, the settled amounts, the markets the post-trade margin check re-read (stale
    marks), the account's state after the trade and its margin scan there (what
    `account_margin` returns right after the trade)."""

    fill_price: int
    fee: int
    realized_pnl: int
    funding_paid: int
    adds: bool
    refreshed: tuple[int, ...]
    margin_after: MarginScan
    after: Snapshot


def _with_market(snap: Snapshot, m: int, mark: Mark, oi: tuple[int, int] | None = None) -> Snapshot:
    """The snapshot with market m's mark (and, after a fill, its long and short open
    interest) replaced."""
    markets = list(snap.markets)
    long_oi, short_oi = (markets[m].long_oi, markets[m].short_oi) if oi is None else oi
    markets[m] = replace(markets[m], mark=mark, long_oi=long_oi, short_oi=short_oi)
    return replace(snap, markets=tuple(markets))


def _require_quorum(flags: int) -> None:
    """engine._require_quorum: nothing is filled, valued or liquidated at a price without
    quorum (the router's FLAG_DEGRADED: fewer than two valid sources agree)."""
    if flags & FLAG_DEGRADED:
        raise Revert("clearinghouse: no price quorum")


def _touch_market(snap: Snapshot, m: int, now: int) -> Snapshot:
    """engine._touch_quorum: the snapshot with market m's mark re-read and funding
    accrued; a market without price quorum reverts the valuation."""
    ms = snap.market(m)
    _require_quorum(ms.oracle_flags or 0)
    mark = touch(ms.mark, ms.params, ms.skew, snap.oracle_price(m), now)
    return _with_market(snap, m, mark)


def check_initial(snap: Snapshot, now: int, reason: str) -> tuple[Snapshot, tuple[int, ...]]:
    """engine._check_initial: equity >= initial requirement at fresh marks (stale ones
    re-read first), or, with neither positions nor other collateral, a settlement balance
    that is not negative. Raises `Revert(reason)`; returns the snapshot with the re-read
    marks and the markets re-read."""
    hdr = snap.header
    if position_count(hdr) == 0 and collateral_bitmap(hdr) == 0:
        if snap.balance(0) < 0:
            raise Revert(reason)
        return snap, ()
    snap, refreshed = refresh_stale(snap, now)
    s = scan(snap)
    if s.equity < s.initial:
        raise Revert(reason)
    return snap, refreshed


def refresh_stale(snap: Snapshot, now: int | None = None) -> tuple[Snapshot, tuple[int, ...]]:
    """engine._refresh_stale (+ _refresh_collateral_marks): re-reads every market of the
    account (positions, then secondary collateral prices) whose cached mark is older than
    `max_mark_age` at `now`, as every margin check does first. Returns the refreshed
    snapshot and the markets touched. Assumes the oracle prices at `now` are the ones the
    snapshot read."""
    now = snap.timestamp if now is None else now
    age = snap.system.max_mark_age
    touched: list[int] = []
    bitmap = positions_bitmap(snap.header)
    for m in range(MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1 and snap.mark(m).touched_at + age < now:
            snap = _touch_market(snap, m, now)
            touched.append(m)
    cbits = collateral_bitmap(snap.header)
    if cbits != 0:
        for i in range(1, MAX_COLLATERALS):
            if cbits >> i == 0:
                break
            if (cbits >> i) & 1 == 1:
                m = snap.collateral(i).market
                if snap.mark(m).touched_at + age < now:
                    snap = _touch_market(snap, m, now)
                    touched.append(m)
    return snap, tuple(touched)


def require_min_position(size_after: int, price: int) -> None:
    """engine._pool_trade's dust check: a market order leaves the position at zero or
    worth at least MIN_POSITION_NOTIONAL at the oracle price `price` (whole dollars,
    truncated toward zero, as the contract compares them)."""
    usd = vdiv(size_after * price, IWAD * IWAD)
    if size_after != 0 and abs(usd) < MIN_POSITION_NOTIONAL // WAD:
        raise Revert("clearinghouse: min position size")


def _require_can_add_risk(snap: Snapshot, m: int, p: MarketParams, flags: int) -> None:
    """engine._require_can_add_risk."""
    if snap.paused:
        raise Revert("clearinghouse: paused")
    if p.paused:
        raise Revert("clearinghouse: market paused")
    if flags & FLAG_SEQUENCER_DOWN:
        raise Revert("clearinghouse: sequencer down")
    if flags & FLAG_SEQUENCER_GRACE:
        raise Revert("clearinghouse: sequencer grace period")
    _require_quorum(flags)
    if snap.book is None:
        raise Revert("clearinghouse: no risk book")
    if m >= snap.book.header.n_markets:
        raise Revert("clearinghouse: market not in risk book")


def simulate_trade(
    snap: Snapshot,
    market: int,
    size_delta: int,
    now: int | None = None,
    acceptable_price: int | None = None,
) -> TradeResult:
    """trading.trade -> engine._pool_trade, in full: touch the market (oracle price,
    funding accrued to `now`), the fill price and fee against the pool, settlement
    (_settle_side: funding, realised PnL, open interest, the position), the fee
    (_collect_fee), the caps (_check_caps, every fill), and the post-trade
    margin check (_check_after_trade: stale marks re-read, then equity >= initial, or a
    reduce-only trade that does not raise the requirement; a trade that adds needs
    equity >= the loss cap too). Raises `Revert` with the
    contract's reason where the trade would revert.

    Unlike the lens's `quote` (which `quote` mirrors), the figures after the trade are
    exact even when other marks are stale or a secondary collateral is priced by the
    traded market. `now` defaults to the snapshot's timestamp; pass the pending block's.
    The exposure cap (on the pool's raw cash, before pending fees are swept) is checked
    only when the snapshot carries `pool_cash`. Does not check who sends it. Assumes the
    oracle prices at `now` are the ones the snapshot read."""
    now = snap.timestamp if now is None else now
    if snap.header & ACCOUNT_EXISTS == 0:
        raise Revert("clearinghouse: unknown account")
    if snap.header & ACCOUNT_IN_LIQUIDATION != 0:
        raise Revert("clearinghouse: account in liquidation")
    if size_delta == 0:
        raise Revert("clearinghouse: zero size")
    if market >= snap.market_count:
        raise Revert("clearinghouse: unknown market")
    ms = snap.market(market)
    p = ms.params
    price = snap.oracle_price(market)
    flags = ms.oracle_flags or 0
    # no fill of any kind (reduce-only included) without a price quorum
    _require_quorum(flags)
    mark = touch(ms.mark, p, ms.skew, price, now)
    index = mark.index
    pos = snap.position(market)
    size, cost = pos.size, pos.cost
    adds = size == 0 or (size > 0) == (size_delta > 0) or abs(size_delta) > abs(size)
    require_min_position(size + size_delta, price)
    if adds:
        _require_can_add_risk(snap, market, p, flags)
    skew = ms.skew
    fill = fill_price(price, skew, size_delta, p.skew_scale)
    if acceptable_price is not None:
        if size_delta > 0 and fill > acceptable_price:
            raise Revert("clearinghouse: price worse than acceptable")
        if size_delta < 0 and fill < acceptable_price:
            raise Revert("clearinghouse: price worse than acceptable")
    fee_ = fee(fill, skew, size_delta, p.maker_fee, p.taker_fee)
    # _settle_side
    funding_paid = 0
    if size != 0:
        funding_paid = funding_owed(size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(size, cost, size_delta, fill)
    cash = realized - funding_paid
    long_oi, short_oi = ms.long_oi, ms.short_oi
    if size > 0:
        long_oi -= size
    else:
        short_oi += size
    if new_size > 0:
        long_oi += new_size
    else:
        short_oi -= new_size
    pack_u128(_to_u256(long_oi), _to_u256(short_oi))
    positions = dict(snap.positions)
    if new_size == 0:
        positions.pop(market, None)
    else:
        word = pack_pos(new_size, new_cost, index)
        positions[market] = Position(new_size, new_cost, pos_snapshot(word))
    hdr = with_position(snap.header, market, new_size != 0)
    balances = dict(snap.balances)
    balances[0] = snap.balance(0) + cash
    # the pool word: its raw cash pays the trader's cash; the fee accrues as pending
    # (_collect_fee) until a sweep splits it. `views.pool_cash` adds the vault's share
    # of the pending fees to the raw cash.
    raw_cash: int | None = None
    if snap.pool_cash is not None:
        raw_cash = snap.pool_cash - fee_split(snap.pending_fees, snap.system)[2] - cash
    pending = snap.pending_fees
    if fee_ != 0:
        balances[0] -= fee_
        pending += fee_
    after = replace(
        snap,
        header=hdr,
        balances=balances,
        positions=positions,
        pool_cash=None if raw_cash is None else raw_cash + fee_split(pending, snap.system)[2],
        pending_fees=pending,
        timestamp=now,
        block_number=-1,
    )
    after = _with_market(after, market, mark, (long_oi, short_oi))
    # _check_caps, on every fill (reduces included)
    if long_oi > ms.long_oi and long_oi > p.max_oi:
        raise Revert("clearinghouse: open interest cap reached")
    if short_oi > ms.short_oi and short_oi > p.max_oi:
        raise Revert("clearinghouse: open interest cap reached")
    new_skew = skew + size_delta
    if abs(new_skew) > abs(skew) and raw_cash is not None:
        exposure = abs(new_skew) * price // WAD
        limit = raw_cash * p.max_vault_exposure // WAD if raw_cash > 0 else 0
        if exposure > limit:
            raise Revert("clearinghouse: vault exposure cap reached")
    refreshed: tuple[int, ...] = ()
    if adds or hdr & ACCOUNT_PORTFOLIO != 0:  # _check_after_trade
        after, refreshed = refresh_stale(after, now)
        s = scan(after)
        if s.equity < s.initial:
            if adds:
                raise Revert("clearinghouse: below initial margin")
            before = scan(after, with_equity=False, override_market=market, override_size=size)
            if s.initial > before.initial:
                raise Revert("clearinghouse: below initial margin")
        elif adds and s.equity < snap.loss_cap:  # (perpdex.sdk.losscap.below_loss_cap)
            raise Revert("clearinghouse: below loss cap, reduce only")
    if position_count(hdr) == 0 and balances[0] < 0:  # no debt left beyond liquidation's reach
        after, more = check_initial(after, now, "clearinghouse: close leaves negative equity")
        refreshed += tuple(m for m in more if m not in refreshed)
    return TradeResult(
        fill_price=fill,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        adds=adds,
        refreshed=refreshed,
        margin_after=scan(after),
        after=after,
    )


# --- liquidation auction (contracts/LiquidationAuction.vy, modules/liquidation_hooks.vy) --
# The liquidation budget: discount + penalty cost at most LIQ_COST_SHARE x maintenance per
# unit of book moved, the keeper reward at most LIQ_REWARD_SHARE x the maintenance the
# tranche frees; the auction's glossary proves an account entering at health 1 - e (e <
# 0.1) never ends in bad debt from these costs.

LIQ_COST_SHARE = 8 * 10**17
LIQ_REWARD_SHARE = 10**17
LIQ_MAX_KEEPER_REWARD = 1_000 * WAD
LIQ_MIN_POSITION_NOTIONAL = MIN_POSITION_NOTIONAL  # the same constant (modules/constants.vy)


def liq_scale(maintenance: int, notional: int, max_discount: int, penalty: int) -> int:
    """LiquidationAuction._scale: f = min(1, COST_SHARE x M / (N x (max_discount +
    penalty))), rounded down; every discount and the penalty are multiplied by f."""
    rate = max_discount + penalty
    if rate == 0 or notional == 0:
        return WAD
    return min(WAD, LIQ_COST_SHARE * maintenance // notional * WAD // rate)


def liq_discount(elapsed: int, p: dict[str, int], scale: int = WAD) -> int:
    """The discount `elapsed` seconds into the clock, scaled by `scale` (rounded down)."""
    elapsed = min(elapsed, p["duration"])
    d = p["start_discount"] + (p["max_discount"] - p["start_discount"]) * elapsed // p["duration"]
    return d * scale // WAD


def liq_tranche(
    equity: int, maintenance: int, notional: int, p: dict[str, int], critical: bool
) -> int:
    """LiquidationAuction._tranche without window caps: q = (t*M - E) / (t*M - c), c =
    N*(d_max + penalty)*f + REWARD_SHARE*M, rounded up, in [min_step, max_step]; the whole
    book below critical health, for books under `small_account`, or when the rest would
    be under it."""
    if critical or notional < p["small_account"]:
        return WAD
    f = liq_scale(maintenance, notional, p["max_discount"], p["penalty"])
    tm = maintenance * p["target_health"] // WAD
    need = tm - equity
    cost = (
        notional * (p["max_discount"] + p["penalty"]) // WAD * f // WAD
        + maintenance * LIQ_REWARD_SHARE // WAD
    )
    q = WAD
    if tm > cost:
        q = vdiv(need * WAD + tm - cost - 1, tm - cost)
    q = min(max(q, p["min_step"]), p["max_step"])
    if (WAD - q) * notional < p["small_account"] * WAD:
        return WAD
    return q


def liq_reward(value: int, q: int, equity: int, maintenance: int, p: dict[str, int]) -> int:
    """A tranche's keeper reward: tip + fee x notional, within the keeper cap,
    REWARD_SHARE of the maintenance the tranche frees and the account's equity."""
    reward = min(p["keeper_tip"] + value * p["keeper_fee"] // WAD, p["keeper_cap"])
    reward = min(reward, maintenance * q // WAD * LIQ_REWARD_SHARE // WAD)
    return min(reward, max(equity, 0))


def liq_need(equity: int, maintenance: int, notional: int, target_health: int, rate: int) -> int:
    """LiquidationAuction._need: the fraction of the book that restores target health
    when sold at `rate` (scaled discount + penalty): (t*M - E) / (t*M - N*rate) + 1 wei,
    at most the whole book (Clipper: an auction raises at most what the account owes)."""
    tm = maintenance * target_health // WAD
    cost = notional * rate // WAD
    if tm <= cost:
        return WAD
    return min(vdiv((tm - equity) * WAD, tm - cost) + 1, WAD)


def liq_sell_part(
    lot: int,
    requested: int,
    equity: int,
    maintenance: int,
    notional: int,
    discount: int,
    penalty: int,
    p: dict[str, int],
) -> int:
    """The fraction of the book a take (or the backstop) moves: min(requested, need at
    this discount); the whole lot when the book's rest would be under `small_account`."""
    part = min(
        requested, liq_need(equity, maintenance, notional, p["target_health"], discount + penalty)
    )
    if (WAD - part) * notional < p["small_account"] * WAD:
        part = lot
    return part


def liq_leg_part(size: int, fraction: int, mark: int) -> int:
    """liquidation_transfer's part of one leg: size x fraction toward zero; the whole leg
    when the rest would be worth less than MIN_POSITION_NOTIONAL."""
    if fraction >= WAD:
        return size
    part = abs(size) * fraction // WAD
    part = part if size > 0 else -part
    if mul_div(abs(size - part), mark, WAD, False) < LIQ_MIN_POSITION_NOTIONAL:
        return size
    return part


def liq_taker_leg_ok(size: int, part: int, taker_size: int, mark: int) -> bool:
    """liquidation_transfer's rule for a taker account: where only part of a leg moves
    (`part` of `size`), the taker's leg ends at zero or at least MIN_POSITION_NOTIONAL at
    the mark; a whole leg moves as it is."""
    if part in (0, size):
        return True
    held = taker_size + part
    return held == 0 or mul_div(abs(held), mark, WAD, False) >= LIQ_MIN_POSITION_NOTIONAL


# --- trading.vy: loss-cap close-outs -----------------------------------------------------

LOSS_CAP_WINDOW = 60  # trading.LOSS_CAP_WINDOW (seconds)


def forced_limit(p: MarketParams) -> int:
    """trading._forced_limit: the most base size loss-cap close-outs may force through
    one market per window, 2 x min(maker_fee, taker_fee) x skew_scale (a sandwich's
    capture, S x P x L / skew_scale, then never exceeds its fees, 2 x maker x S x P)."""
    return 2 * min(p.maker_fee, p.taker_fee) * p.skew_scale // WAD


def force_close(
    snap: Snapshot, market: int, window: int, now: int | None = None
) -> tuple[TradeResult | None, int]:
    """trading._force_close: closes as much of the position in `market` as the market's
    loss-cap window (`loss_cap_window(market)`, start << 128 | used) allows (the whole
    position when the rest would be worth less than MIN_POSITION_NOTIONAL), at the
    oracle price, paying the maker/taker fee. Returns (the fill, or None when the window
    is used up, and the window word after). Assumes the account's marks were just
    touched at `now` (trigger_loss_cap refreshes them first)."""
    now = snap.timestamp if now is None else now
    ms = snap.market(market)
    p = ms.params
    used = window & MASK_128
    if (window >> 128) + LOSS_CAP_WINDOW <= now:
        used, window = 0, now << 128
    limit = forced_limit(p)
    if used >= limit:
        return None, window
    flags = ms.oracle_flags or 0
    if flags & FLAG_SEQUENCER_DOWN:
        raise Revert("clearinghouse: sequencer down")
    if flags & FLAG_SEQUENCER_GRACE:
        raise Revert("clearinghouse: sequencer grace period")
    if flags & FLAG_DEGRADED:
        raise Revert("clearinghouse: no price quorum")
    price = snap.oracle_price(market)
    pos = snap.position(market)
    amount = min(abs(pos.size), limit - used)
    # no dust: a rest worth less than MIN_POSITION_NOTIONAL closes with the window's part
    if (abs(pos.size) - amount) * price < MIN_POSITION_NOTIONAL * WAD:
        amount = abs(pos.size)
    delta = -amount if pos.size > 0 else amount
    window = (window >> 128 << 128) | (used + amount)
    mark = touch(ms.mark, p, ms.skew, price, now)
    index = mark.index
    fee_ = fee(price, ms.skew, delta, p.maker_fee, p.taker_fee)
    funding_paid = funding_owed(pos.size, funding_delta(pos.snapshot, index))
    new_size, new_cost, realized = apply_fill(pos.size, pos.cost, delta, price)
    cash = realized - funding_paid
    long_oi, short_oi = ms.long_oi, ms.short_oi
    if pos.size > 0:
        long_oi -= pos.size - max(new_size, 0)
    else:
        short_oi -= -pos.size - max(-new_size, 0)
    positions = dict(snap.positions)
    if new_size == 0:
        positions.pop(market, None)
    else:
        positions[market] = Position(
            new_size, new_cost, pos_snapshot(pack_pos(new_size, new_cost, index))
        )
    balances = dict(snap.balances)
    balances[0] = snap.balance(0) + cash - fee_
    raw_cash: int | None = None
    if snap.pool_cash is not None:
        raw_cash = snap.pool_cash - fee_split(snap.pending_fees, snap.system)[2] - cash
    pending = snap.pending_fees + fee_
    after = replace(
        snap,
        header=with_position(snap.header, market, new_size != 0),
        balances=balances,
        positions=positions,
        pool_cash=None if raw_cash is None else raw_cash + fee_split(pending, snap.system)[2],
        pending_fees=pending,
        timestamp=now,
        block_number=-1,
    )
    after = _with_market(after, market, mark, (long_oi, short_oi))
    res = TradeResult(
        fill_price=price,
        fee=fee_,
        realized_pnl=realized,
        funding_paid=funding_paid,
        adds=False,
        refreshed=(),
        margin_after=scan(after),
        after=after,
    )
    return res, window
