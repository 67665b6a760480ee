# pragma version ~=0.4.3
"""
@title perpdex liquidation auction: ladder, Dutch auction, vault backstop
@custom:contract-name LiquidationAuction
@license MIT
@notice Glossary (health = equity / maintenance requirement, WAD):
          start     anyone, when the account is unhealthy (health < 1) at the oracle
                    median AND at the oracle's time-weighted price; not while the L2
                    sequencer is down or in its grace period, unless health is already
                    below `critical_health` (Aave v3's rule: waiting only grows bad
                    debt). Locks the account and opens the first tranche; the caller
                    earns tip + fee x tranche notional, capped, paid from the account.
          budget    liquidation pays for itself (E = equity, M = maintenance, N = gross
                    notional, all at fresh marks): every discount and the penalty are
                    scaled by f = min(1, COST_SHARE x M / (N x (max_discount + penalty)))
                    so that (d + penalty) x N <= COST_SHARE x M for every d on the
                    schedule, and the keeper reward of a tranche q is at most
                    REWARD_SHARE x q x M. Selling q of the book costs at most
                    (COST_SHARE + REWARD_SHARE) x q x M = 0.9 q M, and frees at least
                    q x M of maintenance (isolated and portfolio requirements shrink at
                    least proportionally with the book). So from E = (1 - e) M:
                      after the whole book  E' >= (0.1 - e) M  > 0 for e < 0.1
                      after a tranche q     E'/M' >= (1 - e - 0.9 q) / (1 - q) >= 1
                                            whenever q >= 10 e
                    i.e. an account entering at health just under 1 never ends in bad
                    debt from the liquidation's own costs; only price moves can do that.
                    The Clearinghouse enforces the same bounds itself on every hook.
          tranche   the fraction q of every position (the same for each leg, so hedges
                    stay hedged) that restores health to `target_health` if sold at
                    the worst scaled discount with the largest reward:
                    q = (t*M - E) / (t*M - c), c = N*(d_max + penalty)*f + REWARD_SHARE*M
                    (c <= 0.9 M < t*M), within [min_step, max_step] and each market's
                    window cap. Below `critical_health`, for books under `small_account`
                    notional, or when the rest would be under `small_account`, the whole
                    book goes at once (no cliffs for large books, no dust for small
                    ones); the Clearinghouse moves a leg whole when the rest of it would
                    be under MIN_POSITION_NOTIONAL.
          auction   the tranche is sold by Dutch auction: the price starts at the mark
                    moved `start_discount` against the account and moves linearly to
                    `max_discount` over `duration` (Maker Clipper's LinearDecrease). Any
                    keeper takes all or part into its own account, which must stay
                    above initial margin; a take is cut to what restores `target_health`
                    at its discount (Maker Clipper: an auction raises at most what the
                    account owes), and once a take leaves the account healthy the
                    liquidation ends and the rest of the lot stays with the owner. The
                    deadline is fixed when the tranche opens (open + `duration`); after
                    it, `backstop` gives the rest (cut the same way) to the vault's pool
                    at the scaled `max_discount`. Unlike Clipper, the price is
                    always the live mark times (1 - discount), so it never goes stale;
                    what can go stale is the discount clock: if the tranche's value moves
                    more than `cusp` from its value when the clock started (prices ran
                    or recovered), anyone may `redo` it, restarting the discount at
                    `start_discount` (Clipper's `redo`); the deadline does not move.
          after     when a tranche is sold: no positions left -> settle bad debt
                    (insurance, then socialisation) and unlock; healthy -> unlock;
                    still unhealthy -> the next tranche opens after `cooldown` (`step`).
        Due: every step (start, step, take, backstop, redo) first refreshes the
        account's marks; if the account is healthy (E >= M) the liquidation ends there
        (the open lot goes back to the owner) instead of moving anything.
        Every price is the Clearinghouse's mark refreshed in the same transaction.
@custom:security Holds LIQUIDATOR_ROLE on the Clearinghouse; holds no tokens. Keeper
        rewards are credited to the keeper's account inside the Clearinghouse (no token
        transfer) and never exceed the liquidated account's remaining equity, so a reward
        cannot create bad debt by itself. `@nonreentrant` on every entry point.
"""

from snekmate.auth import ownable
from snekmate.auth import ownable_2step
from .interfaces import IClearinghouse
from .modules import constants as c
from .modules import packing
from .modules import state

initializes: ownable
initializes: ownable_2step[ownable := ownable]

exports: (
    ownable_2step.owner,
    ownable_2step.pending_owner,
    ownable_2step.transfer_ownership,
    ownable_2step.accept_ownership,
)


interface IOracle:
    def sequencer_flags() -> uint256: view


# Step 1 is the start of a liquidation (twap figures are those of the start's guard;
# zero for later steps). `fraction` = 1e18 means the whole book.
event TrancheOpened:
    account: indexed(uint256)
    keeper: indexed(address)
    step: uint256
    fraction: uint256
    notional: uint256
    reward: uint256
    equity: int256
    maintenance: uint256
    twap_equity: int256
    twap_maintenance: uint256
    critical: bool


event AuctionTake:
    account: indexed(uint256)
    keeper: indexed(address)
    keeper_account: indexed(uint256)
    fraction: uint256
    discount: uint256
    lot_left: uint256


event AuctionBackstop:
    account: indexed(uint256)
    caller: indexed(address)
    fraction: uint256
    discount: uint256


event AuctionReset:
    account: indexed(uint256)
    caller: indexed(address)
    old_notional: uint256
    new_notional: uint256


event LiquidationFinished:
    account: indexed(uint256)
    equity: int256
    maintenance: uint256
    steps: uint256


event ParamsUpdated:
    old_params: packing.AuctionParams
    new_params: packing.AuctionParams


event WindowCapUpdated:
    market: indexed(uint256)
    old_cap: uint256
    new_cap: uint256


FLAG_SEQUENCER: constant(uint256) = c.FLAG_SEQUENCER_DOWN | c.FLAG_SEQUENCER_GRACE
# Liquidation budget, in fractions of maintenance margin (WAD); the Clearinghouse's
# liquidation hooks enforce the same bounds (modules/liquidation_hooks.vy).
# @notice discount + penalty, applied to the notional moved, <= this x maintenance/notional
COST_SHARE: public(constant(uint256)) = 8 * 10**17
# @notice A tranche's keeper reward <= this x the maintenance the tranche frees
REWARD_SHARE: public(constant(uint256)) = 10**17
# @notice Largest keeper reward per tranche (USD WAD), the Clearinghouse's bound
MAX_KEEPER_REWARD: public(constant(uint256)) = 1_000 * 10**18
# @notice A liquidation never leaves a position under this notional (USD WAD): the
#         Clearinghouse moves the whole leg instead
MIN_POSITION_NOTIONAL: public(constant(uint256)) = c.MIN_POSITION_NOTIONAL

# @notice The Clearinghouse this auction liquidates on.
clearinghouse: public(immutable(IClearinghouse))
_ORACLE: immutable(IOracle)

# Parameters packed in four words (a struct would spread them over fifteen cold slots);
# this storage's word layouts are in modules/packing.vy ("liquidation auction").
_params: uint256[4]
# @notice Max notional (USD WAD) liquidated per market per window; 0 = no cap.
window_cap: public(HashMap[uint256, uint256])
# @notice Number of markets with a window cap (0: window accounting is skipped).
capped_markets: public(uint256)
# per market, packed: packing.LiquidationWindow
_window: HashMap[uint256, uint256]
# per account, packed: packing.Auction
_auction: HashMap[uint256, uint256]


@deploy
def __init__(clearinghouse_: IClearinghouse, params_: packing.AuctionParams):
    """
    @param clearinghouse_ The Clearinghouse; grant this contract its LIQUIDATOR_ROLE.
    @param params_ Initial parameters (validated like `set_params`).
    """
    ownable.__init__()
    ownable_2step.__init__()
    clearinghouse = clearinghouse_
    _ORACLE = IOracle(staticcall clearinghouse_.ORACLE())
    self._validate(params_)
    self._params = self._pack(params_)
    log ParamsUpdated(old_params=empty(packing.AuctionParams), new_params=params_)


# --- keeper entry points -----------------------------------------------------------------


@external
@nonreentrant
def start(account: uint256, keeper_account: uint256):
    """
    @notice Starts the liquidation of an unhealthy account and opens its first tranche;
            the keeper reward is paid from it into `keeper_account` (any existing
            account; keepers use their own). An account without positions but with
            negative equity (a settlement debt its other collateral no longer covers) is
            settled at once.
    """
    assert not self._load(account).active, "auction: already in liquidation"
    # (an unknown account has no positions; a locked one is refused by the Clearinghouse)
    extcall clearinghouse.refresh_account(account)
    s: state.MarginScan = staticcall clearinghouse.account_margin(account)
    # an account without positions is liquidatable only with negative equity (a debt its
    # other collateral no longer covers at the haircut)
    assert s.maintenance != 0 or s.equity < 0, "auction: no positions"
    assert s.equity < convert(s.maintenance, int256), "auction: account is healthy"
    t: state.MarginScan = staticcall clearinghouse.margin_at_twap(account)
    assert t.equity < convert(t.maintenance, int256), "auction: healthy at the time-weighted price"
    if s.maintenance == 0:
        # nothing to auction: settle at once (the pool buys the collateral at the mark
        # less the haircut; insurance, then socialisation, covers what is left). No reward:
        # the account has nothing to pay it from.
        extcall clearinghouse.liquidation_begin(account, keeper_account, 0)
        self._finish(account, s, 0)
        return
    p: packing.AuctionParams = self._unpack()
    critical: bool = self._critical(s, p)
    if staticcall _ORACLE.sequencer_flags() & FLAG_SEQUENCER != 0:
        assert critical, "auction: sequencer grace period"
    self._open_tranche(account, keeper_account, s, t, p, critical, 1)


@external
@nonreentrant
def take(account: uint256, keeper_account: uint256, fraction: uint256) -> uint256:
    """
    @notice Buys `fraction` (WAD) of the remaining tranche at the current auction price
            into `keeper_account` (owned or operated by the caller), which must end above
            initial margin. The take is cut to what restores `target_health` at this
            discount; a remainder whose book would be under `small_account` is taken
            whole. If the account is healthy again, nothing moves: the liquidation ends.
    @return The fraction of the book transferred (WAD); 0 if the liquidation ended.
    """
    assert fraction != 0 and fraction <= c.WAD, "auction: bad fraction"
    assert keeper_account != account, "auction: cannot take into the liquidated account"
    assert msg.sender == packing._account_owner(
        keeper_account
    ) or staticcall clearinghouse.is_operator(
        keeper_account, msg.sender
    ), "auction: not your account"
    a: packing.Auction = self._load(account)
    assert a.active and a.lot != 0, "auction: nothing to take"
    p: packing.AuctionParams = self._unpack()
    assert block.timestamp <= a.started_at + a.until, "auction: expired, call backstop"
    s: state.MarginScan = self._due(account, a, p)
    if s.maintenance == 0:
        return 0
    f: uint256 = self._scale(s, p)
    elapsed: uint256 = min(block.timestamp - a.started_at, p.duration)
    discount: uint256 = (
        p.start_discount + (p.max_discount - p.start_discount) * elapsed // p.duration
    ) * f // c.WAD
    part: uint256 = a.lot
    if fraction < c.WAD:
        part = a.lot * fraction // c.WAD
    assert part != 0, "auction: fraction too small"
    return self._sell(account, keeper_account, a, part, discount, s, p, f)


@external
@nonreentrant
def backstop(account: uint256):
    """
    @notice After the tranche's deadline, the vault's pool takes what is left of it (cut
            to what restores `target_health`) at the scaled maximum discount. If the
            account is healthy again, nothing moves: the liquidation ends. Anyone may
            call it.
    """
    a: packing.Auction = self._load(account)
    assert a.active and a.lot != 0, "auction: nothing to take"
    p: packing.AuctionParams = self._unpack()
    assert block.timestamp > a.started_at + a.until, "auction: still running"
    s: state.MarginScan = self._due(account, a, p)
    if s.maintenance == 0:
        return
    f: uint256 = self._scale(s, p)
    discount: uint256 = p.max_discount * f // c.WAD
    self._sell(account, state.POOL, a, a.lot, discount, s, p, f)


@external
@nonreentrant
def redo(account: uint256):
    """
    @notice Restarts the discount clock at current prices when the tranche's value has
            moved more than `cusp` since its clock started; the deadline stays where the
            tranche opened it. If the account is healthy again the liquidation ends
            instead. Anyone may call it.
    """
    a: packing.Auction = self._load(account)
    assert a.active and a.lot != 0, "auction: nothing to reset"
    p: packing.AuctionParams = self._unpack()
    deadline: uint256 = a.started_at + a.until
    assert block.timestamp <= deadline, "auction: expired, call backstop"
    s: state.MarginScan = self._due(account, a, p)
    if s.maintenance == 0:
        return
    old: uint256 = a.kick_notional
    now_value: uint256 = min(a.lot * s.notional // c.WAD, packing.MAX_KICK_NOTIONAL)
    assert self._moved(old, now_value, p.cusp), "auction: prices have not moved past the cusp"
    # the clock restarts; the deadline stays
    a.started_at = block.timestamp
    a.kick_notional = now_value
    a.until = deadline - block.timestamp
    self._auction[account] = packing._pack_auction(a)
    log AuctionReset(account=account, caller=msg.sender, old_notional=old, new_notional=now_value)


@external
@nonreentrant
def step(account: uint256, keeper_account: uint256):
    """
    @notice Opens the next tranche of an account still unhealthy after the last one sold,
            once `cooldown` has passed; or ends the liquidation if it is healthy again.
            The keeper reward for a new tranche goes to `keeper_account`.
    """
    a: packing.Auction = self._load(account)
    assert a.active, "auction: not in liquidation"
    assert a.lot == 0, "auction: tranche still open"
    p: packing.AuctionParams = self._unpack()
    assert block.timestamp >= a.started_at + p.cooldown, "auction: cooldown"
    extcall clearinghouse.refresh_account(account)
    s: state.MarginScan = staticcall clearinghouse.account_margin(account)
    if s.maintenance == 0 or s.equity >= convert(s.maintenance, int256):
        self._finish(account, s, a.step)
        return
    critical: bool = self._critical(s, p)
    if staticcall _ORACLE.sequencer_flags() & FLAG_SEQUENCER != 0:
        assert critical, "auction: sequencer grace period"
    self._open_tranche(account, keeper_account, s, empty(state.MarginScan), p, critical, a.step + 1)


@external
@nonreentrant
def finish(account: uint256):
    """
    @notice Ends the liquidation of an account that is healthy again (the owner topped
            it up, or prices recovered) between or during tranches. Anyone may call it.
    """
    a: packing.Auction = self._load(account)
    assert a.active, "auction: not in liquidation"
    extcall clearinghouse.refresh_account(account)
    s: state.MarginScan = staticcall clearinghouse.account_margin(account)
    assert s.maintenance == 0 or s.equity >= convert(
        s.maintenance, int256
    ), "auction: account still unhealthy"
    self._finish(account, s, a.step)


# --- governance ----------------------------------------------------------------------------


@external
def set_params(new_params: packing.AuctionParams):
    """
    @notice Sets every liquidation parameter at once. Owner only.
    """
    ownable._check_owner()
    self._validate(new_params)
    log ParamsUpdated(old_params=self._unpack(), new_params=new_params)
    self._params = self._pack(new_params)


@external
def set_window_cap(market: uint256, cap: uint256):
    """
    @notice Max notional (USD WAD) liquidated in `market` per window; 0 removes the cap.
            Owner only.
    """
    ownable._check_owner()
    assert market < c.MAX_MARKETS, "auction: unknown market"
    old: uint256 = self.window_cap[market]
    log WindowCapUpdated(market=market, old_cap=old, new_cap=cap)
    if old == 0 and cap != 0:
        self.capped_markets += 1
    elif old != 0 and cap == 0:
        self.capped_markets -= 1
    self.window_cap[market] = cap


# --- views ---------------------------------------------------------------------------------


@external
@view
def params() -> packing.AuctionParams:
    """
    @notice Current parameters.
    """
    return self._unpack()


@external
@view
def auction(account: uint256) -> (bool, uint256, uint256, uint256, uint256, uint256):
    """
    @notice (active, clock start, lot left as a fraction of the book (WAD), lot notional at
            the clock start (USD WAD), tranche number, the schedule's discount now
            before the maintenance scaling (WAD); `current_discount` is what a take gets).
    """
    a: packing.Auction = self._load(account)
    return (a.active, a.started_at, a.lot, a.kick_notional, a.step, self._discount(a.started_at))


@external
@view
def current_discount(account: uint256) -> uint256:
    """
    @notice The discount a take would get now (WAD): the schedule's, scaled to the
            account's maintenance budget at the cached marks.
    """
    s: state.MarginScan = staticcall clearinghouse.account_margin(account)
    return (
        self._discount(self._load(account).started_at) * self._scale(s, self._unpack()) // c.WAD
    )


@external
@view
def deadline(account: uint256) -> uint256:
    """
    @notice When the open tranche's auction ends and `backstop` may be called (fixed when
            the tranche opens; 0 if none is open).
    """
    a: packing.Auction = self._load(account)
    if a.lot == 0:
        return 0
    return a.started_at + a.until


# --- internals -----------------------------------------------------------------------------


@internal
def _due(account: uint256, a: packing.Auction, p: packing.AuctionParams) -> state.MarginScan:
    """
    @dev Refreshes the account's marks and scans it. A healthy account's liquidation
         ends here (returns a scan with zero maintenance); an unhealthy one must pass the
         sequencer guard.
    """
    extcall clearinghouse.refresh_account(account)
    s: state.MarginScan = staticcall clearinghouse.account_margin(account)
    if s.maintenance == 0 or s.equity >= convert(s.maintenance, int256):
        self._finish(account, s, a.step)
        return empty(state.MarginScan)
    if staticcall _ORACLE.sequencer_flags() & FLAG_SEQUENCER != 0:
        assert self._critical(s, p), "auction: sequencer grace period"
    return s


@internal
@pure
def _scale(s: state.MarginScan, p: packing.AuctionParams) -> uint256:
    # f = min(1, COST_SHARE x M / (N x (max_discount + penalty))), rounded down
    rate: uint256 = p.max_discount + p.penalty
    if rate == 0 or s.notional == 0:
        return c.WAD
    return min(c.WAD, COST_SHARE * s.maintenance // s.notional * c.WAD // rate)


@internal
@pure
def _need(s: state.MarginScan, p: packing.AuctionParams, rate: uint256) -> uint256:
    """
    @dev The fraction of the book that restores `target_health` when sold at `rate`
         (discount + penalty, already scaled): (t*M - E) / (t*M - N*rate), rounded up,
         at most the whole book. t*M > N*rate because rate x N <= COST_SHARE x M.
    """
    tm: int256 = convert(s.maintenance * p.target_health // c.WAD, int256)
    cost: int256 = convert(s.notional * rate // c.WAD, int256)
    if tm <= cost:
        return c.WAD
    q: uint256 = convert((tm - s.equity) * c.IWAD // (tm - cost), uint256) + 1
    return min(q, c.WAD)


@internal
def _sell(
    account: uint256,
    taker: uint256,
    a: packing.Auction,
    requested: uint256,
    discount: uint256,
    s: state.MarginScan,
    p: packing.AuctionParams,
    f: uint256,
) -> uint256:
    """
    @dev Moves min(requested, what restores target health) of the book to `taker`; a
         book remainder under `small_account` goes with it. Then: healthy -> finish
         (the rest of the lot stays with the owner); lot sold -> cooldown for the next
         tranche; otherwise the rest stays for sale.
    """
    lot: uint256 = a.lot
    penalty: uint256 = p.penalty * f // c.WAD
    part: uint256 = min(requested, self._need(s, p, discount + penalty))
    if (c.WAD - part) * s.notional < p.small_account * c.WAD:
        part = lot
    self._use_window(account, part, a.critical)
    extcall clearinghouse.liquidation_transfer(account, taker, part, discount, penalty)
    left: uint256 = 0
    kick: uint256 = 0
    if part < lot:
        # the lot was a fraction of the book before the take; re-express it on the
        # smaller book: (lot - part) / (1 - part); its reference value shrinks with it
        left = (lot - part) * c.WAD // (c.WAD - part)
        kick = a.kick_notional * (lot - part) // lot
    if taker == state.POOL:
        log AuctionBackstop(account=account, caller=msg.sender, fraction=part, discount=discount)
    else:
        log AuctionTake(
            account=account,
            keeper=msg.sender,
            keeper_account=taker,
            fraction=part,
            discount=discount,
            lot_left=left,
        )
    after: state.MarginScan = staticcall clearinghouse.account_margin(account)
    if after.maintenance == 0 or after.equity >= convert(after.maintenance, int256):
        self._finish(account, after, a.step)
        return part
    n: packing.Auction = a
    n.lot = left
    n.kick_notional = kick
    if left == 0:
        # still unhealthy: keep the account locked; the next tranche opens after the
        # cooldown (counted from now)
        n.started_at = block.timestamp
    self._auction[account] = packing._pack_auction(n)
    return part


@internal
@view
def _discount(started: uint256) -> uint256:
    p: packing.AuctionParams = self._unpack()
    elapsed: uint256 = min(block.timestamp - started, p.duration)
    return p.start_discount + (p.max_discount - p.start_discount) * elapsed // p.duration


@internal
@pure
def _critical(s: state.MarginScan, p: packing.AuctionParams) -> bool:
    # equity < critical_health x maintenance
    return s.equity < convert(s.maintenance * p.critical_health // c.WAD, int256)


@internal
@pure
def _moved(old: uint256, new: uint256, cusp: uint256) -> bool:
    if old == 0:
        return new != 0
    diff: uint256 = max(old, new) - min(old, new)
    return diff * c.WAD > cusp * old


@internal
@view
def _tranche(
    account: uint256, s: state.MarginScan, p: packing.AuctionParams, critical: bool
) -> uint256:
    if critical or s.notional < p.small_account:
        return c.WAD
    # equity after selling q at the worst scaled discount and penalty, less the largest
    # reward, vs target x maintenance after (maintenance shrinks at least in proportion
    # with the book): solve for q, round up. cost <= 0.9 M < t M (glossary).
    tm: int256 = convert(s.maintenance * p.target_health // c.WAD, int256)
    need: int256 = tm - s.equity
    cost: int256 = convert(
        s.notional * (p.max_discount + p.penalty) // c.WAD * self._scale(s, p) // c.WAD
        + s.maintenance * REWARD_SHARE // c.WAD,
        int256,
    )
    q: uint256 = c.WAD
    if tm > cost:
        q = convert((need * c.IWAD + tm - cost - 1) // (tm - cost), uint256)
    q = min(max(q, p.min_step), p.max_step)
    # no dust: a rest under `small_account` goes with the tranche
    if (c.WAD - q) * s.notional < p.small_account * c.WAD:
        return c.WAD
    if self.capped_markets == 0:
        return q
    # each market's window cap
    bitmap: uint256 = staticcall clearinghouse.position_markets(account)
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        if not packing._has_bit(bitmap, m) or self.window_cap[m] == 0:
            continue
        room: uint256 = self._window_room(m)
        n: uint256 = self._position_notional(account, m)
        if n * q // c.WAD > room:
            q = room * c.WAD // n
    assert q != 0, "auction: window cap reached, retry next window"
    return q


@internal
@view
def _position_notional(account: uint256, m: uint256) -> uint256:
    size: int256 = 0
    cost: int256 = 0
    snap: uint256 = 0
    size, cost, snap = staticcall clearinghouse.position(account, m)
    return convert(abs(size), uint256) * (staticcall clearinghouse.mark(m))[0] // c.WAD


@internal
@view
def _window_room(m: uint256) -> uint256:
    w: packing.LiquidationWindow = packing._unpack_window(self._window[m])
    cap: uint256 = self.window_cap[m]
    if block.timestamp >= w.start + self._unpack().window:
        return cap
    if w.used >= cap:
        return 0
    return cap - w.used


@internal
def _use_window(account: uint256, fraction: uint256, critical: bool):
    """
    @dev Books the notional a transfer of `fraction` of the book moves against each
         market's window; critical accounts bypass the cap (waiting grows bad debt).
    """
    if self.capped_markets == 0:
        return
    bitmap: uint256 = staticcall clearinghouse.position_markets(account)
    window: uint256 = self._unpack().window
    for m: uint256 in range(c.MAX_MARKETS):
        if packing._no_bits_from(bitmap, m):
            break
        cap: uint256 = self.window_cap[m]
        if not packing._has_bit(bitmap, m) or cap == 0:
            continue
        moved: uint256 = self._position_notional(account, m) * fraction // c.WAD
        w: packing.LiquidationWindow = packing._unpack_window(self._window[m])
        if block.timestamp >= w.start + window:
            w = packing.LiquidationWindow(start=block.timestamp, used=0)
        w.used += moved
        assert critical or w.used <= cap, "auction: window cap reached, retry next window"
        self._window[m] = packing._pack_window(w)


@internal
def _open_tranche(
    account: uint256,
    keeper_account: uint256,
    s: state.MarginScan,
    t: state.MarginScan,
    p: packing.AuctionParams,
    critical: bool,
    step: uint256,
):
    q: uint256 = self._tranche(account, s, p, critical)
    value: uint256 = min(q * s.notional // c.WAD, packing.MAX_KICK_NOTIONAL)
    # tip + fee x notional, within the keeper cap, REWARD_SHARE of the maintenance the
    # tranche frees and the account's equity (the Clearinghouse checks the same bounds)
    reward: uint256 = min(p.keeper_tip + value * p.keeper_fee // c.WAD, p.keeper_cap)
    reward = min(reward, s.maintenance * q // c.WAD * REWARD_SHARE // c.WAD)
    reward = min(reward, convert(max(s.equity, 0), uint256))
    self._auction[account] = packing._pack_auction(
        packing.Auction(
            started_at=block.timestamp,
            lot=q,
            kick_notional=value,
            until=p.duration,
            step=step,
            active=True,
            critical=critical,
        )
    )
    if step == 1:
        extcall clearinghouse.liquidation_begin(account, keeper_account, reward)
    else:
        extcall clearinghouse.liquidation_reward(account, keeper_account, reward)
    log TrancheOpened(
        account=account,
        keeper=msg.sender,
        step=step,
        fraction=q,
        notional=value,
        reward=reward,
        equity=s.equity,
        maintenance=s.maintenance,
        twap_equity=t.equity,
        twap_maintenance=t.maintenance,
        critical=critical,
    )


@internal
def _finish(account: uint256, s: state.MarginScan, steps: uint256):
    extcall clearinghouse.liquidation_end(account)
    self._auction[account] = 0
    log LiquidationFinished(
        account=account, equity=s.equity, maintenance=s.maintenance, steps=steps
    )


@internal
@view
def _unpack() -> packing.AuctionParams:
    return packing._unpack_auction_params(self._params)


@internal
@pure
def _pack(p: packing.AuctionParams) -> uint256[4]:
    assert packing._auction_params_fit(p), "auction: parameter too large"
    return packing._pack_auction_params(p)


@internal
@view
def _load(account: uint256) -> packing.Auction:
    return packing._unpack_auction(self._auction[account])


@internal
@pure
def _validate(p: packing.AuctionParams):
    assert p.target_health > c.WAD, "auction: target health must exceed 1"
    assert p.critical_health < c.WAD, "auction: critical health must be below 1"
    assert (
        p.min_step != 0 and p.min_step <= p.max_step and p.max_step <= c.WAD
    ), "auction: bad step bounds"
    assert (
        p.start_discount <= p.max_discount and p.max_discount < c.WAD // 2
    ), "auction: bad discounts"
    assert p.penalty < c.WAD // 10, "auction: penalty too high"
    assert p.keeper_fee < c.WAD // 10, "auction: keeper fee too high"
    assert p.keeper_cap <= MAX_KEEPER_REWARD, "auction: keeper cap above the clearinghouse bound"
    assert p.duration != 0 and p.duration <= 86_400, "auction: bad duration"
    assert p.cusp != 0 and p.cusp < c.WAD, "auction: bad cusp"
    assert p.window != 0, "auction: zero window"
    assert p.cooldown <= 86_400, "auction: cooldown too long"
