"""Encode and decode the risk book: margin ratios and stress scenarios.

The clearinghouse stores the book as contract code (layout in contracts/modules/margin.vy),
always 2,592 bytes:
a 32-byte header, two words per market (ratios, then 16 int16 shocks in two's complement),
then one bytes32 name per scenario.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.config import MarketRisk, RiskConfig, Scenario
from perpdex.constants import MAX_MARKETS, MAX_SCENARIOS

SHOCK_MIN, SHOCK_MAX = -(2**15), 2**15 - 1
MARKETS_OFFSET = 32
NAMES_OFFSET = 32 + 64 * MAX_MARKETS
BOOK_BYTES = NAMES_OFFSET + 32 * MAX_SCENARIOS  # fixed size, unused slots zero


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


def from_config(risk: RiskConfig, symbols: list[str]) -> RiskBook:
    """Order a RiskConfig by market id (`symbols` is the deployed market order)."""
    missing = [s for s in symbols if s not in risk.markets]
    if missing:
        raise ValueError(f"config/risk.yaml has no margin ratios for {missing}")
    return RiskBook(
        floor_bps=risk.floor_bps,
        maintenance_bps=risk.maintenance_bps,
        markets=tuple(risk.markets[s] for s in symbols),
        names=tuple(sc.name for sc in risk.scenarios),
        shocks=tuple(tuple(sc.shocks_bps.get(s, 0) for s in symbols) for sc in risk.scenarios),
    )


def to_scenarios(book: RiskBook, symbols: list[str]) -> tuple[Scenario, ...]:
    return tuple(
        Scenario(name=n, shocks_bps=dict(zip(symbols, row, strict=True)))
        for n, row in zip(book.names, book.shocks, strict=True)
    )


def encode(book: RiskBook) -> bytes:
    """Book -> bytes for `set_risk_book`."""
    n_m, n_s = len(book.markets), book.n_scenarios
    if not 1 <= n_s <= MAX_SCENARIOS:
        raise ValueError(f"a risk book holds 1 to {MAX_SCENARIOS} scenarios, not {n_s}")
    if n_m > MAX_MARKETS:
        raise ValueError(f"a risk book holds at most {MAX_MARKETS} markets")
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
    out = out.ljust(NAMES_OFFSET, b"\0")
    for name in book.names:
        raw = name.encode()
        if len(raw) > 32:
            raise ValueError(f"scenario name {name!r} is longer than 32 bytes")
        out += raw.ljust(32, b"\0")
    return out.ljust(BOOK_BYTES, b"\0")


def decode(data: bytes) -> RiskBook:
    """Bytes (as stored on chain, without the leading STOP byte) -> book."""
    header = int.from_bytes(data[:32], "big")
    n_m, n_s = header & 0xFF, (header >> 8) & 0xFF
    floor_bps, mmr_bps = (header >> 16) & 0xFFFF, (header >> 32) & 0xFFFF
    markets, rows = [], [[0] * n_m for _ in range(n_s)]
    for m in range(n_m):
        off = 32 + 64 * m
        w0 = int.from_bytes(data[off : off + 32], "big")
        w1 = int.from_bytes(data[off + 32 : off + 64], "big")
        markets.append(
            MarketRisk(
                imr_min_bps=w0 & 0xFFFF,
                imr_slope_bps=(w0 >> 16) & 0xFFFF,
                margin_scale=(w0 >> 32) & (2**128 - 1),
            )
        )
        for k in range(n_s):
            raw = (w1 >> (16 * k)) & 0xFFFF
            rows[k][m] = raw - 0x10000 if raw & 0x8000 else raw
    names = []
    for k in range(n_s):
        off = NAMES_OFFSET + 32 * k
        names.append(data[off : off + 32].rstrip(b"\0").decode())
    return RiskBook(
        floor_bps=floor_bps,
        maintenance_bps=mmr_bps,
        markets=tuple(markets),
        names=tuple(names),
        shocks=tuple(tuple(r) for r in rows),
    )
