# pragma version ~=0.4.3
"""
@title perpdex lens: quotes, account summaries and liquidation prices
@custom:contract-name ClearinghouseLens
@license MIT
@notice Read-only figures a trader needs before and after a trade, computed with the same
        pure modules the Clearinghouse uses (positions, pricing, funding, margin), over
        state read through the Clearinghouse's views. Split off the Clearinghouse to keep
        its bytecode under the 24 KB limit (the curve-stablecoin ControllerView pattern).
        tests/integration/test_lens.py proves the lens's equity and requirements equal the
        Clearinghouse's own margin scan, and the SDK mirror (perpdex/sdk/math.py) equals
        the lens to the wei.

        Prices: an account summary uses the Clearinghouse's cached marks (like its margin
        view); a quote re-reads the traded market's oracle median and accrues its funding
        exactly as the trade would, prices collateral on that market at the new price,
        and re-reads every other stale mark the trade's margin check would re-read, so in
        the same block the quote's fill price, fee and resulting margin are what the trade
        produces.

        Liquidation price of a position: the price of that market, every other price held,
        at which equity equals the maintenance requirement, found by integer bisection
        (MAX_BISECTION steps) below the mark for a long, above it (up to
        LIQ_SEARCH_CEILING times the mark) for a short; 0 when there is none in range.
"""

from .interfaces import IClearinghouse
from .modules import constants as c
from .modules import fixed_point as fp
from .modules import packing
from .modules import pricing
from .modules import funding
from .modules import margin
from .modules import positions


interface IOracle:
    def latest(market: uint256) -> (uint256, uint256): view


struct Leg:
    market: uint256
    size: int256
    cost: int256
    funding_owed: int256
    price: uint256
    w0: uint256
    w1: uint256


struct Totals:
    losses: int256[c.MAX_SCENARIOS]
    gross_raw: uint256
    isolated: uint256
    addon: uint256
    notional: uint256


struct PositionView:
    market: uint256
    size: int256
    cost: int256
    entry_price: uint256
    mark_price: uint256
    notional: uint256
    unrealized_pnl: int256
    funding_owed: int256
    isolated_initial: uint256
    liquidation_price: uint256


struct AccountView:
    portfolio: bool
    collateral_value: int256
    unrealized_pnl: int256
    funding_owed: int256
    equity: int256
    initial: uint256
    maintenance: uint256
    isolated_initial: uint256
    floor: uint256
    addon: uint256
    health: uint256
    binding_scenario: uint256
    scenario_losses: DynArray[int256, c.MAX_SCENARIOS]
    positions: DynArray[PositionView, c.MAX_POSITIONS]


struct QuoteView:
    oracle_price: uint256
    fill_price: uint256
    price_impact: int256
    fee: uint256
    realized_pnl: int256
    funding_paid: int256
    equity_after: int256
    initial_after: uint256
    maintenance_after: uint256
    health_after: uint256
    liquidation_price_after: uint256


struct Ctx:
    n_s: uint256
    floor_bps: uint256
    mmr_bps: uint256
    portfolio: bool


MAX_BISECTION: constant(uint256) = 128
LIQ_SEARCH_CEILING: constant(uint256) = 100
# Health reported when there is no maintenance requirement.
NO_RISK_HEALTH: constant(uint256) = max_value(uint256)
NO_SCENARIO: constant(uint256) = max_value(uint256)
NO_MARKET: constant(uint256) = max_value(uint256)

# @notice The Clearinghouse this lens reads.
clearinghouse: public(immutable(IClearinghouse))
_ORACLE: immutable(IOracle)


@deploy
def __init__(clearinghouse_: IClearinghouse):
    """
    @param clearinghouse_ The Clearinghouse to read.
    """
    clearinghouse = clearinghouse_
    _ORACLE = IOracle(staticcall clearinghouse_.ORACLE())


# --- public views --------------------------------------------------------------------------


@external
@view
def vault_equity() -> int256:
    """
    @notice The vault pool's equity (USD WAD) at the cached marks: its cash (with its share
            of fees not yet swept), minus traders' unrealised PnL, plus the funding traders
            owe it, plus the collateral it took over from accounts with bad debt (at the
            mark less the haircut), minus the bad debt provisioned for accounts under
            liquidation that the insurance fund cannot cover (max(0, provision -
            insurance)). The LiquidityVault prices its shares with this.
    """
    equity: int256 = staticcall clearinghouse.pool_cash()
    provision: uint256 = staticcall clearinghouse.bad_debt_provision()
    if provision != 0:
        insurance: uint256 = staticcall clearinghouse.insurance_fund()
        if provision > insurance:
            equity -= convert(provision - insurance, int256)
    n: uint256 = staticcall clearinghouse.market_count()
    for m: uint256 in range(c.MAX_MARKETS):
        if m == n:
            break
        long_oi: uint256 = 0
        short_oi: uint256 = 0
        long_oi, short_oi = staticcall clearinghouse.open_interest(m)
        sum_cost: int256 = 0
        sum_funding: int256 = 0
        sum_cost, sum_funding = staticcall clearinghouse.pool_sums(m)
        if long_oi == 0 and short_oi == 0 and sum_cost == 0 and sum_funding == 0:
            continue
        skew: int256 = convert(long_oi, int256) - convert(short_oi, int256)
        price: uint256 = 0
        ts: uint256 = 0
        index: int256 = 0
        rate: int256 = 0
        price, ts, index, rate = staticcall clearinghouse.mark(m)
        trader_pnl: int256 = skew * convert(price, int256) // c.IWAD - sum_cost
        # rounded down: the vault never books more funding than the accounts owe
        funding_owed: int256 = fp._div_floor(skew * index, packing.PICO_PER_USD) - sum_funding
        equity += funding_owed - trader_pnl
    # collateral the pool took over from accounts with bad debt, at the mark less the
    # haircut (what the pool paid for it; rounded down)
    n_tokens: uint256 = staticcall clearinghouse.collateral_count()
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if i >= n_tokens:
            break
        held: uint256 = staticcall clearinghouse.seized_collateral(i)
        if held == 0:
            continue
        price: uint256 = (
            staticcall clearinghouse.mark(staticcall clearinghouse.collateral_market(i))
        )[0]
        unit: uint256 = price * (c.WAD - staticcall clearinghouse.collateral_haircut(i)) // c.WAD
        equity += convert(held * unit // c.WAD, int256)
    return equity


@external
@view
def account_summary(account: uint256) -> AccountView:
    """
    @notice Equity, PnL, funding, requirements, health, the loss under every scenario and
            each position with its liquidation price, at the cached marks (USD WAD).
    """
    hdr: uint256 = staticcall clearinghouse.account_header(account)
    ctx: Ctx = self._ctx(hdr)
    legs: DynArray[Leg, c.MAX_POSITIONS] = self._load_legs(account, hdr, False, 0)
    v: AccountView = empty(AccountView)
    v.portfolio = ctx.portfolio
    v.collateral_value = self._quote_collateral_value(account, hdr, NO_MARKET, 0, False, 0)
    t: Totals = empty(Totals)
    for leg: Leg in legs:
        t = self._add(t, leg, leg.price, ctx.n_s)
        v.unrealized_pnl += positions._value_pnl(leg.size, leg.cost, leg.price)
        v.funding_owed += leg.funding_owed
    v.equity = v.collateral_value + v.unrealized_pnl - v.funding_owed
    v.initial = self._initial(t, ctx)
    v.maintenance = fp._mul_div(v.initial, ctx.mmr_bps, c.BPS, True)
    v.isolated_initial = t.isolated
    v.floor = fp._mul_div(t.gross_raw, ctx.floor_bps, c.WAD * c.BPS, True)
    v.addon = t.addon
    v.health = self._health(v.equity, v.maintenance)
    v.binding_scenario = NO_SCENARIO
    worst: int256 = 0
    for k: uint256 in range(c.MAX_SCENARIOS):
        if k == ctx.n_s:
            break
        v.scenario_losses.append(fp._div_ceil(t.losses[k], convert(c.WAD * c.BPS, int256)))
        if t.losses[k] > worst:
            worst = t.losses[k]
            v.binding_scenario = k
    for j: uint256 in range(c.MAX_POSITIONS):
        if j == len(legs):
            break
        leg: Leg = legs[j]
        iso: uint256 = 0
        slope: uint256 = 0
        leg_value: uint256 = convert(abs(leg.size), uint256) * leg.price
        notional: uint256 = (leg_value + c.WAD - 1) // c.WAD
        iso, slope = margin._isolated(
            leg_value,
            convert(abs(leg.size), uint256),
            packing._book_imr_min_bps(leg.w0),
            packing._book_imr_slope_bps(leg.w0),
            packing._book_margin_scale(leg.w0),
        )
        entry: uint256 = 0
        if leg.size != 0:
            entry = convert(abs(leg.cost * c.IWAD // leg.size), uint256)
        v.positions.append(
            PositionView(
                market=leg.market,
                size=leg.size,
                cost=leg.cost,
                entry_price=entry,
                mark_price=leg.price,
                notional=notional,
                unrealized_pnl=positions._value_pnl(leg.size, leg.cost, leg.price),
                funding_owed=leg.funding_owed,
                isolated_initial=iso,
                liquidation_price=self._liquidation_price(legs, j, v.equity, ctx),
            )
        )
    return v


@external
@view
def quote(account: uint256, market: uint256, size_delta: int256) -> QuoteView:
    """
    @notice What a market order of `size_delta` on `market` would do now: fill price
            (oracle median plus skew premium), price impact against the oracle, fee,
            realised PnL and funding settled, and the account's equity, requirements,
            health and the position's liquidation price afterwards.
    """
    assert size_delta != 0, "lens: zero size"
    assert market < staticcall clearinghouse.market_count(), "lens: unknown market"
    hdr: uint256 = staticcall clearinghouse.account_header(account)
    ctx: Ctx = self._ctx(hdr)
    q: QuoteView = empty(QuoteView)
    price: uint256 = 0
    flags: uint256 = 0
    price, flags = staticcall _ORACLE.latest(market)
    # a market without price quorum is frozen: no order would fill
    assert flags & c.FLAG_DEGRADED == 0, "lens: no price quorum"
    q.oracle_price = price
    p: packing.MarketParams = staticcall clearinghouse.market_params(market)
    long_oi: uint256 = 0
    short_oi: uint256 = 0
    long_oi, short_oi = staticcall clearinghouse.open_interest(market)
    skew: int256 = convert(long_oi, int256) - convert(short_oi, int256)
    index: int256 = self._touched_index(market, p, skew, price)
    q.fill_price = pricing._fill_price(price, skew, size_delta, p.skew_scale)
    q.price_impact = (convert(q.fill_price, int256) - convert(price, int256)) * c.IWAD // convert(
        price, int256
    )
    q.fee = pricing._fee(q.fill_price, skew, size_delta, p.maker_fee, p.taker_fee)
    # the position after the fill, settled exactly like the Clearinghouse settles it
    size: int256 = 0
    cost: int256 = 0
    snap: uint256 = 0
    size, cost, snap = staticcall clearinghouse.position(account, market)
    if size != 0:
        q.funding_paid = positions._funding_owed(size, packing._snapshot_funding_delta(snap, index))
    new_size: int256 = 0
    new_cost: int256 = 0
    new_size, new_cost, q.realized_pnl = positions._apply_fill(size, cost, size_delta, q.fill_price)
    # a size no position can hold (the Clearinghouse's packing refuses it) is out of
    # margin._isolated's bounds: refused, as the trade would be
    assert new_size <= packing.MAX_I96 and new_size >= -packing.MAX_I96, (
        "lens: position too large"
    )
    # like the Clearinghouse: a risk-adding trade (or any trade of a portfolio account)
    # re-reads every mark older than max_mark_age before its margin check
    adds: bool = size == 0 or (size > 0) == (size_delta > 0) or abs(size_delta) > abs(size)
    refresh: bool = adds or ctx.portfolio
    max_age: uint256 = (staticcall clearinghouse.system_params()).max_mark_age
    legs: DynArray[Leg, c.MAX_POSITIONS] = self._load_legs(account, hdr, refresh, max_age)
    found: bool = False
    after: DynArray[Leg, c.MAX_POSITIONS] = []
    j: uint256 = 0
    for leg: Leg in legs:
        if leg.market == market:
            found = True
            if new_size != 0:
                j = len(after)
                after.append(self._leg(market, new_size, new_cost, 0, price))
        else:
            after.append(leg)
    if not found and new_size != 0:
        j = len(after)
        after.append(self._leg(market, new_size, new_cost, 0, price))
    collateral: int256 = (
        self._quote_collateral_value(account, hdr, market, price, refresh, max_age)
        + q.realized_pnl
        - q.funding_paid
        - convert(q.fee, int256)
    )
    t: Totals = empty(Totals)
    equity: int256 = collateral
    for leg: Leg in after:
        t = self._add(t, leg, leg.price, ctx.n_s)
        equity += positions._value_pnl(leg.size, leg.cost, leg.price) - leg.funding_owed
    q.equity_after = equity
    q.initial_after = self._initial(t, ctx)
    q.maintenance_after = fp._mul_div(q.initial_after, ctx.mmr_bps, c.BPS, True)
    q.health_after = self._health(equity, q.maintenance_after)
    if new_size != 0:
        q.liquidation_price_after = self._liquidation_price(after, j, equity, ctx)
    return q


# --- loading -------------------------------------------------------------------------------


@internal
@view
def _ctx(hdr: uint256) -> Ctx:
    book: address = staticcall clearinghouse.risk_book()
    ctx: Ctx = Ctx(n_s=0, floor_bps=0, mmr_bps=0, portfolio=hdr & c.ACCOUNT_PORTFOLIO != 0)
    if book != empty(address):
        bh: packing.BookHeader = margin._book_header_of(book)
        ctx.n_s = bh.n_scenarios
        ctx.floor_bps = bh.floor_bps
        ctx.mmr_bps = bh.mmr_bps
    return ctx


@internal
@view
def _leg(market: uint256, size: int256, cost: int256, owed: int256, price: uint256) -> Leg:
    book: address = staticcall clearinghouse.risk_book()
    data: Bytes[64] = slice(book.code, 1 + margin.HEADER_BYTES + margin.MARKET_BYTES * market, 64)
    return Leg(
        market=market,
        size=size,
        cost=cost,
        funding_owed=owed,
        price=price,
        w0=extract32(data, 0, output_type=uint256),
        w1=extract32(data, 32, output_type=uint256),
    )


@internal
@view
def _load_legs(
    account: uint256, hdr: uint256, refresh: bool, max_age: uint256
) -> DynArray[Leg, c.MAX_POSITIONS]:
    """
    @dev Every position at its cached mark; with `refresh`, a mark older than `max_age` is
         replaced by what the Clearinghouse's stale-mark refresh would write now (oracle
         median, funding accrued), as a risk-adding trade's margin check does.
    """
    legs: DynArray[Leg, c.MAX_POSITIONS] = []
    bitmap: uint256 = packing._positions_bitmap(hdr)
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if not packing._has_bit(bitmap, m):
            continue
        size: int256 = 0
        cost: int256 = 0
        snap: uint256 = 0
        size, cost, snap = staticcall clearinghouse.position(account, m)
        price: uint256 = 0
        ts: uint256 = 0
        index: int256 = 0
        rate: int256 = 0
        price, ts, index, rate = staticcall clearinghouse.mark(m)
        if refresh and ts + max_age < block.timestamp:
            price, index = self._fresh_mark(m)
        owed: int256 = positions._funding_owed(size, packing._snapshot_funding_delta(snap, index))
        legs.append(self._leg(m, size, cost, owed, price))
    return legs


@internal
@view
def _fresh_mark(m: uint256) -> (uint256, int256):
    """
    @dev The (price, funding index) a touch of market `m` would write now.
    """
    price: uint256 = (staticcall _ORACLE.latest(m))[0]
    long_oi: uint256 = 0
    short_oi: uint256 = 0
    long_oi, short_oi = staticcall clearinghouse.open_interest(m)
    p: packing.MarketParams = staticcall clearinghouse.market_params(m)
    skew: int256 = convert(long_oi, int256) - convert(short_oi, int256)
    return price, self._touched_index(m, p, skew, price)


@internal
@view
def _quote_collateral_value(
    account: uint256,
    hdr: uint256,
    traded: uint256,
    traded_price: uint256,
    refresh: bool,
    max_age: uint256,
) -> int256:
    """
    @dev Settlement balance plus other tokens at their market's price less the haircut.
         In a quote, a token priced by the traded market uses the fresh `traded_price`,
         and (with `refresh`) a stale market the price a refresh would read.
    """
    value: int256 = staticcall clearinghouse.balance_of(account, 0)
    cbits: uint256 = packing._collateral_bitmap(hdr)
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if packing._no_bits_from(cbits, i):
            break
        if not packing._has_bit(cbits, i):
            continue
        bal: int256 = staticcall clearinghouse.balance_of(account, i)
        m: uint256 = staticcall clearinghouse.collateral_market(i)
        price: uint256 = 0
        ts: uint256 = 0
        index: int256 = 0
        rate: int256 = 0
        price, ts, index, rate = staticcall clearinghouse.mark(m)
        if m == traded:
            price = traded_price
        elif refresh and ts + max_age < block.timestamp:
            price = (staticcall _ORACLE.latest(m))[0]
        haircut: uint256 = staticcall clearinghouse.collateral_haircut(i)
        value += convert(margin._collateral_worth(convert(bal, uint256), price, haircut), int256)
    return value


@internal
@view
def _touched_index(
    market: uint256, p: packing.MarketParams, skew: int256, price: uint256
) -> int256:
    """
    @dev The funding index the Clearinghouse would write when touching `market` now.
    """
    mprice: uint256 = 0
    ts: uint256 = 0
    index: int256 = 0
    rate: int256 = 0
    mprice, ts, index, rate = staticcall clearinghouse.mark(market)
    if ts == 0 or block.timestamp <= ts:
        return index
    d: int256 = 0
    rate, d = funding._accrue(
        rate,
        block.timestamp - ts,
        skew,
        p.skew_scale,
        p.max_funding_velocity,
        p.max_funding_rate,
        price,
    )
    return index + d


# --- margin arithmetic (same formulas as the Clearinghouse's _scan) -----------------------


@internal
@pure
def _add(t: Totals, leg: Leg, price: uint256, n_s: uint256) -> Totals:
    r: Totals = t
    value: int256 = leg.size * convert(price, int256)
    abs_value: uint256 = convert(abs(value), uint256)
    abs_size: uint256 = convert(abs(leg.size), uint256)
    notional: uint256 = (abs_value + c.WAD - 1) // c.WAD
    iso: uint256 = 0
    slope: uint256 = 0
    iso, slope = margin._isolated(
        abs_value,
        abs_size,
        packing._book_imr_min_bps(leg.w0),
        packing._book_imr_slope_bps(leg.w0),
        packing._book_margin_scale(leg.w0),
    )
    r.isolated += iso
    r.addon += slope
    r.notional += notional
    r.gross_raw += abs_value
    for k: uint256 in range(c.MAX_SCENARIOS):
        if k == n_s:
            break
        r.losses[k] -= value * packing._book_shock(leg.w1, k)
    return r


@internal
@pure
def _initial(t: Totals, ctx: Ctx) -> uint256:
    worst: int256 = 0
    for k: uint256 in range(c.MAX_SCENARIOS):
        if k == ctx.n_s:
            break
        worst = max(worst, t.losses[k])
    return margin._combine(t.isolated, worst, t.gross_raw, t.addon, ctx.floor_bps, ctx.portfolio)


@internal
@pure
def _health(equity: int256, maintenance: uint256) -> uint256:
    if maintenance == 0:
        return NO_RISK_HEALTH
    if equity <= 0:
        return 0
    return fp._mul_div(convert(equity, uint256), c.WAD, maintenance, False)


@internal
@pure
def _gap(base: Totals, leg: Leg, base_equity: int256, price: uint256, ctx: Ctx) -> int256:
    """
    @dev equity - maintenance with leg `leg` valued at `price` (everything else held).
    """
    t: Totals = self._add(base, leg, price, ctx.n_s)
    mm: uint256 = fp._mul_div(self._initial(t, ctx), ctx.mmr_bps, c.BPS, True)
    equity: int256 = (
        base_equity + positions._value_pnl(leg.size, leg.cost, price) - leg.funding_owed
    )
    return equity - convert(mm, int256)


@internal
@pure
def _liquidation_price(
    legs: DynArray[Leg, c.MAX_POSITIONS], j: uint256, equity: int256, ctx: Ctx
) -> uint256:
    leg: Leg = legs[j]
    base: Totals = empty(Totals)
    for i: uint256 in range(c.MAX_POSITIONS):
        if i == len(legs):
            break
        if i != j:
            base = self._add(base, legs[i], legs[i].price, ctx.n_s)
    base_equity: int256 = (
        equity - positions._value_pnl(leg.size, leg.cost, leg.price) + leg.funding_owed
    )
    if self._gap(base, leg, base_equity, leg.price, ctx) <= 0:
        return leg.price  # already at or below maintenance
    lo: uint256 = 0
    hi: uint256 = leg.price
    if leg.size > 0:
        # long: largest price in [0, mark) with gap <= 0; lo holds gap <= 0, hi gap > 0
        if self._gap(base, leg, base_equity, 0, ctx) > 0:
            return 0
    else:
        # short: smallest price above the mark with gap <= 0; lo gap > 0, hi gap <= 0
        lo = leg.price
        hi = leg.price * LIQ_SEARCH_CEILING
        if self._gap(base, leg, base_equity, hi, ctx) > 0:
            return 0
    for _: uint256 in range(MAX_BISECTION):
        if hi - lo <= 1:
            break
        mid: uint256 = (lo + hi) // 2
        below: bool = self._gap(base, leg, base_equity, mid, ctx) <= 0
        if below == (leg.size > 0):
            lo = mid
        else:
            hi = mid
    if leg.size > 0:
        return lo
    return hi
