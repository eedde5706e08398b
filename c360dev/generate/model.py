"""The generative model of the synthetic shop: customers with latent behaviour, the catalogue, orders and their lines.

All of it is vectorised numpy over whole populations (no per-row Python). Times are int64 seconds since the Unix
epoch (UTC) unless a name says `_local` (UTC plus the customer's fixed offset). The model is documented, with its
parameters, in docs/generator.md; `ModelParams` holds every number that document refers to.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np

from c360dev.generate.calendar import DAY_S, Calendar, promo_boost
from c360dev.generate.reference import (
    ACQUISITION_CHANNELS,
    APP_BROWSER,
    CATEGORIES,
    COUNTRIES,
    CURRENCY_CODES,
    DEVICE_COMBOS,
    FIRST_NAMES,
    FX_PER_EUR,
    LAST_NAMES,
    PRODUCT_ADJECTIVES,
    shares,
)

N_CATEGORIES = len(CATEGORIES)


@dataclass(frozen=True)
class ModelParams:
    """Hyper-parameters of the generative model (rates are per weighted day, see calendar.py)."""

    base_share: float = 0.65  # share of customers who signed up before the start
    base_max_age_days: float = 1095.0  # their signup is uniform over this many days before the start
    activation_delay_s: int = 3600  # a new account shops and browses from one hour after signup
    lambda_shape: float = 0.9  # r:     lambda ~ Gamma(shape r, rate alpha)     purchases per weighted day
    lambda_rate: float = 110.0  # alpha (days): mean lambda = r / alpha ~ 3.0 orders per year
    mu_shape: float = 2.0  # s:     mu ~ Gamma(shape s, rate beta)               dropout hazard per day
    mu_rate: float = 1000.0  # beta (days): P(alive one year after signup) = (beta / (beta + 365))^s ~ 0.54
    spend_p: float = 6.0  # order target value z ~ Gamma(shape p, rate nu)    (EUR)
    spend_q: float = 4.0  # nu ~ Gamma(shape q, rate gamma): mean spend p / nu
    spend_gamma: float = 30.0
    affinity_concentration: float = 3.0  # Dirichlet(concentration * category share)
    extra_lines_mean: float = 1.2  # lines per order = 1 + Poisson(extra_lines_mean)
    quantity_probs: tuple[float, float, float] = (0.82, 0.13, 0.05)  # quantity 1, 2, 3
    price_noise_sigma: float = 0.35  # log-normal noise between a line's target price and the product picked
    promo_base: float = 0.15  # P(order has a promotion), plus calendar.promo_boost on sales days
    promo_pcts: tuple[float, ...] = (0.10, 0.15, 0.20, 0.25, 0.30)
    cancel_prob: float = 0.04
    cancel_delay_mean_h: float = 8.0  # cancelled 1 minute + Exponential(mean) later, at most 72 h
    return_delay_days: tuple[float, float, float] = (3.0, 2.0, 3.5)  # offset + Gamma(shape, scale) days
    store_share_beta: tuple[float, float] = (1.2, 7.0)  # per-customer share of store orders ~ Beta(a, b)
    tracked_share: float = 0.9  # web/app orders with a tracked session
    browse_shape: float = 2.0  # browse sessions per order (browse_ratio) ~ Gamma(shape, scale)
    browse_scale: float = 0.6
    login_prob_browse: float = 0.35
    cart_prob_browse: float = 0.30  # browse session with an abandoned cart
    remove_prob: float = 0.12  # a session with a cart also adds and removes one product
    anon_visitors_per_customer: float = 0.25  # never-registered visitors, 1 + Poisson(0.6) sessions each
    anon_extra_sessions_mean: float = 0.6
    shared_device_share: float = 0.01  # customers who also use a device of another customer
    devices_per_customer_probs: tuple[float, float, float] = (0.55, 0.33, 0.12)  # 1, 2, 3 own devices
    consent_at_signup: float = 0.55
    opt_in_mean_days: float = 1200.0  # time to opting in later ~ Exponential(mean)
    withdraw_mean_days: float = 1500.0  # time to withdrawing consent ~ Exponential(mean)
    email_change_mean_days: float = 4000.0
    price_change_prob: float = 0.003  # per product per day
    event_gap_s: tuple[float, float] = (3.0, 35.0)  # seconds between events: offset + Exponential(mean)
    # Real-retail mechanisms, all off by default so the default profile's files are unchanged (PROFILES["retail"]).
    # A customer is acquired by an order placed activation_delay_s after signup:
    first_purchase_at_signup: bool = False
    # Signups in the horizon come in blocks of this many days, each block's volume x LogNormal(0, sigma)
    # (campaign cohorts; 0 = smooth):
    acquisition_cohort_days: int = 30
    acquisition_cohort_sigma: float = 0.0
    # Each order's target value x LogNormal(-sigma^2 / 2, sigma): the mean is kept, the tail gets heavy:
    order_value_sigma: float = 0.0
    home_country: str = ""  # every customer from this country (one currency); "" = the COUNTRIES shares

    def as_dict(self) -> dict:
        return asdict(self)


# Named parameter sets for `c360 generate --profile`. "default" is the demo shop (frequent buyers, smooth growth,
# Gamma-Gamma order values). "retail" has the stylised facts of real purchase histories: most buyers buy once
# (about 60 % of the customers with an order in a two-year history), order values are heavy-tailed (log-normal
# on top of Gamma-Gamma), customers are acquired by their first order in campaign cohorts, gaps between orders
# are long (months) and most customers are silent in any 90-day window. docs/generator.md lists the numbers.
PROFILES: dict[str, ModelParams] = {
    "default": ModelParams(),
    "retail": ModelParams(
        base_share=0.3,
        lambda_shape=0.5,
        lambda_rate=110.0,
        mu_shape=1.0,
        mu_rate=250.0,
        spend_p=3.0,
        spend_q=3.0,
        spend_gamma=40.0,
        first_purchase_at_signup=True,
        acquisition_cohort_sigma=0.8,
        order_value_sigma=0.6,
        home_country="DE",
    ),
}


def profile_params(name: str) -> ModelParams:
    """The ModelParams of a named profile; the error lists the names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown generator profile {name!r}; choose one of {sorted(PROFILES)}") from None


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per model part, so e.g. --no-tracking leaves transactions unchanged."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def expand(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ranges [starts[i], starts[i] + counts[i]) without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    group_start = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(np.asarray(starts, dtype=np.int64), counts) + (np.arange(total) - group_start)


def pick(rng: np.random.Generator, probs: np.ndarray, size: int) -> np.ndarray:
    """Categorical draws with fixed probabilities (inverse CDF; cheaper than rng.choice for big sizes)."""
    cum = np.cumsum(probs)
    cum[-1] = 1.0
    return np.searchsorted(cum, rng.random(size), side="right").astype(np.int16)


@dataclass
class Customers:
    """One entry per customer, index i = customer number - 1 (ids are assigned in signup order)."""

    n: int
    signup: np.ndarray  # int64 UTC seconds
    country: np.ndarray  # index into COUNTRIES
    offset_s: np.ndarray  # int32, the country's UTC offset in seconds
    currency: np.ndarray  # index into CURRENCY_CODES
    acquisition: np.ndarray
    first_name: np.ndarray
    last_name: np.ndarray
    email_domain: np.ndarray
    lam: np.ndarray  # purchases per weighted day
    mu: np.ndarray  # dropout hazard per day
    churn: np.ndarray  # int64 UTC seconds when the customer dropped out (may be after the horizon)
    spend_nu: np.ndarray
    affinity: np.ndarray  # (n, N_CATEGORIES) float32, rows sum to 1
    browse_ratio: np.ndarray  # expected browse sessions per purchase
    store_share: np.ndarray
    consent0: np.ndarray  # consent at signup
    consent_change: np.ndarray  # int64 UTC seconds of the (single) consent flip in the horizon, -1 = none
    email_change: np.ndarray  # int64 UTC seconds of the email change in the horizon, -1 = none
    dev_start: np.ndarray  # first own device index
    dev_count: np.ndarray  # number of own devices
    shared_dev: np.ndarray  # index of another customer's device this customer also uses, -1 = none
    n_devices: int  # own devices of all customers (anonymous visitors' devices are numbered after them)
    device_combo: np.ndarray  # per own device: index into DEVICE_COMBOS


def make_customers(n: int, start_s: int, end_s: int, cal: Calendar, seed: int, p: ModelParams) -> Customers:
    """Draw the customer base: signups, demographics, latent behaviour, consent history and devices."""
    rng = rng_for(seed, "customers")
    n_base = int(round(n * p.base_share))
    n_new = n - n_base
    base = start_s - (3600 + rng.random(n_base) * (p.base_max_age_days * DAY_S - 3600)).astype(np.int64)
    # New signups follow the same seasonality as shopping (more on sales days, in the evening).
    lo, hi = cal.clock(np.array([start_s])), cal.clock(np.array([end_s]))
    new = cal.inverse(lo + rng.random(n_new) * (hi - lo))
    if p.acquisition_cohort_sigma > 0:
        new = cohort_signups(n_new, start_s, end_s, cal, seed, p)
    new = np.clip(new, start_s, end_s - 1)
    signup = np.sort(np.concatenate([base, new]).astype(np.int64))

    country = pick(rng, shares(COUNTRIES), n)
    if p.home_country:
        home = [c[0] for c in COUNTRIES].index(p.home_country)  # ValueError names an unknown country
        country = np.full(n, home, dtype=country.dtype)
    offsets = np.array([c[2] * 60 for c in COUNTRIES], dtype=np.int32)
    cur_of_country = np.array([CURRENCY_CODES.index(c[1]) for c in COUNTRIES], dtype=np.int8)
    acquisition = pick(rng, shares(ACQUISITION_CHANNELS), n)
    first_name = rng.integers(0, len(FIRST_NAMES), n).astype(np.int16)
    last_name = rng.integers(0, len(LAST_NAMES), n).astype(np.int16)
    email_domain = rng.integers(0, 5, n).astype(np.int8)

    lam = rng.gamma(p.lambda_shape, 1.0 / p.lambda_rate, n)
    mu = rng.gamma(p.mu_shape, 1.0 / p.mu_rate, n)
    lifetime_days = np.minimum(rng.exponential(1.0, n) / mu, 200 * 365.0)
    churn = signup + (lifetime_days * DAY_S).astype(np.int64)
    if p.first_purchase_at_signup:
        # Acquired by an order: alive when placing it (the lifetime counts from then on, memorylessly).
        churn = churn + p.activation_delay_s + 1
    spend_nu = rng.gamma(p.spend_q, 1.0 / p.spend_gamma, n)
    alpha = p.affinity_concentration * shares(CATEGORIES, 1)
    g = rng.gamma(np.broadcast_to(alpha, (n, N_CATEGORIES)))
    affinity = (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
    browse_ratio = rng.gamma(p.browse_shape, p.browse_scale, n)
    store_share = rng.beta(*p.store_share_beta, n)

    consent0 = rng.random(n) < p.consent_at_signup
    since = np.maximum(signup, start_s)
    wait_days = rng.exponential(1.0, n) * np.where(consent0, p.withdraw_mean_days, p.opt_in_mean_days)
    consent_change = since + (np.minimum(wait_days, 1e5) * DAY_S).astype(np.int64)
    consent_change = np.where(consent_change < end_s, consent_change, -1)
    email_wait = np.minimum(rng.exponential(p.email_change_mean_days, n), 1e5)
    email_change = since + (email_wait * DAY_S).astype(np.int64)
    # Two changes in the same second would give two versions with one updated_at: keep them apart.
    email_change = np.where(email_change == consent_change, email_change + 1, email_change)
    email_change = np.where(email_change < end_s, email_change, -1)

    dev_count = (pick(rng, np.array(p.devices_per_customer_probs), n) + 1).astype(np.int8)
    dev_start = np.cumsum(dev_count, dtype=np.int64) - dev_count
    n_devices = int(dev_count.sum())
    # Households: a few customers also use the first device of the next customer (by id), so cookies are shared.
    shared = rng.random(n) < p.shared_device_share
    partner = (np.arange(n) + 1) % max(n, 1)
    shared_dev = np.where(shared & (partner != np.arange(n)), dev_start[partner], -1)
    device_combo = pick(rng, shares(DEVICE_COMBOS), n_devices)

    return Customers(
        n=n,
        signup=signup,
        country=country,
        offset_s=offsets[country],
        currency=cur_of_country[country],
        acquisition=acquisition,
        first_name=first_name,
        last_name=last_name,
        email_domain=email_domain,
        lam=lam,
        mu=mu,
        churn=churn,
        spend_nu=spend_nu,
        affinity=affinity,
        browse_ratio=browse_ratio,
        store_share=store_share,
        consent0=consent0,
        consent_change=consent_change,
        email_change=email_change,
        dev_start=dev_start,
        dev_count=dev_count,
        shared_dev=shared_dev,
        n_devices=n_devices,
        device_combo=device_combo,
    )


def cohort_signups(
    n_new: int, start_s: int, end_s: int, cal: Calendar, seed: int, p: ModelParams
) -> np.ndarray:
    """Signup times in the horizon, in cohorts: each block of acquisition_cohort_days gets its seasonal share times
    a LogNormal(0, acquisition_cohort_sigma) campaign factor; within a block, signups follow the seasonality.

    A separate random stream, so the default profile (sigma 0) draws exactly what it always drew.
    """
    rng = rng_for(seed, "cohorts")
    block_s = max(1, int(p.acquisition_cohort_days)) * DAY_S
    edges = np.append(np.arange(start_s, end_s, block_s, dtype=np.int64), end_s)
    clock = cal.clock(edges)
    span = np.diff(clock)
    weight = span * rng.lognormal(0.0, p.acquisition_cohort_sigma, span.size)
    block = np.searchsorted(np.cumsum(weight) / weight.sum(), rng.random(n_new), side="right")
    block = np.minimum(block, span.size - 1)
    return cal.inverse(clock[block] + rng.random(n_new) * span[block])


def active_window(c: Customers, start_s: int, end_s: int, p: ModelParams) -> tuple[np.ndarray, np.ndarray]:
    """[a, b) in UTC seconds in which each customer shops and browses inside the horizon (a >= b: never)."""
    a = np.maximum(c.signup + p.activation_delay_s, start_s)
    b = np.minimum(c.churn, end_s)
    return a, np.maximum(a, b)


@dataclass
class Catalog:
    """Products (index = product number - 1) and their EUR price in cents on every day of the horizon."""

    category: np.ndarray
    subcategory: np.ndarray  # index into the flat list of (category, subcategory)
    brand: np.ndarray  # index into the flat list of brands
    name: list[str]
    created: np.ndarray  # int64 UTC seconds
    price: np.ndarray  # (days, n_products) int64 cents EUR, the list price valid on each UTC day
    changes: tuple[np.ndarray, np.ndarray]  # (day index, product) of every price change, sorted by day
    by_price: np.ndarray  # product indices sorted by (category, base price)
    cat_offset: np.ndarray  # by_price[cat_offset[c]:cat_offset[c + 1]] are category c's products

    @property
    def n(self) -> int:
        return self.category.size


def catalog_size(customers: int) -> int:
    return int(min(8000, max(300, 200 + 5 * np.sqrt(customers))))


def flat_subcategories() -> list[tuple[int, str]]:
    return [(ci, s) for ci, c in enumerate(CATEGORIES) for s in c[5]]


def flat_brands() -> list[tuple[int, str]]:
    return [(ci, b) for ci, c in enumerate(CATEGORIES) for b in c[6]]


def to_price_cents(eur: np.ndarray) -> np.ndarray:
    """Shop-style prices: x.99 above 5 EUR, x.x9 below."""
    eur = np.asarray(eur, dtype=float)
    high = np.maximum(np.round(eur), 6) * 100 - 1
    low = np.maximum(np.round(eur * 10), 5) * 10 - 1
    return np.where(eur >= 5.5, high, low).astype(np.int64)


def make_catalog(n_products: int, start_s: int, days: int, seed: int, p: ModelParams) -> Catalog:
    rng = rng_for(seed, "catalog")
    category = pick(rng, shares(CATEGORIES, 1), n_products)
    subs, brands = flat_subcategories(), flat_brands()
    sub_off = np.cumsum([0] + [len(c[5]) for c in CATEGORIES])
    brand_off = np.cumsum([0] + [len(c[6]) for c in CATEGORIES])
    sub_n = np.diff(sub_off)[category]
    brand_n = np.diff(brand_off)[category]
    subcategory = (sub_off[category] + (rng.random(n_products) * sub_n).astype(int)).astype(np.int16)
    # Brands are Zipf-like within a category: the first brands carry most of the range.
    brand = brand_off[category] + np.minimum(
        (rng.random(n_products) ** 1.6 * brand_n).astype(int), brand_n - 1
    )
    median = np.array([c[2] for c in CATEGORIES])[category]
    sigma = np.array([c[3] for c in CATEGORIES])[category]
    base = to_price_cents(median * np.exp(sigma * rng.standard_normal(n_products)))
    adjective = rng.integers(0, len(PRODUCT_ADJECTIVES), n_products)
    model_no = rng.integers(10, 999, n_products)
    name = [
        f"{brands[b][1]} {subs[s][1]} {PRODUCT_ADJECTIVES[a]} {m}"
        for b, s, a, m in zip(
            brand.tolist(), subcategory.tolist(), adjective.tolist(), model_no.tolist(), strict=True
        )
    ]
    created = start_s - (DAY_S + rng.random(n_products) * 730 * DAY_S).astype(np.int64)

    # Price changes take effect at 00:00 UTC of their day (the day's products file carries them).
    change = rng.random((days, n_products)) < p.price_change_prob
    change[0] = False
    factor = np.where(change, rng.uniform(0.85, 1.15, (days, n_products)), 1.0)
    price = np.empty((days, n_products), dtype=np.int64)
    current = base.astype(float) / 100
    for d in range(days):  # one vectorised step per day: days is small (hundreds)
        changed = change[d]
        if changed.any():
            current = np.where(changed, to_price_cents(current * factor[d]) / 100, current)
        price[d] = np.round(current * 100).astype(np.int64)
    change_day, change_product = np.nonzero(change)
    order = np.lexsort((base, category))
    cat_offset = np.searchsorted(category[order], np.arange(N_CATEGORIES + 1))
    return Catalog(
        category=category,
        subcategory=subcategory,
        brand=brand.astype(np.int16),
        name=name,
        created=created,
        price=price,
        changes=(change_day, change_product),
        by_price=order,
        cat_offset=cat_offset,
    )


@dataclass
class Orders:
    """Orders sorted by time (order number = index + 1) and their lines (grouped by order)."""

    customer: np.ndarray  # int32
    ordered_at: np.ndarray  # int64 UTC seconds
    channel: np.ndarray  # 0 web, 1 app, 2 store
    device: np.ndarray  # device used for web/app orders, -1 for store
    tracked: np.ndarray  # bool: a tracking session ends with this order's purchase
    cancelled_at: np.ndarray  # int64, -1 = not cancelled (within the horizon)
    target_value: np.ndarray  # EUR, the Gamma-Gamma draw z
    line_start: np.ndarray
    line_count: np.ndarray
    # lines
    line_order: np.ndarray
    line_no: np.ndarray  # 1-based line_id
    product: np.ndarray
    quantity: np.ndarray
    unit_cents: np.ndarray  # in the customer's currency
    discount_cents: np.ndarray
    returned_at: np.ndarray  # int64, -1 = not returned within the horizon
    return_quantity: np.ndarray

    @property
    def n(self) -> int:
        return self.customer.size


CHANNELS = ["web", "app", "store"]


def make_orders(
    c: Customers, cat: Catalog, start_s: int, end_s: int, cal: Calendar, seed: int, p: ModelParams
):
    """Purchases of every customer (Poisson with seasonality while alive), their baskets, cancellations, returns."""
    rng = rng_for(seed, "orders")
    a, b = active_window(c, start_s, end_s, p)
    off = c.offset_s.astype(np.int64)
    owner, t_local = cal.sample(rng, a + off, b + off, c.lam)
    t = t_local - off[owner]
    if p.first_purchase_at_signup:
        # The acquisition order of every customer who signs up in the horizon (the base's was before the start).
        first = c.signup + p.activation_delay_s
        new = np.nonzero((first >= start_s) & (first < end_s))[0]
        owner = np.concatenate([owner, new])
        t = np.concatenate([t, first[new]])
    order = np.lexsort((owner, t))
    owner, t = owner[order].astype(np.int32), t[order]
    m = owner.size

    # Channel: store with the customer's store share, else one of the customer's devices (app or browser).
    is_app_combo = np.array([d[2] == APP_BROWSER for d in DEVICE_COMBOS])
    store = rng.random(m) < c.store_share[owner]
    device = pick_device(rng, c, owner)
    channel = np.where(store, 2, np.where(is_app_combo[c.device_combo[device]], 1, 0)).astype(np.int8)
    device = np.where(store, -1, device)
    tracked = (~store) & (rng.random(m) < p.tracked_share)
    z = rng.gamma(p.spend_p, 1.0 / c.spend_nu[owner])
    if p.order_value_sigma > 0:
        sigma = p.order_value_sigma
        z = z * rng_for(seed, "order-value").lognormal(-sigma * sigma / 2, sigma, m)

    cancel_delay = 60 + np.minimum(rng.exponential(p.cancel_delay_mean_h * 3600, m), 72 * 3600).astype(
        np.int64
    )
    cancelled_at = np.where(
        (rng.random(m) < p.cancel_prob) & (t + cancel_delay < end_s), t + cancel_delay, -1
    )

    # Lines: category from the customer's affinities, product near the line's share of the target value.
    line_count = (1 + rng.poisson(p.extra_lines_mean, m)).astype(np.int16)
    line_start = np.cumsum(line_count, dtype=np.int64) - line_count
    line_order = np.repeat(np.arange(m, dtype=np.int32), line_count)
    n_lines = line_order.size
    line_no = (np.arange(n_lines) - line_start[line_order] + 1).astype(np.int16)
    cust = owner[line_order]
    cum = np.cumsum(c.affinity[cust], axis=1)
    category = (cum < rng.random(n_lines)[:, None] * cum[:, -1:]).sum(axis=1).clip(0, N_CATEGORIES - 1)
    del cum
    quantity = (pick(rng, np.array(p.quantity_probs), n_lines) + 1).astype(np.int16)
    target = z[line_order] / line_count[line_order] / quantity
    target = target * np.exp(p.price_noise_sigma * rng.standard_normal(n_lines))
    base_eur = cat.price[0, cat.by_price] / 100.0
    key_sorted = np.repeat(np.arange(N_CATEGORIES), np.diff(cat.cat_offset)) * 100.0 + np.log(base_eur)
    pos = np.searchsorted(key_sorted, category * 100.0 + np.log(np.maximum(target, 0.01)))
    pos = pos + rng.integers(-2, 3, n_lines)
    pos = np.clip(pos, cat.cat_offset[category], cat.cat_offset[category + 1] - 1)
    product = cat.by_price[pos].astype(np.int32)

    day = np.clip((t[line_order] - start_s) // DAY_S, 0, cat.price.shape[0] - 1)
    fx = np.array([FX_PER_EUR.get(code, 1.0) for code in CURRENCY_CODES])
    unit_cents = np.round(cat.price[day, product] * fx[c.currency[cust]]).astype(np.int64)
    promo_p = p.promo_base + promo_boost(t // DAY_S)
    promo = rng.random(m) < promo_p
    pct = np.where(promo, np.array(p.promo_pcts)[rng.integers(0, len(p.promo_pcts), m)], 0.0)
    discount_cents = np.round(quantity * unit_cents * pct[line_order]).astype(np.int64)

    # Returns: per line of an order that was not cancelled, at the category's rate, some days later.
    return_rate = np.array([cc[4] for cc in CATEGORIES])[category]
    delay = p.return_delay_days[0] + rng.gamma(p.return_delay_days[1], p.return_delay_days[2], n_lines)
    returned_at = t[line_order] + (delay * DAY_S).astype(np.int64)
    returned = (rng.random(n_lines) < return_rate) & (cancelled_at[line_order] < 0) & (returned_at < end_s)
    returned_at = np.where(returned, returned_at, -1)
    partial = rng.integers(1, 4, n_lines)
    return_quantity = np.where(returned, np.minimum(partial, quantity), 0).astype(np.int16)

    return Orders(
        customer=owner,
        ordered_at=t,
        channel=channel,
        device=device,
        tracked=tracked,
        cancelled_at=cancelled_at,
        target_value=z,
        line_start=line_start,
        line_count=line_count,
        line_order=line_order,
        line_no=line_no,
        product=product,
        quantity=quantity,
        unit_cents=unit_cents,
        discount_cents=discount_cents,
        returned_at=returned_at,
        return_quantity=return_quantity,
    )


def pick_device(rng: np.random.Generator, c: Customers, owner: np.ndarray) -> np.ndarray:
    """A device of each owner: one of their own, or (for household customers) the shared one."""
    has_shared = c.shared_dev[owner] >= 0
    choices = c.dev_count[owner].astype(np.int64) + has_shared
    k = (rng.random(owner.size) * choices).astype(np.int64)
    own = c.dev_start[owner] + k
    return np.where(k >= c.dev_count[owner], c.shared_dev[owner], own)
