"""RiskConfig.with_market: the risk config a governance proposal lists a market with."""

from __future__ import annotations

import pytest

from perpdex.config import MarketRisk, load_risk
from perpdex.constants import WAD
from perpdex.errors import ConfigError

NEW = MarketRisk(imr_min_bps=1_500, imr_slope_bps=1_000, margin_scale=10**6 * WAD)


def test_with_market__adds_the_market_and_its_shock_to_every_scenario() -> None:
    risk = load_risk()
    crash = risk.scenarios[0].name
    out = risk.with_market("NEW", NEW, {crash: -2_000})
    assert out.markets == {**risk.markets, "NEW": NEW}
    assert [s.name for s in out.scenarios] == [s.name for s in risk.scenarios]
    for before, after in zip(risk.scenarios, out.scenarios, strict=True):
        want = -2_000 if before.name == crash else 0
        assert after.shocks_bps == {**before.shocks_bps, "NEW": want}
    assert "NEW" not in risk.markets, "the original config must not change"


def test_with_market__refuses_a_market_already_listed() -> None:
    risk = load_risk()
    listed = next(iter(risk.markets))
    with pytest.raises(ConfigError, match="already in the risk config"):
        risk.with_market(listed, NEW, {})
