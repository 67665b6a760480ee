"""Review 11b: outside attacks on packing11's accessor moves (5550574..5149db7, 5ee56f6).

Cold and hot paths now read packed words through contracts/modules/packing.vy accessors
instead of inline shifts: the pending-order time and the owner (guards), the minimum
nonce and replay bit places (order_hash), the bitmap walks (gates, marks, trading), the
skew (trading._pool_trade), the named pause bit (trading._require_can_add_risk) and the
book header (margin._book_header_of). Each accessor is held here to the expression it
replaced, bit for bit, on words whose neighbouring fields are all ones (so an accessor
that reads one bit too far shows), then through the contracts at the fields' edges.

Finding R11b-1 (low): `_require_can_add_risk` now tests bit 248 alone where it tested
bits 248-255, and set_risk_book copied a market's book word 0 into its risk word without
checking the bits above its fields: a book with bit 248 set in a word 0 paused that market
with the protocol unpaused. Fixed: set_risk_book refuses such a word
(`packing._book_word0_fits`), so the risk word's bits 160-255 are only the pause.

Finding R11b-2 (info): the packing lint is a tripwire, not a proof; the forms it does not
see are pinned below as strict xfails, and a scan shows the contracts use none of them.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from eth_utils import to_checksum_address
from test_review11 import _get, _map, _set, _slot

from perpdex.constants import WAD
from perpdex.devtools import packing_lint
from perpdex.sdk import riskbook
from perpdex.sdk import settlement as cs
from perpdex.sdk.math import packing as sdk_packing
from perpdex.sdk.math.delayed import DELAYED_PENDING as PENDING
from perpdex.sdk.math.margin import HEADER_BYTES, MARKET_BYTES, book_header
from perpdex.sdk.math.packing import MASK_8, MASK_40, MASK_64, MASK_88

U256 = 2**256 - 1


# --- the accessors against the expressions they replaced -----------------------------------


def _old_pending_until(h: int) -> int:
    return ((h << 152) & U256) >> 216  # guards, before 5149db7


def _old_owner(account: int) -> str:
    return to_checksum_address((account >> 96).to_bytes(20, "big"))


@pytest.fixture(scope="module")
def harness(actors: Any, project: Any, admin: Any) -> Any:
    return project.PackingHarness.deploy(sender=admin)


# headers whose pending field is empty, full, or one bit at either edge, with the fields
# around it (pending count below, replay window above) empty or full
_PENDING_VALUES = [0, 1, 2**39, MASK_40, 0x5A5A5A5A5A]
_AROUND = [0, (MASK_8 << 56) | (MASK_88 << 104) | (MASK_64 << 192), U256 ^ (MASK_40 << 64)]


@pytest.mark.parametrize("around", _AROUND)
def test_header_accessors_read_exactly_their_field(harness: Any, around: int) -> None:
    for until in _PENDING_VALUES:
        h = (around & ~(MASK_40 << 64)) | (until << 64)
        got_until, got_min = harness.header_fields(h)
        assert got_until == _old_pending_until(h) == until == sdk_packing.pending_until(h)
        assert got_min == h >> 192 == cs.min_nonce(h)


@pytest.mark.parametrize(
    "account",
    [
        (2**160 - 1) << 96 | (2**96 - 1),  # every bit set: the index must not leak in
        (1 << 255) | 1,  # the owner's top bit and the index's bottom bit
        (1 << 96) | (2**96 - 1),  # owner 0x..01, full index
        2**96 - 1,  # owner zero
        (0xDEADBEEF << 96) | (1 << 95),  # the index's top bit under the owner's lowest
    ],
)
def test_account_owner_of_edge_ids(harness: Any, protocol: Any, account: int) -> None:
    assert harness.account_owner(account) == _old_owner(account)
    assert protocol.ops.account_owner(account) == _old_owner(account)


def test_order_places_and_bit_walk_match_the_old_shifts(harness: Any) -> None:
    for nonce in [0, 1, 127, 128, 129, 2**63, MASK_64 - 1, MASK_64]:
        assert tuple(harness.order_place(nonce)) == (nonce >> 7, (nonce & 127) << 1)
    words = [0, 1, 1 << 31, (1 << 31) | 1, 0xA5A5A5A5, U256, 1 << 255]
    for bits in words:
        for i in [0, 1, 7, 8, 30, 31, 32, 254, 255]:
            has, none = harness.bit_walk(bits, i)
            assert has == ((bits >> i) & 1 == 1), (bits, i)
            assert none == (bits >> i == 0), (bits, i)


def test_oi_skew_at_both_sides_widest(harness: Any) -> None:
    m128 = 2**128 - 1
    for long_oi, short_oi in [(m128, 0), (0, m128), (m128, m128), (1, 2), (2**127, 2**127 - 1)]:
        w = long_oi | (short_oi << 128)
        old = (w & m128) - (w >> 128)  # `oi << 128 >> 128` minus `oi >> 128`
        assert harness.oi_skew(w) == old == long_oi - short_oi


# --- the pending-order time through guards (_require_trader, _require_idle) -----------------


@pytest.fixture(scope="module")
def r11b_world(actors: Any, protocol: Any, h: Any, admin: Any, trader: Any) -> Any:
    """A vault with cash and a funded trader account; returns the account id."""
    protocol.admin.set_vault(admin, sender=admin)
    protocol.admin.vault_deposit(h.fund(admin, 1_000_000), sender=admin)
    return h.funded_account(trader, 10_000, name="r11b")


def _plant_header(ch: Any, acct: int, until: int, around: int) -> None:
    """The account's header with pending-until `until` and bits 56 and up (but the
    pending field) from `around`; flags, bitmaps and counts below bit 56 kept."""
    slot = _map(_slot("_header"), acct)
    low = 2**56 - 1
    _set(ch, slot, (_get(ch, slot) & low) | (around & ~low & ~(MASK_40 << 64)) | (until << 64))


# pending count 255 and every replay bit of the window set: the fields either side of it
_FULL = (MASK_8 << 56) | (MASK_88 << 104)


@pytest.mark.parametrize(
    "case", ["future", "widest", "past_but_doubled_future", "future_but_halved_past", "zero"]
)
def test_pending_until_edges_gate_trades_and_withdrawals(
    r11b_world: int, protocol: Any, h: Any, trader: Any, case: str
) -> None:
    """A stored order pending until t freezes the account's own trades and withdrawals
    until t, whatever the neighbouring bits hold; an accessor off by one bit (reading 2t
    or t/2) flips one of these cases."""
    ch, acct = protocol.clearinghouse, r11b_world
    now = int(ape.chain.pending_timestamp)
    until, around, blocked = {
        "future": (now + 3_600, _FULL, True),
        "widest": (MASK_40, 0, True),
        "past_but_doubled_future": (now // 2 + 10, _FULL, False),
        "future_but_halved_past": (now + 7_200, 0, True),
        "zero": (0, _FULL | (MASK_64 << 192), False),
    }[case]
    _plant_header(ch, acct, until, around)
    if blocked:
        with ape.reverts(PENDING):
            h.trade(trader, acct, "BTC", "0.01")
        with ape.reverts(PENDING):
            protocol.ops.withdraw(acct, protocol.token, h.usd(1), trader, sender=trader)
    else:
        h.trade(trader, acct, "BTC", "0.01")
        protocol.ops.withdraw(acct, protocol.token, h.usd(1), trader, sender=trader)
        assert ch.position(acct, protocol.market_id("BTC"))[0] == WAD // 100


# --- R11b-1: a book's word 0 cannot carry the pause (or any bit above its fields) -----------


def _book_with_word0_bits(protocol: Any, m: int, bits: int) -> bytes:
    """The published book's bytes with `bits` ORed into market m's word 0."""
    code = bytes(ape.chain.provider.get_code(protocol.clearinghouse.risk_book()))
    book = bytearray(code[1:])
    off = HEADER_BYTES + MARKET_BYTES * m
    w0 = int.from_bytes(book[off : off + 32], "big") | bits
    book[off : off + 32] = w0.to_bytes(32, "big")
    return bytes(book)


@pytest.mark.parametrize("bit", [160, 248, 249, 255])
def test_r11b_1_book_word0_bits_above_fields_are_refused(
    r11b_world: int, protocol: Any, admin: Any, bit: int
) -> None:
    ch = protocol.clearinghouse
    assert not ch.paused()
    data = _book_with_word0_bits(protocol, 0, 1 << bit)
    with ape.reverts("clearinghouse: book word has unused bits set"):
        protocol.admin.set_risk_book(data, sender=admin)


def test_r11b_1_clean_book_republished_keeps_trading(
    r11b_world: int, protocol: Any, h: Any, admin: Any, trader: Any
) -> None:
    """The same book without stray bits is taken, and market 0 still takes risk."""
    protocol.admin.set_risk_book(_book_with_word0_bits(protocol, 0, 0), sender=admin)
    h.trade(trader, r11b_world, "BTC", "0.01")


def test_book_word0_fits_is_exactly_bits_160_up(harness: Any) -> None:
    for w0 in [0, 2**160 - 1, 1 << 160, 1 << 248, 1 << 255, U256]:
        assert harness.book_word0_fits(w0) == (w0 >> 160 == 0)


# --- set_risk_book's ratio steps against the old book's header ------------------------------


@pytest.mark.parametrize("over", [0, 1])
@pytest.mark.parametrize("field", ["floor_bps", "maintenance_bps"])
def test_ratio_step_edge_against_the_old_header(
    protocol: Any, admin: Any, field: str, over: int
) -> None:
    """The old book's floor and maintenance ratios (its header, margin._book_header_of)
    bound the new ones: exactly one step passes, one bp more is refused."""
    import dataclasses

    from perpdex.risk.governance import read_book

    ch = protocol.clearinghouse
    step = 7
    protocol.admin.set_risk_book_limits(int(ch.max_shock_step_bps()), step, sender=admin)
    old = read_book(ch)
    assert old is not None
    moved = getattr(old, field) - step - over  # down: the floor stays under every imr
    new = dataclasses.replace(old, **{field: moved})
    if over:
        with ape.reverts("clearinghouse: ratio change above step limit"):
            protocol.admin.set_risk_book(riskbook.encode(new), sender=admin)
    else:
        protocol.admin.set_risk_book(riskbook.encode(new), sender=admin)
        assert read_book(ch) == new


# --- R11b-2: what the packing lint does not see (pinned; none is used in contracts/) -------

_LINT_HEADER = "# pragma version ~=0.4.3\nfrom . import packing\n"
_BLIND_SPOTS = {
    "named_power_divisor": (
        "ONE_64: constant(uint256) = 18446744073709551616\n"
        "SIZE_40: constant(uint256) = 1099511627776\n"
        "@internal\n@pure\ndef f(h: uint256) -> uint256:\n    return h // ONE_64 % SIZE_40\n"
    ),
    "shifted_mask_constant": (
        "FIELD: constant(uint256) = 0xffffffffff0000000000000000\n"
        "@internal\n@pure\ndef f(h: uint256) -> bool:\n    return h & FIELD == 0\n"
    ),
    "slice_of_a_bytes32_local": (
        "@internal\n@pure\ndef f(h: uint256) -> Bytes[5]:\n"
        "    b: bytes32 = convert(h, bytes32)\n    return slice(b, 19, 5)\n"
    ),
    "generic_bit_helper_with_a_field_offset": (
        "@internal\n@pure\ndef f(h: uint256) -> bool:\n    return packing._no_bits_from(h, 192)\n"
    ),
    "local_alias_of_a_same_file_mask": (
        "LOW: constant(uint256) = 2**40 - 1\n"
        "@internal\n@pure\ndef f(h: uint256) -> uint256:\n"
        "    lo: uint256 = LOW\n    return h & lo\n"
    ),
    "mask_passed_to_a_local_helper": (
        "@internal\n@pure\ndef g(h: uint256, m: uint256) -> uint256:\n    return h & m\n"
        "@internal\n@pure\ndef f(h: uint256) -> uint256:\n"
        "    return self.g(h, packing.MASK_40)\n"
    ),
    "max_value_mask": (
        "@internal\n@pure\ndef f(h: uint256) -> uint256:\n"
        "    return h & convert(max_value(uint40), uint256)\n"
    ),
    "pow_mod256_divisor": (
        "@internal\n@pure\ndef f(h: uint256) -> uint256:\n    return h // pow_mod256(2, 64)\n"
    ),
}


@pytest.mark.xfail(strict=True, reason="R11b-2: a blind spot of the packing lint (info)")
@pytest.mark.parametrize("name", sorted(_BLIND_SPOTS))
def test_r11b_2_lint_blind_spots(name: str) -> None:
    assert packing_lint.lint_source(_LINT_HEADER + _BLIND_SPOTS[name], "sample.vy") != []


def test_r11b_2_no_blind_spot_form_in_the_contracts() -> None:
    """None of the forms above reads a field in contracts/ today: no power-of-two or
    shifted-mask constant meets `//`, `%`, `*`, `/` or `&`, no bit helper of packing.vy is
    called with a constant offset, no pow_mod256, no slice of a converted word."""
    import vyper.ast.nodes as n
    from vyper.ast import parse_to_ast

    from perpdex.config import ROOT

    consts: dict[str, int] = {}
    for f in sorted((ROOT / "contracts").rglob("*.vy")):
        for d in parse_to_ast(f.read_text()).get_children(n.VariableDecl):
            if d.is_constant and d.value is not None:
                v = packing_lint._literal_value(d.value)
                if v is not None:
                    consts[d.target.id] = v

    def value(node: Any) -> int | None:
        if isinstance(node, n.Name):
            return consts.get(node.id)
        if isinstance(node, n.Attribute):
            return consts.get(node.attr)
        return None

    def field_like(v: int | None, op: Any) -> bool:
        if v is None or v <= 0:
            return False
        if v >= 256 and v & (v - 1) == 0:
            return not isinstance(op, n.BitAnd)  # a named one-bit flag test is allowed
        run = v // (v & -v)
        return run >= 3 and run & (run + 1) == 0 and v & 1 == 0  # a shifted multi-bit mask

    hits: list[str] = []
    ops = (n.BitAnd, n.FloorDiv, n.Mod, n.Mult, n.Div)
    for f in packing_lint.sources([ROOT / "contracts"]):
        mod = parse_to_ast(f.read_text())
        for b in mod.get_descendants(n.BinOp):
            if isinstance(b.op, ops) and any(field_like(value(s), b.op) for s in (b.left, b.right)):
                hits.append(f"{f.name}:{b.lineno}")
        for c in mod.get_descendants(n.Call):
            name = c.func.attr if isinstance(c.func, n.Attribute) else getattr(c.func, "id", "")
            narrow = (
                name == "max_value"
                and isinstance(c.args[0], n.Name)
                and c.args[0].id.startswith("uint")
                and c.args[0].id != "uint256"
            )
            if name == "pow_mod256" or narrow:
                hits.append(f"{f.name}:{c.lineno}")
            offset = c.args[1] if len(c.args) == 2 else None
            if (
                name in ("_has_bit", "_no_bits_from")
                and offset is not None
                and (packing_lint._literal_value(offset) is not None or value(offset) is not None)
            ):
                hits.append(f"{f.name}:{c.lineno}")
    assert hits == []


# --- the Lens reads the book's header through margin._book_header_of -------------------------


def test_lens_summary_reads_the_book_header(
    r11b_world: int, protocol: Any, h: Any, lp: Any, trader: Any
) -> None:
    """A portfolio account's summary equals the Clearinghouse's scan, and its scenario
    row is as long as the published header says (the header's n_scenarios, read here
    from the book's code)."""
    ch = protocol.clearinghouse
    acct = h.funded_account(trader, 50_000, portfolio=True, name="r11b-lens")
    h.trade(trader, acct, "BTC", "0.2")
    h.trade(trader, acct, "ETH", "-3")
    code = bytes(ape.chain.provider.get_code(ch.risk_book()))
    header = int.from_bytes(code[1 : 1 + HEADER_BYTES], "big")
    scan = ch.account_margin(acct)
    v = protocol.lens.account_summary(acct)
    assert (v.equity, v.initial, v.maintenance, v.isolated_initial) == (
        scan.equity,
        scan.initial,
        scan.maintenance,
        scan.isolated,
    )
    assert len(v.scenario_losses) == book_header(header).n_scenarios
    assert v.floor > 0 and v.maintenance > 0


@pytest.mark.parametrize(
    "field,value",
    [("imr_slope_bps", 2**16), ("margin_scale", 2**128), ("imr_min_bps", 2**16)],
)
def test_r11b_1_sdk_refuses_a_field_that_would_spill(field: str, value: int) -> None:
    """The SDK's encoder wrote `imr_slope << 16 | margin_scale << 32` unchecked: a slope of
    2**16 bp became margin_scale + 1, a scale of 2**128 the bit set_risk_book now refuses.
    It raises instead, and `book_problems` (the mirror) names the field."""
    import dataclasses

    from perpdex.config import load_risk
    from perpdex.risk.governance import book_problems

    book = riskbook.from_config(load_risk(), ["BTC", "ETH", "SOL"])
    bad = dataclasses.replace(book.markets[0], **{field: value})
    wide = dataclasses.replace(book, markets=(bad, *book.markets[1:]))
    with pytest.raises(ValueError, match=field):
        riskbook.encode(wide)
    assert book_problems(wide, 3) != []


# --- the skew (trading._pool_trade) and the order-bits slot (order_hash) --------------------


def test_pool_trade_prices_the_skew_long_minus_short(
    r11b_world: int, protocol: Any, h: Any, trader: Any
) -> None:
    """With longs ahead, a buy pays the premium of the skew long minus short (the SDK's
    fill price from the chain's open interest, to the wei); sides swapped, it would fill
    below the mark."""
    from perpdex.sdk.math.pricing import fill_price

    ch, acct = protocol.clearinghouse, r11b_world
    m = protocol.market_id("BTC")
    h.trade(trader, acct, "BTC", "0.3")
    long_oi, short_oi = (int(x) for x in ch.open_interest(m))
    assert long_oi > short_oi
    tx = h.trade(trader, acct, "BTC", "0.05")
    (fill,) = [f for f in tx.decode_logs(ch.Fill) if int(f.account) == acct]
    price = int(ch.mark(m)[0])
    scale = int(ch.market_params(m).skew_scale)
    assert int(fill.price) == fill_price(price, long_oi - short_oi, WAD // 20, scale)
    assert int(fill.price) > price


def test_order_bits_word_is_where_the_sdk_reads_it(
    r11b_world: int, protocol: Any, trader: Any, chain: Any, h: Any, admin: Any, actors: Any
) -> None:
    """A nonce past the header's window, cancelled, sets its DONE bit in the order_bits
    word the SDK computes (`replay_location`, nonce >> 7, bit (nonce & 127) * 2): the
    accessors and the off-chain readers agree on the layout, not only with each other."""
    from test_signed_orders import World

    w = World(protocol, chain, h, admin, actors)
    hdr = int(w.ch.account_header(w.maker))
    base = cs.min_nonce(hdr)
    for nonce in (base + cs.NONCE_WINDOW, base + 127, base + 128, base + 300):
        order = w.order(w.maker, -0.02, nonce=nonce)
        w.orders.cancel_order(order.as_message(), sender=w.maker_owner)
        slot, at = cs.replay_location(w.maker, hdr, nonce)
        assert slot is not None
        assert (_get(w.ch, slot) >> at) & 3 == cs.ORDER_DONE, nonce
