"""Keeper bots: liquidations, loss caps, auto-deleveraging, conditional orders, the strategy
rebalancer and the mock-feed price pusher.

    perpdex keeper liquidate [--once] [--state PATH]     (or `ape run keeper`)
    perpdex keeper loss-caps [--once] [--state PATH]    (keepers/loss_caps.py)
    perpdex keeper adl [--once] [--state PATH]          (keepers/adl.py)
    perpdex keeper rebalance --rules FILE [--once]      (keepers/rebalance.py, rules in
                                                         keepers/rebalance_rules.py)
    perpdex keeper orders [--once] [--orders PATH]      (keepers/orders.py)
    perpdex keeper prices [--path FILE|random-walk]

All are plain Python loops over ape (see docs/operations.md for why not silverback):
`Liquidator.tick()` and `PricePusher.step()` do one round each and return what they did,
so tests, the crash replay and the command line drive the same code.
"""

from __future__ import annotations

from perpdex.keepers.liquidator import (
    AccountRead,
    Action,
    Liquidator,
    LiquidatorConfig,
    Outcome,
    TickReport,
)
from perpdex.keepers.state import KeeperState

__all__ = [
    "AccountRead",
    "Action",
    "KeeperState",
    "Liquidator",
    "LiquidatorConfig",
    "Outcome",
    "TickReport",
]
