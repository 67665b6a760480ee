"""Constants, event assertions and Python references for the Clearinghouse unit tests."""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from hexbytes import HexBytes

from perpdex.constants import WAD
from perpdex.units import NANO

ZERO_ADDRESS = "0x" + "00" * 20
MAX_UINT256 = 2**256 - 1

# market ids in config/markets.yaml order
BTC, ETH, SOL = 0, 1, 2
FEED_USD = 10**8  # one dollar in an 8-decimal mock feed

POOL_USD = 1_000_000  # cash the `vault_cash` fixture puts in the pool

MISSING_ROLE = "access_control: account is missing role"


def _norm(value: Any) -> Any:
    """Accounts and contracts compare by address, addresses case-insensitively."""
    if hasattr(value, "address"):
        value = value.address
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    if isinstance(value, bytes):
        return HexBytes(value)
    return value


def _topic(abi_type: str, value: Any) -> HexBytes:
    return HexBytes(abi_encode([abi_type], [_norm(value)]))


def events_of(tx: Any, event: Any, emitter: Any) -> list[dict[str, Any]]:
    """Decoded arguments of every `event` the receipt holds from `emitter`.

    Also checks every indexed field against the raw log topics, so an event whose field
    lost (or gained) `indexed` fails here.
    """
    address = _norm(emitter)
    decoded = [
        dict(log.event_arguments)
        for log in event.from_receipt(tx)
        if _norm(log.contract_address) == address
    ]
    topic0 = HexBytes(keccak(text=event.abi.selector))
    raw = [
        log
        for log in tx.logs
        if _norm(log["address"]) == address and HexBytes(log["topics"][0]) == topic0
    ]
    assert len(raw) == len(decoded)
    indexed = [i for i in event.abi.inputs if i.indexed]
    for args, log in zip(decoded, raw, strict=True):
        assert len(log["topics"]) == 1 + len(indexed)
        for inp, topic in zip(indexed, log["topics"][1:], strict=True):
            assert HexBytes(topic) == _topic(inp.canonical_type, args[inp.name])
    return decoded


def expect_events(tx: Any, event: Any, emitter: Any, expected: list[dict[str, Any]]) -> None:
    """The receipt holds exactly these `event`s from `emitter`, in order, every field."""
    got = events_of(tx, event, emitter)
    assert len(got) == len(expected), f"{event.name}: {got}"
    for g, e in zip(got, expected, strict=True):
        assert set(g) == set(e), f"{event.name} fields {sorted(g)} != {sorted(e)}"
        assert {k: _norm(v) for k, v in g.items()} == {k: _norm(v) for k, v in e.items()}


def expect_event(tx: Any, event: Any, emitter: Any, **fields: Any) -> None:
    """Exactly one `event` from `emitter`, with exactly these fields."""
    expect_events(tx, event, emitter, [fields])


def ceil_div(x: int, d: int) -> int:
    return -((-x) // d)


def first_fill(price: int, size: int, skew_scale: int, taker_fee: int) -> tuple[int, int]:
    """(fill price, fee) of a fill of `size` against a market with zero skew."""
    adj = (
        ceil_div(size * price, 2 * skew_scale)
        if size > 0
        else -ceil_div(-size * price, 2 * skew_scale)
    )
    fill = price + adj
    return fill, ceil_div(abs(size) * taker_fee * fill, WAD * WAD)


def collateral_index(ch: Any, token: Any) -> int:
    """Collateral index of a listed token (the contract keeps the reverse map private)."""
    address = _norm(token)
    for i in range(ch.collateral_count()):
        if _norm(ch.collateral_token(i)) == address:
            return i
    raise AssertionError(f"{address} is not listed")


# Bad `MarketParams` for add_market and set_market_params: (field changes, revert reason).
# The packed word holds each field on a grid (modules/packing.vy): skew scale and max OI
# in whole base units, fees in 1e-8, velocity and exposure in 1e-6, rate in 1e-9.
BAD_MARKET_PARAMS = {
    "zero_skew_scale": ({"skew_scale": 0}, "clearinghouse: zero skew scale"),
    "maker_above_taker": (
        {"maker_fee": 6 * 10**14, "taker_fee": 5 * 10**14},
        "clearinghouse: maker fee above taker fee",
    ),
    "taker_above_1pct": ({"taker_fee": 10**16 + 10**10}, "clearinghouse: fee above 1%"),
    "zero_max_funding_rate": ({"max_funding_rate": 0}, "clearinghouse: zero max funding rate"),
    "max_funding_rate_above_4": (
        {"max_funding_rate": 4 * WAD + NANO},
        "clearinghouse: max funding rate above 4 per day",
    ),
    "zero_max_oi": ({"max_oi": 0}, "clearinghouse: zero max open interest"),
    "zero_vault_exposure": (
        {"max_vault_exposure": 0},
        "clearinghouse: zero vault exposure cap",
    ),
    "fee_off_grid": ({"maker_fee": 10**14 + 1}, "clearinghouse: parameter off its grid"),
    "skew_scale_off_grid": (
        {"skew_scale": 10_000 * WAD + 1},
        "clearinghouse: parameter off its grid",
    ),
    "max_oi_off_grid": ({"max_oi": WAD // 2}, "clearinghouse: parameter off its grid"),
    "velocity_too_large": (
        {"max_funding_velocity": 2**32 * 10**12},
        "clearinghouse: parameter too large",
    ),
    "skew_scale_too_large": ({"skew_scale": 2**48 * WAD}, "clearinghouse: parameter too large"),
    "max_oi_too_large": ({"max_oi": 2**64 * WAD}, "clearinghouse: parameter too large"),
}
