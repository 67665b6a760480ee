# pragma version ~=0.4.3
"""
@title Vault risk limits: PnL cap and auto-deleveraging (ADL)
@custom:contract-name vault_limits
@license MIT
@notice Issue 9, property 4; docs/security.md (row "4. vault limits") states the rules.
        Exposure caps: a market's vault exposure |skew| x price is held to
        max_vault_exposure x pool equity. A trader's fill that grows |skew| is checked in
        the hot path (engine._check_caps) against a cheap, conservative figure: the pool's
        cash plus its unrealised loss in that market (its words are warm there).
        Governance keeps the caps' sum at or below max_total_exposure.
        PnL cap (GMX v2's MAX_PNL_FACTOR_FOR_ADL): while traders' net unrealised profit
        in a market exceeds max_pnl_factor x pool equity, anyone (a keeper,
        `perpdex keeper adl`) may close a profitable position of that market at the
        oracle price (no premium, no fee), just enough to bring the profit down to
        adl_target_factor x equity.
        Exposure restored: backstop takes and loss-cap close-outs are never refused by a
        cap (refusing them would leave bad debt or a breached floor); when one leaves a
        market above its cap against pool equity, anyone may close positions on the
        skew's side at the oracle price, just enough to come back to the cap.
        F2: a trader's reduce that the cap would block may be paired with the ADL of a
        position on the skew's side (`close_with_adl`), so a whale at the cap cannot keep
        a trader from closing.
        Pool equity here: cash + the pool's unrealised PnL and funding in every market at
        the cached marks (the market acted on is re-read first) - the bad-debt provision
        insurance does not cover. Seized collateral and unswept fees are left out, so the
        figure is at most the lens's `vault_equity`: ADL opens early, never late.
        Closing at the oracle price moves a position's PnL from unrealised to realised:
        pool equity does not change, the traders' unrealised profit and the skew fall.
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import engine
from . import constants as c
from . import fixed_point as fp
from . import packing
from . import positions

uses: state
uses: engine

REASON_PNL: constant(uint256) = 1
REASON_EXPOSURE: constant(uint256) = 2
REASON_PAIRED: constant(uint256) = 3
# a paired ADL closes this much more than the estimate needs (bp), for the close's
# premium, fee and funding, so the trader's own cap check passes
PAIRED_BUFFER_BPS: constant(uint256) = 200


@internal
@view
def _skew(m: uint256) -> int256:
    oi: uint256 = state._oi[m]
    return convert(oi & packing.MASK_128, int256) - convert(oi >> 128, int256)


@internal
@view
def _trader_pnl(m: uint256) -> int256:
    """
    @dev Traders' net unrealised PnL in market `m` net of the funding they owe, at the
         cached mark: minus the pool's claim, as ClearinghouseLens.vault_equity sums it.
    """
    skew: int256 = self._skew(m)
    sums: uint256 = state._pool_sums[m]
    mw: uint256 = state._mark[m]
    pnl: int256 = skew * convert(packing._mark_price(mw), int256) // c.IWAD - packing._lo_i128(sums)
    owed: int256 = fp._div_floor(
        skew * packing._mark_index(mw), packing.PICO_PER_USD
    ) - packing._hi_i128(sums)
    return pnl - owed


@internal
@view
def _pool_equity() -> int256:
    """
    @dev Pool equity for the limits (see the notice): conservative, at most the lens's.
    """
    equity: int256 = packing._lo_i128(state._pool)
    n: uint256 = state.market_count
    for m: uint256 in range(c.MAX_MARKETS):
        if m == n:
            break
        equity -= self._trader_pnl(m)
    provision: uint256 = state.bad_debt_provision
    insurance: uint256 = state._treasury & packing.MASK_128
    if provision > insurance:
        equity -= convert(provision - insurance, int256)
    return equity


@internal
@view
def _cap(m: uint256, base: int256) -> uint256:
    """
    @dev The market's exposure cap (USD WAD) against `base`.
    """
    if base <= 0:
        return 0
    return (
        convert(base, uint256)
        * packing._unpack_params(state._params[m]).max_vault_exposure // c.WAD
    )


@internal
def _touch(m: uint256) -> uint256:
    assert m < state.market_count, "clearinghouse: unknown market"
    price: uint256 = 0
    flags: uint256 = 0
    index: int256 = 0
    price, flags, index = extcall IClearinghouseEngine(self).engine_touch(m)
    engine._require_quorum(flags)
    return price


@internal
@view
def _target(account: uint256, m: uint256) -> int256:
    """
    @dev The size an ADL may close: the account exists, is not being liquidated (its
         auction owns its book) and holds a position in `m`.
    """
    hdr: uint256 = engine._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
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
            - exposure cap: the vault's exposure above max_vault_exposure x pool equity
              (after a backstop take or a loss-cap close-out, which no cap refuses): a
              position on the skew's side closes until the exposure is at the cap
              (reason 2).
            Anyone may call it (`perpdex keeper adl`). A rest below the minimum position
            closes too; a portfolio account must not be left liquidatable.
    """
    price: uint256 = self._touch(market)
    size: int256 = self._target(account, market)
    equity: int256 = self._pool_equity()
    pnl: int256 = self._trader_pnl(market)
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
        amount = fp._mul_div(
            abs_size, convert(excess + owed, uint256), convert(price_pnl, uint256), True
        )
    else:
        skew: int256 = self._skew(market)
        exposure: uint256 = convert(abs(skew), uint256) * price // c.WAD
        cap: uint256 = self._cap(market, equity)
        if exposure <= cap:
            if capped:
                raise "clearinghouse: adl closes profitable positions only"
            raise "clearinghouse: vault within its limits"
        assert (size > 0) == (skew > 0), "clearinghouse: adl closes the skew's side only"
        reason = REASON_EXPOSURE
        amount = self._ceil_base(exposure - cap, price)
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
    @notice A reduce-only market order (owner or operator) that the vault's exposure cap
            would refuse (review finding F2: a whale filling the cap from the other side)
            closes anyway: first `adl_account`'s position on the skew's side is
            auto-deleveraged at the oracle price (no premium, no fee) by about what the
            close would take the exposure over the cap (an estimate rounded up by 2%),
            then the order fills as `trade` fills it, cap check included. Without an
            excess nothing is deleveraged.
    """
    hdr: uint256 = engine._require_trader(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    assert adl_account != account, "clearinghouse: adl account is the account"
    price: uint256 = self._touch(market)
    held: int256 = packing._pos_size(state._pos[account][market])
    assert (
        size_delta != 0 and (held > 0) != (size_delta > 0) and abs(size_delta) <= abs(held)
    ), "clearinghouse: not reduce-only"
    new_skew: int256 = self._skew(market) + size_delta
    exposure: uint256 = convert(abs(new_skew), uint256) * price // c.WAD
    # the hot path's base after both fills, estimated at the oracle price: cash + the
    # pool's PnL in the market (K) is unchanged by fills at the oracle price, and
    # base = min(cash, K); cash falls by what the two traders realise
    cash: int256 = packing._lo_i128(state._pool)
    k: int256 = (
        cash
        + packing._lo_i128(state._pool_sums[market])
        - self._skew(market) * convert(price, int256) // c.IWAD
    )
    pw: uint256 = state._pos[account][market]
    realised: int256 = (
        (held * convert(price, int256) // c.IWAD - packing._pos_cost(pw))
        * abs(size_delta) // abs(held)
    )
    size: int256 = self._target(adl_account, market)
    aw: uint256 = state._pos[adl_account][market]
    whale: int256 = size * convert(price, int256) // c.IWAD - packing._pos_cost(aw)
    base: int256 = min(cash - max(realised, 0) - max(whale, 0), k)
    cap: uint256 = self._cap(market, base)
    if exposure > cap:
        assert (size > 0) == (new_skew > 0), "clearinghouse: adl closes the skew's side only"
        amount: uint256 = self._ceil_base(exposure - cap, price)
        amount += amount * PAIRED_BUFFER_BPS // c.BPS
        self._deleverage(
            adl_account,
            market,
            size,
            amount,
            price,
            REASON_PAIRED,
            self._trader_pnl(market),
            self._pool_equity(),
        )
    extcall IClearinghouseEngine(self).engine_pool_trade(
        account, market, size_delta, acceptable_price, engine.TRADE_CHECKED
    )


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
