# pragma version ~=0.4.3
"""
@title Delayed vault orders: commit now, fill at a price observed later
@custom:contract-name delayed
@license MIT
@notice A vault trade filled at once fills at the oracle's latest on-chain price, which
        lags the market: whoever knows the next feed update before the chain (the
        report in flight, a faster venue) trades against the vault's stale price and
        closes after the update. A delayed order removes that edge (Synthetix v3's
        async orders, on push feeds):
          commit_order   records the order (one per account and market) at time t;
          settle_order   anyone, once the oracle's reading of the market was observed at
                         or after t + min_delay (OracleRouter.price_time: the oldest
                         observation among its fresh sources) and before t + max_age,
                         fills it through trading._pool_trade, the path of `trade` (skew
                         premium, fee, caps, margin, loss cap), and earns the keeper fee
                         fixed at commit (paid from the account's settlement balance,
                         at most what it holds);
          cancel_delayed_order   the owner or an operator before t + min_delay (before
                         any price it could fill at exists), anyone once expired.
        The fill price is made only of readings observed after the commit, so at commit
        the trader knows no more about it than anyone. Per market, `set_delayed_params`
        makes adding vault trades (mode 1) or every vault trade (mode 2) go this way:
        `trade` then refuses them ("clearinghouse: use commit_order"); loss-cap
        close-outs, liquidations and auto-deleveraging, which fill at the oracle price
        at a time the account does not choose, stay immediate. docs/architecture.md
        weighs the choice and its latency.
        Runs in ClearinghouseRisk (by delegatecall at the Clearinghouse's address); the
        fill goes through the Clearinghouse's self-only `engine_pool_trade`.
@custom:security Settlement is permissionless: the fee pays whoever settles first, so an
        order fills at the first price after its delay unless nobody settles; a trader
        who is the only keeper could pick a later reading within max_age (keep it
        short). The owner cannot cancel once a settling price may exist, so the
        settlement price cannot be seen first and then refused; nor can it make the
        settlement fail (review 4, R4-2): while an order of the account may settle, the
        account header's pending count and expiry (modules/packing.vy) freeze what its
        owner and operators start or signed (`guards._require_idle`: trades and fills in
        every market, withdrawals, transfers out, loss-cap and margin-mode changes);
        deposits, these orders' own commits and cancels, and liquidations go on. An
        order expires at commit time + max_age, or at the header's expiry if that is
        earlier (governance raising max_age does not lengthen it past the freeze).
"""

from ..interfaces import IClearinghouseEngine
from snekmate.auth import access_control
from . import state
from . import guards
from . import settlement
from . import trading
from . import constants as c
from . import packing

uses: state
uses: guards
uses: settlement
uses: access_control

# @notice Modes: 0 = immediate vault trades allowed (delayed orders optional), 1 = adding
#         vault trades only by delayed order, 2 = every vault trade by delayed order.
MODE_ALL: constant(uint256) = 2
# @notice Bounds of the parameters (seconds, USD WAD).
MAX_MIN_DELAY: constant(uint256) = 300
MAX_ORDER_AGE: constant(uint256) = 3_600
MAX_KEEPER_FEE: constant(uint256) = 1_000 * 10**18
# @notice The order word keeps the keeper fee in units of 1e-4 USD (24 bits).
KEEPER_FEE_UNIT: constant(uint256) = 10**14

# the config and order words: packing.DelayedConfig and packing.DelayedOrder


@internal
@view
def _config(market: uint256) -> uint256:
    """
    @dev The market's config word; reverts for an unlisted market.
    """
    assert market < state.market_count, "clearinghouse: unknown market"
    return state.delayed_config[market]


@internal
@view
def _load(account: uint256, market: uint256) -> (uint256, uint256):
    """
    @dev The pending order's word and its market's config; reverts when there is none.
    """
    assert market < c.MAX_MARKETS, "clearinghouse: no delayed order"
    w: uint256 = state.delayed_order[account][market]
    assert w != 0, "clearinghouse: no delayed order"
    return w, state.delayed_config[market]


@internal
@pure
def _opens(w: uint256, cfg: uint256) -> uint256:
    """
    @dev When the order's settlement window opens: commit time + min_delay.
    """
    return packing._delayed_commit_time(w) + packing._delayed_min_delay(cfg)


@internal
@view
def _expired(w: uint256, cfg: uint256, hdr: uint256) -> bool:
    """
    @dev Past the order's settlement window: now > commit time + max_age, or past the
         account's freeze (`hdr`'s pending-until, set from max_age at commit: a max_age
         raised later does not let an order settle while its owner is free again).
    """
    return block.timestamp > min(
        packing._delayed_commit_time(w) + packing._delayed_max_age(cfg),
        packing._pending_until(hdr),
    )


@internal
def _release(account: uint256, hdr: uint256):
    """
    @dev One stored order of the account gone (settled or cancelled): its pending count
         drops, and with the last one the freeze ends.
    """
    n: uint256 = packing._pending_count(hdr) - 1
    until: uint256 = 0
    if n != 0:
        until = packing._pending_until(hdr)
    state._header[account] = packing._with_pending(hdr, n, until)


@external
def set_delayed_params(
    market: uint256, mode: uint256, min_delay: uint256, max_age: uint256, keeper_fee: uint256
):
    """
    @notice Delayed orders of a market: whether `trade` must leave adding (mode 1) or all
            (mode 2) vault trades to them, the delay before a price may fill them, how
            long they wait at most, and the fee (USD WAD, on the 1e-4 grid) whoever
            settles one earns. All zero turns them off (pending orders then expire).
            Risk role only.
    @param market The market id.
    @param mode 0, 1 or 2 (above).
    @param min_delay Seconds after the commit before which no reading may fill it (1-300).
    @param max_age Seconds after the commit an order may still settle (above min_delay,
           at most 3,600).
    @param keeper_fee USD WAD, at most 1,000.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    old: uint256 = self._config(market)
    assert mode <= MODE_ALL, "clearinghouse: bad delayed mode"
    cfg: uint256 = 0
    if mode | min_delay | max_age | keeper_fee != 0:
        assert (
            min_delay != 0
            and min_delay <= MAX_MIN_DELAY
            and max_age > min_delay
            and max_age <= MAX_ORDER_AGE
        ), "clearinghouse: bad order delays"
        assert (
            keeper_fee <= MAX_KEEPER_FEE and keeper_fee % KEEPER_FEE_UNIT == 0
        ), "clearinghouse: bad keeper fee"
        cfg = packing._pack_delayed_config(
            packing.DelayedConfig(
                min_delay=min_delay, max_age=max_age, keeper_fee=keeper_fee, mode=mode
            )
        )
    pw: uint256 = state._params[market] & ~(packing.DELAYED_ADD_BIT | packing.DELAYED_ALL_BIT)
    if mode != 0:
        pw |= packing.DELAYED_ADD_BIT
    if mode == MODE_ALL:
        pw |= packing.DELAYED_ALL_BIT
    state._params[market] = pw
    log state.DelayedParamsUpdated(market=market, old_config=old, new_config=cfg)
    state.delayed_config[market] = cfg


@external
def commit_order(account: uint256, market: uint256, size_delta: int256, acceptable_price: uint256):
    """
    @notice Commits a vault order (owner or operator): it fills through `settle_order` at
            the first oracle price observed at least the market's min_delay after now,
            within max_age, with the checks and fees of `trade`. One pending order per
            account and market (an expired one is replaced). Until it settles, is
            cancelled or expires, the account's owner and operators can neither trade
            nor take value out nor change its loss cap or margin mode
            (`guards._require_idle`); deposits and other delayed orders remain open.
    @param account The sub-account id.
    @param market The market id.
    @param size_delta Signed base units (WAD): positive buys, negative sells.
    @param acceptable_price Worst fill price accepted (WAD): a ceiling for buys, a floor
           for sells.
    """
    # not `_require_trader`: another order pending (other markets) does not stop a commit
    hdr: uint256 = guards._require_trader_any(account)
    guards._require_active(hdr)
    cfg: uint256 = self._config(market)
    assert cfg != 0, "clearinghouse: no delayed orders in market"
    assert size_delta != 0, "clearinghouse: zero size"
    assert (
        size_delta <= packing.MAX_I96 and size_delta >= -packing.MAX_I96
    ), "clearinghouse: size too large"
    old: uint256 = state.delayed_order[account][market]
    n: uint256 = packing._pending_count(hdr)
    if old != 0:
        assert self._expired(old, cfg, hdr), "clearinghouse: delayed order pending"
        log state.DelayedOrderCancelled(
            account=account, market=market, sender=msg.sender, expired=True
        )
    else:
        n += 1
    # the account is frozen for its owner and operators while this order may settle
    state._header[account] = packing._with_pending(
        hdr,
        n,
        max(packing._pending_until(hdr), block.timestamp + packing._delayed_max_age(cfg)),
    )
    fee: uint256 = packing._delayed_keeper_fee(cfg)
    state.delayed_order[account][market] = packing._pack_delayed_fields(
        size_delta, acceptable_price, block.timestamp, fee // KEEPER_FEE_UNIT
    )
    log state.DelayedOrderCommitted(
        account=account,
        market=market,
        size_delta=size_delta,
        acceptable_price=acceptable_price,
        commit_time=block.timestamp,
        keeper_fee=fee,
    )


@external
@nonreentrant
def settle_order(account: uint256, market: uint256) -> uint256:
    """
    @notice Fills a committed order (anyone), once the oracle's reading of the market was
            observed at or after its commit time + min_delay and while it is not older
            than max_age, through the path of `trade`; pays the caller the order's keeper
            fee (at most the account's settlement balance). The market is read afresh
            first, so the fill price is that reading's.
    @param account The sub-account id.
    @param market The market id.
    @return The fill price (WAD).
    """
    w: uint256 = 0
    cfg: uint256 = 0
    w, cfg = self._load(account, market)
    hdr: uint256 = state._header[account]
    assert not self._expired(w, cfg, hdr), "clearinghouse: delayed order expired"
    guards._require_active(hdr)
    core: IClearinghouseEngine = IClearinghouseEngine(self)
    # a fresh reading, not a mark cached earlier in this block (a feed may have moved
    # since): the price the fill uses and the time checked next are one reading
    extcall core.engine_touch(market)
    published: uint256 = staticcall state.ORACLE.price_time(market)
    assert published >= self._opens(w, cfg), "clearinghouse: no price after commit yet"
    state.delayed_order[account][market] = 0
    self._release(account, hdr)
    fee: uint256 = min(
        packing._delayed_keeper_fee_units(w) * KEEPER_FEE_UNIT,
        convert(max(state._balance[account][0], 0), uint256),
    )
    # taken before the fill, so an adding fill's margin check counts it
    state._balance[account][0] -= convert(fee, int256)
    acceptable: uint256 = packing._delayed_acceptable_price(w)
    if acceptable == packing.NO_PRICE_LIMIT:
        acceptable = max_value(uint256)
    state._delayed_fill = True
    price: uint256 = extcall core.engine_pool_trade(
        account, market, packing._pos_size(w), acceptable, trading.TRADE_CHECKED
    )
    state._delayed_fill = False
    settlement._pay_out(msg.sender, fee)
    log state.DelayedOrderSettled(
        account=account,
        market=market,
        keeper=msg.sender,
        price=price,
        price_time=published,
        keeper_fee=fee,
    )
    return price


@external
def cancel_delayed_order(account: uint256, market: uint256):
    """
    @notice Removes a committed order unfilled: the owner or an operator before its
            settlement window opens (commit time + min_delay), anyone once it expired.
    @param account The sub-account id.
    @param market The market id.
    """
    w: uint256 = 0
    cfg: uint256 = 0
    w, cfg = self._load(account, market)
    hdr: uint256 = state._header[account]
    expired: bool = self._expired(w, cfg, hdr)
    if not expired:
        guards._require_trader_any(account)
        assert block.timestamp < self._opens(w, cfg), "clearinghouse: settlement window open"
    state.delayed_order[account][market] = 0
    self._release(account, hdr)
    log state.DelayedOrderCancelled(
        account=account, market=market, sender=msg.sender, expired=expired
    )
