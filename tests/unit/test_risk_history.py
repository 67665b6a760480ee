"""Price history: the seeded synthetic generator, the CSV format and its loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perpdex.risk.history import (
    DEFAULT_PRICES,
    DEFAULT_SEED,
    GeneratorParams,
    PriceDataError,
    _default_params,
    format_prices,
    generate_prices,
    load_prices,
    parse_prices,
    synthetic_header,
    write_prices,
)

SMALL = GeneratorParams(days=200)


def test_generator_is_seeded():
    a, b = generate_prices(SMALL, seed=7), generate_prices(SMALL, seed=7)
    assert np.array_equal(a.prices, b.prices)
    assert not np.allclose(a.prices, generate_prices(SMALL, seed=8).prices)


def test_generator_ends_at_the_given_prices_on_the_end_date():
    s = generate_prices(SMALL, seed=1)
    assert s.n_days == SMALL.days + 1
    assert s.dates[-1] == SMALL.end_date
    assert np.allclose(s.prices[-1], SMALL.end_prices)
    assert list(s.dates) == sorted(s.dates)
    assert s.synthetic


def test_generator_has_fat_tails():
    """Excess kurtosis of daily returns well above a normal's 0."""
    s = generate_prices(GeneratorParams(days=5_000), seed=3)
    r = np.diff(np.log(s.prices), axis=0)
    z = (r - r.mean(0)) / r.std(0)
    assert np.all((z**4).mean(0) - 3 > 1.0)


def test_csv_round_trip(tmp_path: Path):
    path = write_prices(tmp_path / "p.csv", SMALL, seed=5)
    text = path.read_text()
    assert text.startswith("# SYNTHETIC price history - NOT market data")
    loaded = load_prices(path)
    original = generate_prices(SMALL, seed=5)
    assert loaded.symbols == ("BTC", "ETH", "SOL")
    assert loaded.dates == original.dates
    assert np.allclose(loaded.prices, original.prices, rtol=1e-7)
    assert loaded.synthetic


def test_committed_history_is_labelled_synthetic_and_reproducible():
    """data/prices.csv is exactly what `python -m perpdex.risk.history` writes."""
    text = DEFAULT_PRICES.read_text()
    assert text.splitlines()[0].startswith("# SYNTHETIC")
    params = _default_params()
    expected = format_prices(
        generate_prices(params, DEFAULT_SEED), synthetic_header(params, DEFAULT_SEED)
    )
    assert text == expected
    series = load_prices()
    assert series.synthetic and series.symbols == ("BTC", "ETH", "SOL")
    assert series.n_days == 4 * 365 + 1


def test_select_reorders_and_names_missing_columns():
    s = generate_prices(SMALL, seed=1)
    sel = s.select(["SOL", "BTC"])
    assert sel.symbols == ("SOL", "BTC")
    assert np.array_equal(sel.prices[:, 0], s.prices[:, 2])
    with pytest.raises(PriceDataError, match="no column for DOGE"):
        s.select(["BTC", "DOGE"])


def _csv(rows: list[str], header: str = "date,BTC,ETH") -> str:
    return "\n".join(["# comment", header, *rows]) + "\n"


def _days(n: int, start: int = 1) -> list[str]:
    return [f"2024-01-{d:02d},{100 + d},{10 + d}" for d in range(start, start + n)]


def test_parser_accepts_a_minimal_file():
    s = parse_prices(_csv(_days(30)))
    assert s.symbols == ("BTC", "ETH") and s.n_days == 30 and not s.synthetic


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_csv(_days(30), header="day,BTC"), "header must be"),
        (_csv(_days(29)), "at least 30 days"),
        (_csv([*_days(29), "2024-01-30,0,5"]), "non-positive price"),
        (_csv([*_days(29), "2024-01-30,-1,5"]), "non-positive price"),
        (_csv([*_days(29), "2024-01-15,1,5"]), "dates must ascend"),
        (_csv([*_days(29), "2024-01-30,1"]), "has 2 fields"),
        (_csv([*_days(29), "30/01/2024,1,5"]), "YYYY-MM-DD"),
        (_csv(_days(30), header="date,BTC,BTC"), "duplicate market"),
        ("# only comments\n", "no header"),
    ],
)
def test_parser_rejects_bad_files(text: str, message: str):
    with pytest.raises(PriceDataError, match=message):
        parse_prices(text)


def test_missing_file_says_what_to_do(tmp_path: Path):
    with pytest.raises(PriceDataError, match="pass --prices"):
        load_prices(tmp_path / "nope.csv")
