"""Review 11: outside attacks on the margin scan's rewrite (5e4eeb9..5550574, gates._scan).

The scan now copies the risk book 8 markets at a time and moves that window in its loop
for an account holding a market >= 8, tests scenario groups through flags, picks the
worst scenario by test-and-store and sums equity pnl unchecked. Every test here plants
raw state (anvil_setStorageAt / anvil_setCode): an account header with any positions
bitmap, position words, marks, the system word's scenario count and a 32-market risk
book whose every market has its own words (ratios and shocks, so a word read from the
wrong window gives another figure). Each figure of `account_margin`,
`margin_requirement` and `margin_at_twap` is then held, to the wei, to
(1) the SDK mirror (`perpdex.sdk.math.scan` over a snapshot built from the same words)
and (2) `_independent`, a per-position recomputation written here from the formulas in
contracts/modules/margin.vy with Python's exact integers (a wrap on chain shows as a
difference). Two tests trade instead: the reduce-only override on a wide account, and
the one-position (lone) check refused to an account with another collateral token.
Every test is a defended attack (no finding is marked xfail).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ape
import pytest
from eth_utils import keccak

from perpdex.constants import BPS, MAX_MARKETS, MAX_PRICE, MAX_SCENARIOS, WAD
from perpdex.devtools import vyper_frontend
from perpdex.sdk import math as pm
from perpdex.sdk.math.margin import HEADER_BYTES, MARKET_BYTES, Book
from perpdex.sdk.math.margin import MAX_BOOK_BYTES as BOOK_DATA_BYTES
from perpdex.sdk.math.packing import (
    MASK_8,
    MASK_32,
    MASK_64,
    MASK_96,
    MAX_I96,
    PICO_PER_USD,
    Mark,
)
from perpdex.sdk.math.views import MarketState
from perpdex.sdk.snapshot import Snapshot

MASK_72 = 2**72 - 1  # the mark word's funding index field (72 bits at bit 128)
BALANCE = 10_000  # USD deposited by every account


# --- raw state ---------------------------------------------------------------------------


def _slot(name: str) -> int:
    layout = vyper_frontend.layout("contracts/Clearinghouse.vy")["storage_layout"]
    return int(layout["state"][name]["slot"])


def _map(slot: int, key: int) -> int:
    # Vyper: keccak256(slot ++ key)
    return int.from_bytes(keccak(slot.to_bytes(32, "big") + key.to_bytes(32, "big")), "big")


def _set(ch: Any, slot: int, value: int) -> None:
    ape.chain.provider.set_storage(ch.address, slot, (value % 2**256).to_bytes(32, "big"))


def _get(ch: Any, slot: int) -> int:
    return int.from_bytes(bytes(ape.chain.provider.get_storage(ch.address, slot)), "big")


def _ceil(x: int, d: int) -> int:
    return -((-x) // d)


def _w0(m: int) -> int:
    # imr_min 300..610 bp, slope 40..257 bp, margin_scale (1,000 + 31 m) units (base WAD):
    # distinct per market
    return (300 + 10 * m) | ((40 + 7 * m) << 16) | (((1_000 + 31 * m) * WAD) << 32)


def _w0_max(m: int) -> int:
    # the widest word 0: both ratios at 0xFFFF bp, margin_scale 1 (the largest slope term)
    return 0xFFFF | (0xFFFF << 16) | ((1 + m % 2) << 32)


def _shock_default(m: int, k: int) -> int:
    # signed, distinct per market and scenario, |shock| >= imr_min
    mag = 700 + 13 * m + 41 * k
    return mag if (m + k) % 3 else -mag


def _w1(shocks: list[int]) -> int:
    w = 0
    for k, s in enumerate(shocks):
        w |= (s & 0xFFFF) << (16 * k)
    return w


@dataclasses.dataclass
class World:
    """One account's planted state and the book, chain-side and mirror-side."""

    p: Any
    acct: int
    portfolio: bool
    n_s: int
    floor_bps: int
    mmr_bps: int
    w0: list[int]
    w1: list[int]
    positions: dict[int, tuple[int, int, int]]  # m -> (size, cost, 64-bit snapshot)
    marks: dict[int, tuple[int, int]]  # m -> (price, index)


def _plant(
    p: Any,
    h: Any,
    trader: Any,
    name: str,
    portfolio: bool,
    positions: dict[int, tuple[int, int, int]],
    marks: dict[int, tuple[int, int]],
    n_s: int = 16,
    shock: Any = _shock_default,
    floor_bps: int | None = None,
    mark_time: int = 0,
    w0_of: Any = _w0,
) -> World:
    ch = p.clearinghouse
    acct = h.funded_account(trader, BALANCE, portfolio=portfolio, name=name)
    # the book: 32 markets, each with its own words; header and names kept
    book = str(ch.risk_book())
    code = bytes(ape.chain.provider.get_code(book))
    data = bytearray(code[1:])
    assert len(data) == BOOK_DATA_BYTES
    hdr_w = int.from_bytes(data[:32], "big")
    if floor_bps is None:
        floor_bps = (hdr_w >> 16) & 0xFFFF
    mmr_bps = (hdr_w >> 32) & 0xFFFF
    hdr_w = (hdr_w & ~(2**32 - 1)) | MAX_MARKETS | (n_s << 8) | (floor_bps << 16)
    data[:32] = hdr_w.to_bytes(32, "big")
    w0s = [w0_of(m) for m in range(MAX_MARKETS)]
    w1s = [_w1([shock(m, k) for k in range(MAX_SCENARIOS)]) for m in range(MAX_MARKETS)]
    for m in range(MAX_MARKETS):
        off = HEADER_BYTES + MARKET_BYTES * m
        data[off : off + 32] = w0s[m].to_bytes(32, "big")
        data[off + 32 : off + 64] = w1s[m].to_bytes(32, "big")
    ape.chain.provider.make_request("anvil_setCode", [book, "0x00" + bytes(data).hex()])
    sys_slot = _slot("_system")
    sw = _get(ch, sys_slot)
    sw = (sw & ~(MASK_8 << 160) & ~(0xFFFF << 168)) | (n_s << 160) | (floor_bps << 168)
    _set(ch, sys_slot, sw)
    # header: positions bitmap (bits 8-39) and count (48-55)
    bitmap = sum(1 << m for m in positions)
    hslot = _map(_slot("_header"), acct)
    hdr = _get(ch, hslot)
    hdr = (hdr & ~(MASK_32 << 8) & ~(MASK_8 << 48)) | (bitmap << 8) | (len(positions) << 48)
    _set(ch, hslot, hdr)
    base = _map(_slot("_pos"), acct)
    for m, (size, cost, snap) in positions.items():
        _set(ch, base + m, (size & MASK_96) | ((cost & MASK_96) << 96) | ((snap & MASK_64) << 192))
    for m, (price, index) in marks.items():
        _set(ch, _slot("_mark") + m, price | (mark_time << 88) | ((index & MASK_72) << 128))
    # the planting reads back through the contract's own views
    assert int(ch.account_header(acct)) == hdr
    for m, (size, cost, snap) in positions.items():
        assert tuple(int(x) for x in ch.position(acct, m)) == (size, cost, snap & MASK_64)
    return World(p, acct, portfolio, n_s, floor_bps, mmr_bps, w0s, w1s, positions, marks)


# --- the two references --------------------------------------------------------------------


def _mirror(w: World, prices: dict[int, int] | None = None) -> tuple[int, ...]:
    snap = Snapshot.load(w.p, w.acct)
    proto = snap.markets[0]
    markets = []
    for m in range(MAX_MARKETS):
        price, index = w.marks.get(m, (0, 0))
        if prices is not None and m in prices:
            price = prices[m]
        mark = Mark(price, 0, index, 0)
        markets.append(dataclasses.replace(proto, market=m, mark=mark))
    data = bytes(ape.chain.provider.get_code(str(w.p.clearinghouse.risk_book())))[1:]
    snap = dataclasses.replace(
        snap,
        market_count=MAX_MARKETS,
        markets=tuple(markets),
        book=Book(data),
        system=dataclasses.replace(snap.system, n_scenarios=w.n_s),
    )
    assert isinstance(snap.markets[0], MarketState)
    return dataclasses.astuple(pm.scan(snap))


def _independent(w: World, prices: dict[int, int] | None = None) -> tuple[int, ...]:
    """(equity, initial, maintenance, isolated, notional) from margin.vy's formulas."""
    equity = BALANCE * WAD
    isolated = notional = gross = addon = 0
    losses = [0] * w.n_s
    for m, (size, cost, snap) in sorted(w.positions.items()):
        price, index = w.marks[m]
        if prices is not None:
            price = prices[m]
        if size == 0:
            continue
        value = size * price
        n = _ceil(abs(value), WAD)
        w0 = w.w0[m]
        imr, sl, sc = w0 & 0xFFFF, (w0 >> 16) & 0xFFFF, (w0 >> 32) & (2**128 - 1)
        slope = _ceil(n * sl * abs(size), BPS * sc)
        isolated += _ceil(abs(value) * imr, WAD * BPS) + slope
        addon += slope
        gross += abs(value)
        notional += n
        for k in range(w.n_s):
            s = (w.w1[m] >> (16 * k)) & 0xFFFF
            losses[k] -= value * (s - 2**16 if s >= 2**15 else s)
        d = (index - snap) % 2**64
        d = d - 2**64 if d >= 2**63 else d
        owed = _ceil(size * d, PICO_PER_USD)
        equity += value // WAD - cost - owed  # floor division, as fp._div_floor
    worst = max([0, *losses])
    initial = isolated
    if w.portfolio:
        initial = min(
            isolated, max(_ceil(worst, WAD * BPS), _ceil(gross * w.floor_bps, WAD * BPS)) + addon
        )
    return equity, initial, _ceil(initial * w.mmr_bps, BPS), isolated, notional


def _assert_all_equal(w: World) -> pm.MarginScan:
    ch = w.p.clearinghouse
    chain = tuple(int(x) for x in ch.account_margin(w.acct))
    mine = _independent(w)
    assert chain == mine, f"chain {chain} != independent {mine}"
    mirror = _mirror(w)
    assert chain == mirror, f"chain {chain} != mirror {mirror}"
    assert tuple(int(x) for x in ch.margin_requirement(w.acct)) == (mine[1], mine[2])
    return pm.MarginScan(*chain)


def _usd_position(m: int, usd: int, price: int, long: bool) -> tuple[int, int, int]:
    size = usd * WAD * WAD // price
    size = size if long else -size
    return size, size * price // WAD // 2, 0


def _legs(markets: list[int]) -> tuple[dict[int, tuple[int, int, int]], dict[int, tuple[int, int]]]:
    positions, marks = {}, {}
    for i, m in enumerate(markets):
        price = (1_000 + 37 * m) * WAD
        positions[m] = _usd_position(m, 2_000 + 1_000 * i, price, i % 2 == 0)
        marks[m] = (price, 5_000 * m + 17)
    return positions, marks


# --- (1) the window ------------------------------------------------------------------------

WINDOW_CASES = {
    "first-window": [0, 3, 7],
    "edge-7-8": [7, 8],
    "four-windows": [1, 9, 18, 27],
    "every-window-two-each": [0, 7, 8, 15, 16, 23, 24, 31],
    "only-high": [24, 31],
    "market-31-alone": [31],
    "gap-two-windows": [2, 26],
    "gap-from-window-1": [9, 30],
    "sixteen-spread": list(range(0, 32, 2)),
    "sixteen-high": list(range(16, 32)),
}


@pytest.mark.parametrize("portfolio", [True, False], ids=["portfolio", "isolated"])
@pytest.mark.parametrize("markets", list(WINDOW_CASES.values()), ids=list(WINDOW_CASES))
def test_r11_window__every_figure_equals_both_references(protocol, h, trader, portfolio, markets):
    positions, marks = _legs(markets)
    w = _plant(
        protocol, h, trader, f"r11w{int(portfolio)}{len(markets)}", portfolio, positions, marks
    )
    s = _assert_all_equal(w)
    assert s.initial > 0 and s.isolated > 0
    # a zero-size position (held bit, size 0) in a window of its own moves nothing
    if 12 not in positions and max(markets) >= 12:
        positions[12] = (0, 0, 0)
        marks[12] = (999 * WAD, 0)
        w = _plant(protocol, h, trader, f"r11z{int(portfolio)}", portfolio, positions, marks)
        _assert_all_equal(w)


def _twap_code(base: int, step: int) -> bytes:
    """Runtime code answering any call with base + step * calldata[4:36] (twap(m))."""
    return (
        bytes([0x60, 0x04, 0x35])  # PUSH1 4 CALLDATALOAD
        + b"\x7f"
        + step.to_bytes(32, "big")
        + b"\x02"  # MUL
        + b"\x7f"
        + base.to_bytes(32, "big")
        + b"\x01"  # ADD
        + bytes([0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xF3])  # MSTORE, RETURN 32
    )


@pytest.mark.parametrize("portfolio", [True, False], ids=["portfolio", "isolated"])
@pytest.mark.parametrize(
    "markets", [[1, 9, 18, 27], [24, 31], [0, 31], list(range(0, 32, 2))], ids=str
)
def test_r11_window__use_twap_wide(protocol, h, trader, portfolio, markets):
    """margin_at_twap on wide accounts: every price comes from the oracle's twap(m)."""
    positions, marks = _legs(markets)
    w = _plant(protocol, h, trader, f"r11t{int(portfolio)}", portfolio, positions, marks)
    ch = w.p.clearinghouse
    base, step = 1_234 * WAD + 7, 53 * WAD + 11
    prices = {m: base + step * m for m in range(MAX_MARKETS)}
    mirror = _mirror(w, prices)  # before the oracle's code is replaced (the load reads it)
    ape.chain.provider.make_request(
        "anvil_setCode", [str(ch.ORACLE()), "0x" + _twap_code(base, step).hex()]
    )
    chain = tuple(int(x) for x in ch.margin_at_twap(w.acct))
    assert chain == _independent(w, prices)
    assert chain == mirror
    assert chain != tuple(int(x) for x in ch.account_margin(w.acct))


# --- (2) scenario groups -------------------------------------------------------------------


def _rising(m: int, k: int) -> int:
    # a long's loss grows with k: the last scenario counted is the worst; every shock is
    # below imr_min (300 bp and up), so the scenario loss, not isolated, binds
    return -(100 + m + 10 * k)


@pytest.mark.parametrize("n_s", [0, 1, 4, 5, 8, 9, 12, 13, 16])
def test_r11_groups__last_counted_scenario_is_the_worst(protocol, h, trader, n_s):
    markets = [2, 10, 29]
    positions, marks = {}, {}
    for m in markets:
        price = (500 + m) * WAD
        positions[m] = (40 * WAD * WAD // price, 1_000 * WAD, 0)
        marks[m] = (price, 0)
    w = _plant(protocol, h, trader, f"r11g{n_s}", True, positions, marks, n_s, _rising, floor_bps=0)
    s = _assert_all_equal(w)
    assert s.initial < s.isolated or n_s == 0  # the worst scenario sets the requirement
    if n_s < MAX_SCENARIOS:
        # one scenario more would be worse still: the count is what bounds the worst
        w.n_s = n_s + 1
        assert _independent(w)[1] > s.initial
    if n_s > 0:
        # and one less would be milder: the last counted scenario is in the figure
        w.n_s = n_s - 1
        assert _independent(w)[1] < s.initial


@pytest.mark.parametrize("n_s", [1, 5, 9, 13, 16])
def test_r11_groups__all_losses_negative_worst_is_zero(protocol, h, trader, n_s):
    positions, marks = {}, {}
    for m in (1, 12, 20):
        price = 800 * WAD
        positions[m] = (5 * WAD, 0, 0)
        marks[m] = (price, 0)
    w = _plant(
        protocol, h, trader, f"r11n{n_s}", True, positions, marks, n_s=n_s, shock=lambda m, k: 900
    )
    s = _assert_all_equal(w)
    # worst 0 (no scenario loses): the portfolio requirement is the floor plus the add-on
    gross = 3 * 5 * WAD * 800 * WAD
    addon = sum(
        _ceil(_ceil(5 * 800 * WAD, 1) * ((_w0(m) >> 16) & 0xFFFF) * 5 * WAD, BPS * (_w0(m) >> 32))
        for m in positions
    )
    assert s.initial == min(s.isolated, _ceil(gross * w.floor_bps, WAD * BPS) + addon)


@pytest.mark.parametrize("n_s", [4, 16])
def test_r11_groups__equal_losses(protocol, h, trader, n_s):
    positions = {m: (-3 * WAD, 0, 0) for m in (0, 8, 31)}
    marks = {m: (2_000 * WAD, 0) for m in positions}
    w = _plant(protocol, h, trader, f"r11e{n_s}", True, positions, marks, n_s, lambda m, k: 150, 0)
    s = _assert_all_equal(w)
    assert s.initial < s.isolated  # the (equal) scenario loss sets the requirement


# --- (3) extreme magnitudes --------------------------------------------------------------


@pytest.mark.parametrize("portfolio", [True, False], ids=["portfolio", "isolated"])
@pytest.mark.parametrize("sign", [1, -1], ids=["long", "short"])
@pytest.mark.parametrize("delta", [2**63 - 1, -(2**63), 0], ids=["d-max", "d-min", "d-0"])
def test_r11_extreme__sixteen_max_positions_do_not_wrap(
    protocol, h, trader, portfolio, sign, delta
):
    """16 positions of |size| 2**95 - 1 at MAX_PRICE, costs at +-(2**95 - 1), funding
    deltas at the 64-bit ends: the unchecked pnl sum and the isolated sums stay exact."""
    markets = list(range(0, 32, 2))
    positions, marks = {}, {}
    for i, m in enumerate(markets):
        size = sign * MAX_I96 if i % 4 else -sign * MAX_I96
        cost = -sign * MAX_I96 if i % 3 else sign * MAX_I96
        index = (17 + delta) if i % 2 else 17
        positions[m] = (size, cost, 17)
        marks[m] = (MAX_PRICE, index if -(2**71) <= index < 2**71 else 17)
    for w0_of in (_w0, _w0_max):
        w = _plant(
            protocol, h, trader, f"r11x{int(portfolio)}", portfolio, positions, marks, w0_of=w0_of
        )
        _assert_all_equal(w)


def test_r11_extreme__all_same_sign_max(protocol, h, trader):
    """Every term of the pnl sum the same sign and at its largest: 16 longs at MAX_PRICE,
    cost -(2**95 - 1), funding earned at the widest delta."""
    positions = {m: (MAX_I96, -MAX_I96, 0) for m in range(16, 32)}
    marks = {m: (MAX_PRICE, -(2**63)) for m in positions}
    w = _plant(protocol, h, trader, "r11s", True, positions, marks, w0_of=_w0_max)
    s = _assert_all_equal(w)
    assert s.equity > 2**127 and s.isolated > 2**224  # the bounds reached


# --- (4) the override (a reduce-only trade's pre-trade pricing) on a wide account ----------


def _flat(m: int, k: int) -> int:
    # every market loses on a fall in every scenario: a long and a short hedge each other
    return -(150 + 5 * k)


def test_r11_override__wide_account_reduce_and_hedge_close(protocol, h, trader, vault_pool):
    """A portfolio account below initial margin, holding listed markets 0-2 (window 0) and
    planted positions in 9 and 31 (windows 1 and 3): the reduce-only check scans again
    with the override market's pre-trade size. Reducing the unhedged long (market 2, the
    override in window 0, where the account holds nothing past it) lowers the requirement
    and passes; closing the short hedge (market 1) raises it and is refused with the
    margin reason. Both scans run through the window move (a wrong slot would revert in
    extract32 or misjudge one of the two)."""
    del vault_pool
    p = protocol
    ch = p.clearinghouse
    acct = h.funded_account(trader, 5_000, portfolio=True, name="r11o")
    for m, usd in ((0, 2_000), (1, -2_000), (2, 500)):
        size = usd * WAD * WAD // int(p.oracle.latest(m)[0])
        ch.trade(acct, m, size, 2**256 - 1 if size > 0 else 0, sender=trader)
    held = {m: tuple(int(x) for x in ch.position(acct, m)) for m in range(3)}
    now = int(ape.chain.pending_timestamp)
    planted = {9: (WAD, 500 * WAD, 0), 31: (-WAD, -400 * WAD, 0)}
    positions = {**held, **planted}
    marks = {9: (1_000 * WAD, 0), 31: (800 * WAD, 0)}
    w = _plant(p, h, trader, "r11o2", True, positions, marks, 16, _flat, 0, now)
    # the planting opened a second account: plant on the first instead
    w = dataclasses.replace(w, acct=acct)
    hslot = _map(_slot("_header"), acct)
    hdr = _get(ch, hslot)
    bitmap = sum(1 << m for m in positions)
    _set(ch, hslot, (hdr & ~(MASK_32 << 8) & ~(MASK_8 << 48)) | (bitmap << 8) | (5 << 48))
    base = _map(_slot("_pos"), acct)
    for m, (size, cost, snap) in planted.items():
        _set(ch, base + m, (size & MASK_96) | ((cost & MASK_96) << 96) | ((snap & MASK_64) << 192))
    before = pm.MarginScan(*(int(x) for x in ch.account_margin(acct)))
    assert before.initial < before.isolated  # the portfolio figure binds
    # below initial margin: equity at a third of the requirement
    bslot = _map(_map(_slot("_balance"), acct), 0)
    bal = int.from_bytes(bytes(ape.chain.provider.get_storage(ch.address, bslot)), "big")
    bal = bal - 2**256 if bal >= 2**255 else bal
    _set(ch, bslot, bal - before.equity + before.initial // 3)
    under = pm.MarginScan(*(int(x) for x in ch.account_margin(acct)))
    assert under.equity < under.initial
    s2 = held[2][0]
    ch.trade(acct, 2, -s2 // 2, 0, sender=trader)  # reduces: passes
    after = pm.MarginScan(*(int(x) for x in ch.account_margin(acct)))
    assert after.equity < after.initial < under.initial
    s1 = held[1][0]
    with ape.reverts("clearinghouse: below initial margin"):
        ch.trade(acct, 1, -s1, 2**256 - 1, sender=trader)


# --- (5) the lone path must not be taken for an account with another collateral token ------


def test_r11_lone__other_collateral_takes_the_scan(protocol, h, trader, admin, project, vault_pool):
    """An isolated account whose only position is in one market but that also holds a
    non-settlement collateral token is not `_lone_isolated`: its trade is checked by the
    scan, which counts the token (the lone path's equity is the settlement balance only).
    With $5 of settlement and ~$2,700 of WETH, a $200 position passes; the same trade on
    an account holding the $5 alone is refused."""
    del vault_pool
    p = protocol
    ch = p.clearinghouse
    eth = p.market_id("ETH")
    weth = project.MockERC20.deploy("Mock WETH", "WETH", 18, sender=admin)
    p.admin.add_collateral(weth, WAD // 10, eth, 2**256 - 1, sender=admin)
    btc = p.market_id("BTC")
    size = 200 * WAD * WAD // int(p.oracle.latest(btc)[0])
    alone = h.funded_account(trader, 5, name="r11l0")
    with ape.reverts("clearinghouse: below initial margin"):
        ch.trade(alone, btc, size, 2**256 - 1, sender=trader)
    acct = h.funded_account(trader, 5, name="r11l1")
    units = 3 * WAD  # ~$2,700 after the haircut at the ETH mark
    weth.mint(trader, units, sender=trader)
    weth.approve(ch, units, sender=trader)
    p.ops.deposit(acct, weth, units, sender=trader)
    ch.trade(acct, btc, size, 2**256 - 1, sender=trader)
    s = pm.MarginScan(*(int(x) for x in ch.account_margin(acct)))
    assert s.initial > 5 * WAD and s.equity >= s.initial
    assert dataclasses.astuple(s) == dataclasses.astuple(pm.scan(Snapshot.load(p, acct)))
