"""Encode and decode the risk book: margin ratios and stress scenarios.

The clearinghouse stores the book as contract code (layout in contracts/modules/margin.vy),
always 2,592 bytes:
a 32-byte header, two words per market (ratios, then 16 int16 shocks in two's complement),
then one bytes32 name per scenario.

The layout and its codec (`RiskBook`, `encode`, `decode`) are the contract's, so they live
in the mirror (perpdex/sdk/math/margin.py) and are re-exported here; this module adds the
mapping between config/risk.yaml and a book.
"""

from __future__ import annotations

from perpdex.config import MarketRisk, RiskConfig, Scenario
from perpdex.sdk.math.margin import (
    MAX_BOOK_BYTES,
    SHOCK_MAX,
    SHOCK_MIN,
    RiskBook,
    decode,
    encode,
)

__all__ = [
    "BOOK_BYTES",
    "SHOCK_MAX",
    "SHOCK_MIN",
    "MarketRisk",
    "RiskBook",
    "decode",
    "encode",
    "from_config",
    "to_scenarios",
]

BOOK_BYTES = MAX_BOOK_BYTES  # fixed size, unused slots zero


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
