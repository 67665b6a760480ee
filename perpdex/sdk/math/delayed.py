"""Mirror of contracts/modules/delayed.vy: the delayed-order words (market config, pending
order) and when an order may settle, may be cancelled and by whom, or has expired.
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.constants import WAD
from perpdex.sdk.math.vyper import Revert

# modes (delayed.MODE_*): what `trade` must leave to delayed orders in the market
MODE_IMMEDIATE = 0  # nothing: delayed orders are optional
MODE_ADD = 1  # vault trades that open, grow or flip a position
MODE_ALL = 2  # every vault trade, reduces included

MAX_MIN_DELAY = 300  # seconds
MAX_ORDER_AGE = 3_600  # seconds
MAX_KEEPER_FEE = 1_000 * WAD  # USD WAD
KEEPER_FEE_UNIT = 10**14  # the order word's fee unit (1e-4 USD)

MASK_32 = 2**32 - 1
MASK_40 = 2**40 - 1
MASK_96 = 2**96 - 1
MASK_128 = 2**128 - 1
MAX_I96 = 2**95 - 1

#: trading._pool_trade's refusal of a vault trade a delayed market leaves to delayed orders
USE_COMMIT = "clearinghouse: use commit_order"
#: commit_order over a live order of the market, and guards._require_idle's refusal of the
#: owner's and operators' actions while an order of the account may settle (R4-2)
DELAYED_PENDING = "clearinghouse: delayed order pending"


@dataclass(frozen=True)
class DelayedConfig:
    """`delayed_config(market)`: min_delay | max_age << 32 | keeper_fee << 64 | mode << 192;
    all zero (`enabled` False): the market takes no delayed orders."""

    mode: int
    min_delay: int  # seconds
    max_age: int  # seconds
    keeper_fee: int  # USD WAD

    @property
    def enabled(self) -> bool:
        return self.pack() != 0

    def pack(self) -> int:
        return self.min_delay | self.max_age << 32 | self.keeper_fee << 64 | self.mode << 192

    def requires_delayed(self, adds: bool) -> bool:
        """Whether `trade` refuses this vault trade (trading._pool_trade's gate): mode 1 an
        adding one, mode 2 any."""
        return self.mode == MODE_ALL or (self.mode == MODE_ADD and adds)


def unpack_config(w: int) -> DelayedConfig:
    return DelayedConfig(
        mode=(w >> 192) & 0xFF,
        min_delay=w & MASK_32,
        max_age=(w >> 32) & MASK_32,
        keeper_fee=(w >> 64) & MASK_128,
    )


def config(mode: int, min_delay: int, max_age: int, keeper_fee: int) -> DelayedConfig:
    """delayed.set_delayed_params' checks: the config it stores, or `Revert`."""
    if mode > MODE_ALL:
        raise Revert("clearinghouse: bad delayed mode")
    if mode | min_delay | max_age | keeper_fee == 0:
        return DelayedConfig(0, 0, 0, 0)
    if not (0 < min_delay <= MAX_MIN_DELAY and min_delay < max_age <= MAX_ORDER_AGE):
        raise Revert("clearinghouse: bad order delays")
    if keeper_fee > MAX_KEEPER_FEE or keeper_fee % KEEPER_FEE_UNIT:
        raise Revert("clearinghouse: bad keeper fee")
    return DelayedConfig(mode, min_delay, max_age, keeper_fee)


@dataclass(frozen=True)
class DelayedOrder:
    """`delayed_order(account, market)`: size int96 | acceptable price u96 << 96 (all ones:
    no bound) | commit time u40 << 192 | keeper fee u24 << 232 (1e-4 USD)."""

    size: int  # signed base WAD
    acceptable_price: int  # WAD; 2**256 - 1: no bound (a buy at any price)
    commit_time: int
    keeper_fee: int  # USD WAD, fixed at commit

    def opens(self, cfg: DelayedConfig) -> int:
        """The earliest observation time of a price that may fill it (and so the
        earliest settlement): commit time + min_delay."""
        return self.commit_time + cfg.min_delay

    def expires(self, cfg: DelayedConfig, until: int | None = None) -> int:
        """The last second it may settle: commit time + max_age, or the account header's
        pending-until (`packing.pending_until`, when given) if earlier: a max_age raised
        after the commit does not outlast the owner's freeze (delayed._expired)."""
        last = self.commit_time + cfg.max_age
        return last if until is None else min(last, until)

    def expired(self, cfg: DelayedConfig, now: int, until: int | None = None) -> bool:
        return now > self.expires(cfg, until)

    def settle_refusal(
        self, cfg: DelayedConfig, now: int, price_time: int, until: int | None = None
    ) -> str | None:
        """settle_order's timing checks at block time `now` with the oracle's observation
        time `price_time` (OracleRouter.price_time): None when they pass (the fill's own
        checks, those of `trade`, come after)."""
        if self.expired(cfg, now, until):
            return "clearinghouse: delayed order expired"
        if price_time < self.opens(cfg):
            return "clearinghouse: no price after commit yet"
        return None

    def cancel_refusal(
        self, cfg: DelayedConfig, now: int, by_trader: bool, until: int | None = None
    ) -> str | None:
        """cancel_delayed_order: anyone once expired; the owner or an operator before the
        settlement window opens; nobody in between."""
        if self.expired(cfg, now, until):
            return None
        if not by_trader:
            return "clearinghouse: not authorized"
        if now >= self.opens(cfg):
            return "clearinghouse: settlement window open"
        return None


def unpack_order(w: int) -> DelayedOrder | None:
    """The pending order of a `delayed_order` word; None for 0 (no order)."""
    if w == 0:
        return None
    size = w & MASK_96
    if size >= 2**95:
        size -= 2**96
    bound = (w >> 96) & MASK_96
    return DelayedOrder(
        size=size,
        acceptable_price=2**256 - 1 if bound == MASK_96 else bound,
        commit_time=(w >> 192) & MASK_40,
        keeper_fee=(w >> 232) * KEEPER_FEE_UNIT,
    )


def pack_order(size: int, acceptable_price: int, commit_time: int, cfg: DelayedConfig) -> int:
    """commit_order's word (its size check raises `Revert`)."""
    if size == 0:
        raise Revert("clearinghouse: zero size")
    if abs(size) > MAX_I96:
        raise Revert("clearinghouse: size too large")
    return (
        (size & MASK_96)
        | min(acceptable_price, MASK_96) << 96
        | commit_time << 192
        | (cfg.keeper_fee // KEEPER_FEE_UNIT) << 232
    )
