"""Tests of the shop-data generator (c360dev.generate): determinism, the landing contract, distributions, dirt."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from c360.config import get_settings
from c360.ingest import contract
from c360.storage import open_storage
from c360dev.generate import DIRT_KINDS, DirtConfig, generate, oracle
from c360dev.generate import reference as ref
from c360dev.generate.model import PROFILES
from c360dev.generate.oracle import p_no_purchase
from ml.metrics import roc_auc

TX_REQUIRED = {"order_id", "customer_id", "ordered_at", "amount"}
TX_ALL = TX_REQUIRED | {
    "quantity",
    "unit_price",
    "line_id",
    "product_id",
    "discount",
    "currency",
    "line_type",
    "returned_at",
    "status",
    "channel",
    "is_test",
    "updated_at",
}
EVENT_REQUIRED = {"event_id", "event_type", "occurred_at", "anonymous_id"}
EVENT_TYPES = set(contract.EVENT_TYPES)
CUSTOMER_COLUMNS = {
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "signup_at",
    "country",
    "acquisition_channel",
    "marketing_consent",
    "consent_updated_at",
    "updated_at",
}
PRODUCT_COLUMNS = {
    "product_id",
    "name",
    "category",
    "subcategory",
    "brand",
    "price",
    "currency",
    "updated_at",
}
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")


# ---------------------------------------------------------------- helpers


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_transactions(root: Path) -> pd.DataFrame:
    frames = []
    for f in sorted(root.glob("transactions/dt=*/*.csv")):
        d = pd.read_csv(f, dtype=str, keep_default_na=False)
        d["_file"] = f.relative_to(root).as_posix()
        d["_row"] = np.arange(1, len(d) + 1)
        d["_dt"] = f.parent.name[3:]
        frames.append(d)
    return pd.concat(frames, ignore_index=True)


def read_tracking(root: Path) -> tuple[pd.DataFrame, list[tuple[str, int, str]]]:
    """Parsed events (with _file/_row/_dt) and the lines that do not parse as a JSON object."""
    records, broken = [], []
    for f in sorted(root.glob("tracking/dt=*/*.jsonl.gz")):
        key = f.relative_to(root).as_posix()
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh, start=1):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    broken.append((key, i, line))
                    continue
                obj.update(_file=key, _row=i, _dt=f.parent.name[3:])
                records.append(obj)
    return pd.DataFrame(records), broken


def utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series.replace("", None), utc=True, format="ISO8601")


def manifest_keys(manifest: pd.DataFrame, entity: str, kind: str | None = None) -> set[tuple[str, int]]:
    m = manifest[(manifest.entity == entity) & ((manifest.kind == kind) if kind else True)]
    return set(zip(m.source_file, m.row_number, strict=True))


def in_keys(df: pd.DataFrame, keys: set) -> pd.Series:
    return pd.Series([(f, r) in keys for f, r in zip(df._file, df._row, strict=True)], index=df.index)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """2,000 customers x 60 days with 3x the default dirt rates, so every kind occurs a few times."""
    base = tmp_path_factory.mktemp("gen")
    dirt = DirtConfig(scale=3.0)
    summary = generate(
        base / "landing",
        customers=2000,
        days=60,
        seed=11,
        start="2025-11-01",
        truth_dir=base / "truth",
        dirt=dirt,
    )
    tx = read_transactions(base / "landing")
    events, broken = read_tracking(base / "landing")
    return {
        "summary": summary,
        "root": base / "landing",
        "truth": base / "truth",
        "dirt": dirt,
        "tx": tx,
        "events": events,
        "broken": broken,
        "manifest": pd.read_parquet(base / "truth" / "dirt.parquet"),
        "truth_customers": pd.read_parquet(base / "truth" / "customers.parquet"),
    }


@pytest.fixture(scope="module")
def clean(run):
    """Transactions and events without the rows the manifest lists as dirt (late events stay: they are clean)."""
    m = run["manifest"]
    tx = run["tx"][~in_keys(run["tx"], manifest_keys(m, "transactions"))]
    ev = run["events"]
    quarantined = m[(m.entity == "tracking") & (m.kind != "late_event")]
    ev = ev[~in_keys(ev, set(zip(quarantined.source_file, quarantined.row_number, strict=True)))]
    return {"tx": tx, "events": ev}


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    def make(name, seed):
        generate(
            open_storage(str(tmp_path / name)),
            customers=500,
            days=12,
            seed=seed,
            truth_dir=tmp_path / f"{name}-truth",
        )
        return file_hashes(tmp_path / name), file_hashes(tmp_path / f"{name}-truth")

    a, b, c = make("a", 5), make("b", 5), make("c", 6)
    assert a[0] and a == b
    nightly = [k for k in a[0] if k.startswith(("transactions/", "tracking/"))]
    # (a quiet day of a tiny shop can be empty, hence identical, under both seeds)
    assert nightly and sum(a[0][k] != c[0].get(k) for k in nightly) >= 0.9 * len(nightly)
    assert a[1]["customers.parquet"] != c[1]["customers.parquet"]


# ---------------------------------------------------------------- contract layout and columns


def test_layout_follows_the_contract(run):
    root, days = run["root"], run["summary"].days
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    pattern = re.compile(
        r"^(transactions|customers|products|tracking)/dt=(\d{4}-\d{2}-\d{2})/[^./][^/]*"
        r"\.(csv|parquet|jsonl\.gz)$"
    )
    assert all(pattern.match(f) for f in files), [f for f in files if not pattern.match(f)]
    tx_dts = sorted({f.split("/")[1] for f in files if f.startswith("transactions/")})
    assert len(tx_dts) == days  # every night has its transactions partition
    assert tx_dts[0] == "dt=2025-11-01"
    assert len(list(root.glob("products/dt=2025-11-01/*.parquet"))) == 1


def test_every_file_has_the_contract_columns_and_offset_timestamps(run):
    tx, ev, root = run["tx"], run["events"], run["root"]
    assert set(tx.columns) >= TX_ALL
    assert set(ev.columns) >= EVENT_REQUIRED
    assert ev[list(EVENT_REQUIRED)].notna().all().all()
    # every contract type except "other", which holds vendor events no mapping knows (c360 format never needs it)
    assert set(ev.event_type) == EVENT_TYPES - {"other"}
    for col in ("ordered_at", "updated_at"):
        assert tx[col].str.match(ISO_WITH_OFFSET).all()
    assert tx.loc[tx.returned_at != "", "returned_at"].str.match(ISO_WITH_OFFSET).all()
    assert ev.occurred_at.str.match(ISO_WITH_OFFSET).all()
    assert utc(ev.occurred_at).notna().all() and utc(tx.ordered_at).notna().all()
    # Tracking timestamps carry the customer's own UTC offset.
    truth = run["truth_customers"].set_index("customer_id")
    known = ev[ev.customer_id.notna()].sample(500, random_state=1)
    offsets = known.occurred_at.str[-6:]
    minutes = truth.loc[known.customer_id, "utc_offset_minutes"].to_numpy()
    expected = [f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in minutes]
    assert (offsets.to_numpy() == np.array(expected)).all()
    for f in root.glob("customers/dt=*/*.parquet"):
        assert set(pq.read_schema(f).names) >= CUSTOMER_COLUMNS
    for f in root.glob("products/dt=*/*.parquet"):
        assert set(pq.read_schema(f).names) >= PRODUCT_COLUMNS


def test_reference_text_needs_no_escaping():
    texts = [x for row in ref.CATEGORIES for x in [row[0], *row[5], *row[6]]]
    texts += ref.FIRST_NAMES + ref.LAST_NAMES + ref.EMAIL_DOMAINS + ref.STATIC_PAGES + ref.GENERIC_QUERIES
    texts += [x for row in ref.TRAFFIC_SOURCES + ref.DEVICE_COMBOS for x in row if isinstance(x, str)]
    assert not [t for t in texts if any(ch in t for ch in '",\\\n')]
    assert not set(ref.UNKNOWN_CURRENCIES) & set(get_settings().currencies)
    assert set(ref.CURRENCIES) <= set(get_settings().currencies)


# ---------------------------------------------------------------- clean rows stay clean


def test_clean_rows_are_clean(run, clean):
    tx, ev = clean["tx"], clean["events"]
    currencies = set(get_settings().currencies)
    assert not tx.drop(columns=["_file", "_row", "_dt"]).duplicated().any()
    assert not ev.event_id.duplicated().any()
    assert (
        (tx.customer_id != "").all() and tx.currency.isin(currencies).all() and (tx.is_test == "false").all()
    )
    sales = tx[tx.line_type == "sale"]
    assert (sales.quantity.astype(int) > 0).all() and (sales.amount.astype(float) > 0).all()
    returns = tx[tx.line_type == "return"]
    assert (returns.quantity.astype(int) < 0).all() and (returns.returned_at != "").all()
    # amount = quantity * unit_price - discount on sales (in cents, exactly).
    cents = (
        sales.quantity.astype(int) * (sales.unit_price.astype(float) * 100).round()
        - (sales.discount.astype(float) * 100).round()
    )
    assert ((sales.amount.astype(float) * 100).round() == cents).all()
    # A clean transaction row lands in the partition of its version time, and nothing is in the future.
    dt_end = pd.to_datetime(tx._dt).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    assert (utc(tx.updated_at).dt.strftime("%Y-%m-%d") == tx._dt).all()
    assert (utc(tx.ordered_at) < dt_end).all()
    late = set(run["manifest"].query("kind == 'late_event'").event_id)
    on_time = ev[~ev.event_id.isin(late)]
    assert (utc(on_time.occurred_at).dt.strftime("%Y-%m-%d") == on_time._dt).all()
    ev_end = pd.to_datetime(ev._dt).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    assert (utc(ev.occurred_at) < ev_end).all()


def test_customers_and_products_versions(run):
    root = run["root"]
    cust = pd.concat(
        [
            pd.read_parquet(f).assign(_dt=f.parent.name[3:])
            for f in sorted(root.glob("customers/dt=*/*.parquet"))
        ]
    )
    assert not cust.duplicated(["customer_id", "updated_at"]).any()
    first = cust.groupby("customer_id")._dt.min()
    signup_day = cust.groupby("customer_id").signup_at.first().dt.strftime("%Y-%m-%d")
    new = signup_day >= "2025-11-01"
    assert new.any() and (~new).any()
    assert (first[new.index[new]] == signup_day[new]).all()  # new customers land on their signup day
    assert (first[new.index[~new]] == "2025-11-01").all()  # the existing base lands in the first partition
    # Consent changes are later versions with consent_updated_at = updated_at and a flipped value.
    cust = cust.sort_values(["customer_id", "updated_at"])
    changed = cust[cust.customer_id.duplicated(keep=False)]
    flips = changed.groupby("customer_id").marketing_consent.nunique() > 1
    assert flips.sum() > 10
    later = cust[cust.customer_id.duplicated() & (cust.consent_updated_at == cust.updated_at)]
    assert len(later) >= flips.sum()
    prods = pd.concat(
        [
            pd.read_parquet(f).assign(_dt=f.parent.name[3:])
            for f in sorted(root.glob("products/dt=*/*.parquet"))
        ]
    )
    catalog = prods[prods._dt == "2025-11-01"]
    assert catalog.product_id.is_unique and len(catalog) == run["summary"].volumes["products"]
    assert (prods._dt > "2025-11-01").sum() > 0  # price changes later
    assert set(run["tx"].product_id) - {""} <= set(catalog.product_id)


# ---------------------------------------------------------------- distributions


def test_baskets_returns_and_cancellations_are_plausible(clean):
    tx = clean["tx"]
    sales = tx[tx.line_type == "sale"]
    lines = sales.drop_duplicates(["order_id", "line_id"])
    assert 1.8 < lines.groupby("order_id").size().mean() < 2.8
    latest = (
        tx.assign(_u=utc(tx.updated_at))
        .sort_values("_u")
        .drop_duplicates(["order_id", "line_id", "line_type"], keep="last")
    )
    status = latest[latest.line_type == "sale"].groupby("order_id").status.first()
    assert 0.015 < (status == "cancelled").mean() < 0.08
    returned = tx[tx.line_type == "return"].drop_duplicates(["order_id", "line_id"])
    assert 0.03 < len(returned) / len(lines) < 0.15
    assert returned.order_id.isin(
        set(status[status == "completed"].index)
    ).all()  # cancelled orders never return
    assert (utc(returned.returned_at) > utc(returned.ordered_at)).all()
    assert (lines.discount.astype(float) > 0).mean() > 0.08  # promotions happen
    assert set(tx.channel) == {"web", "app", "store"}


def test_orders_follow_the_latent_purchase_rates_and_stop_at_churn(run, clean):
    truth = run["truth_customers"]
    sales = clean["tx"][clean["tx"].line_type == "sale"].drop_duplicates("order_id")
    orders = sales.groupby("customer_id").size().reindex(truth.customer_id, fill_value=0).to_numpy()
    alive = truth.alive_at_start.to_numpy() & truth.alive_at_end.to_numpy()
    lam = truth["lambda"].to_numpy()
    hi, lo = alive & (lam >= np.quantile(lam[alive], 0.75)), alive & (lam <= np.quantile(lam[alive], 0.25))
    assert orders[hi].mean() > 5 * orders[lo].mean()
    assert (orders == truth.orders_in_horizon.to_numpy()).all()
    churned = truth[truth.churn_at.notna()].set_index("customer_id").churn_at
    last_order = utc(sales.ordered_at).groupby(sales.customer_id).max()
    both = last_order.index.intersection(churned.index)
    assert len(both) > 5 and (last_order[both] < churned[both]).all()
    # Customers dropped out before the start never order; the truth says who they are.
    dead = truth.customer_id[~truth.alive_at_start]
    assert not sales.customer_id.isin(set(dead)).any()


def test_tracking_sessions_line_up_with_orders(run, clean):
    ev, tx = clean["events"], clean["tx"]
    assert 0.1 < ev.customer_id.notna().mean() < 0.6
    purchases = ev[ev.event_type == "purchase"]
    sales = tx[tx.line_type == "sale"].drop_duplicates("order_id")
    assert purchases.order_id.isin(set(sales.order_id)).all()
    online = sales[sales.channel != "store"]
    tracked = online.order_id.isin(set(purchases.order_id)).mean()
    assert 0.75 < tracked < 0.98
    assert not sales[sales.channel == "store"].order_id.isin(set(purchases.order_id)).any()
    # The purchase event happens at the order's instant and is preceded by checkout on the same cookie.
    both = purchases.merge(
        sales[["order_id", "ordered_at", "customer_id"]], on="order_id", suffixes=("", "_tx")
    )
    assert (utc(both.occurred_at) == utc(both.ordered_at)).all()
    assert (both.customer_id == both.customer_id_tx).all()
    # Anonymous before login: in each purchase session no customer_id before the login event.
    ev = ev.assign(_t=utc(ev.occurred_at)).sort_values(["anonymous_id", "_t"])
    logins = ev[ev.event_type == "login"]
    assert logins.customer_id.notna().all()
    assert (ev.event_type.isin(["checkout", "purchase"]) <= ev.customer_id.notna()).all()
    # Abandoned carts: cookies with add_to_cart on a day without a purchase on that cookie.
    day = ev._t.dt.date
    carts = set(
        zip(ev.anonymous_id[ev.event_type == "add_to_cart"], day[ev.event_type == "add_to_cart"], strict=True)
    )
    bought = set(
        zip(ev.anonymous_id[ev.event_type == "purchase"], day[ev.event_type == "purchase"], strict=True)
    )
    assert len(carts - bought) > 50
    # Cookies are re-used across visits, and a few are shared by several customers.
    per_cookie = ev[ev.customer_id.notna()].groupby("anonymous_id")
    assert (per_cookie._t.apply(lambda t: t.dt.date.nunique()) > 1).sum() > 20
    devices = pd.read_parquet(run["truth"] / "devices.parquet")
    shared = devices[devices.shared & devices.customer_id.notna()]
    assert (shared.groupby("anonymous_id").customer_id.nunique() > 1).all() and len(shared) > 0


def test_consent_share_is_plausible(run):
    cust = pd.concat([pd.read_parquet(f) for f in sorted(run["root"].glob("customers/dt=*/*.parquet"))])
    latest = cust.sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    assert 0.4 < latest.marketing_consent.mean() < 0.7


def test_oracle_agrees_with_the_simulated_purchases(run, clean):
    """The documented model (oracle.p_no_purchase) predicts the share of alive customers who do not buy."""
    truth = run["truth_customers"]
    t = int(pd.Timestamp("2025-11-21", tz="UTC").timestamp())
    horizon = 30
    signup = truth.signup_at.astype("int64") // 10**6
    churn = truth.churn_at.astype("int64") // 10**6
    alive = (signup + 3600 <= t) & (truth.churn_at.isna() | (churn > t))
    sales = clean["tx"][clean["tx"].line_type == "sale"].drop_duplicates("order_id")
    ts = utc(sales.ordered_at).astype("int64") // 10**9
    buyers = set(sales.customer_id[(ts > t) & (ts <= t + horizon * 86400)])
    a = truth[alive]
    predicted = p_no_purchase(
        a["lambda"].to_numpy(), a["mu"].to_numpy(), t, horizon, a.utc_offset_minutes.to_numpy() * 60
    ).mean()
    observed = 1 - a.customer_id.isin(buyers).mean()
    assert len(a) > 500 and abs(predicted - observed) < 0.04


def simulate_customers(n: int, seed: int, days: int = 300) -> dict:
    """Customers drawn like the generator's (ModelParams defaults), bought on the business clock while alive."""
    rng = np.random.default_rng(seed)
    day = 86_400
    start = int(pd.Timestamp("2025-10-01", tz="UTC").timestamp())
    end = start + days * day
    base = rng.random(n) < 0.65
    signup = np.where(base, start - (rng.random(n) * 1095 * day), start + rng.random(n) * days * day).astype(np.int64)
    lam, mu = rng.gamma(0.9, 1 / 110, n), rng.gamma(2, 1 / 1000, n)
    churn = signup + (rng.exponential(1 / mu) * day).astype(np.int64)
    offset = rng.choice([0, 3600, 7200, -5 * 3600], n).astype(np.int64)
    a, b = oracle.observation_start(signup, start), np.minimum(churn, end)
    active = b > a
    cal = oracle.calendar_for(start - 1100 * day, end)
    owner, local = cal.sample(rng, np.where(active, a, 0) + offset, np.where(active, b, 1) + offset,
                              np.where(active, lam, 0.0))
    return {"signup": signup, "lam": lam, "mu": mu, "churn": churn, "offset": offset, "observed_from": a,
            "owner": owner, "t": local - offset[owner], "start": start, "cal": cal}


def test_oracle_posterior_alive_is_calibrated_and_beats_the_prior():
    """P(alive | lambda, mu, purchases so far) matches the simulated alive share in every quintile."""
    sim = simulate_customers(20_000, seed=5)
    t = sim["start"] + 200 * 86_400
    last = np.full(sim["lam"].size, -1.0)
    before = sim["t"] < t
    np.maximum.at(last, sim["owner"][before], sim["t"][before].astype(float))
    pop = sim["signup"] < t
    alive = (sim["churn"] > t)[pop]
    post = oracle.p_alive_posterior(sim["lam"][pop], sim["mu"][pop], t, last[pop], sim["offset"][pop],
                                    signup_s=sim["signup"][pop], observed_from_s=sim["observed_from"][pop],
                                    cal=sim["cal"])
    prior = oracle.p_alive_prior(sim["mu"][pop], sim["signup"][pop], t)
    assert abs(post.mean() - alive.mean()) < 0.01
    edges = np.quantile(post, np.linspace(0, 1, 6))
    bins = np.clip(np.searchsorted(edges, post, side="right") - 1, 0, 4)
    for k in range(5):
        assert abs(post[bins == k].mean() - alive[bins == k].mean()) < 0.03, k
    assert roc_auc(alive, post) > roc_auc(alive, prior) + 0.03


def test_oracle_forecasts_with_the_posterior_match_the_simulated_future():
    sim = simulate_customers(20_000, seed=6)
    t, horizon = sim["start"] + 200 * 86_400, 90
    last = np.full(sim["lam"].size, -1.0)
    before = sim["t"] < t
    np.maximum.at(last, sim["owner"][before], sim["t"][before].astype(float))
    pop = (sim["signup"] < t) & (last >= 0)
    future = (sim["t"] > t) & (sim["t"] <= t + horizon * 86_400)
    count = np.bincount(sim["owner"][future], minlength=sim["lam"].size)[pop]
    args = (sim["lam"][pop], sim["mu"][pop], t, horizon, sim["offset"][pop])
    post = oracle.p_alive_posterior(*args[:3], last[pop], args[4], signup_s=sim["signup"][pop],
                                    observed_from_s=sim["observed_from"][pop], cal=sim["cal"])
    none = oracle.p_no_purchase(*args, alive=post)
    assert abs(none.mean() - (count == 0).mean()) < 0.015
    purchases = oracle.expected_purchases_dropout(*args, alive=post)
    assert abs(purchases.sum() / count.sum() - 1) < 0.05
    # knowing the state is better than the posterior, which is better than the rates alone
    alive = (sim["churn"] > t)[pop]
    prior = oracle.p_alive_prior(sim["mu"][pop], sim["signup"][pop], t)
    aucs = [roc_auc(count == 0, oracle.p_no_purchase(*args, alive=a)) for a in (prior, post, alive)]
    assert aucs[0] < aucs[1] < aucs[2]


def test_oracle_posterior_edge_cases():
    day = 86_400
    t = 1_760_000_000
    common = {"signup_s": t - 400 * day, "observed_from_s": t - 300 * day}
    post = oracle.p_alive_posterior([0.05, 0.05, 0.05, 0.0], [0.002, 0.002, 0.002, 0.002], t,
                                    [t - 60, t - 200 * day, np.nan, t - 10 * day], 0, **common)
    assert post[0] > 0.999                 # bought a minute ago
    assert post[1] < 0.01                  # a frequent buyer silent for 200 days
    assert post[2] < post[1]               # never seen buying in 300 days: even less likely
    assert post[3] == pytest.approx(np.exp(-0.002 * 10), rel=1e-3)  # lambda 0: silence says nothing
    new = oracle.p_alive_posterior([0.05], [0.002], t, [np.nan], 0, signup_s=t + day, observed_from_s=t + day)
    assert new[0] == 1.0
    # a probability between the known states interpolates p_no_purchase
    args = ([0.03], [0.002], t, 30, 0)
    lo, hi = oracle.p_no_purchase(*args, alive=True), oracle.p_no_purchase(*args, alive=False)
    assert oracle.p_no_purchase(*args, alive=0.25) == pytest.approx(0.25 * lo + 0.75 * hi)


def test_oracle_posterior_on_generated_data(run, clean):
    """On the generator's own output, the posterior from the landed orders matches who is really alive."""
    truth = run["truth_customers"]
    t = int(pd.Timestamp("2025-12-16", tz="UTC").timestamp())
    start = int(pd.Timestamp("2025-11-01", tz="UTC").timestamp())
    signup = truth.signup_at.astype("int64").to_numpy() // 10**6
    churn = truth.churn_at.astype("int64").to_numpy() // 10**6
    alive = (signup < t) & (truth.churn_at.isna().to_numpy() | (churn > t))
    sales = clean["tx"][clean["tx"].line_type == "sale"].drop_duplicates("order_id")
    ts = utc(sales.ordered_at).astype("int64") // 10**9
    last = ts[ts < t].groupby(sales.customer_id[ts < t]).max()
    last_s = truth.customer_id.map(last).astype(float).to_numpy()
    pop = signup < t
    post = oracle.p_alive_posterior(truth["lambda"].to_numpy()[pop], truth["mu"].to_numpy()[pop], t, last_s[pop],
                                    truth.utc_offset_minutes.to_numpy()[pop] * 60, signup_s=signup[pop],
                                    observed_from_s=oracle.observation_start(signup[pop], start))
    assert abs(post.mean() - alive[pop].mean()) < 0.02
    buyers = np.isfinite(last_s[pop])
    assert buyers.sum() > 200 and abs(post[buyers].mean() - alive[pop][buyers].mean()) < 0.03


def test_product_choice_oracle_explains_the_generated_purchases(run, clean):
    """The generative product oracle predicts which products customers buy: its expected count per product
    follows the observed one, and the bought products are likelier under it than under category affinity x
    popularity within the category (which ignores the customer's price level)."""
    from c360dev.generate.model import ModelParams, catalog_size, make_catalog

    truth = run["truth_customers"].set_index("customer_id")
    summary = json.loads((run["truth"] / "summary.json").read_text())
    sales = clean["tx"][(clean["tx"].line_type == "sale") & clean["tx"].customer_id.isin(truth.index)]
    buyers = np.sort(sales.customer_id.unique())
    theta = np.vstack(truth.loc[buyers, "category_affinity"].to_numpy()).astype(float)
    ids, probs = oracle.product_choice_probabilities(summary, theta, truth.loc[buyers, "spend_nu"].to_numpy())
    assert np.allclose(probs.sum(axis=1), 1.0)
    row = pd.Series(np.arange(buyers.size), index=buyers)[sales.customer_id].to_numpy()
    col = pd.Series(np.arange(ids.size), index=ids)[sales.product_id].to_numpy()
    assert len(sales) > 1000
    expected, observed = probs[row].sum(axis=0), np.bincount(col, minlength=ids.size)
    assert np.corrcoef(expected, observed)[0, 1] > 0.85

    start_s = int(pd.Timestamp(summary["start"], tz="UTC").timestamp())
    category = make_catalog(catalog_size(summary["customers"]), start_s, 1, summary["seed"], ModelParams()).category
    theta /= theta.sum(axis=1, keepdims=True)
    popularity = probs.mean(axis=0)
    within = popularity / np.bincount(category, weights=popularity)[category]
    no_price = theta[:, category] * within[None, :]
    gain = np.log(probs[row, col]).mean() - np.log(no_price[row, col]).mean()
    assert gain > 0.05, gain


# ---------------------------------------------------------------- dirt


def test_dirt_counts_match_the_configuration_and_the_manifest(run):
    summary, dirt, m = run["summary"], run["dirt"], run["manifest"]
    clean_rows = {
        "transactions": summary.volumes["transaction_rows_clean"],
        "tracking": summary.volumes["events_clean"],
    }
    for k in DIRT_KINDS:
        expected = int(round(getattr(dirt, k.config) * dirt.scale * clean_rows[k.entity]))
        listed = m[(m.entity == k.entity) & (m.kind == k.kind)]
        assert expected > 0 and len(listed) == expected, k
        assert (listed.expected_reason.fillna("loaded") == (k.reason or "loaded")).all()
    landed = summary.rows
    assert landed["transactions"] == len(run["tx"])
    assert landed["tracking"] == len(run["events"]) + len(run["broken"])


def test_every_manifest_row_points_at_its_defect(run):
    tx, ev, m = run["tx"], run["events"], run["manifest"]
    tx = tx.assign(_u=utc(tx.updated_at), _o=utc(tx.ordered_at))
    by_pos = tx.set_index(["_file", "_row"])
    dt_end = pd.to_datetime(tx._dt).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    payload = [c for c in tx.columns if not c.startswith("_")]

    def rows(kind):
        keys = m[(m.entity == "transactions") & (m.kind == kind)]
        got = by_pos.loc[list(zip(keys.source_file, keys.row_number, strict=True))]
        assert (got.order_id.to_numpy() == keys.order_id.to_numpy()).all()
        return got

    assert (rows("missing_customer_id").customer_id == "").all()
    neg = rows("negative_quantity")
    assert ((neg.quantity.astype(int) < 0) & (neg.line_type == "sale")).all()
    assert (~rows("unknown_currency").currency.isin(get_settings().currencies)).all()
    assert (rows("test_order").is_test == "true").all()
    fut = rows("future_timestamp")
    ends = pd.to_datetime(fut.index.get_level_values(0).str.extract(r"dt=([\d-]+)")[0]).dt.tz_localize("UTC")
    assert (fut._o.to_numpy() > (ends + pd.Timedelta(days=2)).to_numpy()).all()
    # Exact duplicates: an identical row earlier in the same file or in an earlier file.
    seen = tx.sort_values(["_file", "_row"])
    first_pos = seen.drop_duplicates(payload, keep="first").set_index(["_file", "_row"]).index
    dup_keys = manifest_keys(m, "transactions", "duplicate_row")
    assert not dup_keys & set(first_pos)
    assert len(seen) - len(first_pos) == len(dup_keys)
    # Re-sent lines: same key, different amount, later updated_at, in a later partition.
    resent = rows("resent_line").reset_index()
    orig = tx.merge(
        resent[["order_id", "line_id", "line_type", "amount", "_u", "_dt"]],
        on=["order_id", "line_id", "line_type"],
        suffixes=("", "_new"),
    )
    orig = orig[orig._u < orig._u_new]
    assert orig.order_id.nunique() == resent.order_id.nunique() == len(resent)
    assert ((orig.amount != orig.amount_new) & (orig._dt < orig._dt_new)).all()
    # Anything quarantinable in the files is in the manifest.
    assert (tx.customer_id == "").sum() == len(rows("missing_customer_id"))
    assert (tx.is_test == "true").sum() == len(rows("test_order"))
    assert (tx._o > dt_end + pd.Timedelta(hours=2)).sum() == len(fut)

    # Tracking.
    broken = {(f, r) for f, r, _ in run["broken"]}
    assert broken == manifest_keys(m, "tracking", "malformed_record")
    ev_pos = ev.set_index(["_file", "_row"])
    dups = manifest_keys(m, "tracking", "duplicate_row")
    first = ev.sort_values(["_file", "_row"]).drop_duplicates("event_id").set_index(["_file", "_row"]).index
    assert not dups & set(first) and len(ev) - len(first) == len(dups)
    late = ev_pos.loc[sorted(manifest_keys(m, "tracking", "late_event"))]
    occurred = utc(late.occurred_at).dt.strftime("%Y-%m-%d")
    lag = (pd.to_datetime(late._dt) - pd.to_datetime(occurred)).dt.days
    assert ((lag >= 1) & (lag <= 3)).all()
    fut = ev_pos.loc[sorted(manifest_keys(m, "tracking", "future_timestamp"))]
    ends = pd.to_datetime(fut._dt).dt.tz_localize("UTC") + pd.Timedelta(days=2)
    assert (utc(fut.occurred_at) > ends).all()


def test_no_dirt_means_no_dirt(tmp_path):
    s = generate(
        tmp_path / "l", customers=400, days=15, seed=3, truth_dir=tmp_path / "t", dirt=DirtConfig.none()
    )
    assert sum(s.dirt.values()) == 0
    assert len(pd.read_parquet(tmp_path / "t" / "dirt.parquet")) == 0
    tx = read_transactions(tmp_path / "l")
    ev, broken = read_tracking(tmp_path / "l")
    assert not broken and not ev.event_id.duplicated().any()
    assert not tx.drop(columns=["_file", "_row", "_dt"]).duplicated().any()
    assert (tx.customer_id != "").all() and (tx.is_test == "false").all()
    assert (utc(ev.occurred_at).dt.strftime("%Y-%m-%d") == ev._dt).all()
    assert s.volumes["events_clean"] == len(ev) and s.volumes["transaction_rows_clean"] == len(tx)


def test_dirt_scale_multiplies_the_counts(tmp_path):
    a = generate(tmp_path / "a", customers=400, days=15, seed=3, truth_dir=tmp_path / "ta", dirt=DirtConfig())
    b = generate(
        tmp_path / "b", customers=400, days=15, seed=3, truth_dir=tmp_path / "tb", dirt=DirtConfig(scale=4.0)
    )
    assert b.dirt["tracking.late_event"] == pytest.approx(4 * a.dirt["tracking.late_event"], abs=2)
    # Dirt never changes the clean data.
    assert a.volumes == b.volumes


def test_only_transactions_writes_the_minimal_contract(tmp_path):
    s = generate(
        tmp_path / "l", customers=400, days=10, seed=3, truth_dir=tmp_path / "t", only_transactions=True
    )
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["transactions"]
    tx = read_transactions(tmp_path / "l")
    assert [c for c in tx.columns if not c.startswith("_")] == [
        "customer_id",
        "order_id",
        "ordered_at",
        "amount",
    ]
    m = pd.read_parquet(tmp_path / "t" / "dirt.parquet")
    clean_tx = tx[~in_keys(tx, manifest_keys(m, "transactions"))]
    assert clean_tx.order_id.is_unique and (clean_tx.amount.astype(float) > 0).all()
    assert s.rows == {"transactions": len(tx)}


def test_no_tracking_leaves_transactions_unchanged(tmp_path):
    generate(tmp_path / "a", customers=300, days=8, seed=9, truth_dir=tmp_path / "ta")
    generate(tmp_path / "b", customers=300, days=8, seed=9, truth_dir=tmp_path / "tb", tracking=False)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    assert not any(k.startswith("tracking/") for k in b)
    assert {k: v for k, v in a.items() if not k.startswith("tracking/")} == b


def test_cli_generate(tmp_path, capsys):
    from c360.cli import main

    rc = main(
        [
            "generate",
            "--customers",
            "200",
            "--days",
            "4",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "l"),
            "--truth-dir",
            str(tmp_path / "t"),
            "--no-dirt",
            "--start",
            "2026-01-30",
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "l" / "transactions").iterdir())[-1] == "dt=2026-02-02"
    assert (tmp_path / "t" / "summary.json").exists()
    assert "generated 200 customers x 4 days" in capsys.readouterr().out


@pytest.mark.s3
def test_generate_to_s3_writes_the_same_bytes_as_locally(s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/landing"
    generate(uri, customers=200, days=3, seed=4, truth_dir=tmp_path / "t-s3")
    generate(tmp_path / "local", customers=200, days=3, seed=4, truth_dir=tmp_path / "t-local")
    store = open_storage(uri, endpoint_url=get_settings().s3_endpoint_url)
    remote = {f.key: hashlib.sha256(store.read_bytes(f.key)).hexdigest() for f in store.list("")}
    assert remote == file_hashes(tmp_path / "local")


# ---------------------------------------------------------------- the "retail" profile (issue 12, deliver 7)


def purchase_facts(root: Path, window_days: int = 90) -> dict:
    """The stylised facts of a purchase history, measured from the landed transactions-only files."""
    tx = read_transactions(root)
    tx = tx[(tx.customer_id != "") & (tx.amount.astype(float) > 0)].drop_duplicates(
        subset=["order_id"], keep="last"
    )
    tx = tx.assign(t=utc(tx.ordered_at), amount=tx.amount.astype(float)).sort_values("t")
    orders = tx.groupby("customer_id").order_id.nunique()
    first = tx.groupby("customer_id").t.min()
    gaps = tx.groupby("customer_id").t.diff().dropna().dt.total_seconds() / 86400
    start, end = tx.t.min().floor("D"), tx.t.max().ceil("D")
    months = first.dt.tz_localize(None).dt.to_period("M").value_counts().sort_index()
    silent = []
    w0 = start + pd.Timedelta(days=window_days)
    while w0 + pd.Timedelta(days=window_days) <= end:
        known = first.index[first < w0]
        buying = tx.customer_id[(tx.t >= w0) & (tx.t < w0 + pd.Timedelta(days=window_days))].unique()
        silent.append(1 - np.isin(known, buying).mean())
        w0 += pd.Timedelta(days=window_days)
    values = tx.amount.sort_values()
    return {
        "one_time_share": float((orders == 1).mean()),
        "mean_over_median": float(values.mean() / values.median()),
        "skew": float(values.skew()),
        "top_decile_share": float(values.iloc[-len(values) // 10 :].sum() / values.sum()),
        # month-to-month change of new buyers (whole months only): a trend barely moves it, campaigns do
        "acquisition_jump": float(np.abs(np.diff(np.log(months.iloc[1:-1].to_numpy() + 1.0))).mean()),
        "median_gap_days": float(gaps.median()),
        "silent_shares": silent,
        "first": tx.t.min(),
        "last": tx.t.max(),
    }


@pytest.fixture(scope="module")
def retail_facts(tmp_path_factory):
    root = tmp_path_factory.mktemp("retail")
    facts = {}
    for profile in ("retail", "default"):
        generate(
            root / profile, customers=4000, days=730, seed=11, start="1996-01-01", truth_dir=root / f"t-{profile}",
            dirt=DirtConfig.none(), only_transactions=True, params=PROFILES[profile],
        )
        facts[profile] = purchase_facts(root / profile)
    return facts


def test_retail_profile_has_the_stylised_facts_of_real_purchase_histories(retail_facts):
    retail, default = retail_facts["retail"], retail_facts["default"]
    # Most buyers buy once (50-70 % is common in real shops); the demo shop's frequent buyers are the contrast.
    assert 0.5 <= retail["one_time_share"] <= 0.7, retail
    assert default["one_time_share"] < retail["one_time_share"] - 0.1, (default, retail)
    # Heavy-tailed order values: the mean well above the median, a long right tail, the top tenth of orders
    # carrying a third of the revenue, heavier than the Gamma-Gamma demo shop. (Skewness itself is set by the few
    # largest orders, the catalogue's dearest products in both profiles, so it is not compared.)
    assert retail["mean_over_median"] > 1.3 and retail["skew"] > 3 and retail["top_decile_share"] > 0.3, retail
    assert retail["mean_over_median"] > default["mean_over_median"] + 0.1
    assert retail["top_decile_share"] > default["top_decile_share"] + 0.03
    # Acquisition in cohorts: monthly new buyers vary far more than seasonality and Poisson noise would make them.
    assert retail["acquisition_jump"] > 0.4 and retail["acquisition_jump"] > 2 * default["acquisition_jump"], (
        retail["acquisition_jump"], default["acquisition_jump"])
    # Long gaps between a customer's orders, and most known customers silent in every 90-day window.
    assert retail["median_gap_days"] >= 30, retail
    assert len(retail["silent_shares"]) >= 5 and min(retail["silent_shares"]) >= 0.7, retail["silent_shares"]


def test_retail_profile_history_lies_in_the_requested_decade(retail_facts):
    for facts in retail_facts.values():
        assert facts["first"] >= pd.Timestamp("1996-01-01", tz="UTC")
        assert facts["last"] < pd.Timestamp("1998-01-01", tz="UTC")


def test_cli_transactions_only_history_in_the_1990s(tmp_path, capsys):
    from c360.cli import main

    out, truth = tmp_path / "l", tmp_path / "t"
    rc = main(["generate", "--profile", "retail", "--transactions-only", "--start-date", "1996-01-01",
               "--customers", "300", "--days", "120", "--seed", "5", "--no-dirt", "--out", str(out), "--truth-dir", str(truth)])
    assert rc == 0
    # Only transactions, with exactly the four columns of the minimal contract, every row and partition in 1996.
    assert sorted(p.name for p in out.iterdir()) == ["transactions"]
    parts = sorted(p.name for p in (out / "transactions").iterdir())
    assert parts[0] == "dt=1996-01-01" and parts[-1] == "dt=1996-04-29" and len(parts) == 120
    tx = read_transactions(out)
    assert [c for c in tx.columns if not c.startswith("_")] == ["customer_id", "order_id", "ordered_at", "amount"]
    clean = tx[tx.customer_id != ""]
    assert len(clean) > 100
    assert clean.ordered_at.str.match(r"^1996-0[1-4]-\d\dT").all()
    assert (clean.ordered_at.str[:10] == clean._dt).all()  # each row in the partition of its day
    summary = json.loads((truth / "summary.json").read_text())
    assert summary["model_params"]["first_purchase_at_signup"] is True and summary["only_transactions"] is True
    assert "generated 300 customers x 120 days from 1996-01-01" in capsys.readouterr().out


def test_cli_rejects_unknown_profiles_and_dates_before_1970(tmp_path, capsys):
    from c360.cli import main

    with pytest.raises(SystemExit):
        main(["generate", "--profile", "nope", "--out", str(tmp_path / "l")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    rc = main(["generate", "--start-date", "1969-12-31", "--customers", "10", "--days", "2",
               "--out", str(tmp_path / "l"), "--truth-dir", str(tmp_path / "t")])
    assert rc == 2 and not (tmp_path / "l").exists()


def test_retail_profile_keeps_the_oracles_meaning(tmp_path):
    """Every customer acquired in the horizon buys at signup + 1 h and is alive then; repeat purchases follow lambda."""
    generate(tmp_path / "l", customers=2000, days=200, seed=2, truth_dir=tmp_path / "t", dirt=DirtConfig.none(),
             only_transactions=True, params=PROFILES["retail"])
    truth = pd.read_parquet(tmp_path / "t" / "customers.parquet")
    tx = read_transactions(tmp_path / "l")
    first = tx.assign(t=utc(tx.ordered_at)).groupby("customer_id").t.min()
    new = truth[truth.signup_at >= pd.Timestamp("2025-10-01", tz="UTC")].set_index("customer_id")
    new = new[new.signup_at + pd.Timedelta(hours=1) < pd.Timestamp("2025-10-01", tz="UTC") + pd.Timedelta(days=200)]
    assert len(new) > 1000
    # Cancelled acquisition orders are not in the transactions-only files (4 %): the rest start exactly 1 h in.
    seen = first.reindex(new.index).dropna()
    assert len(seen) >= 0.9 * len(new)
    assert ((seen - new.signup_at.reindex(seen.index)) == pd.Timedelta(hours=1)).mean() > 0.95
    assert (new.churn_at.isna() | (new.churn_at > new.signup_at + pd.Timedelta(hours=1))).all()
    assert set(truth.country) == {"DE"} and set(truth.currency) == {"EUR"}
