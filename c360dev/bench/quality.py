"""Model quality on the generator's data: the trained models against their baselines and the ground truth's oracles.

    python -m c360dev.bench.quality --data-dir DIR [--baselines-only] [--seed 7] [--other-seed 8] [--no-seed-check]
                                 [--out DIR/quality]

DIR is a data dir after a nightly run on generated data (warehouse/, feature_store/, ground_truth/). The command
backfills monthly feature snapshots if they are missing (c360.pipeline.transform), trains churn, CLV and the recommender
with spark_jobs.train into a separate MLflow store (DIR/quality/mlflow, model names prefixed `quality_`, nothing
promoted), joins each holdout to the ground truth, computes the oracles of c360dev.generate.oracle on the same rows,
trains again with the same seed (reproducibility) and optionally another seed (variance), and writes
DIR/quality/quality-<stamp>.json and .md: model vs baselines vs oracles, the ratio to each target, PASS/MISS.
With --baselines-only (real data, no ground truth) the oracles are left out: the models against every baseline
the training run scored on the same holdout (`baseline_*` columns) and the issue-12 targets (docs/real_data.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("c360dev.bench.quality")

SNAPSHOT_EVERY_DAYS = 30
MIN_HISTORY_DAYS = 28
# unit-free metrics in [0, 1] compared for seed reproducibility (EUR errors are not on that scale)
SEED_METRICS = {
    "churn": ["roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"],
    "clv": ["spearman", "top_decile_capture"],
    "recommender": ["recall_at_10", "ndcg_at_10", "precision_at_10", "catalog_coverage"],
}
SEED_TOLERANCE = 0.005
# spark_jobs.train arguments per model. Churn stacks 4 monthly snapshots (more rows and seasons; no label overlap
# with the holdout). CLV's 180-day horizon leaves no non-overlapping training snapshot with more than a month of
# history in a 400-day demo (365 days: none at all), so it trains on the 6 newest snapshots at least 30 days before
# the holdout: their label windows share days with the holdout's (reported as gap_days).
DEFAULT_TRAIN_ARGS = {
    "churn": "--train-snapshots 4",
    "clv": "--min-gap-days 30 --train-snapshots 6",
    "recommender": "",
}


# --------------------------------------------------------------------------------------------------
# targets (issue 4, item 7)
# --------------------------------------------------------------------------------------------------

def evaluate_targets(figures: dict) -> list[dict]:
    """Each target with the observed value, the threshold and PASS/MISS."""
    out = []

    def add(name: str, observed: float | None, threshold: float | None, ratio: float | None = None, *,
            at_most: bool = False, void: bool = False) -> None:
        # void: the comparison is with itself (e.g. the chosen CLV model is the BG/NBD+GG baseline): not a pass
        ok = not void and observed is not None and threshold is not None and np.isfinite(observed) and (
            observed <= threshold if at_most else observed >= threshold)
        out.append({"target": name, "observed": observed, "threshold": threshold, "ratio": ratio,
                    "status": "PASS" if ok else "MISS"})

    churn = figures.get("churn")
    if churn:
        model = churn["model"]["roc_auc"]
        if "posterior" in churn.get("oracles", {}):
            oracle = churn["oracles"]["posterior"]["roc_auc"]
            add("churn ROC AUC >= 95 % of the oracle's (Bayes posterior)", model, 0.95 * oracle, model / oracle)
        recency = churn["baselines"]["recency"]["roc_auc"]
        add("churn ROC AUC >= recency baseline + 0.03", model, recency + 0.03, model - recency)
        # issue 12: against the best of every baseline on the same holdout (recency, RFM, BG/NBD when logged)
        best_name, best = max(((k, v["roc_auc"]) for k, v in churn["baselines"].items()), key=lambda kv: kv[1])
        add(f"churn ROC AUC >= best baseline ({best_name}) + 0.02", model, best + 0.02, model - best)
    clv = figures.get("clv")
    if clv:
        model = clv["model"]["spearman"]
        if "posterior" in clv.get("oracles", {}):
            oracle = clv["oracles"]["posterior"]["spearman"]
            add("CLV Spearman >= 90 % of the oracle's (Bayes posterior)", model, 0.90 * oracle, model / oracle)
        if "aggregate_error_pct" in clv["model"]:
            agg = clv["model"]["aggregate_error_pct"]
            add("CLV aggregate error within +-15 %", abs(agg), 15.0, agg, at_most=True)
        bgnbd = clv.get("candidates", {}).get("bgnbd") or clv.get("baselines", {}).get("bgnbd")
        if bgnbd and "mae" in clv["model"]:
            itself = clv.get("model_kind") == "bgnbd"
            note = " (no ML model chosen: the model is BG/NBD+GG itself)" if itself else ""
            add("CLV MAE <= BG/NBD+GG's" + note, clv["model"]["mae"], bgnbd["mae"],
                clv["model"]["mae"] / bgnbd["mae"] if bgnbd["mae"] else None, at_most=True, void=itself)
            add("CLV Spearman >= BG/NBD+GG's" + note, model, bgnbd["spearman"], model - bgnbd["spearman"],
                void=itself)
    rec = figures.get("recommender")
    if rec:
        model, pop = rec["model"]["recall_at_10"], rec["baselines"]["global_popularity"]["recall_at_10"]
        add("recommender recall@10 >= 2 x popularity", model, 2 * pop, model / pop if pop else None)
        oracles = rec.get("oracles", {})
        name = "generative" if "generative" in oracles else "true_affinity_x_popularity"
        best = oracles.get(name, {}).get("recall_at_10")
        if best is not None and pop:
            out[-1]["note"] = (f"oracle ({REC_ORACLE_LABELS[name]}) reaches {best:.3f} = "
                               f"{best / pop:.2f} x popularity")
    seed = figures.get("seed_check")
    if seed:
        add("same seed: metrics reproduce within 0.005 (max |delta|)", seed["max_abs_delta"], SEED_TOLERANCE,
            at_most=True)
    return out


# --------------------------------------------------------------------------------------------------
# environment and data preparation
# --------------------------------------------------------------------------------------------------

def configure_environment(data_dir: Path, out_dir: Path) -> None:
    """Point every setting at the data dir; MLflow, the deployments audit and dbt's scratch at out_dir.

    C360_DATA_DIR is the output dir, so the registry store and the audit table of the quality runs are
    separate from the data dir's own (whose champions are never touched); warehouse and feature store are
    the data dir's.
    """
    env = {
        "C360_DATA_DIR": str(out_dir),
        "LANDING_URI": str(data_dir / "landing"),
        "WAREHOUSE_PATH": str(data_dir / "warehouse" / "c360.duckdb"),
        "C360_FEATURE_STORE_DIR": str(data_dir / "feature_store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{out_dir / 'mlflow' / 'mlflow.db'}",
        "C360_MLFLOW_ARTIFACT_ROOT": str(out_dir / "mlflow" / "artifacts"),
        "DBT_TARGET_PATH": str(out_dir / "dbt_target"),
        "DBT_LOG_PATH": str(out_dir / "dbt_logs"),
    }
    os.environ.update(env)
    (out_dir / "mlflow").mkdir(parents=True, exist_ok=True)


def read_truth(data_dir: Path) -> tuple[pd.DataFrame, dict]:
    truth_dir = data_dir / "ground_truth"
    if not (truth_dir / "customers.parquet").exists():
        raise FileNotFoundError(f"{truth_dir}/customers.parquet not found: the quality report needs a data dir made "
                                "by `c360 generate` (its ground truth) and the nightly run")
    summary = json.loads((truth_dir / "summary.json").read_text())
    return pd.read_parquet(truth_dir / "customers.parquet"), summary


def snapshot_plan(first_day: date, last_day: date, every: int = SNAPSHOT_EVERY_DAYS,
                  min_history: int = MIN_HISTORY_DAYS) -> list[date]:
    """Monthly snapshot dates back from the last loaded day, each with at least `min_history` days of data."""
    out, d = [], last_day
    while d >= first_day + timedelta(days=min_history):
        out.append(d)
        d -= timedelta(days=every)
    return sorted(out)


def ensure_snapshots(dates: list[date]) -> list[date]:
    """Build (dbt, in the warehouse) and export (Parquet) the snapshots among `dates` that are missing."""
    from c360.config import get_settings
    from c360.pipeline import transform
    from c360.pipeline.warehouse import connect

    settings = get_settings()
    con = connect(settings, read_only=True)
    try:
        held = {r[0] for r in con.execute("select distinct as_of_date from feature_store.customer_features").fetchall()}
    finally:
        con.close()
    missing = [d for d in dates if d not in held]
    if missing:
        log.info("backfilling %d feature snapshot(s): %s", len(missing), ", ".join(map(str, missing)))
        transform.backfill_snapshots(missing, settings)
    fs = Path(settings.feature_store_dir)
    to_export = [d for d in dates if missing or not (fs / "customer_features" / f"as_of_date={d}").exists()]
    for d in to_export:
        transform.export_feature_parquet(d, settings)
    return missing


def interactions_paths(data_dir: Path, out_dir: Path) -> tuple[Path, Path | None]:
    """The recommender's inputs: the feature store's export if present, else built here from the warehouse."""
    fs = data_dir / "feature_store"
    if (fs / "interactions").exists():
        return fs / "interactions", (fs / "products" if (fs / "products").exists() else None)
    from c360.config import get_settings
    from c360.pipeline.warehouse import connect

    target = out_dir / "recommender_input"
    (target / "interactions").mkdir(parents=True, exist_ok=True)
    (target / "products").mkdir(parents=True, exist_ok=True)
    log.warning("no %s: building the interactions from the warehouse (docs/models.md, recommender input)",
                fs / "interactions")
    con = connect(get_settings(), read_only=True)
    try:
        con.execute("set TimeZone='UTC'")
        con.execute(f"copy ({ADHOC_INTERACTIONS}) to '{target / 'interactions' / 'part-0.parquet'}' (format parquet)")
        con.execute("copy (select product_id, category from marts.dim_products) to "
                    f"'{target / 'products' / 'part-0.parquet'}' (format parquet)")
    finally:
        con.close()
    return target / "interactions", target / "products"


ADHOC_INTERACTIONS = """
select distinct customer_id, product_id, 'purchase' as event_type, cast(ordered_at as timestamp) as event_time
from intermediate.int_order_lines
where line_type = 'sale' and status = 'completed' and customer_id is not null and product_id is not null
union all
select coalesce(e.customer_id, l.customer_id), e.product_id, e.event_type, cast(e.occurred_at as timestamp)
from staging.stg_shop__tracking_events e
left join (select anonymous_id, min(customer_id) as customer_id from intermediate.int_identity_links
           group by 1 having count(distinct customer_id) = 1) l using (anonymous_id)
where e.event_type in ('product_view', 'add_to_cart') and e.product_id is not null
  and coalesce(e.customer_id, l.customer_id) is not null
"""


def warehouse_history() -> tuple[date, date, int]:
    """(first order date, last order date, customers with an order) from the warehouse: the span of any history,
    generated or real, without a ground truth."""
    from c360.config import get_settings
    from c360.pipeline.warehouse import connect

    con = connect(get_settings(), read_only=True)
    try:
        con.execute("set TimeZone='UTC'")
        first, last, customers = con.execute(
            "select min(cast(ordered_at as date)), max(cast(ordered_at as date)), count(distinct customer_id) "
            "from intermediate.int_order_lines where customer_id is not null").fetchone()
    finally:
        con.close()
    if first is None:
        raise SystemExit("the warehouse holds no orders: run the nightly job for the last date of the history first")
    return first, last, int(customers)


def last_orders_before(instant: datetime) -> pd.DataFrame:
    """(customer_id, last_order_s): each customer's last order placed before `instant`, cancelled ones included
    (a cancelled order still shows the customer was alive), from the warehouse."""
    from c360.config import get_settings
    from c360.pipeline.warehouse import connect

    con = connect(get_settings(), read_only=True)
    try:
        return con.execute(
            "select customer_id, epoch(max(ordered_at)) as last_order_s from intermediate.int_order_lines "
            "where line_type = 'sale' and customer_id is not null and ordered_at < ? group by 1", [instant]).df()
    finally:
        con.close()


def realised_value_scale(truth: pd.DataFrame, net_factor: pd.Series, start: datetime, until: datetime,
                         returns_by: datetime) -> float:
    """Net EUR actually realised per order / the oracle's expected net value per order (spend_mean x net_factor),
    over orders placed in [start, until) with their returns received by `returns_by` (history only)."""
    from c360.config import get_settings
    from c360.pipeline.warehouse import connect

    con = connect(get_settings(), read_only=True)
    try:
        per_customer = con.execute(
            """
            with placed as (
                select customer_id, count(distinct order_id) as orders
                from intermediate.int_order_lines
                where line_type = 'sale' and ordered_at >= ? and ordered_at < ? and customer_id is not null
                group by 1
            ), net as (
                select customer_id, sum(amount_eur) as net_eur
                from intermediate.int_order_lines
                where status = 'completed' and ordered_at >= ? and ordered_at < ? and customer_id is not null
                  and (line_type = 'sale' or returned_at < ?)
                group by 1
            )
            select placed.customer_id, placed.orders, coalesce(net.net_eur, 0)::double as net_eur
            from placed left join net using (customer_id)
            """, [start, until, start, until, returns_by]).df()
    finally:
        con.close()
    t = truth.set_index("customer_id")
    expected = per_customer["orders"] * per_customer["customer_id"].map(t["spend_mean"] * net_factor)
    return float(per_customer["net_eur"].sum() / expected.sum())


def expected_net_share(truth: pd.DataFrame, categories: list[str]) -> pd.Series:
    """Expected share of an order's value that is not returned, from the customer's category affinities and the
    categories' return rates (a returned line gives back ~96 % of its quantity on average: min(U{1,2,3}, qty))."""
    from c360dev.generate.reference import CATEGORIES

    rate = {c[0]: c[4] for c in CATEGORIES}
    rates = np.array([rate[c] for c in categories])
    affinity = np.vstack(truth["category_affinity"].to_numpy())
    affinity = affinity / affinity.sum(axis=1, keepdims=True)
    return pd.Series(1.0 - 0.962 * affinity @ rates, index=truth["customer_id"].to_numpy())


# --------------------------------------------------------------------------------------------------
# oracles on the holdout rows
# --------------------------------------------------------------------------------------------------

def oracle_inputs(rows: pd.DataFrame, truth: pd.DataFrame, holdout_date: str, summary: dict) -> pd.DataFrame:
    """The holdout rows joined to the ground truth, with t (end of the snapshot day), the last order before t,
    the start of observation and the three P(alive at t): prior (rates only), posterior, known."""
    from c360dev.generate import oracle

    t_dt = datetime.fromisoformat(holdout_date).replace(tzinfo=UTC) + timedelta(days=1)
    t = int(t_dt.timestamp())
    start = int(datetime.fromisoformat(summary["start"]).replace(tzinfo=UTC).timestamp())
    df = rows.merge(truth, on="customer_id", how="left", validate="one_to_one")
    if df["lambda"].isna().any():
        raise ValueError(f"{int(df['lambda'].isna().sum())} holdout customers are not in the ground truth")
    last = last_orders_before(t_dt)
    df = df.merge(last, on="customer_id", how="left")
    signup = _epoch_s(df["signup_at"])
    churn_s = _epoch_s(df["churn_at"].fillna(pd.Timestamp("2262-01-01", tz="UTC")))
    df["t_s"] = t
    df["signup_s"] = signup
    df["offset_s"] = df["utc_offset_minutes"].to_numpy(dtype=np.int64) * 60
    df["observed_from_s"] = oracle.observation_start(signup, start,
                                                     int(summary["model_params"]["activation_delay_s"]))
    df["alive_known"] = churn_s > t
    df["alive_prior"] = oracle.p_alive_prior(df["mu"].to_numpy(), signup, t)
    df["alive_posterior"] = oracle.p_alive_posterior(
        df["lambda"].to_numpy(), df["mu"].to_numpy(), t, df["last_order_s"].to_numpy(dtype=float),
        df["offset_s"].to_numpy(), signup_s=signup, observed_from_s=df["observed_from_s"].to_numpy())
    return df


def _epoch_s(series: pd.Series) -> np.ndarray:
    """UTC timestamps as whole seconds since 1970, whatever the column's resolution."""
    return ((pd.to_datetime(series, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(
        dtype=np.int64)


ORACLE_VARIANTS = {"rates": "alive_prior", "posterior": "alive_posterior", "known_alive": "alive_known"}


def churn_oracles(df: pd.DataFrame, horizon_days: int, cancel_prob: float) -> dict[str, np.ndarray]:
    """P(no completed order in the horizon) per variant (the label counts completed orders: cancelled orders
    thin the purchase process by 1 - cancel_prob)."""
    from c360dev.generate import oracle

    lam = df["lambda"].to_numpy() * (1.0 - cancel_prob)
    return {name: oracle.p_no_purchase(lam, df["mu"].to_numpy(), df["t_s"].to_numpy(), horizon_days,
                                       df["offset_s"].to_numpy(), alive=df[col].to_numpy(), steps_per_day=8)
            for name, col in ORACLE_VARIANTS.items()}


def clv_oracles(df: pd.DataFrame, horizon_days: int, value_per_order: np.ndarray) -> dict[str, np.ndarray]:
    """Expected net revenue in the horizon per variant: E[purchases] (dropout included) x net value per order."""
    from c360dev.generate import oracle

    purchases = oracle.expected_purchases_dropout(df["lambda"].to_numpy(), df["mu"].to_numpy(), df["t_s"].to_numpy(),
                                                  horizon_days, df["offset_s"].to_numpy(), alive=True,
                                                  steps_per_day=8)
    return {name: purchases * df[col].to_numpy(dtype=float) * value_per_order for name, col in ORACLE_VARIANTS.items()}


# --------------------------------------------------------------------------------------------------
# training runs
# --------------------------------------------------------------------------------------------------

def train_all(spark, options: dict) -> dict[str, dict]:
    """Train each model with its own Options (model -> Options); result per model, with its training seconds."""
    from spark_jobs.train import train_models

    results = {}
    for model, opts in options.items():
        started = time.perf_counter()
        for r in train_models(opts, spark=spark):
            results[r["model"].removeprefix(opts.model_prefix)] = {**r, "seconds": time.perf_counter() - started}
        log.info("trained %s in %.0fs", model, time.perf_counter() - started)
    return results


def run_metrics(run_id: str) -> dict[str, float]:
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def run_params(run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.params)


def holdout_predictions(run_id: str, truth: pd.DataFrame | None) -> pd.DataFrame:
    """A training run's holdout rows, with the customer_id back from the generator's truth: runs key the rows by
    customer_key (sha256 of the id) so the artifact holds no ids; older runs logged customer_id itself. Without a
    truth (real data, --baselines-only) the key stays the row's id: the figures need labels and scores only."""
    import mlflow

    from c360.privacy.erasure import customer_key

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="holdout_predictions.parquet")
    rows = pd.read_parquet(path)
    if "customer_key" not in rows.columns:
        return rows
    if truth is None:
        return rows.rename(columns={"customer_key": "customer_id"})
    ids = {customer_key(str(c)): c for c in truth["customer_id"]}
    return rows.assign(customer_key=rows["customer_key"].map(ids)).rename(columns={"customer_key": "customer_id"})


def seed_deltas(first: dict[str, dict], second: dict[str, dict]) -> dict:
    """max |metric(run 1) - metric(run 2)| over SEED_METRICS, per model and overall."""
    per_model, worst = {}, 0.0
    for model, keys in SEED_METRICS.items():
        if model not in first or model not in second:
            continue
        a, b = run_metrics(first[model]["run_id"]), run_metrics(second[model]["run_id"])
        deltas = {k: abs(a[k] - b[k]) for k in keys if k in a and k in b}
        per_model[model] = {"max_abs_delta": max(deltas.values(), default=0.0), "deltas": deltas,
                            "run_1": {k: a[k] for k in deltas}, "run_2": {k: b[k] for k in deltas}}
        worst = max(worst, per_model[model]["max_abs_delta"])
    return {"max_abs_delta": worst, "models": per_model}


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------

def _holdout_header(params: dict, holdout_rows: int, model_kind: str) -> dict:
    """What a churn or CLV report says about its training run: dates, gap, rows and the chosen model."""
    return {"train_dates": params.get("train_dates", params["train_date"]), "holdout_date": params["holdout_date"],
            "gap_days": int(params.get("gap_days", -1)), "train_rows": int(float(params["train_rows"])),
            "holdout_rows": holdout_rows, "model_kind": model_kind,
            # the run's own label horizon (C360_*_HORIZON_DAYS), not the defaults
            "horizon_days": int(float(params["horizon_days"])) if params.get("horizon_days") else None}


def baseline_columns(pred: pd.DataFrame) -> dict[str, str]:
    """name -> column of every baseline the training run scored on its holdout (`baseline_<name>` columns), so a
    baseline added in ml/ (e.g. BG/NBD's P(alive) for churn) is reported without a change here."""
    return {c.removeprefix("baseline_"): c for c in pred.columns if c.startswith("baseline_")}


# the holdout predictions' column of what a run registered (its `model_kind` param): a baseline may serve
# (spark_jobs.training, "a baseline may serve"), and its scores are in its own column
SERVED_COLUMN = {"recency_baseline": "recency_model", "gbt_regressor": "gbt", "bgnbd_gamma_gamma": "bgnbd",
                 "run_rate_baseline": "baseline_run_rate"}
SERVED_LABEL = {"gbt_regressor": "gbt", "bgnbd_gamma_gamma": "bgnbd", "run_rate_baseline": "run_rate"}


def served_column(model_kind: str) -> str:
    return SERVED_COLUMN.get(model_kind, model_kind)


def churn_figures(result: dict, truth: pd.DataFrame | None, summary: dict | None, horizon: int) -> dict:
    """Model, candidates and baselines on the run's holdout; with a ground truth (generated data) the oracles too."""
    from ml import metrics

    params = run_params(result["run_id"])
    m = run_metrics(result["run_id"])
    pred = holdout_predictions(result["run_id"], truth)
    best = params["model_kind"]
    df = pred if truth is None else oracle_inputs(pred, truth, params["holdout_date"], summary)
    y = df["label"].to_numpy()
    oracles = {} if truth is None else churn_oracles(df, horizon, float(summary["model_params"]["cancel_prob"]))
    return {
        **_holdout_header(params, len(df), best),
        "model": metrics.classification_metrics(y, df[served_column(best)]),
        "candidates": {k: metrics.classification_metrics(y, df[k]) for k in ("gbt", "logreg") if k in df},
        "baselines": {k: metrics.classification_metrics(y, df[c]) for k, c in baseline_columns(pred).items()},
        "oracles": {k: metrics.classification_metrics(y, v) for k, v in oracles.items()},
        "logged_roc_auc": m.get("roc_auc"),
    }


def clv_figures(result: dict, truth: pd.DataFrame | None, summary: dict | None, horizon: int) -> dict:
    """Model, candidates and baselines on the run's holdout; with a ground truth (generated data) the oracles too."""
    from ml import metrics

    params = run_params(result["run_id"])
    pred = holdout_predictions(result["run_id"], truth)
    kind = SERVED_LABEL.get(params["model_kind"], params["model_kind"])
    df = pred if truth is None else oracle_inputs(pred, truth, params["holdout_date"], summary)
    y = df["label"].to_numpy(dtype=float)
    oracles, scale = {}, None
    if truth is not None:
        share = expected_net_share(truth, summary["categories"])
        t_dt = datetime.fromisoformat(params["holdout_date"]).replace(tzinfo=UTC) + timedelta(days=1)
        start = datetime.fromisoformat(summary["start"]).replace(tzinfo=UTC)
        scale = realised_value_scale(truth, share, start, t_dt - timedelta(days=30), t_dt)
        value_per_order = df["spend_mean"].to_numpy() * df["customer_id"].map(share).to_numpy() * scale
        oracles = clv_oracles(df, horizon, value_per_order)
    return {
        **_holdout_header(params, len(df), kind),
        "model": metrics.regression_metrics(y, df[served_column(params["model_kind"])]),
        "candidates": {k: metrics.regression_metrics(y, df[k]) for k in ("gbt", "bgnbd") if k in df},
        "baselines": {k: metrics.regression_metrics(y, df[c]) for k, c in baseline_columns(pred).items()},
        "oracles": {k: metrics.regression_metrics(y, v) for k, v in oracles.items()},
        "value_scale": scale,
    }


def recommender_oracles(events: pd.DataFrame, products: pd.DataFrame, truth: pd.DataFrame, categories: list[str],
                        train_end: str, holdout_end: str, half_life_days: float, k: int = 10,
                        summary: dict | None = None) -> dict:
    """recall/NDCG@k on the recommender's holdout of references that know each customer's latent parameters:
    (1) products scored theta[category] x the product's share of its category's (decayed) popularity, (2) the
    customer's true top category first, then overall popularity, and (3, with `summary`) the generative oracle:
    the true probability of each product for the customer (`oracle.product_choice_probabilities`: category
    affinity theta and the price level spend_nu, the generator's own choice rule). (3) is the ceiling: no
    recommender that learns from the data can rank the next purchases better on average.
    Same holdout as training: new purchases in (train_end, holdout_end], bought products excluded."""
    from ml import metrics
    from ml.recommender import EVENT_WEIGHTS

    t_train = pd.Timestamp(train_end, tz="UTC") + pd.Timedelta(days=1)
    t_hold = pd.Timestamp(holdout_end, tz="UTC") + pd.Timedelta(days=1)
    ev = events.assign(event_time=pd.to_datetime(events["event_time"], utc=True))
    pids = np.sort(products["product_id"].unique())
    pidx = pd.Series(np.arange(pids.size), index=pids)
    cat_of = products.drop_duplicates("product_id").set_index("product_id")["category"].str.lower()
    lower = [c.lower() for c in categories]
    pcat = np.array([lower.index(c) if c in lower else -1 for c in cat_of.reindex(pids).fillna("")])
    past = ev[(ev["event_time"] < t_train) & ev["event_type"].isin(list(EVENT_WEIGHTS))
              & ev["product_id"].isin(pidx.index)]
    age = (t_train - past["event_time"]).dt.total_seconds() / 86400.0
    weight = past["event_type"].map(EVENT_WEIGHTS) * 0.5 ** (age / half_life_days)
    pop = np.bincount(pidx[past["product_id"]].to_numpy(), weights=weight.to_numpy(), minlength=pids.size)
    cat_total = np.bincount(pcat[pcat >= 0], weights=pop[pcat >= 0], minlength=len(categories))
    within = np.where(pcat >= 0, pop / np.maximum(cat_total[np.maximum(pcat, 0)], 1e-12), 0.0)
    purchases = ev[(ev["event_type"] == "purchase") & ev["product_id"].isin(pidx.index)]
    seen = purchases[purchases["event_time"] < t_train][["customer_id", "product_id"]].drop_duplicates()
    new = purchases[(purchases["event_time"] >= t_train) & (purchases["event_time"] < t_hold)]
    new = new[["customer_id", "product_id"]].drop_duplicates().merge(seen, how="left", indicator=True)
    relevant = new[new["_merge"] == "left_only"].groupby("customer_id")["product_id"].apply(set).to_dict()
    users = sorted(relevant)
    theta = np.vstack(truth.set_index("customer_id").loc[users, "category_affinity"].to_numpy()).astype(float)
    seen_by_user = seen[seen["customer_id"].isin(relevant)].groupby("customer_id")["product_id"].apply(list)

    def top_k(scores: np.ndarray) -> dict:
        out = {}
        for i, u in enumerate(users):
            s = scores[i].copy()
            if u in seen_by_user.index:
                s[pidx[seen_by_user[u]].to_numpy()] = -np.inf
            top = np.argsort(-s, kind="stable")[:k]
            out[u] = list(pids[top])
        return out

    safe = np.maximum(pcat, 0)
    affinity = theta[:, safe] * within[None, :]
    favourite = (safe[None, :] == theta.argmax(axis=1)[:, None]) & (pcat[None, :] >= 0)
    rows = {"true_affinity_x_popularity": affinity,
            "true_top_category_then_popularity": favourite * (pop.max() + 1.0) + pop[None, :],
            "global_popularity": np.broadcast_to(pop, affinity.shape)}
    if summary is not None and "spend_nu" in truth.columns:
        from c360dev.generate.oracle import product_choice_probabilities

        tr = truth.set_index("customer_id").loc[users]
        gen_ids, probs = product_choice_probabilities(summary, np.vstack(tr["category_affinity"].to_numpy()),
                                                      tr["spend_nu"].to_numpy())
        column = pd.Series(np.arange(gen_ids.size), index=gen_ids).reindex(pids)
        known = column.notna().to_numpy()
        rows["generative"] = np.where(known[None, :], probs[:, column.fillna(0).astype(int).to_numpy()], -1.0)
    return {name: metrics.ranking_metrics(top_k(scores), relevant, k) for name, scores in rows.items()}


def recommender_figures(result: dict, truth: pd.DataFrame | None = None, summary: dict | None = None,
                        interactions: Path | None = None, products: Path | None = None) -> dict:
    import mlflow

    m = run_metrics(result["run_id"])
    params = run_params(result["run_id"])
    tags = mlflow.MlflowClient().get_run(result["run_id"]).data.tags

    def pick(prefix: str) -> dict[str, float]:
        return {k[len(prefix):]: v for k, v in m.items() if k.startswith(prefix) and not k[len(prefix):].startswith(
            ("baseline_", "champion_", "validation_", "ml_candidate_"))}

    # with serving = popularity the registered model is the popularity baseline (ALS missed its floors): `model` is
    # what serves, `ml_candidate` what ALS reached
    out = {"params": {k: params.get(k) for k in ("rank", "reg_param", "alpha", "half_life_days", "grid")},
           "train_end": tags.get("train_end"), "holdout_end": tags.get("holdout_end"),
           "serving": params.get("serving", "model"), "model": pick(""), "ml_candidate": pick("ml_candidate_"),
           "baselines": {"category_popularity": pick("baseline_popularity_"),
                         "global_popularity": pick("baseline_global_popularity_")}}
    if truth is not None and interactions is not None and products is not None:
        events = pd.read_parquet(interactions, columns=["customer_id", "product_id", "event_type", "event_time"])
        out["oracles"] = recommender_oracles(events, pd.read_parquet(products, columns=["product_id", "category"]),
                                             truth, summary["categories"], out["train_end"], out["holdout_end"],
                                             float(params.get("half_life_days", 60.0)), summary=summary)
    return out


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def _f(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}"


def _scorer_rows(figures: dict) -> list[tuple[str, dict]]:
    """(label, metrics) of a churn or CLV report's table: the model, the other candidate, baselines, oracles."""
    rows = [(f"model ({figures['model_kind']})", figures["model"])]
    rows += [(f"candidate {k}", v) for k, v in figures["candidates"].items() if k != figures["model_kind"]]
    rows += [(f"baseline {k}", v) for k, v in figures["baselines"].items()]
    return rows + [(f"oracle: {ORACLE_LABELS[k]}", v) for k, v in figures["oracles"].items()]


def markdown(report: dict) -> str:
    f = report["figures"]
    lines = [f"## Model quality on {report['data_dir']} ({report['customers']:,} customers x {report['days']} days)",
             "", f"{report['finished_at']}, seed {report['seed']}, load average at start {report['load_average']}; "
             f"training took {report['train_seconds']:.0f} s ("
             + ", ".join(f"{m} {s:.0f} s" for m, s in report["model_seconds"].items()) + "); spark_jobs.train "
             "arguments: " + "; ".join(f"{m} `{a or '(defaults)'}`" for m, a in report["train_args"].items()) + ".",
             ""]
    if "churn" in f:
        c = f["churn"]
        lines += [f"**Churn** (train {c['train_dates']}, {c['train_rows']:,} rows; holdout {c['holdout_date']}, "
                  f"{c['gap_days']} days after the newest training snapshot (horizon {c.get('horizon_days') or 90}), "
                  f"{c['holdout_rows']:,} customers, churn rate {c['model']['base_rate']:.2f}; {c['model_kind']} "
                  "chosen on validation)", "",
                  "| scorer | ROC AUC | PR AUC | top-decile lift | Brier | ECE |", "|---|---|---|---|---|---|"]
        rows = _scorer_rows(c)
        for name, m in rows:
            brier = _f(m["brier"]) if not name.startswith("baseline") else "n/a"
            ece = _f(m["ece"]) if not name.startswith("baseline") else "n/a"
            lines.append(f"| {name} | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | {_f(m['lift_top_decile'], 2)} | "
                         f"{brier} | {ece} |")
        lines.append("")
    if "clv" in f:
        c = f["clv"]
        lines += [f"**CLV** (train {c['train_dates']}, {c['train_rows']:,} rows; holdout {c['holdout_date']}, "
                  f"{c['gap_days']} days after the newest training snapshot (horizon {c.get('horizon_days') or 180}: "
                  "label windows overlap "
                  "if fewer), "
                  f"{c['holdout_rows']:,} customers, mean {c['model']['actual_mean']:.1f} EUR; {c['model_kind']} "
                  "chosen on validation"
                  + (f"; oracle value per order scaled by {c['value_scale']:.2f} from history)"
                     if c.get("value_scale") is not None else "; no ground truth: baselines only)"), "",
                  "| predictor | Spearman | MAE | top-decile capture | aggregate error % |", "|---|---|---|---|---|"]
        rows = _scorer_rows(c)
        for name, m in rows:
            lines.append(f"| {name} | {_f(m['spearman'])} | {_f(m['mae'], 1)} | {_f(m['top_decile_capture'])} | "
                         f"{_f(m['aggregate_error_pct'], 1)} |")
        lines.append("")
    if "recommender" in f:
        r = f["recommender"]
        lines += [f"**Recommender** (ALS {r['params']})", "",
                  "| recommender | recall@10 | NDCG@10 | precision@10 | coverage |", "|---|---|---|---|---|"]
        rows = [("model (ALS + fallbacks)", r["model"]),
                ("baseline popularity (overall)", r["baselines"]["global_popularity"]),
                ("baseline popularity (favourite category, then overall)", r["baselines"]["category_popularity"])]
        rows += [(f"oracle: {REC_ORACLE_LABELS.get(k, k)}", v) for k, v in r.get("oracles", {}).items()]
        for name, m in rows:
            lines.append(f"| {name} | {_f(m.get('recall_at_10'))} | {_f(m.get('ndcg_at_10'))} | "
                         f"{_f(m.get('precision_at_10'))} | {_f(m.get('catalog_coverage'))} |")
        lines.append("")
    if "seed_check" in f:
        s = f["seed_check"]
        lines += [f"**Seed reproducibility**: same seed twice, max |delta| = {s['max_abs_delta']:.4g} "
                  + "(" + "; ".join(f"{k} {v['max_abs_delta']:.2g}" for k, v in s["models"].items()) + ")", ""]
    if "other_seed" in f:
        s = f["other_seed"]
        lines += [f"**Another seed ({s['seed']})**: max |delta| = {s['max_abs_delta']:.4g} "
                  + "(" + "; ".join(f"{k} {v['max_abs_delta']:.2g}" for k, v in s["models"].items()) + ")", ""]
    lines += ["| target | observed | threshold | ratio / margin | |", "|---|---|---|---|---|"]
    for t in report["targets"]:
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['target']} | {_f(t['observed'], 4)} | {_f(t['threshold'], 4)} | {_f(t['ratio'], 3)} | "
                     f"**{t['status']}**{note} |")
    return "\n".join(lines) + "\n"


REC_ORACLE_LABELS = {
    "true_affinity_x_popularity": "true category affinity x popularity within the category",
    "true_top_category_then_popularity": "true top category first, then popularity",
    "global_popularity": "popularity recomputed outside Spark (check)",
    "generative": "the true probability of each product: affinity and price level, the generator's rule (ceiling)",
}
ORACLE_LABELS = {"rates": "rates only (lambda, mu)", "posterior": "Bayes posterior (lambda, mu + history)",
                 "known_alive": "knows who is alive (ceiling)"}


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="data dir of a nightly run (generated data, or any data with "
                                                 "--baselines-only)")
    p.add_argument("--baselines-only", action="store_true",
                   help="no ground truth needed (real data): the models against their baselines on the same holdout, "
                        "no oracles; the history's dates and customers are read from the warehouse")
    p.add_argument("--render", type=Path, help="only re-evaluate the targets of a report (quality-*.json) and rewrite "
                                               "its .md")
    p.add_argument("--out", type=Path, help="where runs and the report go (default: DATA_DIR/quality)")
    p.add_argument("--models", default="churn,clv,recommender")
    p.add_argument("--as-of-date", help="default: the last loaded day")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-seed-check", action="store_true", help="skip the second training with the same seed")
    p.add_argument("--other-seed", type=int, help="also train with this seed and report the spread")
    p.add_argument("--driver-memory", default="4g", help="Spark driver memory (local mode: all of Spark)")
    p.add_argument("--resume", type=Path, help="a report (quality-*.json) whose first training to reuse: only the "
                                               "seed runs are trained, with that report's arguments")
    for model, default in DEFAULT_TRAIN_ARGS.items():
        p.add_argument(f"--{model}-args", default=default,
                       help=f"spark_jobs.train arguments for {model} (default: {default!r})")


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def render(path: Path) -> str:
    """Re-evaluate the targets of a saved report and rewrite it and its markdown (after a change of this module)."""
    report = json.loads(path.read_text())
    report["targets"] = evaluate_targets(report["figures"])
    path.write_text(json.dumps(report, indent=2, default=float))
    text = markdown(report)
    path.with_suffix(".md").write_text(text)
    return text


def run(args: argparse.Namespace) -> int:
    if args.render:
        print(render(args.render))
        return 0
    if args.data_dir is None:
        raise SystemExit("--data-dir is required (or --render REPORT.json)")
    data_dir = args.data_dir.resolve()
    out_dir = (args.out or data_dir / "quality").resolve()
    configure_environment(data_dir, out_dir)
    load_average = _load_average()
    if args.baselines_only:
        truth = summary = None
        first_day, last_day, customers = warehouse_history()
        days = (last_day - first_day).days + 1
    else:
        truth, summary = read_truth(data_dir)
        first_day = date.fromisoformat(summary["start"])
        last_day = first_day + timedelta(days=int(summary["days"]) - 1)
        customers, days = int(summary["customers"]), int(summary["days"])
    as_of = date.fromisoformat(args.as_of_date) if args.as_of_date else last_day

    from c360.config import get_settings
    from spark_jobs.common import build_spark
    from spark_jobs.train import build_parser_for_tests, options_from_args

    started = time.perf_counter()
    previous = json.loads(args.resume.read_text()) if args.resume else None
    if previous:
        # the seed runs must repeat the first training exactly: same date, seed, models and arguments
        as_of = date.fromisoformat(previous["as_of_date"])
        args.seed = int(previous["seed"])
        args.models = ",".join(previous["train_args"])
        for model, train_args in previous["train_args"].items():
            setattr(args, f"{model}_args", train_args)
    ensure_snapshots(snapshot_plan(first_day, as_of))
    interactions, products = interactions_paths(data_dir, out_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    def options(seed: int, tag: str) -> dict:
        out = {}
        for model in models:
            argv = ["--model", model, "--as-of-date", as_of.isoformat(), "--no-promote", "--seed", str(seed),
                    "--experiment", f"quality-{stamp}", "--model-prefix", f"quality_{tag}_",
                    "--interactions", str(interactions), *(["--products", str(products)] if products else []),
                    *getattr(args, f"{model}_args").split()]
            out[model] = options_from_args(build_parser_for_tests().parse_args(argv))
        return out

    opts = options(args.seed, "a")
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "data_dir": str(data_dir), "customers": customers, "days": days, "baselines_only": truth is None,
        "as_of_date": as_of.isoformat(), "seed": args.seed, "load_average": load_average,
        "cpu_count": os.cpu_count(), "train_args": {m: getattr(args, f"{m}_args") for m in models},
        "options": {m: {k: v for k, v in asdict(o).items() if k != "extra"} for m, o in opts.items()},
    }

    def write(final: bool) -> None:
        """Write the report so far (a later stage failing or being stopped leaves the earlier figures)."""
        report["targets"] = evaluate_targets(report["figures"])
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        report["total_seconds"] = time.perf_counter() - started
        (out_dir / f"quality-{stamp}.json").write_text(json.dumps(report, indent=2, default=float))
        text = markdown(report)
        (out_dir / f"quality-{stamp}.md").write_text(text)
        if final:
            print(text)
            log.info("wrote %s and %s", out_dir / f"quality-{stamp}.json", out_dir / f"quality-{stamp}.md")

    spark = build_spark("c360-quality", get_settings().spark_master,
                        extra_conf={"spark.driver.memory": args.driver_memory})
    try:
        if previous:
            for key in ("train_seconds", "model_seconds", "runs", "figures", "load_average", "options"):
                report[key] = previous[key]
            report["resumed_from"] = str(args.resume)
            first = {m: {"run_id": run_id} for m, run_id in previous["runs"].items()}
            figures = {k: v for k, v in report["figures"].items() if k not in ("seed_check", "other_seed")}
            report["figures"] = figures
        else:
            t0 = time.perf_counter()
            first = train_all(spark, opts)
            report["train_seconds"] = time.perf_counter() - t0
            report["model_seconds"] = {m: r["seconds"] for m, r in first.items()}
            report["runs"] = {k: v["run_id"] for k, v in first.items()}
            figures = report["figures"] = {}
            if "churn" in first:
                figures["churn"] = churn_figures(first["churn"], truth, summary, opts["churn"].churn_horizon_days)
            if "clv" in first:
                figures["clv"] = clv_figures(first["clv"], truth, summary, opts["clv"].value_horizon_days)
            if "recommender" in first:
                figures["recommender"] = recommender_figures(first["recommender"], truth, summary, interactions,
                                                             products)
            write(final=False)
        if not args.no_seed_check:
            log.info("seed check: training again with seed %d", args.seed)
            figures["seed_check"] = seed_deltas(first, train_all(spark, options(args.seed, "b")))
            write(final=False)
        if args.other_seed is not None:
            log.info("variance: training with seed %d", args.other_seed)
            figures["other_seed"] = {"seed": args.other_seed,
                                     **seed_deltas(first, train_all(spark, options(args.other_seed, "c")))}
    finally:
        spark.stop()
    write(final=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c360dev.bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from spark_jobs.common import setup_logging

    setup_logging(args.verbose)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
