"""The keepers' restartable loop: tick every `interval` seconds until stopped, survive a
tick that fails outside a transaction (the node unreachable, a timeout), save the state
at the end. Shared by the liquidation and the loss-cap keepers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


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
