"""Review 10: outside attacks on the merges of 6a66323 (docs/security.md "Review 10").

Three targets.
(A) The per-market risk word (`state._risk[m]`: the risk book's market word 0 with a
    copy of the pause bit) that `trading._require_can_add_risk` now trusts instead of the
    system word and the book's code. Every governance writer (pause, unpause,
    set_risk_book growing and shrinking the book, add_market) is run in orders that could
    leave the copy behind; after each step the words are compared with the book's code and
    `paused()`, read from raw storage, and a trade is tried: it must be refused while
    paused and in a market the book does not cover. The emergency pause is measured at
    MAX_MARKETS = 32 listed markets (every word written from zero: its worst case).
(B) `OracleRouter._quorum`'s two single-comparison range checks (age and price): a raw
    feed (anvil_setCode) answers with any `updatedAt` and any answer bits, and each edge
    (now, the age limit and one past it, the future up to 2**256 - 1, zero, the price
    bounds and one past each, negative answers through both scalings) is read by a
    recorded `observe`.
(C) The pool and treasury words' writes moved into modules/treasury.vy: a fee sweep,
    an LP round trip and the OI sides are recomputed here from the values before.

A test marked xfail(strict=True) is a finding; every other test is a defended attack.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest

from perpdex.config import MarketRisk, load_risk
from perpdex.constants import MAX_PRICE, WAD
from perpdex.devtools import vyper_frontend
from perpdex.sdk import riskbook

PAUSED_BIT = 1 << 248
HEADER_BYTES = 32
MARKET_BYTES = 64
MAX_MARKETS = 32
MAX_AGE_LIMIT = 2**24 - 1
ANY_PRICE = 2**256 - 1
NEW_USD = 50
PAUSE_GAS_CEILING = 1_000_000  # an emergency pause must fit any block with room to spare


# --- (A) the risk word -------------------------------------------------------------------


@pytest.fixture(scope="module")
def risk_slot() -> int:
    layout = vyper_frontend.layout("contracts/Clearinghouse.vy")["storage_layout"]
    return int(layout["state"]["_risk"]["slot"])


def _word(ch: Any, slot: int, m: int) -> int:
    raw = ape.chain.provider.get_storage(ch.address, slot + m)
    return int.from_bytes(bytes(raw), "big")


def _book_code(ch: Any) -> bytes:
    return bytes(ape.chain.provider.get_code(ch.risk_book()))


def _in_step(ch: Any, slot: int) -> None:
    """Every risk word is the book's word 0 of its market (0 past the book) with the pause
    bit exactly when paused; every slot past max(listed, book) is zero."""
    code = _book_code(ch)
    n_book = int.from_bytes(code[1:33], "big") & 0xFF
    paused = PAUSED_BIT if ch.paused() else 0
    n = max(int(ch.market_count()), n_book)
    for m in range(MAX_MARKETS):
        word = _word(ch, slot, m)
        if m >= n:
            assert word == 0, f"slot {m} past every listed and book market holds {word:#x}"
            continue
        off = 1 + HEADER_BYTES + MARKET_BYTES * m
        w0 = int.from_bytes(code[off : off + 32], "big") if m < n_book else 0
        assert word == w0 | paused, f"market {m}: risk word {word:#x}, book/pause {w0 | paused:#x}"


def _book(symbols: list[str], with_new: bool) -> bytes:
    risk = load_risk()
    if with_new:
        risk = risk.with_market(
            "NEW",
            MarketRisk(imr_min_bps=1_500, imr_slope_bps=1_000, margin_scale=10**6 * WAD),
            {"crypto-crash": -2_000, "crypto-rally": 2_000},
        )
        symbols = [*symbols, "NEW"]
    return bytes(riskbook.encode(riskbook.from_config(risk, symbols)))


class RiskWorld:
    """The deployment with a 4th oracle market ready to list, books with and without it,
    a funded trader and LP money in the vault."""

    def __init__(self, protocol: Any, h: Any, project: Any, admin: Any, trader: Any) -> None:
        self.p, self.ch, self.gov, self.admin, self.trader = (
            protocol,
            protocol.clearinghouse,
            protocol.admin,
            admin,
            trader,
        )
        if int(self.ch.risk_book_delay()) != 0:
            self.gov.set_risk_book_delay(0, sender=admin)
        feeds = [project.MockAggregator.deploy(8, NEW_USD * 10**8, sender=admin) for _ in "ab"]
        tx = protocol.oracle.add_market(
            feeds, [3_600] * 2, WAD, 10_000 * WAD, 200, 2, 600, sender=admin
        )
        self.new = int(tx.return_value)
        assert self.new == int(self.ch.market_count())
        limits = (int(protocol.ops.max_pnl_factor()), int(protocol.ops.adl_target_factor()))
        protocol.risk.set_vault_limits(2 * WAD, *limits, sender=admin)
        self.params = protocol.system.market("SOL").params()
        self.small = _book(list(protocol.symbols), with_new=False)
        self.big = _book(list(protocol.symbols), with_new=True)
        self.acct = h.funded_account(trader, 10_000, name="r10")

    def step(self, op: str) -> None:
        if op == "pause":
            self.gov.pause(sender=self.admin)
        elif op == "unpause":
            self.gov.unpause(sender=self.admin)
        elif op == "grow":
            self.gov.set_risk_book(self.big, sender=self.admin)
        elif op == "shrink":
            self.gov.set_risk_book(self.small, sender=self.admin)
        elif op == "list":
            self.gov.add_market(self.params, sender=self.admin)
        else:
            raise ValueError(f"unknown step {op!r}: use pause/unpause/grow/shrink/list")

    def expected_refusal(self, m: int) -> str | None:
        """What a trade adding risk in market `m` must meet, from the contract's own
        `paused()` and the book's code (not from the risk word under test)."""
        if self.ch.paused():
            return "clearinghouse: paused"
        code = _book_code(self.ch)
        if m >= int.from_bytes(code[1:33], "big") & 0xFF:
            return "clearinghouse: market not in risk book"
        return None

    def try_trade(self, m: int) -> None:
        size = 3 * WAD if m == self.new else WAD // 100
        refusal = self.expected_refusal(m)
        if refusal is None:
            self.ch.trade(self.acct, m, size, ANY_PRICE, sender=self.trader)
            self.ch.trade(self.acct, m, -size, 0, sender=self.trader)  # back to flat
        else:
            with ape.reverts(refusal):
                self.ch.trade(self.acct, m, size, ANY_PRICE, sender=self.trader)


@pytest.fixture
def rw(actors, protocol, h, project, admin, trader, vault_pool) -> RiskWorld:
    del actors, vault_pool
    return RiskWorld(protocol, h, project, admin, trader)


SEQUENCES = [
    # the book grows and shrinks under a pause; the market listed after, past the book
    ["pause", "grow", "shrink", "unpause", "list"],
    ["grow", "pause", "shrink", "list", "unpause", "grow"],
    # listed while paused and not in the book, then covered while still paused
    ["pause", "list", "unpause", "pause", "grow", "unpause"],
    # covered before listing, listed while paused, pause/unpause twice
    ["grow", "pause", "list", "unpause", "pause", "unpause"],
    # listed past the book (allowed: add_market does not read the book), then covered
    ["list", "pause", "unpause", "grow", "pause", "unpause"],
]


@pytest.mark.parametrize("ops", SEQUENCES, ids=["-".join(s) for s in SEQUENCES])
def test_r10_risk__copy_in_step_through_every_writer_order(rw, risk_slot, ops):
    _in_step(rw.ch, risk_slot)
    for op in ops:
        rw.step(op)
        _in_step(rw.ch, risk_slot)
        rw.try_trade(0)
        if int(rw.ch.market_count()) > rw.new:
            rw.try_trade(rw.new)


def test_r10_risk__book_cannot_shrink_below_a_listed_market(rw, risk_slot):
    """The clearing of slots past a shrunk book is safe only because no listed market is
    there: the book must still cover every listed market."""
    rw.step("grow")
    rw.step("list")
    with ape.reverts("clearinghouse: book must cover every market"):
        rw.step("shrink")
    _in_step(rw.ch, risk_slot)


def test_r10_risk__only_governance_roles_write_the_copy(rw, risk_slot, stranger):
    """No one else reaches a writer: pause needs the guardian, unpause the admin, the
    book and listing the risk role."""
    for call, args in (
        (rw.gov.pause, ()),
        (rw.gov.unpause, ()),
        (rw.gov.set_risk_book, (rw.big,)),
        (rw.gov.add_market, (rw.params,)),
    ):
        with ape.reverts():
            call(*args, sender=stranger)
    _in_step(rw.ch, risk_slot)


def test_r10_risk__emergency_pause_gas_at_max_markets(rw, risk_slot, project):
    """Worst case for `_write_risk_pause`: 32 markets listed, the 29 past the 3-market book with
    zero words (each pause is a 0 -> nonzero store). It must stay far below a block."""
    sol = rw.p.oracle.sources(rw.p.market_id("SOL"))
    params = dict(rw.params)
    params["max_vault_exposure"] = 10**16  # 1% each: room under the total cap
    rw.gov.add_market(params, sender=rw.admin)
    while int(rw.ch.market_count()) < MAX_MARKETS:
        rw.p.oracle.add_market(
            sol, [3_600] * len(sol), WAD, 10**6 * WAD, 200, 2, 600, sender=rw.admin
        )
        rw.gov.add_market(params, sender=rw.admin)
    paused = rw.gov.pause(sender=rw.admin)
    _in_step(rw.ch, risk_slot)
    unpaused = rw.gov.unpause(sender=rw.admin)
    _in_step(rw.ch, risk_slot)
    print(f"R10 pause gas at 32 markets: {paused.gas_used}, unpause: {unpaused.gas_used}")
    assert paused.gas_used < PAUSE_GAS_CEILING
    assert unpaused.gas_used < PAUSE_GAS_CEILING
    # the last market, past the book, refuses risk whatever the pause did
    with ape.reverts("clearinghouse: market not in risk book"):
        rw.ch.trade(rw.acct, MAX_MARKETS - 1, WAD, ANY_PRICE, sender=rw.trader)


# --- (B) the router's single-comparison age and price checks -------------------------------

MAX_AGE = 100
U256 = 2**256


def _raw_feed_code(answer: int, updated_at: int) -> bytes:
    """EVM code answering every call with latestRoundData's five words: round 1, the
    answer's two's-complement bits, startedAt = updatedAt = `updated_at` (any uint256)."""

    def store(value: int, at: int) -> bytes:
        return b"\x7f" + (value % U256).to_bytes(32, "big") + bytes([0x60, at, 0x52])

    return (
        store(1, 0x00)
        + store(answer, 0x20)
        + store(updated_at, 0x40)
        + store(updated_at, 0x60)
        + store(1, 0x80)
        + bytes([0x60, 0xA0, 0x60, 0x00, 0xF3])
    )


class RouterWorld:
    """A fresh OracleRouter with one market of two feeds of `decimals`; both feeds are
    then replaced by raw code answering alike, so the market has quorum exactly when
    that one answer passes every rule of a valid source."""

    def __init__(
        self, project: Any, admin: Any, decimals: int, lo: int, hi: int, max_age: int
    ) -> None:
        self.admin = admin
        self.router = project.OracleRouter.deploy(sender=admin)
        self.feeds = [project.MockAggregator.deploy(decimals, 1, sender=admin) for _ in "ab"]
        tx = self.router.add_market(self.feeds, [max_age] * 2, lo, hi, 10_000, 2, 600, sender=admin)
        self.m = int(tx.return_value)
        self.degraded = int(self.router.FLAG_DEGRADED())

    def read(
        self, answer: int, age: int | None = None, updated_at: int | None = None
    ) -> int | None:
        """The price `observe` records at a block of time T when both feeds answer `answer`
        updated at T - `age` (or at `updated_at`); None without quorum."""
        t = int(ape.chain.pending_timestamp) + 10
        at = updated_at if updated_at is not None else t - (age or 0)
        for f in self.feeds:
            ape.chain.provider.make_request(
                "anvil_setCode", [f.address, "0x" + _raw_feed_code(answer, at).hex()]
            )
        ape.chain.pending_timestamp = t
        tx = self.router.observe(self.m, sender=self.admin)
        assert int(tx.timestamp) == t
        (ev,) = self.router.PriceObserved.from_receipt(tx)
        if int(ev.flags) & self.degraded:
            return None
        return int(ev.price)


@pytest.fixture
def router18(actors, project, admin) -> RouterWorld:
    del actors
    return RouterWorld(project, admin, 18, 1_000 * WAD, 3_000 * WAD, MAX_AGE)


AGE_CASES = [
    ("now", {"age": 0}, True),
    ("max_age", {"age": MAX_AGE}, True),
    ("max_age+1", {"age": MAX_AGE + 1}, False),
    ("future+1", {"age": -1}, False),
    ("future+max_age", {"age": -MAX_AGE}, False),
    ("2**64", {"updated_at": 2**64}, False),
    ("2**255", {"updated_at": 2**255}, False),
    ("2**256-1", {"updated_at": U256 - 1}, False),
    ("zero", {"updated_at": 0}, False),
]


@pytest.mark.parametrize("case", AGE_CASES, ids=[c[0] for c in AGE_CASES])
def test_r10_oracle__age_edges(router18, case):
    _, when, valid = case
    price = router18.read(2_000 * WAD, **when)
    assert price == (2_000 * WAD if valid else None)


def test_r10_oracle__widest_max_age(actors, project, admin):
    del actors
    w = RouterWorld(project, admin, 18, 1_000 * WAD, 3_000 * WAD, MAX_AGE_LIMIT)
    assert w.read(2_000 * WAD, age=MAX_AGE_LIMIT) == 2_000 * WAD
    assert w.read(2_000 * WAD, age=MAX_AGE_LIMIT + 1) is None
    assert w.read(2_000 * WAD, age=-1) is None
    assert w.read(2_000 * WAD, updated_at=U256 - 1) is None


PRICE_CASES = [
    ("min", 1_000 * WAD, 1_000 * WAD),
    ("max", 3_000 * WAD, 3_000 * WAD),
    ("min-1", 1_000 * WAD - 1, None),
    ("max+1", 3_000 * WAD + 1, None),
    ("zero", 0, None),
    ("minus-one", -1, None),
    ("minus-min", -1_000 * WAD, None),
    ("int256-min", -(2**255), None),
    ("above-MAX_PRICE", MAX_PRICE + 1, None),
]


@pytest.mark.parametrize("case", PRICE_CASES, ids=[c[0] for c in PRICE_CASES])
def test_r10_oracle__price_edges_multiply_branch(router18, case):
    _, answer, expect = case
    assert router18.read(answer) == expect


@pytest.mark.parametrize(
    "answer,expect",
    [
        (1_000 * WAD * 100, 1_000 * WAD),
        (1_000 * WAD * 100 - 1, None),  # floors to min - 1
        (3_000 * WAD * 100 + 99, 3_000 * WAD),  # floors to max
        (3_000 * WAD * 100 + 100, None),
        (-1, None),
        (-(2**255), None),
        (-(1_000 * WAD * 100), None),
    ],
)
def test_r10_oracle__price_edges_divide_branch(actors, project, admin, answer, expect):
    """20-decimal feeds: the answer is divided by 100, negative bits stay far above max."""
    del actors
    w = RouterWorld(project, admin, 20, 1_000 * WAD, 3_000 * WAD, MAX_AGE)
    assert w.read(answer) == expect


def test_r10_oracle__widest_span(actors, project, admin):
    """min_price = 1 wei, max_price = MAX_PRICE: both ends pass, one past each does not;
    min_price = 0 and min >= max cannot be configured (the span is never wrapped)."""
    del actors
    w = RouterWorld(project, admin, 18, 1, MAX_PRICE, MAX_AGE)
    assert w.read(1) == 1
    assert w.read(MAX_PRICE) == MAX_PRICE
    assert w.read(MAX_PRICE + 1) is None
    assert w.read(0) is None
    for lo, hi in ((0, 3_000 * WAD), (2_000 * WAD, 2_000 * WAD), (3_000 * WAD, 1_000 * WAD)):
        with ape.reverts("oracle: bad price bounds"):
            w.router.set_params(w.m, lo, hi, 10_000, 2, 600, sender=admin)
    with ape.reverts("oracle: max price too large"):
        w.router.set_params(w.m, 1, MAX_PRICE + 1, 10_000, 2, 600, sender=admin)


# --- (C) the pool and treasury words through modules/treasury.vy ---------------------------

BPS = 10_000
MASK_128 = 2**128 - 1


def _slot(name: str) -> int:
    layout = vyper_frontend.layout("contracts/Clearinghouse.vy")["storage_layout"]
    return int(layout["state"][name]["slot"])


def _i128(x: int) -> int:
    x &= MASK_128
    return x - 2**128 if x >= 2**127 else x


def _pool(ch: Any) -> tuple[int, int]:
    w = _word(ch, _slot("_pool"), 0)
    return _i128(w), w >> 128


def _treasury(ch: Any) -> tuple[int, int]:
    w = _word(ch, _slot("_treasury"), 0)
    return w & MASK_128, w >> 128


def _oi(ch: Any, m: int) -> tuple[int, int]:
    w = _word(ch, _slot("_oi"), m)
    return w & MASK_128, w >> 128


def test_r10_treasury__fill_sweep_and_oi_as_before(actors, protocol, h, trader, admin, vault_pool):
    """Each fill moves the pool word by exactly its Fill event (cash -= realised PnL less
    funding paid, pending fees += fee) and the OI sides by its size; a sweep splits the
    pending fees at the shares, rounding down for the treasury, the rest to the pool."""
    del actors, vault_pool
    ch = protocol.clearinghouse
    btc = protocol.market_id("BTC")
    acct = h.funded_account(trader, 10_000, name="r10c")
    for size in (WAD // 100, -(WAD // 40), WAD // 40 - WAD // 100):
        cash0, fees0 = _pool(ch)
        long0, short0 = _oi(ch, btc)
        old = int(ch.position(acct, btc)[0])
        tx = ch.trade(acct, btc, size, ANY_PRICE if size > 0 else 0, sender=trader)
        (fill,) = ch.Fill.from_receipt(tx)
        cash1, fees1 = _pool(ch)
        assert cash1 == cash0 - (int(fill.realized_pnl) - int(fill.funding_paid))
        assert fees1 == fees0 + int(fill.fee)
        new = int(fill.size)
        assert new == old + size
        assert _oi(ch, btc) == (
            long0 - max(old, 0) + max(new, 0),
            short0 - max(-old, 0) + max(-new, 0),
        )
    sysp = protocol.ops.system_params()
    ib, pb = int(sysp.insurance_bps), int(sysp.protocol_bps)
    cash0, pending = _pool(ch)
    ins0, prot0 = _treasury(ch)
    assert pending > 0
    protocol.admin.set_fee_split(ib, pb, sender=admin)  # sweeps at the same shares
    to_ins, to_prot = pending * ib // BPS, pending * pb // BPS
    assert _treasury(ch) == (ins0 + to_ins, prot0 + to_prot)
    assert _pool(ch) == (cash0 + pending - to_ins - to_prot, 0)
