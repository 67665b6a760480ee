"""set_risk_book: risk role; coverage, ratio and step checks against the current book; event.

Books are built with the SDK encoder from config/risk.yaml and changed one value at a time.
"""

from dataclasses import replace

import ape
import pytest
from ape import chain

from perpdex.config import MarketRisk, load_risk
from perpdex.sdk import riskbook

from .helpers import BTC, ETH, MISSING_ROLE, expect_event

pytestmark = pytest.mark.usefixtures("granted_roles")


@pytest.fixture
def book(protocol):
    """The deployed book (decoded from config), to change and encode."""
    return riskbook.from_config(load_risk(), protocol.symbols)


def _shocks(book, k, m, value):
    rows = [list(r) for r in book.shocks]
    rows[k][m] = value
    return replace(book, shocks=tuple(tuple(r) for r in rows))


def _market(book, m, **changes):
    markets = list(book.markets)
    markets[m] = replace(markets[m], **changes)
    return replace(book, markets=tuple(markets))


def _header(data, **fields):
    """Rewrites header fields (n_markets, n_scenarios, floor_bps, mmr_bps) of encoded data."""
    h = int.from_bytes(data[:32], "big")
    shifts = {
        "n_markets": (0, 0xFF),
        "n_scenarios": (8, 0xFF),
        "floor_bps": (16, 0xFFFF),
        "mmr_bps": (32, 0xFFFF),
    }
    for name, value in fields.items():
        shift, mask = shifts[name]
        h = (h & ~(mask << shift)) | (value << shift)
    return h.to_bytes(32, "big") + data[32:]


def _scenario(book, k):
    return book.names.index(k) if isinstance(k, str) else k


def test_set_risk_book__risk_role(ch, gov, book, risk_manager):
    old = ch.risk_book()
    version = ch.risk_book_version()
    new_book = replace(book, floor_bps=book.floor_bps + 50)
    data = riskbook.encode(new_book)
    tx = gov.set_risk_book(data, sender=risk_manager)
    new = ch.risk_book()
    assert new != old
    assert ch.risk_book_version() == version + 1
    code = bytes(chain.provider.get_code(new))
    assert code == b"\x00" + data
    assert riskbook.decode(code[1:]) == new_book
    expect_event(
        tx,
        gov.RiskBookUpdated,
        ch,
        old_book=old,
        new_book=new,
        version=version + 1,
        n_markets=len(book.markets),
        n_scenarios=book.n_scenarios,
    )


def test_set_risk_book__changes_requirements(ch, gov, h, book, trader, admin, vault_cash):
    acct = h.funded_account(trader, 10_000)
    h.trade(trader, acct, "BTC", "0.05")
    before = ch.margin_requirement(acct)[0]
    gov.set_risk_book(riskbook.encode(_market(book, BTC, imr_min_bps=1_200)), sender=admin)
    after = ch.margin_requirement(acct)[0]
    assert after > before


def test_set_risk_book__more_markets_than_listed(ch, gov, book, admin):
    extra = replace(
        book,
        markets=(*book.markets, MarketRisk(1_000, 0, 10**18)),
        shocks=tuple((*row, -1_000 if k == 0 else 1_000) for k, row in enumerate(book.shocks)),
    )
    gov.set_risk_book(riskbook.encode(extra), sender=admin)


@pytest.mark.parametrize("who", ["stranger", "guardian", "trader"])
def test_set_risk_book__without_risk_role__reverts(ch, gov, book, request, who):
    old = ch.risk_book()
    with ape.reverts(MISSING_ROLE):
        gov.set_risk_book(riskbook.encode(book), sender=request.getfixturevalue(who))
    assert ch.risk_book() == old


@pytest.mark.parametrize("n", [0, 17])
def test_set_risk_book__bad_scenario_count__reverts(gov, book, admin, n):
    with ape.reverts("clearinghouse: bad scenario count"):
        gov.set_risk_book(_header(riskbook.encode(book), n_scenarios=n), sender=admin)


def test_set_risk_book__fewer_markets_than_listed__reverts(gov, book, admin):
    short = replace(book, markets=book.markets[:2], shocks=tuple(r[:2] for r in book.shocks))
    with ape.reverts("clearinghouse: book must cover every market"):
        gov.set_risk_book(riskbook.encode(short), sender=admin)


def test_set_risk_book__more_than_32_markets__reverts(gov, book, admin):
    with ape.reverts("clearinghouse: book must cover every market"):
        gov.set_risk_book(_header(riskbook.encode(book), n_markets=33), sender=admin)


@pytest.mark.parametrize("cut", [1, 32, riskbook.BOOK_BYTES - 32])
def test_set_risk_book__short_data__reverts(gov, book, admin, cut):
    data = riskbook.encode(book)[:-cut]
    with ape.reverts("clearinghouse: bad book length"):
        gov.set_risk_book(data, sender=admin)


def test_set_risk_book__data_above_max_size__reverts(ch, gov, book, admin):
    # longer than the Bytes[MAX_BOOK_BYTES] argument: refused by the ABI decoder, no reason
    old = ch.risk_book()
    with ape.reverts():
        gov.set_risk_book(riskbook.encode(book) + b"\x00", sender=admin)
    assert ch.risk_book() == old


@pytest.mark.parametrize("mmr", [0, 10_001])
def test_set_risk_book__bad_maintenance_ratio__reverts(gov, book, admin, mmr):
    with ape.reverts("clearinghouse: bad maintenance ratio"):
        gov.set_risk_book(riskbook.encode(replace(book, maintenance_bps=mmr)), sender=admin)


@pytest.mark.parametrize("field", ["floor_bps", "maintenance_bps"])
def test_set_risk_book__header_ratio_step__reverts(gov, book, admin, field):
    with ape.reverts("clearinghouse: ratio change above step limit"):
        gov.set_risk_book(
            riskbook.encode(replace(book, **{field: getattr(book, field) + 201})), sender=admin
        )


@pytest.mark.parametrize(
    "field,value", [("imr_min_bps", 1_201), ("imr_min_bps", 799), ("imr_slope_bps", 1_201)]
)
def test_set_risk_book__market_ratio_step__reverts(gov, book, admin, field, value):
    # BTC: imr_min 1,000 bp, imr_slope 1,000 bp; the step limit is 200 bp
    bad = _market(book, BTC, **{field: value})
    with ape.reverts("clearinghouse: ratio change above step limit"):
        gov.set_risk_book(riskbook.encode(bad), sender=admin)


def test_set_risk_book__ratio_step_at_limit(ch, gov, book, admin):
    gov.set_risk_book(riskbook.encode(_market(book, BTC, imr_min_bps=1_200)), sender=admin)


@pytest.mark.parametrize("imr", [0, 10_001])
def test_set_risk_book__bad_initial_margin_ratio__reverts(gov, book, admin, imr):
    with ape.reverts("clearinghouse: bad initial margin ratio"):
        gov.set_risk_book(riskbook.encode(_market(book, ETH, imr_min_bps=imr)), sender=admin)


def test_set_risk_book__zero_margin_scale__reverts(gov, book, admin):
    with ape.reverts("clearinghouse: zero margin scale"):
        gov.set_risk_book(riskbook.encode(_market(book, ETH, margin_scale=0)), sender=admin)


def test_set_risk_book__floor_above_initial_margin__reverts(ch, gov, book, admin):
    # floor 200 bp > BTC imr_min 150 bp; only checked per market, before the step check
    gov.set_risk_book_limits(1_000, 10_000, sender=admin)
    with ape.reverts("clearinghouse: floor above initial margin"):
        gov.set_risk_book(riskbook.encode(_market(book, BTC, imr_min_bps=150)), sender=admin)


def test_set_risk_book__shock_below_minus_100pct__reverts(gov, book, admin):
    with ape.reverts("clearinghouse: shock below -100%"):
        gov.set_risk_book(riskbook.encode(_shocks(book, 0, BTC, -10_001)), sender=admin)


def test_set_risk_book__shock_of_minus_100pct(ch, gov, book, admin):
    gov.set_risk_book_limits(10_000, 200, sender=admin)
    gov.set_risk_book(riskbook.encode(_shocks(book, 0, BTC, -10_000)), sender=admin)


def _clip_btc(book, lo, hi):
    """Every BTC shock clipped into [lo, hi]."""
    rows = [list(r) for r in book.shocks]
    for r in rows:
        r[BTC] = max(lo, min(hi, r[BTC]))
    return replace(book, shocks=tuple(tuple(r) for r in rows))


def test_set_risk_book__scenarios_miss_initial_margin_down__reverts(gov, book, admin):
    # BTC's imr_min is 1,000: no scenario may then move it down by more than 900
    bad = _clip_btc(book, -900, 10_000)
    with ape.reverts("clearinghouse: scenarios must cover initial margin"):
        gov.set_risk_book(riskbook.encode(bad), sender=admin)


def test_set_risk_book__scenarios_miss_initial_margin_up__reverts(gov, book, admin):
    bad = _clip_btc(book, -10_000, 999)
    with ape.reverts("clearinghouse: scenarios must cover initial margin"):
        gov.set_risk_book(riskbook.encode(bad), sender=admin)


def test_set_risk_book__no_equal_move__reverts(gov, book, admin):
    # BTC alone falls further than in the crash: no scenario holds every market's
    # largest drop at once
    k = _scenario(book, "btc-down")
    bad = _shocks(book, k, BTC, min(r[BTC] for r in book.shocks) - 1)
    with ape.reverts("clearinghouse: no scenario moves every market by its largest shock"):
        gov.set_risk_book(riskbook.encode(bad), sender=admin)


def test_set_risk_book__shock_step__reverts(gov, book, admin):
    # ETH's crypto-crash shock 1,001 bp further down: above the step limit 1,000
    k = _scenario(book, "crypto-crash")
    bad = _shocks(book, k, ETH, book.shocks[k][ETH] - 1_001)
    with ape.reverts("clearinghouse: shock change above step limit"):
        gov.set_risk_book(riskbook.encode(bad), sender=admin)


def test_set_risk_book__dropped_scenario_counts_as_a_step__reverts(gov, book, admin):
    # dropping crypto-crash moves its shocks (-1,500/-2,000/-2,500) to 0: above the step
    keep = [k for k in range(book.n_scenarios) if book.names[k] != "crypto-crash"]
    fewer = replace(
        book, names=tuple(book.names[k] for k in keep), shocks=tuple(book.shocks[k] for k in keep)
    )
    with ape.reverts("clearinghouse: shock change above step limit"):
        gov.set_risk_book(riskbook.encode(fewer), sender=admin)


def test_set_risk_book__limits_apply(ch, gov, book, admin):
    gov.set_risk_book_limits(100, 200, sender=admin)
    crash = book.shocks[0][BTC]  # scenario 0 is the crash: BTC further down keeps it extreme
    with ape.reverts("clearinghouse: shock change above step limit"):
        gov.set_risk_book(riskbook.encode(_shocks(book, 0, BTC, crash - 101)), sender=admin)
    gov.set_risk_book(riskbook.encode(_shocks(book, 0, BTC, crash - 100)), sender=admin)


def test_set_risk_book__unlisted_slot_not_empty__reverts(ch, gov, book, admin):
    # a trade reads only its market's word 0 to know whether the book lists the market:
    # the slots past n_markets must stay empty
    data = bytearray(riskbook.encode(book))
    n = len(book.markets)
    at = 32 + 64 * n
    data[at : at + 32] = data[32:64]  # market 0's word 0 in the first unlisted slot
    old = ch.risk_book()
    with ape.reverts("clearinghouse: unlisted book slot not empty"):
        gov.set_risk_book(bytes(data), sender=admin)
    assert ch.risk_book() == old
