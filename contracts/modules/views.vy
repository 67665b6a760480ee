# pragma version ~=0.4.3
"""
@title Clearinghouse views
@custom:contract-name views
@license MIT
@notice Read-only figures for the SDK, the lens, the vault and the liquidation
        auction. Money in USD WAD, prices in WAD.
"""

from . import state
from . import guards
from . import gates
from . import constants as c
from . import packing

uses: state
uses: gates


@external
@view
def account_header(account: uint256) -> uint256:
    """
    @notice Raw packed header (flags, positions bitmap, collateral bitmap, count; layout in
            modules/packing.vy; contracts decode it with packing's accessors).
    """
    return state._header[account]


@external
@view
def position_markets(account: uint256) -> uint256:
    """
    @notice The markets the account holds a position in, as a bitmap (bit m: market m),
            for callers that walk its positions (the liquidation auction) without the
            header's layout.
    @param account The account id.
    @return uint256 The bitmap.
    """
    return packing._positions_bitmap(state._header[account])


@external
@view
def account_owner(account: uint256) -> address:
    """
    @notice Owner encoded in an account id.
    """
    return packing._account_owner(account)


@external
@view
def account_id(owner: address, index: uint256) -> uint256:
    """
    @notice Id of an owner's sub-account number `index`.
    """
    return packing._account_id(owner, index)


@external
@view
def balance_of(account: uint256, token_index: uint256) -> int256:
    """
    @notice Collateral balance in USD WAD (token amount scaled to 18 decimals).
    """
    return state._balance[account][token_index]


@external
@view
def position(account: uint256, market: uint256) -> (int256, int256, uint256):
    """
    @notice (size, cost basis, funding snapshot) of a position: base WAD, USD WAD, and
            the low 64 bits of the funding index (pico-USD) at its last settlement.
    """
    pw: uint256 = state._pos[account][market]
    return packing._pos_size(pw), packing._pos_cost(pw), packing._pos_snapshot(pw)


@external
@view
def mark(market: uint256) -> (uint256, uint256, int256, int256):
    """
    @notice Cached (price WAD, time of last touch, funding index in pico-USD per unit,
            funding rate in WAD per day) of a market.
    """
    mw: uint256 = state._mark[market]
    return packing._mark_price(mw), packing._mark_time(mw), packing._mark_index(
        mw
    ), packing._mark_rate(mw)


@external
@view
def open_interest(market: uint256) -> (uint256, uint256):
    """
    @notice (long, short) open interest of trader positions, base WAD.
    """
    return packing._oi_sides(state._oi[market])


@external
@view
def pool_sums(market: uint256) -> (int256, int256):
    """
    @notice Sum of trader cost bases and of size x funding snapshot (USD WAD).
    """
    sums: uint256 = state._pool_sums[market]
    return packing._lo_i128(sums), packing._hi_i128(sums)


@external
@view
def market_params(market: uint256) -> packing.MarketParams:
    """
    @notice Unpacked parameters of a market.
    """
    return packing._unpack_params(state._params[market])


@external
@view
def account_margin(account: uint256) -> state.MarginScan:
    """
    @notice Equity, initial and maintenance requirement, isolated requirement and gross
            notional at the cached marks (USD WAD).
    """
    return gates._scan(account, state._header[account], True, False, state.NO_OVERRIDE, 0)


@external
@view
def margin_at_twap(account: uint256) -> state.MarginScan:
    """
    @notice The same figures at the oracle's time-weighted prices.
    """
    return gates._scan(account, state._header[account], True, True, state.NO_OVERRIDE, 0)


@external
@view
def margin_requirement(account: uint256) -> (uint256, uint256):
    """
    @notice (initial, maintenance) requirement at the cached marks; what the gas
            benchmark calls a margin check.
    """
    s: state.MarginScan = gates._scan(
        account, state._header[account], False, False, state.NO_OVERRIDE, 0
    )
    return s.initial, s.maintenance


@external
@view
def oracle() -> address:
    """
    @notice The oracle router.
    """
    return state.ORACLE.address


@external
@view
def settlement_token() -> address:
    """
    @notice The settlement token (collateral index 0).
    """
    return state.collateral_token[0]


@external
@view
def insurance_fund() -> uint256:
    """
    @notice Insurance fund (USD WAD).
    """
    ins: uint256 = 0
    proto: uint256 = 0
    vault: uint256 = 0
    ins, proto, vault = self._pending_split()
    return packing._treasury_insurance(state._treasury) + ins


@external
@view
def protocol_fees() -> uint256:
    """
    @notice Protocol fees not yet withdrawn (USD WAD).
    """
    ins: uint256 = 0
    proto: uint256 = 0
    vault: uint256 = 0
    ins, proto, vault = self._pending_split()
    return packing._treasury_protocol(state._treasury) + proto


@external
@view
def pool_cash() -> int256:
    """
    @notice The vault pool's cash (USD WAD), including its share of fees not yet swept.
    """
    return self._pool_cash()


@external
@view
def pending_fees() -> uint256:
    """
    @notice Fees accrued since the last sweep, before the insurance / protocol / vault split.
    """
    return packing._pool_pending_fees(state._pool)


@internal
@view
def _pending_split() -> (uint256, uint256, uint256):
    """
    @dev How pending fees would split now (the same arithmetic as treasury._sweep_fees).
    """
    pending: uint256 = packing._pool_pending_fees(state._pool)
    sys: packing.System = packing._system(state._system)
    ins: uint256 = pending * sys.insurance_bps // c.BPS
    proto: uint256 = pending * sys.protocol_bps // c.BPS
    return ins, proto, pending - ins - proto


@internal
@view
def _pool_cash() -> int256:
    ins: uint256 = 0
    proto: uint256 = 0
    vault: uint256 = 0
    ins, proto, vault = self._pending_split()
    return packing._lo_i128(state._pool) + convert(vault, int256)


@external
@view
def system_params() -> packing.System:
    """
    @notice Risk-book address and header (scenario count, floor and maintenance ratios in
            bp), fee shares to insurance and protocol (bp) and the max mark age (s).
    """
    return packing._system(state._system)


@external
@view
def risk_book() -> address:
    """
    @notice Address whose code holds the risk book (layout in modules/margin.vy).
    """
    return packing._system(state._system).book
