"""Reference ("oracle") answers from the generator's latent parameters, for judging the pipeline's models.

They use only what the ground truth stores (lambda, mu, signup_at, churn_at, the UTC offset), the purchase times
the pipeline itself sees, and the calendar formulas in calendar.py, exactly as docs/generator.md states them.
Nothing in the pipeline may import this module.

Three levels of knowledge, from least to most (docs/generator.md, "Oracles"):
- rates only: lambda and mu, P(alive at t) = exp(-mu (t - signup)) (`p_alive_prior`);
- rates + the observable history (Bayes posterior, `p_alive_posterior`): what the best possible model of the
  observed purchases could know, the fair reference for the pipeline's models;
- rates + the true alive state (`alive=True/False` from churn_at): a ceiling no model can reach.
"""

from __future__ import annotations

import numpy as np

from c360dev.generate.calendar import DAY_S, Calendar

# The generator's purchase process starts one hour after signup (ModelParams.activation_delay_s).
ACTIVATION_DELAY_S = 3600


def calendar_for(t_min_s: int, t_max_s: int) -> Calendar:
    """A calendar covering the UTC instants [t_min_s, t_max_s] in every supported time zone."""
    return Calendar(int(t_min_s // DAY_S) - 2, int(t_max_s // DAY_S) + 2)


def expected_purchases(lam, t0_s, t1_s, offset_s, cal: Calendar | None = None) -> np.ndarray:
    """Expected number of purchases in [t0, t1) of a customer alive throughout: lambda * (B(t1) - B(t0))."""
    lam = np.asarray(lam, dtype=float)
    off = np.asarray(offset_s, dtype=np.int64)
    t0 = np.broadcast_to(np.asarray(t0_s, dtype=np.int64), lam.shape)
    t1 = np.broadcast_to(np.asarray(t1_s, dtype=np.int64), lam.shape)
    cal = cal or calendar_for(int(t0.min()), int(t1.max()))
    return lam * (cal.clock(t1 + off) - cal.clock(t0 + off))


def _vec(x, n: int, dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=dtype), (n,))


def dropout_integrals(
    lam,
    mu,
    t0_s,
    span_days,
    offset_s,
    *,
    steps_per_day: float = 24,
    cal: Calendar | None = None,
    chunk: int = 5_000,
) -> dict[str, np.ndarray]:
    """For a customer alive at t0, over the window (t0, t0 + span] (span per customer, in days):

    - `survive_no_purchase` A = e^(-mu span) e^(-lambda dB(span)): alive at the end, no purchase;
    - `drop_no_purchase`    D = integral_0^span mu e^(-mu s) e^(-lambda dB(s)) ds: dropped out at s before buying;
    - `purchases`           E = integral_0^span e^(-mu s) lambda dB(s): expected purchases in the window;

    with dB(s) = B(t0 + s) - B(t0) on the customer's local business clock. A + D = P(no purchase in the window).
    Trapezoid rule on an even grid of about `steps_per_day` points a day (per customer: spans differ).
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    n = lam.size
    mu = _vec(mu, n, float)
    t0 = _vec(t0_s, n, np.int64)
    span = np.maximum(_vec(span_days, n, float), 0.0)
    off = _vec(offset_s, n, np.int64)
    out = {k: np.zeros(n) for k in ("survive_no_purchase", "drop_no_purchase", "purchases")}
    if n == 0:
        return out
    cal = cal or calendar_for(int(t0.min()), int(t0.max() + span.max() * DAY_S) + DAY_S)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        steps = max(1, int(np.ceil(span[lo:hi].max() * steps_per_day)))
        s_days = span[lo:hi, None] * np.linspace(0.0, 1.0, steps + 1)[None, :]
        local = (t0[lo:hi] + off[lo:hi])[:, None]
        db = cal.clock(local + np.round(s_days * DAY_S).astype(np.int64)) - cal.clock(local)
        m, lm = mu[lo:hi, None], lam[lo:hi, None]
        survival = np.exp(-m * s_days)
        out["drop_no_purchase"][lo:hi] = np.trapezoid(m * survival * np.exp(-lm * db), s_days, axis=1)
        out["survive_no_purchase"][lo:hi] = survival[:, -1] * np.exp(-lam[lo:hi] * db[:, -1])
        out["purchases"][lo:hi] = lam[lo:hi] * np.sum(0.5 * (survival[:, 1:] + survival[:, :-1]) * np.diff(db, axis=1),
                                                     axis=1)
    return out


def _alive_share(alive, n: int) -> np.ndarray:
    """`alive` as a probability per customer: True/False (known state) or a number in [0, 1] (a posterior)."""
    a = np.asarray(alive)
    return _vec(a.astype(float) if a.dtype == bool else np.clip(a.astype(float), 0.0, 1.0), n, float)


def p_no_purchase(
    lam,
    mu,
    t_s,
    horizon_days: float,
    offset_s,
    alive=True,
    steps_per_day: int = 24,
    cal: Calendar | None = None,
    chunk: int = 20_000,
) -> np.ndarray:
    """P(no purchase in (t, t + H]) per customer, given lambda, mu and the chance the customer is alive at t.

    Alive: integral over s in [0, H] of mu e^(-mu s) e^(-lambda dB(s)) ds + e^(-mu H) e^(-lambda dB(H)),
    with dB(s) = B(t + s) - B(t) (the customer either drops out at s before buying, or survives the window
    without buying). Not alive: 1. `alive` may be a probability (e.g. `p_alive_posterior`): the mixture
    alive * P(no purchase | alive) + (1 - alive). Integrated with the trapezoid rule on `steps_per_day` points a day.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    share = _alive_share(alive, lam.size)
    parts = dropout_integrals(lam, mu, t_s, horizon_days, offset_s, steps_per_day=steps_per_day, cal=cal,
                              chunk=chunk)
    p_alive_none = parts["drop_no_purchase"] + parts["survive_no_purchase"]
    return share * p_alive_none + (1.0 - share)


def expected_purchases_dropout(
    lam, mu, t_s, horizon_days: float, offset_s, alive=True, steps_per_day: int = 24, cal: Calendar | None = None
) -> np.ndarray:
    """E[purchases in (t, t + H]]: alive * integral_0^H e^(-mu s) lambda dB(s) (dropout during the window counted).

    `alive` as in `p_no_purchase`: the known state or a probability.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    share = _alive_share(alive, lam.size)
    parts = dropout_integrals(lam, mu, t_s, horizon_days, offset_s, steps_per_day=steps_per_day, cal=cal)
    return share * parts["purchases"]


def observation_start(signup_s, start_s: int, activation_delay_s: int = ACTIVATION_DELAY_S) -> np.ndarray:
    """When the generator's purchase process (and so the observable history) starts: max(signup + 1 h, start)."""
    return np.maximum(np.asarray(signup_s, dtype=np.int64) + activation_delay_s, np.int64(start_s))


def p_alive_prior(mu, signup_s, t_s) -> np.ndarray:
    """P(alive at t) from the dropout rate alone ("rates only"): exp(-mu (t - signup)), 1 before signup."""
    age = (np.asarray(t_s, dtype=np.int64) - np.asarray(signup_s, dtype=np.int64)) / DAY_S
    return np.exp(-np.asarray(mu, dtype=float) * np.maximum(age, 0.0))


def p_alive_posterior(
    lam,
    mu,
    t_s,
    last_purchase_s,
    offset_s,
    *,
    signup_s,
    observed_from_s,
    steps_per_day: float = 4,
    cal: Calendar | None = None,
) -> np.ndarray:
    """Bayes posterior P(alive at t | lambda, mu, the purchases observed before t), per customer.

    With a last purchase at t_x < t the customer was alive at t_x; nothing was bought in (t_x, t], so with
    A = e^(-mu (t - t_x)) e^(-lambda (B(t) - B(t_x))) (survived, did not buy) and
    D = integral_{t_x}^{t} mu e^(-mu (s - t_x)) e^(-lambda (B(s) - B(t_x))) ds (dropped out at s before buying):
    P(alive) = A / (A + D). Without a purchase (`last_purchase_s` negative or NaN) the reference point is the
    start of observation o (`observed_from_s`, see `observation_start`) and the customer may have dropped out
    before it, which has prior weight 1 - p0 with p0 = e^(-mu (o - signup)): P(alive) = p0 A / (p0 (A + D) + 1 - p0).
    Customers who signed up at or after t get P(alive) = 1.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    n = lam.size
    mu = _vec(mu, n, float)
    t = _vec(t_s, n, np.int64)
    last = np.asarray(last_purchase_s, dtype=float)
    last = _vec(np.where(np.isfinite(last), last, -1.0), n, float)
    observed = _vec(observed_from_s, n, np.int64)
    signup = _vec(signup_s, n, np.int64)
    bought = (last >= 0) & (last < t)
    ref = np.where(bought, last, observed).astype(np.int64)
    ref = np.minimum(ref, t)
    p0 = np.where(bought, 1.0, p_alive_prior(mu, signup, ref))
    span = (t - ref) / DAY_S
    parts = dropout_integrals(lam, mu, ref, span, offset_s, steps_per_day=steps_per_day, cal=cal)
    a, d = parts["survive_no_purchase"], parts["drop_no_purchase"]
    with np.errstate(invalid="ignore", divide="ignore"):
        post = p0 * a / (p0 * (a + d) + (1.0 - p0))
    return np.where(signup >= t, 1.0, np.nan_to_num(post, nan=0.0))


def product_choice_probabilities(
    summary: dict,
    affinity: np.ndarray,
    spend_nu: np.ndarray,
    *,
    samples: int = 50_000,
    bins: int = 60,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """P(a purchase line of customer i is product j), from the latent parameters, the generator's own way.

    A line's category is drawn from `affinity` (rows normalised here); its target price is the order's
    Gamma(spend_p, spend_nu) value split over the lines and the quantity, with log-normal noise; the product is the
    one at the target's position in the category's price-sorted catalogue, moved by -2..2 places (model.make_orders).
    The price part depends on the customer only through spend_nu, so it is tabulated by Monte Carlo for `bins`
    quantile bins of log(spend_nu) and looked up. `summary` is the ground truth's summary.json (seed, start, days,
    customers, model_params: the catalogue is rebuilt from them). Returns (product ids in catalogue order, an
    n_customers x n_products float matrix whose rows sum to 1). The best any recommender can know about the next
    purchase, short of the random draws themselves.
    """
    from c360dev.generate.ids import product_ids
    from c360dev.generate.model import N_CATEGORIES, ModelParams, catalog_size, make_catalog

    p = ModelParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in summary["model_params"].items()})
    start_s = int(np.datetime64(summary["start"], "D").astype(np.int64)) * DAY_S
    cat = make_catalog(catalog_size(int(summary["customers"])), start_s, 1, int(summary["seed"]), p)
    base_eur = cat.price[0] / 100.0
    key_sorted = (np.repeat(np.arange(N_CATEGORIES), np.diff(cat.cat_offset)) * 100.0
                  + np.log(base_eur[cat.by_price]))

    rng = np.random.default_rng(seed)
    lines = 1 + rng.poisson(p.extra_lines_mean, samples)
    quantity = 1 + np.searchsorted(np.cumsum(p.quantity_probs)[:-1], rng.random(samples), side="right")
    # log(target price) + log(spend_nu): the same for every customer
    shape = (np.log(rng.gamma(p.spend_p, 1.0, samples)) - np.log(lines) - np.log(quantity)
             + p.price_noise_sigma * rng.standard_normal(samples))
    jitter = rng.integers(-2, 3, samples)

    log_nu = np.log(np.asarray(spend_nu, dtype=float))
    edges = np.quantile(log_nu, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, log_nu, side="right") - 1, 0, bins - 1)
    table = np.zeros((bins, cat.n))
    for b in np.unique(which):
        x = np.log(np.maximum(np.exp(shape - log_nu[which == b].mean()), 0.01))
        for c in range(N_CATEGORIES):
            lo, hi = cat.cat_offset[c], cat.cat_offset[c + 1] - 1
            if hi < lo:
                continue
            pos = np.clip(np.searchsorted(key_sorted, c * 100.0 + x) + jitter, lo, hi)
            table[b] += np.bincount(cat.by_price[pos], minlength=cat.n)
        table[b] /= samples
    theta = np.asarray(affinity, dtype=float)
    theta = theta / theta.sum(axis=1, keepdims=True)
    probs = theta[:, cat.category] * table[which]
    return np.asarray(product_ids(np.arange(cat.n)).to_pylist()), probs
