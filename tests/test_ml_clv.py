"""BG/NBD and Gamma-Gamma recover known parameters from data simulated from the models themselves."""

from __future__ import annotations

import numpy as np
import pytest

from ml.clv import BGNBD, GammaGamma, fit_bgnbd, fit_clv, fit_gamma_gamma, simulate_bgnbd

TRUE = BGNBD(r=0.8, alpha=20.0, a=0.9, b=3.0)


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(42)
    T = rng.uniform(60, 540, size=5000)
    freq, rec = simulate_bgnbd(TRUE, T, rng)
    return freq, rec, T


def test_bgnbd_recovers_parameters(simulated):
    freq, rec, T = simulated
    fitted = fit_bgnbd(freq, rec, T)
    # r/alpha (mean purchase rate) and a/(a+b) (mean dropout probability) are well identified
    assert fitted.r / fitted.alpha == pytest.approx(TRUE.r / TRUE.alpha, rel=0.10)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.20)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE, name), rel=0.35), name
    # the fit is at least as likely as the truth on the data it was fitted to
    assert fitted.log_likelihood(freq, rec, T).sum() >= TRUE.log_likelihood(freq, rec, T).sum() - 1e-6


def test_bgnbd_predicts_future_purchases_of_simulated_customers():
    """Holdout check: simulate a calibration period and the next 180 days, compare totals."""
    rng = np.random.default_rng(7)
    n, T_cal, horizon = 4000, 365.0, 180.0
    T_all = np.full(n, T_cal + horizon)
    lam = rng.gamma(TRUE.r, 1 / TRUE.alpha, n)
    p = rng.beta(TRUE.a, TRUE.b, n)
    freq = np.zeros(n)
    rec = np.zeros(n)
    future = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T_all[i]:
                break
            if t <= T_cal:
                freq[i] += 1
                rec[i] = t
            else:
                future[i] += 1
            if rng.random() < p[i]:
                break
    predicted = TRUE.expected_purchases(horizon, freq, rec, np.full(n, T_cal))
    assert predicted.sum() == pytest.approx(future.sum(), rel=0.10)
    # customers who look dead are predicted to buy less
    alive = TRUE.p_alive(freq, rec, np.full(n, T_cal))
    assert future[alive > 0.8].mean() > future[alive < 0.3].mean()


def test_p_alive_edge_cases():
    model = BGNBD(r=0.5, alpha=10, a=0.8, b=2.0)
    # no repeat purchase: cannot have dropped out under BG/NBD
    assert model.p_alive([0], [0], [100])[0] == pytest.approx(1.0)
    # same frequency, purchase long ago vs yesterday
    old, recent = model.p_alive([5, 5], [10, 99], [100, 100])
    assert old < recent


def test_invalid_summary_names_the_row():
    with pytest.raises(ValueError, match="row 1"):
        fit_bgnbd([1, 2] * 10, [5, 50] * 10, [10, 20] * 10)


def test_gamma_gamma_recovers_parameters():
    rng = np.random.default_rng(3)
    true = GammaGamma(p=6.0, q=4.0, v=15.0)
    n = 4000
    x = rng.integers(1, 8, n)
    nu = rng.gamma(true.q, 1 / true.v, n)
    m = np.array([rng.gamma(true.p, 1 / nu[i], x[i]).mean() for i in range(n)])
    fitted = fit_gamma_gamma(x, m)
    # mean spend p*v/(q-1) is the well identified quantity
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(true.p * true.v / (true.q - 1), rel=0.05)
    for name in ("p", "q", "v"):
        assert getattr(fitted, name) == pytest.approx(getattr(true, name), rel=0.35), name
    # one purchase: shrunk toward the population mean; many purchases: close to the observed mean
    pop = true.p * true.v / (true.q - 1)
    one, many = true.expected_average_value([1, 100], [200.0, 200.0])
    assert pop < one < many < 200.0 + 1e-9


def test_fit_clv_end_to_end(simulated):
    freq, rec, T = simulated
    rng = np.random.default_rng(5)
    monetary = np.where(freq > 0, rng.gamma(5.0, 10.0, freq.size), 0.0)
    model = fit_clv(freq, rec, T, monetary)
    out = model.predict(180, freq, rec, T, monetary)
    assert set(out) == {"expected_purchases", "p_alive", "expected_avg_value", "expected_value"}
    assert np.all(out["expected_value"] >= 0)
    assert np.all((out["p_alive"] > 0) & (out["p_alive"] <= 1))
    assert set(model.params()) == {"bgnbd_r", "bgnbd_alpha", "bgnbd_a", "bgnbd_b", "gg_p", "gg_q", "gg_v"}
