# pragma version ~=0.4.3
"""
@title Clearinghouse state: storage, events and shared types
@custom:contract-name state
@license MIT
@notice Every storage variable of the clearinghouse lives here and nowhere else. All
        six code halves (`Clearinghouse.vy`, the hot path, and `ClearinghouseOps.vy`,
        `ClearinghouseAdmin.vy`, `ClearinghouseOrders.vy`, `ClearinghouseRisk.vy` and
        `ClearinghouseTreasury.vy`, reached by delegatecall) initialise snekmate's
        access_control and pausable and this module first, in that order; the other
        modules they initialise hold no storage, so the halves share one storage layout
        by construction; tests/security/test_storage_layout.py compares the compiler's
        layouts to prove it.
        Packed words (`_header`, `_pos`, `_mark`, `_oi`, `_pool_sums`, `_params_*`) are
        described in modules/packing.vy. Per-market words are fixed arrays (slot = base
        + market id, no hashing) and an account's positions one hashed array, because a
        margin check reads one of each per position.
"""

from ..interfaces import IOracleRouter
from ethereum.ercs import IERC20Detailed
from . import constants as c
from . import packing
from . import margin
from . import fixed_point as fp

# @notice Sets market, collateral, fee and risk-book parameters.
RISK_ROLE: public(constant(bytes32)) = keccak256("RISK_ROLE")
# @notice May pause new risk at once; unpausing needs the admin.
GUARDIAN_ROLE: public(constant(bytes32)) = keccak256("GUARDIAN_ROLE")
# @notice The liquidation auction contract.
LIQUIDATOR_ROLE: public(constant(bytes32)) = keccak256("LIQUIDATOR_ROLE")

# Counterparty id of the vault's pool in `Fill` events.
POOL: constant(uint256) = 0
# `_scan` override market meaning "no override".
NO_OVERRIDE: constant(uint256) = c.MAX_MARKETS


# @notice Result of one pass over an account (USD WAD). `notional` (gross) is filled only
#         by the equity views.
struct MarginScan:
    equity: int256
    initial: uint256
    maintenance: uint256
    isolated: uint256
    notional: uint256


# --- events --------------------------------------------------------------------------


event AccountOpened:
    account: indexed(uint256)
    owner: indexed(address)
    name: String[32]
    portfolio: bool


event OperatorSet:
    account: indexed(uint256)
    operator: indexed(address)
    allowed: bool


event Deposit:
    account: indexed(uint256)
    token: indexed(address)
    sender: indexed(address)
    amount: uint256
    credited: uint256


event Withdraw:
    account: indexed(uint256)
    token: indexed(address)
    receiver: indexed(address)
    amount: uint256


event CollateralTransferred:
    from_account: indexed(uint256)
    to_account: indexed(uint256)
    token: indexed(address)
    amount: uint256


event Fill:
    account: indexed(uint256)
    market: indexed(uint256)
    counterparty: indexed(uint256)
    size_delta: int256
    price: uint256
    fee: uint256
    realized_pnl: int256
    funding_paid: int256
    size: int256


event MarkUpdated:
    market: indexed(uint256)
    price: uint256
    funding_rate: int256
    funding_index: int256


event MarketListed:
    market: indexed(uint256)
    params: packing.MarketParams


event MarketParamsUpdated:
    market: indexed(uint256)
    old_params: packing.MarketParams
    new_params: packing.MarketParams


event FeesSwept:
    amount: uint256
    to_insurance: uint256
    to_protocol: uint256
    to_vault: uint256


event CollateralListed:
    index: indexed(uint256)
    token: indexed(address)
    decimals: uint256


event CollateralParamsUpdated:
    index: indexed(uint256)
    old_haircut: uint256
    new_haircut: uint256
    old_price_market: uint256
    new_price_market: uint256
    old_cap: uint256
    new_cap: uint256


event RiskBookUpdated:
    old_book: indexed(address)
    new_book: indexed(address)
    version: uint256
    n_markets: uint256
    n_scenarios: uint256


event RiskBookProposed:
    book_hash: indexed(bytes32)
    proposer: indexed(address)
    eta: uint256
    data: Bytes[margin.MAX_BOOK_BYTES]


event RiskBookDelayUpdated:
    old_delay: uint256
    new_delay: uint256


event RiskBookLimitsUpdated:
    old_shock_step_bps: uint256
    new_shock_step_bps: uint256
    old_ratio_step_bps: uint256
    new_ratio_step_bps: uint256


event FeeSplitUpdated:
    old_insurance_share: uint256
    new_insurance_share: uint256
    old_protocol_share: uint256
    new_protocol_share: uint256


event MaxMarkAgeUpdated:
    old_age: uint256
    new_age: uint256


event VaultSet:
    old_vault: indexed(address)
    new_vault: indexed(address)


event LossCapParamsUpdated:
    old_fee: uint256
    new_fee: uint256


event VaultCashMoved:
    receiver: indexed(address)
    amount: int256
    pool_cash: int256


event DustSwept:
    account: indexed(uint256)
    amount: uint256  # USD WAD, below one settlement-token unit, to protocol fees


event InsuranceFunded:
    sender: indexed(address)
    amount: uint256
    insurance: uint256


event ProtocolFeesWithdrawn:
    receiver: indexed(address)
    amount: uint256


event MarginModeChanged:
    account: indexed(uint256)
    portfolio: bool


event LossCapSet:
    account: indexed(uint256)
    old_floor: uint256
    new_floor: uint256


event LossCapTriggered:
    account: indexed(uint256)
    keeper: indexed(address)
    equity: int256
    equity_floor: uint256
    fee: uint256


event LiquidationBegun:
    account: indexed(uint256)
    keeper_account: indexed(uint256)
    reward: uint256


event LiquidationRewardPaid:
    account: indexed(uint256)
    keeper_account: indexed(uint256)
    reward: uint256


event LiquidationEnded:
    account: indexed(uint256)


event LiquidationTransfer:
    account: indexed(uint256)
    taker: indexed(uint256)
    fraction: uint256
    discount: uint256
    notional: uint256
    penalty: uint256


# @dev Bad-debt settlement: the pool took `amount` (18-decimal token amount) of an
#      account's collateral at `price` (USD WAD per whole token: the mark less the
#      token's haircut) and credited `credit` (USD WAD) against its deficit.
event CollateralSeized:
    account: indexed(uint256)
    token_index: indexed(uint256)
    amount: uint256
    price: uint256
    credit: uint256


# @dev `buyer` bought `amount` (18-decimal token amount) of the pool's seized collateral
#      at `price` (USD WAD per whole token) for `paid` (USD WAD) into the pool's cash.
event SeizedCollateralSold:
    buyer: indexed(address)
    token_index: indexed(uint256)
    amount: uint256
    price: uint256
    paid: uint256


event BadDebtSettled:
    account: indexed(uint256)
    deficit: uint256
    from_insurance: uint256
    socialized: uint256


event BadDebtProvisioned:
    account: indexed(uint256)
    provision: uint256
    total: uint256


event MarketPaused:
    market: indexed(uint256)
    paused: bool


# The oracle lost its price quorum for `market`: trading, closes, liquidation steps,
# withdrawal checks and vault share pricing that need it revert until it returns;
# `mark` is the last quorum mark, kept unchanged (no funding accrues while frozen).
event MarketFrozen:
    market: indexed(uint256)
    mark: uint256


# The oracle has a price quorum for `market` again (`price`): the market trades again.
event MarketResumed:
    market: indexed(uint256)
    price: uint256


# A keeper closed `size_delta` of `account`'s position in `market` at the oracle `price`
# (no premium, no fee) to bring the vault back within its limits (modules/vault_limits.vy):
# reason 1 = PnL cap (traders' net unrealised profit `trader_pnl` above max_pnl_factor x
# `pool_equity`), 2 = exposure cap, 3 = paired with a trader's close the cap would block.
event AutoDeleveraged:
    account: indexed(uint256)
    market: indexed(uint256)
    keeper: indexed(address)
    size_delta: int256
    price: uint256
    trader_pnl: int256
    pool_equity: int256
    reason: uint256


event VaultLimitsUpdated:
    old_max_total_exposure: uint256
    new_max_total_exposure: uint256
    old_max_pnl_factor: uint256
    new_max_pnl_factor: uint256
    old_adl_target_factor: uint256
    new_adl_target_factor: uint256


# A signed maker order of account `maker` and a signed taker order of account `taker`
# traded (ClearinghouseOrders.settle): the taker's position in `market` changed by
# `size_delta` (base WAD; the maker's by -size_delta) at `price` (the maker's limit). One
# event per fill carries both sides, in place of two `Fill` events (gas): the fee each
# paid, its realised PnL and funding paid (as `Fill`), and its position size after. The
# digests are the EIP-712 order hashes (perpdex/sdk/orders.py `order_digest`); the
# amount filled of each order is |size_delta|.
event OrdersMatched:
    maker: indexed(uint256)
    taker: indexed(uint256)
    maker_order: bytes32
    taker_order: bytes32
    market: uint256
    size_delta: int256
    price: uint256
    maker_fee: uint256
    taker_fee: uint256
    maker_realized_pnl: int256
    taker_realized_pnl: int256
    maker_funding_paid: int256
    taker_funding_paid: int256
    maker_size: int256
    taker_size: int256


# The account's order `order` was cancelled: its nonce is consumed.
event OrderCancelled:
    account: indexed(uint256)
    nonce: uint256
    order: indexed(bytes32)


# Every order of the account with a nonce below `min_nonce` is cancelled.
event NoncesCancelled:
    account: indexed(uint256)
    min_nonce: uint256


# A conditional order `order` (its EIP-712 digest) of `account` fired: the oracle price
# `oracle_price` (with quorum) had crossed its trigger, the account traded `size_delta`
# (base WAD; a reduce-only order clipped to the position) against the vault at `price`
# (its Fill precedes this), and `keeper`, the caller, earned `keeper_fee` (USD WAD; 0
# when the withdrawal gate refused it). The order's nonce is consumed.
event ConditionalOrderExecuted:
    account: indexed(uint256)
    order: indexed(bytes32)
    keeper: indexed(address)
    size_delta: int256
    price: uint256
    oracle_price: uint256
    keeper_fee: uint256


# --- immutables ------------------------------------------------------------------------

# @notice The oracle router (trusted, deployed with the system).
ORACLE: public(immutable(IOracleRouter))
# @notice 10 ** (18 - decimals) of the settlement token.
SETTLEMENT_SCALE: public(immutable(uint256))

# --- accounts --------------------------------------------------------------------------

_header: HashMap[uint256, uint256]
# @notice Strategy name of each account.
account_name: public(HashMap[uint256, String[32]])
# @notice Equity floor (USD WAD) under which anyone may close the account; 0 = none.
loss_cap: public(HashMap[uint256, uint256])
# @notice Number of sub-accounts an owner has opened (the next index).
sub_account_count: public(HashMap[address, uint256])
# @notice Addresses allowed to trade (never withdraw) for an account.
is_operator: public(HashMap[uint256, HashMap[address, bool]])
_balance: HashMap[uint256, HashMap[uint256, int256]]
_pos: HashMap[uint256, uint256[c.MAX_MARKETS]]

# --- collateral --------------------------------------------------------------------------

# @notice Number of listed collateral tokens (index 0 is the settlement token).
collateral_count: public(uint256)
# @notice Token address of each collateral index.
collateral_token: public(HashMap[uint256, address])
_collateral_index: HashMap[address, uint256]
# @notice 10 ** (18 - decimals) of each collateral token.
collateral_scale: public(HashMap[uint256, uint256])
# @notice Margin haircut of each collateral token (WAD fraction).
collateral_haircut: public(HashMap[uint256, uint256])
# @notice Oracle market that prices each non-settlement collateral token.
collateral_market: public(HashMap[uint256, uint256])
# @notice Cap on the total deposited amount of each token (token units).
collateral_cap: public(HashMap[uint256, uint256])
# @notice Tokens held per collateral index (token units), for caps and conservation.
collateral_held: public(HashMap[uint256, uint256])

# --- system buckets (USD WAD) ------------------------------------------------------------

# Cash of the vault's pool (the counterparty of market orders) and fees not yet split
# (see packing.vy, pool word).
_pool: uint256
# Insurance fund and protocol fees (see packing.vy, treasury word).
_treasury: uint256
# Risk-book address and header, fee split, max mark age (see packing.vy, system word).
_system: uint256
# @notice The liquidity vault contract (may move pool cash).
vault: public(address)

# --- markets -----------------------------------------------------------------------------

# @notice Number of listed markets; ids are 0 .. market_count - 1.
market_count: public(uint256)
_mark: uint256[c.MAX_MARKETS]
_oi: uint256[c.MAX_MARKETS]
_pool_sums: uint256[c.MAX_MARKETS]
_params: uint256[c.MAX_MARKETS]

# --- risk book ---------------------------------------------------------------------------

# @notice Number of risk-book updates so far.
risk_book_version: public(uint256)
# @notice Seconds between `propose_risk_book` and the earliest `set_risk_book` of that
#         book; 0 (a local development chain) publishes at once.
risk_book_delay: public(uint256)
# @dev keccak256 of a proposed book's bytes => earliest publication time (0: none; the
#      time is in the RiskBookProposed event).
risk_book_eta: HashMap[bytes32, uint256]
# @notice Largest change of any shock per update (bp).
max_shock_step_bps: public(uint256)
# @notice Largest change of any margin ratio (imr_min, imr_slope, floor, mmr) per update (bp).
max_ratio_step_bps: public(uint256)

# @notice Non-settlement collateral the vault's pool took over from accounts with bad
#         debt (bought at the mark less the haircut; token amount scaled to 18 decimals),
#         per collateral index; counted in vault equity and sold with `buy_collateral`.
seized_collateral: public(HashMap[uint256, uint256])

# --- loss caps -----------------------------------------------------------------------------

# @notice Fee (USD WAD) paid from the account to whoever triggers its loss cap.
loss_cap_fee: public(uint256)
# @notice Forced loss-cap close-outs per market in the current window: window start
#         (block time) << 128 | base size closed in it (WAD). See modules/trading.vy.
loss_cap_window: public(uint256[c.MAX_MARKETS])

# --- bad-debt provision ----------------------------------------------------------------------

# @notice Bad debt provisioned against the vault (USD WAD): the sum over accounts under
#         liquidation of max(0, -equity) at their last liquidation step. The lens subtracts
#         what insurance cannot cover from vault equity, so LPs share a deficit from the
#         moment its liquidation starts, not from its settlement.
bad_debt_provision: public(uint256)
# @dev Each account's part of `bad_debt_provision`.
_provision: HashMap[uint256, uint256]

# --- vault limits (modules/vault_limits.vy; appended: earlier slots keep their place) -------

# @notice Cap (WAD fraction) on the sum of every market's max_vault_exposure: market
#         parameters that would take the sum above it are refused.
max_total_exposure: public(uint256)
# @notice PnL cap (WAD fraction of pool equity): while traders' net unrealised profit in a
#         market exceeds it, anyone may auto-deleverage that market's profitable positions.
max_pnl_factor: public(uint256)
# @notice Auto-deleveraging for the PnL cap stops at this fraction (WAD) of pool equity.
adl_target_factor: public(uint256)

# --- signed orders (ClearinghouseOrders.vy) ------------------------------------------------

# @dev Per account, per nonce >> 7: two bits per nonce (bit 2k: partly filled, its amount
#      in `_order_filled`; bit 2k + 1: done, filled completely or cancelled).
_order_bits: HashMap[uint256, HashMap[uint256, uint256]]
# @dev Base size filled so far of a partly filled order, by EIP-712 digest.
_order_filled: HashMap[bytes32, uint256]

# --- delayed vault orders (modules/delayed.vy; appended: earlier slots keep their place) ---


# `account` committed a vault order of `size_delta` in `market` at `commit_time`: it fills
# at the first price observed at or after commit_time + the market's min_delay, once
# anyone calls `settle_order`, who earns `keeper_fee` (USD WAD).
event DelayedOrderCommitted:
    account: indexed(uint256)
    market: indexed(uint256)
    size_delta: int256
    acceptable_price: uint256
    commit_time: uint256
    keeper_fee: uint256


# `keeper` settled the account's delayed order: its `Fill` precedes this event; the
# oracle's price was observed at `price_time` (>= commit time + min delay).
event DelayedOrderSettled:
    account: indexed(uint256)
    market: indexed(uint256)
    keeper: indexed(address)
    price: uint256
    price_time: uint256
    keeper_fee: uint256


# The account's delayed order was removed unfilled by `sender`: by its owner or an
# operator before its settlement window opened, or by anyone once expired.
event DelayedOrderCancelled:
    account: indexed(uint256)
    market: indexed(uint256)
    sender: indexed(address)
    expired: bool


event DelayedParamsUpdated:
    market: indexed(uint256)
    old_config: uint256
    new_config: uint256


# @notice Delayed orders of each market (modules/delayed.vy `_config` layout): min_delay
#         (s) | max_age (s) << 32 | keeper_fee (USD WAD) << 64 | mode << 192; 0 = none.
delayed_config: public(uint256[c.MAX_MARKETS])
# @notice The pending delayed order of (account, market) (modules/delayed.vy `_order`
#         layout): size int96 | acceptable price u96 << 96 | commit time u40 << 192 |
#         keeper fee (1e-4 USD) u24 << 232; 0 = none.
delayed_order: public(HashMap[uint256, uint256[c.MAX_MARKETS]])
# @dev Per market, the risk book's market word 0 with a copy of the pause bit
#      (modules/packing.vy "market risk word"; written only by modules/governance.vy): the
#      one word a trade's can-add-risk check reads (trading._require_can_add_risk).
_risk: uint256[c.MAX_MARKETS]
# @dev Set while `settle_order` fills: the one path by which an adding vault trade of a
#      delayed market may pass trading._pool_trade.
_delayed_fill: transient(bool)


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address):
    """
    @dev Lists the settlement token as collateral index 0 and sets defaults.
    """
    assert oracle.address != empty(address), "clearinghouse: zero oracle"
    assert settlement_token != empty(address), "clearinghouse: zero token"
    ORACLE = oracle
    decimals: uint256 = convert(staticcall IERC20Detailed(settlement_token).decimals(), uint256)
    assert decimals <= 18, "clearinghouse: token decimals above 18"
    SETTLEMENT_SCALE = 10**(18 - decimals)
    self.collateral_token[0] = settlement_token
    self._collateral_index[settlement_token] = 1
    self.collateral_scale[0] = SETTLEMENT_SCALE
    self.collateral_cap[0] = max_value(uint256)
    self.collateral_count = 1
    self.max_shock_step_bps = 1_000
    self.max_ratio_step_bps = 200
    # 10% of fees to insurance, marks valid 60 s, no risk book yet
    self._system = packing._initial_system()
    self.loss_cap_fee = 5 * 10**18
    # exposure caps add up to at most the pool's equity; ADL from 45% down to 40% (GMX v2's
    # MAX_PNL_FACTOR_FOR_ADL / MIN_PNL_FACTOR_AFTER_ADL style)
    self.max_total_exposure = 10**18
    self.max_pnl_factor = 45 * 10**16
    self.adl_target_factor = 40 * 10**16


@internal
@view
def _trader_pnl(m: uint256) -> int256:
    """
    @dev Traders' net unrealised PnL in market `m` net of the funding they owe, at the
         cached mark: skew x price - sum of cost bases - funding owed (minus the pool's
         claim, as ClearinghouseLens.vault_equity sums it). Each word read once.
    """
    oi: uint256 = self._oi[m]
    skew: int256 = packing._oi_skew(oi)
    mark: uint256 = self._mark[m]
    sums: uint256 = self._pool_sums[m]
    owed: int256 = fp._div_floor(
        skew * packing._mark_index(mark), packing.PICO_PER_USD
    ) - packing._hi_i128(sums)
    price_pnl: int256 = skew * convert(packing._mark_price(mark), int256) // c.IWAD - (
        packing._lo_i128(sums)
    )
    return price_pnl - owed


@internal
@view
def _pool_equity() -> int256:
    """
    @dev Pool equity for the vault's limits, USD WAD, at the cached marks: the pool's
         raw cash + its unrealised PnL and funding in every market - the bad-debt
         provision insurance does not cover (seized collateral and unswept fees left
         out: at most the lens's `vault_equity`). A trader's loss counts as the pool's
         gain only as far as the trader can pay it: a deficit is provisioned. ADL's cap
         and LP exits measure against it (review 5, R5-1: a loss the pool carries in one
         market shrinks what the others may expose). Mirrored by
         perpdex/sdk/math/vault_limits.py `pool_equity`.
    """
    equity: int256 = packing._lo_i128(self._pool)
    for m: uint256 in range(c.MAX_MARKETS):
        if m == self.market_count:
            break
        equity -= self._trader_pnl(m)
    provision: uint256 = self.bad_debt_provision
    insurance: uint256 = packing._treasury_insurance(self._treasury)
    if provision > insurance:
        equity -= convert(provision - insurance, int256)
    return equity


@internal
@view
def _exposure_limit(m: uint256, skew: int256, price: uint256, f: uint256) -> uint256:
    """
    @dev THE vault exposure rule (issue 9, property 4; docs/security.md row "4. vault
         limits"): the most vault exposure (|skew| x price, USD WAD) market `m` may carry
         at trader skew `skew` and `price`: `f` (its max_vault_exposure) x the pool's raw
         cash plus its unrealised loss in that market (sum of cost bases - skew x price,
         when negative), 0 when that is not positive. Every path measures the cap with it:
         trader fills (trading._check_caps, at the fill's skew and cash), LP exits
         (treasury.vault_withdraw, with headroom, at the cash left) and auto-deleveraging
         (vault_limits, with full pool equity besides). Mirrored by
         perpdex/sdk/math/vault_limits.py `exposure_limit`.
    """
    # Cannot overflow (every caller passes a skew of an open-interest word, below 2**128
    # in magnitude, a price of at most MAX_PRICE < 2**88 and f < 2**64): |skew x price|
    # < 2**216 and |base| < 2**158; SDIV truncates toward zero as the checked `//` does.
    base: int256 = unsafe_add(
        packing._lo_i128(self._pool),
        min(
            unsafe_sub(
                packing._lo_i128(self._pool_sums[m]),
                unsafe_div(unsafe_mul(skew, convert(price, int256)), c.IWAD),
            ),
            0,
        ),
    )
    if base <= 0:
        return 0
    return unsafe_div(unsafe_mul(convert(base, uint256), f), c.WAD)
