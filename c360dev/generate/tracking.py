"""Web/app tracking of the synthetic shop: visitors' devices, sessions and the events inside them.

A session belongs to one device (cookie = anonymous_id). Purchase sessions end with checkout + purchase at the
exact second of their order; browse sessions (some with an abandoned cart) start at a Poisson time while the
customer is alive; never-registered visitors add anonymous sessions. Events before the login event of a
session carry no customer_id. Built vectorised, in chunks of sessions to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from c360.ingest.contract import EVENT_TYPES as CONTRACT_EVENT_TYPES
from c360dev.generate.calendar import Calendar
from c360dev.generate.model import (
    N_CATEGORIES,
    Catalog,
    Customers,
    ModelParams,
    Orders,
    active_window,
    expand,
    flat_brands,
    flat_subcategories,
    pick,
    pick_device,
    rng_for,
)
from c360dev.generate.reference import (
    CATEGORIES,
    CHECKOUT_PAGE,
    CONFIRMATION_PAGE,
    COUNTRIES,
    DEVICE_COMBOS,
    GENERIC_QUERIES,
    LOGIN_PAGE,
    STATIC_PAGES,
    TRAFFIC_SOURCES,
    shares,
)

# The landing contract owns the vocabulary; the codes below index into it in this order.
EVENT_TYPES = list(CONTRACT_EVENT_TYPES)
PAGE_VIEW, PRODUCT_VIEW, SEARCH, ADD_TO_CART, REMOVE_FROM_CART, CHECKOUT, PURCHASE, LOGIN = range(8)
# page index of each page_url that is not a product or search page
PAGES = STATIC_PAGES + [LOGIN_PAGE, CHECKOUT_PAGE, CONFIRMATION_PAGE]
LOGIN_PAGE_IX, CHECKOUT_PAGE_IX, CONFIRMATION_PAGE_IX = (
    len(STATIC_PAGES),
    len(STATIC_PAGES) + 1,
    len(STATIC_PAGES) + 2,
)
SESSION_PURCHASE, SESSION_BROWSE, SESSION_ANONYMOUS = 0, 1, 2
CHUNK_SESSIONS = 400_000


def search_vocabulary() -> tuple[list[str], np.ndarray]:
    """Search terms (subcategories and brands of each category, then generic ones) and each category's slice."""
    subs, brands = flat_subcategories(), flat_brands()
    vocab: list[str] = []
    offsets = [0]
    for ci in range(N_CATEGORIES):
        vocab += [s.lower() for c, s in subs if c == ci] + [b.lower() for c, b in brands if c == ci]
        offsets.append(len(vocab))
    vocab += GENERIC_QUERIES
    return vocab, np.array(offsets)


@dataclass
class Sessions:
    customer: np.ndarray  # int32, -1 for anonymous visitors
    device: np.ndarray  # int64 device index (anonymous_id)
    offset_s: np.ndarray  # int32 UTC offset of the visitor
    anchor: np.ndarray  # int64: purchase time for purchase sessions, start time for the others
    kind: np.ndarray  # SESSION_*
    order: np.ndarray  # int32 order index for purchase sessions, else -1
    source: np.ndarray  # index into TRAFFIC_SOURCES
    lo: np.ndarray  # int64: events before this instant are not tracked (horizon start, signup)

    @property
    def n(self) -> int:
        return self.customer.size


@dataclass
class Events:
    session: np.ndarray  # int32
    etype: np.ndarray  # int8, index into EVENT_TYPES
    t: np.ndarray  # int64 UTC seconds
    customer: np.ndarray  # int32, -1 before login / anonymous
    product: np.ndarray  # int32, -1 = none
    quantity: np.ndarray  # int8, 0 = none
    query: np.ndarray  # int16 index into the search vocabulary, -1 = none
    page: np.ndarray  # int8 index into PAGES, -1 = product or search page
    entry: np.ndarray  # bool: the session's landing event (carries referrer and utm fields)

    @property
    def n(self) -> int:
        return self.t.size


@dataclass
class Devices:
    combo: np.ndarray  # per device (customers' devices, then anonymous visitors' devices)
    n_customer_devices: int


def make_sessions(
    c: Customers, o: Orders, start_s: int, end_s: int, cal: Calendar, seed: int, p: ModelParams
):
    """All sessions: one per tracked web/app order, browse sessions of customers, anonymous visitors' sessions."""
    rng = rng_for(seed, "sessions")
    # Purchase sessions, anchored at the order time.
    po = np.nonzero(o.tracked)[0]
    p_cust = o.customer[po]
    # Browse sessions: a Poisson process at rate lambda * browse_ratio while the customer is alive.
    a, b = active_window(c, start_s, end_s, p)
    off = c.offset_s.astype(np.int64)
    b_cust, t_local = cal.sample(rng, a + off, b + off, c.lam * c.browse_ratio)
    b_cust = b_cust.astype(np.int32)
    b_start = t_local - off[b_cust]
    b_dev = pick_device(rng, c, b_cust)
    # Anonymous visitors: one device each, 1 + Poisson sessions spread over the horizon by seasonality.
    n_vis = int(round(p.anon_visitors_per_customer * c.n))
    vis_country = pick(rng, shares(COUNTRIES), n_vis)
    vis_off = np.array([x[2] * 60 for x in COUNTRIES], dtype=np.int64)[vis_country]
    vis_sessions = 1 + rng.poisson(p.anon_extra_sessions_mean, n_vis)
    vis = np.repeat(np.arange(n_vis), vis_sessions)
    lo_b, hi_b = cal.clock(start_s + vis_off[vis]), cal.clock(end_s + vis_off[vis])
    a_local = cal.inverse(lo_b + rng.random(vis.size) * (hi_b - lo_b))
    a_start = np.clip(a_local - vis_off[vis], start_s, end_s - 1)
    devices = Devices(
        combo=np.concatenate([c.device_combo, pick(rng, shares(DEVICE_COMBOS), n_vis)]),
        n_customer_devices=c.n_devices,
    )

    n_p, n_b, n_a = po.size, b_cust.size, vis.size
    customer = np.concatenate([p_cust, b_cust, np.full(n_a, -1, np.int32)]).astype(np.int32)
    signup_lo = np.maximum(c.signup, start_s)
    sessions = Sessions(
        customer=customer,
        device=np.concatenate([o.device[po], b_dev, c.n_devices + vis]).astype(np.int64),
        offset_s=np.concatenate([c.offset_s[p_cust], c.offset_s[b_cust], vis_off[vis]]).astype(np.int32),
        anchor=np.concatenate([o.ordered_at[po], b_start, a_start]).astype(np.int64),
        kind=np.concatenate(
            [np.full(n_p, SESSION_PURCHASE), np.full(n_b, SESSION_BROWSE), np.full(n_a, SESSION_ANONYMOUS)]
        ).astype(np.int8),
        order=np.concatenate([po, np.full(n_b + n_a, -1)]).astype(np.int32),
        source=pick(rng, shares(TRAFFIC_SOURCES), n_p + n_b + n_a).astype(np.int8),
        lo=np.concatenate([signup_lo[p_cust], signup_lo[b_cust], np.full(n_a, start_s)]).astype(np.int64),
    )
    return sessions, devices


def make_events(
    s: Sessions, c: Customers, o: Orders, cat: Catalog, end_s: int, seed: int, p: ModelParams, progress=None
) -> Events:
    """The events of all sessions, chunk by chunk, in session order and time order within a session."""
    rng = rng_for(seed, "events")
    vocab, vocab_off = search_vocabulary()
    population = shares(CATEGORIES, 1).astype(np.float32)
    parts = [
        _chunk_events(rng, s, 0, 0, c, o, cat, end_s, p, population, len(vocab), vocab_off)
    ]  # typed empty
    for lo in range(0, s.n, CHUNK_SESSIONS):
        hi = min(s.n, lo + CHUNK_SESSIONS)
        parts.append(_chunk_events(rng, s, lo, hi, c, o, cat, end_s, p, population, len(vocab), vocab_off))
        if progress:
            progress(hi, s.n)
    return Events(*[np.concatenate([getattr(x, f) for x in parts]) for f in Events.__dataclass_fields__])


def _chunk_events(
    rng,
    s: Sessions,
    lo: int,
    hi: int,
    c: Customers,
    o: Orders,
    cat: Catalog,
    end_s: int,
    p: ModelParams,
    population: np.ndarray,
    n_vocab: int,
    vocab_off: np.ndarray,
) -> Events:
    n = hi - lo
    kind = s.kind[lo:hi]
    cust = s.customer[lo:hi]
    is_purchase = kind == SESSION_PURCHASE
    is_browse = kind == SESSION_BROWSE
    sid = np.arange(n, dtype=np.int64)

    blocks: list[tuple] = []  # (session, event type, sort key, product, quantity, query, page)

    def add(sess, etype, key, product=None, qty=None, query=None, page=None):
        m = sess.size
        blocks.append(
            (
                sess,
                np.full(m, etype, np.int8),
                key,
                np.full(m, -1, np.int32) if product is None else product.astype(np.int32),
                np.zeros(m, np.int8) if qty is None else qty.astype(np.int8),
                np.full(m, -1, np.int16) if query is None else query.astype(np.int16),
                np.full(m, -1, np.int8) if page is None else page.astype(np.int8),
            )
        )

    def category_of(sess):
        # Customers browse their affinity categories; anonymous visitors follow the population shares.
        cu = cust[sess]
        aff = np.where((cu >= 0)[:, None], c.affinity[np.maximum(cu, 0)], population)
        cum = np.cumsum(aff, axis=1)
        return (cum < rng.random(sess.size)[:, None] * cum[:, -1:]).sum(axis=1).clip(0, N_CATEGORIES - 1)

    def product_in(category):
        size = np.diff(cat.cat_offset)[category]
        return cat.by_price[cat.cat_offset[category] + (rng.random(category.size) * size).astype(np.int64)]

    # Landing page view (key 0: always first), further page views, a search, browsed products.
    add(
        sid,
        PAGE_VIEW,
        np.zeros(n),
        page=np.where(rng.random(n) < 0.5, 0, rng.integers(1, len(STATIC_PAGES), n)),
    )
    pv = np.repeat(sid, rng.poisson(np.where(is_purchase, 0.4, 1.0)))
    add(pv, PAGE_VIEW, rng.uniform(0.02, 0.85, pv.size), page=rng.integers(0, len(STATIC_PAGES), pv.size))
    se = sid[rng.random(n) < np.where(is_purchase, 0.3, 0.35)]
    se_cat = category_of(se)
    generic = rng.random(se.size) < 0.1
    term = vocab_off[se_cat] + (rng.random(se.size) * np.diff(vocab_off)[se_cat]).astype(np.int64)
    query = np.where(generic, vocab_off[-1] + rng.integers(0, n_vocab - vocab_off[-1], se.size), term)
    add(se, SEARCH, rng.uniform(0.02, 0.6, se.size), query=query)
    bp = np.repeat(sid, rng.poisson(np.where(is_purchase, 0.6, np.where(is_browse, 1.5, 1.2))))
    add(bp, PRODUCT_VIEW, rng.uniform(0.05, 0.85, bp.size), product=product_in(category_of(bp)))

    # The order's lines: viewed, then added to the cart with the ordered quantity.
    ps = sid[is_purchase]
    orders = s.order[lo:hi][ps]
    lines = expand(o.line_start[orders], o.line_count[orders])
    ls = np.repeat(ps, o.line_count[orders])
    k = rng.uniform(0.05, 0.85, ls.size)
    add(ls, PRODUCT_VIEW, k, product=o.product[lines])
    add(ls, ADD_TO_CART, k + 1e-4, product=o.product[lines], qty=o.quantity[lines])
    # Abandoned carts in browse and anonymous sessions.
    cart_n = np.where(is_purchase, 0, (rng.random(n) < p.cart_prob_browse) * (1 + rng.poisson(0.3, n)))
    cs = np.repeat(sid, cart_n)
    k = rng.uniform(0.05, 0.85, cs.size)
    prod = product_in(category_of(cs))
    add(cs, PRODUCT_VIEW, k, product=prod)
    add(cs, ADD_TO_CART, k + 1e-4, product=prod, qty=np.ones(cs.size))
    # Some carts also get a product added and removed again.
    rs = sid[(is_purchase | (cart_n > 0)) & (rng.random(n) < p.remove_prob)]
    k = rng.uniform(0.05, 0.85, rs.size)
    prod = product_in(category_of(rs))
    add(rs, PRODUCT_VIEW, k, product=prod)
    add(rs, ADD_TO_CART, k + 1e-4, product=prod, qty=np.ones(rs.size))
    add(rs, REMOVE_FROM_CART, k + rng.uniform(0.002, 0.04, rs.size), product=prod, qty=np.ones(rs.size))
    # Login: always before checkout in purchase sessions, sometimes in browse sessions, never for visitors.
    login = is_purchase | (is_browse & (rng.random(n) < p.login_prob_browse))
    login_key = np.where(is_purchase, rng.uniform(0.01, 0.88, n), rng.uniform(0.01, 0.95, n))
    login_key = np.where(login, login_key, np.inf)
    add(sid[login], LOGIN, login_key[login], page=np.full(int(login.sum()), LOGIN_PAGE_IX))
    add(ps, CHECKOUT, np.full(ps.size, 0.9), page=np.full(ps.size, CHECKOUT_PAGE_IX))
    add(ps, PURCHASE, np.full(ps.size, 0.95), page=np.full(ps.size, CONFIRMATION_PAGE_IX))

    sess, etype, key, product, qty, query, page = (np.concatenate(col) for col in zip(*blocks, strict=True))
    order = np.argsort(sess + key)  # keys are in [0, 1): this sorts by session, then by key
    sess, etype, key, product, qty, query, page = (
        x[order] for x in (sess, etype, key, product, qty, query, page)
    )

    counts = np.bincount(sess, minlength=n)
    first = np.cumsum(counts) - counts
    gap = (p.event_gap_s[0] + rng.exponential(p.event_gap_s[1], sess.size)).astype(np.int64)
    gap[first[counts > 0]] = 0
    cum = np.cumsum(gap)
    rel = cum - cum[first[sess]]
    last_rel = rel[(first + counts - 1)[sess]]
    anchor = s.anchor[lo:hi][sess]
    # Purchase sessions end exactly at the order time; the others start at their anchor.
    t = np.where(is_purchase[sess], anchor - (last_rel - rel), anchor + rel)
    customer = np.where(key >= login_key[sess], cust[sess], -1).astype(np.int32)
    entry = np.zeros(sess.size, bool)
    entry[first[counts > 0]] = True
    keep = (t >= s.lo[lo:hi][sess]) & (t < end_s)
    return Events(
        session=(sess[keep] + lo).astype(np.int32),
        etype=etype[keep],
        t=t[keep],
        customer=customer[keep],
        product=product[keep],
        quantity=qty[keep],
        query=query[keep],
        page=page[keep],
        entry=entry[keep],
    )
