"""Nightly scoring on a tiny synthetic snapshot with minimal champions registered by the test."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from pyspark.testing import assertDataFrameEqual

from spark_jobs.score import ScoringError, main, score, scored_at, scoring_run_id

D = "2025-04-30"


@pytest.fixture(scope="module")
def env(tmp_path_factory, spark):
    """One feature store and one MLflow store with the three champions for the whole module."""
    monkeypatch = pytest.MonkeyPatch()
    data = tmp_path_factory.mktemp("score") / "data"
    for key, value in {
        "C360_DATA_DIR": str(data),
        "C360_FEATURE_STORE_DIR": str(data / "feature_store"),
        "C360_SCORES_DIR": str(data / "scores"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
        "C360_MLFLOW_ARTIFACT_ROOT": str(data / "mlflow" / "artifacts"),
        "SPARK_MASTER": "local[2]",
    }.items():
        monkeypatch.setenv(key, value)
    (data / "mlflow").mkdir(parents=True)
    fs = data / "feature_store"
    rng = np.random.default_rng(3)
    n = 60
    features = pd.DataFrame({
        "customer_id": [f"c{i:03d}" for i in range(n)],
        "orders_count": np.where(np.arange(n) < 50, rng.integers(1, 6, n), 0).astype("int32"),
        "days_since_last_order": rng.integers(0, 300, n).astype("int32"),
        "net_revenue_eur": rng.gamma(3, 40, n),
        "favourite_category": rng.choice(["A", "B"], n),
    })
    snap = fs / "customer_features" / f"as_of_date={D}"
    snap.mkdir(parents=True)
    features.to_parquet(snap / "part-0.parquet", index=False)
    rows = []
    for c in range(n):
        for _ in range(6):
            when = dt.datetime(2025, 2, 1) + dt.timedelta(days=int(rng.integers(0, 80)))
            product = f"{'A' if c % 2 else 'B'}{int(rng.integers(0, 8))}"
            rows.append((f"c{c:03d}", product, str(rng.choice(["product_view", "purchase"])), when))
    (fs / "interactions").mkdir()
    pd.DataFrame(rows, columns=["customer_id", "product_id", "event_type", "event_time"]).to_parquet(
        fs / "interactions" / "part-0.parquet", index=False, coerce_timestamps="us")
    (fs / "products").mkdir()
    pd.DataFrame({"product_id": [f"{g}{i}" for g in "AB" for i in range(8)],
                  "category": [g for g in "AB" for _ in range(8)]}).to_parquet(fs / "products" / "part-0.parquet")
    _champions(spark, data)
    yield data
    monkeypatch.undo()


def _register(spark, name: str, model, inputs, *, tags=None, params=None):
    import mlflow

    from c360.config import get_settings
    from ml.registry import DeploymentAudit, configure, promote, register_challenger, spark_signature

    settings = get_settings()
    configure(settings.mlflow_tracking_uri, "c360-score-tests", settings.mlflow_artifact_root)
    with mlflow.start_run() as run:
        mlflow.log_params(params or {})
        info = mlflow.spark.log_model(model, artifact_path="model", signature=spark_signature(inputs, "prediction"),
                                      pip_requirements=["pyspark"])
    audit = DeploymentAudit(settings.deployments_audit_path)
    version = register_challenger(name, info.model_uri, run_id=run.info.run_id, metrics={}, tags=tags, audit=audit)
    promote(name, str(version.version), audit=audit)


def _champions(spark, env):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer

    from ml import recommender
    from ml.features import prepare_features

    cols = ["days_since_last_order", "orders_count"]
    inputs = prepare_features(spark.createDataFrame([(1, 2)], cols), cols, [])
    churn = Pipeline(stages=[SQLTransformer(statement="SELECT *, 1 / (1 + exp(-(days_since_last_order - 150) / 50))"
                                                      " AS prediction FROM __THIS__")]).fit(inputs)
    _register(spark, "churn", churn, inputs, tags={"horizon_days": "90"})
    clv = Pipeline(stages=[SQLTransformer(
        statement="SELECT *, 30 * orders_count AS prediction, 1 / (1 + days_since_last_order / 100) AS p_alive, "
                  "orders_count / 2 AS expected_purchases FROM __THIS__")]).fit(inputs)
    # a version registered before the horizon tag existed: its run's horizon_days parameter says it
    _register(spark, "clv", clv, inputs, params={"horizon_days": 180})
    events = spark.read.parquet(str(env / "feature_store" / "interactions"))
    strength = recommender.interaction_strength(events, D)
    als = recommender.fit_als(strength, rank=4, max_iter=3)
    _register(spark, "recommender", als, strength.select("customer_id", "product_id"))


def _rows(path) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}/*.parquet', hive_partitioning = false) ORDER BY ALL").df()


def test_helpers():
    a = scoring_run_id(D, {"churn": "1", "clv": "2", "recommender": "3"})
    assert a == scoring_run_id(D, {"churn": "1", "clv": "2", "recommender": "3"})
    assert a != scoring_run_id(D, {"churn": "1", "clv": "2", "recommender": "4"})
    assert scored_at(D) == dt.datetime(2025, 5, 1)


@pytest.mark.reliability
@pytest.mark.integration
def test_refuses_without_champion_or_snapshot_and_writes_nothing(spark, env, caplog):
    with pytest.raises(ScoringError, match=r"dev_churn@champion.*c360 train"):
        score(D, model_prefix="dev_", spark=spark)
    assert main(["--date", "2025-01-31"]) == 2
    assert "no feature snapshot" in caplog.text
    assert not (env / "scores").exists()


@pytest.mark.reliability
@pytest.mark.integration
def test_score_writes_both_partitions_and_reruns_identically(spark, env):
    assert score(D, spark=spark) == 0
    scores_dir, recs_dir = env / "scores" / "scores" / f"dt={D}", env / "scores" / "recommendations" / f"dt={D}"
    types = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{scores_dir}/*.parquet', hive_partitioning = false)").fetchall()}
    assert types == {
        "customer_id": "VARCHAR", "as_of_date": "DATE", "run_id": "VARCHAR", "churn_probability": "DOUBLE",
        "churn_decile": "INTEGER", "p_alive": "DOUBLE", "expected_purchases": "DOUBLE",
        "predicted_value_eur": "DOUBLE", "value_decile": "INTEGER", "churn_model_version": "VARCHAR",
        "clv_model_version": "VARCHAR", "recommender_model_version": "VARCHAR", "feature_snapshot_date": "DATE",
        "scored_at": "TIMESTAMP", "churn_horizon_days": "INTEGER", "value_horizon_days": "INTEGER",
        "churn_reason_1": "VARCHAR", "churn_reason_2": "VARCHAR", "churn_reason_3": "VARCHAR"}
    first_scores, first_recs = _rows(scores_dir), _rows(recs_dir)
    assert len(first_scores) == 60 and first_scores["customer_id"].is_unique
    buyers = first_scores[first_scores["churn_probability"].notna()]
    assert len(buyers) == 50 and first_scores["value_decile"].notna().sum() == 50
    assert set(buyers["churn_decile"]) == set(range(1, 11)) and set(buyers["value_decile"]) <= set(range(1, 11))
    top = buyers.sort_values("churn_probability")
    assert top["churn_decile"].iloc[-1] == 10 and top["churn_decile"].iloc[0] == 1
    assert first_scores["run_id"].nunique() == 1 and first_scores["run_id"].notna().all()
    assert (first_scores["as_of_date"].astype(str) == D).all()
    assert set(first_scores["churn_model_version"]) == {"1"} and set(first_scores["recommender_model_version"]) == {"1"}
    # every row says which horizons its probabilities and values are about (the champions' training horizons)
    assert set(first_scores["churn_horizon_days"]) == {90} and set(first_scores["value_horizon_days"]) == {180}
    # a hand-written churn pipeline (no logistic regression or GBT inside): no reasons can be read from it
    assert first_scores[["churn_reason_1", "churn_reason_2", "churn_reason_3"]].isna().all().all()

    assert list(first_recs.columns) == ["customer_id", "as_of_date", "rank", "product_id", "score", "source",
                                        "run_id", "recommender_model_version"]
    per_customer = first_recs.groupby("customer_id")["rank"].agg(["count", "min", "max"])
    assert len(per_customer) == 60 and (per_customer["min"] == 1).all() and (per_customer["max"] <= 10).all()
    assert set(first_recs["source"]) <= {"als", "category_popular", "popular"}
    assert (first_recs["run_id"] == first_scores["run_id"].iloc[0]).all()
    assert not first_recs.duplicated(["customer_id", "product_id"]).any()

    assert score(D, spark=spark) == 0
    pd.testing.assert_frame_equal(_rows(scores_dir), first_scores)
    pd.testing.assert_frame_equal(_rows(recs_dir), first_recs)
    assert [p.name for p in (env / "scores" / "scores").iterdir()] == [f"dt={D}"]


@pytest.mark.integration
def test_scores_carry_the_churn_models_own_reasons(spark, env):
    """With a logistic-regression churn champion (what training registers), every scored customer gets the reason
    columns of the contract, and those silent for longest are at risk because of their silence."""
    from ml.churn import build_pipeline
    from ml.features import prepare_features
    from spark_jobs.score import SCORES_COLUMNS

    day = "2025-05-15"
    root = env / "feature_store" / "customer_features"
    (root / f"as_of_date={day}").mkdir()
    features = pd.read_parquet(root / f"as_of_date={D}" / "part-0.parquet")
    features.to_parquet(root / f"as_of_date={day}" / "part-0.parquet", index=False)
    numeric, categorical = ["days_since_last_order", "orders_count"], ["favourite_category"]
    train = prepare_features(spark.createDataFrame(features[features["orders_count"] > 0]), numeric, categorical)
    rng = np.random.default_rng(5)  # churn driven by the silence (noisy, so both classes overlap)
    flips = [float(x) for x in rng.random(50) < 0.1]
    labels = spark.createDataFrame(
        [(c, float((d > 150) != bool(f)), 1.0) for c, d, f in zip(
            features.loc[features["orders_count"] > 0, "customer_id"],
            features.loc[features["orders_count"] > 0, "days_since_last_order"], flips, strict=True)],
        "customer_id string, label double, class_weight double")
    churn = build_pipeline("logreg", numeric, categorical, derived=False).fit(train.join(labels, "customer_id"))
    inputs = train.select(*numeric, *categorical)
    _register(spark, "lr_churn", churn, inputs, tags={"horizon_days": "90"})
    _register(spark, "lr_clv", _champion_pipeline("clv", spark), inputs.select("days_since_last_order", "orders_count"),
              tags={"horizon_days": "180"})

    assert score(day, model_prefix="lr_", recommendations=False, spark=spark) == 0
    rows = _rows(env / "scores" / "scores" / f"dt={day}")
    assert list(rows.columns) == SCORES_COLUMNS
    reasons = ["churn_reason_1", "churn_reason_2", "churn_reason_3"]
    buyers, others = rows[rows["churn_probability"].notna()], rows[rows["churn_probability"].isna()]
    assert others[reasons].isna().all().all() and len(others) == 10
    silent = buyers.merge(features, on="customer_id").nlargest(5, "days_since_last_order")
    assert (silent["churn_reason_1"] == "days_since_last_order high").all(), silent[reasons]
    allowed = {"days_since_last_order high", "days_since_last_order low", "orders_count high", "orders_count low",
               "favourite_category = A", "favourite_category = B"}
    assert set(buyers[reasons].stack()) <= allowed
    # no reason repeats within a row, and a row's reasons fill from the first
    for _, r in buyers[reasons].iterrows():
        got = [x for x in r if x is not None and x == x]
        assert len(set(got)) == len(got) and list(r[:len(got)]) == got


def _champion_pipeline(kind: str, spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer

    assert kind == "clv"
    df = spark.createDataFrame([(1.0, 2.0)], ["days_since_last_order", "orders_count"])
    return Pipeline(stages=[SQLTransformer(
        statement="SELECT *, 30 * orders_count AS prediction, 1 / (1 + days_since_last_order / 100) AS p_alive, "
                  "orders_count / 2 AS expected_purchases FROM __THIS__")]).fit(df)


@pytest.mark.integration
def test_refuses_snapshot_missing_signature_column(spark, env):
    root = env / "feature_store" / "customer_features"
    other = root / "as_of_date=2025-05-31"
    other.mkdir()
    features = pd.read_parquet(root / f"as_of_date={D}" / "part-0.parquet")
    features.drop(columns=["days_since_last_order"]).to_parquet(other / "part-0.parquet", index=False)
    with pytest.raises(ScoringError, match="days_since_last_order"):
        score("2025-05-31", spark=spark)
    assert not list(env.glob("scores/*/dt=2025-05-31"))


# --------------------------------------------------------------------------------------------------
# the recommendation paths scoring uses (ml.recommender.recommendation_lists / with_als_items)
# --------------------------------------------------------------------------------------------------

def test_top_k_indices_orders_by_score_then_column():
    from ml.recommender import top_k_indices

    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (200, 12)).astype(np.float32)  # many ties, also at the k-th place
    for k in (1, 3, 12, 20):
        expected = np.array([sorted(range(12), key=lambda j, row=row: (-row[j], j))[:k] for row in scores])
        assert (top_k_indices(scores, k) == expected).all()
    assert top_k_indices(scores, 0).shape == (200, 0)


def test_fallback_when_favourite_category_has_fewer_than_n_unbought(spark):
    from ml.recommender import recommend

    popular = spark.createDataFrame([
        ("a1", "A", 10.0), ("a2", "A", 5.0), ("a3", "A", 4.0),
        ("b1", "B", 20.0), ("b2", "B", 1.0), ("b3", "B", 1.0),   # b2/b3 tie: product_id decides
    ], "product_id string, category string, popularity double")
    customers = spark.createDataFrame([("c1", "A"), ("c2", "B"), ("c3", "Z"), ("c4", "A")],
                                      "customer_id string, favourite_category string")
    seen = spark.createDataFrame([("c1", "a1"), ("c1", "a3"), ("c1", "b1"), ("c2", "a2")]
                                 + [("c4", p) for p in ("a1", "a2", "a3", "b1", "b2", "b3")],
                                 "customer_id string, product_id string")
    out = recommend(None, customers, seen, popular, n=4)
    expected = spark.createDataFrame([
        # one unbought product left in A, then the overall list without what was bought or already picked
        ("c1", 1, "a2", 5.0, "category_popular"), ("c1", 2, "b2", 1.0, "popular"), ("c1", 3, "b3", 1.0, "popular"),
        ("c2", 1, "b1", 20.0, "category_popular"), ("c2", 2, "b2", 1.0, "category_popular"),
        ("c2", 3, "b3", 1.0, "category_popular"), ("c2", 4, "a1", 10.0, "popular"),
        # a favourite category without products: overall popularity only
        ("c3", 1, "b1", 20.0, "popular"), ("c3", 2, "a1", 10.0, "popular"), ("c3", 3, "a2", 5.0, "popular"),
        ("c3", 4, "a3", 4.0, "popular"),
        # c4 bought everything: no row
    ], "customer_id string, rank int, product_id string, score double, source string")
    assertDataFrameEqual(out, expected)


@pytest.mark.integration
def test_als_items_match_the_models_own_predictions(spark, env):
    from pyspark.sql import functions as F

    from ml import recommender

    events = spark.read.parquet(str(env / "feature_store" / "interactions"))
    model = recommender.fit_als(recommender.interaction_strength(events, D), rank=4, max_iter=3)
    customers = spark.createDataFrame([("c001",), ("c002",), ("c017",), ("unknown",)], "customer_id string")
    k = 5
    got = {r["customer_id"]: r["als_items"] for r in recommender.with_als_items(model, customers, k).collect()}
    assert set(got) == {"c001", "c002", "c017", "unknown"} and got["unknown"] is None
    # every (customer, product) pair scored by the model itself
    pairs = (customers.crossJoin(events.select("product_id").distinct())
             .withColumn("strength", F.lit(0.0)))
    predicted = model.transform(pairs).where(F.col("prediction").isNotNull()).collect()
    for customer in ("c001", "c002", "c017"):
        scores = sorted((-r["prediction"], r["product_id"]) for r in predicted if r["customer_id"] == customer)
        items = got[customer]
        assert len(items) == k
        assert [i["score"] for i in items] == pytest.approx([-s for s, _ in scores[:k]], rel=1e-5, abs=1e-6)
        if scores[k][0] - scores[k - 1][0] > 1e-5:  # no near-tie at the cut: the same products
            assert {i["product_id"] for i in items} == {p for _, p in scores[:k]}
