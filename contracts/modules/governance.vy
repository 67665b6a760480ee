# pragma version ~=0.4.3
"""
@title Governance: markets, collateral, fees, pausing and the risk book
@custom:contract-name governance
@license MIT
@notice Every setter checks its role, validates its input and logs old and new values.
        The risk book (margin ratios and stress scenarios) is published as contract code
        (SSTORE2, layout in modules/margin.vy) after checks of coverage and of bounded
        change against the current book.
"""

from ethereum.ercs import IERC20Detailed
from ..interfaces import IClearinghouseEngine
from . import state
from . import treasury
from snekmate.auth import access_control
from snekmate.utils import pausable
from . import constants as c
from . import packing
from . import funding
from . import margin

uses: state
uses: access_control
uses: pausable
uses: treasury


@external
def add_market(params: packing.MarketParams):
    """
    @notice Lists the next market; its id must already exist in the oracle router. The
            `listed` and `paused` fields are ignored: a market is listed unpaused (pausing
            is the guardian's `pause_market`).
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    m: uint256 = state.market_count
    assert m < c.MAX_MARKETS, "clearinghouse: too many markets"
    assert m < staticcall state.ORACLE.market_count(), "clearinghouse: market unknown to oracle"
    p: packing.MarketParams = params
    p.listed = True
    p.paused = False
    self._validate_params(p)
    a: uint256 = packing._pack_params(p)
    self._check_total_exposure(m, p.max_vault_exposure)
    state._params[m] = a
    state.market_count = m + 1
    # listed while paused: the risk word carries the pause (`_write_risk_pause` covers
    # the markets listed, or in the book, when it ran)
    state._risk[m] = packing._risk_word(state._risk[m], state._system)
    log state.MarketListed(market=m, params=packing._unpack_params(a))


@external
def set_market_params(market: uint256, params: packing.MarketParams):
    """
    @notice Updates a market's pricing, funding and cap parameters. Accrues funding under
            the old parameters first. The pause flag is kept as it is (`listed` and
            `paused` in `params` are ignored): only the guardian pauses and the admin
            unpauses.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert market < state.market_count, "clearinghouse: unknown market"
    if packing._mark_time(state._mark[market]) != 0:
        extcall IClearinghouseEngine(self).engine_touch(market)
    p: packing.MarketParams = params
    p.listed = True
    p.paused = state._params[market] & packing.PAUSED_BIT != 0
    self._validate_params(p)
    # the frozen and sequencer bits belong to the oracle's state, the delayed-order bits
    # to `set_delayed_params` (modules/delayed.vy): keep them
    a: uint256 = packing._pack_params(p) | (state._params[market] & packing.KEPT_BITS)
    self._check_total_exposure(market, p.max_vault_exposure)
    log state.MarketParamsUpdated(
        market=market,
        old_params=packing._unpack_params(state._params[market]),
        new_params=packing._unpack_params(a),
    )
    state._params[market] = a


@internal
@pure
def _validate_params(p: packing.MarketParams):
    assert p.skew_scale != 0, "clearinghouse: zero skew scale"
    assert p.maker_fee <= p.taker_fee, "clearinghouse: maker fee above taker fee"
    assert p.taker_fee <= 10**16, "clearinghouse: fee above 1%"
    assert p.max_funding_rate != 0, "clearinghouse: zero max funding rate"
    assert p.max_funding_rate <= 4 * c.WAD, "clearinghouse: max funding rate above 4 per day"
    assert p.max_oi != 0, "clearinghouse: zero max open interest"
    assert p.max_vault_exposure != 0, "clearinghouse: zero vault exposure cap"


@internal
@view
def _check_total_exposure(market: uint256, fraction: uint256):
    """
    @dev The sum of every market's max_vault_exposure, with `fraction` for `market`, must
         stay within max_total_exposure (one bounded pass over the listed markets).
    """
    total: uint256 = fraction
    for i: uint256 in range(c.MAX_MARKETS):
        if i >= state.market_count:
            break
        if i != market:
            total += packing._params_max_vault_exposure(state._params[i])
    assert total <= state.max_total_exposure, "clearinghouse: exposure caps above the total cap"


@external
def set_vault_limits(max_total_exposure: uint256, max_pnl_factor: uint256, adl_target: uint256):
    """
    @notice The vault's limits across markets (WAD fractions of pool equity): the cap on
            the sum of the markets' exposure caps (at least their current sum, at most
            3), and the PnL cap that opens auto-deleveraging with the level it stops at
            (0 < target < factor <= 1). Admin only (the Timelock after the hand-over).
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert (
        adl_target != 0 and adl_target < max_pnl_factor and max_pnl_factor <= c.WAD
    ), "clearinghouse: bad pnl factors"
    assert max_total_exposure <= 3 * c.WAD, "clearinghouse: total cap above 3"
    log state.VaultLimitsUpdated(
        old_max_total_exposure=state.max_total_exposure,
        new_max_total_exposure=max_total_exposure,
        old_max_pnl_factor=state.max_pnl_factor,
        new_max_pnl_factor=max_pnl_factor,
        old_adl_target_factor=state.adl_target_factor,
        new_adl_target_factor=adl_target,
    )
    state.max_total_exposure = max_total_exposure
    state.max_pnl_factor = max_pnl_factor
    state.adl_target_factor = adl_target
    self._check_total_exposure(c.MAX_MARKETS, 0)


@external
def pause_market(market: uint256, paused: bool):
    """
    @notice Stops (or resumes) new risk in one market. Guardian pauses, admin unpauses.
    """
    if paused:
        access_control._check_role(state.GUARDIAN_ROLE, msg.sender)
    else:
        access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert market < state.market_count, "clearinghouse: unknown market"
    a: uint256 = state._params[market]
    if paused:
        a |= packing.PAUSED_BIT
    else:
        a &= ~packing.PAUSED_BIT
    state._params[market] = a
    log state.MarketPaused(market=market, paused=paused)


@external
def pause():
    """
    @notice Stops new risk everywhere at once. Deposits, risk reduction and liquidation
            continue.
    """
    access_control._check_role(state.GUARDIAN_ROLE, msg.sender)
    pausable._pause()
    state._system |= packing.SYSTEM_PAUSED_BIT
    self._write_risk_pause(True)


@external
def unpause():
    """
    @notice Resumes new risk. Admin only.
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    pausable._unpause()
    state._system &= ~packing.SYSTEM_PAUSED_BIT
    self._write_risk_pause(False)


@internal
def _write_risk_pause(paused: bool):
    """
    @dev Copies the pause into the risk word of every market listed or in the risk book
         (a trade reads it there: trading._require_can_add_risk; the words of the other
         slots are zero and stay so, `add_market` copies it for a market listed later).
    """
    n: uint256 = state.market_count
    book: address = packing._system_book(state._system)
    if book != empty(address):
        n = max(n, margin._book_header_of(book).n_markets)
    for m: uint256 in range(n, bound=c.MAX_MARKETS):
        state._risk[m] = packing._risk_word_paused(state._risk[m], paused)


@external
def add_collateral(token: address, haircut: uint256, price_market: uint256, cap: uint256):
    """
    @notice Allow-lists a non-settlement collateral token, valued at `price_market`'s mark
            less `haircut` (WAD fraction) for margin.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert token != empty(address), "clearinghouse: zero token"
    assert state._collateral_index[token] == 0, "clearinghouse: token already listed"
    idx: uint256 = state.collateral_count
    assert idx < c.MAX_COLLATERALS, "clearinghouse: too many collateral tokens"
    assert haircut < c.WAD, "clearinghouse: haircut must be below 100%"
    assert price_market < state.market_count, "clearinghouse: unknown market"
    decimals: uint256 = convert(staticcall IERC20Detailed(token).decimals(), uint256)
    assert decimals <= 18, "clearinghouse: token decimals above 18"
    state.collateral_token[idx] = token
    state._collateral_index[token] = idx + 1
    state.collateral_scale[idx] = 10**(18 - decimals)
    state.collateral_count = idx + 1
    log state.CollateralListed(index=idx, token=token, decimals=decimals)
    self._set_collateral(idx, haircut, price_market, cap)


@external
def set_collateral_params(index: uint256, haircut: uint256, price_market: uint256, cap: uint256):
    """
    @notice Updates a non-settlement collateral token's haircut, price market and cap.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert index != 0 and index < state.collateral_count, "clearinghouse: unknown token"
    assert haircut < c.WAD, "clearinghouse: haircut must be below 100%"
    assert price_market < state.market_count, "clearinghouse: unknown market"
    self._set_collateral(index, haircut, price_market, cap)


@internal
def _set_collateral(idx: uint256, haircut: uint256, price_market: uint256, cap: uint256):
    log state.CollateralParamsUpdated(
        index=idx,
        old_haircut=state.collateral_haircut[idx],
        new_haircut=haircut,
        old_price_market=state.collateral_market[idx],
        new_price_market=price_market,
        old_cap=state.collateral_cap[idx],
        new_cap=cap,
    )
    state.collateral_haircut[idx] = haircut
    state.collateral_market[idx] = price_market
    state.collateral_cap[idx] = cap


@external
def set_fee_split(insurance_bps: uint256, protocol_bps: uint256):
    """
    @notice Shares of every trading fee sent to insurance and to the protocol (bp); the
            rest goes to the vault.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert insurance_bps + protocol_bps <= c.BPS, "clearinghouse: shares above 100%"
    treasury._sweep_fees()  # fees accrued so far are split at the old shares
    sys: packing.System = packing._system(state._system)
    log state.FeeSplitUpdated(
        old_insurance_share=sys.insurance_bps,
        new_insurance_share=insurance_bps,
        old_protocol_share=sys.protocol_bps,
        new_protocol_share=protocol_bps,
    )
    sys.insurance_bps = insurance_bps
    sys.protocol_bps = protocol_bps
    self._write_system(sys)


@external
def set_max_mark_age(age: uint256):
    """
    @notice Oldest cached mark (seconds) a margin check may use.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert age != 0 and age <= 3_600, "clearinghouse: mark age out of range"
    sys: packing.System = packing._system(state._system)
    log state.MaxMarkAgeUpdated(old_age=sys.max_mark_age, new_age=age)
    sys.max_mark_age = age
    self._write_system(sys)


@external
def set_loss_cap_fee(fee: uint256):
    """
    @notice Fee (USD WAD) paid to whoever triggers a loss cap.
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert fee <= 1_000 * c.WAD, "clearinghouse: fee too large"
    log state.LossCapParamsUpdated(old_fee=state.loss_cap_fee, new_fee=fee)
    state.loss_cap_fee = fee


@external
def set_vault(new_vault: address):
    """
    @notice Sets the liquidity vault contract. Admin only.
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert new_vault != empty(address), "clearinghouse: zero vault"
    log state.VaultSet(old_vault=state.vault, new_vault=new_vault)
    state.vault = new_vault


@external
def set_risk_book_limits(shock_step_bps: uint256, ratio_step_bps: uint256):
    """
    @notice Bounds on how far one risk-book update may move any shock and any margin
            ratio. Admin only (the risk role is bounded by them).
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert shock_step_bps != 0 and ratio_step_bps != 0, "clearinghouse: zero step"
    log state.RiskBookLimitsUpdated(
        old_shock_step_bps=state.max_shock_step_bps,
        new_shock_step_bps=shock_step_bps,
        old_ratio_step_bps=state.max_ratio_step_bps,
        new_ratio_step_bps=ratio_step_bps,
    )
    state.max_shock_step_bps = shock_step_bps
    state.max_ratio_step_bps = ratio_step_bps


@external
def propose_risk_book(data: Bytes[margin.MAX_BOOK_BYTES]):
    """
    @notice Announces a risk book: it may be published with `set_risk_book` once
            `risk_book_delay` seconds have passed. The whole book is in the event, so
            anyone can check it before it takes effect. Risk role only.
    @param data The whole book (margin.MAX_BOOK_BYTES bytes; checked when published).
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    assert len(data) == margin.MAX_BOOK_BYTES, "clearinghouse: bad book length"
    book_hash: bytes32 = keccak256(data)
    eta: uint256 = block.timestamp + state.risk_book_delay
    state.risk_book_eta[book_hash] = eta
    log state.RiskBookProposed(book_hash=book_hash, proposer=msg.sender, eta=eta, data=data)


@external
def set_risk_book_delay(delay: uint256):
    """
    @notice Sets the delay between proposing and publishing a risk book (at most 30
            days). Admin only: after the deploy's hand-over the admin is the Timelock,
            so shortening the delay is itself delayed.
    @param delay Seconds.
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert delay <= 30 * 86_400, "clearinghouse: delay too long"
    log state.RiskBookDelayUpdated(old_delay=state.risk_book_delay, new_delay=delay)
    state.risk_book_delay = delay


@external
def set_risk_book(data: Bytes[margin.MAX_BOOK_BYTES]):
    """
    @notice Publishes a new risk book (margin ratios and stress scenarios, layout in
            modules/margin.vy) as contract code. It must cover every listed market, hold
            for each market a scenario moving it down and one moving it up by at least
            its imr_min, hold the two equal moves (one scenario moving every market by
            its largest down shock of the book at once, one by its largest up shock),
            keep the floor at or below every imr_min, and move no value further than the
            step limits from the current book. While `risk_book_delay` is set, only a
            book proposed with `propose_risk_book` at least that long ago can be
            published (once). Risk role only.
    @param data The whole book (margin.MAX_BOOK_BYTES bytes).
    """
    access_control._check_role(state.RISK_ROLE, msg.sender)
    if state.risk_book_delay != 0:
        book_hash: bytes32 = keccak256(data)
        eta: uint256 = state.risk_book_eta[book_hash]
        assert eta != 0, "clearinghouse: risk book not proposed"
        assert block.timestamp >= eta, "clearinghouse: risk book timelock not over"
        state.risk_book_eta[book_hash] = 0
    sys: packing.System = packing._system(state._system)
    old: address = sys.book
    h: packing.BookHeader = packing._book_header(extract32(data, 0, output_type=uint256))
    assert (
        h.n_scenarios != 0 and h.n_scenarios <= c.MAX_SCENARIOS
    ), "clearinghouse: bad scenario count"
    assert (
        h.n_markets >= state.market_count and h.n_markets <= c.MAX_MARKETS
    ), "clearinghouse: book must cover every market"
    assert len(data) == margin.MAX_BOOK_BYTES, "clearinghouse: bad book length"
    assert h.mmr_bps != 0 and h.mmr_bps <= c.BPS, "clearinghouse: bad maintenance ratio"
    has_old: bool = old != empty(address)
    oh: packing.BookHeader = empty(packing.BookHeader)
    if has_old:
        oh = margin._book_header_of(old)
        self._check_step(oh.floor_bps, h.floor_bps, state.max_ratio_step_bps)
        self._check_step(oh.mmr_bps, h.mmr_bps, state.max_ratio_step_bps)
    # bit k set while scenario k moves every market seen so far by its largest down (up)
    # shock of the book: the equal moves (a crash and a rally in which every market moves
    # by its own worst shock at once); one of each must survive every market
    all_scenarios: uint256 = packing._low_bits(h.n_scenarios)
    equal_down: uint256 = all_scenarios
    equal_up: uint256 = all_scenarios
    for m: uint256 in range(c.MAX_MARKETS):
        if m == h.n_markets:
            break
        off: uint256 = margin.HEADER_BYTES + margin.MARKET_BYTES * m
        w0: uint256 = extract32(data, off, output_type=uint256)
        w1: uint256 = extract32(data, off + 32, output_type=uint256)
        imr: uint256 = packing._book_imr_min_bps(w0)
        assert imr != 0 and imr <= c.BPS, "clearinghouse: bad initial margin ratio"
        assert packing._book_margin_scale(w0) != 0, "clearinghouse: zero margin scale"
        # the risk word copies word 0 and keeps the pause at bit 248: no stray bits
        assert packing._book_word0_fits(w0), "clearinghouse: book word has unused bits set"
        assert h.floor_bps <= imr, "clearinghouse: floor above initial margin"
        worst_down: int256 = 0
        worst_up: int256 = 0
        for k: uint256 in range(c.MAX_SCENARIOS):
            if k == h.n_scenarios:
                break
            x: int256 = packing._book_shock(w1, k)
            assert x >= -c.IBPS, "clearinghouse: shock below -100%"
            worst_down = min(worst_down, x)
            worst_up = max(worst_up, x)
        assert -worst_down >= convert(imr, int256) and worst_up >= convert(
            imr, int256
        ), "clearinghouse: scenarios must cover initial margin"
        for k: uint256 in range(c.MAX_SCENARIOS):
            if k == h.n_scenarios:
                break
            x: int256 = packing._book_shock(w1, k)
            if x != worst_down:
                equal_down = packing._without_bit(equal_down, k)
            if x != worst_up:
                equal_up = packing._without_bit(equal_up, k)
        if has_old and m < oh.n_markets:
            o0: uint256 = margin._book_word(old, off)
            o1: uint256 = margin._book_word(old, off + 32)
            self._check_step(packing._book_imr_min_bps(o0), imr, state.max_ratio_step_bps)
            self._check_step(
                packing._book_imr_slope_bps(o0),
                packing._book_imr_slope_bps(w0),
                state.max_ratio_step_bps,
            )
            # the size add-on's scale may at most halve or double per update
            old_scale: uint256 = packing._book_margin_scale(o0)
            new_scale: uint256 = packing._book_margin_scale(w0)
            assert (
                new_scale * 2 >= old_scale and new_scale <= old_scale * 2
            ), "clearinghouse: scale change above step limit"
            for k: uint256 in range(c.MAX_SCENARIOS):
                ox: int256 = 0
                nx: int256 = 0
                if k < oh.n_scenarios:
                    ox = packing._book_shock(o1, k)
                if k < h.n_scenarios:
                    nx = packing._book_shock(w1, k)
                assert abs(nx - ox) <= convert(
                    state.max_shock_step_bps, int256
                ), "clearinghouse: shock change above step limit"
    assert (
        equal_down != 0 and equal_up != 0
    ), "clearinghouse: no scenario moves every market by its largest shock"
    # the slots of markets the book does not list stay empty: a trade then learns from
    # its market's word 0 alone (imr_min != 0 exactly when listed) whether the book
    # covers it (trading._require_can_add_risk, one read of the book)
    for m: uint256 in range(h.n_markets, c.MAX_MARKETS, bound=c.MAX_MARKETS):
        assert (
            extract32(data, margin.HEADER_BYTES + margin.MARKET_BYTES * m, output_type=uint256) == 0
        ), "clearinghouse: unlisted book slot not empty"
    n: uint256 = len(data) + 1
    initcode: Bytes[margin.MAX_BOOK_BYTES + 11] = concat(
        b"\x61", slice(convert(n, bytes32), 30, 2), b"\x80\x60\x0a\x3d\x39\x3d\xf3\x00", data
    )
    book: address = raw_create(initcode)
    # each market's risk word: its new word 0 and the pause; the slots the old book
    # covered and this one does not are cleared (no market is listed there: n_markets >=
    # market_count; `add_market` copies the pause into a market listed later)
    sw: uint256 = state._system
    for m: uint256 in range(max(h.n_markets, oh.n_markets), bound=c.MAX_MARKETS):
        rw: uint256 = 0
        if m < h.n_markets:
            rw = packing._risk_word(
                extract32(data, margin.HEADER_BYTES + margin.MARKET_BYTES * m, output_type=uint256),
                sw,
            )
        state._risk[m] = rw
    sys.book = book
    sys.n_scenarios = h.n_scenarios
    sys.floor_bps = h.floor_bps
    sys.mmr_bps = h.mmr_bps
    self._write_system(sys)
    version: uint256 = state.risk_book_version + 1
    state.risk_book_version = version
    log state.RiskBookUpdated(
        old_book=old,
        new_book=book,
        version=version,
        n_markets=h.n_markets,
        n_scenarios=h.n_scenarios,
    )


@internal
def _write_system(sys: packing.System):
    """
    @dev Stores the system word, keeping its copy of the pause flag (SYSTEM_PAUSED_BIT,
         written only by `pause` and `unpause`).
    """
    state._system = packing._pack_system(sys) | (state._system & packing.SYSTEM_PAUSED_BIT)


@internal
@pure
def _check_step(old: uint256, new: uint256, step: uint256):
    if new > old:
        assert new - old <= step, "clearinghouse: ratio change above step limit"
    else:
        assert old - new <= step, "clearinghouse: ratio change above step limit"
