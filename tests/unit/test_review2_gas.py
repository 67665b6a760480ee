"""Review 2: `perpdex.sdk.gas.send` diagnoses a failure by estimating again.

Finding G1 -- a real revert is reported as OutOfGas when the state changed between the
failure and the re-estimate. The diagnosis never looks at the failure itself: a
transaction the chain reverted with a reason ("price worse than acceptable") becomes
"ran out of gas ... Nothing changed but the fee was paid. Retry" whenever the call now
happens to succeed and need more than the limit sent (e.g. its marks went stale in the
meantime, so the next trade refreshes them). The user is told to retry / raise
PERPDEX_GAS_MULTIPLIER instead of being told the price moved past their bound.
Suggested fix (what perpdex/sdk/lite/client.py `_refused` already does): an error that
carries a revert reason is a revert; only call it out of gas when the failed receipt used
its whole limit (gas_used x 64 >= limit x 63).
"""

from __future__ import annotations

from typing import Any

import pytest
from ape.exceptions import ContractLogicError

from perpdex.sdk import gas

REASON = "clearinghouse: price worse than acceptable"


class FakeMethod:
    """A contract method whose first estimate is `first`, whose send reverts with a
    reason, and whose next estimate (the state moved on) is `later`."""

    def __init__(self, first: int, later: int) -> None:
        self.estimates = [first, later]
        self.sent: list[dict[str, Any]] = []

    def estimate_gas_cost(self, *args: Any, sender: Any) -> int:
        return self.estimates.pop(0)

    def __call__(self, *args: Any, sender: Any, **kw: Any) -> Any:
        self.sent.append(kw)
        raise ContractLogicError(REASON)


def test_send__real_revert_with_a_reason__is_not_reported_as_out_of_gas() -> None:
    method = FakeMethod(first=100_000, later=400_000)
    with pytest.raises(ContractLogicError, match="price worse than acceptable"):
        gas.send("trade", method, 1, 2, sender="0xabc")
    assert method.sent and method.sent[0]["gas_limit"] == gas.padded_gas(100_000)
