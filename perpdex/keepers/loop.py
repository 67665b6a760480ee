"""The keepers' restartable loop: tick every `interval` seconds until stopped, survive a
tick that fails outside a transaction (the node unreachable, a timeout), save the state
at the end. Shared by every keeper; `TickingKeeper` adds the outcome history and `run`
that the ADL, loss-cap, orders and delayed-order keepers have in common."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from perpdex.constants import WAD

if TYPE_CHECKING:
    from perpdex.keepers.state import KeeperState

R = TypeVar("R")
Out = TypeVar("Out")


def run_ticks(
    tick: Callable[[], R],
    save: Callable[[], None],
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    interval: float,
    ticks: int | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[R], None] | None = None,
) -> int:
    """Call `tick` every `interval` seconds until `stop` is set or `ticks` ran; a tick that
    raises is logged and retried next time. Returns the ticks run."""
    n = 0
    stop = stop or threading.Event()
    while not stop.is_set() and (ticks is None or n < ticks):
        try:
            report = tick()
            if on_tick:
                on_tick(report)
        except Exception as e:  # a keeper must survive the node
            log.error("tick failed (%s: %s); retrying", type(e).__name__, e)
        n += 1
        if ticks is None or n < ticks:
            stop.wait(interval)
    save()
    return n


def usd(wad: int) -> str:
    """A USD WAD amount for a log line: 1,234.56."""
    return f"{Decimal(wad) / WAD:,.2f}"


class TickingKeeper(Generic[Out, R]):
    """A keeper's outcome history and its restartable loop. Subclasses set `history`,
    `state` and `log` in `__init__`, implement `tick() -> R` and record each outcome
    through `_done`; `interval` is the default seconds between ticks."""

    interval: ClassVar[float] = 5.0
    history: list[Out]
    state: KeeperState
    log: logging.LoggerAdapter[logging.Logger]

    def tick(self) -> R:
        raise NotImplementedError

    def _done(self, out: Out) -> Out:
        self.history.append(out)
        return out

    def run(
        self,
        interval: float | None = None,
        ticks: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[R], None] | None = None,
    ) -> int:
        """Tick every `interval` seconds (default: the keeper's own) until `stop` is set or
        `ticks` ran; a tick that fails outside a transaction (node unreachable...) is
        logged and retried."""
        every = self.interval if interval is None else interval
        return run_ticks(self.tick, self.state.save, self.log, every, ticks, stop, on_tick)
