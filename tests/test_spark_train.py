"""End-to-end training on a tiny synthetic feature store written by the test (no generator, no dbt)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from spark_jobs.train import (
    Options,
    build_parser_for_tests,
    choose_dates,
    options_from_args,
    stacked_dates,
    train,
)

REPO = Path(__file__).resolve().parent.parent


def test_choose_dates_time_based_holdout():
    features = ["2025-01-31", "2025-03-31", "2025-04-30", "2025-06-30", "2025-07-31"]
    labels = ["2025-01-31", "2025-03-31", "2025-04-30"]  # later snapshots are not fully observed yet
    # 89 days < 90: no snapshot gives disjoint label windows, so the latest fully labelled one before the holdout
    # is used (its customers have the most history; the oldest one of a young shop has customers weeks old)
    assert choose_dates(features, labels, "2025-07-31", 90) == ("2025-03-31", "2025-04-30", 30)
    assert choose_dates(features, labels, "2025-07-31", 89) == ("2025-01-31", "2025-04-30", 89)
    assert choose_dates(features, labels, "2025-07-31", 30) == ("2025-03-31", "2025-04-30", 30)
    assert choose_dates(features, labels, "2025-07-31", 90, train_date="2025-03-31") == (
        "2025-03-31", "2025-04-30", 30)
    with pytest.raises(ValueError, match="no labelled snapshot"):
        choose_dates(features, labels, "2025-07-31", 90, allow_overlap=False)
    with pytest.raises(ValueError, match="no snapshot with features and labels"):
        choose_dates(features, labels, "2024-12-31", 90)
    # asking for overlap on purpose: the newest snapshot at least 30 days before the holdout
    assert choose_dates(features, labels, "2025-07-31", 90, min_gap_days=30) == ("2025-03-31", "2025-04-30", 30)
    with pytest.raises(ValueError, match="overlap"):
        choose_dates(features, labels, "2025-07-31", 90, min_gap_days=30, allow_overlap=False)
    assert stacked_dates(labels, "2025-04-30", 1) == ["2025-04-30"]


def test_asking_for_more_training_snapshots_than_exist_says_how_many_and_why(caplog):
    labels = ["2025-01-31", "2025-03-31", "2025-04-30"]
    assert stacked_dates(labels, "2025-04-30", 3) == ["2025-04-30", "2025-03-31", "2025-01-31"]
    assert not caplog.records
    assert stacked_dates(labels, "2025-03-31", 5, horizon_days=90) == ["2025-03-31", "2025-01-31"]
    message = caplog.records[-1].getMessage()
    assert "asked for 5 training snapshots, using 2" in message
    assert "only 2 labelled snapshot(s) exist on or before the training date 2025-03-31 (2025-01-31, 2025-03-31)" \
        in message and "90-day horizon" in message


def test_training_snapshots_can_be_chosen_from_the_command_line():
    from spark_jobs.train import explicit_train_dates

    opts = options_from_args(build_parser_for_tests().parse_args(
        ["--model", "churn", "--train-dates", "2025-01-31, 2025-03-31", "--holdout-date", "2025-04-30"]))
    assert opts.train_dates == ["2025-01-31", "2025-03-31"]
    usable = ["2025-01-31", "2025-03-31", "2025-04-30"]
    assert explicit_train_dates(opts.train_dates, usable, "2025-04-30") == ["2025-03-31", "2025-01-31"]
    with pytest.raises(ValueError, match=r"\['2025-02-28'\] lack features or labels"):
        explicit_train_dates(["2025-02-28"], usable, "2025-04-30")
    with pytest.raises(ValueError, match="not before the holdout 2025-04-30"):
        explicit_train_dates(["2025-04-30"], usable, "2025-04-30")


def _clv(mae, spearman, agg):
    return {"mae": mae, "spearman": spearman, "aggregate_error_pct": agg}


def test_clv_ml_candidate_serves_only_within_the_band_ranking_and_mae_of_bgnbd():
    """An ML candidate serves when, on validation, its total is within +-15 %, it ranks at least as well as BG/NBD
    and its MAE is below BG/NBD's; among such candidates the lowest MAE wins. Each failed check is named."""
    from spark_jobs.training import choose_clv_candidate

    bgnbd, run_rate = _clv(0.358, 0.560, -4.9), _clv(0.307, 0.40, -100.0)
    good = choose_clv_candidate({"gbt": _clv(0.278, 0.563, 4.3), "bgnbd": bgnbd, "run_rate": run_rate})
    assert (good.chosen, good.baseline_serves) == ("gbt", False)
    assert good.checks["gbt"]["eligible"] is True and "eligible" in good.params()["selection_gbt"]

    # each check alone keeps the GBT out, and says which one
    for gbt, failed in ((_clv(0.278, 0.552, 4.3), "spearman 0.552 <"),   # ranks worse (the donations holdout)
                        (_clv(0.380, 0.650, 4.3), "mae 0.38 >="),         # ranks better, amounts worse
                        (_clv(0.278, 0.650, -16.0), "outside +-15 %")):   # total off by more than the band
        choice = choose_clv_candidate({"gbt": gbt, "bgnbd": bgnbd, "run_rate": run_rate})
        assert (choice.chosen, choice.baseline_serves) == ("bgnbd", True), failed
        assert failed in choice.checks["gbt"]["summary"] and "not eligible" in choice.checks["gbt"]["summary"]
        assert "no ML candidate (gbt)" in choice.reason

    # a tie in Spearman is enough ("at least BG/NBD's")
    assert choose_clv_candidate({"gbt": _clv(0.3, 0.560, 0.0), "bgnbd": bgnbd}).chosen == "gbt"
    # two eligible ML candidates: the lower MAE, not the better Spearman
    two = {"gbt": _clv(0.30, 0.60, 1.0), "other": _clv(0.29, 0.58, -2.0), "bgnbd": bgnbd}
    assert choose_clv_candidate(two).chosen == "other"


def test_clv_best_baseline_serves_when_no_ml_candidate_qualifies():
    """Fallback: the baseline within the band with the lowest MAE; a run rate with a lower MAE but a -100 % total
    does not serve while BG/NBD is within the band; when no baseline is within the band, the smallest |error|."""
    from spark_jobs.training import choose_clv_candidate

    out = _clv(0.5, 0.1, 50.0)
    zero_run_rate = _clv(0.307, float("nan"), -100.0)
    assert choose_clv_candidate({"gbt": out, "bgnbd": _clv(0.358, 0.6, -4.9), "run_rate": zero_run_rate}).chosen \
        == "bgnbd"
    both_in = {"gbt": out, "bgnbd": _clv(40.0, 0.3, 9.0), "run_rate": _clv(38.0, 0.25, -12.0)}
    assert choose_clv_candidate(both_in).chosen == "run_rate"
    none_in = {"gbt": out, "bgnbd": _clv(40.0, 0.3, -30.0), "run_rate": _clv(38.0, 0.25, 190.0)}
    choice = choose_clv_candidate(none_in)
    assert (choice.chosen, choice.baseline_serves) == ("bgnbd", True) and "smallest |aggregate error|" in choice.reason


def test_clv_choice_without_bgnbd_or_with_undefined_figures():
    """No BG/NBD fit: its checks cannot fail the GBT, the band still can (then the run rate serves); an undefined
    Spearman or aggregate error never passes a check; no candidates at all is an error that says so."""
    from spark_jobs.training import choose_clv_candidate

    assert choose_clv_candidate({"gbt": _clv(30.0, 0.4, 5.0), "run_rate": _clv(40.0, 0.3, 80.0)}).chosen == "gbt"
    off = choose_clv_candidate({"gbt": _clv(30.0, 0.4, 40.0), "run_rate": _clv(40.0, 0.3, 10.0)})
    assert (off.chosen, off.baseline_serves) == ("run_rate", True)
    constant = {"gbt": _clv(0.2, float("nan"), 1.0), "bgnbd": _clv(0.358, 0.6, -4.9)}
    assert choose_clv_candidate(constant).chosen == "bgnbd"
    undefined_total = {"gbt": _clv(0.2, 0.7, float("nan")), "bgnbd": _clv(0.358, 0.6, -4.9)}
    assert choose_clv_candidate(undefined_total).chosen == "bgnbd"
    only_ml = choose_clv_candidate({"gbt": _clv(0.2, 0.7, 40.0)})
    assert (only_ml.chosen, only_ml.baseline_serves) == ("gbt", False) and "no baseline" in only_ml.reason
    with pytest.raises(ValueError, match="no candidate has validation metrics"):
        choose_clv_candidate({})


def test_churn_gbt_serves_only_when_clearly_better_than_logistic_regression_on_validation():
    """A tie (the donations history: 0.8438 each) or a GBT within the margin -> logistic regression, whose additive
    trends extrapolate to an aged cohort; a GBT better by more than the margin serves; an undefined AUC never wins."""
    from spark_jobs.training import CHURN_GBT_MARGIN, choose_churn_candidate

    assert choose_churn_candidate({"gbt": 0.8438, "logreg": 0.8438}) == "logreg"
    assert choose_churn_candidate({"gbt": 0.80 + CHURN_GBT_MARGIN / 2, "logreg": 0.80}) == "logreg"
    assert choose_churn_candidate({"gbt": 0.80 + 2 * CHURN_GBT_MARGIN, "logreg": 0.80}) == "gbt"
    assert choose_churn_candidate({"gbt": 0.70, "logreg": 0.80}) == "logreg"
    assert choose_churn_candidate({"gbt": float("nan"), "logreg": 0.60}) == "logreg"
    assert choose_churn_candidate({"gbt": 0.60, "logreg": float("nan")}) == "gbt"


def test_popularity_serves_the_recommender_when_als_misses_a_floor():
    """ALS below popularity (or below the coverage floor) -> the popularity baseline serves, its metrics become the
    run's and ALS's are kept as ml_candidate_*; ALS past its floors -> nothing changes."""
    from ml.gates import DEFAULT_GATES, baseline_gates, evaluate_gates
    from spark_jobs.training import popularity_metrics, recommender_fallback

    popularity = {"ndcg_at_10": 0.20, "recall_at_10": 0.30, "precision_at_10": 0.03, "catalog_coverage": 0.02}
    als = {"ndcg_at_10": 0.15, "recall_at_10": 0.25, "precision_at_10": 0.02, "catalog_coverage": 0.40,
           "als_share": 0.9}
    challenger = {**als, **{f"baseline_popularity_{k}": v for k, v in popularity.items()}}
    serving, note = recommender_fallback(challenger, dict(als), {"rank": 8})
    assert serving == "popularity" and "did not beat the baselines' floors" in note and "ndcg_at_10" in note
    assert {k: challenger[k] for k in popularity} == popularity and challenger["als_share"] == 0.0
    assert challenger["ml_candidate_ndcg_at_10"] == 0.15 and challenger["ml_candidate_als_share"] == 0.9
    assert popularity_metrics(challenger) == {**popularity, "als_share": 0.0}
    # served, it passes the baseline gates (no floors) as a first champion, and must beat a better champion
    assert evaluate_gates(baseline_gates("recommender"), challenger, None).passed
    assert not evaluate_gates(baseline_gates("recommender"), challenger, {"ndcg_at_10": 0.21}).passed
    assert not evaluate_gates(DEFAULT_GATES["recommender"], challenger, None).passed  # coverage 0.02 < 0.05

    low_coverage = {**als, "ndcg_at_10": 0.25, "catalog_coverage": 0.01}
    challenger = {**low_coverage, **{f"baseline_popularity_{k}": v for k, v in popularity.items()}}
    assert recommender_fallback(challenger, dict(low_coverage), {})[0] == "popularity"

    good = {**als, "ndcg_at_10": 0.25}
    challenger = {**good, **{f"baseline_popularity_{k}": v for k, v in popularity.items()}}
    before = dict(challenger)
    assert recommender_fallback(challenger, dict(good), {}) == (None, None) and challenger == before


def test_arguments():
    args = build_parser_for_tests().parse_args(["--model", "churn", "--as-of-date", "2025-07-31", "--no-promote",
                                                "--gate-margin", "-0.01"])
    opts = options_from_args(args)
    assert opts.models == ["churn"] and opts.as_of_date == "2025-07-31"
    assert opts.promote is False and opts.gate_margin == -0.01
    assert options_from_args(build_parser_for_tests().parse_args([])).models == ["churn", "clv", "recommender"]


def test_als_parameters_come_from_the_champion_unless_retuning(tmp_path):
    """Weekly retraining reuses the champion's tuned ALS parameters; with no champion, or with 'small', the grid."""
    import mlflow

    from ml.registry import configure
    from spark_jobs.train import Options as TrainOptions
    from spark_jobs.training import DEFAULT_ALS, SMALL_GRID, als_grid

    configure(f"sqlite:///{tmp_path / 'mlflow.db'}", "t", str(tmp_path / "artifacts"))

    def Options(**kw):  # noqa: N802 - the job's options with the required fields filled in
        return TrainOptions(models=["recommender"], as_of_date="2025-07-31", **kw)

    opts = Options(rec_grid="champion")
    assert als_grid("rec_t", opts) == (SMALL_GRID, "small")  # no champion yet: tune
    tuned = {"rank": 16, "reg_param": 0.01, "alpha": 10.0}
    with mlflow.start_run() as run:
        mlflow.log_params({**tuned, "model_kind": "als_implicit"})
        mlflow.log_text("x", "model/placeholder.txt")
    client = mlflow.MlflowClient()
    client.create_registered_model("rec_t")
    version = client.create_model_version("rec_t", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("rec_t", "champion", version.version)
    assert als_grid("rec_t", opts) == ([tuned], "champion")
    assert als_grid("rec_t", Options(rec_grid="small")) == (SMALL_GRID, "small")
    assert als_grid("rec_t", Options(rec_grid="none")) == ([DEFAULT_ALS], "none")
    assert als_grid("rec_t", Options(rec_grid="none", als_rank=4))[0] == [{**DEFAULT_ALS, "rank": 4}]


def _snapshot(rng: np.random.Generator, n: int, as_of: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Features plus churn and value labels that depend on them (recency, sessions, frequency)."""
    ids = [f"c{i:04d}" for i in range(n)]
    orders = rng.poisson(3, n) + 1
    first = rng.integers(60, 700, n)
    last = np.minimum(first, rng.exponential(70, n).astype(int))
    sessions = rng.poisson(2, n) * (rng.random(n) < 0.7)
    aov = rng.gamma(4, 15, n)
    freq = orders - 1
    churn_logit = (last - 60) / 25 - 0.8 * (sessions - 1.4) - 0.25 * (orders - 4)
    churned = rng.random(n) < 1 / (1 + np.exp(-churn_logit))
    future = np.where(churned, 0.0, rng.poisson(orders / 2 + 0.5) * aov * rng.uniform(0.8, 1.2, n))
    features = pd.DataFrame({
        "customer_id": ids,
        "days_since_first_order": first.astype("int32"),
        "days_since_last_order": last.astype("int32"),
        "tenure_days": first.astype("int32"),
        "orders_count": orders.astype("int32"),
        "purchase_days": orders.astype("int32"),
        "net_revenue_eur": orders * aov,
        "net_revenue_eur_90d": np.where(last < 90, aov * rng.poisson(1, n), 0.0),
        "avg_order_value_eur": aov,
        "avg_days_between_orders": np.where(freq > 0, (first - last) / np.maximum(freq, 1), np.nan),
        "sessions_30d": sessions.astype("int32"),
        "days_since_last_visit": np.where(sessions > 0, rng.integers(0, 30, n), np.nan),
        "has_tracking": sessions > 0,
        "rfm_recency_score": pd.qcut(-last, 5, labels=False, duplicates="drop").astype("int32") + 1,
        "rfm_frequency_score": np.clip(orders, 1, 5).astype("int32"),
        "rfm_monetary_score": pd.qcut(orders * aov, 5, labels=False).astype("int32") + 1,
        "country": rng.choice(["DE", "FR", "SE", None], n),
        "bgnbd_frequency": freq.astype("int32"),
        "bgnbd_recency_days": np.where(freq > 0, first - last, 0).astype("int32"),
        "bgnbd_t_days": first.astype("int32"),
        "bgnbd_monetary_eur": np.where(freq > 0, aov, np.nan),
    })
    # money arrives as DECIMAL(18,2) from the dbt export
    for col in ("net_revenue_eur", "bgnbd_monetary_eur"):
        features[col] = [None if np.isnan(v) else Decimal(f"{v:.2f}") for v in features[col]]
    horizon_c = pd.DataFrame({"customer_id": ids, "churn_horizon_days": 90, "churned": churned})
    horizon_v = pd.DataFrame({"customer_id": ids, "value_horizon_days": 180,
                              "future_net_revenue_eur": [Decimal(f"{v:.2f}") for v in future]})
    return features, horizon_c, horizon_v


def _write(df: pd.DataFrame, root: Path, table: str, as_of: str) -> None:
    path = root / table / f"as_of_date={as_of}"
    path.mkdir(parents=True)
    df.to_parquet(path / "part-0.parquet", index=False)


def write_tiny_feature_store(fs: Path, dates: tuple[str, ...], n: int = 500, seed: int = 2024) -> None:
    """Snapshots with labels for `dates`, plus interactions and products: what a training run reads."""
    rng = np.random.default_rng(seed)
    for as_of in dates:
        features, churn_labels, value_labels = _snapshot(rng, n, as_of)
        _write(features, fs, "customer_features", as_of)
        _write(churn_labels, fs, "labels_churn", as_of)
        _write(value_labels, fs, "labels_value", as_of)
    events = _events(rng)
    (fs / "interactions").mkdir()
    events.to_parquet(fs / "interactions" / "part-0.parquet", index=False, coerce_timestamps="us")
    products = pd.DataFrame({"product_id": sorted(events["product_id"].unique())})
    products["category"] = products["product_id"].str[0]
    (fs / "products").mkdir()
    products.to_parquet(fs / "products" / "part-0.parquet", index=False)


def _events(rng: np.random.Generator) -> pd.DataFrame:
    products = [f"{g}{i}" for g in "AB" for i in range(10)]
    rows = []
    for c in range(60):
        group = products[:10] if c % 2 == 0 else products[10:]
        for _ in range(8):
            when = dt.datetime(2025, 4, 1) + dt.timedelta(days=int(rng.integers(0, 120)), hours=int(rng.integers(0, 24)))
            kind = rng.choice(["product_view", "add_to_cart", "purchase"], p=[0.6, 0.2, 0.2])
            rows.append((f"c{c:04d}", str(rng.choice(group)), str(kind), when))
    # a customer who arrived in the recommender's holdout month: only a model refitted through the as-of date
    # knows them
    rows += [("c_late", p, "purchase", dt.datetime(2025, 7, 20, 12)) for p in ("A1", "A2", "A3")]
    return pd.DataFrame(rows, columns=["customer_id", "product_id", "event_type", "event_time"])


@pytest.fixture()
def env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for key, value in {
        "C360_DATA_DIR": str(data),
        "C360_FEATURE_STORE_DIR": str(data / "feature_store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
        "C360_MLFLOW_ARTIFACT_ROOT": str(data / "mlflow" / "artifacts"),
        "SPARK_MASTER": "local[2]",
    }.items():
        monkeypatch.setenv(key, value)
    (data / "mlflow").mkdir(parents=True)
    return data


@pytest.mark.integration
def test_train_all_models_end_to_end(spark, env, capsys):
    import mlflow

    fs = env / "feature_store"
    write_tiny_feature_store(fs, ("2025-01-31", "2025-04-30"))

    opts = Options(models=["churn", "clv", "recommender"], as_of_date="2025-07-31", gbt_iterations=4,
                   rec_grid="none", rec_top_n=5, rec_holdout_days=30)
    assert train(opts, spark=spark) == 0
    results = {r["model"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert set(results) == {"churn", "clv", "recommender"}

    client = mlflow.MlflowClient()
    churn = results["churn"]
    assert churn["promoted"], churn["gates"]
    assert churn["champion_version"] == churn["version"] == "1"
    run = client.get_run(churn["run_id"])
    assert run.data.params["train_date"] == "2025-01-31" and run.data.params["holdout_date"] == "2025-04-30"
    for key in ("roc_auc", "pr_auc", "lift_top_decile", "brier", "baseline_recency_roc_auc", "baseline_rfm_roc_auc",
                "gbt_roc_auc", "logreg_roc_auc"):
        assert key in run.data.metrics, key
    assert run.data.metrics["roc_auc"] > run.data.metrics["baseline_recency_roc_auc"]
    assert "train_data_hash" in run.data.tags
    assert run.data.params["bgnbd_features"] == "True" and "days_since_last_activity" in run.data.params[
        "derived_features"]
    # the holdout rows with every score, for offline comparisons (c360dev.bench.quality)
    predictions = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=churn["run_id"],
                                                                      artifact_path="holdout_predictions.parquet"))
    assert {"customer_key", "label", "gbt", "logreg", "baseline_recency", "baseline_bgnbd"} <= set(predictions.columns)
    # the BG/NBD churn baseline (1 - P(a purchase within the horizon)) is judged on the same holdout
    assert 0.0 <= predictions["baseline_bgnbd"].min() <= predictions["baseline_bgnbd"].max() <= 1.0
    assert "baseline_bgnbd_roc_auc" in run.data.metrics
    # keyed by the sha256 of the id (what erase-customer matches), never the id itself
    assert "customer_id" not in predictions.columns
    assert predictions["customer_key"].str.fullmatch("[0-9a-f]{64}").all()
    assert len(predictions) == run.data.metrics["rows"]
    artifacts = {a.path for a in client.list_artifacts(churn["run_id"], "plots")}
    assert {"plots/roc.png", "plots/lift.png", "plots/calibration.png", "plots/feature_importance.png"} <= artifacts

    # the horizons on the runs and the versions (what spark_jobs.score writes on every row)
    assert client.get_model_version("churn", "1").tags["churn_horizon_days"] == "90"
    assert client.get_model_version("clv", results["clv"]["version"]).tags["value_horizon_days"] == "180"
    assert client.get_run(results["clv"]["run_id"]).data.tags["horizon_days"] == "180"
    # each decision is the one the gates give on the metrics recorded on the version (no champion yet: floors only)
    from ml.gates import DEFAULT_GATES, baseline_gates, evaluate_gates

    for name in ("churn", "clv", "recommender"):
        r = results[name]
        tags = client.get_model_version(name, r["version"]).tags
        recorded = {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
        gates = baseline_gates(name) if r["serving"] != "model" else DEFAULT_GATES[name]
        expected = evaluate_gates(gates, recorded, None)
        assert tags["validation_status"] == ("passed" if expected.passed else "failed"), (name, expected.summary())
        assert r["gates_passed"] == r["promoted"] == expected.passed, (name, r["gates"], expected.summary())
    # CLV always gets a first champion: an ML candidate past its floors, else the better baseline serves
    assert results["clv"]["promoted"] and results["clv"]["champion_version"] == results["clv"]["version"]
    assert results["clv"]["serving"] in {"model", "bgnbd", "run_rate"}
    clv_run = client.get_run(results["clv"]["run_id"])
    if results["clv"]["serving"] != "model":  # a baseline serves: the reason is given (validation checks or floors)
        assert ("did not beat the baselines' floors" in results["clv"]["gates"]
                or "passed the validation checks" in results["clv"]["gates"]), results["clv"]["gates"]
    # the CLV choice is recorded per candidate, with the figures each check used
    assert {"selection", "selection_gbt", "selection_bgnbd", "selection_run_rate"} <= set(clv_run.data.params)
    assert "eligible" in clv_run.data.params["selection_gbt"] and "spearman" in clv_run.data.params["selection_gbt"]
    selection = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=results["clv"]["run_id"],
                                                                    artifact_path="clv_selection.json")).read_text())
    assert selection["chosen"] in {"gbt", "bgnbd", "run_rate"} and set(selection["checks"]) == {"gbt", "bgnbd",
                                                                                               "run_rate"}
    # the fixture's recommender (co-purchase pairs ALS can learn) beats popularity: it must be promoted
    assert results["recommender"]["promoted"], results["recommender"]["gates"]
    assert results["recommender"]["serving"] == "model"
    clv_metrics = client.get_run(results["clv"]["run_id"]).data.metrics
    # whichever candidate won, the CLV model also outputs the BG/NBD quantities the scores table carries
    from ml.registry import load_spark_champion

    model_version = results["clv"]["version"]
    clv_model = mlflow.spark.load_model(f"models:/clv/{model_version}")
    clv_columns = mlflow.models.get_model_info(f"models:/clv/{model_version}").signature.inputs.input_names()
    sample = spark.read.parquet(str(fs / "customer_features" / "as_of_date=2025-04-30")).limit(5)
    from ml.features import prepare_features, split_columns

    scored = clv_model.transform(prepare_features(sample, *split_columns(clv_columns)))
    assert {"prediction", "p_alive", "expected_purchases"} <= set(scored.columns)
    assert scored.where("prediction < 0 or p_alive < 0 or p_alive > 1").count() == 0
    assert load_spark_champion("nonexistent") == (None, None, None)
    assert {"mae", "rmse", "spearman", "top_decile_capture", "baseline_run_rate_mae", "gbt_mae", "bgnbd_mae",
            "gbt_validation_mae", "bgnbd_validation_mae"} <= set(clv_metrics)
    rec_metrics = client.get_run(results["recommender"]["run_id"]).data.metrics
    # hyper-parameters judged on the holdout, then the registered model refitted on everything up to the as-of date
    rec_run = client.get_run(results["recommender"]["run_id"])
    assert rec_run.data.tags["refit_through"] == "2025-07-31" and rec_run.data.tags["train_end"] == "2025-07-01"
    registered = mlflow.spark.load_model(f"models:/recommender/{results['recommender']['version']}")
    assert "c_late" in registered.stages[0].labels
    assert {"ndcg_at_5", "precision_at_5", "recall_at_5", "catalog_coverage", "baseline_popularity_ndcg_at_5",
            "baseline_global_popularity_recall_at_5"} <= set(rec_metrics)
    assert clv_metrics["gbt_predicted_mean"] > 0  # log-scale GBT mapped back to EUR

    from ml.registry import DeploymentAudit

    audit = DeploymentAudit(env / "mlflow" / "deployments.sqlite")
    assert [(e.action, e.to_version) for e in audit.history("churn", "champion")] == [("promote", "1")]

    # scoring in a fresh process: pyfunc returns P(churn) for raw feature rows, nulls included
    script = (
        "import json, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/churn@champion')\n"
        "cols = m.metadata.get_input_schema().input_names()\n"
        "X = pd.read_parquet(r'%s').head(20)\n"
        "X['has_tracking'] = X['has_tracking'].astype(float)\n"
        "X = X.reindex(columns=cols).astype({c: float for c in cols if c != 'country'})\n"
        "X.loc[0, 'days_since_last_visit'] = None\n"
        "print(json.dumps([float(v) for v in m.predict(X)]))\n"
    ) % (fs / "customer_features" / "as_of_date=2025-04-30" / "part-0.parquet")
    # a script file, not `python -c`: with -c, pyspark's connect modules run their doctest stubs and exit
    script_file = env.parent / "score.py"
    script_file.write_text(script)
    out = subprocess.run([sys.executable, str(script_file)], cwd=REPO, capture_output=True, text=True, timeout=240,
                         env={**os.environ})
    assert out.returncode == 0 and out.stdout.strip(), (out.stdout[-2000:], out.stderr[-3000:])
    probabilities = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(probabilities) == 20 and all(0.0 <= p <= 1.0 for p in probabilities)

    # Erasure (issue #13): no input example names a customer; the recommender's user index does, and the erasure
    # rewrites it in place: the model still loads, no longer knows the customer, and scores the others as before.
    from c360.config import get_settings
    from c360.privacy import erasure as privacy

    rec_uri = f"models:/recommender/{results['recommender']['version']}"
    users = list(mlflow.spark.load_model(rec_uri).stages[0].labels)
    erased, kept = users[0], users[1]
    changes = privacy._erase_mlflow_artifacts(
        get_settings(), privacy.Matcher(frozenset({erased}), keys=frozenset({privacy.customer_key(erased)})),
        dry_run=False)
    assert [c for c in changes if c.action == "unresolved"] == []
    touched = {c.uri.rsplit("/artifacts/", 1)[-1] for c in changes}
    assert touched and all("/sparkml/stages/" in t or t == "holdout_predictions.parquet" for t in touched)
    rec = mlflow.spark.load_model(rec_uri)
    after = list(rec.stages[0].labels)
    assert len(after) == len(users) and erased not in after and after[1:] == users[1:]
    pairs = spark.createDataFrame([(kept, "A0"), (erased, "A0")], ["customer_id", "product_id"])
    predictions = {r["customer_id"]: r["prediction"] for r in rec.transform(pairs).collect()}
    assert predictions[kept] == predictions[kept] and predictions[erased] != predictions[erased]  # NaN: unknown

@pytest.mark.integration
def test_a_baseline_serves_when_no_ml_candidate_passes_its_floors(spark, env, capsys, monkeypatch):
    """Floors no model can pass (AUC >= 1.01 over recency, CLV aggregate error 0 %): the first night still gets
    churn and CLV champions - the recency and run-rate/BG/NBD baselines, registered as such - and each gate
    decision says why."""
    import mlflow

    from ml.gates import DEFAULT_GATES, Floor, GateConfig
    from spark_jobs import training

    impossible = {
        "churn": GateConfig("roc_auc", floors=(Floor("roc_auc", value=1.01),)),
        "clv": GateConfig("mae", higher_is_better=False, relative=True,
                          floors=(Floor("aggregate_error_pct", value=-1.0, higher_is_better=False, use_abs=True),)),
    }
    monkeypatch.setattr(training, "DEFAULT_GATES", {**DEFAULT_GATES, **impossible})
    write_tiny_feature_store(env / "feature_store", ("2025-01-31", "2025-04-30"))
    opts = Options(models=["churn", "clv"], as_of_date="2025-07-31", gbt_iterations=4)
    assert train(opts, spark=spark) == 0
    results = {r["model"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    client = mlflow.MlflowClient()
    assert results["churn"]["serving"] == "recency"
    assert results["clv"]["serving"] in {"bgnbd", "run_rate"}
    for name, r in results.items():
        assert r["promoted"] and r["champion_version"] == r["version"] == "1", r
        version = client.get_model_version(name, r["version"])
        assert version.tags["serving"] == r["serving"]
        if name == "churn" or r["serving"] == "run_rate":  # chosen over an ML candidate: the note says why
            assert "did not beat the baselines' floors" in version.tags["serving_note"]
            assert "did not beat the baselines' floors" in r["gates"]
        run = client.get_run(r["run_id"])
        assert run.data.params["serving"] == r["serving"]
    churn_run = client.get_run(results["churn"]["run_id"]).data.metrics
    # the served recency model ranks exactly like the recency baseline on the holdout
    assert churn_run["roc_auc"] == pytest.approx(churn_run["baseline_recency_roc_auc"], abs=1e-6)
    assert "ml_candidate_roc_auc" in churn_run


@pytest.mark.integration
def test_popularity_baseline_is_promoted_when_als_misses_its_floors_and_scoring_serves_it(spark, env, capsys,
                                                                                          monkeypatch):
    """A recommender floor ALS cannot pass: the popularity baseline is registered and promoted as a recommender
    version, evaluated on the same holdout; scoring serves it with the same recommendations contract (every
    customer, ranks 1..10, never a bought product, sources category_popular/popular); the next training's ALS is
    judged against it on the new holdout and replaces it when it beats it."""
    import duckdb
    import mlflow

    from ml import recommender
    from ml.gates import DEFAULT_GATES, Floor, GateConfig
    from spark_jobs import training
    from spark_jobs.score import score

    monkeypatch.setenv("C360_SCORES_DIR", str(env / "scores"))
    impossible = GateConfig("ndcg_at_10", floors=(Floor("ndcg_at_10", value=1.01),))
    monkeypatch.setattr(training, "DEFAULT_GATES", {**DEFAULT_GATES, "recommender": impossible})
    fs = env / "feature_store"
    write_tiny_feature_store(fs, ("2025-01-31", "2025-04-30"))
    opts = Options(models=["churn", "clv", "recommender"], as_of_date="2025-07-31", gbt_iterations=4,
                   rec_grid="none", rec_top_n=5, rec_holdout_days=30)
    assert train(opts, spark=spark) == 0
    rec = {r["model"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}["recommender"]
    assert rec["serving"] == "popularity" and rec["promoted"] and rec["champion_version"] == rec["version"] == "1"
    assert "did not beat the baselines' floors" in rec["gates"]
    client = mlflow.MlflowClient()
    version = client.get_model_version("recommender", "1")
    assert version.tags["serving"] == "popularity" and version.tags["validation_status"] == "passed"
    assert "ndcg_at_10" in version.tags["serving_note"]
    run = client.get_run(rec["run_id"])
    assert run.data.params["model_kind"] == "popularity_baseline" and run.data.params["serving"] == "popularity"
    m = run.data.metrics
    # the same holdout, the same metrics: the served model's are the popularity baseline's, ALS's are kept
    for key in ("ndcg_at_5", "recall_at_5", "precision_at_5", "catalog_coverage"):
        assert m[key] == pytest.approx(m[f"baseline_popularity_{key}"]) and f"ml_candidate_{key}" in m, key
    assert m["als_share"] == 0.0 and m["ml_candidate_als_share"] > 0
    assert recommender.is_popularity_model(mlflow.spark.load_model("models:/recommender@champion"))

    # scoring serves it: same tables, same contract
    D = "2025-04-30"
    assert score(D, spark=spark) == 0
    recs = duckdb.sql(f"SELECT * FROM read_parquet('{env / 'scores' / 'recommendations' / f'dt={D}'}/*.parquet', "
                      "hive_partitioning = false)").df()
    assert list(recs.columns) == ["customer_id", "as_of_date", "rank", "product_id", "score", "source", "run_id",
                                  "recommender_model_version"]
    snapshot = pd.read_parquet(fs / "customer_features" / f"as_of_date={D}")
    assert set(recs["customer_id"]) == set(snapshot["customer_id"])
    assert set(recs["recommender_model_version"]) == {"1"}
    assert set(recs["source"]) == {"category_popular", "popular"}  # customers with history get their category first
    ranks = recs.groupby("customer_id")["rank"].agg(["min", "max", "count"])
    assert (ranks["min"] == 1).all() and (ranks["max"] == ranks["count"]).all() and (ranks["count"] == 10).all()
    events = pd.read_parquet(fs / "interactions")
    bought = events[(events["event_type"] == "purchase") & (events["event_time"] < pd.Timestamp("2025-05-01"))]
    assert bought.merge(recs, on=["customer_id", "product_id"]).empty
    # a customer without any interaction gets the overall recency-weighted popularity at D
    strength = recommender.interaction_strength(spark.read.parquet(str(fs / "interactions")), D)
    top = [r["product_id"] for r in recommender.popularity(strength).orderBy(
        F.desc("popularity"), F.asc("product_id")).limit(10).collect()]
    assert recs[recs["customer_id"] == "c0400"].sort_values("rank")["product_id"].tolist() == top

    # the next training: ALS judged against the popularity champion on its own holdout, tuned parameters reused
    monkeypatch.setattr(training, "DEFAULT_GATES", DEFAULT_GATES)
    assert train(Options(models=["recommender"], as_of_date="2025-07-31", rec_grid="champion", rec_top_n=5,
                         rec_holdout_days=30), spark=spark) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    run = client.get_run(again["run_id"])
    assert run.data.params["grid"] == "champion"
    assert run.data.metrics["champion_ndcg_at_5"] == pytest.approx(run.data.metrics["baseline_popularity_ndcg_at_5"])
    assert again["serving"] == "model" and again["promoted"], again["gates"]  # the fixture's ALS beats popularity
    assert not recommender.is_popularity_model(mlflow.spark.load_model("models:/recommender@champion"))


def test_training_refuses_labels_built_with_another_horizon(tmp_path):
    from spark_jobs.train import check_label_horizon

    write_tiny_feature_store(tmp_path, ("2025-01-31",), n=20)  # churn labels for 90 days, value for 180
    check_label_horizon(tmp_path, "labels_churn", ["2025-01-31"], 90)
    with pytest.raises(ValueError, match=r"labels_churn/as_of_date=2025-01-31 were built with a 90-day horizon, but "
                                         r"training is configured for 60 days \(C360_CHURN_HORIZON_DAYS\)"):
        check_label_horizon(tmp_path, "labels_churn", ["2025-01-31"], 60)
    with pytest.raises(ValueError, match="180-day horizon.*C360_VALUE_HORIZON_DAYS"):
        check_label_horizon(tmp_path, "labels_value", ["2025-01-31"], 90)
