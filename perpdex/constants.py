"""Protocol constants: the Python mirror of contracts/modules/constants.vy.

Same names and values as the contract module (tests/unit/test_constants.py parses it and
fails when the two differ). Units: prices, sizes and money in WAD (1e18), packed market
fractions on grids of 1e-6 to 1e-9 (perpdex.units.NANO), shocks and margin ratios in basis points.

This module imports nothing from perpdex, so any module (perpdex.sdk.math and
perpdex.sdk.snapshot included) can import it without an import cycle.
"""

from __future__ import annotations

WAD = 10**18
IWAD = 10**18
BPS = 10_000
IBPS = 10_000
SECONDS_PER_DAY = 86_400

# Hard caps: every loop in the protocol is bounded by one of these.
MAX_MARKETS = 32
MAX_POSITIONS = 16
MAX_COLLATERALS = 8
MAX_SCENARIOS = 16

# Largest packed values (modules/packing.vy). MAX_PRICE is the mark word's 88-bit price;
# the OracleRouter imports the same constant and refuses a max_price above it.
MAX_PRICE = 2**88 - 1
MAX_ABS_I128 = 2**127 - 1

# Smallest position a fill may leave (USD WAD of |size| x price at the oracle price):
# market orders refuse to leave less (closing to zero is always allowed), loss-cap
# close-outs and liquidations move the whole leg instead.
MIN_POSITION_NOTIONAL = 100 * WAD

# Oracle router flags (mirrors OracleRouter.vy).
FLAG_DEGRADED = 1
FLAG_SEQUENCER_DOWN = 2
FLAG_SEQUENCER_GRACE = 4

# Account header bits (low byte of the header word, modules/packing.vy).
ACCOUNT_EXISTS = 1
ACCOUNT_PORTFOLIO = 2
ACCOUNT_IN_LIQUIDATION = 4
ACCOUNT_LOSS_CAP = 16  # state.loss_cap[account] != 0

# The vault exposure cap's revert reason (constants.vy VAULT_CAP_REACHED): close_with_adl
# deleverages only on exactly this refusal.
VAULT_CAP_REACHED = "clearinghouse: vault exposure cap reached"
