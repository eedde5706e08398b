"""A pandas reference implementation of `feature_store.customer_features`, to check and to time the dbt build.

`reference_features(warehouse, D)` reads the raw tables (raw.transactions, raw.customers, raw.products,
raw.tracking_events) from the DuckDB file into pandas and computes the snapshot of date D the way a data scientist
would: filter what was known at the end of D, pick each row's latest version, groupby / merge. It follows the
definitions of docs/feature_store.md directly - it does not reuse the warehouse's intermediate tables - and
implements every column of the snapshot.

`compare(warehouse, D)` runs it and compares it with the dbt snapshot already in the warehouse, column by
column. `time_reference(...)` times it; `feature_build_comparison(...)` times it against dbt's feature-store-only
rebuild of D and reports both with the comparison (what `c360 bench` reports as "dbt feature build vs pandas").

Money is carried in integer ten-thousandths of a euro, as the warehouse's DECIMAL(18,4) line amounts, and rounded
half away from zero like DuckDB's casts, so sums equal the warehouse's to the cent instead of drifting with float
rounding.

Command line (from the repository root, or run the file by its path):
    python -m bench.pandas_features --warehouse data/warehouse/c360.duckdb --date 2026-11-03 [--time 3] [--out r.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FX_SEED = PROJECT_ROOT / "dbt_project" / "seeds" / "fx_rates.csv"
FEATURE_TABLE = "feature_store.customer_features"

# The dbt project's defaults (dbt_project.yml vars); compute_features takes them as arguments.
SESSION_TIMEOUT_MINUTES = 30
MAX_CUSTOMERS_PER_DEVICE = 3
DEFAULT_CURRENCY = "EUR"
WINDOWS = (7, 30, 90)
DEVICES = ("desktop", "mobile", "tablet")

# The snapshot's columns in contract order (docs/feature_store.md), grouped by how they are compared.
KEY_COLUMNS = ["customer_id", "as_of_date"]
FEATURE_COLUMNS = [
    "has_profile", "signup_date", "country", "acquisition_channel", "marketing_consent", "tenure_days",
    "first_order_date", "last_order_date", "days_since_first_order", "days_since_last_order", "orders_count",
    "purchase_days", "items_count", "cancelled_orders_count", "gross_revenue_eur", "returned_revenue_eur",
    "net_revenue_eur", "avg_order_value_eur", "orders_with_return_count", "return_rate", "avg_days_between_orders",
    "orders_7d", "orders_30d", "orders_90d", "net_revenue_eur_7d", "net_revenue_eur_30d", "net_revenue_eur_90d",
    "rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score", "rfm_segment",
    "favourite_category", "favourite_category_share", "distinct_categories",
    "bgnbd_frequency", "bgnbd_recency_days", "bgnbd_t_days", "bgnbd_monetary_eur",
    "has_tracking", "sessions_7d", "product_views_7d", "cart_adds_7d", "sessions_30d", "product_views_30d",
    "cart_adds_30d", "sessions_90d", "product_views_90d", "cart_adds_90d", "abandoned_carts_90d",
    "cart_abandonment_rate_90d", "days_since_last_visit",
    "share_sessions_desktop_90d", "share_sessions_mobile_90d", "share_sessions_tablet_90d",
    "first_touch_channel", "last_touch_channel",
]
MONEY_COLUMNS = {c for c in FEATURE_COLUMNS if c.endswith("_eur") or "_eur_" in c}
RATIO_COLUMNS = {"return_rate", "avg_days_between_orders", "favourite_category_share", "cart_abandonment_rate_90d",
                 "share_sessions_desktop_90d", "share_sessions_mobile_90d", "share_sessions_tablet_90d"}
DATE_COLUMNS = {"signup_date", "first_order_date", "last_order_date"}
# Tolerances: money is DECIMAL(18,2) (one cent, for a half-cent rounded the other way after a float division),
# ratios are DOUBLE (relative float noise). Everything else must be equal.
MONEY_TOLERANCE = 0.0100001
RATIO_RELATIVE_TOLERANCE = 1e-9

RAW_QUERIES = {
    "transactions": "select * exclude (_row_hash) from raw.transactions",
    "customers": "select customer_id, signup_at, country, acquisition_channel, marketing_consent, updated_at, "
                 "_dt, _loaded_at, _source_file, _source_line from raw.customers",
    "products": "select product_id, category, updated_at, _dt, _loaded_at, _source_file, _source_line "
                "from raw.products",
    "tracking_events": "select event_id, event_type, occurred_at, anonymous_id, customer_id, order_id, device_type, "
                       "referrer, utm_source, utm_medium, utm_campaign, _dt from raw.tracking_events",
}

# The channel rules of docs/feature_store.md (dbt_project/macros/channel.sql), in order.
SOCIAL_SOURCES = ["facebook", "instagram", "twitter", "x", "linkedin", "pinterest", "tiktok", "youtube", "reddit",
                  "snapchat"]
SEARCH_REFERRER = r"(?:google|bing|duckduckgo|yahoo|ecosia|baidu|yandex|qwant)\."
SOCIAL_REFERRER = r"(?:facebook|instagram|twitter|linkedin|pinterest|tiktok|youtube|reddit|snapchat)\.|//t\.co/|//x\.com"

# Version order of re-sent rows: the latest updated_at wins (nulls last), then the latest arrival.
VERSION_ORDER = ["updated_at", "_dt", "_loaded_at", "_source_file", "_source_line"]


@dataclass
class RawTables:
    transactions: pd.DataFrame
    customers: pd.DataFrame
    products: pd.DataFrame
    tracking_events: pd.DataFrame
    fx_rates: pd.DataFrame
    load_seconds: float = 0.0


# ------------------------------------------------------------------------------------------------- loading


def load_raw(warehouse_path: str | Path) -> RawTables:
    """The raw tables as DataFrames (timestamps in UTC), plus the fx_rates seed from the dbt project."""
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        existing = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
        frames = {}
        for name, sql in RAW_QUERIES.items():
            frames[name] = con.execute(sql).df() if name in existing else None
    finally:
        con.close()
    if frames["transactions"] is None:
        raise RuntimeError(f"{warehouse_path} has no raw.transactions: ingest some data first")
    fx = pd.read_csv(FX_SEED, parse_dates=["valid_from"])
    return RawTables(
        transactions=frames["transactions"],
        customers=_or_empty(frames["customers"], RAW_QUERIES["customers"]),
        products=_or_empty(frames["products"], RAW_QUERIES["products"]),
        tracking_events=_or_empty(frames["tracking_events"], RAW_QUERIES["tracking_events"]),
        fx_rates=fx,
        load_seconds=time.perf_counter() - started,
    )


def _or_empty(frame: pd.DataFrame | None, sql: str) -> pd.DataFrame:
    if frame is not None:
        return frame
    columns = [c.strip() for c in sql.split(" from ")[0].removeprefix("select ").split(",")]
    return pd.DataFrame(columns=columns)


# ------------------------------------------------------------------------------------------------- helpers


def _utc_day(ts: pd.Series) -> pd.Series:
    """UTC calendar day of a timestamp column, as datetime64 at midnight (NaT stays NaT)."""
    ts = pd.to_datetime(ts, utc=True)
    return ts.dt.tz_localize(None).dt.floor("D").astype("datetime64[ns]")


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.floor("D").astype("datetime64[ns]")


def _known_date(event_day: pd.Series, landed: pd.Series) -> pd.Series:
    """greatest(event day, landing day): the first end-of-day at which a row could be seen (a missing event day
    counts as unknown, like SQL's greatest)."""
    landed = _day(landed)
    return event_day.where(event_day.notna() & (event_day > landed), landed)


def _clean_text(values: pd.Series, lower: bool = False) -> pd.Series:
    out = values.astype("string").str.strip()
    if lower:
        out = out.str.lower()
    return out.mask(out == "")


def _latest_versions(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Per key, the version a reader uses: latest updated_at (nulls last), then latest arrival."""
    ordered = frame.sort_values(key + VERSION_ORDER, ascending=[True] * len(key) + [False] * len(VERSION_ORDER),
                                na_position="last")
    return ordered.drop_duplicates(key, keep="first")


def _round_half_away(values: pd.Series, unit: int) -> pd.Series:
    """Whole numbers rounded to a multiple of `unit`, half away from zero (how DuckDB casts to fewer decimals)."""
    sign = np.sign(values)
    return sign * ((values.abs() + unit // 2) // unit) * unit


def _to_eur(amount_e4: pd.Series) -> pd.Series:
    """Ten-thousandths of a euro -> euros rounded to the cent, half away from zero (DECIMAL(18,2) cast)."""
    cents = _round_half_away(amount_e4, 100) / 100
    return cents / 100


def _decimal2(values: pd.Series) -> pd.Series:
    """A DOUBLE cast to DECIMAL(18,2): rounded half away from zero."""
    return np.sign(values) * np.floor(values.abs() * 100 + 0.5) / 100


def _md5(values: pd.Series) -> pd.Series:
    return values.map(lambda v: hashlib.md5(v.encode()).hexdigest())


# --------------------------------------------------------------------------------------------------- orders


def _transaction_versions(raw: RawTables, default_currency: str) -> pd.DataFrame:
    """Every landed line version with the landing contract's defaults and its event day and known date."""
    tx = raw.transactions.copy()
    tx["line_id"] = tx["line_id"].fillna(1).astype("int64")
    tx["line_type"] = tx["line_type"].fillna("sale").str.lower()
    tx["status"] = tx["status"].fillna("completed").str.lower()
    tx["currency"] = tx["currency"].fillna(default_currency).str.upper()
    tx["is_test"] = tx["is_test"].fillna(False).astype(bool)
    # a return happens when the goods come back, a sale when the order is placed
    event_at = tx["ordered_at"].where(tx["line_type"] != "return", tx["returned_at"].fillna(tx["ordered_at"]))
    tx["activity_date"] = _utc_day(event_at)
    tx["known_date"] = _known_date(tx["activity_date"], tx["_dt"])
    tx["line_key"] = tx["order_id"] + "|" + tx["line_id"].astype(str) + "|" + tx["line_type"]
    return tx


def _eur_amounts(lines: pd.DataFrame, fx_rates: pd.DataFrame) -> pd.Series:
    """amount * the currency's rate valid on the line's day, in ten-thousandths of a euro (rounded like DuckDB)."""
    rates = fx_rates.assign(valid_from=_day(fx_rates["valid_from"])).sort_values("valid_from")
    keyed = lines[["currency", "activity_date"]].reset_index().sort_values("activity_date")
    joined = pd.merge_asof(keyed, rates, left_on="activity_date", right_on="valid_from", left_by="currency",
                           right_by="currency_code", direction="backward")
    rate_e8 = joined.set_index("index")["eur_per_unit"].reindex(lines.index).mul(1e8).round().astype("Int64")
    amount_e4 = lines["amount"].mul(1e4).round().astype("Int64")
    product_e12 = amount_e4 * rate_e8
    return _round_half_away(product_e12, 10**8).floordiv(10**8).astype("float64")


def _product_categories(raw: RawTables, lines: pd.DataFrame, on: str) -> pd.Series:
    """The category (lower case, 'unknown' when the product is not known) each line's product had in the product
    version known at the line's date column `on`."""
    products = raw.products.copy()
    if products.empty:
        return pd.Series("unknown", index=lines.index)
    products["known_date"] = _known_date(_utc_day(products["updated_at"]), products["_dt"])
    products["category"] = products["category"].astype("string").str.lower()
    ranked = products.sort_values(["product_id", *VERSION_ORDER], ascending=[True] + [False] * 5, na_position="last")
    # a version is the one in use from its known date until a higher-ranked version becomes known
    ranked["valid_to"] = ranked.groupby("product_id")["known_date"].cummin().groupby(ranked["product_id"]).shift()
    wanted = lines[["product_id", on]].reset_index()
    candidates = wanted.merge(ranked[["product_id", "category", "known_date", "valid_to"]], on="product_id")
    valid = candidates[(candidates["known_date"] <= candidates[on])
                       & (candidates["valid_to"].isna() | (candidates["valid_to"] > candidates[on]))]
    category = valid.drop_duplicates("index").set_index("index")["category"].reindex(lines.index)
    return category.fillna("unknown")


def _to_person(ids: pd.Series, persons: pd.Series | None) -> pd.Series:
    """Customer ids re-keyed to their person's primary member (persons: customer_id -> person_customer_id, the
    warehouse's intermediate.int_person_keys); an id not in it, or no mapping at all, keeps its own."""
    if persons is None or persons.empty:
        return ids
    return ids.map(persons).fillna(ids)


def person_keys(warehouse_path: str | Path) -> pd.Series | None:
    """The identity graph's person keys of the warehouse's last build (None without the graph). The reference
    reads the graph rather than recomputing it: the graph has its own tests (tests/test_identity_graph.py); what the
    reference checks is how the features sum a person's customer ids."""
    import duckdb

    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        found = con.execute("select count(*) from information_schema.tables where table_schema = 'intermediate' "
                            "and table_name = 'int_person_keys'").fetchall()[0][0]
        if not found:
            return None
        keys = con.execute("select customer_id, person_customer_id from intermediate.int_person_keys").df()
    finally:
        con.close()
    return keys.set_index("customer_id")["person_customer_id"]


def order_features(raw: RawTables, as_of: pd.Timestamp, default_currency: str = DEFAULT_CURRENCY,
                   tx: pd.DataFrame | None = None, persons: pd.Series | None = None) -> pd.DataFrame:
    """One row per person (customer_id = its primary member; see _to_person) with a transaction line known at the
    end of as_of: lifetime and window order features over all its customer ids.
    `tx`: the prepared line versions (_transaction_versions), when the caller has them already."""
    tx = _transaction_versions(raw, default_currency) if tx is None else tx
    known = tx[tx["known_date"] <= as_of]
    real = known[~known["is_test"]]
    population = pd.DataFrame({"customer_id": _to_person(pd.Series(real["customer_id"].unique()), persons).unique()})

    # each line in its latest version known at as_of (a test version hides the line)
    lines = _latest_versions(known, ["line_key"])
    lines = lines[~lines["is_test"]].copy()

    # A purchase's category is the one known when its customer-day last changed (the latest known date of any
    # line that was on that customer-day), as the warehouse records each day's state when it changes.
    line_known = real.groupby("line_key")["known_date"].max().rename("line_known_date")
    day_lines = real[["line_key", "customer_id", "activity_date"]].drop_duplicates().join(line_known, on="line_key")
    day_known = day_lines.groupby(["customer_id", "activity_date"])["line_known_date"].max().rename("day_known_date")
    lines = lines.join(day_known, on=["customer_id", "activity_date"])

    lines["amount_e4"] = _eur_amounts(lines, raw.fx_rates)
    lines["quantity"] = lines["quantity"].fillna(1)
    sale = lines["line_type"] == "sale"
    completed = lines["status"] == "completed"
    sales = lines[sale & completed].copy()
    cancelled = lines[sale & (lines["status"] == "cancelled")]
    returns = lines[~sale & completed]

    day = ["customer_id", "activity_date"]
    days = pd.concat([
        sales.groupby(day).agg(orders_count=("order_id", "nunique"), items_count=("quantity", "sum"),
                               gross_e4=("amount_e4", "sum")),
        cancelled.groupby(day).agg(cancelled_orders_count=("order_id", "nunique")),
        returns.assign(returned_e4=-returns["amount_e4"]).groupby(day).agg(
            returned_e4=("returned_e4", "sum"), returns_count=("order_id", "nunique")),
    ], axis=1).fillna(0).reset_index()
    if persons is not None:
        # person-days: the customer-days of a person's customer ids on one date are one purchase day
        days["customer_id"] = _to_person(days["customer_id"], persons)
        days = days.groupby(day, as_index=False).sum()
    buying = days[days["orders_count"] > 0]

    customers = days.groupby("customer_id").agg(
        orders_count=("orders_count", "sum"), items_count=("items_count", "sum"),
        cancelled_orders_count=("cancelled_orders_count", "sum"), gross_e4=("gross_e4", "sum"),
        returned_e4=("returned_e4", "sum"), orders_with_return_count=("returns_count", "sum"),
    )
    firsts = buying.sort_values("activity_date").groupby("customer_id").agg(
        first_order_date=("activity_date", "first"), last_order_date=("activity_date", "last"),
        purchase_days=("activity_date", "size"), first_day_gross_e4=("gross_e4", "first"),
    )
    customers = customers.join(firsts)
    for n in WINDOWS:
        recent = days[days["activity_date"] > as_of - pd.Timedelta(days=n)]
        customers[f"orders_{n}d"] = recent.groupby("customer_id")["orders_count"].sum()
        customers[f"net_e4_{n}d"] = (recent["gross_e4"] - recent["returned_e4"]).groupby(recent["customer_id"]).sum()

    # category affinity: sales (before returns) per category
    sales["category"] = _product_categories(raw, sales, on="day_known_date")
    sales["customer_id"] = _to_person(sales["customer_id"], persons)
    by_category = sales.groupby(["customer_id", "category"], as_index=False)["amount_e4"].sum()
    by_category = by_category.sort_values(["customer_id", "amount_e4", "category"], ascending=[True, False, True])
    affinity = by_category.groupby("customer_id").agg(
        favourite_category=("category", "first"), top_e4=("amount_e4", "first"), total_e4=("amount_e4", "sum"),
        distinct_categories=("category", "size"),
    )
    affinity["favourite_category_share"] = affinity["top_e4"] / affinity["total_e4"].where(affinity["total_e4"] != 0)
    customers = customers.join(affinity[["favourite_category", "favourite_category_share", "distinct_categories"]])
    return population.join(customers, on="customer_id")


# -------------------------------------------------------------------------------------------------- profile


def profile_features(raw: RawTables, as_of: pd.Timestamp, persons: pd.Series | None = None) -> pd.DataFrame:
    """One row per person with a profile version of one of its customer ids known at the end of as_of, in that
    version: the earliest signup, the primary member's country and channel (else the first other member's by id),
    consent only when every member has it (a missing consent is false, as in staging; docs/feature_store.md)."""
    customers = raw.customers.copy()
    customers["known_date"] = _known_date(_utc_day(customers["updated_at"]), customers["_dt"])
    current = _latest_versions(customers[customers["known_date"] <= as_of], ["customer_id"])
    members = pd.DataFrame({
        "member": current["customer_id"].to_numpy(),
        "signup_date": _utc_day(current["signup_at"]).to_numpy(),
        "country": current["country"].astype("string").str.upper().to_numpy(),
        "acquisition_channel": current["acquisition_channel"].astype("string").str.lower().to_numpy(),
        "consent": current["marketing_consent"].fillna(False).astype(bool).to_numpy(),
    })
    members["customer_id"] = _to_person(members["member"], persons)
    members["other"] = members["member"] != members["customer_id"]
    members = members.sort_values(["other", "member"])  # first() per person: the primary's, else by id (non-null)
    g = members.groupby("customer_id", sort=True)
    out = pd.DataFrame({
        "signup_date": g["signup_date"].min(),
        "country": g["country"].first(),
        "acquisition_channel": g["acquisition_channel"].first(),
        "marketing_consent": g["consent"].all(),
    })
    return out.reset_index()


# ------------------------------------------------------------------------------------------------- tracking


def _channel(source: pd.Series, medium: pd.Series, campaign: pd.Series, referrer: pd.Series) -> np.ndarray:
    source, medium, ref = source.str.lower(), medium.str.lower(), referrer.str.lower()
    rules = [
        (medium.isin(["paid_social", "paidsocial", "social_paid"])
         | (medium.isin(["cpc", "ppc", "paid", "cpm"]) & source.isin(SOCIAL_SOURCES)), "paid_social"),
        (medium.isin(["cpc", "ppc", "paid_search", "paidsearch", "sem"]), "paid_search"),
        (medium.isin(["email", "e-mail", "newsletter", "crm"]), "email"),
        (medium.isin(["affiliate", "affiliates", "partner"]), "affiliate"),
        (medium.isin(["display", "banner", "cpm", "programmatic"]), "display"),
        (medium.isin(["organic", "seo", "organic_search"]), "organic_search"),
        (medium.isin(["social", "organic_social", "social_organic"]), "social"),
        (medium == "referral", "referral"),
        (medium.notna() | source.notna() | campaign.notna(), "campaign"),
        (ref.str.contains(SEARCH_REFERRER, regex=True), "organic_search"),
        (ref.str.contains(SOCIAL_REFERRER, regex=True), "social"),
        (ref.notna(), "referral"),
    ]
    conditions = [np.asarray(cond.fillna(False), dtype=bool) for cond, _ in rules]
    return np.select(conditions, [name for _, name in rules], default="direct")


def sessions_known(events: pd.DataFrame, timeout_minutes: int = SESSION_TIMEOUT_MINUTES) -> pd.DataFrame:
    """Cut a cookie's events into sessions: a gap over the timeout, or arriving from a new utm_campaign within a
    visit, starts a new one. One row per session with its facts."""
    ev = events.sort_values(["anonymous_id", "occurred_at", "event_id"]).reset_index(drop=True)
    cookie = ev["anonymous_id"]
    new_cookie = cookie.ne(cookie.shift())
    gap = ev["occurred_at"].diff()
    visit_start = new_cookie | (gap > pd.Timedelta(minutes=timeout_minutes))
    visit = visit_start.cumsum()
    # the last campaign seen earlier in the same visit
    seen = ev["utm_campaign"].groupby(visit).ffill()
    previous_campaign = seen.groupby(visit).shift()
    new_campaign = ev["utm_campaign"].notna() & (ev["utm_campaign"] != previous_campaign).fillna(True)
    ev["session"] = (visit_start | new_campaign).cumsum()

    first = ev.drop_duplicates("session", keep="first").set_index("session")
    grouped = ev.groupby("session")
    sessions = pd.DataFrame({
        "anonymous_id": first["anonymous_id"],
        "session_id": _md5(first["anonymous_id"] + "|" + first["event_id"]),
        "session_start_at": first["occurred_at"],
        "product_views": (ev["event_type"] == "product_view").groupby(ev["session"]).sum(),
        "cart_adds": (ev["event_type"] == "add_to_cart").groupby(ev["session"]).sum(),
        "purchases": (ev["event_type"] == "purchase").groupby(ev["session"]).sum(),
        # first non-null device type, last customer who was logged in
        "device_type": grouped["device_type"].first().fillna("unknown"),
        "logged_in_customer_id": grouped["customer_id"].last(),
        "channel": _channel(first["utm_source"], first["utm_medium"], first["utm_campaign"], first["referrer"]),
    })
    sessions["session_date"] = _utc_day(sessions["session_start_at"])
    return sessions.reset_index(drop=True)


def _identity_links(events: pd.DataFrame, tx: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Evidence known at as_of that a cookie belongs to a customer: events carrying the customer_id, and purchase
    events of the customer's orders (an order is known from its first known sale line). Grouped per cookie,
    customer, day and known date, with the first and last instant of each group."""
    logged = events.loc[events["customer_id"].notna(),
                        ["anonymous_id", "customer_id", "occurred_at", "occurred_date", "known_date"]]
    sale_versions = tx[tx["line_type"] == "sale"]
    first_known = sale_versions["known_date"].eq(sale_versions.groupby("order_id")["known_date"].transform("min"))
    earliest = sale_versions[first_known].copy()
    # the customer of the earliest known version; same-day versions: the warehouse's tie-break on the version key
    earliest["version_key"] = _md5(earliest["_source_file"] + ":" + earliest["_source_line"].astype(str))
    orders = (earliest.sort_values(["order_id", "version_key"])
              .drop_duplicates("order_id")[["order_id", "customer_id", "known_date"]]
              .rename(columns={"customer_id": "order_customer_id", "known_date": "order_known_date"}))
    purchases = events[events["event_type"] == "purchase"].merge(orders, on="order_id")
    purchases = pd.DataFrame({
        "anonymous_id": purchases["anonymous_id"], "customer_id": purchases["order_customer_id"],
        "occurred_at": purchases["occurred_at"], "occurred_date": purchases["occurred_date"],
        "known_date": purchases[["known_date", "order_known_date"]].max(axis=1),
    })
    evidence = pd.concat([logged, purchases], ignore_index=True)
    evidence = evidence[evidence["known_date"] <= as_of]
    return evidence.groupby(["anonymous_id", "customer_id", "occurred_date", "known_date"], as_index=False).agg(
        first_linked_at=("occurred_at", "min"), last_linked_at=("occurred_at", "max"))


def stitch(sessions: pd.DataFrame, links: pd.DataFrame, max_customers: int = MAX_CUSTOMERS_PER_DEVICE) -> pd.Series:
    """The customer each session is attributed to (None when not attributed): the logged-in customer; else, unless
    the cookie is a shared device, the customer of the cookie's next link, else of its previous one."""
    if links.empty:  # nobody identified on any cookie yet: only logged-in sessions are attributed
        return sessions["logged_in_customer_id"]
    device_customers = links.groupby("anonymous_id")["customer_id"].nunique()
    # one customer per cookie and instant: the smallest id for a next link, the largest for a previous one
    # (sort + drop_duplicates: groupby min/max of strings would run in Python, group by group)
    by_id = links.sort_values("customer_id")
    starts = (by_id.drop_duplicates(["anonymous_id", "first_linked_at"], keep="first")
              [["anonymous_id", "first_linked_at", "customer_id"]]
              .rename(columns={"first_linked_at": "linked_at", "customer_id": "next_customer"}))
    ends = (by_id.drop_duplicates(["anonymous_id", "last_linked_at"], keep="last")
            [["anonymous_id", "last_linked_at", "customer_id"]]
            .rename(columns={"last_linked_at": "linked_at", "customer_id": "previous_customer"}))
    left = sessions[["anonymous_id", "session_start_at"]].reset_index().sort_values("session_start_at")
    nxt = pd.merge_asof(left, starts.sort_values("linked_at"), left_on="session_start_at", right_on="linked_at",
                        by="anonymous_id", direction="forward")
    prev = pd.merge_asof(left, ends.sort_values("linked_at"), left_on="session_start_at", right_on="linked_at",
                         by="anonymous_id", direction="backward")
    nxt = nxt.set_index("index")["next_customer"].reindex(sessions.index)
    prev = prev.set_index("index")["previous_customer"].reindex(sessions.index)
    shared = sessions["anonymous_id"].map(device_customers).fillna(0) > max_customers
    linked = nxt.fillna(prev).where(~shared)
    return sessions["logged_in_customer_id"].fillna(linked)


def tracking_features(raw: RawTables, as_of: pd.Timestamp, *, timeout_minutes: int = SESSION_TIMEOUT_MINUTES,
                      max_customers: int = MAX_CUSTOMERS_PER_DEVICE, default_currency: str = DEFAULT_CURRENCY,
                      tx: pd.DataFrame | None = None, persons: pd.Series | None = None) -> pd.DataFrame:
    """One row per person with a session attributed to one of its customer ids at the end of as_of: sessions from
    the events known then, stitched with the evidence known then."""
    ev = raw.tracking_events.copy()
    if ev.empty:
        return pd.DataFrame({"customer_id": pd.Series(dtype=object), "sessions_total": pd.Series(dtype="int64")})
    ev["occurred_at"] = pd.to_datetime(ev["occurred_at"], utc=True)
    ev["occurred_date"] = _utc_day(ev["occurred_at"])
    ev["known_date"] = _known_date(ev["occurred_date"], ev["_dt"])
    ev = ev[ev["known_date"] <= as_of].copy()
    ev["event_type"] = ev["event_type"].str.lower()
    ev["device_type"] = ev["device_type"].astype("string").str.lower()
    ev["referrer"] = _clean_text(ev["referrer"])
    ev["utm_source"] = _clean_text(ev["utm_source"])
    ev["utm_medium"] = _clean_text(ev["utm_medium"], lower=True)
    ev["utm_campaign"] = _clean_text(ev["utm_campaign"])

    sessions = sessions_known(ev, timeout_minutes)
    tx = _transaction_versions(raw, default_currency) if tx is None else tx
    links = _identity_links(ev, tx, as_of)
    sessions["customer_id"] = _to_person(stitch(sessions, links, max_customers), persons)
    s = sessions[sessions["customer_id"].notna()].copy()
    s["abandoned"] = (s["cart_adds"] > 0) & (s["purchases"] == 0)
    s["with_cart"] = s["cart_adds"] > 0

    by_customer = s.groupby("customer_id")
    out = pd.DataFrame({"sessions_total": by_customer.size(),
                        "last_visit": by_customer["session_date"].max()})
    for n in WINDOWS:
        recent = s[s["session_date"] > as_of - pd.Timedelta(days=n)]
        g = recent.groupby("customer_id")
        out[f"sessions_{n}d"] = g.size()
        out[f"product_views_{n}d"] = g["product_views"].sum()
        out[f"cart_adds_{n}d"] = g["cart_adds"].sum()
        if n == 90:
            out["abandoned_carts_90d"] = g["abandoned"].sum()
            out["cart_sessions_90d"] = g["with_cart"].sum()
            for device in DEVICES:
                out[f"{device}_sessions_90d"] = (recent["device_type"] == device).groupby(recent["customer_id"]).sum()
    touches = s.sort_values(["customer_id", "session_start_at", "session_id"]).groupby("customer_id")["channel"]
    out["first_touch_channel"] = touches.first()
    out["last_touch_channel"] = touches.last()
    return out.reset_index()


# ----------------------------------------------------------------------------------------------- the snapshot


def _rfm_score(values: pd.Series, ascending: bool) -> pd.Series:
    """1-5 by quintile of percent rank (ties share the lowest rank), as percent_rank() in SQL."""
    n = len(values)
    if n == 0:
        return values.astype("float64")
    rank = values.rank(method="min", ascending=ascending)
    pct = (rank - 1) / (n - 1) if n > 1 else rank * 0.0
    return np.minimum(5, 1 + np.floor(5 * pct))


def _rfm_segment(r: pd.Series, f: pd.Series) -> np.ndarray:
    rules = [
        (r.isna() | f.isna(), "no_orders"),
        ((r >= 4) & (f >= 4), "champions"),
        ((r >= 3) & (f >= 3), "loyal_customers"),
        ((r >= 4) & (f == 2), "potential_loyalists"),
        (r >= 4, "new_customers"),
        ((r == 3) & (f == 2), "need_attention"),
        (r == 3, "promising"),
        ((r == 1) & (f >= 4), "cant_lose_them"),
        (f >= 3, "at_risk"),
        (r == 2, "hibernating"),
    ]
    return np.select([np.asarray(c, dtype=bool) for c, _ in rules], [n for _, n in rules], default="lost")


def compute_features(raw: RawTables, as_of_date: date, *, timeout_minutes: int = SESSION_TIMEOUT_MINUTES,
                     max_customers: int = MAX_CUSTOMERS_PER_DEVICE,
                     default_currency: str = DEFAULT_CURRENCY, persons: pd.Series | None = None) -> pd.DataFrame:
    """The customer_features snapshot of as_of_date from the raw tables: one row per person (persons: the identity
    graph's keys, person_keys(); None = every customer id its own person) with a profile or a transaction known at
    the end of the date, the columns of docs/feature_store.md in contract order."""
    as_of = pd.Timestamp(as_of_date)
    tx = _transaction_versions(raw, default_currency)
    orders = order_features(raw, as_of, default_currency, tx=tx, persons=persons)
    profile = profile_features(raw, as_of, persons=persons)
    tracking = tracking_features(raw, as_of, timeout_minutes=timeout_minutes, max_customers=max_customers,
                                 default_currency=default_currency, tx=tx, persons=persons)

    population = pd.Index(profile["customer_id"]).union(pd.Index(orders["customer_id"]))
    f = pd.DataFrame({"customer_id": population})
    f = f.merge(profile.assign(has_profile=True), on="customer_id", how="left")
    f = f.merge(orders, on="customer_id", how="left").merge(tracking, on="customer_id", how="left")

    def days_to_as_of(col: str) -> pd.Series:
        return (as_of - f[col]).dt.days

    out = pd.DataFrame({"customer_id": f["customer_id"].astype(str), "as_of_date": as_of})
    out["has_profile"] = f["has_profile"].eq(True)
    out["signup_date"] = f["signup_date"]
    out["country"] = f["country"]
    out["acquisition_channel"] = f["acquisition_channel"]
    out["marketing_consent"] = f["marketing_consent"].eq(True)
    start = f["signup_date"].fillna(f["first_order_date"])
    out["tenure_days"] = (as_of - start).dt.days.clip(lower=0)
    out["first_order_date"] = f["first_order_date"]
    out["last_order_date"] = f["last_order_date"]
    out["days_since_first_order"] = days_to_as_of("first_order_date")
    out["days_since_last_order"] = days_to_as_of("last_order_date")
    orders_count = f["orders_count"].fillna(0)
    purchase_days = f["purchase_days"].fillna(0)
    gross_e4, returned_e4 = f["gross_e4"].fillna(0), f["returned_e4"].fillna(0)
    net_e4 = gross_e4 - returned_e4
    out["orders_count"] = orders_count
    out["purchase_days"] = purchase_days
    out["items_count"] = f["items_count"].fillna(0)
    out["cancelled_orders_count"] = f["cancelled_orders_count"].fillna(0)
    out["gross_revenue_eur"] = _to_eur(gross_e4)
    out["returned_revenue_eur"] = _to_eur(returned_e4)
    out["net_revenue_eur"] = _to_eur(net_e4)
    out["avg_order_value_eur"] = _decimal2((f["gross_e4"] - f["returned_e4"]) / 1e4 / f["orders_count"].where(
        f["orders_count"] != 0))
    out["orders_with_return_count"] = f["orders_with_return_count"].fillna(0)
    out["return_rate"] = f["returned_e4"] / f["gross_e4"].where(f["gross_e4"] != 0)
    out["avg_days_between_orders"] = ((f["last_order_date"] - f["first_order_date"]).dt.days
                                      / (f["purchase_days"] - 1).where(f["purchase_days"] != 1))
    for n in WINDOWS:
        out[f"orders_{n}d"] = f[f"orders_{n}d"].fillna(0)
    for n in WINDOWS:
        out[f"net_revenue_eur_{n}d"] = _to_eur(f[f"net_e4_{n}d"].fillna(0))

    # RFM among the customers with a completed order
    buyers = orders_count > 0
    r = pd.Series(np.nan, index=f.index)
    fr, m = r.copy(), r.copy()
    r[buyers] = _rfm_score(out.loc[buyers, "days_since_last_order"], ascending=False)
    fr[buyers] = _rfm_score(orders_count[buyers], ascending=True)
    m[buyers] = _rfm_score(net_e4[buyers], ascending=True)
    out["rfm_recency_score"], out["rfm_frequency_score"], out["rfm_monetary_score"] = r, fr, m
    out["rfm_segment"] = _rfm_segment(r, fr)

    out["favourite_category"] = f["favourite_category"]
    out["favourite_category_share"] = f["favourite_category_share"]
    out["distinct_categories"] = f["distinct_categories"].fillna(0)
    out["bgnbd_frequency"] = (purchase_days - 1).clip(lower=0)
    out["bgnbd_recency_days"] = (f["last_order_date"] - f["first_order_date"]).dt.days.fillna(0)
    out["bgnbd_t_days"] = days_to_as_of("first_order_date")
    out["bgnbd_monetary_eur"] = _decimal2((f["gross_e4"] - f["first_day_gross_e4"]) / 1e4
                                          / (f["purchase_days"] - 1).where(f["purchase_days"] != 1))

    sessions_total = f["sessions_total"].fillna(0)
    out["has_tracking"] = sessions_total > 0
    for n in WINDOWS:
        for metric in ("sessions", "product_views", "cart_adds"):
            out[f"{metric}_{n}d"] = f[f"{metric}_{n}d"].fillna(0) if f"{metric}_{n}d" in f else 0
    out["abandoned_carts_90d"] = f["abandoned_carts_90d"].fillna(0) if "abandoned_carts_90d" in f else 0
    if "cart_sessions_90d" in f:
        out["cart_abandonment_rate_90d"] = f["abandoned_carts_90d"] / f["cart_sessions_90d"].where(
            f["cart_sessions_90d"] > 0)
        out["days_since_last_visit"] = days_to_as_of("last_visit")
        for device in DEVICES:
            out[f"share_sessions_{device}_90d"] = f[f"{device}_sessions_90d"] / f["sessions_90d"].where(
                f["sessions_90d"] > 0)
        out["first_touch_channel"] = f["first_touch_channel"]
        out["last_touch_channel"] = f["last_touch_channel"]
    else:  # no tracking data at all
        for col in ("cart_abandonment_rate_90d", "days_since_last_visit",
                    *(f"share_sessions_{d}_90d" for d in DEVICES), "first_touch_channel", "last_touch_channel"):
            out[col] = np.nan
    return out[KEY_COLUMNS + FEATURE_COLUMNS].sort_values("customer_id").reset_index(drop=True)


def reference_features(warehouse_path: str | Path, as_of_date: date, **options) -> pd.DataFrame:
    """Load the raw tables of a warehouse and compute the snapshot of as_of_date in pandas (by person, with the
    warehouse's person keys, unless `persons` is given)."""
    options.setdefault("persons", person_keys(warehouse_path))
    return compute_features(load_raw(warehouse_path), as_of_date, **options)


# ------------------------------------------------------------------------------------------------- compare


def dbt_snapshot(warehouse_path: str | Path, as_of_date: date) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        return con.execute(f"select * from {FEATURE_TABLE} where as_of_date = ? order by customer_id",
                           [as_of_date]).df()
    finally:
        con.close()


def _column_report(ours: pd.Series, theirs: pd.Series, column: str) -> dict:
    """Match rate of one column over the common customers (both null counts as equal)."""
    both_null = ours.isna() & theirs.isna()
    if column in MONEY_COLUMNS or column in RATIO_COLUMNS or pd.api.types.is_numeric_dtype(theirs):
        a = pd.to_numeric(ours, errors="coerce").astype("float64")
        b = pd.to_numeric(theirs, errors="coerce").astype("float64")
        diff = (a - b).abs()
        if column in MONEY_COLUMNS:
            close = diff <= MONEY_TOLERANCE
        elif column in RATIO_COLUMNS:
            close = diff <= RATIO_RELATIVE_TOLERANCE * np.maximum(a.abs(), b.abs()) + 1e-12
        else:
            close = diff == 0
        equal = both_null | close.fillna(False)
        max_diff = float(diff.max()) if diff.notna().any() else 0.0
    else:
        if column in DATE_COLUMNS:
            a, b = pd.to_datetime(ours), pd.to_datetime(theirs)
        else:
            a, b = ours.astype("object"), theirs.astype("object")
        equal = both_null | (a == b).fillna(False)
        max_diff = None
    equal = equal.astype(bool)
    return {
        "match_rate": float(equal.mean()) if len(equal) else 1.0,
        "mismatches": int((~equal).sum()),
        "max_abs_diff": max_diff,
        "examples": [] if equal.all() else [
            {"customer_id": cid, "reference": _plain(x), "dbt": _plain(y)}
            for cid, x, y in list(zip(ours.index[~equal], ours[~equal], theirs[~equal], strict=True))[:5]
        ],
    }


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def compare_frames(reference: pd.DataFrame, snapshot: pd.DataFrame) -> dict:
    """Per column match rate and max abs diff between the pandas reference and the dbt snapshot."""
    ours = reference.set_index("customer_id")
    theirs = snapshot.set_index("customer_id")
    common = ours.index.intersection(theirs.index)
    columns = {c: _column_report(ours.loc[common, c], theirs.loc[common, c], c) for c in FEATURE_COLUMNS}
    only_reference = sorted(set(ours.index) - set(theirs.index))
    only_dbt = sorted(set(theirs.index) - set(ours.index))
    return {
        "rows_reference": len(ours), "rows_dbt": len(theirs), "rows_compared": len(common),
        "only_in_reference": only_reference[:20], "only_in_dbt": only_dbt[:20],
        "only_in_reference_count": len(only_reference), "only_in_dbt_count": len(only_dbt),
        "columns": columns,
        "columns_implemented": len(FEATURE_COLUMNS),
        "mismatched_columns": sorted(c for c, r in columns.items() if r["mismatches"]),
        "all_match": not only_reference and not only_dbt and all(r["mismatches"] == 0 for r in columns.values()),
    }


def compare(warehouse_path: str | Path, as_of_date: date) -> dict:
    """Compute the pandas reference for as_of_date and compare it with the dbt snapshot in the warehouse.

    Returns {"as_of_date", "all_match", "mismatched_columns", "columns": {column: {match_rate, mismatches,
    max_abs_diff, examples}}, row counts, "seconds"}. Money columns match within a cent, DOUBLE ratios within
    1e-9 relative; everything else must be equal.
    """
    started = time.perf_counter()
    raw = load_raw(warehouse_path)
    reference = compute_features(raw, as_of_date, persons=person_keys(warehouse_path))  # the graph, not timed
    seconds = time.perf_counter() - started
    snapshot = dbt_snapshot(warehouse_path, as_of_date)
    if snapshot.empty:
        raise RuntimeError(f"{FEATURE_TABLE} has no snapshot for {as_of_date} in {warehouse_path}: build it first")
    report = compare_frames(reference, snapshot)
    return {"as_of_date": as_of_date.isoformat(), "seconds": round(seconds, 3), **report}


# -------------------------------------------------------------------------------------------------- timing


def time_reference(warehouse_path: str | Path, as_of_date: date, repeat: int = 3) -> dict:
    """Wall time of the pandas reference (read raw into pandas + compute), median of `repeat` runs."""
    totals, loads, computes, rows = [], [], [], 0
    persons = person_keys(warehouse_path)  # read, not computed: the reference does not rebuild the identity graph
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        raw = load_raw(warehouse_path)
        loaded = time.perf_counter()
        rows = len(compute_features(raw, as_of_date, persons=persons))
        done = time.perf_counter()
        totals.append(done - started)
        loads.append(loaded - started)
        computes.append(done - loaded)
    return {
        "median_seconds": round(statistics.median(totals), 3), "seconds": [round(s, 3) for s in totals],
        "median_load_seconds": round(statistics.median(loads), 3),
        "median_compute_seconds": round(statistics.median(computes), 3),
        "rows": rows, "raw_rows": _raw_rows(warehouse_path),
    }


def _raw_rows(warehouse_path: str | Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(warehouse_path), read_only=True)
    try:
        return {t: con.execute(f"select count(*) from raw.{t}").fetchall()[0][0]
                for t in ("transactions", "customers", "products", "tracking_events")}
    finally:
        con.close()


# The models of one snapshot (what c360.pipeline.transform.backfill_snapshots runs per date): the as-of pieces and
# customer_features, reading the incremental intermediate tables; labels and the training-set view excluded.
# the models that compute customer_features (the recommender's interactions table, which the pandas reference does
# not compute, and the labels are left out)
DBT_FEATURE_COMMAND = ["run", "-s", "path:models/feature_store", "--exclude", "labels_churn", "labels_value",
                       "training_set", "interactions"]


def time_dbt_features(warehouse_path: str | Path, as_of_date: date, repeat: int = 3, settings=None) -> dict:
    """Wall time of dbt's feature-store-only rebuild of as_of_date (in-process dbt, parse included), median of
    `repeat` runs. Rebuilding a date replaces its snapshot with identical rows."""
    import dataclasses

    from c360.config import get_settings
    from c360.pipeline.transform import run_dbt

    settings = settings or get_settings()
    settings = dataclasses.replace(settings, warehouse_path=Path(warehouse_path).resolve())
    seconds, models = [], {}
    for _ in range(max(1, repeat)):
        result = run_dbt(DBT_FEATURE_COMMAND, as_of_date, settings)
        seconds.append(result.elapsed_seconds)
        for node in result.nodes:
            models.setdefault(node.unique_id.split(".")[-1], []).append(node.execution_time)
    return {
        "median_seconds": round(statistics.median(seconds), 3), "seconds": [round(s, 3) for s in seconds],
        "median_model_seconds": round(statistics.median(sum(t[i] for t in models.values())
                                                        for i in range(len(seconds))), 3),
        "models": {m: round(statistics.median(t), 3) for m, t in models.items()},
        "command": DBT_FEATURE_COMMAND,
    }


def feature_build_comparison(warehouse: str | Path, as_of_date: date, repeat: int = 3, settings=None,
                             env: dict[str, str] | None = None) -> dict:
    """dbt's feature-store rebuild of as_of_date vs the pandas reference: both timings, their ratio, and whether
    they produce the same snapshot. For the benchmark harness (c360 bench).

    `env`: environment variables to run under (e.g. the benchmark work dir's DBT_TARGET_PATH / DBT_LOG_PATH), so
    dbt's target and logs stay out of the repository; settings are then read inside it.
    """
    from c360.config import process_environment

    with process_environment(env or {}):
        if env and settings is None:
            from c360.config import get_settings

            settings = get_settings()
        dbt = time_dbt_features(warehouse, as_of_date, repeat, settings)
    pandas_timing = time_reference(warehouse, as_of_date, repeat)
    equality = compare(warehouse, as_of_date)
    return {
        "as_of_date": as_of_date.isoformat(),
        "dbt": dbt,
        "pandas": pandas_timing,
        "pandas_over_dbt": round(pandas_timing["median_seconds"] / dbt["median_seconds"], 2)
        if dbt["median_seconds"] else None,
        "equal": equality["all_match"],
        "mismatched_columns": equality["mismatched_columns"],
        "columns_compared": equality["columns_implemented"],
        "rows": {"dbt": equality["rows_dbt"], "pandas": equality["rows_reference"]},
    }


# ------------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warehouse", type=Path, required=True)
    p.add_argument("--date", type=date.fromisoformat, required=True)
    p.add_argument("--time", type=int, default=0, metavar="REPEAT",
                   help="also time dbt's feature rebuild and the reference (REPEAT runs each)")
    p.add_argument("--out", type=Path, help="also write the JSON result to this file (dbt prints to stdout too)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.time:
        result = feature_build_comparison(args.warehouse, args.date, args.time)
    else:
        result = compare(args.warehouse, args.date)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    # exit 1 when the snapshots differ: a benchmark stage running this shows as failed
    return 0 if result.get("all_match", result.get("equal")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
