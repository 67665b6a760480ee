"""Constants, parameter sets and the Python EMA reference (the SDK mirror's
perpdex.sdk.math.oracle_router.ema, so the chain tests check the mirror) for the
OracleRouter tests."""

from dataclasses import dataclass

from perpdex.constants import BPS, MAX_PRICE, WAD
from perpdex.sdk.math.oracle_router import ema

ZERO_ADDRESS = "0x" + "00" * 20

USD = 10**8  # one dollar in an 8-decimal Chainlink USD feed

MAX_AGE_LIMIT = 2**24 - 1
MAX_AGE = 3_600
GRACE_PERIOD = 3_600

ema_step = ema  # the router's EMA step, as the tests call it


@dataclass(frozen=True)
class Params:
    """Market parameters in `set_params` order."""

    min_price: int = WAD // 100
    max_price: int = 1_000_000 * WAD
    max_deviation_bps: int = 200
    min_fresh: int = 2
    twap_window: int = 600

    def args(self) -> tuple[int, int, int, int, int]:
        return (
            self.min_price,
            self.max_price,
            self.max_deviation_bps,
            self.min_fresh,
            self.twap_window,
        )


DEFAULT_PARAMS = Params()


# Bad `(sources, max_ages)` inputs shared by `add_market` and `set_sources` tests. Each
# case maps the three test feeds `f` (and `nc`, an address without code, `d37`, a feed
# with 37 decimals) to arguments, with the expected revert string.
BAD_SOURCE_CASES = {
    "no_sources": (lambda f, nc, d37: ([], []), "oracle: fewer than two sources"),
    "one_source": (lambda f, nc, d37: ([f[0]], [MAX_AGE]), "oracle: fewer than two sources"),
    "more_ages": (lambda f, nc, d37: (f[:2], [MAX_AGE] * 3), "oracle: length mismatch"),
    "fewer_ages": (lambda f, nc, d37: (f[:2], [MAX_AGE]), "oracle: length mismatch"),
    "zero_source": (
        lambda f, nc, d37: ([f[0], ZERO_ADDRESS], [MAX_AGE] * 2),
        "oracle: zero source",
    ),
    "duplicate_adjacent": (
        lambda f, nc, d37: ([f[0], f[0]], [MAX_AGE] * 2),
        "oracle: duplicate source",
    ),
    "duplicate_apart": (
        lambda f, nc, d37: ([f[0], f[1], f[0]], [MAX_AGE] * 3),
        "oracle: duplicate source",
    ),
    "zero_max_age": (lambda f, nc, d37: (f[:2], [MAX_AGE, 0]), "oracle: zero max age"),
    "max_age_too_large": (
        lambda f, nc, d37: (f[:2], [MAX_AGE, MAX_AGE_LIMIT + 1]),
        "oracle: max age too large",
    ),
    "no_code": (lambda f, nc, d37: ([f[0], nc], [MAX_AGE] * 2), "oracle: feed has no code"),
    "decimals_too_large": (
        lambda f, nc, d37: ([f[0], d37], [MAX_AGE] * 2),
        "oracle: bad feed decimals",
    ),
}

# Bad `set_params` inputs for a market with two sources, with the expected revert string.
BAD_PARAM_CASES = {
    "zero_min_price": (Params(min_price=0), "oracle: bad price bounds"),
    "min_equals_max": (Params(min_price=10 * WAD, max_price=10 * WAD), "oracle: bad price bounds"),
    "min_above_max": (Params(min_price=11 * WAD, max_price=10 * WAD), "oracle: bad price bounds"),
    "max_price_too_large": (Params(max_price=MAX_PRICE + 1), "oracle: max price too large"),
    "zero_deviation": (Params(max_deviation_bps=0), "oracle: bad max deviation"),
    "deviation_above_100_pct": (Params(max_deviation_bps=BPS + 1), "oracle: bad max deviation"),
    "zero_min_fresh": (Params(min_fresh=0), "oracle: bad min fresh"),
    "min_fresh_one": (Params(min_fresh=1), "oracle: bad min fresh"),
    "min_fresh_above_sources": (Params(min_fresh=3), "oracle: bad min fresh"),
    "window_too_short": (Params(twap_window=59), "oracle: bad twap window"),
    "window_too_long": (Params(twap_window=86_401), "oracle: bad twap window"),
}

# Extreme but valid parameters for a market with two sources.
EDGE_PARAMS = Params(
    min_price=1, max_price=MAX_PRICE, max_deviation_bps=BPS, min_fresh=2, twap_window=86_400
)


class Twin:
    """Two feeds that always answer alike: a market with a quorum of two agreeing sources
    (a market needs at least two), driven like one feed."""

    def __init__(self, feeds) -> None:
        self.feeds = list(feeds)

    @property
    def address(self) -> str:  # the first feed, for tests that only need one address
        return self.feeds[0].address

    def set_answer(self, answer: int, sender) -> None:
        self._each(lambda feed: feed.set_answer(answer, sender=sender))

    def set_round_data(self, answer: int, started_at: int, updated_at: int, sender) -> None:
        self._each(lambda feed: feed.set_round_data(answer, started_at, updated_at, sender=sender))

    def _each(self, send) -> None:
        # every update lands at the first one's timestamp, as one feed's update would
        from ape import chain

        tx = send(self.feeds[0])
        ts = chain.blocks[tx.block_number].timestamp
        for feed in self.feeds[1:]:
            chain.pending_timestamp = ts
            send(feed)
