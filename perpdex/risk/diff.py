"""Differences between two risk books, as data and as rich tables.

Scenarios are matched by name (the Nth scenario of a name with the Nth of the same name),
so a reordered book shows as unchanged scenarios that moved; ratios are matched by market
position. The contract compares shocks by *position*, which is what bounds a governance
update: `BookDiff.max_positional_shock_change` reports that figure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from perpdex.constants import MAX_SCENARIOS
from perpdex.sdk.riskbook import RiskBook
from perpdex.units import from_wad


@dataclass(frozen=True)
class ScenarioChange:
    """One scenario (by name) in either book; shocks None where the book lacks it."""

    name: str
    old_index: int | None
    new_index: int | None
    old: tuple[int, ...] | None  # per market (markets missing from a book read as 0)
    new: tuple[int, ...] | None
    old_name: str | None = None  # differs from `name` when matched by position

    @property
    def status(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        if self.old_name is not None and self.old_name != self.name:
            return "replaced"
        if self.old != self.new:
            return "changed"
        return "moved" if self.old_index != self.new_index else "unchanged"

    @property
    def label(self) -> str:
        if self.status == "replaced":
            return f"{self.old_name} → {self.name}"
        return self.name

    @property
    def max_change(self) -> int:
        a = self.old or (0,) * len(self.new or ())
        b = self.new or (0,) * len(a)
        return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0)


@dataclass(frozen=True)
class RatioChange:
    field: str  # "floor", "maintenance", "BTC imr_min", ...
    old: int | None
    new: int | None
    unit: str = "bp"  # or "base": a size in WAD base units

    def fmt(self, value: int | None) -> str:
        if value is None:
            return "-"
        if self.unit == "base":
            return f"{format(from_wad(value).normalize(), 'f')} base"
        return f"{value} bp"

    @property
    def change(self) -> str:
        if self.old is None or self.new is None:
            return ""
        delta = self.new - self.old
        if self.unit == "base":
            return format(from_wad(delta).normalize(), "+f")
        return f"{delta:+d}"


@dataclass(frozen=True)
class BookDiff:
    symbols: tuple[str, ...]
    scenarios: tuple[ScenarioChange, ...]  # new-book order, then removed ones
    ratios: tuple[RatioChange, ...]  # only those that differ
    max_positional_shock_change: int
    max_ratio_change: int

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios if s.status == "added")

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios if s.status == "removed")

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios if s.status == "changed")

    @property
    def is_empty(self) -> bool:
        return not self.ratios and all(s.status == "unchanged" for s in self.scenarios)

    def shock_changes(self) -> list[tuple[str, str, int | None, int | None]]:
        """(scenario, market, old bp, new bp) for every shock that differs."""
        out = []
        for s in self.scenarios:
            for m, sym in enumerate(self.symbols):
                a = None if s.old is None else s.old[m]
                b = None if s.new is None else s.new[m]
                if a != b:
                    out.append((s.name, sym, a, b))
        return out


def _row(book: RiskBook, k: int, n_m: int) -> tuple[int, ...]:
    row = book.shocks[k]
    return tuple(row[m] if m < len(row) else 0 for m in range(n_m))


def diff_books(old: RiskBook, new: RiskBook, symbols: Sequence[str], by: str = "name") -> BookDiff:
    """What changes when `new` replaces `old`. `symbols` names the markets in order;
    scenarios are matched `by` "name" or by "position" (as the contract compares them)."""
    syms = tuple(symbols)
    n_m = max(len(old.markets), len(new.markets))
    if len(syms) < n_m:
        syms = syms + tuple(f"market{m}" for m in range(len(syms), n_m))
    syms = syms[:n_m]

    def keyed(book: RiskBook) -> dict[tuple[str, int], int]:
        seen: Counter[str] = Counter()
        out = {}
        for k, name in enumerate(book.names):
            out[(name, seen[name])] = k
            seen[name] += 1
        return out

    scenarios = []
    if by == "position":
        for k in range(max(old.n_scenarios, new.n_scenarios)):
            a = k if k < old.n_scenarios else None
            b = k if k < new.n_scenarios else None
            scenarios.append(
                ScenarioChange(
                    name=new.names[k] if b is not None else old.names[k],
                    old_index=a,
                    new_index=b,
                    old=None if a is None else _row(old, k, n_m),
                    new=None if b is None else _row(new, k, n_m),
                    old_name=None if a is None else old.names[k],
                )
            )
    elif by == "name":
        old_keys, new_keys = keyed(old), keyed(new)
        for key, k in new_keys.items():
            j = old_keys.get(key)
            scenarios.append(
                ScenarioChange(
                    name=key[0],
                    old_index=j,
                    new_index=k,
                    old=None if j is None else _row(old, j, n_m),
                    new=_row(new, k, n_m),
                    old_name=None if j is None else key[0],
                )
            )
        for key, j in old_keys.items():
            if key not in new_keys:
                scenarios.append(
                    ScenarioChange(key[0], j, None, _row(old, j, n_m), None, old_name=key[0])
                )
    else:
        raise ValueError(f"match scenarios by 'name' or 'position', not {by!r}")

    ratios: list[RatioChange] = []

    def ratio(field: str, a: int | None, b: int | None, unit: str = "bp") -> None:
        if a != b:
            ratios.append(RatioChange(field, a, b, unit))

    ratio("floor", old.floor_bps, new.floor_bps)
    ratio("maintenance", old.maintenance_bps, new.maintenance_bps)
    for m in range(n_m):
        o = old.markets[m] if m < len(old.markets) else None
        n = new.markets[m] if m < len(new.markets) else None
        ratio(
            f"{syms[m]} imr_min",
            None if o is None else o.imr_min_bps,
            None if n is None else n.imr_min_bps,
        )
        ratio(
            f"{syms[m]} imr_slope",
            None if o is None else o.imr_slope_bps,
            None if n is None else n.imr_slope_bps,
        )
        ratio(
            f"{syms[m]} margin_scale",
            None if o is None else o.margin_scale,
            None if n is None else n.margin_scale,
            "base",  # WAD
        )

    positional = 0
    for m in range(min(len(old.markets), len(new.markets))):
        for k in range(MAX_SCENARIOS):
            a = old.shocks[k][m] if k < old.n_scenarios else 0
            b = new.shocks[k][m] if k < new.n_scenarios else 0
            positional = max(positional, abs(a - b))
    max_ratio = max(
        (
            abs((r.old or 0) - (r.new or 0))
            for r in ratios
            if r.unit == "bp" and r.old is not None and r.new is not None
        ),
        default=0,
    )
    return BookDiff(syms, tuple(scenarios), tuple(ratios), positional, max_ratio)


# --- rendering -------------------------------------------------------------------------------

STATUS_STYLE = {
    "added": "green",
    "removed": "red",
    "changed": "yellow",
    "replaced": "magenta",
    "moved": "cyan",
    "unchanged": "dim",
}


def _cell(a: int | None, b: int | None) -> str:
    if a is None and b is None:
        return ""
    if a is None:
        return f"[green]{b:+d}[/]"
    if b is None:
        return f"[red][strike]{a:+d}[/strike][/]"
    if a == b:
        return f"[dim]{a:+d}[/]"
    return f"{a:+d} → [bold]{b:+d}[/] [yellow]({b - a:+d})[/]"


def scenario_table(
    d: BookDiff, title: str = "scenario shocks (bp)", all_rows: bool = True
) -> Table:
    """One row per scenario: status, index move, and old → new (change) per market."""
    t = Table(title=title, title_justify="left")
    t.add_column("scenario")
    t.add_column("status")
    t.add_column("#", justify="right", no_wrap=True)
    for sym in d.symbols:
        t.add_column(sym, justify="right", no_wrap=True)
    t.add_column("max Δ", justify="right")
    for s in d.scenarios:
        if not all_rows and s.status == "unchanged":
            continue
        style = STATUS_STYLE[s.status]
        if s.old_index is None or s.new_index is None or s.old_index == s.new_index:
            idx = str(s.new_index if s.new_index is not None else s.old_index)
        else:
            idx = f"{s.old_index}→{s.new_index}"
        cells = [
            _cell(None if s.old is None else s.old[m], None if s.new is None else s.new[m])
            for m in range(len(d.symbols))
        ]
        t.add_row(s.label, f"[{style}]{s.status}[/]", idx, *cells, str(s.max_change))
    return t


def ratio_table(d: BookDiff, title: str = "margin ratios") -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("parameter")
    t.add_column("old", justify="right")
    t.add_column("new", justify="right")
    t.add_column("change", justify="right")
    for r in d.ratios:
        t.add_row(r.field, r.fmt(r.old), r.fmt(r.new), r.change)
    return t


def summary_line(d: BookDiff) -> str:
    if d.is_empty:
        return "the books are identical"
    replaced = sum(1 for s in d.scenarios if s.status == "replaced")
    parts = [
        f"{len(d.changed)} changed",
        *([f"{replaced} replaced"] if replaced else []),
        f"{len(d.added)} added",
        f"{len(d.removed)} removed",
    ]
    moved = sum(1 for s in d.scenarios if s.status == "moved")
    if moved:
        parts.append(f"{moved} reordered")
    text = "scenarios: " + ", ".join(parts)
    text += f"; ratios changed: {len(d.ratios)}"
    text += (
        f"; largest change by position: shocks {d.max_positional_shock_change} bp, "
        f"ratios {d.max_ratio_change} bp"
    )
    return text
