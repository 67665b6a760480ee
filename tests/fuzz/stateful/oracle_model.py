"""The oracle model of the stateful fuzz: the machine's own record of every mock feed
and of the sequencer feed, and what OracleRouter must make of them (the quorum price and
the sequencer/degraded flags), never read back from the chain.

Part of the split of the system machine (tests/fuzz/stateful/): `machine.py` moves the
feeds and keeps this model in step; the predictions there, the event ledger
(`ledger.py`) and the invariants (`invariants.py`) read prices and flags from it. The
revert reasons the oracle path can produce live here too.

Independent of the SDK mirror on purpose: `perpdex.sdk.math.oracle_router` mirrors the
same router rules, but this model is the fuzz's differential check of the router, so it
re-derives them instead of calling the mirror (a mistake shared with the mirror would go
unseen). Only constants (flag bits, MAX_PRICE) are shared; do not swap in the mirror.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpdex.constants import BPS, MAX_PRICE
from perpdex.sdk import math as pm

FEED_SCALE = 10**10  # 8-decimal feed answer -> WAD
DOWN, GRACE, DEGRADED = pm.FLAG_SEQUENCER_DOWN, pm.FLAG_SEQUENCER_GRACE, pm.FLAG_DEGRADED

# --- revert reasons ------------------------------------------------------------------------

NO_QUORUM = "clearinghouse: no price quorum"
ORACLE_REASONS = frozenset(
    {
        NO_QUORUM,
        "oracle: stale price",
        "oracle: non-positive answer",
        "oracle: answer out of range",
        "oracle: source unavailable",
    }
)
GATE = {
    DOWN: "clearinghouse: sequencer down",
    GRACE: "clearinghouse: sequencer grace period",
    DEGRADED: NO_QUORUM,
}
SEQ_GRACE = "auction: sequencer grace period"


class OracleRevert(Exception):
    """The router would refuse to price a market (no valid source); args[0] = reason."""


def gate_reason(flags: int) -> str | None:
    for bit in (DOWN, GRACE, DEGRADED):
        if flags & bit:
            return GATE[bit]
    return None


# --- the oracle model ------------------------------------------------------------------------


@dataclass
class Feed:
    answer: int  # 8 decimals
    updated_at: int


@dataclass
class OracleModel:
    """OracleRouter._read / _sequencer_flags / _ema over the machine's own record of
    every mock feed (not read from the chain)."""

    cfg: tuple[Any, ...]  # OracleConfig per market
    feeds: list[list[Feed]]
    seq_answer: int
    seq_started: int
    grace: int
    twap_windows: tuple[int, ...]

    def seq_flags(self, now: int) -> int:
        if self.seq_answer != 0 or self.seq_started == 0:
            return DOWN
        if self.seq_started > now or now - self.seq_started < self.grace:
            return GRACE
        return 0

    def read(self, m: int, now: int) -> tuple[int, int]:
        """(quorum price WAD, flags) at `now`: two valid sources that agree -> their mean;
        three -> the median if all agree, else the one agreeing pair's mean (the outlier
        dropped); otherwise no quorum: (0, flags | DEGRADED). The router returns its last
        quorum price there, which nothing may use; the model returns 0 so that a use of it
        shows."""
        c = self.cfg[m]
        valid: list[int] = []
        first_reject = ""
        for f in self.feeds[m]:
            reason = ""
            price = 0
            if f.answer <= 0:
                reason = "oracle: non-positive answer"
            elif f.updated_at == 0 or f.updated_at > now or now - f.updated_at > c.max_age:
                reason = "oracle: stale price"
            elif f.answer > MAX_PRICE:
                reason = "oracle: answer out of range"
            else:
                price = f.answer * FEED_SCALE
                if price < c.min_price or price > c.max_price:
                    reason = "oracle: answer out of range"
            if reason:
                first_reject = first_reject or reason
            else:
                valid.append(price)
        del first_reject  # the router no longer reverts for want of valid sources
        dev = c.max_deviation_bps

        def pair(a: int, b: int) -> tuple[bool, int]:
            mean = (a + b) // 2
            return abs(a - b) * BPS <= dev * mean, mean

        price = None
        if len(valid) >= max(c.min_fresh, 2):
            if len(valid) == 2:
                ok, mean = pair(*valid)
                price = mean if ok else None
            else:
                lo, mid, hi = sorted(valid)
                if (hi - lo) * BPS <= dev * mid:
                    price = mid
                else:
                    lo_ok, lo_mean = pair(lo, mid)
                    hi_ok, hi_mean = pair(mid, hi)
                    if lo_ok != hi_ok:
                        price = lo_mean if lo_ok else hi_mean
        flags = self.seq_flags(now)
        if price is None:
            return 0, flags | DEGRADED
        return price, flags

    def try_read(self, m: int, now: int) -> tuple[int, int] | str:
        try:
            return self.read(m, now)
        except OracleRevert as e:
            return str(e.args[0])

    @staticmethod
    def ema(last: int, ema: int, dt: int, window: int) -> int:
        w = min(dt, window)
        if last >= ema:
            return ema + (last - ema) * w // window
        return ema - (ema - last) * w // window
