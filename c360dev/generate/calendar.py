"""Seasonality of the synthetic shop: a weight per calendar day and per hour, and the "business clock" built on them.

Every purchase and browsing process is a Poisson process whose intensity at local time t is
`rate * day_weight(local date of t) * 24 * hour_share(local hour of t)`. The business clock B(t) is the integral
of `day_weight * 24 * hour_share` (in days), so the expected number of events of a process with rate r in
[t0, t1) is `r * (B(t1) - B(t0))`. docs/generator.md states the same formulas for oracles.
"""

from __future__ import annotations

import numpy as np

from c360dev.generate.reference import HOUR_PROFILE, WEEKDAY_FACTORS

DAY_S = 86_400
HOUR_SHARE = HOUR_PROFILE / HOUR_PROFILE.sum()
HOUR_CUM = np.concatenate([[0.0], np.cumsum(HOUR_SHARE)])
HOUR_CUM[-1] = 1.0


def black_friday(year: int) -> np.datetime64:
    """The day after the fourth Thursday of November."""
    nov1 = np.datetime64(f"{year}-11-01")
    weekday = (nov1.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday = 0
    first_thursday = nov1 + np.timedelta64((3 - weekday) % 7, "D")
    return first_thursday + np.timedelta64(22, "D")


def day_weight(unix_days: np.ndarray) -> np.ndarray:
    """Relative shopping activity of each calendar day (days since 1970-01-01); about 1 on an ordinary day."""
    unix_days = np.asarray(unix_days, dtype=np.int64)
    dates = unix_days.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]")
    doy = (dates - years).astype(np.int64)  # 0-based day of year
    month = (dates.astype("datetime64[M]") - years.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    weekday = (unix_days + 3) % 7

    w = WEEKDAY_FACTORS[weekday] * (1.0 + 0.12 * np.cos(2 * np.pi * (doy - 345) / 365.25))
    # Sales events: Black Friday week, Cyber Monday, pre-Christmas, the quiet holidays, January and summer sales.
    for year in np.unique(years.astype(np.int64) + 1970):
        bf = black_friday(int(year)).astype(np.int64)
        w = np.where((unix_days >= bf - 4) & (unix_days <= bf + 2), w * 1.4, w)
        w = np.where(unix_days == bf, w * (2.6 / 1.4), w)
        w = np.where(unix_days == bf + 3, w * 1.9, w)
    w = np.where((month == 12) & (dom >= 1) & (dom <= 20), w * 1.25, w)
    w = np.where((month == 12) & (dom >= 24) & (dom <= 26), w * 0.55, w)
    w = np.where(((month == 12) & (dom == 31)) | ((month == 1) & (dom == 1)), w * 0.7, w)
    w = np.where((month == 1) & (dom >= 2) & (dom <= 15), w * 1.15, w)
    w = np.where((month == 7) & (dom <= 10), w * 1.1, w)
    return w


def promo_boost(unix_days: np.ndarray) -> np.ndarray:
    """Extra probability that an order carries a promotion discount on this day (sales periods)."""
    unix_days = np.asarray(unix_days, dtype=np.int64)
    dates = unix_days.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]")
    month = (dates.astype("datetime64[M]") - years.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    boost = np.zeros(unix_days.shape)
    for year in np.unique(years.astype(np.int64) + 1970):
        bf = black_friday(int(year)).astype(np.int64)
        boost = np.where((unix_days >= bf - 4) & (unix_days <= bf + 3), 0.45, boost)
    boost = np.where((month == 1) & (dom >= 2) & (dom <= 15), np.maximum(boost, 0.25), boost)
    boost = np.where((month == 7) & (dom <= 10), np.maximum(boost, 0.2), boost)
    return boost


def period_label(unix_days: np.ndarray) -> list[str]:
    """Campaign period of each day: 'black_friday_2025', 'xmas_2025' or 'YYYY_MM'."""
    unix_days = np.asarray(unix_days, dtype=np.int64)
    dates = unix_days.astype("datetime64[D]")
    labels = [str(d)[:7].replace("-", "_") for d in dates]
    for i, d in enumerate(unix_days):
        year = int(str(dates[i])[:4])
        bf = int(black_friday(year).astype(np.int64))
        text = str(dates[i])
        if bf - 4 <= d <= bf + 3:
            labels[i] = f"black_friday_{year}"
        elif text[5:7] == "12" and int(text[8:10]) <= 24:
            labels[i] = f"xmas_{year}"
    return labels


class Calendar:
    """Day weights over a range of days and the business clock B(t) over local timestamps in that range."""

    def __init__(self, first_day: int, last_day: int):
        self.first_day = int(first_day)
        self.days = np.arange(first_day, last_day + 1, dtype=np.int64)
        self.weight = day_weight(self.days)
        self.cum = np.concatenate([[0.0], np.cumsum(self.weight)])

    def clock(self, t_local: np.ndarray) -> np.ndarray:
        """B(t) in weighted days since the start of the range, for local timestamps in seconds."""
        t_local = np.asarray(t_local, dtype=np.int64)
        day = t_local // DAY_S
        k = np.clip(day - self.first_day, 0, self.weight.size - 1)
        hours = (t_local - day * DAY_S) / 3600.0
        h = np.minimum(hours.astype(np.int64), 23)
        within = HOUR_CUM[h] + (hours - h) * HOUR_SHARE[h]
        return self.cum[k] + self.weight[k] * within

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """Local timestamps (whole seconds) t with B(t) = u."""
        k = np.clip(np.searchsorted(self.cum, u, side="right") - 1, 0, self.weight.size - 1)
        f = np.clip((u - self.cum[k]) / self.weight[k], 0.0, 1.0 - 1e-12)
        h = np.clip(np.searchsorted(HOUR_CUM, f, side="right") - 1, 0, 23)
        seconds = (h + (f - HOUR_CUM[h]) / HOUR_SHARE[h]) * 3600.0
        return (self.first_day + k) * DAY_S + np.minimum(seconds.astype(np.int64), DAY_S - 1)

    def sample(self, rng: np.random.Generator, a_local: np.ndarray, b_local: np.ndarray, rate: np.ndarray):
        """Events of independent Poisson processes with intensity rate_i * seasonality on [a_i, b_i).

        Returns (owner index i per event, local timestamp per event), grouped by owner.
        """
        lo = self.clock(a_local)
        hi = self.clock(b_local)
        span = np.maximum(hi - lo, 0.0)
        counts = rng.poisson(rate * span)
        owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        u = lo[owner] + rng.random(owner.size) * span[owner]
        t = self.inverse(u)
        t = np.clip(t, a_local[owner], b_local[owner] - 1)
        return owner, t
