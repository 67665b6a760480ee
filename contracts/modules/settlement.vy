# pragma version ~=0.4.3
"""
@title Settlement: the one path every fill takes
@custom:contract-name settlement
@license MIT
@notice `_fill` / `_settle_side` is THE settlement path (account A trades size d with
        counterparty B at price P; B is the vault's pool for market orders, a keeper's
        account for liquidation auctions, another trader for signed orders): funding,
        realised PnL, open interest and the pool's sums; `_debit` and `_pay_out` move
        balances and tokens.
"""

from ethereum.ercs import IERC20
from . import state
from . import fixed_point as fp
from . import packing
from . import positions
from . import guards
from . import treasury

uses: state
uses: treasury


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
def _fill(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
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
         the pool's sums; `account` pays `fee` (`_settle_side`). `pw`: `account`'s
         position word in `m` as stored (the caller has read it). Returns `account`'s
         new header.
    """
    new_hdr: uint256 = self._settle_logged(
        account, hdr, m, pw, delta, price, index, counterparty, fee
    )
    if counterparty != state.POOL:
        self._settle_logged(
            counterparty,
            state._header[counterparty],
            m,
            state._pos[counterparty][m], -delta,
            price,
            index,
            account,
            0,
        )
    return new_hdr


@internal
def _settle_logged(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    counterparty: uint256,
    fee: uint256,
) -> uint256:
    """
    @dev `_settle_side` and its `Fill` event (`pw`: the position word, as stored).
         Returns the new header.
    """
    new_hdr: uint256 = 0
    realized: int256 = 0
    funding_paid: int256 = 0
    new_size: int256 = 0
    new_hdr, realized, funding_paid, new_size = self._settle_side(
        account, hdr, m, pw, delta, price, index, fee
    )
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
def _settle_side(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    fee: uint256,
) -> (uint256, int256, int256, int256):
    """
    @dev One side of a fill, without its event (the caller logs it: `_settle_logged`'s
         `Fill`; a matched fill settles through `_settle_account`, the same arithmetic). `pw` is the
         account's position word in `m` as stored (`state._pos[account][m]`: callers
         have read it for their own checks). Returns (new header, realised PnL, funding
         paid, position size after).
    """
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
    # the trading fee, in the same two writes: it accrues in the pool word until
    # `treasury._sweep_fees` splits it between insurance, protocol and vault
    if cash != 0 or fee != 0:
        state._balance[account][0] += cash - convert(fee, int256)
        treasury._book_fill(cash, fee)
    # pool sums: sum of cost bases and of size * funding snapshot over trader positions.
    # The snapshot sum rounds up (toward +inf) at every step, so the funding the vault
    # books as receivable (skew x index, rounded down, minus this sum) never exceeds what
    # the accounts owe (each rounded up): rounding dust stays in the protocol.
    sums: uint256 = state._pool_sums[m]
    state._pool_sums[m] = packing._pack_i128(
        packing._lo_i128(sums) + new_cost - cost,
        packing._hi_i128(sums)
        + fp._div_ceil(new_size * index - size * old_snap, packing.PICO_PER_USD),
    )
    state._oi[m] = packing._oi_moved(state._oi[m], size, new_size)
    if new_size == 0:
        state._pos[account][m] = 0
    else:
        state._pos[account][m] = packing._pack_pos(new_size, new_cost, index)
    new_hdr: uint256 = packing._with_position(hdr, m, new_size != 0)
    if new_hdr != hdr:
        state._header[account] = new_hdr
    return new_hdr, realized, funding_paid, new_size


@internal
def _settle_account(
    account: uint256,
    hdr: uint256,
    m: uint256,
    pw: uint256,
    delta: int256,
    price: uint256,
    index: int256,
    fee: uint256,
) -> (uint256, int256, int256, int256, int256, int256):
    """
    @dev One side of a matched fill (ClearinghouseOrders.settle): `_settle_side`'s
         account part (funding, PnL, fee, position, header) without the market's shared
         words, which the fill's two sides (one market) update once: the pool's cash goes
         down by (realised PnL - funding paid) of each side and its pending fees up by
         the fees; the pool sums and open interest as `_settle_side` moves them. Same
         arithmetic and rounding as `_settle_side` (keep the two in step). Returns (new
         header, realised PnL, funding paid, position size after, cost-basis change,
         funding-snapshot-sum change).
    """
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
    if cash != 0 or fee != 0:
        state._balance[account][0] += cash - convert(fee, int256)
    if new_size == 0:
        state._pos[account][m] = 0
    else:
        state._pos[account][m] = packing._pack_pos(new_size, new_cost, index)
    new_hdr: uint256 = packing._with_position(hdr, m, new_size != 0)
    if new_hdr != hdr:
        state._header[account] = new_hdr
    return (
        new_hdr,
        realized,
        funding_paid,
        new_size,
        new_cost - cost,
        fp._div_ceil(new_size * index - size * old_snap, packing.PICO_PER_USD),
    )


@internal
def _pay_out(receiver: address, amount: uint256):
    """
    @dev Transfers `amount` USD WAD (rounded down to token units) of settlement token.
    """
    units: uint256 = amount // state.SETTLEMENT_SCALE
    if units == 0:
        return
    state.collateral_held[0] -= units
    assert extcall IERC20(state.collateral_token[0]).transfer(
        receiver, units, default_return_value=True
    ), "clearinghouse: transfer failed"
    # the WAD remainder below one token unit stays with the protocol
    dust: uint256 = amount - units * state.SETTLEMENT_SCALE
    if dust != 0:
        treasury._credit_treasury(0, dust)


@external
def engine_fill(
    account: uint256,
    counterparty: uint256,
    market: uint256,
    size_delta: int256,
    price: uint256,
    fee: uint256,
):
    """
    @notice Self-only: `account` trades `size_delta` with `counterparty` (POOL = the vault)
            at `price`, through the one settlement path, paying `fee` (logged in its
            Fill). Used by liquidation transfers and loss-cap close-outs.
    """
    guards._only_self()
    mw: uint256 = state._mark[market]
    self._fill(
        account,
        state._header[account],
        market,
        state._pos[account][market],
        size_delta,
        price,
        packing._mark_index(mw),
        counterparty,
        fee,
    )
