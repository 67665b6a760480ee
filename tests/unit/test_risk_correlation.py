"""Returns, volatility and correlation (equal weights and EWMA) on synthetic data whose
true parameters are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perpdex.risk.correlation import (
    correlation,
    cov_to_corr,
    covariance,
    estimate,
    log_returns,
    volatility,
    weights,
)
from perpdex.risk.history import GeneratorParams, generate_prices, generate_returns

CORR = ((1.0, 0.8, 0.5), (0.8, 1.0, 0.3), (0.5, 0.3, 1.0))
VOLS = (0.6, 0.8, 1.0)


def _iid(corr=CORR, days: int = 20_000, seed: int = 11) -> np.ndarray:
    """Fat-tailed (t, 5 dof) but not clustered returns: the sample converges fast."""
    p = GeneratorParams(
        annual_vol=VOLS, correlation=corr, days=days, t_dof=5.0, garch_alpha=0.0, garch_beta=0.0
    )
    return generate_returns(p, seed)


def test_recovers_known_correlation_and_vol():
    r = _iid()
    assert np.allclose(correlation(r), np.asarray(CORR), atol=0.02)
    daily = np.asarray(VOLS) / math.sqrt(365)
    assert np.allclose(volatility(r), daily, rtol=0.03)


def test_recovers_correlation_with_volatility_clustering():
    """GARCH variances blur the correlation a little; 20 years of data still finds it."""
    p = GeneratorParams(correlation=CORR, days=20 * 365)
    est = estimate(generate_prices(p, seed=5))
    assert np.allclose(est.corr, np.asarray(CORR), atol=0.06)
    assert est.n_obs == 20 * 365 and est.method == "equal-weight"


def test_correlation_of_unrelated_series_is_near_zero():
    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    c = correlation(_iid(eye))
    assert np.all(np.abs(c - np.eye(3)) < 0.03)


def test_ewma_follows_a_regime_change():
    """4000 calm days at 0.2 correlation, then 500 panic days at 0.9."""
    calm = ((1.0, 0.2, 0.2), (0.2, 1.0, 0.2), (0.2, 0.2, 1.0))
    panic = ((1.0, 0.9, 0.9), (0.9, 1.0, 0.9), (0.9, 0.9, 1.0))
    r = np.vstack([_iid(calm, 4_000, seed=1), _iid(panic, 500, seed=2)])
    equal, ewma = correlation(r), correlation(r, ewma_lambda=0.94)
    assert equal[0, 1] < 0.4
    assert ewma[0, 1] > 0.75


def test_weights():
    assert np.allclose(weights(4), 0.25)
    w = weights(50, 0.9)
    assert math.isclose(w.sum(), 1.0)
    assert np.all(np.diff(w) > 0)  # the newest day weighs most
    assert math.isclose(w[-1] / w[-2], 1 / 0.9)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="lambda"):
            weights(10, bad)


def test_equal_weight_covariance_is_the_sample_covariance():
    r = _iid(days=300)
    assert np.allclose(covariance(r), np.cov(r, rowvar=False))


def test_cov_to_corr_and_zero_variance():
    cov = np.array([[4.0, 1.0], [1.0, 1.0]])
    assert np.allclose(cov_to_corr(cov), [[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(ValueError, match="zero variance"):
        cov_to_corr(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_log_returns_over_a_horizon_are_overlapping_sums():
    prices = np.exp(np.cumsum(np.arange(1.0, 11.0))).reshape(-1, 1) / 1e3
    one, three = log_returns(prices), log_returns(prices, 3)
    assert three.shape == (7, 1)
    assert np.allclose(three[:, 0], one[:-2, 0] + one[1:-1, 0] + one[2:, 0])
    with pytest.raises(ValueError):
        log_returns(prices, 0)


def test_estimate_window_and_horizon_scaling():
    s = generate_prices(GeneratorParams(days=400), seed=2)
    est = estimate(s, window=100)
    assert est.n_obs == 100 and est.last_date == s.dates[-1] and est.first_date == s.dates[-100]
    assert np.allclose(est.horizon_cov(4), 4 * est.cov)
    assert np.allclose(est.annual_vol(), est.vol * math.sqrt(365))
