# pragma version ~=0.4.3
"""
@title Vault risk limits: PnL cap and auto-deleveraging (ADL)
@custom:contract-name vault_limits
@license MIT
@notice Issue 9, property 4; docs/security.md (row "4. vault limits") states the rules.
        Exposure caps: a market's vault exposure |skew| x price is held to
        max_vault_exposure x pool equity. A trader's fill that grows |skew| is checked in
        the hot path (trading._check_caps) against a cheap, conservative figure: the pool's
        cash plus its unrealised loss in that market (its words are warm there).
        Governance keeps the caps' sum at or below max_total_exposure.
        PnL cap (GMX v2's MAX_PNL_FACTOR_FOR_ADL): while traders' net unrealised profit
        in a market exceeds max_pnl_factor x pool equity, anyone (a keeper,
        `perpdex keeper adl`) may close a profitable position of that market at the
        oracle price (no premium, no fee), just enough to bring the profit down to
        adl_target_factor x equity.
        Exposure restored: backstop takes and loss-cap close-outs are never refused by a
        cap (refusing them would leave bad debt or a breached floor), and LP exits may
        take a market to 1.5x its cap; when any of these (or a price move) leaves a
        market above its cap, against pool equity or by the trade path's rule
        (state._exposure_limit, which LP exits use too), anyone may close positions on
        the skew's side at the oracle price, just enough to come back within both: so a
        market that holds LP exits back can always be deleveraged, and no trader can
        freeze them.
        F2: a trader's reduce that the cap blocks may be paired with the ADL of a
        position on the skew's side (`close_with_adl`), so a whale at the cap cannot keep
        a trader from closing. Blocks, not "would block by some estimate": the reduce is
        tried through the trade's own path first, and only its exposure-cap refusal
        opens the ADL, sized to what the close needs (review 3, R3-4).
        Every ADL is a fill through the one settlement path: the position's funding is
        settled whole at the fill, partial closes and size-0 fills included.
        Pool equity here: cash + the pool's unrealised PnL and funding in every market at
        the cached marks (the market acted on is re-read first) - the bad-debt provision
        insurance does not cover. Seized collateral and unswept fees are left out, so the
        figure is at most the lens's `vault_equity`: ADL opens early, never late. LP
        exits are held to the cap against the same equity (review 5, R5-1), so whenever
        exits are held back by a market, its ADL is open.
        Closing at the oracle price moves a position's PnL from unrealised to realised:
        pool equity does not change, the traders' unrealised profit and the skew fall.
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import guards
from . import marks
from . import trading
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import positions
from . import pricing

uses: state
uses: guards

REASON_PNL: constant(uint256) = 1
REASON_EXPOSURE: constant(uint256) = 2
REASON_PAIRED: constant(uint256) = 3
# a paired ADL closes this much more than its (already conservative) estimate needs (bp),
# a margin for the estimate's rounding so the trader's own cap check passes
PAIRED_BUFFER_BPS: constant(uint256) = 10


@internal
@view
def _skew(m: uint256) -> int256:
    oi: uint256 = state._oi[m]
    return packing._oi_skew(oi)


@internal
@pure
def _cap(f: uint256, base: int256) -> uint256:
    """
    @dev An exposure cap (USD WAD) of fraction `f` against `base`.
    """
    if base <= 0:
        return 0
    return convert(base, uint256) * f // c.WAD


@internal
@view
def _exposure_amount(
    m: uint256,
    skew: int256,
    exposure: uint256,
    cap: uint256,
    price: uint256,
    f: uint256,
    size: int256,
    cost: int256,
    owed: int256,
) -> uint256:
    """
    @dev Base amount of a position on the skew's side (`size`, `cost`, funding `owed`,
         settled whole at the fill) to close at the oracle `price` so that the exposure
         comes back within both caps: `cap` (against full pool equity, which such a fill
         leaves unchanged) and the trade path's rule (state._exposure_limit, f x min(K,
         cash) with K = cash + sum of cost bases - skew x P): the fill leaves K unchanged
         but for the funding settled, and takes from cash what it realises (q x the
         position's PnL per unit, rounded up). Rounded up, +1 wei on the rule's terms.
         Mirrored by perpdex/sdk/math/vault_limits.py `exposure_amount`.
    """
    q: uint256 = 0
    if exposure > cap:
        q = self._ceil_base(exposure - cap, price)
    iprice: int256 = convert(price, int256)
    fi: int256 = convert(f, int256)
    e: int256 = convert(exposure, int256)
    cash: int256 = packing._lo_i128(state._pool) + owed
    k: int256 = cash + packing._lo_i128(state._pool_sums[m]) - skew * iprice // c.IWAD
    need: int256 = e - fp._div_floor(fi * k, c.IWAD)
    if need > 0:
        q = max(q, self._ceil_base(convert(need, uint256), price) + 1)
    need = e - fp._div_floor(fi * cash, c.IWAD)
    if need > 0:
        # PnL per unit of the position closed (USD WAD per base WAD, rounded up)
        unit: int256 = fp._div_ceil(size * iprice - cost * c.IWAD, abs(size))
        slope: int256 = iprice - fp._div_ceil(fi * unit, c.IWAD)
        if slope <= 0:
            return convert(abs(size), uint256)
        q = max(q, fp._mul_div(convert(need, uint256), c.WAD, convert(slope, uint256), True) + 1)
    return q


@internal
def _touch(m: uint256) -> uint256:
    assert m < state.market_count, "clearinghouse: unknown market"
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = extcall IClearinghouseEngine(self).engine_touch(m)
    marks._require_quorum(flags)
    return price


@internal
@view
def _target(account: uint256, m: uint256) -> int256:
    """
    @dev The size an ADL may close: the account exists, is not being liquidated (its
         auction owns its book) and holds a position in `m`.
    """
    hdr: uint256 = guards._require_exists(account)
    guards._require_active(hdr)
    size: int256 = packing._pos_size(state._pos[account][m])
    assert size != 0, "clearinghouse: no position to deleverage"
    return size


@internal
@pure
def _ceil_base(usd: uint256, price: uint256) -> uint256:
    return fp._mul_div(usd, c.WAD, price, True)


@external
@nonreentrant
def auto_deleverage(account: uint256, market: uint256):
    """
    @notice Closes (part of) `account`'s position in `market` against the vault's pool at
            the oracle price (no premium, no fee), while the vault is outside its limits,
            and only as much as brings it back:
            - PnL cap: traders' net unrealised profit in the market above
              max_pnl_factor x pool equity: a profitable position closes until the
              profit is adl_target_factor x equity (reason 1);
            - exposure cap: the vault's exposure above max_vault_exposure x pool equity,
              or above the trade path's rule that LP exits use (after a price move, an LP
              exit, a backstop take or a loss-cap close-out, which no cap refuses): a
              position on the skew's side closes until the exposure is within both
              (reason 2).
            Funding the position owes or earned is settled whole at the fill; when the
            funding it earned alone brings the profit to the target, the fill is of size
            0 (nothing closes, the funding is paid out).
            Anyone may call it (`perpdex keeper adl`). A rest below the minimum position
            closes too; a portfolio account must not be left liquidatable.
    """
    price: uint256 = self._touch(market)
    size: int256 = self._target(account, market)
    equity: int256 = state._pool_equity()
    pnl: int256 = state._trader_pnl(market)
    pw: uint256 = state._pos[account][market]
    # the position's PnL at the oracle price and the funding it owes (settled whole)
    price_pnl: int256 = size * convert(price, int256) // c.IWAD - packing._pos_cost(pw)
    owed: int256 = positions._funding_owed(
        size, packing._pos_funding_delta(pw, packing._mark_index(state._mark[market]))
    )
    base: int256 = max(equity, 0)
    capped: bool = (
        state.max_pnl_factor != 0 and pnl * c.IWAD > convert(state.max_pnl_factor, int256) * base
    )
    amount: uint256 = 0
    reason: uint256 = REASON_PNL
    abs_size: uint256 = convert(abs(size), uint256)
    if capped and price_pnl > owed and price_pnl > 0:
        # closing q of the position takes q x price_pnl - owed off the traders' profit
        excess: int256 = pnl - convert(state.adl_target_factor, int256) * base // c.IWAD
        # funding the position earned (owed < 0) is settled whole by any fill: when that
        # alone brings the profit to the target, the fill is of size 0 (nothing closes)
        if excess + owed > 0:
            amount = fp._mul_div(
                abs_size, convert(excess + owed, uint256), convert(price_pnl, uint256), True
            )
    else:
        skew: int256 = self._skew(market)
        exposure: uint256 = convert(abs(skew), uint256) * price // c.WAD
        f: uint256 = packing._unpack_params(state._params[market]).max_vault_exposure
        cap: uint256 = self._cap(f, equity)
        # the cap against full equity and the trade path's rule, the one LP exits use:
        # whenever exits are held back by a market's exposure, its ADL is open
        if exposure <= min(cap, state._exposure_limit(market, skew, price, f)):
            if capped:
                raise "clearinghouse: adl closes profitable positions only"
            raise "clearinghouse: vault within its limits"
        assert (size > 0) == (skew > 0), "clearinghouse: adl closes the skew's side only"
        reason = REASON_EXPOSURE
        amount = self._exposure_amount(
            market, skew, exposure, cap, price, f, size, packing._pos_cost(pw), owed
        )
    self._deleverage(account, market, size, amount, price, reason, pnl, equity)


@external
@nonreentrant
def close_with_adl(
    account: uint256,
    market: uint256,
    size_delta: int256,
    acceptable_price: uint256,
    adl_account: uint256,
):
    """
    @notice A reduce-only market order (owner or operator) that goes through even when
            the vault's exposure cap refuses it (review finding F2: a whale filling the
            cap from the other side). The order is first tried as `trade` would fill
            it; only if that fill is refused by the hot path's exposure cap
            ("clearinghouse: vault exposure cap reached", the one check a trade applies)
            is `adl_account`'s position on the skew's side auto-deleveraged at the oracle
            price (no premium, no fee), by what the close needs (`_paired_amount`), and
            the order filled again, cap check included. Otherwise the order fills (or
            fails) exactly as `trade`, and `adl_account` is left untouched (review 3,
            R3-4: a cap estimate must never deleverage anybody the cap did not need).
    """
    hdr: uint256 = guards._require_trader(account)
    guards._require_active(hdr)
    assert adl_account != account, "clearinghouse: adl account is the account"
    price: uint256 = self._touch(market)
    held: int256 = packing._pos_size(state._pos[account][market])
    assert (
        size_delta != 0 and (held > 0) != (size_delta > 0) and abs(size_delta) <= abs(held)
    ), "clearinghouse: not reduce-only"
    # the plain reduce, through the trade's own path; its state stays only if it fills
    ok: bool = False
    response: Bytes[132] = b""
    ok, response = raw_call(
        self,
        abi_encode(
            account,
            market,
            size_delta,
            acceptable_price,
            trading.TRADE_CHECKED,
            method_id=method_id("engine_pool_trade(uint256,uint256,int256,uint256,uint256)"),
        ),
        max_outsize=132,
        revert_on_failure=False,
    )
    if ok:
        return
    if keccak256(response) == keccak256(
        abi_encode(c.VAULT_CAP_REACHED, method_id=method_id("Error(string)"))
    ):
        size: int256 = self._target(adl_account, market)
        new_skew: int256 = self._skew(market) + size_delta
        assert (size > 0) == (new_skew > 0), "clearinghouse: adl closes the skew's side only"
        self._deleverage(
            adl_account,
            market,
            size,
            self._paired_amount(account, market, size_delta, adl_account, size, price),
            price,
            REASON_PAIRED,
            state._trader_pnl(market),
            state._pool_equity(),
        )
    # refused for another reason: filled again, it reverts with that reason
    extcall IClearinghouseEngine(self).engine_pool_trade(
        account, market, size_delta, acceptable_price, trading.TRADE_CHECKED
    )


@internal
@view
def _paired_amount(
    account: uint256,
    m: uint256,
    size_delta: int256,
    adl_account: uint256,
    adl_size: int256,
    price: uint256,
) -> uint256:
    """
    @dev Base amount of `adl_account`'s position (`adl_size`, on the side of the skew the
         close grows) to close at `price` so that `account`'s reduce passes the hot
         path's cap: exposure |skew| x P at most f x min(cash, K), f the market's
         max_vault_exposure, K = cash + sum of cost bases - skew x P. A fill at the
         oracle price leaves K unchanged and takes from cash only what it realises, so
         closing q of the target takes q x P off the exposure and f x q x (its PnL per
         unit) off the cash term. Conservative: the closer's fill is valued at the best
         price any such ADL can leave it (skew -size_delta), both positions' funding is
         settled whole, the result is rounded up and never above the new skew, then
         PAIRED_BUFFER_BPS and 1 wei more. Mirrored by
         perpdex/sdk/math/vault_limits.py `paired_amount`.
    """
    p: packing.MarketParams = packing._unpack_params(state._params[m])
    index: int256 = packing._mark_index(state._mark[m])
    iprice: int256 = convert(price, int256)
    skew: int256 = self._skew(m) + size_delta
    most: uint256 = convert(abs(skew), uint256)
    exposure: int256 = convert(most * price // c.WAD, int256)
    pw: uint256 = state._pos[account][m]
    held: int256 = packing._pos_size(pw)
    cost: int256 = packing._pos_cost(pw)
    new_size: int256 = 0
    new_cost: int256 = 0
    realised: int256 = 0
    new_size, new_cost, realised = positions._apply_fill(
        held, cost, size_delta, pricing._fill_price(price, -size_delta, size_delta, p.skew_scale)
    )
    aw: uint256 = state._pos[adl_account][m]
    cash: int256 = (
        packing._lo_i128(state._pool)
        - realised
        + positions._funding_owed(held, packing._pos_funding_delta(pw, index))
        + positions._funding_owed(adl_size, packing._pos_funding_delta(aw, index))
    )
    k: int256 = (
        cash + packing._lo_i128(state._pool_sums[m]) + new_cost - cost - skew * iprice // c.IWAD
    )
    f: int256 = convert(p.max_vault_exposure, int256)
    q: uint256 = 0
    need: int256 = exposure - fp._div_floor(f * k, c.IWAD)
    if need > 0:
        q = fp._mul_div(convert(need, uint256), c.WAD, price, True)
    need = exposure - fp._div_floor(f * cash, c.IWAD)
    if need > 0:
        # PnL per unit of the target closed (USD WAD per base WAD, rounded up)
        unit: int256 = fp._div_ceil(
            adl_size * iprice - packing._pos_cost(aw) * c.IWAD, abs(adl_size)
        )
        slope: int256 = iprice - fp._div_ceil(f * unit, c.IWAD)
        if slope <= 0:
            q = most
        else:
            q = max(q, fp._mul_div(convert(need, uint256), c.WAD, convert(slope, uint256), True))
    q = min(q, most)
    return q + q * PAIRED_BUFFER_BPS // c.BPS + 1


@internal
def _deleverage(
    account: uint256,
    m: uint256,
    size: int256,
    amount: uint256,
    price: uint256,
    reason: uint256,
    pnl: int256,
    equity: int256,
):
    abs_size: uint256 = convert(abs(size), uint256)
    n: uint256 = min(amount, abs_size)
    # no dust: a rest worth less than the minimum closes too
    if (abs_size - n) * price < c.MIN_POSITION_NOTIONAL * c.WAD:
        n = abs_size
    delta: int256 = convert(n, int256)
    if size > 0:
        delta = -delta
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    extcall core.engine_fill(account, state.POOL, m, delta, price, 0)
    # isolated: equity unchanged, requirement lower. Portfolio: closing a hedge leg can
    # raise the requirement; ADL must not push an account into liquidation
    hdr: uint256 = state._header[account]
    if hdr & c.ACCOUNT_PORTFOLIO != 0 and packing._position_count(hdr) != 0:
        e: int256 = 0
        i0: uint256 = 0
        mm: uint256 = 0
        iso: uint256 = 0
        gross: uint256 = 0
        e, i0, mm, iso, gross = staticcall core.account_margin(account)
        assert e >= convert(mm, int256), "clearinghouse: adl would leave the account liquidatable"
    log state.AutoDeleveraged(
        account=account,
        market=m,
        keeper=msg.sender,
        size_delta=delta,
        price=price,
        trader_pnl=pnl,
        pool_equity=equity,
        reason=reason,
    )
