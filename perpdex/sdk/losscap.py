"""Loss-cap mirror: the chain's loss-cap rules on a `Snapshot` (issue 11, item 5).

A sub-account's loss cap is an equity floor (`state.loss_cap`, USD WAD; 0: none). Below it:
  - anyone may close every position (`trading.trigger_loss_cap`, for `loss_cap_fee`);
  - the account's own trades may only reduce (`gates._check_after_trade`: an order that
    opens, grows or flips a position must leave equity >= the floor, else
    "clearinghouse: below loss cap, reduce only"; `math.simulate_trade` predicts it);
  - `withdraw` / `transfer_collateral` must leave equity >= the floor
    ("clearinghouse: would cross loss cap"; `math.withdrawable` counts it);
  - a liquidation take into the account is refused ("clearinghouse: taker below loss cap").
Equity is the one figure `account_margin` (gates._scan) returns, read at fresh marks.

Kept apart from perpdex/sdk/math.py (which mirrors the engine line by line) so loss-cap
tooling (the SDK's confirmation, the keeper) imports only this.
"""

from __future__ import annotations

from perpdex.sdk.math import Revert, scan, strict_refresh
from perpdex.sdk.snapshot import Snapshot

BELOW_LOSS_CAP = "clearinghouse: below loss cap, reduce only"
WOULD_CROSS_LOSS_CAP = "clearinghouse: would cross loss cap"
TAKER_BELOW_LOSS_CAP = "clearinghouse: taker below loss cap"


def below_loss_cap(cap: int, equity: int) -> bool:
    """gates._below_loss_cap: a floor is set and `equity` (USD WAD) is below it."""
    return cap != 0 and equity < cap


def trigger_equity(snap: Snapshot, now: int | None = None) -> int:
    """The equity `trigger_loss_cap` compares with the floor: `scan` after every market of
    the account is re-read at `now` (default: the snapshot's time). Where the oracle
    refuses a price (the trigger would revert too), the equity at the cached marks."""
    try:
        return scan(strict_refresh(snap, now)).equity
    except Revert:
        return scan(snap).equity


def triggerable(snap: Snapshot, now: int | None = None) -> bool:
    """Whether `trigger_loss_cap` has something to do: a cap, positions, no liquidation,
    equity below the floor (the per-window size limit and price checks aside)."""
    return (
        snap.loss_cap != 0
        and bool(snap.positions)
        and not snap.in_liquidation
        and below_loss_cap(snap.loss_cap, trigger_equity(snap, now))
    )
