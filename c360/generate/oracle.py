"""Reference ("oracle") answers from the generator's latent parameters, for judging the pipeline's models.

They use only what the ground truth stores (lambda, mu, churn_at, the UTC offset) and the calendar formulas in
calendar.py, exactly as docs/generator.md states them. Nothing in the pipeline may import this module.
"""

from __future__ import annotations

import numpy as np

from c360.generate.calendar import DAY_S, Calendar


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
    """P(no purchase in (t, t + H]) per customer, given lambda, mu and whether the customer is alive at t.

    Alive: integral over s in [0, H] of mu e^(-mu s) e^(-lambda dB(s)) ds + e^(-mu H) e^(-lambda dB(H)),
    with dB(s) = B(t + s) - B(t) (the customer either drops out at s before buying, or survives the window
    without buying). Not alive: 1. Integrated with the trapezoid rule on `steps_per_day` points a day.
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    n = lam.size
    t = np.broadcast_to(np.asarray(t_s, dtype=np.int64), (n,))
    off = np.broadcast_to(np.asarray(offset_s, dtype=np.int64), (n,))
    alive = np.broadcast_to(np.asarray(alive, dtype=bool), (n,))
    steps = max(1, int(round(horizon_days * steps_per_day)))
    s_days = np.linspace(0.0, horizon_days, steps + 1)
    s_secs = (s_days * DAY_S).astype(np.int64)
    cal = cal or calendar_for(int(t.min()), int(t.max()) + int(horizon_days * DAY_S) + DAY_S)
    out = np.ones(n)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        local = (t[lo:hi] + off[lo:hi])[:, None]
        db = cal.clock(local + s_secs[None, :]) - cal.clock(local)
        m = mu[lo:hi, None]
        integrand = m * np.exp(-m * s_days[None, :] - lam[lo:hi, None] * db)
        integral = np.trapezoid(integrand, s_days, axis=1)
        survive = np.exp(-mu[lo:hi] * horizon_days - lam[lo:hi] * db[:, -1])
        out[lo:hi] = np.where(alive[lo:hi], integral + survive, 1.0)
    return out
