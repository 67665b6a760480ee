"""Mirror of contracts/modules/state.vy: the `MarginScan` record, the `_scan` "no override"
market and the fee sweep's split (`_sweep_fees`).
"""

from __future__ import annotations

from dataclasses import dataclass

from perpdex.constants import BPS, MAX_MARKETS
from perpdex.sdk.math.packing import System

NO_OVERRIDE = MAX_MARKETS


def fee_split(pending: int, system: System) -> tuple[int, int, int]:
    """treasury._sweep_fees (and views._pending_split): (to insurance, to protocol, to the
    vault's cash) of the fees accrued since the last sweep; the two shares round down,
    the vault keeps the dust."""
    to_insurance = pending * system.insurance_bps // BPS
    to_protocol = pending * system.protocol_bps // BPS
    return to_insurance, to_protocol, pending - to_insurance - to_protocol


@dataclass(frozen=True)
class MarginScan:
    """state.MarginScan (`views.account_margin`), USD WAD."""

    equity: int = 0
    initial: int = 0
    maintenance: int = 0
    isolated: int = 0
    notional: int = 0
