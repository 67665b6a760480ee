"""Strategies and parameters shared by the stateful fuzz tests.

Amounts are drawn in human units (dollars, basis points, seconds) and converted by the
machine, so a shrunk failure reads like a scenario: "open 3.2x long BTC, BTC -35%, ...".
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from perpdex.constants import WAD

DAY = 86_400


@dataclass(frozen=True)
class FuzzMarket:
    """Market parameters the fuzz deployments run with (config/markets.yaml keeps the fees
    and exposure caps). Smaller skew scales and caps and faster funding than production,
    so that at the machine's sizes (accounts of $10k-$400k) the skew premium, funding,
    the open-interest cap and the vault exposure cap all come into play."""

    skew_scale: int  # whole base units
    max_oi: int  # whole base units per side
    velocity_nano: int  # max funding velocity, 1e-9 per day per day
    max_rate_nano: int  # max funding rate, 1e-9 per day


FUZZ_MARKETS = {
    "BTC": FuzzMarket(
        skew_scale=1_000, max_oi=12, velocity_nano=3 * 10**9, max_rate_nano=5 * 10**7
    ),
    "ETH": FuzzMarket(
        skew_scale=30_000, max_oi=400, velocity_nano=3 * 10**9, max_rate_nano=5 * 10**7
    ),
    "SOL": FuzzMarket(
        skew_scale=400_000, max_oi=8_000, velocity_nano=3 * 10**9, max_rate_nano=5 * 10**7
    ),
}
N_MARKETS = len(FUZZ_MARKETS)

# --- indices ----------------------------------------------------------------------------

markets = st.integers(0, N_MARKETS - 1)
# an index into the machine's accounts; taken modulo the number of candidates
account_picks = st.integers(0, 63)
keepers = st.integers(0, 1)
lps = st.integers(0, 1)

# --- trades -------------------------------------------------------------------------------

TRADE_KINDS = ("open", "open", "add", "reduce", "close", "flip")
trade_kinds = st.sampled_from(TRADE_KINDS)
# notional as a multiple of the account's equity, in bp (0.05x .. 12x: past the max
# leverage, so the margin check refuses some)
leverage_bps = st.one_of(st.integers(500, 40_000), st.integers(40_000, 120_000))
# fraction of a position to reduce, bp
reduce_bps = st.integers(1, 9_999)
# odd sizes: wei of base added to a drawn size (rounding paths)
size_dust = st.integers(0, 10**12)
# acceptable-price slack around the predicted fill, bp (None: no bound)
slippage_bps = st.one_of(st.none(), st.none(), st.integers(-30, 30))

# --- collateral ------------------------------------------------------------------------------

deposit_usd = st.integers(1, 120_000)
deposit_weth_milli = st.integers(1, 5_000)
# fraction of the free margin (or of the balance) to take out, bp; above 10,000 overdraws
withdraw_bps = st.one_of(st.integers(1, 10_000), st.integers(10_001, 13_000))
loss_cap_bps = st.one_of(st.just(0), st.integers(2_000, 15_000))

# --- vault ---------------------------------------------------------------------------------

lp_usd = st.integers(1, 500_000)
lp_bps = st.integers(1, 10_000)
donation_usd = st.integers(1, 50_000)
insurance_usd = st.integers(1, 50_000)

# --- market data ------------------------------------------------------------------------

walk_bps = st.integers(-300, 300)
# a move against every position of one account, and how long the feeds then keep posting
# it before a keeper looks (the TWAP window is 120 s)
adverse_bps = st.integers(200, 4_000)
adverse_waits = st.one_of(st.integers(1, 120), st.integers(120, 900))
jump_bps = st.one_of(st.integers(-4_500, -500), st.integers(500, 4_500))
diverge_bps = st.one_of(st.integers(-1_500, -100), st.integers(100, 1_500))
feed_picks = st.integers(0, 2)
# seconds to move the clock: short, past the mark age (60 s), past the auction cooldown and
# duration (60 s, 600 s), past a feed's max age / the sequencer grace (3,600 s), a day
time_steps = st.one_of(
    st.integers(1, 59),
    st.integers(60, 700),
    st.integers(700, 3_500),
    st.integers(3_600, 7_300),
    st.just(DAY),
)
# feeds re-posted after the clock moves (their heartbeat) three times in four
reposts = st.sampled_from([True, True, True, False])
fractions_wad = st.one_of(st.just(WAD), st.integers(1, WAD))
