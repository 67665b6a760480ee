"""Moving a development chain's clock, the same way under every ape provider.

ape's test provider (ape-foundry) sets the next block's timestamp directly; its node
provider (what `make demo` uses against a separately started anvil) does not, so the
anvil RPC `evm_setNextBlockTimestamp` does it there. Demo steps, the crash replay and the
keepers' simulations all go through `advance`.
"""

from __future__ import annotations


def advance(seconds: int) -> int:
    """Move the chain's clock `seconds` ahead; returns the next block's timestamp."""
    from ape import chain
    from ape.exceptions import APINotImplementedError

    target = int(chain.pending_timestamp) + seconds
    try:
        chain.pending_timestamp = target
    except (APINotImplementedError, NotImplementedError, AttributeError):
        chain.provider.make_request("evm_setNextBlockTimestamp", [target])
    return target
