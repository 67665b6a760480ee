"""The risk book config/risk.yaml held until issue 9 (item 8): twelve hand-written
scenarios with no single-market moves. Tests that need a book *different* from the
published one (diffs, step plans from the chain's old book to the new one) start here."""

from __future__ import annotations

from perpdex.config import MarketRisk
from perpdex.constants import WAD
from perpdex.sdk.riskbook import RiskBook

LEGACY_BOOK = RiskBook(
    floor_bps=200,
    maintenance_bps=5_000,
    markets=(
        MarketRisk(1_000, 1_000, 1_000 * WAD),
        MarketRisk(1_000, 1_000, 20_000 * WAD),
        MarketRisk(1_500, 1_000, 500_000 * WAD),
    ),
    names=(
        "crypto-crash",
        "crypto-rally",
        "btc-down",
        "btc-up",
        "eth-down",
        "eth-up",
        "sol-down",
        "sol-up",
        "alts-fall-btc-up",
        "alts-rise-btc-dn",
        "eth-sol-split",
        "sol-eth-split",
    ),
    shocks=(
        (-1500, -2000, -2500),
        (1500, 2000, 2500),
        (-1000, -500, -500),
        (1000, 500, 500),
        (-300, -1000, -600),
        (300, 1000, 600),
        (-200, -500, -1500),
        (200, 500, 1500),
        (500, -1000, -2000),
        (-500, 1000, 2000),
        (0, -800, 800),
        (0, 800, -800),
    ),
)
