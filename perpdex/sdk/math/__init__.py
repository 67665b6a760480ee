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

One module per contract file (tests/unit/test_sdk_math_layout.py holds them to it), from
the bottom (a module imports only those above it):
  vyper                Vyper semantics: vdiv, vmod, converts, Revert (no contract file)
  fixed_point          modules/fixed_point.vy: div_floor, div_ceil, mul_div, smul_div
  packing              modules/packing.vy: mark / position / params / pool / header / system
  state                modules/state.vy: MarginScan, fee_split
  margin               modules/margin.vy: risk book layout, isolated, combine; RiskBook codec
  positions, pricing, funding    the pure trading math of those modules
  views                modules/views.vy: Snapshot, the raw chain state at one block
  marks                modules/marks.vy: touch, strict_refresh, refresh_stale
  gates                modules/gates.vy: collateral_value, scan, check_initial
  clearinghouse_risk   ClearinghouseRisk.vy: simulate_multi (multi-leg orders)
  accounts             modules/accounts.vy: the value-out gate, withdrawable
  clearinghouse_lens   ClearinghouseLens.vy: account_summary, quote, liquidation_price
  liquidation_hooks    modules/liquidation_hooks.vy: budget bounds, per-leg transfer rules
  liquidation_auction  LiquidationAuction.vy: liq_* (discount, tranche, reward, critical...)
  trading              modules/trading.vy: pool trade (simulate_trade, pool_fill), loss-cap
                       close-outs (forced_limit, force_close)
  governance           modules/governance.vy: set_risk_book's book rules and step bounds
  oracle_router        OracleRouter.vy: source validity, quorum, sequencer flags, EMA,
                       price_time
  delayed              modules/delayed.vy: delayed-order words, settle and cancel timing

Every name of the modules above governance is re-exported here, so `from
perpdex.sdk.math import scan` and `pm.scan` work as before the split; governance and
oracle_router (rules moved in from perpdex.risk and the tests) and delayed are imported by
module.

The engine, lens and trade layers read a `views.Snapshot` (the raw chain state at one block;
`perpdex.sdk.snapshot.Snapshot.load` reads one); everything below it takes plain integers.

    snap = Snapshot.load(protocol, account)          # one block
    scan(snap)            == ch.account_margin(account)
    account_summary(snap) == lens.account_summary(account)
    quote(snap, m, d)     == lens.quote(account, m, d)            (same block)
    simulate_trade(snap, m, d, now=t)  -> what ch.trade does in a block at time t,
                                          including the account's margin after it
    simulate_multi(snap, [(m, d, bound), ...], now=t)
                                       -> what trade_multi does (one check at the end)

`quote` mirrors the lens, including its one approximation: the figures *after* the trade
value the other positions and secondary collateral at their cached marks, whereas the
trade's margin check first re-reads stale marks and the traded market's mark also prices
any collateral it backs. `simulate_trade` has no such gap.
"""

from __future__ import annotations

from perpdex.constants import (
    ACCOUNT_EXISTS,
    ACCOUNT_IN_LIQUIDATION,
    ACCOUNT_PORTFOLIO,
    BPS,
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    IWAD,
    MAX_COLLATERALS,
    MAX_MARKETS,
    MAX_POSITIONS,
    MAX_PRICE,
    MAX_SCENARIOS,
    MIN_POSITION_NOTIONAL,
    SECONDS_PER_DAY,
    WAD,
)
from perpdex.sdk.math.accounts import (
    unrealized_profit,
    value_out_free,
    withdrawable,
)
from perpdex.sdk.math.clearinghouse_lens import (
    LIQ_SEARCH_CEILING,
    MAX_BISECTION,
    NO_RISK_HEALTH,
    NO_SCENARIO,
    AccountView,
    Ctx,
    Leg,
    PositionView,
    QuoteView,
    Totals,
    account_summary,
    add_leg,
    binding_scenario,
    fresh_mark,
    gap,
    health,
    initial_requirement,
    lens_ctx,
    lens_leg,
    liquidation_price,
    load_legs,
    quote,
    quote_collateral_value,
    touched_index,
)
from perpdex.sdk.math.clearinghouse_risk import (
    MAX_LEGS,
    LegOrder,
    MultiFills,
    MultiTradeResult,
    check_multi,
    fill_multi,
    simulate_multi,
)
from perpdex.sdk.math.fixed_point import (
    div_ceil,
    div_floor,
    mul_div,
    smul_div,
)
from perpdex.sdk.math.funding import (
    accrue,
)
from perpdex.sdk.math.gates import (
    check_initial,
    collateral_value,
    scan,
)
from perpdex.sdk.math.liquidation_auction import (
    liq_critical,
    liq_discount,
    liq_healthy,
    liq_lot_value,
    liq_moved,
    liq_need,
    liq_reward,
    liq_scale,
    liq_scaled,
    liq_sell_part,
    liq_tranche,
)
from perpdex.sdk.math.liquidation_hooks import (
    LIQ_COST_SHARE,
    LIQ_MAX_KEEPER_REWARD,
    LIQ_MIN_POSITION_NOTIONAL,
    LIQ_REWARD_SHARE,
    liq_leg_part,
    liq_taker_leg_ok,
)
from perpdex.sdk.math.margin import (
    HEADER_BYTES,
    MARKET_BYTES,
    MARKETS_BYTES,
    MAX_BOOK_BYTES,
    NAME_BYTES,
    SHOCK_MAX,
    SHOCK_MIN,
    Book,
    BookHeader,
    RiskBook,
    book_header,
    combine,
    imr_min_bps,
    imr_slope_bps,
    isolated_requirement,
    margin_scale,
    shock,
)
from perpdex.sdk.math.marks import (
    _require_quorum as _require_quorum,
)
from perpdex.sdk.math.marks import (
    _touch_market as _touch_market,
)
from perpdex.sdk.math.marks import (
    _with_market as _with_market,
)
from perpdex.sdk.math.marks import (
    refresh_stale,
    strict_refresh,
    touch,
)
from perpdex.sdk.math.packing import (
    EXPOSURE_UNIT,
    FEE_UNIT,
    FEMTO_PER_WAD,
    MARKET_LISTED,
    MARKET_PAUSED,
    MASK_8,
    MASK_16,
    MASK_24,
    MASK_32,
    MASK_40,
    MASK_48,
    MASK_64,
    MASK_88,
    MASK_96,
    MASK_128,
    MAX_I56,
    MAX_I72,
    MAX_I96,
    PARAM_UNIT,
    PICO_PER_USD,
    RATE_UNIT,
    VELOCITY_UNIT,
    Mark,
    MarketParams,
    Position,
    System,
    collateral_bitmap,
    funding_delta,
    hi_i128,
    is_frozen,
    lo_i128,
    mark_index,
    mark_price,
    mark_rate,
    mark_time,
    pack_i128,
    pack_mark,
    pack_params,
    pack_pool,
    pack_pos,
    pack_system,
    pack_u128,
    pending_count,
    pending_until,
    pos_cost,
    pos_funding_delta,
    pos_size,
    pos_snapshot,
    position_count,
    positions_bitmap,
    unpack_mark,
    unpack_params,
    unpack_pool,
    unpack_system,
    with_pending,
    with_position,
)
from perpdex.sdk.math.packing import (
    _grid as _grid,
)
from perpdex.sdk.math.positions import (
    adds_risk,
    apply_fill,
    funding_owed,
    value_pnl,
)
from perpdex.sdk.math.pricing import (
    fee,
    fill_price,
    maker_size,
)
from perpdex.sdk.math.state import (
    NO_OVERRIDE,
    MarginScan,
    fee_split,
)
from perpdex.sdk.math.trading import (
    LOSS_CAP_WINDOW,
    PoolFill,
    TradeResult,
    force_close,
    forced_limit,
    pool_fill,
    require_min_position,
    simulate_trade,
)
from perpdex.sdk.math.trading import (
    _require_can_add_risk as _require_can_add_risk,
)
from perpdex.sdk.math.views import (
    CollateralInfo,
    MarketState,
    Snapshot,
)
from perpdex.sdk.math.vyper import (
    INT256_MAX,
    INT256_MIN,
    UINT256_MAX,
    Revert,
    vdiv,
    vmod,
)
from perpdex.sdk.math.vyper import (
    _signed as _signed,
)
from perpdex.sdk.math.vyper import (
    _to_i256 as _to_i256,
)
from perpdex.sdk.math.vyper import (
    _to_u256 as _to_u256,
)
from perpdex.sdk.math.vyper import (
    _u as _u,
)
from perpdex.units import NANO

__all__ = [
    "ACCOUNT_EXISTS",
    "ACCOUNT_IN_LIQUIDATION",
    "ACCOUNT_PORTFOLIO",
    "BPS",
    "EXPOSURE_UNIT",
    "FEE_UNIT",
    "FEMTO_PER_WAD",
    "FLAG_DEGRADED",
    "FLAG_SEQUENCER_DOWN",
    "FLAG_SEQUENCER_GRACE",
    "HEADER_BYTES",
    "INT256_MAX",
    "INT256_MIN",
    "IWAD",
    "LIQ_COST_SHARE",
    "LIQ_MAX_KEEPER_REWARD",
    "LIQ_MIN_POSITION_NOTIONAL",
    "LIQ_REWARD_SHARE",
    "LIQ_SEARCH_CEILING",
    "LOSS_CAP_WINDOW",
    "MARKETS_BYTES",
    "MARKET_BYTES",
    "MARKET_LISTED",
    "MARKET_PAUSED",
    "MASK_8",
    "MASK_16",
    "MASK_24",
    "MASK_32",
    "MASK_40",
    "MASK_48",
    "MASK_64",
    "MASK_88",
    "MASK_96",
    "MASK_128",
    "MAX_BISECTION",
    "MAX_BOOK_BYTES",
    "MAX_COLLATERALS",
    "MAX_I56",
    "MAX_I72",
    "MAX_I96",
    "MAX_LEGS",
    "MAX_MARKETS",
    "MAX_POSITIONS",
    "MAX_PRICE",
    "MAX_SCENARIOS",
    "MIN_POSITION_NOTIONAL",
    "NAME_BYTES",
    "NANO",
    "NO_OVERRIDE",
    "NO_RISK_HEALTH",
    "NO_SCENARIO",
    "PARAM_UNIT",
    "PICO_PER_USD",
    "RATE_UNIT",
    "SECONDS_PER_DAY",
    "SHOCK_MAX",
    "SHOCK_MIN",
    "UINT256_MAX",
    "VELOCITY_UNIT",
    "WAD",
    "AccountView",
    "Book",
    "BookHeader",
    "CollateralInfo",
    "Ctx",
    "Leg",
    "LegOrder",
    "MarginScan",
    "Mark",
    "MarketParams",
    "MarketState",
    "MultiFills",
    "MultiTradeResult",
    "PoolFill",
    "Position",
    "PositionView",
    "QuoteView",
    "Revert",
    "RiskBook",
    "Snapshot",
    "System",
    "Totals",
    "TradeResult",
    "account_summary",
    "accrue",
    "add_leg",
    "adds_risk",
    "apply_fill",
    "binding_scenario",
    "book_header",
    "check_initial",
    "check_multi",
    "collateral_bitmap",
    "collateral_value",
    "combine",
    "div_ceil",
    "div_floor",
    "fee",
    "fee_split",
    "fill_multi",
    "fill_price",
    "force_close",
    "forced_limit",
    "fresh_mark",
    "funding_delta",
    "funding_owed",
    "gap",
    "health",
    "hi_i128",
    "imr_min_bps",
    "imr_slope_bps",
    "initial_requirement",
    "is_frozen",
    "isolated_requirement",
    "lens_ctx",
    "lens_leg",
    "liq_critical",
    "liq_discount",
    "liq_healthy",
    "liq_leg_part",
    "liq_lot_value",
    "liq_moved",
    "liq_need",
    "liq_reward",
    "liq_scale",
    "liq_scaled",
    "liq_sell_part",
    "liq_taker_leg_ok",
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
    "pack_pool",
    "pack_pos",
    "pack_system",
    "pack_u128",
    "pending_count",
    "pending_until",
    "pool_fill",
    "pos_cost",
    "pos_funding_delta",
    "pos_size",
    "pos_snapshot",
    "position_count",
    "positions_bitmap",
    "quote",
    "quote_collateral_value",
    "refresh_stale",
    "require_min_position",
    "scan",
    "shock",
    "simulate_multi",
    "simulate_trade",
    "smul_div",
    "strict_refresh",
    "touch",
    "touched_index",
    "unpack_mark",
    "unpack_params",
    "unpack_pool",
    "unpack_system",
    "unrealized_profit",
    "value_out_free",
    "value_pnl",
    "vdiv",
    "vmod",
    "with_pending",
    "with_position",
    "withdrawable",
]
