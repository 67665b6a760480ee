# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title perpdex oracle router
@custom:contract-name OracleRouter
@license MIT
@notice Prices for every perpdex market, read from up to three Chainlink
        AggregatorV3-compatible feeds per market, plus a short time-weighted
        price (an EMA) and the L2 sequencer status.

        Glossary:
        - WAD: 1e18 fixed point; every price here is USD per one unit of the
          market's base asset, in WAD, whatever the feed's decimals.
        - source: one AggregatorV3 feed of a market, with its `max_age` (the
          longest accepted time since `updatedAt`) and its cached `decimals`.
        - valid source: answer > 0, 0 < updatedAt <= now,
          now - updatedAt <= max_age and min_price <= price <= max_price.
        - agree: two or more prices agree when (max - min) * 10_000 <=
          max_deviation_bps * reference, the reference being the floor of
          the mean for two prices and the middle one for three.
        - quorum: at least `min_fresh` (>= 2) valid sources, and
            2 valid: they agree -> price = floor of their mean;
            3 valid: all agree -> price = the median; otherwise exactly one
              of the pairs (low, mid) and (mid, high) agrees -> the third is
              an outlier and is dropped, price = floor of the mean of the
              agreeing pair; otherwise (both pairs or neither) no quorum;
            0 or 1 valid: no quorum.
          Never a mean of two disagreeing sources, never a lone source.
        - flags: FLAG_DEGRADED (1) means "no quorum": the price returned
          with it is the last quorum price recorded by `observe` (0 before
          the first), for display only; the clearinghouse freezes the
          market instead of using it. `latest` and `observe` never revert
          for want of valid sources. FLAG_SEQUENCER_DOWN (2) the
          sequencer-uptime feed says
          down (or cannot be read, or its `startedAt` is 0);
          FLAG_SEQUENCER_GRACE (4) the sequencer came back less than
          `grace_period` ago. Risk-increasing actions need flags == 0.
        - EMA: kept per market as (last_price, ema, last_ts). `observe` reads
          the market; a reading without quorum changes nothing; else with dt = now - last_ts, w = min(dt, twap_window):
              ema' = ema + (last_price - ema) * w / twap_window
          where the division truncates toward zero (signed arithmetic; the
          code branches on the sign so that it stays unsigned), and stores
          last_price = price, last_ts = now. The first observation sets
          ema = price. `twap` applies the same formula up to now without a
          new reading.

        Storage layout: four kinds of packed word, `_config[market]`,
        `_sources[market][i]`, `_observations[market]` and `_globals`, defined with
        their pack/unpack pairs in modules/packing.vy ("oracle router words"). A config
        word of zero means "no such market" (the source count is never zero); bit 248
        of a config word is a per-market copy of "a sequencer feed is set", kept in step
        by `set_sequencer_feed`, so that reads without a feed skip one cold `SLOAD`; an
        observation word's last field is the CREATE nonce of the market's snapshot.
        The snapshot: `_config[market]`, its three `_sources` words (zero
          where there is no source) and the sequencer feed and grace
          period of `_globals`, stored as the code of a contract the
          router creates (a STOP byte, then the five words; SSTORE2)
          whenever one of them changes. `observe` and `record` read that
          code (one cold account, 2,600 gas) instead of five cold slots
          (10,500): its address follows from the router's address and the
          nonce in `_observations` (the word they read anyway). The
          storage words stay the reference every view reads.
        The per-market words live in fixed-size arrays indexed by market
        id (no `KECCAK256` per access). Prices fit in 96 bits because
        `max_price <= MAX_PRICE` (2**88 - 1, about 3.1e8 USD per unit) and
        the EMA is a convex combination of past prices. `observe` on a
        market with n sources costs one cold `SLOAD`, one snapshot read,
        one `SSTORE`, n feed calls and one log; a sequencer feed adds one
        call.
@custom:security - Only RISK_ROLE can change sources or parameters; the admin
                   (DEFAULT_ADMIN_ROLE) manages roles through snekmate's
                   `access_control`.
                 - Feeds are read with `STATICCALL` and `revert_on_failure`
                   off: a feed that reverts or returns short data counts as
                   an invalid source (unavailable) instead
                   of blocking the market, and cannot re-enter. A feed can
                   still burn the gas it is forwarded: configure only
                   audited feeds.
                 - `observe` is open to anyone: it only records the feeds'
                   own readings, so callers cannot choose the recorded
                   price, only when it is sampled. The EMA holds the last
                   observed price constant between observations, so a
                   market that nobody observes for a long time has an EMA
                   that lags the feeds; the clearinghouse observes on every
                   trade.
                 - The sequencer-uptime feed fails closed: if it reverts,
                   answers anything but 0, or has `startedAt` 0, the flags
                   say DOWN; a `startedAt` in the future counts as GRACE.
                 - Changing sources or `twap_window` keeps the EMA state;
                   `twap` always uses the current `twap_window`.
"""

from ethereum.ercs import IERC165

implements: IERC165

from snekmate.auth.interfaces import IAccessControl

implements: IAccessControl

from .interfaces import IOracleRouter

implements: IOracleRouter

from .interfaces import IAggregatorV3

from snekmate.auth import access_control

initializes: access_control

from .modules import constants as c
from .modules import packing

exports: (
    access_control.hasRole,
    access_control.grantRole,
    access_control.revokeRole,
    access_control.renounceRole,
    access_control.getRoleAdmin,
    access_control.supportsInterface,
    access_control.DEFAULT_ADMIN_ROLE,
)


# @dev A market's configuration, as returned by `market_config`.
struct MarketConfig:
    sources: DynArray[address, MAX_SOURCES]
    max_ages: DynArray[uint256, MAX_SOURCES]
    decimals: DynArray[uint8, MAX_SOURCES]
    min_price: uint256
    max_price: uint256
    max_deviation_bps: uint256
    min_fresh: uint256
    twap_window: uint256


# @dev The role allowed to add markets and change sources and parameters.
RISK_ROLE: public(constant(bytes32)) = keccak256("RISK_ROLE")


# @dev Flag bits returned with every price (values shared with the clearinghouse in
#      modules/constants.vy).
FLAG_DEGRADED: public(constant(uint256)) = c.FLAG_DEGRADED
FLAG_SEQUENCER_DOWN: public(constant(uint256)) = c.FLAG_SEQUENCER_DOWN
FLAG_SEQUENCER_GRACE: public(constant(uint256)) = c.FLAG_SEQUENCER_GRACE


# @dev Hard caps on markets (the clearinghouse's, modules/constants.vy) and on sources per
#      market.
MAX_MARKETS: public(constant(uint256)) = c.MAX_MARKETS
MAX_SOURCES: public(constant(uint256)) = 3


# @dev The largest accepted `max_price`, so every price returned is at most this: the
#      clearinghouse's bound (its mark word stores prices in 88 bits), one constant in
#      modules/constants.vy. The router's own words have 96-bit price fields.
MAX_PRICE: public(constant(uint256)) = c.MAX_PRICE


# @dev The largest accepted `max_age`, about 194 days (packed in 24 bits).
MAX_AGE_LIMIT: public(constant(uint256)) = 2**24 - 1


# @dev Bounds of `twap_window` and `grace_period`, in seconds.
MIN_TWAP_WINDOW: public(constant(uint256)) = 60
MAX_TWAP_WINDOW: public(constant(uint256)) = 86_400
MAX_GRACE_PERIOD: public(constant(uint256)) = 86_400


# @dev The largest accepted feed `decimals()`.
MAX_FEED_DECIMALS: public(constant(uint256)) = 36


# @dev The basis-point denominator.
_BPS: constant(uint256) = c.BPS


# @dev The decimals of a WAD.
_WAD_DECIMALS: constant(uint256) = 18


# Word layouts: contracts/modules/packing.vy ("oracle router words"). The per-trade path
# shifts by these aliases of its names (perpdex/devtools/packing_baseline.txt).
_MASK_8: constant(uint256) = packing.MASK_8
_MASK_16: constant(uint256) = packing.MASK_16
_MASK_24: constant(uint256) = packing.MASK_24
_MASK_64: constant(uint256) = packing.MASK_64
_MASK_96: constant(uint256) = packing.MASK_96
_MASK_160: constant(uint256) = packing.MASK_160
_MASK_40: constant(uint256) = packing.MASK_40
_CFG_MAX_PRICE: constant(uint256) = packing.ORACLE_CFG_MAX_PRICE
_CFG_DEVIATION: constant(uint256) = packing.ORACLE_CFG_DEVIATION
_CFG_WINDOW: constant(uint256) = packing.ORACLE_CFG_WINDOW
_CFG_MIN_FRESH: constant(uint256) = packing.ORACLE_CFG_MIN_FRESH
_CFG_COUNT: constant(uint256) = packing.ORACLE_CFG_COUNT
_CFG_HAS_SEQUENCER: constant(uint256) = packing.ORACLE_CFG_HAS_SEQUENCER
_SRC_DECIMALS: constant(uint256) = packing.ORACLE_SRC_DECIMALS
_SRC_FACTOR: constant(uint256) = packing.ORACLE_SRC_FACTOR
_SRC_MAX_AGE: constant(uint256) = packing.ORACLE_SRC_MAX_AGE
_OBS_EMA: constant(uint256) = packing.ORACLE_OBS_EMA
_OBS_TS: constant(uint256) = packing.ORACLE_OBS_TS
_OBS_SNAPSHOT: constant(uint256) = packing.ORACLE_OBS_SNAPSHOT
_GLB_GRACE: constant(uint256) = packing.ORACLE_GLB_GRACE
# @dev The snapshot's data: config, three sources, sequencer feed and grace period.
_SNAPSHOT_BYTES: constant(uint256) = 160


# @dev The first 22 bytes of rlp([self, nonce]) for a nonce below 128 (0xd6 0x94 self),
# left-aligned (54_932 = 0xd694): the hot path hashes it with the nonce byte.
_RLP_SELF: immutable(uint256)


# @dev `latestRoundData()` returns five 32-byte words.
_ROUND_DATA_SIZE: constant(uint256) = 160


# @dev Market id => packed parameters (see the layout above). Fixed-size
# arrays (ids are below MAX_MARKETS) save the `KECCAK256` of a `HashMap`.
_config: uint256[MAX_MARKETS]


# @dev Market id => packed sources (see the layout above).
_sources: uint256[MAX_SOURCES][MAX_MARKETS]


# @dev Market id => packed EMA state (see the layout above).
_observations: uint256[MAX_MARKETS]


# @dev Packed sequencer feed, grace period and market count.
_globals: uint256


# @dev The sequencer flags already read in this transaction, plus one (0: not read yet).
# A trade that refreshes several markets reads the sequencer feed once; transient, so it
# never outlives the transaction (a persistent per-block copy would cost a 2,900-gas
# write to the first reader of every block).
_sequencer_tx: transient(uint256)


# @dev Emitted when `add_market` registers market `market`.
event MarketAdded:
    market: indexed(uint256)
    sender: indexed(address)
    sources: DynArray[address, MAX_SOURCES]
    max_ages: DynArray[uint256, MAX_SOURCES]
    min_price: uint256
    max_price: uint256
    max_deviation_bps: uint256
    min_fresh: uint256
    twap_window: uint256


# @dev Emitted when `set_sources` replaces the sources of `market`.
event SourcesUpdated:
    market: indexed(uint256)
    sender: indexed(address)
    old_sources: DynArray[address, MAX_SOURCES]
    new_sources: DynArray[address, MAX_SOURCES]
    old_max_ages: DynArray[uint256, MAX_SOURCES]
    new_max_ages: DynArray[uint256, MAX_SOURCES]


# @dev Emitted when `set_params` changes the parameters of `market`.
event ParamsUpdated:
    market: indexed(uint256)
    sender: indexed(address)
    old_min_price: uint256
    new_min_price: uint256
    old_max_price: uint256
    new_max_price: uint256
    old_max_deviation_bps: uint256
    new_max_deviation_bps: uint256
    old_min_fresh: uint256
    new_min_fresh: uint256
    old_twap_window: uint256
    new_twap_window: uint256


# @dev Emitted when `set_sequencer_feed` changes the sequencer-uptime feed
# or its grace period.
event SequencerFeedUpdated:
    sender: indexed(address)
    old_feed: address
    new_feed: indexed(address)
    old_grace_period: uint256
    new_grace_period: uint256


# @dev Emitted by `observe` with the reading and the updated EMA (`twap`).
event PriceObserved:
    market: indexed(uint256)
    price: uint256
    twap: uint256
    flags: uint256


@deploy
@payable
def __init__():
    """
    @dev To omit the opcodes for checking the `msg.value` in the
         creation-time EVM bytecode, the constructor is declared as
         `payable`.
    @notice The deployer gets DEFAULT_ADMIN_ROLE and RISK_ROLE. No
            sequencer feed is set (L1 or local chain) until
            `set_sequencer_feed` is called.
    """
    access_control.__init__()
    access_control._grant_role(RISK_ROLE, msg.sender)
    # a contract's first CREATE uses nonce 1 (EIP-161)
    self._globals = packing._pack_oracle_globals(
        packing.OracleGlobals(
            sequencer_feed=empty(address), grace_period=0, market_count=0, next_nonce=1
        )
    )
    _RLP_SELF = (54_932 << 240) | (convert(convert(self, uint160), uint256) << 80)


@external
def add_market(
    _sources: DynArray[address, MAX_SOURCES],
    _max_ages: DynArray[uint256, MAX_SOURCES],
    _min_price: uint256,
    _max_price: uint256,
    _max_deviation_bps: uint256,
    _min_fresh: uint256,
    _twap_window: uint256,
) -> uint256:
    """
    @dev Registers a market with the next id (0, 1, 2, ...; at most
         MAX_MARKETS) and caches each source's `decimals()`.
    @notice Only RISK_ROLE. Emits `MarketAdded`.
    @param _sources The 2 or 3 feeds, distinct, non-zero, with code.
    @param _max_ages Per source, the longest accepted age of `updatedAt`
           in seconds (0 < max_age <= MAX_AGE_LIMIT).
    @param _min_price The lowest accepted price, WAD (> 0).
    @param _max_price The highest accepted price, WAD (> `_min_price`,
           <= MAX_PRICE).
    @param _max_deviation_bps The largest spread of sources that still
           agree, relative to their reference price, in basis points
           (1..10_000).
    @param _min_fresh The fewest valid sources for a quorum (2..number of
           sources).
    @param _twap_window The EMA time constant in seconds (60..86_400).
    @return uint256 The new market id.
    """
    access_control._check_role(RISK_ROLE, msg.sender)
    glb: packing.OracleGlobals = packing._unpack_oracle_globals(self._globals)
    market: uint256 = glb.market_count
    assert market < MAX_MARKETS, "oracle: too many markets"
    # Cheap checks first: the feeds are called last.
    self._check_lengths(_sources, _max_ages)
    config: uint256 = self._pack_params(
        _min_price,
        _max_price,
        _max_deviation_bps,
        _min_fresh,
        _twap_window,
        len(_sources),
        glb.sequencer_feed != empty(address),
    )
    words: DynArray[uint256, MAX_SOURCES] = self._pack_sources(_sources, _max_ages)
    self._config[market] = config
    for i: uint256 in range(len(words), bound=MAX_SOURCES):
        self._sources[market][i] = words[i]
    glb.market_count = market + 1
    self._globals = packing._pack_oracle_globals(glb)
    self._publish(market)
    log MarketAdded(
        market=market,
        sender=msg.sender,
        sources=_sources,
        max_ages=_max_ages,
        min_price=_min_price,
        max_price=_max_price,
        max_deviation_bps=_max_deviation_bps,
        min_fresh=_min_fresh,
        twap_window=_twap_window,
    )
    return market


@external
def set_sources(
    _market: uint256,
    _sources: DynArray[address, MAX_SOURCES],
    _max_ages: DynArray[uint256, MAX_SOURCES],
):
    """
    @dev Replaces all sources of `_market` and caches their `decimals()`.
         The EMA state is kept.
    @notice Only RISK_ROLE. Emits `SourcesUpdated`.
    @param _market The market id.
    @param _sources The 2 or 3 feeds, distinct, non-zero, with code; at
           least the market's `min_fresh` of them.
    @param _max_ages Per source, the longest accepted age of `updatedAt`
           in seconds (0 < max_age <= MAX_AGE_LIMIT).
    """
    access_control._check_role(RISK_ROLE, msg.sender)
    config: packing.OracleConfig = packing._unpack_oracle_config(self._known_config(_market))
    # Cheap checks first: the feeds are called last.
    self._check_lengths(_sources, _max_ages)
    assert config.min_fresh <= len(_sources), "oracle: bad min fresh"
    words: DynArray[uint256, MAX_SOURCES] = self._pack_sources(_sources, _max_ages)
    old_sources: DynArray[address, MAX_SOURCES] = []
    old_max_ages: DynArray[uint256, MAX_SOURCES] = []
    for i: uint256 in range(config.count, bound=MAX_SOURCES):
        old: packing.OracleSource = packing._unpack_oracle_source(self._sources[_market][i])
        old_sources.append(old.feed)
        old_max_ages.append(old.max_age)
        if i >= len(words):
            self._sources[_market][i] = 0
    for i: uint256 in range(len(words), bound=MAX_SOURCES):
        self._sources[_market][i] = words[i]
    config.count = len(words)
    self._config[_market] = packing._pack_oracle_config(config)
    self._publish(_market)
    log SourcesUpdated(
        market=_market,
        sender=msg.sender,
        old_sources=old_sources,
        new_sources=_sources,
        old_max_ages=old_max_ages,
        new_max_ages=_max_ages,
    )


@external
def set_params(
    _market: uint256,
    _min_price: uint256,
    _max_price: uint256,
    _max_deviation_bps: uint256,
    _min_fresh: uint256,
    _twap_window: uint256,
):
    """
    @dev Replaces the price bounds, deviation bound, `min_fresh` and
         `twap_window` of `_market`. The EMA state is kept.
    @notice Only RISK_ROLE. Emits `ParamsUpdated`.
    @param _market The market id.
    @param _min_price The lowest accepted price, WAD (> 0).
    @param _max_price The highest accepted price, WAD (> `_min_price`,
           <= MAX_PRICE).
    @param _max_deviation_bps The largest spread of sources that still
           agree, relative to their reference price, in basis points
           (1..10_000).
    @param _min_fresh The fewest valid sources for a quorum (2..number of
           sources).
    @param _twap_window The EMA time constant in seconds (60..86_400).
    """
    access_control._check_role(RISK_ROLE, msg.sender)
    config: packing.OracleConfig = packing._unpack_oracle_config(self._known_config(_market))
    self._config[_market] = self._pack_params(
        _min_price,
        _max_price,
        _max_deviation_bps,
        _min_fresh,
        _twap_window,
        config.count,
        config.has_sequencer,
    )
    self._publish(_market)
    log ParamsUpdated(
        market=_market,
        sender=msg.sender,
        old_min_price=config.min_price,
        new_min_price=_min_price,
        old_max_price=config.max_price,
        new_max_price=_max_price,
        old_max_deviation_bps=config.max_deviation_bps,
        new_max_deviation_bps=_max_deviation_bps,
        old_min_fresh=config.min_fresh,
        new_min_fresh=_min_fresh,
        old_twap_window=config.twap_window,
        new_twap_window=_twap_window,
    )


@external
def set_sequencer_feed(_feed: address, _grace_period: uint256):
    """
    @dev Sets the L2 sequencer-uptime feed and the grace period after the
         sequencer comes back. `empty(address)` means no sequencer feed
         (L1 or local chain): the sequencer flags are then always 0.
    @notice Only RISK_ROLE. Emits `SequencerFeedUpdated`.
    @param _feed The uptime feed (with code), or `empty(address)`.
    @param _grace_period Seconds after the sequencer comes back during
           which FLAG_SEQUENCER_GRACE is set (<= MAX_GRACE_PERIOD).
    """
    access_control._check_role(RISK_ROLE, msg.sender)
    assert _grace_period <= MAX_GRACE_PERIOD, "oracle: grace period too long"
    assert _feed == empty(address) or _feed.is_contract, "oracle: feed has no code"
    old: packing.OracleGlobals = packing._unpack_oracle_globals(self._globals)
    self._sequencer_tx = 0
    glb: packing.OracleGlobals = old
    glb.sequencer_feed = _feed
    glb.grace_period = _grace_period
    self._globals = packing._pack_oracle_globals(glb)
    # Keep the per-market copy of "a sequencer feed is set" in step, so
    # that reads on a chain without a feed skip the `_globals` `SLOAD`.
    has_feed: bool = _feed != empty(address)
    if has_feed != (old.sequencer_feed != empty(address)):
        for market: uint256 in range(old.market_count, bound=MAX_MARKETS):
            self._config[market] = packing._oracle_config_with_sequencer(
                self._config[market], has_feed
            )
    for market: uint256 in range(old.market_count, bound=MAX_MARKETS):
        # every market's snapshot holds the feed and the grace period
        self._publish(market)
    log SequencerFeedUpdated(
        sender=msg.sender,
        old_feed=old.sequencer_feed,
        new_feed=_feed,
        old_grace_period=old.grace_period,
        new_grace_period=_grace_period,
    )


@external
def observe(_market: uint256) -> (uint256, uint256):
    """
    @dev Reads `_market` like `latest`; with quorum, folds the previous
         reading into the EMA (see the glossary) and records this one;
         without quorum (FLAG_DEGRADED) records nothing. Several
         observations in one block leave the EMA unchanged (dt = 0) and
         keep the newest price as `last_price`.
    @notice Anyone may call it: it only records the feeds' own readings.
            Emits `PriceObserved`.
    @param _market The market id.
    @return uint256 The price, WAD.
    @return uint256 The flags.
    """
    price: uint256 = 0
    flags: uint256 = 0
    price, flags = self._observe(_market)
    # the EMA as `_observe` left it: folded and stored with quorum, as stored without
    log PriceObserved(
        market=_market,
        price=price,
        twap=packing._observation_ema(self._observations[_market]),
        flags=flags,
    )
    return price, flags


@external
def record(_market: uint256) -> (uint256, uint256):
    """
    @dev `observe` without the `PriceObserved` event, for a caller that
         logs the price itself (the clearinghouse's `MarkUpdated`): the
         same reading, quorum rules, EMA update and flags.
    @notice Anyone may call it: it only records the feeds' own readings.
    @param _market The market id.
    @return uint256 The price, WAD.
    @return uint256 The flags.
    """
    return self._observe(_market)


@internal
def _observe(_market: uint256) -> (uint256, uint256):
    """
    @dev The reading and recording of `observe` and `record`; the
         sequencer feed is read once per transaction (`_sequencer_tx`).
         The EMA after it is the stored one (`observe` logs it from there).
    @return uint256 The price, WAD.
    @return uint256 The flags.
    """
    # This is the clearinghouse's hot path: the configuration comes from the market's
    # snapshot (one cold account), whose nonce is in the observation word.
    assert _market < MAX_MARKETS, "oracle: unknown market"
    state: uint256 = self._observations[_market]
    nonce: uint256 = state >> _OBS_SNAPSHOT
    assert nonce != 0, "oracle: unknown market"
    snap: Bytes[_SNAPSHOT_BYTES] = slice(self._snapshot_address(nonce).code, 1, _SNAPSHOT_BYTES)
    config: uint256 = extract32(snap, 0, output_type=uint256)
    price: uint256 = 0
    quorum: bool = False
    price, quorum = self._quorum(
        config,
        [
            extract32(snap, 32, output_type=uint256),
            extract32(snap, 64, output_type=uint256),
            extract32(snap, 96, output_type=uint256),
        ],
    )
    flags: uint256 = 0
    if config & _CFG_HAS_SEQUENCER != 0:
        cached: uint256 = self._sequencer_tx
        if cached != 0:
            # Cannot underflow: the cache holds the flags plus one.
            flags = unsafe_sub(cached, 1)
        else:
            flags = self._sequencer_flags(extract32(snap, 128, output_type=uint256))
            # Cannot overflow: the flags are at most 6.
            self._sequencer_tx = unsafe_add(flags, 1)
    if not quorum:
        # No quorum: nothing is folded into the EMA or recorded; the price is the last
        # quorum price.
        return state & _MASK_96, flags | FLAG_DEGRADED
    ema: uint256 = price
    last_ts: uint256 = (state >> _OBS_TS) & _MASK_40
    if last_ts != 0:
        ema = self._ema(
            state & _MASK_96,
            (state >> _OBS_EMA) & _MASK_96,
            # Cannot underflow: `last_ts` is an earlier `block.timestamp`.
            unsafe_sub(block.timestamp, last_ts),
            (config >> _CFG_WINDOW) & _MASK_24,
        )
    # `price` and `ema` are below 2**96 (`max_price <= MAX_PRICE`) and a
    # timestamp fits in 40 bits (until the year 36812), so the fields do not overlap.
    self._observations[_market] = (
        price | (ema << _OBS_EMA) | (block.timestamp << _OBS_TS) | (nonce << _OBS_SNAPSHOT)
    )
    return price, flags


@external
@view
def latest(_market: uint256) -> (uint256, uint256):
    """
    @dev Reads every source of `_market` and returns the quorum price
         with the flags (see the glossary). Without quorum: the last
         quorum price with FLAG_DEGRADED, never a reverted call.
    @param _market The market id.
    @return uint256 The price, WAD.
    @return uint256 The flags.
    """
    return self._read(_market, self._known_config(_market))


@external
@view
def price_time(_market: uint256) -> uint256:
    """
    @dev The time the market's current reading was observed: the oldest, over the
         sources whose round is fresh (0 < updatedAt <= now and now - updatedAt <=
         max_age: the staleness rule of a valid source), of the round's `startedAt`
         when it is non-zero and earlier, else its `updatedAt` (Chainlink OCR: the
         observation and the transmission time). Every price `latest`, `observe` and
         `record` return now is made of readings observed at or after it: sources that
         fail or are stale count in no price; fresh ones rejected for their answer count
         here too (the time errs early, never late). The clearinghouse's delayed orders
         (modules/delayed.vy) fill only at a price observed after they were committed.
    @param _market The market id.
    @return uint256 The observation time (unix seconds), 0 when no source is fresh.
    """
    config: uint256 = self._known_config(_market)
    oldest: uint256 = max_value(uint256)
    success: bool = False
    response: Bytes[_ROUND_DATA_SIZE] = b""
    for i: uint256 in range(packing._oracle_source_count(config), bound=MAX_SOURCES):
        source: packing.OracleSource = packing._unpack_oracle_source(self._sources[_market][i])
        success, response = raw_call(
            source.feed,
            method_id("latestRoundData()"),
            max_outsize=_ROUND_DATA_SIZE,
            is_static_call=True,
            revert_on_failure=False,
        )
        if not success or len(response) < _ROUND_DATA_SIZE:
            continue
        started_at: uint256 = extract32(response, 64, output_type=uint256)
        updated_at: uint256 = extract32(response, 96, output_type=uint256)
        if (
            updated_at == 0
            or updated_at > block.timestamp
            or block.timestamp - updated_at > source.max_age
        ):
            continue
        if started_at != 0 and started_at < updated_at:
            updated_at = started_at
        oldest = min(oldest, updated_at)
    if oldest == max_value(uint256):
        return 0
    return oldest


@external
@view
def twap(_market: uint256) -> uint256:
    """
    @dev Returns the EMA carried forward to `block.timestamp` with the
         last observed price and the current `twap_window` (no new feed
         reading).
    @param _market The market id.
    @return uint256 The time-weighted price, WAD.
    """
    config: packing.OracleConfig = packing._unpack_oracle_config(self._known_config(_market))
    obs: packing.Observation = packing._unpack_observation(self._observations[_market])
    assert obs.last_ts != 0, "oracle: no observation"
    return self._ema(obs.last_price, obs.ema, block.timestamp - obs.last_ts, config.twap_window)


@external
@view
def sequencer_flags() -> uint256:
    """
    @dev Returns FLAG_SEQUENCER_DOWN, FLAG_SEQUENCER_GRACE or 0 from the
         sequencer-uptime feed (always 0 without a feed).
    @return uint256 The sequencer flags.
    """
    return self._sequencer_flags(self._globals)


@external
@view
def market_count() -> uint256:
    """
    @dev Returns the number of markets; their ids are 0..count - 1.
    @return uint256 The number of markets.
    """
    return packing._oracle_market_count(self._globals)


@external
@view
def market_config(_market: uint256) -> MarketConfig:
    """
    @dev Returns the configuration of `_market`, with the cached feed
         decimals.
    @param _market The market id.
    @return MarketConfig The sources, their max ages and decimals, and the
            market parameters.
    """
    config: packing.OracleConfig = packing._unpack_oracle_config(self._known_config(_market))
    result: MarketConfig = MarketConfig(
        sources=[],
        max_ages=[],
        decimals=[],
        min_price=config.min_price,
        max_price=config.max_price,
        max_deviation_bps=config.max_deviation_bps,
        min_fresh=config.min_fresh,
        twap_window=config.twap_window,
    )
    for i: uint256 in range(config.count, bound=MAX_SOURCES):
        source: packing.OracleSource = packing._unpack_oracle_source(self._sources[_market][i])
        result.sources.append(source.feed)
        result.max_ages.append(source.max_age)
        result.decimals.append(convert(source.decimals, uint8))
    return result


@external
@view
def sources(_market: uint256) -> DynArray[address, MAX_SOURCES]:
    """
    @dev Returns the feeds of `_market` in configured order.
    @param _market The market id.
    @return DynArray The feed addresses.
    """
    config: uint256 = self._known_config(_market)
    result: DynArray[address, MAX_SOURCES] = []
    for i: uint256 in range(packing._oracle_source_count(config), bound=MAX_SOURCES):
        result.append(packing._low_address(self._sources[_market][i]))
    return result


@external
@view
def observation(_market: uint256) -> (uint256, uint256, uint256):
    """
    @dev Returns the stored EMA state of `_market` (all zero before the
         first `observe`).
    @param _market The market id.
    @return uint256 The last observed price, WAD.
    @return uint256 The EMA as of the last observation, WAD.
    @return uint256 The timestamp of the last observation.
    """
    self._known_config(_market)
    obs: packing.Observation = packing._unpack_observation(self._observations[_market])
    return obs.last_price, obs.ema, obs.last_ts


@external
@view
def sequencer_config() -> (address, uint256):
    """
    @dev Returns the sequencer-uptime feed and the grace period.
    @return address The feed, or `empty(address)` if none.
    @return uint256 The grace period in seconds.
    """
    glb: packing.OracleGlobals = packing._unpack_oracle_globals(self._globals)
    return glb.sequencer_feed, glb.grace_period


@internal
@view
def _known_config(_market: uint256) -> uint256:
    """
    @dev Returns the packed parameters of `_market`; reverts if unknown.
    @param _market The market id.
    @return uint256 The packed parameters (never zero).
    """
    assert _market < MAX_MARKETS, "oracle: unknown market"
    config: uint256 = self._config[_market]
    assert config != 0, "oracle: unknown market"
    return config


@internal
@view
def _read(_market: uint256, _config: uint256) -> (uint256, uint256):
    """
    @dev The reading of `latest`: the quorum price and the flags, or the
         last quorum price with FLAG_DEGRADED.
    @param _market The market id.
    @param _config The packed parameters of `_market`.
    @return uint256 The price, WAD.
    @return uint256 The flags.
    """
    price: uint256 = 0
    quorum: bool = False
    price, quorum = self._quorum(_config, self._sources[_market])
    flags: uint256 = 0
    if _config & _CFG_HAS_SEQUENCER != 0:
        flags = self._sequencer_flags(self._globals)
    if not quorum:
        # no quorum: the last quorum price, for display only (0 before the first)
        return packing._observation_last_price(self._observations[_market]), flags | FLAG_DEGRADED
    return price, flags


@internal
@view
def _quorum(_config: uint256, _words: uint256[MAX_SOURCES]) -> (uint256, bool):
    """
    @dev The shared feed reading of `latest`, `observe` and `record`: the
         quorum price and whether there is one (see the glossary).
    @param _config The packed parameters of the market.
    @param _words The market's packed source words (from storage or its snapshot).
    @return uint256 The quorum price, WAD (0 without quorum).
    @return bool Whether the sources reached a quorum.
    """
    min_price: uint256 = _config & _MASK_96
    # Cannot underflow: `_pack_params` asserts min_price < max_price.
    span: uint256 = unsafe_sub((_config >> _CFG_MAX_PRICE) & _MASK_96, min_price)
    # The valid prices in configured order; all at most `max_price`.
    first: uint256 = 0
    second: uint256 = 0
    third: uint256 = 0
    valid: uint256 = 0
    success: bool = False
    response: Bytes[_ROUND_DATA_SIZE] = b""
    for i: uint256 in range((_config >> _CFG_COUNT) & _MASK_8, bound=MAX_SOURCES):
        word: uint256 = _words[i]
        success, response = raw_call(
            convert(convert(word & _MASK_160, uint160), address),
            method_id("latestRoundData()"),
            max_outsize=_ROUND_DATA_SIZE,
            is_static_call=True,
            revert_on_failure=False,
        )
        # Every rule of a valid source (see the glossary) ends in `continue` when it
        # fails: the source is left out of the quorum.
        if not success or len(response) < _ROUND_DATA_SIZE:
            continue
        updated_at: uint256 = extract32(response, 96, output_type=uint256)
        # A future `updated_at` wraps the difference to more than any `max_age`
        # (< 2**24): it is refused by the same comparison as a stale one.
        if updated_at == 0 or unsafe_sub(block.timestamp, updated_at) > word >> _SRC_MAX_AGE:
            continue
        # The answer's bits read as unsigned: a negative answer reads as 2**255 or
        # more, which neither scaling below brings to `max_price` or under
        # (`max_price <= MAX_PRICE < 2**88`, the divisor is at most 1e18), and a zero
        # answer scales to 0 < `min_price` (`_pack_params` asserts `min_price != 0`):
        # the range test rejects both, as it rejects any price out of range.
        price: uint256 = extract32(response, 32, output_type=uint256)
        if (word >> _SRC_DECIMALS) & _MASK_8 <= _WAD_DECIMALS:
            # The factor is at least 1, so an answer above MAX_PRICE cannot land in
            # range; rejecting it first bounds the product below.
            if price > MAX_PRICE:
                continue
            # Cannot overflow: the answer is at most MAX_PRICE < 2**88 and the factor
            # is at most 1e18.
            price = unsafe_mul(price, (word >> _SRC_FACTOR) & _MASK_64)
        else:
            # The divisor is in [10, 1e18] (MAX_FEED_DECIMALS = 36), never zero.
            price = unsafe_div(price, (word >> _SRC_FACTOR) & _MASK_64)
        # min_price <= price <= max_price in one comparison: below `min_price` the
        # difference wraps past `span`
        if unsafe_sub(price, min_price) > span:
            continue
        if valid == 0:
            first = price
        elif valid == 1:
            second = price
        else:
            third = price
        # Cannot overflow: at most MAX_SOURCES iterations.
        valid = unsafe_add(valid, 1)
    # Quorum (see the glossary): every price is below 2**96 (`max_price <= MAX_PRICE`)
    # and `max_deviation_bps <= 10_000 < 2**14`, so the sums and products below cannot
    # overflow.
    price: uint256 = 0
    quorum: bool = False
    dev: uint256 = (_config >> _CFG_DEVIATION) & _MASK_16
    if valid >= (_config >> _CFG_MIN_FRESH) & _MASK_8:
        if valid == 2:
            quorum, price = self._pair(first, second, dev)
        elif valid == 3:
            # sort: low <= mid <= high
            low: uint256 = min(first, second)
            high: uint256 = max(first, second)
            mid: uint256 = third
            if third < low:
                mid = low
                low = third
            elif third > high:
                mid = high
                high = third
            # Cannot underflow: `high >= low`.
            if unsafe_mul(unsafe_sub(high, low), _BPS) <= unsafe_mul(dev, mid):
                quorum = True
                price = mid
            else:
                low_ok: bool = False
                low_price: uint256 = 0
                high_ok: bool = False
                high_price: uint256 = 0
                low_ok, low_price = self._pair(low, mid, dev)
                high_ok, high_price = self._pair(mid, high, dev)
                # exactly one agreeing pair: the third source is the outlier
                if low_ok and not high_ok:
                    quorum = True
                    price = low_price
                elif high_ok and not low_ok:
                    quorum = True
                    price = high_price
    return price, quorum


@internal
@pure
def _pair(_a: uint256, _b: uint256, _dev: uint256) -> (bool, uint256):
    """
    @dev Whether two valid prices agree within `_dev` basis points of their mean, and
         that mean (rounded down).
    @param _a One price (< 2**96).
    @param _b The other price (< 2**96).
    @param _dev The market's deviation bound in basis points.
    @return bool True if (max - min) * 10_000 <= _dev * mean.
    @return uint256 The floor of the mean.
    """
    # Cannot overflow: both prices are below 2**96 and `_dev <= 10_000`.
    mean: uint256 = unsafe_add(_a, _b) // 2
    spread: uint256 = unsafe_sub(max(_a, _b), min(_a, _b))
    return unsafe_mul(spread, _BPS) <= unsafe_mul(_dev, mean), mean


@internal
@view
def _sequencer_flags(_globals: uint256) -> uint256:
    """
    @dev Reads the sequencer-uptime feed; fails closed (DOWN) if it
         cannot be read.
    @param _globals The packed sequencer feed, grace period and count.
    @return uint256 FLAG_SEQUENCER_DOWN, FLAG_SEQUENCER_GRACE or 0.
    """
    feed: address = packing._low_address(_globals)
    if feed == empty(address):
        return 0
    success: bool = False
    response: Bytes[_ROUND_DATA_SIZE] = b""
    success, response = raw_call(
        feed,
        method_id("latestRoundData()"),
        max_outsize=_ROUND_DATA_SIZE,
        is_static_call=True,
        revert_on_failure=False,
    )
    if not success or len(response) < _ROUND_DATA_SIZE:
        return FLAG_SEQUENCER_DOWN
    started_at: uint256 = extract32(response, 64, output_type=uint256)
    if extract32(response, 32, output_type=int256) != 0 or started_at == 0:
        return FLAG_SEQUENCER_DOWN
    if (
        started_at > block.timestamp
        or unsafe_sub(block.timestamp, started_at) < (_globals >> _GLB_GRACE) & _MASK_64
    ):
        # `unsafe_sub` cannot underflow where it decides the result: if
        # `started_at > block.timestamp` the first operand already holds.
        return FLAG_SEQUENCER_GRACE
    return 0


@internal
@pure
def _ema(_last_price: uint256, _ema: uint256, _dt: uint256, _window: uint256) -> uint256:
    """
    @dev ema + (last_price - ema) * min(dt, window) / window, the division
         truncating toward zero (as signed integer division would).
    @param _last_price The last observed price (< 2**96).
    @param _ema The EMA at the last observation (< 2**96).
    @param _dt Seconds since the last observation.
    @param _window The EMA time constant in seconds (60..86_400).
    @return uint256 The EMA carried forward by `_dt`.
    """
    weight: uint256 = min(_dt, _window)
    if _last_price >= _ema:
        # Cannot overflow or underflow: the difference is below 2**96 and
        # `weight <= _window <= 86_400 < 2**17`; the division is by
        # `_window >= 60` and the result is at most `_last_price`.
        return unsafe_add(
            _ema, unsafe_div(unsafe_mul(unsafe_sub(_last_price, _ema), weight), _window)
        )
    # Cannot overflow or underflow: as above with the roles swapped; the
    # result is at least `_last_price`.
    return unsafe_sub(_ema, unsafe_div(unsafe_mul(unsafe_sub(_ema, _last_price), weight), _window))


@internal
@view
def _pack_sources(
    _sources: DynArray[address, MAX_SOURCES], _max_ages: DynArray[uint256, MAX_SOURCES]
) -> DynArray[uint256, MAX_SOURCES]:
    """
    @dev Validates each source and max age, reads each feed's
         `decimals()` and returns the packed source words. The lengths
         are checked by `_check_lengths` beforehand.
    @param _sources The 2 or 3 feeds.
    @param _max_ages Per source, the longest accepted age in seconds.
    @return DynArray The packed source words.
    """
    words: DynArray[uint256, MAX_SOURCES] = []
    for i: uint256 in range(len(_sources), bound=MAX_SOURCES):
        source: address = _sources[i]
        max_age: uint256 = _max_ages[i]
        assert source != empty(address), "oracle: zero source"
        for j: uint256 in range(i, bound=MAX_SOURCES):
            assert _sources[j] != source, "oracle: duplicate source"
        assert max_age != 0, "oracle: zero max age"
        assert max_age <= MAX_AGE_LIMIT, "oracle: max age too large"
        assert source.is_contract, "oracle: feed has no code"
        feed_decimals: uint256 = convert(staticcall IAggregatorV3(source).decimals(), uint256)
        assert feed_decimals <= MAX_FEED_DECIMALS, "oracle: bad feed decimals"
        # The factor that brings an answer to WAD: 10**|18 - decimals|,
        # at most 1e18 (fits in 64 bits).
        factor: uint256 = 0
        if feed_decimals <= _WAD_DECIMALS:
            factor = 10**(_WAD_DECIMALS - feed_decimals)
        else:
            factor = 10**(feed_decimals - _WAD_DECIMALS)
        words.append(
            packing._pack_oracle_source(
                packing.OracleSource(
                    feed=source, decimals=feed_decimals, factor=factor, max_age=max_age
                )
            )
        )
    return words


@internal
@pure
def _check_lengths(
    _sources: DynArray[address, MAX_SOURCES], _max_ages: DynArray[uint256, MAX_SOURCES]
):
    """
    @dev Checks that there are at least two sources (a quorum needs two)
         and one max age per source (the ABI decoder already caps both at
         MAX_SOURCES).
    @param _sources The feeds.
    @param _max_ages The max ages.
    """
    assert len(_sources) >= 2, "oracle: fewer than two sources"
    assert len(_max_ages) == len(_sources), "oracle: length mismatch"


@internal
@pure
def _pack_params(
    _min_price: uint256,
    _max_price: uint256,
    _max_deviation_bps: uint256,
    _min_fresh: uint256,
    _twap_window: uint256,
    _count: uint256,
    _has_sequencer: bool,
) -> uint256:
    """
    @dev Validates market parameters and returns the packed word.
    @param _min_price The lowest accepted price, WAD.
    @param _max_price The highest accepted price, WAD.
    @param _max_deviation_bps The deviation bound in basis points.
    @param _min_fresh The fewest valid sources for a quorum (>= 2).
    @param _twap_window The EMA time constant in seconds.
    @param _count The number of sources (2..3).
    @param _has_sequencer Whether a sequencer feed is set (the globals' copy).
    @return uint256 The packed parameters (never zero: `_count >= 2`).
    """
    assert _min_price != 0 and _min_price < _max_price, "oracle: bad price bounds"
    assert _max_price <= MAX_PRICE, "oracle: max price too large"
    assert _max_deviation_bps != 0 and _max_deviation_bps <= _BPS, "oracle: bad max deviation"
    assert _min_fresh >= 2 and _min_fresh <= _count, "oracle: bad min fresh"
    assert (
        _twap_window >= MIN_TWAP_WINDOW and _twap_window <= MAX_TWAP_WINDOW
    ), "oracle: bad twap window"
    return packing._pack_oracle_config(
        packing.OracleConfig(
            min_price=_min_price,
            max_price=_max_price,
            max_deviation_bps=_max_deviation_bps,
            twap_window=_twap_window,
            min_fresh=_min_fresh,
            count=_count,
            has_sequencer=_has_sequencer,
        )
    )


@internal
def _publish(_market: uint256):
    """
    @dev Writes the snapshot of `_market` (its config, source words, the sequencer
         feed and grace period: what `observe` reads) as the code of a new contract,
         and records its CREATE nonce in the market's observation word.
    @param _market The market id (registered).
    """
    glb_word: uint256 = self._globals
    glb: packing.OracleGlobals = packing._unpack_oracle_globals(glb_word)
    nonce: uint256 = glb.next_nonce
    assert nonce < packing.ORACLE_MAX_NONCE, "oracle: snapshot nonce exhausted"
    data: Bytes[1 + _SNAPSHOT_BYTES] = concat(
        b"\x00",
        convert(self._config[_market], bytes32),
        convert(self._sources[_market][0], bytes32),
        convert(self._sources[_market][1], bytes32),
        convert(self._sources[_market][2], bytes32),
        convert(packing._oracle_sequencer_word(glb_word), bytes32),
    )
    # PUSH2 161 DUP1 PUSH1 10 RETURNDATASIZE CODECOPY RETURNDATASIZE RETURN: the
    # runtime code is `data`, whose first byte (STOP) makes a call to it do nothing
    snapshot: address = raw_create(concat(b"\x61\x00\xa1\x80\x60\x0a\x3d\x39\x3d\xf3", data))
    assert snapshot == self._snapshot_address(nonce), "oracle: snapshot address"
    glb.next_nonce = nonce + 1
    self._globals = packing._pack_oracle_globals(glb)
    obs: packing.Observation = packing._unpack_observation(self._observations[_market])
    obs.snapshot_nonce = nonce
    self._observations[_market] = packing._pack_observation(obs)


@internal
@view
def _snapshot_address(_nonce: uint256) -> address:
    """
    @dev The address of the contract the router created with `_nonce`:
         keccak256(rlp([router, nonce]))[12:] (nonce 1..2**24 - 1).
    @param _nonce The CREATE nonce.
    @return address The snapshot's address.
    """
    h: bytes32 = empty(bytes32)
    if _nonce < 128:
        # the 23 bytes 0xd6 0x94 self nonce, from one word (cheaper than a concat)
        h = keccak256(slice(convert(_RLP_SELF | (_nonce << 72), bytes32), 0, 23))
        return convert(convert(convert(h, uint256) & _MASK_160, uint160), address)
    me: bytes20 = convert(self, bytes20)
    if _nonce < 256:
        h = keccak256(concat(b"\xd7\x94", me, b"\x81", slice(convert(_nonce, bytes32), 31, 1)))
    elif _nonce < 65536:
        h = keccak256(concat(b"\xd8\x94", me, b"\x82", slice(convert(_nonce, bytes32), 30, 2)))
    else:
        h = keccak256(concat(b"\xd9\x94", me, b"\x83", slice(convert(_nonce, bytes32), 29, 3)))
    return convert(convert(convert(h, uint256) & _MASK_160, uint160), address)
