"""Book diffs: scenarios by name and by position, ratios, rendering."""

from __future__ import annotations

import dataclasses

import pytest
from legacy_risk_book import LEGACY_BOOK
from rich.console import Console

from perpdex.config import MarketRisk
from perpdex.risk.diff import diff_books, ratio_table, scenario_table, summary_line
from perpdex.sdk import riskbook
from perpdex.units import WAD

SYMS = ["BTC", "ETH", "SOL"]


@pytest.fixture
def book():
    """The book published until issue 9 (a fixed book, so the figures below stay put)."""
    return LEGACY_BOOK


def _render(table) -> str:
    c = Console(width=200, record=True)
    c.print(table)
    return c.export_text()


def _edit(book, names=None, shocks=None, **kw):
    return dataclasses.replace(
        book,
        names=tuple(names if names is not None else book.names),
        shocks=tuple(tuple(r) for r in (shocks if shocks is not None else book.shocks)),
        **kw,
    )


def test_identical_books(book):
    d = diff_books(book, book, SYMS)
    assert d.is_empty and not d.shock_changes() and not d.ratios
    assert d.max_positional_shock_change == 0
    assert summary_line(d) == "the books are identical"


def test_changed_added_removed_by_name(book):
    shocks = [list(r) for r in book.shocks]
    shocks[0][2] = -2600  # crypto-crash SOL
    names = list(book.names)
    del shocks[11], names[11]  # drop sol-eth-split
    names.append("sol-squeeze")
    shocks.append([0, 0, 3000])
    new = _edit(book, names, shocks)
    d = diff_books(book, new, SYMS)
    assert d.changed == ("crypto-crash",)
    assert d.added == ("sol-squeeze",)
    assert d.removed == ("sol-eth-split",)
    assert ("crypto-crash", "SOL", -2500, -2600) in d.shock_changes()
    assert ("sol-squeeze", "SOL", None, 3000) in d.shock_changes()
    assert ("sol-eth-split", "ETH", 800, None) in d.shock_changes()
    # by position, slot 11 goes from sol-eth-split (0, 800, -800) to sol-squeeze (0, 0, 3000)
    assert d.max_positional_shock_change == 3800
    assert not d.is_empty
    text = _render(scenario_table(d))
    assert "-2500 → -2600 (-100)" in text and "sol-squeeze" in text


def test_reordering_is_a_move_by_name_and_a_change_by_position(book):
    order = [1, 0, *range(2, book.n_scenarios)]
    new = _edit(book, [book.names[i] for i in order], [book.shocks[i] for i in order])
    by_name = diff_books(book, new, SYMS)
    assert {s.status for s in by_name.scenarios} == {"moved", "unchanged"}
    assert not by_name.is_empty and not by_name.shock_changes()
    assert by_name.max_positional_shock_change == 5000  # crash -> rally in slot 0 (SOL)
    by_pos = diff_books(book, new, SYMS, by="position")
    assert [s.status for s in by_pos.scenarios[:2]] == ["replaced", "replaced"]
    assert by_pos.scenarios[0].label == "crypto-crash → crypto-rally"


def test_ratio_changes(book):
    markets = list(book.markets)
    markets[0] = MarketRisk(900, 1000, 2000 * WAD)
    new = dataclasses.replace(book, floor_bps=150, markets=tuple(markets))
    d = diff_books(book, new, SYMS)
    got = {(r.field, r.old, r.new) for r in d.ratios}
    assert got == {
        ("floor", 200, 150),
        ("BTC imr_min", 1000, 900),
        ("BTC margin_scale", 1000 * WAD, 2000 * WAD),
    }
    assert d.max_ratio_change == 100
    text = _render(ratio_table(d))
    assert "1000 base" in text and "2000 base" in text and "-100" in text


def test_new_market_in_the_book(book):
    bigger = riskbook.RiskBook(
        book.floor_bps,
        book.maintenance_bps,
        (*book.markets, MarketRisk(2000, 1000, 10 * WAD)),
        book.names,
        tuple((*r, -2000 if r[0] < 0 else 2000) for r in book.shocks),
    )
    d = diff_books(book, bigger, [*SYMS, "DOGE"])
    assert ("DOGE imr_min", None, 2000) in {(r.field, r.old, r.new) for r in d.ratios}
    assert all(s.status == "changed" for s in d.scenarios)


def test_bad_match_mode(book):
    with pytest.raises(ValueError, match="position"):
        diff_books(book, book, SYMS, by="colour")
