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


# ------------------------------------------------------------------------------------------------------------------
# time unit, MBG/NBD, choosing between them
# ------------------------------------------------------------------------------------------------------------------

# Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way", BG/NBD fitted to a cohort observed in weeks
PUBLISHED_WEEKS = BGNBD(r=0.243, alpha=4.41, a=0.793, b=2.43)


@pytest.fixture(scope="module")
def published():
    """10,000 customers from the published parameters, first purchases spread over a year, observed for 13-78
    weeks: mostly one-time buyers (about 57 %), like real purchase histories."""
    rng = np.random.default_rng(1)
    T = rng.uniform(13, 78, 10_000)
    freq, rec = simulate_bgnbd(PUBLISHED_WEEKS, T, rng)
    return freq, rec, T


def test_published_parameters_are_recovered_in_days_and_in_weeks(published):
    freq, rec, T = published
    weeks = fit_bgnbd(freq, rec, T)
    days = fit_bgnbd(freq, rec * 7, T * 7)
    # the same behaviour whatever the unit: alpha is a time scale, r, a, b are unit-free
    assert days.alpha / 7 == pytest.approx(weeks.alpha, rel=1e-3)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-3), name
    assert days.expected_purchases(182, freq, rec * 7, T * 7).sum() == pytest.approx(
        weeks.expected_purchases(26, freq, rec, T).sum(), rel=1e-3)
    # and it is the published behaviour (measured: r 0.236, alpha 4.26 weeks, a 0.762, b 2.33)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(weeks, name) == pytest.approx(getattr(PUBLISHED_WEEKS, name), rel=0.15), name


def test_a_penalty_does_not_depend_on_the_time_unit(published):
    freq, rec, T = published
    weeks = fit_bgnbd(freq, rec, T, penalizer=0.05)
    days = fit_bgnbd(freq, rec * 7, T * 7, penalizer=0.05)
    assert days.alpha / 7 == pytest.approx(weeks.alpha, rel=1e-3)
    assert days.r == pytest.approx(weeks.r, rel=1e-3) and days.b == pytest.approx(weeks.b, rel=1e-3)


@pytest.mark.parametrize("repeaters", [0, 2])
def test_a_degenerate_history_still_gives_a_usable_fit(repeaters):
    """(Almost) nobody buys twice: the likelihood is flat towards r -> 0, alpha -> infinity. The fit must still
    give finite parameters and a small, finite forecast (parameters running to the edge of the search box would be
    refitted with DEGENERATE_PENALIZER)."""
    from ml.clv import _DEGENERATE_AT

    rng = np.random.default_rng(4)
    T = rng.uniform(30, 400, 2000)
    freq = np.zeros(T.size)
    freq[:repeaters] = 1
    rec = np.where(freq > 0, T / 2, 0.0)
    for modified in (False, True):
        model = fit_bgnbd(freq, rec, T, modified=modified)
        logs = np.log([model.r, model.alpha / T.mean(), model.a, model.b])
        assert np.all(np.abs(logs) <= _DEGENERATE_AT + 1e-9), model
        forecast = model.expected_purchases(180, freq, rec, T)
        assert np.isfinite(forecast).all() and 0 <= forecast.sum() < 5


def test_gamma_gamma_does_not_depend_on_the_currency_unit():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 8, 3000)
    nu = rng.gamma(4.0, 1 / 15.0, x.size)
    m = np.array([rng.gamma(6.0, 1 / nu[i], x[i]).mean() for i in range(x.size)])
    eur, cents = fit_gamma_gamma(x, m), fit_gamma_gamma(x, m * 100)
    assert cents.v / 100 == pytest.approx(eur.v, rel=1e-3)
    assert cents.p == pytest.approx(eur.p, rel=1e-3) and cents.q == pytest.approx(eur.q, rel=1e-3)


def test_mbgnbd_does_not_call_one_time_buyers_certainly_alive():
    model = BGNBD(r=0.243, alpha=4.41, a=0.793, b=2.43, modified=True)
    one_time = model.p_alive([0, 0, 0], [0, 0, 0], [1, 20, 60])
    assert np.all(one_time < 1) and one_time[0] > one_time[1] > one_time[2]  # the longer silent, the likelier gone
    # a customer with repeats looks the same to both models up to the extra coin at the first purchase
    assert model.p_alive([3], [50], [52])[0] > one_time[2]


@pytest.mark.parametrize("modified", [True, False])
def test_mbgnbd_recovers_its_parameters_and_forecasts(modified):
    truth = BGNBD(r=0.243, alpha=4.41, a=0.793, b=2.43, modified=modified)
    rng = np.random.default_rng(11)
    T = rng.uniform(13, 78, 10_000)
    freq, rec, alive, future = simulate_bgnbd(truth, T, rng, horizon=26)
    fitted = fit_bgnbd(freq, rec, T, modified=modified)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.25), name
    assert fitted.expected_purchases(26, freq, rec, T).sum() == pytest.approx(future.sum(), rel=0.08)
    assert fitted.log_likelihood(freq, rec, T).sum() >= truth.log_likelihood(freq, rec, T).sum() - 1e-6


def test_p_alive_ranks_simulated_dropouts_like_the_oracle():
    """Customers simulated with a known dropout (MBG/NBD from the published parameters: 67 % one-time buyers, many
    gone right after their first purchase). The chosen model's P(alive) ranks who is still alive almost as well as
    the true model's; plain BG/NBD (one-time buyer = alive) does clearly worse."""
    from ml.clv import choose_bgnbd
    from ml.metrics import roc_auc

    truth = BGNBD(r=0.243, alpha=4.41, a=0.793, b=2.43, modified=True)
    rng = np.random.default_rng(1)
    T = rng.uniform(13, 78, 10_000)
    freq, rec, alive, future = simulate_bgnbd(truth, T, rng, horizon=26)
    fit, val = slice(0, 8000), slice(8000, None)
    model, scores = choose_bgnbd({"frequency": freq[fit], "recency": rec[fit], "T": T[fit]},
                                 {"frequency": freq[val], "recency": rec[val], "T": T[val]},
                                 horizon=26, bought=future[val] > 0)
    oracle = roc_auc(alive, truth.p_alive(freq, rec, T))
    chosen = roc_auc(alive, model.p_alive(freq, rec, T))
    plain = roc_auc(alive, fit_bgnbd(freq, rec, T).p_alive(freq, rec, T))
    # measured: oracle 0.649, chosen (MBG/NBD) 0.649, plain BG/NBD 0.55
    assert model.modified, scores
    assert chosen > 0.5 and chosen == pytest.approx(oracle, abs=0.01)
    assert plain < chosen - 0.05
