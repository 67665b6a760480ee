"""Review 9a: outside attacks on the session-9 packing refactor (docs/security.md).

Four targets. (A) OracleRouter's four words now go through packing.vy pack/unpack pairs
that assert no field width ("bounded by construction"): each field is pushed to its
bound and one past it, the snapshot nonce is driven to its 24-bit end (anvil_setNonce),
and after every setter the market's snapshot (what the hot path reads) is compared word
for word with storage, decoded by an independent Python layout. (B) The review-8 nonce
window after `_raise_min_nonce` went through accessors: the seam between the kept header
bits and the nonces entering from order_bits words, and a 128-nonce word boundary.
(C) `position_markets` is reachable and means the header's bitmap. (D) The packing lint:
patterns that leak a layout and the baseline's count rule.

A test marked xfail(strict=True) is a finding (its id in the reason); every other test is
a defended attack. Storage slots come from the compiler's layout, not from this file.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import ape
import pytest
from eth_utils import keccak, to_checksum_address
from test_review8_nonce_window import CANCELLED, DONE, OVERFILLED, _fill, _maker
from test_signed_orders import World

from perpdex.constants import MAX_PRICE, WAD
from perpdex.devtools import packing_lint as pl
from perpdex.devtools import vyper_frontend
from perpdex.sdk import settlement as cs

ROOT = Path(__file__).resolve().parents[2]
USD = 10**8
MAX_AGE_LIMIT = 2**24 - 1
MAX_TWAP_WINDOW = 86_400
MAX_GRACE = 86_400
NONCE_END = 2**24 - 1  # the 24-bit nonce field's largest value


# --- an independent decoding of the router's words (the layout docstring of packing.vy) --


def _bits(w: int, lo: int, width: int) -> int:
    return (w >> lo) & ((1 << width) - 1)


def decode_config(w: int) -> dict[str, int]:
    return {
        "min_price": _bits(w, 0, 96),
        "max_price": _bits(w, 96, 96),
        "dev": _bits(w, 192, 16),
        "window": _bits(w, 208, 24),
        "min_fresh": _bits(w, 232, 8),
        "count": _bits(w, 240, 8),
        "seq": _bits(w, 248, 1),
        "unused": w >> 249,
    }


def decode_source(w: int) -> dict[str, int]:
    return {
        "feed": _bits(w, 0, 160),
        "decimals": _bits(w, 160, 8),
        "factor": _bits(w, 168, 64),
        "max_age": w >> 232,
    }


def decode_globals(w: int) -> dict[str, int]:
    return {
        "feed": _bits(w, 0, 160),
        "grace": _bits(w, 160, 64),
        "count": _bits(w, 224, 8),
        "nonce": w >> 232,
    }


@cache
def _slots() -> dict[str, int]:
    layout = vyper_frontend.layout("contracts/OracleRouter.vy")["storage_layout"]
    return {k: layout[k]["slot"] for k in ("_config", "_sources", "_observations", "_globals")}


class Raw:
    """Raw storage and snapshot reads of one router."""

    def __init__(self, router: Any, chain: Any) -> None:
        self.r, self.chain = router, chain
        self.s = _slots()

    def word(self, slot: int) -> int:
        return int.from_bytes(self.chain.provider.get_storage(self.r.address, slot), "big")

    def config(self, m: int) -> int:
        return self.word(self.s["_config"] + m)

    def source(self, m: int, i: int) -> int:
        return self.word(self.s["_sources"] + 3 * m + i)

    def obs(self, m: int) -> int:
        return self.word(self.s["_observations"] + m)

    def globals(self) -> int:
        return self.word(self.s["_globals"])

    def set_globals(self, w: int) -> None:
        self.chain.provider.set_storage(self.r.address, self.s["_globals"], w.to_bytes(32, "big"))

    def snapshot_address(self, nonce: int) -> str:
        me = bytes.fromhex(self.r.address[2:])
        if nonce < 128:
            enc = bytes([nonce])
        else:
            b = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
            enc = bytes([0x80 + len(b)]) + b
        body = b"\x94" + me + enc
        return to_checksum_address(keccak(bytes([0xC0 + len(body)]) + body)[12:])

    def snapshot(self, m: int) -> list[int]:
        code = bytes(self.chain.provider.get_code(self.snapshot_address(self.obs(m) >> 232)))
        assert len(code) == 161 and code[0] == 0, "snapshot code: STOP + five words"
        return [int.from_bytes(code[1 + 32 * k : 33 + 32 * k], "big") for k in range(5)]

    def assert_consistent(self) -> None:
        """Every market's snapshot is storage's config, sources and sequencer word, the
        config's sequencer bit is the globals' feed presence, no unused bit is set."""
        g = self.globals()
        dg = decode_globals(g)
        for m in range(dg["count"]):
            cfg = self.config(m)
            assert decode_config(cfg)["unused"] == 0
            assert decode_config(cfg)["seq"] == (dg["feed"] != 0), f"market {m} seq bit"
            snap = self.snapshot(m)
            assert snap[0] == cfg, f"market {m}: snapshot config differs from storage"
            assert snap[1:4] == [self.source(m, i) for i in range(3)], f"market {m} sources"
            assert snap[4] == g & ((1 << 224) - 1), f"market {m}: sequencer word"
            # the snapshot nonce is below the next one
            assert 0 < self.obs(m) >> 232 < dg["nonce"]


@pytest.fixture(scope="module")
def router(project: Any, admin: Any, protocol: Any, actors: Any, h: Any) -> Any:
    """A bare router (not the protocol's); the session fixtures are requested first so
    that ape's snapshot isolation sees them before the module's."""
    del protocol, actors, h
    return project.OracleRouter.deploy(sender=admin)


@pytest.fixture(scope="module")
def raw(router: Any, chain: Any) -> Raw:
    return Raw(router, chain)


@pytest.fixture(scope="module")
def feeds(project: Any, admin: Any) -> list[Any]:
    """Feeds at the decimal extremes (0 and 36: factor 1 and 1e18) and a usual one."""
    return [
        project.MockAggregator.deploy(0, 2_000, sender=admin),
        project.MockAggregator.deploy(36, 2_000 * 10**36, sender=admin),
        project.MockAggregator.deploy(8, 2_000 * USD, sender=admin),
    ]


PARAMS = (WAD // 100, 1_000_000 * WAD, 200, 2, 600)


# --- A: oracle router words -------------------------------------------------------------


def test_a1_every_field_at_its_bound__no_neighbour_touched(
    router: Any, raw: Raw, feeds: list[Any], admin: Any
) -> None:
    """Each governance field at its largest accepted value lands exactly in its field
    (independent decoding of the raw words), and one past it reverts: the pack functions
    may drop their width asserts only because these checks hold."""
    m = router.add_market(
        feeds, [MAX_AGE_LIMIT] * 3, MAX_PRICE - 1, MAX_PRICE, 10_000, 3, MAX_TWAP_WINDOW,
        sender=admin,
    ).return_value  # fmt: skip
    cfg = decode_config(raw.config(m))
    assert cfg == {
        "min_price": MAX_PRICE - 1, "max_price": MAX_PRICE, "dev": 10_000,
        "window": MAX_TWAP_WINDOW, "min_fresh": 3, "count": 3, "seq": 0, "unused": 0,
    }  # fmt: skip
    expected = zip(feeds, (0, 36, 8), (10**18, 10**18, 10**10), strict=True)
    for i, (f, dec, factor) in enumerate(expected):
        assert decode_source(raw.source(m, i)) == {
            "feed": int(f.address, 16), "decimals": dec, "factor": factor,
            "max_age": MAX_AGE_LIMIT,
        }  # fmt: skip
    router.set_sequencer_feed(feeds[2], MAX_GRACE, sender=admin)
    assert decode_globals(raw.globals())["grace"] == MAX_GRACE
    assert router.market_config(m).max_ages == [MAX_AGE_LIMIT] * 3
    raw.assert_consistent()
    # one past each bound: a revert, never a silently truncated or spilled field
    bad = [
        ((feeds, [MAX_AGE_LIMIT + 1] * 3, *PARAMS), "oracle: max age too large"),
        ((feeds[:2], [1, 1], 1, MAX_PRICE + 1, 200, 2, 600), "oracle: max price too large"),
        ((feeds[:2], [1, 1], 1, 2, 10_001, 2, 600), "oracle: bad max deviation"),
        ((feeds[:2], [1, 1], 1, 2, 200, 2, MAX_TWAP_WINDOW + 1), "oracle: bad twap window"),
        ((feeds[:2], [1, 1], 1, 2, 200, 3, 600), "oracle: bad min fresh"),
    ]
    for args, reason in bad:
        with ape.reverts(reason):
            router.add_market.call(*args, sender=admin, skip_trace=True)
    with ape.reverts("oracle: grace period too long"):
        router.set_sequencer_feed.call(feeds[2], MAX_GRACE + 1, sender=admin, skip_trace=True)
    with ape.reverts("oracle: max age too large"):
        router.set_sources.call(m, feeds, [2**24] * 3, sender=admin, skip_trace=True)
    router.set_sequencer_feed(ape.utils.ZERO_ADDRESS, 0, sender=admin)


def test_a2_sequencer_toggle__snapshots_follow_storage_after_every_setter(
    router: Any, raw: Raw, feeds: list[Any], admin: Any
) -> None:
    """Feed on, grace change, set_params, set_sources, add_market, feed off: after each,
    every market's snapshot equals storage and the per-market sequencer bit equals the
    globals' (a setter that dropped or forgot the bit would leave the hot path reading
    no sequencer check, or a stale one)."""
    while router.market_count() < 3:
        router.add_market(feeds[:2], [3_600, 3_600], *PARAMS, sender=admin)
    raw.assert_consistent()
    router.set_sequencer_feed(feeds[2], 3_600, sender=admin)
    raw.assert_consistent()
    tx = router.set_sequencer_feed(feeds[2], 60, sender=admin)  # no toggle, new grace
    (ev,) = router.SequencerFeedUpdated.from_receipt(tx)
    assert (ev.old_feed, ev.old_grace_period) == (feeds[2].address, 3_600)  # not aliased
    raw.assert_consistent()
    router.set_params(1, WAD, 2 * WAD, 300, 2, 900, sender=admin)
    raw.assert_consistent()
    assert decode_config(raw.config(1))["seq"] == 1
    router.set_sources(2, feeds, [60, 60, 60], sender=admin)
    raw.assert_consistent()
    assert decode_config(raw.config(2))["count"] == 3
    router.set_sources(2, feeds[1:], [60, 60], sender=admin)  # shrink: third word zeroed
    raw.assert_consistent()
    assert raw.source(2, 2) == 0
    m = router.add_market(feeds[:2], [60, 60], *PARAMS, sender=admin).return_value
    assert decode_config(raw.config(m))["seq"] == 1
    raw.assert_consistent()
    router.set_sequencer_feed(ape.utils.ZERO_ADDRESS, 0, sender=admin)
    raw.assert_consistent()
    assert all(decode_config(raw.config(k))["seq"] == 0 for k in range(router.market_count()))
    # the counts survived every rewrite of the globals word
    assert decode_globals(raw.globals())["count"] == router.market_count() == m + 1


def test_a3_snapshot_nonce_at_its_end__exhausted_not_wrapped(
    router: Any, raw: Raw, feeds: list[Any], admin: Any, chain: Any
) -> None:
    """The router's CREATE nonce and the globals' nonce field set to 2**24 - 2: one more
    publish works (a 3-byte RLP address) and the next is refused; the count, grace and
    feed beside the nonce never change, the nonce never wraps to 0 (a wrapped nonce
    would point `observe` at no snapshot or at an old one)."""
    if router.market_count() == 0:
        router.add_market(feeds[:2], [3_600, 3_600], *PARAMS, sender=admin)
    router.set_sequencer_feed(feeds[2], 77, sender=admin)
    g = decode_globals(raw.globals())
    start = NONCE_END - 1
    chain.provider.make_request("anvil_setNonce", [router.address, hex(start)])
    raw.set_globals(raw.globals() & ((1 << 232) - 1) | start << 232)
    router.set_params(0, WAD, 10_000 * WAD, 300, 2, 900, sender=admin)
    after = decode_globals(raw.globals())
    assert after == {**g, "nonce": NONCE_END}
    assert raw.obs(0) >> 232 == start
    assert raw.snapshot(0)[0] == raw.config(0)
    # `observe` reads the new snapshot (3-byte RLP address): a quorum price of ~2,000
    assert router.observe(0, sender=admin).return_value[0] == 2_000 * WAD
    with ape.reverts("oracle: snapshot nonce exhausted"):
        router.set_params(0, WAD, 10_000 * WAD, 300, 2, 901, sender=admin)
    with ape.reverts("oracle: snapshot nonce exhausted"):
        router.set_sequencer_feed(feeds[2], 78, sender=admin)
    assert decode_globals(raw.globals()) == after


# --- B: the nonce window after `_raise_min_nonce` (extends review 8) --------------------


# the review-8 world, its refusal reasons and its maker/taker helpers
@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    return World(protocol, chain, h, admin, actors)


def _min(w: World) -> int:
    return cs.min_nonce(int(w.ch.account_header(w.maker)))


def _fresh_base(w: World) -> int:
    """Moves the maker's window 200 nonces up (past every nonce an earlier test used)."""
    w.orders.cancel_below(w.maker, _min(w) + 200, sender=w.maker_owner)
    return _min(w)


@pytest.mark.parametrize("step", [1, 43])
def test_b1_window_seam__last_kept_and_first_entering_nonce(w: World, step: int) -> None:
    """The window's last nonce (kept, shifted down by `step`) and the first nonce above it
    (entering from its order_bits word), each done or partly filled, keep their state
    across cancel_below: an off-by-one in `first` or in the shift loses one of them, and
    the review-8 suite (its word nonces sit 3+ places from the seam) would not see it."""
    base = _fresh_base(w)
    last, entering = base + cs.NONCE_WINDOW - 1, base + cs.NONCE_WINDOW
    done_last, part_entering = _maker(w, last), _maker(w, entering, lots=3)
    done_next = _maker(w, entering + 1)
    w.settle(_fill(w, done_last))
    w.settle(_fill(w, part_entering))
    w.settle(_fill(w, done_next))
    w.orders.cancel_below(w.maker, base + step, sender=w.maker_owner)
    hdr = int(w.ch.account_header(w.maker))
    assert all(cs.replay_location(w.maker, hdr, n)[0] is None for n in (last, entering))
    for mk in (done_last, done_next):
        with ape.reverts(DONE):
            w.settle(_fill(w, mk))
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, part_entering, lots=3))
    w.settle(_fill(w, part_entering, lots=2))
    with ape.reverts(DONE):
        w.settle(_fill(w, part_entering))


def test_b2_entering_nonces_across_an_order_bits_word_boundary(w: World) -> None:
    """Nonces 128k - 1 and 128k live in two order_bits words; a window move that takes
    both in must read each from its own word (`_order_word`, `_order_bit_at`)."""
    base = _fresh_base(w)
    k = ((base + cs.NONCE_WINDOW) // 128 + 1) * 128
    lo, hi = _maker(w, k - 1), _maker(w, k, lots=3)
    w.settle(_fill(w, lo))
    w.settle(_fill(w, hi))
    w.orders.cancel_below(w.maker, k - 20, sender=w.maker_owner)
    with ape.reverts(DONE):
        w.settle(_fill(w, lo))
    with ape.reverts(OVERFILLED):
        w.settle(_fill(w, hi, lots=3))
    with ape.reverts(CANCELLED):
        w.settle(_fill(w, _maker(w, k - 21)))


# --- C: position_markets ----------------------------------------------------------------


def test_c1_position_markets_is_the_headers_bitmap(w: World) -> None:
    """What the auction now walks equals the header's position bitmap, for both sides of
    a fill and for an account without positions."""
    w.settle(_fill(w, _maker(w, _fresh_base(w) + 30)))
    for acct in (w.maker, w.taker, w.maker + 1000):
        hdr = int(w.ch.account_header(acct))
        assert int(w.ch.position_markets(acct)) == (hdr >> 8) & (2**32 - 1)
    assert int(w.ch.position_markets(w.maker)) & 1  # BTC is market 0


def test_c2_position_markets_selector_unshadowed() -> None:
    """No code half exports another function with position_markets's selector: the main
    half's dispatcher would answer it before the __default__ forward to Ops."""
    sel = keccak(b"position_markets(uint256)")[:4]
    seen: dict[bytes, set[str]] = {}
    for path in sorted((ROOT / "perpdex" / "abi").glob("Clearinghouse*.json")):
        for item in json.loads(path.read_text()):
            if item.get("type") != "function":
                continue
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            seen.setdefault(keccak(sig.encode())[:4], set()).add(sig)
    assert seen.get(sel) == {"position_markets(uint256)"}


# --- D: the packing lint ------------------------------------------------------------------


def _lint(body: str, header: str = "") -> list[pl.Finding]:
    """The findings inside `f` (a module-level constant's own shift does not count: the
    question is whether the use of the word is caught)."""
    src = f"{header}\n@internal\n@pure\ndef f(w: uint256) -> uint256:\n{body}\n"
    return [x for x in pl.lint_source(src, "contracts/modules/x.vy") if x.function == "f"]


@pytest.mark.parametrize(
    "header, body",
    [
        ("_M: constant(uint256) = packing.MASK_40", "    return w & _M"),
        ("", "    x: uint256 = w\n    x &= packing.MASK_8\n    return x"),
        ("", "    x: uint256 = w\n    x >>= 8\n    return x"),
        ("_LOW: constant(uint256) = (1 << 40) - 1", "    return w & _LOW"),
        ("", "    return w & ~packing.MASK_104"),
    ],
    ids=["alias", "aug_and", "aug_shift", "shift_literal_const", "inverted"],
)
def test_d1_lint_catches_aliases_and_augmented_ops(header: str, body: str) -> None:
    assert _lint(body, header), "the lint missed a layout leak it claims to catch"


def test_d2_baseline__new_function_and_module_level_findings_fail() -> None:
    """A finding in a function the baseline does not list, or at module level, fails;
    a listed function that lost lines fails until the baseline is lowered."""
    src = "B: constant(uint256) = 1 << 3\n@internal\ndef g(w: uint256) -> uint256:\n"
    src += "    return w >> 3\n"
    found = pl.lint_source(src, "contracts/modules/x.vy")
    assert {f.function for f in found} == {"<module>", "g"}
    assert len(pl.against_baseline(found, {})) == 2
    assert pl.against_baseline(found, {("contracts/modules/x.vy", "g"): 1}) != []
    assert pl.against_baseline([], {("contracts/modules/x.vy", "g"): 1}) != []


@pytest.mark.parametrize(
    "body",
    [
        "    return (w // 2**192) % 2**40",
        "    return unsafe_div(w, 2**96) % 2**96",
        "    return w * 2**232 + 5",
        "    return convert(slice(convert(w, bytes32), 8, 24), uint256)",
    ],
    ids=["floordiv_mod", "unsafe_div", "mul_pack", "byte_slice"],
)
def test_d3_lint_misses_arithmetic_shifts(body: str) -> None:
    assert _lint(body)


@pytest.mark.parametrize(
    "header, body",
    [
        ("", "    return w & c.MAX_PRICE"),
        ("_P: constant(uint256) = c.MAX_PRICE", "    return w & _P"),
        ("", "    m: uint256 = 2**40 - 1\n    return w & m"),
    ],
    ids=["other_module_all_ones", "alias_of_it", "local_variable"],
)
def test_d4_lint_misses_unnamed_masks(header: str, body: str) -> None:
    assert _lint(body, header)


def test_d5_baseline_refuses_a_listed_function_that_swaps_or_piles_up_shifts() -> None:
    """A listed function keeps its line count while one line unpacks a new field, or
    while a finding line gains more shifts: the entry's fingerprint refuses both (R9a-3,
    fixed; it was a strict xfail)."""
    path = "contracts/modules/x.vy"
    before = pl.lint_source("@internal\ndef g(w: uint256) -> uint256:\n    return w >> 8\n", path)
    after = pl.lint_source(
        "@internal\ndef g(w: uint256) -> uint256:\n"
        "    return (w >> 8) + ((w >> 200) & MASK_16) + ((w >> 104) & MASK_88)\n",
        path,
    )
    assert len(before) == len(after) == 1
    entry = pl.baseline_entries(before)[(path, "g")]
    assert pl.against_baseline(before, {(path, "g"): entry}) == []
    assert pl.against_baseline(after, {(path, "g"): entry}) != [], "a new leak passed"
