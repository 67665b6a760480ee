# pragma version ~=0.4.3
"""
@title Clearinghouse engine: settlement, marks, funding and the margin scan
@custom:contract-name engine
@license MIT
@notice The internal machinery both clearinghouse deployables share:
        `_fill` / `_settle_side` is THE settlement path (account A trades size d with
        counterparty B at price P; B is the vault's pool for market orders, a keeper's
        account for liquidation auctions); `_touch` reads the oracle and accrues
        funding; `_scan` computes equity and the initial / maintenance requirement of an
        account in one pass (formulas in modules/margin.vy); `_check_initial` is the one
        margin gate every risk-adding action ends in.
"""

from ethereum.ercs import IERC20
from . import state
from snekmate.utils import pausable
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import pricing
from . import funding
from . import margin
from . import positions

uses: state
uses: pausable


@internal
def _debit(account: uint256, hdr: uint256, idx: uint256, amount: uint256) -> uint256:
    """
    @dev Takes `amount` token units out of a balance that holds them; returns the header.
    """
    wad: int256 = convert(amount * state.collateral_scale[idx], int256)
    bal: int256 = state._balance[account][idx]
    assert bal >= wad, "clearinghouse: insufficient balance"
    state._balance[account][idx] = bal - wad
    if idx != 0 and bal == wad:
        new_hdr: uint256 = packing._with_collateral(hdr, idx, False)
        state._header[account] = new_hdr
        return new_hdr
    return hdr


@internal
def _pool_trade(
    account: uint256, hdr: uint256, m: uint256, delta: int256, acceptable: uint256, reduce_only: bool
) -> uint256:
    """
    @dev A market order against the vault's pool. Returns the fill price.
    """
    assert delta != 0, "clearinghouse: zero size"
    assert m < state.market_count, "clearinghouse: unknown market"
    p: packing.MarketParams = packing._unpack_params(state._params_a[m], state._params_b[m])
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = self._touch_with(m, p)
    size: int256 = packing._pos_size(state._pos[account][m])
    adds: bool = size == 0 or (size > 0) == (delta > 0) or abs(delta) > abs(size)
    if reduce_only:
        assert not adds, "clearinghouse: not reduce-only"
    if adds:
        self._require_can_add_risk(m, p, flags)
    oi: uint256 = state._oi[m]
    skew: int256 = convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)
    fill: uint256 = pricing._fill_price(price, skew, delta, p.skew_scale)
    if delta > 0:
        assert fill <= acceptable, "clearinghouse: price worse than acceptable"
    else:
        assert fill >= acceptable, "clearinghouse: price worse than acceptable"
    fee: uint256 = pricing._fee(fill, skew, delta, p.maker_fee, p.taker_fee)
    new_hdr: uint256 = self._fill(account, hdr, m, delta, fill, index, state.POOL, fee)
    self._collect_fee(account, fee)
    if adds:
        self._check_caps(m, p, oi, skew, skew + delta, price)
    if adds or new_hdr & c.ACCOUNT_PORTFOLIO != 0:
        self._check_after_trade(account, new_hdr, m, size, adds)
    return fill


@internal
def _fill(
    account: uint256,
    hdr: uint256,
    m: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    counterparty: uint256,
    fee: uint256,
) -> uint256:
    """
    @dev THE settlement path: `account` trades `delta` at `price` with `counterparty`
         (state.POOL for the vault, else another account, which takes -delta). Each side
         settles funding, realises PnL against the pool, and updates open interest and
         the pool's sums. Returns `account`'s new header.
    """
    new_hdr: uint256 = self._settle_side(account, hdr, m, delta, price, index, counterparty, fee)
    if counterparty != state.POOL:
        self._settle_side(counterparty, state._header[counterparty], m, -delta, price, index, account, 0)
    return new_hdr


@internal
def _settle_side(
    account: uint256,
    hdr: uint256,
    m: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    counterparty: uint256,
    fee: uint256,
) -> uint256:
    pw: uint256 = state._pos[account][m]
    size: int256 = packing._pos_size(pw)
    cost: int256 = packing._pos_cost(pw)
    funding_paid: int256 = 0
    old_snap: int256 = index
    if size != 0:
        d: int256 = packing._pos_funding_delta(pw, index)
        old_snap = index - d
        funding_paid = positions._funding_owed(size, d)
    new_size: int256 = 0
    new_cost: int256 = 0
    realized: int256 = 0
    new_size, new_cost, realized = positions._apply_fill(size, cost, delta, price)
    cash: int256 = realized - funding_paid
    if cash != 0:
        state._balance[account][0] += cash
        state.pool_cash -= cash
    # pool sums: sum of cost bases and of size * funding snapshot over trader positions
    sums: uint256 = state._pool_sums[m]
    state._pool_sums[m] = packing._pack_i128(
        packing._lo_i128(sums) + new_cost - cost,
        packing._hi_i128(sums) + (new_size * index - size * old_snap) // packing.PICO_PER_USD,
    )
    oi: uint256 = state._oi[m]
    long_oi: int256 = convert(oi & packing.MASK_128, int256)
    short_oi: int256 = convert(oi >> 128, int256)
    if size > 0:
        long_oi -= size
    else:
        short_oi += size
    if new_size > 0:
        long_oi += new_size
    else:
        short_oi -= new_size
    state._oi[m] = packing._pack_u128(convert(long_oi, uint256), convert(short_oi, uint256))
    if new_size == 0:
        state._pos[account][m] = 0
    else:
        state._pos[account][m] = packing._pack_pos(new_size, new_cost, index)
    new_hdr: uint256 = packing._with_position(hdr, m, new_size != 0)
    if new_hdr != hdr:
        state._header[account] = new_hdr
    log state.Fill(
        account=account,
        market=m,
        counterparty=counterparty,
        size_delta=delta,
        price=price,
        fee=fee,
        realized_pnl=realized,
        funding_paid=funding_paid,
        size=new_size,
    )
    return new_hdr


@internal
def _collect_fee(account: uint256, fee: uint256):
    """
    @dev Charges a trading fee and splits it between insurance, protocol and the pool.
    """
    if fee == 0:
        return
    state._balance[account][0] -= convert(fee, int256)
    insurance_share: uint256 = 0
    protocol_share: uint256 = 0
    age: uint256 = 0
    insurance_share, protocol_share, age = packing._system(state._system)
    to_insurance: uint256 = fee * insurance_share // c.WAD
    to_protocol: uint256 = fee * protocol_share // c.WAD
    if to_insurance != 0 or to_protocol != 0:
        tw: uint256 = state._treasury
        state._treasury = packing._pack_u128(
            (tw & packing.MASK_128) + to_insurance, (tw >> 128) + to_protocol
        )
    state.pool_cash += convert(fee - to_insurance - to_protocol, int256)


@internal
@view
def _require_can_add_risk(m: uint256, p: packing.MarketParams, flags: uint256):
    assert not pausable.paused, "clearinghouse: paused"
    assert not p.paused, "clearinghouse: market paused"
    assert flags & c.FLAG_SEQUENCER_DOWN == 0, "clearinghouse: sequencer down"
    assert flags & c.FLAG_SEQUENCER_GRACE == 0, "clearinghouse: sequencer grace period"
    assert flags & c.FLAG_DEGRADED == 0, "clearinghouse: oracle degraded"
    book: address = state.risk_book
    assert book != empty(address), "clearinghouse: no risk book"
    assert m < margin._header(margin._book_word(book, 0)).n_markets, "clearinghouse: market not in risk book"


@internal
@view
def _check_caps(m: uint256, p: packing.MarketParams, old_oi: uint256, skew: int256, new_skew: int256, price: uint256):
    """
    @dev Open-interest cap per side and the vault's exposure cap, for risk-adding fills.
    """
    oi: uint256 = state._oi[m]
    long_oi: uint256 = oi & packing.MASK_128
    short_oi: uint256 = oi >> 128
    if long_oi > old_oi & packing.MASK_128:
        assert long_oi <= p.max_oi, "clearinghouse: open interest cap reached"
    if short_oi > old_oi >> 128:
        assert short_oi <= p.max_oi, "clearinghouse: open interest cap reached"
    if abs(new_skew) > abs(skew):
        exposure: uint256 = convert(abs(new_skew), uint256) * price // c.WAD
        cash: int256 = state.pool_cash
        limit: uint256 = 0
        if cash > 0:
            limit = convert(cash, uint256) * p.max_vault_exposure // c.WAD
        assert exposure <= limit, "clearinghouse: vault exposure cap reached"


@internal
def _check_after_trade(account: uint256, hdr: uint256, m: uint256, old_size: int256, adds: bool):
    """
    @dev A trade must leave the account at or above initial margin, unless it is
         reduce-only and does not raise the requirement (portfolio mode, where closing a
         hedge leg can raise it).
    """
    self._refresh_stale(hdr)
    s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
    if s.equity >= convert(s.initial, int256):
        return
    assert not adds, "clearinghouse: below initial margin"
    before: state.MarginScan = self._scan(account, hdr, False, False, m, old_size)
    assert s.initial <= before.initial, "clearinghouse: below initial margin"


@internal
def _check_initial(account: uint256, hdr: uint256, reason: String[64]):
    """
    @dev The one margin gate for withdrawals, transfers, mode switches and risk-adding
         trades: equity >= initial requirement at fresh marks. Without positions only the
         balances count (equity must not be negative).
    """
    if packing._position_count(hdr) == 0 and packing._collateral_bitmap(hdr) == 0:
        assert state._balance[(account)][0] >= 0, reason
        return
    self._refresh_stale(hdr)
    s: state.MarginScan = self._scan(account, hdr, True, False, state.NO_OVERRIDE, 0)
    assert s.equity >= convert(s.initial, int256), reason


@internal
def _touch(m: uint256) -> (uint256, uint256, int256):
    return self._touch_with(m, packing._unpack_params(state._params_a[m], state._params_b[m]))


@internal
def _touch_with(m: uint256, p: packing.MarketParams) -> (uint256, uint256, int256):
    """
    @dev Reads the oracle (which records its time-weighted price), accrues funding over
         the time since the last touch at the new price, and caches both in the mark word.
    """
    price: uint256 = 0
    flags: uint256 = 0
    price, flags = extcall state.ORACLE.observe(m)
    mw: uint256 = state._mark[m]
    index: int256 = packing._mark_index(mw)
    last: uint256 = packing._mark_time(mw)
    rate: int256 = packing._mark_rate(mw)
    if last != 0 and block.timestamp > last:
        oi: uint256 = state._oi[m]
        skew: int256 = convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)
        delta_index: int256 = 0
        rate, delta_index = funding._accrue(
            rate,
            block.timestamp - last,
            skew,
            p.skew_scale,
            p.max_funding_velocity,
            p.max_funding_rate,
            price,
        )
        index += delta_index
    state._mark[m] = packing._pack_mark(price, block.timestamp, index, rate)
    log state.MarkUpdated(market=m, price=price, funding_rate=rate, funding_index=index)
    return price, flags, index


@internal
def _refresh_stale(hdr: uint256):
    """
    @dev Re-reads the oracle for every market of the account whose cached mark is older
         than `max_mark_age`, so a margin check never values risk at an old price.
    """
    bitmap: uint256 = packing._positions_bitmap(hdr)
    age: uint256 = packing._system(state._system)[2]
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1 and packing._mark_time(state._mark[m]) + age < block.timestamp:
            self._touch(m)
    self._refresh_collateral_marks(hdr)


@internal
def _refresh_collateral_marks(hdr: uint256):
    cbits: uint256 = packing._collateral_bitmap(hdr)
    if cbits == 0:
        return
    age: uint256 = packing._system(state._system)[2]
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 1:
            m: uint256 = state.collateral_market[i]
            if packing._mark_time(state._mark[m]) + age < block.timestamp:
                self._touch(m)


@internal
@view
def _scan(
    account: uint256,
    hdr: uint256,
    with_equity: bool,
    use_twap: bool,
    override_market: uint256,
    override_size: int256,
) -> state.MarginScan:
    """
    @dev One pass over the account's positions: equity (if asked), isolated and
         portfolio requirements. Prices are the cached marks, or the oracle's
         time-weighted prices when `use_twap`. `override_market`/`override_size`
         substitute one position's size (requirement only), to price the book as it was
         before a trade.
    """
    s: state.MarginScan = empty(state.MarginScan)
    bitmap: uint256 = packing._positions_bitmap(hdr)
    if override_market < c.MAX_MARKETS:
        bitmap |= 1 << override_market
    if with_equity:
        s.equity = self._collateral_value(account, hdr, use_twap)
    if bitmap == 0:
        return s
    book: address = state.risk_book
    bh: margin.BookHeader = margin._header(margin._book_word(book, 0))
    n_s: uint256 = bh.n_scenarios
    losses: int256[c.MAX_SCENARIOS] = empty(int256[c.MAX_SCENARIOS])
    gross_raw: uint256 = 0
    addon: uint256 = 0
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 0:
            continue
        pw: uint256 = state._pos[account][m]
        size: int256 = packing._pos_size(pw)
        if m == override_market:
            size = override_size
        if size == 0:
            continue
        mw: uint256 = state._mark[m]
        price: uint256 = packing._mark_price(mw)
        if use_twap:
            price = staticcall state.ORACLE.twap(m)
        # |size| < 2**95 and price < 2**88 (packed widths), so |value| < 2**183.
        value: int256 = size * convert(price, int256)
        abs_value: uint256 = convert(abs(value), uint256)
        abs_size: uint256 = convert(abs(size), uint256)
        notional: uint256 = (abs_value + c.WAD - 1) // c.WAD
        data: Bytes[64] = slice(book.code, 1 + margin.HEADER_BYTES + margin.MARKET_BYTES * m, 64)
        w0: uint256 = extract32(data, 0, output_type=uint256)
        w1: uint256 = extract32(data, 32, output_type=uint256)
        iso: uint256 = 0
        slope: uint256 = 0
        iso, slope = margin._isolated(notional, abs_size, w0)
        s.isolated += iso
        s.notional += notional
        addon += slope
        gross_raw += abs_value
        for k: uint256 in range(c.MAX_SCENARIOS):
            if k == n_s:
                break
            # shock k is a u16 biased by 32768 at bits 16k; |value * shock| < 2**198 and
            # at most 16 positions add up, so unsafe arithmetic cannot overflow.
            shock: int256 = unsafe_sub(convert((w1 >> (16 * k)) & 65_535, int256), 32_768)
            losses[k] = unsafe_sub(losses[k], unsafe_mul(value, shock))
        if with_equity:
            s.equity += fp._div_floor(value, c.IWAD) - packing._pos_cost(pw)
            s.equity -= positions._funding_owed(size, packing._pos_funding_delta(pw, packing._mark_index(mw)))
    worst: int256 = 0
    for k: uint256 in range(c.MAX_SCENARIOS):
        if k == n_s:
            break
        worst = max(worst, losses[k])
    s.initial = margin._combine(s.isolated, worst, gross_raw, addon, bh.floor_bps, hdr & c.ACCOUNT_PORTFOLIO != 0)
    s.maintenance = fp._mul_div(s.initial, bh.mmr_bps, c.BPS, True)
    return s


@internal
@view
def _collateral_value(account: uint256, hdr: uint256, use_twap: bool) -> int256:
    """
    @dev Settlement balance plus every other token at its price less its haircut
         (rounded down).
    """
    value: int256 = state._balance[account][0]
    cbits: uint256 = packing._collateral_bitmap(hdr)
    if cbits == 0:
        return value
    for i: uint256 in range(1, c.MAX_COLLATERALS):
        if cbits >> i == 0:
            break
        if (cbits >> i) & 1 == 0:
            continue
        bal: int256 = state._balance[account][i]
        m: uint256 = state.collateral_market[i]
        price: uint256 = packing._mark_price(state._mark[m])
        if use_twap:
            price = staticcall state.ORACLE.twap(m)
        worth: uint256 = fp._mul_div(convert(bal, uint256), price * (c.WAD - state.collateral_haircut[i]), c.WAD * c.WAD, False)
        value += convert(worth, int256)
    return value


@internal
def _pay_out(receiver: address, amount: uint256):
    """
    @dev Transfers `amount` USD WAD (rounded down to token units) of settlement token.
    """
    units: uint256 = amount // state.SETTLEMENT_SCALE
    if units == 0:
        return
    state.collateral_held[0] -= units
    assert extcall IERC20(state.collateral_token[0]).transfer(receiver, units, default_return_value=True), "clearinghouse: transfer failed"
    # the WAD remainder below one token unit stays with the protocol
    dust: uint256 = amount - units * state.SETTLEMENT_SCALE
    if dust != 0:
        state._treasury += dust << 128


@internal
@pure
def _owner(account: uint256) -> address:
    return convert(account >> 96, address)


@internal
@view
def _require_exists(account: uint256) -> uint256:
    hdr: uint256 = state._header[account]
    assert hdr & c.ACCOUNT_EXISTS != 0, "clearinghouse: unknown account"
    return hdr


@internal
@view
def _require_owner(account: uint256) -> uint256:
    hdr: uint256 = self._require_exists(account)
    assert msg.sender == self._owner(account), "clearinghouse: not account owner"
    return hdr


@internal
@view
def _require_trader(account: uint256) -> uint256:
    hdr: uint256 = self._require_exists(account)
    assert msg.sender == self._owner(account) or state.is_operator[account][msg.sender], "clearinghouse: not authorized"
    return hdr


@internal
@view
def _token_index(token: address) -> uint256:
    idx: uint256 = state._collateral_index[token]
    assert idx != 0, "clearinghouse: unknown token"
    return idx - 1


# --- self-only entry points (exported by the Clearinghouse, called by its extensions) ---


@internal
@view
def _only_self():
    assert msg.sender == self, "clearinghouse: internal entry point"


@external
def engine_touch(market: uint256) -> (uint256, uint256, int256):
    """
    @notice Self-only: reads the oracle for `market` and accrues funding.
    @return (price, oracle flags, funding index).
    """
    self._only_self()
    assert market < state.market_count, "clearinghouse: unknown market"
    return self._touch(market)


@external
def engine_refresh_account(account: uint256, stale_only: bool):
    """
    @notice Self-only: refreshes the marks of every market the account holds (positions
            and collateral), or only the stale ones.
    """
    self._only_self()
    hdr: uint256 = state._header[account]
    if stale_only:
        self._refresh_stale(hdr)
        return
    bitmap: uint256 = packing._positions_bitmap(hdr)
    for m: uint256 in range(c.MAX_MARKETS):
        if bitmap >> m == 0:
            break
        if (bitmap >> m) & 1 == 1:
            self._touch(m)
    self._refresh_collateral_marks(hdr)


@external
def engine_check_initial(account: uint256, reason: String[64]):
    """
    @notice Self-only: the margin gate (equity >= initial requirement at fresh marks).
    """
    self._only_self()
    self._check_initial(account, state._header[account], reason)


@external
def engine_pool_trade(
    account: uint256, market: uint256, size_delta: int256, acceptable_price: uint256, reduce_only: bool
) -> uint256:
    """
    @notice Self-only: a market order against the vault's pool through the settlement path.
    @return The fill price.
    """
    self._only_self()
    return self._pool_trade(account, state._header[account], market, size_delta, acceptable_price, reduce_only)
