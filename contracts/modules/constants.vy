# pragma version ~=0.4.3
"""
@title perpdex constants
@custom:contract-name constants
@license MIT
@notice Units and hard caps shared by every contract. One place, so a reader can check
        every bound the protocol relies on.
        Units: prices are USD per one unit of base asset in WAD (1e18); sizes are signed
        base units in WAD; money (collateral, PnL, fees) is USD in WAD whatever the
        token's decimals; rates are WAD fractions per day; shocks and margin ratios in
        basis points (1 bp = 1e-4).
"""

WAD: constant(uint256) = 10**18
IWAD: constant(int256) = 10**18
BPS: constant(uint256) = 10_000
IBPS: constant(int256) = 10_000
SECONDS_PER_DAY: constant(uint256) = 86_400

# Hard caps: every loop in the protocol is bounded by one of these.
MAX_MARKETS: constant(uint256) = 32
MAX_POSITIONS: constant(uint256) = 16
MAX_COLLATERALS: constant(uint256) = 8
MAX_SCENARIOS: constant(uint256) = 16

# Largest packed values (see modules/packing.vy for the word layouts). MAX_PRICE is the
# mark word's 88-bit price; OracleRouter.vy refuses a market whose max_price exceeds it.
MAX_PRICE: constant(uint256) = 2**88 - 1
MAX_ABS_I128: constant(int256) = 2**127 - 1

# Smallest position a fill may leave (USD WAD of |size| x price at the oracle price):
# market orders refuse to leave less (closing to zero is always allowed), loss-cap
# close-outs and liquidations move the whole leg instead.
MIN_POSITION_NOTIONAL: constant(uint256) = 100 * 10**18

# The hot path's exposure-cap refusal (trading._check_caps). close_with_adl
# (modules/vault_limits.vy) deleverages a position only when a reduce fails with exactly
# this reason.
VAULT_CAP_REACHED: constant(String[41]) = "clearinghouse: vault exposure cap reached"

# Oracle router flags (OracleRouter.vy exports these as its FLAG_* getters).
FLAG_DEGRADED: constant(uint256) = 1
FLAG_SEQUENCER_DOWN: constant(uint256) = 2
FLAG_SEQUENCER_GRACE: constant(uint256) = 4

# Account header bits (see modules/packing.vy).
ACCOUNT_EXISTS: constant(uint256) = 1
ACCOUNT_PORTFOLIO: constant(uint256) = 2
ACCOUNT_IN_LIQUIDATION: constant(uint256) = 4
# set exactly while state.loss_cap[account] != 0 (accounts.set_loss_cap keeps it): a
# trade's margin check knows from the header it already read whether to read the cap
ACCOUNT_LOSS_CAP: constant(uint256) = 16
