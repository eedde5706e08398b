"""`python -m c360dev.bench.scoring --customers N --events M`: throughput of the nightly scoring job on synthetic data.

Writes a feature store into a work dir (a scoring snapshot of N customers with every feature-store column, two
smaller labelled snapshots to train on, M interaction events partitioned by known_date like the dbt export, and a
product catalogue), trains and promotes champions with the project's own training job (`spark_jobs.train`, small
settings) in a temporary MLflow store, then runs `spark_jobs.score` --repeat times, each in a fresh process (as
the nightly does: its own JVM), timing its phases from the job's own progress log. Also measured, in a fresh
process too: the floor of any Spark scoring job here (read the snapshot and write a scores-shaped table, write
N x 10 recommendation-shaped rows, read and aggregate the events). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger("c360dev.bench.scoring")

SCORE_DATE = "2025-07-31"     # the snapshot the job scores
TRAIN_DATE = "2025-01-31"     # labelled snapshots the champions are trained on
HOLDOUT_DATE = "2025-04-30"
EVENT_DAYS = 365              # interaction history before the scoring date
TOP_N = 10
RESULT_MARK = "BENCH_RESULT "
INPUTS_FILE = "bench_inputs.json"

# the job's phases, by the name its `step(...)` log lines give them (spark_jobs.common.step)
PHASES = {"starting Spark": "spark_start", "resolving @champion": "resolve", "loading models": "model_load",
          "scoring churn and CLV": "scores", "recommending": "recommendations", "swapping": "swap"}
SETUP_PHASES = ("spark_start", "resolve", "model_load")


# --------------------------------------------------------------------------------------------------
# synthetic inputs
# --------------------------------------------------------------------------------------------------

def _table(columns: dict):
    """A pyarrow table from (values, arrow type) pairs; NaN / None become nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = {}
    for name, (values, typ) in columns.items():
        if pa.types.is_decimal(typ):
            v = np.round(np.asarray(values, dtype=float), 2)
            arrays[name] = pc.cast(pa.array(v, mask=np.isnan(v)), typ, safe=False)
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
            v = np.asarray(values, dtype=float)
            arrays[name] = pc.cast(pa.array(v, mask=np.isnan(v)), typ, safe=False)
        else:
            arrays[name] = pa.array(values, type=typ)
    return pa.table(arrays)


def _quintile(x: np.ndarray) -> np.ndarray:
    """1..5 by rank (ties by position): the feature store's RFM scores."""
    ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    return ranks * 5 // max(len(x), 1) + 1


def customer_traits(n: int, seed: int) -> dict[str, np.ndarray]:
    """What stays true of a customer across snapshots: favourite category, country, channel, rates."""
    from c360dev.generate.reference import ACQUISITION_CHANNELS, CATEGORIES, COUNTRIES

    rng = np.random.default_rng([seed, 1])
    cats = [c[0] for c in CATEGORIES]
    cat_share = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
    countries = [c[0] for c in COUNTRIES]
    country_share = np.array([c[3] for c in COUNTRIES]) / sum(c[3] for c in COUNTRIES)
    channels = [c[0] for c in ACQUISITION_CHANNELS]
    channel_share = np.array([c[1] for c in ACQUISITION_CHANNELS])
    return {
        "customer_id": np.array([f"C{i:07d}" for i in range(n)], dtype=object),
        "category": rng.choice(len(cats), n, p=cat_share),
        "country": rng.choice(np.array(countries, dtype=object), n, p=country_share),
        "channel": rng.choice(np.array(channels, dtype=object), n, p=channel_share / channel_share.sum()),
        "order_rate": rng.gamma(1.5, 2.0, n),        # orders per year while alive
        "session_rate": rng.gamma(1.0, 3.0, n),      # sessions per 30 days when tracked
        "aov": rng.gamma(4.0, 15.0, n),
        "buyer": rng.random(n) < 0.8,
        "tracked": rng.random(n) < 0.7,
        "activity": rng.gamma(0.7, 1.0, n) * (rng.random(n) > 0.08),  # 8 % leave no interaction at all
    }


def feature_snapshot(traits: dict[str, np.ndarray], n: int, as_of: str, seed: int):
    """(features, labels_churn, labels_value) tables for the first n customers, with the export's column types."""
    import pyarrow as pa

    from c360dev.generate.reference import ACQUISITION_CHANNELS, CATEGORIES

    rng = np.random.default_rng([seed, 2, date.fromisoformat(as_of).toordinal()])
    t = {k: v[:n] for k, v in traits.items()}
    day = np.datetime64(as_of, "D")
    cats = np.array([c[0] for c in CATEGORIES], dtype=object)
    buyer, tracked, rate, aov = t["buyer"], t["tracked"], t["order_rate"], t["aov"]
    alive = rng.random(n) < 0.6
    tenure = rng.integers(30, 1500, n)
    dsfo = np.where(buyer, (tenure * rng.uniform(0.2, 1.0, n)).astype(int), 0)
    orders = np.where(buyer, 1 + rng.poisson(rate * dsfo / 365), 0)
    gap = np.where(alive, rng.exponential(365 / rate), dsfo * rng.uniform(0.4, 1.0, n))
    dslo = np.where(orders > 1, np.minimum(dsfo, gap.astype(int)), dsfo)
    purchase_days = np.where(buyer, np.maximum(1, orders - rng.binomial(np.maximum(orders - 1, 0), 0.05)), 0)
    owr = rng.binomial(orders, 0.1)
    gross = orders * aov * rng.uniform(0.9, 1.1, n)
    returned = owr * aov * 0.6
    windows = {}
    for w in (7, 30, 90):
        o = np.where(buyer & (dslo <= w), 1 + rng.poisson(rate * alive * w / 365), 0)
        windows[w] = np.minimum(np.maximum(o, windows.get({30: 7, 90: 30}.get(w, 0), 0)), orders)
    bn = buyer.sum()
    r_score, f_score, m_score = (np.full(n, np.nan) for _ in range(3))
    r_score[buyer] = 6 - _quintile(dslo[buyer]) if bn else []
    f_score[buyer] = np.clip(orders[buyer], 1, 5)
    m_score[buyer] = _quintile((gross - returned)[buyer]) if bn else []
    segment = np.select(
        [~buyer, (r_score >= 4) & (f_score >= 4), f_score >= 4, (orders == 1) & (r_score >= 4),
         (r_score <= 2) & (f_score >= 3), r_score <= 2],
        ["no_orders", "champions", "loyal", "new", "at_risk", "hibernating"], "potential").astype(object)
    has_fav = buyer | (tracked & (rng.random(n) < 0.5))
    sessions, views, carts = {}, {}, {}
    prev = (0, 0, 0)
    for w, span in ((7, 7), (30, 23), (90, 60)):
        s = prev[0] + rng.poisson(t["session_rate"] * span / 30) * tracked
        v = prev[1] + rng.poisson(3.0 * (s - prev[0]))
        c = prev[2] + rng.binomial(v - prev[1], 0.1)
        sessions[w], views[w], carts[w] = s, v, c
        prev = (s, v, c)
    abandoned = rng.binomial(carts[90], 0.6)
    shares = rng.dirichlet([3.0, 4.0, 1.0], n)
    seen90 = sessions[90] > 0
    freq = np.where(buyer, purchase_days - 1, 0)
    nan = np.nan
    channels = np.array([c[0] for c in ACQUISITION_CHANNELS], dtype=object)
    touch = np.where(tracked, rng.choice(channels, n), None)
    i32, f64, money = pa.int32(), pa.float64(), pa.decimal128(18, 2)
    features = _table({
        "customer_id": (t["customer_id"], pa.string()),
        "has_profile": (rng.random(n) < 0.9, pa.bool_()),
        "signup_date": (day - tenure.astype("timedelta64[D]"), pa.date32()),
        "country": (t["country"], pa.string()),
        "acquisition_channel": (t["channel"], pa.string()),
        "marketing_consent": (rng.random(n) < 0.6, pa.bool_()),
        "tenure_days": (tenure, i32),
        "first_order_date": (np.where(buyer, day - dsfo.astype("timedelta64[D]"), np.datetime64("NaT")), pa.date32()),
        "last_order_date": (np.where(buyer, day - dslo.astype("timedelta64[D]"), np.datetime64("NaT")), pa.date32()),
        "days_since_first_order": (np.where(buyer, dsfo, nan), i32),
        "days_since_last_order": (np.where(buyer, dslo, nan), i32),
        "orders_count": (orders, i32),
        "purchase_days": (purchase_days, i32),
        "items_count": (orders + rng.poisson(orders * 0.8), i32),
        "cancelled_orders_count": (rng.binomial(orders, 0.03), i32),
        "gross_revenue_eur": (gross, money),
        "returned_revenue_eur": (returned, money),
        "net_revenue_eur": (gross - returned, money),
        "avg_order_value_eur": (np.where(buyer, aov, nan), money),
        "orders_with_return_count": (owr, i32),
        "return_rate": (np.where(buyer, owr / np.maximum(orders, 1), nan), f64),
        "avg_days_between_orders": (np.where(purchase_days > 1, (dsfo - dslo) / np.maximum(purchase_days - 1, 1), nan),
                                    f64),
        **{f"orders_{w}d": (windows[w], i32) for w in (7, 30, 90)},
        **{f"net_revenue_eur_{w}d": (windows[w] * aov, money) for w in (7, 30, 90)},
        "rfm_recency_score": (r_score, i32),
        "rfm_frequency_score": (f_score, i32),
        "rfm_monetary_score": (m_score, i32),
        "rfm_segment": (segment, pa.string()),
        "favourite_category": (np.where(has_fav, cats[t["category"]], None), pa.string()),
        "favourite_category_share": (np.where(has_fav, rng.uniform(0.3, 1.0, n), nan), f64),
        "distinct_categories": (np.where(has_fav, 1 + rng.poisson(1.5, n), 0), i32),
        "bgnbd_frequency": (freq, i32),
        "bgnbd_recency_days": (np.where(freq > 0, dsfo - dslo, 0), i32),
        "bgnbd_t_days": (np.where(buyer, dsfo, nan), i32),
        "bgnbd_monetary_eur": (np.where(freq > 0, aov, nan), money),
        "has_tracking": (tracked, pa.bool_()),
        **{f"{kind}_{w}d": (values[w], i32) for w in (7, 30, 90)
           for kind, values in (("sessions", sessions), ("product_views", views), ("cart_adds", carts))},
        "abandoned_carts_90d": (abandoned, i32),
        "cart_abandonment_rate_90d": (np.where(carts[90] > 0, abandoned / np.maximum(carts[90], 1), nan), f64),
        "days_since_last_visit": (np.where(tracked, np.where(seen90, rng.exponential(10, n), 90 + rng.exponential(200, n)),
                                           nan), i32),
        "share_sessions_desktop_90d": (np.where(seen90, shares[:, 0], nan), f64),
        "share_sessions_mobile_90d": (np.where(seen90, shares[:, 1], nan), f64),
        "share_sessions_tablet_90d": (np.where(seen90, shares[:, 2], nan), f64),
        "first_touch_channel": (touch, pa.string()),
        "last_touch_channel": (np.where(tracked, rng.choice(channels, n), None), pa.string()),
    })
    # labels that depend on the features, so the models have something to learn
    logit = (dslo - 120) / 50 + 1.5 * ~alive - 0.3 * np.log1p(orders) - 0.2 * sessions[30]
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    future = np.where(churned, 0.0, rng.poisson(rate * alive * 180 / 365 + 0.2) * aov * rng.uniform(0.8, 1.2, n))
    labels_churn = _table({"customer_id": (t["customer_id"], pa.string()), "churn_horizon_days": (np.full(n, 90), i32),
                           "churned": (churned, pa.bool_())})
    labels_value = _table({"customer_id": (t["customer_id"], pa.string()),
                           "value_horizon_days": (np.full(n, 180), i32),
                           "future_net_revenue_eur": (future, money)})
    return features, labels_churn, labels_value


def products_table(n_products: int):
    """(product_id, category): the catalogue split over the generator's categories by their demand share."""
    import pyarrow as pa

    from c360dev.generate.reference import CATEGORIES

    share = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
    per_cat = np.maximum(1, np.floor(share * n_products).astype(int))
    category = np.repeat(np.arange(len(CATEGORIES)), per_cat)
    names = np.array([c[0] for c in CATEGORIES], dtype=object)
    return pa.table({"product_id": pa.array([f"P{i:06d}" for i in range(len(category))]),
                     "category": pa.array(names[category])}), category


def interactions_table(traits: dict[str, np.ndarray], n_customers: int, n_events: int, product_category: np.ndarray,
                       seed: int):
    """Events over the EVENT_DAYS before the scoring date: 70 % in the customer's favourite category, Zipf-like
    product popularity, purchases only by buyers; with the export's columns and its known_date partition key."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng([seed, 3])
    weight = traits["activity"][:n_customers] * (0.3 + traits["buyer"][:n_customers])
    cust = rng.choice(n_customers, n_events, p=weight / weight.sum())
    n_cats = int(product_category.max()) + 1
    cat = np.where(rng.random(n_events) < 0.7, traits["category"][cust], rng.integers(0, n_cats, n_events))
    starts = np.searchsorted(product_category, np.arange(n_cats))
    sizes = np.bincount(product_category, minlength=n_cats)
    # popularity within a category ~ 1 / rank: a few products take most of the demand
    u = rng.random(n_events)
    rank = np.minimum((np.exp(u * np.log(sizes[cat] + 1)) - 1).astype(int), sizes[cat] - 1)
    product = starts[cat] + rank
    u = rng.random(n_events)
    kind = np.where((u < 0.15) & traits["buyer"][cust], "purchase", np.where(u < 0.3, "add_to_cart", "product_view"))
    end = np.datetime64(SCORE_DATE, "us") + np.timedelta64(1, "D")
    when = end - rng.integers(1, EVENT_DAYS * 86_400_000_000, n_events).astype("timedelta64[us]")
    order = np.argsort(when, kind="stable")
    ids = pc.binary_join_element_wise("e", pc.cast(pa.array(np.arange(n_events)), pa.string()), "")
    return pa.table({
        "interaction_id": ids,
        "customer_id": pa.array(traits["customer_id"][cust[order]], type=pa.string()),
        "product_id": pa.array(np.char.add("P", np.char.zfill(product[order].astype(str), 6)), type=pa.string()),
        "event_type": pa.array(kind[order], type=pa.string()),
        "event_time": pa.array(when[order], type=pa.timestamp("us", tz="UTC")),
        "known_date": pa.array(when[order].astype("datetime64[D]"), type=pa.date32()),
    })


def write_inputs(fs: Path, customers: int, events: int, products: int, train_customers: int, seed: int) -> dict:
    """The feature store the scoring job and the training job read (layout of c360.pipeline.transform's export)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    traits = customer_traits(max(customers, train_customers), seed)
    counts = {}
    for as_of, n, labelled in ((TRAIN_DATE, train_customers, True), (HOLDOUT_DATE, train_customers, True),
                               (SCORE_DATE, customers, False)):
        features, churn, value = feature_snapshot(traits, n, as_of, seed)
        tables = {"customer_features": features, **({"labels_churn": churn, "labels_value": value} if labelled else {})}
        for name, table in tables.items():
            path = fs / name / f"as_of_date={as_of}"
            path.mkdir(parents=True)
            pq.write_table(table, path / "part-0.parquet")
        counts[as_of] = n
    catalogue, category = products_table(products)
    (fs / "products").mkdir(parents=True)
    pq.write_table(catalogue, fs / "products" / "part-0.parquet")
    table = interactions_table(traits, customers, events, category, seed)
    ds.write_dataset(table, fs / "interactions", format="parquet", basename_template="part-{i}.parquet",
                     partitioning=ds.partitioning(table.select(["known_date"]).schema, flavor="hive"),
                     existing_data_behavior="overwrite_or_ignore")
    return {"snapshots": counts, "events": table.num_rows, "products": catalogue.num_rows,
            "interaction_partitions": len(list((fs / "interactions").iterdir()))}


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------

def bench_env(work: Path, master: str) -> dict[str, str]:
    data = work / "data"
    return {
        "C360_DATA_DIR": str(data),
        "C360_FEATURE_STORE_DIR": str(data / "feature_store"),
        "C360_SCORES_DIR": str(data / "scores"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
        "C360_MLFLOW_ARTIFACT_ROOT": str(data / "mlflow" / "artifacts"),
        "SPARK_MASTER": master,
        "AIRFLOW_HOME": str(work / "airflow"),
    }


def _run(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float = 3600) -> tuple[str, float]:
    """Run a command with `env` added; stderr to log_path; returns (stdout, seconds) or raises with the log tail."""
    started = time.perf_counter()
    with open(log_path, "a") as err:
        err.write(f"\n$ {' '.join(cmd)}\n")
        err.flush()
        done = subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=err, text=True,
                              timeout=timeout)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} failed (exit {done.returncode}); log {log_path}:\n{tail}")
    return done.stdout, seconds


def _child_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise RuntimeError(f"benchmark child printed no result: {stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_MARK):])


def train_champions(env: dict[str, str], log_path: Path, seed: int) -> dict:
    """spark_jobs.train on the labelled snapshots (small settings), then @champion for every model: the gates
    judge quality, which is not what this benchmark measures."""
    out, seconds = _run([sys.executable, "-m", "spark_jobs.train", "--as-of-date", SCORE_DATE, "--train-date",
                         TRAIN_DATE, "--holdout-date", HOLDOUT_DATE, "--gbt-iterations", "10", "--rec-grid", "none",
                         "--seed", str(seed)], env, log_path)
    results = json.loads(out.strip().splitlines()[-1])
    for r in results:
        if not r["promoted"]:
            _run([sys.executable, "-m", "spark_jobs.models", "promote", "--model", r["model"], "--version",
                  r["version"], "--note", "benchmark: champion without gates"], env, log_path)
    return {"seconds": round(seconds, 1), "models": {r["model"]: {"version": r["version"],
                                                                  "passed_gates": r["gates_passed"]}
                                                     for r in results}}


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (the JVM and its Python workers).

    On a shared machine the wall time of a phase stretches with the other processes' load; its CPU time much less.
    """
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class _StepRecorder(logging.Handler):
    """Collects the job's `step` durations (wall and CPU) and its own summary lines from the spark_jobs log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: list[tuple[str, float]] = []
        self.cpu: list[tuple[str, float]] = []
        self._cpu_at_start: dict[str, float] = {}
        self.customers: int | None = None
        self.recommendation_rows: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "%s ..." and len(args) == 1:
            self._cpu_at_start[str(args[0])] = tree_cpu_seconds()
        elif record.msg == "%s done in %.1fs" and len(args) == 2:
            self.steps.append((str(args[0]), float(args[1])))
            if str(args[0]) in self._cpu_at_start:
                self.cpu.append((str(args[0]), tree_cpu_seconds() - self._cpu_at_start.pop(str(args[0]))))
        elif str(record.msg).startswith("scored %d customers") and args:
            self.customers = int(args[0])
        elif str(record.msg).startswith("wrote %s (%d rows, top") and len(args) > 1:
            self.recommendation_rows = int(args[1])


def phases_of(steps: list[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in steps:
        key = next((v for k, v in PHASES.items() if name.startswith(k)), name)
        out[key] = out.get(key, 0.0) + seconds
    return out


def child_score(args: argparse.Namespace) -> dict:
    """One scoring job in this process, as `python -m spark_jobs.score` runs it."""
    from spark_jobs.common import setup_logging
    from spark_jobs.score import score

    setup_logging()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    recorder = _StepRecorder()
    logging.getLogger("spark_jobs").addHandler(recorder)
    cpu = tree_cpu_seconds()
    started = time.perf_counter()
    score(SCORE_DATE, recommendations=not args.no_recommendations)
    total = time.perf_counter() - started
    cpu = tree_cpu_seconds() - cpu  # the JVM outlives spark.stop() until this process exits: still counted
    phases, phases_cpu = phases_of(recorder.steps), phases_of(recorder.cpu)
    setup = sum(phases.get(p, 0.0) for p in SETUP_PHASES)
    setup_cpu = sum(phases_cpu.get(p, 0.0) for p in SETUP_PHASES)
    return {"job_seconds": total, "scoring_seconds": total - setup, "job_cpu_seconds": cpu,
            "scoring_cpu_seconds": cpu - setup_cpu, "phases": phases, "phases_cpu": phases_cpu,
            "customers": recorder.customers, "recommendation_rows": recorder.recommendation_rows}


def child_floor(args: argparse.Namespace) -> dict:
    """What any Spark scoring job on this machine pays without models: read, shape, write."""
    from pyspark.sql import functions as F

    from c360.config import get_settings
    from spark_jobs.common import build_spark, read_events, read_snapshot, setup_logging

    setup_logging()
    settings = get_settings()
    out = Path(tempfile.mkdtemp(prefix="floor-", dir=settings.scores_dir.parent))
    timings = {}
    started = time.perf_counter()
    spark = build_spark("c360-score-floor", settings.spark_master)
    timings["spark_start"] = time.perf_counter() - started
    cpu = tree_cpu_seconds()
    try:
        fs = settings.feature_store_dir
        snapshot = read_snapshot(spark, fs / "customer_features", SCORE_DATE)
        numeric = ["orders_count", "days_since_last_order", "net_revenue_eur", "bgnbd_frequency", "tenure_days"]

        t = time.perf_counter()
        scores = snapshot.select("customer_id", "as_of_date", F.lit("run").alias("run_id"),
                                 *[F.col(c).cast("double").alias(f"x{i}") for i, c in enumerate(numeric)],
                                 *[F.lit(str(i)).alias(f"v{i}") for i in range(3)])
        scores.orderBy("customer_id").coalesce(1).write.mode("overwrite").parquet(str(out / "scores"))
        timings["read_snapshot_write_scores"] = time.perf_counter() - t

        t = time.perf_counter()
        ranks = spark.range(1, TOP_N + 1).select(F.col("id").cast("int").alias("rank"))
        recs = (snapshot.select("customer_id").crossJoin(F.broadcast(ranks))
                .withColumns({"product_id": F.concat(F.lit("P"), F.col("rank").cast("string")),
                              "score": F.col("rank").cast("double"), "source": F.lit("popular")}))
        recs.orderBy("customer_id", "rank").coalesce(1).write.mode("overwrite").parquet(str(out / "recs"))
        timings["write_recommendation_rows"] = time.perf_counter() - t

        t = time.perf_counter()
        events = read_events(spark, fs / "interactions", SCORE_DATE)
        events.groupBy("customer_id", "product_id").count().write.format("noop").mode("overwrite").save()
        timings["read_aggregate_events"] = time.perf_counter() - t
        timings["cpu_seconds_without_spark_start"] = tree_cpu_seconds() - cpu
    finally:
        spark.stop()
        shutil.rmtree(out, ignore_errors=True)
    return timings


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------

def _prepare(work: Path, args: argparse.Namespace, env: dict[str, str], log_path: Path) -> dict:
    params = {"customers": args.customers, "events": args.events, "products": args.products,
              "train_customers": args.train_customers, "seed": args.seed}
    marker = work / INPUTS_FILE
    if marker.exists():
        prepared = json.loads(marker.read_text())
        if prepared.get("params") == params:
            log.info("reusing the inputs and champions in %s", work)
            return prepared
        shutil.rmtree(work / "data", ignore_errors=True)
    elif (work / "data").exists() and any((work / "data").iterdir()):
        raise SystemExit(f"{work / 'data'} exists and was not made by this benchmark: choose another --work-dir")
    fs = work / "data" / "feature_store"
    (work / "data" / "mlflow").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    log.info("writing %s customers and %s events to %s", f"{args.customers:,}", f"{args.events:,}", fs)
    written = write_inputs(fs, args.customers, args.events, args.products, args.train_customers, args.seed)
    generate_seconds = time.perf_counter() - t
    log.info("training champions (%s customers per labelled snapshot); log %s", f"{args.train_customers:,}",
             log_path)
    prepared = {"params": params, "written": written, "generate_seconds": round(generate_seconds, 1),
                "training": train_champions(env, log_path, args.seed)}
    marker.write_text(json.dumps(prepared, indent=2))
    return prepared


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def _summary(runs: list[dict], customers: int) -> dict:
    def per_phase(key: str) -> dict[str, float]:
        phases = sorted({p for r in runs for p in r.get(key, {})})
        return {p: round(statistics.median([r[key].get(p, 0.0) for r in runs]), 3) for p in phases}

    job, scoring = _median(runs, "job_seconds"), _median(runs, "scoring_seconds")
    scoring_cpu = _median(runs, "scoring_cpu_seconds")
    return {
        "runs": len(runs),
        "job_seconds": job, "scoring_seconds": scoring,
        "job_cpu_seconds": _median(runs, "job_cpu_seconds"), "scoring_cpu_seconds": scoring_cpu,
        "phases_median_seconds": per_phase("phases"), "phases_median_cpu_seconds": per_phase("phases_cpu"),
        "customers_per_second": {"job": round(customers / job) if job else None,
                                 "scoring_phase": round(customers / scoring) if scoring else None},
        "customers_per_cpu_second_scoring": round(customers / scoring_cpu) if scoring_cpu else None,
        "recommendation_rows": runs[-1].get("recommendation_rows"),
        "all_runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                      if k not in ("phases", "phases_cpu")}
                     | {k: {p: round(x, 3) for p, x in r.get(k, {}).items()} for k in ("phases", "phases_cpu")}
                     for r in runs],
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", type=int, default=100_000, help="customers in the scored snapshot")
    p.add_argument("--events", type=int, default=500_000, help="interaction events (one year)")
    p.add_argument("--products", type=int, default=2_000, help="catalogue size")
    p.add_argument("--train-customers", type=int, default=10_000, help="customers per labelled training snapshot")
    p.add_argument("--repeat", type=int, default=3, help="scoring runs (median reported; 0: only prepare)")
    p.add_argument("--master", default="local[2]", help="SPARK_MASTER for training and scoring")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--work-dir", type=Path, help="keep inputs and champions here and reuse them when the "
                                                  "parameters match (default: a temp dir, deleted afterwards)")
    p.add_argument("--without-recommendations", action="store_true",
                   help="also time --repeat runs with --no-recommendations (churn/CLV only)")
    p.add_argument("--no-floor", action="store_true", help="skip the floor measurement")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--child", choices=["score", "floor"], help=argparse.SUPPRESS)
    p.add_argument("--no-recommendations", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.child:
        result = child_score(args) if args.child == "score" else child_floor(args)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="c360-bench-scoring-")) if temporary else args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = bench_env(work, args.master)
    log_path = work / "bench.log"
    try:
        prepared = _prepare(work, args, env, log_path)
        me = [sys.executable, "-m", "c360dev.bench.scoring", "--work-dir", str(work), "--customers",
              str(args.customers)]
        modes = {"with_recommendations": []}
        if args.without_recommendations:
            modes["without_recommendations"] = ["--no-recommendations"]
        results, load = {}, {"before": os.getloadavg()}
        for mode, extra in modes.items():
            runs = []
            for i in range(args.repeat):
                stdout, _ = _run([*me, "--child", "score", *extra], env, log_path)
                runs.append(_child_result(stdout) | {"load_average_1m": round(os.getloadavg()[0], 2)})
                log.info("%s run %d: job %.1fs, scoring phase %.1fs", mode, i + 1, runs[-1]["job_seconds"],
                         runs[-1]["scoring_seconds"])
            if runs:
                results[mode] = _summary(runs, args.customers)
        floor = None
        if not args.no_floor:
            stdout, _ = _run([*me, "--child", "floor"], env, log_path)
            floor = {k: round(v, 3) for k, v in _child_result(stdout).items()}
            work_s = sum(v for k, v in floor.items() if k not in ("spark_start", "cpu_seconds_without_spark_start"))
            floor["customers_per_second_without_spark_start"] = round(args.customers / work_s) if work_s else None
        load["after"] = os.getloadavg()
        report = {
            "benchmark": "scoring", "measured_at": datetime.now().isoformat(timespec="seconds"),
            "customers": args.customers, "events": args.events, "products": args.products,
            "train_customers": args.train_customers, "seed": args.seed, "master": args.master,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average": {k: [round(x, 2) for x in v] for k, v in load.items()}},
            "inputs": prepared, **results, "floor": floor,
        }
        text = json.dumps(report, indent=2)
        if args.out:
            args.out.write_text(text + "\n")
        print(text)
        return 0
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c360dev.bench.scoring", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
