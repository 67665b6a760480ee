# pragma version ~=0.4.3
"""
@title perpdex Clearinghouse signed-order half
@custom:contract-name ClearinghouseOrders
@license MIT
@notice Executed only by delegatecall (Clearinghouse -> Ops -> Admin -> here; its own
        storage is never used): settlement of matched EIP-712 signed orders. Call
        `settle` on the Clearinghouse address with this contract's ABI; it returns
        nothing (results are events). Selectors not exported here go on, by
        delegatecall, to ClearinghouseRisk (auto-deleveraging, the vault's limits, and
        the orders' `cancel_order`, moved there for bytecode room; `cancel_below` is on
        ClearinghouseAdmin), then to ClearinghouseTreasury.
        Orders are the struct of perpdex/sdk/orders.py, signed for the domain
        ("perpdex", "1", chain id, the Clearinghouse address). `settle` takes a batch of
        matched pairs in a compact word encoding (below; `encode_fill_batch` in
        perpdex/sdk/orders.py writes it) and is permissionless: it checks both
        signatures itself (the account's owner or an operator; an owner that is a
        contract wallet through EIP-1271), the orders' limits, expiry, nonces and filled
        amounts, and settles each fill at the maker's limit price through the engine's
        one settlement path, with the checks a market order has (quorum, pause, minimum
        size, open-interest caps, margin and loss cap).
        Off-oracle fills (review 3): the side that fills at a price worse than the
        oracle's (buys above it, sells below it) must end the fill at or above its
        maintenance requirement in its own margin mode (R3-2), and its order must be
        signed by the owner: an operator's order fills only at the oracle price or
        better for the account (R3-1), so an operator trades for the account but cannot
        move its value to another account beyond fees.
        Immediate-or-cancel (FLAG_IOC, taker only): the order is done after the batch it
        first fills in; its fills there must follow each other (a sweep of several
        makers), and its remainder is cancelled (R3-3).
        Replay state: every order has a per-account nonce. Two bits per nonce:
        "partly filled" (its filled amount is in `state._order_filled[digest]`) and
        "done" (completely filled or cancelled). The 44 nonces from the account's
        minimum nonce up keep them in the account header (bits 104-191), which a fill
        reads and writes anyway: an order there that fills completely in one go costs
        no storage word of its own; higher nonces keep them 128 per storage word
        (`state._order_bits`). Filling an order completely or cancelling it consumes its
        nonce, so an account's live orders carry distinct nonces. `cancel_below`
        (ClearinghouseAdmin) raises the account's minimum nonce (the header's top 64
        bits) and moves the window with it (order_hash._raise_min_nonce, review 8).
        A batch is atomic: any bad fill reverts it (nothing settled); a matcher simulates
        first and drops what fails.
@custom:security No trusted settler: whoever submits a batch can only execute what both
        signers signed, at the maker's price, within a band of the oracle price (and at
        the oracle price or better for an operator-signed order). The
        domain separator is computed from `self` (the Clearinghouse under delegatecall)
        and `chain.id` on every call.

        Batch encoding: 10 words per fill, maker order then taker order, 5 words each:
          w0  account
          w1  limit_price << 128 | abs(size)              (each below 2**128)
          w2  nonce (bits 0-63) | expiry (64-127) | flags (128-135) | market (136-151) |
              sell (152) | ECDSA v - 27 (153) | EIP-1271 signature (154) |
              fill size, taker order only (160-255)
          w3  r   (EIP-1271: the first 32 signature bytes)
          w4  s   (EIP-1271: the next 32)
        trigger_price and keeper_fee are 0 in this encoding: a conditional order (trigger
        price set) never settles here; it fires against the vault through
        `execute_order` (modules/conditional.vy, in ClearinghouseRisk).
"""

from snekmate.auth import access_control
from snekmate.utils import pausable
from .interfaces import IOracleRouter
from .interfaces import IClearinghouseEngine
from .modules import state
from .modules import guards
from .modules import marks
from .modules import settlement
from .modules import treasury
from .modules import gates
from .modules import trading
from .modules import constants as c
from .modules import packing
from .modules import order_hash as oh
from .modules import margin
from .modules import fixed_point as fp
from .modules import positions

initializes: access_control
initializes: pausable
initializes: state
initializes: guards[state := state]
initializes: marks[state := state, guards := guards]
initializes: treasury[state := state, access_control := access_control]
initializes: settlement[state := state, treasury := treasury]
initializes: gates[state := state, marks := marks]
initializes: trading[
    state := state, guards := guards, marks := marks, settlement := settlement, gates := gates
]
initializes: oh[state := state]

# @notice Most fills per `settle` call.
MAX_FILLS: constant(uint256) = 32
WORDS_PER_ORDER: constant(uint256) = 5
WORDS_PER_FILL: constant(uint256) = 2 * WORDS_PER_ORDER
# @notice A fill's price (the maker's limit) must be within this many bp of the oracle
#         price: two colluding accounts cannot move value between them at an absurd
#         price. Within the band the side filled worse than the oracle must stay above
#         maintenance (an account below it cannot be dumped to another, R3-2).
FILL_BAND_BPS: constant(uint256) = 200

# the IOC flag's bit in w2 (flags at bit 128)
IOC_BIT: constant(uint256) = 130


interface IExtension:
    def extension_config() -> (address, address): view


# @notice Vault-limits half, reached by delegatecall for selectors not exported here.
RISK: public(immutable(address))


@deploy
def __init__(oracle: IOracleRouter, settlement_token: address, risk_half: address):
    """
    @param oracle Must equal the Clearinghouse's oracle.
    @param settlement_token Must equal the Clearinghouse's settlement token.
    @param risk_half A `ClearinghouseRisk` deployed with the same oracle and token.
    """
    ext_oracle: address = empty(address)
    ext_token: address = empty(address)
    ext_oracle, ext_token = staticcall IExtension(risk_half).extension_config()
    assert (
        ext_oracle == oracle.address and ext_token == settlement_token
    ), "clearinghouse: extension mismatch"
    RISK = risk_half
    access_control.__init__()
    pausable.__init__()
    state.__init__(oracle, settlement_token)


@external
@view
def extension_config() -> (address, address):
    """
    @notice The oracle and settlement token this code half was built for.
    """
    return state.ORACLE.address, state.collateral_token[0]


@internal
def _use(
    account: uint256,
    size: int256,
    limit: uint256,
    w2: uint256,
    r: uint256,
    s: uint256,
    amount: uint256,
    domain: bytes32,
    sweep: bytes32,
    swept: uint256,
) -> (uint256, bytes32, bool, uint256):
    """
    @dev Checks one order of a fill (account, expiry, nonce, signature, remaining size)
         and books `amount` against it; the order is passed as words (`size` signed,
         `w2` the encoding's third word), not as a struct: no copies in the hot loop.
         `sweep` is the IOC order the previous fill's taker filled (`swept` of it, in
         this batch): it may fill on although done. Returns the account's header, the
         digest, whether an operator signed it and the order's filled amount after this
         fill.
    """
    hdr: uint256 = guards._require_exists(account)
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"
    # no signed fill while a delayed order of the account may settle (R4-2)
    guards._require_idle(hdr)
    nonce: uint256 = w2 & packing.MASK_64
    expiry: uint256 = (w2 >> 64) & packing.MASK_64
    assert expiry >= block.timestamp, "clearinghouse: order expired"
    assert nonce >= hdr >> oh.MIN_NONCE_SHIFT, "clearinghouse: order nonce cancelled"
    # trigger price and keeper fee are 0 in a matched fill (the contract's notice)
    digest: bytes32 = oh._digest_words(
        domain,
        account,
        (w2 >> 136) & packing.MASK_16,
        size,
        limit,
        0,
        0,
        expiry,
        nonce,
        (w2 >> 128) & packing.MASK_8,
    )
    by_operator: bool = oh._verify(account, digest, w2 >> 153, r, s)
    # the nonce's replay bits: in the header's window (the word is `hdr`, no read) or in
    # an order_bits word (order_hash._replay_word, review 8)
    bits: uint256 = 0
    at: uint256 = 0
    in_header: bool = False
    bits, at, in_header = oh._replay_word(account, hdr, nonce)
    st: uint256 = (bits >> at) & 3
    filled: uint256 = amount
    if digest == sweep:
        # an IOC order sweeping on (its DONE bit was set by its first fill, just before)
        filled += swept
    else:
        assert st & oh.ORDER_DONE == 0, "clearinghouse: order done"
        if st & oh.ORDER_PARTIAL != 0:
            filled += state._order_filled[digest]
    total: uint256 = convert(abs(size), uint256)
    assert filled <= total, "clearinghouse: order overfilled"
    # an IOC order is done at its first fill (never partly filled: IOC orders only take)
    if filled == total or (w2 >> IOC_BIT) & 1 != 0:
        bits |= oh.ORDER_DONE << at
        if st & oh.ORDER_PARTIAL != 0:
            state._order_filled[digest] = 0
    else:
        bits |= oh.ORDER_PARTIAL << at
        state._order_filled[digest] = filled
    oh._store_replay_word(account, nonce, bits, in_header)
    # the header as now stored: the settlement's own header write keeps the window
    if in_header:
        return bits, digest, by_operator, filled
    return hdr, digest, by_operator, filled


@internal
@view
def _side(pw: uint256, delta: int256, price: uint256, order_flags: uint256) -> (int256, bool):
    """
    @dev Pre-fill checks of one side, as a market order has them: reduce-only and minimum
         position size at the oracle price (whether risk may be added is checked by
         `settle`, once per market and batch). `pw`: the side's position word. Returns
         (size before, whether the fill adds risk).
    """
    size: int256 = packing._pos_size(pw)
    adds: bool = size == 0 or (size > 0) == (delta > 0) or abs(delta) > abs(size)
    if order_flags & oh.FLAG_REDUCE_ONLY != 0:
        assert not adds, "clearinghouse: not reduce-only"
    left: int256 = size + delta
    assert left == 0 or convert(abs(left), uint256) * price >= c.MIN_POSITION_NOTIONAL * c.WAD, (
        "clearinghouse: min position size"
    )
    return size, adds


@internal
def _after(
    account: uint256,
    hdr: uint256,
    m: uint256,
    size: int256,
    adds: bool,
    worse: bool,
    touched: uint256,
    w0: uint256,
):
    """
    @dev Post-fill margin checks of one side, as `trading._pool_trade` makes them; and a
         side filled `worse` than the oracle price must stay at or above maintenance in
         its own margin mode and at or above its loss cap (an adding fill already passed
         initial margin and the loss cap): `engine_check_fill`, on the Clearinghouse (this
         half has no room for the margin scan). The common case here: an adding fill of
         an isolated account without a loss cap whose only position is in `m` and that
         holds no collateral but the settlement token (`gates._lone_isolated_margin`, the
         vault trade's check of such an account). `touched`: the batch's markets so
         far, whose marks are this block's (a touch without quorum reverted the fill):
         none is stale. `w0`: the risk book's word 0 of market `m`.
    """
    if adds and gates._lone_isolated(hdr, m):
        # `_check_after_trade`'s one-position check (`_refresh_stale` has nothing to
        # re-read: one position, in a touched market, no collateral)
        equity: int256 = 0
        initial: uint256 = 0
        equity, initial = gates._lone_isolated_margin(account, m, w0)
        assert equity >= convert(initial, int256), "clearinghouse: below initial margin"
    elif adds or worse or hdr & c.ACCOUNT_PORTFOLIO != 0:
        extcall IClearinghouseEngine(self).engine_check_fill(account, m, size, adds, worse, touched)
    # closing the last position must not leave a debt no liquidation can reach (rare:
    # the engine's own entry point, for bytecode)
    if packing._position_count(hdr) == 0 and state._balance[account][0] < 0:
        extcall IClearinghouseEngine(self).engine_check_initial(
            account, "clearinghouse: close leaves negative equity", False
        )


@external
@nonreentrant
def settle(batch: DynArray[uint256, MAX_FILLS * WORDS_PER_FILL]):
    """
    @notice Settles matched pairs of signed orders (permissionless). Each fill trades
            the taker order's fill size at the maker's limit price; the maker pays the
            maker fee, the taker the taker fee. Atomic: any bad fill reverts the batch.
    @param batch 10 words per fill (encoding in the contract's notice;
           `perpdex.sdk.orders.encode_fill_batch`).
    """
    n: uint256 = len(batch) // WORDS_PER_FILL
    assert n != 0 and n * WORDS_PER_FILL == len(batch), "clearinghouse: malformed batch"
    domain: bytes32 = oh._domain()
    sweep: bytes32 = empty(bytes32)
    swept: uint256 = 0
    touched: uint256 = 0
    prices: uint256[c.MAX_MARKETS] = empty(uint256[c.MAX_MARKETS])
    oflags: uint256[c.MAX_MARKETS] = empty(uint256[c.MAX_MARKETS])
    indices: int256[c.MAX_MARKETS] = empty(int256[c.MAX_MARKETS])
    # markets where adding risk passed its checks in this batch: none of what they read
    # (pause, the market's params and oracle flags, the risk book) changes within it
    risk_ok: uint256 = 0
    book_w0: uint256[c.MAX_MARKETS] = empty(uint256[c.MAX_MARKETS])
    last_m: uint256 = max_value(uint256)
    pw: uint256 = 0
    p: packing.MarketParams = empty(packing.MarketParams)
    for i: uint256 in range(MAX_FILLS):
        if i == n:
            break
        # the two orders' words (encoding in the contract's notice), read in place
        b: uint256 = i * WORDS_PER_FILL
        m_acct: uint256 = batch[b]
        m_w1: uint256 = batch[b + 1]
        m_w2: uint256 = batch[b + 2]
        t_acct: uint256 = batch[b + WORDS_PER_ORDER]
        t_w1: uint256 = batch[b + WORDS_PER_ORDER + 1]
        t_w2: uint256 = batch[b + WORDS_PER_ORDER + 2]
        # signed sizes: |size| < 2**128, so the convert cannot fail
        m_size: int256 = convert(m_w1 & packing.MASK_128, int256)
        if (m_w2 >> 152) & 1 == 1:
            m_size = -m_size
        t_size: int256 = convert(t_w1 & packing.MASK_128, int256)
        if (t_w2 >> 152) & 1 == 1:
            t_size = -t_size
        t_limit: uint256 = t_w1 >> 128
        m: uint256 = (m_w2 >> 136) & packing.MASK_16
        assert (t_w2 >> 136) & packing.MASK_16 == m, "clearinghouse: market mismatch"
        # a run of fills in one market checks it once (market_count only grows)
        if m != last_m:
            assert m < state.market_count, "clearinghouse: unknown market"
        assert (m_size > 0) != (t_size > 0), "clearinghouse: same side"
        assert m_acct != t_acct, "clearinghouse: self-trade"
        amount: uint256 = t_w2 >> 160
        assert amount != 0, "clearinghouse: zero fill"
        price: uint256 = m_w1 >> 128
        assert (price <= t_limit) == (t_size > 0) or price == t_limit, (
            "clearinghouse: limit not crossed"
        )
        mf: uint256 = (m_w2 >> 128) & packing.MASK_8
        tf: uint256 = (t_w2 >> 128) & packing.MASK_8
        assert tf & oh.FLAG_POST_ONLY == 0, "clearinghouse: post-only as taker"
        assert mf & oh.FLAG_IOC == 0, "clearinghouse: IOC order as maker"
        hdr_m: uint256 = 0
        hdr_t: uint256 = 0
        dm: bytes32 = empty(bytes32)
        dt: bytes32 = empty(bytes32)
        op_m: bool = False
        op_t: bool = False
        filled: uint256 = 0
        hdr_m, dm, op_m, filled = self._use(
            m_acct,
            m_size,
            price,
            m_w2,
            batch[b + 3],
            batch[b + 4],
            amount,
            domain,
            empty(bytes32),
            0,
        )
        hdr_t, dt, op_t, filled = self._use(
            t_acct,
            t_size,
            t_limit,
            t_w2,
            batch[b + WORDS_PER_ORDER + 3],
            batch[b + WORDS_PER_ORDER + 4],
            amount,
            domain,
            sweep,
            swept,
        )
        # an IOC taker may fill on only in the fills right after this one
        sweep = empty(bytes32)
        if tf & oh.FLAG_IOC != 0:
            sweep = dt
            swept = filled
        # the market's params, unpacked once per run of fills in one market: nothing in
        # a batch changes them but the oracle bits (`_touch_with`), which they omit
        if m != last_m:
            pw = state._params[m]
            p = packing._unpack_params(pw)
            last_m = m
        # in a delayed market an operator trades only by commit_order, whose fill price
        # nobody knows at commit (R4-3: else it fills the account against its own at the
        # oracle price just before an update it knows)
        assert not (op_m or op_t) or pw & packing.DELAYED_ADD_BIT == 0, (
            "clearinghouse: operator order in delayed market"
        )
        if (touched >> m) & 1 == 0:
            touched |= 1 << m
            prices[m], oflags[m], indices[m] = marks._touch_with(m, p, True)
        oracle: uint256 = prices[m]
        # no fill of any kind (reduce-only included) without quorum
        marks._require_quorum(oflags[m])
        band: uint256 = oracle * FILL_BAND_BPS // c.BPS
        assert price + band >= oracle and price <= oracle + band, (
            "clearinghouse: price off oracle band"
        )
        delta: int256 = convert(amount, int256)
        if t_size < 0:
            delta = -delta
        # the side that buys above the oracle price or sells below it: it must stay above
        # maintenance (`_after`), and an operator may not sign for it (R3-1, R3-2)
        worse_t: bool = price != oracle and (price > oracle) == (delta > 0)
        worse_m: bool = price != oracle and not worse_t
        assert not ((worse_t and op_t) or (worse_m and op_m)), (
            "clearinghouse: operator fill worse than oracle"
        )
        size_t: int256 = 0
        size_m: int256 = 0
        adds_t: bool = False
        adds_m: bool = False
        # each side's position word, read once for its checks and its settlement (the
        # two accounts differ: nothing writes either word in between)
        pos_t: uint256 = state._pos[t_acct][m]
        pos_m: uint256 = state._pos[m_acct][m]
        size_t, adds_t = self._side(pos_t, delta, oracle, tf)
        size_m, adds_m = self._side(pos_m, -delta, oracle, mf)
        if (adds_t or adds_m) and (risk_ok >> m) & 1 == 0:
            # and the market's risk-book word 0
            book_w0[m] = trading._require_can_add_risk(m, p, oflags[m])
            risk_ok |= 1 << m
        # fees rounded up; amount < 2**128, fee < 2**58, price < 2**128 (w1): a product
        # that overflowed 256 bits would revert, not wrap (no 512-bit mul_div needed)
        fee_t: uint256 = (amount * p.taker_fee * price + c.WAD * c.WAD - 1) // (c.WAD * c.WAD)
        fee_m: uint256 = (amount * p.maker_fee * price + c.WAD * c.WAD - 1) // (c.WAD * c.WAD)
        pnl_t: int256 = 0
        pnl_m: int256 = 0
        funding_t: int256 = 0
        funding_m: int256 = 0
        after_t: int256 = 0
        after_m: int256 = 0
        dcost_t: int256 = 0
        dcost_m: int256 = 0
        dsnap_t: int256 = 0
        dsnap_m: int256 = 0
        hdr_t, pnl_t, funding_t, after_t, dcost_t, dsnap_t = settlement._settle_account(
            t_acct, hdr_t, m, pos_t, delta, price, indices[m], fee_t
        )
        hdr_m, pnl_m, funding_m, after_m, dcost_m, dsnap_m = settlement._settle_account(
            m_acct, hdr_m, m, pos_m, -delta, price, indices[m], fee_m
        )
        # the market's shared words, once for both sides (settlement._settle_side moves them
        # per side by the same amounts): pool cash and pending fees, pool sums, OI
        cash: int256 = pnl_t - funding_t + pnl_m - funding_m
        if cash != 0 or fee_t + fee_m != 0:
            treasury._book_fill(cash, fee_t + fee_m)
        if dcost_t + dcost_m != 0 or dsnap_t + dsnap_m != 0:
            sums: uint256 = state._pool_sums[m]
            state._pool_sums[m] = packing._pack_i128(
                packing._lo_i128(sums) + dcost_t + dcost_m,
                packing._hi_i128(sums) + dsnap_t + dsnap_m,
            )
        # each side's old position leaves its side's open interest, its new one joins
        oi: uint256 = state._oi[m]
        long_oi: uint256 = convert(
            convert(oi & packing.MASK_128, int256)
            + max(after_t, 0)
            - max(size_t, 0)
            + max(after_m, 0)
            - max(size_m, 0),
            uint256,
        )
        short_oi: uint256 = convert(
            convert(oi >> 128, int256)
            + max(-after_t, 0)
            - max(-size_t, 0)
            + max(-after_m, 0)
            - max(-size_m, 0),
            uint256,
        )
        state._oi[m] = packing._pack_u128(long_oi, short_oi)
        # a matched fill leaves the skew as it was: only the open-interest caps can bind,
        # on a side that grew (trading._check_caps' rule; its exposure branch cannot fire
        # when the skew does not move, and leaving it out frees 850 bytes of this half)
        assert (long_oi <= oi & packing.MASK_128 or long_oi <= p.max_oi) and (
            short_oi <= oi >> 128 or short_oi <= p.max_oi
        ), "clearinghouse: open interest cap reached"
        self._after(t_acct, hdr_t, m, size_t, adds_t, worse_t, touched, book_w0[m])
        self._after(m_acct, hdr_m, m, size_m, adds_m, worse_m, touched, book_w0[m])
        # both sides in one event (no `Fill` per side: one log instead of three)
        log state.OrdersMatched(
            maker=m_acct,
            taker=t_acct,
            maker_order=dm,
            taker_order=dt,
            market=m,
            size_delta=delta,
            price=price,
            maker_fee=fee_m,
            taker_fee=fee_t,
            maker_realized_pnl=pnl_m,
            taker_realized_pnl=pnl_t,
            maker_funding_paid=funding_m,
            taker_funding_paid=funding_t,
            maker_size=after_m,
            taker_size=after_t,
        )


@external
def __default__():
    """
    @notice Forwards the remaining selectors to ClearinghouseRisk by delegatecall.
    """
    raw_call(RISK, msg.data, is_delegate_call=True)
