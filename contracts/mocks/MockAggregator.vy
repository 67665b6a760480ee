# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Mock Chainlink AggregatorV3 feed (test double)
@custom:contract-name MockAggregator
@license MIT
@notice A settable Chainlink-style feed for tests: price feeds, and the L2
        sequencer-uptime feed (answer 0 = up, 1 = down, `startedAt` = time of
        the last status change). Anyone can call the setters: it is a mock.
        Storage layout, chosen so that `latestRoundData` costs two `SLOAD`s:
        - `_answer`: the latest answer (`int256`, one full word);
        - `_round`: bits [0, 80) round id, [80, 144) `startedAt`,
          [144, 208) `updatedAt`, [208, 256) unused.
@custom:security Test double only; never deploy it to a live network.
"""

from ..interfaces import IAggregatorV3

implements: IAggregatorV3


# @dev Bit offsets and masks of the packed `_round` word.
_STARTED_AT_SHIFT: constant(uint256) = 80
_UPDATED_AT_SHIFT: constant(uint256) = 144
_ROUND_MASK: constant(uint256) = 2**80 - 1
_TIME_MASK: constant(uint256) = 2**64 - 1


# @dev The feed's decimal places (e.g. 8 for USD feeds).
_DECIMALS: immutable(uint8)


# @dev The latest answer.
_answer: int256


# @dev The packed round id, `startedAt` and `updatedAt` (see the layout above).
_round: uint256


# @dev Emitted whenever the mock's round data changes.
event AnswerUpdated:
    current: indexed(int256)
    roundId: indexed(uint256)
    updatedAt: uint256


@deploy
@payable
def __init__(_decimals: uint8, _answer: int256):
    """
    @dev Starts at round 1 with `startedAt` = `updatedAt` = now.
    @param _decimals The feed's decimal places.
    @param _answer The initial answer.
    """
    _DECIMALS = _decimals
    self._store(_answer, 1, block.timestamp, block.timestamp)


@external
def set_answer(_answer: int256):
    """
    @dev Starts a new round with `_answer`, `startedAt` = `updatedAt` = now.
    @param _answer The new answer.
    """
    self._store(_answer, self._next_round(), block.timestamp, block.timestamp)


@external
def set_round_data(_answer: int256, _started_at: uint256, _updated_at: uint256):
    """
    @dev Starts a new round with arbitrary timestamps (zero, past or future) so
         that tests can build stale, future-dated or freshly flipped rounds.
    @param _answer The new answer.
    @param _started_at The new `startedAt` (must fit in 64 bits).
    @param _updated_at The new `updatedAt` (must fit in 64 bits).
    """
    self._store(_answer, self._next_round(), _started_at, _updated_at)


@external
@view
def decimals() -> uint8:
    """
    @dev Returns the feed's decimal places.
    @return uint8 The decimal places of `answer`.
    """
    return _DECIMALS


@external
@view
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    """
    @dev Returns the latest round in Chainlink's shape (two `SLOAD`s).
    @return uint80 The round id.
    @return int256 The answer.
    @return uint256 The `startedAt` timestamp.
    @return uint256 The `updatedAt` timestamp.
    @return uint80 The `answeredInRound` (equal to the round id).
    """
    packed: uint256 = self._round
    round_id: uint80 = convert(packed & _ROUND_MASK, uint80)
    return (
        round_id,
        self._answer,
        (packed >> _STARTED_AT_SHIFT) & _TIME_MASK,
        (packed >> _UPDATED_AT_SHIFT) & _TIME_MASK,
        round_id,
    )


@external
@pure
def description() -> String[32]:
    """
    @dev Returns a human-readable description of the feed.
    @return String The description.
    """
    return "perpdex mock aggregator"


@external
@pure
def version() -> uint256:
    """
    @dev Returns the aggregator version (Chainlink's current one is 4).
    @return uint256 The version.
    """
    return 4


@internal
@view
def _next_round() -> uint256:
    """
    @dev Returns the id of the round after the current one.
    @return uint256 The next round id.
    """
    return (self._round & _ROUND_MASK) + 1


@internal
def _store(_answer: int256, _round_id: uint256, _started_at: uint256, _updated_at: uint256):
    """
    @dev Packs and stores a round, then logs it.
    @param _answer The answer.
    @param _round_id The round id (must fit in 80 bits).
    @param _started_at The `startedAt` timestamp (must fit in 64 bits).
    @param _updated_at The `updatedAt` timestamp (must fit in 64 bits).
    """
    assert _round_id <= _ROUND_MASK, "mock: round id too large"
    assert _started_at <= _TIME_MASK and _updated_at <= _TIME_MASK, "mock: timestamp too large"
    self._answer = _answer
    self._round = (
        _round_id | (_started_at << _STARTED_AT_SHIFT) | (_updated_at << _UPDATED_AT_SHIFT)
    )
    log AnswerUpdated(current=_answer, roundId=_round_id, updatedAt=_updated_at)
