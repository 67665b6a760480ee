"""Mirror of contracts/modules/margin.vy: the risk book's layout (header word, two words per
market, scenario names), its field readers, the isolated requirement and the portfolio
combine; with the book's encoding (what `set_risk_book` takes) and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.config import MarketRisk
from perpdex.constants import BPS, MAX_MARKETS, MAX_SCENARIOS, WAD
from perpdex.sdk.math.fixed_point import mul_div
from perpdex.sdk.math.packing import MASK_8, MASK_16, MASK_128
from perpdex.sdk.math.vyper import Revert, _signed, _to_u256

# layout (margin.vy): header word, then two words per market, then one bytes32 per scenario
HEADER_BYTES = 32
MARKET_BYTES = 64
NAME_BYTES = 32
MARKETS_BYTES = MARKET_BYTES * MAX_MARKETS  # 2,048
MAX_BOOK_BYTES = HEADER_BYTES + MARKETS_BYTES + NAME_BYTES * MAX_SCENARIOS  # 2,592
SHOCK_MIN, SHOCK_MAX = -(2**15), 2**15 - 1  # a shock is an int16 field


@dataclass(frozen=True)
class BookHeader:
    """margin.BookHeader."""

    n_markets: int
    n_scenarios: int
    floor_bps: int
    mmr_bps: int


def book_header(w: int) -> BookHeader:
    """packing._book_header."""
    return BookHeader(
        n_markets=w & MASK_8,
        n_scenarios=(w >> 8) & MASK_8,
        floor_bps=(w >> 16) & MASK_16,
        mmr_bps=(w >> 32) & MASK_16,
    )


def imr_min_bps(w0: int) -> int:
    """packing._book_imr_min_bps."""
    return w0 & MASK_16


def imr_slope_bps(w0: int) -> int:
    """packing._book_imr_slope_bps."""
    return (w0 >> 16) & MASK_16


def margin_scale(w0: int) -> int:
    """packing._book_margin_scale."""
    return (w0 >> 32) & MASK_128


def shock(w1: int, k: int) -> int:
    """packing._book_shock: scenario k's shock of a market in bp (the int16 field at bit 16k,
    two's complement)."""
    return _signed(w1 >> (16 * k), 16)


# --- the decoded book and its encoding (perpdex.sdk.riskbook re-exports these) -------------


@dataclass(frozen=True)
class RiskBook:
    """Decoded book: per-market ratios in market-id order and scenarios as shock rows."""

    floor_bps: int
    maintenance_bps: int
    markets: tuple[MarketRisk, ...]
    names: tuple[str, ...]
    shocks: tuple[tuple[int, ...], ...]  # shocks[k][m] in bp

    @property
    def n_scenarios(self) -> int:
        return len(self.names)


def width_problems(book: RiskBook) -> list[str]:
    """The header and word-0 fields of `book` too wide for their bits (each would spill
    into its neighbour: a stray bit of word 0 is one set_risk_book refuses, review 11b),
    one message per field; `encode` raises the first, `book_problems` lists them all."""
    out = [
        f"{what} {v} does not fit its 16 bits of the book header"
        for what, v in (("floor_bps", book.floor_bps), ("maintenance_bps", book.maintenance_bps))
        if not 0 <= v <= MASK_16
    ]
    for m, r in enumerate(book.markets):
        fields = (
            ("imr_min_bps", r.imr_min_bps, MASK_16),
            ("imr_slope_bps", r.imr_slope_bps, MASK_16),
            ("margin_scale", r.margin_scale, MASK_128),
        )
        out += [
            f"market {m}: {what} {v} does not fit {mask.bit_length()} bits"
            for what, v, mask in fields
            if not 0 <= v <= mask
        ]
    return out


def encode(book: RiskBook) -> bytes:
    """Book -> the MAX_BOOK_BYTES bytes `set_risk_book` takes (the inverse of `decode`)."""
    n_m, n_s = len(book.markets), book.n_scenarios
    if not 1 <= n_s <= MAX_SCENARIOS:
        raise ValueError(f"a risk book holds 1 to {MAX_SCENARIOS} scenarios, not {n_s}")
    if n_m > MAX_MARKETS:
        raise ValueError(f"a risk book holds at most {MAX_MARKETS} markets")
    wide = width_problems(book)
    if wide:
        raise ValueError(wide[0])
    header = n_m | (n_s << 8) | (book.floor_bps << 16) | (book.maintenance_bps << 32)
    out = header.to_bytes(32, "big")
    for m, r in enumerate(book.markets):
        w0 = r.imr_min_bps | (r.imr_slope_bps << 16) | (r.margin_scale << 32)
        w1 = 0
        for k in range(n_s):
            x = book.shocks[k][m]
            if not SHOCK_MIN <= x <= SHOCK_MAX:
                raise ValueError(f"shock {x} bp of {book.names[k]} is out of range")
            w1 |= (x & 0xFFFF) << (16 * k)
        out += w0.to_bytes(32, "big") + w1.to_bytes(32, "big")
    out = out.ljust(HEADER_BYTES + MARKETS_BYTES, b"\0")
    for name in book.names:
        raw = name.encode()
        if len(raw) > NAME_BYTES:
            raise ValueError(f"scenario name {name!r} is longer than 32 bytes")
        out += raw.ljust(NAME_BYTES, b"\0")
    return out.ljust(MAX_BOOK_BYTES, b"\0")


def decode(data: bytes) -> RiskBook:
    """Bytes (as stored on chain, without the leading STOP byte) -> book, read with the
    contract's field readers (`book_header`, `imr_min_bps`, ..., `shock`)."""
    h = book_header(int.from_bytes(data[:HEADER_BYTES], "big"))
    n_m, n_s = h.n_markets, h.n_scenarios
    markets, rows = [], [[0] * n_m for _ in range(n_s)]
    for m in range(n_m):
        off = HEADER_BYTES + MARKET_BYTES * m
        w0 = int.from_bytes(data[off : off + 32], "big")
        w1 = int.from_bytes(data[off + 32 : off + 64], "big")
        markets.append(
            MarketRisk(
                imr_min_bps=imr_min_bps(w0),
                imr_slope_bps=imr_slope_bps(w0),
                margin_scale=margin_scale(w0),
            )
        )
        for k in range(n_s):
            rows[k][m] = shock(w1, k)
    names = []
    for k in range(n_s):
        off = HEADER_BYTES + MARKETS_BYTES + NAME_BYTES * k
        names.append(data[off : off + NAME_BYTES].rstrip(b"\0").decode())
    return RiskBook(
        floor_bps=h.floor_bps,
        maintenance_bps=h.mmr_bps,
        markets=tuple(markets),
        names=tuple(names),
        shocks=tuple(tuple(r) for r in rows),
    )


# --- the book as the contracts read it ------------------------------------------------------


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
    def from_riskbook(cls, book: RiskBook) -> Book:
        """From a decoded (or config-built) RiskBook, as `set_risk_book` would store it."""
        return cls(encode(book))

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

    def decode(self) -> RiskBook:
        """The decoded book."""
        return decode(self.data)


def collateral_worth(balance: int, price: int, haircut: int) -> int:
    """margin._collateral_worth: what `balance` of a collateral token counts for in margin,
    its value at `price` less the haircut (WAD), rounded down."""
    return mul_div(balance, price * (WAD - haircut), WAD * WAD, False)


def isolated_requirement(abs_value: int, abs_size: int, w0: int) -> tuple[int, int]:
    """margin._isolated: (isolated initial margin of one position, its size-scaled part),
    both rounded up; the imr_min part rounds once from `abs_value` = |s| * P (WAD^2), the
    size part takes the notional ceil(abs_value / WAD). `w0`: the market's risk-book word 0
    (the contract takes its three fields, unpacked by the caller).
    Unchecked on chain (callers keep |s| < 2**95 and P < 2**88): the EVM's wrapping
    arithmetic and division by zero (a zero margin_scale, which no published book has)
    give 0."""
    u = 2**256
    scale = BPS * margin_scale(w0)
    base = (abs_value * imr_min_bps(w0) % u + WAD * BPS - 1) % u // (WAD * BPS)
    notional = (abs_value + WAD - 1) // WAD
    slope = 0
    if scale != 0:
        slope = (notional * imr_slope_bps(w0) % u * abs_size % u + scale - 1) % u // scale
    return (base + slope) % u, slope


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
