"""Gas limits for live networks: every perpdex transaction is sent with a padded estimate.

ape's local test network gives each transaction the block gas limit; a live L2 node (and
ape on any live network) uses `eth_estimateGas`, which is taken against the latest block.
A trade whose block refreshes marks, accrues funding or crosses a cold slot costs more
than the estimate said, and an exact estimate also loses to the 63/64 rule on the
delegatecalls into the Clearinghouse halves: it reverts out of gas and the fee is paid.
A trade also reuses a mark refreshed earlier in its own block and then skips the oracle
(marks._touch_with): an estimate taken right after a keeper's refresh sees that cheap
path (~87k for an increase), the trade lands a block later and pays the whole oracle path
(~148k). No multiplier covers a fixed ~60k gap on a small estimate, so the headroom holds
one market's full oracle read (ORACLE_PATH_GAS; Chainlink proxies cost 5-8k more per
source than the local mocks), one per leg for a multi-leg order (`trade_multi`: each leg
may skip its market's read in the estimate). An unused limit costs nothing on an L2 (gas
used is paid).
So the SDK, CLI, keepers and deploy send `estimate x GAS_MULTIPLIER + GAS_HEADROOM`
(PERPDEX_GAS_MULTIPLIER overrides the multiplier), and report an out-of-gas failure as
such, with what to change.
"""

from __future__ import annotations

import math
import os
from typing import Any

from perpdex.errors import PerpdexError

GAS_MULTIPLIER = 1.3
# one market's oracle read (3 sources + the sequencer feed, the router's update and the
# mark write) that a same-block-mark estimate skips
ORACLE_PATH_GAS = 80_000
GAS_HEADROOM = 30_000 + ORACLE_PATH_GAS


class OutOfGas(PerpdexError):
    """A transaction ran out of gas: its limit was below what the chain needed."""


def multiplier() -> float:
    raw = os.environ.get("PERPDEX_GAS_MULTIPLIER")
    if raw is None:
        return GAS_MULTIPLIER
    try:
        value = float(raw)
    except ValueError:
        raise PerpdexError(
            f"PERPDEX_GAS_MULTIPLIER={raw!r} is not a number; use e.g. 1.5"
        ) from None
    if not 1.0 <= value <= 10.0:
        raise PerpdexError(f"PERPDEX_GAS_MULTIPLIER={raw} must be between 1 and 10; use e.g. 1.5")
    return value


def padded_gas(estimate: int, oracle_reads: int = 1) -> int:
    """The limit sent for an `eth_estimateGas` figure (rounded up). `oracle_reads`: how
    many markets' oracle reads the estimate may have skipped on a same-block mark (the
    legs of a multi-leg order; 1 for everything else)."""
    extra = ORACLE_PATH_GAS * (max(oracle_reads, 1) - 1)
    return math.ceil(estimate * multiplier()) + GAS_HEADROOM + extra


def _revert_reason(err: BaseException) -> str | None:
    """The revert string a failure carries (ape's `revert_message`), None if it has
    none; ape's default 'Transaction failed.' is no reason."""
    reason = str(getattr(err, "revert_message", None) or "").strip()
    return reason if reason and reason != "Transaction failed." else None


def send(
    action: str, method: Any, *args: Any, sender: Any, oracle_reads: int = 1, **kw: Any
) -> Any:
    """`method(*args, sender=sender)` with a padded gas estimate (`padded_gas`, with
    `oracle_reads`); raises `OutOfGas` (not a VM error) when the limit ran short.

    A failure with a revert reason is a revert and is raised as it is. A node reports a
    transaction that ran dry inside a delegatecall as a plain failure (the outer frame
    reverts with its last 1/64, no reason), so a reasonless failure is diagnosed by
    estimating again: if the call now succeeds given enough gas and needs more than the
    limit sent, the limit was the cause. Otherwise the original error stands.
    """
    if "gas_limit" not in kw:
        estimate = int(method.estimate_gas_cost(*args, sender=sender))
        kw["gas_limit"] = padded_gas(estimate, oracle_reads)
    limit = int(kw["gas_limit"])
    try:
        return method(*args, sender=sender, **kw)
    except Exception as err:
        if _revert_reason(err):  # the chain said why: a revert, whatever the gas
            raise
        try:
            need = int(method.estimate_gas_cost(*args, sender=sender))
        except Exception:  # it reverts whatever the gas: a real revert
            raise err from None
        if need <= limit:
            raise
        raise OutOfGas(
            f"{action} ran out of gas: sent with a limit of {limit:,}, it needs about "
            f"{need:,} now. Nothing changed but the fee was paid. Retry; if it recurs, set "
            "PERPDEX_GAS_MULTIPLIER=2 and report it"
        ) from err
