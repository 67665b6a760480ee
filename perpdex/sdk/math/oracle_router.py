"""Mirror of contracts/OracleRouter.vy's pure rules: when a source's answer is valid (sign,
staleness, range), the price quorum of the valid sources (`_read`, `_pair`), the sequencer
flags (`_sequencer_flags`), the time-weighted price's EMA step (`_ema`) and the reading's
observation time (`price_time`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from perpdex.constants import (
    BPS,
    FLAG_DEGRADED,
    FLAG_SEQUENCER_DOWN,
    FLAG_SEQUENCER_GRACE,
    MAX_PRICE,
)

MAX_SOURCES = 3
WAD_DECIMALS = 18

# why `_read` drops a source (OracleRouter._REJECT_*); 0: valid
REJECT_UNAVAILABLE = 1
REJECT_NON_POSITIVE = 2
REJECT_STALE = 3
REJECT_OUT_OF_RANGE = 4


@dataclass(frozen=True)
class SourceAnswer:
    """One source's `latestRoundData()` as `_read` sees it: `answer` and `updated_at`
    (None: the call failed or returned too little), its `max_age` and feed `decimals`."""

    answer: int | None
    updated_at: int
    max_age: int
    decimals: int


def source_price(src: SourceAnswer, now: int, min_price: int, max_price: int) -> tuple[int, int]:
    """`_read`'s check of one source: (reject code, WAD price; 0 when rejected): a
    positive answer, updated in (0, now] and at most `max_age` ago, scaled to WAD by
    10**|18 - decimals| (truncating), within [min_price, max_price]."""
    if src.answer is None:
        return REJECT_UNAVAILABLE, 0
    if src.answer <= 0:
        return REJECT_NON_POSITIVE, 0
    if src.updated_at == 0 or src.updated_at > now or now - src.updated_at > src.max_age:
        return REJECT_STALE, 0
    if src.decimals <= WAD_DECIMALS:
        if src.answer > MAX_PRICE:
            return REJECT_OUT_OF_RANGE, 0
        price = src.answer * 10 ** (WAD_DECIMALS - src.decimals)
    else:
        price = src.answer // 10 ** (src.decimals - WAD_DECIMALS)
    if price < min_price or price > max_price:
        return REJECT_OUT_OF_RANGE, 0
    return 0, price


def pair(a: int, b: int, dev: int) -> tuple[bool, int]:
    """OracleRouter._pair: whether two prices agree within `dev` bp of their mean
    ((max - min) x 10,000 <= dev x mean), and that mean rounded down."""
    mean = (a + b) // 2
    return abs(a - b) * BPS <= dev * mean, mean


def quorum(valid: Sequence[int], min_fresh: int, dev: int) -> int | None:
    """`_read`'s quorum over the valid prices (in configured order): at least `min_fresh`
    of them; two -> their mean if they agree; three -> the median if all three are within
    `dev` of it, else the mean of the one agreeing pair (the outlier dropped). None: no
    quorum (the router then answers FLAG_DEGRADED with its last quorum price)."""
    if len(valid) < min_fresh:
        return None
    if len(valid) == 2:
        ok, mean = pair(valid[0], valid[1], dev)
        return mean if ok else None
    if len(valid) == 3:
        low, mid, high = sorted(valid)
        if (high - low) * BPS <= dev * mid:
            return mid
        low_ok, low_price = pair(low, mid, dev)
        high_ok, high_price = pair(mid, high, dev)
        if low_ok != high_ok:
            return low_price if low_ok else high_price
    return None


def read(
    sources: Sequence[SourceAnswer],
    now: int,
    min_price: int,
    max_price: int,
    dev: int,
    min_fresh: int,
    sequencer: int = 0,
    last_price: int = 0,
) -> tuple[int, int]:
    """OracleRouter._read (`latest`): (price, flags) of a market at `now`: the quorum
    price, or `last_price` (the last quorum price observed) with FLAG_DEGRADED; `sequencer`
    is `sequencer_flags(...)` for a market that follows the sequencer feed (else 0)."""
    valid = []
    for src in sources[:MAX_SOURCES]:
        reject, price = source_price(src, now, min_price, max_price)
        if reject == 0:
            valid.append(price)
    price_ = quorum(valid, min_fresh, dev)
    if price_ is None:
        return last_price, sequencer | FLAG_DEGRADED
    return price_, sequencer


def sequencer_flags(answer: int | None, started_at: int, now: int, grace: int) -> int:
    """OracleRouter._sequencer_flags for a configured feed (None: unreadable): DOWN when
    unreadable, not up (answer != 0) or never started; GRACE within `grace` seconds of
    the restart (or a restart in the future); else 0."""
    if answer is None or answer != 0 or started_at == 0:
        return FLAG_SEQUENCER_DOWN
    if started_at > now or now - started_at < grace:
        return FLAG_SEQUENCER_GRACE
    return 0


def ema(last_price: int, ema_: int, dt: int, window: int) -> int:
    """OracleRouter._ema: ema + (last_price - ema) x min(dt, window) / window, the
    division truncating toward zero."""
    weight = min(dt, window)
    if last_price >= ema_:
        return ema_ + (last_price - ema_) * weight // window
    return ema_ - (ema_ - last_price) * weight // window


def price_time(rounds: Sequence[tuple[int, int, int] | None], now: int) -> int:
    """OracleRouter.price_time: when the market's reading was observed, the oldest over
    its fresh sources (`(started_at, updated_at, max_age)` each; None: the call failed) of
    `started_at` when non-zero and earlier, else `updated_at`; 0 when none is fresh."""
    oldest: int | None = None
    for r in rounds:
        if r is None:
            continue
        started, updated, max_age = r
        if updated == 0 or updated > now or now - updated > max_age:
            continue
        t = started if 0 < started < updated else updated
        oldest = t if oldest is None else min(oldest, t)
    return oldest or 0
