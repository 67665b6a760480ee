"""The worked example (perpdex/showcase/worked_example.py): $100k of collateral, a BTC long, an
ETH/SOL pair and a SOL crash hedge need about $90k as isolated legs and about $60k in
portfolio mode.

Every expected figure is derived here from the book and config/risk.yaml with an
independent integer re-implementation of modules/margin.vy (rounding up like the
contract), then compared with what the chain reports; the portfolio requirement is also
compared with the SDK mirror (perpdex/sdk/math.py) to the wei. The bands (~$90k, ~$60k,
at most 70%) are the issue's claims; the exact values come from the arithmetic.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import ape
import ape.exceptions
import pytest
from rich.console import Console

from perpdex.config import ROOT, RiskConfig, load_risk
from perpdex.constants import BPS
from perpdex.sdk import math as pm
from perpdex.sdk import riskbook
from perpdex.showcase import worked_example as we
from perpdex.units import WAD

USD = WAD  # one dollar in USD WAD


@pytest.fixture(scope="module")
def worked(actors: dict[str, Any], protocol: Any, trader: Any, lp: Any) -> we.WorkedExample:
    """The example run once for the module."""
    return we.run(protocol, trader, lp)


@pytest.fixture(scope="module")
def risk_config() -> RiskConfig:
    return load_risk()


# --- an independent re-implementation of margin.vy from config ----------------------------


def ceil_div(a: int, b: int) -> int:
    """a / b rounded toward +infinity (b > 0), for either sign of a."""
    return -((-a) // b)


def leg_isolated(risk: RiskConfig, symbol: str, size: int, price: int) -> tuple[int, int]:
    """(isolated initial margin, size add-on) of one position, USD WAD, from config."""
    r = risk.markets[symbol]
    notional = ceil_div(abs(size) * price, WAD)
    base = ceil_div(abs(size) * price * r.imr_min_bps, WAD * BPS)
    slope = ceil_div(notional * r.imr_slope_bps * abs(size), BPS * r.margin_scale)
    return base + slope, slope


def book_positions(h: Any) -> list[tuple[str, int, int]]:
    """(symbol, size WAD, oracle price WAD) of the example's net positions."""
    return [
        (sym, int(size * WAD), h.price(sym))
        for sym, size in we.net_positions(we.STRATEGIES).items()
    ]


def scenario_losses_raw(risk: RiskConfig, positions: list[tuple[str, int, int]]) -> list[int]:
    """Loss of the book per scenario, WAD^2 * bp (L_k = -sum s_i P_i x_ik)."""
    return [
        sum(-size * price * sc.shocks_bps.get(sym, 0) for sym, size, price in positions)
        for sc in risk.scenarios
    ]


# --- the figures --------------------------------------------------------------------------


def test_worked_example__isolated_is_the_sum_of_the_legs(worked, h, risk_config):
    positions = book_positions(h)
    per_leg = {sym: leg_isolated(risk_config, sym, s, p)[0] for sym, s, p in positions}
    expected = sum(per_leg.values())
    iso = worked.isolated
    assert iso.initial == iso.isolated == iso.lens_initial == expected
    assert {q.symbol: q.isolated_initial for q in iso.positions} == per_leg
    # the issue's ~$90k: about 30k per strategy, 90% of the collateral
    assert 85_000 * USD <= expected <= 95_000 * USD
    assert iso.equity >= iso.initial  # the isolated book fits, just


def test_worked_example__portfolio_is_worst_loss_plus_addon(worked, h, risk_config):
    positions = book_positions(h)
    losses = scenario_losses_raw(risk_config, positions)
    worst = max(0, *losses)
    gross = sum(abs(s) * p for _sym, s, p in positions)
    legs = [leg_isolated(risk_config, sym, s, p) for sym, s, p in positions]
    iso = sum(i for i, _a in legs)
    addon = sum(a for _i, a in legs)
    floor = ceil_div(gross * risk_config.floor_bps, WAD * BPS)
    expected = min(iso, max(ceil_div(worst, WAD * BPS), floor) + addon)
    port = worked.portfolio
    assert port.initial == port.lens_initial == expected
    assert port.isolated == iso  # the same legs, priced alone
    assert port.floor == floor and port.addon == addon
    assert port.maintenance == ceil_div(expected * risk_config.maintenance_bps, BPS)
    # the claim: materially less (about $72.6k: the scenarios now cover every
    # direction's 99.5% two-day historical loss, so less than the issue's ~$60k)
    assert port.initial <= worked.isolated.initial * 85 // 100
    assert 65_000 * USD <= port.initial <= 75_000 * USD
    assert worked.saving == worked.isolated.initial - port.initial >= 15_000 * USD


def test_worked_example__portfolio_equals_the_sdk_mirror(worked, protocol, h, risk_config):
    book = pm.Book.from_riskbook(riskbook.from_config(risk_config, protocol.symbols))
    ctx = pm.Ctx(
        n_s=book.header.n_scenarios,
        floor_bps=book.header.floor_bps,
        mmr_bps=book.header.mmr_bps,
        portfolio=True,
    )
    t = pm.Totals()
    for sym, size, price in book_positions(h):
        leg = pm.lens_leg(book, protocol.market_id(sym), size, 0, 0, price)
        t = pm.add_leg(t, leg, price, ctx.n_s)
    assert pm.initial_requirement(t, ctx) == worked.portfolio.initial
    assert pm.initial_requirement(t, pm.Ctx(ctx.n_s, ctx.floor_bps, ctx.mmr_bps, False)) == (
        worked.isolated.initial
    )
    assert tuple(pm.div_ceil(x, WAD * BPS) for x in t.losses[: ctx.n_s]) == (
        worked.portfolio.scenario_losses
    )


def test_worked_example__every_scenario_loss_and_the_binding_one(worked, h, risk_config):
    raw = scenario_losses_raw(risk_config, book_positions(h))
    expected = tuple(ceil_div(x, WAD * BPS) for x in raw)
    # both accounts hold the same book, so the lens reports the same losses for both
    assert worked.portfolio.scenario_losses == worked.isolated.scenario_losses == expected
    k = max(range(len(raw)), key=lambda i: raw[i])
    assert worked.portfolio.binding == k
    assert worked.binding_name == risk_config.scenarios[k].name
    assert worked.portfolio.worst_loss == expected[k]
    # the strategies are sized by crash beta: the equal moves (every coin by its largest
    # shock at once) cost a small fraction of the binding loss, so what binds is a
    # scenario that moves the coins apart: SOL up against BTC and ETH (both SOL shorts
    # lose together), alone (sol-up) or with BTC and ETH down (pc2-down, a close second)
    names = [sc.name for sc in risk_config.scenarios]
    for equal in ("crypto-crash", "crypto-rally"):
        assert abs(raw[names.index(equal)]) * 10 < raw[k]
    shocks = risk_config.scenarios[k].shocks_bps
    assert shocks.get("SOL", 0) > 0 >= max(shocks.get("BTC", 0), shocks.get("ETH", 0))
    second = sorted(raw)[-2]
    assert names[raw.index(second)] == "pc2-down" and second * 10 > raw[k] * 9


def test_worked_example__same_positions_in_both_modes(worked, protocol, h):
    expected = {sym: int(size * WAD) for sym, size in we.net_positions(we.STRATEGIES).items()}
    for acct in (worked.isolated, worked.portfolio):
        assert {q.symbol: q.size for q in acct.positions} == expected
        assert {q.symbol: q.mark_price for q in acct.positions} == {s: h.price(s) for s in expected}
        assert acct.equity == acct.lens_equity
        assert acct.maintenance == acct.lens_maintenance
        assert acct.isolated == acct.lens_isolated
        assert protocol.clearinghouse.balance_of(acct.account, 0) > 0
    assert not worked.isolated.portfolio and worked.portfolio.portfolio
    assert worked.isolated.name == we.ISOLATED_NAME
    assert worked.portfolio.name == we.PORTFOLIO_NAME
    assert worked.isolated.notional == worked.portfolio.notional


def test_worked_example__strategy_legs_net_into_positions():
    net = we.net_positions(we.STRATEGIES)
    assert net == {"BTC": Decimal(3), "ETH": Decimal(50), "SOL": Decimal(-2_000)}
    # legs on one market add up; a leg that cancels drops the market
    flat = we.net_positions(
        [
            we.Strategy("a", "", (we.StrategyLeg("BTC", Decimal(1)),)),
            we.Strategy("b", "", (we.StrategyLeg("BTC", Decimal(-1)),)),
        ]
    )
    assert flat == {}


def test_worked_example__the_saving_is_collateral_the_trader_can_use(worked, protocol, h, trader):
    """What the saving means: the portfolio account can take out (or put to work) about
    $30k more than the isolated one."""
    ops = protocol.ops
    room = worked.isolated.free + 1_000 * USD  # more than the isolated account can spare
    units = h.usd(Decimal(room) / WAD)
    with ape.reverts("clearinghouse: below initial margin"):
        ops.withdraw(worked.isolated.account, protocol.token, units, trader, sender=trader)
    ops.withdraw(worked.portfolio.account, protocol.token, units, trader, sender=trader)
    after = protocol.clearinghouse.account_margin(worked.portfolio.account)
    assert after.equity >= after.initial == worked.portfolio.initial


def test_worked_example__renders_side_by_side(worked):
    console = Console(width=140, record=True)
    console.print(we.render(worked))
    text = console.export_text()
    md = we.markdown(worked)
    for out in (text, md):
        assert we.format_usd(worked.isolated.initial) in out
        assert we.format_usd(worked.portfolio.initial) in out
        assert we.format_usd(worked.saving) in out
        assert worked.binding_name is not None and worked.binding_name in out
        for s in we.STRATEGIES:
            assert s.name in out


def test_worked_example__docs_quote_the_chain_figures(worked):
    """docs/worked-example.md (and the README paragraph taken from it) quotes the figures
    this module's run produces; regenerate the doc's tables with `we.markdown` if the
    book or config/risk.yaml changes."""
    doc = (Path(ROOT) / "docs" / "worked-example.md").read_text()
    for x in (
        worked.isolated.initial,
        worked.portfolio.initial,
        worked.saving,
        worked.portfolio.worst_loss,
        worked.portfolio.addon,
        worked.isolated.maintenance,
        worked.portfolio.maintenance,
    ):
        assert we.format_usd(x) in doc
    assert f"{worked.saving_ratio * 100:.1f}%" in doc
    assert worked.binding_name is not None and worked.binding_name in doc


def test_worked_example__readme_quotes_the_chain_figures(worked):
    readme = (Path(ROOT) / "README.md").read_text()
    for x in (worked.isolated.initial, worked.portfolio.initial, worked.saving):
        assert we.format_usd(x) in readme
    assert worked.binding_name is not None and worked.binding_name in readme


def test_worked_example__demo_step_resets_prices_prints_and_closes(
    protocol, ch, h, accounts, admin
):
    """The demo's step after other trading: prices moved away from the reference ones and
    another trader's short holds the vault long SOL, part of its cap (a fresh-clone run
    once failed here: the books' SOL legs met the cap); the step puts the prices back,
    tops the pool up to what the caps need, prints the same figures and leaves both
    books flat."""
    other = accounts[7]
    acct = h.funded_account(other, 200_000, name="sol short")
    we.ensure_pool(protocol, accounts[we.DEMO_LP_INDEX], Decimal(3_000_000))
    h.trade(other, acct, "SOL", "-4000")  # the vault takes $600k+ of long SOL
    for sym, px in (("BTC", 93_000), ("ETH", 3_300), ("SOL", 120)):
        h.set_price(sym, px, admin)
    console = Console(width=160, record=True)

    ex = we.worked_example_step(protocol, console)

    text = console.export_text()
    assert [q.mark_price for q in ex.portfolio.positions] == [
        h.price(s) for s in ("BTC", "ETH", "SOL")
    ]
    assert h.price("BTC") == 100_000 * WAD
    assert we.format_usd(ex.isolated.initial) in text
    assert we.format_usd(ex.portfolio.initial) in text
    assert f"binding scenario: {ex.binding_name}" in text
    for acct in (ex.isolated.account, ex.portfolio.account):
        assert int(ch.account_header(acct)) >> 48 & 0xFF == 0  # no positions
        assert 0 <= int(ch.balance_of(acct, 0)) < WAD // h.unit  # less than one token unit
