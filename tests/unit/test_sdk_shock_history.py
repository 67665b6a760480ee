"""perpdex/sdk/shock.py and perpdex/sdk/history.py without a chain: the `--shock` parser, a
hand-computed stress of two positions, event decoding into P&L, cumulative series, and the
P&L correlation against numpy's corrcoef.

(tests/integration/test_sdk_portfolio_all.py checks the same against the deployed contracts.)
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from perpdex.constants import FLAG_DEGRADED
from perpdex.errors import PerpdexError
from perpdex.sdk import history as hist
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.sdk.client import AccountInfo
from perpdex.sdk.shock import SHOCK_FORMAT, parse_shocks, shocked_price, stress
from perpdex.sdk.snapshot import CollateralInfo, MarketState, Snapshot

W = 10**18
SYMBOLS = ("BTC", "ETH", "SOL")
D = Decimal


# --- --shock parsing ----------------------------------------------------------------------------


def test_parse_shocks__symbols_any_case_and_fractions():
    assert parse_shocks("BTC=-30%,eth=+12.5%", SYMBOLS) == {0: D("-0.3"), 1: D("0.125")}
    assert parse_shocks(" sol-perp = 0% ", SYMBOLS) == {2: D(0)}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("BTC=abc%", "'abc%' is not a percentage"),
        ("BTC=abc", "lacks the % sign"),
        ("BTC=-30", "lacks the % sign"),
        ("DOGE=-30%", "'DOGE' is not a listed market (listed: BTC, ETH, SOL)"),
        ("BTC=-150%", "BTC cannot fall 150%"),
        ("BTC=-100%", "BTC cannot fall 100%"),
        ("BTC=+2000%", "beyond +1000%"),
        ("BTC=-30%,btc=-10%", "BTC is shocked twice"),
        ("BTC-30%", "'BTC-30%' is not SYMBOL=PCT%"),
        ("BTC=-30%,", "has an empty entry"),
        ("", "has an empty entry"),
        ("BTC=nan%", "is not a percentage"),
    ],
)
def test_parse_shocks__refusals_are_one_line_with_the_format(text, problem):
    with pytest.raises(PerpdexError) as err:
        parse_shocks(text, SYMBOLS)
    message = str(err.value)
    assert problem in message
    assert message.endswith(SHOCK_FORMAT)
    assert "\n" not in message


def test_shocked_price__rounds_down_to_the_wei():
    assert shocked_price(100 * W, D("-0.3")) == 70 * W
    assert shocked_price(3, D("0.5")) == 4  # 4.5 -> 4
    assert shocked_price(1, D("-0.999")) == 0


# --- a hand-computed stress ---------------------------------------------------------------------


def _snapshot(oracle0: int = 110 * W, flags0: int = 0, portfolio: bool = False) -> Snapshot:
    """An account long 10 of market 0 (cost $1,000, mark $100) and short 20 of market 1
    (cost -$1,000, mark $50) with $500; funding index 3 USD per unit against snapshots
    at 0: the long owes $30, the short earns $60. Market 0's oracle reads `oracle0`
    (not the mark: the shock starts from the oracle), market 1's reads $50."""
    rb = riskbook.RiskBook(
        floor_bps=200,
        maintenance_bps=5_000,
        markets=(riskbook.MarketRisk(1_000, 1_000, 1_000 * W),) * 2,
        names=("crash", "rally", "split"),
        shocks=((-1_500, -2_000), (1_500, 2_000), (1_000, -1_000)),
    )
    params = pm.MarketParams(1_000 * W, 2 * 10**14, 5 * 10**14, W, W // 100, True, False, W, W)
    markets = (
        MarketState(
            0, params, pm.Mark(100 * W, 1_000, 3 * 10**12, 0), 10 * W, 4 * W, oracle0, flags0
        ),
        MarketState(1, params, pm.Mark(50 * W, 1_000, 3 * 10**12, 0), 10 * W, 4 * W, 50 * W, 0),
    )
    header = pm.ACCOUNT_EXISTS | (0b11 << 8) | (2 << 48)
    if portfolio:
        header |= pm.ACCOUNT_PORTFOLIO
    return Snapshot(
        account=7,
        block_number=1,
        timestamp=1_000,
        header=header,
        market_count=2,
        balances={0: 500 * W},
        collaterals={0: CollateralInfo(0, "USDC", 0, 0)},
        positions={0: pm.Position(10 * W, 1_000 * W, 0), 1: pm.Position(-20 * W, -1_000 * W, 0)},
        markets=markets,
        book=pm.Book.from_riskbook(rb),
        risk_book=rb,
        system=pm.System(1, 3, 200, 5_000, 1_000, 1_000, 60),
    )


def test_stress__two_positions_at_shocked_oracle_prices():
    r = stress(_snapshot(), {0: D("-0.3"), 1: D("0.1")}, SYMBOLS)
    # before, at the marks: $500 - $30 funding owed + $60 earned = $530; isolated
    # requirement 10% of notional + 10% x |size| / 1000 of it: 101 + 102, maintenance half
    assert (r.equity_before, r.initial_before, r.maintenance_before) == (530, 203, D("101.5"))
    # after: market 0 at its oracle $110 - 30% = $77, market 1 at $50 + 10% = $55
    assert [(p.base, p.shocked, p.source) for p in r.prices] == [
        (110, 77, "oracle"),
        (50, 55, "oracle"),
    ]
    # long 10: 770 - 1000 = -230; short 20: -1100 + 1000 = -100 -> 530 - 330 = 200
    assert [leg.pnl_change for leg in r.legs] == [-230, -100]
    assert r.equity_after == 200
    # isolated: 77 + 0.77 (770 notional) and 110 + 2.2 (1100 notional) = 189.97;
    # maintenance 50%: 94.985
    assert (r.initial_after, r.maintenance_after) == (D("189.97"), D("94.985"))
    assert r.health_after == D(200) / D("94.985")
    assert not r.liquidatable and not r.liquidatable_before


def test_stress__unlisted_markets_keep_their_mark_and_deep_shocks_liquidate():
    only_eth = stress(_snapshot(), {1: D("0.1")}, SYMBOLS)
    assert only_eth.equity_after == 530 - 100  # market 0 stays at its $100 mark, not $110
    assert [leg.price_after for leg in only_eth.legs] == [100, 55]
    deep = stress(_snapshot(), {0: D("-0.5"), 1: D("0.2")}, SYMBOLS)
    # long at $55: -450; short at $60: -200 -> equity -120 < maintenance
    assert deep.equity_after == 530 - 450 - 200
    assert deep.liquidatable and deep.health_after is not None and deep.health_after < 0


def test_stress__without_oracle_quorum_starts_from_the_mark():
    r = stress(_snapshot(flags0=FLAG_DEGRADED), {0: D("-0.3")}, SYMBOLS)
    assert (r.prices[0].base, r.prices[0].shocked, r.prices[0].source) == (100, 70, "mark")


def test_stress__equals_the_engine_scan_of_the_shocked_marks():
    """The stress is the mirror's margin scan with the shocked markets' marks moved
    (portfolio mode: the scenario requirement)."""
    snap = _snapshot(portfolio=True)
    r = stress(snap, {0: D("-0.25")}, SYMBOLS)
    m0 = snap.markets[0]
    moved = replace(m0, mark=replace(m0.mark, price=110 * W * 3 // 4))  # $82.50
    s = pm.scan(replace(snap, markets=(moved, snap.markets[1])))
    assert s.equity == 530 * W - 175 * W  # long 10 from $100 to $82.50
    assert (r.equity_after, r.maintenance_after) == (D(s.equity) / W, D(s.maintenance) / W)
    assert r.maintenance_after != r.maintenance_before


# --- events -> P&L ------------------------------------------------------------------------------

WHERE = {"block_number": 5, "log_index": 0, "tx_hash": "0xab"}
USDC = "0x00000000000000000000000000000000000000A1"
TOKENS = {USDC.lower(): ("USDC", 6)}


def test_account_events__fill_funding_is_pnl_with_the_sign_flipped():
    fill = {
        "account": 1,
        "market": 1,
        "counterparty": 0,
        "size_delta": -2 * W,
        "price": 3_000 * W,
        "fee": 3 * W,
        "realized_pnl": 40 * W,
        "funding_paid": 5 * W,
        "size": 0,
    }
    (e,) = hist.account_events("Fill", fill, accounts={1}, symbols=SYMBOLS, **WHERE)
    assert (e.kind, e.symbol, e.size_delta, e.price, e.counterparty) == (
        "fill",
        "ETH",
        -2,
        3_000,
        None,
    )
    assert (e.realized_pnl, e.funding, e.fee, e.pnl) == (40, -5, 3, 40 - 5 - 3)
    assert hist.account_events("Fill", fill, accounts={2}, **WHERE) == []


def test_account_events__matched_signed_orders_are_a_fill_of_each_side():
    matched = {
        "maker": 7,
        "taker": 9,
        "maker_order": b"\x01" * 32,
        "taker_order": b"\x02" * 32,
        "market": 0,
        "size_delta": -W // 2,  # the taker sells half a unit to the maker
        "price": 60_000 * W,
        "maker_fee": 3 * W,
        "taker_fee": 6 * W,
        "maker_realized_pnl": 0,
        "taker_realized_pnl": 250 * W,
        "maker_funding_paid": -W,
        "taker_funding_paid": 2 * W,
        "maker_size": W // 2,
        "taker_size": 0,
    }
    out = hist.account_events("OrdersMatched", matched, accounts={7, 9}, symbols=SYMBOLS, **WHERE)
    assert [
        (e.account, e.kind, e.symbol, e.size_delta, e.size_after, e.counterparty) for e in out
    ] == [
        (7, "fill", "BTC", D("0.5"), D("0.5"), 9),
        (9, "fill", "BTC", D("-0.5"), 0, 7),
    ]
    maker, taker = out
    assert (maker.price, taker.price) == (60_000, 60_000)
    assert (maker.realized_pnl, maker.funding, maker.fee, maker.pnl) == (0, 1, 3, 1 - 3)
    assert (taker.realized_pnl, taker.funding, taker.fee, taker.pnl) == (250, -2, 6, 250 - 2 - 6)
    # only the accounts asked for
    (only,) = hist.account_events("OrdersMatched", matched, accounts={9}, **WHERE)
    assert (only.account, only.size_delta) == (9, D("-0.5"))
    assert hist.account_events("OrdersMatched", matched, accounts={8}, **WHERE) == []


def test_account_events__transfer_between_two_tracked_accounts_is_two_events():
    fields = {"from_account": 1, "to_account": 2, "token": USDC, "amount": 250_500_000}
    out = hist.account_events(
        "CollateralTransferred", fields, accounts={1, 2}, tokens=TOKENS, **WHERE
    )
    assert [(e.account, e.kind, e.token, e.amount, e.counterparty) for e in out] == [
        (1, "transfer out", "USDC", D("-250.5"), 2),
        (2, "transfer in", "USDC", D("250.5"), 1),
    ]
    assert all(e.pnl == 0 for e in out)


def test_account_events__liquidation_reward_is_paid_by_one_and_received_by_the_keeper():
    fields = {"account": 1, "keeper_account": 9, "reward": 12 * W}
    out = hist.account_events("LiquidationBegun", fields, accounts={1, 9}, **WHERE)
    assert [(e.account, e.pnl) for e in out] == [(1, -12), (9, 12)]


def _info(account: int, index: int = 0) -> AccountInfo:
    return AccountInfo(account, "0x" + "11" * 20, index, f"s{index}", False, False)


def test_account_history__series_merges_a_block_and_ends_with_now():
    e = hist.AccountEvent
    events = (
        e(1, "deposit", 3, 0, "0x1", token="USDC", amount=D(1_000)),
        e(1, "fill", 4, 0, "0x2", realized_pnl=D(0), fee=D(2)),
        e(1, "fill", 6, 0, "0x3", realized_pnl=D(50), funding=D(-1), fee=D(2)),
        e(1, "loss-cap fee", 6, 1, "0x3", fee=D(5)),
        e(1, "withdraw", 7, 0, "0x4", token="USDC", amount=D(-100)),
    )
    h = hist.AccountHistory(_info(1), 0, 9, events, unrealized_pnl=D(20), funding_accrued=D(-3))
    assert [(p.block_number, p.pnl, p.label) for p in h.series] == [
        (4, -2, "fill"),
        (6, -2 + 47 - 5, "fill, loss-cap fee"),
        (9, 40 + 20 - 3, "now"),
    ]
    assert (h.realized_pnl, h.funding_settled, h.fees, h.cash_pnl) == (50, -1, 9, 40)
    assert (h.funding, h.total_pnl, h.flows) == (-4, 57, {"USDC": 900})


# --- correlation --------------------------------------------------------------------------------


def _series(levels: dict[int, int]) -> list[hist.PnlPoint]:
    return [hist.PnlPoint(b, D(v), "fill") for b, v in sorted(levels.items())]


def test_correlate__aligned_changes_equal_numpys_corrcoef():
    series = {
        1: _series({10: 5, 20: 12, 30: 4, 40: 9, 50: 20, 60: 18}),
        2: _series({10: -3, 30: 1, 40: -6, 60: 2}),  # holds its level at 20 and 50
        3: _series({20: 7, 30: 7, 40: 30, 50: 10, 60: 11}),  # 0 before block 20
    }
    c = hist.correlate(series)
    assert c.blocks == (10, 20, 30, 40, 50, 60)
    changes = [
        [5, 7, -8, 5, 11, -2],
        [-3, 0, 4, -7, 0, 8],
        [0, 7, 0, 23, -20, 1],
    ]
    assert [[int(x) for x in row] for row in c.changes] == changes
    want = np.corrcoef(np.array(changes, dtype=float))
    assert c.matrix is not None
    got = np.array([[float(r) for r in row] for row in c.matrix])  # type: ignore[arg-type]
    assert np.allclose(got, want, atol=1e-12)
    assert c.matrix[0][0] == 1


def test_correlate__not_enough_history_and_flat_series():
    few = hist.correlate({1: _series({10: 1, 20: 3}), 2: _series({10: 2})})
    assert few.matrix is None and not few.enough and few.points == 2
    flat = hist.correlate({1: _series({10: 1, 20: 3, 30: 2}), 2: _series({10: 0, 30: 0})})
    assert flat.matrix is not None
    assert flat.matrix[0][1] is None and flat.matrix[1][1] is None and flat.matrix[0][0] == 1


def test_pearson__refuses_series_of_different_lengths():
    with pytest.raises(ValueError, match="cannot be correlated"):
        hist.pearson([D(1), D(2)], [D(1)])
